//! The execution plan: an inventory and a playbook resolved into stages of
//! concrete hosts with absolute limits. Pure and deterministic: no I/O, no
//! clock, no randomness, so `plan` output is diffable and the engine can be
//! tested on hand-built plans.
//!
//! Owns dependency ordering, host selection per stage, canary choice and the
//! translation of percentages into counts. It must not touch hosts or print.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::diag::{self, Diagnostic};
use crate::inventory::Inventory;
use crate::playbook::{Amount, OnUnreachable, Playbook, Rate, Stage, Step, validate};
use crate::select::Selector;

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    /// Stages in a dependency order (every stage after all of its `after`).
    pub stages: Vec<StagePlan>,
    /// Groups of stage indices that may run at the same time, in order.
    pub waves: Vec<Vec<usize>>,
    /// Hosts no stage selects, hosts two stages select, unmeetable limits.
    pub warnings: Vec<Diagnostic>,
    /// Estimated wall time of the whole plan.
    pub estimate: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub name: String,
    /// Indices into `plan.stages` of the stages this one waits for.
    pub after: Vec<usize>,
    /// Readiness gates: (index into `plan.stages`, one of `after`; percent
    /// below 100). This stage may start once that share of that stage's
    /// hosts is done while that stage is inside its budget; `after` entries
    /// without a gate wait for their stage to finish.
    pub gates: Vec<(usize, f64)>,
    /// Indices into `Inventory::hosts`; the first `canaries` of them are the canaries.
    pub hosts: Vec<usize>,
    pub canaries: usize,
    /// Hosts in flight at once (after canaries), at least 1; with growing
    /// waves, the size that holds after the last wave.
    pub window: usize,
    /// Growing waves: sizes (each at least 1) of the waves run one after
    /// the other before `window` holds; a wave with a failure stops the
    /// growth at its size. Empty: a fixed window.
    pub ramp: Vec<usize>,
    /// Failures tolerated; one more aborts the stage.
    pub failure_budget: usize,
    pub rate: Option<Rate>,
    pub rate_per: Option<String>,
    /// Label key and the most hosts in flight per value of it.
    pub max_unavailable: Vec<(String, usize)>,
    pub on_unreachable: OnUnreachable,
    /// `retry_failed_hosts: true`: run hosts that failed (or were set aside
    /// as unreachable) in another stage of the run; by default this stage
    /// skips them.
    pub retry_failed_hosts: bool,
    /// BMC power cycles for a host that does not come back (`None`: none).
    pub remediate: Option<crate::playbook::Remediate>,
    /// The stage's `become` (a host's own escalation takes precedence).
    pub escalation: Option<crate::inventory::Become>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub steps: Vec<Step>,
    /// Estimated duration of one host, and of the whole stage.
    pub host_estimate: Duration,
    pub estimate: Duration,
}

impl StagePlan {
    /// Whether the stage reaches its hosts through their BMCs: it powers
    /// them on, or `remediate` may power-cycle them. The one definition of
    /// "hosts reached through a BMC" (credentials, pins, client, preflight).
    pub fn reaches_bmcs(&self) -> bool {
        self.remediate.is_some() || self.steps.iter().any(|s| matches!(s, Step::PowerOn(_)))
    }

    /// The readiness gate this stage has on stage `dependency` (percent), if any.
    pub fn gate(&self, dependency: usize) -> Option<f64> {
        self.gates
            .iter()
            .find(|(d, _)| *d == dependency)
            .map(|(_, p)| *p)
    }

    /// Hosts of this stage that must be done to open a `percent` gate on it
    /// (rounded up, so 95 % of 10 hosts is 10).
    pub fn gate_hosts(&self, percent: f64) -> usize {
        Amount::Percent(percent).resolve(self.hosts.len(), true)
    }

