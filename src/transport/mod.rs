//! Transport: how rekindle reaches a host. SSH sessions (russh), TCP and HTTP
//! health probes, Redfish BMC calls, local commands.
//!
//! Owns connections, authentication, host-key checking, jump hosts and
//! `~/.ssh/config`. It must not retry, poll or schedule: one call is one
//! attempt, and the engine decides what to do with its result. (One
//! exception, which runs nothing twice: an SSH session whose reused
//! connection the server closed, or whose channel it refused, logs in again
//! once before the command is sent; see [`ssh::SshSession`].)
//!
//! - [`ssh`]: [`ssh::SshConnector`] / [`ssh::SshSession`] over russh.
//! - [`known_hosts`]: OpenSSH known_hosts, parsed once, matched in memory.
//! - [`ssh_config`]: `~/.ssh/config` read as OpenSSH reads it, merged with
//!   inventory values. [`algorithms`]: the SSH algorithm lists and options.
//! - [`probe`]: TCP and HTTP health checks. [`local`]: commands on the bastion.
//! - [`redfish`]: BMC power control for `power_on`, and BMC credentials.
//! - [`bmc_trust`]: which TLS certificates a BMC may present (pins, a
//!   known-BMC-certificates file, self-signed leaves given as `--bmc-ca`).
//! - [`ipmi`]: IPMI 2.0 power control through `ipmitool`, and [`ipmi::Bmcs`],
//!   which routes each BMC to Redfish or IPMI.
//! - [`escalation`]: the `become` policy (sudo, doas) applied to host commands.
//! - [`resolve`]: host names to addresses (the C library's resolver, or
//!   rekindle's own in a static build).

use std::future::Future;
use std::time::Duration;

use crate::inventory::Host;

/// Opens sessions to hosts. The engine is generic over this so scheduling
/// logic can be tested with a recording fake.
pub trait Connector: Send + Sync + 'static {
    type Connection: Connection;

    /// One connection attempt (TCP, handshake, host key, auth), bounded by `timeout`.
    fn connect(
        &self,
        host: &Host,
        timeout: Duration,
    ) -> impl Future<Output = Result<Self::Connection, ConnectError>> + Send;
}

/// An authenticated connection to one host.
pub trait Connection: Send + Sync + 'static {
    /// Runs `command` through the login shell, bounded by `timeout`.
    fn exec(
        &self,
        command: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput, ExecError>> + Send;

    /// [`Self::exec`] with `input` written to the command's stdin, then
    /// end-of-file (the become password for `sudo -S`). A transport that
    /// cannot feed stdin says so rather than run the command without it.
    fn exec_with_stdin(
        &self,
        command: &str,
        input: &crate::secret::Secret,
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput, ExecError>> + Send {
        let _ = (command, input, timeout);
        async {
            Err(ExecError::Channel(
                "this transport cannot feed stdin".into(),
            ))
        }
    }

    /// True once the connection is gone (host rebooted, keepalive expired).
    fn is_closed(&self) -> bool;

    /// Resolves once the connection is gone; pending while it stays up.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when the command ended without an exit status (killed by a signal).
    pub exit_status: Option<u32>,
    /// The last lines of stdout and stderr interleaved, capped in size.
    pub output: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    /// The connection dropped before an exit status arrived (expected for reboot).
    #[error("connection closed before the command finished")]
    Disconnected,
    #[error("{0}")]
    Channel(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub kind: ConnectErrorKind,
    pub message: String,
}

/// How a connection attempt failed. The engine's failures, the journal and
/// reports carry it as it is (`engine::failure::ConnectKind`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConnectErrorKind {
    /// Connection refused, reset, no route, or DNS failure.
    Unreachable,
    /// No answer (or no finished handshake) within the connect timeout.
    Timeout,
    /// The host's key is not in known_hosts.
    HostKeyUnknown,
    /// The host's key differs from the one in known_hosts.
    HostKeyChanged,
    /// The host presented a certificate that known_hosts' CAs do not vouch
    /// for: unknown CA, expired, another host's, revoked.
    HostCertificate,
    /// Every authentication method was refused.
    Auth,
    /// The jump host could not be reached or refused the forward.
    Jump,
    /// Anything else the SSH protocol layer reported.
    Protocol,
}

impl ConnectErrorKind {
    /// Refused, timed out, or the jump host failed: the host may be set
    /// aside (`on_unreachable: skip`) instead of failed. Key and login
    /// problems never are. The one "unreachable" rule.
    pub fn is_unreachable(self) -> bool {
        matches!(
            self,
            ConnectErrorKind::Unreachable | ConnectErrorKind::Timeout | ConnectErrorKind::Jump
        )
    }
}

pub mod algorithms;
pub mod bmc;
pub mod bmc_trust;
pub mod escalation;
pub mod ipmi;
pub mod known_hosts;
pub mod local;
pub mod probe;
pub mod redfish;
pub mod resolve;
pub mod secret_file;
pub mod ssh;
pub mod ssh_config;
