//! A host's BMC address, read from its `bmc` label once, when the
//! inventory loads: an `https://` base URL for Redfish (an address alone
//! means `https://ADDR`), or `ipmi://ADDR[:PORT]` for IPMI.
//!
//! Owns the label's syntax and its error messages. It must not talk to a
//! BMC: `transport::redfish` and `transport::ipmi` take the address as input.

use std::fmt;

/// The label that names a host's BMC.
pub const LABEL: &str = "bmc";

/// The IANA port of RMCP.
pub const IPMI_PORT: u16 = 623;

/// Where a host's BMC answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BmcAddress {
    /// A Redfish service's base URL, as written, without a trailing `/`.
    Redfish(String),
    Ipmi(IpmiTarget),
}

/// A `bmc` label that is no BMC address; the message names the label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadBmc(pub String);

impl BmcAddress {
    /// Reads a `bmc` label: `ipmi://ADDR[:PORT]`, an `http(s)://` URL, or
    /// an address (meaning `https://ADDR`).
    pub fn parse(label: &str) -> Result<BmcAddress, BadBmc> {
        let label = label.trim();
        if label.is_empty() {
            return Err(BadBmc("empty `bmc` label".into()));
        }
        if let Some(ipmi) = IpmiTarget::parse(label) {
            return ipmi.map(BmcAddress::Ipmi).map_err(BadBmc);
        }
        let url = if label.contains("://") {
            label.to_owned()
        } else {
            format!("https://{label}")
        };
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| BadBmc(format!("bmc `{label}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(BadBmc(format!(
                "bmc `{label}`: expected an address, an http(s) URL or ipmi://ADDR[:PORT]"
            )));
        }
        Ok(BmcAddress::Redfish(url.trim_end_matches('/').to_owned()))
    }

    /// The host's `bmc` label read, if it has one.
    pub fn from_labels(
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<Result<BmcAddress, BadBmc>> {
        labels.get(LABEL).map(|l| BmcAddress::parse(l))
    }

    /// A Redfish BMC reached over plain `http://`: its password would cross
    /// the network in cleartext.
    pub fn is_plain_http(&self) -> bool {
        match self {
            BmcAddress::Redfish(url) => url
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://")),
            BmcAddress::Ipmi(_) => false,
        }
    }

    /// The IPMI target, for an `ipmi://` BMC.
    pub fn ipmi(&self) -> Option<&IpmiTarget> {
        match self {
            BmcAddress::Ipmi(t) => Some(t),
            BmcAddress::Redfish(_) => None,
        }
    }
}

impl fmt::Display for BmcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BmcAddress::Redfish(url) => f.write_str(url),
            BmcAddress::Ipmi(t) => t.fmt(f),
        }
    }
}

/// Where an `ipmi://` BMC listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpmiTarget {
    pub host: String,
    pub port: u16,
}

impl IpmiTarget {
    /// `ipmi://ADDR[:PORT]`, `ipmi://[V6]:PORT`; `None` when `label` is not
    /// an `ipmi://` address at all, an error when it is a broken one.
    pub fn parse(label: &str) -> Option<Result<IpmiTarget, String>> {
        let rest = label.trim().strip_prefix("ipmi://")?;
        Some(IpmiTarget::parse_authority(label, rest))
    }

    fn parse_authority(label: &str, rest: &str) -> Result<IpmiTarget, String> {
        let bad = |why: &str| format!("bmc `{label}`: {why} (expected ipmi://ADDR[:PORT])");
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("no address"));
        }
        if rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
            return Err(bad("an IPMI address has no path, user or query"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, tail) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            match tail {
                "" => (host, None),
                t => (
                    host,
                    Some(t.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
                ),
            }
        } else if rest.matches(':').count() > 1 {
            return Err(bad("an IPv6 address goes in brackets: ipmi://[ADDR]:PORT"));
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no address"));
        }
        let port = match port {
            None => IPMI_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad(&format!("`{p}` is not a port"))),
            },
        };
        Ok(IpmiTarget {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for IpmiTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "ipmi://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "ipmi://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipmi_addresses() {
        let t = |s: &str| IpmiTarget::parse(s).expect("ipmi").expect("valid");
        assert_eq!(
            t("ipmi://10.0.0.5"),
            IpmiTarget {
                host: "10.0.0.5".into(),
                port: 623
            }
        );
        assert_eq!(t("ipmi://bmc.example:6230/").port, 6230);
        assert_eq!(t("ipmi://[fe80::1]:624").host, "fe80::1");
        assert_eq!(t("ipmi://[fe80::1]").port, 623);
        assert_eq!(
            t("ipmi://[fe80::1]:624").to_string(),
            "ipmi://[fe80::1]:624"
        );
        assert!(IpmiTarget::parse("https://x").is_none());
        for bad in [
            "ipmi://",
            "ipmi://:623",
            "ipmi://h:0",
            "ipmi://h:port",
            "ipmi://fe80::1",
            "ipmi://h/path",
            "ipmi://u@h",
            "ipmi://[fe80::1",
        ] {
            let e = IpmiTarget::parse(bad).expect("ipmi").expect_err(bad);
            assert!(e.contains("expected ipmi://ADDR[:PORT]"), "{bad}: {e}");
        }
    }

    #[test]
    fn redfish_addresses() {
        let a = |s: &str| BmcAddress::parse(s).map(|a| a.to_string());
        assert_eq!(a("10.0.0.5"), Ok("https://10.0.0.5".into()));
        assert_eq!(
            a("http://127.1.0.1:8443/"),
            Ok("http://127.1.0.1:8443".into())
        );
        assert_eq!(a("ipmi://h"), Ok("ipmi://h:623".into()));
        assert!(a("ftp://x").is_err());
        assert_eq!(a(" "), Err(BadBmc("empty `bmc` label".into())));
        let http = |s: &str| BmcAddress::parse(s).unwrap().is_plain_http();
        assert!(http("HTTP://10.0.0.5/") && http(" http://x"));
        assert!(!http("10.0.0.5") && !http("https://x") && !http("ipmi://x"));
    }
}
