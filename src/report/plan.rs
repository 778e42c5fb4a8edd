//! The plan for people and machines: `rekindle plan`'s text (stages,
//! waves, gates, canaries, windows, the estimate) and its JSON (format 1, a
//! contract for CI diffs).
//!
//! Owns that wording and that format; building the plan is `plan`'s, the
//! command's loading and checks `commands::plan`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::diag::{self, Sources};
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::playbook::units::HumanDuration;
use crate::playbook::{OnUnreachable, Playbook, Step};
use crate::select::Selector;

fn hosts_in_scope(inventory: &Inventory, limit: Option<&Selector>) -> usize {
    inventory
        .hosts
        .iter()
        .filter(|h| limit.is_none_or(|l| l.matches(h)))
        .count()
}

fn selected(plan: &Plan) -> usize {
    plan.distinct_hosts()
}

fn counts<'a>(inventory: &'a Inventory, hosts: &[usize], key: &str) -> BTreeMap<&'a str, usize> {
    let mut out = BTreeMap::new();
    for &h in hosts {
        let v = inventory.hosts[h].label(key).unwrap_or("(none)");
        *out.entry(v).or_insert(0) += 1;
    }
    out
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn step_kind(step: &Step) -> &'static str {
    crate::playbook::StepKind::of(step).as_str()
}

fn step_timeout(step: &Step) -> Duration {
    crate::plan::host_estimate(std::slice::from_ref(step))
}

fn on_unreachable(o: OnUnreachable) -> &'static str {
    match o {
        OnUnreachable::Fail => "fail",
        OnUnreachable::Skip => "skip",
    }
}

