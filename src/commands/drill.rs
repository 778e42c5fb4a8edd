//! `rekindle drill`: a fire drill. Loads and plans like `run`, simulates the
//! hosts the plan touches (or a stratified sample of them) as a fleet of real
//! SSH servers on loopback, runs the real engine with the rehearsal of the
//! plan (`sim::drill` says what a rehearsal changes), prints progress with the
//! run's plain printer, and ends with a report in real time: the predicted
//! recovery time, each stage's duration, the slowest stage, failures by kind.
//!
//! Owns the drill's terminal output and the fleet's lifetime (stopped on every
//! path: success, errors, Ctrl-C). Scheduling is the engine's; what a
//! simulated host does is the simulator's.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::{mpsc, watch};

use super::run::{ctrl_c, load, parse_rate};
use crate::cli::DrillArgs;
use crate::diag::Sources;
use crate::engine::{self, CancelLevel, EngineOptions, EventKind, HostOutcome, RunOutcome};
use crate::engine::{StageOutcome, StepKind};
use crate::exit::Exit;
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::playbook::Step;
use crate::report::plain::Plain;
use crate::sim::drill::{Rehearsal, rehearse, sample_hosts, scale_rate, sim_hosts};
use crate::sim::{BootTime, FaultKind, Fleet, FleetConfig, FleetHandle, parse_faults};
use crate::transport::redfish::{CredentialStore, Redfish, RedfishOptions};
use crate::transport::ssh::{SshConnector, SshOptions};

/// Fleets bigger than this run in worker processes, so the engine's own
/// sockets and the simulated hosts' never share one descriptor table.
const DRILL_SHARD_SIZE: usize = 2000;
/// Descriptors kept free for everything that is not a host socket.
const FD_HEADROOM: u64 = 256;
/// Port pairs tried before giving up when another fleet holds the ports.
const PORT_ATTEMPTS: u32 = 8;
/// The fastest a drill may compress time: beyond it, simulated commands and
/// handshakes (which are not compressed) dominate and the prediction is noise.
const MAX_SPEED: f64 = 1000.0;

pub fn execute(args: DrillArgs, verbose: u8) -> anyhow::Result<Exit> {
    if !(args.sample > 0.0 && args.sample <= 1.0) {
        eprintln!(
            "error: --sample must be a fraction in (0, 1], got {}",
            args.sample
        );
        return Ok(Exit::Usage);
    }
    if !(args.speed >= 1.0 && args.speed <= MAX_SPEED) {
        eprintln!(
            "error: --speed must be between 1 and {MAX_SPEED}, got {}",
            args.speed
        );
        return Ok(Exit::Usage);
    }
    let fleet_shape = match fleet_shape(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Exit::Usage);
        }
    };
    let global_rate = match args.exec.rate.as_deref().map(parse_rate).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --rate: {e}");
            return Ok(Exit::Usage);
        }
    };
    let mut sources = Sources::new();
    let Some((inventory, plan)) = load(
        &args.inventories,
        &args.playbook,
        args.limit.as_deref(),
        &mut sources,
    ) else {
        return Ok(Exit::Usage);
    };
    // A playbook that powers hosts on is rehearsed on a powered-off fleet
    // with a Redfish BMC per simulated host.
    let powered_off = args.fleet.powered_off
        || plan
            .stages
            .iter()
            .any(|s| s.steps.iter().any(|st| matches!(st, Step::PowerOn(_))));
    // Parsed again without host checks: the rehearsal is built from the model,
    // and `load` above already reported every problem (and succeeded).
    let book = match crate::playbook::load(&args.playbook, None, &mut sources) {
        Ok((book, _)) => book,
        Err(diags) => {
            eprint!("{}", crate::diag::render_text(&sources, &diags));
            return Ok(Exit::Usage);
        }
    };
    let chosen = sample_hosts(&plan, &inventory, args.sample, args.fleet.seed);
    let selected: usize = {
        let mut all: Vec<usize> = plan
            .stages
            .iter()
            .flat_map(|s| s.hosts.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    };
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
        shape: fleet_shape,
        powered_off,
        speed: args.speed,
        global_rate,
        parallel: args.exec.parallel,
        quiet: args.exec.quiet,
        verbose: verbose > 0,
        dir: dir.clone(),
    };
    let result = runtime.block_on(drill(setup));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // The keys and status of a finished drill are of no further use.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Boot times and faults, as the operator gave them (in real time).
