//! The remediation ladder under the paused clock: which hosts are
//! power-cycled, how often, in which order with their intents, and what a
//! resume continues from.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::super::fake::{FakeBmc, FakeConnector, FakeFleet, Reboot, Script};
use super::*;
use crate::playbook::{Check, Health, Remediate};
use crate::transport::redfish::Bmc;

fn bmc_host(i: usize) -> Host {
    let name = format!("h{i}");
    let bmc = format!("http://{name}");
    host(&name, &[("bmc", bmc.as_str())])
}

fn wait_ssh(timeout: f64) -> Step {
    Step::WaitSsh {
        timeout: secs(timeout),
    }
}

/// A stage of `hosts` with `remediate: { power_cycle: cycles }`, a budget
/// for all of them and room for all at once.
fn ladder_stage(n: usize, steps: Vec<Step>, cycles: u32) -> StagePlan {
    let mut s = stage("s", &(0..n).collect::<Vec<_>>(), steps);
    s.remediate = Some(Remediate::new(cycles));
    s.window = n;
    s.failure_budget = n;
    s
}

async fn with_bmc(
    s: StagePlan,
    n: usize,
    fleet: &Arc<FakeFleet>,
    bmc: FakeBmc,
    starts: HashMap<(usize, usize), HostStart>,
    acks: Acks,
) -> Outcome {
    let hosts = (0..n).map(bmc_host).collect();
    with_bmc_on(s, hosts, fleet, bmc, starts, acks).await
}

/// [`with_bmc`] on hosts of the test's own making.
async fn with_bmc_on(
    s: StagePlan,
    hosts: Vec<Host>,
    fleet: &Arc<FakeFleet>,
    bmc: FakeBmc,
    starts: HashMap<(usize, usize), HostStart>,
    acks: Acks,
) -> Outcome {
    let bmc: Arc<dyn Bmc> = Arc::new(bmc);
    let opts = EngineOptions {
        bmc: Some(bmc),
        starts,
        ..EngineOptions::default()
    };
    let (_tx, rx) = watch::channel(CancelLevel::None);
    execute(plan(vec![s]), hosts, fleet, opts, rx, acks).await
}

/// (elapsed, attempt, reset type) of every PowerCycleIssued for `name`.
fn cycle_intents(out: &Outcome, name: &str) -> Vec<(Duration, u32, String)> {
    out.events
        .iter()
        .filter_map(|(t, k)| match k {
            EventKind::PowerCycleIssued {
                host,
                attempt,
                reset_type,
                ..
            } if host.name == name => Some((*t, *attempt, reset_type.clone())),
            _ => None,
        })
        .collect()
}

fn resets(fleet: &FakeFleet, name: &str) -> Vec<String> {
    fleet
        .calls_to(name)
        .into_iter()
        .filter(|c| c.starts_with("bmc reset"))
        .collect()
}

fn failure(out: &Outcome, name: &str) -> (Failure, String) {
    match out.finished(name).map(|f| f.1) {
        Some(HostOutcome::Failed {
            failure, reason, ..
        })
        | Some(HostOutcome::Unreachable {
            failure, reason, ..
        }) => (failure, reason),
        other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_host_that_never_returns_from_a_reboot_is_cycled_exactly_once_then_quarantined() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            reboot: Reboot::NeverReturns,
            ..Script::default()
        },
    );
    let s = ladder_stage(1, vec![reboot(60.0), run_step()], 1);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Immediately,
    )
    .await;
    assert_eq!(fleet.power_cycles("h0"), 1);
    assert_eq!(resets(&fleet, "h0"), ["bmc reset PowerCycle"]);
    let intents = cycle_intents(&out, "h0");
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!((intents[0].1, intents[0].2.as_str()), (1, "PowerCycle"));
    // Not before the whole reboot wait.
    assert!(intents[0].0 >= secs(60.0), "{intents:?}");
    let (f, reason) = failure(&out, "h0");
    assert_eq!(f, Failure::Quarantined { power_cycles: 1 });
    assert!(
        reason
            .starts_with("quarantined after 1 power cycle through its BMC (#1 PowerCycle after 1m")
            && reason.contains("did not come back within the reboot timeout of 1m"),
        "{reason}"
    );
    // Waited for again after the cycle: a second full timeout.
    let (end, _) = out.finished("h0").expect("finished");
    assert!(end >= secs(120.0), "{end:?}");
    assert!(!fleet.calls_to("h0").iter().any(|c| c == WORK));
    assert_eq!(out.outcome, RunOutcome::Failures);
}

