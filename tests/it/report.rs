//! `rekindle report` from a synthetic journal: text, JSON, JUnit (parsed as
//! XML), and HTML opened in headless Chromium for a screenshot.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rekindle::engine::events::{
    EventKind, HostOutcome, HostRef, RunOutcome, StageOutcome, StageRef, StepKind,
};
use rekindle::journal::{self, FileHash, Header, StageHead};

use crate::support;

fn stage(i: usize, name: &str) -> StageRef {
    StageRef {
        index: i,
        name: name.into(),
    }
}

fn host(i: usize) -> HostRef {
    HostRef {
        index: i,
        name: format!("pg-r{:03}-db{}", i / 2 + 1, i % 2 + 1),
    }
}

/// A run of 40 storage hosts (3 fail, 1 unreachable) and 20 db hosts, with
/// reboots; the db stage runs after storage.
pub fn synthetic_journal(dir: &Path) -> PathBuf {
    let path = dir.join("run.jsonl");
    let t0 = UNIX_EPOCH + Duration::from_secs(1_795_299_300);
    let header = Header {
        format: journal::FORMAT,
        run_id: "20261121T221500Z-cold-start-0001".into(),
        plan: "cold-start".into(),
        playbook: FileHash {
            path: "/p/cold-start.yaml".into(),
            sha256: "0".repeat(64),
        },
        inventories: vec![],
        limit: None,
        parallel: None,
        rate: None,
        operator: "sre".into(),
        bastion: "bastion1".into(),
        rekindle_version: "0.1.0".into(),
        started_at: journal::rfc3339(t0),
        stages: vec![
            StageHead {
                name: "storage".into(),
                hosts: 40,
            },
            StageHead {
                name: "db".into(),
                hosts: 20,
            },
        ],
        etcd: None,
    };
    let mut w = journal::create(&path, &header).expect("journal");
    let mut events: Vec<(u64, EventKind)> = Vec::new();
    let mut add_stage = |si: usize, name: &str, first: usize, n: usize, start: u64| {
        let s = || stage(si, name);
        events.push((
            start,
            EventKind::StageStarted {
                stage: s(),
                hosts: n,
            },
        ));
        let mut end = start;
        for k in 0..n {
            let h = host(first + k);
            let begin = start + (k as u64 / 8) * 40 + (k as u64 % 8);
            let boot = 20 + (k as u64 * 7) % 25;
            events.push((
                begin,
                EventKind::HostStarted {
                    stage: s(),
                    host: h.clone(),
                    canary: k == 0,
                },
            ));
            let outcome = if si == 0 && k == 13 {
                events.push((
                    begin + 5,
                    EventKind::HostFinished {
                        stage: s(),
                        host: h,
                        outcome: HostOutcome::Unreachable {
                            step: 0,
                            failure: rekindle::engine::Failure::Connect {
                                error: rekindle::engine::failure::ConnectKind::Unreachable,
                            },
                            reason: "cannot connect: connection refused".into(),
                        },
                        duration: Duration::from_secs(5),
                    },
                ));
                continue;
            } else if si == 0 && (k == 7 || k == 21 || k == 30) {
                HostOutcome::Failed {
                    step: 1,
                    kind: StepKind::Health,
                    failure: rekindle::engine::Failure::Unhealthy,
                    reason: "health checks did not pass within 10m: tcp 6800 refused".into(),
                    output: "osd.3 down\nosd.3 <failed> & \"stuck\"\n".into(),
                }
            } else {
                HostOutcome::Done
            };
            events.push((
                begin + 1,
                EventKind::RebootIssued {
                    stage: s(),
                    host: h.clone(),
                    step: 0,
                    boot_id_before: "b".into(),
                },
            ));
            events.push((
                begin + 1 + boot,
                EventKind::StepFinished {
                    stage: s(),
                    host: h.clone(),
                    step: 0,
                    kind: StepKind::Reboot,
                    error: None,
                },
            ));
            let fin = begin + 5 + boot;
            end = end.max(fin);
            events.push((
                fin,
                EventKind::HostFinished {
                    stage: s(),
                    host: h,
                    outcome,
                    duration: Duration::from_secs(fin - begin),
                },
            ));
        }
        events.push((
            end,
            EventKind::StageFinished {
                stage: s(),
                outcome: StageOutcome::Done,
                done: 0,
                failed: 0,
                skipped: 0,
            },
        ));
        end
    };
    let end = add_stage(0, "storage", 0, 40, 0);
    let end = add_stage(1, "db", 40, 20, end + 1);
    events.push((
        end,
        EventKind::RunFinished {
            outcome: RunOutcome::Failures,
        },
    ));
    events.sort_by_key(|e| e.0);
    for (t, kind) in events {
        let at: SystemTime = t0 + Duration::from_secs(t);
        w.push_event(at, Duration::from_secs(t), &kind, None);
    }
    w.finish().expect("journal written");
    path
}

