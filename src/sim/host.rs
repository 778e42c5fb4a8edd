//! One simulated host: its boot cycle (up, rebooting, flapping, down), its
//! listeners (SSH and HTTP health on its own loopback address), and the faults
//! that bend that cycle. The SSH protocol and the commands live in `ssh`;
//! this module owns only state and sockets.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::config::{BootTime, FaultKind, mix};
use super::{SimError, ssh};

/// Sessions of a host are dropped this long after it accepts a reboot, so the
/// reboot command's own exit status reaches the client first.
const REBOOT_GRACE: Duration = Duration::from_millis(100);
/// How long a flapping host stays up between its disappearances.
const FLAP_UP: Duration = Duration::from_secs(1);
/// A hung handshake is held at most this long (bounded even if the client never gives up).
const HANG_CAP: Duration = Duration::from_secs(600);

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
pub enum Power {
    #[default]
    On,
    Off,
    PoweringOn,
}

impl Power {
    pub fn as_str(self) -> &'static str {
        match self {
            Power::On => "on",
            Power::Off => "off",
            Power::PoweringOn => "powering_on",
        }
    }

    /// The Redfish spelling.
    pub fn redfish(self) -> &'static str {
        match self {
            Power::On => "On",
            Power::Off => "Off",
            Power::PoweringOn => "PoweringOn",
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
    pub power: Power,
    /// Reset actions its BMC received.
    #[serde(default)]
    pub power_ons: u32,
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
    pub boot_time: BootTime,
    pub seed: u64,
    /// The BMCs of a powered-off fleet.
    pub bmc: Option<super::bmc::BmcConfig>,
}

struct State {
    phase: Phase,
    boot_id: [u8; 16],
    /// Reboot commands received (including ones a `no_reboot` host ignored).
    reboots: u32,
    /// Completed boots after the first; seeds the boot time and boot id.
    boots: u32,
    flaps_left: u8,
    reboot_pending: bool,
    power: Power,
    power_ons: u32,
    reset_at_ms: Option<u64>,
    /// Changed since the last status delta.
    dirty: bool,
}

