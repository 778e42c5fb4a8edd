//! Journal round trips, torn tails, file mode, intent-before-ack, replay rules.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::replay::replay;
use super::*;
use crate::diag::Span;
use crate::engine::HostStart;
use crate::engine::events::{Emitter, HostOutcome, HostRef, StageRef, StepKind};
use crate::inventory::{Host, Inventory};
use crate::plan::{Plan, StagePlan};
use crate::playbook::{OnUnreachable, Step};

fn header() -> Header {
    Header {
        format: FORMAT,
        run_id: "20261121T221500Z-test-0001".into(),
        plan: "test".into(),
        playbook: FileHash {
            path: "/p/play.yaml".into(),
            sha256: "ab".repeat(32),
        },
        inventories: vec![FileHash {
            path: "/p/inv.yaml".into(),
            sha256: "cd".repeat(32),
        }],
        limit: Some("role=db".into()),
        parallel: None,
        rate: None,
        operator: "root".into(),
        bastion: "bastion1".into(),
        rekindle_version: "0.1.0".into(),
        started_at: "2026-11-21T22:15:00.000Z".into(),
        stages: vec![StageHead {
            name: "db".into(),
            hosts: 3,
        }],
        etcd: None,
    }
}

fn sref(i: usize, name: &str) -> StageRef {
    StageRef {
        index: i,
        name: name.into(),
    }
}

fn href(i: usize, name: &str) -> HostRef {
    HostRef {
        index: i,
        name: name.into(),
    }
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_000_000_000 + ms)
}

#[test]
fn write_read_round_trip_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let mut w = create(&path, &header()).unwrap();
    let events = vec![
        EventKind::HostStarted {
            stage: sref(0, "db"),
            host: href(3, "db1"),
            canary: true,
        },
        EventKind::HostFinished {
            stage: sref(0, "db"),
            host: href(3, "db1"),
            outcome: HostOutcome::Failed {
                step: 1,
                kind: StepKind::Run,
                failure: crate::engine::Failure::Exited { code: 3 },
                reason: "exited with 3".into(),
                output: "line \"quoted\"\nlast\n".into(),
            },
            duration: Duration::from_millis(1500),
        },
    ];
    for (i, e) in events.iter().enumerate() {
        w.push_event(
            at(i as u64 * 10),
            Duration::from_millis(i as u64 * 10),
            e,
            None,
        );
    }
    w.finish().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let j = read(&path).unwrap();
    assert_eq!(j.header, header());
    assert!(!j.torn_tail);
    let got: Vec<EventKind> = j
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Event { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got, events);
    // One JSON object per line, each with its record type.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .starts_with("{\"record\":\"event\",\"at\":")
    );
}

#[test]
fn torn_last_line_is_tolerated_and_cut_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let mut w = create(&path, &header()).unwrap();
    w.push_event(
        at(0),
        Duration::ZERO,
        &EventKind::RunStarted {
            plan: "test".into(),
            stages: 1,
            hosts: 1,
        },
        None,
    );
    w.finish().unwrap();
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"record\":\"event\",\"at\":\"2026-11-2")
        .unwrap();
    drop(f);
    let j = read(&path).unwrap();
    assert!(j.torn_tail);
    assert_eq!(j.records.len(), 2);

    let j = resume_once(&path);
    assert!(!j.torn_tail);
    assert_eq!(j.records.len(), 3);
    assert!(matches!(j.records[2], Record::Resumed { .. }));
}

#[test]
fn a_bad_line_in_the_middle_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let h = serde_json::to_string(&Record::Header(header())).unwrap();
    std::fs::write(&path, format!("{h}\nnot json\n{h}\n")).unwrap();
    let err = read(&path).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    std::fs::write(&path, "").unwrap();
    assert!(read(&path).unwrap_err().to_string().contains("no header"));
}

#[test]
fn create_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    create(&path, &header()).unwrap().finish().unwrap();
    assert!(create(&path, &header()).is_err());
}

