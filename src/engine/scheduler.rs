//! The coordinator: one task owns all run state. Host tasks get their work
//! when they are spawned and send results (and power-on turn requests) back
//! over mpsc channels; the coordinator `select!`s over those, the next time
//! admission named, and the cancel and pause signals.
//!
//! Owns the run's tasks, flights, events, cancellation and pause; what may
//! start when is decided by [`Admission`], which it drives with the clock.
//! It must not talk to hosts itself (that is `steps`) or print.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::admission::{Admission, Decision, TurnAsk, TurnLine};
use super::events::{
    Emitter, Event, EventKind, Failure, HostOutcome, HostRef, RunOutcome, StageOutcome, StageRef,
    StepKind,
};
use super::power::PowerControl;
use super::steps::HostRun;
use super::{CancelLevel, EngineOptions, HostStart};
use crate::inventory::{Host, Inventory};
use crate::plan::Plan;
use crate::transport::Connector;

/// Runs `plan` to the end (or until cancelled) and returns its outcome. Every
/// event goes to `events`; intent events wait for their ack.
pub async fn run<C: Connector>(
    plan: Arc<Plan>,
    inventory: Arc<Inventory>,
    connector: Arc<C>,
    opts: EngineOptions,
    events: mpsc::Sender<Event>,
    cancel: watch::Receiver<CancelLevel>,
) -> RunOutcome {
    let mut emitter = Emitter::new(events).with_may_act(opts.may_act.clone());
    let pause = opts.pause.clone();
    if let Some(p) = &pause {
        emitter = emitter.with_hold(p.clone(), cancel.clone());
    }
    let mut coord = Coordinator::new(&plan, &inventory, connector, opts, emitter);
    coord.run(cancel, pause).await
}

struct Flight {
    stage: usize,
    host: usize,
    step: usize,
    kind: StepKind,
    started: Instant,
    canary: bool,
}

enum Msg {
    Step {
        slot: u64,
        step: usize,
        kind: StepKind,
    },
    Finished {
        slot: u64,
        outcome: HostOutcome,
    },
}

struct Coordinator<C: Connector> {
    hosts: Vec<Arc<Host>>,
    admission: Admission,
    srefs: Vec<StageRef>,
    connector: Arc<C>,
    emitter: Emitter,
    starts: HashMap<(usize, usize), HostStart>,
    /// The BMC client and per-BMC etiquette, shared by every host of the run.
    power: Option<Arc<PowerControl>>,
    become_password: Option<crate::secret::Secret>,
    hold_resumed_until: Option<Instant>,
    flights: HashMap<u64, Flight>,
    next_slot: u64,
    tasks: JoinSet<()>,
    /// The flight slot of each host task, to land a task that panicked.
    task_slots: HashMap<tokio::task::Id, u64>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    turn_tx: mpsc::UnboundedSender<TurnAsk>,
    turn_rx: mpsc::UnboundedReceiver<TurnAsk>,
    /// Power-on turns asked for and not given yet, by flight slot.
    turn_replies: HashMap<u64, oneshot::Sender<()>>,
    cancel: CancelLevel,
    /// Paused by the operator: start no host (hosts in flight hold between
    /// steps, in `steps`).
    paused: bool,
    total_hosts: usize,
    plan_name: String,
}

