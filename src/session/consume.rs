//! Consumers of the engine's event stream, behind one trait, and the one
//! loop that fans every event out to them.
//!
//! Owns the order consumers see an event in (recorders first, so an intent
//! is on disk before anything else hears of it) and who acknowledges
//! intents. It must not decide what a consumer does with an event: the
//! journal's format is `journal`'s, the wording of progress and summary is
//! `report`'s.
//!
//! Adding a consumer (a status page, metrics, notifications, a journal
//! mirror) is one `impl Consumer` and one push onto the list passed to
//! [`fan_out`].

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::events::{Ack, Event, EventKind};
use crate::journal;
use crate::report::plain::Plain;
use crate::report::progress::Progress;

pub use crate::engine::consumer::{Consumer, Seen};

/// Reads `rx` to its end, handing each event to every consumer in order.
/// A consumer whose output fails (stdout closed, say) is dropped with a
/// warning; the stream keeps draining so the engine never blocks.
pub async fn fan_out(
    mut rx: mpsc::Receiver<Event>,
    mut consumers: Vec<Box<dyn Consumer>>,
) -> Vec<String> {
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut warnings = Vec::new();
    let failed = |c: &dyn Consumer, e: io::Error, warnings: &mut Vec<String>| {
        warnings.push(format!("{} output failed: {e}", c.name()));
    };
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let seen = Seen { at: event.at, elapsed: event.elapsed, kind: &event.kind };
                let mut ack = event.ack;
                let mut i = 0;
                while i < consumers.len() {
                    match consumers[i].event(seen, &mut ack) {
                        Ok(()) => i += 1,
                        Err(e) => {
                            let c = consumers.remove(i);
                            failed(&*c, e, &mut warnings);
                        }
                    }
                }
                if let Some(ack) = ack {
                    ack.done();
                }
                if rx.is_empty() {
                    consumers.iter_mut().for_each(|c| c.idle());
                }
            }
            _ = tick.tick() => {
                let elapsed = started.elapsed();
                let mut i = 0;
                while i < consumers.len() {
                    consumers[i].idle();
                    match consumers[i].tick(elapsed) {
                        Ok(()) => i += 1,
                        Err(e) => {
                            let c = consumers.remove(i);
                            failed(&*c, e, &mut warnings);
                        }
                    }
                }
            }
        }
    }
    for c in &mut consumers {
        c.finish();
    }
    warnings
}

/// Records queued before they are handed to the journal's writer thread
/// even while events keep coming; intents always go at once (the engine
/// waits for them) and the writer thread batches them into one flush.
const COMMIT_RECORDS: usize = 256;

/// The journal: every event recorded, intents acknowledged once on disk.
/// The writer is shared with the session, which finishes it after the run.
pub struct JournalConsumer {
    writer: Arc<Mutex<journal::Writer>>,
    queued: usize,
    outcomes: Arc<Mutex<Vec<(u64, String)>>>,
}

impl JournalConsumer {
    /// `outcomes` learns the record number of every host outcome pushed,
    /// with the host's name, so a journal that fails can say whose were lost.
    pub fn new(
        writer: Arc<Mutex<journal::Writer>>,
        outcomes: Arc<Mutex<Vec<(u64, String)>>>,
    ) -> JournalConsumer {
        JournalConsumer {
            writer,
            queued: 0,
            outcomes,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut journal::Writer) -> R) -> R {
        let mut w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut w)
    }
}

impl Consumer for JournalConsumer {
    fn event(&mut self, e: Seen<'_>, ack: &mut Option<Ack>) -> io::Result<()> {
        let ack = ack.take();
        let intent = ack.is_some();
        self.queued += 1;
        let commit = intent || self.queued >= COMMIT_RECORDS;
        let number = self.with(|w| {
            let number = w.pushed();
            w.push_event(e.at, e.elapsed, e.kind, ack);
            if commit {
                w.commit();
            }
            number
        });
        if let EventKind::HostFinished { host, .. } = e.kind {
            self.outcomes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((number, host.name.clone()));
        }
        if commit {
            self.queued = 0;
        }
        Ok(())
    }

    fn idle(&mut self) {
        self.queued = 0;
        self.with(journal::Writer::commit);
    }

