//! A whole simulated fleet: keys, output files, shards (in-process or worker
//! processes), and the merged status that status.json shows. Owns the
//! fleet-level API that `rekindle sim`, `drill` and tests use.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use super::SimError;
use super::config::BmcConfig;
use super::config::{FaultKind, FleetConfig, POWERED_OFF_SHARD_SIZE, host_address, place_faults};
use super::core::{HostPower, HostStatus, Phase};
use super::shard::{DELTA_INTERVAL, ShardHost, ShardRuntime, ShardSpec, WorkerMsg};
use crate::transport::redfish::CREDENTIALS_LABEL;

/// A simulated host's label for its BMC's `PowerRestorePolicy` (`AlwaysOn`,
/// `AlwaysOff`, `LastState`; default `LastState`), read by `rekindle audit`.
pub const RESTORE_POLICY_LABEL: &str = "sim_power_restore_policy";
/// A simulated host's label for its BMC's one-time boot override (`Pxe`, ...).
pub const BOOT_OVERRIDE_LABEL: &str = "sim_boot_override";

/// How long workers may take to bind their hosts.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a worker may take to report its final counts after stdin closes.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// status.json is rewritten this often when something changed.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// status.json is rewritten at least this often even when nothing changed.
const STATUS_MAX_AGE: Duration = Duration::from_millis(900);

/// The files a fleet wrote (all absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPaths {
    pub dir: PathBuf,
    pub inventory: PathBuf,
    pub known_hosts: PathBuf,
    pub identity: PathBuf,
    pub status: PathBuf,
    /// `user:password` and `NAME user:password` lines (mode 0600) for the
    /// BMCs of a powered-off fleet.
    pub bmc_credentials: Option<PathBuf>,
}

/// One host as the fleet reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReport {
    pub name: String,
    pub address: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultKind>,
    pub state: Phase,
    pub reboots: u32,
    pub boot_id: String,
    pub power: HostPower,
    /// Power-on reset actions (`On`, `ForceOn`, `GracefulRestart`) the host's BMC received.
    pub power_ons: u32,
    /// Power cycles (`PowerCycle`, `ForceRestart`) the host's BMC received.
    pub power_cycles: u32,
    /// When the last reset action arrived (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at_ms: Option<u64>,
}

/// A snapshot of every host, in fleet order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStatus {
    pub hosts: Vec<HostReport>,
}

impl FleetStatus {
    pub fn total_reboots(&self) -> u64 {
        self.hosts.iter().map(|h| u64::from(h.reboots)).sum()
    }

    pub fn total_power_ons(&self) -> u64 {
        self.hosts.iter().map(|h| u64::from(h.power_ons)).sum()
    }

    pub fn host(&self, name: &str) -> Option<&HostReport> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// Starts fleets.
pub struct Fleet;

struct HostMeta {
    name: String,
    /// The name as a JSON string literal, escaped once (status.json is rewritten often).
    name_json: String,
    address: Ipv4Addr,
    fault: Option<FaultKind>,
}

struct Board {
    meta: Vec<HostMeta>,
    /// What a host not yet reported is: off in a powered-off fleet.
    initial: HostStatus,
    status: Mutex<(Vec<Option<HostStatus>>, bool)>,
    /// The first worker failure (a worker that died or broke the protocol).
    failure: Mutex<Option<String>>,
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, (Vec<Option<HostStatus>>, bool)> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, hosts: Vec<(usize, HostStatus)>) {
        let mut g = self.lock();
        for (idx, s) in hosts {
            if let Some(slot) = g.0.get_mut(idx) {
                *slot = Some(s);
                g.1 = true;
            }
        }
    }

    fn snapshot(&self) -> FleetStatus {
        let g = self.lock();
        let hosts = self
            .meta
            .iter()
            .zip(g.0.iter())
            .map(|(m, s)| {
                let s = s.clone().unwrap_or_else(|| self.initial.clone());
                HostReport {
                    name: m.name.clone(),
                    address: m.address,
                    fault: m.fault,
                    state: s.state,
                    reboots: s.reboots,
                    boot_id: s.boot_id,
                    power: s.power,
                    power_ons: s.power_ons,
                    power_cycles: s.power_cycles,
                    reset_at_ms: s.reset_at_ms,
                }
            })
            .collect();
        FleetStatus { hosts }
    }

