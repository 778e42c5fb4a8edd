//! Progress lines, summary and report formats from synthetic events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::formats;
use super::progress::{Lines, Totals};
use super::summary::{Collector, render_text};
use crate::engine::events::{
    EventKind, HostOutcome, HostRef, RunOutcome, StageOutcome, StageRef, StepKind,
};

fn s(i: usize, name: &str) -> StageRef {
    StageRef {
        index: i,
        name: name.into(),
    }
}

fn h(i: usize) -> HostRef {
    HostRef {
        index: i,
        name: format!("st{i}"),
    }
}

fn secs(x: u64) -> Duration {
    Duration::from_secs(x)
}

/// A storage stage of 4 hosts (one reboots and fails health, one is
/// unreachable), then db never starts: the budget was exceeded.
pub(crate) fn events() -> Vec<(Duration, EventKind)> {
    let st = || s(0, "storage");
    let mut v = vec![
        (
            secs(0),
            EventKind::RunStarted {
                plan: "cold-start".into(),
                stages: 2,
                hosts: 6,
            },
        ),
        (
            secs(0),
            EventKind::StageStarted {
                stage: st(),
                hosts: 4,
            },
        ),
    ];
    // Reboots: host i issued at 1+i, verified at 40 + 10*i.
    for i in 0..3 {
        v.push((
            secs(1 + i as u64),
            EventKind::HostStarted {
                stage: st(),
                host: h(i),
                canary: i == 0,
            },
        ));
        v.push((
            secs(1 + i as u64),
            EventKind::RebootIssued {
                stage: st(),
                host: h(i),
                step: 0,
                boot_id_before: format!("b{i}"),
            },
        ));
        v.push((
            secs(40 + 10 * i as u64),
            EventKind::StepFinished {
                stage: st(),
                host: h(i),
                step: 0,
                kind: StepKind::Reboot,
                error: None,
            },
        ));
    }
    v.push((
        secs(4),
        EventKind::HostStarted {
            stage: st(),
            host: h(3),
            canary: false,
        },
    ));
    v.push((
        secs(9),
        EventKind::HostFinished {
            stage: st(),
            host: h(3),
            outcome: HostOutcome::Unreachable {
                step: 0,
                failure: crate::engine::Failure::Connect {
                    error: crate::engine::failure::ConnectKind::Unreachable,
                },
                reason: "cannot connect to 127.0.0.4:22: connection refused".into(),
            },
            duration: secs(5),
        },
    ));
    v.push((
        secs(45),
        EventKind::HostFinished {
            stage: st(),
            host: h(0),
            outcome: HostOutcome::Done,
            duration: secs(44),
        },
    ));
    v.push((
        secs(52),
        EventKind::HostFinished {
            stage: st(),
            host: h(1),
            outcome: HostOutcome::Done,
            duration: secs(50),
        },
    ));
    v.push((
        secs(123),
        EventKind::HostFinished {
            stage: st(),
            host: h(2),
            outcome: HostOutcome::Failed {
                step: 1,
                kind: StepKind::Health,
                failure: crate::engine::Failure::Unhealthy,
                reason: "health checks did not pass within 1m: `systemctl is-active ceph-osd.target` exited with 3".into(),
                output: "a\nb\nc\nd\ne\ninactive <osd.2>\n".into(),
            },
            duration: secs(120),
        },
    ));
    v.push((
        secs(123),
        EventKind::StageFinished {
            stage: st(),
            outcome: StageOutcome::Aborted {
                reason: "failure budget exceeded: 1 hosts failed, budget 0".into(),
            },
            done: 2,
            failed: 1,
            skipped: 1,
        },
    ));
    v.push((
        secs(123),
        EventKind::StageFinished {
            stage: s(1, "db"),
            outcome: StageOutcome::Skipped {
                dependency: "storage".into(),
            },
            done: 0,
            failed: 0,
            skipped: 0,
        },
    ));
    v.push((
        secs(123),
        EventKind::RunFinished {
            outcome: RunOutcome::Aborted,
        },
    ));
    v.sort_by_key(|e| e.0);
    v
}

fn stages() -> Vec<(String, usize)> {
    vec![("storage".into(), 4), ("db".into(), 2)]
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_299_300)
}

pub(crate) fn summary() -> super::summary::Summary {
    let mut c = Collector::new();
    c.stages(stages());
    for (t, e) in events() {
        c.event(t0() + t, &e);
    }
    c.summary()
}

#[test]
fn progress_lines_off_a_terminal() {
    let mut lines = Lines::new(Vec::new(), Totals::new(stages(), 0));
    for (t, e) in events() {
        lines.event(&e, t).unwrap();
    }
    let out = String::from_utf8(lines.into_inner()).unwrap();
    insta::assert_snapshot!(out);
}