#[tokio::test]
async fn intent_is_on_disk_before_its_ack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let mut w = create(&path, &header()).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let emitter = Emitter::new(tx);
    let check = path.clone();
    let engine = tokio::spawn(async move {
        let r = emitter
            .intent(EventKind::RebootIssued {
                stage: sref(0, "db"),
                host: href(0, "db1"),
                step: 0,
                boot_id_before: "boot-a".into(),
            })
            .await;
        // The moment the engine may act, the intent must be in the file.
        let text = std::fs::read_to_string(&check).unwrap();
        (
            r.is_ok(),
            text.contains("\"reboot_issued\"") && text.contains("boot-a"),
        )
    });
    let event = rx.recv().await.unwrap();
    assert!(event.ack.is_some());
    w.push_event(event.at, event.elapsed, &event.kind, event.ack);
    w.commit();
    let (acked, on_disk) = engine.await.unwrap();
    assert!(acked);
    assert!(on_disk, "ack came before the intent was written");
    w.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_intents_share_flushes_and_all_get_acked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let mut w = create(&path, &header()).unwrap();
    let (tx, mut rx) = mpsc::channel(4096);
    let emitter = Emitter::new(tx);
    let mut tasks = tokio::task::JoinSet::new();
    const INTENTS: usize = 4000;
    for i in 0..INTENTS {
        let e = emitter.clone();
        tasks.spawn(async move {
            e.intent(EventKind::PowerOnIssued {
                stage: sref(0, "s"),
                host: href(i, &format!("h{i}")),
                step: 0,
                reset_type: None,
            })
            .await
            .is_ok()
        });
    }
    drop(emitter);
    // Like `run`: every intent is handed over at once; the writer thread
    // batches whatever queued up during one flush into the next.
    while let Some(event) = rx.recv().await {
        w.push_event(event.at, event.elapsed, &event.kind, event.ack);
        w.commit();
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        ok += usize::from(r.unwrap());
    }
    assert_eq!(ok, INTENTS);
    let stats = w.finish().unwrap();
    assert_eq!(stats.intents, INTENTS as u64);
    assert!(
        stats.flushes < INTENTS as u64 / 4,
        "group commit: {} flushes for {INTENTS} intents",
        stats.flushes
    );
    assert_eq!(read(&path).unwrap().records.len(), INTENTS + 1);
}

fn host(name: &str) -> Host {
    Host {
        name: name.into(),
        address: name.into(),
        port: 22,
        user: None,
        jump: None,
        labels: BTreeMap::new(),
        identity_file: None,
        escalation: None,
        bmc: None,
        groups: vec![],
        span: Span::file(Arc::from("test")),
    }
}

fn two_step_plan(hosts: usize) -> (Plan, Inventory) {
    let inv = Inventory {
        hosts: (0..hosts).map(|i| host(&format!("h{i}"))).collect(),
        ..Inventory::default()
    };
    let stage = StagePlan {
        name: "s".into(),
        after: vec![],
        gates: vec![],
        ramp: vec![],
        hosts: (0..hosts).collect(),
        canaries: 0,
        window: 1,
        failure_budget: 0,
        rate: None,
        rate_per: None,
        max_unavailable: vec![],
        on_unreachable: OnUnreachable::Fail,
        retry_failed_hosts: false,
        remediate: None,
        escalation: None,
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        steps: vec![
            Step::Reboot {
                timeout: Duration::from_secs(60),
                command: crate::playbook::Template::sh("reboot"),
            },
            Step::Run {
                command: crate::playbook::Template::sh("true"),
                timeout: Duration::from_secs(5),
            },
        ],
        host_estimate: Duration::ZERO,
        estimate: Duration::ZERO,
    };
    let plan = Plan {
        name: "p".into(),
        stages: vec![stage],
        waves: vec![vec![0]],
        warnings: vec![],
        estimate: Duration::ZERO,
    };
    (plan, inv)
}

fn ev(kind: EventKind) -> Record {
    Record::Event {
        at: "2026-11-21T22:15:00.000Z".into(),
        ms: 0,
        kind,
    }
}

