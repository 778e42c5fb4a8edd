//! One simulated host's state: its phase and power, its boot id, its fault,
//! and the status it reports. The listeners that serve it are `host`'s, the
//! SSH protocol `ssh`'s, the BMC `bmc`'s; all of them read and change a host
//! through [`HostCore`], and this module imports none of them: only the
//! fleet's shape (`config`).

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::config::{BootTimeRange, FaultKind, mix};

/// How long a flapping host stays up between its disappearances.
pub(super) const FLAP_UP: Duration = Duration::from_secs(1);
/// A hung handshake is held at most this long (bounded even if the client never gives up).
pub(super) const HANG_CAP: Duration = Duration::from_secs(600);

/// Where a host is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Up,
    /// Between a reboot and the end of its boot time: connections refused.
    Rebooting,
    /// Gone for a moment after coming back (the `flap` fault); same boot id.
    Flapping,
    /// Rebooted and never came back (the `never_returns` fault).
    Down,
    /// A listener could not be bound again after a reboot.
    Broken,
    /// Powered off (or powering on): nothing but its BMC answers.
    Off,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Up => "up",
            Phase::Rebooting => "rebooting",
            Phase::Flapping => "flapping",
            Phase::Down => "down",
            Phase::Broken => "broken",
            Phase::Off => "off",
        }
    }
}

/// A host's `PowerState` as its BMC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostPower {
    #[default]
    On,
    Off,
    PoweringOn,
}

impl HostPower {
    pub fn as_str(self) -> &'static str {
        match self {
            HostPower::On => "on",
            HostPower::Off => "off",
            HostPower::PoweringOn => "powering_on",
        }
    }

    /// The Redfish spelling.
    pub fn redfish(self) -> &'static str {
        match self {
            HostPower::On => "On",
            HostPower::Off => "Off",
            HostPower::PoweringOn => "PoweringOn",
        }
    }
}

/// A host's externally visible state, as status.json shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub state: Phase,
    pub reboots: u32,
    pub boot_id: String,
    #[serde(default)]
    pub power: HostPower,
    /// Power-on reset actions its BMC received (`On`, `ForceOn`, `GracefulRestart`).
    #[serde(default)]
    pub power_ons: u32,
    /// Power cycles its BMC received (`PowerCycle`, `ForceRestart`).
    #[serde(default)]
    pub power_cycles: u32,
    /// When the last reset action arrived (Unix ms).
    #[serde(default)]
    pub reset_at_ms: Option<u64>,
}

/// Fleet-wide, read-only things every host shares (one copy per process).
pub(crate) struct Shared {
    pub ssh_config: Arc<russh::server::Config>,
    pub client_key: russh::keys::PublicKey,
    pub port: u16,
    pub http_port: u16,
    pub boot_time: BootTimeRange,
    /// See [`super::config::REBOOT_GRACE`].
    pub reboot_grace: Duration,
    pub seed: u64,
    /// The BMCs of a powered-off fleet.
    pub bmc: Option<super::config::BmcConfig>,
}

pub(super) struct State {
    pub(super) phase: Phase,
    pub(super) boot_id: [u8; 16],
    /// Reboot commands received (including ones a `no_reboot` host ignored).
    pub(super) reboots: u32,
    /// Completed boots after the first; seeds the boot time and boot id.
    pub(super) boots: u32,
    pub(super) flaps_left: u8,
    pub(super) reboot_pending: bool,
    pub(super) power: HostPower,
    pub(super) power_ons: u32,
    pub(super) power_cycles: u32,
    /// A power cycle cured its `never_returns` or `stuck_powering_on` fault.
    pub(super) cured: bool,
    pub(super) reset_at_ms: Option<u64>,
    /// Changed since the last status delta.
    pub(super) dirty: bool,
}

pub(crate) struct HostCore {
    /// Index in the whole fleet (not the shard).
    pub idx: usize,
    /// What `cat /proc/net/tcp` prints (`sim --deps`); empty: the header alone.
    pub sockets: String,
    /// What its BMC says it does when power returns (`PowerRestorePolicy`)
    /// and where its next boot is pointed (`BootSourceOverrideTarget`, `None`:
    /// no override): the host labels `sim_power_restore_policy` and
    /// `sim_boot_override`, for `rekindle audit`.
    pub restore_policy: String,
    pub boot_override: Option<String>,
    pub name: String,
    pub address: Ipv4Addr,
    pub fault: Option<FaultKind>,
    pub(super) state: Mutex<State>,
    /// Bumped whenever the host goes away: every connection task watches it.
    pub(super) epoch: watch::Sender<u64>,
    pub(super) wake: Notify,
    /// The power button: a BMC reset action on a host that is off.
    pub(super) power_button: Notify,
    /// A BMC power cycle of a host that is on (or stuck powering on).
    pub(super) cycled: Notify,
    /// The chance that a power cycle cures its fault (`--fail KIND=F:recover=P`).
    pub recover: f64,
    seed: u64,
}

/// What most servers ship with: power comes back as it was.
pub const DEFAULT_RESTORE_POLICY: &str = "LastState";