    /// status.json's text if something changed since the last call (or `force`).
    /// Written by hand, one host per line: for 32,000 hosts every second this
    /// must stay cheap, and the line form is easy to grep.
    fn status_json(&self, force: bool, ssh_port: u16, http_port: u16) -> Option<String> {
        let mut g = self.lock();
        if !g.1 && !force {
            return None;
        }
        g.1 = false;
        let mut out = String::with_capacity(self.meta.len() * 128 + 256);
        let (mut total, mut up) = (0u64, 0usize);
        out.push_str("{\"hosts\": {");
        for (i, (m, st)) in self.meta.iter().zip(g.0.iter()).enumerate() {
            let s = st.as_ref().unwrap_or(&self.initial);
            let (state, reboots, boot_id) = (s.state, s.reboots, s.boot_id.as_str());
            total += u64::from(reboots);
            up += usize::from(state == Phase::Up);
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            let _ = write!(
                out,
                "{}: {{\"state\": \"{}\", \"reboots\": {reboots}, \"boot_id\": \"{boot_id}\", \"address\": \"{}\"",
                m.name_json,
                state.as_str(),
                m.address
            );
            let _ = write!(
                out,
                ", \"power\": \"{}\", \"power_ons\": {}, \"power_cycles\": {}",
                s.power.as_str(),
                s.power_ons,
                s.power_cycles
            );
            if let Some(at) = s.reset_at_ms {
                let _ = write!(out, ", \"reset_at_ms\": {at}");
            }
            if let Some(f) = m.fault {
                let _ = write!(out, ", \"fault\": \"{}\"", f.as_str());
            }
            out.push('}');
        }
        drop(g);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "\n}},\n\"total_reboots\": {total}, \"hosts_total\": {}, \"hosts_up\": {up}, \"ssh_port\": {ssh_port}, \"http_port\": {http_port}, \"updated_unix_ms\": {now}}}",
            self.meta.len()
        );
        Some(out)
    }
}

// Few shards per fleet: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Shard {
    Local(Arc<ShardRuntime>),
    Worker {
        child: Child,
        stdin: Option<ChildStdin>,
        reader: JoinHandle<Result<(), SimError>>,
    },
}

/// A running fleet. Dropping it kills its workers; [`FleetHandle::shutdown`]
/// stops it cleanly and returns the final counts.
pub struct FleetHandle {
    paths: FleetPaths,
    port: u16,
    http_port: u16,
    workers: usize,
    board: Arc<Board>,
    shards: Vec<Shard>,
    ticker: JoinHandle<()>,
}

