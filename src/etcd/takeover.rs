//! Taking a run's lead in etcd, for a new run, a takeover and a standby:
//! the run stored and its lead taken (warning about other runs that act on
//! the same hosts), one attempt at the lead of a run whose driver may be
//! gone, its inputs and journal written from etcd's copy into the journal
//! directory, and the lead given up at the end (a fenced driver's exit).
//!
//! Owns those steps and their words; what a takeover then runs is
//! `session::takeover`'s. It does not print: lines go through `say`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::client::EtcdError;
use super::{Driver, Lead, RunInfo, StartError, Store};
use crate::exit::{Error, Exit};
use crate::journal::{self, Header, Journal, Record};

/// Why an attempt at a run's lead failed.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// etcd did not answer as it should; [`EtcdError::transient`] says
    /// whether asking again may help.
    #[error("--etcd: {0}")]
    Etcd(#[from] EtcdError),
    /// Anything else (no such run, inputs that cannot be written).
    #[error("{0}")]
    Other(String),
}

/// Stores a new run in etcd and takes its lead; `hosts` the selected host
/// names. `Err` is the message.
pub fn begin(
    store: &Store,
    header: &Header,
    hosts: &[&str],
    say: fn(&str),
) -> Result<Lead, String> {
    let lead = store
        .begin(header, hosts, say)
        .map_err(|e| format!("--etcd: {e}"))?;
    let selected: HashSet<&str> = hosts.iter().copied().collect();
    warn_about_stale_runs(store, &selected, header, false, say);
    say(&format!(
        "etcd: run {} kept in etcd under {} as driver {} (fencing token {}); another bastion can take it over with `rekindle resume {} --etcd ...`",
        header.run_id, store.settings.prefix, store.settings.bastion, lead.token, header.run_id
    ));
    Ok(lead)
}

/// Gives the lead up after the run; a fenced driver ends with its own
/// error, whatever the engine's outcome was.
pub fn finish(lead: Option<Lead>, exit: Exit) -> anyhow::Result<Exit> {
    let Some(lead) = lead else { return Ok(exit) };
    let fenced = lead.fenced().map(|why| lead.fenced_message(&why));
    lead.close();
    match fenced {
        Some(message) => Err(Error::Fenced(message).into()),
        None => Ok(exit),
    }
}

/// A run id given as such, or the run id in the header of a journal file.
pub fn run_id(arg: &str) -> String {
    let path = Path::new(arg);
    if path.is_file()
        && let Ok(j) = journal::read(path)
    {
        return j.header.run_id;
    }
    arg.to_owned()
}

/// Warns about runs in etcd that act on some of `hosts` twice with this
/// one: for a new run, stale unfinished runs (a resume of one later would
/// act on those hosts again); for a resume (`resuming`), runs begun after
/// this one (what they did is done again). A warning, not a refusal: the
/// operator may mean it, and only they know.
fn warn_about_stale_runs(
    store: &Store,
    hosts: &HashSet<&str>,
    header: &Header,
    resuming: bool,
    say: fn(&str),
) {
    let Ok(others) = store.others_with_hosts(hosts, &header.run_id) else {
        return;
    };
    for o in others {
        let h = &o.header;
        if resuming && h.started_at > header.started_at {
            say(&format!(
                "warning: run {} (`{}`) began after run {} and selected {} of its hosts (e.g. {}){}; \
                 this resume acts on them again where run {} left them unfinished",
                h.run_id,
                h.plan,
                header.run_id,
                o.overlap,
                o.sample.join(", "),
                if o.finished { ", and finished" } else { "" },
                header.run_id
            ));
        } else if !resuming && !o.driven && !o.finished {
            say(&format!(
                "warning: run {} (`{}`, begun {}) is stale and unfinished in etcd and selected {} of these hosts (e.g. {}); \
                 resuming it after this run acts on them again",
                h.run_id,
                h.plan,
                h.started_at,
                o.overlap,
                o.sample.join(", ")
            ));
        }
    }
}

/// `report RUN_ID --etcd ...`: the run's journal as etcd has it.
pub fn journal(store: &Store, run: &str) -> Result<Journal, String> {
    let run = run_id(run);
    store
        .journal(&run)
        .map_err(|e| format!("--etcd: {e}"))?
        .ok_or_else(|| no_run(store, &run))
}

