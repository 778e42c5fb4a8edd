//! The run-wide counts the progress line shows (done, failed, skipped, in
//! flight, waiting, hosts/s) and the ETA, from the events and the plan's
//! shape. The run's state ([`super::state::RunState`]) holds one; a
//! display used alone folds its own.
//!
//! Owns the ETA's one rule ([`Totals::eta`]) and the progress line's words.
//! It must not print or touch hosts.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::engine::HostStart;
use crate::engine::events::{EventKind, HostOutcome};
use crate::engine::steps::humane;
use crate::plan::{Plan, host_estimate};

/// Run-wide counts, shared by both displays.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    /// Unreachable and set aside, or interrupted.
    pub skipped: usize,
    pub in_flight: usize,
    /// Hosts of stages that ended without running them (aborted, not started).
    pub not_run: usize,
    /// Hosts finished in this process (for the rate; a resume's skipped hosts do not count).
    finished_here: usize,
    stages: HashMap<String, StageCount>,
    /// Stage names in the plan's dependency order, once [`Totals::with_plan`] told them.
    order: Vec<String>,
    /// Paused by the operator (`rekindle pause`).
    paused: bool,
    /// Hosts whose turn came in a stage while another stage had them:
    /// host -> (stage, the stage it waits for).
    held: HashMap<String, (String, String)>,
}

#[derive(Debug, Default, Clone)]
struct StageCount {
    hosts: usize,
    finished: usize,
    done_here: usize,
    /// What the ETA needs from the plan ([`Totals::with_plan`]).
    shape: Option<StageShape>,
    /// Hosts a resumed run skips because they finished before.
    before: usize,
    started: usize,
    /// Hosts in flight: when each started (elapsed time of the run).
    flying: HashMap<String, Duration>,
    /// Sum and count of the durations of hosts finished here, whatever their outcome.
    observed: (Duration, u32),
    ended: bool,
}

/// One stage's plan, as far as time goes.
#[derive(Debug, Clone)]
struct StageShape {
    after: Vec<String>,
    window: usize,
    canaries: usize,
    /// Host starts per second, if the stage is rate limited.
    rate: Option<f64>,
    /// One host's expected duration (the stage's `estimate`, else its worst case).
    expected: Duration,
    /// One host's worst case: the sum of its steps' timeouts.
    worst: Duration,
}

impl Totals {
    /// `stages`: every stage's name and host count; `already_done`: hosts a
    /// resumed run skips because they finished before.
    pub fn new(stages: impl IntoIterator<Item = (String, usize)>, already_done: usize) -> Self {
        let stages: HashMap<String, StageCount> = stages
            .into_iter()
            .map(|(n, hosts)| {
                (
                    n,
                    StageCount {
                        hosts,
                        ..StageCount::default()
                    },
                )
            })
            .collect();
        Totals {
            total: stages.values().map(|s| s.hosts).sum(),
            done: already_done,
            stages,
            ..Totals::default()
        }
    }

    /// Tells the ETA the plan's shape: dependencies, windows, canaries, rates,
    /// step timeouts, and which hosts a resume skips (`starts`).
    pub fn with_plan(mut self, plan: &Plan, starts: &HashMap<(usize, usize), HostStart>) -> Self {
        self.order = plan.stages.iter().map(|s| s.name.clone()).collect();
        for (i, st) in plan.stages.iter().enumerate() {
            let before = st
                .hosts
                .iter()
                .filter(|&&h| matches!(starts.get(&(i, h)), Some(HostStart::Done)))
                .count();
            let count = self.stages.entry(st.name.clone()).or_default();
            count.hosts = st.hosts.len();
            count.before = before;
            count.shape = Some(StageShape {
                after: st
                    .after
                    .iter()
                    .map(|&a| plan.stages[a].name.clone())
                    .collect(),
                window: st.window.max(1),
                canaries: st.canaries,
                rate: st.rate.map(|r| r.per_second()),
                expected: st.host_estimate,
                worst: host_estimate(&st.steps).max(st.host_estimate),
            });
        }
        self
    }

