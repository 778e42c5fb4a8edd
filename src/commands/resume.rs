//! `rekindle resume JOURNAL`: continue an interrupted run. Reloads the
//! playbook and inventories named in the journal's header (refusing if their
//! content changed, unless `--force`), replays the journal into per-host
//! starts, and hands them to the session's pipeline, appending to the same
//! journal under the plan's lock.
//!
//! Owns the resume command's checks and messages; the replay rules are
//! `journal::replay`'s, the execution `session`'s.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::args;
use crate::cli::ResumeArgs;
use crate::diag::Sources;
use crate::engine::HostStart;
use crate::engine::events::{Ack, EventKind, StepKind};
use crate::exit::Exit;
use crate::inventory::Inventory;
use crate::journal::replay::Resume;
use crate::journal::{self, Record};
use crate::plan::Plan;
use crate::report::summary::Collector;
use crate::select::Selector;
use crate::session::consume::{Consumer, Seen};
use crate::session::{self, Display, Execution};

pub fn execute(args: ResumeArgs, verbose: u8) -> anyhow::Result<Exit> {
    if args.etcd.etcd.is_some() {
        return super::etcd::resume(args, verbose);
    }
    execute_with(args, verbose, None)
}

/// A resume; with `takeover`, of a run taken over in etcd (its journal
/// file written from etcd's copy), mirrored there under the new lead.
pub(crate) fn execute_with(
    args: ResumeArgs,
    verbose: u8,
    mut takeover: Option<super::etcd::Takeover>,
) -> anyhow::Result<Exit> {
    let journal = match journal::read(&args.journal_file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: cannot resume: {e}");
            return Ok(Exit::Usage);
        }
    };
    if journal.torn_tail {
        eprintln!(
            "note: the journal's last record was cut short (the run died while writing it); it is ignored"
        );
    }
    if journal
        .records
        .iter()
        .any(|r| matches!(r, Record::Drill { .. }))
    {
        eprintln!(
            "error: cannot resume: {} is the journal of a drill, which rehearsed the plan on simulated hosts; \
             `rekindle run` the plan to act on the real ones",
            args.journal_file.display()
        );
        return Ok(Exit::Usage);
    }
    let header = &journal.header;
    let mut changed = Vec::new();
    for f in std::iter::once(&header.playbook).chain(&header.inventories) {
        match f.unchanged() {
            Ok(true) => {}
            Ok(false) => changed.push(format!("{} changed since the run began", f.path)),
            Err(e) => {
                eprintln!("error: cannot resume: {}: {e}", f.path);
                return Ok(Exit::Usage);
            }
        }
    }
    if !changed.is_empty() {
        if !args.force {
            for c in &changed {
                eprintln!("error: {c}");
            }
            eprintln!(
                "error: refusing to resume run {} with a different plan or inventory; \
                 pass --force to resume anyway (hosts are matched by stage and host name)",
                header.run_id
            );
            return Ok(Exit::Usage);
        }
        for c in &changed {
            eprintln!("warning: --force: {c}");
        }
    }

    let mut sources = Sources::new();
    let inventories: Vec<String> = header.inventories.iter().map(|f| f.path.clone()).collect();
    let Some(loaded) = args::load(
        &inventories,
        &header.playbook.path,
        header.limit.as_deref(),
        &mut sources,
    ) else {
        return Ok(Exit::Usage);
    };
    let narrow_to = match args.limit.as_deref().map(Selector::parse).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --limit: {e}");
            return Ok(Exit::Usage);
        }
    };

    // `--parallel`/`--rate` of the original run unless given again.
    let mut exec = args.exec.clone();
    exec.parallel = exec.parallel.or(header.parallel);
    exec.rate = exec.rate.clone().or_else(|| header.rate.clone());
    let rate = match args::rate(&exec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let settings = args::settings(&exec, rate, &loaded.inventory);
    let mut prepared = match session::prepare(loaded.plan, loaded.inventory, &settings) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Exit::Usage);
        }
    };
    args::print_notes(&prepared.notes);
    let (lock, notes) = match session::lock_existing(
        &args.journal_file,
        &header.playbook.path,
        args::breaking(&args.exec),
        (&prepared.plan, &prepared.inventory),
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Exit::Usage);
        }
    };
    args::print_notes(&notes);
    // Read again now that no other run can add to it: a run this one took
    // over had recorded every intent it acted on before its lock was gone.
    let journal = match journal::read(&args.journal_file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: cannot resume: {e}");
            return Ok(Exit::Usage);
        }
    };
    let resume = journal::replay::replay(&journal.records, &prepared.plan, &prepared.inventory);
    let narrowing = args.failed_only || narrow_to.is_some();
    let left_out = if narrowing {
        narrow(
            &mut prepared.plan,
            &prepared.inventory,
            &resume,
            args.failed_only,
            narrow_to.as_ref(),
        )
    } else {
        0
    };
    let to_run: usize = prepared
        .plan
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.hosts
                .iter()
                .filter(|&&h| resume.starts.get(&(i, h)) != Some(&HostStart::Done))
                .count()
        })
        .sum();
    let flags = match (args.failed_only, &args.limit) {
        (true, Some(l)) => format!("--failed-only --limit {l}"),
        (true, None) => "--failed-only".to_owned(),
        (false, Some(l)) => format!("--limit {l}"),
        (false, None) => String::new(),
    };
    if narrowing && to_run == 0 {
        eprintln!(
            "error: nothing to resume: {flags} leaves no host of run {} to run{}",
            header.run_id,
            if args.failed_only && resume.failed.is_empty() {
                " (no host failed)"
            } else {
                ""
            }
        );
        return Ok(Exit::Usage);
    }
    if narrowing {
        eprintln!(
            "{flags}: {to_run} hosts to run; {left_out} left out (a later `rekindle resume` runs them)"
        );
    }

    let plan = &prepared.plan;
    let total: usize = plan.stages.iter().map(|s| s.hosts.len()).sum();
    eprintln!(
        "resuming run {} of `{}`: {} of {} host runs done before and skipped; {} reboots re-verified by boot id (not sent again unless the host is still up on its old boot); {} hosts restart the step they were in; {} failed hosts retried from their failed step",
        header.run_id,
        plan.name,
        resume.done,
        total,
        resume.reverify.len(),
        resume.mid_step.len(),
        resume.retried.len()
    );
    if !resume.power_cycled.is_empty() {
        eprintln!(
            "{} hosts were power-cycled by `remediate` before the interruption; their count goes on, no cycle is sent again: {}",
            resume.power_cycled.len(),
            list(&resume.power_cycled)
        );
    }
    if resume.unknown > 0 {
        eprintln!(
            "warning: {} journal hosts are not in the current plan; they are left alone",
            resume.unknown
        );
    }
    if !args::confirm(plan, args.exec.yes)? {
        return Ok(Exit::Usage);
    }
    if let Some(t) = &takeover {
        t.hold_for_unknown(resume.reverify.len() + resume.mid_step.len());
    }

    let resumed = Record::Resumed {
        at: journal::rfc3339(SystemTime::now()),
        operator: journal::operator(),
        bastion: journal::bastion(),
        pid: std::process::id(),
        forced: !changed.is_empty(),
    };
    let mut earlier = Collector::new();
    for r in &journal.records {
        earlier.record(r);
    }
    earlier.record(&resumed);
    let mut done_before = vec![0; prepared.plan.stages.len()];
    for ((stage, _), start) in &resume.starts {
        if *start == HostStart::Done
            && let Some(n) = done_before.get_mut(*stage)
        {
            *n += 1;
        }
    }
    let mut consumers = match args::live_views(
        &args.exec,
        &header.run_id,
        &prepared.plan,
        earlier,
        &done_before,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let mut opened = match session::open_append(&args.journal_file, lock) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Exit::Usage);
        }
    };
    opened.writer.push(&resumed, None);
    opened.writer.commit();

    let mut collector = Collector::new();
    for r in &journal.records {
        collector.record(r);
    }
    collector.record(&resumed);
    if left_out > 0 {
        collector.note(format!(
            "resumed with {flags}: {left_out} hosts were left out; a later `rekindle resume` runs them"
        ));
    }
    if !resume.retried.is_empty() {
        collector.note(format!(
            "{} hosts that had failed were retried from their failed step: {}",
            resume.retried.len(),
            list(&resume.retried)
        ));
    }
    let reboots = Arc::new(Mutex::new(Reverified::new(&resume.reverify)));
    consumers.push(Box::new(ReverifyConsumer(Arc::clone(&reboots))));
    let finished = session::execute(
        Execution {
            prepared,
            journal: Some(opened),
            collector,
            already_done: resume.done,
            starts: resume.starts,
            display: Display::Progress {
                quiet: args.exec.quiet,
                verbose: verbose > 0,
            },
            consumers,
            mirror: takeover.as_mut().map(|t| t.lead().mirror()),
        },
        args::notice,
    )?;
    let mut finished = finished;
    let reboots = reboots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    finished.summary.notes.extend(reboots.notes());
    args::print_finished(&finished, args.exec.quiet);
    Ok(match takeover {
        Some(t) => t.finish(finished.exit),
        None => finished.exit,
    })
}

