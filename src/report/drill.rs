//! The drill's report: a rendering of the run's common summary in real
//! time (a drill compresses time `--speed` times): the predicted recovery
//! time, each stage's duration, the slowest stage, failures grouped by step
//! and failure kind, with the fault the simulator injected into each host.
//! And the prediction itself ([`predict`]): the drill's times in real time,
//! with the stages it replayed at full size in their place and the stages
//! after them moved.
//!
//! Owns that wording and that arithmetic. It must not touch hosts or the
//! simulator; it gets the injected faults as text and the replayed stages'
//! times as numbers.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use super::summary::{HostResult, HostStatus, Summary};
use crate::engine;
use crate::journal::{PredictedStage, Prediction, Replayed};
use crate::plan::Plan;

/// `25%`, `2.5%`: a sample fraction as people read it.
pub fn percent(f: f64) -> String {
    let p = f * 100.0;
    if p >= 10.0 || p == p.round() {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// What an SRE would group a failure by: the failed step and the kind of
/// failure (an unreachable host set aside has no failed step).
fn failure_group(h: &HostResult) -> String {
    let kind = h.failure.unwrap_or_default();
    match (&h.step_kind, h.status == HostStatus::Unreachable) {
        (_, true) => "unreachable".to_owned(),
        (Some(step), false) => format!("{step}: {kind}"),
        (None, false) => kind.to_string(),
    }
}

/// What the drill placed and what it cannot model, for its report.
pub struct Faults<'a> {
    /// The fault injected into each faulty simulated host, by name.
    pub injected: &'a HashMap<String, String>,
    /// Per stage in plan order: faults placed on its hosts, by kind.
    pub placed: &'a [(String, BTreeMap<String, usize>)],
    /// What the rehearsal cannot model, one sentence each.
    pub caveats: &'a [String],
}

/// A stage the drill replayed at its full size, with the time the replay
/// predicts for it (real ms).
pub struct ReplayedStage {
    pub stage: String,
    pub replayed: Replayed,
    pub predicted_ms: u64,
}

/// The drill's prediction for the real run: every measured time (the run's
/// `elapsed`, the stages' in `summary`) times `speed`, except the stages in
/// `replayed`, which take their predicted time; the difference moves the
/// end of every stage that waits for a replayed one to finish (as `plan`
/// orders them: a readiness gate is not moved, it opens before the tail of
/// the stage it waits on), and the run's end with the last stage's.
pub fn predict(
    summary: &Summary,
    plan: &Plan,
    speed: f64,
    elapsed: Duration,
    replayed: &[ReplayedStage],
) -> Prediction {
    let real = |ms: u64| (ms as f64 * speed).round() as i64;
    let measured: Vec<Option<(i64, i64)>> = plan
        .stages
        .iter()
        .map(|st| {
            let s = summary.stages.iter().find(|x| x.name == st.name)?;
            Some((real(s.start_ms?), real(s.end_ms?)))
        })
        .collect();
    let own = |i: usize| -> i64 {
        let name = &plan.stages[i].name;
        match (replayed.iter().find(|x| &x.stage == name), measured[i]) {
            (Some(x), Some((a, b))) => x.predicted_ms as i64 - (b - a),
            _ => 0,
        }
    };
    // End shifts, in one pass: a plan's stages are in dependency order
    // (`after` points to earlier stages only).
    let mut shift = vec![0i64; plan.stages.len()];
    for (i, st) in plan.stages.iter().enumerate() {
        let start = st
            .after
            .iter()
            .filter(|&&d| st.gate(d).is_none() && measured[d].is_some())
            .map(|&d| shift[d])
            .max()
            .unwrap_or(0);
        shift[i] = if measured[i].is_some() {
            start + own(i)
        } else {
            0
        };
    }
    let last = |moved: bool| {
        measured
            .iter()
            .zip(&shift)
            .filter_map(|(m, s)| m.map(|(_, end)| end + if moved { *s } else { 0 }))
            .max()
            .unwrap_or(0)
    };
    let total = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
    let total = (total as f64 * speed).round() as i64 + last(true) - last(false);
    Prediction {
        total_ms: u64::try_from(total).unwrap_or(0),
        stages: plan
            .stages
            .iter()
            .enumerate()
            .map(|(i, st)| {
                let replay = replayed
                    .iter()
                    .find(|x| x.stage == st.name)
                    .filter(|_| measured[i].is_some());
                PredictedStage {
                    name: st.name.clone(),
                    duration_ms: measured[i].map(|(a, b)| match replay {
                        Some(x) => x.predicted_ms,
                        None => u64::try_from(b - a).unwrap_or(0),
                    }),
                    replayed: replay.map(|x| x.replayed.clone()),
                }
            })
            .collect(),
    }
}

/// The drill's report: the run's summary in real time, with the drill's
/// `prediction` ([`predict`]). `speed` is how many times the drill
/// compressed time, `fraction` the share of the selection it simulated,
/// `elapsed` the drill's own duration, `faults` the fault each simulated
/// host was given (by name, as people read it), the count per stage, and
/// what the drill cannot model.
pub fn render(
    summary: &Summary,
    prediction: &Prediction,
    speed: f64,
    fraction: f64,
    elapsed: Duration,
    faults: &Faults<'_>,
) -> String {
    let injected = faults.injected;
    let real = |d: Duration| engine::steps::humane(d.mul_f64(speed));
    let real_ms = |ms: u64| real(Duration::from_millis(ms));
    let humane_ms = |ms: u64| engine::steps::humane(Duration::from_millis(ms));
    let mut out = String::new();
    let _ = writeln!(out, "\n== drill report ==");
    let _ = writeln!(
        out,
        "predicted recovery time: {} (the drill took {} at {}x)",
        humane_ms(prediction.total_ms),
        engine::steps::humane(elapsed),
        speed
    );
    for st in &prediction.stages {
        if let (Some(x), Some(d)) = (&st.replayed, st.duration_ms) {
            let _ = writeln!(
                out,
                "  stage {} replayed at its full size ({} hosts, {} simulated; {}): {} as drilled, {} replayed",
                st.name,
                x.hosts,
                x.simulated,
                x.pace,
                humane_ms(x.measured_ms),
                humane_ms(d)
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<20} {:>6} {:>6} {:>6} {:>7}  {:>10}  outcome",
        "stage", "hosts", "done", "failed", "skipped", "duration"
    );
    let mut slowest: Option<(&str, u64)> = None;
    for st in &summary.stages {
        let duration = prediction
            .stages
            .iter()
            .find(|p| p.name == st.name)
            .and_then(|p| p.duration_ms);
        if let Some(d) = duration
            && slowest.is_none_or(|(_, best)| d > best)
        {
            slowest = Some((&st.name, d));
        }
        let outcome = match (st.status.as_str(), &st.reason) {
            ("aborted", Some(r)) => format!("ABORTED: {r}"),
            ("skipped", Some(r)) => format!("not started ({r})"),
            ("incomplete", _) => "unfinished".to_owned(),
            (other, _) => other.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>6} {:>6} {:>7}  {:>10}  {outcome}",
            st.name,
            st.hosts,
            st.done,
            st.failed,
            st.skipped,
            duration.map_or_else(|| "-".to_owned(), humane_ms)
        );
    }
    if let Some((name, d)) = slowest {
        let _ = writeln!(out, "slowest stage: {name} ({})", humane_ms(d));
    }
    let mut durations: Vec<u64> = summary
        .hosts
        .iter()
        .filter(|h| h.status != HostStatus::Running)
        .map(|h| h.duration_ms)
        .collect();
    durations.sort_unstable();
    if let (Some(p50), Some(max)) = (durations.get(durations.len() / 2), durations.last()) {
        let _ = writeln!(
            out,
            "host time: median {}, max {}",
            real_ms(*p50),
            real_ms(*max)
        );
    }
    if let Some(line) = summary.power_cycled_line() {
        let _ = writeln!(out, "{line}");
    }
    let failures: Vec<&HostResult> = summary.failures().collect();
    if failures.is_empty() {
        let _ = writeln!(out, "failures: none");
    } else {
        let mut by_kind: BTreeMap<String, Vec<&HostResult>> = BTreeMap::new();
        for h in &failures {
            by_kind.entry(failure_group(h)).or_default().push(h);
        }
        let _ = writeln!(
            out,
            "failures by kind ({} hosts; timeouts in reasons are drill time, {}x compressed):",
            failures.len(),
            speed
        );
        for (kind, hosts) in by_kind {
            let _ = writeln!(out, "  {kind}: {}", hosts.len());
            for h in hosts {
                let injected = injected
                    .get(&h.host)
                    .map(|f| format!(" [injected: {f}]"))
                    .unwrap_or_default();
                let reason = h.reason.as_deref().unwrap_or("");
                let reason = if h.status == HostStatus::Unreachable {
                    format!("unreachable: {reason}")
                } else {
                    reason.to_owned()
                };
                let _ = writeln!(out, "    {} {}{injected}: {reason}", h.stage, h.host);
            }
        }
    }
    if !faults.placed.is_empty() {
        let per_stage: Vec<String> = faults
            .placed
            .iter()
            .map(|(stage, kinds)| {
                let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
                if kinds.is_empty() {
                    format!("{stage}: none")
                } else {
                    format!("{stage}: {}", kinds.join(", "))
                }
            })
            .collect();
        let total = faults.injected.len();
        let _ = writeln!(
            out,
            "faults placed: {total} host{} ({})",
            if total == 1 { "" } else { "s" },
            per_stage.join("; ")
        );
    }
    for c in faults.caveats {
        let _ = writeln!(out, "not modelled: {c}");
    }
    let (cycled, _) = summary.power_cycled();
    if fraction < 1.0 && !cycled.is_empty() {
        let _ = writeln!(
            out,
            "note: from a {} sample; the whole selection would have about {:.0} hosts power-cycled",
            percent(fraction),
            cycled.len() as f64 / fraction
        );
    }
    if fraction < 1.0 {
        // With no failure in the sample there is nothing to scale up.
        let _ = if failures.is_empty() {
            writeln!(
                out,
                "note: from a {} sample, which had no failures",
                percent(fraction)
            )
        } else {
            writeln!(
                out,
                "note: from a {} sample; the whole selection would fail about {:.0} hosts the same ways",
                percent(fraction),
                failures.len() as f64 / fraction
            )
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::engine::events::{EventKind, HostOutcome, HostRef, StageRef, StepKind};
    use crate::engine::failure::{ConnectKind, Failure};
    use crate::report::fold::Collector;

    #[test]
    fn failures_are_grouped_by_step_and_kind_in_real_time() {
        let stage = StageRef {
            index: 0,
            name: "db".into(),
        };
        let host = |i: usize| HostRef {
            index: i,
            name: format!("db{i}"),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut c = Collector::new();
        c.stages([("db".to_owned(), 3)]);
        c.event(
            t0,
            &EventKind::StageStarted {
                stage: stage.clone(),
                hosts: 3,
            },
        );
        let outcomes = [
            HostOutcome::Done,
            HostOutcome::Failed {
                step: 0,
                kind: StepKind::Reboot,
                failure: Failure::DidNotComeBack,
                // The words may change; the group follows the kind.
                reason: "gone for good".into(),
                output: String::new(),
            },
            HostOutcome::Unreachable {
                step: 0,
                failure: Failure::Connect {
                    error: ConnectKind::Timeout,
                },
                reason: "timed out".into(),
            },
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            c.event(
                t0,
                &EventKind::HostStarted {
                    stage: stage.clone(),
                    host: host(i),
                    canary: false,
                },
            );
            c.event(
                t0 + Duration::from_secs(1),
                &EventKind::HostFinished {
                    stage: stage.clone(),
                    host: host(i),
                    outcome,
                    duration: Duration::from_secs(1),
                },
            );
        }
        let injected = HashMap::from([("db1".to_owned(), "never_returns".to_owned())]);
        let placed = vec![(
            "db".to_owned(),
            BTreeMap::from([("never_returns".to_owned(), 1)]),
        )];
        let caveats = vec![
            "`flap` cannot happen in this plan: no step reboots or powers on a host".to_owned(),
        ];
        let faults = Faults {
            injected: &injected,
            placed: &placed,
            caveats: &caveats,
        };
        let summary = c.summary();
        let prediction = Prediction {
            total_ms: 20_000,
            stages: vec![PredictedStage {
                name: "db".into(),
                duration_ms: Some(10_000),
                replayed: None,
            }],
        };
        let text = render(
            &summary,
            &prediction,
            10.0,
            1.0,
            Duration::from_secs(2),
            &faults,
        );
        assert!(
            text.contains("faults placed: 1 host (db: never_returns 1)"),
            "{text}"
        );
        assert!(
            text.contains("not modelled: `flap` cannot happen in this plan: no step reboots or powers on a host"),
            "{text}"
        );
        assert!(
            text.contains("predicted recovery time: 20s (the drill took 2s at 10x)"),
            "{text}"
        );
        assert!(text.contains("failures by kind (2 hosts"), "{text}");
        assert!(text.contains("  reboot: did not come back: 1"), "{text}");
        assert!(
            text.contains("    db db1 [injected: never_returns]: gone for good"),
            "{text}"
        );
        assert!(text.contains("  unreachable: 1"), "{text}");
        assert!(text.contains("host time: median 10s, max 10s"), "{text}");
    }

    /// Three stages: `b` waits for `a` to finish, `c` has a 50 % gate on
    /// `a`. Drill times (ms): a 0-100, b 100-150, c 40-90; the run 160.
    fn three_stages() -> (Summary, Plan) {
        use crate::sim::drill::tests::{inventory, playbook};
        let inv =
            inventory("version: 1\ndatacenters:\n  a:\n    hosts:\n      - name: \"h[1-6]\"\n");
        let book = playbook(
            "version: 1\nstages:\n  - { name: a, select: { name: \"h[1-2]\" }, steps: [ reboot ] }\n  - { name: b, after: [a], select: { name: \"h[3-4]\" }, steps: [ reboot ] }\n  - { name: c, after: { a: 50% }, select: { name: \"h[5-6]\" }, steps: [ reboot ] }\n",
            &inv,
        );
        let plan = crate::plan::build(&book, &inv, None).expect("plan");
        let t0 = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut c = Collector::new();
        c.stages(plan.stages.iter().map(|s| (s.name.clone(), s.hosts.len())));
        for (i, name, from, to) in [(0, "a", 0, 100), (1, "b", 100, 150), (2, "c", 40, 90)] {
            let stage = StageRef {
                index: i,
                name: name.into(),
            };
            c.event(
                t0 + Duration::from_millis(from),
                &EventKind::StageStarted {
                    stage: stage.clone(),
                    hosts: 2,
                },
            );
            c.event(
                t0 + Duration::from_millis(to),
                &EventKind::StageFinished {
                    stage,
                    outcome: crate::engine::events::StageOutcome::Done,
                    done: 2,
                    failed: 0,
                    skipped: 0,
                },
            );
        }
        (c.summary(), plan)
    }

    #[test]
    fn a_replayed_stage_moves_the_stages_that_wait_for_it_and_the_run() {
        let (summary, plan) = three_stages();
        let elapsed = Duration::from_millis(160);
        // Nothing replayed: every time is the drill's, times the speed.
        let plain = predict(&summary, &plan, 10.0, elapsed, &[]);
        let durations = |p: &Prediction| -> Vec<Option<u64>> {
            p.stages.iter().map(|s| s.duration_ms).collect()
        };
        assert_eq!(plain.total_ms, 1600);
        assert_eq!(durations(&plain), [Some(1000), Some(500), Some(500)]);
        assert!(plain.stages.iter().all(|s| s.replayed.is_none()));
        // `a` takes 300 ms longer: `b` waits for it to finish, so it and the
        // run end 300 ms later; `c`'s gate opened before `a`'s tail.
        let replayed = Replayed {
            hosts: 400,
            simulated: 40,
            pace: "20 `rack` groups side by side (2 simulated), 2 of each at a time".into(),
            measured_ms: 1000,
        };
        // The prediction with one stage replayed to `ms`.
        let with = |stage: &str, ms: u64| {
            let one = ReplayedStage {
                stage: stage.into(),
                replayed: replayed.clone(),
                predicted_ms: ms,
            };
            predict(&summary, &plan, 10.0, elapsed, &[one])
        };
        let longer = with("a", 1300);
        assert_eq!(longer.total_ms, 1900);
        assert_eq!(durations(&longer), [Some(1300), Some(500), Some(500)]);
        assert_eq!(longer.stages[0].replayed, Some(replayed.clone()));
        // `c` 1 s longer: it ends at 1.9 s, after `b` (1.5 s), and the
        // run's 100 ms tail after its last stage stays.
        assert_eq!(with("c", 1500).total_ms, 2000);
        // Shorter: `a` 200 ms less moves `b` and the run back as much.
        let shorter = with("a", 800);
        assert_eq!(shorter.total_ms, 1400);
    }
}
