//! The live state in the Prometheus text exposition format (version 0.0.4):
//! hosts by stage and state, actions sent by kind, failures by kind, step
//! durations as histograms, and the run as an info metric.
//!
//! Owns metric names, labels and their escaping. It must not change state.

use std::fmt::Write as _;

use super::state::{Action, BUCKETS, Live};

/// A label value with `\`, `"` and newlines escaped as the format wants.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(live: &Live) -> String {
    let mut out = String::new();
    head(
        &mut out,
        "rekindle_run_info",
        "gauge",
        "The run this process executes (value always 1).",
    );
    let _ = writeln!(
        out,
        "rekindle_run_info{{run_id=\"{}\",plan=\"{}\",version=\"{}\"}} 1",
        label(&live.run_id),
        label(&live.plan),
        env!("CARGO_PKG_VERSION")
    );
    head(
        &mut out,
        "rekindle_run_paused",
        "gauge",
        "1 while the run is paused (no new host or action starts).",
    );
    let _ = writeln!(out, "rekindle_run_paused {}", u8::from(live.paused()));
    head(
        &mut out,
        "rekindle_run_finished",
        "gauge",
        "1 once the run has finished.",
    );
    let _ = writeln!(
        out,
        "rekindle_run_finished {}",
        u8::from(live.outcome().is_some())
    );
    head(
        &mut out,
        "rekindle_run_elapsed_seconds",
        "gauge",
        "Seconds since the run (this process's part of it) started.",
    );
    let _ = writeln!(
        out,
        "rekindle_run_elapsed_seconds {:.3}",
        live.elapsed_ms as f64 / 1000.0
    );

    head(
        &mut out,
        "rekindle_hosts",
        "gauge",
        "Hosts by stage and state (pending, in_flight, done, failed, skipped).",
    );
    for s in &live.stages() {
        let stage = label(&s.name);
        for (state, n) in [
            ("pending", s.pending),
            ("in_flight", s.in_flight),
            ("done", s.done),
            ("failed", s.failed),
            ("skipped", s.skipped),
        ] {
            let _ = writeln!(
                out,
                "rekindle_hosts{{stage=\"{stage}\",state=\"{state}\"}} {n}"
            );
        }
    }

    head(
        &mut out,
        "rekindle_actions_total",
        "counter",
        "Actions sent to hosts or BMCs, by kind.",
    );
    for a in Action::ALL {
        let n = live.actions.get(&a).copied().unwrap_or(0);
        let _ = writeln!(out, "rekindle_actions_total{{kind=\"{}\"}} {n}", a.as_str());
    }

    head(
        &mut out,
        "rekindle_failures_total",
        "counter",
        "Hosts that failed or were set aside unreachable, by stage, status, failure kind and the kind of step that failed.",
    );
    for (key, n) in &live.failures {
        let _ = writeln!(
            out,
            "rekindle_failures_total{{stage=\"{}\",status=\"{}\",kind=\"{}\",step=\"{}\"}} {n}",
            label(&key.stage),
            key.status.as_str(),
            label(&key.kind),
            key.step.unwrap_or("none")
        );
    }

    head(
        &mut out,
        "rekindle_step_duration_seconds",
        "histogram",
        "How long steps took, by step kind.",
    );
    for (kind, h) in &live.durations {
        for (bound, n) in BUCKETS.iter().zip(&h.buckets) {
            let _ = writeln!(
                out,
                "rekindle_step_duration_seconds_bucket{{kind=\"{kind}\",le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "rekindle_step_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}\n\
             rekindle_step_duration_seconds_sum{{kind=\"{kind}\"}} {:.3}\n\
             rekindle_step_duration_seconds_count{{kind=\"{kind}\"}} {}",
            h.count, h.sum, h.count
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
