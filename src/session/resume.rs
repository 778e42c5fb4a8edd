//! Resuming a run: whether the journal's inputs are unchanged, which hosts
//! a narrowed resume (`--failed-only`, `--limit`) keeps, how many are left
//! to run, and what became of the reboots that were in flight (a consumer
//! of the resumed run's events).
//!
//! Owns those rules; the replay of the journal into per-host starts is
//! `journal::replay`'s, the execution [`super::execute`]'s, the wording of
//! the command's errors the command's. It does not print.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};

use super::consume::{Consumer, Seen};
use crate::engine::HostStart;
use crate::engine::events::{Ack, EventKind, StepKind};
use crate::inventory::Inventory;
use crate::journal;
use crate::journal::replay::Resume;
use crate::plan::Plan;
use crate::report::summary::Collector;
use crate::select::Selector;

/// The header's playbook and inventories that changed since the run
/// began, as messages; `Err` names a file that cannot be checked.
pub fn changed_inputs(header: &journal::Header) -> Result<Vec<String>, String> {
    let mut changed = Vec::new();
    for f in std::iter::once(&header.playbook).chain(&header.inventories) {
        match f.unchanged() {
            Ok(true) => {}
            Ok(false) => changed.push(format!("{} changed since the run began", f.path)),
            Err(e) => return Err(format!("{}: {e}", f.path)),
        }
    }
    Ok(changed)
}

/// Host runs of `plan` that did not finish before.
pub fn to_run(plan: &Plan, resume: &Resume) -> usize {
    plan.stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.hosts
                .iter()
                .filter(|&&h| resume.starts.get(&(i, h)) != Some(&HostStart::Done))
                .count()
        })
        .sum()
}

/// Per stage, the hosts done before the resume.
pub fn done_before(plan: &Plan, resume: &Resume) -> Vec<usize> {
    let mut done = vec![0; plan.stages.len()];
    for ((stage, _), start) in &resume.starts {
        if *start == HostStart::Done
            && let Some(n) = done.get_mut(*stage)
        {
            *n += 1;
        }
    }
    done
}

/// A collector fed with the journal's records and the resume's own record.
pub fn collector(records: &[journal::Record], resumed: &journal::Record) -> Collector {
    let mut c = Collector::new();
    for r in records {
        c.record(r);
    }
    c.record(resumed);
    c
}

/// A stage whose failure budget hosts left out of a narrowed resume broke:
/// they failed before and are not retried, so the stage cannot end inside
/// its budget in this resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenBudget {
    pub stage: String,
    pub budget: usize,
    /// The failed hosts left out, by name.
    pub hosts: Vec<String>,
}

impl std::fmt::Display for BrokenBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stage {} tolerates {} failed {}, and {} that failed there {} left out: {}",
            self.stage,
            self.budget,
            if self.budget == 1 { "host" } else { "hosts" },
            crate::report::plural(self.hosts.len(), "host"),
            if self.hosts.len() == 1 { "is" } else { "are" },
            list(&self.hosts)
        )
    }
}

/// What narrowing a resume did.
#[derive(Debug, Default)]
pub struct Narrowed {
    /// Host runs left out; the journal has nothing new about them, so a
    /// later resume runs them.
    pub left_out: usize,
    /// Stages whose budget the failed hosts left out break on their own.
    pub broken: Vec<BrokenBudget>,
    /// Failed hosts that stay in: retried ("host (stage)").
    pub retried: Vec<String>,
}

