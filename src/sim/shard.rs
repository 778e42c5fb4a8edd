//! A shard: the hosts one process serves. Runs in-process for small fleets, or
//! in a worker process (`rekindle sim-worker`, hidden) that reads its
//! [`ShardSpec`] as one JSON line on stdin, reports [`WorkerMsg`] lines on
//! stdout, and stops when stdin closes (so it never outlives its parent).
//! Owns the worker protocol; the fleet-level view (files, merging) is `fleet`.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::AbortHandle;

use super::SimError;
use super::config::{BootTimeRange, FaultKind};
use super::core::{HostCore, HostStatus, Shared};
use super::host;

/// How often a shard reports changed hosts.
pub(crate) const DELTA_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShardHost {
    /// Index in the whole fleet.
    pub idx: usize,
    pub name: String,
    pub address: Ipv4Addr,
    pub fault: Option<FaultKind>,
    /// The entry of the fleet's BMC credentials its BMC accepts (its
    /// `bmc_credentials` label); `None`: the default account.
    #[serde(default)]
    pub bmc_account: Option<String>,
    /// The chance that a BMC power cycle cures its fault.
    #[serde(default)]
    pub recover: f64,
    /// Its `/proc/net/tcp` (`sim --deps`); empty: the header alone.
    #[serde(default)]
    pub sockets: String,
    /// Its BMC's `PowerRestorePolicy` (`None`: the default).
    #[serde(default)]
    pub restore_policy: Option<String>,
    /// Its BMC's one-time boot override target, if any.
    #[serde(default)]
    pub boot_override: Option<String>,
}

/// What a shard serves. Sent to workers on stdin (never on the command line:
/// it carries the host private key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShardSpec {
    pub hosts: Vec<ShardHost>,
    pub port: u16,
    pub http_port: u16,
    pub boot_time: BootTimeRange,
    /// See [`super::config::REBOOT_GRACE`].
    #[serde(default = "default_reboot_grace")]
    pub reboot_grace: std::time::Duration,
    pub seed: u64,
    /// OpenSSH-format private host key (one for the fleet).
    pub host_key: String,
    /// OpenSSH-format public key of the only client allowed in.
    pub client_key: String,
    /// Fleets with BMCs: each host has a Redfish BMC.
    #[serde(default)]
    pub bmc: Option<super::config::BmcConfig>,
    /// Hosts start off (only with `bmc`): nothing but the BMC listens.
    #[serde(default)]
    pub powered_off: bool,
}

fn default_reboot_grace() -> std::time::Duration {
    super::config::REBOOT_GRACE
}

/// A worker's report, one JSON object per stdout line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorkerMsg {
    Ready { hosts: usize },
    Delta { hosts: Vec<(usize, HostStatus)> },
    Final { hosts: Vec<(usize, HostStatus)> },
    Error { message: String },
}

/// Hosts served by this process.
pub(crate) struct ShardRuntime {
    hosts: Vec<Arc<HostCore>>,
    tasks: Vec<AbortHandle>,
}

