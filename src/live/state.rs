//! What only the live views show of a run, folded from its events:
//! per-stage counts as the page shows them, hosts in flight, actions sent,
//! failures by cause, step-duration histograms. The timeline, the failure
//! groups and each stage's ETA come from the run's state
//! ([`crate::report::state::RunState`], fed by the session), which [`Live`]
//! holds. The status page, the JSON API and the metrics all read one
//! [`Live`] through a mutex the consumer shares with the HTTP server.
//!
//! Owns what the live views know. It must not serve, print or touch hosts.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use serde::Serialize;

use crate::engine::events::{EventKind, Failure, HostOutcome, RunOutcome, StageOutcome};
use crate::plan::Plan;
use crate::playbook::Step;
use crate::report::state::Shared;
use crate::report::summary::{HostStatus, Summary};

/// Upper bounds (seconds) of the step-duration histogram buckets: from a
/// quick command to an hour-long power-on.
pub const BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Hosts in flight listed by name in the status (the count is always whole).
pub const FLIGHTS_LISTED: usize = 200;

/// Actions sent to hosts and BMCs, by the kind the metrics name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Reboot,
    Restart,
    PowerOn,
    PowerCycle,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Reboot,
        Action::Restart,
        Action::PowerOn,
        Action::PowerCycle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reboot => "reboot",
            Action::Restart => "restart",
            Action::PowerOn => "power_on",
            Action::PowerCycle => "power_cycle",
        }
    }
}

/// One stage as the live views show it.
#[derive(Debug, Clone, Serialize)]
pub struct StageLive {
    pub name: String,
    pub hosts: usize,
    /// Hosts a resume skips because they finished before (counted in `done`).
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub in_flight: usize,
    /// `waiting`, `running`, `done`, `aborted`, `skipped` or `interrupted`.
    pub status: &'static str,
    pub reason: Option<String>,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Hosts whose turn came while another stage had them, by the stage
    /// they wait for (a host is in one stage at a time).
    pub held: BTreeMap<String, usize>,
}

impl StageLive {
    pub fn pending(&self) -> usize {
        self.hosts
            .saturating_sub(self.done + self.failed + self.skipped + self.in_flight)
    }
}

/// A host in flight: where it is.
#[derive(Debug, Clone, Serialize)]
pub struct Flight {
    pub host: String,
    pub stage: String,
    /// 1-based step number and kind of the step running (none yet: connecting).
    pub step: Option<usize>,
    pub kind: Option<&'static str>,
    pub since_ms: u64,
}

/// Failures of one cause: the stage, how it failed (failed or
/// unreachable), the kind of step that failed, the failure's kind
/// (`did_not_reboot`, `connect`, ...) and its reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Cause {
    pub stage: String,
    pub status: &'static str,
    pub step: Option<&'static str>,
    pub kind: String,
    pub reason: String,
}