impl Fleet {
    /// Generates keys, writes the fleet's files, starts every shard and
    /// returns once every host listens.
    pub async fn start(config: FleetConfig) -> Result<FleetHandle, SimError> {
        if config.hosts.is_empty() {
            return Err(SimError::config("a fleet needs at least one host"));
        }
        if config.port == config.http_port {
            return Err(SimError::config("SSH and HTTP ports must differ"));
        }
        if config.has_bmcs()
            && (config.bmc_port == config.port || config.bmc_port == config.http_port)
        {
            return Err(SimError::config(
                "the BMC port must differ from the SSH and HTTP ports",
            ));
        }
        let placed = config.placed_faults.iter().flatten().flatten();
        if let Some(kind) = config
            .faults
            .iter()
            .filter(|(_, f)| *f > 0.0)
            .map(|(k, _)| k)
            .chain(placed)
            .find(|k| k.needs_bmc() && !config.has_bmcs())
        {
            return Err(SimError::config(format!(
                "fault `{kind}` needs simulated BMCs: start the fleet with --bmcs or --powered-off"
            )));
        }
        if let Some((kind, _)) = config.recover.iter().find(|(_, p)| *p > 0.0)
            && !config.has_bmcs()
        {
            return Err(SimError::config(format!(
                "`{kind}:recover=` is a chance per BMC power cycle, and BMCs need the fleet started with --bmcs or --powered-off"
            )));
        }
        raise_fd_limit();
        let n = config.hosts.len();
        let faults = match &config.placed_faults {
            None => place_faults(n, &config.faults, config.seed),
            Some(p) if p.len() == n => p.clone(),
            Some(p) => {
                return Err(SimError::config(format!(
                    "{} placed faults for {n} hosts",
                    p.len()
                )));
            }
        };
        let mut meta = Vec::with_capacity(n);
        for (i, (h, fault)) in config.hosts.iter().zip(faults).enumerate() {
            meta.push(HostMeta {
                name_json: serde_json::to_string(&h.name)
                    .map_err(|e| SimError::config(e.to_string()))?,
                name: h.name.clone(),
                address: host_address(config.first_address, i)?,
                fault,
            });
        }
        let (host_key, client_key) = (ed25519()?, ed25519()?);
        restore_policies(&config)?;
        let bmc = match config.has_bmcs() {
            true => Some(BmcConfig {
                port: config.bmc_port,
                user: "rekindle".to_owned(),
                password: hex::encode(rand::random::<[u8; 16]>()),
                accounts: bmc_accounts(&config)?,
                power_on_delay: config.power_on_delay,
                outage: config.bmc_outage,
                profile: config.bmc_profile,
            }),
            false => None,
        };
        let paths = write_files(&config, &meta, &host_key, &client_key, bmc.as_ref())?;
        let host_key_pem = host_key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| SimError::key(e.to_string()))?;
        let client_pub = client_key
            .public_key()
            .to_openssh()
            .map_err(|e| SimError::key(e.to_string()))?;

        let board = Arc::new(Board {
            initial: HostStatus {
                state: if config.powered_off {
                    Phase::Off
                } else {
                    Phase::Up
                },
                reboots: 0,
                boot_id: String::new(),
                power: if config.powered_off {
                    HostPower::Off
                } else {
                    HostPower::On
                },
                power_ons: 0,
                power_cycles: 0,
                reset_at_ms: None,
            },
            status: Mutex::new((vec![None; n], true)),
            failure: Mutex::new(None),
            meta,
        });
        // Hosts are dealt round-robin, so a plan that walks the fleet in order
        // (rack by rack) spreads its connections and CPU over every worker.
        let shard_size = if config.has_bmcs() {
            config.shard_size.min(POWERED_OFF_SHARD_SIZE)
        } else {
            config.shard_size
        };
        let shard_count = n.div_ceil(shard_size.max(1));
        let mut sockets = if config.deps.is_empty() {
            Vec::new()
        } else {
            let addresses: Vec<_> = board.meta.iter().map(|m| m.address).collect();
            super::deps::tables(&config.deps, &addresses, config.port, config.http_port)
        };
        let specs: Vec<ShardSpec> = (0..shard_count)
            .map(|c| ShardSpec {
                hosts: (c..n)
                    .step_by(shard_count)
                    .map(|idx| {
                        let m = &board.meta[idx];
                        ShardHost {
                            idx,
                            name: m.name.clone(),
                            address: m.address,
                            fault: m.fault,
                            bmc_account: bmc
                                .as_ref()
                                .and(config.hosts[idx].labels.get(CREDENTIALS_LABEL))
                                .cloned(),
                            recover: config
                                .recover
                                .iter()
                                .find(|(k, _)| Some(*k) == m.fault)
                                .map_or(0.0, |(_, p)| *p),
                            sockets: sockets.get_mut(idx).map(std::mem::take).unwrap_or_default(),
                            restore_policy: config.hosts[idx]
                                .labels
                                .get(RESTORE_POLICY_LABEL)
                                .cloned(),
                            boot_override: config.hosts[idx]
                                .labels
                                .get(BOOT_OVERRIDE_LABEL)
                                .cloned(),
                        }
                    })
                    .collect(),
                port: config.port,
                http_port: config.http_port,
                boot_time: config.boot_time,
                reboot_grace: config.reboot_grace,
                seed: config.seed,
                host_key: host_key_pem.to_string(),
                client_key: client_pub.clone(),
                bmc: bmc.clone(),
                powered_off: config.powered_off,
            })
            .collect();

