//! The per-user registry of live runs on this machine, in one fixed place
//! whatever the working or journal directory: `$XDG_STATE_HOME/rekindle/runs/`
//! (else `~/.local/state/rekindle/runs/`). Each live run keeps one file there
//! naming its holder and the hashes of the host names it selects; a run whose
//! hosts overlap a live run's is refused, naming that run and the overlap.
//! Registering is serialised by an `flock` on the directory's `.lock` file;
//! the check is a merge of two sorted hash lists, so 32,000 hosts cost a few
//! milliseconds. Entries of dead processes on this machine are removed.
//!
//! Owns the registry's place, file format and overlap rule. It must not print
//! or decide exit codes; the plan lock itself is [`super::lock`]'s.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::lock::{Break, Holder, Identity, remove_if_ours};

/// How long registering waits for another process registering at that moment.
const FLOCK_WAIT: Duration = Duration::from_secs(10);

/// One live run, as its registry file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunFile {
    holder: Holder,
    plan: String,
    /// The run's id (absent from entries of older versions: the holder's
    /// journal file is named after it).
    #[serde(default)]
    run: Option<String>,
    /// Sorted, distinct hashes of the host names the run selects.
    hosts: Vec<u64>,
}

/// A live run another run overlaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub holder: Holder,
    pub plan: String,
    /// Hosts both runs select.
    pub hosts: usize,
    /// Hosts this run selects.
    pub of: usize,
    pub file: PathBuf,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of the {} hosts this run selects are in run `{}` of {} (registry {})",
            self.hosts,
            self.of,
            self.plan,
            self.holder,
            self.file.display()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{overlap}: two runs must not act on one host at once; {advice}", advice = Break::advice(Some(&overlap.holder)))]
    Overlap { overlap: Box<Overlap> },
    #[error("run registry {path}: {source}", path = path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("no place for the run registry: set XDG_STATE_HOME or HOME to an absolute directory")]
    NoHome,
}

/// The registry directory: `$XDG_STATE_HOME/rekindle/runs`, else
/// `$HOME/.local/state/rekindle/runs` (relative values are ignored, as the
/// XDG base directory specification says).
pub fn dir() -> Result<PathBuf, RegistryError> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let base = absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".local/state")))
        .ok_or(RegistryError::NoHome)?;
    Ok(base.join("rekindle").join("runs"))
}

/// This run's place in the registry, removed when dropped (only if it is
/// still this run's file: a run that broke it may have removed it).
#[derive(Debug)]
pub struct Entry {
    path: PathBuf,
    identity: Identity,
    /// Live runs whose entries this one removed (`--break-lock` or
    /// `--break-live-lock`), or stale ones of dead processes.
    pub replaced: Vec<Replaced>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    Stale(Holder),
    Broken(Overlap),
    /// The entry of the same run, whose lead in etcd this process took
    /// lawfully (its driver's lease expired): the driver, stopped on this
    /// machine, may be alive, but etcd decides who drives a run kept there.
    /// Removing its entry also stops it at its next intent if it wakes.
    TakenOver(Holder),
}

/// What a run registers as.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub plan: &'a str,
    pub run: Option<&'a str>,
    /// This process took the run's lead in etcd: an entry of the same run
    /// (its previous driver on this machine) gives way.
    pub led_in_etcd: bool,
}

