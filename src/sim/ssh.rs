//! The simulated hosts' SSH side (russh server) and the tiny shell they answer
//! exec requests with. Owns authentication (the fleet's one client key) and the
//! command language; host state changes go through [`HostCore`].

use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpStream;

use super::core::{HostCore, Shared};

/// Longest `sleep N` honoured, so a stray command cannot pin a session forever.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Bytes in flight between the TCP pump and the SSH session.
const DUPLEX_BUF: usize = 32 * 1024;

/// One russh server config for the whole process (no per-host copies).
pub(crate) fn server_config(host_key: russh::keys::PrivateKey) -> russh::server::Config {
    russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(50),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: Some(Duration::from_secs(3600)),
        nodelay: true,
        // curve25519 only: what a russh client gets from today's Debian 12
        // OpenSSH 9.2 hosts anyway (russh lacks their sntrup761), and ML-KEM
        // would triple the cost of every handshake in a 32,000-host rehearsal.
        preferred: russh::Preferred {
            kex: std::borrow::Cow::Borrowed(&[
                russh::kex::CURVE25519,
                russh::kex::CURVE25519_PRE_RFC_8731,
                russh::kex::EXTENSION_SUPPORT_AS_SERVER,
                russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
            ]),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Serves one accepted connection. The session runs over an in-memory duplex
/// and a pump copies bytes to the socket: dropping the pump's socket is how a
/// reboot pulls the plug, since russh's session task would otherwise keep it.
pub(crate) fn serve_connection(core: Arc<HostCore>, shared: Arc<Shared>, mut tcp: TcpStream) {
    let (mut near, far) = tokio::io::duplex(DUPLEX_BUF);
    let mut epoch = core.subscribe();
    let handler = Handler {
        core,
        client_key: shared.client_key.clone(),
    };
    let config = shared.ssh_config.clone();
    tokio::spawn(async move {
        // The session task lives until the duplex closes (when this pump ends).
        let _ = russh::server::run_stream(config, far, handler).await;
    });
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut tcp, &mut near) => {}
            _ = epoch.changed() => {}
        }
    });
}

struct Handler {
    core: Arc<HostCore>,
    client_key: russh::keys::PublicKey,
}