pub fn no_run(store: &Store, run: &str) -> String {
    format!(
        "no run {run} in etcd under {} (`rekindle status --etcd ...` lists them)",
        store.settings.prefix
    )
}

/// Why a run kept in etcd is not resumed from its local journal alone, and
/// how to resume it.
pub fn kept_in_etcd(header: &Header, home: &journal::EtcdHome) -> String {
    let endpoints = home.endpoints.join(",");
    let prefix = if home.prefix == super::DEFAULT_PREFIX {
        String::new()
    } else {
        format!(" --etcd-prefix {}", home.prefix)
    };
    format!(
        "run {run} is kept in etcd ({endpoints}, under {}), where one driver at a time holds its lease; a standby or another bastion may be driving it. \
         Resume it with `rekindle resume {run} --etcd {endpoints}{prefix}`; only if that etcd is gone for good, `--without-etcd` resumes from this journal alone",
        home.prefix,
        run = header.run_id,
    )
}

/// Who drives a run, for people.
pub fn driver_words(d: &Driver) -> String {
    format!(
        "{} on bastion {} (pid {}, fencing token {})",
        d.operator, d.bastion, d.pid, d.token
    )
}

/// A run's progress, for people.
pub fn progress_words(r: &RunInfo) -> String {
    let total: usize = r.header.stages.iter().map(|s| s.hosts).sum();
    format!(
        "{} of {} host runs done, {} failed, {} in flight",
        r.done, total, r.failed, r.in_flight
    )
}

/// A takeover under way: the lead (closed before the store it runs on).
pub struct Takeover {
    lead: Lead,
    since: Instant,
    store: Store,
}

impl Takeover {
    pub fn new(lead: Lead, since: Instant, store: Store) -> Takeover {
        Takeover { lead, since, store }
    }

    pub fn lead(&mut self) -> &mut Lead {
        &mut self.lead
    }

    /// Until when hosts resumed mid-way wait before acting, when `unknown`
    /// hosts have an action whose outcome is unknown: the lease's TTL plus
    /// the margin from the old driver's last renewal, so a paused old
    /// driver cannot race this one. The lease expired before the takeover,
    /// TTL after that renewal, so the margin is what is left to wait. The
    /// other hosts start at once.
    pub fn hold_for_unknown(&self, unknown: usize, say: fn(&str)) -> Option<tokio::time::Instant> {
        let until = self.since + self.lead.hold();
        let left = until.saturating_duration_since(Instant::now());
        if unknown == 0 || left.is_zero() {
            return None;
        }
        say(&format!(
            "etcd: {} with an action whose outcome is unknown; they wait {:.1}s more before acting (the lease's TTL plus the margin since the old driver last renewed it; its lease expired a TTL after that), so a paused old driver cannot race this one; the other hosts start now",
            crate::report::plural(unknown, "host"),
            left.as_secs_f64()
        ));
        Some(tokio::time::Instant::from_std(until))
    }

    pub fn finish(self, exit: Exit) -> anyhow::Result<Exit> {
        let Takeover { lead, store, .. } = self;
        let exit = finish(Some(lead), exit);
        drop(store);
        exit
    }
}

/// One attempt at a run's lead.
pub enum Attempt {
    /// Taken: the lead and the run's journal.
    Led(Box<(Lead, Journal)>),
    /// Somebody drives it.
    Driven(Driver),
}

/// Takes the lead of `run` if nobody holds it; then reads its journal,
/// complete now that no other driver can add to it.
pub fn try_lead(store: &Store, run: &str, say: fn(&str)) -> Result<Attempt, TakeError> {
    // The header and the leader key only: a standby polls this while the run goes on.
    let header = store
        .header(run)?
        .ok_or_else(|| TakeError::Other(no_run(store, run)))?;
    if let Some(d) = store.driver(run)? {
        return Ok(Attempt::Driven(d));
    }
    let lead = match store.take_over(&header, say) {
        Ok(l) => l,
        Err(StartError::Etcd(e)) => return Err(e.into()),
        Err(e) => {
            // Another standby won the election meanwhile.
            if let Ok(Some(d)) = store.driver(run) {
                return Ok(Attempt::Driven(d));
            }
            return Err(TakeError::Other(format!("--etcd: {e}")));
        }
    };
    let journal = store
        .journal(run)?
        .ok_or_else(|| TakeError::Other(no_run(store, run)))?;
    if !super::journal_finished(&journal.records) {
        let hosts = store.hosts_of(run)?;
        let selected: HashSet<&str> = hosts.iter().map(String::as_str).collect();
        warn_about_stale_runs(store, &selected, &header, true, say);
    }
    Ok(Attempt::Led(Box::new((lead, journal))))
}

