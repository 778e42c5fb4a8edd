//! Step two of reading a playbook: checks across stages (names, `after`,
//! cycles, policy combinations) and, given an inventory, checks against its
//! hosts (empty selections, canary sizes, missing labels, overlaps).
//!
//! Owns those rules and their diagnostics. It must not order stages for
//! execution or size windows (that is `plan`), and it never touches a host.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::parse::StageSpans;
use super::template;
use super::{Playbook, Stage, Step};
use crate::diag::{Diagnostic, Span, suggest};
use crate::inventory::Inventory;
use crate::select::Selector;

/// How many example hosts a diagnostic names.
const EXAMPLES: usize = 3;

/// Checks that need no hosts. `spans` is parallel to `playbook.stages`.
pub fn check_structure(playbook: &Playbook, spans: &[StageSpans]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, stage) in playbook.stages.iter().enumerate() {
        if stage.name.is_empty() {
            continue;
        }
        match first.get(stage.name.as_str()) {
            Some(&j) => diags.push(Diagnostic::error(
                "duplicate-stage",
                spans[i].name.clone(),
                format!(
                    "duplicate stage name `{}` (first defined at line {})",
                    stage.name, spans[j].name.line
                ),
            )),
            None => {
                first.insert(&stage.name, i);
            }
        }
    }
    let names: Vec<&str> = playbook.stages.iter().map(|s| s.name.as_str()).collect();
    for (i, stage) in playbook.stages.iter().enumerate() {
        for (dep, span) in stage.after.iter().zip(&spans[i].after) {
            if !first.contains_key(dep.as_str()) {
                let d = Diagnostic::error(
                    "unknown-stage",
                    span.clone(),
                    format!("stage `{}` runs after unknown stage `{dep}`", stage.name),
                );
                diags.push(match suggest(dep, names.iter().copied()) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("stages are: {}", names.join(", "))),
                });
            }
        }
        check_policy(stage, &spans[i], &mut diags);
    }
    for cycle in cycles(playbook, &first) {
        // Name the cycle from its first stage in the file, in execution order:
        // `a -> b` reads "b runs after a".
        let start = *cycle.iter().min().expect("a cycle has stages");
        let at = cycle.iter().position(|&s| s == start).unwrap_or(0);
        let mut order: Vec<usize> = cycle[at..].iter().chain(&cycle[..at]).copied().collect();
        order.push(start);
        let path: Vec<&str> = order
            .iter()
            .map(|&s| playbook.stages[s].name.as_str())
            .collect();
        // The `after` entry of `start` that closes the loop.
        let closing = playbook.stages[order[order.len() - 2]].name.as_str();
        let span = playbook.stages[start]
            .after
            .iter()
            .position(|d| d == closing)
            .map_or_else(
                || spans[start].name.clone(),
                |k| spans[start].after[k].clone(),
            );
        diags.push(
            Diagnostic::error(
                "dependency-cycle",
                span,
                format!("dependency cycle: {}", path.join(" -> ")),
            )
            .with_help(
                "each stage runs after the one before it; remove one `after` to break the cycle",
            ),
        );
    }
    diags
}

fn check_policy(stage: &Stage, spans: &StageSpans, diags: &mut Vec<Diagnostic>) {
    if stage.rate_per.is_some() && stage.rate.is_none() {
        diags.push(Diagnostic::error(
            "rate-per-without-rate",
            spans.rate_per.clone().unwrap_or_else(|| spans.name.clone()),
            format!(
                "stage `{}` sets `rate_per` but no `rate` to apply per label value",
                stage.name
            ),
        ));
    }
    let restarts = stage
        .steps
        .iter()
        .any(|s| matches!(s, Step::RestartService { .. }));
    let health = stage.steps.iter().any(|s| matches!(s, Step::Health(_)));
    if restarts && !health {
        diags.push(Diagnostic::warning(
            "no-health-check",
            spans.name.clone(),
            format!(
                "stage `{}` restarts a service but has no `health` step: nothing proves it came back",
                stage.name
            ),
        ));
    }
}

