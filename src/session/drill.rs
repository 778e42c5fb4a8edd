//! The drill's pipeline: the hosts the plan touches (or a stratified
//! sample of them) started as a simulated fleet of real SSH servers on
//! loopback, the plan's rehearsal (`sim::drill` says what a rehearsal
//! changes) planned against the fleet's inventory, and executed through the
//! same [`super::execute_in`] as any run: a journal `report` reads, marked as
//! a drill so it is never resumed against real hosts; no plan lock.
//!
//! Owns the fleet's lifetime (stopped on every path: success, errors,
//! Ctrl-C), the scaling of the command line into the rehearsal
//! (`--parallel` and `--rate` with the sample, `--rate` and boot times with
//! the speed), and the prediction once the rehearsal ended: the stages
//! `sim::replay` can replay at full size, replayed with the times the
//! simulated hosts took, written as the journal's last record. It does not
//! print: what the command shows comes back in [`Ready`] and [`Drilled`].
//! Scheduling is the engine's; what a simulated host does is the
//! simulator's.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use tokio::sync::watch;

use super::consume::Consumer;
use super::{Display, Execution, Finished, Loaded, Locking, Prepared};
use crate::diag::Sources;
use crate::engine::steps::humane;
use crate::engine::{CancelLevel, EngineOptions};
use crate::journal;
use crate::plan::Plan;
use crate::playbook::{Playbook, Rate};
use crate::report::drill::percent;
use crate::report::fold::Collector;
use crate::report::state::{RunState, Shared};
use crate::sim::drill::{
    Rehearsal, Sample, limits_not_modelled, rehearse, scale_rate, sim_hosts, stage_faults,
    unmeetable_faults,
};
use crate::sim::replay::{HostTime, Replay, replay, replays};
use crate::sim::{BootTimeRange, FaultKind, Fleet, FleetConfig, FleetHandle};
use crate::transport::ssh::{SshConnector, SshOptions};

/// Fleets bigger than this run in worker processes, so the engine's own
/// sockets and the simulated hosts' never share one descriptor table.
const DRILL_SHARD_SIZE: usize = 2000;
/// Port pairs tried before giving up when another fleet holds the ports.
const PORT_ATTEMPTS: u32 = 8;

/// A drill's own arguments, checked.
#[derive(Debug, Clone)]
pub struct Shape {
    pub sample: f64,
    pub speed: f64,
    pub boot_time: BootTimeRange,
    pub faults: Vec<(FaultKind, f64)>,
    /// Per fault, the chance a power cycle cures it (`:recover=P`).
    pub recover: Vec<(FaultKind, f64)>,
    pub seed: u64,
    pub rate: Option<Rate>,
}

/// A drill's typed configuration.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    pub shape: Shape,
    /// `--powered-off`: hosts start off (also when the plan powers hosts on).
    pub powered_off: bool,
    /// `--bmcs`: hosts have BMCs (also when the plan powers hosts on or
    /// power-cycles them, or with `powered_off`).
    pub bmcs: bool,
    /// `--parallel` for the whole fleet; shrunk with the sample.
    pub parallel: Option<usize>,
    /// Where the drill's journal goes, and what its header names.
    pub journal_dir: PathBuf,
    pub playbook: String,
    pub inventories: Vec<String>,
    pub limit: Option<String>,
    /// `--rate` as written, for the journal's header.
    pub rate_text: Option<String>,
    pub quiet: bool,
    pub verbose: bool,
}

/// What the command shows before the rehearsal starts.
pub struct Ready<'a> {
    /// The rehearsal's plan (against the simulated fleet).
    pub plan: &'a Plan,
    pub sample: &'a Sample,
    /// 0: the fleet runs in this process.
    pub workers: usize,
    pub http_port: u16,
    /// Clamped parallelism and the like.
    pub notes: &'a [String],
}