    /// Estimated time from this stage's start until `k` of its hosts are
    /// done: canaries one at a time, then the rest of the stage's estimate
    /// in proportion to the rounds of its window that `k` needs (one round
    /// of a window holding every host ends with the stage).
    pub fn time_to_done(&self, k: usize) -> Duration {
        let n = self.hosts.len();
        if k >= n {
            return self.estimate;
        }
        let canaries = self.canaries.min(n);
        if k <= canaries {
            return self.host_estimate * k as u32;
        }
        let canary_phase = self.host_estimate * canaries as u32;
        let phase = self.estimate.saturating_sub(canary_phase);
        let rounds = window_rounds(n - canaries, &self.ramp, self.window).max(1);
        let needed = window_rounds(k - canaries, &self.ramp, self.window);
        canary_phase + phase.mul_f64(needed as f64 / rounds as f64)
    }
}

impl Plan {
    /// Estimated (start, finish) of each stage from the start of the run: a
    /// stage starts when the last stage it waits for finishes, or for a
    /// readiness gate when that stage has the gate's share of its hosts done
    /// (critical path; global limits shared by stages running at once are
    /// not modelled).
    pub fn schedule(&self) -> Vec<(Duration, Duration)> {
        let mut times: Vec<(Duration, Duration)> = Vec::with_capacity(self.stages.len());
        for s in &self.stages {
            // `after` points to earlier stages only (dependency order).
            let start = s
                .after
                .iter()
                .filter_map(|&d| {
                    let (start, finish) = *times.get(d)?;
                    Some(match s.gate(d) {
                        Some(p) => {
                            let dep = &self.stages[d];
                            start + dep.time_to_done(dep.gate_hosts(p))
                        }
                        None => finish,
                    })
                })
                .max()
                .unwrap_or_default();
            times.push((start, start + s.estimate));
        }
        times
    }

    /// Whether any stage reaches hosts through their BMCs
    /// ([`StagePlan::reaches_bmcs`]): BMC credentials and TLS settings matter.
    pub fn reaches_bmcs(&self) -> bool {
        self.stages.iter().any(StagePlan::reaches_bmcs)
    }

    /// Whether any stage powers hosts on (a drill then starts them off).
    pub fn powers_on(&self) -> bool {
        self.stages
            .iter()
            .flat_map(|s| s.steps.iter())
            .any(|s| matches!(s, Step::PowerOn(_)))
    }

    /// Hosts some stage reaches through their BMCs
    /// ([`StagePlan::reaches_bmcs`]), once each, in inventory order.
    pub fn bmc_hosts(&self) -> Vec<usize> {
        let mut hosts: Vec<usize> = self
            .stages
            .iter()
            .filter(|s| s.reaches_bmcs())
            .flat_map(|s| s.hosts.iter().copied())
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts
    }

