//! Replays a journal into where each host starts when the run is resumed.
//! Hosts are matched by stage and host name, not by index, so a resume with
//! `--force` over an edited inventory still finds them.
//!
//! Owns the resume rules: done hosts are skipped; a reboot issued but not
//! verified is re-verified by boot id (never sent twice); a host mid-step
//! restarts that step; a failed host is retried from its failed step; the
//! remediation power cycles a step already had are counted on, never sent
//! again. It must not run anything.

use std::collections::HashMap;

use super::Record;
use crate::engine::HostStart;
use crate::engine::events::{EventKind, HostOutcome};
use crate::inventory::Inventory;
use crate::plan::Plan;

/// What the journal says about one host in one stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HostTrack {
    /// The step in progress (started, not finished).
    current: Option<usize>,
    /// Steps finished successfully, highest.
    passed: Option<usize>,
    /// A reboot whose intent was recorded and that was not verified yet.
    reboot: Option<(usize, String)>,
    /// Remediation power cycles recorded for a step not passed yet: (step, count).
    cycles: Option<(usize, u32)>,
    outcome: Option<Final>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Final {
    Done,
    /// Failed or unreachable at this step; `spent`: it spent the stage's
    /// failure budget (failed, not set aside unreachable).
    Failed(usize, bool),
}

/// Per-host starts for the engine, and what the resume will do, for people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub starts: HashMap<(usize, usize), HostStart>,
    /// Hosts finished before: skipped.
    pub done: usize,
    /// Hosts whose reboot was issued: their boot id is checked, no new reboot.
    pub reverify: Vec<String>,
    /// Hosts interrupted mid-step: that step runs again.
    pub mid_step: Vec<String>,
    /// Hosts that failed: retried from the failed step.
    pub retried: Vec<String>,
    /// Hosts whose step already had remediation power cycles: the count
    /// goes on, none is sent again.
    pub power_cycled: Vec<String>,
    /// The same hosts, as (stage index, host index) (`resume --failed-only`).
    pub failed: Vec<(usize, usize)>,
    /// Those of them that spent their stage's failure budget (failed, not
    /// set aside unreachable): a resume that leaves them out keeps it spent.
    pub spent: Vec<(usize, usize)>,
    /// Journal hosts or stages the current plan no longer has (only with --force).
    pub unknown: usize,
}

