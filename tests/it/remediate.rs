//! The remediation ladder (`remediate: { power_cycle: N }`) end to end: the
//! real `rekindle run` and `rekindle resume` against `rekindle sim
//! --powered-off` or `--bmcs` (real SSH, real Redfish BMCs on loopback). What each host
//! received is the simulator's own record in status.json: `power_cycles`
//! beside `power_ons` and `reboots`. Each test has its own ports (37xx).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, BmcSim, KillOnDrop};

/// The remediation tests keep their playbook and journal in the fleet's tempdir.
impl BmcSim {
    fn book(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("book.yaml");
        std::fs::write(&path, text).expect("write playbook");
        path
    }

    fn journal_dir(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// `rekindle run|resume` arguments that every call here shares.
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = support::rekindle_in(self.dir.path());
        cmd.args(args)
            .arg("--bmc-credentials")
            .arg(self.sim.path("bmc-credentials"))
            .args(["--yes", "--journal"])
            .arg(self.journal_dir())
            .env_remove("REKINDLE_BMC_USER")
            .env_remove("REKINDLE_BMC_PASSWORD")
            .stdin(Stdio::null());
        cmd
    }

    fn run_book(&self, book: &Path) -> (i32, String, String) {
        let inventory = self.sim.path("inventory.yaml");
        let mut cmd = self.command(&[
            "run",
            book.to_str().expect("utf-8"),
            "-i",
            inventory.to_str().expect("utf-8"),
        ]);
        support::run(&mut cmd)
    }

    fn journal(&self) -> PathBuf {
        std::fs::read_dir(self.journal_dir())
            .expect("journal dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .expect("a journal")
    }

    /// `rekindle report` of the journal, as text.
    fn report(&self) -> String {
        let mut cmd = support::rekindle();
        cmd.arg("report").arg(self.journal());
        support::run(&mut cmd).1
    }
}

fn hosts(status: &Value) -> &serde_json::Map<String, Value> {
    status["hosts"].as_object().expect("hosts map")
}

fn faulted(status: &Value, fault: &str) -> String {
    hosts(status)
        .iter()
        .find(|(_, h)| h["fault"] == fault)
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| panic!("no host with fault {fault}: {status}"))
}

fn failed_line<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with("FAILED") && l.contains(host))
        .unwrap_or_else(|| panic!("no FAILED line for {host}:\n{out}"))
}

/// Power on, wait for SSH, reboot, under one power cycle of remediation.
fn cold_start(power_on_timeout: &str, reboot_timeout: &str) -> String {
    format!(
        "version: 1\nname: cold\ndefaults: {{ connect_timeout: 2s }}\nstages:\n  - name: all\n    select: {{ dc: sim }}\n    parallel: 100%\n    max_failures: 100%\n    remediate: {{ power_cycle: 1 }}\n    steps:\n      - power_on: {{ timeout: {power_on_timeout}, pdu_interval: 100ms }}\n      - wait_ssh: {{ timeout: 30s }}\n      - reboot: {{ timeout: {reboot_timeout} }}\n"
    )
}

