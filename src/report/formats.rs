//! `rekindle report` formats from a [`Summary`]: JSON facts, JUnit XML (one
//! test case per host, a test suite per stage) and one self-contained HTML
//! page with an SVG timeline (stages as lanes, hosts in flight over time,
//! failures marked).
//!
//! Owns these encodings. It must not read files or touch hosts.

use std::fmt::Write as _;

use super::summary::{HostResult, HostStatus, StageStatus, Summary, ms, outcome_words};
use super::text::render_text;

/// The hosts whose status is one of `statuses` (all when empty), folded into
/// one selector of `host=PATTERN` terms that `--limit` reads back exactly:
/// `host=pg-r[001-003,007]-db1,host=web2`. Returns the selector (`None`
/// when no host has those statuses) and the names a host pattern cannot
/// spell (brackets, braces, commas or spaces in them), for the caller to
/// warn about: terms of different keys would AND, not OR.
pub fn hosts_selector(s: &Summary, statuses: &[&str]) -> (Option<String>, Vec<String>) {
    let mut names: Vec<&str> = s
        .hosts
        .iter()
        .filter(|h| statuses.is_empty() || statuses.contains(&h.status.as_str()))
        .map(|h| h.host.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let (plain, odd): (Vec<&str>, Vec<&str>) =
        names.into_iter().partition(|n| super::nodeset::foldable(n));
    let terms: Vec<String> = super::nodeset::fold(plain)
        .iter()
        .map(|p| format!("{}={p}", crate::select::HOST_KEY))
        .collect();
    let unspellable = odd.into_iter().map(str::to_owned).collect();
    ((!terms.is_empty()).then(|| terms.join(",")), unspellable)
}

pub fn json(s: &Summary) -> String {
    let mut v = serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = v.as_object_mut() {
        let slowest: Vec<serde_json::Value> = s
            .slowest()
            .iter()
            .map(|h| serde_json::json!({"host": h.host, "stage": h.stage, "duration_ms": h.duration_ms, "status": h.status}))
            .collect();
        obj.insert("slowest".into(), slowest.into());
    }
    let mut out = serde_json::to_string_pretty(&v).unwrap_or_default();
    out.push('\n');
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // XML 1.0 forbids most control characters even as references.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn secs(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// JUnit XML as CI dashboards read it: `testsuites` > `testsuite` per stage >
/// `testcase` per host, with `failure` (failed), `skipped` (unreachable, or
/// never ran) or `error` (interrupted).
pub fn junit(s: &Summary) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let fails = s
        .hosts
        .iter()
        .filter(|h| h.status == HostStatus::Failed)
        .count();
    let errors = s.hosts.iter().filter(|h| h.status.unfinished()).count();
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{fails}\" errors=\"{errors}\" time=\"{}\">",
        xml_escape(&s.plan),
        s.hosts.len(),
        secs(s.elapsed_ms)
    );
    for st in &s.stages {
        let hosts: Vec<&HostResult> = s.hosts.iter().filter(|h| h.stage == st.name).collect();
        let count = |f: &dyn Fn(&HostResult) -> bool| hosts.iter().filter(|h| f(h)).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            xml_escape(&st.name),
            hosts.len(),
            count(&|h| h.status == HostStatus::Failed),
            count(&|h| h.status.unfinished()),
            count(&|h| matches!(h.status, HostStatus::Unreachable | HostStatus::Skipped)),
            // A stage that never started took no time.
            secs(st.start_ms.map_or(0, |start| {
                st.end_ms.unwrap_or(s.elapsed_ms).saturating_sub(start)
            }))
        );
        for h in hosts {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                xml_escape(&h.host),
                xml_escape(&st.name),
                secs(h.duration_ms)
            );
            let reason = xml_escape(h.reason.as_deref().unwrap_or(""));
            let step = match (h.step, &h.step_kind) {
                (Some(n), Some(k)) => format!("step {n} ({k})"),
                (Some(n), None) => format!("step {n}"),
                _ => String::new(),
            };
            match h.status.as_str() {
                "done" => out.push_str("/>\n"),
                "failed" => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{reason}\" type=\"{}\">{}: {reason}{}</failure>\n    </testcase>",
                        xml_escape(h.step_kind.as_deref().unwrap_or("step")),
                        xml_escape(&step),
                        h.output
                            .as_deref()
                            .map(|o| format!("\n{}", xml_escape(o)))
                            .unwrap_or_default()
                    );
                }
                "unreachable" => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"unreachable, set aside: {reason}\"/>\n    </testcase>"
                    );
                }
                "skipped" => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"not run: {reason}\"/>\n    </testcase>"
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        ">\n      <error message=\"stopped mid-step{}\" type=\"interrupted\"/>\n    </testcase>",
                        if step.is_empty() {
                            String::new()
                        } else {
                            format!(" at {step}")
                        }
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Points of "hosts in flight" over time for one stage, at most `bins` wide.
fn in_flight(hosts: &[&HostResult], end: u64, bins: usize) -> Vec<(u64, usize)> {
    if end == 0 || bins == 0 {
        return Vec::new();
    }
    // Sweep of +1 at each start, -1 at each end, keeping each bin's peak so
    // a short burst still shows.
    let mut deltas: Vec<(u64, i64)> = Vec::with_capacity(hosts.len() * 2);
    for h in hosts {
        deltas.push((h.start_ms, 1));
        deltas.push((h.end_ms.max(h.start_ms), -1));
    }
    deltas.sort_unstable();
    let mut peaks = vec![0usize; bins];
    let mut level: i64 = 0;
    let bin_of = |t: u64| ((t as u128 * bins as u128 / (end as u128 + 1)) as usize).min(bins - 1);
    let mut i = 0;
    for (b, peak) in peaks.iter_mut().enumerate() {
        *peak = usize::try_from(level.max(0)).unwrap_or(0);
        while i < deltas.len() && bin_of(deltas[i].0) == b {
            level += deltas[i].1;
            *peak = (*peak).max(usize::try_from(level.max(0)).unwrap_or(0));
            i += 1;
        }
    }
    peaks
        .into_iter()
        .enumerate()
        .map(|(b, p)| ((b as u64 * (end + 1)) / bins as u64, p))
        .collect()
}