/// Folds the journal's events into per-host starts for `plan`.
pub fn replay(records: &[Record], plan: &Plan, inventory: &Inventory) -> Resume {
    let mut tracks: HashMap<(String, String), HostTrack> = HashMap::new();
    for record in records {
        let Record::Event { kind, .. } = record else {
            continue;
        };
        let key = |stage: &crate::engine::events::StageRef,
                   host: &crate::engine::events::HostRef| {
            (stage.name.clone(), host.name.clone())
        };
        match kind {
            EventKind::HostStarted { stage, host, .. } => {
                // A host starting again (an earlier resume) keeps its pending reboot.
                let t = tracks.entry(key(stage, host)).or_default();
                t.outcome = None;
            }
            EventKind::StepStarted {
                stage, host, step, ..
            } => {
                let t = tracks.entry(key(stage, host)).or_default();
                t.current = Some(*step);
                if t.reboot.as_ref().is_some_and(|(s, _)| s != step) {
                    t.reboot = None;
                }
                if t.cycles.is_some_and(|(s, _)| s != *step) {
                    t.cycles = None;
                }
            }
            EventKind::PowerCycleIssued {
                stage,
                host,
                step,
                attempt,
                ..
            } => {
                let t = tracks.entry(key(stage, host)).or_default();
                let before = t.cycles.filter(|(s, _)| s == step).map_or(0, |(_, n)| n);
                t.cycles = Some((*step, before.max(*attempt)));
            }
            EventKind::RebootIssued {
                stage,
                host,
                step,
                boot_id_before,
            } => {
                let t = tracks.entry(key(stage, host)).or_default();
                t.reboot = Some((*step, boot_id_before.clone()));
            }
            EventKind::StepFinished {
                stage,
                host,
                step,
                error,
                ..
            } => {
                let t = tracks.entry(key(stage, host)).or_default();
                t.current = None;
                if error.is_none() {
                    t.passed = Some(t.passed.map_or(*step, |p| p.max(*step)));
                    if t.reboot.as_ref().is_some_and(|(s, _)| s == step) {
                        t.reboot = None;
                    }
                    if t.cycles.is_some_and(|(s, _)| s == *step) {
                        t.cycles = None;
                    }
                }
            }
            EventKind::HostFinished {
                stage,
                host,
                outcome,
                ..
            } => {
                let t = tracks.entry(key(stage, host)).or_default();
                t.outcome = match outcome {
                    HostOutcome::Done => {
                        t.reboot = None;
                        t.cycles = None;
                        Some(Final::Done)
                    }
                    HostOutcome::Failed { step, .. } => Some(Final::Failed(*step, true)),
                    HostOutcome::Unreachable { step, .. } => Some(Final::Failed(*step, false)),
                    // Interrupted: where it stood is in `current` and `reboot`.
                    HostOutcome::Interrupted { step, .. } => {
                        t.current = Some(*step);
                        None
                    }
                };
            }
            _ => {}
        }
    }

    let stage_index: HashMap<&str, usize> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let host_index: HashMap<&str, usize> = inventory
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.as_str(), i))
        .collect();

    let mut resume = Resume::default();
    let mut keys: Vec<_> = tracks.into_iter().collect();
    // Deterministic lists for people.
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for ((stage, host), t) in keys {
        let (Some(&si), Some(&hi)) = (
            stage_index.get(stage.as_str()),
            host_index.get(host.as_str()),
        ) else {
            resume.unknown += 1;
            continue;
        };
        if !plan.stages[si].hosts.contains(&hi) {
            resume.unknown += 1;
            continue;
        }
        let label = format!("{host} ({stage})");
        // Only the step a host starts at again can carry its cycles.
        let cycles_at = |from: usize| t.cycles.filter(|(s, _)| *s == from).map_or(0, |(_, n)| n);
        let start = match (&t.outcome, &t.reboot) {
            (Some(Final::Done), _) => {
                resume.done += 1;
                HostStart::Done
            }
            // A reboot was sent and never verified: whatever happened since,
            // only its boot id can tell; never send it again.
            (Some(Final::Failed(..)) | None, Some((step, boot_id))) => {
                if let Some(Final::Failed(_, spent)) = t.outcome {
                    resume.retried.push(label.clone());
                    resume.failed.push((si, hi));
                    if spent {
                        resume.spent.push((si, hi));
                    }
                }
                resume.reverify.push(label);
                HostStart::From {
                    step: *step,
                    reboot_boot_id: Some(boot_id.clone()),
                    power_cycles: cycles_at(*step),
                }
            }
            (Some(Final::Failed(step, spent)), None) => {
                resume.retried.push(label);
                resume.failed.push((si, hi));
                if *spent {
                    resume.spent.push((si, hi));
                }
                HostStart::From {
                    step: *step,
                    reboot_boot_id: None,
                    power_cycles: cycles_at(*step),
                }
            }
            (None, None) => {
                let step = match (t.current, t.passed) {
                    (Some(c), _) => c,
                    (None, Some(p)) => p + 1,
                    (None, None) => 0,
                };
                if step == 0 && t.current.is_none() {
                    // Started, no step begun: a fresh start is the same thing.
                    continue;
                }
                resume.mid_step.push(label);
                HostStart::From {
                    step,
                    reboot_boot_id: None,
                    power_cycles: cycles_at(step),
                }
            }
        };
        if let HostStart::From {
            power_cycles: 1.., ..
        } = &start
        {
            resume.power_cycled.push(format!("{host} ({stage})"));
        }
        resume.starts.insert((si, hi), start);
    }
    resume
}
