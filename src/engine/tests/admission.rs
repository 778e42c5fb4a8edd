//! Readiness gates and growing waves under the paused clock, with the
//! recording fake: when dependants start, what stragglers still do, and
//! what a broken budget stops.

use super::*;

/// Stage `storage` of hosts h0..h3 (h3 the straggler, `straggler` seconds),
/// stage `dns` of `dns_hosts` after it at a 75 % gate.
fn gated(fleet: &Arc<Fleet>, straggler: Script, dns_hosts: &[usize], dns_delay: f64) -> Plan {
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
    let fleet = Fleet::new();
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
    let fleet = Fleet::new();
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
