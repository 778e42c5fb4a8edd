//! `rekindle drill`: a fire drill. Loads and plans like `run`, simulates the
//! hosts the plan touches (or a stratified sample of them) as a fleet of real
//! SSH servers on loopback, runs the real engine with the rehearsal of the
//! plan (`sim::drill` says what a rehearsal changes) through the session's
//! pipeline like any run (a journal `report` reads, marked as a drill so it
//! is never resumed against real hosts; no plan lock, no real host touched),
//! prints progress with the plain printer, and ends with a rendering of the
//! run's summary in real time: the predicted recovery time, each stage's
//! duration, the slowest stage, failures by kind.
//!
//! Owns the drill's terminal output and the fleet's lifetime (stopped on every
//! path: success, errors, Ctrl-C). Scheduling is the engine's; what a
//! simulated host does is the simulator's.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio::sync::watch;

use super::args::{self, DrillShape};
use crate::cli::DrillArgs;
use crate::diag::Sources;
use crate::engine::{self, CancelLevel, EngineOptions};
use crate::exit::Exit;
use crate::inventory::Inventory;
use crate::journal;
use crate::plan::Plan;
use crate::report::summary::Collector;
use crate::session::{self, Display, Execution, Finished, Loaded, Locking, Prepared};
use crate::sim::drill::{Rehearsal, rehearse, sample_hosts, scale_rate, sim_hosts};
use crate::sim::{BootTime, FaultKind, Fleet, FleetConfig, FleetHandle};
use crate::transport::redfish::{CredentialStore, Redfish, RedfishOptions};
use crate::transport::ssh::{SshConnector, SshOptions};

/// Fleets bigger than this run in worker processes, so the engine's own
/// sockets and the simulated hosts' never share one descriptor table.
const DRILL_SHARD_SIZE: usize = 2000;
/// Port pairs tried before giving up when another fleet holds the ports.
const PORT_ATTEMPTS: u32 = 8;

pub fn execute(args: DrillArgs, verbose: u8) -> anyhow::Result<Exit> {
    if let Some(file) = &args.exec.become_password_file {
        eprintln!(
            "warning: --become-password-file {} is not used by a drill: the simulated hosts' sudo asks for no password",
            file.display()
        );
    }
    let shape = match args::drill_shape(args.sample, args.speed, &args.fleet, &args.exec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let mut sources = Sources::new();
    let Some(Loaded {
        inventory, plan, ..
    }) = args::load(
        &args.inventories,
        &args.playbook,
        args.limit.as_deref(),
        &mut sources,
    )
    else {
        return Ok(Exit::Usage);
    };
    // A playbook that powers hosts on is rehearsed on a powered-off fleet
    // with a Redfish BMC per simulated host.
    let powered_off = args.fleet.powered_off || session::powers_on(&plan);
    // Parsed again without host checks: the rehearsal is built from the model,
    // and `load` above already reported every problem (and succeeded).
    let book = match crate::playbook::load(&args.playbook, None, &mut sources) {
        Ok((book, _)) => book,
        Err(diags) => {
            eprint!("{}", crate::diag::render_text(&sources, &diags));
            return Ok(Exit::Usage);
        }
    };
    let chosen = sample_hosts(&plan, &inventory, shape.sample, shape.seed);
    let selected = plan.distinct_hosts();
    let fraction = chosen.len() as f64 / selected.max(1) as f64;
    let stage_sample: BTreeMap<String, f64> = {
        let simulated: std::collections::HashSet<usize> = chosen.iter().copied().collect();
        plan.stages
            .iter()
            .map(|st| {
                let kept = st.hosts.iter().filter(|h| simulated.contains(h)).count();
                (st.name.clone(), kept as f64 / st.hosts.len().max(1) as f64)
            })
            .collect()
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let dir = drill_dir()?;
    let setup = Setup {
        inventory,
        book,
        chosen,
        selected,
        fraction,
        stage_sample,
        shape,
        powered_off,
        parallel: args.exec.parallel,
        quiet: args.exec.quiet,
        verbose: verbose > 0,
        dir: dir.clone(),
        journal_dir: args.exec.journal.clone(),
        playbook: args.playbook.clone(),
        inventories: args.inventories.clone(),
        limit: args.limit.clone(),
        rate: args.exec.rate.clone(),
        exec: args.exec.clone(),
    };
    let result = runtime.block_on(drill(setup));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // The keys and status of a finished drill are of no further use.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

struct Setup {
    inventory: Inventory,
    book: crate::playbook::Playbook,
    chosen: Vec<usize>,
    selected: usize,
    fraction: f64,
    stage_sample: BTreeMap<String, f64>,
    shape: DrillShape,
    /// Hosts start off and are powered on through their simulated BMCs.
    powered_off: bool,
    parallel: Option<usize>,
    quiet: bool,
    verbose: bool,
    /// The fleet's keys and files.
    dir: PathBuf,
    /// Where the drill's journal goes (`--journal`), and what its header names.
    journal_dir: PathBuf,
    playbook: String,
    inventories: Vec<String>,
    limit: Option<String>,
    rate: Option<String>,
    /// The live views' flags (`--listen`).
    exec: crate::cli::ExecArgs,
}

/// A fresh private directory for the fleet's keys and files.
fn drill_dir() -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("rekindle-drill-{}-{nanos:x}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(dir)
}

async fn drill(s: Setup) -> anyhow::Result<Exit> {
    // Watched before the fleet starts, so an early Ctrl-C still stops it cleanly.
    let (cancel_rx, ctrl_c) = session::ctrl_c(args::notice);
    let started = tokio::select! {
        r = start_fleet(&s) => r,
        _ = wait_cancel(cancel_rx.clone()) => {
            eprintln!("interrupted before the fleet was ready");
            return Ok(Exit::Interrupted);
        }
    };
    let fleet = match started {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot start the simulated fleet: {e:#}");
            ctrl_c.abort();
            return Ok(Exit::Usage);
        }
    };
    let result = rehearse_on(&s, &fleet, cancel_rx).await;
    ctrl_c.abort();
    let faults: HashMap<String, FaultKind> = fleet
        .status()
        .hosts
        .into_iter()
        .filter_map(|h| h.fault.map(|f| (h.name, f)))
        .collect();
    if let Err(e) = fleet.shutdown().await {
        eprintln!("warning: stopping the simulated fleet: {e}");
    }
    let finished = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Exit::Usage);
        }
    };
    for w in &finished.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(lost) = &finished.lost {
        eprintln!("error: {}", lost.message());
    }
    let injected: HashMap<String, String> = faults
        .into_iter()
        .map(|(h, f)| (h, f.to_string()))
        .collect();
    print!(
        "{}",
        crate::report::drill::render(
            &finished.summary,
            s.shape.speed,
            s.fraction,
            finished.elapsed,
            &injected
        )
    );
    if let Some(path) = &finished.journal {
        println!("journal: {}", path.display());
    }
    Ok(finished.exit)
}