/// Records the takeover in etcd, and writes the run's inputs and journal
/// from etcd into `dir` (see [`materialize`]); the local journal's path.
pub fn take_over(
    store: &Store,
    lead: &mut Lead,
    journal: &Journal,
    dir: &Path,
    forced: bool,
    say: fn(&str),
) -> Result<PathBuf, String> {
    let local = materialize(store, journal, dir, say)?;
    let resumed = Record::Resumed {
        at: journal::rfc3339(SystemTime::now()),
        operator: journal::operator(),
        bastion: store.settings.bastion.clone(),
        pid: std::process::id(),
        forced,
    };
    lead.record(&resumed).map_err(|e| format!("--etcd: {e}"))?;
    say(&format!(
        "etcd: took over run {} as driver {} (fencing token {}); inputs checked against the header's SHA-256; journal {}",
        journal.header.run_id,
        store.settings.bastion,
        lead.token,
        local.display()
    ));
    Ok(local)
}

/// The inputs (checked against the header's hashes) under
/// `DIR/RUN_ID.inputs/`, and the journal as `DIR/RUN_ID.jsonl` with the
/// header naming those copies. Returns the journal's path.
fn materialize(
    store: &Store,
    journal: &Journal,
    dir: &Path,
    say: fn(&str),
) -> Result<PathBuf, String> {
    let header = &journal.header;
    let moved = write_inputs(store, header, dir)?;
    let mut text = Vec::new();
    for r in &journal.records {
        let r = match r {
            Record::Header(_) => Record::Header(moved.clone()),
            other => other.clone(),
        };
        serde_json::to_writer(&mut text, &r).map_err(|e| e.to_string())?;
        text.push(b'\n');
    }
    let path = dir.join(format!("{}.jsonl", header.run_id));
    if path.exists() {
        // This bastion drove the run before: its own record stays, aside
        // (it may hold outcomes etcd had not committed yet).
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let kept = dir.join(format!("{}.jsonl.before-takeover-{secs}", header.run_id));
        std::fs::rename(&path, &kept).map_err(|e| {
            format!(
                "cannot keep this bastion's journal {} aside before taking over: {e}",
                path.display()
            )
        })?;
        say(&format!(
            "etcd: this bastion's own journal of the run is kept as {}; the run goes on from etcd's copy",
            kept.display()
        ));
    }
    write_private(&path, &text)?;
    Ok(path)
}

/// Where a takeover writes run `run`'s inputs: the caller creates it (and
/// `dir`) as the journal directory is created.
pub fn inputs_dir(dir: &Path, run: &str) -> PathBuf {
    dir.join(format!("{run}.inputs"))
}

/// The run's inputs from etcd (checked against the header's hashes) under
/// [`inputs_dir`]; the header naming those copies.
pub fn write_inputs(store: &Store, header: &Header, dir: &Path) -> Result<Header, String> {
    let inputs_dir = inputs_dir(dir, &header.run_id);
    let files = store.inputs(header).map_err(|e| format!("--etcd: {e}"))?;
    let mut moved = header.clone();
    for (n, (path, content)) in files.iter().enumerate() {
        let name = Path::new(path).file_name().map_or_else(
            || format!("input-{n}"),
            |f| f.to_string_lossy().into_owned(),
        );
        let copy = inputs_dir.join(format!("{n}-{name}"));
        write_private(&copy, content)?;
        let copy = copy.to_string_lossy().into_owned();
        if moved.playbook.path == *path {
            moved.playbook.path.clone_from(&copy);
        }
        for f in &mut moved.inventories {
            if f.path == *path {
                f.path.clone_from(&copy);
            }
        }
    }
    Ok(moved)
}

/// [`crate::files::write_private`], its error for people.
fn write_private(path: &Path, content: &[u8]) -> Result<(), String> {
    crate::files::write_private(path, content)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
