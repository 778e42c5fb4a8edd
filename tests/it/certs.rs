//! OpenSSH certificates against real sshd: host certificates checked through
//! `@cert-authority` / `@revoked` lines of known_hosts (valid, another
//! principal, expired, unknown CA, revoked), and user certificates offered
//! from `IDENTITY-cert.pub`, ssh config's `CertificateFile`, ssh-agent and a
//! host's own identity file. CAs and certificates are made by `ssh-keygen -s`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rekindle::inventory::Host;
use rekindle::transport::ssh::{SshConnector, SshOptions};
use rekindle::transport::{ConnectError, ConnectErrorKind, Connection, Connector};

use crate::sshd::{ClientKeys, Sshd, keygen};

const CONNECT: Duration = Duration::from_secs(10);

fn host(name: &str, sshd: &Sshd) -> Host {
    Host {
        name: name.into(),
        address: sshd.addr(),
        port: sshd.port(),
        user: None,
        jump: None,
        labels: BTreeMap::new(),
        identity_file: None,
        escalation: None,
        bmc: None,
        groups: vec![],
        span: rekindle::diag::Span::new("test".into(), 1, 1, 1),
    }
}

/// `ssh-keygen -s CA [-h] -I ID -n PRINCIPALS -V VALIDITY KEY.pub`; returns `KEY-cert.pub`.
fn sign(ca: &Path, public: &Path, host: bool, principals: &str, validity: &str) -> PathBuf {
    let mut cmd = Command::new("ssh-keygen");
    cmd.arg("-q")
        .arg("-s")
        .arg(ca)
        .args(["-I", "rekindle-test"]);
    if host {
        cmd.arg("-h");
    }
    let st = cmd
        .args(["-n", principals, "-V", validity])
        .arg(public)
        .status()
        .expect("ssh-keygen -s runs");
    assert!(
        st.success(),
        "ssh-keygen -s failed for {}",
        public.display()
    );
    let name = public.to_string_lossy();
    PathBuf::from(format!(
        "{}-cert.pub",
        name.strip_suffix(".pub").expect(".pub")
    ))
}

fn public_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn options(identities: Vec<PathBuf>, known_hosts: PathBuf) -> SshOptions {
    SshOptions {
        identities,
        known_hosts,
        known_hosts_explicit: true,
        ssh_config: None,
        accept_new_host_keys: false,
        use_agent: false,
    }
}

async fn connect(c: &SshConnector, h: &Host) -> Result<(), ConnectError> {
    let s = tokio::time::timeout(CONNECT + Duration::from_secs(20), c.connect(h, CONNECT))
        .await
        .expect("connect returned within its timeout")?;
    let out = s
        .exec("true", Duration::from_secs(30))
        .await
        .expect("true runs");
    assert_eq!(out.exit_status, Some(0));
    Ok(())
}

async fn refused(c: &SshConnector, h: &Host) -> ConnectError {
    match connect(c, h).await {
        Ok(()) => panic!("{} connected but must not", h.name),
        Err(e) => e,
    }
}