    /// How many distinct hosts the stages select (a host in two stages counts once).
    pub fn distinct_hosts(&self) -> usize {
        let mut all: Vec<usize> = self
            .stages
            .iter()
            .flat_map(|s| s.hosts.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    }

    /// The wave each stage belongs to.
    pub fn wave_of(&self, stage: usize) -> usize {
        self.waves
            .iter()
            .position(|w| w.contains(&stage))
            .unwrap_or_default()
    }
}

/// Resolves `playbook` against `inventory` (narrowed by `limit`). Pure.
/// An empty selection is an error, never "all hosts"; a stage that only
/// `limit` empties stays in the plan with no host (a warning says so), and
/// the stages after it do not wait for anything.
///
/// Hosts of a stage keep inventory order, except that the canaries come first
/// and are taken from as many racks (label `rack`) as possible, so one bad
/// rack cannot pass or fail the canary phase alone.
pub fn build(
    playbook: &Playbook,
    inventory: &Inventory,
    limit: Option<&Selector>,
) -> Result<Plan, Vec<Diagnostic>> {
    let order = dependency_order(playbook)?;
    let hosts_in_scope = inventory
        .hosts
        .iter()
        .filter(|h| limit.is_none_or(|l| l.matches(h)))
        .count();
    if hosts_in_scope == 0 {
        let why = match limit {
            Some(l) => format!(
                "--limit `{l}` matches none of the {} hosts",
                inventory.hosts.len()
            ),
            None => "the inventory has no hosts".to_owned(),
        };
        return Err(vec![Diagnostic::error(
            "empty-selection",
            None,
            format!("nothing to plan: {why}"),
        )]);
    }
    let selections: Vec<Vec<usize>> = playbook
        .stages
        .iter()
        .map(|s| validate::select_hosts(&s.select, inventory, limit))
        .collect();
    let mut diags = validate::check_hosts(playbook, None, inventory, limit, &selections);
    if diag::has_errors(&diags) {
        diag::sort(&mut diags);
        return Err(diags);
    }
    if let Some(l) = limit
        && selections.iter().all(Vec::is_empty)
    {
        return Err(vec![Diagnostic::error(
            "empty-selection",
            None,
            format!(
                "nothing to plan: --limit `{l}` keeps {hosts_in_scope} host{} but no stage selects any of them",
                if hosts_in_scope == 1 { "" } else { "s" }
            ),
        )]);
    }

    // Position of each original stage index in the dependency order.
    let mut position = vec![0; playbook.stages.len()];
    for (pos, &(i, _)) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut stages: Vec<StagePlan> = Vec::with_capacity(order.len());
    for &(i, _) in &order {
        let stage = &playbook.stages[i];
        let after: Vec<usize> = stage
            .after
            .iter()
            .filter_map(|d| playbook.stages.iter().position(|s| &s.name == d))
            .map(|j| position[j])
            .collect();
        let gates: Vec<(usize, f64)> = stage
            .gates
            .iter()
            .filter_map(|(d, p)| {
                let j = playbook.stages.iter().position(|s| &s.name == d)?;
                Some((position[j], *p))
            })
            .collect();
        let mut sp = stage_plan(stage, inventory, &selections[i], after, &mut diags);
        sp.gates = gates;
        stages.push(sp);
    }
    let waves_count = order.iter().map(|&(_, w)| w + 1).max().unwrap_or(0);
    let mut waves = vec![Vec::new(); waves_count];
    for (k, &(_, w)) in order.iter().enumerate() {
        waves[w].push(k);
    }
    diag::sort(&mut diags);
    let mut plan = Plan {
        name: playbook.name.clone(),
        stages,
        waves,
        warnings: diags,
        estimate: Duration::ZERO,
    };
    plan.estimate = plan
        .schedule()
        .iter()
        .map(|t| t.1)
        .max()
        .unwrap_or_default();
    Ok(plan)
}

/// Stages in dependency order with their wave (the longest chain of `after`
/// before them); file order breaks ties, so the order is deterministic.
fn dependency_order(playbook: &Playbook) -> Result<Vec<(usize, usize)>, Vec<Diagnostic>> {
    let n = playbook.stages.len();
    let index: HashMap<&str, usize> = playbook
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(n);
    for s in &playbook.stages {
        let mut d = Vec::new();
        for name in &s.after {
            match index.get(name.as_str()) {
                Some(&j) => d.push(j),
                None => {
                    return Err(vec![Diagnostic::error(
                        "unknown-stage",
                        s.span.clone(),
                        format!("stage `{}` runs after unknown stage `{name}`", s.name),
                    )]);
                }
            }
        }
        deps.push(d);
    }
    let mut wave: Vec<Option<usize>> = vec![None; n];
    // At most n rounds: each round settles at least one stage, or there is a cycle.
    for _ in 0..n {
        let mut progressed = false;
        for i in 0..n {
            if wave[i].is_some() {
                continue;
            }
            let settled: Option<Vec<usize>> = deps[i].iter().map(|&d| wave[d]).collect();
            if let Some(levels) = settled {
                wave[i] = Some(levels.iter().map(|l| l + 1).max().unwrap_or(0));
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    let mut order = Vec::with_capacity(n);
    for (i, w) in wave.iter().enumerate() {
        match w {
            Some(w) => order.push((i, *w)),
            None => {
                return Err(vec![Diagnostic::error(
                    "dependency-cycle",
                    playbook.stages[i].span.clone(),
                    format!(
                        "stage `{}` is part of a dependency cycle",
                        playbook.stages[i].name
                    ),
                )]);
            }
        }
    }
    order.sort_by_key(|&(i, w)| (w, i));
    Ok(order)
}

fn stage_plan(
    stage: &Stage,
    inventory: &Inventory,
    selected: &[usize],
    after: Vec<usize>,
    diags: &mut Vec<Diagnostic>,
) -> StagePlan {
    let n = selected.len();
    let canaries = stage.canary.min(n);
    let hosts = canaries_first(inventory, selected, canaries);
    let window = stage.parallel.resolve(n, true).clamp(1, n.max(1));
    let ramp: Vec<usize> = stage
        .ramp
        .iter()
        .map(|a| a.resolve(n, true).clamp(1, n.max(1)))
        .collect();
    let failure_budget = stage.max_failures.resolve(n, false).min(n);
    let max_unavailable: Vec<(String, usize)> = stage
        .max_unavailable
        .iter()
        .map(|(key, amount)| {
            let limit = match amount {
                Amount::Count(c) => *c,
                // A percentage of the largest group: exact when groups are even
                // (racks of one size), and never below one host.
                Amount::Percent(_) => {
                    let largest = group_sizes(inventory, &hosts, key)
                        .into_values()
                        .max()
                        .unwrap_or(0);
                    amount.resolve(largest, true)
                }
            }
            .max(1);
            (key.clone(), limit)
        })
        .collect();
    let host_estimate = stage
        .estimate
        .unwrap_or_else(|| host_estimate(&stage.steps));
    let (estimate, concurrency) = stage_estimate(
        stage,
        inventory,
        &hosts,
        canaries,
        (&ramp, window),
        &max_unavailable,
        host_estimate,
    );
    if concurrency < window {
        diags.push(Diagnostic::warning(
            "limit-unreachable",
            stage.span.clone(),
            format!(
                "stage `{}` can never have {window} hosts in flight: its max_unavailable allows at most {concurrency} at once",
                stage.name
            ),
        ));
    }
    StagePlan {
        name: stage.name.clone(),
        after,
        gates: Vec::new(),
        hosts,
        canaries,
        window,
        ramp,
        failure_budget,
        rate: stage.rate,
        rate_per: stage.rate_per.clone(),
        max_unavailable,
        on_unreachable: stage.on_unreachable,
        retry_failed_hosts: stage.retry_failed_hosts,
        remediate: stage.remediate.map(|r| r.paced_by(&stage.steps)),
        escalation: stage.escalation.clone(),
        connect_timeout: stage.connect_timeout,
        command_timeout: stage.command_timeout,
        steps: stage.steps.clone(),
        host_estimate,
        estimate,
    }
}

/// `selected` reordered so that the first `canaries` hosts come from as many
/// racks as possible (round robin over racks in order of first appearance);
/// the rest keep inventory order.
fn canaries_first(inventory: &Inventory, selected: &[usize], canaries: usize) -> Vec<usize> {
    if canaries == 0 {
        return selected.to_vec();
    }
    let mut racks: Vec<(Option<&str>, std::collections::VecDeque<usize>)> = Vec::new();
    let mut rack_index: HashMap<Option<&str>, usize> = HashMap::new();
    for &h in selected {
        let rack = inventory.hosts[h].label("rack");
        let k = *rack_index.entry(rack).or_insert_with(|| {
            racks.push((rack, std::collections::VecDeque::new()));
            racks.len() - 1
        });
        racks[k].1.push_back(h);
    }
    let mut picked = Vec::with_capacity(canaries);
    'outer: while picked.len() < canaries {
        let before = picked.len();
        for (_, q) in racks.iter_mut() {
            if let Some(h) = q.pop_front() {
                picked.push(h);
                if picked.len() == canaries {
                    break 'outer;
                }
            }
        }
        if picked.len() == before {
            break;
        }
    }
    let chosen: std::collections::HashSet<usize> = picked.iter().copied().collect();
    // Canaries in inventory order, so the output reads naturally.
    picked.sort_unstable();
    picked.extend(selected.iter().copied().filter(|h| !chosen.contains(h)));
    picked
}

fn group_sizes<'a>(
    inventory: &'a Inventory,
    hosts: &[usize],
    key: &str,
) -> BTreeMap<&'a str, usize> {
    let mut sizes = BTreeMap::new();
    for &h in hosts {
        if let Some(v) = inventory.hosts[h].label(key) {
            *sizes.entry(v).or_insert(0) += 1;
        }
    }
    sizes
}

/// Rounds of one host's duration that `count` hosts take through the
/// growing waves `ramp` (one round each, while hosts last) and then a
/// rolling `window`.
pub fn window_rounds(count: usize, ramp: &[usize], window: usize) -> usize {
    let mut left = count;
    let mut rounds = 0;
    for &size in ramp {
        if left == 0 {
            return rounds;
        }
        left = left.saturating_sub(size.max(1));
        rounds += 1;
    }
    rounds + left.div_ceil(window.max(1))
}

/// One host's worst case: the sum of its steps' timeouts.
pub fn host_estimate(steps: &[Step]) -> Duration {
    steps
        .iter()
        .map(|s| match s {
            Step::WaitSsh { timeout }
            | Step::Run { timeout, .. }
            | Step::Reboot { timeout, .. }
            | Step::RestartService { timeout, .. }
            | Step::Local { timeout, .. } => *timeout,
            Step::PowerOn(p) => p.timeout,
            Step::Health(h) => h.timeout,
        })
        .sum()
}

/// A stage's duration: the canaries one at a time, then the rest bounded by
/// whichever limit is tightest (window or growing waves, max_unavailable per label value,
/// start rate, power-on pacing per PDU). Returns the estimate and the most
/// hosts that can be in flight at once.
fn stage_estimate(
    stage: &Stage,
    inventory: &Inventory,
    hosts: &[usize],
    canaries: usize,
    (ramp, window): (&[usize], usize),
    max_unavailable: &[(String, usize)],
    per_host: Duration,
) -> (Duration, usize) {
    let rest = &hosts[canaries.min(hosts.len())..];
    let canary_phase = per_host * canaries as u32;
    if rest.is_empty() {
        return (canary_phase, window);
    }
    let rounds = |count: usize, at_once: usize| count.div_ceil(at_once.max(1)) as u32;
    let mut concurrency = window.min(rest.len());
    let mut phase = per_host * window_rounds(rest.len(), ramp, window) as u32;
    for (key, limit) in max_unavailable {
        let sizes = group_sizes(inventory, rest, key);
        concurrency = concurrency.min(sizes.len() * limit);
        let largest = sizes.values().copied().max().unwrap_or(0);
        phase = phase.max(per_host * rounds(largest, *limit));
    }
    if let Some(rate) = stage.rate {
        // Starts per key (or the whole stage) at `rate`, the last one then runs a full host.
        let per_key = match &stage.rate_per {
            Some(key) => group_sizes(inventory, rest, key)
                .into_values()
                .max()
                .unwrap_or(0),
            None => rest.len(),
        };
        let starts = Duration::from_secs_f64(per_key.saturating_sub(1) as f64 / rate.per_second());
        phase = phase.max(starts + per_host);
    }
    for step in &stage.steps {
        if let Step::PowerOn(p) = step {
            let on_busiest_pdu = group_sizes(inventory, rest, "pdu")
                .into_values()
                .max()
                .unwrap_or(0);
            let pdu = p.pdu_interval * on_busiest_pdu.saturating_sub(1) as u32;
            let fleet =
                Duration::from_secs_f64(rest.len().saturating_sub(1) as f64 / p.rate.per_second());
            phase = phase.max(pdu.max(fleet) + per_host);
        }
    }
    (canary_phase + phase, concurrency)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Sources;
    use crate::playbook::validate::test_inventory;

    fn playbook(text: &str) -> Playbook {
        let mut sources = Sources::new();
        match crate::playbook::load_str("p.yaml", text, None, &mut sources) {
            Ok((p, _)) => p,
            Err(e) => panic!("{}", crate::diag::render_text(&sources, &e)),
        }
    }

    fn names<'a>(inv: &'a Inventory, hosts: &[usize]) -> Vec<&'a str> {
        hosts.iter().map(|&h| inv.hosts[h].name.as_str()).collect()
    }

    const TWO_STAGES: &str = "\
version: 1
stages:
  - name: db
    after: storage
    select: { role: db }
    parallel: 2
    rate: 1/m
    estimate: 2m
    max_failures: 50%
    steps: [ reboot ]
  - name: storage
    select: { role: storage }
    parallel: 50%
    canary: 2
    max_unavailable: { rack: 1 }
    max_failures: 20%
    steps: [ { reboot: { timeout: 10m } } ]