fn report(journal: &Path, format: &str) -> String {
    let (code, out, err) = support::run(
        support::rekindle()
            .args(["report", "--format", format])
            .arg(journal),
    );
    assert_eq!(code, 0, "report --format {format}: {err}");
    out
}

#[test]
fn text_and_json_reports_from_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let j = synthetic_journal(dir.path());
    let text = report(&j, "text");
    assert!(
        text.contains("storage      40      36       3        1        0  done"),
        "{text}"
    );
    assert!(text.contains("failures (4):"), "{text}");
    // The three identical health failures fold into one group, largest first.
    assert!(
        text.contains(
            "failures (4):\n  storage  step 2 (health): health checks did not pass within 10m: tcp 6800 refused\n    3 hosts: pg-r[004,011]-db2,pg-r016-db1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("boot time (reboot issued to new boot id verified), 59 hosts"),
        "{text}"
    );
    assert!(
        text.contains("run cold-start: finished with failures inside the budgets"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&report(&j, "json")).unwrap();
    assert_eq!(v["stages"][0]["done"], 36);
    assert_eq!(v["stages"][1]["done"], 20);
    assert_eq!(v["hosts"].as_array().unwrap().len(), 60);
    assert_eq!(v["outcome"], "failures");
}

#[test]
fn junit_is_xml_with_a_suite_per_stage_and_a_case_per_host() {
    let dir = tempfile::tempdir().unwrap();
    let j = synthetic_journal(dir.path());
    let out = dir.path().join("junit.xml");
    let (code, _, err) = support::run(
        support::rekindle()
            .args(["report", "--format", "junit", "-o"])
            .arg(&out)
            .arg(&j),
    );
    assert_eq!(code, 0, "{err}");
    let xml = std::fs::read_to_string(&out).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit report parses as XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(root.attribute("tests"), Some("60"));
    assert_eq!(root.attribute("failures"), Some("3"));
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<_> = suites
        .iter()
        .map(|s| s.attribute("name").unwrap())
        .collect();
    assert_eq!(names, ["storage", "db"]);
    let cases = |s: &roxmltree::Node| s.children().filter(|n| n.has_tag_name("testcase")).count();
    assert_eq!((cases(&suites[0]), cases(&suites[1])), (40, 20));
    let failures: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("failure"))
        .collect();
    assert_eq!(failures.len(), 3);
    assert!(
        failures[0]
            .attribute("message")
            .unwrap()
            .contains("tcp 6800 refused")
    );
    assert!(
        failures[0]
            .text()
            .unwrap()
            .contains("osd.3 <failed> & \"stuck\"")
    );
    assert_eq!(
        failures[0].parent().unwrap().attribute("classname"),
        Some("storage")
    );
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("skipped"))
            .count(),
        1
    );
}

/// Debian's Chromium (scripts/test.sh installs it when missing).
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Kills the browser if the test ends early.
#[test]
fn html_report_renders_its_timeline_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let j = synthetic_journal(dir.path());
    let html = dir.path().join("report.html");
    let (code, _, err) = support::run(
        support::rekindle()
            .args(["report", "--format", "html", "-o"])
            .arg(&html)
            .arg(&j),
    );
    assert_eq!(code, 0, "{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg"));
    assert_eq!(page.matches("class=\"lane\"").count(), 2);
    assert_eq!(page.matches("class=\"failure\"").count(), 4);
    // Failures folded by cause: 3 identical health failures and 1 unreachable host.
    assert_eq!(page.matches("class=\"cause\"").count(), 2);
    assert!(page.contains("<td class=\"n\">3</td><td>pg-r[004,011]-db2,pg-r016-db1</td>"));

    let Some(browser) = chromium() else {
        panic!("chromium is not installed: scripts/test.sh installs Debian's `chromium`");
    };
    let profile = tempfile::tempdir().unwrap();
    let shot = dir.path().join("report.png");
    let child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    // Bounded wait: Chromium writes the screenshot and exits.
    let exited = support::KillOnDrop::new(child).wait_for(Duration::from_secs(60));
    assert!(exited.is_some(), "chromium did not finish within 60 s");
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A blank 1400x900 page compresses to a few KiB; a drawn timeline does not.
    assert!(
        png.len() > 20_000,
        "screenshot is nearly empty: {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("REKINDLE_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
}

