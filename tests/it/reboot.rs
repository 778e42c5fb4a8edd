//! The reboot step end to end: the real `rekindle run` against real
//! `rekindle sim` processes (russh servers on 127.1.0.x), proven from the
//! simulator's own record (status.json: boot ids, reboot counts, states).
//! Each test has its own ports (26xx), so tests run side by side.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, SimProcess};

/// A running `rekindle sim` on `port` (HTTP `port+1`); its out directory (a
/// tempdir) also holds the playbook and journal of the test.
struct Fleet {
    sim: SimProcess,
}

impl Fleet {
    fn start(port: u16, args: &[&str]) -> Fleet {
        let (p, h) = (port.to_string(), (port + 1).to_string());
        let mut all = vec!["--port", &p, "--http-port", &h];
        all.extend_from_slice(args);
        Fleet {
            sim: SimProcess::start(&all),
        }
    }

    fn dir(&self) -> &Path {
        self.sim.out()
    }

    fn inventory(&self) -> PathBuf {
        self.dir().join("inventory.yaml")
    }

    fn status(&self) -> Value {
        self.sim.status()
    }

    /// Polls status.json (bounded: 20 s) until `pred` holds.
    fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.sim.wait_status(what, Duration::from_secs(20), pred)
    }

    /// Runs `playbook` (YAML text) over the fleet: (exit code, stdout, stderr).
    fn run(&self, playbook: &str, extra: &[&str]) -> (i32, String, String) {
        let book = self.dir().join("book.yaml");
        std::fs::write(&book, playbook).expect("write playbook");
        let journal = self.dir().join("journal");
        support::run(
            support::rekindle_in(self.dir())
                .arg("run")
                .arg(&book)
                .arg("-i")
                .arg(self.inventory())
                .arg("--journal")
                .arg(&journal)
                .arg("--yes")
                .args(extra)
                .stdin(Stdio::null()),
        )
    }
}

fn hosts(status: &Value) -> &serde_json::Map<String, Value> {
    status["hosts"].as_object().expect("hosts map")
}

/// The (name, status) of the host carrying `fault`.
fn faulted<'a>(status: &'a Value, fault: &str) -> (&'a String, &'a Value) {
    hosts(status)
        .iter()
        .find(|(_, h)| h["fault"] == fault)
        .unwrap_or_else(|| panic!("no host with fault {fault}: {status}"))
}

/// The run's `FAILED` line for `host`.
fn failed_line<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with("FAILED") && l.contains(host))
        .unwrap_or_else(|| panic!("no FAILED line for {host}:\n{out}"))
}

/// Every host's boot id, once each has one.
fn boot_ids(fleet: &Fleet) -> Vec<(String, String)> {
    let s = fleet.wait_status("boot ids", |s| {
        hosts(s)
            .values()
            .all(|h| h["boot_id"].as_str().is_some_and(|b| b.len() == 36))
    });
    hosts(&s)
        .iter()
        .map(|(n, h)| (n.clone(), h["boot_id"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn inventory_dir(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("inv.yaml");
    std::fs::write(&path, text).expect("write inventory");
    (dir, path.to_string_lossy().into_owned())
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn reboot_changes_every_boot_id_and_each_host_reboots_exactly_once() {
    let fleet = Fleet::start(2601, &["--hosts", "6", "--boot-time", "1s"]);
    let before = boot_ids(&fleet);
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: reboot-all
defaults: { connect_timeout: 5s }
stages:
  - name: all
    select: { role: app }
    parallel: 3
    steps:
      - reboot: { timeout: 60s }
      - health: { checks: [ { ssh: "systemctl is-system-running" } ], timeout: 30s }
"#,
        &[],
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{out}"
    );
    let after = fleet.wait_status("six reboots, all up", |s| {
        s["total_reboots"] == 6 && hosts(s).values().all(|h| h["state"] == "up")
    });
    for (name, old) in &before {
        let h = &hosts(&after)[name];
        assert_eq!(h["reboots"], 1, "{name}: {h}");
        assert_ne!(
            h["boot_id"].as_str(),
            Some(old.as_str()),
            "{name} kept its boot id"
        );
    }
}

#[test]
fn a_host_that_never_returns_fails_naming_its_reboot_timeout() {
    let fleet = Fleet::start(
        2611,
        &["--hosts", "2", "--fail", "never_returns=0.5", "--seed", "3"],
    );
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: t
defaults: { connect_timeout: 2s }
stages:
  - name: all
    select: { role: app }
    parallel: 2
    max_failures: 1
    steps: [ { reboot: { timeout: 4s } } ]
"#,
        &[],
    );
    assert_eq!(
        code, 1,
        "failures inside the budget\nstdout:\n{out}\nstderr:\n{err}"
    );
    let status = fleet.status();
    let (bad, _) = faulted(&status, "never_returns");
    let line = failed_line(&out, bad);
    assert!(
        line.contains("did not come back within the reboot timeout of 4s"),
        "{line}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        1,
        "{out}"
    );
}

#[test]
fn a_host_whose_boot_id_stays_fails_did_not_reboot() {
    let fleet = Fleet::start(
        2621,
        &["--hosts", "2", "--fail", "no_reboot=0.5", "--seed", "5"],
    );
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: t
defaults: { connect_timeout: 2s }
stages:
  - name: all
    select: { role: app }
    parallel: 2
    max_failures: 1
    steps: [ { reboot: { timeout: 3s } } ]
"#,
        &[],
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let status = fleet.status();
    let (bad, h) = faulted(&status, "no_reboot");
    // The command reached it (counted) and did nothing.
    assert_eq!(h["reboots"], 1, "{h}");
    let line = failed_line(&out, bad);
    assert!(
        line.contains("host did not reboot (boot id unchanged"),
        "{line}"
    );
}

#[test]
fn a_host_that_hangs_the_handshake_fails_by_connect_timeout_not_the_reboot_timeout() {
    let fleet = Fleet::start(
        2631,
        &[
            "--hosts",
            "2",
            "--fail",
            "hang_handshake=0.5",
            "--seed",
            "2",
        ],
    );
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: t
defaults: { connect_timeout: 1s }
stages:
  - name: all
    select: { role: app }
    parallel: 2
    max_failures: 1
    steps: [ { reboot: { timeout: 10m } } ]
"#,
        &[],
    );
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let status = fleet.status();
    let (bad, h) = faulted(&status, "hang_handshake");
    assert_eq!(h["reboots"], 0, "never got a command: {h}");
    let line = failed_line(&out, bad);
    assert!(
        line.contains("cannot connect") && line.contains("handshake") && line.contains("within 1s"),
        "{line}"
    );
}

#[test]
fn failure_budget_trips_on_injected_faults_and_dependants_never_start() {
    // Every host never returns; the first stage may lose one.
    let fleet = Fleet::start(2641, &["--hosts", "8", "--fail", "never_returns=1"]);
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: t
defaults: { connect_timeout: 2s }
stages:
  - name: first
    select: { name: "sim-0000[1-6]" }
    parallel: 2
    max_failures: 1
    steps: [ { reboot: { timeout: 3s } } ]
  - name: second
    after: [first]
    select: { name: "sim-0000[7-8]" }
    steps: [ reboot ]
"#,
        &[],
    );
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("ABORTED: failure budget exceeded"), "{out}");
    assert!(out.contains("not started: `first`"), "{out}");
    let status = fleet.status();
    let reboots = |n: &str| hosts(&status)[n]["reboots"].as_u64().unwrap_or(99);
    // The window of two failed; the first failure (inside the budget) may
    // have let host 3 start, the second spent the budget: nothing after it.
    assert_eq!(reboots("sim-00001"), 1);
    assert_eq!(reboots("sim-00002"), 1);
    assert!(reboots("sim-00003") <= 1);
    for n in ["sim-00004", "sim-00005", "sim-00006"] {
        assert_eq!(reboots(n), 0, "{n} started after the budget was spent");
    }
    for n in ["sim-00007", "sim-00008"] {
        assert_eq!(reboots(n), 0, "{n}: dependant stage started");
    }
}

