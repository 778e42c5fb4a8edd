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
//!   (simulated commands take no time), `canary`, `max_unavailable`;
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

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{FaultKind, SimHost, mix};
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
}

/// The hosts a plan touches, as inventory indices in inventory order,
/// sampled to about `fraction` of them. Strata are (the set of stages that
/// select the host, `dc`, `role`); each non-empty stratum keeps
/// `round(fraction * size)` hosts and at least one, so every stage and every
/// (dc, role) pair stays represented. The choice inside a stratum is a
/// seeded hash of the host name: the same seed picks the same hosts.
pub fn sample_hosts(plan: &Plan, inventory: &Inventory, fraction: f64, seed: u64) -> Vec<usize> {
    let mut stages_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (s, stage) in plan.stages.iter().enumerate() {
        for &h in &stage.hosts {
            stages_of.entry(h).or_default().push(s);
        }
    }
    if fraction >= 1.0 {
        return stages_of.into_keys().collect();
    }
    type Stratum<'a> = (Vec<usize>, Option<&'a str>, Option<&'a str>);
    let mut strata: BTreeMap<Stratum<'_>, Vec<usize>> = BTreeMap::new();
    for (h, stages) in stages_of {
        let Some(host) = inventory.hosts.get(h) else {
            continue;
        };
        strata
            .entry((stages, host.label("dc"), host.label("role")))
            .or_default()
            .push(h);
    }
    let mut chosen = Vec::new();
    for mut members in strata.into_values() {
        let keep = ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len());
        members.sort_by_key(|&h| {
            let name = inventory.hosts.get(h).map_or("", |x| x.name.as_str());
            (mix(seed ^ fnv1a(name.as_bytes())), h)
        });
        chosen.extend(members.into_iter().take(keep));
    }
    chosen.sort_unstable();
    chosen
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
}

impl Sample {
    /// About `fraction` of the plan's hosts ([`sample_hosts`]), with the
    /// fractions the sample really kept, whole and per stage.
    pub fn of(plan: &Plan, inventory: &Inventory, fraction: f64, seed: u64) -> Sample {
        let chosen = sample_hosts(plan, inventory, fraction, seed);
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
        }
    }
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
        stage.rate = stage.rate.map(|rate| scale_rate(rate, r.speed * sample));
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
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::diag::Sources;

    fn inventory(yaml: &str) -> Inventory {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yaml");
        std::fs::write(&path, yaml).unwrap();
        let mut sources = Sources::new();
        crate::inventory::load(&[path.to_string_lossy().into_owned()], &mut sources)
            .unwrap()
            .0
    }

    fn playbook(yaml: &str, inv: &Inventory) -> Playbook {
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