struct FleetShape {
    boot_time: BootTime,
    faults: Vec<(FaultKind, f64)>,
    seed: u64,
}

fn fleet_shape(args: &DrillArgs) -> anyhow::Result<FleetShape> {
    let boot_time = BootTime::parse(&args.fleet.boot_time)?;
    let faults = match &args.fleet.fail {
        Some(f) => parse_faults(f)?,
        None => Vec::new(),
    };
    Ok(FleetShape {
        boot_time,
        faults,
        seed: args.fleet.seed,
    })
}

struct Setup {
    inventory: Inventory,
    book: crate::playbook::Playbook,
    chosen: Vec<usize>,
    selected: usize,
    fraction: f64,
    stage_sample: BTreeMap<String, f64>,
    shape: FleetShape,
    /// Hosts start off and are powered on through their simulated BMCs.
    powered_off: bool,
    speed: f64,
    global_rate: Option<crate::playbook::Rate>,
    parallel: Option<usize>,
    quiet: bool,
    verbose: bool,
    dir: PathBuf,
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
    let (cancel_tx, cancel_rx) = watch::channel(CancelLevel::None);
    let ctrl_c = tokio::spawn(ctrl_c(cancel_tx));
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
    let (outcome, record, elapsed) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Exit::Usage);
        }
    };
    print!("{}", report(&s, &record, elapsed, &faults));
    Ok(match outcome {
        RunOutcome::Success => Exit::Success,
        RunOutcome::Failures => Exit::Failures,
        RunOutcome::Aborted => Exit::Aborted,
        RunOutcome::Interrupted => Exit::Interrupted,
    })
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
        config.power_on_delay = config.power_on_delay.div_f64(s.speed);
        config.boot_time = BootTime {
            min: s.shape.boot_time.min.div_f64(s.speed),
            max: s.shape.boot_time.max.div_f64(s.speed),
        };
        config.faults = s.shape.faults.clone();
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

/// What the drill saw, in drill time (scaled back when reported).
#[derive(Default)]
struct Record {
    /// Per stage index: (name, hosts, start, end, outcome, done, failed, skipped).
    stages: BTreeMap<usize, StageRecord>,
    failures: Vec<Failure>,
    host_durations: Vec<Duration>,
}

/// A failed or unreachable host.
struct Failure {
    stage: String,
    host: String,
    /// The failed step's kind; `None` for an unreachable host set aside.
    step: Option<StepKind>,
    reason: String,
}

#[derive(Default)]
struct StageRecord {
    name: String,
    hosts: usize,
    start: Option<Duration>,
    end: Option<Duration>,
    outcome: Option<StageOutcome>,
    done: usize,
    failed: usize,
    skipped: usize,
}

async fn rehearse_on(
    s: &Setup,
    fleet: &FleetHandle,
    cancel: watch::Receiver<CancelLevel>,
) -> anyhow::Result<(RunOutcome, Record, Duration)> {
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
        speed: s.speed,
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
    let parallel = parallelism(
        s.parallel
            .map(|p| ((p as f64 * s.fraction).ceil() as usize).max(1)),
        if fleet.workers() == 0 {
            sim_inventory.hosts.len()
        } else {
            0
        },
    );
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
        parallel,
        rate: s.global_rate.map(|r| scale_rate(r, s.speed * s.fraction)),
        starts: HashMap::new(),
        bmc,
        bmc_time_scale: s.speed,
    };
    print_preamble(s, &plan, fleet);
    let (tx, rx) = mpsc::channel(4096);
    let consumer = tokio::spawn(consume(rx, s.speed, s.quiet, s.verbose));
    let clock = Instant::now();
    let outcome = engine::run(
        Arc::new(plan),
        Arc::new(sim_inventory),
        Arc::new(connector),
        opts,
        tx,
        cancel,
    )
    .await;
    let elapsed = clock.elapsed();
    let record = consumer.await.context("the progress printer failed")?;
    Ok((outcome, record, elapsed))
}

