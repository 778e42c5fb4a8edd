//! `rekindle sim`: start a simulated fleet, print one ready line, serve until
//! SIGINT/SIGTERM, then print the reboots each host received. Also the hidden
//! `sim-worker` entry point the fleet re-executes itself with.

use anyhow::{Context, bail};

use crate::cli::SimArgs;
use crate::exit::Exit;
use crate::sim::{BootTimeRange, Fleet, FleetConfig, SimHost, parse_fail};

pub fn execute(args: SimArgs) -> anyhow::Result<Exit> {
    let hosts = match args.hosts {
        Some(0) => bail!("--hosts must be at least 1"),
        Some(n) => SimHost::numbered(n),
        None => hosts_from_inventories(&args.inventories)?,
    };
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
    config.bmc_outage = super::args::outage(&args.bmc_outage).map_err(anyhow::Error::msg)?;
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

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(config))
}

async fn serve(config: FleetConfig) -> anyhow::Result<Exit> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed before the fleet starts, so an early Ctrl-C still gets the summary.
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let n = config.hosts.len();
    let bmc_port = config.bmc_port;
    let powered_off = config.powered_off;
    let fleet = Fleet::start(config).await?;
    let status = fleet.status();
    let first = status
        .hosts
        .first()
        .map(|h| h.address.to_string())
        .unwrap_or_default();
    let last = status
        .hosts
        .last()
        .map(|h| h.address.to_string())
        .unwrap_or_default();
    let faults = status.hosts.iter().filter(|h| h.fault.is_some()).count();
    let shards = match fleet.workers() {
        0 => "in one process".to_owned(),
        w => format!("in {w} worker processes"),
    };
    println!(
        "ready: {n} hosts on {first}..{last} port {} (http {}), {faults} with faults, {shards}; inventory {}",
        fleet.port(),
        fleet.http_port(),
        fleet.paths().inventory.display(),
    );
    if let Some(creds) = &fleet.paths().bmc_credentials {
        println!(
            "bmc: every host {}; Redfish on port {} of its address; credentials {}",
            if powered_off {
                "powered off"
            } else {
                "up, with a BMC"
            },
            bmc_port,
            creds.display()
        );
    }
    println!(
        "status: {}  (Ctrl-C to stop)",
        fleet.paths().status.display()
    );
    let mut check = tokio::time::interval(std::time::Duration::from_secs(1));
    let failure = loop {
        tokio::select! {
            _ = int.recv() => break None,
            _ = term.recv() => break None,
            _ = check.tick() => {
                if let Some(f) = fleet.failure() {
                    break Some(f);
                }
            }
        }
    };
    if let Some(f) = &failure {
        eprintln!("error: {f}; stopping the fleet");
    }
    // Kept in case a worker cannot report its final counts.
    let last_known = fleet.status();
    let (status, code) = match fleet.shutdown().await {
        Ok(s) if failure.is_none() => (s, Exit::Success),
        Ok(s) => (s, Exit::Failures),
        Err(e) => {
            eprintln!("error: {e}; counts below are the last reported");
            (last_known, Exit::Failures)
        }
    };
    let mut rebooted = 0usize;
    for h in status.hosts.iter().filter(|h| h.reboots > 0) {
        rebooted += 1;
        println!("{}  {}  reboots {}", h.name, h.address, h.reboots);
    }
    let twice = status.hosts.iter().filter(|h| h.reboots > 1).count();
    let powered: Vec<_> = status.hosts.iter().filter(|h| h.power_ons > 0).collect();
    if !powered.is_empty() {
        println!(
            "power-ons: {} on {} of {n} hosts",
            status.total_power_ons(),
            powered.len()
        );
    }
    println!(
        "total: {} reboots on {rebooted} of {n} hosts ({twice} rebooted more than once)",
        status.total_reboots()
    );
    Ok(code)
}

fn hosts_from_inventories(paths: &[String]) -> anyhow::Result<Vec<SimHost>> {
    let mut sources = crate::diag::Sources::new();
    let inventory = match crate::inventory::load(paths, &mut sources) {
        Ok((inv, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{}", crate::diag::render_text(&sources, &warnings));
            }
            inv
        }
        Err(diags) => {
            eprint!("{}", crate::diag::render_text(&sources, &diags));
            bail!("cannot read the inventory");
        }
    };
    if inventory.hosts.is_empty() {
        bail!("the inventory has no hosts");
    }
    Ok(inventory
        .hosts
        .into_iter()
        .map(|h| SimHost {
            name: h.name,
            labels: h.labels,
        })
        .collect())
}

/// The hidden `sim-worker` subcommand: one shard of a fleet, driven over stdin/stdout.
pub fn worker() -> anyhow::Result<Exit> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        // The parent delivers Ctrl-C by closing stdin; ignore the terminal's SIGINT.
        let _ignore = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        crate::sim::run_worker().await
    })?;
    Ok(Exit::Success)
}
