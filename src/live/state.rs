//! What the live views show of a run. The stages (status, counts, hosts
//! waiting for another stage, ETA), the timeline, the failure groups,
//! paused and finished are read from the run's state
//! ([`crate::report::state::RunState`], fed once by the session), which
//! [`Live`] holds. Folded here from the events is only what no other face
//! shows: where each host in flight is, and the metrics' counters (actions
//! sent, failures by kind, step-duration histograms). The status page, the
//! JSON API and the metrics all read one [`Live`] through a mutex the
//! consumer shares with the HTTP server.
//!
//! Owns what the live views know. It must not serve, print or touch hosts.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use serde::Serialize;

use crate::engine::events::{EventKind, Failure, HostOutcome, RunOutcome};
use crate::plan::Plan;
use crate::playbook::Step;
use crate::report::state::{Shared, lock};
use crate::report::summary::{HostStatus, StageStatus, Summary};

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

/// One stage as the live views show it, read from the run's state.
#[derive(Debug, Clone, Serialize)]
pub struct StageLive {
    pub name: String,
    pub hosts: usize,
    /// Hosts done, with those a resume skips because they finished before.
    pub done: usize,
    pub failed: usize,
    /// Set aside unreachable, or skipped for an earlier failure.
    pub skipped: usize,
    pub in_flight: usize,
    /// Neither finished nor in flight.
    pub pending: usize,
    pub status: StageStatus,
    pub reason: Option<String>,
    /// Milliseconds since the run started (its first process, for a resume).
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
    /// Time left while it runs, by the run's one ETA rule.
    pub eta_ms: Option<u64>,
    /// Hosts whose turn came while another stage had them, by the stage
    /// they wait for (a host is in one stage at a time).
    pub held: BTreeMap<String, usize>,
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

/// What the failures counter counts by: the stage, how the host ended
/// (failed or unreachable), the failure's kind as the journal spells it
/// (`did_not_reboot`, `connect`, ...) and the kind of step that failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FailureKey {
    pub stage: String,
    pub status: HostStatus,
    pub kind: String,
    pub step: Option<&'static str>,
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

/// What a run looks like right now: the run's state, and what only the
/// live views keep.
#[derive(Debug)]
pub struct Live {
    pub run_id: String,
    pub plan: String,
    pub flights: BTreeMap<(usize, usize), Flight>,
    /// Counters since this process started (Prometheus counters only grow:
    /// a resume's earlier failures are not counted again).
    pub actions: BTreeMap<Action, u64>,
    pub failures: BTreeMap<FailureKey, u64>,
    pub durations: BTreeMap<&'static str, Histogram>,
    /// Milliseconds since the run started, as of the last event or tick.
    pub elapsed_ms: u64,
    /// Per stage, per step: whether a power_on step is a power cycle.
    cycles: Vec<Vec<bool>>,
    /// When the step of a host in flight started, by (stage, host).
    step_started: HashMap<(usize, usize), u64>,
    /// The run's state, which the session feeds: the stages, their counts
    /// and ETAs, the timeline, the failure groups, paused and finished.
    state: Shared,
}

impl Live {
    /// The views' own part before the first event. `state` is the run's
    /// state (fed by the session, with what happened before for a resume).
    pub fn new(run_id: &str, plan: &Plan, state: &Shared) -> Live {
        Live {
            run_id: run_id.to_owned(),
            plan: plan.name.clone(),
            flights: BTreeMap::new(),
            actions: Action::ALL.iter().map(|a| (*a, 0)).collect(),
            failures: BTreeMap::new(),
            durations: BTreeMap::new(),
            elapsed_ms: 0,
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
            state: std::sync::Arc::clone(state),
        }
    }

    /// Moves the clock on between events (the ETA and "in flight for" grow).
    pub fn tick(&mut self, elapsed_ms: u64) {
        self.elapsed_ms = self.elapsed_ms.max(elapsed_ms);
    }

    /// Folds what only the live views keep: hosts in flight and their
    /// steps, actions sent, failures counted, step durations.
    pub fn event(&mut self, _at: SystemTime, elapsed_ms: u64, kind: &EventKind) {
        self.tick(elapsed_ms);
        let now = self.elapsed_ms;
        match kind {
            EventKind::HostStarted { stage, host, .. } => {
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
                self.flights.remove(&(stage.index, host.index));
                self.step_started.remove(&(stage.index, host.index));
                let key = match outcome {
                    HostOutcome::Failed { kind, failure, .. } => FailureKey {
                        stage: stage.name.clone(),
                        status: HostStatus::Failed,
                        kind: failure_kind(failure),
                        step: Some(kind.as_str()),
                    },
                    HostOutcome::Unreachable { failure, .. } => FailureKey {
                        stage: stage.name.clone(),
                        status: HostStatus::Unreachable,
                        kind: failure_kind(failure),
                        step: None,
                    },
                    _ => return,
                };
                *self.failures.entry(key).or_default() += 1;
            }
            _ => {}
        }
    }

