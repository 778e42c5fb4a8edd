//! The plan lock: one file per plan in the journal directory, created with
//! O_EXCL, naming its holder. A second run of the same plan is refused; a
//! lock left by a dead process on this machine is taken over; `--break-lock`
//! takes one whose holder this machine cannot check (another bastion, an
//! unreadable file), and only `--break-live-lock` takes one whose holder is
//! alive here. A process releases only the lock it still holds (the file it
//! created, by inode and change time, renamed aside before it is checked), and
//! [`Lock::still_held`] lets its journal stop acknowledging intents once
//! another run took the lock over.
//!
//! Owns the lock file's name and content. It must not decide exit codes or print.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub started_at: String,
    pub journal: String,
}

impl Holder {
    /// The current process, for `journal`.
    pub fn me(journal: &Path) -> Holder {
        Holder {
            user: super::operator(),
            host: super::bastion(),
            pid: std::process::id(),
            started_at: super::rfc3339(SystemTime::now()),
            journal: journal.to_string_lossy().into_owned(),
        }
    }

    /// A process on this machine that still runs.
    pub fn alive_here(&self) -> bool {
        self.host == super::bastion() && alive(self.pid)
    }

    /// A process on this machine that is gone: its lock is stale.
    pub fn dead_here(&self) -> bool {
        self.host == super::bastion() && !alive(self.pid)
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, since {}, journal {})",
            self.user, self.host, self.pid, self.started_at, self.journal
        )
    }
}

/// What, besides a stale lock, the operator lets a run take over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Break {
    /// Nothing: a live or unknown holder refuses the run.
    #[default]
    No,
    /// `--break-lock`: a holder this machine cannot check (another bastion,
    /// an unreadable lock). A holder alive on this machine still refuses.
    Unverifiable,
    /// `--break-live-lock`: any holder, even a process alive on this machine.
    Live,
}

impl Break {
    pub fn from_flags(break_lock: bool, break_live_lock: bool) -> Break {
        match (break_lock, break_live_lock) {
            (_, true) => Break::Live,
            (true, false) => Break::Unverifiable,
            (false, false) => Break::No,
        }
    }

    /// Whether a holder may be taken over (`None`: the lock was unreadable).
    /// Stale holders (dead, on this machine) always may.
    pub fn allows(self, holder: Option<&Holder>) -> bool {
        match holder {
            Some(h) if h.dead_here() => true,
            Some(h) if h.alive_here() => self == Break::Live,
            _ => self != Break::No,
        }
    }

    /// What to tell the operator about a holder they may not take over.
    pub fn advice(holder: Option<&Holder>) -> &'static str {
        if holder.is_some_and(Holder::alive_here) {
            "its process is alive on this machine, so --break-lock does not take it: \
             stop that run first (or, only if it must go while it runs, pass --break-live-lock)"
        } else {
            "if that run is dead, pass --break-lock"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("plan is locked by {holder}: another run of it is in progress ({path}); {advice}", path = path.display(), advice = Break::advice(Some(holder)))]
    Held { path: PathBuf, holder: Box<Holder> },
    #[error("{path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// How the lock was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Free,
    /// A lock of a process that no longer runs on this machine was replaced.
    Stale(Holder),
    /// `--break-lock` or `--break-live-lock` replaced a lock (holder unknown
    /// when unreadable).
    Broken(Option<Holder>),
}

