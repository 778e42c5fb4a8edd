//! Mapping a real inventory and playbook onto a simulated fleet for
//! `rekindle drill`: which hosts to simulate (a stratified, seeded sample),
//! and the rehearsal playbook the engine runs against them (time-based
//! policies compressed by `--speed`, absolute counts shrunk with the sample,
//! health checks pointed at what the simulator answers, bastion-side
//! commands made harmless).
//!
//! Pure: no I/O, no clock. It reads inventory, playbook and plan models but
//! must not import the engine (the simulator never does).
//!
//! What a rehearsal changes, exactly (also printed by `drill`):
//! - divided by the speed: `reboot`, `wait_ssh`, `health` and `power_on`
//!   timeouts, health `interval`, power_on `pdu_interval`/`reprobe`/`jitter`
//!   (and the same pacing of `remediate`'s power cycles),
//!   and the stage `connect_timeout` (never below [`MIN_CONNECT_TIMEOUT`]);
//! - multiplied by speed × the stage's sample fraction: stage `rate`,
//!   power_on `rate` and `remediate`'s (global `--rate`: speed × the whole
//!   sample fraction);
//! - multiplied by the stage's sample fraction (rounded up, at least 1):
//!   `parallel` and `max_failures` given as counts (a `parallel`
//!   percentage already follows the sample; a `max_failures` percentage is
//!   resolved on the full stage first, so a budget of 1 % of 6,400 hosts
//!   stays above zero in a sample of 32, which gets a fault all the same); a small stage keeps relatively more hosts than the
//!   whole (every stratum keeps one), so its own fraction is the right one;
//! - unchanged: `command_timeout`, `run`/`local`/`restart_service` timeouts
//!   (simulated commands take no time), `canary`, `max_unavailable` (the
//!   sample keeps whole groups of the label it counts by, [`sample_units`],
//!   so the limit holds per group as in full; a `rate_per` on such a label
//!   is compressed by the speed only);
//! - `tcp: PORT` checks probe the simulator's HTTP port (open while the host
//!   is up); `http:` URLs go to `http://{address}:HTTP_PORT/PATH` expecting 200
//!   (the simulator's health endpoint: 503 while unhealthy);
//! - `ssh:` checks and `run:` commands the simulator cannot answer become
//!   `systemctl is-system-running` (health follows the injected faults) and
//!   `true`; `local:` steps become `true` (a drill must never drain a real
//!   load balancer or open a real ticket); a reboot command it does not know
//!   becomes `systemctl reboot`;
//! - `--fail` faults are placed per stage ([`stage_faults`]), where the full
//!   stage's last faulty hosts are expected, not at random across the sample.
//!
//! The prediction replays what it can of a stage at its full size with the
//! times the simulated hosts took: that is [`super::replay`]'s.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{FaultKind, SimHost, mix};
use super::replay::Replay;
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::playbook::template::Quote;
use crate::playbook::{Amount, Check, Playbook, Rate, Step, Template};

/// Handshakes on a loaded 2-core machine can take a second or two; a
/// compressed connect timeout below this would fail healthy hosts.
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// No compressed timeout or interval goes below this.
const MIN_SCALED: Duration = Duration::from_millis(100);

/// How to turn a playbook into its rehearsal.
#[derive(Debug, Clone, PartialEq)]
pub struct Rehearsal {
    /// Time compression: simulated time runs this many times faster.
    pub speed: f64,
    /// Fraction of the selected hosts that are simulated, in (0, 1].
    pub sample: f64,
    /// Per stage name, the fraction of its hosts that are simulated (small
    /// strata keep one host, so a small stage is sampled more densely than
    /// the whole); stages not listed use `sample`.
    pub stage_sample: BTreeMap<String, f64>,
    /// The simulator's HTTP port (health endpoint, and stand-in for tcp checks).
    pub http_port: u16,
    /// Per stage name, how many hosts the full stage has: a percentage
    /// `max_failures` is resolved on it, then shrunk like a count, so a
    /// stage whose full budget tolerates a failure tolerates one here too
    /// (the sample gets at least one fault where the full stage expects one).
    pub stage_hosts: BTreeMap<String, usize>,
    /// Labels whose groups the sample keeps whole ([`Sample::whole`]): a
    /// `rate_per` on one of them keeps its per-group rate (times the speed).
    pub whole: Vec<String>,
}

/// The hosts a plan touches, as inventory indices in inventory order,
/// sampled to about `fraction` of them ([`sample_units`]).
pub fn sample_hosts(plan: &Plan, inventory: &Inventory, fraction: f64, seed: u64) -> Vec<usize> {
    sample_units(plan, inventory, fraction, seed).0
}

/// A label whose groups the sample keeps whole: a stage's `max_unavailable`
/// counts hosts per value of it, so a sample that kept a tenth of each
/// group would let ten times as many of the group's hosts go at once
/// relative to its size (a group keeps whole, or not at all).
#[derive(Debug, Clone, PartialEq)]
pub struct WholeGroups {
    pub key: String,
    /// Groups (label values) kept, and how many the plan's hosts form.
    pub kept: usize,
    pub groups: usize,
}

/// The sampling rule. Hosts a stage limits with `max_unavailable` are
/// sampled by group: each such host belongs to the group of its value of
/// the first `max_unavailable` key (in plan order) that names a label it
/// has, and groups are kept whole, `round(fraction × groups)` and at least
/// one per stratum (the key and the set of stages the group's hosts are in).
/// Every other host is sampled alone, in strata of (the set of stages that
/// select it, `dc`, `role`): each keeps `round(fraction × size)` hosts and
/// at least one, so every stage and every (dc, role) pair stays represented.
/// The choice inside a stratum is a seeded hash of the host's (or the
/// group's) name: the same seed picks the same hosts.
pub fn sample_units(
    plan: &Plan,
    inventory: &Inventory,
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<WholeGroups>) {
    let mut stages_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (s, stage) in plan.stages.iter().enumerate() {
        for &h in &stage.hosts {
            stages_of.entry(h).or_default().push(s);
        }
    }
    if fraction >= 1.0 {
        return (stages_of.into_keys().collect(), Vec::new());
    }
    // Per host, the key whose group it is sampled with, if any.
    let mut key_of: BTreeMap<usize, &str> = BTreeMap::new();
    for stage in &plan.stages {
        for &h in &stage.hosts {
            let Some(host) = inventory.hosts.get(h) else {
                continue;
            };
            if key_of.contains_key(&h) {
                continue;
            }
            if let Some((key, _)) = stage
                .max_unavailable
                .iter()
                .find(|(key, _)| host.label(key).is_some())
            {
                key_of.insert(h, key.as_str());
            }
        }
    }
    type Stratum<'a> = (Vec<usize>, Option<&'a str>, Option<&'a str>);
    let mut strata: BTreeMap<Stratum<'_>, Vec<usize>> = BTreeMap::new();
    // Groups by (key, value), then in strata by (key, stages of their hosts).
    // Per (key, value): the group's hosts, and the stages they are in.
    type Group = (Vec<usize>, Vec<usize>);
    let mut groups: BTreeMap<(&str, &str), Group> = BTreeMap::new();
    for (h, stages) in stages_of {
        let Some(host) = inventory.hosts.get(h) else {
            continue;
        };
        match key_of.get(&h).and_then(|k| Some((*k, host.label(k)?))) {
            Some(group) => {
                let (members, in_stages) = groups.entry(group).or_default();
                members.push(h);
                in_stages.extend(stages);
            }
            None => strata
                .entry((stages, host.label("dc"), host.label("role")))
                .or_default()
                .push(h),
        }
    }
    let keep = |len: usize| ((len as f64 * fraction).round() as usize).clamp(1, len);
    let mut chosen = Vec::new();
    for mut members in strata.into_values() {
        members.sort_by_key(|&h| {
            let name = inventory.hosts.get(h).map_or("", |x| x.name.as_str());
            (mix(seed ^ fnv1a(name.as_bytes())), h)
        });
        let kept = keep(members.len());
        chosen.extend(members.into_iter().take(kept));
    }
    type GroupStratum<'a> = (&'a str, Vec<usize>);
    let mut group_strata: BTreeMap<GroupStratum<'_>, Vec<(&str, Vec<usize>)>> = BTreeMap::new();
    for ((key, value), (members, mut in_stages)) in groups {
        in_stages.sort_unstable();
        in_stages.dedup();
        group_strata
            .entry((key, in_stages))
            .or_default()
            .push((value, members));
    }
    let mut whole: Vec<WholeGroups> = Vec::new();
    for ((key, _), mut members) in group_strata {
        members.sort_by_key(|(value, _)| {
            let name = format!("{key}={value}");
            (mix(seed ^ fnv1a(name.as_bytes())), *value)
        });
        let kept = keep(members.len());
        let entry = match whole.iter_mut().find(|w| w.key == key) {
            Some(w) => w,
            None => {
                whole.push(WholeGroups {
                    key: key.to_owned(),
                    kept: 0,
                    groups: 0,
                });
                whole.last_mut().expect("just pushed")
            }
        };
        entry.kept += kept;
        entry.groups += members.len();
        for (_, hosts) in members.into_iter().take(kept) {
            chosen.extend(hosts);
        }
    }
    chosen.sort_unstable();
    (chosen, whole)
}

