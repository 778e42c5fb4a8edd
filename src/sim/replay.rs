//! A drill's stage replayed at the full stage's size: which stages the
//! prediction can replay (their [`Pace`]), and the replay itself. A sample
//! runs a stage with fewer hosts, slots, waves or racks than the full stage,
//! and a stage ends with its slowest of those: the slowest of a few is less
//! slow than the slowest of many, so a sampled stage comes out short (by
//! up to 21 % with a few dozen sampled hosts). The replay takes the times
//! the simulated hosts measured and runs the full stage's pace with them:
//! its hosts drawn one by one from those times, started as the engine
//! would (canaries one at a time, growing waves, the window, the stage
//! rate, `max_unavailable` groups side by side).
//!
//! Pure: no I/O, no clock. It reads inventory and plan models and numbers;
//! it must not import the engine (the simulator never does). How the engine
//! paces a stage is `engine::admission`'s; this is a model of it, checked
//! against full runs in BENCHMARKS.md 8c.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::inventory::Inventory;
use crate::plan::{Plan, StagePlan};

/// Draws a replay averages over.
pub const DRAWS: usize = 200;

/// How a stage starts its hosts, as a replay runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// Canaries one at a time, then growing waves (each ends with its
    /// slowest host; one with a failure stops the growth at its size), then
    /// `window` hosts at a time; with a stage `rate`, a start at most every
    /// `period`.
    Window {
        canaries: usize,
        ramp: Vec<usize>,
        window: usize,
        period: Option<Duration>,
    },
    /// `max_unavailable` groups side by side, `limit` hosts of each at a
    /// time: the full stage's groups' sizes, and how many the sample kept
    /// (whole).
    Groups {
        key: String,
        limit: usize,
        sizes: Vec<usize>,
        kept: usize,
    },
}

impl Pace {
    /// The pace as the plan says it, for the report.
    pub fn describe(&self) -> String {
        match self {
            Pace::Window {
                canaries,
                ramp,
                window,
                period,
            } => {
                let mut parts = Vec::new();
                match canaries {
                    0 => {}
                    1 => parts.push("1 canary".to_owned()),
                    n => parts.push(format!("{n} canaries")),
                }
                if !ramp.is_empty() {
                    let waves: Vec<String> = ramp.iter().map(usize::to_string).collect();
                    parts.push(format!("waves of {}", waves.join(", ")));
                }
                parts.push(format!("{window} at a time"));
                if let Some(p) = period {
                    parts.push(format!("a start every {}", crate::time::humane(*p)));
                }
                parts.join(", ")
            }
            Pace::Groups {
                key,
                limit,
                sizes,
                kept,
            } => format!(
                "{} `{key}` groups side by side ({kept} simulated), {limit} of each at a time",
                sizes.len()
            ),
        }
    }
}

/// A stage the prediction replays at its full size.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub stage: String,
    /// The full stage's hosts, and how many the sample kept.
    pub hosts: usize,
    pub kept: usize,
    pub pace: Pace,
}

