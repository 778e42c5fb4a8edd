//! Step two of reading a playbook: checks across stages (names, `after`,
//! cycles, policy combinations) and, given an inventory, checks against its
//! hosts (empty selections, canary sizes, missing labels, overlaps).
//!
//! Owns those rules and their diagnostics. It must not order stages for
//! execution or size windows (that is `plan`), and it never touches a host.

use std::collections::HashMap;
use std::sync::Arc;

use super::parse::StageSpans;
use super::{Playbook, Stage, Step};
use crate::diag::{Diagnostic, Span, suggest};
use crate::inventory::Inventory;
use crate::select::Selector;

/// How many example hosts a diagnostic names.
const EXAMPLES: usize = 3;

/// The most stages a playbook may have. A cold start of a whole datacenter
/// needs tens; the cap keeps `validate` and `plan` small on any input.
pub const MAX_STAGES: usize = 1_000;

/// Checks that need no hosts. `spans` is parallel to `playbook.stages`.
pub fn check_structure(playbook: &Playbook, spans: &[StageSpans]) -> Vec<Diagnostic> {
    if let Some(over) = playbook.stages.get(MAX_STAGES) {
        // Alone: checks between stages would only add noise to this one.
        return vec![
            Diagnostic::error(
                "too-many-stages",
                over.span.clone(),
                format!(
                    "the playbook has {} stages, over the limit of {MAX_STAGES}",
                    playbook.stages.len()
                ),
            )
            .with_help("select hosts by labels in fewer stages, or split the playbook"),
        ];
    }
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
    // From `defaults`, remediate applies where it can; on a stage, say so
    // when it cannot apply at all.
    if let Some(span) = &spans.remediate
        && stage.remediate.is_some()
        && !stage.steps.iter().any(|s| {
            matches!(
                s,
                Step::WaitSsh { .. } | Step::Reboot { .. } | Step::PowerOn(_)
            )
        })
    {
        diags.push(
            Diagnostic::warning(
                "remediate-unused",
                span.clone(),
                format!(
                    "stage `{}` sets `remediate` but has no `power_on`, `wait_ssh` or `reboot` step, so no host of it is ever power-cycled",
                    stage.name
                ),
            )
            .with_help("remediation acts on a host that does not come back within a `power_on`, `wait_ssh` or `reboot` wait"),
        );
    }
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
    let mut selected = vec![false; inventory.hosts.len()];
    selections
        .iter()
        .flatten()
        .for_each(|&h| selected[h] = true);
    // Hosts the inventory could not give an SSH connection, if a stage runs them.
    diags.extend(
        inventory.refusals(
            inventory
                .hosts
                .iter()
                .zip(&selected)
                .filter_map(|(h, &s)| s.then_some(h)),
        ),
    );
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
            for (template, span) in &sp.templates {
                for key in template.label_keys() {
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
        if stage.remediate.is_some() {
            let span = at(sp.and_then(|s| s.remediate_value.clone()));
            missing_label(
                &mut diags,
                inventory,
                hosts,
                stage,
                "bmc",
                span,
                "`remediate` power-cycles a host that does not come back through its BMC",
            );
            if !stage.steps.iter().any(|s| matches!(s, Step::PowerOn(_))) {
                bad_bmc_labels(&mut diags, inventory, hosts);
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
            bad_bmc_labels(&mut diags, inventory, hosts);
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

/// Overlapping stage pairs named one by one; beyond them, one warning counts
/// the hosts involved, so the report stays short whatever the playbook.
const OVERLAP_PAIRS_SHOWN: usize = 10;

/// Warns about hosts two stages select, pair by pair in stage order, for the
/// first [`OVERLAP_PAIRS_SHOWN`] pairs. Time and memory stay linear in hosts
/// × stages: pairs are found from the first stage on and the search stops
/// once one pair more than shown is known, and a stage costs its hosts times
/// the later stages that share them (each of which is a pair found).
fn overlaps(
    playbook: &Playbook,
    spans: Option<&[StageSpans]>,
    inventory: &Inventory,
    selections: &[Vec<usize>],
    diags: &mut Vec<Diagnostic>,
) {
    // Per host, the stages selecting it, in stage order.
    let mut stages_of: Vec<Vec<usize>> = vec![Vec::new(); inventory.hosts.len()];
    for (s, hosts) in selections.iter().enumerate() {
        for &h in hosts {
            stages_of[h].push(s);
        }
    }
    let shared = stages_of.iter().filter(|st| st.len() > 1).count();
    if shared == 0 {
        return;
    }
    struct Pair {
        a: usize,
        b: usize,
        hosts: usize,
        /// The first few hosts by inventory order, for the message.
        examples: Vec<usize>,
    }
    let mut pairs: Vec<Pair> = Vec::new();
    for (a, hosts) in selections.iter().enumerate() {
        if pairs.len() > OVERLAP_PAIRS_SHOWN {
            break;
        }
        let mut with: HashMap<usize, (usize, Vec<usize>)> = HashMap::new();
        for &h in hosts {
            let st = &stages_of[h];
            let later = &st[st.partition_point(|&s| s <= a)..];
            for &b in later {
                let (n, ex) = with.entry(b).or_default();
                *n += 1;
                let at = ex.partition_point(|&e| e < h);
                if at < EXAMPLES {
                    ex.insert(at, h);
                    ex.truncate(EXAMPLES);
                }
            }
        }
        let mut found: Vec<Pair> = with
            .into_iter()
            .map(|(b, (hosts, examples))| Pair {
                a,
                b,
                hosts,
                examples,
            })
            .collect();
        found.sort_unstable_by_key(|p| p.b);
        pairs.extend(found);
    }
    let select_of = |b: usize| {
        spans
            .and_then(|s| s.get(b))
            .map_or_else(|| playbook.stages[b].span.clone(), |s| s.select.clone())
    };
    for p in pairs.iter().take(OVERLAP_PAIRS_SHOWN) {
        let (a, b) = (&playbook.stages[p.a], &playbook.stages[p.b]);
        diags.push(Diagnostic::warning(
            "overlapping-selection",
            select_of(p.b),
            format!(
                "{} host{} selected by both stage `{}` and stage `{}` {}{}",
                p.hosts,
                plural(p.hosts),
                a.name,
                b.name,
                shared_order(playbook, p.a, p.b, p.hosts == 1),
                examples(inventory, p.examples.iter().copied())
            ),
        ));
    }
    if let Some(next) = pairs.get(OVERLAP_PAIRS_SHOWN) {
        diags.push(Diagnostic::warning(
            "overlapping-selection",
            select_of(next.b),
            format!(
                "more stages overlap than the {OVERLAP_PAIRS_SHOWN} pairs shown, from stage `{}` and stage `{}` on: in all, {shared} host{} {} selected by more than one stage",
                playbook.stages[next.a].name,
                playbook.stages[next.b].name,
                plural(shared),
                if shared == 1 { "is" } else { "are" },
            ),
        ));
    }
}

/// What a host selected by stages `a` and `b` (`a` first in the file)
/// sees, in the words of the scheduling rules (docs/design.md): a stage
/// that comes after the other (through `after`, gates included) runs it
/// second; otherwise whichever stage reaches it first. Either way one stage
/// at a time, and a host that fails in one is skipped by the other unless
/// that one says `retry_failed_hosts: true`.
fn shared_order(playbook: &Playbook, a: usize, b: usize, one: bool) -> String {
    let (sa, sb) = (&playbook.stages[a], &playbook.stages[b]);
    let run = if one { "runs" } else { "run" };
    let retries = |s: &Stage, other: &str| {
        if s.retry_failed_hosts {
            format!(
                "`{}` runs again one that failed in `{other}` (retry_failed_hosts)",
                s.name
            )
        } else {
            format!("`{}` skips one that failed in `{other}`", s.name)
        }
    };
    let (first, second) = if comes_after(playbook, b, a) {
        (sa, sb)
    } else if comes_after(playbook, a, b) {
        (sb, sa)
    } else {
        return format!(
            "{run} one stage at a time, in whichever order reaches {} first (neither stage comes after the other); {}, {}",
            if one { "it" } else { "them" },
            retries(sb, &sa.name),
            retries(sa, &sb.name)
        );
    };
    format!(
        "{run} `{}` first, then `{}` (it comes after `{}`), one stage at a time; {}",
        first.name,
        second.name,
        first.name,
        retries(second, &first.name)
    )
}

/// Whether stage `later` waits, through its `after` chain, for stage `earlier`.
fn comes_after(playbook: &Playbook, later: usize, earlier: usize) -> bool {
    let index: HashMap<&str, usize> = playbook
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut seen = vec![false; playbook.stages.len()];
    let mut todo = vec![later];
    // Each stage is visited once: bounded by the number of stages.
    while let Some(i) = todo.pop() {
        for d in &playbook.stages[i].after {
            let Some(&j) = index.get(d.as_str()) else {
                continue;
            };
            if j == earlier {
                return true;
            }
            if !seen[j] {
                seen[j] = true;
                todo.push(j);
            }
        }
    }
    false
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

/// A `bmc` label that is no BMC address (a broken `ipmi://ADDR[:PORT]`, a
/// URL of another scheme), as the inventory read it ([`Host::bmc`]), at the
/// host's place; the first ten, then a count.
///
/// [`Host::bmc`]: crate::inventory::Host::bmc
fn bad_bmc_labels(diags: &mut Vec<Diagnostic>, inventory: &Inventory, hosts: &[usize]) {
    const SHOWN: usize = 10;
    let bad: Vec<(&crate::inventory::Host, String)> = hosts
        .iter()
        .filter_map(|&h| {
            let host = &inventory.hosts[h];
            let bad = host.bmc.as_ref()?.as_ref().err()?;
            Some((host, bad.0.clone()))
        })
        .collect();
    for (host, message) in bad.iter().take(SHOWN) {
        diags.push(Diagnostic::error(
            "bad-bmc",
            host.span.clone(),
            format!("host {}: {message}", host.name),
        ));
    }
    if bad.len() > SHOWN {
        diags.push(Diagnostic::error(
            "bad-bmc",
            None,
            format!(
                "{} more hosts have a `bmc` label that is no BMC address",
                bad.len() - SHOWN
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
        bmc: None,
        groups: vec![],
        span: Span::file(Arc::from("inv.yaml")),
    }
    .read_bmc_label()
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
    fn shared_hosts_are_told_the_order_they_see_their_stages_in() {
        // `backup` comes after `storage` through `db` (gate included); `audit` after nothing.
        let text = format!(
            "{STORAGE}  - name: db\n    after: {{ storage: 50% }}\n    select: {{ role: db }}\n    steps: [ reboot ]\n  - name: backup\n    after: db\n    select: {{ role: storage }}\n    retry_failed_hosts: true\n    steps: [ reboot ]\n  - name: audit\n    select: {{ role: storage }}\n    steps: [ reboot ]\n"
        );
        let out = check(&text);
        assert!(
            out.contains("warning: 6 hosts selected by both stage `storage` and stage `backup` run `storage` first, then `backup` (it comes after `storage`), one stage at a time; `backup` runs again one that failed in `storage` (retry_failed_hosts) (e.g. pg-r01-st1, pg-r01-st2, pg-r01-st3)"),
            "{out}"
        );
        assert!(
            out.contains("warning: 6 hosts selected by both stage `storage` and stage `audit` run one stage at a time, in whichever order reaches them first (neither stage comes after the other); `audit` skips one that failed in `storage`, `storage` skips one that failed in `audit` (e.g."),
            "{out}"
        );
    }

    #[test]
    fn retry_failed_hosts_is_a_boolean() {
        let out = check(&format!("{STORAGE}    retry_failed_hosts: sometimes\n"));
        assert!(
            out.starts_with("p.yaml:6:25: error: expected `true` or `false`, found a string"),
            "{out}"
        );
        let out = check(&format!("{STORAGE}    retry_failed_hosts: true\n"));
        assert!(!out.contains("error"), "{out}");
    }

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
             p.yaml:7:5: warning: 6 hosts selected by both stage `storage` and stage `pangyo-db` run one stage at a time, in whichever order reaches them first (neither stage comes after the other); `pangyo-db` skips one that failed in `storage`, `storage` skips one that failed in `pangyo-db` (e.g. pg-r01-st1, pg-r01-st2, pg-r01-st3)\n  |\n7 |     select: { dc: pangyo, role: [db, storage] }\n  |     ^^^^^^\n"
        );
    }

    #[test]
    fn remediate_names_its_problems_where_they_were_written() {
        // Storage hosts have a `bmc` label, app hosts do not.
        let text = "version: 1\nstages:\n  - name: pg\n    select: { dc: pangyo }\n    remediate: { power_cycle: 1 }\n    steps: [ reboot ]\n";
        let out = check(text);
        assert!(
            out.starts_with("p.yaml:5:16: error: 4 of 10 hosts selected by stage `pg` have no `bmc` label (e.g. pg-db1, pg-db2, pg-app1)\n"),
            "{out}"
        );
        assert!(
            out.contains("= help: `remediate` power-cycles a host that does not come back through its BMC; give every selected host a `bmc` label or narrow `select`"),
            "{out}"
        );
        let bad = |value: &str| {
            check(&format!(
                "version: 1\nstages:\n  - name: st\n    select: {{ role: storage }}\n    remediate: {value}\n    steps: [ reboot ]\n"
            ))
        };
        assert!(
            bad("{ power_cycle: 0 }")
                .starts_with("p.yaml:5:31: error: `power_cycle` must be at least 1\n"),
            "{}",
            bad("{ power_cycle: 0 }")
        );
        assert!(
            bad("{ power_cycle: 6 }")
                .starts_with("p.yaml:5:31: error: `power_cycle` is at most 5\n")
        );
        assert!(
            bad("{ power_cycle: two }")
                .starts_with("p.yaml:5:31: error: expected a whole number of power cycles")
        );
        let out = bad("{ power_cycles: 1 }");
        assert!(
            out.contains("p.yaml:5:18: error: unknown key `power_cycles`"),
            "{out}"
        );
        assert!(out.contains("did you mean `power_cycle`?"), "{out}");
        let ok = |out: String| !out.contains("error") && !out.contains("remediate");
        assert!(
            ok(bad("{ power_cycle: 2 }")),
            "{}",
            bad("{ power_cycle: 2 }")
        );
        // Nothing to act on: a warning at the key.
        let out = check(
            "version: 1\nstages:\n  - name: st\n    select: { role: storage }\n    remediate: { power_cycle: 1 }\n    steps: [ { run: uptime } ]\n",
        );
        assert!(
            out.contains("p.yaml:5:5: warning: stage `st` sets `remediate` but has no `power_on`, `wait_ssh` or `reboot` step, so no host of it is ever power-cycled\n"),
            "{out}"
        );
        // From `defaults`, only where it applies; parsed into the model.
        let text = "version: 1\ndefaults: { remediate: { power_cycle: 2 } }\nstages:\n  - name: st\n    select: { role: storage }\n    steps: [ { run: uptime } ]\n";
        assert!(ok(check(text)), "{}", check(text));
        let mut sources = Sources::new();
        let (book, _) = crate::playbook::load_str("p.yaml", text, None, &mut sources).unwrap();
        assert_eq!(
            book.stages[0].remediate,
            Some(crate::playbook::Remediate::new(2))
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

    /// `n` stages all selecting the storage hosts.
    fn same_selector(n: usize) -> String {
        let mut text = String::from("version: 1\nstages:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  - {{ name: s{i}, select: {{ role: storage }}, steps: [reboot] }}\n"
            ));
        }
        text
    }

    #[test]
    fn stages_over_the_limit_are_refused_at_the_first_one_over() {
        let out = check(&same_selector(MAX_STAGES + 5));
        assert_eq!(
            out,
            "p.yaml:1003:13: error: the playbook has 1005 stages, over the limit of 1000\n     |\n1003 |   - { name: s1000, select: { role: storage }, steps: [reboot] }\n     |             ^^^^^\n  = help: select hosts by labels in fewer stages, or split the playbook\n"
        );
    }

    #[test]
    fn overlap_warnings_of_many_stages_name_the_first_pairs_and_count_the_hosts() {
        let out = check(&same_selector(MAX_STAGES));
        let overlaps: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("warning:") && l.contains("stage `"))
            .collect();
        assert_eq!(overlaps.len(), OVERLAP_PAIRS_SHOWN + 1, "{out}");
        assert!(overlaps[0].ends_with("warning: 6 hosts selected by both stage `s0` and stage `s1` run one stage at a time, in whichever order reaches them first (neither stage comes after the other); `s1` skips one that failed in `s0`, `s0` skips one that failed in `s1` (e.g. pg-r01-st1, pg-r01-st2, pg-r01-st3)"), "{out}");
        assert!(
            overlaps[9].contains("stage `s0` and stage `s10` run"),
            "{out}"
        );
        assert!(overlaps[10].ends_with("warning: more stages overlap than the 10 pairs shown, from stage `s0` and stage `s11` on: in all, 6 hosts are selected by more than one stage"), "{out}");
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

    #[test]
    fn a_readiness_gate_outside_0_to_100_percent_is_refused_where_written() {
        let gate = |g: &str| {
            format!(
                "{STORAGE}  - name: db\n    select: {{ role: db }}\n    after: {{ storage: {g} }}\n    steps: [ reboot ]\n"
            )
        };
        let fine =
            "p.yaml: warning: 2 of 12 hosts are selected by no stage (e.g. pg-app1, pg-app2)\n";
        assert_eq!(check(&gate("95%")), fine);
        assert_eq!(check(&gate("100%")), fine);
        assert_eq!(
            check(&gate("0%")),
            "p.yaml:8:23: error: invalid amount `0%`: a percentage must be above 0% and at most 100%\n  |\n8 |     after: { storage: 0% }\n  |                       ^^\n"
        );
        assert_eq!(
            check(&gate("120%")),
            "p.yaml:8:23: error: invalid amount `120%`: a percentage must be above 0% and at most 100%\n  |\n8 |     after: { storage: 120% }\n  |                       ^^^^\n"
        );
        assert!(
            check(&gate("95")).starts_with(
                "p.yaml:8:23: error: invalid readiness gate `95`: expected a percentage of the stage's hosts done, above 0% and at most 100%, e.g. `95%`\n"
            ),
            "{}",
            check(&gate("95"))
        );
        // The map's keys are stage names like the list's entries.
        assert!(
            check(&gate("95%").replace("storage: 95%", "stroage: 95%"))
                .starts_with("p.yaml:8:14: error: stage `db` runs after unknown stage `stroage`"),
            "{}",
            check(&gate("95%").replace("storage: 95%", "stroage: 95%"))
        );
    }

    #[test]
    fn a_bad_list_of_growing_waves_is_refused_where_written() {
        let waves = |w: &str| format!("{STORAGE}    parallel: {w}\n");
        let fine = "p.yaml: warning: 6 of 12 hosts are selected by no stage (e.g. pg-db1, pg-db2, pg-app1)\n";
        assert_eq!(check(&waves("[1, 1%, 5%, 10%]")), fine);
        assert_eq!(check(&waves("[2]")), fine);
        assert_eq!(
            check(&waves("[]")),
            "p.yaml:6:15: error: `parallel` as a list needs at least one size, e.g. `[1, 1%, 5%, 10%]`\n  |\n6 |     parallel: []\n  |               ^\n"
        );
        assert_eq!(
            check(&waves("[1, 0, 5%]")),
            "p.yaml:6:19: error: a wave of `parallel` must be at least 1 host\n  |\n6 |     parallel: [1, 0, 5%]\n  |                   ^\n"
        );
        assert_eq!(
            check(&waves("[10%, 5%]")),
            "p.yaml:6:21: error: waves of `parallel` must grow: `5%` comes after `10%`\n  |\n6 |     parallel: [10%, 5%]\n  |                     ^^\n  = help: each wave must finish cleanly before the window grows to the next size\n"
        );
        assert!(
            check(&waves("[1, lots]")).starts_with("p.yaml:6:19: error: invalid amount `lots`"),
            "{}",
            check(&waves("[1, lots]"))
        );
        assert!(
            check(&waves("[1, [2]]"))
                .starts_with("p.yaml:6:19: error: expected a count or a percentage"),
            "{}",
            check(&waves("[1, [2]]"))
        );
    }
}
