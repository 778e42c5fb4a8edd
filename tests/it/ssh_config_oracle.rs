//! `rekindle ssh-config NAME` against `ssh -G NAME` (OpenSSH 9.2, the
//! oracle) over the same config files: every field rekindle acts on must
//! read the same, config by config.
//!
//! Deliberate differences, each skipped only where it applies:
//! - `identityfile` when the config sets none: rekindle's defaults are
//!   `~/.ssh/id_ed25519` and `~/.ssh/id_rsa` (plus `--identity`), not
//!   OpenSSH's seven files.
//! - `serveraliveinterval`/`serveralivecountmax` when the config sets none:
//!   rekindle keeps its own keepalive (5 s x 3) to notice a rebooting host.
//! - algorithm lists: compared over the names russh implements; rekindle
//!   also offers `mlkem768x25519-sha256` first, as OpenSSH 9.9 does (9.2
//!   lacks it), and cannot offer sntrup761, umac or sk-* algorithms.

use std::path::Path;
use std::process::Command;

use rekindle::transport::algorithms::AlgorithmKind;

use crate::support;

/// `key value` lines into (key, value) pairs, keys repeated in order.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn values(p: &[(String, String)], key: &str) -> Vec<String> {
    p.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .collect()
}

fn ssh_g(config: &Path, name: &str) -> Vec<(String, String)> {
    let out = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(config)
        .arg(name)
        .output()
        .expect("ssh -G runs");
    assert!(
        out.status.success(),
        "ssh -G {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pairs(&String::from_utf8_lossy(&out.stdout))
}

fn rekindle_g(config: &Path, name: &str) -> Vec<(String, String)> {
    let (code, stdout, stderr) = support::run(
        support::rekindle()
            .arg("ssh-config")
            .arg("--ssh-config")
            .arg(config)
            .arg(name),
    );
    assert_eq!(code, 0, "rekindle ssh-config {name}: {stderr}");
    pairs(&stdout)
}

/// Compares one name under one config; returns the differences.
fn compare(config: &Path, text: &str, name: &str) -> Vec<String> {
    let want = ssh_g(config, name);
    let got = rekindle_g(config, name);
    let lower = text.to_ascii_lowercase();
    let mut keys = vec![
        "user",
        "hostname",
        "port",
        "proxyjump",
        "proxycommand",
        "certificatefile",
        "identitiesonly",
        "identityagent",
        "userknownhostsfile",
        "globalknownhostsfile",
        "stricthostkeychecking",
        "hostkeyalias",
        "connecttimeout",
    ];
    if lower.contains("identityfile") {
        keys.push("identityfile");
    }
    if lower.contains("serveralive") {
        keys.push("serveraliveinterval");
        keys.push("serveralivecountmax");
    }
    let mut diffs = Vec::new();
    for key in keys {
        let (w, g) = (values(&want, key), values(&got, key));
        if w != g {
            diffs.push(format!("{name}: {key}: ssh -G {w:?}, rekindle {g:?}"));
        }
    }
    for (key, kind) in [
        ("kexalgorithms", AlgorithmKind::Kex),
        ("ciphers", AlgorithmKind::Cipher),
        ("macs", AlgorithmKind::Mac),
        ("hostkeyalgorithms", AlgorithmKind::HostKey),
        ("pubkeyacceptedalgorithms", AlgorithmKind::Pubkey),
    ] {
        let split = |v: Vec<String>| -> Vec<String> {
            v.first()
                .map(|s| {
                    s.split(',')
                        .filter(|n| kind.supported().contains(n))
                        .filter(|n| *n != "mlkem768x25519-sha256")
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (w, g) = (split(values(&want, key)), split(values(&got, key)));
        if w != g {
            diffs.push(format!("{name}: {key}: ssh -G {w:?}, rekindle {g:?}"));
        }
    }
    diffs
}

/// (config text, names to resolve under it). `{dir}` is the test's temp dir.
const CONFIGS: &[(&str, &[&str])] = &[
    ("", &["plain", "10.1.2.3"]),
    (
        "Host web*\n  HostName 10.0.0.%h\n  User deploy\n  Port 2222\n",
        &["web1", "db1"],
    ),
    (
        "Host web1\n  HostName real-%h.example.com\nHost *\n  HostName fallback\n  User everyone\n",
        &["web1", "web2"],
    ),
    (
        "Host a b\n  User first\nHost a\n  User second\n  Port 2200\n",
        &["a", "b", "c"],
    ),
    (
        "Host * !bastion\n  ProxyJump bastion\n",
        &["db1", "bastion"],
    ),
    (
        "Host db*\n  ProxyJump ops@jump1:2022,jump2\nHost db9\n  ProxyJump none\n",
        &["db1", "db9"],
    ),
    (
        "Host db1\n  ProxyCommand ssh -W %h:%p bastion\nHost db2\n  ProxyJump j\n  ProxyCommand nc %h %p\nHost db3\n  ProxyCommand none\n",
        &["db1", "db2", "db3"],
    ),
    (
        "Host *\n  IdentityFile ~/.ssh/id_%h\n  IdentityFile {dir}/keys/%r@%h:%p\n  IdentitiesOnly yes\n  CertificateFile ~/.ssh/%h-cert.pub\n",
        &["box"],
    ),
    (
        "Host k1\n  UserKnownHostsFile {dir}/kh_%h %d/.ssh/kh2\n  GlobalKnownHostsFile none\nHost k2\n  UserKnownHostsFile none\n",
        &["k1", "k2"],
    ),
    (
        "Host s1\n  StrictHostKeyChecking yes\nHost s2\n  StrictHostKeyChecking accept-new\nHost s3\n  StrictHostKeyChecking no\nHost s4\n  StrictHostKeyChecking off\n",
        &["s1", "s2", "s3", "s4", "s5"],
    ),
    (
        "Host alias1\n  HostKeyAlias Shared-Name\n  HostName 10.9.9.9\n",
        &["alias1"],
    ),
    (
        "Host t*\n  ConnectTimeout 7\n  ServerAliveInterval 15\n  ServerAliveCountMax 4\n",
        &["t1"],
    ),
    (
        "Host old*\n  KexAlgorithms +diffie-hellman-group14-sha1,diffie-hellman-group1-sha1\n  HostKeyAlgorithms +ssh-rsa\n  PubkeyAcceptedAlgorithms +ssh-rsa\nHost mac\n  MACs hmac-sha1\n  Ciphers aes128-ctr,aes256-ctr\n",
        &["old1", "mac", "new1"],
    ),
    (
        "Host x\n  KexAlgorithms -ecdh-*,diffie-hellman-group-exchange-sha256\n  Ciphers ^aes256-gcm@openssh.com\n  MACs -*-etm@openssh.com\n  HostKeyAlgorithms ^rsa-sha2-256\n",
        &["x"],
    ),
    (
        "Match originalhost m1\n  User matched\nMatch host 10.*\n  Port 2200\nHost m2\n  HostName 10.3.3.3\nMatch host 10.*\n  User late\n",
        &["m1", "m2", "m3"],
    ),
    (
        "Host u*\n  User admin\nMatch user admin\n  Port 2022\nMatch !user admin\n  Port 2023\n",
        &["u1", "v1"],
    ),
    (
        "Match localuser root,nobody\n  User local-was-listed\nMatch all\n  Port 2024\n",
        &["anything"],
    ),
    (
        "Match exec \"test %h = exec1\"\n  User via-exec\nMatch exec \"false\"\n  User never\nMatch host exec2 exec \"true\"\n  Port 2025\n",
        &["exec1", "exec2", "exec3"],
    ),
    (
        "Include {dir}/conf.d/*.conf\nHost *\n  User after-include\n",
        &["inc-a", "inc-b", "other"],
    ),
    (
        "Host inc-a\n  Include {dir}/conf.d/10-a.conf\n  Port 2026\n",
        &["inc-a", "inc-b"],
    ),
    (
        "Host pct\n  HostName %h.%%literal\n  ProxyCommand connect %%x %h %p %r %n\n",
        &["pct"],
    ),
    (
        "CanonicalizeHostname no\nHost=eq\n  User=equals\n  Port = 2027\n# comment\n  HostName \"quoted name\"\n",
        &["eq"],
    ),
    (
        "Host *.example.com\n  User ex\nHost db?.example.com\n  Port 2028\nHost !*.example.com *\n  User other\n",
        &["db1.example.com", "web.example.com", "db1"],
    ),
];

#[test]
fn ssh_config_view_matches_ssh_dash_g() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("conf.d")).expect("conf.d");
    std::fs::write(
        dir.path().join("conf.d/10-a.conf"),
        "Host inc-a\n  User from-a\n  Port 2100\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("conf.d/20-b.conf"),
        "Host inc-b\n  User from-b\nHost inc-a\n  User not-first\n",
    )
    .expect("write");
    let mut diffs = Vec::new();
    let mut compared = 0;
    for (i, (text, names)) in CONFIGS.iter().enumerate() {
        let text = text.replace("{dir}", &d);
        let path = dir.path().join(format!("config{i}"));
        std::fs::write(&path, &text).expect("write config");
        for name in *names {
            diffs.extend(compare(&path, &text, name));
            compared += 1;
        }
    }
    assert!(CONFIGS.len() >= 20 && compared >= 40);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn options_rekindle_cannot_honour_are_errors_with_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config");
    std::fs::write(&path, "Host a\n  User x\nHost b\n  BindAddress 10.0.0.1\n").expect("write");
    let run = |name: &str| {
        support::run(
            support::rekindle()
                .arg("ssh-config")
                .arg("--ssh-config")
                .arg(&path)
                .arg(name),
        )
    };
    let (code, _, _) = run("a");
    assert_eq!(code, 0);
    let (code, _, stderr) = run("b");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{}:4: BindAddress 10.0.0.1", path.display())),
        "{stderr}"
    );
    std::fs::write(&path, "Host a\n  Frobnicate yes\n").expect("write");
    let (code, _, stderr) = run("a");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2: unknown option `frobnicate`",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn strict_host_key_checking_no_is_named_with_its_line_and_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config");
    std::fs::write(&path, "Host lax\n  User x\n  StrictHostKeyChecking no\n").expect("write");
    let (code, stdout, stderr) = support::run(
        support::rekindle()
            .arg("ssh-config")
            .arg("--ssh-config")
            .arg(&path)
            .arg("lax"),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:3: StrictHostKeyChecking no is not followed",
            path.display()
        )),
        "{stderr}"
    );
    assert!(
        stdout.contains("\nrekindleunknownhostkeys refuse\n"),
        "{stdout}"
    );
}