/// The stages of `plan` the prediction replays at their full size, given
/// the hosts the drill simulated (`chosen`, inventory indices: the drill's
/// sample). A stage qualifies when the sample kept only part of it and
/// nothing the replay does not model paces it:
/// - no other stage selects any of its hosts (a shared host waits for the
///   other stage), nor, for `max_unavailable`, a host of its groups (whose
///   hosts count against the same limit);
/// - `parallel` (the run's `--parallel`, in full and in the rehearsal) is
///   not below its window, or every group's limit at once;
/// - with `max_unavailable`: one key, every host has that label, the sample
///   kept its groups whole, and no canaries, waves or rates beside it;
/// - no `rate_per`, no `power_on` step and no `remediate` (their BMC and
///   PDU spacing paces hosts inside the step).
///
/// Any other stage keeps the time the drill measured (and the report says
/// why that may come out short).
pub fn replays(
    plan: &Plan,
    inventory: &Inventory,
    chosen: &[usize],
    parallel: (Option<usize>, Option<usize>),
) -> Vec<Replay> {
    let mut out = Vec::new();
    let simulated: HashSet<usize> = chosen.iter().copied().collect();
    let mut stages_of: BTreeMap<usize, usize> = BTreeMap::new();
    for stage in &plan.stages {
        for &h in &stage.hosts {
            *stages_of.entry(h).or_default() += 1;
        }
    }
    let cap = |n: usize| [parallel.0, parallel.1].iter().flatten().all(|&c| n <= c);
    for stage in &plan.stages {
        let kept = stage.hosts.iter().filter(|h| simulated.contains(h)).count();
        let alone = stage.hosts.iter().all(|h| stages_of.get(h) == Some(&1));
        // Power-ons and power cycles are paced across hosts by their BMCs'
        // and PDUs' spacing, inside the step: not a pace the replay runs.
        if kept == 0
            || kept == stage.hosts.len()
            || !alone
            || stage.rate_per.is_some()
            || stage.reaches_bmcs()
        {
            continue;
        }
        let pace = match stage.max_unavailable.as_slice() {
            [] => {
                let widest = stage.ramp.iter().copied().fold(stage.window, usize::max);
                if !cap(widest) {
                    continue;
                }
                Pace::Window {
                    canaries: stage.canaries,
                    ramp: stage.ramp.clone(),
                    window: stage.window,
                    period: stage.rate.map(|r| r.per / r.count.max(1)),
                }
            }
            [(key, limit)] => match groups(plan, inventory, stage, key, *limit, &simulated) {
                Some(pace) => pace,
                None => continue,
            },
            _ => continue,
        };
        if let Pace::Groups { sizes, limit, .. } = &pace
            && !cap(sizes.iter().map(|&n| n.min(*limit)).sum())
        {
            continue;
        }
        out.push(Replay {
            stage: stage.name.clone(),
            hosts: stage.hosts.len(),
            kept,
            pace,
        });
    }
    out
}

/// `stage`'s `key` groups, when only they pace it ([`replays`]).
fn groups(
    plan: &Plan,
    inventory: &Inventory,
    stage: &StagePlan,
    key: &str,
    limit: usize,
    simulated: &HashSet<usize>,
) -> Option<Pace> {
    if stage.canaries > 0 || !stage.ramp.is_empty() || stage.rate.is_some() || limit == 0 {
        return None;
    }
    let (groups, unlabelled) = group_counts(inventory, stage, key, simulated);
    if unlabelled > 0 {
        return None;
    }
    let whole = groups.values().all(|&(all, kept)| kept == 0 || kept == all);
    let kept = groups.values().filter(|&&(_, kept)| kept > 0).count();
    let shared = plan.stages.iter().any(|other| {
        other.name != stage.name
            && other.hosts.iter().any(|&h| {
                inventory
                    .hosts
                    .get(h)
                    .and_then(|x| x.label(key))
                    .is_some_and(|v| groups.contains_key(v))
            })
    });
    let sizes: Vec<usize> = groups.values().map(|&(all, _)| all).collect();
    let at_once: usize = sizes.iter().map(|&n| n.min(limit)).sum();
    if !whole || shared || kept == 0 || kept == groups.len() || at_once > stage.window {
        return None;
    }
    Some(Pace::Groups {
        key: key.to_owned(),
        limit,
        sizes,
        kept,
    })
}

/// Per value of `key` among `stage`'s hosts: how many of them have it, and
/// how many of those the sample kept (`simulated`); and how many of its
/// hosts have no such label (they are in no group).
pub fn group_counts<'a>(
    inventory: &'a Inventory,
    stage: &StagePlan,
    key: &str,
    simulated: &HashSet<usize>,
) -> (BTreeMap<&'a str, (usize, usize)>, usize) {
    let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut unlabelled = 0;
    for &h in &stage.hosts {
        match inventory.hosts.get(h).and_then(|x| x.label(key)) {
            Some(value) => {
                let (all, kept) = groups.entry(value).or_default();
                *all += 1;
                *kept += usize::from(simulated.contains(&h));
            }
            None => unlabelled += 1,
        }
    }
    (groups, unlabelled)
}

/// One simulated host's time in a stage, whether it failed there, and
/// whether the drill gave it a fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostTime {
    pub ms: u64,
    pub failed: bool,
    pub faulty: bool,
}