    fn name(&self) -> &'static str {
        "journal"
    }
}

/// The live display: bars on a terminal, lines otherwise, or nothing.
pub struct ProgressConsumer(pub Progress);

impl Consumer for ProgressConsumer {
    fn event(&mut self, e: Seen<'_>, _ack: &mut Option<Ack>) -> io::Result<()> {
        self.0.event(e.kind, e.elapsed)
    }

    fn tick(&mut self, elapsed: Duration) -> io::Result<()> {
        self.0.tick(elapsed)
    }

    fn finish(&mut self) {
        self.0.finish();
    }

    fn name(&self) -> &'static str {
        "progress"
    }
}

/// The plain line printer, with durations multiplied by `scale` (a drill's
/// speed turns compressed time back into real time).
pub struct PlainConsumer<W: io::Write + Send> {
    plain: Plain<W>,
    scale: f64,
}

impl<W: io::Write + Send> PlainConsumer<W> {
    pub fn new(plain: Plain<W>, scale: f64) -> Self {
        PlainConsumer { plain, scale }
    }
}

impl<W: io::Write + Send> Consumer for PlainConsumer<W> {
    fn event(&mut self, e: Seen<'_>, _ack: &mut Option<Ack>) -> io::Result<()> {
        let real = e.elapsed.mul_f64(self.scale);
        match e.kind {
            EventKind::HostFinished {
                stage,
                host,
                outcome,
                duration,
            } if self.scale != 1.0 => {
                let scaled = EventKind::HostFinished {
                    stage: stage.clone(),
                    host: host.clone(),
                    outcome: outcome.clone(),
                    duration: duration.mul_f64(self.scale),
                };
                self.plain.event(&scaled, real)
            }
            kind => self.plain.event(kind, real),
        }
    }

    fn name(&self) -> &'static str {
        "progress"
    }
}

/// The one feeder of the run's state, which the display, the live views
/// and the session's summary read.
pub struct StateConsumer(pub crate::report::state::Shared);

impl Consumer for StateConsumer {
    fn event(&mut self, e: Seen<'_>, _ack: &mut Option<Ack>) -> io::Result<()> {
        crate::report::state::lock(&self.0).event(e.at, e.elapsed, e.kind);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "summary"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::Emitter;
    use crate::report::fold::Collector;
    use crate::report::state::RunState;

    /// Counts what it sees and fails on the second event.
    struct Flaky(Arc<Mutex<usize>>);

    impl Consumer for Flaky {
        fn event(&mut self, _: Seen<'_>, _: &mut Option<Ack>) -> io::Result<()> {
            let mut n = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += 1;
            if *n == 2 {
                return Err(io::Error::other("closed"));
            }
            Ok(())
        }
        fn name(&self) -> &'static str {
            "flaky"
        }
    }

    #[tokio::test]
    async fn a_failing_consumer_is_dropped_and_intents_are_still_acknowledged() {
        let (tx, rx) = mpsc::channel(16);
        let seen = Arc::new(Mutex::new(0));
        let state = RunState::new(Collector::new()).shared();
        let consumers: Vec<Box<dyn Consumer>> = vec![
            Box::new(Flaky(Arc::clone(&seen))),
            Box::new(StateConsumer(Arc::clone(&state))),
        ];
        let fan = tokio::spawn(fan_out(rx, consumers));
        let emitter = Emitter::new(tx);
        for _ in 0..3 {
            emitter
                .emit(EventKind::RunStarted {
                    plan: "p".into(),
                    stages: 0,
                    hosts: 0,
                })
                .await;
        }
        // No recorder took the ack: the fan-out acknowledges it itself.
        let intent = emitter.intent(EventKind::RunFinished {
            outcome: crate::engine::RunOutcome::Success,
        });
        assert!(intent.await.is_ok());
        drop(emitter);
        let warnings = fan.await.expect("fan-out");
        assert_eq!(*seen.lock().expect("count"), 2);
        assert_eq!(warnings, vec!["flaky output failed: closed".to_owned()]);
        let summary = state.lock().expect("state").summary();
        assert_eq!(summary.plan, "p");
        assert_eq!(summary.outcome, Some(crate::engine::RunOutcome::Success));
    }
}