/// Dependency cycles, each as stage indices in execution order (each stage
/// runs after the one before it, the first after the last). At least one per
/// strongly connected group of stages.
fn cycles(playbook: &Playbook, index: &HashMap<&str, usize>) -> Vec<Vec<usize>> {
    let deps: Vec<Vec<usize>> = playbook
        .stages
        .iter()
        .map(|s| {
            s.after
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    let mut found: Vec<Vec<usize>> = Vec::new();
    for root in 0..deps.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge to follow); `path` mirrors the stack.
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Active;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&next) = deps[node].get(*edge) {
                *edge += 1;
                match mark[next] {
                    Mark::New => {
                        mark[next] = Mark::Active;
                        stack.push((next, 0));
                    }
                    Mark::Active => {
                        let from = stack.iter().position(|&(n, _)| n == next).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].iter().map(|&(n, _)| n).collect();
                        let mut key = cycle.clone();
                        key.sort_unstable();
                        if !found.iter().any(|c| {
                            let mut k = c.clone();
                            k.sort_unstable();
                            k == key
                        }) {
                            found.push(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    // The DFS follows `after` edges (a stage to the stage it waits for);
    // reverse so the cycle reads in execution order.
    for c in &mut found {
        c.reverse();
    }
    found
}

/// Indices of the inventory's hosts that `select` (and `limit`) match, in inventory order.
pub fn select_hosts(
    select: &Selector,
    inventory: &Inventory,
    limit: Option<&Selector>,
) -> Vec<usize> {
    inventory
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| select.matches(h) && limit.is_none_or(|l| l.matches(h)))
        .map(|(i, _)| i)
        .collect()
}

/// Checks against hosts. `selections[i]` are the hosts stage `i` selects
/// (after `limit`); `spans`, when known, place diagnostics precisely
/// (otherwise they point at the stage). Errors: a stage selecting nothing, a
/// canary larger than its stage, labels that limits or placeholders need but
/// hosts lack. Warnings: hosts two stages select, hosts no stage selects, a
/// stage whose hosts all lie outside `limit` (it runs no host; a stage that
/// selects nothing in the whole inventory stays an error).
pub fn check_hosts(
    playbook: &Playbook,
    spans: Option<&[StageSpans]>,
    inventory: &Inventory,
    limit: Option<&Selector>,
    selections: &[Vec<usize>],
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let file: Arc<str> = Arc::from(playbook.file.as_str());
    let in_scope = inventory
        .hosts
        .iter()
        .filter(|h| limit.is_none_or(|l| l.matches(h)))
        .count();
    for (i, stage) in playbook.stages.iter().enumerate() {
        let sp = spans.and_then(|s| s.get(i));
        if sp.is_some_and(|s| !s.select_ok) {
            continue;
        }
        let at = |picked: Option<Span>| picked.unwrap_or_else(|| stage.span.clone());
        let hosts = &selections[i];
        if hosts.is_empty() {
            let at_select = at(sp.map(|s| s.select.clone()));
            let scope = match limit {
                Some(l) => {
                    let unlimited = select_hosts(&stage.select, inventory, None).len();
                    if unlimited > 0 {
                        // The operator narrowed the run (one rack of a cold
                        // start): this stage has nothing inside it.
                        diags.push(Diagnostic::warning(
                            "stage-outside-limit",
                            at_select,
                            format!(
                                "stage `{}` runs no host: none of the {unlimited} host{} `{}` selects is inside --limit `{l}`",
                                stage.name,
                                plural(unlimited),
                                stage.select
                            ),
                        ));
                        continue;
                    }
                    format!("none of the {in_scope} hosts left by --limit `{l}`")
                }
                None => format!("none of the {in_scope} hosts in the inventory"),
            };
            let mut d = Diagnostic::error(
                "empty-selection",
                at_select,
                format!(
                    "stage `{}` selects no host: `{}` matches {scope}",
                    stage.name, stage.select
                ),
            );
            if let Some(help) = empty_selection_help(&stage.select, inventory) {
                d = d.with_help(help);
            }
            diags.push(d);
            continue;
        }
        if stage.canary > hosts.len() {
            diags.push(Diagnostic::error(
                "canary-too-large",
                at(sp.and_then(|s| s.canary.clone())),
                format!(
                    "stage `{}` wants {} canaries but selects only {} host{}",
                    stage.name,
                    stage.canary,
                    hosts.len(),
                    plural(hosts.len())
                ),
            ));
        }
        if stage.canary > 0 && stage.canary == hosts.len() {
            diags.push(Diagnostic::warning(
                "all-canaries",
                at(sp.and_then(|s| s.canary.clone())),
                format!(
                    "every host of stage `{}` is a canary, so its {} host{} run one at a time",
                    stage.name,
                    hosts.len(),
                    plural(hosts.len())
                ),
            ));
        }
        if stage.max_failures.resolve(hosts.len(), false) >= hosts.len() {
            diags.push(Diagnostic::warning(
                "budget-allows-all",
                at(sp.and_then(|s| s.max_failures.clone())),
                format!(
                    "`max_failures` lets all {} host{} of stage `{}` fail without aborting it",
                    hosts.len(),
                    plural(hosts.len()),
                    stage.name
                ),
            ));
        }
        for (k, (key, _)) in stage.max_unavailable.iter().enumerate() {
            let span = at(sp.and_then(|s| s.max_unavailable.get(k).cloned()));
            missing_label(
                &mut diags,
                inventory,
                hosts,
                stage,
                key,
                span,
                "`max_unavailable` is per label value",
            );
        }
        if let Some(key) = &stage.rate_per {
            missing_label(
                &mut diags,
                inventory,
                hosts,
                stage,
                key,
                at(sp.and_then(|s| s.rate_per.clone())),
                "`rate_per` limits starts per label value",
            );
        }
        let mut seen: Vec<&str> = Vec::new();
        if let Some(sp) = sp {
            for (text, span) in &sp.templates {
                for key in template::label_keys(text) {
                    if !seen.contains(&key) {
                        seen.push(key);
                        missing_label(
                            &mut diags,
                            inventory,
                            hosts,
                            stage,
                            key,
                            span.clone(),
                            "a command or URL uses it as a placeholder",
                        );
                    }
                }
            }
        }
        if stage.steps.iter().any(|s| matches!(s, Step::PowerOn(_))) {
            let span = at(sp.and_then(|s| s.power_on.clone()));
            missing_label(
                &mut diags,
                inventory,
                hosts,
                stage,
                "bmc",
                span.clone(),
                "`power_on` reaches each host through its BMC",
            );
            let without_pdu = hosts
                .iter()
                .filter(|&&h| inventory.hosts[h].label("pdu").is_none())
                .count();
            if without_pdu > 0 {
                diags.push(Diagnostic::warning(
                    "missing-label",
                    span,
                    format!(
                        "{without_pdu} of {} hosts of stage `{}` have no `pdu` label, so their power-ons are paced only fleet-wide{}",
                        hosts.len(),
                        stage.name,
                        examples(inventory, hosts.iter().copied().filter(|&h| inventory.hosts[h].label("pdu").is_none()))
                    ),
                ));
            }
        }
    }
    // Coverage warnings follow from the selections; while a selection is wrong
    // they would only repeat the error in other words.
    if !crate::diag::has_errors(&diags) {
        overlaps(playbook, spans, inventory, selections, &mut diags);
        unselected(inventory, limit, selections, in_scope, &file, &mut diags);
    }
    diags
}

fn missing_label(
    diags: &mut Vec<Diagnostic>,
    inventory: &Inventory,
    hosts: &[usize],
    stage: &Stage,
    key: &str,
    span: Span,
    why: &str,
) {
    let lacking = || {
        hosts
            .iter()
            .copied()
            .filter(|&h| inventory.hosts[h].label(key).is_none())
    };
    let count = lacking().count();
    if count > 0 {
        diags.push(
            Diagnostic::error(
                "missing-label",
                span,
                format!(
                    "{count} of {} hosts selected by stage `{}` have no `{key}` label{}",
                    hosts.len(),
                    stage.name,
                    examples(inventory, lacking())
                ),
            )
            .with_help(format!(
                "{why}; give every selected host a `{key}` label or narrow `select`"
            )),
        );
    }
}

/// Why a selector matched nothing: the first term no host matches, with the
/// nearest value that exists.
fn empty_selection_help(select: &Selector, inventory: &Inventory) -> Option<String> {
    for term in &select.terms {
        if inventory.hosts.iter().any(|h| term.matches(h)) {
            continue;
        }
        if matches!(term.key.as_str(), "name" | "group") {
            return Some(format!("no host matches `{}`", term.key));
        }
        let values: std::collections::BTreeSet<&str> = inventory
            .hosts
            .iter()
            .filter_map(|h| h.label(&term.key))
            .collect();
        if values.is_empty() {
            return Some(format!("no host has a `{}` label", term.key));
        }
        let wanted = term.values.first().map(|p| p.as_str()).unwrap_or_default();
        return Some(match suggest(wanted, values.iter().copied()) {
            Some(s) => format!("no host has {}={wanted}; did you mean `{s}`?", term.key),
            None => format!(
                "no host has {}={wanted}; values in the inventory: {}",
                term.key,
                values
                    .iter()
                    .take(12)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Some("each term matches some host, but no host matches all of them".into())
}

fn overlaps(
    playbook: &Playbook,
    spans: Option<&[StageSpans]>,
    inventory: &Inventory,
    selections: &[Vec<usize>],
    diags: &mut Vec<Diagnostic>,
) {
    // Per host, the stages selecting it; then count hosts per pair of stages.
    let mut by_host: HashMap<usize, Vec<usize>> = HashMap::new();
    for (s, hosts) in selections.iter().enumerate() {
        for &h in hosts {
            by_host.entry(h).or_default().push(s);
        }
    }
    let mut pairs: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (&h, stages) in &by_host {
        for (x, &a) in stages.iter().enumerate() {
            for &b in &stages[x + 1..] {
                pairs.entry((a, b)).or_default().push(h);
            }
        }
    }
    for ((a, b), mut hosts) in pairs {
        hosts.sort_unstable();
        let sa = &playbook.stages[a];
        let sb = &playbook.stages[b];
        let span = spans
            .and_then(|s| s.get(b))
            .map_or_else(|| sb.span.clone(), |s| s.select.clone());
        diags.push(Diagnostic::warning(
            "overlapping-selection",
            span,
            format!(
                "{} host{} selected by both stage `{}` and stage `{}` will run both stages{}",
                hosts.len(),
                plural(hosts.len()),
                sa.name,
                sb.name,
                examples(inventory, hosts.iter().copied())
            ),
        ));
    }
}

fn unselected(
    inventory: &Inventory,
    limit: Option<&Selector>,
    selections: &[Vec<usize>],
    in_scope: usize,
    file: &Arc<str>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut selected = vec![false; inventory.hosts.len()];
    for &h in selections.iter().flatten() {
        selected[h] = true;
    }
    let lone = || {
        inventory
            .hosts
            .iter()
            .enumerate()
            .filter(|(i, h)| !selected[*i] && limit.is_none_or(|l| l.matches(h)))
            .map(|(i, _)| i)
    };
    let count = lone().count();
    if count > 0 {
        diags.push(Diagnostic::warning(
            "unselected-hosts",
            Span::file(file.clone()),
            format!(
                "{count} of {in_scope} hosts {} selected by no stage{}",
                if count == 1 { "is" } else { "are" },
                examples(inventory, lone())
            ),
        ));
    }
}

/// ` (e.g. a, b, c)` naming up to three hosts.
fn examples(inventory: &Inventory, hosts: impl Iterator<Item = usize>) -> String {
    let names: Vec<&str> = hosts
        .take(EXAMPLES)
        .map(|h| inventory.hosts[h].name.as_str())
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (e.g. {})", names.join(", "))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The `host` a diagnostic example names; here so tests can build hosts.
#[cfg(test)]
pub(crate) fn test_host(name: &str, labels: &[(&str, &str)]) -> crate::inventory::Host {
    crate::inventory::Host {
        name: name.into(),
        address: name.into(),
        port: 22,
        user: None,
        jump: None,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        identity_file: None,
        escalation: None,
        groups: vec![],
        span: Span::file(Arc::from("inv.yaml")),
    }
}

/// A small fleet for tests: pangyo has two racks of three storage hosts, two
/// db hosts and two app hosts (no rack label); ansan has two db hosts.
#[cfg(test)]
pub(crate) fn test_inventory() -> Inventory {
    let mut hosts = Vec::new();
    for r in 1..=2 {
        for n in 1..=3 {
            let rack = format!("pg-r{r:02}");
            hosts.push(test_host(
                &format!("pg-r{r:02}-st{n}"),
                &[
                    ("dc", "pangyo"),
                    ("rack", &rack),
                    ("role", "storage"),
                    ("pdu", &format!("{rack}-a")),
                    ("bmc", "10.9.0.1"),
                ],
            ));
        }
    }
    for n in 1..=2 {
        hosts.push(test_host(
            &format!("pg-db{n}"),
            &[("dc", "pangyo"), ("rack", "pg-r03"), ("role", "db")],
        ));
    }
    for n in 1..=2 {
        hosts.push(test_host(
            &format!("pg-app{n}"),
            &[("dc", "pangyo"), ("role", "app")],
        ));
    }
    for n in 1..=2 {
        hosts.push(test_host(
            &format!("as-db{n}"),
            &[("dc", "ansan"), ("rack", "as-r01"), ("role", "db")],
        ));
    }
    Inventory {
        hosts,
        ..Inventory::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Sources, render_text};

    /// Loads `text` against the test inventory and renders every diagnostic.
    fn check(text: &str) -> String {
        let mut sources = Sources::new();
        let inv = test_inventory();
        let diags = match crate::playbook::load_str("p.yaml", text, Some(&inv), &mut sources) {
            Ok((_, warnings)) => warnings,
            Err(errors) => errors,
        };
        render_text(&sources, &diags)
    }

    const STORAGE: &str = "version: 1\nstages:\n  - name: storage\n    select: { role: storage }\n    steps: [ reboot ]\n";

    #[test]
    fn a_selector_matching_nothing_is_an_error_with_the_nearest_value() {
        let text = format!(
            "{STORAGE}  - name: db\n    select: {{ role: dbs }}\n    steps: [ reboot ]\n  - name: app\n    select: {{ role: app }}\n    steps: [ reboot ]\n"
        );
        let out = check(&text);
        assert!(out.starts_with(
            "p.yaml:7:5: error: stage `db` selects no host: `role=dbs` matches none of the 12 hosts in the inventory\n  |\n7 |     select: { role: dbs }\n  |     ^^^^^^\n  = help: no host has role=dbs; did you mean `db`?\n"
        ), "{out}");
    }

    #[test]
    fn canary_larger_than_the_stage() {
        let text = "version: 1\nstages:\n  - name: db\n    select: { role: db, dc: ansan }\n    canary: 3\n    steps: [ reboot ]\n";
        let out = check(text);
        assert!(
            out.starts_with(
                "p.yaml:5:13: error: stage `db` wants 3 canaries but selects only 2 hosts\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn max_unavailable_label_missing_on_some_hosts() {
        let text = "version: 1\nstages:\n  - name: pg\n    select: { dc: pangyo }\n    max_unavailable: { rack: 1 }\n    steps: [ reboot ]\n";
        assert_eq!(
            check(text),
            "p.yaml:5:24: error: 2 of 10 hosts selected by stage `pg` have no `rack` label (e.g. pg-app1, pg-app2)\n  |\n5 |     max_unavailable: { rack: 1 }\n  |                        ^^^^\n  = help: `max_unavailable` is per label value; give every selected host a `rack` label or narrow `select`\n"
        );
    }

    #[test]
    fn overlapping_and_unselected_hosts_are_warnings() {
        let text = format!(
            "{STORAGE}  - name: pangyo-db\n    select: {{ dc: pangyo, role: [db, storage] }}\n    steps: [ reboot ]\n"
        );
        assert_eq!(
            check(&text),
            "p.yaml: warning: 4 of 12 hosts are selected by no stage (e.g. pg-app1, pg-app2, as-db1)\n\
             p.yaml:7:5: warning: 6 hosts selected by both stage `storage` and stage `pangyo-db` will run both stages (e.g. pg-r01-st1, pg-r01-st2, pg-r01-st3)\n  |\n7 |     select: { dc: pangyo, role: [db, storage] }\n  |     ^^^^^^\n"
        );
    }

    #[test]
    fn power_on_needs_bmc_labels_and_placeholders_need_their_labels() {
        let text = "version: 1\nstages:\n  - name: all\n    select: { dc: '*' }\n    steps:\n      - power_on\n      - run: \"echo {label.pdu}\"\n";
        let out = check(text);
        assert!(out.contains("p.yaml:6:9: error: 6 of 12 hosts selected by stage `all` have no `bmc` label (e.g. pg-db1, pg-db2, pg-app1)\n"), "{out}");
        assert!(
            out.contains(
                "p.yaml:7:14: error: 6 of 12 hosts selected by stage `all` have no `pdu` label"
            ),
            "{out}"
        );
        assert!(out.contains("p.yaml:6:9: warning: 6 of 12 hosts of stage `all` have no `pdu` label, so their power-ons are paced only fleet-wide"), "{out}");
    }

    #[test]
    fn canaries_and_budgets_that_cover_the_whole_stage_are_warnings() {
        let text = "version: 1\nstages:\n  - name: db\n    select: { role: db, dc: ansan }\n    canary: 2\n    max_failures: 100%\n    steps: [ reboot ]\n";
        let out = check(text);
        assert!(out.contains("p.yaml:5:13: warning: every host of stage `db` is a canary, so its 2 hosts run one at a time\n"), "{out}");
        assert!(out.contains("p.yaml:6:19: warning: `max_failures` lets all 2 hosts of stage `db` fail without aborting it\n"), "{out}");
    }

    fn messages(text: &str) -> Vec<String> {
        let mut sources = Sources::new();
        match crate::playbook::load_str("p.yaml", text, None, &mut sources) {
            Ok((_, d)) | Err(d) => d.into_iter().map(|d| d.message).collect(),
        }
    }

    fn stages(list: &[(&str, &str)]) -> String {
        let mut text = String::from("version: 1\nstages:\n");
        for (name, after) in list {
            text.push_str(&format!(
                "  - {{ name: {name}, after: [{after}], select: {{ role: x }}, steps: [reboot] }}\n"
            ));
        }
        text
    }

    #[test]
    fn every_cycle_is_named_whole_from_its_first_stage() {
        let text = stages(&[
            ("x", ""),
            ("b", "a"),
            ("a", "c"),
            ("c", "b, x"),
            ("self", "self"),
            ("p", "q"),
            ("q", "p"),
        ]);
        assert_eq!(
            messages(&text),
            [
                "dependency cycle: b -> c -> a -> b",
                "dependency cycle: self -> self",
                "dependency cycle: p -> q -> p",
            ]
        );
    }

    #[test]
    fn a_dag_with_shared_dependencies_is_not_a_cycle() {
        let text = stages(&[("a", ""), ("b", "a"), ("c", "a"), ("d", "b, c, a")]);
        assert_eq!(messages(&text), Vec::<String>::new());
    }

    #[test]
    fn structural_errors_skip_host_checks() {
        // An unknown `after` would make host warnings noise: only the error is reported.
        let text = format!("{STORAGE}    after: [stroage]\n");
        assert_eq!(
            check(&text),
            "p.yaml:6:13: error: stage `storage` runs after unknown stage `stroage`\n  |\n6 |     after: [stroage]\n  |             ^^^^^^^\n  = help: did you mean `storage`?\n"
        );
    }
}