/// `--failed-only` and `--limit`: takes out of the plan's stages every host
/// that is neither done before (still counted done) nor chosen (failed,
/// when `failed_only`; matching `limit`, when given). A budget those failed
/// hosts broke stays broken: they are named in [`Narrowed::broken`], for
/// the command to refuse unless the operator says otherwise (leaving them
/// out made the stage look finished and ran its dependants).
pub fn narrow(
    plan: &mut Plan,
    inventory: &Inventory,
    resume: &Resume,
    failed_only: bool,
    limit: Option<&Selector>,
) -> Narrowed {
    let failed: HashSet<(usize, usize)> = resume.failed.iter().copied().collect();
    let spent: HashSet<(usize, usize)> = resume.spent.iter().copied().collect();
    let mut narrowed = Narrowed::default();
    let name = |h: usize| {
        inventory
            .hosts
            .get(h)
            .map_or_else(|| format!("#{h}"), |x| x.name.clone())
    };
    for (i, stage) in plan.stages.iter_mut().enumerate() {
        let keep = |h: usize| {
            resume.starts.get(&(i, h)) == Some(&HostStart::Done)
                || ((!failed_only || failed.contains(&(i, h)))
                    && limit.is_none_or(|l| inventory.hosts.get(h).is_some_and(|x| l.matches(x))))
        };
        // Canaries are the first hosts: those kept stay first.
        let canaries = stage.hosts[..stage.canaries.min(stage.hosts.len())]
            .iter()
            .filter(|&&h| keep(h))
            .count();
        let failed_out: Vec<String> = stage
            .hosts
            .iter()
            .filter(|&&h| !keep(h) && spent.contains(&(i, h)))
            .map(|&h| name(h))
            .collect();
        narrowed.retried.extend(
            stage
                .hosts
                .iter()
                .filter(|&&h| keep(h) && failed.contains(&(i, h)))
                .map(|&h| format!("{} ({})", name(h), stage.name)),
        );
        if failed_out.len() > stage.failure_budget {
            narrowed.broken.push(BrokenBudget {
                stage: stage.name.clone(),
                budget: stage.failure_budget,
                hosts: failed_out,
            });
        }
        let before = stage.hosts.len();
        stage.hosts.retain(|&h| keep(h));
        narrowed.left_out += before - stage.hosts.len();
        stage.canaries = canaries;
    }
    narrowed
}

/// What became of the hosts whose reboot was issued before the
/// interruption: verified by boot id, sent again (the host was still up on
/// its old boot, so the first never arrived), or neither.
#[derive(Debug, Default)]
pub struct Reverified {
    waiting: HashSet<String>,
    resent: Vec<String>,
    verified: Vec<String>,
}

impl Reverified {
    pub fn new(hosts: &[String]) -> Self {
        Reverified {
            waiting: hosts.iter().cloned().collect(),
            ..Default::default()
        }
    }

    fn event(&mut self, kind: &EventKind) {
        match kind {
            EventKind::RebootIssued { host, .. } if self.waiting.remove(&host.name) => {
                self.resent.push(host.name.clone());
            }
            EventKind::StepFinished {
                host,
                kind: StepKind::Reboot,
                error: None,
                ..
            } if self.waiting.remove(&host.name) => self.verified.push(host.name.clone()),
            _ => {}
        }
    }

    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.verified.is_empty() {
            notes.push(format!(
                "{} hosts had a reboot issued before the interruption; it was verified by boot id, not sent again: {}",
                self.verified.len(),
                list(&self.verified)
            ));
        }
        if !self.resent.is_empty() {
            notes.push(format!(
                "{} hosts had a reboot issued before the interruption but were still up on their old boot; the reboot was sent again: {}",
                self.resent.len(),
                list(&self.resent)
            ));
        }
        if !self.waiting.is_empty() {
            let mut left: Vec<String> = self.waiting.iter().cloned().collect();
            left.sort();
            notes.push(format!(
                "{} hosts had a reboot issued before the interruption that this run could not verify: {}",
                left.len(),
                list(&left)
            ));
        }
        notes
    }
}

/// Feeds a resumed run's events to its [`Reverified`].
pub struct ReverifyConsumer(pub Arc<Mutex<Reverified>>);

impl Consumer for ReverifyConsumer {
    fn event(&mut self, e: Seen<'_>, _ack: &mut Option<Ack>) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .event(e.kind);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "resume notes"
    }
}

/// At most ten names, then a count.
pub fn list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 10 {
        s.push_str(&format!(" and {} more", names.len() - 10));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::events::{HostRef, StageRef};

    fn host(name: &str) -> HostRef {
        HostRef {
            index: 0,
            name: name.into(),
        }
    }

    fn stage() -> StageRef {
        StageRef {
            index: 0,
            name: "s".into(),
        }
    }

    #[test]
    fn resume_note_tells_verified_from_resent_reboots() {
        let mut r = Reverified::new(&["a".into(), "b".into(), "c".into()]);
        // `b` was still on its old boot: the engine sent the reboot again.
        r.event(&EventKind::RebootIssued {
            stage: stage(),
            host: host("b"),
            step: 0,
            boot_id_before: "x".into(),
        });
        for h in ["a", "b"] {
            r.event(&EventKind::StepFinished {
                stage: stage(),
                host: host(h),
                step: 0,
                kind: StepKind::Reboot,
                error: None,
            });
        }
        let notes = r.notes();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].starts_with("1 hosts") && notes[0].contains("not sent again: a"),
            "{notes:?}"
        );
        assert!(notes[1].contains("was sent again: b"), "{notes:?}");
        assert!(notes[2].contains("could not verify: c"), "{notes:?}");
    }
}