    fn count(&mut self, action: Action) {
        *self.actions.entry(action).or_default() += 1;
    }

    /// The stages as they stand, with their ETAs at this moment.
    pub fn stages(&self) -> Vec<StageLive> {
        let state = lock(&self.state);
        let now = std::time::Duration::from_millis(self.elapsed_ms);
        state
            .summary
            .stages_now()
            .into_iter()
            .map(|s| {
                let in_flight = state.totals.stage_in_flight(&s.name);
                let eta_ms = (s.status == StageStatus::Running)
                    .then(|| state.stage_eta(&s.name, now))
                    .flatten()
                    .map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
                StageLive {
                    held: state.totals.stage_held(&s.name),
                    pending: s
                        .hosts
                        .saturating_sub(s.done + s.failed + s.skipped + in_flight),
                    in_flight,
                    eta_ms,
                    name: s.name,
                    hosts: s.hosts,
                    done: s.done,
                    failed: s.failed,
                    skipped: s.skipped,
                    status: s.status,
                    reason: s.reason,
                    started_ms: s.start_ms,
                    finished_ms: s.end_ms,
                }
            })
            .collect()
    }

    /// Paused by the operator (`rekindle pause`).
    pub fn paused(&self) -> bool {
        lock(&self.state).totals.paused()
    }

    /// How the run ended, once it did.
    pub fn outcome(&self) -> Option<RunOutcome> {
        lock(&self.state).summary.outcome()
    }

    /// `running`, `paused`, or `finished`.
    pub fn state(&self) -> &'static str {
        if self.outcome().is_some() {
            "finished"
        } else if self.paused() {
            "paused"
        } else {
            "running"
        }
    }

    /// The run so far as a summary, hosts in flight drawn up to now (the
    /// timeline shows them as in flight, not as zero-length).
    pub fn summary(&self) -> Summary {
        let mut s = lock(&self.state).summary();
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

    /// The run's state with the shape of a plan whose stage `db` reboots
    /// the test inventory's 4 db hosts, all at once; the plan.
    fn state() -> (Shared, Plan) {
        let text = "version: 1\nstages:\n  - name: db\n    select: { role: db }\n    parallel: 4\n    steps: [ { reboot: { timeout: 10m } } ]\n";
        let mut sources = crate::diag::Sources::new();
        let inv = crate::playbook::validate::test_inventory();
        let (book, _) = crate::playbook::load_str("p.yaml", text, None, &mut sources).unwrap();
        let plan = crate::plan::build(&book, &inv, None).unwrap();
        let mut summary = Collector::new();
        summary.stages([("db".to_owned(), 4)]);
        let mut state = RunState::new(summary);
        state.totals = Totals::new([("db".to_owned(), 4)], 0).with_plan(&plan, &HashMap::new());
        (state.shared(), plan)
    }

    /// An event as the session delivers it: the run's state first, then the page.
    fn feed(live: &mut Live, state: &Shared, t: SystemTime, ms: u64, kind: &EventKind) {
        crate::report::state::lock(state).event(t, Duration::from_millis(ms), kind);
        live.event(t, ms, kind);
    }

    #[test]
    fn counts_eta_failures_and_histograms_follow_the_events() {
        let (state, plan) = state();
        let estimate = plan.stages[0].host_estimate;
        let mut live = Live::new("r1", &plan, &state);
        let stage0 = |live: &Live| live.stages().remove(0);
        assert_eq!(stage0(&live).status, StageStatus::Waiting);
        assert_eq!(stage0(&live).pending, 4);
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
        assert_eq!(stage0(&live).status, StageStatus::Running);
        assert_eq!(stage0(&live).in_flight, 3);
        assert_eq!(stage0(&live).pending, 1);
        // The run's one ETA rule (report::state): before any host finished,
        // one host takes the stage's estimate; 3 in flight for 1 s, then
        // the fourth.
        live.tick(1000);
        let per_host = u64::try_from(estimate.as_millis()).unwrap();
        assert_eq!(
            stage0(&live).eta_ms,
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
        let s = stage0(&live);
        assert_eq!((s.done, s.failed, s.in_flight, s.pending), (1, 2, 0, 1));
        // 3 hosts took 8 s in all: the one left needs their average.
        assert_eq!(s.eta_ms, Some(2666));
        assert_eq!(live.actions[&Action::Reboot], 3);
        assert_eq!(live.actions[&Action::PowerCycle], 0);
        let failures: Vec<(&FailureKey, &u64)> = live.failures.iter().collect();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            (failures[0].0.status, failures[0].0.step, *failures[0].1),
            (HostStatus::Failed, Some("reboot"), 2)
        );
        let h = &live.durations["reboot"];
        assert_eq!((h.count, h.sum), (1, 2.0));
        // 2 s is in the 2.5 s bucket and every bucket above it, not below.
        assert_eq!(h.buckets[3], 0);
        assert_eq!(h.buckets[4], 1);
        assert_eq!(*h.buckets.last().unwrap_or(&0), 1);
    }
}
