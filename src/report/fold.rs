//! The summary's fold: events (live, or read back from a journal) into a
//! [`Summary`]: per-stage counts, per-host results, boot-time percentiles.
//! The session's run state ([`super::state::RunState`]) holds the one
//! collector a run feeds; `report` and `status --etcd` fold a journal
//! through another.
//!
//! Owns how events become a summary. It must not touch hosts or the journal
//! file; it only sees events and their times.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::summary::{BootTime, HostResult, HostStatus, StageStatus, StageSummary, Summary};
use crate::engine::events::{EventKind, HostOutcome, RunOutcome, StageOutcome};
use crate::journal::{Prediction, Record, parse_rfc3339};

/// Folds events into a [`Summary`]. Feed it journal records, live events, or both.
#[derive(Debug, Default)]
pub struct Collector {
    plan: String,
    run_id: Option<String>,
    origin: Option<SystemTime>,
    last_ms: u64,
    outcome: Option<RunOutcome>,
    resumes: usize,
    stages: Vec<StageSummary>,
    stage_ix: HashMap<String, usize>,
    hosts: Vec<HostResult>,
    host_ix: HashMap<(String, String), usize>,
    /// Reboot intent time per (stage, host, step): wall-clock ms since the
    /// origin, and the process's monotonic ms with the process it is of.
    reboots: HashMap<(String, String, usize), (u64, Option<Mono>)>,
    /// The monotonic clock of the event being folded.
    mono: Option<Mono>,
    boot_ms: Vec<u64>,
    notes: Vec<String>,
    predicted: Option<Prediction>,
}

