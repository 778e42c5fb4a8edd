//! `rekindle run`: load inventory and playbook, plan, confirm, raise the file
//! descriptor limit, then drive the engine with a plain printer consuming its
//! events, Ctrl-C handling, and the exit code.
//!
//! Owns the run command's terminal interaction. The scheduling itself is the
//! engine's; the wording of host lines is `report::plain`'s.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::cli::{ExecArgs, RunArgs};
use crate::diag::{self, Diagnostic, Sources};
use crate::engine::{self, CancelLevel, EngineOptions, HostStart, RunOutcome};
use crate::exit::Exit;
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::playbook::Rate;
use crate::report::plain::Plain;
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
    execute_plan(plan, inventory, &args.exec, verbose, HashMap::new())
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
    let (book, w) = match crate::playbook::load(playbook, Some(&inventory), sources) {
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
fn confirm(plan: &Plan, yes: bool) -> anyhow::Result<bool> {
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
/// code. `starts` lets `resume` skip finished hosts and re-verify reboots.
pub(crate) fn execute_plan(
    plan: Plan,
    inventory: Inventory,
    exec: &ExecArgs,
    verbose: u8,
    starts: HashMap<(usize, usize), HostStart>,
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
    let bmc = match bmc_client(&plan, exec) {
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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let quiet = exec.quiet;
    let outcome = runtime.block_on(async move {
        let (cancel_tx, cancel_rx) = watch::channel(CancelLevel::None);
        tokio::spawn(ctrl_c(cancel_tx));
        let (tx, rx) = mpsc::channel(4096);
        let printer = tokio::spawn(print_events(rx, quiet, verbose > 0));
        let outcome = engine::run(
            Arc::new(plan),
            Arc::new(inventory),
            Arc::new(connector),
            opts,
            tx,
            cancel_rx,
        )
        .await;
        match printer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: output failed: {e}"),
            Err(e) => eprintln!("warning: output task failed: {e}"),
        }
        outcome
    });
    // Connections still closing must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(match outcome {
        RunOutcome::Success => Exit::Success,
        RunOutcome::Failures => Exit::Failures,
        RunOutcome::Aborted => Exit::Aborted,
        RunOutcome::Interrupted => Exit::Interrupted,
    })
}

/// The Redfish client when the plan has power_on steps (credentials are
/// loaded only then, and checked before any host is touched).
fn bmc_client(
    plan: &Plan,
    exec: &ExecArgs,
) -> anyhow::Result<Option<Arc<dyn crate::transport::redfish::Bmc>>> {
    use crate::transport::redfish::{Credentials, Redfish, RedfishOptions};
    let needs = plan
        .stages
        .iter()
        .flat_map(|s| s.steps.iter())
        .any(|s| matches!(s, crate::playbook::Step::PowerOn(_)));
    if !needs {
        return Ok(None);
    }
    let credentials = Credentials::load(exec.bmc_credentials.as_deref())?;
    let opts = RedfishOptions {
        ca_bundle: exec.bmc_ca.clone(),
        insecure: exec.bmc_insecure,
    };
    Ok(Some(Arc::new(Redfish::new(credentials, &opts)?)))
}

/// The event consumer: prints, then acknowledges intents (the journal will
/// write and flush before this acknowledgement once it exists).
async fn print_events(
    mut rx: mpsc::Receiver<engine::Event>,
    quiet: bool,
    verbose: bool,
) -> std::io::Result<()> {
    let mut plain = Plain::new(std::io::stdout(), quiet, verbose);
    let mut result = Ok(());
    while let Some(event) = rx.recv().await {
        if result.is_ok() {
            result = plain.event(&event.kind, event.elapsed);
        }
        if let Some(ack) = event.ack {
            ack.done();
        }
    }
    result
}

/// First Ctrl-C drains, the second aborts.
async fn ctrl_c(cancel: watch::Sender<CancelLevel>) {
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
