//! A recording fake [`Connector`] for scheduler tests: scripted per-host
//! behaviour (exit codes, delays, unreachable, reboots and boot ids) and a
//! log of every call with its time on tokio's (paused) clock; and
//! [`FakeBmc`], whose power cycles act on the same fleet.
//!
//! Test-only. Real SSH behaviour is tested against sshd and the simulator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::inventory::Host;
use crate::transport::{
    ConnectError, ConnectErrorKind, Connection, Connector, ExecError, ExecOutput,
};

pub const REBOOT_COMMAND: &str = "systemctl reboot";

/// The boot id of a host's `n`th boot, shaped like the kernel's.
pub fn boot_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reboot {
    /// Goes down at once, answers again after `boot_time` with a new boot id.
    #[default]
    Normal,
    /// The command "succeeds" but nothing happens.
    NoChange,
    /// Goes down and never answers again.
    NeverReturns,
    /// The command returns at once and the host stays up on its old boot
    /// this long (stopping services) before it goes down for `boot_time`.
    Slow(Duration),
}

#[derive(Debug, Clone, Default)]
pub struct Script {
    pub unreachable: bool,
    /// How long each command other than boot id / reboot takes.
    pub delay: Duration,
    /// Exit status per command (default 0).
    pub exits: HashMap<String, u32>,
    pub reboot: Reboot,
    pub boot_time: Duration,
    /// The handshake never finishes: a connect takes its whole timeout.
    pub connect_hangs: bool,
    /// Each handshake takes this long; one given less time times out.
    pub connect_delay: Duration,
    /// A command that panics the host's task (a bug in rekindle, simulated).
    pub panics_on: Option<String>,
    /// A BMC power cycle brings the host back (after `boot_time`, new boot id).
    pub revived_by_cycle: bool,
}

#[derive(Debug)]
struct HostState {
    script: Script,
    boot: u32,
    down_until: Option<Instant>,
    /// A [`Reboot::Slow`] host's moment of going down.
    going_down_at: Option<Instant>,
    reboots: u32,
    /// BMC power cycles received.
    cycles: u32,
}

