//! What `run`, `resume`, `standby` and `report` do differently with
//! `--etcd`: the run stored and its lead taken (or refused, naming the run
//! it collides with), a standby waiting for the driver's lease to expire,
//! a takeover continuing the run as `resume` does, and a fenced driver's
//! exit. The rules are `etcd`'s and the resume's `resume`'s; this file only
//! turns arguments into those calls and their results into messages.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::args;
use crate::cli::{EtcdArgs, ExecArgs, ResumeArgs, StandbyArgs};
use crate::etcd::{Driver, Lead, RunInfo, StartError, Store};
use crate::exit::Exit;
use crate::journal::{self, Header, Journal, Record};
use crate::session::Prepared;

/// Stores a new run in etcd and takes its lead; `Err` is the message.
pub(crate) fn begin(store: &Store, header: &Header, prepared: &Prepared) -> Result<Lead, String> {
    let mut hosts: Vec<&str> = prepared
        .plan
        .stages
        .iter()
        .flat_map(|s| s.hosts.iter())
        .filter_map(|&h| prepared.inventory.hosts.get(h))
        .map(|h| h.name.as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let lead = store
        .begin(header, &hosts, args::notice)
        .map_err(|e| format!("--etcd: {e}"))?;
    let selected: std::collections::HashSet<&str> = hosts.iter().copied().collect();
    warn_about_stale_runs(store, &selected, header, false);
    eprintln!(
        "etcd: run {} kept in etcd under {} as driver {} (fencing token {}); another bastion can take it over with `rekindle resume {} --etcd ...`",
        header.run_id, store.settings.prefix, store.settings.bastion, lead.token, header.run_id
    );
    Ok(lead)
}

/// Gives the lead up after the run; a fenced driver exits with its own
/// code and says why, whatever the engine's outcome was.
pub(crate) fn finish(lead: Option<Lead>, exit: Exit) -> Exit {
    let Some(lead) = lead else { return exit };
    let fenced = lead.fenced().map(|why| lead.fenced_message(&why));
    lead.close();
    match fenced {
        Some(message) => {
            eprintln!("error: {message}");
            Exit::Fenced
        }
        None => exit,
    }
}

fn store(etcd: &EtcdArgs, exec: &ExecArgs) -> Result<Store, String> {
    match args::etcd(etcd)? {
        Some(mut settings) => {
            settings.become_password = exec.become_password_file.is_some();
            args::etcd_store(settings)
        }
        None => Err("--etcd (or REKINDLE_ETCD) is needed".into()),
    }
}

/// A run id given as such, or the run id in the header of a journal file.
fn run_id(arg: &str) -> String {
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
    hosts: &std::collections::HashSet<&str>,
    header: &Header,
    resuming: bool,
) {
    let Ok(others) = store.others_with_hosts(hosts, &header.run_id) else {
        return;
    };
    for o in others {
        let h = &o.header;
        if resuming && h.started_at > header.started_at {
            eprintln!(
                "warning: run {} (`{}`) began after run {} and selected {} of its hosts (e.g. {}){}; \
                 this resume acts on them again where run {} left them unfinished",
                h.run_id,
                h.plan,
                header.run_id,
                o.overlap,
                o.sample.join(", "),
                if o.finished { ", and finished" } else { "" },
                header.run_id
            );
        } else if !resuming && !o.driven && !o.finished {
            eprintln!(
                "warning: run {} (`{}`, begun {}) is stale and unfinished in etcd and selected {} of these hosts (e.g. {}); \
                 resuming it after this run acts on them again",
                h.run_id,
                h.plan,
                h.started_at,
                o.overlap,
                o.sample.join(", ")
            );
        }
    }
}

/// `report RUN_ID --etcd ...`: the run's journal as etcd has it.
pub(crate) fn journal(etcd: &EtcdArgs, run: &str) -> Result<Journal, String> {
    let store = store(etcd, &ExecArgs::default())?;
    let run = run_id(run);
    store
        .journal(&run)
        .map_err(|e| format!("--etcd: {e}"))?
        .ok_or_else(|| no_run(&store, &run))
}

fn no_run(store: &Store, run: &str) -> String {
    format!(
        "no run {run} in etcd under {} (`rekindle status --etcd ...` lists them)",
        store.settings.prefix
    )
}

/// Why a run kept in etcd is not resumed from its local journal alone, and
/// how to resume it.
pub(crate) fn kept_in_etcd(header: &Header, home: &journal::EtcdHome) -> String {
    let endpoints = home.endpoints.join(",");
    let prefix = if home.prefix == crate::cli::DEFAULT_ETCD_PREFIX {
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
pub(crate) fn driver_words(d: &Driver) -> String {
    format!(
        "{} on bastion {} (pid {}, fencing token {})",
        d.operator, d.bastion, d.pid, d.token
    )
}

/// A run's progress, for people.
pub(crate) fn progress_words(r: &RunInfo) -> String {
    let total: usize = r.header.stages.iter().map(|s| s.hosts).sum();
    format!(
        "{} of {} host runs done, {} failed, {} in flight",
        r.done, total, r.failed, r.in_flight
    )
}

/// A takeover under way: the lead (closed before the store it runs on).
pub(crate) struct Takeover {
    lead: Lead,
    since: Instant,
    store: Store,
}

impl Takeover {
    pub(crate) fn lead(&mut self) -> &mut Lead {
        &mut self.lead
    }

    /// Until when hosts resumed mid-way wait before acting, when `unknown`
    /// hosts have an action whose outcome is unknown: the lease's TTL plus
    /// the margin from the old driver's last renewal, so a paused old
    /// driver cannot race this one. The lease expired before the takeover,
    /// TTL after that renewal, so the margin is what is left to wait. The
    /// other hosts start at once.
    pub(crate) fn hold_for_unknown(&self, unknown: usize) -> Option<tokio::time::Instant> {
        let until = self.since + self.lead.hold();
        let left = until.saturating_duration_since(Instant::now());
        if unknown == 0 || left.is_zero() {
            return None;
        }
        eprintln!(
            "etcd: {} with an action whose outcome is unknown; they wait {:.1}s more before acting (the lease's TTL plus the margin since the old driver last renewed it; its lease expired a TTL after that), so a paused old driver cannot race this one; the other hosts start now",
            crate::report::plural(unknown, "host"),
            left.as_secs_f64()
        );
        Some(tokio::time::Instant::from_std(until))
    }

    pub(crate) fn finish(self, exit: Exit) -> Exit {
        let Takeover { lead, store, .. } = self;
        let exit = finish(Some(lead), exit);
        drop(store);
        exit
    }
}

/// `resume RUN_ID --etcd ...`: takes over a run whose driver is gone.
pub(crate) fn resume(args: ResumeArgs, verbose: u8) -> anyhow::Result<Exit> {
    let store = match store(&args.etcd, &args.exec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let run = run_id(&args.journal_file.to_string_lossy());
    match try_lead(&store, &run) {
        Ok(Attempt::Led(led)) => {
            let (lead, journal) = *led;
            continue_run(store, lead, &journal, args, verbose)
        }
        Ok(Attempt::Driven(d)) => {
            eprintln!(
                "error: run {run} is driven by {}; `rekindle standby {run} --etcd ...` waits to take it over",
                driver_words(&d)
            );
            Ok(Exit::Usage)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(Exit::Usage)
        }
    }
}

enum Attempt {
    Led(Box<(Lead, Journal)>),
    Driven(Driver),
}

/// Takes the lead of `run` if nobody holds it; then reads its journal,
/// complete now that no other driver can add to it.
fn try_lead(store: &Store, run: &str) -> Result<Attempt, String> {
    let etcd = |e: crate::etcd::client::EtcdError| format!("--etcd: {e}");
    // The header and the leader key only: a standby polls this while the run goes on.
    let header = store
        .header(run)
        .map_err(etcd)?
        .ok_or_else(|| no_run(store, run))?;
    if let Some(d) = store.driver(run).map_err(etcd)? {
        return Ok(Attempt::Driven(d));
    }
    let lead = match store.take_over(&header, args::notice) {
        Ok(l) => l,
        Err(StartError::Etcd(e)) => return Err(etcd(e)),
        Err(e) => {
            // Another standby won the election meanwhile.
            if let Ok(Some(d)) = store.driver(run) {
                return Ok(Attempt::Driven(d));
            }
            return Err(format!("--etcd: {e}"));
        }
    };
    let journal = store
        .journal(run)
        .map_err(etcd)?
        .ok_or_else(|| no_run(store, run))?;
    if !finished(&journal) {
        let hosts = store.hosts_of(run).map_err(etcd)?;
        let selected: std::collections::HashSet<&str> = hosts.iter().map(String::as_str).collect();
        warn_about_stale_runs(store, &selected, &header, true);
    }
    Ok(Attempt::Led(Box::new((lead, journal))))
}

/// Writes the run's inputs and journal from etcd into the journal
/// directory and resumes from there, mirrored under the new lead.
fn continue_run(
    store: Store,
    mut lead: Lead,
    journal: &Journal,
    mut args: ResumeArgs,
    verbose: u8,
) -> anyhow::Result<Exit> {
    let since = Instant::now();
    let local = match materialize(&store, journal, &args.exec.journal) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let resumed = Record::Resumed {
        at: journal::rfc3339(std::time::SystemTime::now()),
        operator: journal::operator(),
        bastion: store.settings.bastion.clone(),
        pid: std::process::id(),
        forced: args.force,
    };
    if let Err(e) = lead.record(&resumed) {
        eprintln!("error: --etcd: {e}");
        return Ok(Exit::Usage);
    }
    eprintln!(
        "etcd: took over run {} as driver {} (fencing token {}); inputs checked against the header's SHA-256; journal {}",
        journal.header.run_id,
        store.settings.bastion,
        lead.token,
        local.display()
    );
    args.journal_file = local;
    super::resume::execute_with(args, verbose, Some(Takeover { lead, since, store }))
}

/// The inputs (checked against the header's hashes) under
/// `DIR/RUN_ID.inputs/`, and the journal as `DIR/RUN_ID.jsonl` with the
/// header naming those copies. Returns the journal's path.
fn materialize(store: &Store, journal: &Journal, dir: &Path) -> Result<PathBuf, String> {
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
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let kept = dir.join(format!("{}.jsonl.before-takeover-{secs}", header.run_id));
        std::fs::rename(&path, &kept).map_err(|e| {
            format!(
                "cannot keep this bastion's journal {} aside before taking over: {e}",
                path.display()
            )
        })?;
        eprintln!(
            "etcd: this bastion's own journal of the run is kept as {}; the run goes on from etcd's copy",
            kept.display()
        );
    }
    write_private(&path, &text)?;
    Ok(path)
}

/// The run's inputs from etcd (checked against the header's hashes) under
/// `DIR/RUN_ID.inputs/`; the header naming those copies.
fn write_inputs(store: &Store, header: &Header, dir: &Path) -> Result<Header, String> {
    crate::session::journal_dir(dir).map_err(|e| format!("{e:#}"))?;
    let inputs_dir = dir.join(format!("{}.inputs", header.run_id));
    crate::session::journal_dir(&inputs_dir).map_err(|e| format!("{e:#}"))?;
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

/// Whether this standby could take `run` over now: its inputs from etcd
/// loaded and prepared with this standby's settings, the very checks a
/// takeover makes (BMC credentials for a plan that powers on or
/// power-cycles, the become password file, the SSH client's known_hosts
/// and keys). A standby that would fail them when its turn came is no
/// standby: the run would be left stale, without a driver.
fn ready_to_take_over(store: &Store, run: &str, exec: &ExecArgs) -> Result<(), String> {
    let header = store
        .header(run)
        .map_err(|e| format!("--etcd: {e}"))?
        .ok_or_else(|| no_run(store, run))?;
    // Whether become needs a password only the hosts' sudo knows; the
    // driver says whether it was given one.
    if let Some(d) = store.driver(run).map_err(|e| format!("--etcd: {e}"))?
        && d.become_password
        && exec.become_password_file.is_none()
    {
        return Err(format!(
            "its driver {} was given --become-password-file, and this standby was not: a takeover would find sudo asking for a password",
            driver_words(&d)
        ));
    }
    let moved = write_inputs(store, &header, &exec.journal)?;
    let mut sources = crate::diag::Sources::new();
    let inventories: Vec<String> = moved.inventories.iter().map(|f| f.path.clone()).collect();
    let loaded = args::load(
        &inventories,
        &moved.playbook.path,
        moved.limit.as_deref(),
        &mut sources,
    )
    .ok_or_else(|| format!("run {run}: its inputs do not load here (see above)"))?;
    let mut exec = exec.clone();
    exec.parallel = exec.parallel.or(header.parallel);
    exec.rate = exec.rate.clone().or_else(|| header.rate.clone());
    let rate = args::rate(&exec)?;
    let settings = args::settings(&exec, rate, &loaded.inventory);
    crate::session::prepare(loaded.plan, loaded.inventory, &settings)
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// [`crate::files::write_private`], its error for people.
fn write_private(path: &Path, content: &[u8]) -> Result<(), String> {
    crate::files::write_private(path, content)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// How often a standby looks at the leader key.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// `standby RUN_ID --etcd ...`: waits while the run's driver lives, then
/// takes it over (one standby wins; the others go on waiting).
pub(crate) fn standby(args: StandbyArgs, verbose: u8) -> anyhow::Result<Exit> {
    let store = match store(&args.etcd, &args.exec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let run = run_id(&args.run_id);
    stand_by(store, &run, args.exec, args.etcd, verbose)
}

/// The standby loop, for `standby` and for a second identical `run`.
pub(crate) fn stand_by(
    store: Store,
    run: &str,
    mut exec: ExecArgs,
    etcd: EtcdArgs,
    verbose: u8,
) -> anyhow::Result<Exit> {
    if let Err(e) = ready_to_take_over(&store, run, &exec) {
        eprintln!(
            "error: refusing to stand by for run {run}: a takeover would fail: {e}\n\
             (a standby is checked when it starts with what taking the run over needs; give it what the driver has)"
        );
        return Ok(Exit::Usage);
    }
    let announced = match store.standby(run) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --etcd: {e}");
            return Ok(Exit::Usage);
        }
    };
    // Taking over happens unattended, maybe hours later: starting the standby was the confirmation.
    exec.yes = true;
    let mut last_driver: Option<Driver> = None;
    let mut unreachable = false;
    loop {
        let attempt = try_lead(&store, run);
        match attempt {
            Ok(Attempt::Driven(d)) => {
                unreachable = false;
                if last_driver.as_ref() != Some(&d) {
                    let progress = store
                        .runs()
                        .ok()
                        .and_then(|rs| rs.into_iter().find(|r| r.header.run_id == run))
                        .map(|r| progress_words(&r))
                        .unwrap_or_default();
                    eprintln!(
                        "standby: run {run} is driven by {}; {progress}; waiting to take over when its lease expires",
                        driver_words(&d)
                    );
                    last_driver = Some(d);
                }
            }
            Ok(Attempt::Led(led)) => {
                let (lead, journal) = *led;
                if finished(&journal) {
                    drop(lead);
                    eprintln!("standby: run {run} finished; nothing to take over");
                    return Ok(Exit::Success);
                }
                drop(announced);
                eprintln!("standby: the driver's lease of run {run} expired; taking over");
                let args = ResumeArgs {
                    journal_file: PathBuf::from(run),
                    force: false,
                    failed_only: false,
                    limit: None,
                    accept_failures: false,
                    without_etcd: false,
                    exec,
                    etcd,
                };
                return continue_run(store, lead, &journal, args, verbose);
            }
            Err(e) if e.starts_with("--etcd: etcd") => {
                if !unreachable {
                    eprintln!("standby: {e}; still waiting");
                    unreachable = true;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Exit::Usage);
            }
        }
        std::thread::sleep(STANDBY_POLL);
    }
}

/// Whether the journal's last driver recorded the run's end.
fn finished(journal: &Journal) -> bool {
    crate::etcd::journal_finished(&journal.records)
}
