//! `rekindle run`: load inventory and playbook, plan, confirm, raise the file
//! descriptor limit, take the plan's lock, open the journal, then drive the
//! engine with one consumer of its events (journal, live progress, summary),
//! Ctrl-C handling, and the exit code. `resume` and `drill` reuse
//! [`execute_plan`] / [`execute_recorded`].
//!
//! Owns the run command's terminal interaction. The scheduling itself is the
//! engine's; the wording of progress and summary is `report`'s.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::cli::{ExecArgs, RunArgs};
use crate::diag::{self, Diagnostic, Sources};
use crate::engine::{self, CancelLevel, EngineOptions, HostStart, RunOutcome};
use crate::exit::Exit;
use crate::inventory::Inventory;
use crate::journal::{self, lock};
use crate::plan::Plan;
use crate::playbook::Rate;
use crate::report::progress::{Progress, Totals};
use crate::report::summary::{self, Collector};
use crate::select::Selector;
use crate::transport::ssh::{SshConnector, SshOptions};

/// File descriptors kept free for everything that is not a host socket
/// (journal, stdio, jump connections, the runtime, local commands).
const FD_HEADROOM: u64 = 256;

pub fn execute(args: RunArgs, verbose: u8) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let Some((inventory, plan)) = load(
        &args.inventories,
        &args.playbook,
        args.limit.as_deref(),
        &mut sources,
    ) else {
        return Ok(Exit::Usage);
    };
    if !confirm(&plan, args.exec.yes)? {
        return Ok(Exit::Usage);
    }
    run_journaled(plan, inventory, &args, verbose)
}

/// Loads inventories and the playbook and plans them, printing every
/// diagnostic to stderr. `None` means errors were printed (exit 2).
pub(crate) fn load(
    inventories: &[String],
    playbook: &str,
    limit: Option<&str>,
    sources: &mut Sources,
) -> Option<(Inventory, Plan)> {
    let mut warnings: Vec<Diagnostic> = Vec::new();
    let fail = |sources: &Sources, mut diags: Vec<Diagnostic>| {
        diag::sort(&mut diags);
        eprint!("{}", diag::render_text(sources, &diags));
        None
    };
    let (inventory, w) = match crate::inventory::load(inventories, sources) {
        Ok(x) => x,
        Err(d) => return fail(sources, d),
    };
    warnings.extend(w);
    // The checks against hosts run once, in `plan::build`, where `--limit`
    // is known; with the inventory here too, every such warning printed twice
    // (once counting hosts the limit excludes).
    let (book, w) = match crate::playbook::load(playbook, None, sources) {
        Ok(x) => x,
        Err(d) => return fail(sources, d),
    };
    warnings.extend(w);
    let limit = match limit.map(Selector::parse).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --limit: {e}");
            return None;
        }
    };
    let plan = match crate::plan::build(&book, &inventory, limit.as_ref()) {
        Ok(p) => p,
        Err(d) => return fail(sources, d),
    };
    warnings.extend(plan.warnings.iter().cloned());
    if !warnings.is_empty() {
        diag::sort(&mut warnings);
        eprint!("{}", diag::render_text(sources, &warnings));
    }
    Some((inventory, plan))
}

/// Asks on a terminal; off a terminal only `--yes` proceeds.
pub(crate) fn confirm(plan: &Plan, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() || !std::io::stderr().is_terminal() {
        eprintln!(
            "error: not on a terminal, so nobody can confirm; pass --yes to run `{}` unattended",
            plan.name
        );
        return Ok(false);
    }
    let hosts: usize = plan.stages.iter().map(|s| s.hosts.len()).sum();
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "About to run `{}`: {} stages, {} host runs, estimated {}",
        plan.name,
        plan.stages.len(),
        hosts,
        engine::steps::humane(plan.estimate)
    )?;
    for s in &plan.stages {
        let after: Vec<&str> = s
            .after
            .iter()
            .filter_map(|&i| plan.stages.get(i).map(|d| d.name.as_str()))
            .collect();
        writeln!(
            err,
            "  {}: {} hosts, {} canaries, window {}, failure budget {}{}",
            s.name,
            s.hosts.len(),
            s.canaries,
            s.window,
            s.failure_budget,
            if after.is_empty() {
                String::new()
            } else {
                format!(", after {}", after.join(", "))
            }
        )?;
    }
    write!(err, "Proceed? [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    let go = matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes");
    if !go {
        eprintln!("not confirmed; nothing was done");
    }
    Ok(go)
}