";

    #[test]
    fn stages_come_in_dependency_order_with_absolute_limits() {
        let inv = test_inventory();
        let plan = build(&playbook(TWO_STAGES), &inv, None).unwrap();
        let storage = &plan.stages[0];
        assert_eq!(storage.name, "storage");
        assert_eq!(plan.stages[1].after, [0]);
        assert_eq!(plan.waves, [vec![0], vec![1]]);
        assert_eq!((storage.window, storage.failure_budget), (3, 1));
        assert_eq!(storage.max_unavailable, [("rack".to_string(), 1)]);
        // One canary per rack, then the rest in inventory order.
        assert_eq!(
            names(&inv, &storage.hosts),
            [
                "pg-r01-st1",
                "pg-r02-st1",
                "pg-r01-st2",
                "pg-r01-st3",
                "pg-r02-st2",
                "pg-r02-st3"
            ]
        );
        assert_eq!(storage.canaries, 2);
        let db = &plan.stages[1];
        assert_eq!((db.hosts.len(), db.window, db.failure_budget), (4, 2, 2));
    }

    #[test]
    fn a_gated_stage_is_estimated_to_start_when_its_share_is_done() {
        let inv = test_inventory();
        let text = TWO_STAGES.replace("after: storage", "after: { storage: 50% }");
        let plan = build(&playbook(&text), &inv, None).unwrap();
        assert_eq!(plan.stages[1].after, [0]);
        assert_eq!(plan.stages[1].gates, [(0, 50.0)]);
        // 3 of storage's 6 hosts: the two canaries (20m), then the first of
        // its two rounds (10m).
        assert_eq!(plan.stages[0].gate_hosts(50.0), 3);
        assert_eq!(
            plan.schedule(),
            [
                (Duration::ZERO, Duration::from_secs(2400)),
                (Duration::from_secs(1800), Duration::from_secs(2100))
            ]
        );
        // The critical path is now storage's own end.
        assert_eq!(plan.estimate, Duration::from_secs(2400));
        // 100 % is the list form: the whole stage.
        let text = TWO_STAGES.replace("after: storage", "after: { storage: 100% }");
        let full = build(&playbook(&text), &inv, None).unwrap();
        assert!(full.stages[1].gates.is_empty());
        assert_eq!(full.schedule()[1].0, Duration::from_secs(2400));
    }

    #[test]
    fn estimates_follow_the_tightest_limit_and_the_critical_path() {
        let inv = test_inventory();
        let plan = build(&playbook(TWO_STAGES), &inv, None).unwrap();
        let storage = &plan.stages[0];
        assert_eq!(storage.host_estimate, Duration::from_secs(600));
        // Two canaries one at a time (20m), then 4 hosts over 2 racks at one per
        // rack: 2 rounds (20m), tighter than the window of 3.
        assert_eq!(storage.estimate, Duration::from_secs(2400));
        let db = &plan.stages[1];
        // 4 starts at 1/m: the last starts after 3m and runs 2m.
        assert_eq!(db.estimate, Duration::from_secs(300));
        assert_eq!(
            plan.schedule(),
            [
                (Duration::ZERO, Duration::from_secs(2400)),
                (Duration::from_secs(2400), Duration::from_secs(2700))
            ]
        );
        assert_eq!(plan.estimate, Duration::from_secs(2700));
        let codes: Vec<&str> = plan.warnings.iter().map(|d| d.code).collect();
        // Window 3 cannot be reached with one host per rack over two racks; the app hosts go unselected.
        assert_eq!(codes, ["unselected-hosts", "limit-unreachable"]);
    }

    #[test]
    fn independent_stages_share_a_wave() {
        let text = "version: 1\nstages:\n\
          - { name: a, select: { role: storage }, steps: [reboot] }\n\
          - { name: b, select: { role: db }, after: [a, c], steps: [reboot] }\n\
          - { name: c, select: { role: app }, steps: [reboot] }\n";
        let plan = build(&playbook(text), &test_inventory(), None).unwrap();
        let order: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["a", "c", "b"]);
        assert_eq!(plan.waves, [vec![0, 1], vec![2]]);
        assert_eq!(plan.stages[2].after, [0, 1]);
        // a: 6 hosts one at a time at 15m; c: 2 hosts; b starts when the longer one ends.
        assert_eq!(plan.schedule()[2].0, Duration::from_secs(6 * 900));
    }

    #[test]
    fn an_empty_selection_is_refused_never_all_hosts() {
        let inv = test_inventory();
        let p = playbook(TWO_STAGES);
        let typo = playbook(&TWO_STAGES.replace("role: storage", "role: storag"));
        let err = build(&typo, &inv, None).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(
            err[0].message,
            "stage `storage` selects no host: `role=storag` matches none of the 12 hosts in the inventory"
        );
        let limit = Selector::parse("dc=ansan").unwrap();
        let err = build(&typo, &inv, Some(&limit)).unwrap_err();
        assert!(
            err[0]
                .message
                .contains("matches none of the 2 hosts left by --limit `dc=ansan`"),
            "{err:?}"
        );
        let nothing = Selector::parse("dc=mars").unwrap();
        let err = build(&p, &inv, Some(&nothing)).unwrap_err();
        assert_eq!(
            err[0].message,
            "nothing to plan: --limit `dc=mars` matches none of the 12 hosts"
        );
    }

    #[test]
    fn a_stage_only_the_limit_empties_runs_no_host_and_holds_nothing_up() {
        let inv = test_inventory();
        let limit = Selector::parse("dc=ansan").unwrap();
        let plan = build(&playbook(TWO_STAGES), &inv, Some(&limit)).unwrap();
        let storage = &plan.stages[0];
        assert_eq!((storage.name.as_str(), storage.hosts.len()), ("storage", 0));
        assert_eq!(storage.canaries, 0);
        assert!(
            !plan.stages[1].hosts.is_empty(),
            "db inside the limit still runs"
        );
        let warning = plan
            .warnings
            .iter()
            .find(|d| d.code == "stage-outside-limit")
            .expect("a warning names the skipped stage");
        assert!(
            warning
                .message
                .starts_with("stage `storage` runs no host: none of the"),
            "{}",
            warning.message
        );
        // A limit that keeps hosts no stage selects leaves nothing to do.
        let apps = Selector::parse("role=app").unwrap();
        let err = build(&playbook(TWO_STAGES), &inv, Some(&apps)).unwrap_err();
        assert!(
            err[0]
                .message
                .starts_with("nothing to plan: --limit `role=app` keeps"),
            "{}",
            err[0].message
        );
    }

    #[test]
    fn limit_narrows_every_stage() {
        let inv = test_inventory();
        let text = "version: 1\nstages:\n  - { name: db, select: { role: db }, parallel: 100%, steps: [reboot] }\n";
        let limit = Selector::parse("dc=pangyo").unwrap();
        let plan = build(&playbook(text), &inv, Some(&limit)).unwrap();
        assert_eq!(names(&inv, &plan.stages[0].hosts), ["pg-db1", "pg-db2"]);
        assert_eq!(plan.stages[0].window, 2);
    }

    #[test]
    fn power_on_pacing_bounds_the_estimate() {
        let text = "version: 1\nstages:\n  - name: on\n    select: { role: storage }\n    parallel: 100%\n    steps:\n      - power_on: { timeout: 1m, pdu_interval: 30s }\n";
        let plan = build(&playbook(text), &test_inventory(), None).unwrap();
        // Three hosts per PDU, 30s apart: the last starts after 60s and may take 1m.
        assert_eq!(plan.stages[0].estimate, Duration::from_secs(120));
    }
}