/// Which file a path names: a new file at the same path (after a break) has
/// another identity, even when the file system reuses the inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Identity {
    pub fn of(path: &Path) -> io::Result<Identity> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(Identity {
            dev: m.dev(),
            ino: m.ino(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        })
    }

    /// Whether `path` still names this file (false when it is gone).
    pub fn is_at(&self, path: &Path) -> io::Result<bool> {
        match Identity::of(path) {
            Ok(now) => Ok(now == *self),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Like [`Identity::is_at`] by device and inode only: a rename changes
    /// the change time, not the file.
    fn same_inode_at(&self, path: &Path) -> io::Result<bool> {
        let now = Identity::of(path)?;
        Ok((now.dev, now.ino) == (self.dev, self.ino))
    }
}

/// Removes the file at `path` only if it is still `ours`. It is renamed aside
/// first (atomic), so a file another process put there between the check and
/// the rename is never removed: it is linked back (unless yet another took
/// the path since, in which case the newest stays). Its owner then sees a new
/// change time and stops acting: the safe side of a race of microseconds.
pub fn remove_if_ours(path: &Path, ours: &Identity) -> io::Result<bool> {
    if !ours.is_at(path)? {
        return Ok(false);
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".release-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    if ours.same_inode_at(&aside)? {
        std::fs::remove_file(&aside)?;
        return Ok(true);
    }
    // Another process's file, taken between the check and the rename.
    let _ = std::fs::hard_link(&aside, path);
    std::fs::remove_file(&aside)?;
    Ok(false)
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct Lock {
    pub(super) path: PathBuf,
    pub(super) identity: Identity,
    pub taken: Taken,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Never another run's lock: after a break, the file there is theirs.
        let _ = remove_if_ours(&self.path, &self.identity);
    }
}

impl Lock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the lock file is still the one this process created: false
    /// once another run broke it (and removed or replaced the file).
    pub fn still_held(&self) -> io::Result<bool> {
        self.identity.is_at(&self.path)
    }
}