#[test]
fn max_unavailable_per_rack_holds_while_hosts_reboot() {
    // Six hosts in two racks; at most one per rack may be in flight.
    let (_inv_dir, inv) = inventory_dir(
        r#"
version: 1
datacenters:
  lab:
    hosts:
      - name: "h[1-3]-r[1-2]"
        labels: { role: app, rack: "r{2}" }
"#,
    );
    let fleet = Fleet::start(2651, &["-i", &inv, "--boot-time", "2s"]);
    let racks: Vec<(String, String)> = {
        let s = fleet.status();
        hosts(&s)
            .keys()
            .map(|n| (n.clone(), n.rsplit('-').next().unwrap_or("").to_owned()))
            .collect()
    };
    let book = fleet.dir().join("book.yaml");
    std::fs::write(
        &book,
        r#"
version: 1
name: t
defaults: { connect_timeout: 5s }
stages:
  - name: all
    select: { role: app }
    parallel: 6
    max_unavailable: { rack: 1 }
    steps: [ { reboot: { timeout: 60s } } ]
"#,
    )
    .expect("write playbook");
    // Killed on drop: a failed assertion below must not leave the run going.
    let mut run = support::KillOnDrop::new(
        support::rekindle_in(fleet.dir())
            .arg("run")
            .arg(&book)
            .args(["-i", &path_str(&fleet.inventory()), "--yes", "--journal"])
            .arg(fleet.dir().join("journal"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run starts"),
    );
    // Sample the simulator's view while the run goes (bounded: 60 s).
    let (mut samples, mut seen_down) = (0, 0);
    let mut exit = None;
    for _ in 0..600 {
        if let Some(st) = run.child().try_wait().expect("wait") {
            exit = Some(st);
            break;
        }
        let s = fleet.status();
        samples += 1;
        let mut down_per_rack = std::collections::BTreeMap::<&str, usize>::new();
        for (name, rack) in &racks {
            if hosts(&s)[name]["state"] != "up" {
                *down_per_rack.entry(rack.as_str()).or_default() += 1;
                seen_down += 1;
            }
        }
        for (rack, down) in &down_per_rack {
            assert!(*down <= 1, "{down} hosts of rack {rack} down at once: {s}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit = match exit {
        Some(e) => e,
        None => {
            let _ = run.child().kill();
            run.child().wait().expect("killed run exits")
        }
    };
    let mut out = String::new();
    if let Some(mut o) = run.child().stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut out);
    }
    assert_eq!(exit.code(), Some(0), "{out}");
    assert!(
        samples > 0 && seen_down > 0,
        "never saw a host rebooting: {samples} samples"
    );
    let s = fleet.wait_status("six reboots", |s| s["total_reboots"] == 6);
    assert!(hosts(&s).values().all(|h| h["reboots"] == 1), "{s}");
}
