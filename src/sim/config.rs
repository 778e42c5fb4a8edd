//! The simulated fleet's shape: hosts, faults, boot times, ports, its BMCs'
//! settings and vendor profiles ([`BmcProfile`]), and the deterministic
//! placement of faults by seed. Pure data and parsing; no I/O. The modules
//! that run the fleet read it; it imports none of them (only `deps`, data).

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::SimError;
use crate::time::{Fractions, parse_duration_as};

/// Hosts per worker process by default: 2 listeners per host plus sessions
/// must stay well under the 20,000 descriptors one process may hold.
pub const DEFAULT_SHARD_SIZE: usize = 6000;
/// Hosts per worker process at most when powered off: each host also holds
/// a BMC listener, 3 listeners per host once it is on.
pub const POWERED_OFF_SHARD_SIZE: usize = 4000;

/// A fault injected into a fraction of the fleet (at most one per host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// After a reboot the host never comes back.
    NeverReturns,
    /// Comes back, but `systemctl is-active`/`is-system-running` and HTTP say unhealthy.
    Unhealthy,
    /// Boot time times five.
    SlowBoot,
    /// Accepts TCP but never completes the SSH handshake.
    HangHandshake,
    /// Comes back, goes away again once or twice (same boot id), then stays.
    Flap,
    /// The reboot command answers 0 and does nothing: the boot id stays.
    NoReboot,
    /// The BMC refuses connections for `FleetConfig::bmc_outage`, then answers
    /// (power returning in stages).
    BmcUnreachable,
    /// A power-on is accepted, but the host stays in PoweringOn forever.
    StuckPoweringOn,
    /// The BMC rejects the fleet's BMC credentials.
    BmcBadCredentials,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::NeverReturns,
        FaultKind::Unhealthy,
        FaultKind::SlowBoot,
        FaultKind::HangHandshake,
        FaultKind::Flap,
        FaultKind::NoReboot,
        FaultKind::BmcUnreachable,
        FaultKind::StuckPoweringOn,
        FaultKind::BmcBadCredentials,
    ];

    /// Faults of the simulated BMCs, which exist only in powered-off fleets.
    pub fn needs_bmc(self) -> bool {
        matches!(
            self,
            FaultKind::BmcUnreachable | FaultKind::StuckPoweringOn | FaultKind::BmcBadCredentials
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::NeverReturns => "never_returns",
            FaultKind::Unhealthy => "unhealthy",
            FaultKind::SlowBoot => "slow_boot",
            FaultKind::HangHandshake => "hang_handshake",
            FaultKind::Flap => "flap",
            FaultKind::NoReboot => "no_reboot",
            FaultKind::BmcUnreachable => "bmc_unreachable",
            FaultKind::StuckPoweringOn => "stuck_powering_on",
            FaultKind::BmcBadCredentials => "bmc_bad_credentials",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultKind {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names = FaultKind::ALL.map(FaultKind::as_str);
                let hint = crate::diag::suggest(s, names)
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                SimError::config(format!(
                    "unknown fault kind `{s}`{hint}; known: {}",
                    names.join(", ")
                ))
            })
    }
}

/// Faults by fraction: `never_returns=0.01,unhealthy=0.02`. Each may add
/// `:recover=P`, the chance that a BMC power cycle cures a host of it
/// (`never_returns` and `stuck_powering_on` only; default 0).
pub fn parse_faults(input: &str) -> Result<Vec<(FaultKind, f64)>, SimError> {
    Ok(parse_fail(input)?.faults)
}

/// What `--fail` says: faults by fraction, and the recovery chance per
/// power cycle for the faults that gave one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailSpec {
    pub faults: Vec<(FaultKind, f64)>,
    pub recover: Vec<(FaultKind, f64)>,
}

/// Faults that a BMC power cycle may cure (`:recover=P`).
pub fn cycle_may_cure(kind: FaultKind) -> bool {
    matches!(kind, FaultKind::NeverReturns | FaultKind::StuckPoweringOn)
}

