//! `rekindle audit`: checks the plan, the operator's belief about the order
//! of a restart, against what the fleet shows, before the fire. Read-only:
//! the only commands sent to hosts read the kernel's socket tables (and the
//! boot id, as `plan --preflight` does); nothing is changed anywhere.
//!
//! Owns the audit's findings (what, how bad, which hosts and stages, what to
//! change), the sampling of every host's sockets, and rekindle's own
//! dependencies (etcd, jump hosts, BMCs, name servers, webhooks, the bastion).
//! It must not schedule, retry or act: SSH is the transport's, the order is
//! the plan's.
//!
//! - [`sockets`]: `/proc/net/tcp` and `/proc/net/tcp6` as text.
//! - [`deps`]: connections into stage dependencies, checked against the plan.
//! - [`own`]: what rekindle itself needs during a recovery.
//! - [`bmc`]: the boot path through the BMCs (power-restore policy, power
//!   state, boot override).
//! - [`render`]: text for people, JSON for tools.

pub mod bmc;
pub mod deps;
pub mod own;
pub mod render;
pub mod sockets;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::select::Selector;
use crate::session::preflight::ProblemKind;
use crate::transport::{Connection, Connector};

/// Reads both socket tables. A host without IPv6 has no `/proc/net/tcp6`;
/// that is no error. A missing `/proc/net/tcp` shows as output without a
/// table, which [`read_host`] refuses.
pub const SOCKETS_COMMAND: &str = "cat /proc/net/tcp; cat /proc/net/tcp6 2>/dev/null || true";

/// A `cat` of two small files answers at once on a live host.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How bad a finding is. Errors make `audit` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a finding is about, in the order the report groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Stages that depend on each other.
    Cycle,
    /// A stage that uses another the plan does not start first.
    Order,
    /// rekindle's own dependency sits where the recovery cannot count on it.
    Recovery,
    /// What hosts do when power returns, and where they boot (read through BMCs).
    BootPath,
    /// A host could not be reached (as `plan --preflight` would say).
    Unreachable,
    /// A host answered, but its socket tables could not be read.
    Unreadable,
    /// A dependency on an inventory host no stage brings back.
    Unplanned,
    /// A dependency on an address outside the inventory.
    External,
    /// Hosts of one stage talk to each other.
    SameStage,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Cycle => "cycle",
            Kind::Order => "order",
            Kind::Recovery => "recovery-dependency",
            Kind::BootPath => "boot-path",
            Kind::Unreachable => "unreachable",
            Kind::Unreadable => "unreadable",
            Kind::Unplanned => "unplanned",
            Kind::External => "external",
            Kind::SameStage => "same-stage",
        }
    }
}

/// One thing the audit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub kind: Kind,
    pub message: String,
    pub stages: Vec<String>,
    /// Indices in `Inventory::hosts`.
    pub hosts: Vec<usize>,
    /// More lines: the edges of a cycle, an endpoint, a host's own error.
    pub details: Vec<String>,
    /// What to change; empty for information.
    pub fix: String,
}

/// What the audit reads and from where.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Socket-table reads per host (at least 1).
    pub samples: usize,
    /// Time between two reads of one host.
    pub interval: Duration,
    /// Hosts at once (connections held open while a host is sampled).
    pub parallel: usize,
    /// The site to assume lost, for rekindle's own dependencies.
    pub assume_lost: Option<Selector>,
    /// rekindle's own dependencies besides the inventory's.
    pub own: own::Sources,
    /// How to reach the BMCs (credentials, TLS trust).
    pub bmc: crate::session::BmcSettings,
}

/// One host's reading: its socket samples, or what stopped us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostReading {
    Read(Vec<Vec<sockets::Socket>>),
    /// Could not connect; as `plan --preflight` classifies it.
    Unreachable(ProblemKind, String),
    /// Connected, but a table could not be read or parsed.
    Unreadable(String),
}

/// Everything the audit learned, before it is judged.
pub struct Observations {
    /// Every host a stage selects, in inventory order, with its reading.
    pub readings: Vec<(usize, HostReading)>,
    /// Each inventory host's address as IP addresses.
    pub resolved: Vec<(usize, Vec<IpAddr>)>,
    /// rekindle's own dependencies, resolved.
    pub own: Vec<own::Dependency>,
    /// Every selected host with a `bmc` label, read through it.
    pub bmcs: Vec<(usize, bmc::BmcReading)>,
    /// Why the BMCs were not read at all, when they were not.
    pub bmc_skipped: Option<String>,
}

/// The audit's result.
pub struct Audit {
    pub findings: Vec<Finding>,
    pub dependencies: Vec<deps::Dependency>,
    pub hosts_selected: usize,
    pub hosts_read: usize,
}

