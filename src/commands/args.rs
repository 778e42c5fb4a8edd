//! High-level arguments: every command-line string that carries a value
//! (rates, boot times, faults, outages, fractions, speeds) parsed and
//! range-checked once, here, into typed settings the library takes. Also
//! the terminal interaction the running commands share (printing load
//! errors and warnings, confirmation).
//!
//! Owns the wording of bad-argument errors. It must not run anything.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{ExecArgs, FleetArgs};
use crate::diag::{self, Sources};
use crate::engine;
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::playbook::Rate;
use crate::session::{self, BmcSettings, LoadError, Loaded, Settings};
use crate::sim::{BootTimeRange, FailSpec, parse_fail};
use crate::transport::ssh::SshOptions;

/// The fastest a drill may compress time: beyond it, simulated commands and
/// handshakes (which are not compressed) dominate and the prediction is noise.
pub(crate) const MAX_SPEED: f64 = 1000.0;

/// `100/s`, `3000/m`, `10/h`: the same rule as a playbook's `rate:`.
pub(crate) fn parse_rate(input: &str) -> Result<Rate, String> {
    crate::playbook::units::parse_rate(input).map_err(|e| e.to_string())
}

/// `--rate`, checked.
pub(crate) fn rate(exec: &ExecArgs) -> Result<Option<Rate>, String> {
    exec.rate
        .as_deref()
        .map(parse_rate)
        .transpose()
        .map_err(|e| format!("--rate: {e}"))
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
/// `--break-lock` / `--break-live-lock` as what the lock may take over.
pub(crate) fn breaking(exec: &ExecArgs) -> crate::journal::lock::Break {
    crate::journal::lock::Break::from_flags(exec.break_lock, exec.break_live_lock)
}

pub(crate) fn ssh_options(ssh: &crate::cli::SshArgs, inventory: &Inventory) -> SshOptions {
    let mut identities: Vec<PathBuf> = ssh.identities.clone();
    identities.extend(inventory.identity_files.iter().map(|p| expand_tilde(p)));
    if let Some(home) = home() {
        identities.push(home.join(".ssh/id_ed25519"));
        identities.push(home.join(".ssh/id_rsa"));
    }
    let explicit = ssh
        .known_hosts
        .clone()
        .or_else(|| inventory.known_hosts.as_deref().map(expand_tilde));
    let known_hosts_explicit = explicit.is_some();
    let known_hosts = explicit.unwrap_or_else(|| expand_tilde("~/.ssh/known_hosts"));
    let ssh_config = ssh.ssh_config.clone().or_else(|| {
        let default = expand_tilde("~/.ssh/config");
        default.is_file().then_some(default)
    });
    SshOptions {
        identities,
        known_hosts,
        known_hosts_explicit,
        ssh_config,
        accept_new_host_keys: ssh.accept_new_host_keys,
        use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
    }
}

/// A run's settings from its flags (`rate` already parsed).
pub(crate) fn settings(exec: &ExecArgs, rate: Option<Rate>, inventory: &Inventory) -> Settings {
    Settings {
        parallel: exec.parallel,
        rate,
        ssh: ssh_options(&exec.ssh, inventory),
        bmc: BmcSettings {
            credentials: exec.bmc_credentials.clone(),
            allow_http: exec.bmc_allow_http,
            ..bmc_tls(&exec.bmc_tls)
        },
        become_password: exec.become_password_file.clone(),
    }
}

/// The BMC TLS flags as settings (credentials and plain http are the caller's).
pub(crate) fn bmc_tls(tls: &crate::cli::BmcTlsArgs) -> BmcSettings {
    BmcSettings {
        ca_bundle: tls.bmc_ca.clone(),
        insecure: tls.bmc_insecure,
        known_certs: tls.bmc_known_certs.clone(),
        accept_new_certs: tls.accept_new_bmc_certs,
        ..BmcSettings::default()
    }
}

pub(crate) fn drill_shape(
    sample: f64,
    speed: f64,
    fleet: &FleetArgs,
    exec: &ExecArgs,
) -> Result<session::drill::Shape, String> {
    if !(sample > 0.0 && sample <= 1.0) {
        return Err(format!(
            "--sample must be a fraction in (0, 1], got {sample}"
        ));
    }
    if !(1.0..=MAX_SPEED).contains(&speed) {
        return Err(format!(
            "--speed must be between 1 and {MAX_SPEED}, got {speed}"
        ));
    }
    let boot_time = BootTimeRange::parse(&fleet.boot_time).map_err(|e| e.to_string())?;
    let fail = match &fleet.fail {
        Some(f) => parse_fail(f).map_err(|e| e.to_string())?,
        None => FailSpec::default(),
    };
    let (faults, recover) = (fail.faults, fail.recover);
    Ok(session::drill::Shape {
        sample,
        speed,
        boot_time,
        faults,
        recover,
        seed: fleet.seed,
        rate: rate(exec)?,
    })
}

/// `--bmc-outage`, checked.
pub(crate) fn outage(input: &str) -> Result<Duration, String> {
    crate::time::parse_duration_as(input, crate::time::Fractions::Allowed)
        .map_err(|_| format!("bad --bmc-outage `{input}` (e.g. 30s)"))
}

/// `--etcd` and its companions, checked; `None` without `--etcd`. A TLS
/// flag without `--etcd` is an error: it would be silently ignored.
pub(crate) fn etcd(etcd: &crate::cli::EtcdArgs) -> Result<Option<crate::etcd::Settings>, String> {
    let Some(list) = etcd.etcd.as_deref() else {
        if let Some(flag) = [
            (etcd.etcd_ca.is_some(), "--etcd-ca"),
            (etcd.etcd_cert.is_some(), "--etcd-cert"),
            (etcd.etcd_key.is_some(), "--etcd-key"),
        ]
        .iter()
        .find_map(|(set, f)| set.then_some(*f))
        {
            return Err(format!("{flag} needs --etcd (or REKINDLE_ETCD)"));
        }
        return Ok(None);
    };
    let endpoints = crate::etcd::client::parse_endpoints(list).map_err(|e| e.to_string())?;
    let ttl = crate::playbook::units::parse_duration(&etcd.etcd_ttl)
        .map_err(|e| format!("--etcd-ttl: {e}"))?;
    if ttl < Duration::from_secs(2) {
        return Err(format!(
            "--etcd-ttl must be at least 2s, got {}",
            etcd.etcd_ttl
        ));
    }
    let mut prefix = etcd.etcd_prefix.clone();
    if prefix.is_empty() {
        return Err("--etcd-prefix must not be empty".into());
    }
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(Some(crate::etcd::Settings {
        client: crate::etcd::client::ClientOptions {
            endpoints,
            ca: etcd.etcd_ca.clone(),
            cert: etcd.etcd_cert.clone(),
            key: etcd.etcd_key.clone(),
            connect_timeout: crate::etcd::CONNECT_TIMEOUT,
            request_timeout: (ttl / 5).max(Duration::from_secs(1)),
        },
        prefix,
        ttl,
        bastion: etcd
            .bastion
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(crate::journal::bastion),
        become_password: false,
    }))
}

/// Connects to etcd, or says why not.
pub(crate) fn etcd_store(settings: crate::etcd::Settings) -> Result<crate::etcd::Store, String> {
    crate::etcd::Store::connect(settings).map_err(|e| format!("--etcd: {e}"))
}

/// Loads and plans, printing every diagnostic and warning to stderr. `None`
/// means errors were printed (exit 2).
pub(crate) fn load(
    inventories: &[String],
    playbook: &str,
    limit: Option<&str>,
    sources: &mut Sources,
) -> Option<Loaded> {
    match session::load(inventories, playbook, limit, sources) {
        Ok(mut loaded) => {
            if !loaded.warnings.is_empty() {
                diag::sort(&mut loaded.warnings);
                eprint!("{}", diag::render_text(sources, &loaded.warnings));
            }
            Some(loaded)
        }
        Err(LoadError::Diagnostics(mut d)) => {
            diag::sort(&mut d);
            eprint!("{}", diag::render_text(sources, &d));
            None
        }
        Err(LoadError::Limit(e)) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// Prints notes the library returned.
pub(crate) fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("{n}");
    }
}

/// `--listen` and `--notify`: starts serving the live status page (and says
/// where) and the notifications; the consumers to add to the execution.
/// `Err` is a usage error, found before anything ran.
pub(crate) fn live_views(
    exec: &ExecArgs,
    run_id: &str,
    plan: &Plan,
    collector: crate::report::summary::Collector,
    done_before: &[usize],
) -> Result<Vec<Box<dyn crate::session::consume::Consumer>>, String> {
    let mut consumers: Vec<Box<dyn crate::session::consume::Consumer>> = Vec::new();
    let targets = crate::live::notify::targets(&exec.notify)?;
    if !targets.is_empty() {
        let n = crate::live::notify::NotifyConsumer::start(run_id, &plan.name, targets)
            .map_err(|e| format!("--notify: cannot start: {e}"))?;
        consumers.push(Box::new(n));
    }
    let Some(addr) = exec.listen.as_deref() else {
        return Ok(consumers);
    };
    let l = crate::live::listen(addr, run_id, plan, collector, done_before)?;
    if let Some(w) = &l.warning {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "live: status page {} (also {}api/status and {}metrics)",
        l.url, l.url, l.url
    );
    consumers.push(Box::new(l.consumer));
    Ok(consumers)
}

/// Where the interrupt notices go.
pub(crate) fn notice(message: &str) {
    eprintln!("{message}");
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

/// Prints a finished execution's summary (after a blank line unless quiet),
/// its warnings and where its journal is.
pub(crate) fn print_finished(finished: &session::Finished, quiet: bool) {
    for w in &finished.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(lost) = &finished.lost {
        eprintln!("error: {}", lost.message());
    }
    println!(
        "{}{}",
        if quiet { "" } else { "\n" },
        crate::report::summary::render_text(&finished.summary).trim_end()
    );
    if let Some(path) = &finished.journal {
        println!("journal: {}", path.display());
    }
    let _ = std::io::stdout().flush();
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

    #[test]
    fn drill_fractions_and_speeds_are_range_checked() {
        let fleet = FleetArgs {
            boot_time: "0s".into(),
            fail: None,
            seed: 1,
            powered_off: false,
            bmcs: false,
        };
        let exec = ExecArgs::default();
        assert!(drill_shape(1.0, 1.0, &fleet, &exec).is_ok());
        for (sample, speed) in [
            (0.0, 1.0),
            (1.5, 1.0),
            (1.0, 0.5),
            (1.0, 2000.0),
            (f64::NAN, 1.0),
        ] {
            assert!(
                drill_shape(sample, speed, &fleet, &exec).is_err(),
                "{sample} {speed}"
            );
        }
        let bad_boot = FleetArgs {
            boot_time: "soon".into(),
            ..fleet.clone()
        };
        assert!(drill_shape(1.0, 1.0, &bad_boot, &exec).is_err());
        assert!(outage("30s").is_ok());
        // One duration rule for every flag: `--etcd-ttl 1m30s` was always taken.
        assert_eq!(outage("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(outage("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(outage("later").is_err());
    }
}