#[tokio::test(start_paused = true)]
async fn a_cycle_that_brings_the_host_back_passes_the_step_on_its_new_boot() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            reboot: Reboot::NeverReturns,
            revived_by_cycle: true,
            boot_time: secs(20.0),
            ..Script::default()
        },
    );
    let s = ladder_stage(1, vec![reboot(60.0), run_step()], 2);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Immediately,
    )
    .await;
    assert_eq!(out.finished("h0").map(|f| f.1), Some(HostOutcome::Done));
    assert_eq!(fleet.power_cycles("h0"), 1, "one cycle was enough");
    assert!(fleet.calls_to("h0").iter().any(|c| c == WORK));
}

#[tokio::test(start_paused = true)]
async fn a_slow_host_that_comes_back_within_the_wait_is_never_cycled() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            boot_time: secs(50.0),
            ..Script::default()
        },
    );
    // Reboots slowly, but inside the wait.
    let s = ladder_stage(1, vec![reboot(60.0)], 1);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Immediately,
    )
    .await;
    assert_eq!(out.finished("h0").map(|f| f.1), Some(HostOutcome::Done));
    assert_eq!(fleet.power_cycles("h0"), 0);
    assert!(cycle_intents(&out, "h0").is_empty());
    assert!(
        !fleet.calls_to("h0").iter().any(|c| c.starts_with("bmc")),
        "its BMC is not even asked"
    );
}

#[tokio::test(start_paused = true)]
async fn a_host_back_by_the_last_look_is_not_cycled() {
    let fleet = FakeFleet::new();
    // Comes back exactly at the end of the wait: only the last look sees it.
    fleet.script(
        "h0",
        Script {
            boot_time: secs(60.0),
            ..Script::default()
        },
    );
    let s = ladder_stage(1, vec![reboot(60.0)], 1);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Immediately,
    )
    .await;
    assert_eq!(out.finished("h0").map(|f| f.1), Some(HostOutcome::Done));
    assert_eq!(fleet.power_cycles("h0"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_silent_host_in_wait_ssh_is_cycled_and_waited_for_again() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            revived_by_cycle: true,
            boot_time: secs(30.0),
            ..Script::default()
        },
    );
    let mut bmc = FakeBmc::new(&fleet);
    // A BMC without PowerCycle: ForceRestart it is.
    bmc.allowed = Some(vec!["On".into(), "ForceOff".into(), "ForceRestart".into()]);
    let s = ladder_stage(1, vec![wait_ssh(120.0), run_step()], 1);
    let out = with_bmc(s, 1, &fleet, bmc, HashMap::new(), Acks::Immediately).await;
    assert_eq!(out.finished("h0").map(|f| f.1), Some(HostOutcome::Done));
    assert_eq!(resets(&fleet, "h0"), ["bmc reset ForceRestart"]);
    let calls = fleet.calls_to("h0");
    let reset = calls
        .iter()
        .position(|c| c.starts_with("bmc reset"))
        .unwrap();
    assert_eq!(
        calls[..reset]
            .iter()
            .filter(|c| c.starts_with("bmc"))
            .collect::<Vec<_>>(),
        ["bmc login", "bmc get", "bmc get"]
    );
    assert!(calls[reset..].iter().any(|c| c == "bmc logout"));
}

#[tokio::test(start_paused = true)]
async fn a_bmc_without_a_power_cycle_type_is_a_clear_failure_and_nothing_is_sent() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            ..Script::default()
        },
    );
    let mut bmc = FakeBmc::new(&fleet);
    bmc.allowed = Some(vec!["On".into(), "GracefulShutdown".into()]);
    let s = ladder_stage(1, vec![wait_ssh(30.0)], 1);
    let out = with_bmc(s, 1, &fleet, bmc, HashMap::new(), Acks::Immediately).await;
    assert!(resets(&fleet, "h0").is_empty());
    assert!(cycle_intents(&out, "h0").is_empty());
    let (f, reason) = failure(&out, "h0");
    assert!(matches!(f, Failure::NoSsh { .. }), "{f:?}");
    assert!(
        reason.contains("power cycle 1 through its BMC failed")
            && reason
                .contains("neither PowerCycle nor ForceRestart (it allows: On, GracefulShutdown)"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_health_checks_are_never_remediated() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            exits: HashMap::from([("check".to_owned(), 1)]),
            ..Script::default()
        },
    );
    let health = Step::Health(Health {
        checks: vec![Check::Ssh(crate::playbook::Template::sh("check"))],
        timeout: secs(30.0),
        interval: secs(5.0),
    });
    let s = ladder_stage(1, vec![wait_ssh(30.0), reboot(60.0), health], 3);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Immediately,
    )
    .await;
    let (f, _) = failure(&out, "h0");
    assert_eq!(f, Failure::Unhealthy);
    assert_eq!(fleet.power_cycles("h0"), 0);
    assert!(!fleet.calls_to("h0").iter().any(|c| c.starts_with("bmc")));
}