async fn wait_cancel(mut rx: watch::Receiver<CancelLevel>) {
    let _ = rx.wait_for(|c| *c != CancelLevel::None).await;
}

/// Starts the fleet on a free pair of ports (another drill or a test may
/// hold the first ones tried).
async fn start_fleet(s: &Setup) -> anyhow::Result<FleetHandle> {
    let hosts = sim_hosts(&s.inventory, &s.chosen);
    let mut last = None;
    for attempt in 0..PORT_ATTEMPTS {
        // Three ports (SSH, HTTP, BMC) in 20000..32000: below the ephemeral
        // range, spread by pid.
        let spread = (std::process::id() + attempt * 7919) % 4000;
        let port = 20000 + 3 * spread as u16;
        let mut config = FleetConfig::new(hosts.clone(), s.dir.clone());
        config.port = port;
        config.http_port = port + 1;
        config.bmc_port = port + 2;
        config.powered_off = s.powered_off;
        config.power_on_delay = config.power_on_delay.div_f64(s.shape.speed);
        config.boot_time = BootTime {
            min: s.shape.boot_time.min.div_f64(s.shape.speed),
            max: s.shape.boot_time.max.div_f64(s.shape.speed),
        };
        config.faults = s.shape.faults.clone();
        config.recover = s.shape.recover.clone();
        config.seed = s.shape.seed;
        config.shard_size = DRILL_SHARD_SIZE;
        match Fleet::start(config).await {
            Ok(f) => return Ok(f),
            Err(e) if e.kind == crate::sim::SimErrorKind::Bind => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no free ports"), Into::into))
}

async fn rehearse_on(
    s: &Setup,
    fleet: &FleetHandle,
    cancel: watch::Receiver<CancelLevel>,
) -> anyhow::Result<Finished> {
    let paths = fleet.paths();
    let mut sources = Sources::new();
    let mut sim_inventory = match crate::inventory::load(
        &[paths.inventory.to_string_lossy().into_owned()],
        &mut sources,
    ) {
        Ok((inv, _)) => inv,
        Err(diags) => {
            bail!(
                "cannot read the simulated fleet's inventory:\n{}",
                crate::diag::render_text(&sources, &diags)
            )
        }
    };
    // Ansible group membership is not a label; carry it over so `group=`
    // selectors pick the same hosts.
    let groups: HashMap<&str, &Vec<String>> = s
        .inventory
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), &h.groups))
        .collect();
    for h in &mut sim_inventory.hosts {
        if let Some(g) = groups.get(h.name.as_str()) {
            h.groups = (*g).clone();
        }
    }
    let rehearsal = Rehearsal {
        speed: s.shape.speed,
        sample: s.fraction,
        stage_sample: s.stage_sample.clone(),
        http_port: fleet.http_port(),
    };
    let book = rehearse(&s.book, &rehearsal);
    let plan = match crate::plan::build(&book, &sim_inventory, None) {
        Ok(p) => p,
        Err(diags) => bail!(
            "cannot plan the rehearsal:\n{}",
            crate::diag::render_text(&sources, &diags)
        ),
    };
    let connector = SshConnector::new(SshOptions {
        identities: vec![paths.identity.clone()],
        known_hosts: paths.known_hosts.clone(),
        // The operator's ~/.ssh/config (ProxyJump for `*`, say) must not
        // apply to loopback hosts.
        ssh_config: None,
        accept_new_host_keys: false,
        use_agent: false,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    // An in-process fleet holds the server's end of every connection and
    // two listeners per host in this process's descriptor table.
    let in_process = fleet.workers() == 0;
    let fit = session::descriptors::for_plan(
        &plan,
        s.parallel
            .map(|p| ((p as f64 * s.fraction).ceil() as usize).max(1)),
        u64::from(in_process),
        if in_process {
            2 * sim_inventory.hosts.len() as u64
        } else {
            0
        },
    );
    args::print_notes(&fit.notes);
    let bmc = match &paths.bmc_credentials {
        Some(file) if s.powered_off => {
            let credentials = CredentialStore::from_file(file)?;
            let client = Redfish::new(Arc::new(credentials), &RedfishOptions::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Some(Arc::new(client) as Arc<dyn crate::transport::redfish::Bmc>)
        }
        _ => None,
    };
    let opts = EngineOptions {
        parallel: fit.parallel,
        rate: s
            .shape
            .rate
            .map(|r| scale_rate(r, s.shape.speed * s.fraction)),
        starts: HashMap::new(),
        bmc,
        bmc_time_scale: s.shape.speed,
        // The simulated hosts' sudo asks for no password.
        become_password: None,
        pause: None,
    };
    // A journal like any run's, marked as a drill.
    let header = session::header(
        &plan,
        &s.playbook,
        &s.inventories,
        s.limit.as_deref(),
        s.parallel,
        s.rate.as_deref(),
        SystemTime::now(),
    )?;
    let marker = journal::Record::Drill {
        speed: s.shape.speed,
        sample: s.fraction,
    };
    let opened = session::open_new(
        &s.journal_dir,
        &header,
        Locking::None,
        std::slice::from_ref(&marker),
    )?;
    let mut collector = Collector::new();
    collector.record(&journal::Record::Header(header.clone()));
    collector.record(&marker);
    let mut earlier = Collector::new();
    earlier.record(&journal::Record::Header(header.clone()));
    earlier.record(&marker);
    let consumers = args::live_views(&s.exec, &header.run_id, &plan, earlier, &[])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    print_preamble(s, &plan, fleet);
    let execution = Execution {
        prepared: Prepared {
            plan,
            inventory: sim_inventory,
            connector,
            opts,
            notes: Vec::new(),
        },
        journal: Some(opened),
        collector,
        already_done: 0,
        starts: HashMap::new(),
        display: Display::Plain {
            quiet: s.quiet,
            verbose: s.verbose,
            scale: s.shape.speed,
        },
        consumers,
        mirror: None,
    };
    Ok(session::execute_in(execution, cancel).await)
}

fn print_preamble(s: &Setup, plan: &Plan, fleet: &FleetHandle) {
    let n = s.chosen.len();
    let shards = match fleet.workers() {
        0 => "in this process".to_owned(),
        w => format!("in {w} worker processes"),
    };
    let boot = &s.shape.boot_time;
    let boot = if boot.min == boot.max {
        engine::steps::humane(boot.min)
    } else {
        format!(
            "{}..{}",
            engine::steps::humane(boot.min),
            engine::steps::humane(boot.max)
        )
    };
    println!(
        "drill: `{}` on {n} simulated hosts ({} of the {} the plan selects), {shards}",
        plan.name,
        crate::report::drill::percent(s.fraction),
        s.selected,
    );
    println!(
        "drill: boot time {boot}, speed {}x: timeouts, intervals and rates are compressed \
         {}x; times below are real time",
        s.shape.speed, s.shape.speed
    );
    if s.fraction < 1.0 {
        println!(
            "drill: counts in the plan (parallel, max_failures, rates) shrink with each stage's sample; \
             max_unavailable and canaries do not, so a stage bound by them runs faster than it would"
        );
    }
    println!(
        "drill: tcp/http checks go to the simulator's HTTP port {}; commands it cannot run \
         and every `local:` step are replaced by harmless stand-ins",
        fleet.http_port()
    );
}
