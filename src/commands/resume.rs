//! `rekindle resume JOURNAL`: continue an interrupted run. Reloads the
//! playbook and inventories named in the journal's header (refusing if their
//! content changed, unless `--force`), replays the journal into per-host
//! starts, takes the plan's lock and runs the same engine, appending to the
//! same journal.
//!
//! Owns the resume command's checks and messages; the replay rules are
//! `journal::replay`'s, the execution `run`'s.

use std::time::SystemTime;

use anyhow::Context;

use super::run::{Recording, execute_recorded, journal_dir, load, take_lock};
use crate::cli::ResumeArgs;
use crate::diag::Sources;
use crate::exit::Exit;
use crate::journal::{self, Record};
use crate::report::summary::Collector;

pub fn execute(args: ResumeArgs, verbose: u8) -> anyhow::Result<Exit> {
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
    let Some((inventory, plan)) = load(
        &header
            .inventories
            .iter()
            .map(|f| f.path.clone())
            .collect::<Vec<_>>(),
        &header.playbook.path,
        header.limit.as_deref(),
        &mut sources,
    ) else {
        return Ok(Exit::Usage);
    };

    // The journal's directory holds the plan's lock, whatever --journal says.
    let dir = args
        .journal_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(
            || std::path::PathBuf::from("."),
            std::path::Path::to_path_buf,
        );
    journal_dir(&dir)?;
    let Some(lock) = take_lock(
        &dir,
        &header.playbook.path,
        &args.journal_file,
        &args.exec,
        &plan,
        &inventory,
    ) else {
        return Ok(Exit::Usage);
    };
    // Read again now that no other run can add to it: a run this one took
    // over recorded every intent it acted on before its lock was gone.
    let journal = match journal::read(&args.journal_file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: cannot resume: {e}");
            return Ok(Exit::Usage);
        }
    };
    let resume = journal::replay::replay(&journal.records, &plan, &inventory);

    let total: usize = plan.stages.iter().map(|s| s.hosts.len()).sum();
    eprintln!(
        "resuming run {} of `{}`: {} of {} host runs done before and skipped; {} reboots re-verified by boot id (not sent again); {} hosts restart the step they were in; {} failed hosts retried from their failed step",
        header.run_id,
        plan.name,
        resume.done,
        total,
        resume.reverify.len(),
        resume.mid_step.len(),
        resume.retried.len()
    );
    if resume.unknown > 0 {
        eprintln!(
            "warning: {} journal hosts are not in the current plan; they are left alone",
            resume.unknown
        );
    }
    if !super::run::confirm(&plan, args.exec.yes)? {
        return Ok(Exit::Usage);
    }

    let mut writer = journal::append(&args.journal_file)
        .with_context(|| format!("cannot append to {}", args.journal_file.display()))?;
    writer.fence(lock.held());
    writer.push(
        &Record::Resumed {
            at: journal::rfc3339(SystemTime::now()),
            operator: journal::operator(),
            bastion: journal::bastion(),
            pid: std::process::id(),
            forced: !changed.is_empty(),
        },
        None,
    );
    writer.commit();

    let mut collector = Collector::new();
    for r in &journal.records {
        collector.record(r);
    }
    collector.record(&Record::Resumed {
        at: journal::rfc3339(SystemTime::now()),
        operator: String::new(),
        bastion: String::new(),
        pid: 0,
        forced: false,
    });
    if !resume.retried.is_empty() {
        collector.note(format!(
            "{} hosts that had failed were retried from their failed step: {}",
            resume.retried.len(),
            list(&resume.retried)
        ));
    }
    if !resume.reverify.is_empty() {
        collector.note(format!(
            "{} hosts had a reboot issued before the interruption; it was verified by boot id, not sent again: {}",
            resume.reverify.len(),
            list(&resume.reverify)
        ));
    }
    // `--parallel`/`--rate` of the original run unless given again.
    let mut exec = args.exec.clone();
    exec.parallel = exec.parallel.or(header.parallel);
    exec.rate = exec.rate.clone().or_else(|| header.rate.clone());
    let exit = execute_recorded(
        plan,
        inventory,
        &exec,
        verbose,
        resume.starts,
        Recording {
            writer: Some(writer),
            collector,
            already_done: resume.done,
        },
    );
    drop(lock);
    exit
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
