//! Which TLS certificates a BMC may present: the trust rules BMCs need,
//! which the web's do not fit. BMCs ship self-signed certificates, often
//! for names nobody resolves, so besides CA verification rekindle trusts
//!
//! - a pinned leaf: the host label `bmc_cert_sha256` (the certificate's
//!   SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it);
//! - a known-BMC-certificates file (`--bmc-known-certs FILE`), one
//!   `BMC FINGERPRINT` line per BMC, like OpenSSH's known_hosts: a BMC it
//!   lists must present that certificate; `--accept-new-bmc-certs` records
//!   the certificate of a BMC it does not list yet (trust on first use). A
//!   changed certificate is refused, never replaced;
//! - a certificate given to `--bmc-ca` that the BMC presents as its own
//!   leaf: a self-signed certificate made by `openssl req -x509` is marked
//!   `CA:TRUE`, which webpki refuses as an end entity (`CaUsedAsEndEntity`),
//!   yet it is exactly the certificate the operator said to trust.
//!
//! A pinned or known leaf is trusted whatever names it carries; the
//! handshake's signature is still checked against its key, so a copy of
//! the certificate without its private key does not pass.
//!
//! Owns fingerprints, the known-certificates file and the rustls verifier
//! of one BMC. It must not speak HTTP (`redfish` does) or retry: a refusal
//! is recorded in the verifier for `redfish` to report as a trust failure.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// The host label that pins a BMC's certificate.
pub const CERT_LABEL: &str = "bmc_cert_sha256";
/// A known-certificates file larger than this is not one.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// A certificate's SHA-256 fingerprint (of its DER encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// `AA:BB:...` as `openssl x509 -noout -fingerprint -sha256` prints it
    /// (with or without its `sha256 Fingerprint=` prefix), in either case;
    /// 64 hex digits without colons too.
    pub fn parse(input: &str) -> Result<Fingerprint, String> {
        let s = input.trim();
        let s = match s.split_once('=') {
            Some((prefix, rest)) if prefix.trim().eq_ignore_ascii_case("sha256 fingerprint") => {
                rest.trim()
            }
            _ => s,
        };
        let hex: String = if s.contains(':') {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() != 32 || parts.iter().any(|p| p.len() != 2) {
                return Err(bad_fingerprint(input));
            }
            parts.concat()
        } else {
            s.to_owned()
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(&hex, &mut out).map_err(|_| bad_fingerprint(input))?;
        Ok(Fingerprint(out))
    }
}

fn bad_fingerprint(input: &str) -> String {
    let shown: String = input.chars().take(120).collect();
    format!(
        "`{shown}` is not a SHA-256 fingerprint (expected 32 hex bytes as \
         `openssl x509 -noout -fingerprint -sha256` prints them: AA:BB:...)"
    )
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The known-BMC-certificates file: `BMC FINGERPRINT` lines, where BMC is
/// what a `bmc` label holds (an address or an https URL; compared by
/// origin, so `10.0.0.5` and `https://10.0.0.5:443` are one BMC).
#[derive(Debug)]
pub struct KnownCerts {
    path: PathBuf,
    accept_new: bool,
    /// origin -> (fingerprint, line in the file; 0 when recorded by this run).
    entries: Mutex<HashMap<String, (Fingerprint, usize)>>,
}

impl KnownCerts {
    /// Reads `path` (a missing file is an empty one: `--accept-new-bmc-certs`
    /// creates it).
    pub fn load(path: &Path, accept_new: bool) -> Result<KnownCerts, String> {
        let shown = path.display();
        let text = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("--bmc-known-certs {shown}: {e}")),
            Ok(m) if !m.is_file() => {
                return Err(format!("--bmc-known-certs {shown}: not a regular file"));
            }
            Ok(m) if m.len() > MAX_FILE => {
                return Err(format!(
                    "--bmc-known-certs {shown}: larger than {MAX_FILE} bytes"
                ));
            }
            Ok(_) => std::fs::read_to_string(path)
                .map_err(|e| format!("--bmc-known-certs {shown}: {e}"))?,
        };
        KnownCerts::parse(&text, path, accept_new)
    }

    /// Lines of `BMC FINGERPRINT`; blank lines and `#` comments are skipped.
    /// Errors say `file:line:column`.
    pub fn parse(text: &str, path: &Path, accept_new: bool) -> Result<KnownCerts, String> {
        let shown = path.display();
        let mut entries = HashMap::new();
        for (idx, raw) in text.lines().enumerate() {
            let n = idx + 1;
            let line = raw.trim_end_matches('\r');
            let body = line.trim_start();
            if body.trim().is_empty() || body.starts_with('#') {
                continue;
            }
            let col = line.len() - body.len() + 1;
            let mut words = body.split_whitespace();
            let (Some(bmc), Some(fp), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!(
                    "{shown}:{n}:{col}: expected `BMC FINGERPRINT` (an address or https URL, \
                     then AA:BB:... as `openssl x509 -fingerprint -sha256` prints it)"
                ));
            };
            let origin = origin_of(bmc).map_err(|e| format!("{shown}:{n}:{col}: {e}"))?;
            let fp_col = col + body.find(fp).unwrap_or(0);
            let fp = Fingerprint::parse(fp).map_err(|e| format!("{shown}:{n}:{fp_col}: {e}"))?;
            if let Some((_, first)) = entries.insert(origin.clone(), (fp, n)) {
                return Err(format!(
                    "{shown}:{n}:{col}: BMC {origin} is listed twice (first on line {first})"
                ));
            }
        }
        Ok(KnownCerts {
            path: path.to_owned(),
            accept_new,
            entries: Mutex::new(entries),
        })
    }

    fn lookup(&self, origin: &str) -> Option<(Fingerprint, usize)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(origin).copied()
    }

    /// Appends `origin fp` (first use, `--accept-new-bmc-certs`). The
    /// first certificate seen for a BMC in a run wins; a later different
    /// one is then a changed certificate.
    fn record(&self, origin: &str, fp: Fingerprint) -> Result<Fingerprint, String> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, _)) = entries.get(origin) {
            return Ok(*known);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("cannot record it in {}: {e}", self.path.display()))?;
        file.write_all(format!("{origin} {fp}\n").as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| format!("cannot record it in {}: {e}", self.path.display()))?;
        entries.insert(origin.to_owned(), (fp, 0));
        Ok(fp)
    }
}