/// The hosts a drill simulates, and what share of the plan they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Inventory indices, in inventory order ([`sample_hosts`]).
    pub chosen: Vec<usize>,
    /// Distinct hosts the plan selects.
    pub selected: usize,
    /// `chosen` over `selected`: the whole sample's real fraction.
    pub fraction: f64,
    /// Per stage name, the fraction of its hosts that are simulated.
    pub stage_sample: BTreeMap<String, f64>,
    /// Labels whose groups the sample keeps whole ([`sample_units`]).
    pub whole: Vec<WholeGroups>,
}

impl Sample {
    /// About `fraction` of the plan's hosts ([`sample_units`]), with the
    /// fractions the sample really kept, whole and per stage.
    pub fn of(plan: &Plan, inventory: &Inventory, fraction: f64, seed: u64) -> Sample {
        let (chosen, whole) = sample_units(plan, inventory, fraction, seed);
        let selected = plan.distinct_hosts();
        let simulated: std::collections::HashSet<usize> = chosen.iter().copied().collect();
        let stage_sample = plan
            .stages
            .iter()
            .map(|st| {
                let kept = st.hosts.iter().filter(|h| simulated.contains(h)).count();
                (st.name.clone(), kept as f64 / st.hosts.len().max(1) as f64)
            })
            .collect();
        Sample {
            fraction: chosen.len() as f64 / selected.max(1) as f64,
            chosen,
            selected,
            stage_sample,
            whole,
        }
    }

    /// Whether the sample keeps `key`'s groups whole.
    pub fn keeps_whole(&self, key: &str) -> bool {
        self.fraction >= 1.0 || self.whole.iter().any(|w| w.key == key)
    }
}

/// What a rehearsal of `plan` on `sample` cannot model of the plan's
/// limits, one sentence each: a `max_unavailable` whose groups the sample
/// kept only part of (its hosts were sampled by another limit's label, whose
/// groups cut across them), canaries the sample has fewer hosts for, and a
/// window or growing waves that round to whole hosts so differently in the
/// sample that it runs a different number of rounds of hosts than the full
/// stage (`rehearsed` is the rehearsal's plan: the sample's windows).
/// A stage the prediction replays at its full size (`replayed`,
/// [`super::replay`]) runs the full stage's window, waves and groups there:
/// of it, only what the replay cannot know is said.
pub fn limits_not_modelled(
    plan: &Plan,
    inventory: &Inventory,
    sample: &Sample,
    rehearsed: &Plan,
    replayed: &[Replay],
) -> Vec<String> {
    let mut out = Vec::new();
    if sample.fraction >= 1.0 {
        return out;
    }
    let simulated: std::collections::HashSet<usize> = sample.chosen.iter().copied().collect();
    for stage in &plan.stages {
        if replayed.iter().any(|r| r.stage == stage.name) {
            continue;
        }
        for (key, limit) in &stage.max_unavailable {
            // A group of `key` the sample has only part of: its hosts go
            // `limit` at a time out of fewer, relatively more than in full.
            let (groups, _) = super::replay::group_counts(inventory, stage, key, &simulated);
            let split = groups.values().any(|&(all, kept)| kept > 0 && kept < all);
            if split {
                out.push(format!(
                    "stage `{}`: `max_unavailable: {{ {key}: {limit} }}` counts hosts per `{key}`, and the sample could not keep every `{key}` group whole (its hosts were sampled by another limit's label): a group with part of its hosts keeps the same limit, so the stage runs faster here than in full",
                    stage.name
                ));
            } else {
                // Whole groups run side by side, and the stage ends with its
                // slowest one: of fewer groups, the slowest is less slow.
                let total = groups.len();
                let have = groups.values().filter(|&&(_, kept)| kept > 0).count();
                if have < total && stage.window >= total.saturating_mul(*limit) {
                    out.push(format!(
                        "stage `{}`: its `{key}` groups go side by side and it ends with the slowest; the sample has {have} of the {total}, and the slowest of {have} is less slow than the slowest of {total}, so its time comes out short (by several % when groups take several rounds of long boots)",
                        stage.name
                    ));
                }
            }
        }
        let kept = stage.hosts.iter().filter(|h| simulated.contains(h)).count();
        if stage.canaries > kept {
            out.push(format!(
                "stage `{}`: {} canaries, but the sample keeps {kept} of its hosts",
                stage.name, stage.canaries
            ));
        }
        let Some(small) = rehearsed.stages.iter().find(|s| s.name == stage.name) else {
            continue;
        };
        // Rounds of hosts only decide a stage's time when nothing else limits it.
        if stage.rate.is_some() || !stage.max_unavailable.is_empty() || kept == 0 {
            continue;
        }
        let full = rounds(stage.hosts.len(), stage.canaries, &stage.ramp, stage.window);
        let here = rounds(small.hosts.len(), small.canaries, &small.ramp, small.window);
        let off = here / full - 1.0;
        if off.abs() >= 0.03 {
            let sizes = |s: &crate::plan::StagePlan| {
                let mut v: Vec<String> = s.ramp.iter().map(usize::to_string).collect();
                v.push(s.window.to_string());
                v.join(", ")
            };
            out.push(format!(
                "stage `{}`: its window rounds to whole hosts ({} at a time for {} hosts here, {} for {} in full): {here:.1} rounds of hosts here against {full:.1}, so its time comes out about {:.0} % {}",
                stage.name,
                sizes(small),
                small.hosts.len(),
                sizes(stage),
                stage.hosts.len(),
                off.abs() * 100.0,
                if off < 0.0 { "short" } else { "long" }
            ));
        }
        // A wave ends with its slowest host; the sample's waves have fewer.
        if small.ramp.iter().zip(&stage.ramp).any(|(s, f)| s < f) {
            let list = |v: &[usize]| {
                v.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "stage `{}`: each growing wave ends with its slowest host, and the sample's waves are smaller ({} hosts here, {} in full): the slowest of a few boots is less slow than the slowest of many, so its time comes out short (by several % with long boots)",
                stage.name,
                list(&small.ramp),
                list(&stage.ramp)
            ));
        }
    }
    if !replayed.is_empty() {
        let names: Vec<String> = replayed.iter().map(|r| format!("`{}`", r.stage)).collect();
        out.push(format!(
            "stage{} {} {} replayed at full size for the prediction: a stage ends with its slowest slot, wave or group, and a sample has fewer of them, so the replay runs the full stage's pace with its hosts' times drawn one by one from the simulated hosts' (the mean of {} draws); a host slower than every simulated one is not in it",
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" },
            super::replay::DRAWS
        ));
    }
    out.extend(few_sampled(plan, &simulated, replayed));
    out
}

