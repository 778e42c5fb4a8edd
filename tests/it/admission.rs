//! Admission end to end: readiness gates and growing waves, the real
//! `rekindle run` against a real `rekindle sim`. What started before what is
//! read from the run's journal (record order, never wall-clock durations);
//! what each host did, from the simulator's status.json. Ports 27xx and 25501-25502.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::support::{self, SimProcess};

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

    fn journal(&self) -> PathBuf {
        self.sim.out().join("journal")
    }

    /// Runs `playbook` over the fleet: (exit code, stdout, stderr).
    fn run(&self, playbook: &str) -> (i32, String, String) {
        let dir = self.sim.out();
        let book = dir.join("book.yaml");
        std::fs::write(&book, playbook).expect("write playbook");
        support::run(
            support::rekindle_in(dir)
                .arg("run")
                .arg(&book)
                .arg("-i")
                .arg(dir.join("inventory.yaml"))
                .arg("--journal")
                .arg(self.journal())
                .arg("--yes")
                .stdin(Stdio::null()),
        )
    }

    /// Host names in order, and the one carrying `fault` ("": none wanted).
    fn names_and(&self, fault: &str) -> (Vec<String>, String) {
        let status = self.sim.status();
        let hosts = status["hosts"].as_object().expect("hosts map");
        let faulted = hosts
            .iter()
            .find(|(_, h)| h["fault"] == fault)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| {
                assert!(fault.is_empty(), "no host with fault {fault}: {status}");
                String::new()
            });
        let mut names: Vec<String> = hosts.keys().cloned().collect();
        names.sort();
        (names, faulted)
    }

    /// Two tiers around the host carrying `fault`: `storage` is that host
    /// and the next three others, `dns` the rest; with every name and it.
    fn tiers(&self, fault: &str) -> Tiers {
        let (names, faulty) = self.names_and(fault);
        let others: Vec<String> = names.iter().filter(|n| **n != faulty).cloned().collect();
        let storage = std::iter::once(faulty.clone())
            .chain(others[..3].iter().cloned())
            .collect();
        let dns = others[3..].to_vec();
        Tiers {
            names,
            faulty,
            storage,
            dns,
        }
    }
}

struct Tiers {
    names: Vec<String>,
    faulty: String,
    storage: Vec<String>,
    dns: Vec<String>,
}