impl Audit {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Every host some stage selects, once, in inventory order.
pub fn selected(plan: &Plan) -> Vec<usize> {
    let mut hosts: Vec<usize> = plan
        .stages
        .iter()
        .flat_map(|s| s.hosts.iter().copied())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
}

/// Reads every selected host (`settings.samples` reads each, `interval`
/// apart, over one connection), at most `settings.parallel` hosts at once,
/// and resolves the addresses the judgement needs.
pub async fn observe<C: Connector>(
    connector: Arc<C>,
    inventory: &Inventory,
    plan: &Plan,
    settings: &Settings,
) -> Observations {
    let hosts = selected(plan);
    let timeouts: BTreeMap<usize, Duration> = plan
        .stages
        .iter()
        .rev()
        .flat_map(|s| s.hosts.iter().map(move |&h| (h, s.connect_timeout)))
        .collect();
    let mut readings: Vec<(usize, HostReading)> = futures::stream::iter(hosts.iter().copied())
        .map(|h| {
            let connector = Arc::clone(&connector);
            let timeout = timeouts.get(&h).copied().unwrap_or(Duration::from_secs(10));
            async move {
                let reading = match inventory.hosts.get(h) {
                    Some(host) => read_host(&*connector, host, timeout, settings).await,
                    None => HostReading::Unreadable("not in the inventory".into()),
                };
                (h, reading)
            }
        })
        .buffer_unordered(settings.parallel.max(1))
        .collect()
        .await;
    readings.sort_by_key(|(h, _)| *h);
    // Every inventory host, selected or not: a dependency on one no stage
    // brings back must still be recognised as that host.
    let everyone: Vec<usize> = (0..inventory.hosts.len()).collect();
    let resolved = resolve_hosts(inventory, &everyone).await;
    let own = own::resolve(&settings.own, inventory, plan).await;
    Observations {
        readings,
        resolved,
        own,
        bmcs: Vec::new(),
        bmc_skipped: None,
    }
}

async fn read_host<C: Connector>(
    connector: &C,
    host: &crate::inventory::Host,
    timeout: Duration,
    settings: &Settings,
) -> HostReading {
    let session = match connector.connect(host, timeout).await {
        Ok(s) => s,
        Err(e) => return HostReading::Unreachable(ProblemKind::of(e.kind), e.message),
    };
    let mut samples = Vec::with_capacity(settings.samples);
    for i in 0..settings.samples.max(1) {
        if i > 0 {
            tokio::time::sleep(settings.interval).await;
        }
        let out = match session.exec(SOCKETS_COMMAND, READ_TIMEOUT).await {
            Ok(out) => out,
            Err(e) => return HostReading::Unreadable(format!("reading its sockets: {e}")),
        };
        if out.exit_status != Some(0) {
            return HostReading::Unreadable(format!(
                "`{SOCKETS_COMMAND}` exited with {}",
                out.exit_status
                    .map_or_else(|| "no status".to_owned(), |c| c.to_string())
            ));
        }
        if !out
            .output
            .lines()
            .any(|l| l.trim_start().starts_with("sl "))
        {
            return HostReading::Unreadable(
                "no socket table in the output of `cat /proc/net/tcp` (no /proc?)".into(),
            );
        }
        match sockets::parse(&out.output) {
            Ok(s) => samples.push(s),
            Err(e) => {
                return HostReading::Unreadable(format!("/proc/net/tcp does not parse: {e}"));
            }
        }
    }
    HostReading::Read(samples)
}

/// Each host's inventory address as IP addresses: a literal as itself, a
/// name through the bastion's resolver (a name that does not resolve has
/// none: the host is then known by the addresses its own sockets show).
async fn resolve_hosts(inventory: &Inventory, hosts: &[usize]) -> Vec<(usize, Vec<IpAddr>)> {
    futures::stream::iter(
        hosts
            .iter()
            .filter_map(|&h| Some((h, inventory.hosts.get(h)?))),
    )
    .map(|(h, host)| async move {
        let ips = crate::transport::resolve::lookup(&host.address, host.port)
            .await
            .map(|addrs| addrs.into_iter().map(|a| a.ip()).collect())
            .unwrap_or_default();
        (h, ips)
    })
    .buffered(64)
    .collect()
    .await
}

/// Judges what was observed: the dependency findings, rekindle's own, and
/// every host that could not be read. Pure.
pub fn judge(
    plan: &Plan,
    inventory: &Inventory,
    observed: &Observations,
    assume_lost: Option<&Selector>,
) -> Audit {
    let mut findings = Vec::new();
    let mut unreachable: BTreeMap<ProblemKind, Vec<(usize, &str)>> = BTreeMap::new();
    let mut unreadable: Vec<(usize, &str)> = Vec::new();
    let mut read = Vec::new();
    for (h, r) in &observed.readings {
        match r {
            HostReading::Read(samples) => read.push(deps::Reading { host: *h, samples }),
            HostReading::Unreachable(kind, message) => {
                unreachable.entry(*kind).or_default().push((*h, message))
            }
            HostReading::Unreadable(message) => unreadable.push((*h, message)),
        }
    }
    for (kind, hosts) in unreachable {
        findings.push(Finding {
            severity: Severity::Error,
            kind: Kind::Unreachable,
            message: format!(
                "{} not read: {} (a run would fail them the same way)",
                deps::plural(hosts.len(), "host"),
                kind.title()
            ),
            stages: Vec::new(),
            hosts: hosts.iter().map(|(h, _)| *h).collect(),
            details: host_lines(inventory, &hosts),
            fix: kind.fix().into(),
        });
    }
    if !unreadable.is_empty() {
        findings.push(Finding {
            severity: Severity::Warning,
            kind: Kind::Unreadable,
            message: format!(
                "{} answered, but the sockets could not be read: dependencies unknown",
                deps::plural(unreadable.len(), "host")
            ),
            stages: Vec::new(),
            hosts: unreadable.iter().map(|(h, _)| *h).collect(),
            details: host_lines(inventory, &unreadable),
            fix: "check that the login user can read /proc/net/tcp (a hardened /proc, hidepid, \
                  or a container without it)"
                .into(),
        });
    }
    let mut book = deps::AddressBook::new(&observed.resolved);
    let dependencies = deps::observe(&mut book, &read);
    findings.extend(deps::check(plan, inventory, &dependencies));
    findings.extend(own::check(
        plan,
        inventory,
        &book,
        &observed.own,
        assume_lost,
    ));
    findings.extend(bmc::check(plan, inventory, &observed.bmcs));
    if let Some(why) = &observed.bmc_skipped {
        let hosts = bmc::targets(plan, inventory);
        findings.push(Finding {
            severity: Severity::Warning,
            kind: Kind::BootPath,
            message: format!(
                "the boot path of {} with a `bmc` label was not read: {why}",
                deps::plural(hosts.len(), "host")
            ),
            stages: Vec::new(),
            hosts,
            details: Vec::new(),
            fix: "pass --bmc-credentials (and the TLS flags the BMCs need)".into(),
        });
    }
    findings.sort_by_key(|f| (f.severity, f.kind));
    Audit {
        findings,
        dependencies,
        hosts_selected: observed.readings.len(),
        hosts_read: read.len(),
    }
}

fn host_lines(inventory: &Inventory, hosts: &[(usize, &str)]) -> Vec<String> {
    hosts
        .iter()
        .map(|(h, m)| {
            let name = inventory.hosts.get(*h).map_or("?", |x| x.name.as_str());
            let m = m
                .strip_prefix(name)
                .and_then(|m| m.strip_prefix(": "))
                .unwrap_or(m);
            format!("{name}: {m}")
        })
        .collect()
}

/// The audit of `plan` on a runtime of its own (see [`observe`], [`judge`]).
pub fn run(
    ssh: crate::transport::ssh::SshOptions,
    plan: &Plan,
    inventory: &Inventory,
    settings: &Settings,
) -> anyhow::Result<Audit> {
    let connector = Arc::new(
        crate::transport::ssh::SshConnector::new(ssh).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    // The jump hosts as the connections will use them: the inventory's,
    // else ~/.ssh/config's ProxyJump.
    let jumps = selected(plan)
        .into_iter()
        .filter_map(|h| Some((h, connector.endpoint(inventory.hosts.get(h)?).ok()?.jump?)))
        .collect();
    // A host read holds one connection (two through a jump host): as many at
    // once as the descriptor limit leaves room for.
    let mut notes = Vec::new();
    let limit = crate::session::descriptors::raise_limit(&mut notes);
    let fit = crate::session::descriptors::fit(limit, 2, 0, None, 1).parallel;
    for n in notes {
        eprintln!("{n}");
    }
    let mut settings = Settings {
        parallel: settings.parallel.min(fit),
        ..settings.clone()
    };
    settings.own.jumps = Some(jumps);
    let mut observed = runtime.block_on(observe(connector, inventory, plan, &settings));
    let targets = bmc::targets(plan, inventory);
    if !targets.is_empty() {
        match crate::session::bmc_client_for(&targets, inventory, &settings.bmc) {
            Ok(client) => {
                let power = Arc::new(crate::engine::power::PowerControl::new(client));
                observed.bmcs =
                    runtime.block_on(bmc::read(power, inventory, &targets, settings.parallel));
            }
            Err(e) => observed.bmc_skipped = Some(format!("{e:#}")),
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(judge(
        plan,
        inventory,
        &observed,
        settings.assume_lost.as_ref(),
    ))
}

/// `/etc/resolv.conf`, where the bastion's name servers are.
pub fn default_resolv_conf() -> PathBuf {
    PathBuf::from("/etc/resolv.conf")
}