/// `--failed-only` and `--limit`: takes out of the plan's stages every host
/// that is neither done before (still counted done) nor chosen (failed,
/// when `failed_only`; matching `limit`, when given). Returns how many were
/// left out; the journal has nothing new about them, so a later resume
/// runs them.
fn narrow(
    plan: &mut Plan,
    inventory: &Inventory,
    resume: &Resume,
    failed_only: bool,
    limit: Option<&Selector>,
) -> usize {
    let failed: HashSet<(usize, usize)> = resume.failed.iter().copied().collect();
    let mut left_out = 0;
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
        let before = stage.hosts.len();
        stage.hosts.retain(|&h| keep(h));
        left_out += before - stage.hosts.len();
        stage.canaries = canaries;
    }
    left_out
}

/// What became of the hosts whose reboot was issued before the
/// interruption: verified by boot id, sent again (the host was still up on
/// its old boot, so the first never arrived), or neither.
#[derive(Debug, Default)]
struct Reverified {
    waiting: HashSet<String>,
    resent: Vec<String>,
    verified: Vec<String>,
}

impl Reverified {
    fn new(hosts: &[String]) -> Self {
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

    fn notes(&self) -> Vec<String> {
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

struct ReverifyConsumer(Arc<Mutex<Reverified>>);

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
fn list(names: &[String]) -> String {
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