/// The expected time of a stage of `hosts` hosts paced by `pace`, each host
/// taking one of `times` drawn at random: the mean over [`DRAWS`] seeded
/// draws. `None` without times. Drawn one by one, the hosts' times mix
/// anew, so the slowest of many slots, waves or groups can be slower than
/// any the drill ran, as in full. A host is drawn from the faulty ones with
/// the chance `fault_share` (the `--fail` fractions together), as the full
/// fleet has them: a small sample holds relatively more (every stage gets
/// at least one of a kind the full stage expects).
pub fn replay(
    pace: &Pace,
    hosts: usize,
    times: &[HostTime],
    fault_share: f64,
    seed: u64,
) -> Option<u64> {
    if times.is_empty() || hosts == 0 {
        return None;
    }
    let (faulty, sound): (Vec<HostTime>, Vec<HostTime>) = times.iter().partition(|t| t.faulty);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut draw = || {
        let pool = match (faulty.is_empty(), sound.is_empty()) {
            (false, false) if rng.random_bool(fault_share.clamp(0.0, 1.0)) => &faulty,
            (false, false) => &sound,
            _ => times,
        };
        pool[rng.random_range(0..pool.len())]
    };
    let mut sum: u128 = 0;
    for _ in 0..DRAWS {
        let end = match pace {
            Pace::Window {
                canaries,
                ramp,
                window,
                period,
            } => window_end(hosts, *canaries, ramp, *window, *period, &mut draw),
            Pace::Groups { limit, sizes, .. } => sizes
                .iter()
                .map(|&n| window_end(n, 0, &[], *limit, None, &mut draw))
                .max()
                .unwrap_or(0),
        };
        sum += u128::from(end);
    }
    Some((sum / DRAWS as u128) as u64)
}