#[tokio::test(start_paused = true)]
async fn without_remediate_a_silent_host_is_not_cycled() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            reboot: Reboot::NeverReturns,
            ..Script::default()
        },
    );
    let mut s = ladder_stage(1, vec![reboot(60.0)], 1);
    s.remediate = None;
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Immediately,
    )
    .await;
    assert_eq!(failure(&out, "h0").0, Failure::DidNotComeBack);
    assert_eq!(fleet.power_cycles("h0"), 0);
}

#[tokio::test(start_paused = true)]
async fn the_cycle_waits_for_its_intent_and_an_unrecorded_intent_sends_nothing() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            ..Script::default()
        },
    );
    let s = ladder_stage(1, vec![wait_ssh(30.0)], 1);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::After(secs(7.0)),
    )
    .await;
    let intents = cycle_intents(&out, "h0");
    assert_eq!(intents.len(), 1);
    let reset_at = fleet
        .calls()
        .into_iter()
        .find(|c| c.what.starts_with("bmc reset"))
        .map(|c| c.at)
        .expect("a reset");
    assert!(
        reset_at >= intents[0].0 + secs(7.0),
        "{reset_at:?} {intents:?}"
    );

    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            ..Script::default()
        },
    );
    let s = ladder_stage(1, vec![wait_ssh(30.0)], 1);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Never,
    )
    .await;
    assert!(resets(&fleet, "h0").is_empty());
    assert_eq!(failure(&out, "h0").0, Failure::NotRecorded);
}

#[tokio::test(start_paused = true)]
async fn quarantine_follows_on_unreachable_skip_and_spends_no_budget() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            ..Script::default()
        },
    );
    let mut s = ladder_stage(1, vec![wait_ssh(30.0)], 2);
    s.on_unreachable = OnUnreachable::Skip;
    s.failure_budget = 0;
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::new(),
        Acks::Immediately,
    )
    .await;
    assert!(
        matches!(
            out.finished("h0").map(|f| f.1),
            Some(HostOutcome::Unreachable {
                failure: Failure::Quarantined { power_cycles: 2 },
                ..
            })
        ),
        "{:?}",
        out.finished("h0")
    );
    let attempts: Vec<u32> = cycle_intents(&out, "h0").iter().map(|c| c.1).collect();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(out.stage("s"), Some(StageOutcome::Done));
}

#[tokio::test(start_paused = true)]
async fn a_resumed_host_never_gets_a_cycle_it_already_had() {
    let fleet = FakeFleet::new();
    for h in ["h0", "h1"] {
        fleet.script(
            h,
            Script {
                unreachable: true,
                ..Script::default()
            },
        );
    }
    // Both were cycled once before the interruption (h0 in a reboot, h1 in
    // a wait_ssh); h0's stage allows one cycle, h1's two.
    let from = |cycles| HostStart::From {
        step: 0,
        reboot_boot_id: Some(super::super::fake::boot_id(0)),
        power_cycles: cycles,
    };
    let s = ladder_stage(1, vec![reboot(60.0)], 1);
    let out = with_bmc(
        s,
        1,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::from([((0, 0), from(1))]),
        Acks::Immediately,
    )
    .await;
    assert_eq!(fleet.power_cycles("h0"), 0, "the one cycle was sent before");
    assert_eq!(fleet.reboots("h0"), 0, "nor is the reboot sent again");
    let (f, reason) = failure(&out, "h0");
    assert_eq!(f, Failure::Quarantined { power_cycles: 1 });
    assert!(reason.contains("(#1 before the resume)"), "{reason}");

    let s = ladder_stage(2, vec![wait_ssh(30.0)], 2);
    let start = HostStart::From {
        step: 0,
        reboot_boot_id: None,
        power_cycles: 1,
    };
    let out = with_bmc(
        s,
        2,
        &fleet,
        FakeBmc::new(&fleet),
        HashMap::from([((0, 1), start)]),
        Acks::Immediately,
    )
    .await;
    assert_eq!(fleet.power_cycles("h1"), 1, "only the second cycle");
    let attempts: Vec<u32> = cycle_intents(&out, "h1").iter().map(|c| c.1).collect();
    assert_eq!(attempts, [2]);
    // h0, fresh in this stage, gets its own two.
    assert_eq!(fleet.power_cycles("h0"), 2);
}

