//! Readiness gates and growing waves under the paused clock, with the
//! recording fake: when dependants start, what stragglers still do, and
//! what a broken budget stops.

use super::*;

/// Stage `storage` of hosts h0..h3 (h3 the straggler, `straggler` seconds),
/// stage `dns` of `dns_hosts` after it at a 75 % gate.
fn gated(fleet: &Arc<FakeFleet>, straggler: Script, dns_hosts: &[usize], dns_delay: f64) -> Plan {
    for i in 0..3 {
        fleet.script(&format!("h{i}"), working(1.0));
    }
    fleet.script("h3", straggler);
    for &i in dns_hosts {
        fleet.script(&format!("h{i}"), working(dns_delay));
    }
    let mut storage = stage("storage", &[0, 1, 2, 3], vec![run_step()]);
    storage.window = 4;
    let mut dns = stage("dns", dns_hosts, vec![run_step()]);
    dns.after = vec![0];
    dns.gates = vec![(0, 75.0)];
    plan(vec![storage, dns])
}

#[tokio::test(start_paused = true)]
async fn a_gated_stage_starts_at_its_share_while_the_straggler_still_runs() {
    let fleet = FakeFleet::new();
    let p = gated(&fleet, working(50.0), &[4, 5], 1.0);
    let out = simple(p, hosts(6), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Success);
    // 3 of 4 storage hosts are done at 1 s: dns starts then, not at 50 s.
    assert_eq!(out.started("h4"), Some(secs(1.0)));
    assert_eq!(out.started("h5"), Some(secs(2.0)));
    assert_eq!(out.finished("h3").map(|f| f.0), Some(secs(50.0)));
    assert_eq!(out.stage("storage"), Some(StageOutcome::Done));
    assert_eq!(out.stage("dns"), Some(StageOutcome::Done));
}

#[tokio::test(start_paused = true)]
async fn a_straggler_that_breaks_the_budget_stops_the_gated_dependant() {
    let fleet = FakeFleet::new();
    // dns runs one host at a time, 30 s each: h4 1-31 s, h5 31-61 s; the
    // straggler fails at 50 s, over storage's budget of 0.
    let p = gated(&fleet, failing(50.0), &[4, 5, 6], 30.0);
    let out = simple(p, hosts(7), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Aborted);
    assert_eq!(out.started("h4"), Some(secs(1.0)));
    assert_eq!(out.started("h5"), Some(secs(31.0)));
    // In flight when the budget broke: it finishes; nothing new starts.
    assert_eq!(out.finished("h5"), Some((secs(61.0), HostOutcome::Done)));
    assert_eq!(out.started("h6"), None);
    assert!(matches!(
        out.stage("storage"),
        Some(StageOutcome::Aborted { .. })
    ));
    match out.stage("dns") {
        Some(StageOutcome::Aborted { reason }) => assert!(
            reason.contains("`storage`, which this stage started after at its 75% gate, stopped: failure budget exceeded"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn waves_grow_only_after_a_clean_wave() {
    let fleet = FakeFleet::new();
    for i in 0..7 {
        fleet.script(&format!("h{i}"), working(1.0));
    }
    let mut s = stage("s", &(0..7).collect::<Vec<_>>(), vec![run_step()]);
    s.ramp = vec![1, 2];
    s.window = 4;
    let out = simple(plan(vec![s]), hosts(7), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Success);
    let starts: Vec<Option<Duration>> = (0..7).map(|i| out.started(&format!("h{i}"))).collect();
    let at = |t: f64| Some(secs(t));
    // 1, then 2, then 4 at once (the last size, with the 3 hosts left).
    assert_eq!(
        starts,
        [
            at(0.0),
            at(1.0),
            at(1.0),
            at(2.0),
            at(2.0),
            at(2.0),
            at(2.0)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_wave_stops_the_growth_and_its_size_holds() {
    let fleet = FakeFleet::new();
    fleet.script("h0", failing(1.0));
    for i in 1..5 {
        fleet.script(&format!("h{i}"), working(1.0));
    }
    let mut s = stage("s", &(0..5).collect::<Vec<_>>(), vec![run_step()]);
    s.ramp = vec![1, 2];
    s.window = 4;
    s.failure_budget = 1;
    let out = simple(plan(vec![s]), hosts(5), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Failures);
    let starts: Vec<Option<Duration>> = (0..5).map(|i| out.started(&format!("h{i}"))).collect();
    let at = |t: f64| Some(secs(t));
    // Wave 1 failed inside the budget: one at a time to the end.
    assert_eq!(starts, [at(0.0), at(1.0), at(2.0), at(3.0), at(4.0)]);
}

#[tokio::test(start_paused = true)]
async fn waves_count_only_hosts_after_the_canaries_and_keep_other_limits() {
    let fleet = FakeFleet::new();
    let mut inv = Vec::new();
    for i in 0..6 {
        let rack = if i % 2 == 0 { "r1" } else { "r2" };
        inv.push(host(&format!("h{i}"), &[("rack", rack)]));
        fleet.script(&format!("h{i}"), working(1.0));
    }
    let mut s = stage("s", &(0..6).collect::<Vec<_>>(), vec![run_step()]);
    s.canaries = 1;
    s.ramp = vec![1];
    s.window = 4;
    s.max_unavailable = vec![("rack".into(), 1)];
    let out = simple(plan(vec![s]), inv, &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Success);
    let starts: Vec<Option<Duration>> = (0..6).map(|i| out.started(&format!("h{i}"))).collect();
    let at = |t: f64| Some(secs(t));
    // Canary h0, wave h1, then a window of 4 held to one per rack.
    assert_eq!(
        starts,
        [at(0.0), at(1.0), at(2.0), at(2.0), at(3.0), at(3.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_paces_the_hosts_inside_each_wave() {
    let fleet = FakeFleet::new();
    for i in 0..6 {
        fleet.script(&format!("h{i}"), working(1.0));
    }
    let mut s = stage("s", &(0..6).collect::<Vec<_>>(), vec![run_step()]);
    s.ramp = vec![1, 2];
    s.window = 4;
    s.rate = Some(Rate {
        count: 2,
        per: secs(1.0),
    });
    let out = simple(plan(vec![s]), hosts(6), &fleet).await;
    assert_eq!(out.outcome, RunOutcome::Success);
    let starts: Vec<Option<Duration>> = (0..6).map(|i| out.started(&format!("h{i}"))).collect();
    let at = |t: f64| Some(secs(t));
    // Tokens every 0.5 s inside each wave; each wave waits for the one before
    // (a fixed window of 4 would start them at 0, 0.5, 1, 1.5, 2, 2.5).
    assert_eq!(
        starts,
        [at(0.0), at(1.0), at(1.5), at(2.5), at(3.0), at(3.5)]
    );
}
