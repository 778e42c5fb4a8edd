//! The war room's live views of a run in progress, served by the running
//! process itself with `--listen ADDR` (no external service): a status page
//! that updates itself, the same facts as JSON, and Prometheus metrics.
//!
//! - [`state`]: the live state: the run's state, and what only these views fold.
//! - [`metrics`]: that state in the Prometheus text format.
//! - [`server`]: the read-only HTTP server and the listen-address policy.
//! - [`notify`]: `--notify` messages to webhooks (Slack-compatible).
//!
//! The state is fed by a [`LiveConsumer`] (one more consumer of the event
//! stream) and read by the server through one `Arc<Mutex<Live>>`. Owns what
//! the live views say. It must not change the run: nothing here writes to
//! the engine, the journal or a host, and nothing secret (credentials,
//! environment) is ever in the state.

pub mod metrics;
pub mod notify;
pub mod server;
pub mod state;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::engine::consumer::{Consumer, Seen};
use crate::engine::events::Ack;
use crate::plan::Plan;
use crate::report::state::Shared;
use state::{FLIGHTS_LISTED, Live};

const PAGE: &str = include_str!("page.html");

/// The failure groups `/api/status` and the page list (the most hosts
/// first); the rest are counted. With one cause per host on a 32,000-host
/// fleet the page reached 4.9 MB, polled every second by every reader while
/// the state's lock was held. `rekindle report` has them all.
pub const FAILURE_GROUPS_LISTED: usize = 50;

/// The longest text (a reason, an output line, a folded host list) listed
/// per failure group; longer ones end in `…`.
pub const TEXT_LISTED: usize = 2000;

fn capped(text: &str) -> String {
    if text.len() <= TEXT_LISTED {
        return text.to_owned();
    }
    let mut end = TEXT_LISTED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The live state as `/api/status` serves it.
pub fn status_json(live: &Live) -> serde_json::Value {
    let now = live.elapsed_ms;
    let stages = live.stages();
    let sum = |f: &dyn Fn(&state::StageLive) -> usize| stages.iter().map(f).sum::<usize>();
    // The longest in flight first: those are the ones to look at.
    let mut flights: Vec<&state::Flight> = live.flights.values().collect();
    flights.sort_by_key(|f| (f.since_ms, f.host.as_str()));
    let listed: Vec<serde_json::Value> = flights
        .iter()
        .take(FLIGHTS_LISTED)
        .map(|f| {
            json!({
                "host": f.host,
                "stage": f.stage,
                "step": f.step,
                "kind": f.kind,
                "for_ms": now.saturating_sub(f.since_ms),
            })
        })
        .collect();
    // Folded the way the summary and report fold them.
    let summary = live.summary();
    let groups = crate::report::failures::groups(&summary);
    let failed_hosts: usize = groups.iter().map(|g| g.hosts.len()).sum();
    let failures: Vec<serde_json::Value> = groups
        .iter()
        .take(FAILURE_GROUPS_LISTED)
        .map(|g| {
            let output: Vec<String> = g.output.iter().map(|l| capped(l)).collect();
            json!({
                "stage": g.stage,
                "what": g.what,
                "reason": capped(&g.reason),
                "output": output,
                "count": g.hosts.len(),
                "hosts": capped(&g.folded_line()),
            })
        })
        .collect();
    let actions: serde_json::Map<String, serde_json::Value> = live
        .actions
        .iter()
        .map(|(a, n)| (a.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "run_id": live.run_id,
        "plan": live.plan,
        "state": live.state(),
        "paused": live.paused(),
        "outcome": live.outcome(),
        "elapsed_ms": now,
        "totals": {
            "hosts": sum(&|s| s.hosts),
            "done": sum(&|s| s.done),
            "failed": sum(&|s| s.failed),
            "skipped": sum(&|s| s.skipped),
            "in_flight": sum(&|s| s.in_flight),
            "pending": sum(&|s| s.pending),
        },
        "stages": stages,
        "in_flight": { "count": live.flights.len(), "hosts": listed },
        "failures": failures,
        "failure_groups": groups.len(),
        "failed_hosts": failed_hosts,
        "actions": actions,
        "step_durations": live.durations,
    })
}

/// The page with the current state in it, so it shows the run at once
/// (and to a reader without scripts); its script then polls for updates.
pub fn page_html(live: &Live) -> String {
    let status = script_json(&status_json(live).to_string());
    let svg = crate::report::formats::timeline_svg(&live.summary());
    PAGE.replacen("__STATUS__", &status, 1)
        .replacen("__TIMELINE__", &svg, 1)
}

/// JSON made safe inside `<script type="application/json">`: `<`, `>` and
/// `&` as `\u003c`, `\u003e`, `\u0026` (escaping `</` alone let
/// `<!--<script>` switch the HTML parser into its script-data escaped
/// state, which swallowed the page's own script), and U+2028/U+2029 as
/// escapes (line terminators to older JavaScript parsers). They can occur
/// only inside JSON strings, where the escapes read back as the same text.
pub fn script_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Feeds the shared live state from the event stream.
pub struct LiveConsumer(pub Arc<Mutex<Live>>);

impl LiveConsumer {
    fn with(&self, f: impl FnOnce(&mut Live)) {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Consumer for LiveConsumer {
    fn event(&mut self, e: Seen<'_>, _ack: &mut Option<Ack>) -> io::Result<()> {
        self.with(|l| l.event(e.at, millis(e.elapsed), e.kind));
        Ok(())
    }

    fn tick(&mut self, elapsed: Duration) -> io::Result<()> {
        self.with(|l| l.tick(millis(elapsed)));
        Ok(())
    }

    fn name(&self) -> &'static str {
        "live status"
    }
}

/// A status page being served.
pub struct Listening {
    pub consumer: LiveConsumer,
    /// `http://ADDR:PORT/`, the port the kernel gave when the operator asked for 0.
    pub url: String,
    /// Said when the page is reachable from beyond this machine.
    pub warning: Option<String>,
}

/// Binds `--listen`, builds the live state and starts serving it. An error
/// (bad address, port taken) comes before anything ran.
pub fn listen(addr: &str, run_id: &str, plan: &Plan, state: &Shared) -> Result<Listening, String> {
    let want = server::parse_listen(addr)?;
    let listener = server::bind(want)?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("--listen {want}: {e}"))?;
    let live = Arc::new(Mutex::new(Live::new(run_id, plan, state)));
    server::spawn(listener, Arc::clone(&live))
        .map_err(|e| format!("--listen {want}: cannot start the server: {e}"))?;
    let warning = server::is_public(local.ip()).then(|| {
        format!(
            "--listen {local}: the status page and metrics are readable by anyone who can reach this address (read-only, no secrets)"
        )
    });
    Ok(Listening {
        consumer: LiveConsumer(live),
        url: format!("http://{local}/"),
        warning,
    })
}

/// The flags that start live views.
pub struct Views<'a> {
    /// `--listen ADDR`: the status page, its JSON and metrics.
    pub listen: Option<&'a str>,
    /// `--notify URL...`: webhooks told of the run's milestones.
    pub notify: &'a [String],
}