/// Raises the soft fd limit to the hard one and returns how many hosts may
/// be in flight at once so their sockets fit, with a note when it clamps.
fn fd_parallelism(requested: Option<usize>, plan: &Plan) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(e) => {
            eprintln!("warning: cannot raise the file descriptor limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let per_host = fds_per_host(plan);
    let fit = usize::try_from(limit.saturating_sub(FD_HEADROOM).max(1) / per_host)
        .unwrap_or(usize::MAX)
        .max(1);
    match requested {
        Some(n) if n > fit => {
            eprintln!(
                "note: --parallel {n} clamped to {fit}: the file descriptor limit is {limit} ({FD_HEADROOM} kept free, {per_host} per host)"
            );
            fit
        }
        Some(n) => n.max(1),
        None => {
            let widest = plan.stages.iter().map(|s| s.window).max().unwrap_or(1);
            let together: usize = plan
                .waves
                .iter()
                .map(|w| {
                    w.iter()
                        .filter_map(|&i| plan.stages.get(i))
                        .map(|s| s.window)
                        .sum::<usize>()
                })
                .max()
                .unwrap_or(widest)
                .max(widest);
            if together > fit {
                eprintln!(
                    "note: hosts in flight clamped to {fit} (stages ask for up to {together} at once): \
                     the file descriptor limit is {limit} ({FD_HEADROOM} kept free, {per_host} per host)"
                );
            }
            fit
        }
    }
}

/// The most descriptors one host in flight holds at once: its SSH socket (a
/// jump host's channels share one), plus a probe socket during tcp/http
/// checks, or three pipes for a local command.
fn fds_per_host(plan: &Plan) -> u64 {
    use crate::playbook::{Check, Step};
    let step_extra = |step: &Step| match step {
        Step::Local { .. } => 3,
        Step::Health(h) if h.checks.iter().any(|c| !matches!(c, Check::Ssh(_))) => 1,
        Step::PowerOn(_) => 1,
        _ => 0,
    };
    1 + plan
        .stages
        .iter()
        .flat_map(|s| s.steps.iter())
        .map(step_extra)
        .max()
        .unwrap_or(0)
}

/// `100/s`, `3000/m`, `10/h`.
pub(crate) fn parse_rate(input: &str) -> Result<Rate, String> {
    let bad = || format!("invalid rate `{input}`: expected COUNT/UNIT such as 100/s or 3000/m");
    let (count, unit) = input.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!(
            "invalid rate `{input}`: the count must be at least 1"
        ));
    }
    let per = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok(Rate { count, per })
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn expand_tilde(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// Flags first, then the inventory's defaults, then OpenSSH's usual files.
pub(crate) fn ssh_options(exec: &ExecArgs, inventory: &Inventory) -> SshOptions {
    let ssh = &exec.ssh;
    let mut identities: Vec<PathBuf> = ssh.identities.clone();
    identities.extend(inventory.identity_files.iter().map(|p| expand_tilde(p)));
    if let Some(home) = home() {
        identities.push(home.join(".ssh/id_ed25519"));
        identities.push(home.join(".ssh/id_rsa"));
    }
    let known_hosts = ssh
        .known_hosts
        .clone()
        .or_else(|| inventory.known_hosts.as_deref().map(expand_tilde))
        .unwrap_or_else(|| expand_tilde("~/.ssh/known_hosts"));
    let ssh_config = ssh.ssh_config.clone().or_else(|| {
        let default = expand_tilde("~/.ssh/config");
        default.is_file().then_some(default)
    });
    SshOptions {
        identities,
        known_hosts,
        ssh_config,
        accept_new_host_keys: ssh.accept_new_host_keys,
        use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
    }
}

/// Runs a loaded plan to its end over SSH and maps the outcome to an exit
/// code, with live progress and a final summary but no journal (drill).
/// `starts` lets a caller skip finished hosts and re-verify reboots.
#[allow(dead_code, reason = "the entry point `drill` runs plans through")]
pub(crate) fn execute_plan(
    plan: Plan,
    inventory: Inventory,
    exec: &ExecArgs,
    verbose: u8,
    starts: HashMap<(usize, usize), HostStart>,
) -> anyhow::Result<Exit> {
    execute_recorded(plan, inventory, exec, verbose, starts, Recording::default())
}

/// Where a run's events go besides the live display: the journal (if any)
/// and a summary collector already fed with what happened before (resume).
#[derive(Default)]
pub(crate) struct Recording {
    pub writer: Option<journal::Writer>,
    pub collector: Collector,
    /// Hosts a resumed run skips because they finished before.
    pub already_done: usize,
}

/// [`execute_plan`] with a journal: every event is recorded, intents are on
/// disk before the engine acts on them.
pub(crate) fn execute_recorded(
    plan: Plan,
    inventory: Inventory,
    exec: &ExecArgs,
    verbose: u8,
    starts: HashMap<(usize, usize), HostStart>,
    mut recording: Recording,
) -> anyhow::Result<Exit> {
    let rate = match exec.rate.as_deref().map(parse_rate).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --rate: {e}");
            return Ok(Exit::Usage);
        }
    };
    let parallel = fd_parallelism(exec.parallel, &plan);
    let connector = match SshConnector::new(ssh_options(exec, &inventory)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let bmc = match bmc_client(&plan, &inventory, exec) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let opts = EngineOptions {
        parallel,
        rate,
        starts,
        bmc,
        bmc_time_scale: 1.0,
    };
    let stage_sizes: Vec<(String, usize)> = plan
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.hosts.len()))
        .collect();
    recording.collector.stages(stage_sizes.clone());
    let totals = Totals::new(stage_sizes, recording.already_done);
    let progress = Progress::new(exec.quiet, verbose > 0, totals);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (outcome, consumed) = runtime.block_on(async move {
        let (cancel_tx, cancel_rx) = watch::channel(CancelLevel::None);
        tokio::spawn(ctrl_c(cancel_tx));
        let (tx, rx) = mpsc::channel(4096);
        let consumer = tokio::spawn(consume(rx, recording, progress));
        let outcome = engine::run(
            Arc::new(plan),
            Arc::new(inventory),
            Arc::new(connector),
            opts,
            tx,
            cancel_rx,
        )
        .await;
        (outcome, consumer.await)
    });
    // Connections still closing must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (recording, output) = consumed.context("the event consumer failed")?;
    if let Err(e) = output {
        eprintln!("warning: progress output failed: {e}");
    }
    let journal_path = recording.writer.as_ref().map(|w| w.path().to_owned());
    if let Some(writer) = recording.writer {
        // The engine already acted on every acknowledged intent; a failure
        // here loses only later records, so report it and keep the exit code.
        if let Err(e) = writer.finish() {
            eprintln!("warning: journal: {e}");
        }
    }
    let summary = recording.collector.summary();
    // A blank line between live output and the summary, unless nothing came before.
    println!(
        "{}{}",
        if exec.quiet { "" } else { "\n" },
        summary::render_text(&summary).trim_end()
    );
    if let Some(path) = journal_path {
        println!("journal: {}", path.display());
    }
    let _ = std::io::stdout().flush();
    Ok(match outcome {
        RunOutcome::Success => Exit::Success,
        RunOutcome::Failures => Exit::Failures,
        RunOutcome::Aborted => Exit::Aborted,
        RunOutcome::Interrupted => Exit::Interrupted,
    })
}