#[cfg(test)]
pub(crate) mod examples {
    //! The example playbooks planned over a hand-built fleet shaped like
    //! inventories/kakao-like.yaml (its labels: dc, rack, pdu, bmc, role).
    use super::*;
    use crate::diag::Sources;
    use crate::playbook::validate::test_host;

    /// Pangyo: `per_rack` hosts of each role in `racks` racks per role, two
    /// PDUs per rack; ansan: two racks of app hosts.
    pub(crate) fn fleet(racks: usize, per_rack: usize) -> Inventory {
        let roles = [
            "network", "oob", "storage", "dns", "ntp", "auth", "config", "cache", "db", "mq",
            "app", "batch",
        ];
        let mut hosts = Vec::new();
        for (dc, prefix, roles) in [
            ("pangyo", "pg", &roles[..]),
            ("ansan", "as", &roles[10..11]),
        ] {
            for role in roles {
                for r in 1..=racks {
                    let rack = format!("{prefix}-{role}-r{r:03}");
                    for n in 1..=per_rack {
                        let pdu = format!("{rack}-p{}", n % 2);
                        hosts.push(test_host(
                            &format!("{rack}-{n:02}"),
                            &[
                                ("dc", dc),
                                ("role", role),
                                ("rack", &rack),
                                ("pdu", &pdu),
                                ("bmc", "10.250.0.1"),
                            ],
                        ));
                    }
                }
            }
        }
        Inventory {
            hosts,
            ..Inventory::default()
        }
    }