impl Ready<'_> {
    /// What the drill tells before it starts: the sample, the shards, the
    /// boot time and speed, and what the simulator stands in for.
    pub fn preamble(&self, shape: &Shape) -> String {
        let r = self;
        let mut out = String::new();
        let n = r.sample.chosen.len();
        let shards = match r.workers {
            0 => "in this process".to_owned(),
            w => format!("in {w} worker processes"),
        };
        let boot = &shape.boot_time;
        let boot = if boot.min == boot.max {
            humane(boot.min)
        } else {
            format!("{}..{}", humane(boot.min), humane(boot.max))
        };
        let _ = writeln!(
            out,
            "drill: `{}` on {n} simulated hosts ({} of the {} the plan selects), {shards}",
            r.plan.name,
            percent(r.sample.fraction),
            r.sample.selected,
        );
        let _ = writeln!(
            out,
            "drill: boot time {boot}, speed {}x: timeouts, intervals and rates are compressed \
         {}x; times below are real time",
            shape.speed, shape.speed
        );
        if r.sample.fraction < 1.0 {
            let _ = writeln!(
                out,
                "drill: counts in the plan (parallel, max_failures, rates) shrink with each stage's sample; \
             canaries do not"
            );
            for w in &r.sample.whole {
                let _ = writeln!(
                    out,
                    "drill: the sample keeps whole `{}` groups ({} of {}), so max_unavailable per `{}` holds as in full",
                    w.key, w.kept, w.groups, w.key
                );
            }
        }
        let _ = writeln!(
            out,
            "drill: tcp/http checks go to the simulator's HTTP port {}; commands it cannot run \
         and every `local:` step are replaced by harmless stand-ins",
            r.http_port
        );
        out
    }
}

/// How a drill ended.
pub enum Drilled {
    /// Ctrl-C before the fleet was ready: nothing ran.
    Interrupted,
    Finished(Box<Rehearsed>),
}

/// A rehearsal that ran.
pub struct Rehearsed {
    pub finished: Finished,
    pub sample: Sample,
    /// The fault injected into each faulty simulated host.
    pub injected: HashMap<String, String>,
    /// Per stage of the plan, in order: the faults placed on its simulated
    /// hosts, by kind (a host of two stages counts in both).
    pub placed: Vec<(String, BTreeMap<String, usize>)>,
    /// What the rehearsal cannot model, for its report.
    pub caveats: Vec<String>,
    /// What it predicts for the real run (also the journal's last record).
    pub prediction: journal::Prediction,
}

/// The live views to add (`--listen`, `--notify`), given the journal's
/// header, the rehearsal's plan and a collector fed with the header;
/// made after [`Ready`] was shown.
pub type Views<'a> =
    dyn FnOnce(&journal::Header, &Plan, &Shared) -> anyhow::Result<Vec<Box<dyn Consumer>>> + 'a;