fn started(h: usize) -> Record {
    ev(EventKind::HostStarted {
        stage: sref(0, "s"),
        host: href(h, &format!("h{h}")),
        canary: false,
    })
}

/// The test playbook's steps: a reboot, then commands.
fn step_kind(step: usize) -> StepKind {
    if step == 0 {
        StepKind::Reboot
    } else {
        StepKind::Run
    }
}

fn step_started(h: usize, step: usize) -> Record {
    ev(EventKind::StepStarted {
        stage: sref(0, "s"),
        host: href(h, &format!("h{h}")),
        step,
        kind: step_kind(step),
    })
}

fn step_finished(h: usize, step: usize, error: Option<&str>) -> Record {
    ev(EventKind::StepFinished {
        stage: sref(0, "s"),
        host: href(h, &format!("h{h}")),
        step,
        kind: step_kind(step),
        error: error.map(Into::into),
    })
}

fn issued(h: usize, boot: &str) -> Record {
    ev(EventKind::RebootIssued {
        stage: sref(0, "s"),
        host: href(h, &format!("h{h}")),
        step: 0,
        boot_id_before: boot.into(),
    })
}

fn finished(h: usize, outcome: HostOutcome) -> Record {
    ev(EventKind::HostFinished {
        stage: sref(0, "s"),
        host: href(h, &format!("h{h}")),
        outcome,
        duration: Duration::from_secs(1),
    })
}

#[test]
fn replay_rules() {
    let (plan, inv) = two_step_plan(7);
    let failed = |step| HostOutcome::Failed {
        step,
        kind: StepKind::Run,
        failure: crate::engine::Failure::Exited { code: 1 },
        reason: "x".into(),
        output: String::new(),
    };
    let records = vec![
        Record::Header(header()),
        // h0: done.
        started(0),
        step_started(0, 0),
        issued(0, "b0"),
        step_finished(0, 0, None),
        step_started(0, 1),
        step_finished(0, 1, None),
        finished(0, HostOutcome::Done),
        // h1: reboot issued, never verified (killed mid-reboot).
        started(1),
        step_started(1, 0),
        issued(1, "b1"),
        // h2: reboot verified, killed during step 1.
        started(2),
        step_started(2, 0),
        issued(2, "b2"),
        step_finished(2, 0, None),
        step_started(2, 1),
        // h3: failed at step 1.
        started(3),
        step_started(3, 0),
        issued(3, "b3"),
        step_finished(3, 0, None),
        step_started(3, 1),
        step_finished(3, 1, Some("exit 1")),
        finished(3, failed(1)),
        // h4: started, nothing begun; h5 never started.
        started(4),
        // h6: mid-reboot, resumed once (no new intent), killed again.
        started(6),
        step_started(6, 0),
        issued(6, "b6"),
        started(6),
        step_started(6, 0),
    ];
    let r = replay(&records, &plan, &inv);
    assert_eq!(r.starts.get(&(0, 0)), Some(&HostStart::Done));
    assert_eq!(
        r.starts.get(&(0, 1)),
        Some(&HostStart::From {
            step: 0,
            reboot_boot_id: Some("b1".into()),
            power_cycles: 0,
        })
    );
    assert_eq!(
        r.starts.get(&(0, 2)),
        Some(&HostStart::From {
            step: 1,
            reboot_boot_id: None,
            power_cycles: 0,
        })
    );
    assert_eq!(
        r.starts.get(&(0, 3)),
        Some(&HostStart::From {
            step: 1,
            reboot_boot_id: None,
            power_cycles: 0,
        })
    );
    assert_eq!(r.starts.get(&(0, 4)), None);
    assert_eq!(r.starts.get(&(0, 5)), None);
    assert_eq!(
        r.starts.get(&(0, 6)),
        Some(&HostStart::From {
            step: 0,
            reboot_boot_id: Some("b6".into()),
            power_cycles: 0,
        })
    );
    assert_eq!(r.done, 1);
    assert_eq!(r.retried, vec!["h3 (s)".to_string()]);
    assert_eq!(r.reverify, vec!["h1 (s)".to_string(), "h6 (s)".to_string()]);
    assert_eq!(r.mid_step, vec!["h2 (s)".to_string()]);
}