impl HostCore {
    pub fn new(
        idx: usize,
        name: String,
        address: Ipv4Addr,
        fault: Option<FaultKind>,
        seed: u64,
    ) -> Self {
        let flaps = 1 + (mix(seed ^ idx as u64 ^ 0xF1A9) % 2) as u8;
        HostCore {
            idx,
            sockets: String::new(),
            restore_policy: DEFAULT_RESTORE_POLICY.to_owned(),
            boot_override: None,
            name,
            address,
            fault,
            state: Mutex::new(State {
                phase: Phase::Up,
                boot_id: new_boot_id(),
                reboots: 0,
                boots: 0,
                flaps_left: if fault == Some(FaultKind::Flap) {
                    flaps
                } else {
                    0
                },
                reboot_pending: false,
                power: HostPower::On,
                power_ons: 0,
                power_cycles: 0,
                cured: false,
                reset_at_ms: None,
                dirty: true,
            }),
            epoch: watch::Sender::new(0),
            wake: Notify::new(),
            power_button: Notify::new(),
            cycled: Notify::new(),
            recover: 0.0,
            seed,
        }
    }

    /// Starts the host powered off (nothing listens until a BMC powers it on).
    pub fn powered_off(self) -> Self {
        {
            let mut s = self.lock();
            s.power = HostPower::Off;
            s.phase = Phase::Off;
        }
        self
    }

    pub fn power(&self) -> HostPower {
        self.lock().power
    }

    /// A BMC reset action: counted; powers the host on when it is off, and
    /// reboots it for a restart type when it is on. `PowerCycle` and
    /// `ForceRestart` are power cycles: counted apart, they cut the power of
    /// a host in any state (a hung one too) and may cure its fault (at the
    /// `recover` chance, drawn per cycle from the seed). Unknown types are refused.
    pub fn reset(&self, reset_type: &str) -> Result<(), String> {
        let restart = match reset_type {
            // The button of a host that is On would start a graceful
            // shutdown; the simulator does not model that, so it is a no-op.
            "On" | "ForceOn" | "PushPowerButton" => false,
            "GracefulRestart" => true,
            "ForceRestart" | "PowerCycle" => {
                self.power_cycle();
                return Ok(());
            }
            other => return Err(format!("unsupported ResetType `{other}`")),
        };
        let mut s = self.lock();
        s.power_ons += 1;
        s.reset_at_ms = Some(unix_ms());
        s.dirty = true;
        match s.power {
            HostPower::Off => {
                s.power = HostPower::PoweringOn;
                drop(s);
                self.power_button.notify_one();
            }
            HostPower::On if restart => {
                drop(s);
                self.request_reboot();
            }
            HostPower::On | HostPower::PoweringOn => {}
        }
        Ok(())
    }

    fn power_cycle(&self) {
        let mut s = self.lock();
        s.power_cycles += 1;
        s.reset_at_ms = Some(unix_ms());
        s.dirty = true;
        let curable = self.fault.is_some_and(super::config::cycle_may_cure);
        if curable && !s.cured {
            let draw = mix(self.seed
                ^ (self.idx as u64).wrapping_mul(0xC3C1_E5A7)
                ^ u64::from(s.power_cycles) << 40);
            s.cured = (draw as f64 / u64::MAX as f64) < self.recover;
        }
        if s.power == HostPower::Off {
            s.power = HostPower::PoweringOn;
            drop(s);
            self.power_button.notify_one();
        } else {
            drop(s);
            self.cycled.notify_one();
        }
    }

    /// Whether the host still carries `fault` (a power cycle may have cured it).
    pub(super) fn has(&self, fault: FaultKind) -> bool {
        self.fault == Some(fault) && !self.lock().cured
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn boot_id(&self) -> String {
        format_boot_id(&self.lock().boot_id)
    }

    /// Healthy: up and not carrying the `unhealthy` fault.
    pub fn healthy(&self) -> bool {
        self.fault != Some(FaultKind::Unhealthy) && self.lock().phase == Phase::Up
    }

    /// A reboot command arrived: count it, and (unless the host ignores
    /// reboots) take the host down shortly.
    pub fn request_reboot(&self) {
        let mut s = self.lock();
        s.reboots += 1;
        s.dirty = true;
        if self.fault == Some(FaultKind::NoReboot) || s.reboot_pending {
            return;
        }
        s.reboot_pending = true;
        drop(s);
        self.wake.notify_one();
    }

    pub fn status(&self) -> HostStatus {
        let s = self.lock();
        HostStatus {
            state: s.phase,
            reboots: s.reboots,
            boot_id: format_boot_id(&s.boot_id),
            power: s.power,
            power_ons: s.power_ons,
            power_cycles: s.power_cycles,
            reset_at_ms: s.reset_at_ms,
        }
    }

    /// The status if it changed since the last call.
    pub fn take_dirty(&self) -> Option<HostStatus> {
        let mut s = self.lock();
        if !s.dirty {
            return None;
        }
        s.dirty = false;
        Some(HostStatus {
            state: s.phase,
            reboots: s.reboots,
            boot_id: format_boot_id(&s.boot_id),
            power: s.power,
            power_ons: s.power_ons,
            power_cycles: s.power_cycles,
            reset_at_ms: s.reset_at_ms,
        })
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        let mut s = self.lock();
        s.phase = phase;
        s.dirty = true;
    }

    /// Drops every connection of this host (pulls the plug).
    pub fn drop_connections(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(super) fn new_boot_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    // Shaped like a version-4 UUID, as the kernel's boot_id is.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

pub(super) fn format_boot_id(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