/// Runs a drill of `loaded` on a runtime of its own, with Ctrl-C handling.
/// `ready` is called once, when the rehearsal is planned and its journal
/// open; `views` makes the live views right after.
pub fn run(
    loaded: Loaded,
    config: &DrillConfig,
    views: Box<Views<'_>>,
    ready: &mut dyn FnMut(&Ready<'_>),
    notice: fn(&str),
) -> anyhow::Result<Drilled> {
    let Loaded {
        inventory,
        plan,
        book,
        ..
    } = loaded;
    let sample = Sample::of(&plan, &inventory, config.shape.sample, config.shape.seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let dir = drill_dir()?;
    let drill = Drill {
        config,
        plan: &plan,
        inventory: &inventory,
        book: &book,
        sample,
        // A playbook that powers hosts on is rehearsed on a powered-off
        // fleet with a Redfish BMC per simulated host.
        powered_off: config.powered_off || plan.powers_on(),
        // A plan that power-cycles stragglers is rehearsed with BMCs too.
        bmcs: config.bmcs || config.powered_off || plan.reaches_bmcs(),
        dir: dir.clone(),
    };
    let result = runtime.block_on(drill.run(views, ready, notice));
    runtime.shutdown_timeout(Duration::from_secs(1));
    // The keys and status of a finished drill are of no further use.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

struct Drill<'a> {
    config: &'a DrillConfig,
    /// The real plan (its stages place the faults).
    plan: &'a Plan,
    inventory: &'a crate::inventory::Inventory,
    book: &'a Playbook,
    sample: Sample,
    /// Hosts start off and are powered on through their simulated BMCs.
    powered_off: bool,
    /// Every host has a simulated BMC (powered off or not).
    bmcs: bool,
    /// The fleet's keys and files.
    dir: PathBuf,
}

/// A fresh private directory for the fleet's keys and files.
fn drill_dir() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
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

async fn wait_cancel(mut rx: watch::Receiver<CancelLevel>) {
    let _ = rx.wait_for(|c| *c != CancelLevel::None).await;
}

impl Drill<'_> {
    async fn run(
        self,
        views: Box<Views<'_>>,
        ready: &mut dyn FnMut(&Ready<'_>),
        notice: fn(&str),
    ) -> anyhow::Result<Drilled> {
        // Watched before the fleet starts, so an early Ctrl-C still stops it cleanly.
        let (cancel_rx, ctrl_c) = super::ctrl_c(notice);
        let started = tokio::select! {
            r = self.start_fleet() => r,
            _ = wait_cancel(cancel_rx.clone()) => {
                ctrl_c.abort();
                return Ok(Drilled::Interrupted);
            }
        };
        let fleet = match started {
            Ok(f) => f,
            Err(e) => {
                ctrl_c.abort();
                return Err(e.context("cannot start the simulated fleet"));
            }
        };
        let result = self.rehearse_on(&fleet, views, ready, cancel_rx).await;
        ctrl_c.abort();
        let (result, caveats, replayed) = match result {
            Ok((finished, caveats, replayed)) => (Ok(finished), caveats, replayed),
            Err(e) => (Err(e), Vec::new(), Vec::new()),
        };
        let injected: HashMap<String, String> = fleet
            .status()
            .hosts
            .into_iter()
            .filter_map(|h| h.fault.map(|f| (h.name, f.to_string())))
            .collect();
        let stopped = fleet.shutdown().await;
        let mut finished = result?;
        if let Err(e) = stopped {
            finished
                .warnings
                .push(format!("stopping the simulated fleet: {e}"));
        }
        let placed = self
            .plan
            .stages
            .iter()
            .map(|st| {
                let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
                for &h in &st.hosts {
                    if let Some(f) = self
                        .inventory
                        .hosts
                        .get(h)
                        .and_then(|host| injected.get(&host.name))
                    {
                        *kinds.entry(f.clone()).or_default() += 1;
                    }
                }
                (st.name.clone(), kinds)
            })
            .collect();
        let prediction = self.predict(&finished, &replayed, &injected);
        if let Some(path) = &finished.journal {
            let written = journal::append(path).and_then(|mut w| {
                w.push(&journal::Record::Predicted(prediction.clone()), None);
                w.finish()
            });
            if let Err(e) = written {
                finished
                    .warnings
                    .push(format!("the prediction is not in the journal: {e}"));
            }
        }
        Ok(Drilled::Finished(Box::new(Rehearsed {
            finished,
            sample: self.sample,
            injected,
            placed,
            caveats,
            prediction,
        })))
    }

    /// The prediction for the real run ([`crate::report::drill::predict`]):
    /// each stage of `replays` that finished is replayed at its full size
    /// with its simulated hosts' times as the drill measured them
    /// ([`replay`]).
    fn predict(
        &self,
        finished: &Finished,
        replays: &[Replay],
        injected: &HashMap<String, String>,
    ) -> journal::Prediction {
        use crate::report::summary::{HostStatus, StageStatus};
        let shape = &self.config.shape;
        let speed = shape.speed;
        let real = |ms: u64| (ms as f64 * speed).round() as u64;
        // The full fleet's share of faulty hosts.
        let fault_share: f64 = shape.faults.iter().map(|(_, f)| f).sum();
        let summary = &finished.summary;
        let replayed: Vec<crate::report::drill::ReplayedStage> = replays
            .iter()
            .filter_map(|r| {
                let st = summary.stages.iter().find(|s| s.name == r.stage)?;
                if st.status != StageStatus::Done {
                    return None;
                }
                let measured = st.end_ms?.saturating_sub(st.start_ms?);
                let times: Vec<HostTime> = summary
                    .hosts
                    .iter()
                    .filter(|h| h.stage == r.stage)
                    .filter_map(|h| {
                        let failed = match h.status {
                            HostStatus::Done => false,
                            HostStatus::Failed | HostStatus::Unreachable => true,
                            _ => return None,
                        };
                        Some(HostTime {
                            ms: real(h.duration_ms),
                            failed,
                            faulty: injected.contains_key(&h.host),
                        })
                    })
                    .collect();
                Some(crate::report::drill::ReplayedStage {
                    stage: r.stage.clone(),
                    replayed: journal::Replayed {
                        hosts: r.hosts,
                        simulated: r.kept,
                        pace: r.pace.describe(),
                        measured_ms: real(measured),
                    },
                    predicted_ms: replay(&r.pace, r.hosts, &times, fault_share, shape.seed)?,
                })
            })
            .collect();
        crate::report::drill::predict(summary, self.plan, speed, finished.elapsed, &replayed)
    }

    /// What this rehearsal (`rehearsed`: its plan) cannot model: faults no
    /// step can meet, time that does not shrink with the speed, the boot
    /// times it assumes, steps that take no time on the simulator, limits
    /// the sample cannot keep ([`limits_not_modelled`]).
    fn caveats(&self, rehearsed: &Plan, replayed: &[Replay]) -> Vec<String> {
        let mut out = unmeetable_faults(self.plan, &self.config.shape.faults);
        let speed = self.config.shape.speed;
        if speed > 1.0 {
            out.push(format!(
                "SSH connection set-up and command round trips take real time at any speed, so the prediction counts them {speed}x (a few % long when boots are short)"
            ));
        }
        let boots = self.plan.stages.iter().any(|st| {
            st.steps.iter().any(|s| {
                matches!(
                    s,
                    crate::playbook::Step::Reboot { .. } | crate::playbook::Step::PowerOn(_)
                )
            })
        });
        if boots {
            let boot = &self.config.shape.boot_time;
            let range = if boot.min == boot.max {
                crate::engine::steps::humane(boot.min)
            } else {
                format!(
                    "{}..{}, each host uniformly at random",
                    crate::engine::steps::humane(boot.min),
                    crate::engine::steps::humane(boot.max)
                )
            };
            out.push(format!(
                "boot times come from `--boot-time` ({range}): the prediction is as good as that is for the real hosts, and has no slower tail than the `slow_boot` fault gives"
            ));
        }
        let idle: Vec<&str> = self
            .plan
            .stages
            .iter()
            .filter(|st| {
                st.steps.iter().any(|s| {
                    matches!(
                        s,
                        crate::playbook::Step::Run { .. }
                            | crate::playbook::Step::Local { .. }
                            | crate::playbook::Step::RestartService { .. }
                    )
                })
            })
            .map(|st| st.name.as_str())
            .collect();
        if !idle.is_empty() {
            out.push(format!(
                "`run`, `local` and `restart_service` steps take no time on the simulator: their real duration is not in the prediction (stages {})",
                idle.join(", ")
            ));
        }
        out.extend(limits_not_modelled(
            self.plan,
            self.inventory,
            &self.sample,
            rehearsed,
            replayed,
        ));
        out
    }

    /// Starts the fleet on a free pair of ports (another drill or a test may
    /// hold the first ones tried).
    async fn start_fleet(&self) -> anyhow::Result<FleetHandle> {
        let shape = &self.config.shape;
        let hosts = sim_hosts(self.inventory, &self.sample.chosen);
        let powered_off = self.powered_off;
        let mut last = None;
        for attempt in 0..PORT_ATTEMPTS {
            // Three ports (SSH, HTTP, BMC) in 20000..32000: below the ephemeral
            // range, spread by pid.
            let spread = (std::process::id() + attempt * 7919) % 4000;
            let port = 20000 + 3 * spread as u16;
            let mut config = FleetConfig::new(hosts.clone(), self.dir.clone());
            config.port = port;
            config.http_port = port + 1;
            config.bmc_port = port + 2;
            config.powered_off = powered_off;
            config.bmcs = self.bmcs;
            config.power_on_delay = config.power_on_delay.div_f64(shape.speed);
            config.reboot_grace = config.reboot_grace.div_f64(shape.speed);
            config.boot_time = BootTimeRange {
                min: shape.boot_time.min.div_f64(shape.speed),
                max: shape.boot_time.max.div_f64(shape.speed),
            };
            config.faults = shape.faults.clone();
            config.placed_faults = Some(stage_faults(self.plan, &self.sample, &shape.faults));
            config.recover = shape.recover.clone();
            config.seed = shape.seed;
            config.shard_size = DRILL_SHARD_SIZE;
            match Fleet::start(config).await {
                Ok(f) => return Ok(f),
                Err(e) if e.kind == crate::sim::SimErrorKind::Bind => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no free ports"), Into::into))
    }

    /// The simulated fleet's inventory, with the real hosts' group
    /// membership (not a label) carried over so `group=` selectors pick the
    /// same hosts.
    fn sim_inventory(
        &self,
        fleet: &FleetHandle,
        sources: &mut Sources,
    ) -> anyhow::Result<crate::inventory::Inventory> {
        let paths = fleet.paths();
        let mut sim = match crate::inventory::load(
            &[paths.inventory.to_string_lossy().into_owned()],
            sources,
        ) {
            Ok((inv, _)) => inv,
            Err(diags) => bail!(
                "cannot read the simulated fleet's inventory:\n{}",
                crate::diag::render_text(sources, &diags)
            ),
        };
        let groups: HashMap<&str, &Vec<String>> = self
            .inventory
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), &h.groups))
            .collect();
        for h in &mut sim.hosts {
            if let Some(g) = groups.get(h.name.as_str()) {
                h.groups = (*g).clone();
            }
        }
        Ok(sim)
    }

    /// The rehearsal planned against the fleet, with its connector, limits
    /// and BMC client.
    fn prepare(&self, fleet: &FleetHandle) -> anyhow::Result<Prepared> {
        let shape = &self.config.shape;
        let fraction = self.sample.fraction;
        let paths = fleet.paths();
        let mut sources = Sources::new();
        let inventory = self.sim_inventory(fleet, &mut sources)?;
        let rehearsal = Rehearsal {
            speed: shape.speed,
            sample: fraction,
            stage_sample: self.sample.stage_sample.clone(),
            http_port: fleet.http_port(),
            stage_hosts: self
                .plan
                .stages
                .iter()
                .map(|s| (s.name.clone(), s.hosts.len()))
                .collect(),
            whole: self.sample.whole.iter().map(|w| w.key.clone()).collect(),
        };
        let book = rehearse(self.book, &rehearsal);
        let plan = match crate::plan::build(&book, &inventory, None) {
            Ok(p) => p,
            Err(diags) => bail!(
                "cannot plan the rehearsal:\n{}",
                crate::diag::render_text(&sources, &diags)
            ),
        };
        let connector = SshConnector::new(SshOptions {
            identities: vec![paths.identity.clone()],
            known_hosts: paths.known_hosts.clone(),
            known_hosts_explicit: true,
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
        let fit = super::descriptors::for_plan(
            &plan,
            self.config
                .parallel
                .map(|p| ((p as f64 * fraction).ceil() as usize).max(1)),
            u64::from(in_process),
            if in_process {
                2 * inventory.hosts.len() as u64
            } else {
                0
            },
        );
        // The run's own BMC client, with the simulated fleet's credentials
        // (its BMCs are loopback http, which their inventory allows).
        let bmc = match &paths.bmc_credentials {
            Some(file) if self.bmcs => Some(super::bmc_client_for(
                &plan.bmc_hosts(),
                &inventory,
                &super::BmcSettings {
                    credentials: Some(file.clone()),
                    ..super::BmcSettings::default()
                },
            )?),
            _ => None,
        };
        let opts = EngineOptions {
            parallel: fit.parallel,
            rate: shape.rate.map(|r| scale_rate(r, shape.speed * fraction)),
            starts: HashMap::new(),
            bmc,
            bmc_time_scale: shape.speed,
            // The simulated hosts' sudo asks for no password.
            become_password: None,
            pause: None,
            may_act: None,
            hold_resumed_until: None,
        };
        let mut notes = fit.notes;
        // Said before the rehearsal too, so nobody waits for a fault that cannot come.
        notes.extend(unmeetable_faults(self.plan, &shape.faults));
        Ok(Prepared {
            plan,
            inventory,
            connector,
            opts,
            notes,
        })
    }

    async fn rehearse_on(
        &self,
        fleet: &FleetHandle,
        views: Box<Views<'_>>,
        ready: &mut dyn FnMut(&Ready<'_>),
        cancel: watch::Receiver<CancelLevel>,
    ) -> anyhow::Result<(Finished, Vec<String>, Vec<Replay>)> {
        let c = self.config;
        let prepared = self.prepare(fleet)?;
        // A run-wide `--rate` paces all stages together: none is replayed.
        let replayed = if c.shape.rate.is_some() {
            Vec::new()
        } else {
            replays(
                self.plan,
                self.inventory,
                &self.sample.chosen,
                (c.parallel, Some(prepared.opts.parallel)),
            )
        };
        let caveats = self.caveats(&prepared.plan, &replayed);
        // A journal like any run's, marked as a drill.
        let header = super::header(
            &prepared.plan,
            &c.playbook,
            &c.inventories,
            c.limit.as_deref(),
            c.parallel,
            c.rate_text.as_deref(),
            SystemTime::now(),
        )?;
        let marker = journal::Record::Drill {
            speed: c.shape.speed,
            sample: self.sample.fraction,
            caveats: caveats.clone(),
        };
        let opened = super::open_new(
            &c.journal_dir,
            &header,
            Locking::None,
            std::slice::from_ref(&marker),
        )?;
        let mut collector = Collector::new();
        collector.record(&journal::Record::Header(header.clone()));
        collector.record(&marker);
        let state = RunState::new(collector).shared();
        ready(&Ready {
            plan: &prepared.plan,
            sample: &self.sample,
            workers: fleet.workers(),
            http_port: fleet.http_port(),
            notes: &prepared.notes,
        });
        let consumers = views(&header, &prepared.plan, &state)?;
        let execution = Execution {
            prepared,
            journal: Some(opened),
            state,
            already_done: 0,
            starts: HashMap::new(),
            display: Display::Plain {
                quiet: c.quiet,
                verbose: c.verbose,
                scale: c.shape.speed,
            },
            consumers,
            mirror: None,
        };
        Ok((
            super::execute_in(execution, cancel).await,
            caveats,
            replayed,
        ))
    }
}
