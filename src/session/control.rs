//! Pause and continue a run from outside its process: a control file beside
//! the run's journal (`RUN_ID.jsonl` -> `RUN_ID.pause`). `rekindle pause`
//! creates it, `rekindle continue` removes it; the running process looks
//! every [`POLL`] and flips the engine's pause switch. A file (not a socket)
//! because it needs no listener, survives the process (a resume of a paused
//! run starts paused), and is guarded by the journal directory's 0700.
//!
//! Owns the control file's name, content and polling. It must not decide
//! what pausing means (that is the engine's) or print.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