/// A CA key pair `NAME` (and `NAME.pub`) in `dir`.
fn ca(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    keygen(&path);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_certificates_are_trusted_only_as_their_ca_lines_say() {
    let keys = ClientKeys::new();
    let cas = tempfile::tempdir().expect("tempdir");
    let host_ca = ca(cas.path(), "host_ca");
    let other_ca = ca(cas.path(), "other_ca");
    let certified = |validity: &'static str| {
        let host_ca = host_ca.clone();
        move |dir: &Path, _: &[std::net::Ipv4Addr]| {
            let cert = sign(
                &host_ca,
                &dir.join("host_ed25519.pub"),
                true,
                "good.example",
                validity,
            );
            format!("HostCertificate {}\n", cert.display())
        }
    };
    let sshd = Sshd::start_with(&keys, 1, certified("-5m:+1h"));
    let expired = Sshd::start_with(&keys, 1, certified("20200101:20200102"));
    let ca_line = format!(
        "@cert-authority * {}\n",
        public_line(&host_ca.with_extension("pub"))
    );
    let kh = keys.path("kh_ca");
    std::fs::write(&kh, &ca_line).expect("write known_hosts");
    let c = SshConnector::new(options(vec![keys.key()], kh.clone())).expect("connector");

    // Valid: no plain line for the host at all, the CA vouches for it.
    connect(&c, &host("good.example", &sshd))
        .await
        .expect("certified host connects");

    let e = refused(&c, &host("bad.example", &sshd)).await;
    assert_eq!(e.kind, ConnectErrorKind::HostCertificate, "{e}");
    assert!(
        e.message
            .contains("its host certificate is for good.example, not for bad.example or 127."),
        "{e}"
    );

    let e = refused(&c, &host("good.example", &expired)).await;
    assert_eq!(e.kind, ConnectErrorKind::HostCertificate, "{e}");
    assert!(
        e.message
            .contains("its host certificate expired at 2020-01-02"),
        "{e}"
    );

    // Unknown CA: only another CA is trusted.
    let other = keys.path("kh_other");
    std::fs::write(
        &other,
        format!(
            "@cert-authority * {}\n",
            public_line(&other_ca.with_extension("pub"))
        ),
    )
    .expect("write");
    let c2 = SshConnector::new(options(vec![keys.key()], other.clone())).expect("connector");
    let e = refused(&c2, &host("good.example", &sshd)).await;
    assert_eq!(e.kind, ConnectErrorKind::HostCertificate, "{e}");
    assert!(
        e.message.contains("which no @cert-authority line of") && e.message.contains("SHA256:"),
        "{e}"
    );

    // Revoked: the host's key, then the CA.
    let revoked = keys.path("kh_revoked");
    std::fs::write(
        &revoked,
        format!("{ca_line}@revoked * {}\n", sshd.host_key()),
    )
    .expect("write");
    let c3 = SshConnector::new(options(vec![keys.key()], revoked.clone())).expect("connector");
    let e = refused(&c3, &host("good.example", &sshd)).await;
    assert_eq!(e.kind, ConnectErrorKind::HostCertificate, "{e}");
    assert!(
        e.message.contains(&format!(
            "its key is marked @revoked in {}:2",
            revoked.display()
        )),
        "{e}"
    );
    std::fs::write(
        &revoked,
        format!(
            "{ca_line}@revoked * {}\n",
            public_line(&host_ca.with_extension("pub"))
        ),
    )
    .expect("write");
    let c4 = SshConnector::new(options(vec![keys.key()], revoked.clone())).expect("connector");
    let e = refused(&c4, &host("good.example", &sshd)).await;
    assert!(
        e.message
            .contains("the CA key that signed it is marked @revoked"),
        "{e}"
    );
    // Only the certified host logged in.
    assert_eq!(sshd.logins(), 1, "{}", sshd.log());
    assert_eq!(expired.logins(), 0);
}

/// An sshd that accepts only user certificates signed by `user_ca`.
fn cert_only_sshd(keys: &ClientKeys, user_ca: &Path) -> Sshd {
    let ca_pub = user_ca.with_extension("pub");
    Sshd::start_with(keys, 1, move |_, _| {
        format!(
            "TrustedUserCAKeys {}\nAuthorizedKeysFile none\n",
            ca_pub.display()
        )
    })
}