/// `scheme://host[:port]` of a `bmc` label value (an address means https).
pub fn origin_of(bmc: &str) -> Result<String, String> {
    let b = bmc.trim();
    let url = if b.contains("://") {
        b.to_owned()
    } else {
        format!("https://{b}")
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("BMC `{bmc}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("BMC `{bmc}`: expected an address or an https URL"));
    }
    Ok(parsed.origin().ascii_serialization())
}

/// Every trust rule of a run, shared by the verifiers of all its BMCs.
pub struct Policy {
    /// `--bmc-insecure`: anything goes (the handshake's signature is still checked).
    insecure: bool,
    /// Certificates given to `--bmc-ca`, each trusted as a leaf too.
    ca_leaves: HashSet<Fingerprint>,
    /// CA verification: the system's roots and `--bmc-ca`.
    webpki: Arc<dyn ServerCertVerifier>,
    /// origin -> `bmc_cert_sha256`.
    pins: HashMap<String, Fingerprint>,
    known: Option<KnownCerts>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("insecure", &self.insecure)
            .field("pins", &self.pins.len())
            .field("known", &self.known)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// `ca_pem` is the `--bmc-ca` bundle's content, `pins` the
    /// `bmc_cert_sha256` labels by origin.
    pub fn new(
        ca_pem: Option<(&Path, &[u8])>,
        insecure: bool,
        pins: HashMap<String, Fingerprint>,
        known: Option<KnownCerts>,
    ) -> Result<Policy, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut extra = Vec::new();
        let mut ca_leaves = HashSet::new();
        if let Some((path, pem)) = ca_pem {
            let shown = path.display();
            for item in rustls::pki_types::pem::PemObject::pem_slice_iter(pem) {
                let der: CertificateDer<'static> =
                    item.map_err(|e| format!("--bmc-ca {shown}: {e}"))?;
                ca_leaves.insert(Fingerprint::of(&der));
                extra.push(der);
            }
            if extra.is_empty() {
                return Err(format!(
                    "--bmc-ca {shown}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
                ));
            }
        }
        let webpki =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, Arc::clone(&provider))
                .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?;
        Ok(Policy {
            insecure,
            ca_leaves,
            webpki: Arc::new(webpki),
            pins,
            known,
            provider,
        })
    }

    /// The client configuration for the BMC at `origin`, and its verifier
    /// (which keeps the reason of a refusal). No session resumption: one
    /// small configuration per BMC, and a resumed session would skip the
    /// certificate check.
    pub fn client_config(
        self: &Arc<Policy>,
        origin: &str,
    ) -> Result<(rustls::ClientConfig, Arc<Verifier>), String> {
        let verifier = Arc::new(Verifier {
            origin: origin.to_owned(),
            policy: Arc::clone(self),
            refusal: Mutex::new(None),
        });
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok((config, verifier))
    }
}

/// One BMC's certificate check, by [`Policy`].
#[derive(Debug)]
pub struct Verifier {
    origin: String,
    policy: Arc<Policy>,
    refusal: Mutex<Option<String>>,
}

impl Verifier {
    /// Why the last handshake's certificate was refused (taken once).
    pub fn take_refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn refuse(&self, why: String) -> rustls::Error {
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
    }

