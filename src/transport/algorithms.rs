//! SSH algorithm lists: what rekindle offers in the key exchange, and the
//! `~/.ssh/config` options that change it.
//!
//! Owns the defaults (OpenSSH 9.9's client lists, in its order, restricted
//! to what russh 0.65.1 implements), the names russh implements, and the
//! `KexAlgorithms`/`Ciphers`/`MACs`/`HostKeyAlgorithms`/
//! `PubkeyAcceptedAlgorithms` forms (`list`, `+list`, `-list`, `^list`, with
//! `*`/`?` wildcards), assembled as OpenSSH's `kex_assemble_names` does. It
//! must not read files or open connections.
//!
//! Not implemented by russh, so never offered (docs/findings.md, russh):
//! `sntrup761x25519-sha512` key exchange, the `umac-*` MACs, `sk-*` and
//! `webauthn-*` host keys.

use std::sync::{Arc, LazyLock};

/// Which list an option sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlgorithmKind {
    Kex,
    Cipher,
    Mac,
    HostKey,
    Pubkey,
}

impl AlgorithmKind {
    pub const ALL: [AlgorithmKind; 5] = [
        AlgorithmKind::Kex,
        AlgorithmKind::Cipher,
        AlgorithmKind::Mac,
        AlgorithmKind::HostKey,
        AlgorithmKind::Pubkey,
    ];

    /// The ssh_config option that sets this list.
    pub fn option(self) -> &'static str {
        match self {
            AlgorithmKind::Kex => "KexAlgorithms",
            AlgorithmKind::Cipher => "Ciphers",
            AlgorithmKind::Mac => "MACs",
            AlgorithmKind::HostKey => "HostKeyAlgorithms",
            AlgorithmKind::Pubkey => "PubkeyAcceptedAlgorithms",
        }
    }

    /// OpenSSH 9.9's client default, without what russh lacks.
    pub fn defaults(self) -> &'static [&'static str] {
        match self {
            AlgorithmKind::Kex => &[
                "mlkem768x25519-sha256",
                "curve25519-sha256",
                "curve25519-sha256@libssh.org",
                "ecdh-sha2-nistp256",
                "ecdh-sha2-nistp384",
                "ecdh-sha2-nistp521",
                "diffie-hellman-group-exchange-sha256",
                "diffie-hellman-group16-sha512",
                "diffie-hellman-group18-sha512",
                "diffie-hellman-group14-sha256",
            ],
            AlgorithmKind::Cipher => &[
                "chacha20-poly1305@openssh.com",
                "aes128-ctr",
                "aes192-ctr",
                "aes256-ctr",
                "aes128-gcm@openssh.com",
                "aes256-gcm@openssh.com",
            ],
            AlgorithmKind::Mac => &[
                "hmac-sha2-256-etm@openssh.com",
                "hmac-sha2-512-etm@openssh.com",
                "hmac-sha1-etm@openssh.com",
                "hmac-sha2-256",
                "hmac-sha2-512",
                "hmac-sha1",
            ],
            AlgorithmKind::HostKey | AlgorithmKind::Pubkey => &[
                "ssh-ed25519-cert-v01@openssh.com",
                "ecdsa-sha2-nistp256-cert-v01@openssh.com",
                "ecdsa-sha2-nistp384-cert-v01@openssh.com",
                "ecdsa-sha2-nistp521-cert-v01@openssh.com",
                "rsa-sha2-512-cert-v01@openssh.com",
                "rsa-sha2-256-cert-v01@openssh.com",
                "ssh-ed25519",
                "ecdsa-sha2-nistp256",
                "ecdsa-sha2-nistp384",
                "ecdsa-sha2-nistp521",
                "rsa-sha2-512",
                "rsa-sha2-256",
            ],
        }
    }

    /// Every name russh 0.65.1 implements, in OpenSSH's `ssh -Q` order: what
    /// a `+`, `^` or plain list may add.
    pub fn supported(self) -> &'static [&'static str] {
        match self {
            AlgorithmKind::Kex => &[
                "diffie-hellman-group1-sha1",
                "diffie-hellman-group14-sha1",
                "diffie-hellman-group14-sha256",
                "diffie-hellman-group16-sha512",
                "diffie-hellman-group18-sha512",
                "diffie-hellman-group-exchange-sha1",
                "diffie-hellman-group-exchange-sha256",
                "ecdh-sha2-nistp256",
                "ecdh-sha2-nistp384",
                "ecdh-sha2-nistp521",
                "curve25519-sha256",
                "curve25519-sha256@libssh.org",
                "mlkem768x25519-sha256",
            ],
            AlgorithmKind::Cipher => &[
                "aes128-cbc",
                "aes192-cbc",
                "aes256-cbc",
                "aes128-ctr",
                "aes192-ctr",
                "aes256-ctr",
                "aes128-gcm@openssh.com",
                "aes256-gcm@openssh.com",
                "chacha20-poly1305@openssh.com",
            ],
            AlgorithmKind::Mac => &[
                "hmac-sha1",
                "hmac-sha2-256",
                "hmac-sha2-512",
                "hmac-sha1-etm@openssh.com",
                "hmac-sha2-256-etm@openssh.com",
                "hmac-sha2-512-etm@openssh.com",
            ],
            AlgorithmKind::HostKey | AlgorithmKind::Pubkey => &[
                "ssh-ed25519",
                "ssh-ed25519-cert-v01@openssh.com",
                "ecdsa-sha2-nistp256",
                "ecdsa-sha2-nistp256-cert-v01@openssh.com",
                "ecdsa-sha2-nistp384",
                "ecdsa-sha2-nistp384-cert-v01@openssh.com",
                "ecdsa-sha2-nistp521",
                "ecdsa-sha2-nistp521-cert-v01@openssh.com",
                "ssh-rsa",
                "ssh-rsa-cert-v01@openssh.com",
                "rsa-sha2-256",
                "rsa-sha2-256-cert-v01@openssh.com",
                "rsa-sha2-512",
                "rsa-sha2-512-cert-v01@openssh.com",
            ],
        }
    }
}

