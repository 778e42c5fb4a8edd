//! Pause and continue a run from outside its process: a control file beside
//! the run's journal (`RUN_ID.jsonl` -> `RUN_ID.pause`). `rekindle pause`
//! creates it, `rekindle continue` removes it; the running process looks
//! every [`POLL`] and flips the engine's pause switch. A file (not a socket)
//! because it needs no listener, survives the process (a resume of a paused
//! run starts paused), and is guarded by the journal directory's 0700.
//!
//! Also `pause`/`continue` themselves, here ([`flip`]) and for a run kept in
//! etcd ([`flip_in_etcd`], its pause key, which binds whoever drives it):
//! the switch flipped, then the run's acknowledgement awaited (bounded).
//!
//! Owns the control file's name, content and polling, and those commands'
//! words. It must not decide what pausing means (that is the engine's) or
//! print: lines go through `say`.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::etcd::Store;
use crate::etcd::takeover::driver_words;
use crate::exit::usage;
use crate::journal::{self, Record};

use tokio::sync::watch;

/// How often a running process looks at its control file.
pub const POLL: Duration = Duration::from_millis(250);

/// The control file of the run whose journal is `journal`.
pub fn pause_file(journal: &Path) -> PathBuf {
    journal.with_extension("pause")
}

/// Watches `file` from a task on the current runtime: the switch is true
/// while the file exists. The task ends when the receiver is dropped.
pub fn watch(file: PathBuf) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(file.exists());
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let paused = file.exists();
            if tx.is_closed() {
                return;
            }
            tx.send_if_modified(|p| std::mem::replace(p, paused) != paused);
        }
    });
    (rx, task)
}

/// One switch from two: true while either is (the control file beside the
/// journal, and the pause key of a run kept in etcd). The task ends when
/// the receiver is dropped.
pub fn either(
    mut a: watch::Receiver<bool>,
    mut b: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(*a.borrow_and_update() || *b.borrow_and_update());
    let task = tokio::spawn(async move {
        let (mut a_open, mut b_open) = (true, true);
        while a_open || b_open {
            tokio::select! {
                r = a.changed(), if a_open => a_open = r.is_ok(),
                r = b.changed(), if b_open => b_open = r.is_ok(),
                () = tx.closed() => return,
            }
            let now = *a.borrow_and_update() || *b.borrow_and_update();
            tx.send_if_modified(|p| std::mem::replace(p, now) != now);
        }
        tx.closed().await;
    });
    (rx, task)
}

/// The journal `run` names: a path to a journal file, or a run id whose
/// journal is in `dir`.
pub fn resolve(run: &str, dir: &Path) -> Result<PathBuf, String> {
    let as_path = PathBuf::from(run);
    if as_path.is_file() {
        return Ok(as_path);
    }
    let id = run.strip_suffix(".jsonl").unwrap_or(run);
    if !id.contains('/') {
        let in_dir = dir.join(format!("{id}.jsonl"));
        if in_dir.is_file() {
            return Ok(in_dir);
        }
    }
    Err(format!(
        "no run `{run}`: expected a journal file or the id of a run whose journal is in {}",
        dir.display()
    ))
}