    /// Hosts of stage `stage` in flight in this process.
    pub fn stage_in_flight(&self, stage: &str) -> usize {
        self.stages.get(stage).map_or(0, |s| s.flying.len())
    }

    /// Hosts of stage `stage` whose turn came while another stage had
    /// them, by the stage they wait for.
    pub fn stage_held(&self, stage: &str) -> BTreeMap<String, usize> {
        let mut held = BTreeMap::new();
        for (st, on) in self.held.values() {
            if st == stage {
                *held.entry(on.clone()).or_default() += 1;
            }
        }
        held
    }

    /// Paused by the operator.
    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn waiting(&self) -> usize {
        self.total
            .saturating_sub(self.done + self.failed + self.skipped + self.in_flight + self.not_run)
    }

    /// Folds one event ([`super::state::RunState`] feeds it once per event).
    pub(crate) fn event(&mut self, kind: &EventKind, elapsed: Duration) {
        match kind {
            EventKind::HostWaiting { stage, host, on } => {
                self.held
                    .insert(host.name.clone(), (stage.name.clone(), on.name.clone()));
            }
            EventKind::HostStarted { stage, host, .. } => {
                self.unhold(&stage.name, &host.name);
                self.in_flight += 1;
                let s = self.stages.entry(stage.name.clone()).or_default();
                s.started += 1;
                s.flying.insert(host.name.clone(), elapsed);
            }
            EventKind::HostFinished {
                stage,
                host,
                outcome,
                duration,
            } => {
                self.unhold(&stage.name, &host.name);
                // A host skipped for an earlier failure never started here.
                if !matches!(outcome, HostOutcome::Skipped { .. }) {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                self.finished_here += 1;
                match outcome {
                    HostOutcome::Done => self.done += 1,
                    HostOutcome::Failed { .. } => self.failed += 1,
                    HostOutcome::Unreachable { .. }
                    | HostOutcome::Interrupted { .. }
                    | HostOutcome::Skipped { .. } => {
                        self.skipped += 1;
                    }
                }
                let s = self.stages.entry(stage.name.clone()).or_default();
                s.finished += 1;
                s.done_here += usize::from(matches!(outcome, HostOutcome::Done));
                s.flying.remove(&host.name);
                if !matches!(outcome, HostOutcome::Skipped { .. }) {
                    s.observed.0 += *duration;
                    s.observed.1 += 1;
                }
            }
            EventKind::RunPaused => self.paused = true,
            EventKind::RunContinued => self.paused = false,
            EventKind::StageFinished { stage, done, .. } => {
                // `done` also counts hosts a resume skipped as finished before;
                // whatever neither finished here nor before never ran.
                let s = self.stages.entry(stage.name.clone()).or_default();
                let before = done.saturating_sub(s.done_here);
                self.not_run += s.hosts.saturating_sub(s.finished + before);
                s.ended = true;
                s.flying.clear();
                self.held.retain(|_, (st, _)| *st != stage.name);
            }
            _ => {}
        }
    }

    fn unhold(&mut self, stage: &str, host: &str) {
        if self.held.get(host).is_some_and(|(st, _)| st == stage) {
            self.held.remove(host);
        }
    }

    /// `; app waits for 3 hosts busy in db`, per (stage, stage waited for),
    /// or nothing.
    fn held_text(&self) -> String {
        let mut pairs: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (stage, on) in self.held.values() {
            *pairs.entry((stage.as_str(), on.as_str())).or_default() += 1;
        }
        pairs
            .into_iter()
            .map(|((stage, on), n)| {
                let hosts = if n == 1 { "host" } else { "hosts" };
                format!("; {stage} waits for {n} {hosts} busy in {on}")
            })
            .collect()
    }

    /// Time left, from the plan's shape ([`Totals::with_plan`]): per stage,
    /// hosts in flight need what the stage's finished hosts took on average
    /// (before any finished: the stage's estimate), and a host past that
    /// needs as long again as it is late, bounded by its steps' timeouts;
    /// waiting hosts go through
    /// canaries one by one, then windows (or the stage rate, if slower).
    /// Stages run after the stages they wait for. `None` without a plan.
    /// This is the one ETA rule (see [`super::state`]).
    pub fn eta(&self, now: Duration) -> Option<Duration> {
        self.finishes(now)?
            .into_values()
            .max()
            .or(Some(Duration::ZERO))
    }

    /// Time until stage `stage` ends at `now`, by [`Totals::eta`]'s rule;
    /// `None` once it ended, or without a plan.
    pub fn stage_eta(&self, stage: &str, now: Duration) -> Option<Duration> {
        if self.stages.get(stage).is_none_or(|s| s.ended) {
            return None;
        }
        self.finishes(now)?.get(stage).copied()
    }

    /// When each stage ends, from `now`, in the plan's order.
    fn finishes(&self, now: Duration) -> Option<HashMap<&str, Duration>> {
        if self.order.is_empty() {
            return None;
        }
        let mut finish: HashMap<&str, Duration> = HashMap::new();
        for name in &self.order {
            let s = self.stages.get(name)?;
            let shape = s.shape.as_ref()?;
            let start = shape
                .after
                .iter()
                .filter_map(|a| finish.get(a.as_str()).copied())
                .max()
                .unwrap_or_default();
            let left = if s.ended {
                Duration::ZERO
            } else {
                stage_left(s, shape, now)
            };
            finish.insert(name.as_str(), start + left);
        }
        Some(finish)
    }

    /// `120/400 done, 3 failed, 0 skipped, 50 in flight, 227 waiting, 1.5 hosts/s, elapsed 1m20s, ETA 2m31s`
    pub fn line(&self, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            self.finished_here as f64 / secs
        } else {
            0.0
        };
        let left = self.waiting() + self.in_flight;
        let eta = if left == 0 {
            "0s".to_owned()
        } else if let Some(eta) = self.eta(elapsed) {
            // Whole seconds, and never "0s" while hosts are left.
            humane(Duration::from_secs(eta.as_secs_f64().ceil().max(1.0) as u64))
        } else if rate > 0.0 {
            humane(Duration::from_secs_f64(
                (left as f64 / rate).min(1e7).round(),
            ))
        } else {
            "unknown".to_owned()
        };
        format!(
            "{}{}/{} done, {} failed, {} skipped, {} in flight, {} waiting, {rate:.1} hosts/s, elapsed {}, ETA {eta}{}",
            if self.paused { "PAUSED: " } else { "" },
            self.done,
            self.total,
            self.failed,
            self.skipped,
            self.in_flight,
            self.waiting(),
            humane(Duration::from_secs(elapsed.as_secs())),
            self.held_text(),
        )
    }
}

