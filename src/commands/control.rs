//! `rekindle pause RUN` and `rekindle continue RUN`: flip a run's control
//! file (for a run kept in etcd, its pause key there, which binds whoever
//! drives the run), then wait (bounded) for the running process to say in
//! the journal that it took it.
//!
//! Owns these commands' messages; the control file is `session::control`'s,
//! the pause key `etcd`'s.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::ControlArgs;
use crate::exit::Exit;
use crate::journal::{self, Record};
use crate::session::control;

/// How long to wait for the run to acknowledge in its journal.
const ACK_WITHIN: Duration = Duration::from_secs(5);

pub fn execute(args: ControlArgs, pause: bool) -> anyhow::Result<Exit> {
    let verb = if pause { "pause" } else { "continue" };
    // A run kept in etcd is paused there, whichever bastion asks: a control
    // file here would not reach a driver that took the run over elsewhere.
    let local = control::resolve(&args.run, &args.journal)
        .ok()
        .and_then(|p| journal::read(&p).ok());
    let home = local.as_ref().and_then(|j| j.header.etcd.clone());
    // `--etcd` (or REKINDLE_ETCD) reaches a run whose journal is not here;
    // a local run's own journal says it is not kept in etcd.
    if home.is_some() || (local.is_none() && args.etcd.etcd.is_some()) {
        let run = local
            .as_ref()
            .map_or_else(|| args.run.clone(), |j| j.header.run_id.clone());
        return Ok(in_etcd(&args, &run, home.as_ref(), pause));
    }
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
    crate::etcd::journal_finished(records)
}

/// Pause or continue a run kept in etcd: its pause key, then the driver's
/// acknowledgement in etcd's copy of the journal. Never claims more than
/// etcd shows: a run without a driver is paused for whoever takes it over.
fn in_etcd(args: &ControlArgs, run: &str, home: Option<&journal::EtcdHome>, pause: bool) -> Exit {
    let verb = if pause { "pause" } else { "continue" };
    let mut etcd = args.etcd.clone();
    if etcd.etcd.is_none()
        && let Some(home) = home
    {
        etcd.etcd = Some(home.endpoints.join(","));
        etcd.etcd_prefix.clone_from(&home.prefix);
    }
    let store = match super::args::etcd(&etcd).and_then(|s| match s {
        Some(s) => super::args::etcd_store(s),
        None => Err("--etcd is needed".into()),
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot {verb} run {run}, which is kept in etcd: {e}");
            return Exit::Usage;
        }
    };
    let fail = |e: crate::etcd::client::EtcdError| {
        eprintln!("error: cannot {verb} run {run}: --etcd: {e}");
        Exit::Usage
    };
    let journal = match store.journal(run) {
        Ok(Some(j)) => j,
        Ok(None) => {
            eprintln!(
                "error: cannot {verb}: no run {run} in etcd under {} (`rekindle status --etcd ...` lists them)",
                store.settings.prefix
            );
            return Exit::Usage;
        }
        Err(e) => return fail(e),
    };
    if pause && finished(&journal.records) {
        eprintln!(
            "error: cannot pause: run {run} has finished (its journal in etcd ends with the run's end)"
        );
        return Exit::Usage;
    }
    let before = match store.acknowledgements(run, pause) {
        Ok(n) => n,
        Err(e) => return fail(e),
    };
    match store.set_paused(run, pause, &journal::operator()) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "run {run} is {} already (in etcd)",
                if pause { "paused" } else { "not paused" }
            );
            return Exit::Success;
        }
        Err(e) => return fail(e),
    }
    let start = Instant::now();
    while start.elapsed() < ACK_WITHIN {
        std::thread::sleep(Duration::from_millis(250));
        if store.acknowledgements(run, pause).is_ok_and(|n| n > before) {
            let by = store
                .driver(run)
                .ok()
                .flatten()
                .map(|d| format!(" (driven by {})", super::etcd::driver_words(&d)))
                .unwrap_or_default();
            if pause {
                eprintln!(
                    "paused run {run}{by}: no host starts and no host starts a new step; steps in flight finish. \
                     The pause is kept in etcd and binds whoever drives the run (`rekindle continue {run}` goes on)"
                );
            } else {
                eprintln!("continued run {run}{by}");
            }
            return Exit::Success;
        }
    }
    let what = if pause { "paused" } else { "continued" };
    match store.driver(run) {
        Ok(Some(d)) => eprintln!(
            "note: run {run} is {what} in etcd, but its driver {} has not acknowledged it within {}s; \
             every driver reads the run's pause key every {}s, and a takeover starts as it says",
            super::etcd::driver_words(&d),
            ACK_WITHIN.as_secs(),
            crate::etcd::PAUSE_POLL.as_secs()
        ),
        Ok(None) => eprintln!(
            "note: run {run} has no driver now; it is {what} in etcd, so whoever takes it over \
             (a standby, `rekindle resume {run} --etcd ...`) starts {}",
            if pause { "paused" } else { "unpaused" }
        ),
        Err(e) => return fail(e),
    }
    Exit::Success
}