/// One draw of a stage of `n` hosts: canaries one at a time, the waves one
/// after the other, then `window` at a time (the next host starts as one
/// ends); no start sooner than `period` after the one before.
fn window_end(
    n: usize,
    canaries: usize,
    ramp: &[usize],
    window: usize,
    period: Option<Duration>,
    draw: &mut dyn FnMut() -> HostTime,
) -> u64 {
    let period = period.map_or(0, |p| u64::try_from(p.as_millis()).unwrap_or(u64::MAX));
    let mut last: Option<u64> = None;
    let mut start = |ready: u64| {
        let at = last.map_or(ready, |l| ready.max(l.saturating_add(period)));
        last = Some(at);
        at
    };
    let mut left = n;
    let mut now = 0u64;
    for _ in 0..canaries.min(left) {
        now = start(now) + draw().ms;
        left -= 1;
    }
    let mut window = window.max(1);
    for &wave in ramp {
        if left == 0 {
            break;
        }
        let k = wave.clamp(1, left);
        let (mut end, mut failed) = (now, false);
        for _ in 0..k {
            let t = draw();
            end = end.max(start(now) + t.ms);
            failed |= t.failed;
        }
        now = end;
        left -= k;
        if failed {
            // Growth stops at the size of a wave with a failure.
            window = k;
            break;
        }
    }
    let mut slots: BinaryHeap<Reverse<u64>> = (0..window.min(left)).map(|_| Reverse(now)).collect();
    for _ in 0..left {
        let Some(Reverse(free)) = slots.pop() else {
            break;
        };
        slots.push(Reverse(start(free) + draw().ms));
    }
    slots.into_iter().map(|r| r.0).max().unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::drill::Sample;
    use crate::sim::drill::tests::{inventory, playbook};

    /// 300 hosts in 15 racks of 20 (`rack`), 20 `misc` hosts with none; a
    /// `bmc` each.
    fn racks() -> Inventory {
        let mut inv = inventory(
            "version: 1\ndatacenters:\n  a:\n    hosts:\n      - name: \"n[000-299]\"\n        labels: { role: node }\n      - name: \"misc[01-20]\"\n        labels: { role: misc }\n",
        );
        for (i, h) in inv.hosts.iter_mut().enumerate() {
            if i < 300 {
                h.labels.insert("rack".into(), format!("r{:02}", i / 20));
            }
            let bmc = format!("10.9.{}.{}", i / 250, i % 250 + 1);
            h.labels.insert("bmc".into(), bmc);
        }
        inv
    }

    fn staged(text: &str, parallel: (Option<usize>, Option<usize>)) -> Vec<Replay> {
        let inv = racks();
        let plan = crate::plan::build(&playbook(text, &inv), &inv, None).unwrap();
        replays(
            &plan,
            &inv,
            &Sample::of(&plan, &inv, 0.1, 1).chosen,
            parallel,
        )
    }

    const RACKED: &str = "version: 1\nstages:\n  - name: nodes\n    select: { role: node }\n    parallel: 100%\n    max_unavailable: { rack: 2 }\n    steps: [ reboot ]\n";

    #[test]
    fn a_stage_its_racks_alone_pace_is_replayed_by_groups() {
        assert_eq!(
            staged(RACKED, (None, None)),
            [Replay {
                stage: "nodes".into(),
                hosts: 300,
                kept: 40,
                pace: Pace::Groups {
                    key: "rack".into(),
                    limit: 2,
                    sizes: vec![20; 15],
                    kept: 2,
                },
            }]
        );
        // 15 racks × 2 = 30 at once: a cap of 30 holds them, 29 does not.
        assert_eq!(staged(RACKED, (Some(30), Some(30))).len(), 1);
        for paced in [
            RACKED.replace("parallel: 100%", "parallel: 100%\n    canary: 1"),
            RACKED.replace("parallel: 100%", "parallel: [10, 100%]"),
            RACKED.replace("parallel: 100%", "parallel: 100%\n    rate: 1/s"),
            RACKED.replace("parallel: 100%", "parallel: 29"),
            // A host of another stage shares it.
            format!(
                "{RACKED}  - name: one\n    select: {{ name: \"n00[0-4]\" }}\n    steps: [ reboot ]\n"
            ),
        ] {
            let got = staged(&paced, (None, None));
            assert!(got.iter().all(|r| r.stage != "nodes"), "{paced}\n{got:?}");
        }
        assert_eq!(staged(RACKED, (Some(29), None)), []);
        assert_eq!(staged(RACKED, (None, Some(29))), []);
        // A host of another stage in one of its racks counts against the
        // same limit: the racks alone do not pace it.
        let mut inv = racks();
        inv.hosts[300].labels.insert("rack".into(), "r00".into());
        let text = format!(
            "{RACKED}  - name: misc\n    select: {{ role: misc }}\n    steps: [ reboot ]\n"
        );
        let plan = crate::plan::build(&playbook(&text, &inv), &inv, None).unwrap();
        let got = replays(
            &plan,
            &inv,
            &Sample::of(&plan, &inv, 0.1, 1).chosen,
            (None, None),
        );
        assert!(got.iter().all(|r| r.stage != "nodes"), "{got:?}");
    }

    #[test]
    fn a_stage_its_window_waves_and_rate_pace_is_replayed_as_a_window() {
        let text = "version: 1\nstages:\n  - name: misc\n    select: { role: misc }\n    parallel: [1, 2, 5]\n    canary: 1\n    rate: 2/s\n    steps: [ reboot ]\n";
        let got = staged(text, (None, None));
        assert_eq!(
            got,
            [Replay {
                stage: "misc".into(),
                hosts: 20,
                kept: 2,
                pace: Pace::Window {
                    canaries: 1,
                    ramp: vec![1, 2],
                    window: 5,
                    period: Some(Duration::from_millis(500)),
                },
            }]
        );
        assert_eq!(
            got[0].pace.describe(),
            "1 canary, waves of 1, 2, 5 at a time, a start every 500ms"
        );
        // A window wider than --parallel, a rate per rack, or a host of
        // another stage: the drill's time stands.
        assert_eq!(staged(text, (Some(4), None)), []);
        assert_eq!(
            staged(
                &text.replace("rate: 2/s", "rate: 2/s\n    rate_per: role"),
                (None, None)
            ),
            []
        );
        let powered = text.replace("steps: [ reboot ]", "steps: [ power_on ]");
        assert_eq!(staged(&powered, (None, None)), []);
        let shared = format!(
            "{text}  - name: again\n    after: [misc]\n    select: {{ name: misc01 }}\n    steps: [ reboot ]\n"
        );
        assert!(
            staged(&shared, (None, None))
                .iter()
                .all(|r| r.stage != "misc")
        );
        // The whole fleet: nothing to replay.
        let inv = racks();
        let plan = crate::plan::build(&playbook(text, &inv), &inv, None).unwrap();
        assert_eq!(
            replays(
                &plan,
                &inv,
                &Sample::of(&plan, &inv, 1.0, 1).chosen,
                (None, None)
            ),
            []
        );
    }

    fn ok(ms: u64) -> HostTime {
        HostTime {
            ms,
            failed: false,
            faulty: false,
        }
    }

    #[test]
    fn a_replay_starts_hosts_as_the_engine_paces_them() {
        let window = |canaries, ramp: &[usize], window, period| Pace::Window {
            canaries,
            ramp: ramp.to_vec(),
            window,
            period,
        };
        let one = [ok(1000)];
        // 20 hosts, 5 at a time: 4 rounds.
        assert_eq!(
            replay(&window(0, &[], 5, None), 20, &one, 0.0, 1),
            Some(4000)
        );
        // 2 canaries one at a time, waves of 1 and 2, then 5 at a time for
        // the 15 left: 2 + 1 + 1 + 3 rounds.
        assert_eq!(
            replay(&window(2, &[1, 2], 5, None), 20, &one, 0.0, 1),
            Some(7000)
        );
        // A start every 100 ms, 10 at once: the last of 10 starts at 900 ms.
        let paced = window(0, &[], 10, Some(Duration::from_millis(100)));
        assert_eq!(replay(&paced, 10, &one, 0.0, 1), Some(1900));
        // A failed wave stops the growth at its size: waves of 2 (failing)
        // then 2 at a time for the 8 left: 1 + 4 rounds.
        let failing = [HostTime {
            ms: 1000,
            failed: true,
            faulty: true,
        }];
        assert_eq!(
            replay(&window(0, &[2, 4], 10, None), 10, &failing, 0.0, 1),
            Some(5000)
        );
        // `n` racks of `size`, `limit` of each at a time.
        let racks = |n: usize, size: usize, limit: usize| Pace::Groups {
            key: "rack".into(),
            limit,
            sizes: vec![size; n],
            kept: 1,
        };
        // Groups: 100 racks of 20, 5 at a time: 4 rounds each.
        assert_eq!(
            replay(&racks(100, 20, 5), 2000, &[ok(90_000)], 0.0, 1),
            Some(360_000)
        );
        assert_eq!(replay(&racks(100, 20, 5), 2000, &[], 0.0, 1), None);
        // One host per group, 0 or 1000 ms at even odds: one group is slow
        // half the time; of ten, the slowest is slow unless all ten are fast.
        let coin = [ok(0), ok(1000)];
        let of1 = replay(&racks(1, 1, 1), 1, &coin, 0.0, 1).unwrap();
        assert!((400..=600).contains(&of1), "{of1}");
        assert!(replay(&racks(10, 1, 1), 10, &coin, 0.0, 1).unwrap() >= 990);
        // The slowest of 100 racks is slower than of 10, no slower than every
        // host slow; the same seed draws the same.
        let boots: Vec<HostTime> = [60, 75, 90, 105, 120].map(|s| ok(s * 1000)).to_vec();
        let of10 = replay(&racks(10, 20, 5), 200, &boots, 0.0, 1).unwrap();
        let of100 = replay(&racks(100, 20, 5), 2000, &boots, 0.0, 1).unwrap();
        assert!(of10 < of100 && of100 <= 480_000, "{of10} {of100}");
        assert_eq!(
            replay(&racks(100, 20, 5), 2000, &boots, 0.0, 1),
            Some(of100)
        );
        // One faulty host of ten, 60 s against 1 s: drawn at the fleet's
        // share (1 %), not the sample's (10 %), 10 hosts one at a time take
        // about 10 × (0.99 + 0.6) s.
        let mut sample = vec![ok(1000); 9];
        sample.push(HostTime {
            ms: 60_000,
            failed: true,
            faulty: true,
        });
        let serial = window(0, &[], 1, None);
        let fleet = replay(&serial, 10, &sample, 0.01, 1).unwrap();
        assert!((14_000..=18_000).contains(&fleet), "{fleet}");
        let as_sampled = replay(&serial, 10, &sample, 0.1, 1).unwrap();
        assert!((60_000..=78_000).contains(&as_sampled), "{as_sampled}");
        // Likewise a window: 200 hosts 20 at a time end later than 20 hosts
        // 2 at a time (the same rounds), with the same times.
        let wide = replay(&window(0, &[], 20, None), 200, &boots, 0.0, 1).unwrap();
        let narrow = replay(&window(0, &[], 2, None), 20, &boots, 0.0, 1).unwrap();
        assert!(narrow < wide, "{narrow} {wide}");
    }
}