impl Handler {
    fn accepts(&self, key: &russh::keys::PublicKey) -> Auth {
        if key.key_data() == self.client_key.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.accepts(offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.accepts(key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let handle = session.handle();
        let script = String::from_utf8_lossy(data).into_owned();
        let core = self.core.clone();
        // Off the session loop: `sleep N` must not stall the connection.
        tokio::spawn(async move {
            let out = run_script(&core, &script).await;
            if !out.stdout.is_empty() {
                let _ = handle.data(channel, out.stdout).await;
            }
            if !out.stderr.is_empty() {
                let _ = handle.extended_data(channel, 1, out.stderr).await;
            }
            let _ = handle.exit_status_request(channel, out.code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No interactive shell on a simulated host.
        session.channel_failure(channel)?;
        Ok(())
    }
}

/// What a command printed and how it exited.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: u32,
}

/// Runs `a && b || c; d` with sh's left-to-right semantics (no quoting, no pipes).
pub(crate) async fn run_script(core: &HostCore, script: &str) -> Output {
    // rekindle's `become` wrapping: every simulated user may become root.
    let unwrapped;
    let script = match unwrap_become(script) {
        Some(inner) => {
            unwrapped = inner;
            unwrapped.as_str()
        }
        None => script,
    };
    let mut total = Output::default();
    for sequence in script.split([';', '\n']) {
        if sequence.trim().is_empty() {
            continue;
        }
        // A skipped command leaves the status as it was, as in sh.
        let mut last_code = 0u32;
        for (op, cmd) in split_and_or(sequence) {
            let run = match op {
                Op::First => true,
                Op::And => last_code == 0,
                Op::Or => last_code != 0,
            };
            if !run {
                continue;
            }
            if let Some(code) = exit_code(cmd) {
                total.code = code;
                return total;
            }
            let out = run_command(core, cmd).await;
            total.stdout.extend(out.stdout);
            total.stderr.extend(out.stderr);
            last_code = out.code;
        }
        total.code = last_code;
    }
    total
}

/// The inner script of `sudo -n -u USER -- sh -c 'SCRIPT'` or
/// `doas -n -u USER sh -c 'SCRIPT'` (one POSIX single-quoted argument).
fn unwrap_become(script: &str) -> Option<String> {
    let rest = script.trim_start();
    let rest = if let Some(r) = rest.strip_prefix("sudo -n -u ") {
        let (_user, r) = r.split_once(' ')?;
        r.strip_prefix("-- sh -c ")?
    } else if let Some(r) = rest.strip_prefix("doas -n -u ") {
        let (_user, r) = r.split_once(' ')?;
        r.strip_prefix("sh -c ")?
    } else {
        return None;
    };
    let mut out = String::new();
    let mut chars = rest.trim_end().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    out.push(q);
                }
            }
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    Some(out)
}

#[derive(Debug, Clone, Copy)]
enum Op {
    First,
    And,
    Or,
}

fn split_and_or(s: &str) -> Vec<(Op, &str)> {
    let mut out = Vec::new();
    let mut op = Op::First;
    let mut rest = s;
    loop {
        let and = rest.find("&&");
        let or = rest.find("||");
        let (pos, next) = match (and, or) {
            (Some(a), Some(o)) if a < o => (a, Op::And),
            (Some(_), Some(o)) => (o, Op::Or),
            (Some(a), None) => (a, Op::And),
            (None, Some(o)) => (o, Op::Or),
            (None, None) => {
                out.push((op, rest.trim()));
                return out;
            }
        };
        out.push((op, rest[..pos].trim()));
        op = next;
        rest = &rest[pos + 2..];
    }
}

/// `exit N` ends the script with N (quoted or not, as a shell reads it);
/// a bare `exit` with 0, a word that is no number with 2, as sh does.
fn exit_code(cmd: &str) -> Option<u32> {
    let mut words = cmd.split_whitespace();
    (words.next()? == "exit").then(|| match words.next() {
        None => 0,
        Some(word) => {
            let unquoted = ["'", "\""]
                .iter()
                .find_map(|q| word.strip_prefix(q)?.strip_suffix(q))
                .unwrap_or(word);
            unquoted.parse::<u32>().map_or(2, |n| n & 0xff)
        }
    })
}

fn ok(stdout: impl Into<Vec<u8>>) -> Output {
    Output {
        stdout: stdout.into(),
        stderr: Vec::new(),
        code: 0,
    }
}

fn fail(code: u32, stdout: &str, stderr: &str) -> Output {
    Output {
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
        code,
    }
}

async fn run_command(core: &HostCore, cmd: &str) -> Output {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    // `sudo` is a no-op on a host where everyone is root.
    let words: &[&str] = match words.as_slice() {
        ["sudo", "-n", rest @ ..] | ["sudo", rest @ ..] => rest,
        all => all,
    };
    match words {
        [] => ok(""),
        ["true"] | [":"] => ok(""),
        ["false"] => fail(1, "", ""),
        ["echo", rest @ ..] => ok(format!("{}\n", rest.join(" "))),
        ["hostname"] => ok(format!("{}\n", core.name)),
        ["cat", "/proc/sys/kernel/random/boot_id"] => ok(format!("{}\n", core.boot_id())),
        // What `rekindle audit` reads: this host's connections (`sim --deps`).
        ["cat", "/proc/net/tcp"] if core.sockets.is_empty() => ok(super::deps::HEADER),
        ["cat", "/proc/net/tcp"] => ok(core.sockets.as_str()),
        ["cat", "/proc/net/tcp6", ..] => ok(super::deps::EMPTY_TCP6),
        ["systemctl", "reboot", ..] | ["reboot", ..] | ["shutdown", "-r", ..] => {
            core.request_reboot();
            ok("")
        }
        ["sleep", n] => match n.trim_end_matches('s').parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => {
                tokio::time::sleep(Duration::from_secs_f64(secs).min(MAX_SLEEP)).await;
                ok("")
            }
            _ => fail(1, "", &format!("sleep: invalid time interval '{n}'\n")),
        },
        ["systemctl", verb, unit, ..] if !unit.starts_with('-') => systemctl(core, verb, unit),
        ["systemctl", "is-system-running", ..] => {
            if core.healthy() {
                ok("running\n")
            } else {
                fail(1, "degraded\n", "")
            }
        }
        [program, ..] => fail(127, "", &format!("sh: 1: {program}: not found\n")),
    }
}

fn systemctl(core: &HostCore, verb: &str, _unit: &str) -> Output {
    match verb {
        "is-active" => {
            if core.healthy() {
                ok("active\n")
            } else {
                fail(3, "failed\n", "")
            }
        }
        "restart" | "start" | "stop" | "reload" => ok(""),
        "is-system-running" => {
            if core.healthy() {
                ok("running\n")
            } else {
                fail(1, "degraded\n", "")
            }
        }
        other => fail(1, "", &format!("Unknown command verb '{other}'.\n")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::sim::config::FaultKind;

    fn host(fault: Option<FaultKind>) -> HostCore {
        HostCore::new(0, "sim-00001".into(), Ipv4Addr::LOCALHOST, fault, 1)
    }

    async fn run(core: &HostCore, s: &str) -> (u32, String, String) {
        let o = run_script(core, s).await;
        (
            o.code,
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    #[tokio::test]
    async fn become_wrapped_commands_run_as_root_does() {
        let h = HostCore::new(0, "h".into(), Ipv4Addr::LOCALHOST, None, 1);
        let esc = crate::inventory::escalation::Become::root();
        let wrapped = esc.wrap(
            "echo it's && systemctl restart 'a b'",
            crate::transport::escalation::Prompt::Never,
        );
        let out = run_script(&h, &wrapped).await;
        assert_eq!(out.code, 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's\n");
    }

    #[tokio::test]
    async fn commands_answer_like_a_host() {
        let h = host(None);
        assert_eq!(
            run(&h, "hostname").await,
            (0, "sim-00001\n".into(), String::new())
        );
        assert_eq!(run(&h, "true").await.0, 0);
        assert_eq!(run(&h, "false").await.0, 1);
        assert_eq!(run(&h, "exit 42").await.0, 42);
        assert_eq!(run(&h, "exit '3'").await.0, 3);
        assert_eq!(run(&h, "exit \"300\"").await.0, 300 & 0xff);
        assert_eq!(run(&h, "exit three").await.0, 2);
        assert_eq!(run(&h, "echo a  b").await.1, "a b\n");
        assert_eq!(
            run(&h, "systemctl is-active sshd").await,
            (0, "active\n".into(), String::new())
        );
        assert_eq!(
            run(&h, "frobnicate --all").await,
            (127, String::new(), "sh: 1: frobnicate: not found\n".into())
        );
        let id = run(&h, "cat /proc/sys/kernel/random/boot_id").await.1;
        assert_eq!(id, format!("{}\n", h.boot_id()));
    }

    #[tokio::test]
    async fn and_or_and_sequences() {
        let h = host(None);
        assert_eq!(run(&h, "true && echo yes").await.1, "yes\n");
        assert_eq!(
            run(&h, "false && echo yes").await,
            (1, String::new(), String::new())
        );
        assert_eq!(run(&h, "false || echo no").await.1, "no\n");
        assert_eq!(
            run(&h, "false; echo next").await,
            (0, "next\n".into(), String::new())
        );
        assert_eq!(
            run(&h, "echo a; exit 3; echo b").await,
            (3, "a\n".into(), String::new())
        );
    }

    #[tokio::test]
    async fn unhealthy_hosts_say_so() {
        let h = host(Some(FaultKind::Unhealthy));
        assert_eq!(run(&h, "systemctl is-active app").await.0, 3);
        assert_eq!(
            run(&h, "systemctl is-system-running").await,
            (1, "degraded\n".into(), String::new())
        );
        assert_eq!(run(&h, "systemctl restart app").await.0, 0);
    }
}