const CSS: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}.sub{color:#5b6475}\
table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 10px;border-bottom:1px solid #e3e6ec;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b3261e;font-weight:600}.ok{color:#1e7a3c;font-weight:600}\
pre{background:#f5f6f8;padding:6px 8px;margin:4px 0;white-space:pre-wrap}svg{border:1px solid #e3e6ec;background:#fbfcfd}";

fn html_escape(s: &str) -> String {
    xml_escape(s)
}

/// Most intervals on the timeline's time axis.
const MAX_TICKS: u64 = 6;

/// The tick spacing (ms) for a timeline `end_ms` long: the smallest human
/// step (1, 2, 5, 10, 15, 30 s; 1, 2, 5, 10, 15, 30 min; 1, 2, 3, 6, 12 h;
/// days) giving at most [`MAX_TICKS`] intervals.
pub fn tick_step(end_ms: u64) -> u64 {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const STEPS: [u64; 20] = [
        100,
        200,
        500,
        S,
        2 * S,
        5 * S,
        10 * S,
        15 * S,
        30 * S,
        M,
        2 * M,
        5 * M,
        10 * M,
        15 * M,
        30 * M,
        H,
        2 * H,
        3 * H,
        6 * H,
        12 * H,
    ];
    STEPS
        .iter()
        .copied()
        .find(|&step| end_ms.div_ceil(step) <= MAX_TICKS)
        .unwrap_or_else(|| {
            // Whole days beyond that.
            let day = 24 * H;
            end_ms.div_ceil(day).div_ceil(MAX_TICKS).max(1) * day
        })
}

/// The timeline: one lane per stage, the area is hosts in flight over time,
/// red marks are failures at the time they happened.
pub fn timeline_svg(s: &Summary) -> String {
    const W: u64 = 1200;
    const LEFT: u64 = 150;
    const LANE: u64 = 70;
    const TOP: u64 = 30;
    let plot = W - LEFT - 20;
    let end = s.elapsed_ms.max(1);
    let lanes = s.stages.len().max(1) as u64;
    let h = TOP + lanes * LANE + 30;
    let x = |t: u64| LEFT as f64 + (t as f64 / end as f64) * plot as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"timeline\">"
    );
    // Time axis: ticks at round times, at most MAX_TICKS intervals.
    let step = tick_step(end);
    for k in 0..=end / step {
        let t = k * step;
        let xx = x(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{xx:.1}\" y1=\"{TOP}\" x2=\"{xx:.1}\" y2=\"{}\" stroke=\"#e3e6ec\"/><text x=\"{xx:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5b6475\">{}</text>",
            TOP + lanes * LANE,
            TOP + lanes * LANE + 16,
            ms(t)
        );
    }
    for (i, st) in s.stages.iter().enumerate() {
        let y0 = TOP + i as u64 * LANE;
        let base = y0 + LANE - 8;
        let hosts: Vec<&HostResult> = s.hosts.iter().filter(|h| h.stage == st.name).collect();
        let points = in_flight(&hosts, end, 300);
        let peak = points.iter().map(|p| p.1).max().unwrap_or(0).max(1);
        let y = |n: usize| base as f64 - (n as f64 / peak as f64) * (LANE - 20) as f64;
        let _ = writeln!(
            svg,
            "<text x=\"8\" y=\"{}\" font-size=\"13\" font-weight=\"600\">{}</text><text x=\"8\" y=\"{}\" font-size=\"11\" fill=\"#5b6475\">{}, peak {} in flight</text>",
            y0 + 28,
            html_escape(&st.name),
            y0 + 44,
            super::plural(st.hosts.max(hosts.len()), "host"),
            points.iter().map(|p| p.1).max().unwrap_or(0)
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#c9ced8\"/>",
            LEFT + plot
        );
        if points.iter().any(|p| p.1 > 0) {
            let mut d = format!("M{:.1},{base}", x(0));
            for (t, n) in &points {
                let _ = write!(d, " L{:.1},{:.1}", x(*t), y(*n));
            }
            let _ = write!(d, " L{:.1},{base} Z", x(end));
            let _ = writeln!(
                svg,
                "<path class=\"lane\" d=\"{d}\" fill=\"#4c7bd9\" fill-opacity=\"0.55\" stroke=\"#2f5bb7\" stroke-width=\"1\"/>"
            );
        }
        for h in hosts.iter().filter(|h| h.status.failed()) {
            let xx = x(h.end_ms);
            let colour = if h.status == HostStatus::Failed {
                "#d93025"
            } else {
                "#e8a33d"
            };
            let _ = writeln!(
                svg,
                "<g class=\"failure\"><line x1=\"{xx:.1}\" y1=\"{}\" x2=\"{xx:.1}\" y2=\"{base}\" stroke=\"{colour}\" stroke-width=\"2\"/><circle cx=\"{xx:.1}\" cy=\"{}\" r=\"4\" fill=\"{colour}\"/><title>{} {}: {}</title></g>",
                y0 + 10,
                y0 + 10,
                html_escape(&h.host),
                h.status,
                html_escape(h.reason.as_deref().unwrap_or(""))
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// One self-contained page: inline CSS and SVG, no scripts, no external resources.
pub fn html(s: &Summary) -> String {
    let mut out = String::new();
    let title = format!("rekindle report: {}", s.plan);
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        html_escape(&title)
    );
    let bad = !matches!(s.outcome, Some(crate::engine::events::RunOutcome::Success));
    let _ = writeln!(
        out,
        "<h1>{}</h1><div class=\"sub\">run {} &middot; <span class=\"{}\">{}</span> in {}{}</div>",
        html_escape(&title),
        html_escape(s.run_id.as_deref().unwrap_or("-")),
        if bad { "bad" } else { "ok" },
        html_escape(outcome_words(s.outcome)),
        ms(s.elapsed_ms),
        if s.resumes > 0 {
            format!(" &middot; resumed {}&times;", s.resumes)
        } else {
            String::new()
        }
    );
    out.push_str("<h2>Timeline</h2>\n<p class=\"sub\">Stages as lanes; the area is hosts in flight over time; red marks are failures, orange marks unreachable hosts set aside.</p>\n");
    out.push_str(&timeline_svg(s));
    out.push_str("<h2>Stages</h2><table><tr><th>stage</th><th>hosts</th><th>done</th><th>failed</th><th>skipped</th><th>not run</th><th>status</th></tr>\n");
    for st in &s.stages {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"{}\">{}{}</td></tr>",
            html_escape(&st.name),
            st.hosts,
            st.done,
            st.failed,
            st.skipped,
            st.not_run + st.interrupted,
            if st.status == StageStatus::Done {
                "ok"
            } else {
                "bad"
            },
            html_escape(st.status.as_str()),
            st.reason
                .as_deref()
                .map(|r| format!(": {}", html_escape(r)))
                .unwrap_or_default()
        );
    }
    out.push_str("</table>\n");
    if let Some(b) = s.boot_time {
        let _ = writeln!(
            out,
            "<h2>Boot time</h2><p>reboot issued to new boot id verified, {}: p50 <b>{}</b>, p95 <b>{}</b>, max <b>{}</b></p>",
            super::plural(b.hosts, "host"),
            ms(b.p50_ms),
            ms(b.p95_ms),
            ms(b.max_ms)
        );
    }
    out.push_str("<h2>Slowest hosts</h2><table><tr><th>host</th><th>stage</th><th>duration</th><th>result</th></tr>\n");
    for h in s.slowest() {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            html_escape(&h.host),
            html_escape(&h.stage),
            ms(h.duration_ms),
            html_escape(h.status.as_str())
        );
    }
    out.push_str("</table>\n");
    let groups = super::failures::groups(s);
    let total: usize = groups.iter().map(|g| g.hosts.len()).sum();
    let _ = writeln!(out, "<h2>Failures ({total})</h2>");
    if !groups.is_empty() {
        out.push_str("<p class=\"sub\">Hosts that failed the same way (stage, step, reason, last output) are one row, largest first; <code>rekindle report JOURNAL --format json</code> lists every host.</p>\n");
        out.push_str("<table><tr><th>hosts</th><th>which</th><th>stage</th><th>step</th><th>reason</th></tr>\n");
        for g in groups {
            let output = g.output.join("\n");
            let _ = writeln!(
                out,
                "<tr class=\"cause\"><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                g.hosts.len(),
                html_escape(&g.folded_line()),
                html_escape(g.stage),
                html_escape(&g.what),
                html_escape(&g.reason),
                if output.is_empty() {
                    String::new()
                } else {
                    format!("<pre>{}</pre>", html_escape(&output))
                }
            );
        }
        out.push_str("</table>\n");
    }
    let _ = writeln!(
        out,
        "<h2>Summary (text)</h2><pre>{}</pre>\n</body></html>",
        html_escape(&render_text(s))
    );
    out
}