impl HostState {
    fn new(script: Script) -> HostState {
        HostState {
            script,
            boot: 0,
            down_until: None,
            going_down_at: None,
            reboots: 0,
            cycles: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub at: Duration,
    pub host: String,
    /// `connect`, or the command executed.
    pub what: String,
}

pub struct FakeFleet {
    origin: Instant,
    hosts: Mutex<HashMap<String, HostState>>,
    log: Mutex<Vec<Call>>,
}

impl FakeFleet {
    pub fn new() -> Arc<FakeFleet> {
        Arc::new(FakeFleet {
            origin: Instant::now(),
            hosts: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        })
    }

    pub fn script(&self, host: &str, script: Script) {
        self.hosts
            .lock()
            .unwrap()
            .insert(host.to_owned(), HostState::new(script));
    }

    /// Pretends the host already rebooted once (for resume tests).
    pub fn set_boot(&self, host: &str, boot: u32) {
        if let Some(h) = self.hosts.lock().unwrap().get_mut(host) {
            h.boot = boot;
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }

    pub fn calls_to(&self, host: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.host == host)
            .map(|c| c.what)
            .collect()
    }

    pub fn reboots(&self, host: &str) -> u32 {
        self.hosts
            .lock()
            .unwrap()
            .get(host)
            .map_or(0, |h| h.reboots)
    }

    pub fn power_cycles(&self, host: &str) -> u32 {
        self.hosts.lock().unwrap().get(host).map_or(0, |h| h.cycles)
    }

    pub fn power_cycle_for_test(&self, host: &str) {
        self.power_cycle(host);
    }

    /// A BMC power cycle: counted; the host goes down, and comes back after
    /// its boot time when its script says a cycle revives it.
    fn power_cycle(&self, host: &str) {
        let mut hosts = self.hosts.lock().unwrap();
        let h = hosts
            .entry(host.to_owned())
            .or_insert_with(|| HostState::new(Script::default()));
        h.cycles += 1;
        h.boot += 1;
        if h.script.revived_by_cycle {
            h.script.unreachable = false;
            h.script.reboot = Reboot::Normal;
            h.down_until = Some(Instant::now() + h.script.boot_time);
        } else {
            h.down_until = Some(Instant::now() + Duration::from_secs(1 << 30));
        }
    }

    fn record(&self, host: &str, what: &str) {
        self.log.lock().unwrap().push(Call {
            at: self.origin.elapsed(),
            host: host.to_owned(),
            what: what.to_owned(),
        });
    }

    /// `Some(boot)` when the host answers now.
    fn up(&self, host: &str) -> Option<u32> {
        let mut hosts = self.hosts.lock().unwrap();
        let h = hosts
            .entry(host.to_owned())
            .or_insert_with(|| HostState::new(Script::default()));
        if h.script.unreachable {
            return None;
        }
        if let Some(at) = h.going_down_at.filter(|at| Instant::now() >= *at) {
            h.going_down_at = None;
            h.boot += 1;
            h.down_until = Some(at + h.script.boot_time);
        }
        match h.down_until {
            Some(t) if Instant::now() < t => None,
            _ => Some(h.boot),
        }
    }
}

pub struct FakeConnector(pub Arc<FakeFleet>);

pub struct FakeSession {
    fleet: Arc<FakeFleet>,
    host: String,
    boot: u32,
}

impl Connector for FakeConnector {
    type Connection = FakeSession;

    async fn connect(&self, host: &Host, timeout: Duration) -> Result<FakeSession, ConnectError> {
        self.0.record(&host.name, "connect");
        let delay = self
            .0
            .hosts
            .lock()
            .unwrap()
            .get(&host.name)
            .map_or(Duration::ZERO, |h| {
                if h.script.connect_hangs {
                    Duration::MAX
                } else {
                    h.script.connect_delay
                }
            });
        tokio::time::sleep(delay.min(timeout)).await;
        if delay > timeout {
            return Err(ConnectError {
                kind: ConnectErrorKind::Timeout,
                message: format!("{}: handshake timed out", host.name),
            });
        }
        match self.0.up(&host.name) {
            Some(boot) => Ok(FakeSession {
                fleet: Arc::clone(&self.0),
                host: host.name.clone(),
                boot,
            }),
            None => Err(ConnectError {
                kind: ConnectErrorKind::Unreachable,
                message: format!("{}: connection refused", host.name),
            }),
        }
    }
}

impl Connection for FakeSession {
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, ExecError> {
        self.fleet.record(&self.host, command);
        if self.is_closed() {
            return Err(ExecError::Disconnected);
        }
        let panics = self
            .fleet
            .hosts
            .lock()
            .unwrap()
            .get(&self.host)
            .is_some_and(|h| h.script.panics_on.as_deref() == Some(command));
        assert!(!panics, "simulated bug on {}", self.host);
        if command == crate::engine::steps::BOOT_ID_COMMAND {
            return Ok(ExecOutput {
                exit_status: Some(0),
                output: format!("{}\n", boot_id(self.boot)),
            });
        }
        let (delay, exit) = {
            let mut hosts = self.fleet.hosts.lock().unwrap();
            let Some(h) = hosts.get_mut(&self.host) else {
                return Err(ExecError::Disconnected);
            };
            if command == REBOOT_COMMAND {
                h.reboots += 1;
                match h.script.reboot {
                    Reboot::NoChange => {}
                    Reboot::Normal => {
                        h.boot += 1;
                        h.down_until = Some(Instant::now() + h.script.boot_time);
                    }
                    Reboot::NeverReturns => {
                        h.boot += 1;
                        h.down_until = Some(Instant::now() + Duration::from_secs(1 << 30));
                    }
                    Reboot::Slow(after) => h.going_down_at = Some(Instant::now() + after),
                }
                return match h.script.reboot {
                    Reboot::NoChange | Reboot::Slow(_) => Ok(ExecOutput {
                        exit_status: Some(0),
                        output: String::new(),
                    }),
                    _ => Err(ExecError::Disconnected),
                };
            }
            (
                h.script.delay,
                h.script.exits.get(command).copied().unwrap_or(0),
            )
        };
        if delay > timeout {
            tokio::time::sleep(timeout).await;
            return Err(ExecError::Timeout(timeout));
        }
        tokio::time::sleep(delay).await;
        Ok(ExecOutput {
            exit_status: Some(exit),
            output: format!("ran {command}\n"),
        })
    }

    fn is_closed(&self) -> bool {
        self.fleet.up(&self.host) != Some(self.boot)
    }

    async fn closed(&self) {
        while !self.is_closed() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A recording fake BMC for the hosts of a [`Fleet`]: a host's `bmc` label
/// is `http://NAME`; a reset of type PowerCycle or ForceRestart power-cycles
/// that host. Logs `login`, `get`, `reset TYPE`, `logout` per host, with
/// time, into the fleet's call log as `bmc login` and so on.
#[derive(Debug)]
pub struct FakeBmc {
    fleet: Arc<FakeFleet>,
    /// The system's `ResetType@Redfish.AllowableValues` (`None`: not given).
    pub allowed: Option<Vec<String>>,
    /// PowerState every system reports until a reset changes it.
    pub power_state: &'static str,
    /// Per host, once a reset changed it.
    states: Mutex<HashMap<String, &'static str>>,
}

impl std::fmt::Debug for FakeFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFleet").finish_non_exhaustive()
    }
}

impl FakeBmc {
    pub fn new(fleet: &Arc<FakeFleet>) -> FakeBmc {
        FakeBmc {
            fleet: Arc::clone(fleet),
            allowed: Some(vec![
                "On".into(),
                "ForceRestart".into(),
                "PowerCycle".into(),
            ]),
            power_state: "On",
            states: Mutex::new(HashMap::new()),
        }
    }

    fn host(bmc: &Endpoint) -> String {
        bmc.as_str().trim_start_matches("http://").to_owned()
    }
}

use crate::transport::redfish::{Auth, Bmc, BmcFuture, Endpoint};

impl Bmc for FakeBmc {
    fn login<'a>(&'a self, bmc: &'a Endpoint, account: Option<&'a str>) -> BmcFuture<'a, Auth> {
        Box::pin(async move {
            self.fleet.record(&FakeBmc::host(bmc), "bmc login");
            Ok(Auth::Basic {
                account: account.map(str::to_owned),
            })
        })
    }