/// Pauses (creates the control file, 0600, saying who and when) or
/// continues (removes it). Returns whether anything changed.
pub fn set(journal: &Path, paused: bool, operator: &str, now: SystemTime) -> io::Result<bool> {
    let file = pause_file(journal);
    if paused {
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        };
        writeln!(
            f,
            "paused by {operator} at {}",
            crate::journal::rfc3339(now)
        )?;
        Ok(true)
    } else {
        match std::fs::remove_file(&file) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// How long `pause`/`continue` wait for the run to acknowledge.
const ACK_WITHIN: Duration = Duration::from_secs(5);

/// `rekindle pause`/`continue` of a run here: its control file flipped,
/// then (bounded) the process's acknowledgement in the journal awaited;
/// `run` is the run id or journal as the operator named it.
pub fn flip(run: &str, journal_dir: &Path, pause: bool, say: fn(&str)) -> anyhow::Result<()> {
    let verb = if pause { "pause" } else { "continue" };
    let path = resolve(run, journal_dir).map_err(|e| usage(format!("cannot {verb}: {e}")))?;
    let journal = journal::read(&path).map_err(|e| usage(format!("cannot {verb}: {e}")))?;
    let run_id = journal.header.run_id.clone();
    let before = acknowledgements(&path, pause);
    if pause && finished(&journal.records) {
        return Err(usage(format!(
            "cannot pause: run {run_id} has finished (its journal ends with the run's end)"
        )));
    }
    let changed = set(&path, pause, &journal::operator(), SystemTime::now()).map_err(|e| {
        usage(format!(
            "cannot {verb} run {run_id}: {}: {e}",
            pause_file(&path).display()
        ))
    })?;
    if !changed {
        say(&format!(
            "run {run_id} is {} already",
            if pause { "paused" } else { "not paused" }
        ));
        return Ok(());
    }
    if acknowledged(Duration::from_millis(100), || {
        acknowledgements(&path, pause) > before
    }) {
        if pause {
            say(&format!(
                "paused run {run_id}: no host starts and no host starts a new step; steps in flight finish \
                 (`rekindle continue {}` goes on)",
                run
            ));
        } else {
            say(&format!("continued run {run_id}"));
        }
        return Ok(());
    }
    say(&format!(
        "note: run {run_id} is {} as soon as its process looks (none acknowledged within {}s: is it running? \
         a resume of it starts {})",
        if pause { "paused" } else { "continued" },
        ACK_WITHIN.as_secs(),
        if pause { "paused" } else { "unpaused" },
    ));
    Ok(())
}

/// Asks `acked` every `every`, for at most [`ACK_WITHIN`]: whether the run
/// acknowledged the flip (the control file's and etcd's ways alike).
fn acknowledged(every: Duration, mut acked: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < ACK_WITHIN {
        if acked() {
            return true;
        }
        std::thread::sleep(every);
    }
    false
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
pub fn flip_in_etcd(store: &Store, run: &str, pause: bool, say: fn(&str)) -> anyhow::Result<()> {
    let verb = if pause { "pause" } else { "continue" };
    let fail =
        |e: crate::etcd::client::EtcdError| usage(format!("cannot {verb} run {run}: --etcd: {e}"));
    let journal = store.journal(run).map_err(fail)?.ok_or_else(|| {
        usage(format!(
            "cannot {verb}: no run {run} in etcd under {} (`rekindle status --etcd ...` lists them)",
            store.settings.prefix
        ))
    })?;
    if pause && finished(&journal.records) {
        return Err(usage(format!(
            "cannot pause: run {run} has finished (its journal in etcd ends with the run's end)"
        )));
    }
    let before = store.acknowledgements(run, pause).map_err(fail)?;
    if !store
        .set_paused(run, pause, &journal::operator())
        .map_err(fail)?
    {
        say(&format!(
            "run {run} is {} already (in etcd)",
            if pause { "paused" } else { "not paused" }
        ));
        return Ok(());
    }
    if acknowledged(Duration::from_millis(250), || {
        store.acknowledgements(run, pause).is_ok_and(|n| n > before)
    }) {
        let by = store
            .driver(run)
            .ok()
            .flatten()
            .map(|d| format!(" (driven by {})", driver_words(&d)))
            .unwrap_or_default();
        if pause {
            say(&format!(
                "paused run {run}{by}: no host starts and no host starts a new step; steps in flight finish. \
                 The pause is kept in etcd and binds whoever drives the run (`rekindle continue {run}` goes on)"
            ));
        } else {
            say(&format!("continued run {run}{by}"));
        }
        return Ok(());
    }
    let what = if pause { "paused" } else { "continued" };
    match store.driver(run) {
        Ok(Some(d)) => say(&format!(
            "note: run {run} is {what} in etcd, but its driver {} has not acknowledged it within {}s; \
             every driver reads the run's pause key every {}s, and a takeover starts as it says",
            driver_words(&d),
            ACK_WITHIN.as_secs(),
            crate::etcd::PAUSE_POLL.as_secs()
        )),
        Ok(None) => say(&format!(
            "note: run {run} has no driver now; it is {what} in etcd, so whoever takes it over \
             (a standby, `rekindle resume {run} --etcd ...`) starts {}",
            if pause { "paused" } else { "unpaused" }
        )),
        Err(e) => return Err(fail(e)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_switch_follows_the_control_file() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("r1.jsonl");
        std::fs::write(&journal, "{}\n").unwrap();
        assert_eq!(resolve("r1", dir.path()), Ok(journal.clone()));
        assert_eq!(
            resolve(&journal.to_string_lossy(), Path::new("/nope")),
            Ok(journal.clone())
        );
        assert!(resolve("r2", dir.path()).is_err());

        let (mut rx, task) = watch(pause_file(&journal));
        assert!(!*rx.borrow());
        assert!(set(&journal, true, "op", SystemTime::now()).unwrap());
        assert!(
            !set(&journal, true, "op", SystemTime::now()).unwrap(),
            "already paused"
        );
        let text = std::fs::read_to_string(dir.path().join("r1.pause")).unwrap();
        assert!(text.starts_with("paused by op at "), "{text}");
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|p| *p))
            .await
            .expect("sees the pause")
            .unwrap();
        assert!(set(&journal, false, "op", SystemTime::now()).unwrap());
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|p| !*p))
            .await
            .expect("sees the continue")
            .unwrap();
        task.abort();
    }
}