/// Sampled hosts a stage needs for its time to come out within 5 %. Taken
/// as drilled, a stage ends with its slowest sampled hosts, and the slowest
/// of fewer end sooner; replayed at full size ([`super::replay`]), its time
/// rests on how well its sampled hosts' times draw the spread of the
/// fleet's. Measured on five plan shapes, boots of 10-20 s and 1-2 min,
/// three seeds each (BENCHMARKS.md 8b, 8c): replayed, stages of 100 and 200
/// sampled hosts (fleets of 2,000) came within 4 % of the full run, stages
/// of 15 to 40 (fleets of 300) within 8 %; taken as drilled, those of 15 to
/// 40 came out up to 21 % short.
pub const MIN_STAGE_SAMPLE: usize = 100;

/// The stages with fewer than [`MIN_STAGE_SAMPLE`] hosts in the sample (and
/// fewer than in full), said in one sentence each for those taken as
/// drilled and those replayed (`replayed`), with the `--sample` that gives
/// each that many, or all of its own.
fn few_sampled(
    plan: &Plan,
    simulated: &std::collections::HashSet<usize>,
    replayed: &[Replay],
) -> Vec<String> {
    // (stages, the fraction that gives each enough), as drilled and replayed.
    let mut few: [(Vec<String>, f64); 2] = [(Vec::new(), 0.0), (Vec::new(), 0.0)];
    for stage in &plan.stages {
        let all = stage.hosts.len();
        let kept = stage.hosts.iter().filter(|h| simulated.contains(h)).count();
        if kept < MIN_STAGE_SAMPLE && kept < all {
            let which = usize::from(replayed.iter().any(|r| r.stage == stage.name));
            let (names, need) = &mut few[which];
            names.push(format!("`{}` ({kept} of {all})", stage.name));
            *need = need.max(MIN_STAGE_SAMPLE.min(all) as f64 / all as f64);
        }
    }
    let [drilled, replayed] = few;
    let say = |(names, need): (Vec<String>, f64), why: &str| {
        let fraction = ((need * 100.0).ceil() / 100.0).min(1.0);
        format!(
            "stage{} {} {} fewer than {MIN_STAGE_SAMPLE} hosts in the sample: {why}; `--sample {fraction}` gives each {MIN_STAGE_SAMPLE} hosts or all of its own",
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            if names.len() == 1 { "has" } else { "have" },
        )
    };
    let mut out = Vec::new();
    if !drilled.0.is_empty() {
        out.push(say(
            drilled,
            "a stage ends with its slowest hosts, and the slowest of few end sooner, so such a stage comes out short (up to 21 % with 15 to 40 sampled hosts)",
        ));
    }
    if !replayed.0.is_empty() {
        out.push(say(
            replayed,
            "replayed at full size, a stage's time rests on its sampled hosts' times, and a few dozen draw the fleet's spread of boot times roughly (stages of 15 to 40 sampled hosts came within 8 % of full runs, stages of 100 or more within 4 %)",
        ));
    }
    out
}

/// How many rounds of hosts a stage of `n` hosts runs: one per canary (they
/// go one at a time), one per growing wave, then its hosts left over its
/// window (fractional: a rolling window refills as hosts land).
fn rounds(n: usize, canaries: usize, ramp: &[usize], window: usize) -> f64 {
    let mut left = n.saturating_sub(canaries);
    let mut rounds = canaries.min(n) as f64;
    for &wave in ramp {
        if left == 0 {
            break;
        }
        rounds += 1.0;
        left = left.saturating_sub(wave);
    }
    rounds + left as f64 / window.max(1) as f64
}

/// Each simulated host's fault (in [`Sample::chosen`] order), placed per
/// stage instead of at random across the sample. A stage's duration with
/// faults is decided by its last faulty hosts (each holds its slot until a
/// timeout), so the rehearsal needs them where the full stage would have
/// them: for a stage of `N` hosts of which the sample keeps `n`, and a
/// fault of fraction `f`, the full stage expects `f·N` such hosts; the
/// sample gets `round(f·n)` of them, and at least one when `f·N` rounds to
/// one or more (a sample of 40 at 0.5 % would otherwise have none, and miss
/// the tail the full stage of 400 almost surely has). All kinds together,
/// the full stage expects `K = Σ f·N` faulty hosts; the sample's `k` stand
/// at the expected places of the last `k` of them in the stage's start order
/// (the j-th from the end at `(K + 1 - j) / (K + 1)`), the kinds in the order
/// `--fail` lists them, the first kind last. A host keeps the first fault
/// placed on it; a host of two stages counts in the first.
pub fn stage_faults(
    plan: &Plan,
    sample: &Sample,
    faults: &[(FaultKind, f64)],
) -> Vec<Option<FaultKind>> {
    let position: BTreeMap<usize, usize> = sample
        .chosen
        .iter()
        .enumerate()
        .map(|(i, &h)| (h, i))
        .collect();
    let mut out = vec![None; sample.chosen.len()];
    for stage in &plan.stages {
        let kept: Vec<usize> = stage
            .hosts
            .iter()
            .filter_map(|h| position.get(h).copied())
            .collect();
        let n = kept.len();
        if n == 0 {
            continue;
        }
        let mut expected_all = 0.0;
        let mut kinds: Vec<FaultKind> = Vec::new();
        for &(kind, f) in faults {
            let expected = f * stage.hosts.len() as f64;
            let mut count = (f * n as f64).round() as usize;
            if count == 0 && expected.round() >= 1.0 {
                count = 1;
            }
            expected_all += expected;
            kinds.extend(std::iter::repeat_n(kind, count));
        }
        let k = expected_all.max(kinds.len() as f64);
        for (j, kind) in (1..=n).zip(kinds) {
            let quantile = (k + 1.0 - j as f64) / (k + 1.0);
            let at = ((quantile * n as f64) as usize).min(n - 1);
            // The nearest free host at or before that place, else after it.
            let free = (0..=at)
                .rev()
                .chain(at + 1..n)
                .find(|&i| out[kept[i]].is_none());
            if let Some(i) = free {
                out[kept[i]] = Some(kind);
            }
        }
    }
    out
}

