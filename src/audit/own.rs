//! What rekindle itself needs while it brings the fleet back: the etcd that
//! keeps the run, the jump hosts and BMCs it reaches hosts through, the name
//! servers the bastion resolves with, the webhooks it notifies, and the
//! bastion it runs on. Each is matched against the inventory: one that sits
//! in the site assumed lost, or on a host the plan restarts, is a finding.
//!
//! Owns the list of those dependencies and their judgement. It must not
//! connect to any of them (the audit is read-only; reaching them is the
//! run's business) beyond resolving names.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use super::deps::AddressBook;
use super::{Finding, Kind, Severity};
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::select::Selector;

/// Where rekindle's own dependencies are named, besides the inventory.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--etcd` client endpoints (`http(s)://host:port`).
    pub etcd: Vec<String>,
    /// `--notify` webhook URLs.
    pub notify: Vec<String>,
    /// The bastion's resolver configuration (`/etc/resolv.conf`).
    pub resolv_conf: Option<PathBuf>,
    /// The bastion's host name and its interfaces' addresses.
    pub bastion: Option<(String, Vec<IpAddr>)>,
    /// Each selected host's jump chain as rekindle would use it (the
    /// inventory's, else `~/.ssh/config`'s ProxyJump); `None`: the
    /// inventory's `jump` alone.
    pub jumps: Option<Vec<(usize, String)>>,
}

/// What a dependency is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Bastion,
    Etcd,
    Jump,
    Bmc,
    NameServer,
    Notify,
}

impl Role {
    fn noun(self) -> &'static str {
        match self {
            Role::Bastion => "bastion",
            Role::Etcd => "etcd member",
            Role::Jump => "jump host",
            Role::Bmc => "BMC",
            Role::NameServer => "name server",
            Role::Notify => "--notify webhook",
        }
    }
}

/// One thing rekindle needs, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub role: Role,
    /// As written (a URL, `user@host:port`, an address), for the report.
    pub endpoint: String,
    /// The host part of `endpoint`.
    pub host: String,
    pub ips: Vec<IpAddr>,
    /// Hosts reached through it (jump hosts and BMCs), indices in the inventory.
    pub serves: Vec<usize>,
}

/// The host part of a URL, of `user@host:port`, or of a bare name.
fn host_part(endpoint: &str) -> Option<String> {
    let e = endpoint.trim();
    let url = if e.contains("://") {
        e.to_owned()
    } else {
        format!("ssh://{e}")
    };
    let parsed = reqwest::Url::parse(&url).ok()?;
    let host = parsed.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| host.to_owned())
}

/// `nameserver` lines of a resolv.conf.
fn name_servers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next()? == "nameserver").then(|| words.next().map(str::to_owned))?
        })
        .collect()
}

