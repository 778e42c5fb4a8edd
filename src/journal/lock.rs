//! The plan lock: one file per plan in the journal directory, created with
//! O_EXCL, naming its holder. A second run of the same plan is refused; a
//! lock left by a dead process on this machine is taken over; `--break-lock`
//! takes any. The lock is removed when its guard drops.
//!
//! Owns the lock file's name and content. It must not decide exit codes or print.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
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

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, since {}, journal {})",
            self.user, self.host, self.pid, self.started_at, self.journal
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("plan is locked by {holder}: another run of it is in progress ({path}); if that run is dead, pass --break-lock", path = path.display())]
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
    /// `--break-lock` replaced a lock (holder unknown when unreadable).
    Broken(Option<Holder>),
}

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    pub taken: Taken,
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Lock {
    pub fn path(&self) -> &Path {
        &self.path
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

/// Takes the lock at `path` for the current process.
pub fn acquire(path: &Path, journal: &Path, break_lock: bool) -> Result<Lock, LockError> {
    let me = Holder {
        user: super::operator(),
        host: super::bastion(),
        pid: std::process::id(),
        started_at: super::rfc3339(SystemTime::now()),
        journal: journal.to_string_lossy().into_owned(),
    };
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
                return Ok(Lock {
                    path: path.to_owned(),
                    taken,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let holder = read_holder(path);
                let stale = holder
                    .as_ref()
                    .is_some_and(|h| h.host == me.host && !alive(h.pid));
                if break_lock {
                    taken = Taken::Broken(holder);
                } else if stale {
                    taken = holder.map_or(Taken::Broken(None), Taken::Stale);
                } else {
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
                match std::fs::remove_file(path) {
                    Ok(()) => {}
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
fn alive(pid: u32) -> bool {
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
        let first = acquire(&path, Path::new("j1.jsonl"), false).unwrap();
        assert_eq!(first.taken, Taken::Free);
        let err = acquire(&path, Path::new("j2.jsonl"), false).unwrap_err();
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
        let again = acquire(&path, Path::new("j3.jsonl"), false).unwrap();
        assert_eq!(again.taken, Taken::Free);
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
        let lock = acquire(&path, Path::new("new.jsonl"), false).unwrap();
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
        let err = acquire(&path, Path::new("new.jsonl"), false).unwrap_err();
        assert!(
            err.to_string().contains("kim@other-bastion (pid 1"),
            "{err}"
        );
        let lock = acquire(&path, Path::new("new.jsonl"), true).unwrap();
        assert_eq!(lock.taken, Taken::Broken(Some(other)));
    }
}