pub(crate) struct HostCore {
    /// Index in the whole fleet (not the shard).
    pub idx: usize,
    pub name: String,
    pub address: Ipv4Addr,
    pub fault: Option<FaultKind>,
    state: Mutex<State>,
    /// Bumped whenever the host goes away: every connection task watches it.
    epoch: watch::Sender<u64>,
    wake: Notify,
    /// The power button: a BMC reset action on a host that is off.
    power_button: Notify,
}

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
                power: Power::On,
                power_ons: 0,
                reset_at_ms: None,
                dirty: true,
            }),
            epoch: watch::Sender::new(0),
            wake: Notify::new(),
            power_button: Notify::new(),
        }
    }

    /// Starts the host powered off (nothing listens until a BMC powers it on).
    pub fn powered_off(self) -> Self {
        {
            let mut s = self.lock();
            s.power = Power::Off;
            s.phase = Phase::Off;
        }
        self
    }

    pub fn power(&self) -> Power {
        self.lock().power
    }

    /// A BMC reset action: counted; powers the host on when it is off, and
    /// reboots it for a restart type when it is on. Unknown types are refused.
    pub fn reset(&self, reset_type: &str) -> Result<(), String> {
        let restart = match reset_type {
            "On" | "ForceOn" => false,
            "ForceRestart" | "GracefulRestart" | "PowerCycle" => true,
            other => return Err(format!("unsupported ResetType `{other}`")),
        };
        let mut s = self.lock();
        s.power_ons += 1;
        s.reset_at_ms = Some(unix_ms());
        s.dirty = true;
        match s.power {
            Power::Off => {
                s.power = Power::PoweringOn;
                drop(s);
                self.power_button.notify_one();
            }
            Power::On if restart => {
                drop(s);
                self.request_reboot();
            }
            Power::On | Power::PoweringOn => {}
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
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
            reset_at_ms: s.reset_at_ms,
        })
    }

    fn set_phase(&self, phase: Phase) {
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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn new_boot_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    // Shaped like a version-4 UUID, as the kernel's boot_id is.
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

fn format_boot_id(id: &[u8; 16]) -> String {
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

/// Binds a listener the way a restarting daemon would (SO_REUSEADDR, so a
/// port left in TIME_WAIT by the previous boot does not block it).
pub(crate) fn bind(address: Ipv4Addr, port: u16) -> Result<TcpListener, SimError> {
    let addr = SocketAddr::from((address, port));
    let std = StdListener::bind(addr).map_err(|e| SimError::bind(addr, e))?;
    std.set_nonblocking(true)
        .map_err(|e| SimError::bind(addr, e))?;
    TcpListener::from_std(std).map_err(|e| SimError::bind(addr, e))
}

/// What took the host down, which decides how long and how it comes back.
enum Outage {
    Reboot,
    Flap,
}

/// Runs one host forever: serve while up, go away on reboot or flap, come back.
/// `listeners` are the first boot's (bound by the caller, so bind errors surface at start).
pub(crate) async fn run(
    core: Arc<HostCore>,
    shared: Arc<Shared>,
    mut listeners: Option<(TcpListener, TcpListener)>,
) {
    if core.power() != Power::On {
        power_up(&core, &shared).await;
    }
    loop {
        let (ssh_l, http_l) = match listeners.take() {
            Some(l) => l,
            None => match rebind(&core, &shared).await {
                Some(l) => l,
                None => {
                    core.set_phase(Phase::Broken);
                    return;
                }
            },
        };
        let flap_timer = {
            let s = core.lock();
            (s.boots > 0 && s.flaps_left > 0).then_some(FLAP_UP)
        };
        let outage = serve(&core, &shared, &ssh_l, &http_l, flap_timer).await;
        drop((ssh_l, http_l));
        core.drop_connections();
        match outage {
            Outage::Reboot => {
                let (boot_no, phase) = {
                    let mut s = core.lock();
                    s.reboot_pending = false;
                    s.phase = if core.fault == Some(FaultKind::NeverReturns) {
                        Phase::Down
                    } else {
                        Phase::Rebooting
                    };
                    s.dirty = true;
                    (s.boots + 1, s.phase)
                };
                if phase == Phase::Down {
                    // Never returns: nothing listens on this address again.
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(boot_duration(&shared, &core, boot_no)).await;
                let mut s = core.lock();
                s.boots = boot_no;
                s.boot_id = new_boot_id();
                s.phase = Phase::Up;
                s.dirty = true;
            }
            Outage::Flap => {
                core.set_phase(Phase::Flapping);
                tokio::time::sleep(flap_duration(&shared, &core)).await;
                let mut s = core.lock();
                s.flaps_left = s.flaps_left.saturating_sub(1);
                s.phase = Phase::Up;
                s.dirty = true;
            }
        }
    }
}

/// Off until the power button is pressed, then PoweringOn for the BMC's
/// delay (forever with `stuck_powering_on`), then a boot of the host's boot
/// time. Returns when the host should start listening.
async fn power_up(core: &HostCore, shared: &Shared) {
    // Bounded by the fleet's life: the host task is aborted when it stops.
    while core.power() == Power::Off {
        core.power_button.notified().await;
    }
    if core.fault == Some(FaultKind::StuckPoweringOn) {
        std::future::pending::<()>().await;
    }
    let delay = shared
        .bmc
        .as_ref()
        .map_or(Duration::ZERO, |b| b.power_on_delay);
    tokio::time::sleep(delay).await;
    let boot_no = {
        let mut s = core.lock();
        s.power = Power::On;
        // Booting: refuses connections like a rebooting host.
        s.phase = Phase::Rebooting;
        s.dirty = true;
        s.boots + 1
    };
    tokio::time::sleep(boot_duration(shared, core, boot_no)).await;
    let mut s = core.lock();
    s.boots = boot_no;
    s.boot_id = new_boot_id();
    s.phase = Phase::Up;
    s.dirty = true;
}

/// How long boot number `boot_no` takes (`slow_boot`: five times as long).
fn boot_duration(shared: &Shared, core: &HostCore, boot_no: u32) -> Duration {
    let boot = shared.boot_time.sample(shared.seed, core.idx, boot_no);
    if core.fault == Some(FaultKind::SlowBoot) {
        boot * 5
    } else {
        boot
    }
}

/// How long a flapping host stays away: half a boot, at least a second, so
/// a poller has a fair chance to notice.
fn flap_duration(shared: &Shared, core: &HostCore) -> Duration {
    shared
        .boot_time
        .sample(shared.seed, core.idx, u32::MAX)
        .div_f64(2.0)
        .max(Duration::from_secs(1))
}

async fn rebind(core: &HostCore, shared: &Shared) -> Option<(TcpListener, TcpListener)> {
    // Bounded: the previous boot's sockets close at once, so a few tries suffice.
    for _ in 0..50 {
        if let (Ok(s), Ok(h)) = (
            bind(core.address, shared.port),
            bind(core.address, shared.http_port),
        ) {
            return Some((s, h));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

async fn serve(
    core: &Arc<HostCore>,
    shared: &Arc<Shared>,
    ssh_l: &TcpListener,
    http_l: &TcpListener,
    flap_after: Option<Duration>,
) -> Outage {
    let flap = async {
        match flap_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(flap);
    loop {
        tokio::select! {
            accepted = ssh_l.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    if core.fault == Some(FaultKind::HangHandshake) {
                        tokio::spawn(hang(stream, core.subscribe()));
                    } else {
                        ssh::serve_connection(core.clone(), shared.clone(), stream);
                    }
                }
                Err(_) => accept_backoff().await,
            },
            accepted = http_l.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_http(core.clone(), stream));
                }
                Err(_) => accept_backoff().await,
            },
            () = core.wake.notified() => {
                // Let the reboot command's reply reach the client before the plug is pulled.
                tokio::time::sleep(REBOOT_GRACE).await;
                return Outage::Reboot;
            }
            () = &mut flap => return Outage::Flap,
        }
    }
}

/// After a failed accept (typically out of descriptors: EMFILE), pause
/// instead of spinning; the pending connection waits in the backlog.
async fn accept_backoff() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Holds a TCP connection without ever sending the SSH banner.
async fn hang(mut stream: TcpStream, mut epoch: watch::Receiver<u64>) {
    let mut buf = [0u8; 512];
    let held = async {
        // Reads until the client gives up; the bytes are discarded.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = held => {}
        _ = epoch.changed() => {}
        () = tokio::time::sleep(HANG_CAP) => {}
    }
}

async fn serve_http(core: Arc<HostCore>, stream: TcpStream) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};

    let mut epoch = core.subscribe();
    let svc_core = core.clone();
    let service = hyper::service::service_fn(move |_req| {
        let healthy = svc_core.healthy();
        async move {
            let (status, body) = if healthy {
                (StatusCode::OK, "ok\n")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "unhealthy\n")
            };
            Response::builder()
                .status(status)
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = epoch.changed() => {}
        () = tokio::time::sleep(HANG_CAP) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_look_like_the_kernels() {
        let id = format_boot_id(&new_boot_id());
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_ne!(id, format_boot_id(&new_boot_id()));
    }

    fn shared(boot: Duration) -> Shared {
        let key = russh::keys::PrivateKey::from(
            russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]),
        );
        Shared {
            ssh_config: Arc::new(crate::sim::ssh::server_config(key.clone())),
            client_key: key.public_key().clone(),
            port: 1,
            http_port: 2,
            boot_time: BootTime::fixed(boot),
            seed: 1,
            bmc: None,
        }
    }

    #[test]
    fn slow_boot_takes_five_times_as_long() {
        let sh = shared(Duration::from_secs(2));
        let slow = HostCore::new(
            0,
            "h".into(),
            Ipv4Addr::LOCALHOST,
            Some(FaultKind::SlowBoot),
            1,
        );
        let normal = HostCore::new(1, "h".into(), Ipv4Addr::LOCALHOST, None, 1);
        assert_eq!(boot_duration(&sh, &slow, 1), Duration::from_secs(10));
        assert_eq!(boot_duration(&sh, &normal, 1), Duration::from_secs(2));
        assert_eq!(flap_duration(&sh, &normal), Duration::from_secs(1));
        assert_eq!(
            flap_duration(&shared(Duration::from_secs(30)), &normal),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn no_reboot_counts_but_keeps_boot_id() {
        let core = HostCore::new(
            0,
            "h".into(),
            Ipv4Addr::LOCALHOST,
            Some(FaultKind::NoReboot),
            1,
        );
        let before = core.boot_id();
        core.request_reboot();
        let s = core.status();
        assert_eq!((s.reboots, s.state, s.boot_id), (1, Phase::Up, before));
    }
}