fn login_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_certificates_are_offered_from_every_place_openssh_keeps_them() {
    let keys = ClientKeys::new();
    let cas = tempfile::tempdir().expect("tempdir");
    let user_ca = ca(cas.path(), "user_ca");
    let sshd = cert_only_sshd(&keys, &user_ca);
    let kh = keys.known_hosts(&[&sshd]);
    let user = login_user();
    let target = host("cert-host", &sshd);

    // The bare key alone is refused: the server wants a certificate.
    let c = SshConnector::new(options(vec![keys.key()], kh.clone())).expect("connector");
    let e = refused(&c, &target).await;
    assert_eq!(e.kind, ConnectErrorKind::Auth, "{e}");

    // IDENTITY-cert.pub next to the identity file.
    let cert = sign(
        &user_ca,
        &keys.key().with_extension("pub"),
        false,
        &user,
        "-5m:+1h",
    );
    assert_eq!(
        cert,
        PathBuf::from(format!("{}-cert.pub", keys.key().display()))
    );
    let c = SshConnector::new(options(vec![keys.key()], kh.clone())).expect("connector");
    connect(&c, &target).await.expect("certificate accepted");

    // A host's own identity file, with no run-wide identity at all.
    let c = SshConnector::new(options(vec![], kh.clone())).expect("connector");
    let mut own = target.clone();
    own.identity_file = Some(keys.key());
    connect(&c, &own)
        .await
        .expect("host identity with certificate");

    // ssh-agent holding the key and its certificate (ssh-add takes both).
    let agent = crate::ssh::Agent::start(&keys, &keys.key());
    let mut opts = options(vec![], kh.clone());
    opts.use_agent = true;
    let c = SshConnector::new(opts)
        .expect("connector")
        .with_agent_socket(agent.socket.clone());
    connect(&c, &target).await.expect("agent certificate");
    drop(agent);

    // CertificateFile from ssh config, kept away from the key.
    let moved = keys.path("elsewhere-cert.pub");
    std::fs::rename(&cert, &moved).expect("move certificate");
    let config = keys.path("ssh_config");
    std::fs::write(
        &config,
        format!("Host *\n    CertificateFile {}\n", moved.display()),
    )
    .expect("write ssh config");
    let mut opts = options(vec![keys.key()], kh.clone());
    opts.ssh_config = Some(config);
    let c = SshConnector::new(opts).expect("connector");
    connect(&c, &target)
        .await
        .expect("CertificateFile certificate");
    assert_eq!(sshd.logins(), 4, "{}", sshd.log());

    // A certificate for another user is refused, and the failure names it.
    let stranger = ClientKeys::new();
    sign(
        &user_ca,
        &stranger.key().with_extension("pub"),
        false,
        "someone-else",
        "-5m:+1h",
    );
    let c = SshConnector::new(options(vec![stranger.key()], kh.clone())).expect("connector");
    let e = refused(&c, &target).await;
    assert!(
        e.message
            .contains("-cert.pub (certificate `rekindle-test`)"),
        "{e}"
    );
}

#[test]
fn a_certificate_file_that_does_not_parse_is_an_input_error() {
    let keys = ClientKeys::new();
    let cert = PathBuf::from(format!("{}-cert.pub", keys.key().display()));
    std::fs::write(&cert, "ssh-ed25519-cert-v01@openssh.com AAAAnot-base64!!\n").expect("write");
    let e = match SshConnector::new(options(vec![keys.key()], keys.path("kh"))) {
        Ok(_) => panic!("a broken certificate must not be skipped"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&format!("{}:1: not an OpenSSH certificate", cert.display())),
        "{e}"
    );

    // Through the CLI: exit 2 before any host is touched.
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inv.yaml");
    std::fs::write(
        &inv,
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - { name: h1, address: 127.0.0.1, port: 1 }\n",
    )
    .expect("write inventory");
    let pb = dir.path().join("pb.yaml");
    std::fs::write(
        &pb,
        "version: 1\nstages:\n  - name: s\n    select: { dc: dc }\n    steps: [ { run: \"true\" } ]\n",
    )
    .expect("write playbook");
    let mut cmd = crate::support::rekindle();
    cmd.arg("run")
        .arg(&pb)
        .arg("-i")
        .arg(&inv)
        .arg("--yes")
        .arg("--journal")
        .arg(dir.path().join("j"))
        .arg("--identity")
        .arg(keys.key())
        .arg("--known-hosts")
        .arg(keys.path("kh"));
    let (code, out, err) = crate::support::run(&mut cmd);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("not an OpenSSH certificate"), "{err}");
}