/// The five lists for one host. Shared (`Arc`): every host without an
/// algorithm option holds the same defaults, resolved at each connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Algorithms {
    kex: Arc<[String]>,
    ciphers: Arc<[String]>,
    macs: Arc<[String]>,
    host_keys: Arc<[String]>,
    pubkeys: Arc<[String]>,
}

impl Default for Algorithms {
    fn default() -> Algorithms {
        static DEFAULT: LazyLock<Algorithms> = LazyLock::new(|| {
            let d = |k: AlgorithmKind| k.defaults().iter().map(|s| s.to_string()).collect();
            Algorithms {
                kex: d(AlgorithmKind::Kex),
                ciphers: d(AlgorithmKind::Cipher),
                macs: d(AlgorithmKind::Mac),
                host_keys: d(AlgorithmKind::HostKey),
                pubkeys: d(AlgorithmKind::Pubkey),
            }
        });
        DEFAULT.clone()
    }
}

impl Algorithms {
    pub fn get(&self, kind: AlgorithmKind) -> &[String] {
        match kind {
            AlgorithmKind::Kex => &self.kex,
            AlgorithmKind::Cipher => &self.ciphers,
            AlgorithmKind::Mac => &self.macs,
            AlgorithmKind::HostKey => &self.host_keys,
            AlgorithmKind::Pubkey => &self.pubkeys,
        }
    }

    pub fn set(&mut self, kind: AlgorithmKind, list: Vec<String>) {
        let list: Arc<[String]> = list.into();
        match kind {
            AlgorithmKind::Kex => self.kex = list,
            AlgorithmKind::Cipher => self.ciphers = list,
            AlgorithmKind::Mac => self.macs = list,
            AlgorithmKind::HostKey => self.host_keys = list,
            AlgorithmKind::Pubkey => self.pubkeys = list,
        }
    }

    /// The russh preference lists. Host-key certificate algorithms are
    /// kept apart: rekindle advertises them only where an
    /// `@cert-authority` line could vouch for the host.
    pub fn preferred(&self) -> Preferred {
        let kex = self
            .kex
            .iter()
            .filter_map(|n| russh::kex::Name::try_from(n.as_str()).ok())
            // russh announces its extensions through the kex list.
            .chain([
                russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
                russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ])
            .collect();
        let cipher = self
            .ciphers
            .iter()
            .filter_map(|n| russh::cipher::Name::try_from(n.as_str()).ok())
            .collect();
        let mac = self
            .macs
            .iter()
            .filter_map(|n| russh::mac::Name::try_from(n.as_str()).ok())
            .collect();
        let mut keys = Vec::new();
        let mut certificates = Vec::new();
        for name in self.host_keys.iter() {
            match name.strip_suffix("-cert-v01@openssh.com") {
                Some(plain) => {
                    if let Ok(a) = russh::keys::Algorithm::new(plain) {
                        certificates.push(a);
                    }
                }
                None => {
                    if let Ok(a) = russh::keys::Algorithm::new(name) {
                        keys.push(a);
                    }
                }
            }
        }
        Preferred {
            kex,
            cipher,
            mac,
            keys,
            certificates,
        }
    }

    /// True when `algorithm` (a user key's) may be offered in authentication.
    pub fn accepts_pubkey(&self, algorithm: &russh::keys::Algorithm, certificate: bool) -> bool {
        let name = algorithm.as_str();
        let names: Vec<String> = match algorithm {
            russh::keys::Algorithm::Rsa { .. } => ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            _ => vec![name.to_string()],
        };
        names.iter().any(|n| {
            let n = if certificate {
                format!("{n}-cert-v01@openssh.com")
            } else {
                n.clone()
            };
            self.pubkeys.contains(&n)
        })
    }
}

