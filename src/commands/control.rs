//! `rekindle pause RUN` and `rekindle continue RUN`: flip a run's control
//! file, then wait (bounded) for the running process to say in the journal
//! that it took it.
//!
//! Owns these commands' messages; the control file is `session::control`'s.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::ControlArgs;
use crate::engine::events::EventKind;
use crate::exit::Exit;
use crate::journal::{self, Record};
use crate::session::control;

/// How long to wait for the run to acknowledge in its journal.
const ACK_WITHIN: Duration = Duration::from_secs(5);

pub fn execute(args: ControlArgs, pause: bool) -> anyhow::Result<Exit> {
    let verb = if pause { "pause" } else { "continue" };
    let path = match control::resolve(&args.run, &args.journal) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot {verb}: {e}");
            return Ok(Exit::Usage);
        }
    };
    let journal = match journal::read(&path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: cannot {verb}: {e}");
            return Ok(Exit::Usage);
        }
    };
    let run_id = journal.header.run_id.clone();
    let before = acknowledgements(&path, pause);
    if pause && finished(&journal.records) {
        eprintln!(
            "error: cannot pause: run {run_id} has finished (its journal ends with the run's end)"
        );
        return Ok(Exit::Usage);
    }
    let changed = match control::set(&path, pause, &journal::operator(), SystemTime::now()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: cannot {verb} run {run_id}: {}: {e}",
                control::pause_file(&path).display()
            );
            return Ok(Exit::Usage);
        }
    };
    if !changed {
        eprintln!(
            "run {run_id} is {} already",
            if pause { "paused" } else { "not paused" }
        );
        return Ok(Exit::Success);
    }
    let start = Instant::now();
    while start.elapsed() < ACK_WITHIN {
        if acknowledgements(&path, pause) > before {
            if pause {
                eprintln!(
                    "paused run {run_id}: no host starts and no host starts a new step; steps in flight finish \
                     (`rekindle continue {}` goes on)",
                    args.run
                );
            } else {
                eprintln!("continued run {run_id}");
            }
            return Ok(Exit::Success);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "note: run {run_id} is {} as soon as its process looks (none acknowledged within {}s: is it running? \
         a resume of it starts {})",
        if pause { "paused" } else { "continued" },
        ACK_WITHIN.as_secs(),
        if pause { "paused" } else { "unpaused" },
    );
    Ok(Exit::Success)
}

/// How many times the journal says the run paused (or continued).
fn acknowledgements(path: &Path, pause: bool) -> usize {
    let needle = if pause {
        "\"event\":\"run_paused\""
    } else {
        "\"event\":\"run_continued\""
    };
    std::fs::read_to_string(path)
        .map(|t| t.matches(needle).count())
        .unwrap_or(0)
}

/// Whether the journal ends with the run's end (no resume after it).
fn finished(records: &[Record]) -> bool {
    records.iter().rev().find_map(|r| match r {
        Record::Resumed { .. } => Some(false),
        Record::Event {
            kind: EventKind::RunFinished { .. },
            ..
        } => Some(true),
        _ => None,
    }) == Some(true)
}
