//! The summary for people: the stage table, boot times, the slowest hosts,
//! failures grouped by cause ([`super::failures`]), notes and the outcome.
//!
//! Owns that text; the data is [`super::summary`]'s.

use std::fmt::Write as _;

use super::summary::{StageStatus, Summary, ms, outcome_words};

/// The summary for people, as printed at the end of run/resume/drill and by `report`.
pub fn render_text(s: &Summary) -> String {
    let mut out = String::new();
    let w = s
        .stages
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(
        out,
        "{:<w$}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  status",
        "stage", "hosts", "done", "failed", "skipped", "not run"
    );
    for st in &s.stages {
        let status = match (st.status, &st.reason) {
            (StageStatus::Aborted, Some(r)) => format!("ABORTED: {r}"),
            (StageStatus::Skipped, Some(r)) => format!("not started: {r}"),
            (other, _) => other.as_str().to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:>6}  {:>6}  {:>6}  {:>7}  {:>7}  {status}",
            st.name,
            st.hosts,
            st.done,
            st.failed,
            st.skipped,
            st.not_run + st.interrupted
        );
    }
    if let Some(b) = s.boot_time {
        let _ = writeln!(
            out,
            "\nboot time (reboot issued to new boot id verified), {}: p50 {}, p95 {}, max {}",
            super::plural(b.hosts, "host"),
            ms(b.p50_ms),
            ms(b.p95_ms),
            ms(b.max_ms)
        );
    }
    if let Some(line) = s.power_cycled_line() {
        let _ = writeln!(out, "\n{line}");
    }
    let slowest = s.slowest();
    if !slowest.is_empty() {
        let hw = slowest.iter().map(|h| h.host.len()).max().unwrap_or(0);
        let _ = writeln!(out, "\nslowest hosts:");
        for h in slowest {
            let _ = writeln!(
                out,
                "  {:<hw$}  {:>8}  {} ({})",
                h.host,
                ms(h.duration_ms),
                h.stage,
                h.status
            );
        }
    }
    super::failures::write_text(&mut out, s);
    let interrupted = s.hosts.iter().filter(|h| h.status.unfinished()).count();
    if interrupted > 0 {
        let _ = writeln!(
            out,
            "\n{} {} stopped mid-step; `rekindle resume` re-verifies {}",
            super::plural(interrupted, "host"),
            if interrupted == 1 { "was" } else { "were" },
            if interrupted == 1 { "it" } else { "them" }
        );
    }
    for note in &s.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let resumed = match s.resumes {
        0 => String::new(),
        1 => " (resumed once)".into(),
        n => format!(" (resumed {n} times)"),
    };
    let _ = writeln!(
        out,
        "\nrun {}: {} in {}{resumed}",
        s.plan,
        outcome_words(s.outcome),
        ms(s.elapsed_ms)
    );
    out
}