    fn get<'a>(
        &'a self,
        bmc: &'a Endpoint,
        _auth: &'a Auth,
        path: &'a str,
    ) -> BmcFuture<'a, serde_json::Value> {
        Box::pin(async move {
            self.fleet.record(&FakeBmc::host(bmc), "bmc get");
            if path == crate::transport::redfish::SYSTEMS_PATH {
                return Ok(
                    serde_json::json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}),
                );
            }
            let mut reset =
                serde_json::json!({"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"});
            if let Some(allowed) = &self.allowed {
                reset["ResetType@Redfish.AllowableValues"] = serde_json::json!(allowed);
            }
            Ok(serde_json::json!({
                "PowerState": self
                    .states
                    .lock()
                    .unwrap()
                    .get(&FakeBmc::host(bmc))
                    .copied()
                    .unwrap_or(self.power_state),
                "Actions": {"#ComputerSystem.Reset": reset},
            }))
        })
    }

    fn reset<'a>(
        &'a self,
        bmc: &'a Endpoint,
        _auth: &'a Auth,
        _target: &'a str,
        reset_type: &'a str,
    ) -> BmcFuture<'a, ()> {
        Box::pin(async move {
            let host = FakeBmc::host(bmc);
            self.fleet.record(&host, &format!("bmc reset {reset_type}"));
            if matches!(reset_type, "PowerCycle" | "ForceRestart" | "On") {
                self.fleet.power_cycle(&host);
                let revived = self
                    .fleet
                    .hosts
                    .lock()
                    .unwrap()
                    .get(&host)
                    .is_some_and(|h| h.script.revived_by_cycle);
                if revived {
                    self.states.lock().unwrap().insert(host, "On");
                }
            }
            Ok(())
        })
    }

    fn logout<'a>(&'a self, bmc: &'a Endpoint, _auth: &'a Auth) -> BmcFuture<'a, ()> {
        Box::pin(async move {
            self.fleet.record(&FakeBmc::host(bmc), "bmc logout");
            Ok(())
        })
    }
}