/// The BMC client when the plan has power_on steps (credentials are
/// loaded only then, and every host's entry is checked before any host is
/// touched).
fn bmc_client(
    plan: &Plan,
    inventory: &Inventory,
    exec: &ExecArgs,
) -> anyhow::Result<Option<Arc<dyn crate::transport::redfish::Bmc>>> {
    use crate::transport::redfish::{CredentialStore, Redfish, RedfishOptions};
    if !needs_bmc(plan) {
        return Ok(None);
    }
    let credentials = CredentialStore::load(exec.bmc_credentials.as_deref())?;
    let problems = bmc_credential_problems(plan, inventory, &credentials);
    if !problems.is_empty() {
        anyhow::bail!(
            "{}",
            diag::render_text(&Sources::new(), &problems).trim_end()
        );
    }
    let opts = RedfishOptions {
        ca_bundle: exec.bmc_ca.clone(),
        insecure: exec.bmc_insecure,
    };
    Ok(Some(Arc::new(Redfish::new(Arc::new(credentials), &opts)?)))
}

/// True when some stage powers hosts on.
pub(crate) fn needs_bmc(plan: &Plan) -> bool {
    plan.stages
        .iter()
        .flat_map(|s| s.steps.iter())
        .any(|s| matches!(s, crate::playbook::Step::PowerOn(_)))
}

