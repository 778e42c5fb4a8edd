//! Observed dependencies: the TCP connections read from every host, folded
//! into "host A uses host B's port P", then into stages, and checked against
//! the plan's order.
//!
//! Owns which side of a connection is the server, the mapping of addresses
//! to inventory hosts, and the order, cycle, unplanned and same-stage
//! findings. It does no I/O: the sockets come in already read.
//!
//! The rules, each a choice written down in docs/audit.md:
//! - The server is the side whose port is one of its host's listening ports;
//!   the other side is the client, and the client depends on the server.
//! - A host's addresses are its inventory address (and what its name resolved
//!   to) and every local address its own sockets show, so a host reached over
//!   a management network is still recognised on its service network.
//! - A connection between two addresses of one host, or to a loopback address
//!   that is no inventory host's, stays inside the host and is no dependency.
//! - A host's stage is the first stage in plan order that selects it: the one
//!   that brings it back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::sockets::{Socket, State};
use super::{Finding, Kind, Severity};
use crate::inventory::Inventory;
use crate::plan::Plan;

/// The far end of a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// An inventory host (index in `Inventory::hosts`).
    Host(usize),
    /// An address no inventory host has.
    External(IpAddr),
}

/// `client` opened `connections` distinct connections to `server` on `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub client: usize,
    pub server: Peer,
    pub port: u16,
    pub connections: usize,
}

/// The sockets read from one host, every sample together.
pub struct Reading<'a> {
    pub host: usize,
    pub samples: &'a [Vec<Socket>],
}

/// Addresses to inventory hosts. The first host to claim an address keeps it.
#[derive(Debug, Default)]
pub struct AddressBook {
    hosts: HashMap<IpAddr, usize>,
}

impl AddressBook {
    /// `resolved` holds each host's inventory address as IP addresses (an IP
    /// literal as itself, a name as it resolved on the bastion).
    pub fn new(resolved: &[(usize, Vec<IpAddr>)]) -> AddressBook {
        let mut book = AddressBook::default();
        for (host, ips) in resolved {
            for ip in ips {
                book.hosts.entry(canonical(*ip)).or_insert(*host);
            }
        }
        book
    }

    pub fn host(&self, ip: IpAddr) -> Option<usize> {
        self.hosts.get(&canonical(ip)).copied()
    }