impl ShardRuntime {
    /// Binds every listener (errors surface here), then starts the hosts.
    /// Must run inside a tokio runtime.
    pub fn start(spec: &ShardSpec) -> Result<ShardRuntime, SimError> {
        let host_key = russh::keys::PrivateKey::from_openssh(spec.host_key.as_bytes())
            .map_err(|e| SimError::key(e.to_string()))?;
        let client_key = russh::keys::PublicKey::from_openssh(spec.client_key.trim())
            .map_err(|e| SimError::key(e.to_string()))?;
        let shared = Arc::new(Shared {
            ssh_config: Arc::new(super::ssh::server_config(host_key)),
            client_key,
            port: spec.port,
            http_port: spec.http_port,
            boot_time: spec.boot_time,
            reboot_grace: spec.reboot_grace,
            seed: spec.seed,
            bmc: spec.bmc.clone(),
        });
        // A powered-off host listens only with its BMC (a `bmc_unreachable`
        // one not even that, at first); SSH and HTTP bind when it boots.
        let powered_off = spec.powered_off && spec.bmc.is_some();
        let mut listeners = Vec::with_capacity(spec.hosts.len());
        for h in &spec.hosts {
            let host = if powered_off {
                None
            } else {
                Some((
                    super::net::bind(h.address, spec.port)?,
                    super::net::bind(h.address, spec.http_port)?,
                ))
            };
            let bmc = match &spec.bmc {
                Some(_) if h.fault == Some(FaultKind::BmcUnreachable) => None,
                Some(b) => Some(super::net::bind(h.address, b.port)?),
                None => None,
            };
            listeners.push((host, bmc));
        }
        let mut hosts = Vec::with_capacity(spec.hosts.len());
        let mut tasks = Vec::with_capacity(spec.hosts.len());
        for (h, (l, bmc_l)) in spec.hosts.iter().zip(listeners) {
            let mut core = HostCore::new(h.idx, h.name.clone(), h.address, h.fault, spec.seed);
            if powered_off {
                core = core.powered_off();
            }
            core.recover = h.recover;
            core.sockets = h.sockets.clone();
            if let Some(p) = &h.restore_policy {
                core.restore_policy = p.clone();
            }
            core.boot_override = h.boot_override.clone();
            let core = Arc::new(core);
            let task = tokio::spawn(host::run(core.clone(), shared.clone(), l));
            tasks.push(task.abort_handle());
            if spec.bmc.is_some() {
                let bmc = tokio::spawn(super::bmc::run(
                    core.clone(),
                    shared.clone(),
                    bmc_l,
                    h.bmc_account.clone(),
                ));
                tasks.push(bmc.abort_handle());
            }
            hosts.push(core);
        }
        Ok(ShardRuntime { hosts, tasks })
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts whose status changed since the last call.
    pub fn deltas(&self) -> Vec<(usize, HostStatus)> {
        self.hosts
            .iter()
            .filter_map(|h| h.take_dirty().map(|s| (h.idx, s)))
            .collect()
    }

    pub fn all(&self) -> Vec<(usize, HostStatus)> {
        self.hosts.iter().map(|h| (h.idx, h.status())).collect()
    }

    /// Stops every host and drops every connection.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
        for h in &self.hosts {
            h.drop_connections();
        }
    }
}

impl Drop for ShardRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The worker process: serve the spec read from stdin until stdin closes.
pub async fn run_worker() -> Result<(), SimError> {
    let io = |e: std::io::Error| SimError::worker(format!("worker i/o: {e}"));
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut stdout = tokio::io::stdout();
    let mut line = String::new();
    stdin.read_line(&mut line).await.map_err(io)?;
    let spec: ShardSpec = serde_json::from_str(&line)
        .map_err(|e| SimError::worker(format!("bad shard spec: {e}")))?;
    drop(line);
    let shard = match ShardRuntime::start(&spec) {
        Ok(s) => s,
        Err(e) => {
            send(
                &mut stdout,
                &WorkerMsg::Error {
                    message: e.to_string(),
                },
            )
            .await
            .map_err(io)?;
            return Err(e);
        }
    };
    send(&mut stdout, &WorkerMsg::Ready { hosts: shard.len() })
        .await
        .map_err(io)?;
    let mut tick = tokio::time::interval(DELTA_INTERVAL);
    let mut rest = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let hosts = shard.deltas();
                if !hosts.is_empty() {
                    send(&mut stdout, &WorkerMsg::Delta { hosts }).await.map_err(io)?;
                }
            }
            // EOF (or anything else: the parent only ever closes stdin) means stop.
            _ = tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut rest) => break,
        }
    }
    shard.stop();
    send(&mut stdout, &WorkerMsg::Final { hosts: shard.all() })
        .await
        .map_err(io)?;
    Ok(())
}

async fn send(out: &mut tokio::io::Stdout, msg: &WorkerMsg) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}