/// The plan as JSON, format 1. This is a contract for CI diffs: keys are
/// sorted, durations are whole milliseconds (`*_ms`) with a humane copy, and
/// fields are only ever added under the same `format`.
///
/// ```text
/// {
///   "format": 1,
///   "playbook": { "name": str, "file": str },
///   "limit": str | null,           // the --limit selector
///   "hosts_in_scope": int,         // inventory hosts left by --limit
///   "hosts_selected": int,         // distinct hosts some stage selects
///   "estimate_ms": int, "estimate": str,   // whole plan, critical path
///   "waves": [[stage name, ...], ...],     // stages that may run together, in order
///   "stages": [{                           // in dependency order
///     "name": str, "wave": int (0-based), "after": [stage name],
///     "gates": {stage name: {"percent": float, "hosts": int}},  // readiness gates
///     "hosts": int, "by_dc": {value: int}, "by_role": {value: int},
///     "racks": int,                        // distinct `rack` values
///     "canaries": [host name],             // first, one at a time
///     "window": int,                       // hosts in flight after canaries
///     "ramp": [int],                       // growing waves before `window` holds
///     "failure_budget": int,               // failures tolerated; one more aborts
///     "rate": str | null, "rate_per": str | null,
///     "max_unavailable": {label: int},     // hosts in flight per label value
///     "on_unreachable": "fail" | "skip",
///     "connect_timeout_ms": int, "command_timeout_ms": int,
///     "steps": [{ "kind": str, "timeout_ms": int }],
///     "host_estimate_ms": int, "estimate_ms": int,
///     "start_ms": int, "finish_ms": int    // from the start of the run
///   }],
///   "warnings": [{ "code", "severity", "message", "file", "line", "column" }]
/// }
/// ```
pub fn render_json(
    plan: &Plan,
    playbook: &Playbook,
    inventory: &Inventory,
    limit: Option<&Selector>,
) -> String {
    let schedule = plan.schedule();
    let stages: Vec<Value> = plan
        .stages
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let racks = counts(inventory, &s.hosts, "rack");
            let racks = racks.len() - usize::from(racks.contains_key("(none)"));
            json!({
                "name": s.name,
                "wave": plan.wave_of(k),
                "after": s.after.iter().map(|&a| plan.stages[a].name.as_str()).collect::<Vec<_>>(),
                "gates": s.gates.iter().map(|&(d, p)| (plan.stages[d].name.clone(), json!({"percent": p, "hosts": plan.stages[d].gate_hosts(p)}))).collect::<BTreeMap<_, _>>(),
                "hosts": s.hosts.len(),
                "by_dc": counts(inventory, &s.hosts, "dc"),
                "by_role": counts(inventory, &s.hosts, "role"),
                "racks": racks,
                "canaries": s.hosts[..s.canaries].iter().map(|&h| inventory.hosts[h].name.as_str()).collect::<Vec<_>>(),
                "window": s.window,
                "ramp": s.ramp,
                "failure_budget": s.failure_budget,
                "rate": s.rate.map(|r| r.to_string()),
                "rate_per": s.rate_per,
                "max_unavailable": s.max_unavailable.iter().cloned().collect::<BTreeMap<_, _>>(),
                "on_unreachable": on_unreachable(s.on_unreachable),
                "connect_timeout_ms": ms(s.connect_timeout),
                "command_timeout_ms": ms(s.command_timeout),
                "steps": s.steps.iter().map(|st| json!({"kind": step_kind(st), "timeout_ms": ms(step_timeout(st))})).collect::<Vec<_>>(),
                "host_estimate_ms": ms(s.host_estimate),
                "estimate_ms": ms(s.estimate),
                "start_ms": ms(schedule[k].0),
                "finish_ms": ms(schedule[k].1),
            })
        })
        .collect();
    let warnings: Vec<Value> = plan
        .warnings
        .iter()
        .map(|d| {
            let span = d.span.as_ref();
            json!({
                "code": d.code,
                "severity": d.severity.as_str(),
                "message": d.message,
                "file": span.map(|s| &*s.file),
                "line": span.filter(|s| s.line > 0).map(|s| s.line),
                "column": span.filter(|s| s.line > 0).map(|s| s.col),
            })
        })
        .collect();
    let doc = json!({
        "format": 1,
        "playbook": { "name": playbook.name, "file": playbook.file },
        "limit": limit.map(|l| l.to_string()),
        "hosts_in_scope": hosts_in_scope(inventory, limit),
        "hosts_selected": selected(plan),
        "estimate_ms": ms(plan.estimate),
        "estimate": HumanDuration(plan.estimate).to_string(),
        "waves": plan.waves.iter().map(|w| w.iter().map(|&k| plan.stages[k].name.as_str()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "stages": stages,
        "warnings": warnings,
    });
    serde_json::to_string_pretty(&sorted(doc)).unwrap_or_default() + "\n"
}

/// Keys sorted at every level, whatever serde_json's map ordering feature.
/// `v` with every object's keys sorted.
pub fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// `pangyo 40, ansan 2` (the largest few, then how many more).
fn breakdown(counts: &BTreeMap<&str, usize>) -> String {
    let mut items: Vec<(&str, usize)> = counts.iter().map(|(k, v)| (*k, *v)).collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<String> = items
        .iter()
        .take(6)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let more = items.len().saturating_sub(6);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// `dc: pangyo 40; role: db 40; 20 racks of 2`, naming only the dimensions
/// some host has; without any, the Ansible groups, or that there are none.
fn grouping(inventory: &Inventory, hosts: &[usize]) -> String {
    let mut parts = Vec::new();
    for key in ["dc", "role"] {
        let c = counts(inventory, hosts, key);
        if c.keys().any(|v| *v != "(none)") {
            parts.push(format!("{key}: {}", breakdown(&c)));
        }
    }
    let mut racks = counts(inventory, hosts, "rack");
    let unracked = racks.remove("(none)");
    if let (Some(lo), Some(hi)) = (racks.values().min(), racks.values().max()) {
        let n = racks.len();
        let sizes = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        };
        let mut text = format!("{n} rack{} of {sizes}", if n == 1 { "" } else { "s" });
        if let Some(u) = unracked {
            text.push_str(&format!(", {u} without a rack"));
        }
        parts.push(text);
    }
    if parts.is_empty() {
        let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
        for &h in hosts {
            for g in &inventory.hosts[h].groups {
                *groups.entry(g.as_str()).or_insert(0) += 1;
            }
        }
        parts.push(if groups.is_empty() {
            "no dc, role or rack labels".to_owned()
        } else {
            format!("no dc, role or rack labels; groups: {}", breakdown(&groups))
        });
    }
    parts.join("; ")
}

pub fn render_text(
    plan: &Plan,
    playbook: &Playbook,
    inventory: &Inventory,
    limit: Option<&Selector>,
    sources: &Sources,
) -> String {
    let mut out = String::new();
    let schedule = plan.schedule();
    let _ = writeln!(out, "Plan `{}` ({})", plan.name, playbook.file);
    let scope = match limit {
        Some(l) => format!(
            "{} in scope after --limit `{l}`",
            crate::report::plural(hosts_in_scope(inventory, limit), "host")
        ),
        None => format!(
            "{} in the inventory",
            crate::report::plural(hosts_in_scope(inventory, limit), "host")
        ),
    };
    let _ = writeln!(
        out,
        "  {scope}; {} selected by {} stage{} in {} wave{}",
        selected(plan),
        plan.stages.len(),
        if plan.stages.len() == 1 { "" } else { "s" },
        plan.waves.len(),
        if plan.waves.len() == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "  estimated duration: {} (critical path; hosts take their steps' full timeouts unless a stage sets `estimate`)",
        HumanDuration(plan.estimate)
    );
    for (w, wave) in plan.waves.iter().enumerate() {
        let names: Vec<&str> = wave.iter().map(|&k| plan.stages[k].name.as_str()).collect();
        let together = if wave.len() > 1 { ", run together" } else { "" };
        let _ = writeln!(out, "\nWave {}: {}{together}", w + 1, names.join(", "));
        for &k in wave {
            let s = &plan.stages[k];
            let after: Vec<String> = s
                .after
                .iter()
                .map(|&a| match s.gate(a) {
                    Some(p) => format!("{} at {p}%", plan.stages[a].name),
                    None => plan.stages[a].name.clone(),
                })
                .collect();
            let after = if after.is_empty() {
                String::new()
            } else {
                format!(" (after {})", after.join(", "))
            };
            let _ = writeln!(out, "  stage {}{after}", s.name);
            if s.hosts.is_empty() {
                // Only --limit can leave a stage empty (see the warning).
                let _ = writeln!(
                    out,
                    "    hosts            0  (none inside --limit: runs no host)"
                );
                continue;
            }
            let _ = writeln!(
                out,
                "    hosts            {}  ({})",
                s.hosts.len(),
                grouping(inventory, &s.hosts)
            );
            if s.canaries > 0 {
                let names: Vec<&str> = s.hosts[..s.canaries]
                    .iter()
                    .map(|&h| inventory.hosts[h].name.as_str())
                    .collect();
                let _ = writeln!(
                    out,
                    "    canaries         {}  one at a time, first: {}",
                    s.canaries,
                    names.join(", ")
                );
            }
            for &(d, p) in &s.gates {
                let dep = &plan.stages[d];
                let _ = writeln!(
                    out,
                    "    gate             starts when {} of {}'s {} hosts are done ({p}%) and {} is inside its budget; its stragglers run on",
                    dep.gate_hosts(p),
                    dep.name,
                    dep.hosts.len(),
                    dep.name,
                );
            }
            if s.ramp.is_empty() {
                let _ = writeln!(out, "    window           {} in flight", s.window);
            } else {
                let sizes: Vec<String> = s.ramp.iter().map(usize::to_string).collect();
                let _ = writeln!(
                    out,
                    "    window           {} -> {} in flight: growing waves, each must finish without a failure before the next size; {} holds to the end",
                    sizes.join(" -> "),
                    s.window,
                    s.window
                );
            }
            if let Some(rate) = s.rate {
                let per = s
                    .rate_per
                    .as_ref()
                    .map(|k| format!(" per {k}"))
                    .unwrap_or_default();
                let _ = writeln!(out, "    rate             {rate}{per}");
            }
            for (key, n) in &s.max_unavailable {
                let _ = writeln!(out, "    max_unavailable  {n} per {key}");
            }
            let _ = writeln!(
                out,
                "    failure budget   {} (the stage aborts at failure {})",
                s.failure_budget,
                s.failure_budget + 1
            );
            if s.on_unreachable == OnUnreachable::Skip {
                let _ = writeln!(
                    out,
                    "    on_unreachable   skip (set aside, not counted as failures)"
                );
            }
            if let Some(r) = s.remediate {
                let _ = writeln!(
                    out,
                    "    remediate        up to {} BMC power cycle{} for a host that does not come back, then quarantined",
                    r.power_cycle,
                    if r.power_cycle == 1 { "" } else { "s" }
                );
                let _ = writeln!(
                    out,
                    "                     cycles paced like power-ons: one per PDU every {}, at most {} fleet-wide",
                    HumanDuration(r.pdu_interval),
                    r.rate
                );
                // Each remediable step waits its whole timeout again per cycle.
                let waits: Duration = s
                    .steps
                    .iter()
                    .filter(|st| {
                        matches!(
                            st,
                            Step::WaitSsh { .. } | Step::Reboot { .. } | Step::PowerOn(_)
                        )
                    })
                    .map(step_timeout)
                    .sum();
                if !waits.is_zero() {
                    let _ = writeln!(
                        out,
                        "                     a straggler may take up to {} more than the estimate below",
                        HumanDuration(waits * r.power_cycle)
                    );
                }
            }
            let steps: Vec<String> = s
                .steps
                .iter()
                .map(|st| format!("{} {}", step_kind(st), HumanDuration(step_timeout(st))))
                .collect();
            let _ = writeln!(out, "    steps            {}", steps.join(" -> "));
            let _ = writeln!(
                out,
                "    estimate         {} per host, {} for the stage ({} to {})",
                HumanDuration(s.host_estimate),
                HumanDuration(s.estimate),
                HumanDuration(schedule[k].0),
                HumanDuration(schedule[k].1),
            );
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings ({}):", plan.warnings.len());
        out.push_str(&diag::render_text(sources, &plan.warnings));
    }
    out
}

/// The plan's JSON (`plan`, from [`render_json`]) with `plan --preflight`'s
/// findings added under `preflight` (and `power`), keys sorted.
pub fn with_checks(plan: &str, preflight: Value, power: Option<Value>) -> anyhow::Result<String> {
    let mut doc: Value = serde_json::from_str(plan).context("plan JSON")?;
    if let Value::Object(map) = &mut doc {
        map.insert("preflight".into(), preflight);
        if let Some(power) = power {
            map.insert("power".into(), power);
        }
    }
    Ok(serde_json::to_string_pretty(&sorted(doc)).unwrap_or_default() + "\n")
}

/// The plan in a few lines, for the operator asked to confirm it.
pub fn outline(plan: &Plan) -> String {
    let hosts: usize = plan.stages.iter().map(|s| s.hosts.len()).sum();
    let mut out = format!(
        "About to run `{}`: {} stages, {} host runs, estimated {}\n",
        plan.name,
        plan.stages.len(),
        hosts,
        crate::engine::steps::humane(plan.estimate)
    );
    for s in &plan.stages {
        let after: Vec<&str> = s
            .after
            .iter()
            .filter_map(|&i| plan.stages.get(i).map(|d| d.name.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "  {}: {} hosts, {} canaries, window {}, failure budget {}{}",
            s.name,
            s.hosts.len(),
            s.canaries,
            s.window,
            s.failure_budget,
            if after.is_empty() {
                String::new()
            } else {
                format!(", after {}", after.join(", "))
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::validate::test_inventory;

    /// Renders the fixture playbook against the hand-made test inventory
    /// (inventory loading is another module; these snapshots pin the output).
    fn rendered(json: bool) -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/playbooks/valid.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        rendered_from("valid.yaml", &text, &test_inventory(), json)
    }

    /// Playbook `text` (read from `path`) planned on `inv`, as `plan`
    /// renders it: JSON or text.
    pub(super) fn rendered_from(path: &str, text: &str, inv: &Inventory, json: bool) -> String {
        let mut sources = Sources::new();
        let (playbook, _) = crate::playbook::load_str(path, text, None, &mut sources).unwrap();
        let plan = crate::plan::build(&playbook, inv, None).unwrap();
        if json {
            render_json(&plan, &playbook, inv, None)
        } else {
            render_text(&plan, &playbook, inv, None, &sources)
        }
    }

    #[test]
    fn plan_text() {
        insta::assert_snapshot!(rendered(false));
    }

    #[test]
    fn a_gated_start_shows_in_the_estimate() {
        let text = "version: 1\nstages:\n  - name: storage\n    select: { role: storage }\n    parallel: 2\n    steps: [ { reboot: { timeout: 10m } } ]\n  - name: db\n    select: { role: db }\n    after: { storage: 50% }\n    steps: [ { reboot: { timeout: 10m } } ]\n";
        let inv = test_inventory();
        let out = rendered_from("p.yaml", text, &inv, false);
        // storage: 6 hosts two at a time, 10m each: 30m; 3 done after 20m.
        assert!(out.contains("  stage db (after storage at 50%)\n"), "{out}");
        assert!(
            out.contains("    gate             starts when 3 of storage's 6 hosts are done (50%) and storage is inside its budget; its stragglers run on\n"),
            "{out}"
        );
        assert!(out.contains("for the stage (20m to "), "{out}");
        let json: Value = serde_json::from_str(&rendered_from("p.yaml", text, &inv, true)).unwrap();
        assert_eq!(json["stages"][1]["gates"]["storage"]["hosts"], 3);
        assert_eq!(json["stages"][1]["start_ms"], 1_200_000);
    }

    #[test]
    fn growing_waves_show_in_the_window_and_the_estimate() {
        let text = "version: 1\nstages:\n  - name: storage\n    select: { role: storage }\n    parallel: [1, 2, 50%]\n    steps: [ { reboot: { timeout: 10m } } ]\n";
        let inv = test_inventory();
        let out = rendered_from("p.yaml", text, &inv, false);
        assert!(
            out.contains("    window           1 -> 2 -> 3 in flight: growing waves, each must finish without a failure before the next size; 3 holds to the end\n"),
            "{out}"
        );
        // 6 hosts: a wave of 1, a wave of 2, then 3 at once: 3 rounds of 10m.
        assert!(out.contains("10m per host, 30m for the stage"), "{out}");
        let json: Value = serde_json::from_str(&rendered_from("p.yaml", text, &inv, true)).unwrap();
        assert_eq!(json["stages"][0]["ramp"], json!([1, 2]));
        assert_eq!(json["stages"][0]["window"], 3);
    }

    #[test]
    fn plan_json_format_1() {
        let out = rendered(true);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["format"], 1);
        insta::assert_snapshot!(out);
    }
}

#[cfg(test)]
mod example_snapshots {
    //! The examples' plans over a hand-built kakao-like fleet, until the real
    //! inventories/kakao-like.yaml can be loaded here.

    fn rendered(name: &str, json: bool) -> String {
        let inv = crate::plan::examples::fleet(4, 10);
        let path = format!("playbooks/{name}");
        let text =
            std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        super::tests::rendered_from(&path, &text, &inv, json)
    }

    #[test]
    fn dc_cold_start_text() {
        insta::assert_snapshot!(rendered("dc-cold-start.yaml", false));
    }

    #[test]
    fn dc_cold_start_json() {
        insta::assert_snapshot!(rendered("dc-cold-start.yaml", true));
    }

    #[test]
    fn rolling_kernel_reboot_json() {
        insta::assert_snapshot!(rendered("rolling-kernel-reboot.yaml", true));
    }

    #[test]
    fn service_restart_json() {
        insta::assert_snapshot!(rendered("service-restart.yaml", true));
    }
}