#[test]
fn replay_reverifies_a_failed_reboot_instead_of_rebooting_again() {
    let (plan, inv) = two_step_plan(1);
    let records = vec![
        started(0),
        step_started(0, 0),
        issued(0, "b0"),
        step_finished(0, 0, Some("host did not come back")),
        finished(
            0,
            HostOutcome::Failed {
                step: 0,
                kind: StepKind::Reboot,
                failure: crate::engine::Failure::DidNotComeBack,
                reason: "host did not come back".into(),
                output: String::new(),
            },
        ),
    ];
    let r = replay(&records, &plan, &inv);
    assert_eq!(
        r.starts.get(&(0, 0)),
        Some(&HostStart::From {
            step: 0,
            reboot_boot_id: Some("b0".into()),
            power_cycles: 0,
        })
    );
    assert_eq!(r.retried.len(), 1);
}

fn cycled(h: usize, step: usize, attempt: u32) -> Record {
    ev(EventKind::PowerCycleIssued {
        stage: sref(0, "s"),
        host: href(h, &format!("h{h}")),
        step,
        attempt,
        reset_type: "PowerCycle".into(),
    })
}

#[test]
fn replay_counts_the_power_cycles_a_step_already_had() {
    let (plan, inv) = two_step_plan(4);
    let quarantined = HostOutcome::Failed {
        step: 0,
        kind: StepKind::Reboot,
        failure: crate::engine::Failure::Quarantined { power_cycles: 2 },
        reason: "quarantined".into(),
        output: String::new(),
    };
    let records = vec![
        // h0: killed after its first cycle, mid-reboot.
        started(0),
        step_started(0, 0),
        issued(0, "b0"),
        cycled(0, 0, 1),
        // h1: quarantined after two cycles, then retried by a resume.
        started(1),
        step_started(1, 0),
        issued(1, "b1"),
        cycled(1, 0, 1),
        cycled(1, 0, 2),
        step_finished(1, 0, Some("quarantined")),
        finished(1, quarantined),
        // h2: cycled, came back, killed in step 1: its cycles were step 0's.
        started(2),
        step_started(2, 0),
        issued(2, "b2"),
        cycled(2, 0, 1),
        step_finished(2, 0, None),
        step_started(2, 1),
        // h3: cycled, then done.
        started(3),
        step_started(3, 0),
        issued(3, "b3"),
        cycled(3, 0, 1),
        step_finished(3, 0, None),
        step_started(3, 1),
        step_finished(3, 1, None),
        finished(3, HostOutcome::Done),
    ];
    // The event survives the journal's JSON.
    let line = serde_json::to_string(&records[3]).unwrap();
    assert!(line.contains(r#""event":"power_cycle_issued""#), "{line}");
    assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), records[3]);
    let r = replay(&records, &plan, &inv);
    let from = |step, boot: Option<&str>, power_cycles| HostStart::From {
        step,
        reboot_boot_id: boot.map(str::to_owned),
        power_cycles,
    };
    assert_eq!(r.starts.get(&(0, 0)), Some(&from(0, Some("b0"), 1)));
    assert_eq!(r.starts.get(&(0, 1)), Some(&from(0, Some("b1"), 2)));
    assert_eq!(r.starts.get(&(0, 2)), Some(&from(1, None, 0)));
    assert_eq!(r.starts.get(&(0, 3)), Some(&HostStart::Done));
    assert_eq!(r.power_cycled, ["h0 (s)", "h1 (s)"]);
}

/// A journal with a header and one complete event whose text has multi-byte
/// characters, as the writer writes it.
fn journal_with_output(path: &Path) {
    let mut w = create(path, &header()).unwrap();
    w.push_event(
        at(0),
        Duration::ZERO,
        &EventKind::RunStarted {
            plan: "정전-복구".into(),
            stages: 1,
            hosts: 1,
        },
        None,
    );
    w.finish().unwrap();
}