#[test]
fn status_line_every_ten_seconds_and_not_in_bursts() {
    let mut lines = Lines::new(Vec::new(), Totals::new(stages(), 0));
    lines.tick(secs(9)).unwrap();
    lines.tick(secs(10)).unwrap();
    lines.tick(secs(15)).unwrap();
    lines.tick(secs(55)).unwrap();
    lines.tick(secs(59)).unwrap();
    let out = String::from_utf8(lines.into_inner()).unwrap();
    let stamps: Vec<&str> = out
        .lines()
        .map(|l| &l[..l.find(']').unwrap() + 1])
        .collect();
    assert_eq!(stamps, ["[10s]", "[55s]"]);
}

#[test]
fn totals_count_resumed_hosts_and_stages_that_never_ran() {
    let mut t = Totals::new(stages(), 0);
    for (_, e) in events() {
        t.event_for_test(&e);
    }
    assert_eq!((t.done, t.failed, t.skipped, t.in_flight), (2, 1, 1, 0));
    assert_eq!(t.waiting(), 0, "db's 2 hosts never ran: not waiting");
    assert_eq!(t.not_run, 2);
}

#[test]
fn summary_text() {
    insta::assert_snapshot!(render_text(&summary()));
}

#[test]
fn boot_time_percentiles() {
    let b = summary().boot_time.unwrap();
    // Boot times 39 s, 48 s, 57 s.
    assert_eq!(
        (b.hosts, b.p50_ms, b.p95_ms, b.max_ms),
        (3, 48_000, 57_000, 57_000)
    );
}

#[test]
fn json_report() {
    let v: serde_json::Value = serde_json::from_str(&formats::json(&summary())).unwrap();
    assert_eq!(v["outcome"], "aborted");
    assert_eq!(v["stages"][0]["failed"], 1);
    assert_eq!(v["stages"][1]["not_run"], 2);
    assert_eq!(v["stages"][1]["status"], "skipped");
    assert_eq!(v["slowest"][0]["host"], "st2");
    assert_eq!(v["boot_time"]["p95_ms"], 57_000);
    insta::assert_snapshot!(formats::json(&summary()));
}

#[test]
fn junit_report() {
    insta::assert_snapshot!(formats::junit(&summary()));
}

#[test]
fn html_is_self_contained_with_a_timeline() {
    let page = formats::html(&summary());
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg"), "timeline picture");
    assert_eq!(
        page.matches("class=\"lane\"").count(),
        1,
        "one filled lane: db never ran"
    );
    assert_eq!(page.matches("class=\"failure\"").count(), 2);
    for external in ["http://", "https://", "src=", "<script", "<link", "url("] {
        let outside_svg_ns = page.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !outside_svg_ns.contains(external),
            "external resource: {external}"
        );
    }
    assert!(page.contains("inactive &lt;osd.2&gt;"), "output escaped");
}

#[test]
fn a_killed_run_shows_hosts_still_running() {
    let mut c = Collector::new();
    for (t, e) in events().into_iter().filter(|(t, _)| *t < secs(46)) {
        c.event(t0() + t, &e);
    }
    let sum = c.summary();
    assert_eq!(sum.outcome, None);
    let running: Vec<&str> = sum
        .hosts
        .iter()
        .filter(|h| h.status == "running")
        .map(|h| h.host.as_str())
        .collect();
    assert_eq!(running, ["st1", "st2"]);
    let text = render_text(&sum);
    assert!(text.contains("2 hosts were stopped mid-step"), "{text}");
    assert!(text.contains("did not finish (resumable"), "{text}");
}

#[test]
fn one_host_is_singular() {
    // Regression: "1 hosts" in the summary and the HTML report.
    let mut c = Collector::new();
    for (t, e) in events().into_iter().filter(|(t, _)| *t < secs(41)) {
        c.event(t0() + t, &e);
    }
    let sum = c.summary();
    let text = render_text(&sum);
    assert!(text.contains("verified), 1 host: p50"), "{text}");
    assert!(text.contains("\n3 hosts were stopped mid-step"), "{text}");
    let mut c = Collector::new();
    for (t, e) in events().into_iter().filter(|(t, _)| *t < secs(2)) {
        c.event(t0() + t, &e);
    }
    let text = render_text(&c.summary());
    assert!(
        text.contains("\n1 host was stopped mid-step; `rekindle resume` re-verifies it"),
        "{text}"
    );
    assert!(!formats::html(&c.summary()).contains("1 hosts"));
}