/// One unfinished stage's time left at `now` (see [`Totals::eta`]).
fn stage_left(s: &StageCount, shape: &StageShape, now: Duration) -> Duration {
    let per_host = if s.observed.1 > 0 {
        s.observed.0 / s.observed.1
    } else {
        shape.expected
    };
    let worst = shape.worst.max(per_host);
    let flying = s
        .flying
        .values()
        .map(|&started| {
            let age = now.saturating_sub(started);
            if age < per_host {
                per_host - age
            } else {
                // Overdue: as long again as it is late, at most until its
                // timeouts run out, so the ETA grows while a host waits one out.
                (age - per_host).min(worst.saturating_sub(age))
            }
        })
        .max()
        .unwrap_or_default();
    let waiting = s
        .hosts
        .saturating_sub(s.before + s.finished + s.flying.len());
    let canaries = shape
        .canaries
        .saturating_sub(s.before + s.started)
        .min(waiting);
    let rest = waiting - canaries;
    let windows = rest.div_ceil(shape.window) as u32;
    let mut queue = per_host * (canaries as u32) + per_host * windows;
    if let Some(rate) = shape.rate.filter(|r| *r > 0.0) {
        queue = queue.max(Duration::from_secs_f64(rest as f64 / rate));
    }
    flying + queue
}

#[cfg(test)]
impl Totals {
    pub(crate) fn event_for_test(&mut self, kind: &EventKind) {
        self.event(kind, Duration::ZERO);
    }

    pub(crate) fn event_at_for_test(&mut self, kind: &EventKind, elapsed: Duration) {
        self.event(kind, elapsed);
    }
}
