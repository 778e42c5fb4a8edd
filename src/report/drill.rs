//! The drill's report: a rendering of the run's common summary in real
//! time (a drill compresses time `--speed` times): the predicted recovery
//! time, each stage's duration, the slowest stage, failures grouped by step
//! and failure kind, with the fault the simulator injected into each host.
//!
//! Owns that wording. It must not touch hosts or the simulator; it gets the
//! injected faults as text.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use super::summary::{HostResult, HostStatus, Summary};
use crate::engine;

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

/// The drill's report: the run's summary in real time. `speed` is how many
/// times the drill compressed time, `fraction` the share of the selection
/// it simulated, `elapsed` the drill's own duration, `faults` the fault
/// each simulated host was given (by name, as people read it), the count
/// per stage, and what the drill cannot model.
pub fn render(
    summary: &Summary,
    speed: f64,
    fraction: f64,
    elapsed: Duration,
    faults: &Faults<'_>,
) -> String {
    let injected = faults.injected;
    let real = |d: Duration| engine::steps::humane(d.mul_f64(speed));
    let real_ms = |ms: u64| real(Duration::from_millis(ms));
    let mut out = String::new();
    let _ = writeln!(out, "\n== drill report ==");
    let _ = writeln!(
        out,
        "predicted recovery time: {} (the drill took {} at {}x)",
        real(elapsed),
        engine::steps::humane(elapsed),
        speed
    );
    let _ = writeln!(
        out,
        "{:<20} {:>6} {:>6} {:>6} {:>7}  {:>10}  outcome",
        "stage", "hosts", "done", "failed", "skipped", "duration"
    );
    let mut slowest: Option<(&str, u64)> = None;
    for st in &summary.stages {
        let duration = match (st.start_ms, st.end_ms) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
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
            duration.map_or_else(|| "-".to_owned(), real_ms)
        );
    }
    if let Some((name, d)) = slowest {
        let _ = writeln!(out, "slowest stage: {name} ({})", real_ms(d));
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
        let text = render(&c.summary(), 10.0, 1.0, Duration::from_secs(2), &faults);
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
}
