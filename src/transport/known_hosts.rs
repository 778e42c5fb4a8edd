//! OpenSSH `known_hosts`, parsed once per run and matched in memory.
//!
//! Owns parsing (plain, `[host]:port`, wildcard, negated and hashed `|1|`
//! entries, `@revoked`, `@cert-authority`), lookups, the checks of a host
//! certificate (CA, signature, validity, principals, revocation) and
//! accept-new appends. It must not open connections or decide policy beyond
//! "match / unknown / changed / revoked" and the certificate's verdict.
//!
//! Plain literal patterns are indexed in a hash map, so a 32,000-host file
//! costs one map lookup per host. Hashed entries cannot be indexed (each has
//! its own salt): they are scanned with a precomputed HMAC key state, once
//! per name per run (a host is connected several times around a reboot).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::Certificate;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// Files larger than this are refused rather than read into memory.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("known_hosts {path}: {message}")]
pub struct KnownHostsError {
    pub path: String,
    pub message: String,
}

/// What known_hosts says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// No entry for any of the names.
    Unknown,
    /// Entries exist for the host but none holds this key.
    Changed {
        known: Vec<KnownLine>,
    },
    /// The key is marked `@revoked`.
    Revoked {
        line: usize,
    },
}

/// A recorded key for a host, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLine {
    pub line: usize,
    pub algorithm: String,
    pub fingerprint: String,
}

struct Record {
    line: usize,
    key: PublicKey,
    marker: Kind,
}

/// What a line says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The host's own key.
    Host,
    /// `@revoked`: never accept this key (a host key, a CA or a certificate's key).
    Revoked,
    /// `@cert-authority`: host certificates it signed are trusted for these names.
    Authority,
}

/// What known_hosts says about a host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVerdict {
    /// Signed by the CA on this line, valid now, for one of the names.
    Trusted {
        ca_line: usize,
    },
    /// No `@cert-authority` line for these names holds the signing key.
    UnknownAuthority {
        ca_fingerprint: String,
    },
    /// The CA key or the certificate's key is `@revoked` on this line.
    Revoked {
        line: usize,
        what: &'static str,
    },
    /// Outside its validity window (Unix seconds).
    Expired {
        valid_before: u64,
    },
    NotYetValid {
        valid_after: u64,
    },
    /// Valid, but for other hosts.
    WrongPrincipal {
        principals: Vec<String>,
    },
    /// Not a host certificate, a bad signature, or a critical option we do not know.
    Invalid {
        reason: String,
    },
}

struct HashedRecord {
    /// HMAC-SHA1 keyed by the salt, cloned per lookup.
    mac: Hmac<Sha1>,
    hash: [u8; 20],
    record: Record,
}

struct PatternRecord {
    patterns: Vec<String>,
    record: Record,
}

#[derive(Default)]
struct Store {
    literal: HashMap<String, Vec<Record>>,
    hashed: Vec<HashedRecord>,
    /// Indexes into `hashed` matching a name, computed on first lookup.
    hashed_hits: Mutex<HashMap<String, Vec<usize>>>,
    patterns: Vec<PatternRecord>,
    lines: usize,
}

/// An in-memory known_hosts file.
pub struct KnownHosts {
    path: PathBuf,
    store: RwLock<Store>,
    /// Serialises accept-new appends (read-check-append must be atomic).
    append: Mutex<()>,
}