/// `KIND=FRACTION[:recover=P],...`, e.g. `never_returns=0.01:recover=0.5`.
pub fn parse_fail(input: &str) -> Result<FailSpec, SimError> {
    let mut out: Vec<(FaultKind, f64)> = Vec::new();
    let mut recover: Vec<(FaultKind, f64)> = Vec::new();
    for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (part, options) = match part.split_once(':') {
            Some((p, o)) => (p.trim(), Some(o.trim())),
            None => (part, None),
        };
        let Some((kind, fraction)) = part.split_once('=') else {
            return Err(SimError::config(format!(
                "`{part}` is not KIND=FRACTION (e.g. never_returns=0.01)"
            )));
        };
        let kind: FaultKind = kind.trim().parse()?;
        let fraction = parse_fraction(fraction.trim()).ok_or_else(|| {
            SimError::config(format!(
                "`{part}`: fraction must be in 0..=1 or a percentage"
            ))
        })?;
        if out.iter().any(|(k, _)| *k == kind) {
            return Err(SimError::config(format!("fault `{kind}` given twice")));
        }
        out.push((kind, fraction));
        if let Some(options) = options {
            let chance = options
                .strip_prefix("recover=")
                .ok_or_else(|| {
                    SimError::config(format!(
                        "`{part}:{options}`: the one option is `:recover=P` (e.g. never_returns=0.01:recover=0.5)"
                    ))
                })?
                .trim();
            if !cycle_may_cure(kind) {
                return Err(SimError::config(format!(
                    "`{part}:{options}`: only never_returns and stuck_powering_on hosts can recover by a power cycle"
                )));
            }
            let p = parse_fraction(chance).ok_or_else(|| {
                SimError::config(format!(
                    "`{part}:{options}`: recover must be a chance in 0..=1 or a percentage"
                ))
            })?;
            recover.push((kind, p));
        }
    }
    let total: f64 = out.iter().map(|(_, f)| f).sum();
    if total > 1.0 + 1e-9 {
        return Err(SimError::config(format!(
            "fault fractions add up to {total}, more than the whole fleet"
        )));
    }
    Ok(FailSpec {
        faults: out,
        recover,
    })
}

fn parse_fraction(s: &str) -> Option<f64> {
    let value = match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => s.parse::<f64>().ok()?,
    };
    (value.is_finite() && (0.0..=1.0).contains(&value)).then_some(value)
}

/// Sessions of a host are dropped this long after it accepts a reboot, so the
/// reboot command's own exit status reaches the client first (the host's
/// shutdown, as far as a client sees it). A drill divides it by its speed
/// like the boot time, or every reboot would count a tenth of a second ten
/// times over.
pub const REBOOT_GRACE: Duration = Duration::from_millis(100);

/// A boot time, fixed or drawn uniformly from a range per reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootTimeRange {
    pub min: Duration,
    pub max: Duration,
}

impl BootTimeRange {
    pub fn fixed(d: Duration) -> Self {
        BootTimeRange { min: d, max: d }
    }

    /// `20s`, `1.5s`, `500ms`, `2m`, or a range `20s..60s`.
    pub fn parse(input: &str) -> Result<BootTimeRange, SimError> {
        let bad = || {
            SimError::config(format!(
                "bad boot time `{input}` (e.g. `30s` or `20s..60s`)"
            ))
        };
        let (min, max) = match input.split_once("..") {
            Some((a, b)) => (
                parse_duration_as(a.trim(), Fractions::Allowed).map_err(|_| bad())?,
                parse_duration_as(b.trim(), Fractions::Allowed).map_err(|_| bad())?,
            ),
            None => {
                let d = parse_duration_as(input.trim(), Fractions::Allowed).map_err(|_| bad())?;
                (d, d)
            }
        };
        if min > max {
            return Err(SimError::config(format!(
                "boot time range `{input}` runs backwards"
            )));
        }
        Ok(BootTimeRange { min, max })
    }

    /// The boot time of a host's `boot`-th boot: deterministic in (seed, host, boot).
    pub fn sample(&self, seed: u64, host: usize, boot: u32) -> Duration {
        if self.min == self.max {
            return self.min;
        }
        let span = (self.max - self.min).as_millis() as u64;
        let r =
            mix(seed ^ (host as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(boot) << 48);
        self.min + Duration::from_millis(r % (span + 1))
    }
}

/// splitmix64: a cheap, well-mixed hash so placements need no per-host RNG state.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One host to simulate: its name and labels (the address is assigned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimHost {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl SimHost {
    /// `sim-00001`.. with dc=sim, rack=r01.. (40 hosts per rack), role=app.
    pub fn numbered(n: usize) -> Vec<SimHost> {
        (0..n)
            .map(|i| SimHost {
                name: format!("sim-{:05}", i + 1),
                labels: BTreeMap::from([
                    ("dc".to_owned(), "sim".to_owned()),
                    ("rack".to_owned(), format!("r{:02}", i / 40 + 1)),
                    ("role".to_owned(), "app".to_owned()),
                ]),
            })
            .collect()
    }
}

