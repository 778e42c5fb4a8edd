//! Admission: what may start now. A synchronous state machine the
//! coordinator drives with the time: [`Admission::next`] says what to do at
//! `now` (start or finish a stage, start a host, let a power-on go out) or
//! until when there is nothing to do; [`Admission::landed`] books a host's
//! outcome and [`Admission::ask_turn`] queues a power-on for its turn.
//!
//! Owns stage order at run time, canaries, rolling windows, failure budgets,
//! `max_unavailable` across stages, the stage and run rates, the cap on hosts
//! in flight, and power-on pacing (per-PDU spacing, the fleet-wide power-on
//! rate), so host tasks share no mutable pacing state.
//!
//! It reads no clock, spawns nothing, talks to no host and emits no event:
//! the coordinator (`scheduler`) turns its decisions into tasks and events,
//! and its unit tests drive it with synthetic instants.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::events::{HostOutcome, RunOutcome, StageOutcome};
use super::limits::Limiter;
use crate::inventory::Host;
use crate::plan::{Plan, StagePlan};
use crate::playbook::{Rate, Step};

/// What the coordinator does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Stage `0` begins: report it.
    StageStarted(usize),
    /// Stage `0` is over: report it with its counts ([`Admission::counts`]).
    StageFinished(usize, StageOutcome),
    /// Start `host` (an index into the inventory) in `stage`; it is booked in flight.
    Start {
        stage: usize,
        host: usize,
        canary: bool,
    },
    /// `host`'s turn came in `stage` but it does not run there: it failed
    /// (or, `unreachable`, was set aside as unreachable) in stage `earlier`.
    /// Booked as skipped, not failed, and not against the budget.
    Skip {
        stage: usize,
        host: usize,
        earlier: usize,
        unreachable: bool,
    },
    /// `host`'s turn came in `stage` but it waits for stage `on`: it is in
    /// flight there, or `on` comes before `stage` and has not finished it
    /// yet. It keeps its place: it goes first once it is free. Said once
    /// per host and stage.
    Waiting {
        stage: usize,
        host: usize,
        on: usize,
    },
    /// The power-on asked for under this id may go out now.
    Turn(u64),
    /// Nothing to do before this instant (or before a host lands).
    WaitUntil(Instant),
    /// Nothing to do until a host lands, a turn is asked, or the operator acts.
    Blocked,
}

/// What one power-on reset waits for before it goes out: its PDU's turn
/// (`interval` after the PDU's previous power-on, plus `jitter`) and the
/// fleet-wide power-on `rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerTurn {
    /// The host's `pdu` label (`None`: only the fleet rate applies).
    pub pdu: Option<String>,
    pub interval: Duration,
    pub rate: Rate,
    pub jitter: Duration,
}

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Waiting,
    Running,
    Finished(StageOutcome),
}

struct Stage {
    plan: Arc<StagePlan>,
    status: Status,
    /// Canaries not yet started, in plan order.
    canary_queue: VecDeque<usize>,
    /// The other hosts not yet started, grouped by the values of the labels
    /// that limit them (`max_unavailable` keys, `rate_per`, `pdu` when the
    /// stage powers hosts on), so a blocked rack or PDU never hides a free
    /// one behind it.
    buckets: Vec<VecDeque<usize>>,
    /// Buckets worth looking at, in turn (racks take turns).
    ready: VecDeque<usize>,
    /// Buckets whose next host waits for a (key, value) to have room, so a
    /// full rack costs nothing until one of its hosts lands.
    parked: HashMap<(usize, u32), Vec<usize>>,
    /// Buckets whose next host waits for its keyed rate token, by when.
    timed: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Hosts whose turn came while they were busy in another stage (or not
    /// yet finished by a stage this one comes after), by the order their
    /// turn came: they go first once free. Woken ones are here; those still
    /// blocked wait in `Admission::blocked` under their host.
    returned: std::collections::BTreeMap<u64, usize>,
    /// Order of the next host whose turn comes while it is blocked.
    next_order: u64,
    /// The canary at the front of the queue was said to wait (said once).
    canary_waiting: Option<usize>,
    /// Hosts this stage landed or skipped: a later stage may take them.
    settled: HashSet<usize>,
    /// This stage's hosts, for the stages that come after it and share
    /// some (empty when none does).
    members: HashSet<usize>,
    /// Stages this one comes after (directly or not) that share hosts
    /// with it: a shared host runs there first.
    before: Vec<usize>,
    /// Hosts in `canary_queue`, `buckets`, `returned` and `Admission::blocked`.
    remaining: usize,
    /// (index of the key in `Admission::host_values` rows, most in flight per value).
    limits: Vec<(usize, usize)>,
    /// A host that took this stage's rate token but still waits for the run's one.
    held: Option<usize>,
    /// Canaries that have not passed yet; while > 0 only they run, one at a time.
    canaries_left: usize,
    /// Growing waves still to run (the front one is running); then `window`.
    ramp: VecDeque<usize>,
    /// The running wave's hosts: started, landed, failed.
    wave: (usize, usize, usize),
    /// The window once the ramp is over: the plan's, or the size of a wave
    /// that had a failure (growth stops there).
    window: usize,
    in_flight: usize,
    done: usize,
    failed: usize,
    skipped: usize,
    /// Set when a canary failed or the budget was exceeded: start nothing new.
    abort: Option<String>,
    limiter: Option<Limiter>,
}

impl Stage {
    /// Ends the running wave once all its hosts landed: the window grows to
    /// the next size after a wave without a failure, and stays at this
    /// wave's size to the end after one with a failure.
    fn end_wave(&mut self) {
        let Some(&size) = self.ramp.front() else {
            return;
        };
        let (started, landed, failed) = self.wave;
        let all_started = started >= size || (self.remaining == 0 && self.held.is_none());
        if landed < started || !all_started {
            return;
        }
        if failed > 0 {
            self.window = size;
            self.ramp.clear();
        } else {
            self.ramp.pop_front();
        }
        self.wave = (0, 0, 0);
    }
}

/// One pass of host starts over the stages, beginning at a rotating stage so
/// stages sharing a limit take turns.
struct Round {
    first: usize,
    k: usize,
    wake: Option<Instant>,
}

/// Power-on turns: per PDU in FIFO order, then per fleet rate in FIFO order.
#[derive(Default)]
struct Turns {
    asks: HashMap<u64, PowerTurn>,
    /// Per PDU: when its last power-on was let out, and who waits, in order
    /// (the front is in `pending` or a fleet queue).
    pdus: HashMap<String, (Option<Instant>, VecDeque<u64>)>,
    /// Turns waiting for their PDU time: (ready at, order asked, id). Entries
    /// of withdrawn asks are dropped when they surface.
    pending: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    /// Turns whose PDU time came, waiting for their fleet rate, per rate.
    fleet: Vec<((u32, Duration), Limiter, VecDeque<u64>)>,
    order: u64,
}

impl Turns {
    fn ask(&mut self, id: u64, turn: PowerTurn, now: Instant) {
        let ready = match &turn.pdu {
            Some(pdu) => {
                let (last, queue) = self.pdus.entry(pdu.clone()).or_default();
                queue.push_back(id);
                if queue.len() > 1 {
                    self.asks.insert(id, turn);
                    return;
                }
                last.map_or(now, |t| t + turn.interval) + turn.jitter
            }
            None => now + turn.jitter,
        };
        self.asks.insert(id, turn);
        self.queue(id, ready);
    }