/// The name under which OpenSSH records `host` on `port`.
pub fn host_port_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl KnownHosts {
    /// Reads `path`; a missing file is an empty store (accept-new may create it).
    /// Lines that do not parse (unsupported key types, garbage) are skipped, as OpenSSH does.
    pub fn load(path: &Path) -> Result<KnownHosts, KnownHostsError> {
        let err = |message: String| KnownHostsError {
            path: path.display().to_string(),
            message,
        };
        let text = match std::fs::metadata(path) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(err(format!(
                    "file is {} bytes, more than the {MAX_FILE_BYTES} accepted",
                    meta.len()
                )));
            }
            Ok(_) => std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        let mut store = Store::default();
        for (idx, line) in text.lines().enumerate() {
            store.add_line(idx + 1, line);
        }
        store.lines = text.lines().count();
        Ok(KnownHosts {
            path: path.to_path_buf(),
            store: RwLock::new(store),
            append: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Algorithms recorded for any of `names`, so the client can prefer them
    /// in the handshake (as OpenSSH does) and avoid a spurious "changed".
    pub fn known_algorithms(&self, names: &[String]) -> Vec<russh::keys::Algorithm> {
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        let mut algs = Vec::new();
        store.for_each_match(names, |r| {
            let alg = r.key.algorithm();
            if r.marker == Kind::Host && !algs.contains(&alg) {
                algs.push(alg);
            }
        });
        algs
    }

    /// True when an `@cert-authority` line matches one of `names`: the host
    /// may prove itself with a certificate, so the client asks for one.
    pub fn has_authority(&self, names: &[String]) -> bool {
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        store.for_each_match(names, |r| any |= r.marker == Kind::Authority);
        any
    }

    /// Checks a host certificate presented by a host known under `names`
    /// (`[host]:port` forms, as for [`Self::check`]); `principals` are the
    /// host's name and address as the certificate would list them; `now`
    /// is Unix seconds.
    pub fn check_certificate(
        &self,
        names: &[String],
        principals: &[&str],
        cert: &Certificate,
        now: u64,
    ) -> CertVerdict {
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        let ca = cert.signature_key();
        let own = cert.public_key();
        let mut ca_line = None;
        let mut revoked = None;
        store.for_each_match(names, |r| match r.marker {
            Kind::Revoked if r.key.key_data() == ca => {
                revoked.get_or_insert((r.line, "the CA key that signed it"));
            }
            Kind::Revoked if r.key.key_data() == own => {
                revoked.get_or_insert((r.line, "its key"));
            }
            Kind::Authority if r.key.key_data() == ca => {
                ca_line = Some(ca_line.map_or(r.line, |l: usize| l.min(r.line)));
            }
            _ => {}
        });
        if let Some((line, what)) = revoked {
            return CertVerdict::Revoked { line, what };
        }
        if cert.cert_type() != CertType::Host {
            return CertVerdict::Invalid {
                reason: "it is a user certificate, not a host certificate".into(),
            };
        }
        let Some(ca_line) = ca_line else {
            return CertVerdict::UnknownAuthority {
                ca_fingerprint: ca.fingerprint(HashAlg::Sha256).to_string(),
            };
        };
        if cert.verify_signature().is_err() {
            return CertVerdict::Invalid {
                reason: "its signature does not verify with the CA key".into(),
            };
        }
        if now < cert.valid_after() {
            return CertVerdict::NotYetValid {
                valid_after: cert.valid_after(),
            };
        }
        if now >= cert.valid_before() {
            return CertVerdict::Expired {
                valid_before: cert.valid_before(),
            };
        }
        if let Some((name, _)) = cert.critical_options().iter().next() {
            return CertVerdict::Invalid {
                reason: format!(
                    "it has the critical option `{name}`, which rekindle does not know"
                ),
            };
        }
        // No principals: valid for any host (as OpenSSH treats host certificates).
        let listed = cert.valid_principals();
        if !listed.is_empty()
            && !principals
                .iter()
                .any(|p| listed.iter().any(|l| l.eq_ignore_ascii_case(p)))
        {
            return CertVerdict::WrongPrincipal {
                principals: listed.to_vec(),
            };
        }
        CertVerdict::Trusted { ca_line }
    }

    /// Checks `key` for a host known under any of `names` (already in
    /// `[host]:port` form where the port is not 22).
    pub fn check(&self, names: &[String], key: &PublicKey) -> Verdict {
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        store.check(names, key)
    }

    /// accept-new: records `key` for `names` unless another connection did
    /// so meanwhile. Returns the verdict after the append (Match, or
    /// Changed/Revoked if a conflicting entry appeared).
    pub fn accept_new(
        &self,
        names: &[String],
        key: &PublicKey,
    ) -> Result<Verdict, KnownHostsError> {
        let _guard = self.append.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = self.check(names, key);
        if verdict != Verdict::Unknown {
            return Ok(verdict);
        }
        let err = |message: String| KnownHostsError {
            path: self.path.display().to_string(),
            message,
        };
        let encoded = key.to_openssh().map_err(|e| err(e.to_string()))?;
        // Drop the key's comment: known_hosts lines carry none of ours.
        let mut fields = encoded.split_whitespace();
        let (Some(alg), Some(blob)) = (fields.next(), fields.next()) else {
            return Err(err("could not encode the host key".into()));
        };
        let line = format!("{} {alg} {blob}", names.join(","));
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| err(e.to_string()))?;
        // A file that does not end in a newline would glue our line onto its last one.
        let needs_newline = std::fs::read(&self.path)
            .map(|b| b.last().is_some_and(|c| *c != b'\n'))
            .unwrap_or(false);
        let text = if needs_newline {
            format!("\n{line}\n")
        } else {
            format!("{line}\n")
        };
        file.write_all(text.as_bytes())
            .map_err(|e| err(e.to_string()))?;
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        store.lines += 1 + usize::from(needs_newline);
        let n = store.lines;
        store.add_line(n, &line);
        Ok(store.check(names, key))
    }
}

impl Store {
    fn add_line(&mut self, line_no: usize, line: &str) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return;
        }
        let Ok(entry) = trimmed.parse::<Entry>() else {
            return;
        };
        let marker = match entry.marker() {
            None => Kind::Host,
            Some(Marker::Revoked) => Kind::Revoked,
            Some(Marker::CertAuthority) => Kind::Authority,
        };
        let record = Record {
            line: line_no,
            key: entry.public_key().clone(),
            marker,
        };
        match entry.host_patterns() {
            HostPatterns::HashedName { salt, hash } => {
                let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else {
                    return;
                };
                // A new hashed entry may match names already cached as misses.
                self.hashed_hits
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                self.hashed.push(HashedRecord {
                    mac,
                    hash: *hash,
                    record,
                });
            }
            HostPatterns::Patterns(patterns) => {
                let literal = patterns
                    .iter()
                    .all(|p| !p.starts_with('!') && !p.contains(['*', '?']));
                if literal && patterns.len() == 1 {
                    self.literal
                        .entry(patterns[0].to_ascii_lowercase())
                        .or_default()
                        .push(record);
                } else if literal {
                    // Several literal names share one key: index each.
                    for p in patterns {
                        self.literal
                            .entry(p.to_ascii_lowercase())
                            .or_default()
                            .push(Record {
                                line: record.line,
                                key: record.key.clone(),
                                marker: record.marker,
                            });
                    }
                } else {
                    self.patterns.push(PatternRecord {
                        patterns: patterns.iter().map(|p| p.to_ascii_lowercase()).collect(),
                        record,
                    });
                }
            }
        }
    }

    fn for_each_match(&self, names: &[String], mut f: impl FnMut(&Record)) {
        for name in names {
            let lower = name.to_ascii_lowercase();
            if let Some(records) = self.literal.get(&lower) {
                records.iter().for_each(&mut f);
            }
            for i in self.hashed_matches(&lower) {
                if let Some(h) = self.hashed.get(i) {
                    f(&h.record);
                }
            }
            for p in &self.patterns {
                if patterns_match(&p.patterns, &lower) {
                    f(&p.record);
                }
            }
        }
    }

    fn hashed_matches(&self, lower: &str) -> Vec<usize> {
        if self.hashed.is_empty() {
            return Vec::new();
        }
        let cached = self
            .hashed_hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(lower)
            .cloned();
        if let Some(hits) = cached {
            return hits;
        }
        // One HMAC per hashed entry: with a fleet-sized hashed file that is
        // milliseconds per name, so the scan runs without the lock (lookups
        // of other names proceed; a name looked up twice at once is merely
        // computed twice).
        let hits: Vec<usize> = self
            .hashed
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                let mut mac = h.mac.clone();
                mac.update(lower.as_bytes());
                mac.finalize().into_bytes().as_slice() == h.hash
            })
            .map(|(i, _)| i)
            .collect();
        self.hashed_hits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(lower.to_string(), hits.clone());
        hits
    }

    fn check(&self, names: &[String], key: &PublicKey) -> Verdict {
        let mut matched = false;
        let mut revoked = None;
        let mut known = Vec::new();
        self.for_each_match(names, |r| {
            let same = r.key.key_data() == key.key_data();
            if r.marker == Kind::Authority {
                // A CA vouches for certificates, never for a bare key.
            } else if r.marker == Kind::Revoked {
                if same {
                    revoked = Some(r.line);
                }
            } else if same {
                matched = true;
            } else {
                known.push(KnownLine {
                    line: r.line,
                    algorithm: r.key.algorithm().to_string(),
                    fingerprint: r.key.fingerprint(HashAlg::Sha256).to_string(),
                });
            }
        });
        if let Some(line) = revoked {
            Verdict::Revoked { line }
        } else if matched {
            Verdict::Match
        } else if known.is_empty() {
            Verdict::Unknown
        } else {
            known.sort_by_key(|k| k.line);
            known.dedup();
            Verdict::Changed { known }
        }
    }
}