/// Hosts in flight that fit the descriptor limit: each holds a client socket,
/// a probe or pipes, and (for an in-process fleet) the server's socket;
/// in-process hosts also hold two listeners each.
fn parallelism(requested: Option<usize>, local_hosts: usize) -> usize {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let per_host: u64 = if local_hosts > 0 { 5 } else { 4 };
    let free = limit
        .saturating_sub(FD_HEADROOM)
        .saturating_sub(2 * local_hosts as u64)
        .max(per_host);
    let fit = usize::try_from(free / per_host)
        .unwrap_or(usize::MAX)
        .max(1);
    match requested {
        Some(n) if n > fit => {
            eprintln!(
                "note: --parallel clamped to {fit} hosts in flight (file descriptor limit {limit})"
            );
            fit
        }
        Some(n) => n,
        None => fit,
    }
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
        percent(s.fraction),
        s.selected,
    );
    println!(
        "drill: boot time {boot}, speed {}x: timeouts, intervals and rates are compressed \
         {}x; times below are real time",
        s.speed, s.speed
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

fn percent(f: f64) -> String {
    let p = f * 100.0;
    if p >= 10.0 || p == p.round() {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Prints progress with the run's plain printer (durations scaled back to
/// real time), acknowledges intents, and records what the report needs.
async fn consume(
    mut rx: mpsc::Receiver<engine::Event>,
    speed: f64,
    quiet: bool,
    verbose: bool,
) -> Record {
    let mut plain = Plain::new(std::io::stdout(), quiet, verbose);
    let mut record = Record::default();
    let mut printing = true;
    while let Some(event) = rx.recv().await {
        if let Some(ack) = event.ack {
            ack.done();
        }
        let real = event.elapsed.mul_f64(speed);
        let mut kind = event.kind;
        match &mut kind {
            EventKind::StageStarted { stage, hosts } => {
                let r = record.stages.entry(stage.index).or_default();
                r.name = stage.name.clone();
                r.hosts = *hosts;
                r.start = Some(event.elapsed);
            }
            EventKind::StageFinished {
                stage,
                outcome,
                done,
                failed,
                skipped,
            } => {
                let r = record.stages.entry(stage.index).or_default();
                r.name = stage.name.clone();
                r.end = Some(event.elapsed);
                r.outcome = Some(outcome.clone());
                (r.done, r.failed, r.skipped) = (*done, *failed, *skipped);
            }
            EventKind::HostFinished {
                stage,
                host,
                outcome,
                duration,
            } => {
                record.host_durations.push(*duration);
                *duration = duration.mul_f64(speed);
                match outcome {
                    HostOutcome::Failed { kind, reason, .. } => record.failures.push(Failure {
                        stage: stage.name.clone(),
                        host: host.name.clone(),
                        step: Some(*kind),
                        reason: reason.clone(),
                    }),
                    HostOutcome::Unreachable { step: _, reason } => record.failures.push(Failure {
                        stage: stage.name.clone(),
                        host: host.name.clone(),
                        step: None,
                        reason: format!("unreachable: {reason}"),
                    }),
                    _ => {}
                }
            }
            _ => {}
        }
        if printing && plain.event(&kind, real).is_err() {
            // stdout closed (a pipe into `head`): keep draining so the engine never blocks.
            printing = false;
        }
    }
    record
}

/// The kind of a failure, from its reason: what an SRE would group by.
fn failure_kind(step: Option<StepKind>, reason: &str) -> String {
    let class = if reason.contains("did not reboot") {
        "did not reboot (boot id unchanged)"
    } else if reason.contains("did not come back") {
        "did not come back"
    } else if reason.starts_with("unreachable") || reason.starts_with("cannot connect") {
        "unreachable"
    } else if reason.contains("did not answer SSH") {
        "no SSH"
    } else if reason.starts_with("health checks") {
        "unhealthy"
    } else if reason.contains("exited with") {
        "command failed"
    } else {
        "other"
    };
    match step {
        Some(step) => format!("{}: {class}", step.as_str()),
        None => class.to_owned(),
    }
}

fn report(
    s: &Setup,
    record: &Record,
    elapsed: Duration,
    faults: &HashMap<String, FaultKind>,
) -> String {
    let real = |d: Duration| engine::steps::humane(d.mul_f64(s.speed));
    let mut out = String::new();
    let _ = writeln!(out, "\n== drill report ==");
    let _ = writeln!(
        out,
        "predicted recovery time: {} (the drill took {} at {}x)",
        real(elapsed),
        engine::steps::humane(elapsed),
        s.speed
    );
    let _ = writeln!(
        out,
        "{:<20} {:>6} {:>6} {:>6} {:>7}  {:>10}  outcome",
        "stage", "hosts", "done", "failed", "skipped", "duration"
    );
    let mut slowest: Option<(&str, Duration)> = None;
    for r in record.stages.values() {
        let duration = match (r.start, r.end) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        if let Some(d) = duration
            && slowest.is_none_or(|(_, best)| d > best)
        {
            slowest = Some((&r.name, d));
        }
        let outcome = match &r.outcome {
            Some(StageOutcome::Done) => "done".to_owned(),
            Some(StageOutcome::Aborted { reason }) => format!("ABORTED: {reason}"),
            Some(StageOutcome::Skipped { dependency }) => format!("not started ({dependency})"),
            Some(StageOutcome::Interrupted) => "interrupted".to_owned(),
            None => "unfinished".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>6} {:>6} {:>7}  {:>10}  {outcome}",
            r.name,
            r.hosts,
            r.done,
            r.failed,
            r.skipped,
            duration.map_or_else(|| "-".to_owned(), real)
        );
    }
    if let Some((name, d)) = slowest {
        let _ = writeln!(out, "slowest stage: {name} ({})", real(d));
    }
    let mut durations = record.host_durations.clone();
    durations.sort_unstable();
    if let (Some(p50), Some(max)) = (durations.get(durations.len() / 2), durations.last()) {
        let _ = writeln!(out, "host time: median {}, max {}", real(*p50), real(*max));
    }
    if record.failures.is_empty() {
        let _ = writeln!(out, "failures: none");
    } else {
        let mut by_kind: BTreeMap<String, Vec<&Failure>> = BTreeMap::new();
        for f in &record.failures {
            by_kind
                .entry(failure_kind(f.step, &f.reason))
                .or_default()
                .push(f);
        }
        let _ = writeln!(
            out,
            "failures by kind ({} hosts; timeouts in reasons are drill time, {}x compressed):",
            record.failures.len(),
            s.speed
        );
        for (kind, hosts) in by_kind {
            let _ = writeln!(out, "  {kind}: {}", hosts.len());
            for Failure {
                stage,
                host,
                reason,
                ..
            } in hosts
            {
                let injected = faults
                    .get(host)
                    .map(|f| format!(" [injected: {f}]"))
                    .unwrap_or_default();
                let _ = writeln!(out, "    {stage} {host}{injected}: {reason}");
            }
        }
    }
    if s.fraction < 1.0 {
        let _ = writeln!(
            out,
            "note: from a {} sample; the whole selection would fail about {:.0} hosts the same ways",
            percent(s.fraction),
            record.failures.len() as f64 / s.fraction
        );
    }
    out
}
