//! One view of a run: the summary's fold ([`Collector`]: per-stage and
//! per-host results with typed statuses) and the run-wide counts with the
//! plan's shape ([`Totals`]), fed once per event by the session's state
//! consumer. The terminal's progress, the live page and its metrics, and
//! the end-of-run summary read this one state; `report` and `status --etcd`
//! read one replayed from a journal ([`RunState::replay`]).
//!
//! The ETA has one rule, [`Totals::eta`]: per stage, hosts in flight need
//! what the stage's finished hosts took on average (before any finished,
//! the stage's estimate), a host past that needs as long again as it is
//! late (bounded by its steps' timeouts), waiting hosts go through
//! canaries one by one, then windows (or the stage's rate, if slower), and
//! a stage starts when the stages it waits for end. The terminal shows the
//! run's ETA, the live page each running stage's ([`RunState::stage_eta`]).
//!
//! Owns what the faces of a run read. It must not print, serve or touch hosts.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::fold::Collector;
use super::summary::Summary;
use super::totals::Totals;
use crate::engine::events::EventKind;
use crate::journal::Record;

/// A run's state, shared by the session that feeds it and the faces that read it.
pub type Shared = Arc<Mutex<RunState>>;

#[derive(Debug, Default)]
pub struct RunState {
    /// Per-stage and per-host results, for the summary, `report` and the page.
    pub summary: Collector,
    /// Run-wide counts and the plan's shape, for the progress line and the ETA.
    pub totals: Totals,
}

impl RunState {
    /// A state whose summary is already fed with what happened before (a
    /// resume's journal); its counts come when the execution starts.
    pub fn new(summary: Collector) -> RunState {
        RunState {
            summary,
            totals: Totals::default(),
        }
    }

    /// A run's state read back from its journal's records (`report`,
    /// `status --etcd`): the summary's fold; counts need the plan.
    pub fn replay<'a>(records: impl IntoIterator<Item = &'a Record>) -> RunState {
        let mut summary = Collector::new();
        for r in records {
            summary.record(r);
        }
        RunState::new(summary)
    }

    pub fn shared(self) -> Shared {
        Arc::new(Mutex::new(self))
    }

    /// Folds one event stamped with the wall clock `at` and `elapsed` on
    /// this process's monotonic clock.
    pub fn event(&mut self, at: SystemTime, elapsed: Duration, kind: &EventKind) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.summary.event_at(at, ms, kind);
        self.totals.event(kind, elapsed);
    }

    pub fn summary(&self) -> Summary {
        self.summary.summary()
    }

    /// Time left in stage `stage` at `now`, by the one ETA rule (the time
    /// until it ends, counting the stages it waits for); `None` without the
    /// plan's shape.
    pub fn stage_eta(&self, stage: &str, now: Duration) -> Option<Duration> {
        self.totals.stage_eta(stage, now)
    }
}

/// The state, locked (a face that panicked while holding it left counts
/// that are still worth showing).
pub fn lock(state: &Shared) -> MutexGuard<'_, RunState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