/// A failure's kind as the journal spells it (`did_not_reboot`).
fn failure_kind(f: &Failure) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A cumulative histogram, as Prometheus reads one.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    /// Counts per [`BUCKETS`] bound (each counts every sample at or below it).
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS.len()];
        }
        for (b, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// What a run looks like right now.
#[derive(Debug)]
pub struct Live {
    pub run_id: String,
    pub plan: String,
    pub stages: Vec<StageLive>,
    pub flights: BTreeMap<(usize, usize), Flight>,
    pub actions: BTreeMap<Action, u64>,
    /// Hosts per cause, in the order they failed.
    pub failures: BTreeMap<Cause, Vec<String>>,
    pub durations: BTreeMap<&'static str, Histogram>,
    /// Milliseconds since the run started, as of the last event or tick.
    pub elapsed_ms: u64,
    pub outcome: Option<RunOutcome>,
    pub paused: bool,
    /// Per stage, per step: whether a power_on step is a power cycle.
    cycles: Vec<Vec<bool>>,
    /// When the step of a host in flight started, by (stage, host).
    step_started: HashMap<(usize, usize), u64>,
    /// Hosts waiting for another stage, by (stage, host): that stage's name.
    held: HashMap<(usize, usize), String>,
    /// The run's state, which the session feeds: read here for the
    /// timeline, the failure groups and the ETA.
    state: Shared,
}

impl Live {
    /// The state before the first event. `state` is the run's state (fed
    /// by the session, with what happened before for a resume);
    /// `done_before` counts, per stage, hosts a resume skips.
    pub fn new(run_id: &str, plan: &Plan, state: &Shared, done_before: &[usize]) -> Live {
        Live {
            run_id: run_id.to_owned(),
            plan: plan.name.clone(),
            stages: plan
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| StageLive {
                    name: s.name.clone(),
                    hosts: s.hosts.len(),
                    done: done_before.get(i).copied().unwrap_or(0),
                    failed: 0,
                    skipped: 0,
                    in_flight: 0,
                    status: "waiting",
                    reason: None,
                    started_ms: None,
                    finished_ms: None,
                    held: BTreeMap::new(),
                })
                .collect(),
            flights: BTreeMap::new(),
            actions: Action::ALL.iter().map(|a| (*a, 0)).collect(),
            failures: BTreeMap::new(),
            durations: BTreeMap::new(),
            elapsed_ms: 0,
            outcome: None,
            paused: false,
            cycles: plan
                .stages
                .iter()
                .map(|s| {
                    s.steps
                        .iter()
                        .map(|st| matches!(st, Step::PowerOn(p) if p.reset_type != "On"))
                        .collect()
                })
                .collect(),
            step_started: HashMap::new(),
            held: HashMap::new(),
            state: std::sync::Arc::clone(state),
        }
    }

    /// Moves the clock on between events (the ETA and "in flight for" grow).
    pub fn tick(&mut self, elapsed_ms: u64) {
        self.elapsed_ms = self.elapsed_ms.max(elapsed_ms);
    }

    pub fn event(&mut self, _at: SystemTime, elapsed_ms: u64, kind: &EventKind) {
        self.tick(elapsed_ms);
        let now = self.elapsed_ms;
        match kind {
            EventKind::RunStarted { .. } => {}
            EventKind::RunPaused => self.paused = true,
            EventKind::RunContinued => self.paused = false,
            EventKind::RunFinished { outcome } => self.outcome = Some(*outcome),
            EventKind::StageStarted { stage, hosts } => {
                if let Some(s) = self.stages.get_mut(stage.index) {
                    s.hosts = *hosts;
                    s.status = "running";
                    s.started_ms.get_or_insert(now);
                }
            }
            EventKind::StageFinished { stage, outcome, .. } => {
                if let Some(s) = self.stages.get_mut(stage.index) {
                    s.finished_ms = Some(now);
                    let (status, reason) = match outcome {
                        StageOutcome::Done => ("done", None),
                        StageOutcome::Aborted { reason } => ("aborted", Some(reason.clone())),
                        StageOutcome::Skipped { dependency } => {
                            ("skipped", Some(format!("waits for `{dependency}`")))
                        }
                        StageOutcome::Interrupted => ("interrupted", None),
                    };
                    s.status = status;
                    s.reason = reason;
                }
            }
            EventKind::HostWaiting { stage, host, on } => {
                if let Some(s) = self.stages.get_mut(stage.index)
                    && self
                        .held
                        .insert((stage.index, host.index), on.name.clone())
                        .is_none()
                {
                    *s.held.entry(on.name.clone()).or_default() += 1;
                }
            }
            EventKind::HostStarted { stage, host, .. } => {
                self.unhold(stage.index, host.index);
                if let Some(s) = self.stages.get_mut(stage.index) {
                    s.in_flight += 1;
                }
                self.flights.insert(
                    (stage.index, host.index),
                    Flight {
                        host: host.name.clone(),
                        stage: stage.name.clone(),
                        step: None,
                        kind: None,
                        since_ms: now,
                    },
                );
            }
            EventKind::StepStarted {
                stage,
                host,
                step,
                kind,
            } => {
                if let Some(f) = self.flights.get_mut(&(stage.index, host.index)) {
                    f.step = Some(step + 1);
                    f.kind = Some(kind.as_str());
                }
                self.step_started.insert((stage.index, host.index), now);
            }
            EventKind::StepFinished {
                stage, host, kind, ..
            } => {
                if let Some(start) = self.step_started.remove(&(stage.index, host.index)) {
                    self.durations
                        .entry(kind.as_str())
                        .or_default()
                        .observe(now.saturating_sub(start) as f64 / 1000.0);
                }
            }
            EventKind::RebootIssued { .. } => self.count(Action::Reboot),
            EventKind::ServiceRestartIssued { .. } => self.count(Action::Restart),
            EventKind::PowerCycleIssued { .. } => self.count(Action::PowerCycle),
            EventKind::PowerOnIssued { stage, step, .. } => {
                let cycle = self
                    .cycles
                    .get(stage.index)
                    .and_then(|s| s.get(*step))
                    .copied()
                    .unwrap_or(false);
                self.count(if cycle {
                    Action::PowerCycle
                } else {
                    Action::PowerOn
                });
            }
            EventKind::HostFinished {
                stage,
                host,
                outcome,
                ..
            } => {
                self.unhold(stage.index, host.index);
                self.flights.remove(&(stage.index, host.index));
                self.step_started.remove(&(stage.index, host.index));
                let Some(s) = self.stages.get_mut(stage.index) else {
                    return;
                };
                // A host skipped for an earlier failure never started here.
                if !matches!(outcome, HostOutcome::Skipped { .. }) {
                    s.in_flight = s.in_flight.saturating_sub(1);
                }
                let cause = match outcome {
                    HostOutcome::Done => {
                        s.done += 1;
                        None
                    }
                    HostOutcome::Failed {
                        kind,
                        failure,
                        reason,
                        ..
                    } => {
                        s.failed += 1;
                        Some(("failed", Some(kind.as_str()), failure, reason))
                    }
                    HostOutcome::Unreachable {
                        failure, reason, ..
                    } => {
                        s.skipped += 1;
                        Some(("unreachable", None, failure, reason))
                    }
                    // Not finished: a resume runs it again.
                    HostOutcome::Interrupted { .. } => None,
                    HostOutcome::Skipped { .. } => {
                        s.skipped += 1;
                        None
                    }
                };
                if let Some((status, step, failure, reason)) = cause {
                    let cause = Cause {
                        stage: stage.name.clone(),
                        status,
                        step,
                        kind: failure_kind(failure),
                        reason: reason.clone(),
                    };
                    self.failures
                        .entry(cause)
                        .or_default()
                        .push(host.name.clone());
                }
            }
        }
    }

    fn unhold(&mut self, stage: usize, host: usize) {
        if let Some(on) = self.held.remove(&(stage, host))
            && let Some(s) = self.stages.get_mut(stage)
            && let Some(n) = s.held.get_mut(&on)
        {
            *n -= 1;
            if *n == 0 {
                s.held.remove(&on);
            }
        }
    }

    fn count(&mut self, action: Action) {
        *self.actions.entry(action).or_default() += 1;
    }

    /// `running`, `paused`, or `finished`.
    pub fn state(&self) -> &'static str {
        if self.outcome.is_some() {
            "finished"
        } else if self.paused {
            "paused"
        } else {
            "running"
        }
    }

    /// Failure causes, largest first, then in a stable order.
    pub fn causes(&self) -> Vec<(&Cause, &[String])> {
        let mut v: Vec<(&Cause, &[String])> = self
            .failures
            .iter()
            .map(|(c, h)| (c, h.as_slice()))
            .collect();
        v.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        v
    }

    /// Milliseconds left in running stage `s`, by the run's one ETA rule
    /// ([`crate::report::state`]); `None` before it started and once it ended.
    pub fn eta_ms(&self, s: &StageLive) -> Option<u64> {
        s.started_ms?;
        if s.finished_ms.is_some() {
            return None;
        }
        let now = std::time::Duration::from_millis(self.elapsed_ms);
        let left = crate::report::state::lock(&self.state).stage_eta(&s.name, now)?;
        Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }

    /// The run so far as a summary, hosts in flight drawn up to now (the
    /// timeline shows them as in flight, not as zero-length).
    pub fn summary(&self) -> Summary {
        let mut s = crate::report::state::lock(&self.state).summary();
        s.elapsed_ms = s.elapsed_ms.max(self.elapsed_ms);
        let now = s.elapsed_ms;
        for h in s
            .hosts
            .iter_mut()
            .filter(|h| h.status == HostStatus::Running)
        {
            h.end_ms = now;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::{HostRef, StageRef, StepKind};
    use crate::report::fold::Collector;
    use crate::report::progress::Totals;
    use crate::report::state::RunState;
    use std::time::Duration;

    fn stage() -> StageRef {
        StageRef {
            index: 0,
            name: "db".into(),
        }
    }

    fn host(i: usize) -> HostRef {
        HostRef {
            index: i,
            name: format!("pg{i}"),
        }
    }

    fn plan() -> Plan {
        Plan {
            name: "p".into(),
            stages: Vec::new(),
            waves: Vec::new(),
            warnings: Vec::new(),
            estimate: Duration::ZERO,
        }
    }

    /// The run's state with the shape of a plan whose stage `db` reboots
    /// the test inventory's 4 db hosts, all at once; one host's estimate.
    fn state() -> (Shared, Duration) {
        let text = "version: 1\nstages:\n  - name: db\n    select: { role: db }\n    parallel: 4\n    steps: [ { reboot: { timeout: 10m } } ]\n";
        let mut sources = crate::diag::Sources::new();
        let inv = crate::playbook::validate::test_inventory();
        let (book, _) = crate::playbook::load_str("p.yaml", text, None, &mut sources).unwrap();
        let plan = crate::plan::build(&book, &inv, None).unwrap();
        let mut state = RunState::new(Collector::new());
        state.totals = Totals::new([("db".to_owned(), 4)], 0).with_plan(&plan, &HashMap::new());
        (state.shared(), plan.stages[0].host_estimate)
    }

    /// An event as the session delivers it: the run's state first, then the page.
    fn feed(live: &mut Live, state: &Shared, t: SystemTime, ms: u64, kind: &EventKind) {
        crate::report::state::lock(state).event(t, Duration::from_millis(ms), kind);
        live.event(t, ms, kind);
    }

    #[test]
    fn counts_eta_failures_and_histograms_follow_the_events() {
        let (state, estimate) = state();
        let mut live = Live::new("r1", &plan(), &state, &[]);
        live.stages.push(StageLive {
            name: "db".into(),
            hosts: 4,
            done: 0,
            failed: 0,
            skipped: 0,
            in_flight: 0,
            status: "waiting",
            reason: None,
            started_ms: None,
            finished_ms: None,
            held: BTreeMap::new(),
        });
        let t = SystemTime::now();
        feed(
            &mut live,
            &state,
            t,
            0,
            &EventKind::StageStarted {
                stage: stage(),
                hosts: 4,
            },
        );
        for i in 0..3 {
            feed(
                &mut live,
                &state,
                t,
                0,
                &EventKind::HostStarted {
                    stage: stage(),
                    host: host(i),
                    canary: false,
                },
            );
            feed(
                &mut live,
                &state,
                t,
                0,
                &EventKind::StepStarted {
                    stage: stage(),
                    host: host(i),
                    step: 0,
                    kind: StepKind::Reboot,
                },
            );
            feed(
                &mut live,
                &state,
                t,
                0,
                &EventKind::RebootIssued {
                    stage: stage(),
                    host: host(i),
                    step: 0,
                    boot_id_before: "b".into(),
                },
            );
        }
        assert_eq!(live.stages[0].in_flight, 3);
        assert_eq!(live.stages[0].pending(), 1);
        // The run's one ETA rule (report::state): before any host finished,
        // one host takes the stage's estimate; 3 in flight for 1 s, then
        // the fourth.
        live.tick(1000);
        let per_host = u64::try_from(estimate.as_millis()).unwrap();
        assert_eq!(
            live.eta_ms(&live.stages[0]),
            Some(2 * per_host - 1000),
            "no host finished yet: the estimate"
        );
        feed(
            &mut live,
            &state,
            t,
            2000,
            &EventKind::StepFinished {
                stage: stage(),
                host: host(0),
                step: 0,
                kind: StepKind::Reboot,
                error: None,
            },
        );
        feed(
            &mut live,
            &state,
            t,
            2000,
            &EventKind::HostFinished {
                stage: stage(),
                host: host(0),
                outcome: HostOutcome::Done,
                duration: Duration::from_secs(2),
            },
        );
        for i in 1..3 {
            feed(
                &mut live,
                &state,
                t,
                3000,
                &EventKind::HostFinished {
                    stage: stage(),
                    host: host(i),
                    outcome: HostOutcome::Failed {
                        step: 0,
                        kind: StepKind::Reboot,
                        failure: crate::engine::Failure::DidNotComeBack,
                        reason: "did not come back".into(),
                        output: String::new(),
                    },
                    duration: Duration::from_secs(3),
                },
            );
        }
        let s = &live.stages[0];
        assert_eq!((s.done, s.failed, s.in_flight, s.pending()), (1, 2, 0, 1));
        // 3 hosts took 8 s in all: the one left needs their average.
        assert_eq!(live.eta_ms(s), Some(2666));
        assert_eq!(live.actions[&Action::Reboot], 3);
        assert_eq!(live.actions[&Action::PowerCycle], 0);
        let causes = live.causes();
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].1, ["pg1".to_owned(), "pg2".to_owned()]);
        let h = &live.durations["reboot"];
        assert_eq!((h.count, h.sum), (1, 2.0));
        // 2 s is in the 2.5 s bucket and every bucket above it, not below.
        assert_eq!(h.buckets[3], 0);
        assert_eq!(h.buckets[4], 1);
        assert_eq!(*h.buckets.last().unwrap_or(&0), 1);
    }
}