/// Files a run must still hold to act: see [`super::RunLock::held`].
#[derive(Debug, Clone)]
pub struct Held {
    pub(super) files: Vec<(PathBuf, Identity, &'static str)>,
}

impl Held {
    /// `Err` naming what was taken over, and by whom when known.
    pub fn check(&self) -> Result<(), String> {
        for (path, identity, what) in &self.files {
            match identity.is_at(path) {
                Ok(true) => {}
                Ok(false) => {
                    let by = read_holder(path)
                        .map(|h| format!(" by {h}"))
                        .unwrap_or_default();
                    return Err(format!(
                        "{what} {} was taken over{by}: this run records and acknowledges no more intents, so it sends nothing more to any host",
                        path.display()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot check {what} {}: {e}; sending nothing more to any host",
                        path.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The lock file for a playbook: readable stem plus a hash of its absolute
/// path, so two playbooks with one file name do not collide.
pub fn lock_path(dir: &Path, playbook_abs: &str) -> PathBuf {
    let stem: String = Path::new(playbook_abs)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let hash = hex::encode(Sha256::digest(playbook_abs.as_bytes()));
    dir.join(format!("{stem}-{}.lock", &hash[..12]))
}

/// Takes the lock at `path` for the current process; `breaking` says which
/// holders besides stale ones may be taken over.
pub fn acquire(path: &Path, journal: &Path, breaking: Break) -> Result<Lock, LockError> {
    let me = Holder::me(journal);
    let io_err = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    let mut taken = Taken::Free;
    // Two attempts: the second after removing a stale or broken lock. A
    // racing process that wins in between is then reported as the holder.
    for _ in 0..2 {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                let body =
                    serde_json::to_vec_pretty(&me).map_err(|e| io_err(io::Error::other(e)))?;
                file.write_all(&body)
                    .and_then(|()| file.sync_data())
                    .map_err(io_err)?;
                let identity = Identity::of(path).map_err(io_err)?;
                return Ok(Lock {
                    path: path.to_owned(),
                    identity,
                    taken,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let found = Identity::of(path);
                let holder = read_holder(path);
                if !breaking.allows(holder.as_ref()) {
                    return Err(LockError::Held {
                        path: path.to_owned(),
                        holder: Box::new(holder.unwrap_or(Holder {
                            user: "unknown".into(),
                            host: "unknown".into(),
                            pid: 0,
                            started_at: "unknown".into(),
                            journal: "unknown (lock file unreadable)".into(),
                        })),
                    });
                }
                taken = match holder {
                    Some(h) if h.dead_here() => Taken::Stale(h),
                    h => Taken::Broken(h),
                };
                // Only the file judged above: one that replaced it meanwhile
                // belongs to a run that won the race.
                match found {
                    Ok(identity) => {
                        remove_if_ours(path, &identity).map_err(io_err)?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    match read_holder(path) {
        Some(holder) => Err(LockError::Held {
            path: path.to_owned(),
            holder: Box::new(holder),
        }),
        None => Err(io_err(io::Error::other("cannot take the lock"))),
    }
}

pub fn read_holder(path: &Path) -> Option<Holder> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a process with this pid exists on this machine (a zombie counts
/// as dead: it can no longer write the journal).
pub(crate) fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path(dir.path(), "/x/plays/cold start.yaml");
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cold_start-")
        );
        let first = acquire(&path, Path::new("j1.jsonl"), Break::No).unwrap();
        assert_eq!(first.taken, Taken::Free);
        let err = acquire(&path, Path::new("j2.jsonl"), Break::No).unwrap_err();
        let LockError::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.journal, "j1.jsonl");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        assert!(!path.exists(), "the lock is removed on drop");
        let again = acquire(&path, Path::new("j3.jsonl"), Break::No).unwrap();
        assert_eq!(again.taken, Taken::Free);
    }

    #[test]
    fn old_lock_holder_never_deletes_the_new_holders_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let old = acquire(&path, Path::new("a.jsonl"), Break::No).unwrap();
        let new = acquire(&path, Path::new("b.jsonl"), Break::Live).unwrap();
        assert!(matches!(&new.taken, Taken::Broken(Some(h)) if h.journal == "a.jsonl"));
        assert!(!old.still_held().unwrap(), "the old holder notices");
        assert!(new.still_held().unwrap());
        drop(old);
        assert_eq!(read_holder(&path).unwrap().journal, "b.jsonl");
        assert!(new.still_held().unwrap(), "the old holder left it alone");
        // A third run is refused while the new holder lives.
        assert!(acquire(&path, Path::new("c.jsonl"), Break::No).is_err());
        drop(new);
        assert!(!path.exists());
    }

    #[test]
    fn break_lock_refuses_a_holder_alive_on_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let live = acquire(&path, Path::new("a.jsonl"), Break::No).unwrap();
        let err = acquire(&path, Path::new("b.jsonl"), Break::Unverifiable).unwrap_err();
        let text = err.to_string();
        assert!(
            text.ends_with("its process is alive on this machine, so --break-lock does not take it: stop that run first (or, only if it must go while it runs, pass --break-live-lock)"),
            "{text}"
        );
        assert!(live.still_held().unwrap());
        let taken = acquire(&path, Path::new("b.jsonl"), Break::Live).unwrap();
        assert!(matches!(taken.taken, Taken::Broken(Some(_))));
    }

    #[test]
    fn stale_lock_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        // A child that has exited and been reaped: its pid is dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder {
            user: "someone".into(),
            host: crate::journal::bastion(),
            pid,
            started_at: "2026-11-21T00:00:00.000Z".into(),
            journal: "old.jsonl".into(),
        };
        std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        let lock = acquire(&path, Path::new("new.jsonl"), Break::No).unwrap();
        assert_eq!(lock.taken, Taken::Stale(dead));
        assert_eq!(read_holder(&path).unwrap().journal, "new.jsonl");
    }

    #[test]
    fn a_live_holder_on_another_host_needs_break_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.lock");
        let other = Holder {
            user: "kim".into(),
            host: "other-bastion".into(),
            pid: 1,
            started_at: "2026-11-21T00:00:00.000Z".into(),
            journal: "old.jsonl".into(),
        };
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let err = acquire(&path, Path::new("new.jsonl"), Break::No).unwrap_err();
        assert!(
            err.to_string().contains("kim@other-bastion (pid 1"),
            "{err}"
        );
        let lock = acquire(&path, Path::new("new.jsonl"), Break::Unverifiable).unwrap();
        assert_eq!(lock.taken, Taken::Broken(Some(other)));
    }
}