/// Starts the live views `views` asks for and says where the page is; the
/// consumers to add to the execution. `Err` is a usage error, found before
/// anything ran.
pub fn start(
    views: &Views<'_>,
    run_id: &str,
    plan: &Plan,
    state: &Shared,
    say: fn(&str),
) -> Result<Vec<Box<dyn Consumer>>, String> {
    let mut consumers: Vec<Box<dyn Consumer>> = Vec::new();
    let targets = notify::targets(views.notify)?;
    if !targets.is_empty() {
        let n = notify::NotifyConsumer::start(run_id, &plan.name, targets)
            .map_err(|e| format!("--notify: cannot start: {e}"))?;
        consumers.push(Box::new(n));
    }
    let Some(addr) = views.listen else {
        return Ok(consumers);
    };
    let l = listen(addr, run_id, plan, state)?;
    if let Some(w) = &l.warning {
        say(&format!("warning: {w}"));
    }
    say(&format!(
        "live: status page {} (also {}api/status and {}metrics)",
        l.url, l.url, l.url
    ));
    consumers.push(Box::new(l.consumer));
    Ok(consumers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_a_script_element_has_no_markup_and_reads_back_the_same() {
        let value = json!({ "out": "<!--<script></script> & ]]> \u{2028}\u{2029} é" });
        let safe = script_json(&value.to_string());
        for c in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!safe.contains(c), "{c:?} in {safe}");
        }
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(TEXT_LISTED);
        let cut = capped(&long);
        assert!(cut.ends_with('…') && cut.len() <= TEXT_LISTED + '…'.len_utf8());
        assert_eq!(capped("short"), "short");
    }
}