/// The BMC side of a powered-off fleet, shared by every host of a process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BmcConfig {
    pub port: u16,
    pub user: String,
    /// The default account's password.
    pub password: String,
    /// Passwords of the named entries (`bmc_credentials` label values).
    #[serde(default)]
    pub accounts: std::collections::BTreeMap<String, String>,
    pub power_on_delay: Duration,
    pub outage: Duration,
    #[serde(default)]
    pub profile: BmcProfile,
}

/// How a simulated BMC behaves (`sim --bmc-profile`). Not firmware
/// replicas: each bundles behaviours a client must handle, named after the
/// vendor family it is modelled on (docs/bmc.md says which are documented
/// and which are modelled for coverage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BmcProfile {
    /// rekindle's own: `System.Embedded.1`, sessions, 204.
    #[default]
    Generic,
    /// iDRAC-like: `System.Embedded.1`, 409 to `On` when already On.
    Dell,
    /// iLO-like: system `1`, 200 with a message to a reset, 400 to `On`
    /// when already On, the first two logins refused with
    /// `SessionLimitExceeded` (sessions of other tools not yet expired).
    Hpe,
    /// system `1`, a session without a `Location` header (only its
    /// `@odata.id` in the body).
    Supermicro,
    /// bmcweb-like: system `system`, 503 with `Retry-After: 1` to the first
    /// two requests (the BMC still starting after power returned).
    Openbmc,
    /// XCC-like: system `1`, no `On` among the allowed reset types (only
    /// `ForceOn`), a reset answered 202 Accepted with a task monitor.
    Lenovo,
}

impl BmcProfile {
    pub const NAMES: [&str; 6] = ["generic", "dell", "hpe", "supermicro", "openbmc", "lenovo"];

    pub fn parse(name: &str) -> Result<BmcProfile, String> {
        Ok(match name {
            "generic" => BmcProfile::Generic,
            "dell" => BmcProfile::Dell,
            "hpe" => BmcProfile::Hpe,
            "supermicro" => BmcProfile::Supermicro,
            "openbmc" => BmcProfile::Openbmc,
            "lenovo" => BmcProfile::Lenovo,
            other => {
                return Err(format!(
                    "unknown BMC profile `{other}` (one of: {})",
                    BmcProfile::NAMES.join(", ")
                ));
            }
        })
    }

    /// The one system's id.
    pub(super) fn system_id(self) -> &'static str {
        match self {
            BmcProfile::Generic | BmcProfile::Dell => "System.Embedded.1",
            BmcProfile::Openbmc => "system",
            BmcProfile::Hpe | BmcProfile::Supermicro | BmcProfile::Lenovo => "1",
        }
    }

    pub(super) fn allowed_resets(self) -> &'static [&'static str] {
        match self {
            BmcProfile::Generic => &[
                "On",
                "ForceOn",
                "ForceRestart",
                "GracefulRestart",
                "PowerCycle",
            ],
            BmcProfile::Dell => &[
                "On",
                "ForceOff",
                "ForceRestart",
                "GracefulRestart",
                "GracefulShutdown",
                "PushPowerButton",
                "Nmi",
                "PowerCycle",
            ],
            BmcProfile::Hpe => &[
                "On",
                "ForceOff",
                "GracefulShutdown",
                "ForceRestart",
                "Nmi",
                "PushPowerButton",
                "GracefulRestart",
            ],
            BmcProfile::Supermicro => &[
                "On",
                "ForceOff",
                "GracefulShutdown",
                "GracefulRestart",
                "ForceRestart",
                "Nmi",
                "ForceOn",
            ],
            BmcProfile::Openbmc => &[
                "On",
                "ForceOff",
                "ForceOn",
                "ForceRestart",
                "GracefulRestart",
                "GracefulShutdown",
                "PowerCycle",
                "Nmi",
            ],
            BmcProfile::Lenovo => &[
                "Nmi",
                "GracefulShutdown",
                "GracefulRestart",
                "ForceOn",
                "ForceOff",
                "ForceRestart",
            ],
        }
    }

    /// Requests answered 503 (`Openbmc`) or logins refused as a full session
    /// table (`Hpe`) before the BMC serves normally.
    pub(super) fn busy_answers(self) -> u32 {
        match self {
            BmcProfile::Openbmc | BmcProfile::Hpe => 2,
            _ => 0,
        }
    }
}