/// Appends one `resumed` record, as a resume does, and reads the journal back.
fn resume_once(path: &Path) -> Journal {
    let mut w = append(path).unwrap();
    w.push(
        &Record::Resumed {
            at: rfc3339(at(5)),
            operator: "root".into(),
            bastion: "b".into(),
            pid: 1,
            forced: false,
        },
        None,
    );
    w.finish().unwrap();
    read(path).unwrap()
}

#[test]
fn torn_tail_splitting_a_multibyte_character_is_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    journal_with_output(&path);
    // A disk that fills mid-write cuts `정` (EC A0 95) after its first byte,
    // or after its second.
    for cut in [1, 2] {
        let complete = std::fs::read(&path).unwrap();
        let mut bytes = complete.clone();
        bytes.extend_from_slice(b"{\"record\":\"event\",\"at\":\"x\",\"plan\":\"");
        bytes.extend_from_slice(&"정".as_bytes()[..cut]);
        std::fs::write(&path, &bytes).unwrap();
        let j = read(&path).unwrap();
        assert!(j.torn_tail, "cut after byte {cut}");
        assert_eq!(j.records.len(), 2);

        // Appending cuts the torn bytes off first, so the journal reads whole again.
        let j = resume_once(&path);
        assert!(!j.torn_tail);
        assert_eq!(j.records.len(), 3);
        std::fs::write(&path, &complete).unwrap();
    }
}