        let mut shards = Vec::with_capacity(specs.len());
        let workers = if specs.len() == 1 { 0 } else { specs.len() };
        if workers == 0 {
            shards.push(Shard::Local(Arc::new(ShardRuntime::start(&specs[0])?)));
        } else {
            let exe = match &config.worker_exe {
                Some(p) => p.clone(),
                None => std::env::current_exe()
                    .map_err(|e| SimError::io("cannot find own executable", e))?,
            };
            let mut ready = Vec::new();
            for spec in &specs {
                let (shard, rx) = spawn_worker(&exe, spec, board.clone()).await?;
                shards.push(shard);
                ready.push(rx);
            }
            // Workers bind in parallel; wait for all of them.
            for rx in ready {
                match tokio::time::timeout(READY_TIMEOUT, rx).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => return Err(e),
                    Ok(Err(_)) => {
                        return Err(SimError::worker("a worker exited before it was ready"));
                    }
                    Err(_) => return Err(SimError::worker("a worker did not get ready in time")),
                }
            }
        }
        // The in-process shard is polled by the same ticker that writes status.json.
        let local = shards.iter().find_map(|s| match s {
            Shard::Local(rt) => Some(rt.clone()),
            Shard::Worker { .. } => None,
        });
        let handle_board = board.clone();
        let status_path = paths.status.clone();
        let (port, http_port) = (config.port, config.http_port);
        let mut handle = FleetHandle {
            paths,
            port,
            http_port,
            workers,
            board,
            shards,
            ticker: tokio::spawn(async {}),
        };
        handle.write_status()?;
        handle.ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(DELTA_INTERVAL);
            let mut last_write = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                if let Some(rt) = &local {
                    handle_board.apply(rt.deltas());
                }
                let age = last_write.elapsed();
                if age < STATUS_INTERVAL {
                    continue;
                }
                // Rewritten when something changed, and at least every second
                // regardless, so `updated_unix_ms` shows the fleet is alive.
                let Some(text) = handle_board.status_json(age >= STATUS_MAX_AGE, port, http_port)
                else {
                    continue;
                };
                // A failed write is retried on the next forced refresh.
                if write_atomic(&status_path, text.as_bytes()).is_ok() {
                    last_write = tokio::time::Instant::now();
                }
            }
        });
        Ok(handle)
    }
}

impl FleetHandle {
    pub fn paths(&self) -> &FleetPaths {
        &self.paths
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Worker processes serving the fleet (0: all hosts in this process).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Process ids of the workers (for measuring them).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shards
            .iter()
            .filter_map(|s| match s {
                Shard::Worker { child, .. } => child.id(),
                Shard::Local(_) => None,
            })
            .collect()
    }

    /// Why a worker process failed, if one did (its hosts no longer answer).
    pub fn failure(&self) -> Option<String> {
        self.board
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every host's state, at most a fraction of a second old.
    pub fn status(&self) -> FleetStatus {
        if let Some(poll) = self.local_poll_now() {
            self.board.apply(poll);
        }
        self.board.snapshot()
    }

    /// Stops every host, collects the final counts, writes status.json a last time.
    pub async fn shutdown(mut self) -> Result<FleetStatus, SimError> {
        self.ticker.abort();
        let mut first_err = None;
        for shard in std::mem::take(&mut self.shards) {
            match shard {
                Shard::Local(rt) => {
                    rt.stop();
                    self.board.apply(rt.all());
                }
                Shard::Worker {
                    mut child,
                    stdin,
                    reader,
                } => {
                    drop(stdin); // EOF: the worker reports its final counts and exits.
                    match tokio::time::timeout(STOP_TIMEOUT, reader).await {
                        Ok(Ok(Ok(()))) => {}
                        Ok(Ok(Err(e))) => {
                            first_err.get_or_insert(e);
                        }
                        Ok(Err(_)) | Err(_) => {
                            first_err.get_or_insert(SimError::worker(
                                "a worker did not report its final counts",
                            ));
                        }
                    }
                    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
                        .await
                        .is_err()
                    {
                        let _ = child.kill().await;
                    }
                }
            }
        }
        self.write_status()?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(self.board.snapshot()),
        }
    }