    fn queue(&mut self, id: u64, ready: Instant) {
        self.order += 1;
        self.pending.push(Reverse((ready, self.order, id)));
    }

    /// The next turn that may go out at `now`, taken.
    fn due(&mut self, now: Instant) -> Option<u64> {
        while let Some(&Reverse((at, _, id))) = self.pending.peek()
            && at <= now
        {
            self.pending.pop();
            let Some(turn) = self.asks.get(&id) else {
                continue;
            };
            let key = (turn.rate.count, turn.rate.per);
            match self.fleet.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, queue)) => queue.push_back(id),
                None => self
                    .fleet
                    .push((key, Limiter::direct(turn.rate), VecDeque::from([id]))),
            }
        }
        let id = self.fleet.iter_mut().find_map(|(_, bucket, queue)| {
            queue.front()?;
            bucket.check("", now).ok()?;
            queue.pop_front()
        })?;
        let turn = self.asks.remove(&id)?;
        if let Some(pdu) = &turn.pdu
            && let Some((last, queue)) = self.pdus.get_mut(pdu)
        {
            *last = Some(now);
            queue.pop_front();
            if let Some(&next) = queue.front()
                && let Some(t) = self.asks.get(&next)
            {
                let ready = now + t.interval + t.jitter;
                self.queue(next, ready);
            }
        }
        Some(id)
    }

    /// Withdraws an ask (its host ended without it); the PDU's next goes on.
    fn withdraw(&mut self, id: u64, now: Instant) {
        let Some(turn) = self.asks.remove(&id) else {
            return;
        };
        for (_, _, queue) in &mut self.fleet {
            queue.retain(|&x| x != id);
        }
        if let Some(pdu) = &turn.pdu
            && let Some((last, queue)) = self.pdus.get_mut(pdu)
        {
            let was_front = queue.front() == Some(&id);
            queue.retain(|&x| x != id);
            if was_front
                && let Some(&next) = queue.front()
                && let Some(t) = self.asks.get(&next)
            {
                let ready = last.map_or(now, |l| l + t.interval) + t.jitter;
                self.queue(next, ready);
            }
        }
    }

    /// When the next turn could go out (None: no turn waits).
    fn wake(&self) -> Option<Instant> {
        let pdu = self.pending.peek().map(|Reverse((at, _, _))| *at);
        let fleet = self
            .fleet
            .iter()
            .filter(|(_, _, q)| !q.is_empty())
            .filter_map(|(_, bucket, _)| bucket.due())
            .min();
        match (pdu, fleet) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The run's admission state.
pub struct Admission {
    hosts: Vec<Arc<Host>>,
    stages: Vec<Stage>,
    parallel: usize,
    global: Option<Limiter>,
    /// (stage, host) pairs a previous run finished: counted, not run again.
    done_before: HashSet<(usize, usize)>,
    /// Per host: the stage it is in flight in. A host is in flight in at
    /// most one stage at a time.
    busy: Vec<Option<usize>>,
    /// Per host: the first stage it failed in (true: set aside as
    /// unreachable there). Stages that have not started it skip it.
    failed_in: Vec<Option<(usize, bool)>>,
    /// Hosts whose turn came in a stage while they were blocked: (stage,
    /// order) per host, woken when the host lands or is skipped anywhere.
    blocked: HashMap<usize, Vec<(usize, u64)>>,
    /// Per host, per label key any stage constrains with `max_unavailable`:
    /// an id of the host's value (None: no such label).
    host_values: Vec<Vec<Option<u32>>>,
    /// Hosts in flight per (constrained key index, value id), across all stages.
    unavailable: HashMap<(usize, u32), usize>,
    in_flight: usize,
    /// Which stage gets the first chance in the next round (fairness under shared limits).
    rotate: usize,
    round: Option<Round>,
    /// Stage transitions are found by passes over the stages in order,
    /// repeated until one pass changes nothing: (next stage, this pass changed).
    scan: (usize, bool),
    turns: Turns,
    /// Ctrl-C: start nothing new; stages end as interrupted.
    stopping: bool,
    paused: bool,
}

impl Admission {
    /// `parallel`: hosts in flight across the run (at least 1); `rate`: the
    /// run's cap on host starts; `done_before`: (stage, host) pairs a
    /// previous run finished.
    pub fn new(
        plan: &Plan,
        hosts: Vec<Arc<Host>>,
        parallel: usize,
        rate: Option<Rate>,
        done_before: HashSet<(usize, usize)>,
    ) -> Admission {
        let mut constrained: Vec<&str> = Vec::new();
        for s in &plan.stages {
            for (key, _) in &s.max_unavailable {
                if !constrained.contains(&key.as_str()) {
                    constrained.push(key);
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
            .map(|s| Stage {
                plan: Arc::new(s.clone()),
                status: Status::Waiting,
                canary_queue: VecDeque::new(),
                buckets: Vec::new(),
                ready: VecDeque::new(),
                parked: HashMap::new(),
                timed: BinaryHeap::new(),
                returned: std::collections::BTreeMap::new(),
                next_order: 0,
                canary_waiting: None,
                settled: HashSet::new(),
                members: HashSet::new(),
                before: Vec::new(),
                remaining: 0,
                limits: s
                    .max_unavailable
                    .iter()
                    .filter_map(|(key, n)| {
                        let k = constrained.iter().position(|c| c == key)?;
                        Some((k, (*n).max(1)))
                    })
                    .collect(),
                held: None,
                canaries_left: s.canaries.min(s.hosts.len()),
                ramp: s.ramp.iter().copied().collect(),
                wave: (0, 0, 0),
                window: s.window.max(1),
                in_flight: 0,
                done: 0,
                failed: 0,
                skipped: 0,
                abort: None,
                limiter: s.rate.map(|r| match s.rate_per {
                    Some(_) => Limiter::keyed(r),
                    None => Limiter::direct(r),
                }),
            })
            .collect();
        let mut stages: Vec<Stage> = stages;
        link_shared_stages(plan, &mut stages);
        let n_hosts = hosts.len();
        Admission {
            hosts,
            stages,
            parallel: parallel.max(1),
            global: rate.map(Limiter::direct),
            done_before,
            busy: vec![None; n_hosts],
            failed_in: vec![None; n_hosts],
            blocked: HashMap::new(),
            host_values,
            unavailable: HashMap::new(),
            in_flight: 0,
            rotate: 0,
            round: None,
            scan: (0, false),
            turns: Turns::default(),
            stopping: false,
            paused: false,
        }
    }

    /// The stage's plan, shared (host tasks read their steps from it).
    pub fn plan(&self, stage: usize) -> &Arc<StagePlan> {
        &self.stages[stage].plan
    }

    /// (done, failed, skipped) of a stage so far.
    pub fn counts(&self, stage: usize) -> (usize, usize, usize) {
        let s = &self.stages[stage];
        (s.done, s.failed, s.skipped)
    }

    /// Paused by the operator: start no host (turns of hosts in flight still go out).
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Ctrl-C: start nothing new; running stages end when their hosts land.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    pub fn all_finished(&self) -> bool {
        self.stages
            .iter()
            .all(|s| matches!(s.status, Status::Finished(_)))
    }

    /// What to do at `now`. Call until it says [`Decision::WaitUntil`] or
    /// [`Decision::Blocked`], then again when the time comes or something
    /// happened (a host landed, a turn was asked, the operator acted).
    pub fn next(&mut self, now: Instant) -> Decision {
        loop {
            if let Some(d) = self.advance() {
                return d;
            }
            if let Some(id) = self.turns.due(now) {
                return Decision::Turn(id);
            }
            let wake = match self.start_next(now) {
                Ok(d) => return d,
                Err(wake) => wake,
            };
            let wake = match (wake, self.turns.wake()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if wake.is_none() && self.in_flight == 0 && !self.paused && self.stall() {
                continue;
            }
            return wake.map_or(Decision::Blocked, Decision::WaitUntil);
        }
    }

    /// Queues power-on `id` (unique while it waits) for its turn.
    pub fn ask_turn(&mut self, id: u64, turn: PowerTurn, now: Instant) {
        self.turns.ask(id, turn, now);
    }

    /// Withdraws a turn asked for and not yet granted (its host ended).
    pub fn withdraw_turn(&mut self, id: u64, now: Instant) {
        self.turns.withdraw(id, now);
    }

    /// Books the outcome of a host [`Decision::Start`] started: frees its
    /// room, counts it, and stops its stage when a canary failed or the
    /// failure budget is exceeded.
    pub fn landed(&mut self, stage: usize, host: usize, canary: bool, outcome: &HostOutcome) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.busy[host] == Some(stage) {
            self.busy[host] = None;
        }
        if matches!(
            outcome,
            HostOutcome::Failed { .. } | HostOutcome::Unreachable { .. }
        ) && self.failed_in[host].is_none()
        {
            let unreachable = matches!(outcome, HostOutcome::Unreachable { .. });
            self.failed_in[host] = Some((stage, unreachable));
        }
        self.settle(stage, host);
        for (k, v) in self.host_values[host].iter().enumerate() {
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
        let name = &self.hosts[host].name;
        let s = &mut self.stages[stage];
        s.in_flight = s.in_flight.saturating_sub(1);
        match outcome {
            HostOutcome::Done => {
                s.done += 1;
                if canary {
                    s.canaries_left = s.canaries_left.saturating_sub(1);
                }
            }
            HostOutcome::Failed { reason, .. } => {
                s.failed += 1;
                if canary {
                    s.abort
                        .get_or_insert_with(|| format!("canary {name} failed: {reason}"));
                } else if s.failed > s.plan.failure_budget {
                    let (failed, budget) = (s.failed, s.plan.failure_budget);
                    let hosts = if failed == 1 { "host" } else { "hosts" };
                    s.abort.get_or_insert_with(|| {
                        format!("failure budget exceeded: {failed} {hosts} failed, budget {budget}")
                    });
                }
            }
            HostOutcome::Unreachable { reason, .. } => {
                s.skipped += 1;
                if canary {
                    s.abort
                        .get_or_insert_with(|| format!("canary {name} was unreachable: {reason}"));
                }
            }
            HostOutcome::Interrupted { .. } | HostOutcome::Skipped { .. } => {}
        }
        if !canary && !s.ramp.is_empty() {
            s.wave.1 += 1;
            s.wave.2 += usize::from(matches!(outcome, HostOutcome::Failed { .. }));
            s.end_wave();
        }
    }

    /// `host` is over in `stage` (landed or skipped): stages after it may
    /// take it, and every stage whose turn for it came meanwhile looks again.
    fn settle(&mut self, stage: usize, host: usize) {
        let s = &mut self.stages[stage];
        if !s.members.is_empty() {
            s.settled.insert(host);
        }
        if let Some(waiting) = self.blocked.remove(&host) {
            for (i, order) in waiting {
                self.stages[i].returned.insert(order, host);
            }
        }
    }

    /// The stage `host` waits for before it may start in stage `i`: the one
    /// it is in flight in, or a stage `i` comes after that has it and has
    /// not finished it yet.
    fn blocked_on(&self, i: usize, host: usize) -> Option<usize> {
        if let Some(d) = self.busy[host] {
            return Some(d);
        }
        self.stages[i].before.iter().copied().find(|&d| {
            let dep = &self.stages[d];
            !matches!(dep.status, Status::Finished(_))
                && dep.members.contains(&host)
                && !dep.settled.contains(&host)
        })
    }

    /// Why stage `i` skips `host`: the stage it failed in first (true: set
    /// aside as unreachable there), unless `i` retries failed hosts.
    fn skip_reason(&self, i: usize, host: usize) -> Option<(usize, bool)> {
        if self.stages[i].plan.retry_failed_hosts {
            return None;
        }
        self.failed_in[host].filter(|&(d, _)| d != i)
    }

    /// Books `host`, taken out of stage `i`'s queues, as skipped.
    fn skip(&mut self, i: usize, host: usize, (earlier, unreachable): (usize, bool)) -> Pick {
        let s = &mut self.stages[i];
        s.remaining -= 1;
        s.skipped += 1;
        self.settle(i, host);
        Pick::Skip {
            host,
            earlier,
            unreachable,
        }
    }

    /// `host`, taken out of stage `i`'s queues, waits for stage `on`; it
    /// keeps its place among the hosts that waited before it.
    fn defer(&mut self, i: usize, host: usize, on: usize) -> Pick {
        let s = &mut self.stages[i];
        let order = s.next_order;
        s.next_order += 1;
        self.blocked.entry(host).or_default().push((i, order));
        Pick::Wait { host, on }
    }

    /// Ctrl-C twice, after every host in flight landed: the outcome of every
    /// stage not finished yet, which is now finished.
    pub fn finish_rest(&mut self) -> Vec<(usize, StageOutcome)> {
        let mut out = Vec::new();
        for (i, s) in self.stages.iter_mut().enumerate() {
            if !matches!(s.status, Status::Finished(_)) {
                let outcome = match &s.abort {
                    Some(reason) => StageOutcome::Aborted {
                        reason: reason.clone(),
                    },
                    None => StageOutcome::Interrupted,
                };
                s.status = Status::Finished(outcome.clone());
                out.push((i, outcome));
            }
        }
        out
    }

    pub fn outcome(&self) -> RunOutcome {
        if self.stopping
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

    /// The next stage transition: finishes stages that have nothing left,
    /// starts stages whose dependencies are done, skips those whose
    /// dependencies are not. Passes over the stages in order until one
    /// changes nothing.
    fn advance(&mut self) -> Option<Decision> {
        let n = self.stages.len();
        loop {
            let (i, changed) = self.scan;
            if i >= n {
                if !changed {
                    self.scan = (0, false);
                    return None;
                }
                self.scan = (0, false);
                continue;
            }
            self.scan.0 += 1;
            if let Some(d) = self.transition(i) {
                self.scan.1 = true;
                return Some(d);
            }
        }
    }

    fn transition(&mut self, i: usize) -> Option<Decision> {
        match self.stages[i].status {
            Status::Running => {
                if self.stages[i].abort.is_none()
                    && let Some(reason) = self.gate_broken(i)
                {
                    self.stages[i].abort = Some(reason);
                }
                let s = &self.stages[i];
                let nothing_left = s.remaining == 0 && s.held.is_none();
                let stopped = s.abort.is_some() || self.stopping;
                if s.in_flight == 0 && (nothing_left || stopped) {
                    let outcome = match &s.abort {
                        Some(reason) => StageOutcome::Aborted {
                            reason: reason.clone(),
                        },
                        None if nothing_left => StageOutcome::Done,
                        None => StageOutcome::Interrupted,
                    };
                    return Some(self.finish(i, outcome));
                }
                None
            }
            Status::Waiting => {
                let mut ready = true;
                let mut interrupted = false;
                for &d in &self.stages[i].plan.after {
                    match self.stages.get(d).map(|s| &s.status) {
                        Some(Status::Finished(StageOutcome::Done)) => {}
                        // Cut short by the operator: resumable, not skipped.
                        Some(Status::Finished(StageOutcome::Interrupted)) => interrupted = true,
                        Some(Status::Finished(_)) => {
                            let dependency = self.stages[d].plan.name.clone();
                            return Some(self.finish(i, StageOutcome::Skipped { dependency }));
                        }
                        // An out-of-range index would be a planner bug; waiting forever would hide it.
                        None => {
                            let dependency = format!("#{d}");
                            return Some(self.finish(i, StageOutcome::Skipped { dependency }));
                        }
                        Some(Status::Running) if self.gate_open(i, d) => {}
                        Some(_) => ready = false,
                    }
                }
                if interrupted || (ready && self.stopping) {
                    Some(self.finish(i, StageOutcome::Interrupted))
                } else if ready {
                    self.start_stage(i);
                    Some(Decision::StageStarted(i))
                } else {
                    None
                }
            }
            Status::Finished(_) => None,
        }
    }

    /// Stage `i` has a readiness gate on running stage `d` and it is open:
    /// the gate's share of `d`'s hosts is done and `d` is inside its budget.
    fn gate_open(&self, i: usize, d: usize) -> bool {
        let dep = &self.stages[d];
        self.stages[i]
            .plan
            .gate(d)
            .is_some_and(|p| dep.abort.is_none() && dep.done >= dep.plan.gate_hosts(p))
    }

    /// Why running stage `i` must stop starting hosts: a stage it started
    /// after at a readiness gate stopped since (over its budget, a canary
    /// failed, or stopped in turn by its own gate).
    fn gate_broken(&self, i: usize) -> Option<String> {
        let s = &self.stages[i];
        s.plan.gates.iter().find_map(|&(d, p)| {
            let dep = self.stages.get(d)?;
            let reason = match (&dep.abort, &dep.status) {
                (Some(reason), _) => reason.clone(),
                (None, Status::Finished(StageOutcome::Aborted { reason })) => reason.clone(),
                (None, Status::Finished(StageOutcome::Skipped { dependency })) => {
                    format!("it was skipped: `{dependency}` did not finish")
                }
                _ => return None,
            };
            Some(format!(
                "stage `{}`, which this stage started after at its {p}% gate, stopped: {reason}",
                dep.plan.name
            ))
        })
    }

    fn finish(&mut self, i: usize, outcome: StageOutcome) -> Decision {
        self.stages[i].status = Status::Finished(outcome.clone());
        Decision::StageFinished(i, outcome)
    }

    fn start_stage(&mut self, i: usize) {
        let stage = &mut self.stages[i];
        stage.status = Status::Running;
        let plan = Arc::clone(&stage.plan);
        let rate_key = plan.rate_per.as_deref();
        // Power-on waits its turn per PDU: PDUs take turns too, so the
        // window holds hosts of every PDU instead of idling behind a few.
        let powers_on = plan.steps.iter().any(|s| matches!(s, Step::PowerOn(_)));
        // (limited label values, rate_per value, pdu) -> bucket.
        type BucketKey<'a> = (Vec<Option<u32>>, Option<&'a str>, Option<&'a str>);
        let mut bucket_of: HashMap<BucketKey<'_>, usize> = HashMap::new();
        for (pos, &host) in plan.hosts.iter().enumerate() {
            let canary = pos < plan.canaries;
            if self.done_before.contains(&(i, host)) {
                if !stage.members.is_empty() {
                    stage.settled.insert(host);
                }
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
    }

    /// Nothing in flight, nothing to wait for, yet a running stage has hosts:
    /// only a limit that can never be met does this. Abort those stages
    /// rather than hang. Returns true when it changed something.
    fn stall(&mut self) -> bool {
        if self.stopping {
            return false;
        }
        let mut changed = false;
        for s in &mut self.stages {
            if s.status == Status::Running
                && s.abort.is_none()
                && (s.remaining > 0 || s.held.is_some())
            {
                s.abort = Some("no host can start: a limit can never be met".into());
                changed = true;
            }
        }
        changed
    }

    /// The next host start of the current round, or (the round over) when
    /// to try again if a rate limit is what holds hosts back.
    fn start_next(&mut self, now: Instant) -> Result<Decision, Option<Instant>> {
        if self.stopping || self.paused {
            self.round = None;
            return Err(None);
        }
        let n = self.stages.len();
        let mut round = match self.round.take() {
            Some(r) => r,
            None => {
                let r = Round {
                    first: self.rotate,
                    k: 0,
                    wake: None,
                };
                self.rotate = if n == 0 { 0 } else { (self.rotate + 1) % n };
                r
            }
        };
        while round.k < n {
            if self.in_flight >= self.parallel {
                return Err(round.wake);
            }
            let i = (round.first + round.k) % n;
            let s = &self.stages[i];
            if s.status != Status::Running || s.abort.is_some() {
                round.k += 1;
                continue;
            }
            let canary_phase = s.canaries_left > 0;
            // Room left under the window.
            let room = match s.ramp.front() {
                _ if canary_phase => 1usize.saturating_sub(s.in_flight),
                // A wave holds its hosts only: the next ones wait for it to end.
                Some(&size) => size.saturating_sub(s.wave.0),
                None => s.window.saturating_sub(s.in_flight),
            };
            if room == 0 {
                round.k += 1;
                continue;
            }
            let host = match self.pick(i, canary_phase, now, &mut round.wake) {
                None => {
                    round.k += 1;
                    continue;
                }
                Some(Pick::Start(host)) => host,
                Some(Pick::Skip {
                    host,
                    earlier,
                    unreachable,
                }) => {
                    self.round = Some(round);
                    return Ok(Decision::Skip {
                        stage: i,
                        host,
                        earlier,
                        unreachable,
                    });
                }
                Some(Pick::Wait { host, on }) => {
                    self.round = Some(round);
                    return Ok(Decision::Waiting { stage: i, host, on });
                }
            };
            if let Some(global) = &mut self.global
                && let Err(at) = global.check("", now)
            {
                // Keep the stage token this host already took.
                self.stages[i].held = Some(host);
                return Err(earliest(round.wake, at));
            }
            self.book(i, host, canary_phase);
            self.round = Some(round);
            return Ok(Decision::Start {
                stage: i,
                host,
                canary: canary_phase,
            });
        }
        Err(round.wake)
    }

    fn book(&mut self, i: usize, host: usize, canary: bool) {
        self.in_flight += 1;
        self.busy[host] = Some(i);
        let s = &mut self.stages[i];
        s.in_flight += 1;
        if !canary && !s.ramp.is_empty() {
            s.wave.0 += 1;
        }
        for (k, v) in self.host_values[host].iter().enumerate() {
            if let Some(v) = v {
                *self.unavailable.entry((k, *v)).or_insert(0) += 1;
            }
        }
    }

    /// The first (key, value) of `host` that has no room left under `limits`.
    fn full_value(&self, limits: &[(usize, usize)], host: usize) -> Option<(usize, u32)> {
        limits.iter().find_map(|&(k, limit)| {
            let v = self.host_values[host][k]?;
            (self.unavailable.get(&(k, v)).copied().unwrap_or(0) >= limit).then_some((k, v))
        })
    }

    /// The next host of stage `i` that `max_unavailable` and the stage's rate
    /// limit let start at `now`; it is taken out of its queue with its stage
    /// token. On the way, a host that failed in another stage is skipped and
    /// one blocked by another stage is set aside to wait (each is a pick of
    /// its own, for the coordinator to report).
    fn pick(
        &mut self,
        i: usize,
        canary_phase: bool,
        now: Instant,
        wake: &mut Option<Instant>,
    ) -> Option<Pick> {
        let stage = &self.stages[i];
        if let Some(h) = stage.held {
            if self.full_value(&stage.limits, h).is_some() {
                return None;
            }
            self.stages[i].held = None;
            if let Some(on) = self.blocked_on(i, h) {
                return Some(self.defer(i, h, on));
            }
            return Some(Pick::Start(h));
        }
        if canary_phase {
            // Canaries go strictly in order.
            let &h = stage.canary_queue.front()?;
            if let Some(why) = self.skip_reason(i, h) {
                let stage = &mut self.stages[i];
                stage.canary_queue.pop_front();
                // Not replaced: the canary phase is one host shorter.
                stage.canaries_left = stage.canaries_left.saturating_sub(1);
                return Some(self.skip(i, h, why));
            }
            if let Some(on) = self.blocked_on(i, h) {
                let stage = &mut self.stages[i];
                if stage.canary_waiting == Some(h) {
                    return None;
                }
                stage.canary_waiting = Some(h);
                return Some(Pick::Wait { host: h, on });
            }
            if self.full_value(&stage.limits, h).is_some() || !self.take_token(i, h, now, wake) {
                return None;
            }
            let stage = &mut self.stages[i];
            stage.remaining -= 1;
            return stage.canary_queue.pop_front().map(Pick::Start);
        }
        if !self.stages[i].returned.is_empty() {
            let returned: Vec<(u64, usize)> = self.stages[i]
                .returned
                .iter()
                .map(|(&o, &h)| (o, h))
                .collect();
            for (order, h) in returned {
                if let Some(why) = self.skip_reason(i, h) {
                    self.stages[i].returned.remove(&order);
                    return Some(self.skip(i, h, why));
                }
                if self.blocked_on(i, h).is_some() {
                    // Taken again before this stage's turn: wait again, same place.
                    self.stages[i].returned.remove(&order);
                    self.blocked.entry(h).or_default().push((i, order));
                    continue;
                }
                if self.full_value(&self.stages[i].limits, h).is_some() {
                    continue;
                }
                if !self.take_token(i, h, now, wake) {
                    return None;
                }
                let stage = &mut self.stages[i];
                stage.returned.remove(&order);
                stage.remaining -= 1;
                return Some(Pick::Start(h));
            }
        }
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
            let skip = self.skip_reason(i, h);
            let on = self.blocked_on(i, h);
            if skip.is_some() || on.is_some() {
                let stage = &mut self.stages[i];
                stage.buckets[b].pop_front();
                // The bucket keeps its turn for its next host.
                stage.ready.push_front(b);
                return Some(match (skip, on) {
                    (Some(why), _) => self.skip(i, h, why),
                    (None, Some(on)) => self.defer(i, h, on),
                    (None, None) => unreachable!("one of them is set"),
                });
            }
            if let Some(full) = self.full_value(&self.stages[i].limits, h) {
                self.stages[i].parked.entry(full).or_default().push(b);
                continue;
            }
            let mut retry = None;
            if !self.take_token(i, h, now, &mut retry) {
                let stage = &mut self.stages[i];
                if let Some(at) = retry {
                    *wake = earliest(*wake, at);
                }
                let keyed = stage.limiter.as_ref().is_some_and(Limiter::is_keyed);
                match retry {
                    Some(at) if keyed => stage.timed.push(Reverse((at, b))),
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
            return host.map(Pick::Start);
        }
        if let Some(Reverse((at, _))) = self.stages[i].timed.peek() {
            *wake = earliest(*wake, *at);
        }
        None
    }

    /// Takes the stage's rate token for `host`, or records when to try again.
    fn take_token(
        &mut self,
        i: usize,
        host: usize,
        now: Instant,
        wake: &mut Option<Instant>,
    ) -> bool {
        let stage = &mut self.stages[i];
        let Some(limiter) = &mut stage.limiter else {
            return true;
        };
        let key = stage
            .plan
            .rate_per
            .as_deref()
            .and_then(|k| self.hosts[host].label(k))
            .unwrap_or("");
        match limiter.check(key, now) {
            Ok(()) => true,
            Err(at) => {
                *wake = earliest(*wake, at);
                false
            }
        }
    }
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// What [`Admission::pick`] found for a stage.
enum Pick {
    Start(usize),
    Skip {
        host: usize,
        earlier: usize,
        unreachable: bool,
    },
    Wait {
        host: usize,
        on: usize,
    },
}

/// Fills each stage's `before` (the stages it comes after, directly or
/// through others, that share hosts with it) and the `members` of those.
/// `after` points to earlier stages only (dependency order).
fn link_shared_stages(plan: &Plan, stages: &mut [Stage]) {
    let n = plan.stages.len();
    let mut preds: Vec<Vec<bool>> = vec![vec![false; n]; n];
    for (i, s) in plan.stages.iter().enumerate() {
        for &d in &s.after {
            if d >= i {
                continue;
            }
            preds[i][d] = true;
            let (head, tail) = preds.split_at_mut(i);
            for (k, p) in head[d].iter().enumerate() {
                tail[0][k] |= *p;
            }
        }
    }
    let sets: Vec<HashSet<usize>> = plan
        .stages
        .iter()
        .map(|s| s.hosts.iter().copied().collect())
        .collect();
    let mut needed = vec![false; n];
    for i in 0..n {
        for d in 0..i {
            if preds[i][d] && plan.stages[i].hosts.iter().any(|h| sets[d].contains(h)) {
                stages[i].before.push(d);
                needed[d] = true;
            }
        }
    }
    for (d, set) in sets.into_iter().enumerate() {
        if needed[d] {
            stages[d].members = set;
        }
    }
}

/// A host's request for its power-on turn, on its way to the coordinator.
#[derive(Debug)]
pub struct TurnAsk {
    pub id: u64,
    pub turn: PowerTurn,
    /// Answered when the turn comes; dropped if the run ends first.
    pub reply: tokio::sync::oneshot::Sender<()>,
}

/// The host side of power-on turns: a line to the coordinator, which asks
/// its admission and answers when the turn comes.
#[derive(Debug, Clone)]
pub struct TurnLine {
    id: u64,
    tx: tokio::sync::mpsc::UnboundedSender<TurnAsk>,
}

/// The coordinator ended before the turn came (the run is being torn down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoTurn;

impl TurnLine {
    /// `id` names the host's flight; one host asks one turn at a time.
    pub fn new(id: u64, tx: tokio::sync::mpsc::UnboundedSender<TurnAsk>) -> TurnLine {
        TurnLine { id, tx }
    }

    /// Waits for the turn of one power-on.
    pub async fn wait(&self, turn: PowerTurn) -> Result<(), NoTurn> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let ask = TurnAsk {
            id: self.id,
            turn,
            reply,
        };
        self.tx.send(ask).map_err(|_| NoTurn)?;
        answer.await.map_err(|_| NoTurn)
    }
}

#[cfg(test)]
mod tests {
    //! The state machine alone: no runtime, synthetic instants.

    use std::collections::BTreeMap;

    use super::*;
    use crate::diag::Span;
    use crate::engine::StepKind;
    use crate::engine::failure::Failure;
    use crate::playbook::OnUnreachable;

    fn host(i: usize, labels: &[(&str, &str)]) -> Arc<Host> {
        Arc::new(
            Host {
                name: format!("h{i}"),
                address: format!("10.0.0.{i}"),
                port: 22,
                user: None,
                jump: None,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                identity_file: None,
                escalation: None,
                bmc: None,
                groups: vec![],
                span: Span::file(Arc::from("t")),
            }
            .read_bmc_label(),
        )
    }

    fn stage(name: &str, hosts: &[usize]) -> StagePlan {
        StagePlan {
            name: name.into(),
            after: vec![],
            gates: vec![],
            ramp: vec![],
            hosts: hosts.to_vec(),
            canaries: 0,
            window: 1,
            failure_budget: 0,
            rate: None,
            rate_per: None,
            max_unavailable: vec![],
            on_unreachable: OnUnreachable::Fail,
            retry_failed_hosts: false,
            escalation: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(60),
            steps: vec![],
            remediate: None,
            host_estimate: Duration::ZERO,
            estimate: Duration::ZERO,
        }
    }

    fn admission(stages: Vec<StagePlan>, hosts: Vec<Arc<Host>>) -> Admission {
        let plan = Plan {
            name: "p".into(),
            waves: vec![],
            stages,
            warnings: vec![],
            estimate: Duration::ZERO,
        };
        Admission::new(&plan, hosts, usize::MAX, None, HashSet::new())
    }

    fn failed() -> HostOutcome {
        HostOutcome::Failed {
            step: 0,
            kind: StepKind::Run,
            failure: Failure::Internal,
            reason: "boom".into(),
            output: String::new(),
        }
    }

    /// Every decision until a wait, with starts as (stage, host).
    fn drain(a: &mut Admission, now: Instant) -> (Vec<Decision>, Decision) {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match a.next(now) {
                d @ (Decision::WaitUntil(_) | Decision::Blocked) => return (out, d),
                d => out.push(d),
            }
        }
        panic!("admission never waited: {out:?}");
    }

    fn starts(ds: &[Decision]) -> Vec<usize> {
        ds.iter()
            .filter_map(|d| match d {
                Decision::Start { host, .. } => Some(*host),
                _ => None,
            })
            .collect()
    }

    fn turn(pdu: Option<&str>, interval: f64, per_second: u32) -> PowerTurn {
        PowerTurn {
            pdu: pdu.map(str::to_owned),
            interval: Duration::from_secs_f64(interval),
            rate: Rate {
                count: per_second,
                per: Duration::from_secs(1),
            },
            jitter: Duration::ZERO,
        }
    }

    #[test]
    fn a_canary_goes_alone_then_the_window_fills_and_refills() {
        let hosts = (0..4).map(|i| host(i, &[])).collect();
        let mut s = stage("s", &[0, 1, 2, 3]);
        s.canaries = 1;
        s.window = 2;
        let mut a = admission(vec![s], hosts);
        let t0 = Instant::now();
        let (ds, wait) = drain(&mut a, t0);
        assert_eq!(ds[0], Decision::StageStarted(0));
        assert_eq!(
            ds[1],
            Decision::Start {
                stage: 0,
                host: 0,
                canary: true
            }
        );
        assert_eq!(ds.len(), 2);
        assert_eq!(wait, Decision::Blocked);
        a.landed(0, 0, true, &HostOutcome::Done);
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(starts(&ds), [1, 2]);
        a.landed(0, 2, false, &HostOutcome::Done);
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(starts(&ds), [3]);
        a.landed(0, 1, false, &HostOutcome::Done);
        a.landed(0, 3, false, &HostOutcome::Done);
        let (ds, wait) = drain(&mut a, t0);
        assert_eq!(ds, [Decision::StageFinished(0, StageOutcome::Done)]);
        assert_eq!(wait, Decision::Blocked);
        assert!(a.all_finished());
        assert_eq!(a.counts(0), (4, 0, 0));
        assert_eq!(a.outcome(), RunOutcome::Success);
    }

    #[test]
    fn an_exceeded_budget_stops_starts_and_skips_the_dependants() {
        let hosts = (0..4).map(|i| host(i, &[])).collect();
        let mut first = stage("first", &[0, 1, 2]);
        first.window = 2;
        first.failure_budget = 1;
        let mut second = stage("second", &[3]);
        second.after = vec![0];
        let mut a = admission(vec![first, second], hosts);
        let t0 = Instant::now();
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(starts(&ds), [0, 1]);
        a.landed(0, 0, false, &failed());
        // One failure is within the budget: the window refills.
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(starts(&ds), [2]);
        a.landed(0, 1, false, &failed());
        let (ds, _) = drain(&mut a, t0);
        assert!(ds.is_empty(), "{ds:?}");
        a.landed(0, 2, false, &HostOutcome::Done);
        let (ds, _) = drain(&mut a, t0);
        assert!(matches!(
            &ds[0],
            Decision::StageFinished(0, StageOutcome::Aborted { reason }) if reason.contains("budget 1")
        ));
        assert_eq!(
            ds[1],
            Decision::StageFinished(
                1,
                StageOutcome::Skipped {
                    dependency: "first".into()
                }
            )
        );
        assert_eq!(a.outcome(), RunOutcome::Aborted);
    }

    #[test]
    fn max_unavailable_counts_hosts_of_every_stage() {
        let hosts = vec![
            host(0, &[("rack", "r1")]),
            host(1, &[("rack", "r1")]),
            host(2, &[("rack", "r2")]),
        ];
        let mut a1 = stage("a", &[0]);
        let mut b = stage("b", &[1, 2]);
        b.window = 2;
        for s in [&mut a1, &mut b] {
            s.max_unavailable = vec![("rack".into(), 1)];
        }
        let mut a = admission(vec![a1, b], hosts);
        let t0 = Instant::now();
        let (ds, _) = drain(&mut a, t0);
        // h1 shares rack r1 with h0 of the other stage: it waits.
        assert_eq!(starts(&ds), [0, 2]);
        a.landed(0, 0, false, &HostOutcome::Done);
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(starts(&ds), [1]);
    }

    #[test]
    fn the_runs_rate_and_a_stage_rate_say_when_to_come_back() {
        let hosts = (0..3).map(|i| host(i, &[])).collect();
        let mut s = stage("s", &[0, 1, 2]);
        s.window = 3;
        s.rate = Some(Rate {
            count: 10,
            per: Duration::from_secs(1),
        });
        let plan = Plan {
            name: "p".into(),
            waves: vec![],
            stages: vec![s],
            warnings: vec![],
            estimate: Duration::ZERO,
        };
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(1),
        };
        let mut a = Admission::new(&plan, hosts, usize::MAX, Some(rate), HashSet::new());
        let t0 = Instant::now();
        let (ds, wait) = drain(&mut a, t0);
        let ms = Duration::from_millis;
        assert_eq!(starts(&ds), [0]);
        // The stage's token comes first; the host takes it, then waits for the run's.
        assert_eq!(wait, Decision::WaitUntil(t0 + ms(100)));
        let (ds, wait) = drain(&mut a, t0 + ms(100));
        assert!(starts(&ds).is_empty());
        assert_eq!(wait, Decision::WaitUntil(t0 + ms(500)));
        let (ds, _) = drain(&mut a, t0 + ms(499));
        assert!(starts(&ds).is_empty());
        let (ds, wait) = drain(&mut a, t0 + ms(500));
        assert_eq!(starts(&ds), [1]);
        // h2 took its stage token at once and waits for the run's next.
        assert_eq!(wait, Decision::WaitUntil(t0 + ms(1000)));
    }

    #[test]
    fn power_on_turns_space_each_pdu_and_the_fleet() {
        let mut a = admission(vec![], vec![]);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        a.ask_turn(1, turn(Some("a"), 2.0, 1000), t0);
        a.ask_turn(2, turn(Some("a"), 2.0, 1000), t0);
        a.ask_turn(3, turn(Some("b"), 2.0, 1000), t0);
        assert_eq!(a.next(t0), Decision::Turn(1));
        // PDU b's first goes side by side, one fleet period (1 ms) later.
        assert_eq!(a.next(t0), Decision::WaitUntil(t0 + ms(1)));
        assert_eq!(a.next(t0 + ms(1)), Decision::Turn(3));
        // PDU a's second waits its interval from the first one's turn.
        assert_eq!(a.next(t0 + ms(1)), Decision::WaitUntil(t0 + ms(2000)));
        assert_eq!(a.next(t0 + ms(1999)), Decision::WaitUntil(t0 + ms(2000)));
        assert_eq!(a.next(t0 + ms(2000)), Decision::Turn(2));
        assert_eq!(a.next(t0 + ms(2000)), Decision::Blocked);

        // The fleet rate binds across PDUs.
        let mut a = admission(vec![], vec![]);
        for i in 0..3 {
            a.ask_turn(i, turn(Some(&format!("p{i}")), 0.1, 2), t0);
        }
        a.ask_turn(9, turn(None, 0.1, 2), t0);
        let mut granted = Vec::new();
        let mut now = t0;
        for _ in 0..20 {
            match a.next(now) {
                Decision::Turn(id) => granted.push((id, now - t0)),
                Decision::WaitUntil(at) => now = at,
                Decision::Blocked => break,
                d => panic!("{d:?}"),
            }
        }
        let times: Vec<Duration> = granted.iter().map(|g| g.1).collect();
        assert_eq!(times, [ms(0), ms(500), ms(1000), ms(1500)], "{granted:?}");
    }

    #[test]
    fn a_withdrawn_turn_lets_the_next_on_its_pdu_go() {
        let mut a = admission(vec![], vec![]);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        a.ask_turn(1, turn(Some("a"), 2.0, 1000), t0);
        assert_eq!(a.next(t0), Decision::Turn(1));
        a.ask_turn(2, turn(Some("a"), 2.0, 1000), t0);
        a.ask_turn(3, turn(Some("a"), 2.0, 1000), t0);
        a.withdraw_turn(2, t0 + s(1));
        assert_eq!(a.next(t0 + s(1)), Decision::WaitUntil(t0 + s(2)));
        assert_eq!(a.next(t0 + s(2)), Decision::Turn(3));
    }

    #[test]
    fn a_gate_opens_at_its_share_and_closes_the_dependant_when_the_budget_breaks() {
        let hosts = (0..6).map(|i| host(i, &[])).collect();
        let mut storage = stage("storage", &[0, 1, 2, 3]);
        storage.window = 4;
        storage.failure_budget = 0;
        let mut dns = stage("dns", &[4, 5]);
        dns.after = vec![0];
        dns.gates = vec![(0, 75.0)];
        let mut a = admission(vec![storage, dns], hosts);
        let t0 = Instant::now();
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(starts(&ds), [0, 1, 2, 3]);
        a.landed(0, 0, false, &HostOutcome::Done);
        a.landed(0, 1, false, &HostOutcome::Done);
        // 2 of 4 done: below 75 %.
        let (ds, _) = drain(&mut a, t0);
        assert!(ds.is_empty(), "{ds:?}");
        a.landed(0, 2, false, &HostOutcome::Done);
        // 3 of 4: the gate opens while h3 still runs.
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(ds[0], Decision::StageStarted(1));
        assert_eq!(starts(&ds), [4]);
        // The straggler fails: storage is over its budget, dns stops starting.
        a.landed(0, 3, false, &failed());
        let (ds, _) = drain(&mut a, t0);
        assert!(matches!(
            &ds[0],
            Decision::StageFinished(0, StageOutcome::Aborted { .. })
        ));
        assert_eq!(ds.len(), 1, "{ds:?}");
        a.landed(1, 4, false, &HostOutcome::Done);
        let (ds, _) = drain(&mut a, t0);
        assert!(
            matches!(
                &ds[0],
                Decision::StageFinished(1, StageOutcome::Aborted { reason })
                    if reason.contains("`storage`, which this stage started after at its 75% gate, stopped: failure budget exceeded")
            ),
            "{ds:?}"
        );
        assert!(starts(&ds).is_empty());
        assert_eq!(a.outcome(), RunOutcome::Aborted);
    }

    #[test]
    fn a_gate_stays_shut_while_the_stage_is_over_its_budget() {
        let hosts = (0..4).map(|i| host(i, &[])).collect();
        let mut storage = stage("storage", &[0, 1, 2]);
        storage.window = 3;
        let mut dns = stage("dns", &[3]);
        dns.after = vec![0];
        dns.gates = vec![(0, 50.0)];
        let mut a = admission(vec![storage, dns], hosts);
        let t0 = Instant::now();
        drain(&mut a, t0);
        a.landed(0, 0, false, &failed());
        a.landed(0, 1, false, &HostOutcome::Done);
        a.landed(0, 2, false, &HostOutcome::Done);
        let (ds, _) = drain(&mut a, t0);
        assert!(matches!(
            &ds[0],
            Decision::StageFinished(0, StageOutcome::Aborted { .. })
        ));
        assert_eq!(
            ds[1],
            Decision::StageFinished(
                1,
                StageOutcome::Skipped {
                    dependency: "storage".into()
                }
            )
        );
    }

    #[test]
    fn waves_grow_after_clean_waves_and_the_last_size_holds() {
        let hosts = (0..9).map(|i| host(i, &[])).collect();
        let mut s = stage("s", &(0..9).collect::<Vec<_>>());
        s.canaries = 1;
        s.ramp = vec![1, 2];
        s.window = 3;
        s.failure_budget = 0;
        let mut a = admission(vec![s], hosts);
        let t0 = Instant::now();
        let (ds, _) = drain(&mut a, t0);
        assert_eq!(starts(&ds), [0], "the canary first, alone");
        a.landed(0, 0, true, &HostOutcome::Done);
        assert_eq!(starts(&drain(&mut a, t0).0), [1], "wave 1: one host");
        a.landed(0, 1, false, &HostOutcome::Done);
        assert_eq!(starts(&drain(&mut a, t0).0), [2, 3], "wave 2: two hosts");
        a.landed(0, 2, false, &HostOutcome::Done);
        // The wave is not over until its last host lands: no refill.
        assert_eq!(starts(&drain(&mut a, t0).0), Vec::<usize>::new());
        a.landed(0, 3, false, &HostOutcome::Done);
        assert_eq!(
            starts(&drain(&mut a, t0).0),
            [4, 5, 6],
            "then the window of 3"
        );
        // The last size rolls: a landed host is replaced at once.
        a.landed(0, 5, false, &HostOutcome::Done);
        assert_eq!(starts(&drain(&mut a, t0).0), [7]);
    }

    #[test]
    fn a_wave_with_a_failure_stops_the_growth_at_its_size() {
        let hosts = (0..8).map(|i| host(i, &[])).collect();
        let mut s = stage("s", &(0..8).collect::<Vec<_>>());
        s.ramp = vec![2, 4];
        s.window = 8;
        s.failure_budget = 3;
        let mut a = admission(vec![s], hosts);
        let t0 = Instant::now();
        assert_eq!(starts(&drain(&mut a, t0).0), [0, 1]);
        a.landed(0, 0, false, &failed());
        a.landed(0, 1, false, &HostOutcome::Done);
        // Inside the budget, but not clean: the window stays at 2, rolling.
        assert_eq!(starts(&drain(&mut a, t0).0), [2, 3]);
        a.landed(0, 2, false, &HostOutcome::Done);
        assert_eq!(starts(&drain(&mut a, t0).0), [4]);
        a.landed(0, 3, false, &HostOutcome::Done);
        a.landed(0, 4, false, &HostOutcome::Done);
        assert_eq!(starts(&drain(&mut a, t0).0), [5, 6]);
    }
}
