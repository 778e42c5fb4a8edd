//! `rekindle resume JOURNAL`: continue an interrupted run. Reloads the
//! playbook and inventories named in the journal's header (refusing if their
//! content changed, unless `--force`), replays the journal into per-host
//! starts, and hands them to the session's pipeline, appending to the same
//! journal under the plan's lock.
//!
//! Owns the resume command's checks and messages; the replay rules are
//! `journal::replay`'s, the execution `session`'s.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::args;
use crate::cli::ResumeArgs;
use crate::diag::Sources;
use crate::exit::Exit;
use crate::journal::{self, Record};
use crate::select::Selector;
use crate::session::resume::{self, Reverified, ReverifyConsumer, list};
use crate::session::{self, Display, Execution};

pub fn execute(args: ResumeArgs, verbose: u8) -> anyhow::Result<Exit> {
    if args.without_etcd {
        if args.etcd.etcd.is_some() {
            eprintln!("warning: --without-etcd: --etcd (or REKINDLE_ETCD) is ignored");
        }
    } else if args.etcd.etcd.is_some() {
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
    if takeover.is_none()
        && let Some(home) = &header.etcd
    {
        if !args.without_etcd {
            eprintln!(
                "error: cannot resume: {}",
                super::etcd::kept_in_etcd(header, home)
            );
            return Ok(Exit::Usage);
        }
        eprintln!(
            "warning: --without-etcd: resuming run {} from this journal alone; etcd's copy is not updated, and nothing stops a standby or another bastion from taking the run over from etcd",
            header.run_id
        );
    } else if args.without_etcd && takeover.is_none() {
        eprintln!(
            "note: --without-etcd: run {} is not kept in etcd; it resumes as usual",
            header.run_id
        );
    }
    let changed = match resume::changed_inputs(header) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot resume: {e}");
            return Ok(Exit::Usage);
        }
    };
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
        takeover.is_some(),
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
    let replayed = journal::replay::replay(&journal.records, &prepared.plan, &prepared.inventory);
    let narrowing = args.failed_only || narrow_to.is_some();
    let narrowed = if narrowing {
        resume::narrow(
            &mut prepared.plan,
            &prepared.inventory,
            &replayed,
            args.failed_only,
            narrow_to.as_ref(),
        )
    } else {
        resume::Narrowed {
            retried: replayed.retried.clone(),
            ..Default::default()
        }
    };
    let left_out = narrowed.left_out;
    if args.accept_failures && !narrowing {
        eprintln!(
            "error: --accept-failures goes with --limit or --failed-only: without them every failed host is retried"
        );
        return Ok(Exit::Usage);
    }
    let to_run = resume::to_run(&prepared.plan, &replayed);
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
            if args.failed_only && replayed.failed.is_empty() {
                " (no host failed)"
            } else {
                ""
            }
        );
        return Ok(Exit::Usage);
    }
    if !narrowed.broken.is_empty() {
        if !args.accept_failures {
            for b in &narrowed.broken {
                eprintln!("error: {flags}: {b}");
            }
            eprintln!(
                "error: refusing to resume run {}: a failure budget broken before stays broken until its failed hosts succeed,                  so the stages after it would not run; include those hosts (they are retried),                  or pass --accept-failures to count the stage as finished with them failed",
                header.run_id
            );
            return Ok(Exit::Usage);
        }
        for b in &narrowed.broken {
            eprintln!(
                "warning: --accept-failures: {b}; the stage counts as finished and the stages after it run"
            );
        }
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
        replayed.done,
        total,
        replayed.reverify.len(),
        replayed.mid_step.len(),
        narrowed.retried.len()
    );
    if !replayed.power_cycled.is_empty() {
        eprintln!(
            "{} hosts were power-cycled by `remediate` before the interruption; their count goes on, no cycle is sent again: {}",
            replayed.power_cycled.len(),
            list(&replayed.power_cycled)
        );
    }
    if replayed.unknown > 0 {
        eprintln!(
            "warning: {} journal hosts are not in the current plan; they are left alone",
            replayed.unknown
        );
    }
    if !args::confirm(plan, args.exec.yes)? {
        return Ok(Exit::Usage);
    }
    if let Some(t) = &takeover {
        prepared.opts.hold_resumed_until =
            t.hold_for_unknown(replayed.reverify.len() + replayed.mid_step.len());
    }

    let resumed = Record::Resumed {
        at: journal::rfc3339(SystemTime::now()),
        operator: journal::operator(),
        bastion: journal::bastion(),
        pid: std::process::id(),
        forced: !changed.is_empty(),
    };
    let mut consumers = match args::live_views(
        &args.exec,
        &header.run_id,
        &prepared.plan,
        resume::collector(&journal.records, &resumed),
        &resume::done_before(&prepared.plan, &replayed),
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

    let mut collector = resume::collector(&journal.records, &resumed);
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
    let reboots = Arc::new(Mutex::new(Reverified::new(&replayed.reverify)));
    consumers.push(Box::new(ReverifyConsumer(Arc::clone(&reboots))));
    let finished = session::execute(
        Execution {
            prepared,
            journal: Some(opened),
            collector,
            already_done: replayed.done,
            starts: replayed.starts,
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