/// Faults of `faults` that no step of `plan` can meet, each with why:
/// "`flap` cannot happen in this plan: no step reboots or powers on a
/// host". Such a fault is placed on hosts all the same, and changes nothing.
pub fn unmeetable_faults(plan: &Plan, faults: &[(FaultKind, f64)]) -> Vec<String> {
    let steps = || plan.stages.iter().flat_map(|s| s.steps.iter());
    let any = |f: &dyn Fn(&Step) -> bool| steps().any(f);
    let boots = any(&|s| matches!(s, Step::Reboot { .. } | Step::PowerOn(_)));
    let remediates = plan.stages.iter().any(|s| s.remediate.is_some());
    faults
        .iter()
        .filter(|(_, f)| *f > 0.0)
        .filter_map(|&(kind, _)| {
            let why = match kind {
                FaultKind::NeverReturns | FaultKind::SlowBoot | FaultKind::Flap if !boots => {
                    "no step reboots or powers on a host"
                }
                FaultKind::NoReboot if !any(&|s| matches!(s, Step::Reboot { .. })) => {
                    "no step reboots a host"
                }
                FaultKind::Unhealthy
                    if !any(&|s| match s {
                        Step::Health(h) => h
                            .checks
                            .iter()
                            .any(|c| matches!(c, Check::Ssh(_) | Check::Http { .. })),
                        Step::RestartService { .. } => true,
                        _ => false,
                    }) =>
                {
                    "no `health` step with an ssh or http check, and no `restart_service`"
                }
                FaultKind::HangHandshake
                    if !any(&|s| !matches!(s, Step::Local { .. } | Step::PowerOn(_))) =>
                {
                    "no step connects to a host over SSH"
                }
                FaultKind::StuckPoweringOn if !any(&|s| matches!(s, Step::PowerOn(_))) => {
                    "no `power_on` step"
                }
                FaultKind::BmcUnreachable | FaultKind::BmcBadCredentials
                    if !remediates && !any(&|s| matches!(s, Step::PowerOn(_))) =>
                {
                    "no `power_on` step and no `remediate`"
                }
                _ => return None,
            };
            Some(format!("`{kind}` cannot happen in this plan: {why}"))
        })
        .collect()
}

/// The simulator's view of the chosen hosts: names and labels kept.
pub fn sim_hosts(inventory: &Inventory, chosen: &[usize]) -> Vec<SimHost> {
    chosen
        .iter()
        .filter_map(|&h| inventory.hosts.get(h))
        .map(|h| SimHost {
            name: h.name.clone(),
            labels: h.labels.clone(),
        })
        .collect()
}

/// FNV-1a: a hash that stays the same across Rust versions (std's does not promise to).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The rehearsal of `book` (see the module docs for every change).
pub fn rehearse(book: &Playbook, r: &Rehearsal) -> Playbook {
    let mut book = book.clone();
    for stage in &mut book.stages {
        let sample = r.stage_sample.get(&stage.name).copied().unwrap_or(r.sample);
        stage.parallel = shrink(stage.parallel, sample);
        stage.ramp = stage.ramp.iter().map(|&a| shrink(a, sample)).collect();
        let budget = match (stage.max_failures, r.stage_hosts.get(&stage.name)) {
            (p @ Amount::Percent(_), Some(&full)) => Amount::Count(p.resolve(full, false)),
            (a, _) => a,
        };
        stage.max_failures = shrink(budget, sample);
        // A rate per group of a label kept whole paces as many hosts per
        // group as in full; otherwise each group keeps about `sample` of them.
        let factor = match &stage.rate_per {
            Some(key) if r.whole.contains(key) => r.speed,
            _ => r.speed * sample,
        };
        stage.rate = stage.rate.map(|rate| scale_rate(rate, factor));
        stage.connect_timeout = compress(stage.connect_timeout, r.speed).max(MIN_CONNECT_TIMEOUT);
        if let Some(cycles) = &mut stage.remediate {
            cycles.pdu_interval = compress(cycles.pdu_interval, r.speed);
            cycles.rate = scale_rate(cycles.rate, r.speed * sample);
        }
        for step in &mut stage.steps {
            rehearse_step(step, r, sample);
        }
    }
    book
}

fn rehearse_step(step: &mut Step, r: &Rehearsal, sample: f64) {
    match step {
        Step::WaitSsh { timeout } => *timeout = compress(*timeout, r.speed),
        Step::Reboot { timeout, command } => {
            *timeout = compress(*timeout, r.speed);
            if !sim_answers(command.as_str()) {
                *command = plain_command("systemctl reboot");
            }
        }
        Step::Run { command, .. } => {
            if !sim_answers(command.as_str()) {
                *command = plain_command("true");
            }
        }
        Step::Local { command, .. } => *command = plain_command("true"),
        Step::RestartService { .. } => {}
        Step::Health(h) => {
            h.timeout = compress(h.timeout, r.speed);
            h.interval = compress(h.interval, r.speed);
            for check in &mut h.checks {
                rehearse_check(check, r.http_port);
            }
        }
        Step::PowerOn(p) => {
            p.timeout = compress(p.timeout, r.speed);
            p.pdu_interval = compress(p.pdu_interval, r.speed);
            p.reprobe = compress(p.reprobe, r.speed);
            p.jitter = p.jitter.div_f64(r.speed);
            p.rate = scale_rate(p.rate, r.speed * sample);
        }
    }
}

fn rehearse_check(check: &mut Check, http_port: u16) {
    match check {
        Check::Ssh(command) => {
            if !sim_answers(command.as_str()) {
                *command = plain_command("systemctl is-system-running");
            }
        }
        Check::Tcp(port) => *port = http_port,
        Check::Http {
            url,
            status,
            body_contains,
        } => {
            let root = || format!("http://{{address}}:{http_port}/");
            let path = url_path(url.as_str());
            // The path is cut from a valid template at a piece boundary, so
            // it stays one; the root is the fallback all the same.
            *url = Template::new(format!("http://{{address}}:{http_port}{path}"), Quote::Url)
                .or_else(|_| Template::new(root(), Quote::Url))
                .expect("`http://{address}:PORT/` is a valid URL template");
            *status = 200;
            *body_contains = None;
        }
    }
}

/// A command the simulator answers, without placeholders.
fn plain_command(text: &str) -> Template {
    Template::new(text, Quote::Shell).expect("a stand-in command has no placeholders")
}

/// The path (with query) of a URL template, `/` when it has none. A `/`
/// inside a placeholder (`{label.a/b}`) does not start the path.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'}' if bytes.get(i + 1) == Some(&bytes[i]) => i += 2,
            b'{' => i += rest[i..].find('}').map_or(rest.len() - i, |end| end + 1),
            b'/' => return &rest[i..],
            b'?' | b'#' => return "/",
            _ => i += 1,
        }
    }
    "/"
}

/// Whether the simulator's shell answers every command of `script` (it
/// understands `;`, `&&`, `||`, not pipes or quoting).
pub fn sim_answers(script: &str) -> bool {
    if script.contains(['|', '`', '$', '>', '<', '"', '\'']) && !script.contains("||") {
        return false;
    }
    script
        .split([';', '\n'])
        .flat_map(|seq| seq.split("&&"))
        .flat_map(|part| part.split("||"))
        .all(|cmd| {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            let words: &[&str] = match words.as_slice() {
                ["sudo", "-n", rest @ ..] | ["sudo", rest @ ..] => rest,
                all => all,
            };
            match words {
                [] => true,
                ["true" | ":" | "false" | "hostname" | "exit", ..] => true,
                ["echo", ..] | ["sleep", _] | ["reboot", ..] => true,
                ["cat", "/proc/sys/kernel/random/boot_id"] => true,
                ["shutdown", "-r", ..] => true,
                ["systemctl", verb, ..] => matches!(
                    *verb,
                    "reboot"
                        | "is-active"
                        | "is-system-running"
                        | "restart"
                        | "start"
                        | "stop"
                        | "reload"
                ),
                _ => false,
            }
        })
}

