//! OpenSSH is the oracle: each case runs `ssh -F CONFIG -o BatchMode=yes
//! HOST true` (OpenSSH 9.2) and rekindle (the same config, the same
//! known_hosts) against the same real server, and asserts the same verdict:
//! connects, or refused for the same reason class.
//!
//! Servers, each started once: OpenSSH `sshd` modern, RSA-only host keys,
//! CentOS 6- and 7-era algorithm sets, `hmac-sha1` only, host certificates
//! (valid, expired, for another host), `MaxSessions 1`; dropbear; tinysshd.
//! dropbear and tinysshd log in as the `rekindle-ssh` user that
//! scripts/test.sh creates (they read `~/.ssh/authorized_keys`).
//!
//! Deliberate differences are cases with `differs` set: the reason is
//! written there, and rekindle's own verdict is still asserted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rekindle::inventory::Host;
use rekindle::transport::ssh::{SshConnector, SshOptions};
use rekindle::transport::{ConnectErrorKind, Connection, Connector};

use crate::sshd::{ClientKeys, Sshd};
use crate::support::KillOnDrop;

/// The unprivileged login user for dropbear and tinysshd (scripts/test.sh).
pub const LOGIN_USER: &str = "rekindle-ssh";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Connects,
    UnknownHostKey,
    ChangedHostKey,
    Revoked,
    CertPrincipal,
    CertExpired,
    NoCommonAlgorithm,
    AuthFailed,
    Other,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Reads OpenSSH's verdict from its exit code and messages.
fn classify_ssh(code: i32, stderr: &str) -> Verdict {
    let s = stderr;
    if code == 0 {
        Verdict::Connects
    } else if s.contains("REVOKED") || s.contains("is revoked") || s.contains("marked as revoked") {
        Verdict::Revoked
    } else if s.contains("not a listed principal") {
        Verdict::CertPrincipal
    } else if s.contains("Certificate invalid: expired") {
        Verdict::CertExpired
    } else if s.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        Verdict::ChangedHostKey
    } else if s.contains("Unable to negotiate") || s.contains("no matching") {
        Verdict::NoCommonAlgorithm
    } else if s.contains("host key is known")
        || s.contains("Host key verification failed")
        || s.contains("No ") && s.contains("host key is known")
    {
        Verdict::UnknownHostKey
    } else if s.contains("Permission denied") {
        Verdict::AuthFailed
    } else {
        Verdict::Other
    }
}

/// Reads rekindle's verdict from the error's kind (and, inside a kind,
/// which check refused).
fn classify_rekindle(kind: ConnectErrorKind, message: &str) -> Verdict {
    match kind {
        ConnectErrorKind::HostKeyUnknown => Verdict::UnknownHostKey,
        ConnectErrorKind::HostKeyChanged if message.contains("@revoked") => Verdict::Revoked,
        ConnectErrorKind::HostKeyChanged => Verdict::ChangedHostKey,
        ConnectErrorKind::HostCertificate if message.contains("@revoked") => Verdict::Revoked,
        ConnectErrorKind::HostCertificate if message.contains("expired") => Verdict::CertExpired,
        ConnectErrorKind::HostCertificate if message.contains("is for ") => Verdict::CertPrincipal,
        // A CA nobody trusts, and the plain key is not known either.
        ConnectErrorKind::HostCertificate => Verdict::UnknownHostKey,
        ConnectErrorKind::Auth => Verdict::AuthFailed,
        ConnectErrorKind::Protocol if message.contains("no common") => Verdict::NoCommonAlgorithm,
        _ => Verdict::Other,
    }
}

/// A server under test: where it listens, as whom to log in, its host keys.
struct Server {
    label: &'static str,
    addr: String,
    port: u16,
    user: String,
    /// `ALGORITHM BASE64` host key lines it serves.
    keys: Vec<String>,
}

impl Server {
    fn from_sshd(label: &'static str, sshd: &Sshd, key_files: &[&str]) -> Server {
        Server {
            label,
            addr: sshd.addr(),
            port: sshd.port(),
            user: rekindle::transport::ssh_config::local_user(),
            keys: key_files
                .iter()
                .map(|f| public_line(&sshd.dir().join(format!("{f}.pub"))))
                .collect(),
        }
    }

    fn key(&self) -> &str {
        &self.keys[0]
    }