/// Everything [`super::Fleet::start`] needs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub hosts: Vec<SimHost>,
    /// SSH port on every host address.
    pub port: u16,
    /// HTTP health port on every host address.
    pub http_port: u16,
    pub boot_time: BootTimeRange,
    pub faults: Vec<(FaultKind, f64)>,
    /// Each host's fault, chosen by the caller (a drill places them per
    /// stage); `None`: `faults` placed by `seed` ([`place_faults`]).
    pub placed_faults: Option<Vec<Option<FaultKind>>>,
    /// Per fault, the chance that a BMC power cycle cures a host of it.
    pub recover: Vec<(FaultKind, f64)>,
    pub seed: u64,
    /// Where inventory.yaml, known_hosts, id_ed25519 and status.json go.
    pub out: PathBuf,
    /// Hosts per worker process; a fleet that fits in one shard runs in-process.
    pub shard_size: usize,
    /// The `rekindle` binary to run workers with; `None`: this executable.
    pub worker_exe: Option<PathBuf>,
    /// The first host address; later ones count up, skipping .0 and .255.
    pub first_address: Ipv4Addr,
    /// Every host starts powered off (SSH and HTTP refuse) with a Redfish
    /// BMC on `bmc_port` of its address; DIR/bmc-credentials is written.
    pub powered_off: bool,
    /// Every host has a Redfish BMC on `bmc_port`, and starts up unless
    /// `powered_off` (which implies BMCs).
    pub bmcs: bool,
    /// The BMC port on every host address (fleets with BMCs only).
    pub bmc_port: u16,
    /// How long a BMC stays in PoweringOn before the host boots.
    pub power_on_delay: Duration,
    /// How long a host takes to go away after it accepts a reboot.
    pub reboot_grace: Duration,
    /// How long a `bmc_unreachable` BMC refuses connections after the start.
    pub bmc_outage: Duration,
    /// How every BMC behaves (`--bmc-profile`).
    pub bmc_profile: BmcProfile,
    /// Connections between hosts (`sim --deps`), shown in their `/proc/net/tcp`.
    pub deps: Vec<super::deps::Edge>,
}

impl FleetConfig {
    /// Whether every host has a simulated BMC.
    pub fn has_bmcs(&self) -> bool {
        self.powered_off || self.bmcs
    }