#[tokio::test(start_paused = true)]
async fn remediate_without_bmc_credentials_says_so() {
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            ..Script::default()
        },
    );
    let s = ladder_stage(1, vec![wait_ssh(30.0)], 1);
    let (_tx, rx) = watch::channel(CancelLevel::None);
    let out = execute(
        plan(vec![s]),
        vec![bmc_host(0)],
        &fleet,
        EngineOptions::default(),
        rx,
        Acks::Immediately,
    )
    .await;
    let (_, reason) = failure(&out, "h0");
    assert!(
        reason.contains("remediate could not power-cycle it: no BMC credentials"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fake_connector_session_is_closed_by_a_cycle() {
    // The fake's own rule the tests above lean on: a cycle is a new boot.
    let fleet = FakeFleet::new();
    fleet.script("h0", Script::default());
    let c = FakeConnector(Arc::clone(&fleet));
    let s = crate::transport::Connector::connect(&c, &bmc_host(0), secs(1.0))
        .await
        .expect("up");
    fleet.power_cycle_for_test("h0");
    assert!(crate::transport::Connection::is_closed(&s));
}

#[tokio::test(start_paused = true)]
async fn a_host_stuck_powering_on_is_cycled_and_its_power_on_read_again() {
    let fleet = FakeFleet::new();
    // Stuck, so not answering SSH either, until a cycle.
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            revived_by_cycle: true,
            ..Script::default()
        },
    );
    let mut bmc = FakeBmc::new(&fleet);
    bmc.power_state = "PoweringOn";
    let power_on = Step::PowerOn(crate::playbook::PowerOn {
        timeout: secs(120.0),
        pdu_interval: secs(1.0),
        rate: Rate {
            count: 100,
            per: secs(1.0),
        },
        reprobe: secs(10.0),
        jitter: Duration::ZERO,
        reset_type: "On".into(),
    });
    let s = ladder_stage(1, vec![power_on.clone(), wait_ssh(60.0)], 1);
    let out = with_bmc(s, 1, &fleet, bmc, HashMap::new(), Acks::Immediately).await;
    assert_eq!(out.finished("h0").map(|f| f.1), Some(HostOutcome::Done));
    assert_eq!(resets(&fleet, "h0"), ["bmc reset PowerCycle"]);
    let intents = cycle_intents(&out, "h0");
    assert_eq!(intents.len(), 1);
    assert!(
        intents[0].0 >= secs(120.0),
        "after the whole power_on wait: {intents:?}"
    );

    // Never revived: quarantined after its one cycle.
    let fleet = FakeFleet::new();
    fleet.script(
        "h0",
        Script {
            unreachable: true,
            ..Script::default()
        },
    );
    let mut bmc = FakeBmc::new(&fleet);
    bmc.power_state = "PoweringOn";
    let s = ladder_stage(1, vec![power_on, wait_ssh(60.0)], 1);
    let out = with_bmc(s, 1, &fleet, bmc, HashMap::new(), Acks::Immediately).await;
    let (f, reason) = failure(&out, "h0");
    assert_eq!(f, Failure::Quarantined { power_cycles: 1 });
    assert!(
        reason.contains("power_on did not finish within 2m"),
        "{reason}"
    );
    assert_eq!(resets(&fleet, "h0"), ["bmc reset PowerCycle"]);
}

/// Hosts of one PDU that all stay silent are cycled one PDU spacing apart
/// (a cycle ends in a power-on's inrush); another PDU's host is not held
/// back by them.
#[tokio::test(start_paused = true)]
async fn power_cycles_on_one_pdu_are_spaced_like_power_ons() {
    let fleet = FakeFleet::new();
    for i in 0..4 {
        fleet.script(
            &format!("h{i}"),
            Script {
                reboot: Reboot::NeverReturns,
                ..Script::default()
            },
        );
    }
    let mut s = ladder_stage(4, vec![reboot(60.0)], 1);
    if let Some(r) = &mut s.remediate {
        r.pdu_interval = secs(3.0);
    }
    let hosts = (0..4)
        .map(|i| {
            let (name, bmc) = (format!("h{i}"), format!("http://h{i}"));
            let pdu = if i < 3 { "pdu-a" } else { "pdu-b" };
            host(&name, &[("bmc", bmc.as_str()), ("pdu", pdu)])
        })
        .collect();
    let bmc = FakeBmc::new(&fleet);
    let out = with_bmc_on(s, hosts, &fleet, bmc, HashMap::new(), Acks::Immediately).await;
    let sent = |name: &str| {
        fleet
            .calls()
            .into_iter()
            .find(|c| c.host == name && c.what.starts_with("bmc reset"))
            .map(|c| c.at)
            .unwrap_or_else(|| panic!("{name} was not cycled"))
    };
    let mut on_a: Vec<Duration> = (0..3).map(|i| sent(&format!("h{i}"))).collect();
    on_a.sort();
    for pair in on_a.windows(2) {
        assert!(pair[1] - pair[0] >= secs(3.0), "{on_a:?}");
    }
    assert!(
        sent("h3") < on_a[1],
        "pdu-b's host waits for nobody on pdu-a: {:?} vs {on_a:?}",
        sent("h3")
    );
    assert_eq!(out.outcome, RunOutcome::Failures);
}