    fn write_status(&self) -> Result<(), SimError> {
        let text = self
            .board
            .status_json(true, self.port, self.http_port)
            .unwrap_or_default();
        write_atomic(&self.paths.status, text.as_bytes())
    }

    fn local_poll_now(&self) -> Option<Vec<(usize, HostStatus)>> {
        self.shards.iter().find_map(|s| match s {
            Shard::Local(rt) => Some(rt.deltas()),
            Shard::Worker { .. } => None,
        })
    }
}

impl Drop for FleetHandle {
    fn drop(&mut self) {
        self.ticker.abort();
        // Workers are spawned with kill_on_drop; in-process hosts stop with their runtime.
    }
}

async fn spawn_worker(
    exe: &Path,
    spec: &ShardSpec,
    board: Arc<Board>,
) -> Result<(Shard, tokio::sync::oneshot::Receiver<Result<(), SimError>>), SimError> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("sim-worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Own process group: a Ctrl-C at the terminal reaches only the parent,
        // which then stops the workers and collects their counts.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| SimError::io(format!("cannot start worker {}", exe.display()), e))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(SimError::worker("worker has no stdin/stdout"));
    };
    let mut line = serde_json::to_vec(spec).map_err(|e| SimError::worker(e.to_string()))?;
    line.push(b'\n');
    stdin
        .write_all(&line)
        .await
        .map_err(|e| SimError::io("cannot send the worker its hosts", e))?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let result = read_worker(stdout, ready_tx, &board).await;
        if let Err(e) = &result {
            let mut f = board.failure.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| e.to_string());
        }
        result
    });
    Ok((
        Shard::Worker {
            child,
            stdin: Some(stdin),
            reader,
        },
        ready_rx,
    ))
}

/// Applies a worker's reports to the board until it exits.
async fn read_worker(
    stdout: tokio::process::ChildStdout,
    ready_tx: tokio::sync::oneshot::Sender<Result<(), SimError>>,
    board: &Board,
) -> Result<(), SimError> {
    {
        let mut ready_tx = Some(ready_tx);
        let mut lines = BufReader::new(stdout).lines();
        let mut finished = false;
        while let Ok(Some(line)) = lines.next_line().await {
            let msg: WorkerMsg = serde_json::from_str(&line)
                .map_err(|e| SimError::worker(format!("bad worker message: {e}")))?;
            match msg {
                WorkerMsg::Ready { .. } => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                WorkerMsg::Delta { hosts } => board.apply(hosts),
                WorkerMsg::Final { hosts } => {
                    board.apply(hosts);
                    finished = true;
                }
                WorkerMsg::Error { message } => {
                    let e = SimError::worker(format!("worker: {message}"));
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Err(SimError::worker(format!("worker: {message}"))));
                    }
                    return Err(e);
                }
            }
        }
        if finished {
            Ok(())
        } else {
            Err(SimError::worker("a worker exited without its final counts"))
        }
    }
}

fn raise_fd_limit() {
    // Best effort: a failure only means a smaller fleet fits per process.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

fn ed25519() -> Result<russh::keys::PrivateKey, SimError> {
    let seed: [u8; 32] = rand::random();
    Ok(russh::keys::PrivateKey::from(
        russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed),
    ))
}

/// Every `sim_power_restore_policy` label is one a BMC can say.
fn restore_policies(config: &FleetConfig) -> Result<(), SimError> {
    for h in &config.hosts {
        if let Some(p) = h.labels.get(RESTORE_POLICY_LABEL)
            && !["AlwaysOn", "AlwaysOff", "LastState"].contains(&p.as_str())
        {
            return Err(SimError::config(format!(
                "host {}: `{RESTORE_POLICY_LABEL}: {p}`: expected AlwaysOn, AlwaysOff or LastState",
                h.name
            )));
        }
    }
    Ok(())
}

