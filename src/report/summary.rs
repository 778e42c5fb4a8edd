//! The run summary: folds events (live, or read back from a journal) into
//! per-stage counts, per-host results, boot-time percentiles and failures,
//! and renders them as text. The same [`Summary`] feeds the JSON, JUnit and
//! HTML reports.
//!
//! Owns what a summary says and how its text reads. It must not touch hosts
//! or the journal file; it only sees events and their times.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::engine::events::{EventKind, Failure, HostOutcome, RunOutcome, StageOutcome};
use crate::engine::steps::humane;
use crate::journal::{Record, parse_rfc3339};

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
    /// `done`, `aborted`, `skipped`, `interrupted`, or `incomplete` (no finish recorded).
    pub status: String,
    pub reason: Option<String>,
    /// Offsets from the run's start, for the timeline.
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub stage: String,
    pub host: String,
    /// `done`, `failed`, `unreachable`, `interrupted`, or `running` (no finish recorded).
    pub status: String,
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
            .filter(|h| matches!(h.status.as_str(), "failed" | "unreachable"))
    }

    pub fn slowest(&self) -> Vec<&HostResult> {
        let mut v: Vec<&HostResult> = self
            .hosts
            .iter()
            .filter(|h| h.status != "running")
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
            status: "incomplete".into(),
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
                s.status = "running".into();
                s.reason = None;
            }
            EventKind::StageFinished { stage, outcome, .. } => {
                let i = self.stage(&stage.name);
                let s = &mut self.stages[i];
                s.end_ms = Some(ms);
                let (status, reason) = match outcome {
                    StageOutcome::Done => ("done", None),
                    StageOutcome::Aborted { reason } => ("aborted", Some(reason.clone())),
                    StageOutcome::Skipped { dependency } => (
                        "skipped",
                        Some(format!("`{dependency}` did not finish inside its budget")),
                    ),
                    StageOutcome::Interrupted => ("interrupted", None),
                };
                s.status = status.into();
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
                    status: "running".into(),
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
                            status: String::new(),
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
                    HostOutcome::Done => ("done", None, None, None, None),
                    HostOutcome::Failed {
                        step,
                        kind,
                        reason,
                        output,
                        ..
                    } => (
                        "failed",
                        Some(*step + 1),
                        Some(kind.as_str()),
                        Some(reason.clone()),
                        Some(output.clone()).filter(|o| !o.trim().is_empty()),
                    ),
                    HostOutcome::Unreachable { step, reason, .. } => (
                        "unreachable",
                        Some(*step + 1),
                        None,
                        Some(reason.clone()),
                        None,
                    ),
                    HostOutcome::Interrupted { step, kind } => (
                        "interrupted",
                        Some(*step + 1),
                        Some(kind.as_str()),
                        None,
                        None,
                    ),
                    HostOutcome::Skipped {
                        earlier,
                        unreachable,
                    } => (
                        "skipped",
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
                h.status = status.into();
                h.step = step;
                h.step_kind = kind.map(str::to_owned);
                h.reason = reason;
                h.output = output;
            }
            _ => {}
        }
    }

    pub fn summary(&self) -> Summary {
        let mut stages = self.stages.clone();
        let mut hosts = self.hosts.clone();
        for h in &mut hosts {
            if h.status == "running" {
                // Cut off (killed run): it ran until the journal ends.
                h.end_ms = self.last_ms;
                h.duration_ms = self.last_ms.saturating_sub(h.start_ms);
            }
        }
        for s in &mut stages {
            s.done = 0;
            s.failed = 0;
            s.skipped = 0;
            s.interrupted = 0;
        }
        for h in &hosts {
            if let Some(&i) = self.stage_ix.get(&h.stage) {
                let s = &mut stages[i];
                match h.status.as_str() {
                    "done" => s.done += 1,
                    "failed" => s.failed += 1,
                    "unreachable" | "skipped" => s.skipped += 1,
                    "interrupted" => s.interrupted += 1,
                    _ => {}
                }
            }
        }
        for s in &mut stages {
            s.not_run = s
                .hosts
                .saturating_sub(s.done + s.failed + s.skipped + s.interrupted);
            if s.status == "running" {
                s.status = "incomplete".into();
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

/// The summary for people, as printed at the end of run/resume/drill and by `report`.
pub fn render_text(s: &Summary) -> String {
    let mut out = String::new();
    let w = s
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(
        out,
        "{:<w$}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  status",
        "stage", "hosts", "done", "failed", "skipped", "not run"
    );
    for st in &s.stages {
        let status = match (&st.status[..], &st.reason) {
            ("aborted", Some(r)) => format!("ABORTED: {r}"),
            ("skipped", Some(r)) => format!("not started: {r}"),
            (other, _) => other.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  {status}",
            st.name,
            st.hosts,
            st.done,
            st.failed,
            st.skipped,
            st.not_run + st.interrupted
        );
    }
    if let Some(b) = s.boot_time {
        let _ = writeln!(
            out,
            "\nboot time (reboot issued to new boot id verified), {}: p50 {}, p95 {}, max {}",
            super::plural(b.hosts, "host"),
            ms(b.p50_ms),
            ms(b.p95_ms),
            ms(b.max_ms)
        );
    }
    if let Some(line) = s.power_cycled_line() {
        let _ = writeln!(out, "\n{line}");
    }
    let slowest = s.slowest();
    if !slowest.is_empty() {
        let hw = slowest.iter().map(|h| h.host.len()).max().unwrap_or(0);
        let _ = writeln!(out, "\nslowest hosts:");
        for h in slowest {
            let _ = writeln!(
                out,
                "  {:<hw$}  {:>8}  {} ({})",
                h.host,
                ms(h.duration_ms),
                h.stage,
                h.status
            );
        }
    }
    super::failures::write_text(&mut out, s);
    let interrupted = s
        .hosts
        .iter()
        .filter(|h| h.status == "interrupted" || h.status == "running")
        .count();
    if interrupted > 0 {
        let _ = writeln!(
            out,
            "\n{} {} stopped mid-step; `rekindle resume` re-verifies {}",
            super::plural(interrupted, "host"),
            if interrupted == 1 { "was" } else { "were" },
            if interrupted == 1 { "it" } else { "them" }
        );
    }
    for note in &s.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let resumed = match s.resumes {
        0 => String::new(),
        1 => " (resumed once)".into(),
        n => format!(" (resumed {n} times)"),
    };
    let _ = writeln!(
        out,
        "\nrun {}: {} in {}{resumed}",
        s.plan,
        outcome_words(s.outcome),
        ms(s.elapsed_ms)
    );
    out
}
