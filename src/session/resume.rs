//! Resuming a run: whether the journal's inputs are unchanged, which hosts
//! a narrowed resume (`--failed-only`, `--limit`) keeps, how many are left
//! to run, and what became of the reboots that were in flight (a consumer
//! of the resumed run's events).
//!
//! Also [`resume`] itself: the journal's checks, the replay narrowed as
//! asked, the plan confirmed, then the session's pipeline appending to the
//! same journal.
//!
//! Owns those rules and a resume's messages; the replay of the journal
//! into per-host starts is `journal::replay`'s, the execution
//! [`super::execute`]'s. It does not print: lines go through the [`Front`].

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::consume::{Consumer, Seen};
use super::front::Front;
use super::{Display, Execution};
use crate::engine::HostStart;
use crate::engine::events::{Ack, EventKind, StepKind};
use crate::etcd::takeover::Takeover;
use crate::exit::{Exit, usage};
use crate::inventory::Inventory;
use crate::journal;
use crate::journal::replay::Resume;
use crate::journal::{Record, lock};
use crate::plan::Plan;
use crate::report::fold::Collector;
use crate::report::state::RunState;
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

/// A resume as the command line asks for it (`rekindle resume`).
pub struct Request {
    /// The journal to append to.
    pub journal_file: std::path::PathBuf,
    /// Resume although the inputs changed since the run began.
    pub force: bool,
    /// Only the hosts that failed (`--failed-only`).
    pub failed_only: bool,
    /// `--limit`, as given (parsed here, named in messages).
    pub limit: Option<String>,
    /// A failure budget broken before counts as finished.
    pub accept_failures: bool,
    /// A run kept in etcd resumed from this journal alone.
    pub without_etcd: bool,
    /// Confirmed already (`--yes`, or a standby: starting it was the confirmation).
    pub yes: bool,
    pub quiet: bool,
    pub verbose: bool,
    /// What the plan's lock may take over.
    pub breaking: lock::Break,
    /// Where a takeover writes the run's journal and inputs (`--journal`).
    pub journal_dir: std::path::PathBuf,
}

impl Request {
    /// What a standby resumes with when it takes run `run_id` over: the
    /// whole run as journaled, confirmed by starting the standby.
    pub fn standby(
        run_id: &str,
        quiet: bool,
        verbose: bool,
        breaking: lock::Break,
        journal_dir: std::path::PathBuf,
    ) -> Request {
        Request {
            journal_file: run_id.into(),
            force: false,
            failed_only: false,
            limit: None,
            accept_failures: false,
            without_etcd: false,
            yes: true,
            quiet,
            verbose,
            breaking,
            journal_dir,
        }
    }
}

