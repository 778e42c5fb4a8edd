//! `rekindle sim` through the real binary, spoken to with the real OpenSSH
//! client (`ssh`) and plain HTTP over loopback. Each test uses its own ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{self, SimProcess};

/// A running `rekindle sim` on known ports, with OpenSSH and status.json
/// conveniences; the process itself is a [`SimProcess`].
struct Sim {
    process: SimProcess,
    port: u16,
    http_port: u16,
}

impl Sim {
    fn start(port: u16, http_port: u16, extra: &[&str]) -> Sim {
        let (p, h) = (port.to_string(), http_port.to_string());
        let mut args = vec!["--port", &p, "--http-port", &h];
        args.extend_from_slice(extra);
        Sim {
            process: SimProcess::start(&args),
            port,
            http_port,
        }
    }

    fn ready_line(&self) -> &str {
        self.process.ready_line()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.process.path(name)
    }

    /// Runs `cmd` on `addr` with the OpenSSH client: (exit code, stdout, stderr).
    fn ssh(&self, addr: &str, cmd: &str) -> (i32, String, String) {
        self.ssh_with_timeout(addr, cmd, 5)
    }

    fn ssh_with_timeout(
        &self,
        addr: &str,
        cmd: &str,
        connect_timeout: u32,
    ) -> (i32, String, String) {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-i"])
            .arg(self.path("id_ed25519"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.path("known_hosts").display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .args(["-o", "IdentitiesOnly=yes"])
            .arg("-o")
            .arg(format!("ConnectTimeout={connect_timeout}"))
            .args(["-p", &self.port.to_string()])
            .arg(format!("root@{addr}"))
            .arg(cmd)
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        support::run(&mut c)
    }

    fn boot_id(&self, addr: &str) -> String {
        let (code, out, err) = self.ssh(addr, "cat /proc/sys/kernel/random/boot_id");
        assert_eq!(code, 0, "boot id read failed: {err}");
        let id = out.trim().to_owned();
        assert_eq!(id.len(), 36, "boot id {id:?}");
        id
    }

    fn status(&self) -> serde_json::Value {
        self.process.status()
    }

    /// Polls status.json (bounded: 15 s) until `pred` holds.
    fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.process
            .wait_status(what, Duration::from_secs(15), pred)
    }

    /// Polls (bounded) until `cmd` succeeds on `addr`.
    fn wait_ssh(&self, addr: &str) {
        for _ in 0..100 {
            if self.ssh_with_timeout(addr, "true", 2).0 == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{addr} never came back");
    }

    /// Host name and address of the host carrying `fault`, from status.json.
    fn host_with_fault(&self, fault: &str) -> (String, String) {
        let s = self.status();
        let hosts = s["hosts"].as_object().expect("hosts map");
        let (name, h) = hosts
            .iter()
            .find(|(_, h)| h["fault"] == fault)
            .unwrap_or_else(|| panic!("no host with fault {fault}: {s}"));
        (
            name.clone(),
            h["address"].as_str().expect("address").to_owned(),
        )
    }

    /// SIGINT, then the exit code and everything printed after the ready line.
    fn interrupt(&mut self) -> (i32, String) {
        self.process.interrupt()
    }
}

/// GET / on `addr:port`: Some((status code, body)), None if refused.
fn http_get(addr: &str, port: u16) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((addr, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((code, body))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn sim_writes_inventory_key_and_known_hosts() {
    let sim = Sim::start(2431, 2432, &["--hosts", "3"]);
    assert!(
        sim.ready_line().contains("ready: 3 hosts"),
        "{}",
        sim.ready_line()
    );
    let inv = read(&sim.path("inventory.yaml"));
    assert!(inv.contains("version: 1"), "{inv}");
    assert!(inv.contains("port: 2431"), "{inv}");
    let key = sim.path("id_ed25519").canonicalize().expect("key path");
    assert!(
        inv.contains(&format!("identity_file: \"{}\"", key.display())),
        "{inv}"
    );
    assert!(
        inv.contains(r#"- { name: "sim-00003", address: "127.1.0.3", labels: { "dc": "sim", "rack": "r01", "role": "app" } }"#),
        "{inv}"
    );
    let kh = read(&sim.path("known_hosts"));
    assert_eq!(kh.lines().count(), 3);
    assert!(kh.starts_with("[127.1.0.1]:2431 ssh-ed25519 "), "{kh}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sim.path("id_ed25519"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(read(&sim.path("id_ed25519")).starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
}

#[test]
fn sim_commands_answer_and_unknown_is_127() {
    let sim = Sim::start(2441, 2442, &["--hosts", "1"]);
    let a = "127.1.0.1";
    assert_eq!(
        sim.ssh(a, "hostname"),
        (0, "sim-00001\n".into(), String::new())
    );
    assert_eq!(sim.ssh(a, "echo hello world").1, "hello world\n");
    assert_eq!(sim.ssh(a, "exit 7").0, 7);
    assert_eq!(sim.ssh(a, "false").0, 1);
    assert_eq!(
        sim.ssh(a, "systemctl is-active nginx"),
        (0, "active\n".into(), String::new())
    );
    assert_eq!(sim.ssh(a, "systemctl is-system-running").1, "running\n");
    assert_eq!(sim.ssh(a, "true && echo both").1, "both\n");
    let (code, out, err) = sim.ssh(a, "apt-get upgrade -y");
    assert_eq!((code, out.as_str()), (127, ""));
    assert!(err.contains("sh: 1: apt-get: not found"), "{err}");
    assert_eq!(http_get(a, sim.http_port), Some((200, "ok\n".into())));
}

#[test]
fn sim_reboot_changes_boot_id_refuses_while_booting_and_counts_once() {
    let mut sim = Sim::start(2451, 2452, &["--hosts", "2", "--boot-time", "5s"]);
    let a = "127.1.0.2";
    let before = sim.boot_id(a);
    assert_eq!(sim.boot_id(a), before, "boot id is stable while up");
    let (code, _, err) = sim.ssh(a, "systemctl reboot");
    assert_eq!(code, 0, "the reboot command itself succeeds: {err}");
    // Past the ~100 ms grace the host is gone: refused, not hanging.
    std::thread::sleep(Duration::from_millis(400));
    let (code, _, err) = sim.ssh_with_timeout(a, "true", 3);
    assert_eq!(code, 255, "ssh during boot: {err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(
        http_get(a, sim.http_port),
        None,
        "health endpoint is down while booting"
    );
    let s = sim.wait_status("rebooting with 1 reboot", |s| {
        s["hosts"]["sim-00002"]["state"] == "rebooting" && s["hosts"]["sim-00002"]["reboots"] == 1
    });
    assert_eq!(s["total_reboots"], 1);
    sim.wait_ssh(a);
    let after = sim.boot_id(a);
    assert_ne!(after, before, "a reboot changes the boot id");
    let s = sim.wait_status("up with the new boot id", |s| {
        s["hosts"]["sim-00002"]["boot_id"] == after.as_str()
    });
    assert_eq!(s["hosts"]["sim-00002"]["reboots"], 1);
    assert_eq!(s["hosts"]["sim-00001"]["reboots"], 0);
    assert_eq!(http_get(a, sim.http_port).map(|r| r.0), Some(200));

    let (code, out) = sim.interrupt();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sim-00002  127.1.0.2  reboots 1"), "{out}");
    assert!(
        !out.contains("sim-00001 "),
        "hosts without reboots are not listed: {out}"
    );
    assert!(out.contains("total: 1 reboots on 1 of 2 hosts"), "{out}");
}

#[test]
fn sim_faults_no_reboot_never_returns_unhealthy_hang() {
    let sim = Sim::start(
        2461,
        2462,
        &[
            "--hosts",
            "4",
            "--boot-time",
            "1s",
            "--seed",
            "9",
            "--fail",
            "no_reboot=0.25,never_returns=0.25,unhealthy=0.25,hang_handshake=0.25",
        ],
    );
    assert!(
        sim.ready_line().contains("4 with faults"),
        "{}",
        sim.ready_line()
    );

    // no_reboot: the command answers 0, the host stays, the boot id stays.
    let (name, a) = sim.host_with_fault("no_reboot");
    let before = sim.boot_id(&a);
    assert_eq!(sim.ssh(&a, "reboot").0, 0);
    sim.wait_status("the ignored reboot counted", |s| {
        s["hosts"][&name]["reboots"] == 1
    });
    std::thread::sleep(Duration::from_millis(1500)); // longer than the boot time
    assert_eq!(sim.boot_id(&a), before, "no_reboot keeps its boot id");

    // unhealthy: up, but health says no.
    let (_, a) = sim.host_with_fault("unhealthy");
    assert_eq!(
        sim.ssh(&a, "systemctl is-active app"),
        (3, "failed\n".into(), String::new())
    );
    assert_eq!(sim.ssh(&a, "systemctl is-system-running").0, 1);
    assert_eq!(http_get(&a, sim.http_port).map(|r| r.0), Some(503));

    // never_returns: gone after its reboot, and stays gone.
    let (name, a) = sim.host_with_fault("never_returns");
    assert_eq!(sim.ssh(&a, "shutdown -r now").0, 0);
    sim.wait_status("down", |s| s["hosts"][&name]["state"] == "down");
    std::thread::sleep(Duration::from_millis(1500)); // longer than the boot time
    let (code, _, err) = sim.ssh_with_timeout(&a, "true", 3);
    assert_eq!(code, 255);
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(sim.status()["hosts"][&name]["state"], "down");

    // hang_handshake: TCP connects, SSH never completes; the client times out.
    let (_, a) = sim.host_with_fault("hang_handshake");
    assert!(
        TcpStream::connect((a.as_str(), 2461)).is_ok(),
        "TCP is accepted"
    );
    let (code, _, err) = sim.ssh_with_timeout(&a, "true", 2);
    assert_eq!(code, 255);
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn sim_shards_across_worker_processes_and_merges_counts() {
    let mut sim = Sim::start(2471, 2472, &["--hosts", "5", "--shard-size", "2"]);
    assert!(
        sim.ready_line().contains("in 3 worker processes"),
        "{}",
        sim.ready_line()
    );
    // One host in each shard answers, with its own name.
    for (i, a) in ["127.1.0.1", "127.1.0.3", "127.1.0.5"].iter().enumerate() {
        let (code, out, err) = sim.ssh(a, "hostname");
        assert_eq!(
            (code, out),
            (0, format!("sim-0000{}\n", 2 * i + 1)),
            "{err}"
        );
    }
    assert_eq!(sim.ssh("127.1.0.4", "reboot").0, 0);
    assert_eq!(sim.ssh("127.1.0.5", "systemctl reboot").0, 0);
    let s = sim.wait_status("two reboots from two workers", |s| s["total_reboots"] == 2);
    assert_eq!(s["hosts_total"], 5);
    assert_eq!(s["hosts"]["sim-00004"]["reboots"], 1);
    let (code, out) = sim.interrupt();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sim-00004  127.1.0.4  reboots 1"), "{out}");
    assert!(out.contains("sim-00005  127.1.0.5  reboots 1"), "{out}");
    assert!(
        out.contains("total: 2 reboots on 2 of 5 hosts (0 rebooted more than once)"),
        "{out}"
    );
}

#[test]
fn sim_rejects_unknown_fault_with_suggestion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, err) = support::run(
        support::rekindle()
            .args([
                "sim",
                "--hosts",
                "1",
                "--port",
                "2481",
                "--fail",
                "never_return=0.1",
                "--out",
            ])
            .arg(dir.path()),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `never_returns`"), "{err}");
}

#[test]
fn sim_flap_goes_away_after_coming_back_then_stays() {
    let sim = Sim::start(
        2491,
        2492,
        &["--hosts", "1", "--boot-time", "1s", "--fail", "flap=1"],
    );
    let a = "127.1.0.1";
    let before = sim.boot_id(a);
    assert_eq!(sim.ssh(a, "reboot").0, 0);
    sim.wait_status("rebooting", |s| {
        s["hosts"]["sim-00001"]["state"] == "rebooting"
    });
    sim.wait_status("flapping after the reboot", |s| {
        s["hosts"]["sim-00001"]["state"] == "flapping"
    });
    sim.wait_ssh(a);
    let after = sim.boot_id(a);
    assert_ne!(after, before);
    // Flaps keep the boot id: the host did not reboot again.
    let s = sim.wait_status("up, flaps over", |s| {
        s["hosts"]["sim-00001"]["state"] == "up"
            && s["hosts"]["sim-00001"]["boot_id"] == after.as_str()
    });
    assert_eq!(s["hosts"]["sim-00001"]["reboots"], 1);
}

/// The library API that `drill` uses, with real worker processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_library_fleet_reports_and_shuts_down() {
    use rekindle::sim::{Fleet, FleetConfig, Phase, SimHost};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = FleetConfig::new(SimHost::numbered(3), dir.path().to_owned());
    config.port = 2495;
    config.http_port = 2496;
    config.shard_size = 2;
    config.worker_exe = Some(env!("CARGO_BIN_EXE_rekindle").into());
    let fleet = Fleet::start(config).await.expect("fleet starts");
    assert_eq!(fleet.workers(), 2);
    assert_eq!(fleet.worker_pids().len(), 2);
    let paths = fleet.paths().clone();
    assert!(paths.inventory.is_absolute() && paths.status.exists());
    let status = fleet.status();
    assert_eq!(status.hosts.len(), 3);
    assert_eq!(status.hosts[2].name, "sim-00003");
    let id = status.hosts[2].boot_id.clone();
    assert!(id.is_empty() || id.len() == 36, "{id}");

    let key = paths.identity.clone();
    let kh = paths.known_hosts.clone();
    let out = tokio::process::Command::new("ssh")
        .args(["-F", "/dev/null", "-i"])
        .arg(&key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-p", "2495", "root@127.1.0.3", "reboot"])
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .await
        .expect("ssh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = false;
    for _ in 0..100 {
        if fleet
            .status()
            .host("sim-00003")
            .is_some_and(|h| h.reboots == 1)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "status() shows the reboot");
    let last = fleet.shutdown().await.expect("clean shutdown");
    assert_eq!(last.total_reboots(), 1);
    assert!(
        last.hosts
            .iter()
            .all(|h| h.state == Phase::Up && h.boot_id.len() == 36)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_library_notices_a_dead_worker() {
    use rekindle::sim::{Fleet, FleetConfig, SimHost};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = FleetConfig::new(SimHost::numbered(2), dir.path().to_owned());
    config.port = 2497;
    config.http_port = 2498;
    config.shard_size = 1;
    config.worker_exe = Some(env!("CARGO_BIN_EXE_rekindle").into());
    let fleet = Fleet::start(config).await.expect("fleet starts");
    assert_eq!(fleet.failure(), None);
    let pid = i32::try_from(fleet.worker_pids()[0]).expect("pid fits");
    // SAFETY: killing a worker process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let mut failure = None;
    for _ in 0..100 {
        failure = fleet.failure();
        if failure.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failure = failure.expect("the dead worker is noticed");
    assert!(
        failure.contains("exited without its final counts"),
        "{failure}"
    );
    assert!(
        fleet.shutdown().await.is_err(),
        "shutdown reports the lost worker"
    );
}