/// The one journal file (`RUN_ID.jsonl`) a run wrote into `dir`.
fn only_journal(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn failed_hosts_as_a_selector_retry_exactly_those_hosts_with_limit() {
    // Ansible's retry files, as a selector: run, list the failed hosts
    // folded into ranges, and run again with `--limit` on just those.
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yaml");
    std::fs::write(
        &inv,
        "version: 1\ndatacenters:\n  pangyo:\n    hosts:\n\
         \x20     - name: \"pg-r[001-003]-db1\"\n        labels: { code: \"3\" }\n\
         \x20     - name: pg-r007-db1\n        labels: { code: \"3\" }\n\
         \x20     - name: \"pg-r[004-006]-db1\"\n        labels: { code: \"0\" }\n\
         \x20     - name: \"pg-r[001-004]-db2\"\n        labels: { code: \"0\" }\n",
    )
    .unwrap();
    let sim = support::SimProcess::start(&[
        "-i",
        inv.to_str().unwrap(),
        "--port",
        "2801",
        "--http-port",
        "2802",
    ]);
    let fleet = sim.path("inventory.yaml");
    // Hosts labelled code=3 exit 3 (the simulator runs `exit N`), the rest `true`.
    let book = |name: &str, bad: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "version: 1\ndefaults: {{ parallel: 100%, max_failures: 100% }}\nstages:\n\
                 \x20 - name: bad\n    select: {{ code: \"3\" }}\n    steps: [ run: \"{bad}\" ]\n\
                 \x20 - name: good\n    select: {{ code: \"0\" }}\n    steps: [ run: \"true\" ]\n"
            ),
        )
        .unwrap();
        path
    };
    let run = |playbook: &Path, journal: &str, limit: Option<&str>| {
        let mut cmd = support::rekindle_in(dir.path());
        cmd.arg("run")
            .arg(playbook)
            .arg("-i")
            .arg(&fleet)
            .args(["--yes", "--journal", journal])
            .stdin(Stdio::null());
        if let Some(l) = limit {
            cmd.args(["--limit", l]);
        }
        support::run(&mut cmd)
    };
    let (code, out, err) = run(&book("first.yaml", "exit 3"), "j1", None);
    assert_eq!(code, 1, "failures inside the budget\n{out}\n{err}");
    let journal = only_journal(&dir.path().join("j1"));

    let (code, selector, err) = support::run(
        support::rekindle_in(dir.path())
            .arg("report")
            .arg(&journal)
            .args(["--format", "hosts", "--status", "failed"]),
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(selector, "host=pg-r[001-003,007]-db1\n");
    // Done hosts, and several statuses at once.
    let (_, done, _) = support::run(
        support::rekindle_in(dir.path())
            .arg("report")
            .arg(&journal)
            .args(["--format", "hosts", "--status", "done,unreachable"]),
    );
    assert_eq!(done, "host=pg-r[001-004]-db2,host=pg-r[004-006]-db1\n");

    let (code, out, err) = run(&book("retry.yaml", "true"), "j2", Some(selector.trim()));
    assert_eq!(code, 0, "the retry succeeds\n{out}\n{err}");
    let retried = report(&only_journal(&dir.path().join("j2")), "json");
    let v: serde_json::Value = serde_json::from_str(&retried).unwrap();
    let mut names: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["status"], "done", "{h}");
            h["host"].as_str().unwrap()
        })
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["pg-r001-db1", "pg-r002-db1", "pg-r003-db1", "pg-r007-db1"]
    );

    // Nothing failed in the retry: an empty answer, said on stderr.
    let (code, out, err) = support::run(
        support::rekindle_in(dir.path())
            .arg("report")
            .arg(only_journal(&dir.path().join("j2")))
            .args(["--format", "hosts", "--status", "failed"]),
    );
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(err.contains("no host of this run has the status"), "{err}");
    // --status means nothing to the other formats: refused, not ignored.
    let (code, _, err) = support::run(
        support::rekindle_in(dir.path())
            .arg("report")
            .arg(&journal)
            .args(["--status", "failed"]),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("--status selects hosts for `--format hosts` only"),
        "{err}"
    );
}