/// The journal's host events in order: ("started" | "finished", host, stage).
fn host_events(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(support::journal_in(dir)).expect("journal");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            let what = match v["event"].as_str()? {
                "host_started" => "started",
                "host_finished" => "finished",
                _ => return None,
            };
            Some((
                what.to_owned(),
                v["host"]["name"].as_str()?.to_owned(),
                v["stage"]["name"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

fn position(events: &[(String, String, String)], what: &str, host: &str) -> usize {
    events
        .iter()
        .position(|(w, h, _)| w == what && h == host)
        .unwrap_or_else(|| panic!("no {what} for {host}: {events:?}"))
}

fn list(names: &[String]) -> String {
    names.join(", ")
}

#[test]
fn a_tier_starts_at_its_gate_while_a_slow_booting_straggler_still_runs() {
    // Six hosts, one boots five times slower (10 s against 2 s).
    let fleet = Fleet::start(
        2701,
        &[
            "--hosts",
            "6",
            "--boot-time",
            "2s",
            "--fail",
            "slow_boot=0.17",
        ],
    );
    let Tiers {
        names,
        faulty: slow,
        storage,
        dns,
    } = fleet.tiers("slow_boot");
    let (code, out, err) = fleet.run(&format!(
        r#"
version: 1
name: gated
defaults: {{ connect_timeout: 5s }}
stages:
  - name: storage
    select: {{ name: [{}] }}
    parallel: 4
    steps: [ {{ reboot: {{ timeout: 60s }} }} ]
  - name: dns
    after: {{ storage: 75% }}
    select: {{ name: [{}] }}
    parallel: 2
    steps: [ {{ reboot: {{ timeout: 60s }} }} ]
"#,
        list(&storage),
        list(&dns)
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let events = host_events(&fleet.journal());
    let slow_done = position(&events, "finished", &slow);
    for h in &dns {
        // The gated tier started while the straggler was still booting.
        assert!(
            position(&events, "started", h) < slow_done,
            "{h} waited for the straggler {slow}: {events:?}"
        );
    }
    for h in &storage[1..] {
        assert!(position(&events, "finished", h) < position(&events, "started", &dns[0]));
    }
    // Every host rebooted exactly once, the straggler included.
    let status = fleet.sim.status();
    for n in &names {
        assert_eq!(status["hosts"][n]["reboots"], 1, "{n}: {status}");
    }
}

#[test]
fn a_straggler_over_the_budget_stops_the_tier_already_started_at_its_gate() {
    // One host never returns; storage tolerates no failure.
    let fleet = Fleet::start(
        2711,
        &[
            "--hosts",
            "8",
            "--boot-time",
            "1s",
            "--fail",
            "never_returns=0.13",
        ],
    );
    let Tiers {
        faulty: dead,
        storage,
        dns,
        ..
    } = fleet.tiers("never_returns");
    // dns runs one host at a time, each with a 3 s step after its reboot,
    // so it is still starting hosts when the dead host's 8 s timeout ends.
    let (code, out, err) = fleet.run(&format!(
        r#"
version: 1
name: gated
defaults: {{ connect_timeout: 2s }}
stages:
  - name: storage
    select: {{ name: [{}] }}
    parallel: 4
    steps: [ {{ reboot: {{ timeout: 8s }} }} ]
  - name: dns
    after: {{ storage: 75% }}
    select: {{ name: [{}] }}
    steps: [ {{ reboot: {{ timeout: 60s }} }}, {{ run: "sleep 3" }} ]
"#,
        list(&storage),
        list(&dns)
    ));
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("`storage`, which this stage started after at its 75% gate, stopped: failure budget exceeded"),
        "{out}"
    );
    let events = host_events(&fleet.journal());
    let broke = position(&events, "finished", &dead);
    let started: Vec<&String> = dns
        .iter()
        .filter(|h| events.iter().any(|(w, n, _)| w == "started" && n == *h))
        .collect();
    assert!(
        !started.is_empty(),
        "dns never started at its gate: {events:?}"
    );
    assert!(
        started.len() < dns.len(),
        "every dns host started: {events:?}"
    );
    for h in &started {
        assert!(
            position(&events, "started", h) < broke,
            "{h} started after the budget broke"
        );
    }
    // Hosts that never started were never rebooted.
    let status = fleet.sim.status();
    for h in dns.iter().filter(|h| !started.contains(h)) {
        assert_eq!(status["hosts"][h.as_str()]["reboots"], 0, "{h}: {status}");
    }
}

/// The journal shows `later` started only after `earlier` finished.
fn after_end(events: &[(String, String, String)], later: &str, earlier: &str) -> bool {
    position(events, "started", later) > position(events, "finished", earlier)
}

#[test]
fn waves_grow_only_after_a_clean_wave() {
    let fleet = Fleet::start(2721, &["--hosts", "7", "--boot-time", "1s"]);
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: waves
defaults: { connect_timeout: 5s }
stages:
  - name: all
    select: { role: app }
    parallel: [1, 2, 4]
    steps: [ { reboot: { timeout: 60s } } ]
"#,
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let events = host_events(&fleet.journal());
    let (names, _) = fleet.names_and("");
    let n: Vec<&str> = names.iter().map(String::as_str).collect();
    // Wave 1 alone; wave 2 together, after wave 1; then 4 at once after wave 2.
    assert!(
        after_end(&events, n[1], n[0]) && after_end(&events, n[2], n[0]),
        "{events:?}"
    );
    assert!(
        !after_end(&events, n[2], n[1]),
        "wave 2 ran one at a time: {events:?}"
    );
    for later in &n[3..] {
        for earlier in &n[1..3] {
            assert!(
                after_end(&events, later, earlier),
                "{later} before {earlier} ended: {events:?}"
            );
        }
    }
    for a in &n[3..] {
        for b in &n[3..] {
            assert!(
                !after_end(&events, a, b),
                "the last size did not hold 4: {events:?}"
            );
        }
    }
    let status = fleet.sim.status();
    for h in &n {
        assert_eq!(status["hosts"][*h]["reboots"], 1, "{h}: {status}");
    }
}

#[test]
fn a_failing_wave_stops_the_growth() {
    // A seed that puts the one never_returns host first, in the first wave.
    let faults = [(rekindle::sim::config::FaultKind::NeverReturns, 1.0 / 6.0)];
    let seed = (1..1000u64)
        .find(|&s| rekindle::sim::config::place_faults(6, &faults, s)[0].is_some())
        .expect("some seed faults the first host");
    let seed = seed.to_string();
    let fleet = Fleet::start(
        2731,
        &[
            "--hosts",
            "6",
            "--boot-time",
            "1s",
            "--fail",
            "never_returns=0.17",
            "--seed",
            &seed,
        ],
    );
    let (names, dead) = fleet.names_and("never_returns");
    assert_eq!(dead, names[0], "the seed search and the simulator disagree");
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: waves
defaults: { connect_timeout: 2s }
stages:
  - name: all
    select: { role: app }
    parallel: [1, 4]
    max_failures: 1
    steps: [ { reboot: { timeout: 4s } } ]
"#,
    );
    assert_eq!(
        code, 1,
        "failures inside the budget\nstdout:\n{out}\nstderr:\n{err}"
    );
    let events = host_events(&fleet.journal());
    let n: Vec<&str> = names.iter().map(String::as_str).collect();
    // The failed wave of 1 keeps the window at 1: each host after the one before.
    for w in n.windows(2) {
        assert!(
            after_end(&events, w[1], w[0]),
            "{} overlapped {}: {events:?}",
            w[1],
            w[0]
        );
    }
    let status = fleet.sim.status();
    for h in &n {
        assert_eq!(status["hosts"][*h]["reboots"], 1, "{h}: {status}");
    }
}

/// The journal's host_finished outcome of `host` in `stage`, as written.
fn finished_outcome(dir: &std::path::Path, stage: &str, host: &str) -> Option<Value> {
    let text = std::fs::read_to_string(support::journal_in(dir)).expect("journal");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["event"] == "host_finished"
                && v["stage"]["name"] == stage
                && v["host"]["name"] == host
        })
        .map(|v| v["outcome"].clone())
}

#[test]
fn a_host_is_in_one_stage_at_a_time_and_one_that_failed_leaves_the_plan() {
    // Six hosts, one never returns from its reboot. `db` reboots them all,
    // three at a time; `audit` (no `after`) runs a command on all of them
    // at once; `app` comes after db. Before hosts were one stage at a time,
    // audit ran on hosts db was rebooting ("connection closed") and spent
    // its budget; app ran the dead host and failed it again.
    let fleet = Fleet::start(
        25501,
        &[
            "--hosts",
            "6",
            "--boot-time",
            "2s",
            "--fail",
            "never_returns=0.17",
        ],
    );
    let (names, dead) = fleet.names_and("never_returns");
    let (code, out, err) = fleet.run(
        r#"
version: 1
name: shared
defaults: { connect_timeout: 2s }
stages:
  - name: db
    select: { name: "*" }
    parallel: 3
    max_failures: 1
    steps: [ { reboot: { timeout: 8s } } ]
  - name: audit
    select: { name: "*" }
    parallel: 6
    steps: [ { run: "sleep 1" } ]
  - name: app
    after: db
    select: { name: "*" }
    steps: [ { run: "true" } ]
"#,
    );
    // Failures (the dead host), not aborted: no budget but db's was spent.
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let events = host_events(&fleet.journal());
    // Per host, in journal order: a stage starts it only after the stage
    // before it finished it.
    for h in &names {
        let mine: Vec<&(String, String, String)> =
            events.iter().filter(|(_, n, _)| n == h).collect();
        let mut open: Option<&str> = None;
        for (what, _, stage) in &mine {
            match (what.as_str(), open) {
                ("started", None) => open = Some(stage),
                ("started", Some(other)) => {
                    panic!("{h} started in {stage} while in flight in {other}: {mine:?}")
                }
                ("finished", Some(s)) if s == stage => open = None,
                // A skipped host finishes without having started.
                ("finished", _) => {}
                _ => unreachable!(),
            }
        }
    }
    assert!(
        out.contains("audit waits for") || text_has_wait(&fleet.journal()),
        "no wait was announced:\n{out}"
    );
    // The dead host failed in db and was skipped, not failed, by app.
    assert_eq!(
        finished_outcome(&fleet.journal(), "app", &dead),
        Some(serde_json::json!({"status": "skipped", "earlier": "db", "unreachable": false})),
        "{out}"
    );
    assert!(out.contains("failed in stage `db`"), "{out}");
    // Every other host ran audit and app once, and db rebooted it once.
    let status = fleet.sim.status();
    for h in names.iter().filter(|h| **h != dead) {
        assert_eq!(status["hosts"][h.as_str()]["reboots"], 1, "{h}: {status}");
        for stage in ["audit", "app"] {
            assert_eq!(
                finished_outcome(&fleet.journal(), stage, h),
                Some(serde_json::json!({"status": "done"})),
                "{h} in {stage}: {out}"
            );
        }
    }
}

/// Whether the journal has a host_waiting event.
fn text_has_wait(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(support::journal_in(dir))
        .expect("journal")
        .contains("\"host_waiting\"")
}