impl RunFile {
    /// The run this entry is of.
    fn run_id(&self) -> Option<String> {
        self.run.clone().or_else(|| {
            Path::new(&self.holder.journal)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
    }
}

impl Entry {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this run's entry is still in place: false once another run
    /// broke it.
    pub fn still_held(&self) -> io::Result<bool> {
        self.identity.is_at(&self.path)
    }

    pub(crate) fn identity(&self) -> Identity {
        self.identity
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let _ = remove_if_ours(&self.path, &self.identity);
    }
}

/// The hash a host name is registered under.
fn host_hash(name: &str) -> u64 {
    let d = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("a SHA-256 has 8 bytes"))
}

/// How many values two sorted, distinct lists share.
fn common(a: &[u64], b: &[u64]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Registers a run of `plan` over `hosts` (names) in `dir`. Refused when a
/// live run there selects one of the same hosts, unless `breaking` allows
/// taking that run over (its entry is then removed, and it stops acting at
/// its next intent).
pub fn register<'a>(
    dir: &Path,
    plan: &str,
    hosts: impl IntoIterator<Item = &'a str>,
    me: &Holder,
    breaking: Break,
) -> Result<Entry, RegistryError> {
    let claim = Claim {
        plan,
        run: None,
        led_in_etcd: false,
    };
    register_run(dir, claim, hosts, me, breaking)
}

/// [`register`] for `claim`: its run id is kept in the entry, and a run
/// whose lead was taken in etcd replaces the entry of the same run.
pub fn register_run<'a>(
    dir: &Path,
    claim: Claim<'_>,
    hosts: impl IntoIterator<Item = &'a str>,
    me: &Holder,
    breaking: Break,
) -> Result<Entry, RegistryError> {
    let plan = claim.plan;
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| RegistryError::Io { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    let mut ours: Vec<u64> = hosts.into_iter().map(host_hash).collect();
    ours.sort_unstable();
    ours.dedup();

    let guard_path = dir.join(".lock");
    let _guard = flock(&guard_path).map_err(io_err(&guard_path))?;
    let mut replaced = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = item.map_err(io_err(dir))?.path();
        if path.extension().is_none_or(|x| x != "run") {
            continue;
        }
        let Ok(identity) = Identity::of(&path) else {
            continue;
        };
        let run: RunFile = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(r) => r,
            None => {
                // Entries are written whole (renamed into place) under the
                // flock: one that does not parse is not a run's.
                let _ = remove_if_ours(&path, &identity);
                continue;
            }
        };
        if run.holder.dead_here() {
            let _ = remove_if_ours(&path, &identity);
            replaced.push(Replaced::Stale(run.holder));
            continue;
        }
        if claim.led_in_etcd && claim.run.is_some() && run.run_id().as_deref() == claim.run {
            remove_if_ours(&path, &identity).map_err(io_err(&path))?;
            replaced.push(Replaced::TakenOver(run.holder));
            continue;
        }
        let shared = common(&ours, &run.hosts);
        if shared == 0 {
            continue;
        }
        let overlap = Overlap {
            holder: run.holder,
            plan: run.plan,
            hosts: shared,
            of: ours.len(),
            file: path.clone(),
        };
        if !breaking.allows(Some(&overlap.holder)) {
            return Err(RegistryError::Overlap {
                overlap: Box::new(overlap),
            });
        }
        remove_if_ours(&path, &identity).map_err(io_err(&path))?;
        replaced.push(Replaced::Broken(overlap));
    }

    let token = format!("{:032x}", rand::random::<u128>());
    let path = dir.join(format!("{}-{token}.run", me.pid));
    let body = serde_json::to_vec(&RunFile {
        holder: me.clone(),
        plan: plan.to_owned(),
        run: claim.run.map(str::to_owned),
        hosts: ours,
    })
    .map_err(|e| RegistryError::Io {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(&body)
        .and_then(|()| file.sync_data())
        .map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    let identity = Identity::of(&path).map_err(io_err(&path))?;
    Ok(Entry {
        path,
        identity,
        replaced,
    })
}

/// An exclusive `flock` on `path`, waiting (bounded) for another process
/// registering at the same moment. Released when the file is dropped.
fn flock(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    let start = Instant::now();
    loop {
        // SAFETY: flock on a descriptor this function owns; no memory involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock || start.elapsed() > FLOCK_WAIT {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32) -> Holder {
        Holder {
            user: "sre".into(),
            host: crate::journal::bastion(),
            pid,
            started_at: "2026-12-01T08:00:00.000Z".into(),
            journal: "j.jsonl".into(),
        }
    }

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("pg-r{i:05}")).collect()
    }

    #[test]
    fn an_overlapping_live_run_is_refused_naming_it_and_the_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let me = holder(std::process::id());
        let a = names(0..100);
        let first = register(
            dir.path(),
            "a",
            a.iter().map(String::as_str),
            &me,
            Break::No,
        )
        .unwrap();
        // Disjoint hosts: both run.
        let b = names(100..200);
        let second = register(
            dir.path(),
            "b",
            b.iter().map(String::as_str),
            &me,
            Break::No,
        )
        .unwrap();
        let c: Vec<String> = names(90..100).into_iter().chain(names(300..310)).collect();
        let err = register(
            dir.path(),
            "c",
            c.iter().map(String::as_str),
            &me,
            Break::No,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("10 of the 20 hosts this run selects are in run `a` of sre@"),
            "{text}"
        );
        assert!(
            text.contains("its process is alive on this machine"),
            "{text}"
        );
        // --break-lock does not take a live holder on this machine.
        assert!(
            register(
                dir.path(),
                "c",
                c.iter().map(String::as_str),
                &me,
                Break::Unverifiable
            )
            .is_err()
        );
        drop(first);
        drop(second);
        let third = register(
            dir.path(),
            "c",
            c.iter().map(String::as_str),
            &me,
            Break::No,
        )
        .unwrap();
        assert!(third.still_held().unwrap());
    }

    #[test]
    fn a_dead_run_is_removed_and_a_broken_one_notices() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let hosts = names(0..10);
        let h = || hosts.iter().map(String::as_str);
        let stale = register(dir.path(), "a", h(), &holder(dead), Break::No).unwrap();
        let stale_path = stale.path().to_owned();
        std::mem::forget(stale);
        let live = register(dir.path(), "b", h(), &holder(std::process::id()), Break::No).unwrap();
        assert_eq!(live.replaced, [Replaced::Stale(holder(dead))]);
        assert!(!stale_path.exists());
        // --break-live-lock takes a live run over; the old one sees it.
        let new = register(
            dir.path(),
            "c",
            h(),
            &holder(std::process::id()),
            Break::Live,
        )
        .unwrap();
        assert!(
            matches!(&new.replaced[..], [Replaced::Broken(o)] if o.hosts == 10 && o.plan == "b")
        );
        assert!(!live.still_held().unwrap());
        // The old run's release leaves the new run's entry alone.
        drop(live);
        assert!(new.still_held().unwrap());
    }

    #[test]
    fn the_place_follows_xdg_state_home_else_home() {
        // Read only: the variables as this process has them.
        let d = dir();
        match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
            Some(x) if x.is_absolute() => assert_eq!(d.unwrap(), x.join("rekindle/runs")),
            _ => {
                if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
                    assert_eq!(d.unwrap(), home.join(".local/state/rekindle/runs"));
                }
            }
        }
    }
}