impl<C: Connector> Coordinator<C> {
    fn new(
        plan: &Plan,
        inventory: &Inventory,
        connector: Arc<C>,
        opts: EngineOptions,
        emitter: Emitter,
    ) -> Self {
        let hosts: Vec<Arc<Host>> = inventory.hosts.iter().cloned().map(Arc::new).collect();
        let done_before: HashSet<(usize, usize)> = opts
            .starts
            .iter()
            .filter(|(_, s)| **s == HostStart::Done)
            .map(|(k, _)| *k)
            .collect();
        let admission = Admission::new(plan, hosts.clone(), opts.parallel, opts.rate, done_before);
        let srefs = plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| StageRef {
                index: i,
                name: s.name.clone(),
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let (turn_tx, turn_rx) = mpsc::unbounded_channel();
        let total_hosts = plan.stages.iter().map(|s| s.hosts.len()).sum();
        Coordinator {
            hosts,
            admission,
            srefs,
            connector,
            emitter,
            starts: opts.starts,
            power: opts
                .bmc
                .map(|b| Arc::new(PowerControl::new(b).time_scaled(opts.bmc_time_scale))),
            become_password: opts.become_password,
            hold_resumed_until: opts.hold_resumed_until,
            flights: HashMap::new(),
            next_slot: 0,
            tasks: JoinSet::new(),
            task_slots: HashMap::new(),
            tx,
            rx,
            turn_tx,
            turn_rx,
            turn_replies: HashMap::new(),
            cancel: CancelLevel::None,
            paused: false,
            total_hosts,
            plan_name: plan.name.clone(),
        }
    }

    async fn run(
        &mut self,
        mut cancel: watch::Receiver<CancelLevel>,
        mut pause: Option<watch::Receiver<bool>>,
    ) -> RunOutcome {
        self.emitter
            .emit(EventKind::RunStarted {
                plan: self.plan_name.clone(),
                stages: self.srefs.len(),
                hosts: self.total_hosts,
            })
            .await;
        let mut cancel_open = true;
        let mut pause_open = pause.is_some();
        loop {
            self.cancel = self.cancel.max(*cancel.borrow_and_update());
            if self.cancel != CancelLevel::None {
                self.admission.stop();
            }
            if let Some(p) = &mut pause {
                let now = *p.borrow_and_update();
                if now != self.paused {
                    self.paused = now;
                    self.admission.set_paused(now);
                    let kind = if now {
                        EventKind::RunPaused
                    } else {
                        EventKind::RunContinued
                    };
                    self.emitter.emit(kind).await;
                }
            }
            if self.cancel == CancelLevel::Abort {
                self.abort_now().await;
                break;
            }
            let wake = self.admit().await;
            if self.flights.is_empty() && self.admission.all_finished() {
                break;
            }
            tokio::select! {
                Some(msg) = self.rx.recv() => self.handle(msg).await,
                Some(ask) = self.turn_rx.recv() => self.ask_turn(ask),
                // A task that panicked never sends its result: its end is the news.
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.reaped(joined).await;
                }
                _ = sleep_until_opt(wake), if wake.is_some() => {}
                changed = cancel.changed(), if cancel_open => {
                    if changed.is_err() {
                        cancel_open = false;
                    }
                }
                changed = pause_changed(&mut pause), if pause_open => {
                    if changed.is_err() {
                        pause_open = false;
                    }
                }
            }
        }
        let outcome = self.admission.outcome();
        self.emitter.emit(EventKind::RunFinished { outcome }).await;
        outcome
    }

    /// Does what admission says until it says wait; returns until when.
    async fn admit(&mut self) -> Option<Instant> {
        loop {
            match self.admission.next(Instant::now()) {
                Decision::StageStarted(i) => {
                    let event = EventKind::StageStarted {
                        stage: self.srefs[i].clone(),
                        hosts: self.admission.plan(i).hosts.len(),
                    };
                    self.emitter.emit(event).await;
                }
                Decision::StageFinished(i, outcome) => self.stage_finished(i, outcome).await,
                Decision::Start {
                    stage,
                    host,
                    canary,
                } => {
                    self.spawn_host(stage, host, canary).await;
                }
                Decision::Skip {
                    stage,
                    host,
                    earlier,
                    unreachable,
                } => {
                    let event = EventKind::HostFinished {
                        stage: self.srefs[stage].clone(),
                        host: self.host_ref(host),
                        outcome: HostOutcome::Skipped {
                            earlier: self.srefs[earlier].name.clone(),
                            unreachable,
                        },
                        duration: std::time::Duration::ZERO,
                    };
                    self.emitter.emit(event).await;
                }
                Decision::Waiting { stage, host, on } => {
                    let event = EventKind::HostWaiting {
                        stage: self.srefs[stage].clone(),
                        host: self.host_ref(host),
                        on: self.srefs[on].clone(),
                    };
                    self.emitter.emit(event).await;
                }
                Decision::Turn(slot) => {
                    if let Some(reply) = self.turn_replies.remove(&slot) {
                        let _ = reply.send(());
                    }
                }
                Decision::WaitUntil(at) => return Some(at),
                Decision::Blocked => return None,
            }
        }
    }

    fn host_ref(&self, host: usize) -> HostRef {
        HostRef {
            index: host,
            name: self.hosts[host].name.clone(),
        }
    }

    fn ask_turn(&mut self, ask: TurnAsk) {
        if !self.flights.contains_key(&ask.id) {
            return;
        }
        self.turn_replies.insert(ask.id, ask.reply);
        self.admission.ask_turn(ask.id, ask.turn, Instant::now());
    }

    async fn stage_finished(&mut self, i: usize, outcome: StageOutcome) {
        let (done, failed, skipped) = self.admission.counts(i);
        let event = EventKind::StageFinished {
            stage: self.srefs[i].clone(),
            outcome,
            done,
            failed,
            skipped,
        };
        self.emitter.emit(event).await;
    }