/// The russh form of [`Algorithms`].
#[derive(Debug, Clone)]
pub struct Preferred {
    pub kex: Vec<russh::kex::Name>,
    pub cipher: Vec<russh::cipher::Name>,
    pub mac: Vec<russh::mac::Name>,
    pub keys: Vec<russh::keys::Algorithm>,
    pub certificates: Vec<russh::keys::Algorithm>,
}

/// What an algorithm option assembled to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub list: Vec<String>,
    /// Names the option asked for that russh does not implement (skipped).
    pub unsupported: Vec<String>,
}

/// Applies one option value to `current` (the default, or what an earlier
/// option for this host left), as OpenSSH's `kex_assemble_names`: `+x`
/// appends, `-x` removes, `^x` puts in front, a plain list replaces; every
/// pattern may hold `*` and `?`. Names russh lacks are skipped and reported;
/// an empty result is an error.
pub fn assemble(kind: AlgorithmKind, current: &[String], value: &str) -> Result<Assembled, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{} needs a value", kind.option()));
    }
    let patterns = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let supported = kind.supported();
    let mut unsupported = Vec::new();
    let mut expand = |pats: &[String]| -> Vec<String> {
        let mut out = Vec::new();
        for p in pats {
            let hits: Vec<&str> = supported
                .iter()
                .copied()
                .filter(|n| wildcard(p, n))
                .collect();
            if hits.is_empty() && !unsupported.contains(p) {
                unsupported.push(p.clone());
            }
            for h in hits {
                if !out.iter().any(|o: &String| o == h) {
                    out.push(h.to_string());
                }
            }
        }
        out
    };
    let list: Vec<String> = if let Some(rest) = value.strip_prefix('+') {
        let mut list = current.to_vec();
        for n in expand(&patterns(rest)) {
            if !list.contains(&n) {
                list.push(n);
            }
        }
        list
    } else if let Some(rest) = value.strip_prefix('-') {
        let pats = patterns(rest);
        current
            .iter()
            .filter(|n| !pats.iter().any(|p| wildcard(p, n)))
            .cloned()
            .collect()
    } else if let Some(rest) = value.strip_prefix('^') {
        let mut list = expand(&patterns(rest));
        for n in current {
            if !list.contains(n) {
                list.push(n.clone());
            }
        }
        list
    } else {
        expand(&patterns(value))
    };
    if list.is_empty() {
        return Err(format!(
            "{} {value} leaves no algorithm rekindle implements (it implements {})",
            kind.option(),
            supported.join(",")
        ));
    }
    Ok(Assembled { list, unsupported })
}

/// OpenSSH's `match_pattern`: `*` any run, `?` one character, case-sensitive.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: AlgorithmKind) -> Vec<String> {
        kind.defaults().iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plus_minus_caret_and_plain_lists() {
        let k = AlgorithmKind::Kex;
        let a = assemble(k, &d(k), "+diffie-hellman-group14-sha1").unwrap();
        assert_eq!(a.list.last().unwrap(), "diffie-hellman-group14-sha1");
        assert_eq!(a.list.len(), d(k).len() + 1);
        let a = assemble(k, &d(k), "^diffie-hellman-group14-sha1").unwrap();
        assert_eq!(a.list[0], "diffie-hellman-group14-sha1");
        let a = assemble(k, &d(k), "-ecdh-*,mlkem*").unwrap();
        assert!(
            a.list
                .iter()
                .all(|n| !n.starts_with("ecdh-") && !n.starts_with("mlkem"))
        );
        let a = assemble(
            k,
            &d(k),
            "curve25519-sha256,sntrup761x25519-sha512@openssh.com",
        )
        .unwrap();
        assert_eq!(a.list, vec!["curve25519-sha256"]);
        assert_eq!(a.unsupported, vec!["sntrup761x25519-sha512@openssh.com"]);
        let e = assemble(k, &d(k), "sntrup761x25519-sha512@openssh.com").unwrap_err();
        assert!(e.contains("KexAlgorithms"), "{e}");
        let m = AlgorithmKind::Mac;
        let a = assemble(m, &d(m), "hmac-sha1*").unwrap();
        assert_eq!(a.list, vec!["hmac-sha1", "hmac-sha1-etm@openssh.com"]);
    }

    #[test]
    fn defaults_are_all_implemented_by_russh() {
        let p = Algorithms::default().preferred();
        assert_eq!(p.kex.len(), AlgorithmKind::Kex.defaults().len() + 2);
        assert_eq!(p.cipher.len(), AlgorithmKind::Cipher.defaults().len());
        assert_eq!(p.mac.len(), AlgorithmKind::Mac.defaults().len());
        assert_eq!(p.keys.len() + p.certificates.len(), 12);
        for kind in AlgorithmKind::ALL {
            for n in kind.defaults() {
                assert!(kind.supported().contains(n), "{n}");
            }
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("hmac-*", "hmac-sha1"));
        assert!(wildcard("*sha1*", "hmac-sha1-etm@openssh.com"));
        assert!(!wildcard("hmac-sha1", "hmac-sha1-etm@openssh.com"));
        assert!(wildcard("a?c", "abc"));
    }
}
