//! A host is in one stage at a time, and a host that failed leaves the
//! plan: stages that share hosts, under the paused clock with the
//! recording fake. Every run is bounded by a virtual deadline, so a
//! scheduler that waited forever fails the test instead of hanging it.

use super::*;

/// Far beyond any run below: reaching it means the scheduler hung.
const DEADLINE: Duration = Duration::from_secs(3600);

async fn bounded(p: Plan, hosts: Vec<Host>, fleet: &Arc<FakeFleet>) -> Outcome {
    tokio::time::timeout(DEADLINE, simple(p, hosts, fleet))
        .await
        .expect("the run ended: no stage waits forever for another's hosts")
}

/// Every (stage, host, start, end) of the run.
fn flights(out: &Outcome) -> Vec<(String, String, Duration, Duration)> {
    let mut open: HashMap<(String, String), Duration> = HashMap::new();
    let mut done = Vec::new();
    for (t, k) in &out.events {
        match k {
            EventKind::HostStarted { stage, host, .. } => {
                open.insert((stage.name.clone(), host.name.clone()), *t);
            }
            EventKind::HostFinished { stage, host, .. } => {
                if let Some(s) = open.remove(&(stage.name.clone(), host.name.clone())) {
                    done.push((stage.name.clone(), host.name.clone(), s, *t));
                }
            }
            _ => {}
        }
    }
    done
}

fn started_in(out: &Outcome, stage_name: &str, host_name: &str) -> Option<Duration> {
    flights(out)
        .into_iter()
        .find(|(s, h, _, _)| s == stage_name && h == host_name)
        .map(|f| f.2)
}

/// How many times `host` ran the work command.
fn works(fleet: &Arc<FakeFleet>, host: &str) -> usize {
    fleet
        .calls_to(host)
        .iter()
        .filter(|c| c.contains(WORK))
        .count()
}

/// No host is in flight in two stages at once.
fn assert_one_stage_at_a_time(out: &Outcome) {
    let f = flights(out);
    for a in &f {
        for b in &f {
            if a.1 == b.1 && a.0 != b.0 {
                assert!(a.3 <= b.2 || b.3 <= a.2, "{a:?} overlaps {b:?}");
            }
        }
    }
}

/// (stage, host, stage waited for) of every wait announced.
fn waits(out: &Outcome) -> Vec<(String, String, String)> {
    out.events
        .iter()
        .filter_map(|(_, k)| match k {
            EventKind::HostWaiting { stage, host, on } => {
                Some((stage.name.clone(), host.name.clone(), on.name.clone()))
            }
            _ => None,
        })
        .collect()
}

fn outcome_in(out: &Outcome, stage_name: &str, host_name: &str) -> Option<HostOutcome> {
    out.events.iter().find_map(|(_, k)| match k {
        EventKind::HostFinished {
            stage,
            host,
            outcome,
            ..
        } if stage.name == stage_name && host.name == host_name => Some(outcome.clone()),
        _ => None,
    })
}

fn counts(out: &Outcome, stage_name: &str) -> Option<(usize, usize, usize)> {
    out.events.iter().find_map(|(_, k)| match k {
        EventKind::StageFinished {
            stage,
            done,
            failed,
            skipped,
            ..
        } if stage.name == stage_name => Some((*done, *failed, *skipped)),
        _ => None,
    })
}

#[tokio::test(start_paused = true)]
async fn an_independent_stage_waits_for_hosts_busy_in_another() {
    let fleet = FakeFleet::new();
    for i in 0..4 {
        fleet.script(&format!("h{i}"), working(10.0));
    }
    let mut db = stage("db", &[0, 1, 2, 3], vec![run_step()]);
    db.window = 2;
    // No `after`: audit runs beside db, on two of its hosts.
    let mut audit = stage("audit", &[0, 1], vec![run_step()]);
    audit.window = 2;
    let out = bounded(plan(vec![db, audit]), hosts(4), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Success);
    assert_one_stage_at_a_time(&out);
    // db took h0 and h1 first; audit's turn for them waits until db lands them.
    assert_eq!(started_in(&out, "audit", "h0"), Some(secs(10.0)));
    assert_eq!(started_in(&out, "audit", "h1"), Some(secs(10.0)));
    assert_eq!(
        waits(&out),
        [
            ("audit".into(), "h0".into(), "db".into()),
            ("audit".into(), "h1".into(), "db".into())
        ]
    );
    // The wait did not cost db its window: h2 and h3 went at 10 s.
    assert_eq!(started_in(&out, "db", "h2"), Some(secs(10.0)));
    assert_eq!(counts(&out, "audit"), Some((2, 0, 0)));
}

