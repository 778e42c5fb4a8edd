//! The SSH transport, probes and local commands against real OpenSSH sshd
//! processes (see `sshd.rs`) and real loopback listeners.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rekindle::inventory::Host;
use rekindle::transport::ssh::{SshConnector, SshOptions, SshSession};
use rekindle::transport::{
    ConnectError, ConnectErrorKind, Connection, Connector, ExecError, local, probe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sshd::{ClientKeys, Sshd};

const CONNECT: Duration = Duration::from_secs(10);
const CMD: Duration = Duration::from_secs(30);

fn host(name: &str, address: &str, port: u16) -> Host {
    Host {
        name: name.into(),
        address: address.into(),
        port,
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

fn sshd_host(sshd: &Sshd) -> Host {
    host(&format!("t-{}", sshd.addr()), &sshd.addr(), sshd.port())
}

fn options(keys: &ClientKeys, known_hosts: PathBuf) -> SshOptions {
    SshOptions {
        known_hosts_explicit: true,
        identities: vec![keys.key()],
        known_hosts,
        ssh_config: None,
        accept_new_host_keys: false,
        use_agent: false,
    }
}

fn connector(opts: SshOptions) -> SshConnector {
    SshConnector::new(opts).expect("connector")
}

/// Connect, bounded by an outer guard so a hang fails the test instead of blocking it.
async fn connect(
    c: &SshConnector,
    h: &Host,
    timeout: Duration,
) -> Result<SshSession, ConnectError> {
    tokio::time::timeout(timeout + Duration::from_secs(20), c.connect(h, timeout))
        .await
        .expect("connect returned within its timeout (plus slack)")
}

async fn expect_err(c: &SshConnector, h: &Host, timeout: Duration) -> ConnectError {
    match connect(c, h, timeout).await {
        Ok(_) => panic!("{} connected but should not have", h.name),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_exit_codes_and_keeps_the_output_tail() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let c = connector(options(&keys, keys.known_hosts(&[&sshd])));
    let s = connect(&c, &sshd_host(&sshd), CONNECT)
        .await
        .expect("connects");

    let out = s.exec("true", CMD).await.expect("true runs");
    assert_eq!(out.exit_status, Some(0));
    // The fixture keeps root's .bashrc (pyenv) out of every command.
    let out = s
        .exec("echo ${PYENV_ROOT:-unset}", CMD)
        .await
        .expect("runs");
    assert_eq!(out.output, "unset");
    let out = s
        .exec("echo out; echo err >&2; exit 3", CMD)
        .await
        .expect("runs");
    assert_eq!(out.exit_status, Some(3));
    assert!(
        out.output.contains("out") && out.output.contains("err"),
        "{out:?}"
    );

    let out = s
        .exec(
            "for i in $(seq 1 100); do echo line $i; done; echo last >&2",
            CMD,
        )
        .await
        .expect("runs");
    assert_eq!(out.exit_status, Some(0));
    let lines: Vec<&str> = out.output.lines().collect();
    assert_eq!(lines.len(), 20, "{out:?}");
    assert!(!out.output.contains("line 80\n"), "{out:?}");
    assert_eq!(lines.last(), Some(&"last"));

    let big = s
        .exec("head -c 100000 /dev/zero | tr '\\0' x; echo; echo end", CMD)
        .await
        .expect("runs");
    assert!(
        big.output.len() <= 4096 && big.output.ends_with("end"),
        "{}",
        big.output.len()
    );
    assert!(!s.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_timeout_is_reported_and_the_session_stays_usable() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let c = connector(options(&keys, keys.known_hosts(&[&sshd])));
    let s = connect(&c, &sshd_host(&sshd), CONNECT)
        .await
        .expect("connects");
    let pidfile = keys.path("cmd.pid");
    let err = s
        .exec(
            &format!("echo $$ > {}; exec sleep 300", pidfile.display()),
            Duration::from_secs(1),
        )
        .await
        .expect_err("times out");
    assert_eq!(err, ExecError::Timeout(Duration::from_secs(1)));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid written")
        .trim()
        .parse()
        .expect("pid");
    // OpenSSH refuses "signal" requests for root sessions ("session signalling
    // requires privilege separation"), so the command may outlive the channel,
    // as with OpenSSH's own client: clean it up here.
    let _guard = KillOnDrop(pid);
    let out = s
        .exec("echo still here", CMD)
        .await
        .expect("session usable");
    assert_eq!(out.output, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_dropped_during_exec_is_disconnected() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let c = connector(options(&keys, keys.known_hosts(&[&sshd])));
    let s = connect(&c, &sshd_host(&sshd), CONNECT)
        .await
        .expect("connects");
    // $PPID is this connection's sshd process: killing it drops the TCP
    // connection with no exit status, as a reboot does.
    let err = s.exec("kill -9 $PPID", CMD).await.expect_err("drops");
    assert_eq!(err, ExecError::Disconnected);
    // Bounded wait for russh to notice the closed socket.
    for _ in 0..100 {
        if s.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.is_closed());
    // The next command finds the connection closed before its channel
    // opens: nothing of it ran, so the session logs in again, once.
    let out = s
        .exec("echo again", CMD)
        .await
        .expect("runs on a fresh connection");
    assert_eq!(out.output, "again");
    assert!(!s.is_closed());
    assert_eq!(sshd.logins(), 2, "{}", sshd.log());
}

/// Waits (bounded: 5 s) until `pid` is gone or a zombie awaiting its reaper.
async fn gone(pid: i32) -> bool {
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Kills (SIGKILL also ends a stopped process) a process this test froze.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a pid this test stopped.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_that_goes_silent_mid_command_is_noticed_by_keepalive() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let c = connector(options(&keys, keys.known_hosts(&[&sshd])));
    let s = connect(&c, &sshd_host(&sshd), CONNECT)
        .await
        .expect("connects");
    // Every channel of a connection is served by one sshd process: the shells' parent.
    let pid: i32 = s
        .exec("echo $PPID", CMD)
        .await
        .expect("runs")
        .output
        .trim()
        .parse()
        .expect("pid");
    let _sshd_guard = KillOnDrop(pid);
    let pidfile = keys.path("cmd.pid");
    // SIGSTOP keeps the TCP connection open but silent, like a host that lost
    // power behind a switch: only keepalives can tell.
    let err = tokio::time::timeout(
        Duration::from_secs(90),
        s.exec(
            &format!(
                "echo $$ > {}; kill -STOP $PPID; exec sleep 300",
                pidfile.display()
            ),
            Duration::from_secs(120),
        ),
    )
    .await
    .expect("keepalive notices the silent host")
    .expect_err("connection lost");
    // The command outlives its frozen sshd: stop it too.
    let cmd_pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let _cmd_guard = cmd_pid.map(KillOnDrop);
    assert_eq!(err, ExecError::Disconnected);
    assert!(s.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_fails_with_its_fingerprint() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let kh = keys.path("empty_known_hosts");
    std::fs::write(&kh, "").expect("write");
    let c = connector(options(&keys, kh.clone()));
    let e = expect_err(&c, &sshd_host(&sshd), CONNECT).await;
    assert_eq!(e.kind, ConnectErrorKind::HostKeyUnknown, "{e}");
    assert!(e.message.contains(&sshd.fingerprint()), "{e}");
    assert!(e.message.contains("--accept-new-host-keys"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read"),
        "",
        "nothing appended"
    );
    assert_eq!(sshd.logins(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_fails_loudly_with_the_known_hosts_line() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let other = Sshd::start(&keys, 1);
    let kh = keys.path("known_hosts_changed");
    std::fs::write(
        &kh,
        format!(
            "# old key\n[{}]:{} {}\n",
            sshd.addr(),
            sshd.port(),
            other.host_key()
        ),
    )
    .expect("write");
    let mut opts = options(&keys, kh.clone());
    // accept-new must not paper over a changed key.
    opts.accept_new_host_keys = true;
    let e = expect_err(&connector(opts), &sshd_host(&sshd), CONNECT).await;
    assert_eq!(e.kind, ConnectErrorKind::HostKeyChanged, "{e}");
    assert!(
        e.message.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{e}"
    );
    assert!(e.message.contains(&format!("{}:2", kh.display())), "{e}");
    assert!(e.message.contains(&sshd.fingerprint()), "{e}");
    assert!(e.message.contains(&other.fingerprint()), "{e}");
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read").lines().count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_appends_and_the_file_is_used_next_time() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let kh = keys.path("new/known_hosts");
    let mut opts = options(&keys, kh.clone());
    opts.accept_new_host_keys = true;
    let h = sshd_host(&sshd);
    let s = connect(&connector(opts), &h, CONNECT)
        .await
        .expect("accepts new key");
    assert_eq!(
        s.exec("true", CMD).await.expect("runs").exit_status,
        Some(0)
    );
    let text = std::fs::read_to_string(&kh).expect("known_hosts written");
    assert!(
        text.contains(&format!("[{}]:{}", sshd.addr(), sshd.port())),
        "{text}"
    );
    assert!(text.contains(&sshd.host_key()), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    // A strict connector now trusts the recorded key.
    let strict = connector(options(&keys, kh.clone()));
    connect(&strict, &h, CONNECT).await.expect("key known now");
    assert_eq!(
        std::fs::read_to_string(&kh).expect("read"),
        text,
        "no second append"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entries_match() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let kh = keys.known_hosts(&[&sshd]);
    let st = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(st.status.success());
    let text = std::fs::read_to_string(&kh).expect("read");
    assert!(
        text.starts_with("|1|") && !text.contains(&sshd.addr()),
        "{text}"
    );
    let s = connect(&connector(options(&keys, kh)), &sshd_host(&sshd), CONNECT)
        .await
        .expect("hashed entry matches");
    assert_eq!(
        s.exec("true", CMD).await.expect("runs").exit_status,
        Some(0)
    );
}

/// A private ssh-agent holding `key`, killed on Drop.
pub struct Agent {
    child: std::process::Child,
    pub socket: PathBuf,
}

impl Agent {
    pub fn start(keys: &ClientKeys, key: &std::path::Path) -> Agent {
        let socket = keys.path("agent.sock");
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent starts");
        let agent = Agent { child, socket };
        for _ in 0..100 {
            if agent.socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = std::process::Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .status()
            .expect("ssh-add");
        assert!(st.success(), "ssh-add failed");
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_agent_keys_are_offered_first() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let agent = Agent::start(&keys, &keys.key());
    let opts = SshOptions {
        known_hosts_explicit: true,
        identities: vec![],
        known_hosts: keys.known_hosts(&[&sshd]),
        ssh_config: None,
        accept_new_host_keys: false,
        use_agent: true,
    };
    let c = connector(opts).with_agent_socket(agent.socket.clone());
    let s = connect(&c, &sshd_host(&sshd), CONNECT)
        .await
        .expect("agent key accepted");
    assert_eq!(
        s.exec("true", CMD).await.expect("runs").exit_status,
        Some(0)
    );
    assert_eq!(sshd.logins(), 1);

    // An agent with the wrong key: named in the failure, with its key count.
    let stranger = ClientKeys::new();
    let wrong = Agent::start(&stranger, &stranger.key());
    let opts = SshOptions {
        known_hosts_explicit: true,
        identities: vec![],
        known_hosts: keys.known_hosts(&[&sshd]),
        ssh_config: None,
        accept_new_host_keys: false,
        use_agent: true,
    };
    let c = connector(opts).with_agent_socket(wrong.socket.clone());
    let e = expect_err(&c, &sshd_host(&sshd), CONNECT).await;
    assert_eq!(e.kind, ConnectErrorKind::Auth, "{e}");
    assert!(e.message.contains("tried ssh-agent (1 key)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ecdsa_identity_files_log_in_too() {
    // Ed25519 keys sign through rekindle's prepared signer; the others
    // through russh's own path (RSA with the server's SHA-2 choice).
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    for (kind, bits) in [("rsa", "3072"), ("ecdsa", "256")] {
        let path = keys.path(&format!("id_{kind}"));
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-b", bits, "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen");
        assert!(st.success());
        sshd.authorize(&path.with_extension("pub"));
        let opts = SshOptions {
            known_hosts_explicit: true,
            identities: vec![path],
            ..options(&keys, keys.known_hosts(&[&sshd]))
        };
        let s = connect(&connector(opts), &sshd_host(&sshd), CONNECT)
            .await
            .unwrap_or_else(|e| panic!("{kind} key accepted: {e}"));
        assert_eq!(
            s.exec("true", CMD).await.expect("runs").exit_status,
            Some(0)
        );
    }
    assert_eq!(sshd.logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_auth_names_what_was_tried() {
    let keys = ClientKeys::new();
    let sshd = Sshd::start(&keys, 1);
    let stranger = ClientKeys::new();
    let missing = keys.path("id_missing");
    let encrypted = keys.path("id_encrypted");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret", "-f"])
        .arg(&encrypted)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let opts = SshOptions {
        known_hosts_explicit: true,
        identities: vec![stranger.key(), missing.clone(), encrypted.clone()],
        known_hosts: keys.known_hosts(&[&sshd]),
        ssh_config: None,
        accept_new_host_keys: false,
        use_agent: true,
    };
    let e = expect_err(&connector(opts), &sshd_host(&sshd), CONNECT).await;
    assert_eq!(e.kind, ConnectErrorKind::Auth, "{e}");
    assert!(e.message.contains("ssh-agent"), "{e}");
    assert!(
        e.message.contains(&stranger.key().display().to_string()),
        "{e}"
    );
    assert!(
        e.message
            .contains(&format!("{} (not found)", missing.display())),
        "{e}"
    );
    assert!(
        e.message.contains(&format!(
            "{} (encrypted; add it to ssh-agent)",
            encrypted.display()
        )),
        "{e}"
    );
    assert_eq!(sshd.logins(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_unreachable() {
    let keys = ClientKeys::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    // The listener is gone: nothing listens on `port` now.
    let c = connector(options(&keys, keys.path("kh")));
    let e = expect_err(&c, &host("gone", "127.0.0.1", port), CONNECT).await;
    assert_eq!(e.kind, ConnectErrorKind::Unreachable, "{e}");
    assert!(e.message.contains("refused"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holed_connections_time_out() {
    let keys = ClientKeys::new();
    let c = connector(options(&keys, keys.path("kh")));
    let timeout = Duration::from_secs(1);

    // Never accepts: the kernel completes the TCP handshake into the backlog,
    // and no SSH banner ever comes.
    let never = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = never.local_addr().expect("addr").port();
    let e = expect_err(&c, &host("never", "127.0.0.1", port), timeout).await;
    assert_eq!(e.kind, ConnectErrorKind::Timeout, "{e}");
    assert!(
        e.message.contains("SSH handshake") && e.message.contains("1s"),
        "{e}"
    );

    // Accepts and never speaks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let e = expect_err(&c, &host("silent", "127.0.0.1", port), timeout).await;
    holder.abort();
    assert_eq!(e.kind, ConnectErrorKind::Timeout, "{e}");
    assert!(e.kind.is_unreachable());
    drop(never);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jump_host_carries_several_targets_over_one_login() {
    let keys = ClientKeys::new();
    let jump = Sshd::start(&keys, 1);
    let targets = Sshd::start(&keys, 4);
    let c = connector(options(&keys, keys.known_hosts(&[&jump, &targets])));
    let hosts: Vec<Host> = targets
        .addrs()
        .iter()
        .map(|a| {
            let mut h = host(&format!("t-{a}"), &a.to_string(), targets.port());
            h.jump = Some(jump.spec());
            h
        })
        .collect();
    let sessions = futures::future::join_all(hosts.iter().map(|h| connect(&c, h, CONNECT))).await;
    for (h, s) in hosts.iter().zip(&sessions) {
        let s = s.as_ref().unwrap_or_else(|e| panic!("{}: {e}", h.name));
        let out = s.exec("echo $SSH_CONNECTION", CMD).await.expect("runs");
        // SSH_CONNECTION = client_ip client_port server_ip server_port
        let server_ip = out.output.split_whitespace().nth(2).unwrap_or_default();
        assert_eq!(server_ip, h.address, "{out:?}");
    }
    assert_eq!(
        jump.logins(),
        1,
        "one jump login for all targets:\n{}",
        jump.log()
    );
    assert_eq!(targets.logins(), hosts.len());

    // A later connect reuses the same jump connection.
    connect(&c, &hosts[0], CONNECT).await.expect("again");
    assert_eq!(jump.logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_jump_connection_is_reopened() {
    let keys = ClientKeys::new();
    let jump = Sshd::start(&keys, 1);
    let targets = Sshd::start(&keys, 2);
    let c = connector(options(&keys, keys.known_hosts(&[&jump, &targets])));
    let mut hosts = targets.addrs().iter().map(|a| {
        let mut h = host(&format!("t-{a}"), &a.to_string(), targets.port());
        h.jump = Some(jump.spec());
        h
    });
    let (h1, h2) = (hosts.next().expect("h1"), hosts.next().expect("h2"));
    let s1 = connect(&c, &h1, CONNECT).await.expect("via jump");
    assert!(jump.drop_connections() > 0);
    for _ in 0..200 {
        if s1.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s1.is_closed(),
        "a target carried by a dead jump connection is gone"
    );
    let s2 = connect(&c, &h2, CONNECT).await.expect("jump reopened");
    assert_eq!(
        s2.exec("true", CMD).await.expect("runs").exit_status,
        Some(0)
    );
    assert_eq!(jump.logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_refusing_behind_a_jump_host_is_unreachable() {
    let keys = ClientKeys::new();
    let jump = Sshd::start(&keys, 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let c = connector(options(&keys, keys.known_hosts(&[&jump])));
    let mut h = host("behind", "127.0.0.1", port);
    h.jump = Some(jump.spec());
    let e = expect_err(&c, &h, CONNECT).await;
    assert_eq!(e.kind, ConnectErrorKind::Unreachable, "{e}");
    assert!(
        e.message.contains("jump host") && e.message.contains(&format!("127.0.0.1:{port}")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jump_host_key_is_checked_too() {
    let keys = ClientKeys::new();
    let jump = Sshd::start(&keys, 1);
    let target = Sshd::start(&keys, 1);
    // Only the target is known.
    let c = connector(options(&keys, keys.known_hosts(&[&target])));
    let mut h = sshd_host(&target);
    h.jump = Some(jump.spec());
    let e = expect_err(&c, &h, CONNECT).await;
    assert_eq!(e.kind, ConnectErrorKind::HostKeyUnknown, "{e}");
    assert!(e.message.starts_with(&h.name), "{e}");
    assert!(
        e.message.contains("jump host") && e.message.contains(&jump.fingerprint()),
        "{e}"
    );
    assert_eq!(jump.logins(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_config_hostname_user_port_and_proxyjump() {
    let keys = ClientKeys::new();
    let jump = Sshd::start(&keys, 1);
    let target = Sshd::start(&keys, 1);
    let config = keys.path("ssh_config");
    let user = rekindle::transport::ssh_config::local_user();
    std::fs::write(
        &config,
        format!(
            "Host bastion\n  HostName {}\n  Port {}\n  User {user}\n  IdentityFile {key}\n\n\
             Host db-*\n  HostName {}\n  Port {}\n  User {user}\n  ProxyJump bastion\n  \
             IdentityFile {key}\n  ControlMaster auto\n",
            jump.addr(),
            jump.port(),
            target.addr(),
            target.port(),
            key = keys.key().display()
        ),
    )
    .expect("write config");
    let opts = SshOptions {
        known_hosts_explicit: true,
        identities: vec![],
        known_hosts: keys.known_hosts(&[&jump, &target]),
        ssh_config: Some(config),
        accept_new_host_keys: false,
        use_agent: false,
    };
    let c = connector(opts);
    let h = host("db-1", "db-1", 22);
    let ep = c.endpoint(&h).expect("config resolves");
    assert_eq!(ep.address, target.addr());
    assert_eq!(ep.port, target.port());
    assert_eq!(ep.jump.as_deref(), Some("bastion"));
    let s = connect(&c, &h, CONNECT).await.expect("connects via config");
    let out = s.exec("echo $SSH_CONNECTION", CMD).await.expect("runs");
    assert!(out.output.contains(&target.addr()), "{out:?}");
    assert_eq!(jump.logins(), 1);
    assert_eq!(target.logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_hosts_connect_and_run_concurrently() {
    let keys = ClientKeys::new();
    let a = Sshd::start(&keys, 16);
    let b = Sshd::start(&keys, 8);
    let c = connector(options(&keys, keys.known_hosts(&[&a, &b])));
    let hosts: Vec<Host> = [&a, &b]
        .iter()
        .flat_map(|s| {
            s.addrs()
                .iter()
                .map(|ip| host(&format!("h-{ip}"), &ip.to_string(), s.port()))
        })
        .collect();
    assert_eq!(hosts.len(), 24);
    let runs = hosts.iter().map(|h| {
        let c = c.clone();
        let h = h.clone();
        tokio::spawn(async move {
            let s = c.connect(&h, CONNECT).await.map_err(|e| e.to_string())?;
            let out = s
                .exec("echo $SSH_CONNECTION; exit 7", CMD)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((h.address.clone(), out))
        })
    });
    let results = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(runs))
        .await
        .expect("all hosts finish");
    for r in results {
        let (addr, out) = r.expect("task").expect("host ok");
        assert_eq!(out.exit_status, Some(7));
        assert_eq!(
            out.output.split_whitespace().nth(2),
            Some(addr.as_str()),
            "{out:?}"
        );
    }
    assert_eq!(a.logins() + b.logins(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_probe_passes_on_a_listener_and_fails_when_refused() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    probe::tcp("127.0.0.1", port, CONNECT)
        .await
        .expect("listener answers");
    drop(l);
    let e = probe::tcp("127.0.0.1", port, CONNECT)
        .await
        .expect_err("refused");
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("refused"),
        "{e}"
    );
}

/// A minimal HTTP server: `/ok` answers 200 "status: healthy", anything else 503.
async fn http_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /ok ") {
                    ("200 OK", "status: healthy")
                } else {
                    ("503 Service Unavailable", "status: starting")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probe_checks_status_and_body() {
    let (port, server) = http_server().await;
    let base = format!("http://127.0.0.1:{port}");
    probe::http(&format!("{base}/ok"), 200, Some("healthy"), CONNECT)
        .await
        .expect("healthy");
    probe::http(&format!("{base}/ok"), 200, None, CONNECT)
        .await
        .expect("status only");
    let e = probe::http(&format!("{base}/ok"), 200, Some("ready"), CONNECT)
        .await
        .expect_err("body");
    assert!(e.contains("does not contain \"ready\""), "{e}");
    let e = probe::http(&format!("{base}/health"), 200, None, CONNECT)
        .await
        .expect_err("503");
    assert!(e.contains("status 503, expected 200"), "{e}");
    server.abort();
    let _ = server.await;
    let e = probe::http(&format!("{base}/ok"), 200, None, CONNECT)
        .await
        .expect_err("down");
    assert!(e.contains("refused"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_run_passes_env_and_reports_status() {
    let env = vec![("REKINDLE_HOST".to_string(), "pg-r001-db1".to_string())];
    let out = local::run("echo host=$REKINDLE_HOST; echo oops >&2; exit 4", &env, CMD)
        .await
        .expect("runs");
    assert_eq!(out.exit_status, Some(4));
    assert!(
        out.output.contains("host=pg-r001-db1") && out.output.contains("oops"),
        "{out:?}"
    );
    let out = local::run("seq 1 1000", &[], CMD).await.expect("runs");
    assert_eq!(out.output.lines().count(), 20);
    assert!(out.output.ends_with("1000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_run_timeout_kills_the_process_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let cmd = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
    let e = local::run(&cmd, &[], Duration::from_secs(1))
        .await
        .expect_err("times out");
    assert_eq!(e, ExecError::Timeout(Duration::from_secs(1)));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid written")
        .trim()
        .parse()
        .expect("pid");
    // The background sleep was in the group: it must die.
    assert!(gone(pid).await, "sleep {pid} survived the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_run_returns_when_the_shell_exits_despite_a_background_child() {
    let out = local::run("sleep 300 & echo $!", &[], Duration::from_secs(20))
        .await
        .expect("returns when sh exits, not when the pipe closes");
    assert_eq!(out.exit_status, Some(0));
    let pid: i32 = out.output.trim().parse().expect("pid printed");
    // The daemon-like child is not ours to keep: stop it.
    let _guard = KillOnDrop(pid);
}