/// One error per host a power_on step reaches whose `bmc_credentials`
/// entry (or the default account) the credentials do not hold, at the
/// host's place in the inventory.
pub(crate) fn bmc_credential_problems(
    plan: &Plan,
    inventory: &Inventory,
    credentials: &crate::transport::redfish::CredentialStore,
) -> Vec<Diagnostic> {
    let mut hosts: Vec<usize> = plan
        .stages
        .iter()
        .filter(|s| {
            s.steps
                .iter()
                .any(|s| matches!(s, crate::playbook::Step::PowerOn(_)))
        })
        .flat_map(|s| s.hosts.iter().copied())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
        .into_iter()
        .filter_map(|i| inventory.hosts.get(i))
        .filter_map(|h| {
            let e = credentials.for_host(h).err()?;
            Some(Diagnostic::error(
                "missing-bmc-credentials",
                h.span.clone(),
                format!("host {}: {e}", h.name),
            ))
        })
        .collect()
}

/// Records queued before they are handed to the journal's writer thread
/// even while events keep coming; intents always go at once (the engine
/// waits for them) and the writer thread batches them into one flush.
const COMMIT_RECORDS: usize = 256;

/// The one event consumer: journal first (intents are acknowledged by the
/// journal's writer once flushed, or at once without a journal), then the
/// live display and the summary.
async fn consume(
    mut rx: mpsc::Receiver<engine::Event>,
    mut rec: Recording,
    mut progress: Progress,
) -> (Recording, std::io::Result<()>) {
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut result = Ok(());
    let mut queued = 0usize;
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let intent = event.ack.is_some();
                match rec.writer.as_mut() {
                    Some(w) => {
                        w.push_event(event.at, event.elapsed, &event.kind, event.ack);
                        queued += 1;
                        if intent || queued >= COMMIT_RECORDS || rx.is_empty() {
                            w.commit();
                            queued = 0;
                        }
                    }
                    None => {
                        if let Some(ack) = event.ack {
                            ack.done();
                        }
                    }
                }
                rec.collector.event(event.at, &event.kind);
                if result.is_ok() {
                    result = progress.event(&event.kind, event.elapsed);
                }
            }
            _ = tick.tick() => {
                if let Some(w) = rec.writer.as_mut() {
                    w.commit();
                }
                if result.is_ok() {
                    result = progress.tick(started.elapsed());
                }
            }
        }
    }
    progress.finish();
    (rec, result)
}

/// Creates the journal directory (0700: journals name hosts and commands).
pub(crate) fn journal_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the journal directory {}", dir.display()))
}

/// The header of a new run's journal: what ran, from which files, by whom.
fn header(plan: &Plan, args: &RunArgs, now: SystemTime) -> anyhow::Result<journal::Header> {
    let hash = |p: &str| {
        journal::FileHash::of(p).with_context(|| format!("cannot hash {p} for the journal"))
    };
    Ok(journal::Header {
        format: journal::FORMAT,
        run_id: journal::run_id(&plan.name, now),
        plan: plan.name.clone(),
        playbook: hash(&args.playbook)?,
        inventories: args
            .inventories
            .iter()
            .map(|p| hash(p))
            .collect::<anyhow::Result<_>>()?,
        limit: args.limit.clone(),
        parallel: args.exec.parallel,
        rate: args.exec.rate.clone(),
        operator: journal::operator(),
        bastion: journal::bastion(),
        rekindle_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: journal::rfc3339(now),
        stages: plan
            .stages
            .iter()
            .map(|s| journal::StageHead {
                name: s.name.clone(),
                hosts: s.hosts.len(),
            })
            .collect(),
    })
}