    /// Defaults for a fleet of `hosts`: port 22/8080 as root, else 2222/8081.
    pub fn new(hosts: Vec<SimHost>, out: PathBuf) -> Self {
        let root = is_root();
        FleetConfig {
            hosts,
            port: if root { 22 } else { 2222 },
            http_port: if root { 8080 } else { 8081 },
            boot_time: BootTimeRange::default(),
            faults: Vec::new(),
            placed_faults: None,
            recover: Vec::new(),
            seed: 1,
            out,
            shard_size: DEFAULT_SHARD_SIZE,
            worker_exe: None,
            first_address: Ipv4Addr::new(127, 1, 0, 1),
            powered_off: false,
            bmcs: false,
            bmc_port: if root { 443 } else { 8443 },
            power_on_delay: Duration::from_secs(1),
            reboot_grace: REBOOT_GRACE,
            bmc_outage: Duration::from_secs(10),
            bmc_profile: BmcProfile::default(),
            deps: Vec::new(),
        }
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `i`-th host address after `first`, skipping .0 and .255 last octets.
pub fn host_address(first: Ipv4Addr, i: usize) -> Result<Ipv4Addr, SimError> {
    let [a, b, c, d] = first.octets();
    if a != 127 || d == 0 || d == 255 {
        return Err(SimError::config(format!(
            "first address {first} must be 127.x.y.z with z in 1..=254"
        )));
    }
    // Count in a base-254 space of usable last octets.
    let start = (u64::from(b) * 256 + u64::from(c)) * 254 + u64::from(d - 1);
    let n = start + i as u64;
    let (rest, last) = (n / 254, n % 254);
    let (b, c) = (rest / 256, rest % 256);
    if b > 255 {
        return Err(SimError::config("too many hosts for 127.0.0.0/8"));
    }
    Ok(Ipv4Addr::new(127, b as u8, c as u8, last as u8 + 1))
}

/// Assigns faults to exact counts of hosts (`round(fraction * n)` each), placed
/// by a seeded shuffle so the same seed gives the same faulty hosts.
pub fn place_faults(n: usize, faults: &[(FaultKind, f64)], seed: u64) -> Vec<Option<FaultKind>> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut out = vec![None; n];
    let mut next = order.into_iter();
    for &(kind, fraction) in faults {
        let count = (fraction * n as f64).round() as usize;
        for idx in next.by_ref().take(count) {
            out[idx] = Some(kind);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_octets() {
        let first = Ipv4Addr::new(127, 1, 0, 1);
        assert_eq!(host_address(first, 0).unwrap(), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(
            host_address(first, 253).unwrap(),
            Ipv4Addr::new(127, 1, 0, 254)
        );
        assert_eq!(
            host_address(first, 254).unwrap(),
            Ipv4Addr::new(127, 1, 1, 1)
        );
        assert_eq!(
            host_address(first, 254 * 256).unwrap(),
            Ipv4Addr::new(127, 2, 0, 1)
        );
        assert!(host_address(Ipv4Addr::new(10, 0, 0, 1), 0).is_err());
    }

    #[test]
    fn faults_parse_and_are_checked() {
        let f = parse_faults("never_returns=0.01, unhealthy=5%").unwrap();
        assert_eq!(
            f,
            vec![
                (FaultKind::NeverReturns, 0.01),
                (FaultKind::Unhealthy, 0.05)
            ]
        );
        let e = parse_faults("never_return=0.1").unwrap_err().to_string();
        assert!(e.contains("did you mean `never_returns`"), "{e}");
        assert!(parse_faults("flap=2").is_err());
        assert!(parse_faults("flap=0.6,no_reboot=0.6").is_err());
        assert!(parse_faults("flap").is_err());
        let f = parse_fail(
            "never_returns=0.01:recover=0.5, stuck_powering_on=2%:recover=100%, slow_boot=0.1",
        )
        .unwrap();
        assert_eq!(f.faults.len(), 3);
        assert_eq!(
            f.recover,
            [
                (FaultKind::NeverReturns, 0.5),
                (FaultKind::StuckPoweringOn, 1.0)
            ]
        );
        assert_eq!(
            parse_faults("never_returns=0.01:recover=0.5").unwrap(),
            [(FaultKind::NeverReturns, 0.01)]
        );
        let e = parse_fail("slow_boot=0.1:recover=0.5")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only never_returns and stuck_powering_on"),
            "{e}"
        );
        let e = parse_fail("never_returns=0.1:recover=2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("recover must be a chance"), "{e}");
        let e = parse_fail("never_returns=0.1:cure=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the one option is `:recover=P`"), "{e}");
    }

    #[test]
    fn fault_placement_is_exact_and_deterministic() {
        let faults = [(FaultKind::NoReboot, 0.1), (FaultKind::Flap, 0.05)];
        let a = place_faults(200, &faults, 7);
        assert_eq!(a, place_faults(200, &faults, 7));
        assert_ne!(a, place_faults(200, &faults, 8));
        let count = |k| a.iter().filter(|f| **f == Some(k)).count();
        assert_eq!(count(FaultKind::NoReboot), 20);
        assert_eq!(count(FaultKind::Flap), 10);
    }

    #[test]
    fn boot_times_parse_and_sample_in_range() {
        let b = BootTimeRange::parse("20s..60s").unwrap();
        assert_eq!(b.min, Duration::from_secs(20));
        for host in 0..100 {
            let d = b.sample(1, host, 1);
            assert!(d >= b.min && d <= b.max);
            assert_eq!(d, b.sample(1, host, 1));
        }
        assert_eq!(
            BootTimeRange::parse("500ms").unwrap(),
            BootTimeRange::fixed(Duration::from_millis(500))
        );
        assert!(BootTimeRange::parse("60s..20s").is_err());
        assert!(BootTimeRange::parse("soon").is_err());
    }
}