/// OpenSSH pattern-list semantics: a negated match vetoes, else any positive match wins.
fn patterns_match(patterns: &[String], name: &str) -> bool {
    let mut positive = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), name.as_bytes()) {
            positive = true;
        }
    }
    positive
}

/// `*` and `?` wildcards, iterative with single backtrack point (linear-ish, no recursion).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPiowFY80CM4S1Dd9n+gLDCIpUKKLHGjvVlR4KkU7kL";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC0mETS/UGhIQyEZDl60EkYLMDODnuix+ApzYB0p56Cg";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key parses")
    }

    fn store(text: &str) -> KnownHosts {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).expect("write");
        KnownHosts::load(&path).expect("load")
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn glob_wildcards() {
        assert!(glob(b"*.example.net", b"a.example.net"));
        assert!(glob(b"web?", b"web1"));
        assert!(!glob(b"web?", b"web10"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a*b", b"acbd"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
    }

    #[test]
    fn plain_port_and_changed() {
        let kh = store(&format!("db1,10.0.0.1 {ED1}\n[db2]:2222 {ED1}\n"));
        assert_eq!(kh.check(&names(&["db1"]), &key(ED1)), Verdict::Match);
        assert_eq!(kh.check(&names(&["10.0.0.1"]), &key(ED1)), Verdict::Match);
        assert_eq!(kh.check(&names(&["[db2]:2222"]), &key(ED1)), Verdict::Match);
        assert_eq!(kh.check(&names(&["db2"]), &key(ED1)), Verdict::Unknown);
        match kh.check(&names(&["db1"]), &key(ED2)) {
            Verdict::Changed { known } => assert_eq!(known[0].line, 1),
            other => panic!("expected changed, got {other:?}"),
        }
    }

    #[test]
    fn hashed_entry_matches_only_its_name() {
        // HMAC-SHA1 of "host1" with this salt, as `ssh-keygen -H` would write it.
        let salt = b"0123456789abcdefghij";
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).expect("key");
        mac.update(b"host1");
        let hash = mac.finalize().into_bytes();
        use russh::keys::ssh_encoding::base64::{Base64, Encoding};
        let line = format!(
            "|1|{}|{} {ED1}\n",
            Base64::encode_string(salt),
            Base64::encode_string(&hash)
        );
        let kh = store(&line);
        assert_eq!(kh.check(&names(&["host1"]), &key(ED1)), Verdict::Match);
        assert_eq!(kh.check(&names(&["host2"]), &key(ED1)), Verdict::Unknown);
    }

    #[test]
    fn wildcard_negation_and_revoked() {
        let kh = store(&format!(
            "*.pg.example,!bad.pg.example {ED1}\n@revoked * {ED2}\ngarbage line\n"
        ));
        assert_eq!(
            kh.check(&names(&["a.pg.example"]), &key(ED1)),
            Verdict::Match
        );
        assert_eq!(
            kh.check(&names(&["bad.pg.example"]), &key(ED1)),
            Verdict::Unknown
        );
        assert_eq!(
            kh.check(&names(&["a.pg.example"]), &key(ED2)),
            Verdict::Revoked { line: 2 }
        );
    }

    #[test]
    fn fleet_sized_file_is_indexed() {
        let mut text = String::new();
        for i in 0..32_000 {
            text.push_str(&format!(
                "pg-{i:05}.example.net,10.1.{}.{} {ED1}\n",
                i / 250,
                i % 250
            ));
        }
        let kh = store(&text);
        assert_eq!(
            kh.check(&names(&["10.1.127.249"]), &key(ED1)),
            Verdict::Match
        );
        assert_eq!(
            kh.check(&names(&["pg-31999.example.net"]), &key(ED1)),
            Verdict::Match
        );
        assert_eq!(
            kh.check(&names(&["pg-32000.example.net"]), &key(ED1)),
            Verdict::Unknown
        );
    }

    #[test]
    fn accept_new_appends_once_and_rereads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/known_hosts");
        let kh = KnownHosts::load(&path).expect("missing file is empty");
        let n = names(&["[h]:2222", "[127.0.0.2]:2222"]);
        assert_eq!(
            kh.accept_new(&n, &key(ED1)).expect("append"),
            Verdict::Match
        );
        assert_eq!(
            kh.accept_new(&n, &key(ED1)).expect("append"),
            Verdict::Match
        );
        let text = std::fs::read_to_string(&path).expect("written");
        assert_eq!(text.lines().count(), 1, "{text}");
        let again = KnownHosts::load(&path).expect("reload");
        assert_eq!(
            again.check(&names(&["[127.0.0.2]:2222"]), &key(ED1)),
            Verdict::Match
        );
        assert!(matches!(
            again.accept_new(&n, &key(ED2)).expect("no append"),
            Verdict::Changed { .. }
        ));
    }

    /// A certificate for `key`, signed by `ca`, valid `from..to` (Unix s).
    fn cert(
        ca: &russh::keys::PrivateKey,
        key: &PublicKey,
        kind: CertType,
        principals: &[&str],
        (from, to): (u64, u64),
    ) -> Certificate {
        use russh::keys::ssh_key::certificate::Builder;
        let mut b =
            Builder::new([7u8; 16].to_vec(), key.key_data().clone(), from, to).expect("builder");
        b.cert_type(kind).expect("type");
        if principals.is_empty() {
            b.all_principals_valid().expect("principals");
        }
        for p in principals {
            b.valid_principal(*p).expect("principal");
        }
        b.sign(ca).expect("sign")
    }

    fn ed25519(seed: u8) -> russh::keys::PrivateKey {
        russh::keys::PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
            &[seed; 32],
        ))
    }

    #[test]
    fn host_certificates_are_checked_against_cert_authority_lines() {
        let ca = ed25519(1);
        let other_ca = ed25519(2);
        let host = ed25519(3);
        let ca_pub = ca.public_key().to_openssh().expect("encode");
        let other_pub = other_ca.public_key().to_openssh().expect("encode");
        let host_pub = host.public_key().clone();
        let kh = store(&format!(
            "@cert-authority *.pg.example,[10.0.0.*]:2222 {ca_pub}\n@cert-authority revoked-ca.example {other_pub}\n@revoked revoked-ca.example {other_pub}\n"
        ));
        let n = names(&["db1.pg.example"]);
        assert!(kh.has_authority(&n));
        assert!(kh.has_authority(&names(&["[10.0.0.7]:2222"])));
        assert!(!kh.has_authority(&names(&["db1.other.example"])));
        // A CA line never vouches for a bare key.
        assert_eq!(kh.check(&n, ca.public_key()), Verdict::Unknown);

        let now = 1_000_000;
        let window = (now - 60, now + 3600);
        let good = cert(&ca, &host_pub, CertType::Host, &["db1.pg.example"], window);
        assert_eq!(
            kh.check_certificate(&n, &["db1.pg.example", "10.0.0.1"], &good, now),
            CertVerdict::Trusted { ca_line: 1 }
        );
        // By address too.
        let by_addr = cert(&ca, &host_pub, CertType::Host, &["10.0.0.7"], window);
        assert_eq!(
            kh.check_certificate(
                &names(&["[10.0.0.7]:2222"]),
                &["x", "10.0.0.7"],
                &by_addr,
                now
            ),
            CertVerdict::Trusted { ca_line: 1 }
        );
        let any = cert(&ca, &host_pub, CertType::Host, &[], window);
        assert!(matches!(
            kh.check_certificate(&n, &["db1.pg.example"], &any, now),
            CertVerdict::Trusted { .. }
        ));
        assert_eq!(
            kh.check_certificate(&n, &["db2.pg.example"], &good, now),
            CertVerdict::WrongPrincipal {
                principals: vec!["db1.pg.example".into()]
            }
        );
        assert_eq!(
            kh.check_certificate(&n, &["db1.pg.example"], &good, now + 3600),
            CertVerdict::Expired {
                valid_before: now + 3600
            }
        );
        assert_eq!(
            kh.check_certificate(&n, &["db1.pg.example"], &good, now - 61),
            CertVerdict::NotYetValid {
                valid_after: now - 60
            }
        );
        let foreign = cert(
            &other_ca,
            &host_pub,
            CertType::Host,
            &["db1.pg.example"],
            window,
        );
        assert!(matches!(
            kh.check_certificate(&n, &["db1.pg.example"], &foreign, now),
            CertVerdict::UnknownAuthority { .. }
        ));
        let user = cert(&ca, &host_pub, CertType::User, &["db1.pg.example"], window);
        assert!(matches!(
            kh.check_certificate(&n, &["db1.pg.example"], &user, now),
            CertVerdict::Invalid { .. }
        ));
        let rn = names(&["revoked-ca.example"]);
        assert_eq!(
            kh.check_certificate(&rn, &["revoked-ca.example"], &foreign, now),
            CertVerdict::Revoked {
                line: 3,
                what: "the CA key that signed it"
            }
        );
    }

    #[test]
    fn a_revoked_certificate_key_is_refused() {
        let ca = ed25519(1);
        let host = ed25519(3);
        let kh = store(&format!(
            "@cert-authority * {}\n@revoked * {}\n",
            ca.public_key().to_openssh().expect("encode"),
            host.public_key().to_openssh().expect("encode")
        ));
        let c = cert(
            &ca,
            host.public_key(),
            CertType::Host,
            &["h"],
            (0, u64::MAX),
        );
        assert_eq!(
            kh.check_certificate(&names(&["h"]), &["h"], &c, 10),
            CertVerdict::Revoked {
                line: 2,
                what: "its key"
            }
        );
    }
}