    async fn spawn_host(&mut self, i: usize, host: usize, canary: bool) {
        let plan = Arc::clone(self.admission.plan(i));
        let h = Arc::clone(&self.hosts[host]);
        let slot = self.next_slot;
        self.next_slot += 1;
        let start = self.starts.get(&(i, host)).cloned().unwrap_or_default();
        let first_step = match &start {
            HostStart::From { step, .. } => *step,
            _ => 0,
        };
        let first_kind = plan
            .steps
            .get(first_step)
            .map(StepKind::of)
            .unwrap_or(StepKind::Run);
        self.flights.insert(
            slot,
            Flight {
                stage: i,
                host,
                step: first_step,
                kind: first_kind,
                started: Instant::now(),
                canary,
            },
        );
        let host_ref = HostRef {
            index: host,
            name: h.name.clone(),
        };
        let sref = self.srefs[i].clone();
        self.emitter
            .emit(EventKind::HostStarted {
                stage: sref.clone(),
                host: host_ref.clone(),
                canary,
            })
            .await;
        let runner = HostRun::new(
            Arc::clone(&self.connector),
            h,
            host_ref,
            Arc::clone(&plan),
            sref,
            self.emitter.clone(),
        )
        .with_power(
            self.power.clone(),
            TurnLine::new(slot, self.turn_tx.clone()),
        )
        .with_become_password(self.become_password.clone());
        let tx = self.tx.clone();
        let hold = self
            .hold_resumed_until
            .filter(|_| matches!(start, HostStart::From { .. }));
        let task = self.tasks.spawn(async move {
            if let Some(until) = hold {
                tokio::time::sleep_until(until).await;
            }
            let progress = tx.clone();
            let steps = Arc::clone(&plan);
            let outcome = runner
                .run(start, move |step| {
                    let kind = steps
                        .steps
                        .get(step)
                        .map(StepKind::of)
                        .unwrap_or(StepKind::Run);
                    let _ = progress.send(Msg::Step { slot, step, kind });
                })
                .await;
            let _ = tx.send(Msg::Finished { slot, outcome });
        });
        self.task_slots.insert(task.id(), slot);
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Step { slot, step, kind } => {
                if let Some(f) = self.flights.get_mut(&slot) {
                    f.step = step;
                    f.kind = kind;
                }
            }
            Msg::Finished { slot, outcome } => {
                if let Some(flight) = self.flights.remove(&slot) {
                    self.land(slot, flight, outcome).await;
                }
            }
        }
        // Reap finished tasks so the set does not grow with the run.
        while let Some(joined) = self.tasks.try_join_next_with_id() {
            self.reaped(joined).await;
        }
    }

    /// A host task ended. One that panicked is landed as an internal failure
    /// of its host (counted against the budget like any failure), so the run
    /// goes on; one that finished normally already sent its outcome.
    async fn reaped(&mut self, joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let (id, panic) = match joined {
            Ok((id, ())) => (id, None),
            Err(e) => {
                let id = e.id();
                // Cancelled tasks (Ctrl-C twice) were landed by `abort_now`.
                let panic = e.try_into_panic().ok().map(|p| panic_message(&*p));
                (id, panic)
            }
        };
        let slot = self.task_slots.remove(&id);
        if let (Some(message), Some(slot)) = (panic, slot)
            && let Some(flight) = self.flights.remove(&slot)
        {
            let kind = flight.kind;
            let outcome = HostOutcome::Failed {
                step: flight.step,
                kind,
                failure: Failure::Internal,
                reason: format!("internal error: the host's task panicked: {message}"),
                output: String::new(),
            };
            self.land(slot, flight, outcome).await;
        }
    }

    /// Books a host's outcome with admission (counts, budget, canary
    /// verdict) and reports it.
    async fn land(&mut self, slot: u64, flight: Flight, outcome: HostOutcome) {
        if self.turn_replies.remove(&slot).is_some() {
            self.admission.withdraw_turn(slot, Instant::now());
        }
        self.admission
            .landed(flight.stage, flight.host, flight.canary, &outcome);
        let event = EventKind::HostFinished {
            stage: self.srefs[flight.stage].clone(),
            host: HostRef {
                index: flight.host,
                name: self.hosts[flight.host].name.clone(),
            },
            outcome,
            duration: flight.started.elapsed(),
        };
        self.emitter.emit(event).await;
    }

    /// Ctrl-C twice: drop every host task now and say where each one was.
    async fn abort_now(&mut self) {
        self.tasks.abort_all();
        let mut flights: Vec<(u64, Flight)> = self.flights.drain().collect();
        flights.sort_by_key(|(slot, _)| *slot);
        for (slot, flight) in flights {
            let outcome = HostOutcome::Interrupted {
                step: flight.step,
                kind: flight.kind,
            };
            self.land(slot, flight, outcome).await;
        }
        for (i, outcome) in self.admission.finish_rest() {
            self.stage_finished(i, outcome).await;
        }
    }
}

/// The text a panic was raised with, when it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The pause switch changed (`Err`: its sender is gone, it stays as it is).
async fn pause_changed(
    pause: &mut Option<watch::Receiver<bool>>,
) -> Result<(), watch::error::RecvError> {
    match pause {
        Some(p) => p.changed().await,
        None => std::future::pending().await,
    }
}