/// One account per distinct `bmc_credentials` label of the hosts, each
/// with its own password, so a powered-off fleet needs the per-host entries
/// of its credentials file (as real fleets with per-vendor passwords do).
fn bmc_accounts(config: &FleetConfig) -> Result<BTreeMap<String, String>, SimError> {
    let mut accounts = BTreeMap::new();
    for h in &config.hosts {
        let Some(name) = h.labels.get(CREDENTIALS_LABEL) else {
            continue;
        };
        if name.is_empty() || name.contains(|c: char| c == ':' || c.is_whitespace()) {
            return Err(SimError::config(format!(
                "host {}: `{CREDENTIALS_LABEL}: {name}` is not a credentials entry name \
                 (no spaces or `:`)",
                h.name
            )));
        }
        accounts
            .entry(name.clone())
            .or_insert_with(|| hex::encode(rand::random::<[u8; 16]>()));
    }
    Ok(accounts)
}

fn write_files(
    config: &FleetConfig,
    meta: &[HostMeta],
    host_key: &russh::keys::PrivateKey,
    client_key: &russh::keys::PrivateKey,
    bmc: Option<&BmcConfig>,
) -> Result<FleetPaths, SimError> {
    std::fs::create_dir_all(&config.out)
        .map_err(|e| SimError::io(format!("cannot create {}", config.out.display()), e))?;
    let dir =
        std::fs::canonicalize(&config.out).map_err(|e| SimError::io(config.out.display(), e))?;
    let paths = FleetPaths {
        inventory: dir.join("inventory.yaml"),
        known_hosts: dir.join("known_hosts"),
        identity: dir.join("id_ed25519"),
        status: dir.join("status.json"),
        bmc_credentials: bmc.map(|_| dir.join("bmc-credentials")),
        dir,
    };
    if let (Some(b), Some(path)) = (bmc, &paths.bmc_credentials) {
        let mut text = format!("{}:{}\n", b.user, b.password);
        for (name, password) in &b.accounts {
            let _ = writeln!(text, "{name} {}:{password}", b.user);
        }
        write_private(path, text.as_bytes())?;
    }
    let pem = client_key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| SimError::key(e.to_string()))?;
    write_private(&paths.identity, pem.as_bytes())?;
    let client_pub = client_key
        .public_key()
        .to_openssh()
        .map_err(|e| SimError::key(e.to_string()))?;
    write_atomic(
        &paths.dir.join("id_ed25519.pub"),
        format!("{client_pub} rekindle-sim\n").as_bytes(),
    )?;

    let host_pub = host_key
        .public_key()
        .to_openssh()
        .map_err(|e| SimError::key(e.to_string()))?;
    let mut kh = String::with_capacity(meta.len() * (host_pub.len() + 24));
    for m in meta {
        if config.port == 22 {
            let _ = writeln!(kh, "{} {host_pub}", m.address);
        } else {
            let _ = writeln!(kh, "[{}]:{} {host_pub}", m.address, config.port);
        }
    }
    write_atomic(&paths.known_hosts, kh.as_bytes())?;
    write_atomic(
        &paths.inventory,
        inventory_yaml(config, meta, &paths).as_bytes(),
    )?;
    Ok(paths)
}