#[test]
fn invalid_utf8_before_the_last_line_is_corruption_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    journal_with_output(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    let h = serde_json::to_string(&Record::Header(header())).unwrap();
    // Line 3: a complete line with a lone continuation byte in it.
    bytes.extend_from_slice(b"{\"record\":\"event\",\"at\":\"\x80\"}\n");
    bytes.extend_from_slice(h.as_bytes());
    bytes.push(b'\n');
    std::fs::write(&path, &bytes).unwrap();
    let err = read(&path).unwrap_err();
    assert!(
        matches!(err.kind, JournalErrorKind::Corrupt { line: 3, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("line 3: not a journal record: invalid UTF-8 at byte 25 of the line"),
        "{err}"
    );
}

/// A journal written by rekindle 0.1 (format 1): host outcomes without a
/// failure kind. It must still load, replay and report; its failures read as
/// kind `unknown`.
#[test]
fn a_format_1_journal_still_loads_with_unknown_failure_kinds() {
    let old = concat!(
        r#"{"record":"header","format":1,"run_id":"r1","plan":"old","playbook":{"path":"/p/b.yaml","sha256":"ab"},"inventories":[],"limit":null,"parallel":null,"rate":null,"operator":"root","bastion":"b1","rekindle_version":"0.1.0","started_at":"2026-11-21T22:15:00.000Z","stages":[{"name":"db","hosts":2}]}"#,
        "\n",
        r#"{"record":"event","at":"2026-11-21T22:15:01.000Z","ms":1000,"event":"host_started","stage":{"index":0,"name":"db"},"host":{"index":0,"name":"db1"},"canary":false}"#,
        "\n",
        r#"{"record":"event","at":"2026-11-21T22:15:09.000Z","ms":9000,"event":"host_finished","stage":{"index":0,"name":"db"},"host":{"index":0,"name":"db1"},"outcome":{"status":"failed","step":0,"kind":"reboot","reason":"host did not come back","output":""},"duration":{"secs":8,"nanos":0}}"#,
        "\n",
        r#"{"record":"event","at":"2026-11-21T22:15:10.000Z","ms":10000,"event":"host_finished","stage":{"index":0,"name":"db"},"host":{"index":1,"name":"db2"},"outcome":{"status":"unreachable","step":0,"reason":"cannot connect: refused"},"duration":{"secs":1,"nanos":0}}"#,
        "\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.jsonl");
    std::fs::write(&path, old).expect("write");
    let journal = read(&path).expect("a format 1 journal loads");
    assert_eq!(journal.header.format, 1);
    let outcomes: Vec<&HostOutcome> = journal
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Event {
                kind: EventKind::HostFinished { outcome, .. },
                ..
            } => Some(outcome),
            _ => None,
        })
        .collect();
    assert!(matches!(
        outcomes[0],
        HostOutcome::Failed {
            failure: crate::engine::Failure::Unknown,
            ..
        }
    ));
    assert!(matches!(
        outcomes[1],
        HostOutcome::Unreachable {
            failure: crate::engine::Failure::Unknown,
            ..
        }
    ));
    let mut collector = crate::report::fold::Collector::new();
    for r in &journal.records {
        collector.record(r);
    }
    let summary = collector.summary();
    assert_eq!(summary.failures().count(), 2);
    assert!(crate::report::text::render_text(&summary).contains("host did not come back"));

    // A journal from a newer rekindle is refused by name, not misread.
    let newer = old.replacen(r#""format":1"#, r#""format":99"#, 1);
    std::fs::write(&path, newer).expect("write");
    let err = read(&path).expect_err("format 99 is refused");
    assert!(
        err.to_string()
            .contains("journal format 99 was written by a newer rekindle"),
        "{err}"
    );
}

#[tokio::test]
async fn a_broken_lock_stops_the_old_holders_intents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let lock_path = dir.path().join("p.lock");
    let registry = dir.path().join("runs");
    let me = lock::Holder::me(&path);
    let take = |breaking| super::RunLock {
        plan: lock::acquire(&lock_path, &path, breaking).unwrap(),
        registry: registry::register(&registry, "p", ["h1", "h2"], &me, breaking).unwrap(),
    };
    let old = take(lock::Break::No);
    let mut w = create(&path, &header()).unwrap();
    w.fence(old.held());
    let (tx, mut rx) = mpsc::channel(16);
    let emitter = Emitter::new(tx);
    let reboot = |host: &str| EventKind::RebootIssued {
        stage: sref(0, "db"),
        host: href(0, host),
        step: 0,
        boot_id_before: "boot-a".into(),
    };
    // While held, an intent is recorded and acknowledged.
    let e = emitter.clone();
    let first = tokio::spawn(async move { e.intent(reboot("h1")).await.is_ok() });
    let ev = rx.recv().await.unwrap();
    w.push_event(ev.at, ev.elapsed, &ev.kind, ev.ack);
    w.commit();
    assert!(first.await.unwrap());

    // Another run takes over; the old holder's next intent is refused.
    let new = take(lock::Break::Live);
    let second = tokio::spawn(async move { emitter.intent(reboot("h2")).await.is_ok() });
    let ev = rx.recv().await.unwrap();
    w.push_event(ev.at, ev.elapsed, &ev.kind, ev.ack);
    w.commit();
    assert!(!second.await.unwrap(), "no ack once the lock is gone");
    let err = w.finish().unwrap_err().to_string();
    assert!(err.contains("was taken over by"), "{err}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"h1\"") && !text.contains("\"h2\""),
        "{text}"
    );
    // The old holder's release leaves the new holder's lock and entry.
    drop(old);
    assert!(new.plan.still_held().unwrap());
    assert!(new.registry.still_held().unwrap());
}

/// A disk that refuses every write (`/dev/full`): the writer says how many
/// records it was given and that none reached the disk.
#[test]
fn a_writer_on_a_full_disk_counts_the_records_it_lost() {
    let file = OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut w = Writer::spawn(file, Path::new("/dev/full"));
    for i in 0..3 {
        w.push_event(
            at(i),
            Duration::from_millis(i),
            &EventKind::RunStarted {
                plan: "p".into(),
                stages: 0,
                hosts: 0,
            },
            None,
        );
    }
    assert_eq!(w.pushed(), 3);
    let closed = w.close_counted();
    assert_eq!((closed.pushed, closed.recorded), (3, 0));
    assert!(closed.result.is_err());
}