/// A point on one process's monotonic clock: (which process of the run,
/// counting resumes; ms since its engine started).
type Mono = (usize, u64);

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Declares the plan's stages up front, so stages that never start are listed.
    pub fn stages(&mut self, stages: impl IntoIterator<Item = (String, usize)>) {
        for (name, hosts) in stages {
            let i = self.stage(&name);
            self.stages[i].hosts = hosts;
        }
    }

    pub fn record(&mut self, record: &Record) {
        match record {
            Record::Header(h) => {
                self.plan.clone_from(&h.plan);
                self.run_id = Some(h.run_id.clone());
                if self.origin.is_none() {
                    self.origin = parse_rfc3339(&h.started_at);
                }
                self.stages(h.stages.iter().map(|s| (s.name.clone(), s.hosts)));
            }
            Record::Resumed { at, .. } => {
                self.resumes += 1;
                // A resumed run finishes again; until it does it is not finished.
                self.outcome = None;
                if let Some(t) = parse_rfc3339(at) {
                    self.touch(t);
                }
            }
            Record::Drill { speed, caveats, .. } => {
                self.note(format!(
                    "a drill on simulated hosts: times are drill time, compressed {speed}x"
                ));
                for c in caveats {
                    self.note(format!("not modelled by the drill: {c}"));
                }
            }
            Record::Predicted(p) => {
                self.note(format!(
                    "the drill predicts a recovery time of {} in real time",
                    crate::engine::steps::humane(Duration::from_millis(p.total_ms))
                ));
                self.predicted = Some(p.clone());
            }
            Record::Event { at, ms, kind } => {
                let t = parse_rfc3339(at).unwrap_or(SystemTime::UNIX_EPOCH);
                self.event_at(t, *ms, kind);
            }
        }
    }

    fn touch(&mut self, at: SystemTime) -> u64 {
        let origin = *self.origin.get_or_insert(at);
        let ms = u64::try_from(at.duration_since(origin).unwrap_or_default().as_millis())
            .unwrap_or(u64::MAX);
        self.last_ms = self.last_ms.max(ms);
        ms
    }

    fn stage(&mut self, name: &str) -> usize {
        if let Some(&i) = self.stage_ix.get(name) {
            return i;
        }
        self.stages.push(StageSummary {
            name: name.to_owned(),
            hosts: 0,
            done: 0,
            failed: 0,
            skipped: 0,
            interrupted: 0,
            not_run: 0,
            status: StageStatus::Waiting,
            reason: None,
            start_ms: None,
            end_ms: None,
        });
        self.stage_ix.insert(name.to_owned(), self.stages.len() - 1);
        self.stages.len() - 1
    }

    /// Folds an event stamped with the wall clock `at` and `elapsed_ms` on
    /// its process's monotonic clock (ms since that process's engine
    /// started; a resume is another process). Durations inside one process
    /// (boot times) are taken from the monotonic clock, so a clock jump
    /// (NTP stepping a bastion's clock) cannot make a reboot look 72 h long.
    pub fn event_at(&mut self, at: SystemTime, elapsed_ms: u64, kind: &EventKind) {
        self.mono = Some((self.resumes, elapsed_ms));
        self.event(at, kind);
        self.mono = None;
    }

    pub fn event(&mut self, at: SystemTime, kind: &EventKind) {
        let ms = self.touch(at);
        match kind {
            EventKind::RunStarted { plan, .. } if self.plan.is_empty() => {
                self.plan.clone_from(plan);
            }
            EventKind::RunFinished { outcome } => self.outcome = Some(*outcome),
            EventKind::StageStarted { stage, hosts } => {
                let i = self.stage(&stage.name);
                let s = &mut self.stages[i];
                s.hosts = *hosts;
                s.start_ms.get_or_insert(ms);
                s.status = StageStatus::Running;
                s.reason = None;
            }
            EventKind::StageFinished { stage, outcome, .. } => {
                let i = self.stage(&stage.name);
                let s = &mut self.stages[i];
                s.end_ms = Some(ms);
                let (status, reason) = match outcome {
                    StageOutcome::Done => (StageStatus::Done, None),
                    StageOutcome::Aborted { reason } => {
                        (StageStatus::Aborted, Some(reason.clone()))
                    }
                    StageOutcome::Skipped { dependency } => (
                        StageStatus::Skipped,
                        Some(format!("`{dependency}` did not finish inside its budget")),
                    ),
                    StageOutcome::Interrupted => (StageStatus::Interrupted, None),
                };
                s.status = status;
                s.reason = reason;
            }
            EventKind::HostStarted {
                stage,
                host,
                canary,
            } => {
                let key = (stage.name.clone(), host.name.clone());
                let result = HostResult {
                    stage: stage.name.clone(),
                    host: host.name.clone(),
                    status: HostStatus::Running,
                    canary: *canary,
                    step: None,
                    step_kind: None,
                    failure: None,
                    reason: None,
                    output: None,
                    start_ms: ms,
                    end_ms: ms,
                    duration_ms: 0,
                    power_cycles: 0,
                };
                // A host started again by a resume keeps one row: its latest
                // try, with the power cycles of every try.
                match self.host_ix.get(&key) {
                    Some(&i) => {
                        let cycles = self.hosts[i].power_cycles;
                        self.hosts[i] = HostResult {
                            power_cycles: cycles,
                            ..result
                        };
                    }
                    None => {
                        self.host_ix.insert(key, self.hosts.len());
                        self.hosts.push(result);
                    }
                }
            }
            EventKind::RebootIssued {
                stage, host, step, ..
            } => {
                self.reboots.insert(
                    (stage.name.clone(), host.name.clone(), *step),
                    (ms, self.mono),
                );
            }
            EventKind::PowerCycleIssued { stage, host, .. } => {
                if let Some(&i) = self.host_ix.get(&(stage.name.clone(), host.name.clone())) {
                    self.hosts[i].power_cycles += 1;
                }
            }
            EventKind::StepFinished {
                stage,
                host,
                step,
                kind: crate::engine::events::StepKind::Reboot,
                error: None,
            } => {
                if let Some((issued, mono)) =
                    self.reboots
                        .remove(&(stage.name.clone(), host.name.clone(), *step))
                {
                    let took = match (mono, self.mono) {
                        (Some((p, sent)), Some((q, now))) if p == q => now.saturating_sub(sent),
                        // Issued before a resume: only the wall clock spans both.
                        _ => ms.saturating_sub(issued),
                    };
                    self.boot_ms.push(took);
                }
            }
            EventKind::HostFinished {
                stage,
                host,
                outcome,
                duration,
            } => {
                let key = (stage.name.clone(), host.name.clone());
                let i = match self.host_ix.get(&key) {
                    Some(&i) => i,
                    None => {
                        // A journal that lost the start: place it by its duration.
                        let start = ms.saturating_sub(millis(*duration));
                        self.host_ix.insert(key, self.hosts.len());
                        self.hosts.push(HostResult {
                            stage: stage.name.clone(),
                            host: host.name.clone(),
                            status: HostStatus::Running,
                            canary: false,
                            step: None,
                            step_kind: None,
                            failure: None,
                            reason: None,
                            output: None,
                            start_ms: start,
                            end_ms: ms,
                            duration_ms: 0,
                            power_cycles: 0,
                        });
                        self.hosts.len() - 1
                    }
                };
                let h = &mut self.hosts[i];
                h.end_ms = ms;
                h.duration_ms = millis(*duration);
                let (status, step, kind, reason, output) = match outcome {
                    HostOutcome::Done => (HostStatus::Done, None, None, None, None),
                    HostOutcome::Failed {
                        step,
                        kind,
                        reason,
                        output,
                        ..
                    } => (
                        HostStatus::Failed,
                        Some(*step + 1),
                        Some(kind.as_str()),
                        Some(reason.clone()),
                        Some(output.clone()).filter(|o| !o.trim().is_empty()),
                    ),
                    HostOutcome::Unreachable { step, reason, .. } => (
                        HostStatus::Unreachable,
                        Some(*step + 1),
                        None,
                        Some(reason.clone()),
                        None,
                    ),
                    HostOutcome::Interrupted { step, kind } => (
                        HostStatus::Interrupted,
                        Some(*step + 1),
                        Some(kind.as_str()),
                        None,
                        None,
                    ),
                    HostOutcome::Skipped {
                        earlier,
                        unreachable,
                    } => (
                        HostStatus::Skipped,
                        None,
                        None,
                        Some(HostOutcome::skip_reason(earlier, *unreachable)),
                        None,
                    ),
                };
                h.failure = match outcome {
                    HostOutcome::Failed { failure, .. }
                    | HostOutcome::Unreachable { failure, .. } => Some(*failure),
                    _ => None,
                };
                h.status = status;
                h.step = step;
                h.step_kind = kind.map(str::to_owned);
                h.reason = reason;
                h.output = output;
            }
            _ => {}
        }
    }

    /// Each stage as it stands: its counts from the hosts' rows, its
    /// status as last seen (waiting and running included). The live page
    /// reads this; [`Collector::summary`] closes it for a report.
    pub fn stages_now(&self) -> Vec<StageSummary> {
        let mut stages = self.stages.clone();
        for s in &mut stages {
            s.done = 0;
            s.failed = 0;
            s.skipped = 0;
            s.interrupted = 0;
        }
        for h in &self.hosts {
            if let Some(&i) = self.stage_ix.get(&h.stage) {
                let s = &mut stages[i];
                match h.status {
                    HostStatus::Done => s.done += 1,
                    HostStatus::Failed => s.failed += 1,
                    HostStatus::Unreachable | HostStatus::Skipped => s.skipped += 1,
                    HostStatus::Interrupted => s.interrupted += 1,
                    HostStatus::Running => {}
                }
            }
        }
        for s in &mut stages {
            s.not_run = s
                .hosts
                .saturating_sub(s.done + s.failed + s.skipped + s.interrupted);
        }
        stages
    }

    /// How the run ended, once it did.
    pub fn outcome(&self) -> Option<RunOutcome> {
        self.outcome
    }

    pub fn summary(&self) -> Summary {
        let mut stages = self.stages_now();
        let mut hosts = self.hosts.clone();
        for h in &mut hosts {
            if h.status == HostStatus::Running {
                // Cut off (killed run): it ran until the journal ends.
                h.end_ms = self.last_ms;
                h.duration_ms = self.last_ms.saturating_sub(h.start_ms);
            }
        }
        for s in &mut stages {
            if matches!(s.status, StageStatus::Waiting | StageStatus::Running) {
                s.status = StageStatus::Incomplete;
            }
        }
        let mut boot = self.boot_ms.clone();
        boot.sort_unstable();
        let boot_time = (!boot.is_empty()).then(|| BootTime {
            hosts: boot.len(),
            p50_ms: percentile(&boot, 50),
            p95_ms: percentile(&boot, 95),
            max_ms: boot.last().copied().unwrap_or(0),
        });
        Summary {
            plan: self.plan.clone(),
            run_id: self.run_id.clone(),
            outcome: self.outcome,
            elapsed_ms: self.last_ms,
            resumes: self.resumes,
            stages,
            hosts,
            boot_time,
            notes: self.notes.clone(),
            predicted: self.predicted.clone(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Nearest-rank percentile of sorted, non-empty values.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}
