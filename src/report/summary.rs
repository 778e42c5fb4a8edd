//! The run summary's data: per-stage counts, per-host results, boot-time
//! percentiles and notes, with their typed statuses. [`super::fold`] folds
//! events (live, or read back from a journal) into it; [`super::text`]
//! renders it for people, [`super::formats`] as JSON, JUnit and HTML.
//!
//! Owns what a summary holds. It must not touch hosts or the journal file,
//! and imports neither the fold nor the renderers.

use std::time::Duration;

use serde::Serialize;

use crate::engine::events::{Failure, RunOutcome};
use crate::engine::steps::humane;

/// Lines of a failing command's output shown under its failure.
pub const OUTPUT_LINES: usize = 5;
/// Hosts listed as the slowest.
pub const SLOWEST: usize = 5;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub plan: String,
    pub run_id: Option<String>,
    /// `None` when the journal ends without a finish (killed run).
    pub outcome: Option<RunOutcome>,
    /// Wall time from the first to the last event, across resumes.
    pub elapsed_ms: u64,
    pub resumes: usize,
    pub stages: Vec<StageSummary>,
    pub hosts: Vec<HostResult>,
    /// Reboot issued to new boot id verified.
    pub boot_time: Option<BootTime>,
    /// Extra facts for people (what a resume retried, ...).
    pub notes: Vec<String>,
    /// A drill's prediction for the real run, once the drill ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<crate::journal::Prediction>,
}

/// Where a stage is, as the summary (and its JSON) spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Declared, not started yet. Only a run in progress shows it (the
    /// live page); a summary says `incomplete`.
    Waiting,
    Running,
    Done,
    Aborted,
    /// Not started: a stage it waits for did not finish inside its budget.
    Skipped,
    Interrupted,
    /// No finish recorded: not started, or cut off while running.
    Incomplete,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Waiting => "waiting",
            StageStatus::Running => "running",
            StageStatus::Done => "done",
            StageStatus::Aborted => "aborted",
            StageStatus::Skipped => "skipped",
            StageStatus::Interrupted => "interrupted",
            StageStatus::Incomplete => "incomplete",
        }
    }
}

/// What became of a host, as the summary (and its JSON) spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Started, and no finish recorded (yet).
    Running,
    Done,
    Failed,
    Unreachable,
    /// Stopped mid-step; a resume runs it again.
    Interrupted,
    /// Set aside for an earlier failure or unreachability.
    Skipped,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Running => "running",
            HostStatus::Done => "done",
            HostStatus::Failed => "failed",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Interrupted => "interrupted",
            HostStatus::Skipped => "skipped",
        }
    }

    /// A failure, as the failure groups count it.
    pub fn failed(self) -> bool {
        matches!(self, HostStatus::Failed | HostStatus::Unreachable)
    }

    /// Not finished: interrupted, or no finish recorded.
    pub fn unfinished(self) -> bool {
        matches!(self, HostStatus::Interrupted | HostStatus::Running)
    }
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for HostStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub name: String,
    /// Hosts the stage selected (0 when unknown: it never started).
    pub hosts: usize,
    pub done: usize,
    pub failed: usize,
    /// Unreachable hosts set aside (`on_unreachable: skip`).
    pub skipped: usize,
    pub interrupted: usize,
    /// Hosts that never finished a try (never started, or the run was cut off).
    pub not_run: usize,
    pub status: StageStatus,
    pub reason: Option<String>,
    /// Offsets from the run's start, for the timeline.
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub stage: String,
    pub host: String,
    pub status: HostStatus,
    pub canary: bool,
    /// 1-based step number and kind of the failing or interrupted step.
    pub step: Option<usize>,
    pub step_kind: Option<String>,
    /// What went wrong, for grouping (failed and unreachable hosts).
    pub failure: Option<Failure>,
    pub reason: Option<String>,
    pub output: Option<String>,
    pub start_ms: u64,
    pub end_ms: u64,
    pub duration_ms: u64,
    /// BMC power cycles `remediate` sent it, across resumes.
    #[serde(skip_serializing_if = "is_zero")]
    pub power_cycles: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BootTime {
    pub hosts: usize,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub max_ms: u64,
}

impl Summary {
    pub fn failures(&self) -> impl Iterator<Item = &HostResult> {
        self.hosts
            .iter()
            .filter(|h| matches!(h.status, HostStatus::Failed | HostStatus::Unreachable))
    }

    pub fn slowest(&self) -> Vec<&HostResult> {
        let mut v: Vec<&HostResult> = self
            .hosts
            .iter()
            .filter(|h| h.status != HostStatus::Running)
            .collect();
        v.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.host.cmp(&b.host)));
        v.truncate(SLOWEST);
        v
    }

    /// Hosts `remediate` power-cycled, and the cycles sent in all.
    pub fn power_cycled(&self) -> (Vec<&str>, u32) {
        let hosts: Vec<&HostResult> = self.hosts.iter().filter(|h| h.power_cycles > 0).collect();
        let cycles = hosts.iter().map(|h| h.power_cycles).sum();
        (hosts.iter().map(|h| h.host.as_str()).collect(), cycles)
    }

    /// "power-cycled by `remediate`: ..." when any host was, else `None`.
    pub fn power_cycled_line(&self) -> Option<String> {
        let (hosts, cycles) = self.power_cycled();
        (!hosts.is_empty()).then(|| {
            format!(
                "power-cycled by `remediate`: {} ({}): {}",
                super::plural(hosts.len(), "host"),
                super::plural(cycles as usize, "cycle"),
                super::nodeset::fold_text(hosts.iter().copied())
            )
        })
    }
}

pub fn ms(v: u64) -> String {
    humane(Duration::from_millis(v))
}

pub fn outcome_words(outcome: Option<RunOutcome>) -> &'static str {
    match outcome {
        Some(RunOutcome::Success) => "every host done",
        Some(RunOutcome::Failures) => "finished with failures inside the budgets",
        Some(RunOutcome::Aborted) => "ABORTED",
        Some(RunOutcome::Interrupted) => "interrupted (resumable)",
        None => "did not finish (resumable with `rekindle resume`)",
    }
}
