//! The coordinator: one task owns all run state. Host tasks get their work
//! when they are spawned and send results back over an mpsc channel; the
//! coordinator `select!`s over those results, rate-limiter readiness and the
//! cancel signal.
//!
//! Owns stage ordering at run time, canaries, rolling windows, failure
//! budgets, `max_unavailable` across stages, rate limits and cancellation.
//! It must not talk to hosts itself (that is `steps`) or print.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::events::{
    Emitter, Event, EventKind, Failure, HostOutcome, HostRef, RunOutcome, StageOutcome, StageRef,
    StepKind,
};
use super::limits::Limiter;
use super::power::Power;
use super::steps::HostRun;
use super::{CancelLevel, EngineOptions, HostStart};
use crate::inventory::{Host, Inventory};
use crate::plan::{Plan, StagePlan};
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
    let mut emitter = Emitter::new(events);
    let pause = opts.pause.clone();
    if let Some(p) = &pause {
        emitter = emitter.with_hold(p.clone(), cancel.clone());
    }
    let mut coord = Coordinator::new(&plan, &inventory, connector, opts, emitter);
    coord.run(cancel, pause).await
}

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Waiting,
    Running,
    Finished(StageOutcome),
}

struct StageState {
    plan: Arc<StagePlan>,
    sref: StageRef,
    status: Status,
    /// Canaries not yet started, in plan order.
    canary_queue: VecDeque<usize>,
    /// The other hosts not yet started, grouped by the values of the labels
    /// that limit them (`max_unavailable` keys, `rate_per`), so a blocked rack
    /// or PDU never hides a free one behind it.
    buckets: Vec<VecDeque<usize>>,
    /// Buckets worth looking at, in turn (racks take turns).
    ready: VecDeque<usize>,
    /// Buckets whose next host waits for a (key, value) to have room, so a
    /// full rack costs nothing until one of its hosts lands.
    parked: HashMap<(usize, u32), Vec<usize>>,
    /// Buckets whose next host waits for its keyed rate token, by when.
    timed: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Hosts in `canary_queue` and `buckets`.
    remaining: usize,
    /// (index of the key in `Coordinator::host_values` rows, most in flight per value).
    limits: Vec<(usize, usize)>,
    /// A host that took this stage's rate token but still waits for the global one.
    held: Option<usize>,
    /// Canaries that have not passed yet; while > 0 only they run, one at a time.
    canaries_left: usize,
    in_flight: usize,
    done: usize,
    failed: usize,
    skipped: usize,
    /// Set when a canary failed or the budget was exceeded: start nothing new.
    abort: Option<String>,
    limiter: Option<Limiter>,
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
    stages: Vec<StageState>,
    connector: Arc<C>,
    emitter: Emitter,
    parallel: usize,
    global: Option<Limiter>,
    starts: HashMap<(usize, usize), HostStart>,
    /// Power-on pacing and the BMC client, shared by every host of the run.
    power: Option<Arc<Power>>,
    become_password: Option<crate::transport::redfish::Secret>,
    /// Per host, per label key any stage constrains with `max_unavailable`: an id of the host's value (None: no such label).
    host_values: Vec<Vec<Option<u32>>>,
    /// Hosts in flight per (constrained key index, value id), across all stages.
    unavailable: HashMap<(usize, u32), usize>,
    flights: HashMap<u64, Flight>,
    next_slot: u64,
    tasks: JoinSet<()>,
    /// The flight slot of each host task, to land a task that panicked.
    task_slots: HashMap<tokio::task::Id, u64>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Which stage gets the first chance in the next round (fairness under shared limits).
    rotate: usize,
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
        let mut constrained: Vec<String> = Vec::new();
        for s in &plan.stages {
            for (key, _) in &s.max_unavailable {
                if !constrained.contains(key) {
                    constrained.push(key.clone());
                }
            }
        }
        // Interned so the hot path compares integers, not strings.
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let host_values: Vec<Vec<Option<u32>>> = hosts
            .iter()
            .map(|h| {
                constrained
                    .iter()
                    .map(|k| {
                        h.label(k).map(|v| {
                            let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
                            *ids.entry(v).or_insert(next)
                        })
                    })
                    .collect()
            })
            .collect();
        let stages = plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let limiter = s.rate.map(|r| match s.rate_per {
                    Some(_) => Limiter::keyed(r),
                    None => Limiter::direct(r),
                });
                let limits = s
                    .max_unavailable
                    .iter()
                    .filter_map(|(key, n)| {
                        let k = constrained.iter().position(|c| c == key)?;
                        Some((k, (*n).max(1)))
                    })
                    .collect();
                StageState {
                    plan: Arc::new(s.clone()),
                    sref: StageRef {
                        index: i,
                        name: s.name.clone(),
                    },
                    status: Status::Waiting,
                    canary_queue: VecDeque::new(),
                    buckets: Vec::new(),
                    ready: VecDeque::new(),
                    parked: HashMap::new(),
                    timed: BinaryHeap::new(),
                    remaining: 0,
                    limits,
                    held: None,
                    canaries_left: s.canaries.min(s.hosts.len()),
                    in_flight: 0,
                    done: 0,
                    failed: 0,
                    skipped: 0,
                    abort: None,
                    limiter,
                }
            })
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let total_hosts = plan.stages.iter().map(|s| s.hosts.len()).sum();
        Coordinator {
            hosts,
            stages,
            connector,
            emitter,
            parallel: opts.parallel.max(1),
            global: opts.rate.map(Limiter::direct),
            starts: opts.starts,
            power: opts
                .bmc
                .map(|b| Arc::new(Power::new(b).time_scaled(opts.bmc_time_scale))),
            become_password: opts.become_password,
            host_values,
            unavailable: HashMap::new(),
            flights: HashMap::new(),
            next_slot: 0,
            tasks: JoinSet::new(),
            task_slots: HashMap::new(),
            tx,
            rx,
            rotate: 0,
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
                stages: self.stages.len(),
                hosts: self.total_hosts,
            })
            .await;
        let mut cancel_open = true;
        let mut pause_open = pause.is_some();
        loop {
            self.cancel = self.cancel.max(*cancel.borrow_and_update());
            if let Some(p) = &mut pause {
                let now = *p.borrow_and_update();
                if now != self.paused {
                    self.paused = now;
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
            self.advance_stages().await;
            let wake = self.start_hosts().await;
            self.advance_stages().await;
            if self.flights.is_empty() {
                if self.all_finished() {
                    break;
                }
                // Paused with nothing in flight is waiting, not a stall.
                if wake.is_none() && !self.paused && self.stall_guard().await {
                    continue;
                }
            }
            tokio::select! {
                Some(msg) = self.rx.recv() => self.handle(msg).await,
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
        let outcome = self.outcome();
        self.emitter.emit(EventKind::RunFinished { outcome }).await;
        outcome
    }

    fn all_finished(&self) -> bool {
        self.stages
            .iter()
            .all(|s| matches!(s.status, Status::Finished(_)))
    }

    fn outcome(&self) -> RunOutcome {
        if self.cancel != CancelLevel::None
            && self
                .stages
                .iter()
                .any(|s| s.status == Status::Finished(StageOutcome::Interrupted))
        {
            return RunOutcome::Interrupted;
        }
        let mut failures = false;
        for s in &self.stages {
            match &s.status {
                Status::Finished(StageOutcome::Aborted { .. }) => return RunOutcome::Aborted,
                Status::Finished(StageOutcome::Skipped { .. }) => failures = true,
                _ => {}
            }
            failures |= s.failed > 0 || s.skipped > 0;
        }
        if failures {
            RunOutcome::Failures
        } else {
            RunOutcome::Success
        }
    }

    /// Finishes stages that have nothing left, starts stages whose
    /// dependencies are done, skips those whose dependencies are not.
    async fn advance_stages(&mut self) {
        loop {
            let mut changed = false;
            for i in 0..self.stages.len() {
                match self.stages[i].status {
                    Status::Running => {
                        let s = &self.stages[i];
                        let nothing_left = s.remaining == 0 && s.held.is_none();
                        let stopped = s.abort.is_some() || self.cancel != CancelLevel::None;
                        if s.in_flight == 0 && (nothing_left || stopped) {
                            let outcome = match &s.abort {
                                Some(reason) => StageOutcome::Aborted {
                                    reason: reason.clone(),
                                },
                                None if nothing_left => StageOutcome::Done,
                                None => StageOutcome::Interrupted,
                            };
                            self.finish_stage(i, outcome).await;
                            changed = true;
                        }
                    }
                    Status::Waiting => {
                        let mut ready = true;
                        let mut blocked_by = None;
                        let mut interrupted = false;
                        for &d in &self.stages[i].plan.after {
                            match self.stages.get(d).map(|s| &s.status) {
                                Some(Status::Finished(StageOutcome::Done)) => {}
                                // Cut short by the operator: resumable, not skipped.
                                Some(Status::Finished(StageOutcome::Interrupted)) => {
                                    interrupted = true;
                                }
                                Some(Status::Finished(_)) => {
                                    blocked_by = self.stages.get(d).map(|s| s.sref.name.clone());
                                    break;
                                }
                                // An out-of-range index would be a planner bug; waiting forever would hide it.
                                None => {
                                    blocked_by = Some(format!("#{d}"));
                                    break;
                                }
                                Some(_) => ready = false,
                            }
                        }
                        if let Some(dependency) = blocked_by {
                            self.finish_stage(i, StageOutcome::Skipped { dependency })
                                .await;
                            changed = true;
                        } else if interrupted || (ready && self.cancel != CancelLevel::None) {
                            self.finish_stage(i, StageOutcome::Interrupted).await;
                            changed = true;
                        } else if ready {
                            self.start_stage(i).await;
                            changed = true;
                        }
                    }
                    Status::Finished(_) => {}
                }
            }
            if !changed {
                break;
            }
        }
    }

    async fn start_stage(&mut self, i: usize) {
        let stage = &mut self.stages[i];
        stage.status = Status::Running;
        let plan = Arc::clone(&stage.plan);
        let rate_key = plan.rate_per.as_deref();
        // Power-on waits its turn per PDU: PDUs take turns too, so the
        // window holds hosts of every PDU instead of idling behind a few.
        let powers_on = plan
            .steps
            .iter()
            .any(|s| matches!(s, crate::playbook::Step::PowerOn(_)));
        // (limited label values, rate_per value, pdu) -> bucket.
        type BucketKey<'a> = (Vec<Option<u32>>, Option<&'a str>, Option<&'a str>);
        let mut bucket_of: HashMap<BucketKey<'_>, usize> = HashMap::new();
        for (pos, &host) in plan.hosts.iter().enumerate() {
            let canary = pos < plan.canaries;
            // Hosts a previous run finished are counted, not run again.
            if self.starts.get(&(i, host)) == Some(&HostStart::Done) {
                stage.done += 1;
                if canary {
                    stage.canaries_left = stage.canaries_left.saturating_sub(1);
                }
                continue;
            }
            stage.remaining += 1;
            if canary {
                stage.canary_queue.push_back(host);
                continue;
            }
            let values: Vec<Option<u32>> = stage
                .limits
                .iter()
                .map(|&(k, _)| self.host_values[host][k])
                .collect();
            let pdu = if powers_on {
                self.hosts[host].label("pdu")
            } else {
                None
            };
            let key = (
                values,
                rate_key.and_then(|k| self.hosts[host].label(k)),
                pdu,
            );
            let next = stage.buckets.len();
            let b = *bucket_of.entry(key).or_insert(next);
            if b == next {
                stage.buckets.push(VecDeque::new());
                stage.ready.push_back(b);
            }
            stage.buckets[b].push_back(host);
        }
        let event = EventKind::StageStarted {
            stage: stage.sref.clone(),
            hosts: plan.hosts.len(),
        };
        self.emitter.emit(event).await;
    }

    async fn finish_stage(&mut self, i: usize, outcome: StageOutcome) {
        let stage = &mut self.stages[i];
        stage.status = Status::Finished(outcome.clone());
        let event = EventKind::StageFinished {
            stage: stage.sref.clone(),
            outcome,
            done: stage.done,
            failed: stage.failed,
            skipped: stage.skipped,
        };
        self.emitter.emit(event).await;
    }

    /// Nothing in flight, nothing to wait for, yet a running stage has hosts:
    /// only a limit that can never be met does this. Abort those stages
    /// rather than hang. Returns true when it changed something.
    async fn stall_guard(&mut self) -> bool {
        let mut changed = false;
        for i in 0..self.stages.len() {
            let s = &mut self.stages[i];
            if s.status == Status::Running
                && s.abort.is_none()
                && self.cancel == CancelLevel::None
                && (s.remaining > 0 || s.held.is_some())
            {
                s.abort = Some("no host can start: a limit can never be met".into());
                changed = true;
            }
        }
        changed
    }

    /// The first (key, value) of `host` that has no room left under `limits`.
    fn full_value(&self, limits: &[(usize, usize)], host: usize) -> Option<(usize, u32)> {
        limits.iter().find_map(|&(k, limit)| {
            let v = self.host_values[host][k]?;
            (self.unavailable.get(&(k, v)).copied().unwrap_or(0) >= limit).then_some((k, v))
        })
    }

    fn blocked_by_unavailable(&self, limits: &[(usize, usize)], host: usize) -> bool {
        limits.iter().any(|&(k, limit)| {
            self.host_values[host][k]
                .is_some_and(|v| self.unavailable.get(&(k, v)).copied().unwrap_or(0) >= limit)
        })
    }

    /// Starts every host the limits allow now. Returns when to try again if
    /// a rate limit is what holds hosts back.
    async fn start_hosts(&mut self) -> Option<Instant> {
        if self.cancel != CancelLevel::None || self.paused {
            return None;
        }
        let n = self.stages.len();
        let mut wake: Option<Instant> = None;
        let first = self.rotate;
        self.rotate = if n == 0 { 0 } else { (self.rotate + 1) % n };
        for k in 0..n {
            let i = (first + k) % n;
            loop {
                if self.flights.len() >= self.parallel {
                    return wake;
                }
                let s = &self.stages[i];
                if s.status != Status::Running || s.abort.is_some() {
                    break;
                }
                let canary_phase = s.canaries_left > 0;
                let window = if canary_phase {
                    1
                } else {
                    s.plan.window.max(1)
                };
                if s.in_flight >= window {
                    break;
                }
                let candidate = match self.pick(i, canary_phase, &mut wake) {
                    Some(c) => c,
                    None => break,
                };
                if let Some(global) = &self.global
                    && let Err(at) = global.check("")
                {
                    // Keep the stage token this host already took.
                    self.stages[i].held = Some(candidate);
                    wake = earliest(wake, at);
                    return wake;
                }
                self.spawn_host(i, candidate, canary_phase).await;
            }
        }
        wake
    }

    /// The next host of stage `i` that `max_unavailable` and the stage's rate
    /// limit let start now; it is taken out of its queue with its stage token.
    fn pick(&mut self, i: usize, canary_phase: bool, wake: &mut Option<Instant>) -> Option<usize> {
        let stage = &self.stages[i];
        if let Some(h) = stage.held {
            if self.blocked_by_unavailable(&stage.limits, h) {
                return None;
            }
            self.stages[i].held = None;
            return Some(h);
        }
        if canary_phase {
            // Canaries go strictly in order.
            let &h = stage.canary_queue.front()?;
            if self.blocked_by_unavailable(&stage.limits, h) || !self.take_token(i, h, wake) {
                return None;
            }
            let stage = &mut self.stages[i];
            stage.remaining -= 1;
            return stage.canary_queue.pop_front();
        }
        let now = Instant::now();
        let stage = &mut self.stages[i];
        while let Some(Reverse((at, b))) = stage.timed.peek().copied()
            && at <= now
        {
            stage.timed.pop();
            stage.ready.push_back(b);
        }
        while let Some(b) = self.stages[i].ready.pop_front() {
            let Some(&h) = self.stages[i].buckets[b].front() else {
                continue;
            };
            if let Some(full) = self.full_value(&self.stages[i].limits, h) {
                self.stages[i].parked.entry(full).or_default().push(b);
                continue;
            }
            let mut retry = None;
            if !self.take_token(i, h, &mut retry) {
                let stage = &mut self.stages[i];
                if let Some(at) = retry {
                    *wake = earliest(*wake, at);
                }
                match (&stage.limiter, retry) {
                    (Some(Limiter::Keyed(_)), Some(at)) => stage.timed.push(Reverse((at, b))),
                    // A stage-wide bucket is empty: nothing in this stage can start.
                    _ => {
                        stage.ready.push_front(b);
                        return None;
                    }
                }
                continue;
            }
            let stage = &mut self.stages[i];
            stage.remaining -= 1;
            let host = stage.buckets[b].pop_front();
            if !stage.buckets[b].is_empty() {
                stage.ready.push_back(b);
            }
            return host;
        }
        if let Some(Reverse((at, _))) = self.stages[i].timed.peek() {
            *wake = earliest(*wake, *at);
        }
        None
    }

    /// Takes the stage's rate token for `host`, or records when to try again.
    fn take_token(&self, i: usize, host: usize, wake: &mut Option<Instant>) -> bool {
        let stage = &self.stages[i];
        let Some(limiter) = &stage.limiter else {
            return true;
        };
        let key = stage
            .plan
            .rate_per
            .as_deref()
            .and_then(|k| self.hosts[host].label(k))
            .unwrap_or("");
        match limiter.check(key) {
            Ok(()) => true,
            Err(at) => {
                *wake = earliest(*wake, at);
                false
            }
        }
    }

    async fn spawn_host(&mut self, i: usize, host: usize, canary: bool) {
        let stage = &mut self.stages[i];
        stage.in_flight += 1;
        let h = Arc::clone(&self.hosts[host]);
        for (k, v) in self.host_values[host].iter().enumerate() {
            if let Some(v) = v {
                *self.unavailable.entry((k, *v)).or_insert(0) += 1;
            }
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        let start = self.starts.get(&(i, host)).cloned().unwrap_or_default();
        let first_step = match &start {
            HostStart::From { step, .. } => *step,
            _ => 0,
        };
        let first_kind = stage
            .plan
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
        let sref = stage.sref.clone();
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
            Arc::clone(&self.stages[i].plan),
            sref,
            self.emitter.clone(),
        )
        .with_power(self.power.clone())
        .with_become_password(self.become_password.clone());
        let tx = self.tx.clone();
        let steps = Arc::clone(&self.stages[i].plan);
        let task = self.tasks.spawn(async move {
            let progress = tx.clone();
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
                    self.land(flight, outcome).await;
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
            self.land(flight, outcome).await;
        }
    }

    /// Books a host's outcome: counts, budget, canary verdict, its event.
    async fn land(&mut self, flight: Flight, outcome: HostOutcome) {
        let host = Arc::clone(&self.hosts[flight.host]);
        for (k, v) in self.host_values[flight.host].iter().enumerate() {
            if let Some(v) = v
                && let Some(n) = self.unavailable.get_mut(&(k, *v))
            {
                *n = n.saturating_sub(1);
                // Room in this rack again: its waiting buckets, in every stage, get a look.
                for s in &mut self.stages {
                    if let Some(buckets) = s.parked.remove(&(k, *v)) {
                        s.ready.extend(buckets);
                    }
                }
            }
        }
        let stage = &mut self.stages[flight.stage];
        stage.in_flight = stage.in_flight.saturating_sub(1);
        match &outcome {
            HostOutcome::Done => {
                stage.done += 1;
                if flight.canary {
                    stage.canaries_left = stage.canaries_left.saturating_sub(1);
                }
            }
            HostOutcome::Failed { reason, .. } => {
                stage.failed += 1;
                if flight.canary {
                    stage
                        .abort
                        .get_or_insert_with(|| format!("canary {} failed: {reason}", host.name));
                } else if stage.failed > stage.plan.failure_budget {
                    let (failed, budget) = (stage.failed, stage.plan.failure_budget);
                    let hosts = if failed == 1 { "host" } else { "hosts" };
                    stage.abort.get_or_insert_with(|| {
                        format!("failure budget exceeded: {failed} {hosts} failed, budget {budget}")
                    });
                }
            }
            HostOutcome::Unreachable { reason, .. } => {
                stage.skipped += 1;
                if flight.canary {
                    stage.abort.get_or_insert_with(|| {
                        format!("canary {} was unreachable: {reason}", host.name)
                    });
                }
            }
            HostOutcome::Interrupted { .. } => {}
        }
        let event = EventKind::HostFinished {
            stage: stage.sref.clone(),
            host: HostRef {
                index: flight.host,
                name: host.name.clone(),
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
        for (_, flight) in flights {
            let outcome = HostOutcome::Interrupted {
                step: flight.step,
                kind: flight.kind,
            };
            self.land(flight, outcome).await;
        }
        for i in 0..self.stages.len() {
            if !matches!(self.stages[i].status, Status::Finished(_)) {
                let outcome = match &self.stages[i].abort {
                    Some(reason) => StageOutcome::Aborted {
                        reason: reason.clone(),
                    },
                    None => StageOutcome::Interrupted,
                };
                self.finish_stage(i, outcome).await;
            }
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

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
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
