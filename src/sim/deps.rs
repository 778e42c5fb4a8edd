//! A simulated fleet's dependency graph (`sim --deps FILE`): which hosts
//! hold TCP connections to which, so that `rekindle audit` reads, on each
//! simulated host, the socket table a real host with those connections
//! would show in `/proc/net/tcp`.
//!
//! Owns the file format and the tables. It must not decide anything an audit
//! decides (who depends on whom is only written down here, as connections).
//!
//! The file, one edge a line (`#` starts a comment):
//!
//! ```text
//! # clients      servers       port  [connections per pair]
//! sim-[00001-00040] sim-[00041-00043] 5432 2
//! ```
//!
//! Clients and servers are host patterns (the inventory's syntax). Every
//! client holds the given number of connections (default 1) to every server
//! on that port; the server listens on it.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::SimError;
use crate::inventory::pattern::{HostPattern, Syntax};

/// Connections from one host to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub client: usize,
    pub server: usize,
    pub port: u16,
    pub connections: u32,
}

/// Most connections a file may describe: bounds the tables' memory.
pub const MAX_CONNECTIONS: u64 = 2_000_000;

/// The edges of a `--deps` file, over hosts named in `names` (index by name).
pub fn parse(
    file: &str,
    text: &str,
    names: &HashMap<String, usize>,
) -> Result<Vec<Edge>, SimError> {
    let mut edges = Vec::new();
    let mut total: u64 = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        let at = |word: &str| raw.find(word).map_or(1, |i| i + 1);
        let err = |col: usize, m: String| SimError::config(format!("{file}:{}:{col}: {m}", n + 1));
        let words: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&words.len()) {
            return Err(err(
                1,
                "expected `CLIENTS SERVERS PORT [CONNECTIONS]`".into(),
            ));
        }
        let hosts = |word: &str| -> Result<Vec<usize>, SimError> {
            let pattern = HostPattern::parse(word, Syntax::Native)
                .map_err(|e| err(at(word), format!("`{word}`: {e}")))?;
            pattern
                .expand()
                .into_iter()
                .map(|name| {
                    names.get(&name).copied().ok_or_else(|| {
                        err(at(word), format!("`{name}` is not a host of this fleet"))
                    })
                })
                .collect()
        };
        let clients = hosts(words[0])?;
        let servers = hosts(words[1])?;
        let port: u16 = words[2]
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| err(at(words[2]), format!("`{}` is no TCP port", words[2])))?;
        let connections: u32 = match words.get(3) {
            None => 1,
            Some(w) => w
                .parse()
                .ok()
                .filter(|c| (1..=1000).contains(c))
                .ok_or_else(|| err(at(w), format!("`{w}`: expected 1 to 1000 connections")))?,
        };
        total += clients.len() as u64 * servers.len() as u64 * u64::from(connections);
        if total > MAX_CONNECTIONS {
            return Err(err(
                1,
                format!("more than {MAX_CONNECTIONS} connections in all"),
            ));
        }
        for &c in &clients {
            for &s in servers.iter().filter(|&&s| s != c) {
                edges.push(Edge {
                    client: c,
                    server: s,
                    port,
                    connections,
                });
            }
        }
    }
    Ok(edges)
}

pub const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

/// `/proc/net/tcp` of a host with no IPv6 sockets: the header alone.
pub const EMPTY_TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

fn hex(addr: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_le_bytes(addr.octets()))
}

/// Each host's `/proc/net/tcp`: its SSH and HTTP listeners, a listener on
/// every port it serves, and one row per connection end, as the kernel
/// prints them (a client's ephemeral port is the same on both ends).
pub fn tables(
    edges: &[Edge],
    addresses: &[Ipv4Addr],
    ssh_port: u16,
    http_port: u16,
) -> Vec<String> {
    let n = addresses.len();
    let mut listen: Vec<BTreeSet<u16>> = vec![BTreeSet::from([ssh_port, http_port]); n];
    let mut rows: Vec<Vec<(String, String, &str)>> = vec![Vec::new(); n];
    let mut next_port: u32 = 0;
    for e in edges {
        if e.client >= n || e.server >= n {
            continue;
        }
        listen[e.server].insert(e.port);
        for _ in 0..e.connections {
            // Linux's default ephemeral range, 32768-60999.
            let eport = 32768 + (next_port % 28232) as u16;
            next_port += 1;
            let client = hex(addresses[e.client], eport);
            let server = hex(addresses[e.server], e.port);
            rows[e.client].push((client.clone(), server.clone(), "01"));
            rows[e.server].push((server, client, "01"));
        }
    }
    let zero = hex(Ipv4Addr::UNSPECIFIED, 0);
    (0..n)
        .map(|h| {
            let mut out = String::from(HEADER);
            let mut slot = 0;
            let mut row = |out: &mut String, local: &str, remote: &str, st: &str| {
                let _ = writeln!(
                    out,
                    "{slot:4}: {local} {remote} {st} 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0"
                );
                slot += 1;
            };
            for &p in &listen[h] {
                row(&mut out, &hex(addresses[h], p), &zero, "0A");
            }
            for (l, r, st) in &rows[h] {
                row(&mut out, l, r, st);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> HashMap<String, usize> {
        (0..n).map(|i| (format!("h{}", i + 1), i)).collect()
    }

    #[test]
    fn patterns_expand_to_an_edge_per_pair() {
        let edges = parse(
            "deps",
            "# app to db\nh[1-2] h3 5432 2\nh3 h3 1\n",
            &names(3),
        )
        .unwrap();
        assert_eq!(
            edges,
            vec![
                Edge {
                    client: 0,
                    server: 2,
                    port: 5432,
                    connections: 2
                },
                Edge {
                    client: 1,
                    server: 2,
                    port: 5432,
                    connections: 2
                },
            ]
        );
    }

    #[test]
    fn bad_lines_name_the_file_line_and_column() {
        let e = parse("deps", "h1 h9 80\n", &names(3)).unwrap_err();
        assert_eq!(e.to_string(), "deps:1:4: `h9` is not a host of this fleet");
        let e = parse("deps", "\nh1 h2 http\n", &names(3)).unwrap_err();
        assert_eq!(e.to_string(), "deps:2:7: `http` is no TCP port");
        let e = parse("deps", "h1 h2\n", &names(3)).unwrap_err();
        assert!(e.to_string().starts_with("deps:1:1: expected"), "{e}");
    }

    #[test]
    fn tables_read_back_as_the_connections_written() {
        let addrs = [Ipv4Addr::new(127, 0, 1, 1), Ipv4Addr::new(127, 0, 1, 2)];
        let edges = [Edge {
            client: 0,
            server: 1,
            port: 5432,
            connections: 2,
        }];
        let t = tables(&edges, &addrs, 22, 8080);
        let client = crate::audit::sockets::parse(&t[0]).unwrap();
        let server = crate::audit::sockets::parse(&t[1]).unwrap();
        let est = |s: &[crate::audit::sockets::Socket]| {
            s.iter()
                .filter(|x| x.state == crate::audit::sockets::State::Established)
                .map(|x| (x.local, x.remote))
                .collect::<Vec<_>>()
        };
        assert_eq!(est(&client).len(), 2);
        // The server sees each connection with its ends swapped.
        let swapped: Vec<_> = est(&server).into_iter().map(|(l, r)| (r, l)).collect();
        assert_eq!(est(&client), swapped);
        assert!(
            server
                .iter()
                .any(|s| s.local.port() == 5432 && s.state == crate::audit::sockets::State::Listen)
        );
    }
}
