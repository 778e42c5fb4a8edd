//! High-level arguments: every command-line string that carries a value
//! (rates, boot times, faults, outages, fractions, speeds) parsed and
//! range-checked once, here, into typed settings the library takes. Also
//! the terminal interaction the running commands share (printing load
//! errors and warnings, confirmation).
//!
//! Owns the wording of bad-argument errors. It must not run anything.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::cli::{ExecArgs, FleetArgs};
use anyhow::Context as _;

use crate::diag::{self, Sources};
use crate::exit::{reported, usage};
use crate::inventory::Inventory;
use crate::journal::Header;
use crate::plan::Plan;
use crate::playbook::Rate;
use crate::session::front::Front;
use crate::session::{self, BmcSettings, LoadError, Loaded, Settings};
use crate::sim::{BootTimeRange, FailSpec, FleetConfig, SimHost, parse_fail};
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

/// `--break-lock` / `--break-live-lock` as what the lock may take over.
pub(crate) fn breaking(exec: &ExecArgs) -> crate::journal::lock::Break {
    crate::journal::lock::Break::from_flags(exec.break_lock, exec.break_live_lock)
}

/// The SSH flags as settings; the rule that merges them with the
/// inventory's defaults is [`session::ssh_options`]'s.
pub(crate) fn ssh_options(ssh: &crate::cli::SshArgs, inventory: &Inventory) -> SshOptions {
    let flags = session::SshFlags {
        identities: ssh.identities.clone(),
        known_hosts: ssh.known_hosts.clone(),
        ssh_config: ssh.ssh_config.clone(),
        accept_new_host_keys: ssh.accept_new_host_keys,
    };
    session::ssh_options(flags, inventory)
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

/// `rekindle sim`'s flags as the fleet's configuration, for `hosts`.
pub(crate) fn fleet(
    args: &crate::cli::SimArgs,
    hosts: Vec<SimHost>,
) -> anyhow::Result<FleetConfig> {
    let mut config = FleetConfig::new(hosts, args.out.clone());
    if let Some(p) = args.port {
        config.port = p;
    }
    if let Some(p) = args.http_port {
        config.http_port = p;
    }
    config.boot_time = BootTimeRange::parse(&args.fleet.boot_time)?;
    if let Some(p) = args.bmc_port {
        config.bmc_port = p;
    }
    config.powered_off = args.fleet.powered_off;
    config.bmcs = args.fleet.bmcs;
    config.bmc_outage = outage(&args.bmc_outage).map_err(anyhow::Error::msg)?;
    config.bmc_profile = crate::sim::BmcProfile::parse(&args.bmc_profile)
        .map_err(|e| anyhow::anyhow!("--bmc-profile: {e}"))?;
    if let Some(fail) = &args.fleet.fail {
        let spec = parse_fail(fail)?;
        config.faults = spec.faults;
        config.recover = spec.recover;
    }
    config.seed = args.fleet.seed;
    config.shard_size = args.shard_size.max(1);
    if let Some(file) = &args.deps {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--deps {}: cannot read", file.display()))?;
        let names: std::collections::HashMap<String, usize> = config
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        config.deps = crate::sim::deps::parse(&file.display().to_string(), &text, &names)?;
    }
    Ok(config)
}

/// `rekindle audit`'s flags as the audit's settings.
pub(crate) fn audit(args: &crate::cli::AuditArgs) -> anyhow::Result<crate::audit::Settings> {
    use crate::audit::own;
    let interval = crate::playbook::units::parse_duration(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval {}: {e}", args.interval))?;
    if args.samples == 0 {
        anyhow::bail!("--samples: at least one read of each host is needed");
    }
    let assume_lost = args
        .assume_lost
        .as_deref()
        .map(crate::select::Selector::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--assume-lost: {e}"))?;
    let etcd = args
        .etcd
        .as_deref()
        .map(etcd_endpoints)
        .transpose()?
        .unwrap_or_default();
    let notify = crate::live::notify::targets(&args.notify)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .iter()
        .map(|t| t.shown())
        .collect();
    Ok(crate::audit::Settings {
        samples: args.samples,
        interval,
        parallel: args.parallel.max(1),
        assume_lost,
        own: own::Sources {
            etcd,
            notify,
            resolv_conf: Some(crate::audit::default_resolv_conf()),
            bastion: Some(own::bastion()),
            jumps: None,
        },
        bmc: crate::session::BmcSettings {
            credentials: args.bmc_credentials.clone(),
            ..bmc_tls(&args.bmc_tls)
        },
    })
}

/// `--etcd` endpoints as the report may print them: credentials in a URL
/// are refused (without repeating them), as `run --etcd` refuses them.
fn etcd_endpoints(list: &str) -> anyhow::Result<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let with_scheme = if e.contains("://") {
                e.to_owned()
            } else {
                format!("http://{e}")
            };
            let url = reqwest::Url::parse(&with_scheme)
                .map_err(|err| anyhow::anyhow!("--etcd: not an endpoint URL ({err})"))?;
            if !url.username().is_empty() || url.password().is_some() {
                anyhow::bail!("--etcd: credentials in an endpoint URL are refused; use --etcd-cert/--etcd-key or a file");
            }
            let host = url
                .host_str()
                .ok_or_else(|| anyhow::anyhow!("--etcd: an endpoint without a host"))?;
            Ok(match url.port() {
                Some(p) => format!("{}://{host}:{p}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            })
        })
        .collect()
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

/// Loads inventories, printing their diagnostics and warnings to stderr.
pub(crate) fn inventory(paths: &[String], sources: &mut Sources) -> anyhow::Result<Inventory> {
    match crate::inventory::load(paths, sources) {
        Ok((inventory, warnings)) => {
            eprint!("{}", diag::render_text(sources, &warnings));
            Ok(inventory)
        }
        Err(diags) => {
            eprint!("{}", diag::render_text(sources, &diags));
            Err(reported())
        }
    }
}

/// Loads and plans, printing every diagnostic and warning to stderr.
pub(crate) fn load(
    inventories: &[String],
    playbook: &str,
    limit: Option<&str>,
    sources: &mut Sources,
) -> anyhow::Result<Loaded> {
    match session::load(inventories, playbook, limit, sources) {
        Ok(mut loaded) => {
            if !loaded.warnings.is_empty() {
                diag::sort(&mut loaded.warnings);
                eprint!("{}", diag::render_text(sources, &loaded.warnings));
            }
            Ok(loaded)
        }
        Err(LoadError::Diagnostics(mut d)) => {
            diag::sort(&mut d);
            eprint!("{}", diag::render_text(sources, &d));
            Err(reported())
        }
        Err(LoadError::Limit(e)) => Err(usage(e)),
    }
}

/// Prints notes the library returned.
pub(crate) fn print_notes(notes: &[String]) {
    for n in notes {
        eprintln!("{n}");
    }
}

/// `--listen` and `--notify` started ([`crate::live::start`]); `Err` is a
/// usage error, found before anything ran.
pub(crate) fn live_views(
    exec: &ExecArgs,
    run_id: &str,
    plan: &Plan,
    state: &crate::report::state::Shared,
) -> Result<Vec<Box<dyn crate::session::consume::Consumer>>, String> {
    let views = crate::live::Views {
        listen: exec.listen.as_deref(),
        notify: &exec.notify,
    };
    crate::live::start(&views, run_id, plan, state, notice)
}

/// Where the interrupt notices go.
pub(crate) fn notice(message: &str) {
    eprintln!("{message}");
}

/// Asks on a terminal; off a terminal only `--yes` proceeds. `Err` when
/// nobody confirmed.
pub(crate) fn confirm(plan: &Plan, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() || !std::io::stderr().is_terminal() {
        return Err(usage(format!(
            "not on a terminal, so nobody can confirm; pass --yes to run `{}` unattended",
            plan.name
        )));
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{}Proceed? [y/N] ", crate::report::plan::outline(plan))?;
    err.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    let go = matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes");
    if !go {
        eprintln!("not confirmed; nothing was done");
        return Err(reported());
    }
    Ok(())
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
        crate::report::text::render_text(&finished.summary).trim_end()
    );
    if let Some(path) = &finished.journal {
        println!("journal: {}", path.display());
    }
    let _ = std::io::stdout().flush();
}

/// The terminal a resume, takeover or standby talks through, with the
/// flags it was given.
pub(crate) struct Terminal {
    exec: ExecArgs,
}

impl Terminal {
    pub(crate) fn new(exec: ExecArgs) -> Terminal {
        Terminal { exec }
    }
}

impl Front for Terminal {
    fn say(&self) -> fn(&str) {
        notice
    }

    fn load(
        &self,
        inventories: &[String],
        playbook: &str,
        limit: Option<&str>,
    ) -> anyhow::Result<Loaded> {
        load(inventories, playbook, limit, &mut Sources::new())
    }

    fn settings(&self, header: &Header, inventory: &Inventory) -> anyhow::Result<Settings> {
        // `--parallel`/`--rate` of the original run unless given again.
        let mut exec = self.exec.clone();
        exec.parallel = exec.parallel.or(header.parallel);
        exec.rate = exec.rate.clone().or_else(|| header.rate.clone());
        let rate = rate(&exec).map_err(usage)?;
        Ok(settings(&exec, rate, inventory))
    }

    fn confirm(&self, plan: &Plan) -> anyhow::Result<()> {
        confirm(plan, self.exec.yes)
    }

    fn live_views(
        &self,
        run_id: &str,
        plan: &Plan,
        state: &crate::report::state::Shared,
    ) -> anyhow::Result<Vec<Box<dyn crate::session::consume::Consumer>>> {
        live_views(&self.exec, run_id, plan, state).map_err(usage)
    }

    fn finished(&self, finished: &session::Finished) {
        print_finished(finished, self.exec.quiet);
    }
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
