//! Progress lines, summary and report formats from synthetic events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::fold::Collector;
use super::formats;
use super::progress::{Lines, Totals};
use super::summary::HostStatus;
use super::text::render_text;
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

/// The run's state with `totals`, as the session makes it.
fn counted(totals: Totals) -> super::state::Shared {
    let mut state = super::state::RunState::new(Collector::new());
    state.totals = totals;
    state.shared()
}

#[test]
fn progress_lines_off_a_terminal() {
    let state = counted(Totals::new(stages(), 0));
    let mut lines = Lines::reading(Vec::new(), std::sync::Arc::clone(&state));
    for (t, e) in events() {
        super::state::lock(&state).event(t0() + t, t, &e);
        lines.event(&e, t).unwrap();
    }
    let out = String::from_utf8(lines.into_inner()).unwrap();
    insta::assert_snapshot!(out);
}

#[test]
fn status_line_every_ten_seconds_and_not_in_bursts() {
    let mut lines = Lines::reading(Vec::new(), counted(Totals::new(stages(), 0)));
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

/// Power cycles count per host across a resume's second start of it, and
/// the text and JSON say who was cycled.
#[test]
fn power_cycles_are_counted_across_resumes_and_reported() {
    let cycle = |host: usize, attempt: u32| EventKind::PowerCycleIssued {
        stage: s(0, "storage"),
        host: h(host),
        step: 0,
        attempt,
        reset_type: "PowerCycle".into(),
    };
    let mut c = Collector::new();
    c.stages(stages());
    for (t, e) in events() {
        c.event(t0() + t, &e);
        if matches!(&e, EventKind::RebootIssued { host, .. } if host.index == 1) {
            c.event(t0() + t, &cycle(1, 1));
            // The run died and a resume started the host again.
            c.event(
                t0() + t,
                &EventKind::HostStarted {
                    stage: s(0, "storage"),
                    host: h(1),
                    canary: false,
                },
            );
            c.event(t0() + t, &cycle(1, 2));
        }
    }
    let summary = c.summary();
    assert_eq!(summary.power_cycled(), (vec!["st1"], 2));
    let text = render_text(&summary);
    assert!(
        text.contains("power-cycled by `remediate`: 1 host (2 cycles): st1"),
        "{text}"
    );
    let json = serde_json::to_value(&summary).unwrap();
    let hosts = json["hosts"].as_array().unwrap();
    assert_eq!(hosts[1]["power_cycles"], 2);
    assert!(hosts[0].get("power_cycles").is_none(), "{json}");
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

/// A bastion's clock stepped 72 h forward while a host rebooted: the boot
/// time is the monotonic clock's (the journal's `ms`), not the wall clock's.
#[test]
fn boot_time_survives_a_wall_clock_jump() {
    use crate::journal::{Record, rfc3339};
    let stage = StageRef {
        index: 0,
        name: "s".into(),
    };
    let host = HostRef {
        index: 0,
        name: "h".into(),
    };
    let event = |at: std::time::SystemTime, ms: u64, kind: EventKind| Record::Event {
        at: rfc3339(at),
        ms,
        kind,
    };
    let mut c = Collector::new();
    c.record(&event(
        t0(),
        1_000,
        EventKind::RebootIssued {
            stage: stage.clone(),
            host: host.clone(),
            step: 0,
            boot_id_before: "a".into(),
        },
    ));
    c.record(&event(
        t0() + Duration::from_secs(72 * 3600 + 40),
        41_000,
        EventKind::StepFinished {
            stage,
            host,
            step: 0,
            kind: StepKind::Reboot,
            error: None,
        },
    ));
    let b = c.summary().boot_time.expect("a boot time");
    assert_eq!((b.hosts, b.p95_ms), (1, 40_000));
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
        .filter(|h| h.status == HostStatus::Running)
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

#[test]
fn timeline_ticks_fall_on_human_steps() {
    // Regression: ticks at 15s, 31s, 47s, 1m3s for a 79 s run.
    use formats::tick_step;
    let s = |x: u64| x * 1000;
    assert_eq!(tick_step(s(79)), s(15));
    assert_eq!(tick_step(s(6)), s(1));
    assert_eq!(tick_step(s(7)), s(2));
    assert_eq!(tick_step(s(341)), s(60));
    assert_eq!(tick_step(s(3600)), s(600));
    assert_eq!(tick_step(s(5 * 3600)), s(3600));
    assert_eq!(tick_step(800), 200);
    assert_eq!(tick_step(s(10 * 86_400)), s(2 * 86_400));
    let page = formats::html(&summary());
    let labels: Vec<&str> = page
        .split("text-anchor=\"middle\" fill=\"#5b6475\">")
        .skip(1)
        .map(|rest| &rest[..rest.find('<').unwrap()])
        .collect();
    // The synthetic run lasts 2m3s: a tick every 30 s.
    assert_eq!(labels, ["0s", "30s", "1m", "1m30s", "2m"]);
}

mod eta {
    use std::collections::HashMap;

    use super::*;
    use crate::engine::HostStart;
    use crate::plan::{Plan, StagePlan};
    use crate::playbook::{OnUnreachable, Step};

    /// A stage of `hosts` (inventory indices), one `run` step with `timeout`.
    fn stage(name: &str, hosts: std::ops::Range<usize>, window: usize, timeout: u64) -> StagePlan {
        StagePlan {
            name: name.into(),
            after: vec![],
            gates: vec![],
            ramp: vec![],
            hosts: hosts.collect(),
            canaries: 0,
            window,
            failure_budget: 0,
            rate: None,
            rate_per: None,
            max_unavailable: vec![],
            on_unreachable: OnUnreachable::Fail,
            retry_failed_hosts: false,
            remediate: None,
            connect_timeout: secs(10),
            command_timeout: secs(timeout),
            steps: vec![Step::Run {
                command: crate::playbook::Template::sh("true"),
                timeout: secs(timeout),
            }],
            host_estimate: secs(timeout),
            estimate: secs(timeout),
            escalation: None,
        }
    }

    fn plan(stages: Vec<StagePlan>) -> Plan {
        Plan {
            name: "p".into(),
            waves: vec![],
            stages,
            warnings: vec![],
            estimate: Duration::ZERO,
        }
    }

    fn started(stage: &str, i: usize) -> EventKind {
        EventKind::HostStarted {
            stage: s(0, stage),
            host: h(i),
            canary: false,
        }
    }

    fn finished(stage: &str, i: usize, took: u64) -> EventKind {
        EventKind::HostFinished {
            stage: s(0, stage),
            host: h(i),
            outcome: HostOutcome::Done,
            duration: secs(took),
        }
    }

    fn totals(p: &Plan, starts: &HashMap<(usize, usize), HostStart>, done: usize) -> Totals {
        let sizes = p.stages.iter().map(|s| (s.name.clone(), s.hosts.len()));
        Totals::new(sizes, done).with_plan(p, starts)
    }

    #[test]
    fn a_host_waiting_out_a_timeout_keeps_the_eta_up() {
        // Regression: "ETA 1s" stayed up while a host waited out a 1-minute timeout.
        let p = plan(vec![stage("web", 0..2, 2, 60)]);
        let mut t = totals(&p, &HashMap::new(), 0);
        t.event_at_for_test(&started("web", 0), secs(0));
        t.event_at_for_test(&started("web", 1), secs(0));
        t.event_at_for_test(&finished("web", 0, 1), secs(1));
        // Host 1 is past the 1 s the other took: the ETA grows while it
        // waits, up to what its 60 s timeout leaves.
        assert_eq!(t.eta(secs(5)), Some(secs(4)));
        assert_eq!(t.eta(secs(20)), Some(secs(19)));
        assert_eq!(t.eta(secs(40)), Some(secs(20)));
        assert!(
            t.line(secs(20)).ends_with("ETA 19s"),
            "{}",
            t.line(secs(20))
        );
        // Not yet overdue: what finished hosts took.
        let mut t = totals(&p, &HashMap::new(), 0);
        t.event_at_for_test(&started("web", 0), secs(0));
        t.event_at_for_test(&finished("web", 0, 4), secs(4));
        t.event_at_for_test(&started("web", 1), secs(4));
        assert_eq!(t.eta(secs(5)), Some(secs(3)));
    }

    #[test]
    fn a_resume_estimates_only_the_hosts_left() {
        // Regression: during a resume the ETA equalled the elapsed time.
        let p = plan(vec![stage("db", 0..10, 2, 600)]);
        let starts: HashMap<(usize, usize), HostStart> =
            (0..7).map(|h| ((0, h), HostStart::Done)).collect();
        let mut t = totals(&p, &starts, 7);
        t.event_at_for_test(&started("db", 7), secs(0));
        t.event_at_for_test(&started("db", 8), secs(0));
        t.event_at_for_test(&finished("db", 7, 20), secs(20));
        t.event_at_for_test(&started("db", 9), secs(20));
        // Host 8 needs 20 s like host 7 (it is at 20 s: 0 left), host 9 too: 20 s.
        assert_eq!(t.eta(secs(20)), Some(secs(20)));
        assert_eq!(t.eta(secs(30)), Some(secs(10)));
        let line = t.line(secs(30));
        assert!(line.starts_with("8/10 done"), "{line}");
        assert!(line.ends_with("elapsed 30s, ETA 10s"), "{line}");
    }

    #[test]
    fn stages_wait_for_their_dependencies_and_windows() {
        let mut db = stage("db", 4..8, 2, 60);
        db.after = vec![0];
        db.canaries = 1;
        let p = plan(vec![stage("storage", 0..4, 2, 100), db]);
        let t = totals(&p, &HashMap::new(), 0);
        // storage: 2 windows of 100 s; then db: 1 canary + 2 windows (3 left, 2 at a time) of 60 s.
        assert_eq!(t.eta(secs(0)), Some(secs(200 + 60 + 120)));
    }
}

#[test]
fn host_selectors_read_back_exactly_what_they_list() {
    use crate::select::Selector;
    let mut sum = summary();
    let names = ["pg-r001-db1", "pg-r002-db1", "odd[1]", "a,b"];
    for (h, name) in sum.hosts.iter_mut().zip(names) {
        h.host = name.into();
        h.status = HostStatus::Failed;
    }
    let (selector, unspellable) = formats::hosts_selector(&sum, &["failed"]);
    let selector = selector.unwrap();
    assert_eq!(selector, "host=pg-r[001-002]-db1");
    assert_eq!(unspellable, ["a,b", "odd[1]"]);
    let parsed = Selector::parse(&selector).unwrap();
    let host = |name: &str| crate::inventory::Host {
        name: name.into(),
        address: name.into(),
        port: 22,
        user: None,
        jump: None,
        labels: Default::default(),
        identity_file: None,
        escalation: None,
        bmc: None,
        groups: vec![],
        span: crate::diag::Span::file(std::sync::Arc::from("t")),
    };
    for name in ["pg-r001-db1", "pg-r002-db1"] {
        assert!(parsed.matches(&host(name)), "{name}");
    }
    for name in ["pg-r003-db1", "odd1", "odd[1]"] {
        assert!(!parsed.matches(&host(name)), "{name}");
    }
    assert_eq!(formats::hosts_selector(&sum, &["done"]), (None, vec![]));
}