/// Every dependency of the recovery, with its names resolved.
pub async fn resolve(sources: &Sources, inventory: &Inventory, plan: &Plan) -> Vec<Dependency> {
    let mut found: BTreeMap<(Role, String), Vec<usize>> = BTreeMap::new();
    for e in &sources.etcd {
        found.entry((Role::Etcd, e.clone())).or_default();
    }
    for n in &sources.notify {
        found.entry((Role::Notify, n.clone())).or_default();
    }
    if let Some(path) = &sources.resolv_conf
        && let Ok(text) = std::fs::read_to_string(path)
    {
        for ns in name_servers(&text) {
            found.entry((Role::NameServer, ns)).or_default();
        }
    }
    let bmc_hosts: BTreeSet<usize> = plan.bmc_hosts().into_iter().collect();
    let jumps: Vec<(usize, String)> = match &sources.jumps {
        Some(j) => j.clone(),
        None => super::selected(plan)
            .into_iter()
            .filter_map(|h| Some((h, inventory.hosts.get(h)?.jump.clone()?)))
            .collect(),
    };
    for (h, jump) in jumps {
        for hop in jump.split(',') {
            found
                .entry((Role::Jump, hop.trim().to_owned()))
                .or_default()
                .push(h);
        }
    }
    for h in super::selected(plan) {
        let Some(host) = inventory.hosts.get(h) else {
            continue;
        };
        if bmc_hosts.contains(&h)
            && let Some(bmc) = host.label("bmc")
        {
            found
                .entry((Role::Bmc, bmc.to_owned()))
                .or_default()
                .push(h);
        }
    }
    let mut out = Vec::new();
    if let Some((name, ips)) = &sources.bastion {
        out.push(Dependency {
            role: Role::Bastion,
            endpoint: name.clone(),
            host: name.clone(),
            ips: ips.clone(),
            serves: Vec::new(),
        });
    }
    for ((role, endpoint), serves) in found {
        let Some(host) = host_part(&endpoint) else {
            continue;
        };
        let ips = crate::transport::resolve::lookup(&host, 0)
            .await
            .map(|a| a.into_iter().map(|a| a.ip()).collect())
            .unwrap_or_default();
        out.push(Dependency {
            role,
            endpoint,
            host,
            ips,
            serves,
        });
    }
    out
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The inventory hosts a dependency is: by name, address, or an address
/// the host's own sockets showed. The bastion also matches a host whose
/// name's first label is the bastion's short host name.
fn hosts_of(d: &Dependency, inventory: &Inventory, book: &AddressBook) -> BTreeSet<usize> {
    let mut out: BTreeSet<usize> = d.ips.iter().filter_map(|ip| book.host(*ip)).collect();
    for (i, h) in inventory.hosts.iter().enumerate() {
        let short = h.name.split('.').next().unwrap_or(&h.name);
        if same_name(&h.name, &d.host)
            || same_name(&h.address, &d.host)
            || (d.role == Role::Bastion && same_name(short, &d.host))
        {
            out.insert(i);
        }
    }
    out
}

/// rekindle's own dependencies against the site assumed lost (every one in
/// it is an error; etcd by quorum) or, without one, against the hosts the
/// plan restarts.
pub fn check(
    plan: &Plan,
    inventory: &Inventory,
    book: &AddressBook,
    deps: &[Dependency],
    assume_lost: Option<&Selector>,
) -> Vec<Finding> {
    let home = super::deps::home_stages(plan);
    let name = |h: usize| inventory.hosts[h].name.clone();
    let lost = |h: &usize| assume_lost.is_some_and(|sel| sel.matches(&inventory.hosts[*h]));
    let mut findings = Vec::new();

    let etcd: Vec<(&Dependency, BTreeSet<usize>)> = deps
        .iter()
        .filter(|d| d.role == Role::Etcd)
        .map(|d| (d, hosts_of(d, inventory, book)))
        .collect();
    if let Some(sel) = assume_lost
        && !etcd.is_empty()
    {
        let members = etcd.len();
        let in_lost: Vec<&(&Dependency, BTreeSet<usize>)> =
            etcd.iter().filter(|(_, hs)| hs.iter().any(lost)).collect();
        let quorum = members / 2 + 1;
        if !in_lost.is_empty() {
            let survives = members - in_lost.len() >= quorum;
            findings.push(Finding {
                severity: if survives {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                kind: Kind::Recovery,
                message: format!(
                    "the etcd quorum has {} of {members} members in the site assumed lost ({sel}){}",
                    in_lost.len(),
                    if survives {
                        ": it keeps quorum, with less to spare"
                    } else {
                        ": without them etcd elects no leader, and no bastion can drive a run kept there"
                    }
                ),
                stages: Vec::new(),
                hosts: in_lost.iter().flat_map(|(_, hs)| hs.iter().copied()).collect(),
                details: in_lost
                    .iter()
                    .map(|(d, hs)| {
                        let names: Vec<String> = hs.iter().map(|&h| name(h)).collect();
                        format!("{} is {}", d.endpoint, names.join(", "))
                    })
                    .collect(),
                fix: format!(
                    "run the members of the standby's etcd outside {sel}, a majority ({quorum} of {members}) at least"
                ),
            });
        }
    }

    for d in deps {
        let hosts = hosts_of(d, inventory, book);
        if d.role != Role::Etcd
            && let Some(sel) = assume_lost
        {
            let gone: Vec<usize> = hosts.iter().copied().filter(|h| lost(h)).collect();
            if !gone.is_empty() {
                let names: Vec<String> = gone.iter().map(|&h| name(h)).collect();
                let (message, fix) = if d.role == Role::Bastion {
                    (
                        format!(
                            "this bastion ({}) is {}, in the site assumed lost ({sel})",
                            d.endpoint,
                            names.join(", ")
                        ),
                        "run the recovery from a standby bastion outside that site".to_owned(),
                    )
                } else {
                    (
                        format!(
                            "rekindle's {} {} is {}, in the site assumed lost ({sel}){}",
                            d.role.noun(),
                            d.endpoint,
                            names.join(", "),
                            served(d.serves.len())
                        ),
                        format!("keep a {} for the recovery outside {sel}", d.role.noun()),
                    )
                };
                findings.push(Finding {
                    severity: Severity::Error,
                    kind: Kind::Recovery,
                    message,
                    stages: Vec::new(),
                    hosts: gone
                        .iter()
                        .copied()
                        .chain(d.serves.iter().copied())
                        .collect(),
                    details: Vec::new(),
                    fix,
                });
                continue;
            }
        }
        // An etcd member in the lost site is already counted in the quorum finding.
        let restarted: Vec<(usize, usize)> = hosts
            .iter()
            .filter(|h| !(d.role == Role::Etcd && lost(h)))
            .filter_map(|h| home.get(h).map(|s| (*h, *s)))
            .collect();
        if restarted.is_empty() {
            continue;
        }
        let names: Vec<String> = restarted.iter().map(|(h, _)| name(*h)).collect();
        let stages: Vec<String> = restarted
            .iter()
            .map(|(_, s)| plan.stages[*s].name.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (severity, message, fix) = if d.role == Role::Bastion {
            (
                Severity::Error,
                format!(
                    "this bastion ({}) is {}, which stage {} restarts: rekindle would restart the machine it runs on",
                    d.endpoint,
                    names.join(", "),
                    stages.join(", ")
                ),
                "run rekindle from another bastion, or leave this host out (--limit)".to_owned(),
            )
        } else {
            (
                Severity::Warning,
                format!(
                    "rekindle's {} {} is {}, which stage {} restarts{}",
                    d.role.noun(),
                    d.endpoint,
                    names.join(", "),
                    stages.join(", "),
                    served(d.serves.len())
                ),
                format!(
                    "make sure stage {} brings it back before rekindle needs it, or use one the plan does not restart",
                    stages.join(", "),
                ),
            )
        };
        findings.push(Finding {
            severity,
            kind: Kind::Recovery,
            message,
            stages,
            hosts: restarted.iter().map(|(h, _)| *h).collect(),
            details: Vec::new(),
            fix,
        });
    }
    findings
}

fn served(n: usize) -> String {
    match n {
        0 => String::new(),
        1 => ": 1 host is reached through it".into(),
        n => format!(": {n} hosts are reached through it"),
    }
}

/// This machine's host name and the addresses of its interfaces.
pub fn bastion() -> (String, Vec<IpAddr>) {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    (name, interface_addresses())
}

/// Every address of this machine's interfaces (getifaddrs), loopback aside.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; we only read
    // the fields it documents, and only while the list is alive.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out.retain(|ip| !ip.is_loopback());
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parts_of_what_operators_write() {
        assert_eq!(host_part("https://etcd1:2379").as_deref(), Some("etcd1"));
        assert_eq!(
            host_part("ops@jump.example.net:2222").as_deref(),
            Some("jump.example.net")
        );
        assert_eq!(host_part("10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(
            host_part("ipmi://10.0.0.6:623").as_deref(),
            Some("10.0.0.6")
        );
        assert_eq!(
            host_part("https://[fd00::1]:2379").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(
            host_part("http://hooks.example.com/x?y=1").as_deref(),
            Some("hooks.example.com")
        );
    }

    #[test]
    fn name_servers_of_a_resolv_conf() {
        let text = "# comment\nsearch example.net\nnameserver 10.0.0.53\nnameserver  fd00::53 \noptions ndots:2\n";
        assert_eq!(name_servers(text), ["10.0.0.53", "fd00::53"]);
    }

    #[test]
    fn this_machine_has_a_name() {
        let (name, ips) = bastion();
        assert!(!name.is_empty());
        assert!(ips.iter().all(|ip| !ip.is_loopback()));
    }
}