/// Takes the plan's lock and the run's registry entry (for the hosts `plan`
/// selects), printing why when it cannot. `None`: exit 2.
pub(crate) fn take_lock(
    dir: &Path,
    playbook_abs: &str,
    journal_file: &Path,
    exec: &ExecArgs,
    plan: &Plan,
    inventory: &Inventory,
) -> Option<lock::RunLock> {
    let breaking = lock::Break::from_flags(exec.break_lock, exec.break_live_lock);
    let flag = if exec.break_live_lock {
        "--break-live-lock"
    } else {
        "--break-lock"
    };
    let path = lock::lock_path(dir, playbook_abs);
    let plan_lock = match lock::acquire(&path, journal_file, breaking) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    match &plan_lock.taken {
        lock::Taken::Free => {}
        lock::Taken::Stale(h) => {
            eprintln!("note: took over a stale lock of a process that is gone: {h}")
        }
        lock::Taken::Broken(Some(h)) => eprintln!("note: {flag}: took the lock from {h}"),
        lock::Taken::Broken(None) => eprintln!("note: {flag}: replaced an unreadable lock"),
    }
    let hosts = plan
        .stages
        .iter()
        .flat_map(|s| s.hosts.iter())
        .filter_map(|&h| inventory.hosts.get(h))
        .map(|h| h.name.as_str());
    let entry = journal::registry::dir().and_then(|d| {
        journal::registry::register(
            &d,
            &plan.name,
            hosts,
            &lock::Holder::me(journal_file),
            breaking,
        )
    });
    let registry = match entry {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    for r in &registry.replaced {
        if let journal::registry::Replaced::Broken(o) = r {
            eprintln!("note: {flag}: took over the hosts of a live run: {o}");
        }
    }
    Some(lock::RunLock {
        plan: plan_lock,
        registry,
    })
}

/// Sets up the journal and lock of a new run, then runs it.
fn run_journaled(
    plan: Plan,
    inventory: Inventory,
    args: &RunArgs,
    verbose: u8,
) -> anyhow::Result<Exit> {
    let now = SystemTime::now();
    let header = header(&plan, args, now)?;
    journal_dir(&args.exec.journal)?;
    let file = args.exec.journal.join(format!("{}.jsonl", header.run_id));
    let Some(lock) = take_lock(
        &args.exec.journal,
        &header.playbook.path,
        &file,
        &args.exec,
        &plan,
        &inventory,
    ) else {
        return Ok(Exit::Usage);
    };
    let mut writer = journal::create(&file, &header)?;
    writer.fence(lock.held());
    eprintln!(
        "journal: {} (resume with `rekindle resume {}`)",
        file.display(),
        file.display()
    );
    let mut collector = Collector::new();
    collector.record(&journal::Record::Header(header));
    let exit = execute_recorded(
        plan,
        inventory,
        &args.exec,
        verbose,
        HashMap::new(),
        Recording {
            writer: Some(writer),
            collector,
            already_done: 0,
        },
    );
    drop(lock);
    exit
}

/// First Ctrl-C drains, the second aborts (run, resume and drill alike).
pub(crate) async fn ctrl_c(cancel: watch::Sender<CancelLevel>) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!(
        "\ninterrupt: starting no new hosts; waiting for hosts in flight to finish (Ctrl-C again to stop now)"
    );
    let _ = cancel.send(CancelLevel::Drain);
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!("\ninterrupt: stopping now; hosts in flight are recorded as interrupted");
    let _ = cancel.send(CancelLevel::Abort);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("100/s"),
            Ok(Rate {
                count: 100,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_rate("3000/m").map(|r| r.per),
            Ok(Duration::from_secs(60))
        );
        for bad in ["", "100", "0/s", "x/s", "10/fortnight", "-1/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
