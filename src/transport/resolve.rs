//! Host-name resolution for every connection rekindle opens itself: SSH (and
//! its jump hosts), the TCP and HTTP health probes, Redfish BMCs, webhooks.
//!
//! Owns the choice of resolver and the `/etc/hosts` lookup. It must not
//! connect, retry or time out: callers bound the whole attempt.
//!
//! A dynamically linked build asks the C library (`getaddrinfo`: whatever
//! nsswitch, `/etc/hosts` and DNS the bastion has configured). A statically
//! linked one (`scripts/build-static.sh`, `+crt-static`) must not: static
//! glibc's `getaddrinfo` still loads NSS modules at run time, from the glibc
//! version it was linked against, which a bastion may not have (in an empty
//! chroot every lookup fails). So that build resolves names itself: an IP
//! address as it is, then `/etc/hosts`, then, with the `dns` feature (which
//! the script enables), DNS to the name servers of `/etc/resolv.conf`
//! (hickory-resolver, pure Rust). The `dns` feature selects this resolver in
//! a dynamic build too. (docs/findings.md, "The machine": static binary.)

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// True when rekindle resolves names itself instead of asking the C library.
pub const OWN_RESOLVER: bool = cfg!(any(target_feature = "crt-static", feature = "dns"));

const HOSTS_FILE: &str = "/etc/hosts";

/// The addresses of `host` (a name or an IP address), each with `port`.
pub async fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if !OWN_RESOLVER {
        return Ok(tokio::net::lookup_host((host, port)).await?.collect());
    }
    let from_file = hosts_file()
        .as_deref()
        .map(|text| hosts_lookup(text, host))
        .unwrap_or_default();
    if !from_file.is_empty() {
        return Ok(with_port(from_file, port));
    }
    dns(host).await.map(|ips| with_port(ips, port))
}

fn with_port(ips: Vec<IpAddr>, port: u16) -> Vec<SocketAddr> {
    ips.into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// `10.0.0.1`, `::1` and `[::1]` are addresses, not names.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// `/etc/hosts`, read once per process (a missing file is an empty one).
fn hosts_file() -> &'static Option<String> {
    static TEXT: OnceLock<Option<String>> = OnceLock::new();
    TEXT.get_or_init(|| std::fs::read_to_string(HOSTS_FILE).ok())
}

/// Every address `text` (in `/etc/hosts` format) gives `name`, in file order.
/// Names match without regard to ASCII case or a trailing dot, as glibc's do.
pub fn hosts_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|n| n.strip_suffix('.').unwrap_or(n).eq_ignore_ascii_case(name))
            && !found.contains(&ip)
        {
            found.push(ip);
        }
    }
    found
}

#[cfg(feature = "dns")]
async fn dns(host: &str) -> io::Result<Vec<IpAddr>> {
    use hickory_resolver::TokioResolver;
    use hickory_resolver::config::ResolveHosts;

    static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();
    let resolver = RESOLVER
        .get_or_init(|| {
            let mut builder = TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
            // /etc/hosts was asked already, by the code above.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
                .build()
                .map_err(|e| format!("DNS resolver from /etc/resolv.conf: {e}"))
        })
        .as_ref()
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} is not in {HOSTS_FILE}, and {e}"),
            )
        })?;
    let found = resolver.lookup_ip(host).await.map_err(|e| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} is not in {HOSTS_FILE}, and DNS: {e}"),
        )
    })?;
    Ok(found.iter().collect())
}

#[cfg(not(feature = "dns"))]
async fn dns(host: &str) -> io::Result<Vec<IpAddr>> {
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{host} is not in {HOSTS_FILE}, and this static build has no DNS resolver \
             (scripts/build-static.sh builds one with the `dns` feature)"
        ),
    ))
}

/// reqwest's resolver hook: the same resolution for HTTP clients.
struct HttpResolver;

impl reqwest::dns::Resolve for HttpResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // hyper sets the URL's port on each address.
            let addrs = lookup(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Makes an HTTP client resolve names like the rest of rekindle. Every
/// `reqwest::Client` rekindle builds goes through this, so it is also where
/// rustls gets its crypto provider: ring, as russh uses (reqwest is built
/// without a provider of its own; BENCHMARKS.md, "First build").
pub fn http(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    // Err only when a provider is already installed, which is the same one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if OWN_RESOLVER {
        builder.dns_resolver(Arc::new(HttpResolver))
    } else {
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
# comment line
127.0.0.1\tlocalhost
::1     localhost ip6-localhost   # trailing comment
10.1.2.3  db-1.example.com db-1 DB-ALIAS
10.1.2.4  db-1
not-an-ip bogus
10.1.2.3  db-1
";

    #[test]
    fn hosts_file_names_and_aliases_match_without_case_or_trailing_dot() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            hosts_lookup(HOSTS, "db-1"),
            vec![v4("10.1.2.3"), v4("10.1.2.4")]
        );
        assert_eq!(hosts_lookup(HOSTS, "db-alias"), vec![v4("10.1.2.3")]);
        assert_eq!(
            hosts_lookup(HOSTS, "DB-1.Example.COM."),
            vec![v4("10.1.2.3")]
        );
        assert_eq!(
            hosts_lookup(HOSTS, "localhost"),
            vec![v4("127.0.0.1"), v4("::1")]
        );
        assert!(hosts_lookup(HOSTS, "bogus").is_empty());
        assert!(hosts_lookup(HOSTS, "comment").is_empty());
        assert!(hosts_lookup(HOSTS, "db").is_empty());
    }

    #[test]
    fn addresses_are_not_looked_up() {
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(ip_literal("127.0.0.9"), Some("127.0.0.9".parse().unwrap()));
        assert_eq!(ip_literal("db-1"), None);
    }

    #[tokio::test]
    async fn an_address_resolves_to_itself_with_the_port() {
        let got = lookup("127.0.0.5", 2222).await.unwrap();
        assert_eq!(got, vec!["127.0.0.5:2222".parse().unwrap()]);
    }
}