#[tokio::test(start_paused = true)]
async fn two_stages_waiting_for_each_others_hosts_both_finish() {
    let fleet = FakeFleet::new();
    for (h, d) in [("h0", 5.0), ("h1", 5.0), ("h2", 1.0), ("h3", 1.0)] {
        fleet.script(h, working(d));
    }
    // At 1 s a has room and wants h1, which b holds until 5 s; b has room
    // and wants h0, which a holds until 5 s: each waits for the other.
    let mut a = stage("a", &[0, 2, 1], vec![run_step()]);
    a.window = 2;
    let mut b = stage("b", &[1, 3, 0], vec![run_step()]);
    b.window = 2;
    let out = bounded(plan(vec![a, b]), hosts(4), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Success);
    assert_one_stage_at_a_time(&out);
    assert_eq!(
        waits(&out),
        [
            ("a".into(), "h1".into(), "b".into()),
            ("b".into(), "h0".into(), "a".into())
        ]
    );
    assert_eq!(started_in(&out, "a", "h1"), Some(secs(5.0)));
    assert_eq!(started_in(&out, "b", "h0"), Some(secs(5.0)));
    let end = flights(&out).iter().map(|f| f.3).max();
    assert_eq!(end, Some(secs(10.0)));
    assert_eq!(counts(&out, "a"), Some((3, 0, 0)));
    assert_eq!(counts(&out, "b"), Some((3, 0, 0)));
}

#[tokio::test(start_paused = true)]
async fn a_gated_stage_takes_a_shared_host_only_after_the_earlier_stage_finished_it() {
    let fleet = FakeFleet::new();
    for i in 0..4 {
        fleet.script(&format!("h{i}"), working(1.0));
    }
    // db one host at a time: h0 done at 1 s opens app's 25 % gate.
    let db = stage("db", &[0, 1, 2, 3], vec![run_step()]);
    let mut app = stage("app", &[3, 0], vec![run_step()]);
    app.window = 2;
    app.after = vec![0];
    app.gates = vec![(0, 25.0)];
    let out = bounded(plan(vec![db, app]), hosts(4), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Success);
    assert_one_stage_at_a_time(&out);
    // h3 is db's last host (3-4 s): app runs it after, not at the gate.
    assert_eq!(started_in(&out, "app", "h0"), Some(secs(1.0)));
    assert_eq!(started_in(&out, "db", "h3"), Some(secs(3.0)));
    assert_eq!(started_in(&out, "app", "h3"), Some(secs(4.0)));
    assert_eq!(waits(&out), [("app".into(), "h3".into(), "db".into())]);
}

#[tokio::test(start_paused = true)]
async fn a_host_that_failed_is_skipped_by_later_stages_without_spending_their_budget() {
    let fleet = FakeFleet::new();
    fleet.script("h0", working(1.0));
    fleet.script("h1", failing(1.0));
    fleet.script("h2", working(1.0));
    let mut db = stage("db", &[0, 1, 2], vec![run_step()]);
    db.window = 3;
    db.failure_budget = 1;
    let mut app = stage("app", &[0, 1, 2], vec![run_step()]);
    app.after = vec![0];
    // Budget 0: had h1 run and failed here, app would abort.
    let out = bounded(plan(vec![db, app.clone()]), hosts(3), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Failures);
    assert_eq!(out.stage("app"), Some(StageOutcome::Done));
    assert_eq!(
        outcome_in(&out, "app", "h1"),
        Some(HostOutcome::Skipped {
            earlier: "db".into(),
            unreachable: false
        })
    );
    assert_eq!(started_in(&out, "app", "h1"), None, "never started in app");
    assert_eq!(counts(&out, "app"), Some((2, 0, 1)));
    assert_eq!(works(&fleet, "h1"), 1, "run once, in db only");

    // A stage that says so runs it again, and spends its budget on it.
    let fleet = FakeFleet::new();
    fleet.script("h0", working(1.0));
    fleet.script("h1", failing(1.0));
    fleet.script("h2", working(1.0));
    let mut db = stage("db", &[0, 1, 2], vec![run_step()]);
    db.window = 3;
    db.failure_budget = 1;
    app.retry_failed_hosts = true;
    let out = bounded(plan(vec![db, app]), hosts(3), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Aborted);
    assert!(matches!(
        out.finished("h1"),
        Some((_, HostOutcome::Failed { .. }))
    ));
    assert_eq!(works(&fleet, "h1"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_host_waiting_for_a_stage_it_then_fails_in_is_skipped_with_that_stage_named() {
    let fleet = FakeFleet::new();
    fleet.script("h0", failing(2.0));
    fleet.script("h1", working(1.0));
    // Independent stages: audit has h0 first; db's turn for it comes while it runs.
    let audit = stage("audit", &[0], vec![run_step()]);
    let mut db = stage("db", &[0, 1], vec![run_step()]);
    db.window = 2;
    let out = bounded(plan(vec![audit, db]), hosts(2), &fleet).await;
    assert_one_stage_at_a_time(&out);
    assert_eq!(waits(&out), [("db".into(), "h0".into(), "audit".into())]);
    assert_eq!(
        outcome_in(&out, "db", "h0"),
        Some(HostOutcome::Skipped {
            earlier: "audit".into(),
            unreachable: false
        })
    );
    assert_eq!(out.stage("db"), Some(StageOutcome::Done));
    assert_eq!(counts(&out, "db"), Some((1, 0, 1)));
}