#[test]
fn a_never_returns_host_is_power_cycled_exactly_once_then_quarantined_and_a_slow_one_never() {
    let sim = BmcSim::start(
        3701,
        &[
            "--hosts",
            "4",
            "--fail",
            "never_returns=0.25,slow_boot=0.25",
        ],
    );
    let book = sim.book(&cold_start("1m", "6s"));
    let mut plan = support::rekindle();
    plan.arg("plan")
        .arg(&book)
        .arg("-i")
        .arg(sim.sim.path("inventory.yaml"));
    let (code, out, err) = support::run(&mut plan);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("    remediate        up to 1 BMC power cycle for a host that does not come back, then quarantined\n                     cycles paced like power-ons: one per PDU every 100ms, at most 20/s fleet-wide\n                     a straggler may take up to 1m36s more than the estimate below\n"),
        "{out}"
    );
    let (code, out, err) = sim.run_book(&book);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let s = sim.status();
    let never = faulted(&s, "never_returns");
    let slow = faulted(&s, "slow_boot");
    for (name, h) in hosts(&s) {
        let cycles = if *name == never { 1 } else { 0 };
        assert_eq!(h["power_cycles"], cycles, "{name}: {s}");
        // `never_returns` holds after a power-on too (issue 28): that host
        // never came back from the power-on, so no reboot ever reached it.
        let reboots = if *name == never { 0 } else { 1 };
        assert_eq!(
            (&h["power_ons"], &h["reboots"]),
            (&1.into(), &reboots.into()),
            "{name}: {s}"
        );
    }
    // The slow host came back inside the wait: done, never cycled.
    assert_eq!(hosts(&s)[&slow]["state"], "up", "{s}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("FAILED") && l.contains(&slow)),
        "{out}"
    );
    let line = failed_line(&out, &never);
    assert!(
        line.contains("quarantined after 1 power cycle through its BMC (#1 PowerCycle after ")
            && line.contains("step 2 (wait_ssh)")
            && line.contains("host did not answer SSH within 30s"),
        "{line}"
    );
    // The journal has the one intent; the report shows every attempt.
    let journal = std::fs::read_to_string(sim.journal()).expect("journal");
    let intents: Vec<&str> = journal
        .lines()
        .filter(|l| l.contains(r#""event":"power_cycle_issued""#))
        .collect();
    assert_eq!(intents.len(), 1, "{journal}");
    assert!(
        intents[0].contains(&format!(r#""name":"{never}""#))
            && intents[0].contains(r#""attempt":1"#)
            && intents[0].contains(r#""reset_type":"PowerCycle""#),
        "{}",
        intents[0]
    );
    let report = sim.report();
    assert!(report.contains("#1 PowerCycle after "), "{report}");
}

#[test]
fn a_power_cycle_brings_back_hosts_the_simulator_lets_recover() {
    let sim = BmcSim::start(
        3711,
        &[
            "--hosts",
            "3",
            "--fail",
            "never_returns=0.34:recover=1,stuck_powering_on=0.34:recover=100%",
        ],
    );
    let book = sim.book(&cold_start("5s", "6s"));
    let (code, out, err) = sim.run_book(&book);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let never = faulted(&sim.status(), "never_returns");
    // status.json may trail the SSH answer the run already had.
    let s = sim
        .sim
        .wait_status("the cured host up", Duration::from_secs(10), |s| {
            hosts(s)[&never]["state"] == "up"
        });
    assert_eq!(hosts(&s)[&never]["power_cycles"], 1, "{s}");
    assert_eq!(hosts(&s)[&never]["reboots"], 1, "{s}");
    // Stuck in PoweringOn through power_on's wait: cycled once, then read
    // On, so no second power-on went out.
    let stuck = faulted(&s, "stuck_powering_on");
    let h = &hosts(&s)[&stuck];
    assert_eq!(
        (&h["power_cycles"], &h["power_ons"]),
        (&1.into(), &1.into()),
        "{s}"
    );
    let other = hosts(&s)
        .keys()
        .find(|n| **n != never && **n != stuck)
        .expect("three hosts");
    assert_eq!(hosts(&s)[other]["power_cycles"], 0, "{s}");
}

#[test]
fn recover_without_bmcs_is_refused() {
    let mut cmd = support::rekindle();
    cmd.args([
        "sim",
        "--hosts",
        "1",
        "--port",
        "3721",
        "--http-port",
        "3722",
    ])
    .args(["--fail", "never_returns=1:recover=0.5", "--out"])
    .arg(tempfile::tempdir().expect("tempdir").path().join("f"));
    let (code, _, err) = support::run(&mut cmd);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("BMCs need the fleet started with --bmcs or --powered-off"),
        "{err}"
    );
}

#[test]
fn kill_9_during_remediation_then_resume_cycles_nobody_twice() {
    let sim = BmcSim::start(3731, &["--hosts", "3", "--fail", "never_returns=0.34"]);
    let book = sim.book(&cold_start("1m", "8s"));
    let inventory = sim.sim.path("inventory.yaml");
    let mut run = KillOnDrop::new(
        sim.command(&[
            "run",
            book.to_str().expect("utf-8"),
            "-i",
            inventory.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts"),
    );
    let never = faulted(&sim.status(), "never_returns");
    // Killed right after the BMC took the cycle, during the wait that follows.
    sim.sim
        .wait_status("the power cycle", Duration::from_secs(60), |s| {
            hosts(s)[&never]["power_cycles"] == 1
        });
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    let rc = unsafe { libc::kill(run.pid() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    let killed = run.wait_for(Duration::from_secs(10)).expect("the run died");
    assert_eq!(killed.code(), None, "killed by a signal");
    let journal = std::fs::read_to_string(sim.journal()).expect("journal");
    assert!(
        journal.contains(r#""event":"power_cycle_issued""#),
        "{journal}"
    );

    let journal_file = sim.journal();
    let mut cmd = sim.command(&["resume", journal_file.to_str().expect("utf-8")]);
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(&format!(
            "1 hosts were power-cycled by `remediate` before the interruption; their count goes on, no cycle is sent again: {never} (all)"
        )),
        "{err}"
    );
    let line = failed_line(&out, &never);
    assert!(
        line.contains("quarantined after 1 power cycle through its BMC (#1 before the resume)"),
        "{line}"
    );
    let s = sim.status();
    for (name, h) in hosts(&s) {
        let cycles = if *name == never { 1 } else { 0 };
        assert_eq!(h["power_cycles"], cycles, "{name} cycled twice? {s}");
        // The `never_returns` host does not come back from its power-on
        // (issue 28), so it is never rebooted; the others exactly once.
        let reboots = if *name == never { 0 } else { 1 };
        assert_eq!(h["reboots"], reboots, "{name} rebooted twice? {s}");
        assert_eq!(h["power_ons"], 1, "{name}: {s}");
    }
}

/// `sim --bmcs`: hosts start up, yet each has a BMC, so a rolling reboot
/// (no `power_on`) power-cycles the one that never comes back; the summary
/// names it.
#[test]
fn a_live_fleet_with_bmcs_has_its_straggler_power_cycled_by_a_rolling_reboot() {
    let sim = BmcSim::start_up(
        3741,
        &["--hosts", "2", "--fail", "never_returns=0.5:recover=1"],
    );
    let before = sim.status();
    assert!(
        hosts(&before).values().all(|h| h["state"] == "up"),
        "{before}"
    );
    let book = sim.book(
        "version: 1\nname: rolling\ndefaults: { connect_timeout: 2s }\nstages:\n  - name: all\n    select: { dc: sim }\n    parallel: 100%\n    remediate: { power_cycle: 1 }\n    steps:\n      - reboot: { timeout: 6s }\n",
    );
    let (code, out, err) = sim.run_book(&book);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let never = faulted(&before, "never_returns");
    assert!(
        out.contains(&format!(
            "power-cycled by `remediate`: 1 host (1 cycle): {never}"
        )),
        "{out}"
    );
    let s = sim
        .sim
        .wait_status("the cured host up", Duration::from_secs(10), |s| {
            hosts(s)[&never]["state"] == "up"
        });
    for (name, h) in hosts(&s) {
        let cycles = u64::from(*name == never);
        assert_eq!(
            (&h["power_cycles"], &h["power_ons"], &h["reboots"]),
            (&cycles.into(), &0.into(), &1.into()),
            "{name}: {s}"
        );
    }
}

/// Power-cycle intents of the silent hosts of one PDU used to be journaled
/// together, each reset then waiting for its PDU turn: a kill -9 during
/// that wait left cycles never sent counted as sent, and the resume
/// quarantined hosts never cycled. Now each intent is journaled when its
/// turn comes: after the kill the journal holds the cycles sent (at most
/// one more, mid-send), and the resume cycles every other host once.
#[test]
fn kill_9_while_power_cycles_wait_for_their_pdu_turn_counts_only_the_cycles_sent() {
    // Four hosts that never come back, all on one PDU (the simulator's
    // inventory puts up to 40 hosts on `pdu-001`): cycles 2 s apart.
    let sim = BmcSim::start_up(25_200, &["--hosts", "4", "--fail", "never_returns=1"]);
    let book = sim.book(
        "version: 1\nname: rolling\ndefaults: { connect_timeout: 2s }\nstages:\n  - name: all\n    select: { dc: sim }\n    parallel: 100%\n    max_failures: 100%\n    remediate: { power_cycle: 1 }\n    steps:\n      - reboot: { timeout: 3s }\n",
    );
    let inventory = sim.sim.path("inventory.yaml");
    let mut run = KillOnDrop::new(
        sim.command(&[
            "run",
            book.to_str().expect("utf-8"),
            "-i",
            inventory.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run starts"),
    );
    let cycled = |s: &Value| -> Vec<String> {
        hosts(s)
            .iter()
            .filter(|(_, h)| h["power_cycles"].as_u64() > Some(0))
            .map(|(n, _)| n.clone())
            .collect()
    };
    sim.sim
        .wait_status("the first power cycle", Duration::from_secs(60), |s| {
            !cycled(s).is_empty()
        });
    // SAFETY: kill(2) on the pid of a child this test started and still holds.
    let rc = unsafe { libc::kill(run.pid() as i32, libc::SIGKILL) };
    assert_eq!(rc, 0);
    assert!(
        run.wait_for(Duration::from_secs(10)).is_some(),
        "the run died"
    );
    // status.json is rewritten every couple of seconds: let it catch up.
    std::thread::sleep(Duration::from_millis(2500));
    let sent = cycled(&sim.status());
    assert!(
        sent.len() < 4,
        "every cycle went out before the kill: {sent:?}"
    );
    let journal = std::fs::read_to_string(sim.journal()).expect("journal");
    let intents: Vec<String> = journal
        .lines()
        .filter(|l| l.contains(r#""event":"power_cycle_issued""#))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["host"]["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        sent.iter().all(|h| intents.contains(h)) && intents.len() <= sent.len() + 1,
        "intents {intents:?} for cycles sent {sent:?}"
    );

    let journal_file = sim.journal();
    let mut cmd = sim.command(&["resume", journal_file.to_str().expect("utf-8")]);
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let s = sim.status();
    for (name, h) in hosts(&s) {
        // A kill between an intent's fsync and its send (a few milliseconds)
        // leaves that one host's cycle recorded and not sent: never sent twice.
        let unsent = intents.contains(name) && !sent.contains(name);
        let want = if unsent { 0 } else { 1 };
        assert_eq!(
            h["power_cycles"], want,
            "{name}: cycled once, before or after the kill: {s}"
        );
        let line = failed_line(&out, name);
        assert!(line.contains("quarantined after 1 power cycle"), "{line}");
    }
    assert!(
        err.contains(&format!(
            "{} hosts were power-cycled by `remediate` before the interruption",
            intents.len()
        )),
        "{err}"
    );
}