/// A count shrunk with the sample (rounded up, at least 1 unless it was 0);
/// a percentage already follows the sample.
fn shrink(amount: Amount, fraction: f64) -> Amount {
    match amount {
        Amount::Count(0) => Amount::Count(0),
        Amount::Count(n) => Amount::Count(((n as f64 * fraction).ceil() as usize).max(1)),
        p @ Amount::Percent(_) => p,
    }
}

fn compress(d: Duration, speed: f64) -> Duration {
    d.div_f64(speed).max(MIN_SCALED.min(d))
}

/// `rate` multiplied by `factor`, kept as whole tokens: when fewer than one
/// token per period remains, the period grows instead.
pub fn scale_rate(rate: Rate, factor: f64) -> Rate {
    let tokens = f64::from(rate.count) * factor;
    if tokens >= 1.0 {
        Rate {
            count: tokens.round().min(f64::from(u32::MAX)) as u32,
            per: rate.per,
        }
    } else {
        Rate {
            count: 1,
            per: rate.per.div_f64(tokens.max(1e-6)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::diag::Sources;

    /// An inventory file's models (the sim's tests share it).
    pub(crate) fn inventory(yaml: &str) -> Inventory {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut sources = Sources::new();
        crate::inventory::load(&[path.to_string_lossy().into_owned()], &mut sources)
            .unwrap()
            .0
    }

    /// A playbook's models, checked against `inv`.
    pub(crate) fn playbook(yaml: &str, inv: &Inventory) -> Playbook {
        let mut sources = Sources::new();
        crate::playbook::load_str("book.yaml", yaml, Some(inv), &mut sources)
            .unwrap()
            .0
    }

    const INV: &str = r#"
version: 1
datacenters:
  a:
    hosts:
      - name: "db[001-100]"
        labels: { role: db, rack: "r{1}" }
      - name: "app[001-300]"
        labels: { role: app }
      - name: "dns[1-2]"
        labels: { role: dns }
  b:
    hosts:
      - name: "bapp[1-3]"
        labels: { role: app }
"#;

    const BOOK: &str = r#"
version: 1
name: t
defaults: { connect_timeout: 10s }
stages:
  - name: dns
    select: { role: dns }
    steps: [ { reboot: { timeout: 10m } } ]
  - name: db
    after: [dns]
    select: { role: db }
    parallel: 10
    max_failures: 3
    rate: 10/s
    steps:
      - run: "dnf -y upgrade kernel"
      - reboot
      - health:
          checks: [ { tcp: 5432 }, { ssh: "pg_isready -q" }, { ssh: "systemctl is-active postgres" } ]
          timeout: 10m
          interval: 10s
  - name: app
    after: [db]
    select: { role: app }
    parallel: 10%
    steps:
      - local: "lb-ctl drain {name}"
      - health:
          checks: [ { http: "https://{name}:8443/healthz?deep=1", status: 204, body: "fine" } ]
"#;

    #[test]
    fn sample_keeps_every_stratum_and_is_deterministic() {
        let inv = inventory(INV);
        let book = playbook(BOOK, &inv);
        let plan = crate::plan::build(&book, &inv, None).unwrap();
        let all = sample_hosts(&plan, &inv, 1.0, 1);
        assert_eq!(all.len(), inv.hosts.len());
        let s = sample_hosts(&plan, &inv, 0.1, 7);
        assert_eq!(s, sample_hosts(&plan, &inv, 0.1, 7));
        assert_ne!(s, sample_hosts(&plan, &inv, 0.1, 8));
        let count = |dc: &str, role: &str| {
            s.iter()
                .filter(|&&h| {
                    inv.hosts[h].label("dc") == Some(dc) && inv.hosts[h].label("role") == Some(role)
                })
                .count()
        };
        // 10 of 100 db, 30 of 300 app in a; the small strata keep one host each.
        assert_eq!(count("a", "db"), 10);
        assert_eq!(count("a", "app"), 30);
        assert_eq!(count("a", "dns"), 1);
        assert_eq!(count("b", "app"), 1);
        assert_eq!(s.len(), 42);
        assert!(s.windows(2).all(|w| w[0] < w[1]), "inventory order");
        // The fractions the sample really kept: small strata keep more.
        let sample = Sample::of(&plan, &inv, 0.1, 7);
        assert_eq!(sample.chosen, s);
        assert_eq!(sample.selected, 405);
        assert_eq!(sample.fraction, 42.0 / 405.0);
        assert_eq!(sample.stage_sample["dns"], 0.5);
        assert_eq!(sample.stage_sample["db"], 0.1);
        assert_eq!(sample.stage_sample["app"], 31.0 / 303.0);
    }

    #[test]
    fn a_fault_no_step_can_meet_is_named_with_why() {
        let inv = inventory(INV);
        let all = [
            (FaultKind::NeverReturns, 0.01),
            (FaultKind::Flap, 0.01),
            (FaultKind::NoReboot, 0.01),
            (FaultKind::Unhealthy, 0.01),
            (FaultKind::StuckPoweringOn, 0.01),
        ];
        // BOOK reboots and has ssh health checks: only the power-on fault is idle.
        let plan = crate::plan::build(&playbook(BOOK, &inv), &inv, None).unwrap();
        assert_eq!(
            unmeetable_faults(&plan, &all),
            ["`stuck_powering_on` cannot happen in this plan: no `power_on` step"]
        );
        let commands = "version: 1\nstages:\n  - name: s\n    select: { role: dns }\n    steps: [ { run: \"true\" } ]\n";
        let plan = crate::plan::build(&playbook(commands, &inv), &inv, None).unwrap();
        assert_eq!(
            unmeetable_faults(&plan, &all),
            [
                "`never_returns` cannot happen in this plan: no step reboots or powers on a host",
                "`flap` cannot happen in this plan: no step reboots or powers on a host",
                "`no_reboot` cannot happen in this plan: no step reboots a host",
                "`unhealthy` cannot happen in this plan: no `health` step with an ssh or http check, and no `restart_service`",
                "`stuck_powering_on` cannot happen in this plan: no `power_on` step",
            ]
        );
    }

    #[test]
    fn faults_stand_where_the_full_stage_expects_its_last_ones() {
        let inv = inventory(INV);
        let book = playbook(BOOK, &inv);
        let plan = crate::plan::build(&book, &inv, None).unwrap();
        let sample = Sample::of(&plan, &inv, 0.1, 7);
        let faults = stage_faults(&plan, &sample, &[(FaultKind::NeverReturns, 0.01)]);
        assert_eq!(faults.len(), sample.chosen.len());
        let faulty_in = |stage: usize| -> Vec<usize> {
            let kept: Vec<usize> = plan.stages[stage]
                .hosts
                .iter()
                .filter_map(|h| sample.chosen.iter().position(|c| c == h))
                .collect();
            kept.iter()
                .enumerate()
                .filter(|&(_, &i)| faults[i].is_some())
                .map(|(at, _)| at)
                .collect()
        };
        // dns: 2 hosts expect 0.02 faulty ones: none.
        assert_eq!(faulty_in(0), Vec::<usize>::new());
        // db: 100 hosts expect 1; the 10 kept get it half way (the last of one).
        assert_eq!(faulty_in(1), [5]);
        // app: 303 expect 3.03; of 31 kept, the last of them stands at 3.03/4.03.
        assert_eq!(faulty_in(2), [23]);
        // Kinds together: db's full stage expects 2 faulty hosts, so its
        // sample's two stand where the last two of 2 are expected (2/3 and
        // 1/3 of the way), the first kind listed last.
        let two = stage_faults(
            &plan,
            &sample,
            &[
                (FaultKind::NeverReturns, 0.01),
                (FaultKind::Unhealthy, 0.01),
            ],
        );
        let db: Vec<Option<FaultKind>> = plan.stages[1]
            .hosts
            .iter()
            .filter_map(|h| sample.chosen.iter().position(|c| c == h))
            .map(|i| two[i])
            .collect();
        assert_eq!(db[6], Some(FaultKind::NeverReturns));
        assert_eq!(db[3], Some(FaultKind::Unhealthy));
        assert_eq!(db.iter().filter(|f| f.is_some()).count(), 2);
        // Fractions a sample can hold are kept as they are, from the end.
        let many = stage_faults(&plan, &sample, &[(FaultKind::Unhealthy, 0.2)]);
        let faulty = many.iter().filter(|f| f.is_some()).count();
        // dns 0 of 1 (0.4 expected in the full stage), db 2 of 10, app 6 of 31.
        assert_eq!(faulty, 8);
    }

    /// 300 hosts in 15 racks of 20 (`rack`), on 30 PDUs of 10 (`pdu`, two
    /// to a rack), in 10 rows across the racks (`row`), and 20 hosts of
    /// another role with no rack.
    const RACKS: &str = r#"
version: 1
datacenters:
  a:
    hosts:
      - name: "n[000-299]"
        labels: { role: node }
      - name: "misc[01-20]"
        labels: { role: misc }
"#;

    /// RACKS with its labels: rack `r{i / 20}`, pdu `p{i / 10}`, row `w{i % 10}`.
    fn racks() -> Inventory {
        let mut inv = inventory(RACKS);
        for (i, h) in inv.hosts.iter_mut().enumerate().take(300) {
            h.labels.insert("rack".into(), format!("r{:02}", i / 20));
            h.labels.insert("pdu".into(), format!("p{:02}", i / 10));
            h.labels.insert("row".into(), format!("w{}", i % 10));
        }
        inv
    }

    #[test]
    fn a_sample_keeps_whole_racks_where_max_unavailable_counts_per_rack() {
        let inv = racks();
        let text = "version: 1\nstages:\n  - name: nodes\n    select: { role: node }\n    parallel: 100%\n    max_unavailable: { rack: 2 }\n    steps: [ reboot ]\n  - name: misc\n    select: { role: misc }\n    steps: [ reboot ]\n";
        let plan = crate::plan::build(&playbook(text, &inv), &inv, None).unwrap();
        for seed in 1..=5 {
            let sample = Sample::of(&plan, &inv, 0.1, seed);
            let mut per_rack: BTreeMap<&str, usize> = BTreeMap::new();
            for &h in &sample.chosen {
                if let Some(r) = inv.hosts[h].label("rack") {
                    *per_rack.entry(r).or_default() += 1;
                }
            }
            // round(15 × 0.1) = 2 racks, all 20 hosts of each.
            assert_eq!(per_rack.len(), 2, "seed {seed}: {per_rack:?}");
            assert!(per_rack.values().all(|&n| n == 20), "{per_rack:?}");
            assert_eq!(
                sample.whole,
                [WholeGroups {
                    key: "rack".into(),
                    kept: 2,
                    groups: 15
                }]
            );
            // Hosts no limit counts are sampled one by one: 2 of 20.
            let misc = sample.chosen.iter().filter(|&&h| h >= 300).count();
            assert_eq!(misc, 2);
            assert_eq!(sample.stage_sample["nodes"], 40.0 / 300.0);
            assert!(sample.keeps_whole("rack") && !sample.keeps_whole("pdu"));
            // The limit holds per rack as in full, and a 100 % window rounds
            // exactly: only that the slowest of 2 racks is less slow than the
            // slowest of 15.
            let r = Rehearsal {
                speed: 10.0,
                sample: sample.fraction,
                stage_sample: sample.stage_sample.clone(),
                http_port: 1,
                stage_hosts: BTreeMap::new(),
                whole: vec!["rack".into()],
            };
            let rehearsed = rehearse(&playbook(text, &inv), &r);
            let small = crate::plan::build(&rehearsed, &inv, None).unwrap();
            let replayed = crate::sim::replay::replays(&plan, &inv, &sample.chosen, (None, None));
            let names: Vec<&str> = replayed.iter().map(|r| r.stage.as_str()).collect();
            assert_eq!(names, ["nodes", "misc"]);
            // Not replayed, it is said as short, and as sampled thin.
            assert_eq!(
                limits_not_modelled(&plan, &inv, &sample, &small, &[]),
                [
                    "stage `nodes`: its `rack` groups go side by side and it ends with the slowest; the sample has 2 of the 15, and the slowest of 2 is less slow than the slowest of 15, so its time comes out short (by several % when groups take several rounds of long boots)",
                    "stages `nodes` (40 of 300), `misc` (2 of 20) have fewer than 100 hosts in the sample: a stage ends with its slowest hosts, and the slowest of few end sooner, so such a stage comes out short (up to 21 % with 15 to 40 sampled hosts); `--sample 1` gives each 100 hosts or all of its own"
                ]
            );
            // Replayed at full size: neither is short for its sample, and
            // both rest on few hosts' times.
            assert_eq!(
                limits_not_modelled(&plan, &inv, &sample, &small, &replayed),
                [
                    "stages `nodes`, `misc` are replayed at full size for the prediction: a stage ends with its slowest slot, wave or group, and a sample has fewer of them, so the replay runs the full stage's pace with its hosts' times drawn one by one from the simulated hosts' (the mean of 200 draws); a host slower than every simulated one is not in it",
                    "stages `nodes` (40 of 300), `misc` (2 of 20) have fewer than 100 hosts in the sample: replayed at full size, a stage's time rests on its sampled hosts' times, and a few dozen draw the fleet's spread of boot times roughly (stages of 15 to 40 sampled hosts came within 8 % of full runs, stages of 100 or more within 4 %); `--sample 1` gives each 100 hosts or all of its own",
                ]
            );
        }
        // The same seed keeps the same racks; another seed may not.
        let a = Sample::of(&plan, &inv, 0.1, 1).chosen;
        assert_eq!(a, Sample::of(&plan, &inv, 0.1, 1).chosen);
        assert!((2..=20).any(|seed| Sample::of(&plan, &inv, 0.1, seed).chosen != a));
        // Without the limit, hosts are sampled one by one: 30 of 300.
        let free = text.replace("    max_unavailable: { rack: 2 }\n", "");
        let plan = crate::plan::build(&playbook(&free, &inv), &inv, None).unwrap();
        let sample = Sample::of(&plan, &inv, 0.1, 1);
        assert!(sample.whole.is_empty());
        assert_eq!(sample.chosen.iter().filter(|&&h| h < 300).count(), 30);
    }

    #[test]
    fn a_second_limit_the_sample_cannot_keep_whole_is_said() {
        let inv = racks();
        let text = "version: 1\nstages:\n  - name: nodes\n    select: { role: node }\n    parallel: 100%\n    max_unavailable: { rack: 2, pdu: 1, row: 3 }\n    steps: [ reboot ]\n";
        let plan = crate::plan::build(&playbook(text, &inv), &inv, None).unwrap();
        let sample = Sample::of(&plan, &inv, 0.1, 3);
        // Racks (the first key) are kept whole; so are the two PDUs of each
        // rack, but a row spans every rack and keeps 4 of its 30 hosts.
        assert_eq!(sample.whole.len(), 1);
        assert_eq!(sample.whole[0].key, "rack");
        // Three limits: the replay models one.
        assert_eq!(
            crate::sim::replay::replays(&plan, &inv, &sample.chosen, (None, None)),
            []
        );
        let said = limits_not_modelled(&plan, &inv, &sample, &plan, &[]);
        assert_eq!(said.len(), 4, "{said:?}");
        assert!(
            said[0].contains("its `rack` groups go side by side"),
            "{said:?}"
        );
        assert!(
            said[1].contains("its `pdu` groups go side by side"),
            "{said:?}"
        );
        assert_eq!(
            said[2..3],
            [
                "stage `nodes`: `max_unavailable: { row: 3 }` counts hosts per `row`, and the sample could not keep every `row` group whole (its hosts were sampled by another limit's label): a group with part of its hosts keeps the same limit, so the stage runs faster here than in full"
            ]
        );
        // 40 of 300 sampled: a third of the stage would give it 100.
        assert!(
            said[3].starts_with("stage `nodes` (40 of 300) has fewer than 100 hosts in the sample")
                && said[3].contains("`--sample 0.34` gives each 100 hosts"),
            "{said:?}"
        );
    }

    #[test]
    fn a_rate_per_rack_kept_whole_is_compressed_by_the_speed_only() {
        let inv = racks();
        let text = "version: 1\nstages:\n  - name: nodes\n    select: { role: node }\n    parallel: 100%\n    rate: 2/s\n    rate_per: rack\n    max_unavailable: { rack: 5 }\n    steps: [ reboot ]\n";
        let book = playbook(text, &inv);
        let mut r = Rehearsal {
            speed: 10.0,
            sample: 0.1,
            stage_sample: BTreeMap::new(),
            http_port: 1,
            stage_hosts: BTreeMap::new(),
            whole: vec!["rack".into()],
        };
        let per_s = |count| Rate {
            count,
            per: Duration::from_secs(1),
        };
        // Each kept rack has all its hosts: 2/s per rack, 10x faster.
        assert_eq!(rehearse(&book, &r).stages[0].rate, Some(per_s(20)));
        // Racks sampled host by host keep a tenth of their hosts each.
        r.whole.clear();
        assert_eq!(rehearse(&book, &r).stages[0].rate, Some(per_s(2)));
    }

    #[test]
    fn windows_that_round_differently_in_the_sample_are_said_with_how_much() {
        let inv = racks();
        let plan_of = |parallel: &str| {
            let text = format!(
                "version: 1\nstages:\n  - name: nodes\n    select: {{ role: node }}\n    parallel: {parallel}\n    steps: [ reboot ]\n"
            );
            let book = playbook(&text, &inv);
            let plan = crate::plan::build(&book, &inv, None).unwrap();
            let sample = Sample::of(&plan, &inv, 0.1, 1);
            let r = Rehearsal {
                speed: 10.0,
                sample: sample.fraction,
                stage_sample: sample.stage_sample.clone(),
                http_port: 1,
                stage_hosts: BTreeMap::new(),
                whole: Vec::new(),
            };
            // The rehearsal is planned on the sampled hosts only.
            let mut sim = inv.clone();
            sim.hosts = sample
                .chosen
                .iter()
                .map(|&h| inv.hosts[h].clone())
                .collect();
            let small = crate::plan::build(&rehearse(&book, &r), &sim, None).unwrap();
            let mut said = limits_not_modelled(&plan, &inv, &sample, &small, &[]);
            // Every case here samples 30 of 300: said last, the same each time.
            assert_eq!(
                said.pop().as_deref(),
                Some(
                    "stage `nodes` (30 of 300) has fewer than 100 hosts in the sample: a stage ends with its slowest hosts, and the slowest of few end sooner, so such a stage comes out short (up to 21 % with 15 to 40 sampled hosts); `--sample 0.34` gives each 100 hosts or all of its own"
                )
            );
            said
        };
        // 10 % of 300 is 30, of 30 it is 3: ten rounds either way.
        assert_eq!(plan_of("10%"), Vec::<String>::new());
        // 25 % of 30 rounds up to 8: 3.75 rounds where the full stage has 4.
        assert_eq!(
            plan_of("25%"),
            [
                "stage `nodes`: its window rounds to whole hosts (8 at a time for 30 hosts here, 75 for 300 in full): 3.8 rounds of hosts here against 4.0, so its time comes out about 6 % short"
            ]
        );
        // Growing waves: 1, 1, 2, then 3 against 1, 6, 15, then 30.
        let waves = plan_of("[1, 2%, 5%, 10%]");
        assert_eq!(waves.len(), 2, "{waves:?}");
        assert_eq!(
            waves[1],
            "stage `nodes`: each growing wave ends with its slowest host, and the sample's waves are smaller (1, 1, 2 hosts here, 1, 6, 15 in full): the slowest of a few boots is less slow than the slowest of many, so its time comes out short (by several % with long boots)"
        );
        assert!(
            waves[0].contains("(1, 1, 2, 3 at a time for 30 hosts here, 1, 6, 15, 30 for 300 in full): 11.7 rounds of hosts here against 12.3, so its time comes out about 5 % short"),
            "{waves:?}"
        );
    }

    #[test]
    fn hosts_no_stage_selects_are_not_simulated() {
        let inv = inventory(INV);
        let book = playbook(
            "version: 1\nname: t\nstages:\n  - name: app\n    select: { role: app }\n    steps: [ reboot ]\n",
            &inv,
        );
        let limit = crate::select::Selector::parse("dc=b").unwrap();
        let plan = crate::plan::build(&book, &inv, Some(&limit)).unwrap();
        let s = sample_hosts(&plan, &inv, 1.0, 1);
        let names: Vec<&str> = s.iter().map(|&h| inv.hosts[h].name.as_str()).collect();
        assert_eq!(names, ["bapp1", "bapp2", "bapp3"]);
    }

    #[test]
    fn a_percentage_budget_is_resolved_on_the_full_stage_before_it_shrinks() {
        let inv = inventory(INV);
        let text = "version: 1\nstages:\n  - name: app\n    select: { role: app }\n    max_failures: 1%\n    steps: [ reboot ]\n";
        let book = playbook(text, &inv);
        let mut r = Rehearsal {
            speed: 10.0,
            sample: 0.1,
            stage_sample: BTreeMap::new(),
            http_port: 18081,
            stage_hosts: BTreeMap::from([("app".to_owned(), 300)]),
            whole: Vec::new(),
        };
        // 1 % of 300 is 3; a tenth of it, rounded up, 1 (1 % of the 30
        // sampled hosts would round down to 0, and the sample's one fault
        // would abort a stage the full run finishes).
        assert_eq!(rehearse(&book, &r).stages[0].max_failures, Amount::Count(1));
        r.stage_hosts.clear();
        assert_eq!(
            rehearse(&book, &r).stages[0].max_failures,
            Amount::Percent(1.0)
        );
    }

    #[test]
    fn rehearsal_compresses_time_shrinks_counts_and_points_checks_at_the_sim() {
        let inv = inventory(INV);
        let book = playbook(BOOK, &inv);
        let r = Rehearsal {
            speed: 20.0,
            sample: 0.1,
            stage_sample: BTreeMap::from([("dns".to_owned(), 0.5)]),
            http_port: 18081,
            stage_hosts: BTreeMap::new(),
            whole: Vec::new(),
        };
        let out = rehearse(&book, &r);
        let dns = &out.stages[0];
        assert_eq!(
            dns.steps[0],
            Step::Reboot {
                timeout: Duration::from_secs(30),
                command: crate::playbook::Template::sh("systemctl reboot")
            }
        );
        assert_eq!(dns.connect_timeout, MIN_CONNECT_TIMEOUT);
        let db = &out.stages[1];
        assert_eq!(db.parallel, Amount::Count(1));
        assert_eq!(db.max_failures, Amount::Count(1));
        // 10/s × 20 × 0.1 = 20/s
        assert_eq!(
            db.rate,
            Some(Rate {
                count: 20,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            db.steps[0],
            Step::Run {
                command: crate::playbook::Template::sh("true"),
                timeout: match &book.stages[1].steps[0] {
                    Step::Run { timeout, .. } => *timeout,
                    other => panic!("{other:?}"),
                }
            }
        );
        let Step::Health(h) = &db.steps[2] else {
            panic!("health")
        };
        assert_eq!(h.timeout, Duration::from_secs(30));
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!(
            h.checks,
            [
                Check::Tcp(18081),
                Check::Ssh(crate::playbook::Template::sh("systemctl is-system-running")),
                Check::Ssh(crate::playbook::Template::sh(
                    "systemctl is-active postgres"
                )),
            ]
        );
        let app = &out.stages[2];
        assert_eq!(app.parallel, book.stages[2].parallel, "percentages stay");
        assert!(matches!(&app.steps[0], Step::Local { command, .. } if command.as_str() == "true"));
        let Step::Health(h) = &app.steps[1] else {
            panic!("health")
        };
        assert_eq!(
            h.checks,
            [Check::Http {
                url: crate::playbook::Template::url("http://{address}:18081/healthz?deep=1"),
                status: 200,
                body_contains: None
            }]
        );
    }

    /// `remediate`'s cycles are paced like power-ons: by the stage's
    /// power_on step when it has one, else power_on's defaults, compressed
    /// by the rehearsal either way.
    #[test]
    fn remediation_pacing_follows_the_stage_power_on_and_is_compressed() {
        let inv = inventory(
            "version: 1\ndatacenters:\n  a:\n    hosts:\n      - name: \"dns[1-2]\"\n        labels: { role: dns, bmc: \"10.0.0.{1}\" }\n      - name: \"db[1-2]\"\n        labels: { role: db, bmc: \"10.0.1.{1}\", pdu: p1 }\n",
        );
        let book = playbook(
            "version: 1\nname: t\ndefaults: { remediate: { power_cycle: 1 } }\nstages:\n  - name: dns\n    select: { role: dns }\n    steps: [ reboot ]\n  - name: db\n    select: { role: db }\n    steps: [ { power_on: { pdu_interval: 4s, rate: 8/s } }, wait_ssh ]\n",
            &inv,
        );
        let pacing = |book: &Playbook| -> Vec<(Duration, Rate)> {
            let plan = crate::plan::build(book, &inv, None).expect("plan");
            plan.stages
                .iter()
                .map(|s| {
                    let r = s.remediate.expect("remediate");
                    (r.pdu_interval, r.rate)
                })
                .collect()
        };
        let per_s = |count| Rate {
            count,
            per: Duration::from_secs(1),
        };
        let defaults = crate::playbook::PowerOn::default();
        assert_eq!(
            pacing(&book),
            [
                (defaults.pdu_interval, defaults.rate),
                (Duration::from_secs(4), per_s(8))
            ]
        );
        let r = Rehearsal {
            speed: 4.0,
            sample: 0.5,
            stage_sample: BTreeMap::new(),
            http_port: 18081,
            stage_hosts: BTreeMap::new(),
            whole: Vec::new(),
        };
        let rehearsed = pacing(&rehearse(&book, &r));
        assert_eq!(rehearsed[0].0, defaults.pdu_interval / 4);
        assert_eq!(rehearsed[1], (Duration::from_secs(1), per_s(16)));
    }

    #[test]
    fn rates_too_slow_for_one_token_stretch_their_period() {
        let r = scale_rate(
            Rate {
                count: 1,
                per: Duration::from_secs(1),
            },
            0.25,
        );
        assert_eq!((r.count, r.per), (1, Duration::from_secs(4)));
    }

    #[test]
    fn url_paths() {
        assert_eq!(url_path("http://{address}:8080/healthz"), "/healthz");
        assert_eq!(url_path("http://x"), "/");
        assert_eq!(url_path("http://x?y=1"), "/");
        assert_eq!(url_path("http://x:1/a?b"), "/a?b");
        // A `/` inside a placeholder is not the path; escaped braces are text.
        assert_eq!(url_path("http://{label.a/b}:1/p/{name}"), "/p/{name}");
        assert_eq!(url_path("http://{{x}}/q"), "/q");
        let mut check = Check::Http {
            url: Template::url("http://{label.svc/host}/status/{label.svc/path}"),
            status: 204,
            body_contains: None,
        };
        rehearse_check(&mut check, 9);
        assert_eq!(
            check,
            Check::Http {
                url: Template::url("http://{address}:9/status/{label.svc/path}"),
                status: 200,
                body_contains: None,
            }
        );
    }

    /// Every command judged answerable really is (no exit 127 from the
    /// simulator's shell), and the rest really are not.
    #[tokio::test]
    async fn answerable_commands_agree_with_the_sim_shell() {
        let core = super::super::core::HostCore::new(
            0,
            "h".into(),
            Ipv4Addr::LOCALHOST,
            Some(super::super::FaultKind::NoReboot),
            1,
        );
        let yes = [
            "true",
            "systemctl is-active ceph-osd.target",
            "sudo systemctl is-system-running",
            "systemctl restart nginx && systemctl is-active nginx",
            "echo hi; hostname",
            "cat /proc/sys/kernel/random/boot_id",
            "false || true",
            "systemctl reboot",
            "shutdown -r now",
            "sleep 0",
        ];
        for cmd in yes {
            assert!(sim_answers(cmd), "{cmd}");
            let out = super::super::ssh::run_script(&core, cmd).await;
            assert_ne!(out.code, 127, "{cmd}");
        }
        let no = [
            "pg_isready -q",
            "dnf -y -q upgrade kernel",
            "true && chronyc tracking",
            "ceph osd set noout",
        ];
        for cmd in no {
            assert!(!sim_answers(cmd), "{cmd}");
            let out = super::super::ssh::run_script(&core, cmd).await;
            assert_eq!(out.code, 127, "{cmd}");
        }
        assert!(!sim_answers("systemctl is-active x | grep y"));
    }
}