/// The native inventory (docs/design.md, "Inputs") for the fleet, one datacenter per `dc` label.
fn inventory_yaml(config: &FleetConfig, meta: &[HostMeta], paths: &FleetPaths) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut by_dc: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, h) in config.hosts.iter().enumerate() {
        let dc = h.labels.get("dc").map(String::as_str).unwrap_or("sim");
        by_dc.entry(dc).or_default().push(i);
    }
    let mut y = String::with_capacity(meta.len() * 120);
    let _ = writeln!(
        y,
        "# Written by `rekindle sim`: a simulated fleet on loopback."
    );
    let _ = writeln!(y, "version: 1");
    let _ = writeln!(y, "defaults:");
    let _ = writeln!(y, "  user: {}", q(&current_user()));
    let _ = writeln!(y, "  port: {}", config.port);
    let _ = writeln!(
        y,
        "  identity_file: {}",
        q(&paths.identity.to_string_lossy())
    );
    let _ = writeln!(
        y,
        "  known_hosts: {}",
        q(&paths.known_hosts.to_string_lossy())
    );
    let _ = writeln!(y, "datacenters:");
    for (dc, idxs) in by_dc {
        let _ = writeln!(y, "  {}:", q(dc));
        let _ = writeln!(y, "    hosts:");
        for i in idxs {
            let (h, m) = (&config.hosts[i], &meta[i]);
            let mut labels = h.labels.clone();
            if config.has_bmcs() {
                // The sim's own BMC replaces any the input named; an input
                // `pdu` is kept, else one PDU per rack.
                labels.insert(
                    "bmc".to_owned(),
                    format!("http://{}:{}", m.address, config.bmc_port),
                );
                // Loopback BMCs: plain http is no cleartext on a network.
                labels.insert("bmc_allow_http".to_owned(), "true".to_owned());
                if !labels.contains_key("pdu") {
                    let pdu = match labels.get("rack") {
                        Some(rack) => format!("pdu-{rack}"),
                        None => format!("pdu-{:03}", i / 40 + 1),
                    };
                    labels.insert("pdu".to_owned(), pdu);
                }
            }
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{}: {}", q(k), q(v)))
                .collect();
            let _ = writeln!(
                y,
                "      - {{ name: {}, address: \"{}\", labels: {{ {} }} }}",
                q(&h.name),
                m.address,
                labels.join(", ")
            );
        }
    }
    y
}

fn current_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty()
        {
            return u;
        }
    }
    if super::config::is_root() {
        "root".into()
    } else {
        "nobody".into()
    }
}

/// Writes via a temporary file and rename, so readers never see half a file.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SimError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| SimError::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| SimError::io(path.display(), e))
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), SimError> {
    crate::files::write_private(path, data).map_err(|e| SimError::io(path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_is_valid_and_escapes_names() {
        let names = ["plain", "we\"ird\\name"];
        let board = Board {
            meta: names
                .iter()
                .enumerate()
                .map(|(i, n)| HostMeta {
                    name: (*n).to_owned(),
                    name_json: serde_json::to_string(n).unwrap(),
                    address: Ipv4Addr::new(127, 1, 0, i as u8 + 1),
                    fault: (i == 1).then_some(FaultKind::Flap),
                })
                .collect(),
            initial: HostStatus {
                state: Phase::Up,
                reboots: 0,
                boot_id: String::new(),
                power: HostPower::On,
                power_ons: 0,
                power_cycles: 0,
                reset_at_ms: None,
            },
            status: Mutex::new((vec![None, None], true)),
            failure: Mutex::new(None),
        };
        board.apply(vec![(
            1,
            HostStatus {
                state: Phase::Rebooting,
                reboots: 2,
                boot_id: "b".into(),
                power: HostPower::On,
                power_ons: 1,
                power_cycles: 3,
                reset_at_ms: Some(5),
            },
        )]);
        let text = board.status_json(false, 2222, 8081).expect("changed");
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["hosts"]["we\"ird\\name"]["state"], "rebooting");
        assert_eq!(v["hosts"]["we\"ird\\name"]["fault"], "flap");
        assert_eq!(v["hosts"]["plain"]["reboots"], 0);
        assert_eq!(v["hosts"]["we\"ird\\name"]["power_ons"], 1);
        assert_eq!(v["hosts"]["we\"ird\\name"]["power_cycles"], 3);
        assert_eq!(v["hosts"]["plain"]["power_cycles"], 0);
        assert_eq!(v["hosts"]["we\"ird\\name"]["reset_at_ms"], 5);
        assert_eq!(v["hosts"]["plain"]["power"], "on");
        assert_eq!(
            (v["total_reboots"].as_u64(), v["hosts_up"].as_u64()),
            (Some(2), Some(1))
        );
        assert!(
            board.status_json(false, 2222, 8081).is_none(),
            "unchanged: not rewritten"
        );
        assert!(
            board.status_json(true, 2222, 8081).is_some(),
            "forced refresh"
        );
    }
}
