//! `rekindle drill` through the real binary: a small inventory rehearsed on
//! an in-process simulated fleet (real SSH on 127.1.0.x; the drill picks its
//! own free ports), with and without injected faults.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::support;

const INVENTORY: &str = r#"
version: 1
datacenters:
  lab:
    hosts:
      - name: "db[1-4]"
        labels: { role: db, rack: "r{1}", pdu: "pdu-{1}", bmc: "10.9.0.{1}" }
      - name: "app[1-8]"
        labels: { role: app, rack: "r{1}" }
"#;

/// Commands the simulator cannot run (`pg_isready`, `dnf`) and a `local:`
/// step that would fail on this machine (`lb-ctl` does not exist): a drill
/// must replace them, or every host fails.
const PLAYBOOK: &str = r#"
version: 1
name: lab-reboot
defaults: { connect_timeout: 10s, max_failures: 50% }
stages:
  - name: db
    select: { role: db }
    parallel: 2
    steps:
      - run: "dnf -y -q upgrade kernel"
      - reboot: { timeout: 10m }
      - health:
          checks: [ { tcp: 5432 }, { ssh: "pg_isready -q" } ]
          timeout: 5m
          interval: 10s
  - name: app
    after: [db]
    select: { role: app }
    parallel: 4
    steps:
      - local: "lb-ctl drain {name}"
      - reboot
      - health:
          checks: [ { http: "http://{address}:8080/healthz", status: 200, body: "ok" } ]
          timeout: 5m
"#;

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(playbook: &str) -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("inv.yaml"), INVENTORY).expect("inventory");
        std::fs::write(dir.path().join("book.yaml"), playbook).expect("playbook");
        Files { dir }
    }

    fn drill(&self, extra: &[&str]) -> (i32, String, String) {
        support::run(
            support::rekindle_in(self.dir.path())
                .args(["drill", "book.yaml", "-i", "inv.yaml"])
                .args(extra)
                .stdin(Stdio::null()),
        )
    }
}

/// `1h2m3s` -> seconds.
fn seconds(humane: &str) -> u64 {
    let (mut total, mut n) = (0u64, 0u64);
    for c in humane.chars() {
        match c {
            '0'..='9' => n = n * 10 + u64::from(c.to_digit(10).unwrap_or(0)),
            'h' => (total, n) = (total + n * 3600, 0),
            'm' => (total, n) = (total + n * 60, 0),
            's' => (total, n) = (total + n, 0),
            _ => panic!("not a duration: {humane}"),
        }
    }
    total
}

fn predicted(out: &str) -> u64 {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("predicted recovery time: "))
        .unwrap_or_else(|| panic!("no prediction:\n{out}"));
    seconds(line.split_whitespace().next().unwrap_or(""))
}

#[test]
fn drill_rehearses_a_small_inventory_and_predicts_in_real_time() {
    let files = Files::new(PLAYBOOK);
    let (code, out, err) = files.drill(&["--speed", "20", "--boot-time", "20s"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("drill: `lab-reboot` on 12 simulated hosts (100% of the 12"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        12,
        "{out}"
    );
    // Two windows per stage, two stages, each host booting 20 s (real time):
    // the prediction cannot be below 4 boots.
    assert!(predicted(&out) >= 80, "{out}");
    assert!(out.contains("slowest stage: "), "{out}");
    assert!(out.contains("failures: none"), "{out}");
    for stage in ["db ", "app "] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(stage) && l.trim_end().ends_with("done")),
            "{stage}row:\n{out}"
        );
    }
}

#[test]
fn drill_lists_injected_failures_by_kind() {
    let files = Files::new(PLAYBOOK);
    // At 60x the 10 min reboot timeout a lost host waits out is 10 s.
    let (code, out, err) = files.drill(&[
        "--speed",
        "60",
        "--boot-time",
        "10s",
        "--fail",
        "never_returns=0.25",
        "--seed",
        "4",
    ]);
    // 3 of 12 never return; budgets of 50% hold: finished with failures.
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("failures by kind (3 hosts"), "{out}");
    assert!(out.contains("  reboot: did not come back: 3"), "{out}");
    assert_eq!(out.matches("[injected: never_returns]").count(), 3, "{out}");
    assert!(predicted(&out) > 0, "{out}");
}