    fn load(name: &str, inv: &Inventory) -> (Playbook, Vec<Diagnostic>) {
        let path = format!("{}/playbooks/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut sources = Sources::new();
        match crate::playbook::load(&path, Some(inv), &mut sources) {
            Ok(found) => found,
            Err(e) => panic!("{}", crate::diag::render_text(&sources, &e)),
        }
    }

    fn wave_names(plan: &Plan) -> Vec<Vec<&str>> {
        plan.waves
            .iter()
            .map(|w| w.iter().map(|&k| plan.stages[k].name.as_str()).collect())
            .collect()
    }

    #[test]
    fn cold_start_tiers_come_in_dependency_order() {
        let inv = fleet(4, 10);
        let (playbook, warnings) = load("dc-cold-start.yaml", &inv);
        let codes: Vec<&str> = warnings.iter().map(|d| d.code).collect();
        // Only ansan's app hosts are left out: the playbook is about pangyo.
        assert_eq!(codes, ["unselected-hosts"]);
        assert!(
            warnings[0]
                .message
                .starts_with("40 of 520 hosts are selected by no stage"),
            "{}",
            warnings[0].message
        );
        let plan = build(&playbook, &inv, None).unwrap();
        assert_eq!(
            wave_names(&plan),
            [
                vec!["network", "oob"],
                vec!["storage"],
                vec!["dns", "ntp"],
                vec!["auth"],
                vec!["config"],
                vec!["cache", "db"],
                vec!["mq"],
                vec!["app"],
                vec!["batch"],
            ]
        );
        let db = plan.stages.iter().find(|s| s.name == "db").unwrap();
        // Two canaries from two different racks.
        let racks: Vec<&str> = db.hosts[..db.canaries]
            .iter()
            .map(|&h| inv.hosts[h].label("rack").unwrap_or_default())
            .collect();
        assert_eq!(racks, ["pg-db-r001", "pg-db-r002"]);
        assert_eq!((db.window, db.failure_budget), (10, 0));
        assert_eq!(db.max_unavailable, [("rack".to_string(), 10)]);
    }

    #[test]
    fn rolling_reboot_and_service_restart_plan_cleanly() {
        let inv = fleet(3, 8);
        for name in ["rolling-kernel-reboot.yaml", "service-restart.yaml"] {
            let (playbook, warnings) = load(name, &inv);
            let plan = build(&playbook, &inv, None).unwrap();
            assert!(
                plan.stages
                    .iter()
                    .all(|s| s.max_unavailable == [("rack".to_string(), 1)]),
                "{name}"
            );
            assert!(!warnings.iter().any(Diagnostic::is_error));
        }
        let (playbook, _) = load("rolling-kernel-reboot.yaml", &inv);
        let plan = build(&playbook, &inv, None).unwrap();
        assert_eq!(
            wave_names(&plan),
            [
                vec!["infra"],
                vec!["storage", "db", "cache-mq"],
                vec!["app"],
                vec!["batch"]
            ]
        );
    }
}