    fn known(&self) -> String {
        format!("[{}]:{} {}\n", self.addr, self.port, self.key())
    }
}

fn public_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn keygen(path: &Path, kind: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

/// Signs `key.pub` as a host certificate: principals, validity (`-V`).
fn sign_host(ca: &Path, key: &Path, principals: &str, validity: &str) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-h", "-I", "conformance", "-n", principals, "-V", validity])
        .arg(key.with_extension("pub"))
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen -s");
    assert!(st.success());
}

/// 127.41.x.y addresses (this suite's range) for non-sshd servers.
fn fresh_addr() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let k = NEXT.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 200) * 5;
    Ipv4Addr::new(127, 41, (k / 250 % 250) as u8, (k % 250 + 1) as u8)
}

fn free_port(addr: Ipv4Addr) -> u16 {
    for port in 26000..27000u16 {
        if TcpListener::bind((addr, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 26000-26999 on {addr}");
}

fn wait_listening(addr: Ipv4Addr, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&(addr, port).into(), Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}:{port}");
}

/// Adds `public` to the login user's authorized_keys (append-only: tests
/// running at once each add their own key).
pub fn authorize_login_user(public: &Path) {
    let home = PathBuf::from(format!("/home/{LOGIN_USER}"));
    assert!(
        home.is_dir(),
        "the test user {LOGIN_USER} is missing: run scripts/test.sh once (it creates it)"
    );
    let ssh = home.join(".ssh");
    let _ = std::fs::create_dir(&ssh);
    let auth = ssh.join("authorized_keys");
    let line = std::fs::read_to_string(public).expect("public key");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auth)
        .expect("authorized_keys");
    std::io::Write::write_all(&mut f, line.as_bytes()).expect("append");
    let chown = Command::new("chown")
        .args(["-R", &format!("{LOGIN_USER}:{LOGIN_USER}")])
        .arg(&ssh)
        .status()
        .expect("chown");
    assert!(chown.success());
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// dropbear (Debian `dropbear-bin`) on a 127.41.x.y address.
pub struct Dropbear {
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub key: String,
}

impl Dropbear {
    pub fn start() -> Dropbear {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("host_ed25519");
        let st = Command::new("dropbearkey")
            .args(["-t", "ed25519", "-f"])
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("dropbearkey (Debian dropbear-bin)");
        assert!(st.success());
        let out = Command::new("dropbearkey")
            .arg("-y")
            .arg("-f")
            .arg(&key)
            .output()
            .expect("dropbearkey -y");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("ssh-ed25519 "))
            .expect("public key line");
        let public = line
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let addr = fresh_addr();
        let port = free_port(addr);
        let child = Command::new("dropbear")
            .args(["-F", "-E", "-s", "-p", &format!("{addr}:{port}"), "-r"])
            .arg(&key)
            .arg("-P")
            .arg(dir.path().join("pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dropbear starts");
        let child = KillOnDrop::new(child);
        wait_listening(addr, port);
        Dropbear {
            _child: child,
            _dir: dir,
            addr,
            port,
            key: public,
        }
    }
}

/// tinysshd (Debian `tinysshd`) under ucspi-tcp's `tcpserver`.
pub struct Tinysshd {
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub key: String,
}

impl Tinysshd {
    pub fn start() -> Tinysshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("keys");
        let st = Command::new("tinysshd-makekey")
            .arg(&keys)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tinysshd-makekey (Debian tinysshd)");
        assert!(st.success());
        let raw = std::fs::read(keys.join("ed25519.pk")).expect("ed25519.pk");
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&(raw.len() as u32).to_be_bytes());
        blob.extend_from_slice(&raw);
        let key = format!("ssh-ed25519 {}", base64(&blob));
        let addr = fresh_addr();
        let port = free_port(addr);
        let child = Command::new("tcpserver")
            .args(["-HRDl0", &addr.to_string(), &port.to_string()])
            .arg("/usr/sbin/tinysshd")
            .arg(&keys)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpserver (Debian ucspi-tcp)");
        let child = KillOnDrop::new(child);
        wait_listening(addr, port);
        Tinysshd {
            _child: child,
            _dir: dir,
            addr,
            port,
            key,
        }
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One case: a server, known_hosts text, extra config lines, the verdict.
struct Case {
    name: &'static str,
    server: usize,
    known: String,
    extra: String,
    expect: Verdict,
    /// Rekindle's deliberate difference: its verdict and why.
    differs: Option<(Verdict, &'static str)>,
}

fn case(name: &'static str, server: usize, known: String, extra: &str, expect: Verdict) -> Case {
    Case {
        name,
        server,
        known,
        extra: extra.to_string(),
        expect,
        differs: None,
    }
}

/// Runs OpenSSH's client on a case; returns its verdict and stderr.
fn run_ssh(config: &Path) -> (Verdict, String) {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-o", "BatchMode=yes", "target", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        classify_ssh(out.status.code().unwrap_or(-1), &stderr),
        stderr,
    )
}

async fn run_rekindle(config: &Path, default_known: &Path) -> (Verdict, String) {
    let connector = match SshConnector::new(SshOptions {
        identities: vec![],
        known_hosts: default_known.to_path_buf(),
        known_hosts_explicit: false,
        ssh_config: Some(config.to_path_buf()),
        accept_new_host_keys: false,
        use_agent: false,
    }) {
        Ok(c) => c,
        Err(e) => return (Verdict::Other, e.to_string()),
    };
    let host = Host {
        name: "target".into(),
        address: "target".into(),
        port: 22,
        user: None,
        jump: None,
        labels: BTreeMap::new(),
        identity_file: None,
        escalation: None,
        bmc: None,
        groups: vec![],
        span: rekindle::diag::Span::new("test".into(), 1, 1, 1),
    };
    let connect = connector.connect(&host, Duration::from_secs(10));
    match tokio::time::timeout(Duration::from_secs(30), connect).await {
        Err(_) => (Verdict::Other, "hung".into()),
        Ok(Err(e)) => (classify_rekindle(e.kind, &e.message), e.message),
        Ok(Ok(s)) => match s.exec("true", Duration::from_secs(10)).await {
            Ok(out) if out.exit_status == Some(0) => (Verdict::Connects, String::new()),
            other => (Verdict::Other, format!("{other:?}")),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rekindle_reaches_what_openssh_reaches_and_refuses_what_it_refuses() {
    let keys = ClientKeys::new();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let ca = w.join("ca");
    keygen(&ca, "ed25519");
    let other_ca = w.join("other_ca");
    keygen(&other_ca, "ed25519");
    let stranger = w.join("stranger");
    keygen(&stranger, "ed25519");
    authorize_login_user(&keys.key().with_extension("pub"));

    let rsa = |dir: &Path, _: &[Ipv4Addr]| {
        keygen(&dir.join("host_rsa"), "rsa");
        format!("HostKey {}/host_rsa\n", dir.display())
    };
    let modern = Sshd::start_with(&keys, 1, |dir, _| {
        keygen(&dir.join("host_ecdsa"), "ecdsa");
        format!("HostKey {}/host_ecdsa\n", dir.display())
    });
    let rsa_only = Sshd::start_with(&keys, 1, |dir, a| {
        rsa(dir, a) + "HostKeyAlgorithms rsa-sha2-512,rsa-sha2-256\n"
    });
    let centos6 = Sshd::start_with(&keys, 1, |dir, a| {
        rsa(dir, a)
            + "HostKeyAlgorithms ssh-rsa\n\
               KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group1-sha1\n\
               Ciphers aes128-ctr,aes256-ctr,aes128-cbc\n\
               MACs hmac-sha1\n"
    });
    let centos7 = Sshd::start_with(&keys, 1, |dir, a| {
        rsa(dir, a)
            + "HostKeyAlgorithms ssh-rsa,rsa-sha2-512,rsa-sha2-256\n\
               KexAlgorithms curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha256,diffie-hellman-group14-sha1\n\
               Ciphers aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com\n\
               MACs hmac-sha2-256,hmac-sha2-512,hmac-sha1\n"
    });
    let sha1_mac = Sshd::start_with(&keys, 1, |_, _| {
        "Ciphers aes128-ctr\nMACs hmac-sha1\n".to_string()
    });
    let cert = |validity: &'static str, principals: Option<&'static str>| {
        let ca = ca.clone();
        move |dir: &Path, a: &[Ipv4Addr]| {
            let key = dir.join("host_ed25519");
            let p = principals.map_or_else(|| a[0].to_string(), str::to_string);
            sign_host(&ca, &key, &p, validity);
            format!("HostCertificate {}/host_ed25519-cert.pub\n", dir.display())
        }
    };
    let cert_ok = Sshd::start_with(&keys, 1, cert("-5m:+1h", None));
    let cert_expired = Sshd::start_with(&keys, 1, cert("20200101:20200102", None));
    let cert_other = Sshd::start_with(&keys, 1, cert("-5m:+1h", Some("elsewhere.example")));
    let max1 = Sshd::start_with(&keys, 1, |_, _| "MaxSessions 1\n".to_string());
    let dropbear = Dropbear::start();
    let tiny = Tinysshd::start();

    let servers = [
        Server::from_sshd("modern", &modern, &["host_ed25519", "host_ecdsa"]),
        Server::from_sshd("rsa-only", &rsa_only, &["host_rsa"]),
        Server::from_sshd("centos6", &centos6, &["host_rsa"]),
        Server::from_sshd("centos7", &centos7, &["host_rsa"]),
        Server::from_sshd("hmac-sha1", &sha1_mac, &["host_ed25519"]),
        Server::from_sshd("cert", &cert_ok, &["host_ed25519"]),
        Server::from_sshd("cert-expired", &cert_expired, &["host_ed25519"]),
        Server::from_sshd("cert-other", &cert_other, &["host_ed25519"]),
        Server::from_sshd("maxsessions1", &max1, &["host_ed25519"]),
        Server {
            label: "dropbear",
            addr: dropbear.addr.to_string(),
            port: dropbear.port,
            user: LOGIN_USER.into(),
            keys: vec![dropbear.key.clone()],
        },
        Server {
            label: "tinysshd",
            addr: tiny.addr.to_string(),
            port: tiny.port,
            user: LOGIN_USER.into(),
            keys: vec![tiny.key.clone()],
        },
    ];
    const MODERN: usize = 0;
    const RSA: usize = 1;
    const C6: usize = 2;
    const C7: usize = 3;
    const SHA1: usize = 4;
    const CERT: usize = 5;
    const EXPIRED: usize = 6;
    const OTHER: usize = 7;
    const MAX1: usize = 8;
    const DROPBEAR: usize = 9;
    const TINY: usize = 10;
    let s = &servers;
    let ca_line = public_line(&ca.with_extension("pub"));
    let other_ca_line = public_line(&other_ca.with_extension("pub"));
    let stranger_line = public_line(&stranger.with_extension("pub"));
    let m = &s[MODERN];
    let hashed = hash_known(w, &m.known());
    let ca_for = |srv: &Server| format!("@cert-authority [{}]:{} {ca_line}\n", srv.addr, srv.port);
    let net = |srv: &Server| {
        let mut parts: Vec<&str> = srv.addr.split('.').collect();
        parts.pop();
        format!("{}.*", parts.join("."))
    };
    use Verdict::*;
    let mut cases = vec![
        case("plain [host]:port line", MODERN, m.known(), "", Connects),
        case(
            "empty known_hosts",
            MODERN,
            String::new(),
            "",
            UnknownHostKey,
        ),
        case(
            "another key recorded",
            MODERN,
            format!("[{}]:{} {stranger_line}\n", m.addr, m.port),
            "",
            ChangedHostKey,
        ),
        case("hashed |1| name", MODERN, hashed, "", Connects),
        case(
            "wildcard pattern",
            MODERN,
            format!("[{}]:{} {}\n", net(m), m.port, m.key()),
            "",
            Connects,
        ),
        case(
            "wildcard with ! negation of the host",
            MODERN,
            format!(
                "[{}]:{},![{}]:{} {}\n",
                net(m),
                m.port,
                m.addr,
                m.port,
                m.key()
            ),
            "",
            UnknownHostKey,
        ),
        case(
            "several keys for one host, one matches",
            MODERN,
            format!(
                "[{a}]:{p} {}\n[{a}]:{p} {}\n",
                m.keys[1],
                m.key(),
                a = m.addr,
                p = m.port
            ),
            "",
            Connects,
        ),
        case(
            "@revoked host key",
            MODERN,
            format!("{}@revoked * {}\n", m.known(), m.key()),
            "",
            Revoked,
        ),
        case(
            "bare name without port (OpenSSH retries without the port)",
            MODERN,
            format!("{} {}\n", m.addr, m.key()),
            "",
            Connects,
        ),
        case(
            "HostKeyAlias names the line",
            MODERN,
            format!("shared-alias {}\n", m.key()),
            "HostKeyAlias shared-alias\n",
            Connects,
        ),
        case(
            "HostKeyAlias set, only [host]:port known",
            MODERN,
            m.known(),
            "HostKeyAlias shared-alias\n",
            UnknownHostKey,
        ),
        case(
            "StrictHostKeyChecking accept-new records an unknown key",
            MODERN,
            String::new(),
            "StrictHostKeyChecking accept-new\n",
            Connects,
        ),
        case(
            "Ciphers aes256-gcm only",
            MODERN,
            m.known(),
            "Ciphers aes256-gcm@openssh.com\n",
            Connects,
        ),
        case(
            "KexAlgorithms group14-sha1 only against curve25519",
            MODERN,
            m.known(),
            "KexAlgorithms diffie-hellman-group14-sha1\n",
            NoCommonAlgorithm,
        ),
        case(
            "unknown login user",
            MODERN,
            m.known(),
            "User no-such-user-here\n",
            AuthFailed,
        ),
        case(
            "PubkeyAcceptedAlgorithms excludes our key type",
            MODERN,
            m.known(),
            "PubkeyAcceptedAlgorithms rsa-sha2-512,rsa-sha2-256\n",
            AuthFailed,
        ),
        case(
            "ProxyJump through the server itself",
            MODERN,
            m.known(),
            "ProxyJump jumphost\n",
            Connects,
        ),
        case(
            "ProxyCommand through OpenSSH's ssh -W",
            MODERN,
            m.known(),
            "ProxyCommand ssh -F {config} -W %h:%p jumphost\n",
            Connects,
        ),
        case(
            "ProxyCommand none disables an earlier-matching proxy",
            MODERN,
            m.known(),
            "ProxyCommand none\nProxyJump nowhere.invalid\n",
            Connects,
        ),
        case(
            "RSA-only host, RSA key known",
            RSA,
            s[RSA].known(),
            "",
            Connects,
        ),
        case(
            "RSA-only host, HostKeyAlgorithms ssh-ed25519",
            RSA,
            s[RSA].known(),
            "HostKeyAlgorithms ssh-ed25519\n",
            NoCommonAlgorithm,
        ),
        case(
            "CentOS 6 defaults",
            C6,
            s[C6].known(),
            "",
            NoCommonAlgorithm,
        ),
        case(
            "CentOS 6 with +group14-sha1 but no ssh-rsa",
            C6,
            s[C6].known(),
            "KexAlgorithms +diffie-hellman-group14-sha1\n",
            NoCommonAlgorithm,
        ),
        case(
            "CentOS 6 with +group14-sha1 and +ssh-rsa",
            C6,
            s[C6].known(),
            "KexAlgorithms +diffie-hellman-group14-sha1\nHostKeyAlgorithms +ssh-rsa\n",
            Connects,
        ),
        case(
            "CentOS 6 with ^group1-sha1 and +ssh-rsa",
            C6,
            s[C6].known(),
            "KexAlgorithms ^diffie-hellman-group1-sha1\nHostKeyAlgorithms +ssh-rsa\n",
            Connects,
        ),
        case("CentOS 7 defaults", C7, s[C7].known(), "", Connects),
        case(
            "CentOS 7, KexAlgorithms -curve25519*",
            C7,
            s[C7].known(),
            "KexAlgorithms -curve25519*\n",
            Connects,
        ),
        case(
            "CentOS 7, MACs hmac-sha1 and Ciphers aes128-ctr",
            C7,
            s[C7].known(),
            "MACs hmac-sha1\nCiphers aes128-ctr\n",
            Connects,
        ),
        case(
            "hmac-sha1-only server, defaults",
            SHA1,
            s[SHA1].known(),
            "",
            Connects,
        ),
        case(
            "hmac-sha1-only server, MACs hmac-sha2-256",
            SHA1,
            s[SHA1].known(),
            "MACs hmac-sha2-256\n",
            NoCommonAlgorithm,
        ),
        case(
            "hmac-sha1-only server, MACs -hmac-sha1*",
            SHA1,
            s[SHA1].known(),
            "MACs -hmac-sha1*\n",
            NoCommonAlgorithm,
        ),
        case(
            "@cert-authority for [host]:port",
            CERT,
            ca_for(&s[CERT]),
            "",
            Connects,
        ),
        case(
            "@cert-authority for the bare host, port not 22",
            CERT,
            format!("@cert-authority {} {ca_line}\n", s[CERT].addr),
            "",
            Connects,
        ),
        case(
            "@cert-authority wildcard without port",
            CERT,
            format!("@cert-authority {} {ca_line}\n", net(&s[CERT])),
            "",
            Connects,
        ),
        case(
            "@cert-authority for other hosts",
            CERT,
            format!("@cert-authority 127.9.9.* {ca_line}\n"),
            "",
            UnknownHostKey,
        ),
        case(
            "@cert-authority of another CA",
            CERT,
            format!("@cert-authority * {other_ca_line}\n"),
            "",
            UnknownHostKey,
        ),
        case(
            "@revoked CA",
            CERT,
            format!("{}@revoked * {ca_line}\n", ca_for(&s[CERT])),
            "",
            Revoked,
        ),
        case(
            "@revoked certificate key",
            CERT,
            format!("{}@revoked * {}\n", ca_for(&s[CERT]), s[CERT].key()),
            "",
            Revoked,
        ),
        case(
            "certificate, untrusted CA, plain key known",
            CERT,
            s[CERT].known(),
            "",
            Connects,
        ),
        case(
            "expired certificate",
            EXPIRED,
            ca_for(&s[EXPIRED]),
            "",
            CertExpired,
        ),
        case(
            "expired certificate, plain key known",
            EXPIRED,
            ca_for(&s[EXPIRED]) + &s[EXPIRED].known(),
            "",
            Connects,
        ),
        case(
            "certificate for another host",
            OTHER,
            ca_for(&s[OTHER]),
            "",
            CertPrincipal,
        ),
        case("MaxSessions 1", MAX1, s[MAX1].known(), "", Connects),
        case("dropbear", DROPBEAR, s[DROPBEAR].known(), "", Connects),
        case(
            "dropbear, unknown",
            DROPBEAR,
            String::new(),
            "",
            UnknownHostKey,
        ),
        case("tinysshd", TINY, s[TINY].known(), "", Connects),
        case(
            "tinysshd, changed",
            TINY,
            format!("[{}]:{} {stranger_line}\n", s[TINY].addr, s[TINY].port),
            "",
            ChangedHostKey,
        ),
    ];
    cases.push(case(
        "only a key of another type recorded",
        RSA,
        format!("[{}]:{} {}\n", s[RSA].addr, s[RSA].port, m.key()),
        "",
        ChangedHostKey,
    ));
    cases.push(Case {
        differs: Some((
            Connects,
            "rekindle also looks keys up under the inventory name (here `target`), which \
             it records with accept-new; OpenSSH looks up only the HostName",
        )),
        ..case(
            "only the alias name recorded",
            MODERN,
            format!("target {}\n", m.key()),
            "Port {port}\n",
            UnknownHostKey,
        )
    });

    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let srv = &servers[c.server];
        let dir = w.join(format!("case{i}"));
        std::fs::create_dir_all(&dir).expect("case dir");
        let kh = dir.join("known_hosts");
        std::fs::write(&kh, &c.known).expect("known_hosts");
        let config = dir.join("config");
        let extra = c
            .extra
            .replace("{config}", &config.display().to_string())
            .replace("{port}", &srv.port.to_string());
        let text = format!(
            "Host target\n{extra}  HostName {addr}\n  Port {port}\n  User {user}\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n  ConnectTimeout 10\n\
             Host jumphost\n  HostName {maddr}\n  Port {mport}\n  User {muser}\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             UserKnownHostsFile {mkh}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n",
            addr = srv.addr,
            port = srv.port,
            user = srv.user,
            key = keys.key().display(),
            kh = kh.display(),
            maddr = m.addr,
            mport = m.port,
            muser = m.user,
            mkh = {
                let p = dir.join("jump_known_hosts");
                std::fs::write(&p, m.known()).expect("jump known_hosts");
                p.display().to_string()
            },
        );
        std::fs::write(&config, &text).expect("config");
        let (ssh, ssh_err) = run_ssh(&config);
        // accept-new wrote the file: start rekindle from the same state.
        std::fs::write(&kh, &c.known).expect("known_hosts");
        let (ours, our_err) = run_rekindle(&config, &dir.join("unused_known_hosts")).await;
        let want_ours = c.differs.map_or(c.expect, |(v, _)| v);
        if ours == Verdict::NoCommonAlgorithm
            && !(our_err.contains("rekindle offers") && our_err.contains("the server offers"))
        {
            failures.push(format!(
                "{}: the message names both lists: {our_err}",
                c.name
            ));
        }
        if c.name == "CentOS 6 defaults"
            && !our_err.contains("add `KexAlgorithms +diffie-hellman-group14-sha1`")
        {
            failures.push(format!(
                "{}: the message names the option: {our_err}",
                c.name
            ));
        }
        if ssh != c.expect || ours != want_ours {
            failures.push(format!(
                "{} ({}): expected ssh {} / rekindle {}, got ssh {ssh} / rekindle {ours}\n  ssh: {}\n  rekindle: {our_err}",
                c.name,
                srv.label,
                c.expect,
                want_ours,
                ssh_err.trim().replace('\n', "\n       ")
            ));
        }
    }
    assert!(cases.len() >= 40, "{} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// `ssh-keygen -H` on a known_hosts text: the same lines with hashed names.
fn hash_known(dir: &Path, text: &str) -> String {
    let path = dir.join("to_hash");
    std::fs::write(&path, text).expect("write");
    let st = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ssh-keygen -H");
    assert!(st.success());
    let hashed = std::fs::read_to_string(&path).expect("hashed");
    assert!(hashed.starts_with("|1|"), "{hashed}");
    hashed
}

/// A three-step playbook, five runs per server, through the real CLI:
/// tinysshd closes the connection when a channel ends and refuses a second
/// channel, so steps 2 and 3 need the reconnect (regression: step 2 failed
/// with "connection closed before the command finished" in 5 of 5 runs).
#[test]
fn three_step_playbook_passes_five_of_five_on_tinysshd_dropbear_and_max_sessions_1() {
    let keys = ClientKeys::new();
    authorize_login_user(&keys.key().with_extension("pub"));
    let tiny = Tinysshd::start();
    let dropbear = Dropbear::start();
    let max1 = Sshd::start_with(&keys, 1, |_, _| "MaxSessions 1\n".to_string());
    let local = rekindle::transport::ssh_config::local_user();
    let max1_key = public_line(&max1.dir().join("host_ed25519.pub"));
    let targets = [
        (
            "tiny",
            tiny.addr.to_string(),
            tiny.port,
            LOGIN_USER.to_string(),
            tiny.key.clone(),
        ),
        (
            "dropbear",
            dropbear.addr.to_string(),
            dropbear.port,
            LOGIN_USER.to_string(),
            dropbear.key.clone(),
        ),
        ("max1", max1.addr(), max1.port(), local, max1_key),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = dir.path().join("known_hosts");
    let mut inventory = format!(
        "version: 1\ndefaults:\n  identity_file: \"{}\"\n  known_hosts: \"{}\"\ndatacenters:\n  test:\n    hosts:\n",
        keys.key().display(),
        kh.display()
    );
    let mut known = String::new();
    for (name, addr, port, user, key) in &targets {
        inventory.push_str(&format!(
            "      - name: \"{name}\"\n        address: \"{addr}\"\n        port: {port}\n        user: \"{user}\"\n"
        ));
        known.push_str(&format!("[{addr}]:{port} {key}\n"));
    }
    std::fs::write(&kh, known).expect("known_hosts");
    std::fs::write(dir.path().join("inventory.yaml"), inventory).expect("inventory");
    std::fs::write(
        dir.path().join("playbook.yaml"),
        "version: 1\nname: three\nstages:\n  - name: all\n    select: { dc: test }\n    steps:\n      - run: \"echo one\"\n      - run: \"echo two\"\n      - run: \"echo three\"\n",
    )
    .expect("playbook");
    std::fs::write(dir.path().join("ssh_config"), "").expect("ssh_config");
    for attempt in 1..=5 {
        let (code, stdout, stderr) = crate::support::run(
            crate::support::rekindle_in(dir.path())
                .args(["run", "playbook.yaml", "-i", "inventory.yaml", "--yes"])
                .args(["--ssh-config", "ssh_config"]),
        );
        assert_eq!(code, 0, "run {attempt} of 5 failed:\n{stdout}\n{stderr}");
    }
}