    /// What would trust `seen`, for the message.
    fn remedy(&self, seen: Fingerprint) -> String {
        format!(
            "to trust it, label the host `{CERT_LABEL}: \"{seen}\"`, or list `{} {seen}` in \
             --bmc-known-certs FILE (--accept-new-bmc-certs records it on first use), or give \
             the certificate (or its CA) to --bmc-ca",
            self.origin
        )
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let policy = &self.policy;
        let seen = Fingerprint::of(end_entity);
        if policy.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        if let Some(pin) = policy.pins.get(&self.origin) {
            if *pin == seen {
                return Ok(ServerCertVerified::assertion());
            }
            return Err(self.refuse(format!(
                "TLS certificate does not match the pinned one: it presented SHA256 {seen}, \
                 the host's `{CERT_LABEL}` label expects {pin}"
            )));
        }
        if let Some(known) = &policy.known
            && let Some((fp, line)) = known.lookup(&self.origin)
        {
            if fp == seen {
                return Ok(ServerCertVerified::assertion());
            }
            let place = if line == 0 {
                format!("{} (recorded by this run)", known.path.display())
            } else {
                format!("{}:{line}", known.path.display())
            };
            return Err(self.refuse(format!(
                "TLS certificate CHANGED: it presented SHA256 {seen}, {place} expects {fp}; \
                 refused (a changed certificate is never replaced: if the BMC's certificate \
                 was renewed, edit {place})"
            )));
        }
        if policy.ca_leaves.contains(&seen) {
            return Ok(ServerCertVerified::assertion());
        }
        match policy.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(e) => match &policy.known {
                Some(known) if known.accept_new => match known.record(&self.origin, seen) {
                    Ok(fp) if fp == seen => Ok(ServerCertVerified::assertion()),
                    Ok(fp) => Err(self.refuse(format!(
                        "TLS certificate CHANGED during this run: it presented SHA256 {seen}, \
                         {} recorded {fp}",
                        known.path.display()
                    ))),
                    Err(why) => {
                        Err(self.refuse(format!("TLS certificate SHA256 {seen} is new, and {why}")))
                    }
                },
                _ => Err(self.refuse(format!(
                    "TLS certificate not trusted ({e}); it presented SHA256 {seen}; {}",
                    self.remedy(seen)
                ))),
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.policy.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.policy.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.policy
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_as_openssl_prints_them() {
        let fp = Fingerprint::of(b"hello");
        let shown = fp.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(Fingerprint::parse(&shown), Ok(fp));
        assert_eq!(
            Fingerprint::parse(&format!("sha256 Fingerprint={shown}")),
            Ok(fp)
        );
        assert_eq!(
            Fingerprint::parse(&shown.to_lowercase().replace(':', "")),
            Ok(fp)
        );
        for bad in ["", "AA:BB", &shown[3..], &format!("{shown}:00"), "zz"] {
            let e = Fingerprint::parse(bad).unwrap_err();
            assert!(e.contains("not a SHA-256 fingerprint"), "{bad}: {e}");
        }
    }

    #[test]
    fn known_certs_files_parse_with_places() {
        let fp = Fingerprint::of(b"x");
        let text = format!("# BMCs\n10.0.0.5 {fp}\n  https://bmc.example:8443/ {fp}\n");
        let k = KnownCerts::parse(&text, Path::new("k"), false).unwrap();
        assert_eq!(k.lookup("https://10.0.0.5"), Some((fp, 2)));
        assert_eq!(k.lookup("https://bmc.example:8443"), Some((fp, 3)));
        let e = KnownCerts::parse("10.0.0.5\n", Path::new("k"), false).unwrap_err();
        assert!(e.starts_with("k:1:1: expected `BMC FINGERPRINT`"), "{e}");
        let e = KnownCerts::parse("# c\n  10.0.0.5 AA:BB\n", Path::new("k"), false).unwrap_err();
        assert!(e.starts_with("k:2:12: `AA:BB` is not"), "{e}");
        let e = KnownCerts::parse(
            &format!("a {fp}\nhttps://a:443 {fp}\n"),
            Path::new("k"),
            false,
        )
        .unwrap_err();
        assert!(
            e.contains("k:2:1: BMC https://a is listed twice (first on line 1)"),
            "{e}"
        );
        let e = KnownCerts::parse(&format!("ftp://a {fp}\n"), Path::new("k"), false).unwrap_err();
        assert!(e.starts_with("k:1:1: BMC `ftp://a`"), "{e}");
    }

    #[test]
    fn first_use_records_and_a_change_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known");
        let k = KnownCerts::load(&path, true).unwrap();
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        assert_eq!(k.record("https://h", a), Ok(a));
        // A second certificate for the same BMC does not replace the first.
        assert_eq!(k.record("https://h", b), Ok(a));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("https://h {a}\n"));
        let again = KnownCerts::load(&path, false).unwrap();
        assert_eq!(again.lookup("https://h"), Some((a, 1)));
    }
}