/// Resumes the run journaled in `request.journal_file`: the journal and its
/// inputs checked, replayed into per-host starts (narrowed as asked), the
/// plan confirmed, then executed by the session's pipeline appending to the
/// same journal under the plan's lock. With `takeover`, a run taken over
/// in etcd (its journal file written from etcd's copy), mirrored there
/// under the new lead.
pub fn resume(
    request: Request,
    mut takeover: Option<Takeover>,
    front: &dyn Front,
) -> anyhow::Result<Exit> {
    let say = front.say();
    let journal =
        journal::read(&request.journal_file).map_err(|e| usage(format!("cannot resume: {e}")))?;
    if journal.torn_tail {
        say(
            "note: the journal's last record was cut short (the run died while writing it); it is ignored",
        );
    }
    if journal
        .records
        .iter()
        .any(|r| matches!(r, Record::Drill { .. }))
    {
        return Err(usage(format!(
            "cannot resume: {} is the journal of a drill, which rehearsed the plan on simulated hosts; \
             `rekindle run` the plan to act on the real ones",
            request.journal_file.display()
        )));
    }
    let header = &journal.header;
    if takeover.is_none()
        && let Some(home) = &header.etcd
    {
        if !request.without_etcd {
            return Err(usage(format!(
                "cannot resume: {}",
                crate::etcd::takeover::kept_in_etcd(header, home)
            )));
        }
        say(&format!(
            "warning: --without-etcd: resuming run {} from this journal alone; etcd's copy is not updated, and nothing stops a standby or another bastion from taking the run over from etcd",
            header.run_id
        ));
    } else if request.without_etcd && takeover.is_none() {
        say(&format!(
            "note: --without-etcd: run {} is not kept in etcd; it resumes as usual",
            header.run_id
        ));
    }
    let changed = changed_inputs(header).map_err(|e| usage(format!("cannot resume: {e}")))?;
    if !changed.is_empty() {
        if !request.force {
            for c in &changed {
                say(&format!("error: {c}"));
            }
            return Err(usage(format!(
                "refusing to resume run {} with a different plan or inventory; \
                 pass --force to resume anyway (hosts are matched by stage and host name)",
                header.run_id
            )));
        }
        for c in &changed {
            say(&format!("warning: --force: {c}"));
        }
    }

    let inventories: Vec<String> = header.inventories.iter().map(|f| f.path.clone()).collect();
    let loaded = front.load(&inventories, &header.playbook.path, header.limit.as_deref())?;
    let narrow_to = request
        .limit
        .as_deref()
        .map(Selector::parse)
        .transpose()
        .map_err(|e| usage(format!("--limit: {e}")))?;

    // `--parallel`/`--rate` of the original run unless given again.
    let settings = front.settings(header, &loaded.inventory)?;
    let mut prepared = super::prepare(loaded.plan, loaded.inventory, &settings)?;
    prepared.notes.iter().for_each(|n| say(n));
    let (lock, notes) = super::lock_existing(
        &request.journal_file,
        &header.playbook.path,
        request.breaking,
        (&prepared.plan, &prepared.inventory),
        takeover.is_some(),
    )?;
    notes.iter().for_each(|n| say(n));
    // Read again now that no other run can add to it: a run this one took
    // over had recorded every intent it acted on before its lock was gone.
    let journal =
        journal::read(&request.journal_file).map_err(|e| usage(format!("cannot resume: {e}")))?;
    let replayed = journal::replay::replay(&journal.records, &prepared.plan, &prepared.inventory);
    let narrowing = request.failed_only || narrow_to.is_some();
    let narrowed = if narrowing {
        narrow(
            &mut prepared.plan,
            &prepared.inventory,
            &replayed,
            request.failed_only,
            narrow_to.as_ref(),
        )
    } else {
        Narrowed {
            retried: replayed.retried.clone(),
            ..Default::default()
        }
    };
    let left_out = narrowed.left_out;
    if request.accept_failures && !narrowing {
        return Err(usage(
            "--accept-failures goes with --limit or --failed-only: without them every failed host is retried",
        ));
    }
    let to_run = to_run(&prepared.plan, &replayed);
    let flags = match (request.failed_only, &request.limit) {
        (true, Some(l)) => format!("--failed-only --limit {l}"),
        (true, None) => "--failed-only".to_owned(),
        (false, Some(l)) => format!("--limit {l}"),
        (false, None) => String::new(),
    };
    if narrowing && to_run == 0 {
        return Err(usage(format!(
            "nothing to resume: {flags} leaves no host of run {} to run{}",
            header.run_id,
            if request.failed_only && replayed.failed.is_empty() {
                " (no host failed)"
            } else {
                ""
            }
        )));
    }
    if !narrowed.broken.is_empty() {
        if !request.accept_failures {
            for b in &narrowed.broken {
                say(&format!("error: {flags}: {b}"));
            }
            return Err(usage(format!(
                "refusing to resume run {}: a failure budget broken before stays broken until its failed hosts succeed,                  so the stages after it would not run; include those hosts (they are retried),                  or pass --accept-failures to count the stage as finished with them failed",
                header.run_id
            )));
        }
        for b in &narrowed.broken {
            say(&format!(
                "warning: --accept-failures: {b}; the stage counts as finished and the stages after it run"
            ));
        }
    }
    if narrowing {
        say(&format!(
            "{flags}: {to_run} hosts to run; {left_out} left out (a later `rekindle resume` runs them)"
        ));
    }

    let plan = &prepared.plan;
    let total: usize = plan.stages.iter().map(|s| s.hosts.len()).sum();
    say(&format!(
        "resuming run {} of `{}`: {} of {} host runs done before and skipped; {} reboots re-verified by boot id (not sent again unless the host is still up on its old boot); {} hosts restart the step they were in; {} failed hosts retried from their failed step",
        header.run_id,
        plan.name,
        replayed.done,
        total,
        replayed.reverify.len(),
        replayed.mid_step.len(),
        narrowed.retried.len()
    ));
    if !replayed.power_cycled.is_empty() {
        say(&format!(
            "{} hosts were power-cycled by `remediate` before the interruption; their count goes on, no cycle is sent again: {}",
            replayed.power_cycled.len(),
            list(&replayed.power_cycled)
        ));
    }
    if replayed.unknown > 0 {
        say(&format!(
            "warning: {} journal hosts are not in the current plan; they are left alone",
            replayed.unknown
        ));
    }
    if !request.yes {
        front.confirm(plan)?;
    }
    if let Some(t) = &takeover {
        prepared.opts.hold_resumed_until =
            t.hold_for_unknown(replayed.reverify.len() + replayed.mid_step.len(), say);
    }

    let resumed = Record::Resumed {
        at: journal::rfc3339(SystemTime::now()),
        operator: journal::operator(),
        bastion: journal::bastion(),
        pid: std::process::id(),
        forced: !changed.is_empty(),
    };
    let mut collector = collector(&journal.records, &resumed);
    if left_out > 0 {
        collector.note(format!(
            "resumed with {flags}: {left_out} hosts were left out; a later `rekindle resume` runs them"
        ));
    }
    for b in &narrowed.broken {
        collector.note(format!(
            "--accept-failures: {b}; the stage was counted as finished"
        ));
    }
    if !narrowed.retried.is_empty() {
        collector.note(format!(
            "{} hosts that had failed were retried from their failed step: {}",
            narrowed.retried.len(),
            list(&narrowed.retried)
        ));
    }
    let state = RunState::new(collector).shared();
    let mut consumers = front.live_views(&header.run_id, &prepared.plan, &state)?;
    let mut opened = super::open_append(&request.journal_file, lock)?;
    opened.writer.push(&resumed, None);
    opened.writer.commit();
    let reboots = Arc::new(Mutex::new(Reverified::new(&replayed.reverify)));
    consumers.push(Box::new(ReverifyConsumer(Arc::clone(&reboots))));
    let finished = super::execute(
        Execution {
            prepared,
            journal: Some(opened),
            state,
            already_done: replayed.done,
            starts: replayed.starts,
            display: Display::Progress {
                quiet: request.quiet,
                verbose: request.verbose,
            },
            consumers,
            mirror: takeover.as_mut().map(|t| t.lead().mirror()),
        },
        say,
    )?;
    let mut finished = finished;
    let reboots = reboots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    finished.summary.notes.extend(reboots.notes());
    front.finished(&finished);
    match takeover {
        Some(t) => t.finish(finished.exit),
        None => Ok(finished.exit),
    }
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