#[test]
fn drill_writes_a_journal_report_reads_and_resume_refuses() {
    let files = Files::new(PLAYBOOK);
    let (code, out, err) = files.drill(&[
        "--speed",
        "50",
        "--fail",
        "never_returns=0.25",
        "--journal",
        "drills",
    ]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let journal = out
        .lines()
        .find_map(|l| l.strip_prefix("journal: "))
        .unwrap_or_else(|| panic!("no journal line:\n{out}"));
    let journal = files.dir.path().join(journal);
    assert!(
        journal.starts_with(files.dir.path().join("drills")),
        "{journal:?}"
    );
    let (code, report, err) = support::run(
        support::rekindle_in(files.dir.path()).args(["report", journal.to_str().unwrap_or("")]),
    );
    assert_eq!(code, 0, "{err}");
    assert!(report.contains("a drill on simulated hosts"), "{report}");
    // The drill's summary and the report agree on every failed host.
    let failed = out.matches("[injected: never_returns]").count();
    assert!(failed > 0, "{out}");
    assert!(
        report.contains(&format!("failures ({failed}):")),
        "{report}"
    );
    let (code, _, err) = support::run(
        support::rekindle_in(files.dir.path())
            .args(["resume", journal.to_str().unwrap_or(""), "--yes"])
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is the journal of a drill"), "{err}");
}

#[test]
fn drill_samples_keeping_every_role() {
    let files = Files::new(PLAYBOOK);
    let (code, out, err) = files.drill(&["--sample", "0.25", "--speed", "50"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // round(4 × 0.25) = 1 db, round(8 × 0.25) = 2 app.
    assert!(out.contains("on 3 simulated hosts (25% of the 12"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("ok ") && l.contains(" db "))
            .count(),
        1,
        "{out}"
    );
    assert!(out.contains("note: from a 25% sample"), "{out}");
}

#[test]
fn drill_refuses_bad_flags_before_touching_anything() {
    let files = Files::new(PLAYBOOK);
    let (code, _, err) = files.drill(&["--sample", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--sample must be a fraction"), "{err}");
    let (code, _, err) = files.drill(&["--speed", "0.5"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = files.drill(&["--fail", "never_return=0.1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `never_returns`"), "{err}");
    let (code, _, err) = files.drill(&["--limit", "role=nothing"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn drill_interrupted_twice_stops_now_with_130() {
    let files = Files::new(PLAYBOOK);
    // Real-time boots of a minute: hosts are surely in flight when interrupted.
    let mut child = support::rekindle_in(files.dir.path())
        .args(["drill", "book.yaml", "-i", "inv.yaml", "--boot-time", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drill starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The preamble's last line comes once the fleet is up and the engine starts.
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let last = line.contains("harmless stand-ins");
        seen.push(line);
        if last {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("harmless stand-ins")),
        "{seen:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let pid = i32::try_from(child.id()).expect("pid");
    for _ in 0..2 {
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("drill did not stop after two interrupts");
    };
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("drill report")),
        "a report even when interrupted: {rest:?}"
    );
}

#[test]
fn drill_of_a_power_on_playbook_powers_the_simulated_fleet_on_through_its_bmcs() {
    let power = Files::new(
        "version: 1\nname: p\nstages:\n  - name: all\n    select: { role: db }\n    parallel: 4\n    steps:\n      - power_on: { pdu_interval: 2s, timeout: 10m }\n      - wait_ssh: { timeout: 10m }\n",
    );
    let (code, out, err) = power.drill(&["--speed", "50"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(predicted(&out) > 0, "{out}");
}

/// A rolling reboot with `remediate` and no `power_on`: the drill's hosts
/// start up, yet have BMCs, so the straggler's power cycle is rehearsed
/// (and reported) instead of failing for want of a BMC.
#[test]
fn drill_of_a_remediating_reboot_rehearses_power_cycles_on_hosts_that_start_up() {
    let files = Files::new(
        "version: 1\nname: r\ndefaults: { remediate: { power_cycle: 1 } }\nstages:\n  - name: db\n    select: { role: db }\n    parallel: 4\n    steps:\n      - reboot: { timeout: 10m }\n",
    );
    let (code, out, err) = files.drill(&[
        "--speed",
        "50",
        "--fail",
        "never_returns=0.25:recover=1",
        "--yes",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("4 done, 0 failed"), "{out}");
    assert!(
        out.contains("power-cycled by `remediate`: 1 host (1 cycle): db"),
        "{out}"
    );
}

#[test]
fn drill_rehearses_per_host_bmc_credentials() {
    // Hosts with `bmc_credentials` labels get simulated BMCs that accept
    // only their entry (tests/it/power.rs proves the refusal); the drill
    // powers them on with the entries the sim wrote.
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc1:\n    hosts:\n      - name: \"d[1-3]\"\n        labels: { pdu: p1, bmc: \"10.9.9.{1}\", bmc_credentials: dell }\n      - name: h1\n        labels: { pdu: p2, bmc: \"10.9.9.9\", bmc_credentials: hp }\n",
        "version: 1\nstages:\n  - name: all\n    select: { dc: dc1 }\n    parallel: 100%\n    steps:\n      - power_on: { timeout: 1m, pdu_interval: 100ms }\n      - wait_ssh: { timeout: 1m }\n",
    );
    let mut cmd = support::rekindle_in(dir.path());
    cmd.args([
        "drill",
        "pb.yaml",
        "-i",
        "inv.yaml",
        "--powered-off",
        "--yes",
    ])
    .args(["--journal", "j"]);
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("4 done, 0 failed"), "{out}");
}

#[test]
fn drill_runs_become_wrapped_reboots_and_restarts() {
    // The simulated hosts answer `sudo -n -u root -- sh -c '...'` as their
    // root would: a playbook with `become` rehearses like any other.
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc1:\n    hosts:\n      - name: \"b[1-3]\"\n",
        "version: 1\nstages:\n  - name: all\n    select: { dc: dc1 }\n    parallel: 100%\n    become: true\n    steps:\n      - reboot: { timeout: 1m }\n      - restart_service: \"svc-{name}\"\n      - health: { checks: [ { ssh: \"systemctl is-active x\" } ], timeout: 30s }\n",
    );
    let mut cmd = support::rekindle_in(dir.path());
    cmd.args([
        "drill",
        "pb.yaml",
        "-i",
        "inv.yaml",
        "--yes",
        "--journal",
        "j",
    ])
    .args(["--become-password-file", "pw"]);
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("3 done, 0 failed"), "{out}");
    // A flag it cannot honour is named, not silently dropped.
    assert!(
        err.contains("warning: --become-password-file pw is not used by a drill"),
        "{err}"
    );
}

/// A default of scripts/drill.sh (`NAME=${NAME:-value}`), so the test
/// below drills exactly what the README's first command does.
fn drill_sh_default(name: &str) -> String {
    let script =
        std::fs::read_to_string(support::root().join("scripts/drill.sh")).expect("drill.sh");
    let prefix = format!("{name}=${{{name}:-");
    script
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix('}'))
        .unwrap_or_else(|| panic!("no default for {name} in scripts/drill.sh"))
        .to_owned()
}

/// The README's own drill (scripts/drill.sh's playbook, inventory and
/// defaults): its faults are placed, counted per stage, and act. Before,
/// `never_returns` only acted after a reboot, so this cold start reported
/// "failures: none" and never rehearsed a power cycle.
#[test]
fn the_readme_drill_counts_its_faults_per_stage_and_rehearses_remediation() {
    let root = support::root();
    let args: Vec<String> = [
        "drill".to_owned(),
        drill_sh_default("PLAYBOOK"),
        "-i".to_owned(),
        drill_sh_default("INVENTORY"),
        "--sample".to_owned(),
        drill_sh_default("SAMPLE"),
        "--speed".to_owned(),
        drill_sh_default("SPEED"),
        "--boot-time".to_owned(),
        drill_sh_default("BOOT_TIME"),
        "--fail".to_owned(),
        drill_sh_default("FAIL"),
        "--seed".to_owned(),
        drill_sh_default("SEED"),
    ]
    .into();
    let journal = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = support::run(
        support::rekindle_in(&root)
            .args(&args)
            .arg("--journal")
            .arg(journal.path())
            .stdin(Stdio::null()),
    );
    assert!(code == 0 || code == 1, "exit {code}\n{out}\n{err}");
    let placed = out
        .lines()
        .find_map(|l| l.strip_prefix("faults placed: "))
        .unwrap_or_else(|| panic!("no fault count:\n{out}"));
    // `21 hosts (network: slow_boot 1; ...; storage: flap 1, never_returns 1, ...)`
    let (total, per_stage) = placed.split_once(" hosts (").expect("N hosts (...)");
    let total: usize = total.parse().expect("a count");
    let mut sum = 0;
    let mut never_returns = 0;
    for stage in per_stage.trim_end_matches(')').split("; ") {
        let (_, kinds) = stage.split_once(": ").expect("stage: kinds");
        for kind in kinds.split(", ").filter(|k| *k != "none") {
            let (name, n) = kind.rsplit_once(' ').expect("kind N");
            let n: usize = n.parse().expect("a count");
            sum += n;
            if name == "never_returns" {
                never_returns += n;
            }
        }
    }
    // Each host of the cold start is in one stage: the stages' counts add up.
    assert_eq!(sum, total, "{out}");
    assert!(never_returns > 0, "{out}");
    // Dead hosts were power-cycled; those the cycle did not cure failed.
    assert!(out.contains("power-cycled by `remediate`: "), "{out}");
    assert!(out.contains("[injected: never_returns]"), "{out}");
    assert!(!out.contains("failures: none"), "{out}");
}

#[test]
fn a_drill_names_a_fault_no_step_of_the_plan_can_meet() {
    let files = Files::new(
        "version: 1\nname: c\nstages:\n  - name: app\n    select: { role: app }\n    parallel: 8\n    steps: [ { run: \"true\" } ]\n",
    );
    let (code, out, err) = files.drill(&["--speed", "20", "--fail", "flap=0.25"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let said = "`flap` cannot happen in this plan: no step reboots or powers on a host";
    assert!(
        format!("{out}{err}").matches(said).count() >= 2,
        "before the rehearsal and in its report:\n{out}\n{err}"
    );
    assert!(out.contains(&format!("not modelled: {said}")), "{out}");
    assert!(
        out.contains("faults placed: 2 hosts (app: flap 2)"),
        "{out}"
    );
}

/// Four racks of four hosts; rows cut across the racks (a host's place in
/// its rack).
const RACKS: &str = r#"
version: 1
datacenters:
  lab:
    hosts:
      - name: "a[1-4]"
        labels: { role: node, rack: ra, row: "w{1}" }
      - name: "b[1-4]"
        labels: { role: node, rack: rb, row: "w{1}" }
      - name: "c[1-4]"
        labels: { role: node, rack: rc, row: "w{1}" }
      - name: "d[1-4]"
        labels: { role: node, rack: rd, row: "w{1}" }
"#;

/// The RACKS fleet rebooted one stage, `max_unavailable: LIMIT`, drilled
/// at `--sample 0.25 --speed 20 --boot-time BOOT` into `drills/`.
fn racks_drill(limit: &str, boot: &str) -> (Files, i32, String, String) {
    let files = Files::new(&format!(
        r#"
version: 1
name: racks
stages:
  - name: nodes
    select: {{ role: node }}
    parallel: 100%
    max_unavailable: {limit}
    steps:
      - reboot: {{ timeout: 5m }}
      - health: {{ checks: [ {{ ssh: "systemctl is-system-running" }} ], timeout: 1m }}
"#
    ));
    std::fs::write(files.dir.path().join("inv.yaml"), RACKS).expect("inventory");
    let (code, out, err) = files.drill(&[
        "--sample",
        "0.25",
        "--speed",
        "20",
        "--boot-time",
        boot,
        "--journal",
        "drills",
    ]);
    (files, code, out, err)
}

/// The journal a drill printed (`journal: PATH`), and `report --format
/// json` of it.
fn drill_report<'a>(files: &Files, out: &'a str) -> (&'a str, String) {
    let journal = out
        .lines()
        .find_map(|l| l.strip_prefix("journal: "))
        .unwrap_or_else(|| panic!("no journal line:\n{out}"));
    let (code, json, err) = support::run(
        support::rekindle_in(files.dir.path()).args(["report", journal, "--format", "json"]),
    );
    assert_eq!(code, 0, "{err}");
    (journal, json)
}

/// `max_unavailable` counts per rack: a sample that kept one host of each
/// rack would reboot all four at once, where the full run reboots each
/// rack's hosts one after the other. The drill keeps whole racks, and says
/// what it still cannot model (rows cut across the racks it kept), in its
/// report and in the journal `report --format json` reads.
#[test]
fn a_drill_keeps_whole_racks_for_max_unavailable_and_says_what_it_cannot_model() {
    let (files, code, out, err) = racks_drill("{ rack: 1, row: 2 }", "20s");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("on 4 simulated hosts (25% of the 16"), "{out}");
    assert!(
        out.contains("drill: the sample keeps whole `rack` groups (1 of 4), so max_unavailable per `rack` holds as in full"),
        "{out}"
    );
    let done: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(done.len(), 4, "{out}");
    let rack = done[0].chars().next();
    assert!(
        done.iter().all(|h| h.chars().next() == rack),
        "one whole rack: {done:?}\n{out}"
    );
    // One host of the rack at a time, each booting 20 s: four boots.
    assert!(predicted(&out) >= 80, "{out}");
    let row = "stage `nodes`: `max_unavailable: { row: 2 }` counts hosts per `row`, and the sample could not keep every `row` group whole";
    let boot = "boot times come from `--boot-time` (20s): the prediction is as good as that is for the real hosts";
    for said in [row, boot] {
        assert!(out.contains(&format!("not modelled: {said}")), "{out}");
    }
    let (_, json) = drill_report(&files, &out);
    let summary: serde_json::Value = serde_json::from_str(&json).expect("json");
    let notes: Vec<&str> = summary["notes"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    for said in [row, boot] {
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with(&format!("not modelled by the drill: {said}"))),
            "{notes:?}"
        );
    }
}

/// A stage paced by `max_unavailable` alone ends with its slowest rack; the
/// sample keeps one rack of four, and the slowest of one is less slow than
/// the slowest of four. The prediction replays the stage at its full size
/// (four racks, each host drawn from the simulated hosts' times, one host of
/// a rack at a time), says so, and keeps it in the journal, where `report
/// --format json` gives it. Whether that lands near a full run is measured
/// against full real-time runs in BENCHMARKS.md 8c; here, that the replay
/// is wired and sane: four hosts one after the other, the slowest of four
/// such racks is slower than the one rack drilled (boot times vary 10-30 s)
/// and no slower than four of the slowest host.
#[test]
fn a_drill_replays_a_stage_its_racks_pace_at_its_full_size() {
    let (files, code, out, err) = racks_drill("{ rack: 1 }", "10s..30s");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("not modelled: stage `nodes` is replayed at full size for the prediction: a stage ends with its slowest slot, wave or group"),
        "{out}"
    );
    let pace = "4 `rack` groups side by side (1 simulated), 1 of each at a time";
    assert!(
        out.contains(&format!(
            "  stage nodes replayed at its full size (16 hosts, 4 simulated; {pace}): "
        )),
        "{out}"
    );
    let (journal, json) = drill_report(&files, &out);
    let summary: serde_json::Value = serde_json::from_str(&json).expect("json");
    let predicted = &summary["predicted"];
    let stage = &predicted["stages"][0];
    assert_eq!(stage["name"], "nodes", "{json}");
    let replayed = &stage["replayed"];
    assert_eq!(replayed["hosts"], 16, "{json}");
    assert_eq!(replayed["simulated"], 4, "{json}");
    assert_eq!(replayed["pace"], pace, "{json}");
    let ms = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not ms: {v}\n{json}"));
    let (measured, replayed_ms, total) = (
        ms(&replayed["measured_ms"]),
        ms(&stage["duration_ms"]),
        ms(&predicted["total_ms"]),
    );
    // The hosts' times, in real time (the journal's are drill time).
    let hosts: Vec<u64> = summary["hosts"]
        .as_array()
        .map(|a| a.iter().map(|h| ms(&h["duration_ms"]) * 20).collect())
        .unwrap_or_default();
    assert_eq!(hosts.len(), 4, "{json}");
    let slowest = hosts.iter().copied().max().unwrap_or(0);
    assert!(
        measured < replayed_ms && replayed_ms <= 4 * slowest + 20,
        "measured {measured}, replayed {replayed_ms}, hosts {hosts:?}"
    );
    // One stage: the run ends with it, later by as much as the replay adds.
    let drilled = ms(&summary["elapsed_ms"]) * 20;
    let moved = replayed_ms - measured;
    assert!(
        total + 100 >= drilled + moved && total <= drilled + moved + 100,
        "total {total}, drilled {drilled}, moved {moved}"
    );
    let total = rekindle::time::humane(Duration::from_millis(total));
    assert!(
        out.contains(&format!("predicted recovery time: {total} ")),
        "{out}"
    );
    let (_, text, _) =
        support::run(support::rekindle_in(files.dir.path()).args(["report", journal]));
    assert!(
        text.contains(&format!(
            "the drill predicts a recovery time of {total} in real time"
        )),
        "{text}"
    );
}
