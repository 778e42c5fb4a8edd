//! One simulated host's life: its boot cycle (up, rebooting, flapping,
//! down, power-cycled by its BMC) and its listeners (SSH and HTTP health on its own loopback
//! address). Its state is `core`'s; the SSH protocol and the commands live
//! in `ssh`; binding is `net`'s; this module owns only the cycle and its
//! listeners.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::config::FaultKind;
use super::core::*;
use super::net::bind;
use super::ssh;

/// What took the host down, which decides how long and how it comes back.
enum Outage {
    Reboot,
    Flap,
    /// Its BMC cut the power and restored it.
    Cycle,
}

/// Runs one host forever: serve while up, go away on reboot or flap, come back.
/// `listeners` are the first boot's (bound by the caller, so bind errors surface at start).
pub(crate) async fn run(
    core: Arc<HostCore>,
    shared: Arc<Shared>,
    mut listeners: Option<(TcpListener, TcpListener)>,
) {
    if core.power() != HostPower::On {
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
            Outage::Reboot | Outage::Cycle => {
                let down = core.has(FaultKind::NeverReturns);
                {
                    let mut s = core.lock();
                    s.reboot_pending = false;
                    s.phase = if down { Phase::Down } else { Phase::Rebooting };
                    s.dirty = true;
                }
                if down {
                    // Nothing listens on this address again, unless a power
                    // cycle cures the host (`never_returns=F:recover=P`).
                    while core.has(FaultKind::NeverReturns) {
                        core.cycled.notified().await;
                    }
                    core.set_phase(Phase::Rebooting);
                }
                boot(&core, &shared).await;
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
    while core.power() == HostPower::Off {
        core.power_button.notified().await;
    }
    // Stuck until a power cycle cures it (`stuck_powering_on=F:recover=P`).
    while core.has(FaultKind::StuckPoweringOn) {
        core.cycled.notified().await;
    }
    let delay = shared
        .bmc
        .as_ref()
        .map_or(Duration::ZERO, |b| b.power_on_delay);
    sleep_through_cycles(core, delay).await;
    let down = core.has(FaultKind::NeverReturns);
    {
        let mut s = core.lock();
        s.power = HostPower::On;
        // Booting: refuses connections like a rebooting host. A
        // `never_returns` host does not come back from a power loss either.
        s.phase = if down { Phase::Down } else { Phase::Rebooting };
        s.dirty = true;
    }
    if down {
        while core.has(FaultKind::NeverReturns) {
            core.cycled.notified().await;
        }
        core.set_phase(Phase::Rebooting);
    }
    boot(core, shared).await;
}

/// One boot of the host's boot time, from Rebooting to Up with a new boot id.
async fn boot(core: &HostCore, shared: &Shared) {
    let boot_no = core.lock().boots + 1;
    sleep_through_cycles(core, boot_duration(shared, core, boot_no)).await;
    let mut s = core.lock();
    s.boots = boot_no;
    s.boot_id = new_boot_id();
    s.phase = Phase::Up;
    s.dirty = true;
}

/// Sleeps `d`; a power cycle meanwhile starts the wait over (the power went
/// away and came back), so it is never left over for a later boot.
async fn sleep_through_cycles(core: &HostCore, d: Duration) {
    // Bounded by the cycles a client sends (remediate sends a few at most).
    loop {
        tokio::select! {
            () = tokio::time::sleep(d) => return,
            () = core.cycled.notified() => {}
        }
    }
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
                tokio::time::sleep(shared.reboot_grace).await;
                return Outage::Reboot;
            }
            () = core.cycled.notified() => return Outage::Cycle,
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
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sim::config::{BootTimeRange, REBOOT_GRACE};

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
            boot_time: BootTimeRange::fixed(boot),
            reboot_grace: REBOOT_GRACE,
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
    fn power_cycles_are_counted_apart_and_cure_at_the_recover_chance() {
        let stuck = |recover: f64| {
            let mut core = HostCore::new(
                3,
                "h".into(),
                Ipv4Addr::LOCALHOST,
                Some(FaultKind::NeverReturns),
                1,
            );
            core.recover = recover;
            core
        };
        let never = stuck(0.0);
        for _ in 0..3 {
            never.reset("PowerCycle").unwrap();
        }
        never.reset("ForceRestart").unwrap();
        let s = never.status();
        assert_eq!((s.power_cycles, s.power_ons, s.reboots), (4, 0, 0));
        assert!(never.has(FaultKind::NeverReturns), "recover=0 never cures");
        let always = stuck(1.0);
        assert!(always.has(FaultKind::NeverReturns));
        always.reset("PowerCycle").unwrap();
        assert!(
            !always.has(FaultKind::NeverReturns),
            "recover=1 cures at once"
        );
        // Half the hosts, about: the draw is per host and cycle.
        let cured = (0..200)
            .filter(|&i| {
                let mut core = HostCore::new(
                    i,
                    "h".into(),
                    Ipv4Addr::LOCALHOST,
                    Some(FaultKind::StuckPoweringOn),
                    7,
                );
                core.recover = 0.5;
                core.reset("PowerCycle").unwrap();
                !core.has(FaultKind::StuckPoweringOn)
            })
            .count();
        assert!((60..=140).contains(&cured), "{cured}");
        // A power-on is not a cycle.
        let on = stuck(1.0);
        on.reset("On").unwrap();
        let s = on.status();
        assert_eq!((s.power_cycles, s.power_ons), (0, 1));
        assert!(on.has(FaultKind::NeverReturns));
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