    /// Adds the local addresses each host's own sockets show.
    fn learn(&mut self, readings: &[Reading<'_>]) {
        for r in readings {
            for ip in local_addresses(r) {
                if !ip.is_loopback() {
                    self.hosts.entry(ip).or_insert(r.host);
                }
            }
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn local_addresses(r: &Reading<'_>) -> BTreeSet<IpAddr> {
    r.samples
        .iter()
        .flatten()
        .map(|s| canonical(s.local.ip()))
        .filter(|ip| !ip.is_unspecified())
        .collect()
}

/// Every dependency the readings show, merged across samples and across the
/// two ends of a connection both of whose hosts were read.
pub fn observe(book: &mut AddressBook, readings: &[Reading<'_>]) -> Vec<Dependency> {
    book.learn(readings);
    // A connection is its (client, server) endpoint pair; both ends and every
    // sample of it count once.
    let mut seen: HashSet<(SocketAddr, SocketAddr)> = HashSet::new();
    let mut counts: BTreeMap<(usize, Peer, u16), usize> = BTreeMap::new();
    for r in readings {
        let own = local_addresses(r);
        let listening: HashSet<u16> = r
            .samples
            .iter()
            .flatten()
            .filter(|s| s.state == State::Listen)
            .map(|s| s.local.port())
            .collect();
        for s in r.samples.iter().flatten().filter(|s| s.state.has_peer()) {
            let (local, remote) = (norm(s.local), norm(s.remote));
            if remote.ip().is_unspecified() || own.contains(&remote.ip()) {
                continue;
            }
            let peer = match book.host(remote.ip()) {
                Some(h) if h == r.host => continue,
                Some(h) => Peer::Host(h),
                None if remote.ip().is_loopback() => continue,
                None => Peer::External(remote.ip()),
            };
            let edge = if listening.contains(&local.port()) {
                // This host serves; the peer is the client.
                let Peer::Host(client) = peer else {
                    // Someone outside the inventory uses this host: not a
                    // dependency of the restart.
                    continue;
                };
                (client, Peer::Host(r.host), local.port(), (remote, local))
            } else {
                (r.host, peer, remote.port(), (local, remote))
            };
            let (client, server, port, key) = edge;
            if seen.insert(key) {
                *counts.entry((client, server, port)).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|((client, server, port), connections)| Dependency {
            client,
            server,
            port,
            connections,
        })
        .collect()
}

fn norm(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(a.ip()), a.port())
}

/// The first stage (in plan order) that selects each host.
pub(super) fn home_stages(plan: &Plan) -> HashMap<usize, usize> {
    let mut home = HashMap::new();
    for (i, s) in plan.stages.iter().enumerate() {
        for &h in &s.hosts {
            home.entry(h).or_insert(i);
        }
    }
    home
}

/// `before[s]`: every stage the plan finishes (or gates) before stage `s`
/// starts, transitively through `after` and readiness gates.
fn ancestors(plan: &Plan) -> Vec<BTreeSet<usize>> {
    let n = plan.stages.len();
    let mut memo: Vec<Option<BTreeSet<usize>>> = vec![None; n];
    fn visit(
        plan: &Plan,
        s: usize,
        memo: &mut Vec<Option<BTreeSet<usize>>>,
        depth: usize,
    ) -> BTreeSet<usize> {
        if let Some(done) = &memo[s] {
            return done.clone();
        }
        let mut set = BTreeSet::new();
        // The plan is acyclic (validation refuses cycles); the depth bound
        // only keeps a malformed plan from recursing without end.
        if depth <= plan.stages.len() {
            let stage = &plan.stages[s];
            let direct = stage.after.iter().chain(stage.gates.iter().map(|(d, _)| d));
            for &d in direct {
                if d < plan.stages.len() {
                    set.insert(d);
                    set.extend(visit(plan, d, memo, depth + 1));
                }
            }
        }
        memo[s] = Some(set.clone());
        set
    }
    (0..n).map(|s| visit(plan, s, &mut memo, 0)).collect()
}

/// One stage-to-stage dependency: the host edges behind it.
#[derive(Debug, Default)]
struct StageEdge {
    /// (client host, server host, port) -> connections.
    hosts: BTreeMap<(usize, usize, u16), usize>,
}

impl StageEdge {
    fn connections(&self) -> usize {
        self.hosts.values().sum()
    }

    fn clients(&self) -> BTreeSet<usize> {
        self.hosts.keys().map(|(c, _, _)| *c).collect()
    }

    fn ports(&self) -> BTreeSet<u16> {
        self.hosts.keys().map(|(_, _, p)| *p).collect()
    }

    /// The busiest host edge, as an example (`app-017 -> db-003:5432`).
    fn example(&self, inventory: &Inventory) -> String {
        let ((c, s, p), _) = self
            .hosts
            .iter()
            .max_by_key(|(k, n)| (**n, std::cmp::Reverse(**k)))
            .expect("a stage edge has a host edge");
        format!("{} -> {}:{p}", name(inventory, *c), name(inventory, *s))
    }
}

fn name(inventory: &Inventory, host: usize) -> &str {
    inventory.hosts.get(host).map_or("?", |h| h.name.as_str())
}

/// `1 connection`, `2 connections`.
pub(super) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn ports_text(ports: &BTreeSet<u16>) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    list.join(", ")
}

/// The order, cycle, unplanned, external and same-stage findings of `deps`.
pub fn check(plan: &Plan, inventory: &Inventory, deps: &[Dependency]) -> Vec<Finding> {
    let home = home_stages(plan);
    let before = ancestors(plan);
    let stage_name = |s: usize| plan.stages[s].name.clone();
    // (client stage, server stage) -> host edges.
    let mut stage_edges: BTreeMap<(usize, usize), StageEdge> = BTreeMap::new();
    let mut unplanned: BTreeMap<usize, Vec<&Dependency>> = BTreeMap::new();
    let mut external: BTreeMap<(IpAddr, u16), Vec<&Dependency>> = BTreeMap::new();
    for d in deps {
        // A client no stage restarts keeps running: its needs are not the plan's.
        let Some(&cs) = home.get(&d.client) else {
            continue;
        };
        match d.server {
            Peer::External(ip) => external.entry((ip, d.port)).or_default().push(d),
            Peer::Host(s) => match home.get(&s) {
                None => unplanned.entry(s).or_default().push(d),
                Some(&ss) => {
                    *stage_edges
                        .entry((cs, ss))
                        .or_default()
                        .hosts
                        .entry((d.client, s, d.port))
                        .or_default() += d.connections;
                }
            },
        }
    }

    let mut findings = Vec::new();
    // Cycles among stages, whatever the plan's order: a cold start must
    // break each by hand.
    let cross: Vec<(usize, usize)> = stage_edges
        .keys()
        .copied()
        .filter(|(c, s)| c != s)
        .collect();
    let cycles = cycles(plan.stages.len(), &cross);
    let in_cycle: HashMap<usize, usize> = cycles
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.iter().map(move |&s| (s, i)))
        .collect();
    for members in &cycles {
        let set: BTreeSet<usize> = members.iter().copied().collect();
        let mut edges = Vec::new();
        let mut hosts = BTreeSet::new();
        for ((c, s), e) in &stage_edges {
            if c != s && set.contains(c) && set.contains(s) {
                edges.push(format!(
                    "{} -> {} (port {}: {} from {}, e.g. {})",
                    stage_name(*c),
                    stage_name(*s),
                    ports_text(&e.ports()),
                    plural(e.connections(), "connection"),
                    plural(e.clients().len(), "host"),
                    e.example(inventory)
                ));
                hosts.extend(e.hosts.keys().flat_map(|(a, b, _)| [*a, *b]));
            }
        }
        let names: Vec<String> = members.iter().map(|&s| stage_name(s)).collect();
        findings.push(Finding {
            severity: Severity::Error,
            kind: Kind::Cycle,
            message: format!(
                "stages {} depend on each other: a cold start cannot bring them up in any order",
                names.join(", ")
            ),
            stages: names.clone(),
            hosts: hosts.into_iter().collect(),
            details: edges,
            fix: "decide which side starts degraded (without its peer) and order the plan from there; \
                  the ports above say which service each side waits for"
                .into(),
        });
    }

    for ((c, s), e) in &stage_edges {
        let (c, s) = (*c, *s);
        let example = e.example(inventory);
        let summary = format!(
            "{} from {} on port {}, e.g. {example}",
            plural(e.connections(), "connection"),
            plural(e.clients().len(), "host"),
            ports_text(&e.ports())
        );
        let hosts: Vec<usize> = e
            .hosts
            .keys()
            .flat_map(|(a, b, _)| [*a, *b])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if c == s {
            findings.push(Finding {
                severity: Severity::Info,
                kind: Kind::SameStage,
                message: format!(
                    "hosts of stage {} talk to each other ({summary}); they start together",
                    stage_name(c)
                ),
                stages: vec![stage_name(c)],
                hosts,
                details: Vec::new(),
                fix: String::new(),
            });
            continue;
        }
        if before[c].contains(&s) {
            continue;
        }
        if matches!((in_cycle.get(&c), in_cycle.get(&s)), (Some(a), Some(b)) if a == b) {
            continue;
        }
        let runs = if before[s].contains(&c) {
            "after"
        } else {
            "alongside"
        };
        findings.push(Finding {
            severity: Severity::Error,
            kind: Kind::Order,
            message: format!(
                "stage {} talks to stage {} ({summary}), but the plan starts {} {runs} it: \
                 {} would start against a {} that is down",
                stage_name(c),
                stage_name(s),
                stage_name(s),
                stage_name(c),
                stage_name(s),
            ),
            stages: vec![stage_name(c), stage_name(s)],
            hosts,
            details: Vec::new(),
            fix: format!(
                "add `after: [{}]` to stage {} (or a readiness gate on it)",
                stage_name(s),
                stage_name(c)
            ),
        });
    }

    for (server, ds) in &unplanned {
        let clients: BTreeSet<usize> = ds.iter().map(|d| d.client).collect();
        let stages: BTreeSet<usize> = clients
            .iter()
            .filter_map(|c| home.get(c))
            .copied()
            .collect();
        let ports: BTreeSet<u16> = ds.iter().map(|d| d.port).collect();
        findings.push(Finding {
            severity: Severity::Warning,
            kind: Kind::Unplanned,
            message: format!(
                "{} on {} (port {}), which no stage brings back: will it be up?",
                depend(clients.len()),
                name(inventory, *server),
                ports_text(&ports)
            ),
            stages: stages.into_iter().map(stage_name).collect(),
            hosts: std::iter::once(*server).chain(clients).collect(),
            details: Vec::new(),
            fix: format!(
                "add a stage that selects {}, or make sure it stays up",
                name(inventory, *server)
            ),
        });
    }

    for ((ip, port), ds) in &external {
        let clients: BTreeSet<usize> = ds.iter().map(|d| d.client).collect();
        let stages: BTreeSet<usize> = clients
            .iter()
            .filter_map(|c| home.get(c))
            .copied()
            .collect();
        let connections: usize = ds.iter().map(|d| d.connections).sum();
        let endpoint = SocketAddr::new(*ip, *port);
        findings.push(Finding {
            severity: Severity::Warning,
            kind: Kind::External,
            message: format!(
                "{} on {endpoint}, outside the inventory ({}): will it be up?",
                depend(clients.len()),
                plural(connections, "connection")
            ),
            stages: stages.into_iter().map(stage_name).collect(),
            hosts: clients.into_iter().collect(),
            details: vec![format!("endpoint {endpoint}")],
            fix: format!(
                "add the host at {ip} to the inventory and a stage for it, or confirm it lives outside the failure"
            ),
        });
    }
    findings
}

fn depend(hosts: usize) -> String {
    if hosts == 1 {
        "1 host depends".into()
    } else {
        format!("{hosts} hosts depend")
    }
}

/// Strongly connected groups of two or more stages in `edges`, each sorted,
/// in order of their first stage (Tarjan's algorithm through petgraph).
fn cycles(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut graph = petgraph::graph::DiGraph::<(), ()>::with_capacity(n, edges.len());
    let nodes: Vec<_> = (0..n).map(|_| graph.add_node(())).collect();
    for &(a, b) in edges {
        graph.add_edge(nodes[a], nodes[b], ());
    }
    let mut out: Vec<Vec<usize>> = petgraph::algo::tarjan_scc(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut v: Vec<usize> = c.into_iter().map(|i| i.index()).collect();
            v.sort_unstable();
            v
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::sockets::State;

    fn sock(local: &str, remote: &str, state: State) -> Socket {
        Socket {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state,
        }
    }

    fn book(addrs: &[&str]) -> AddressBook {
        let resolved: Vec<(usize, Vec<IpAddr>)> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i, vec![a.parse().unwrap()]))
            .collect();
        AddressBook::new(&resolved)
    }

    #[test]
    fn the_listening_side_is_the_server_and_both_ends_count_once() {
        let mut book = book(&["10.0.0.1", "10.0.0.2"]);
        // Host 0 (db) listens on 5432; host 1 (app) holds a connection to it.
        let db = vec![vec![
            sock("0.0.0.0:5432", "0.0.0.0:0", State::Listen),
            sock("10.0.0.1:5432", "10.0.0.2:40000", State::Established),
        ]];
        let app = vec![
            vec![sock("10.0.0.2:40000", "10.0.0.1:5432", State::Established)],
            // The same connection in a second sample, and a new one.
            vec![
                sock("10.0.0.2:40000", "10.0.0.1:5432", State::Established),
                sock("10.0.0.2:40001", "10.0.0.1:5432", State::TimeWait),
            ],
        ];
        let readings = [
            Reading {
                host: 0,
                samples: &db,
            },
            Reading {
                host: 1,
                samples: &app,
            },
        ];
        let deps = observe(&mut book, &readings);
        assert_eq!(
            deps,
            vec![Dependency {
                client: 1,
                server: Peer::Host(0),
                port: 5432,
                connections: 2
            }]
        );
    }

    #[test]
    fn a_host_is_known_by_the_addresses_its_sockets_show() {
        // Host 1 is in the inventory by its management address only; its
        // service address shows in its own sockets.
        let mut book = book(&["10.0.0.1", "192.168.9.2"]);
        let app = vec![vec![sock(
            "10.0.0.2:40000",
            "10.0.0.1:5432",
            State::Established,
        )]];
        let db = vec![vec![
            sock("10.0.0.1:5432", "0.0.0.0:0", State::Listen),
            sock("10.0.0.1:5432", "10.0.0.2:40000", State::Established),
        ]];
        // db read first: the client address is not known until app's sockets are.
        let readings = [
            Reading {
                host: 0,
                samples: &db,
            },
            Reading {
                host: 1,
                samples: &app,
            },
        ];
        let deps = observe(&mut book, &readings);
        assert_eq!(deps.len(), 1, "{deps:?}");
        assert_eq!((deps[0].client, deps[0].server), (1, Peer::Host(0)));
    }

    #[test]
    fn loopback_and_own_addresses_stay_inside_the_host() {
        let mut book = book(&["10.0.0.1"]);
        let samples = vec![vec![
            sock("127.0.0.1:40000", "127.0.0.53:53", State::Established),
            sock("10.0.0.1:40001", "10.0.0.1:8080", State::Established),
            sock("10.0.0.1:40002", "203.0.113.9:443", State::SynSent),
            // An outside client of this host's service: not our dependency.
            sock("10.0.0.1:22", "198.51.100.7:50000", State::Established),
            sock("0.0.0.0:22", "0.0.0.0:0", State::Listen),
        ]];
        let deps = observe(
            &mut book,
            &[Reading {
                host: 0,
                samples: &samples,
            }],
        );
        assert_eq!(
            deps,
            vec![Dependency {
                client: 0,
                server: Peer::External("203.0.113.9".parse().unwrap()),
                port: 443,
                connections: 1
            }]
        );
    }

    #[test]
    fn cycles_are_found_among_stages() {
        assert_eq!(cycles(4, &[(0, 1), (1, 0), (2, 3)]), vec![vec![0, 1]]);
        assert_eq!(cycles(3, &[(0, 1), (1, 2), (2, 0)]), vec![vec![0, 1, 2]]);
        assert!(cycles(3, &[(0, 1), (1, 2)]).is_empty());
    }
}
