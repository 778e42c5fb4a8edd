//! Why a host failed, as data: [`Failure`] travels in events, the journal
//! and reports, so grouping failures and deciding "unreachable" read the
//! kind, never the message (a message can then be reworded freely).
//! [`StepFailure`] is a step's error inside the engine: the kind, the
//! message for people, and the failing command's last output.
//!
//! Owns the vocabulary of failures and their short titles. It must not
//! depend on the steps or the power pacing that produce them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::transport::redfish::BmcErrorKind;

/// How a connection attempt failed: the transport's kind, carried as it is
/// (one enum, one "unreachable" rule: [`ConnectKind::is_unreachable`]).
pub use crate::transport::ConnectErrorKind as ConnectKind;

impl ConnectKind {
    fn title(self) -> &'static str {
        match self {
            ConnectKind::Unreachable | ConnectKind::Timeout | ConnectKind::Jump => "unreachable",
            ConnectKind::HostKeyUnknown => "unknown host key",
            ConnectKind::HostKeyChanged => "CHANGED host key",
            ConnectKind::HostCertificate => "host certificate rejected",
            ConnectKind::Auth => "authentication failed",
            ConnectKind::Protocol => "SSH protocol error",
        }
    }
}

/// How a BMC request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BmcKind {
    Unreachable,
    Auth,
    /// An HTTP status other than the expected ones.
    Status,
    Protocol,
    /// The BMC's TLS certificate is not trusted.
    Trust,
    /// The BMC stayed busy (session table full, or 503) until the timeout.
    Busy,
}

/// Why sudo or doas refused (the escalation's own failure, not the command's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BecomeKind {
    /// It wants a password and none was given (or doas, which takes none on stdin).
    PasswordRequired,
    /// The `--become-password-file` password was wrong.
    PasswordRejected,
    /// The login user may not run commands as the target user.
    NotAllowed,
    /// sudo or doas is not installed.
    Unavailable,
}

impl BecomeKind {
    fn title(self) -> &'static str {
        match self {
            BecomeKind::PasswordRequired => "sudo requires a password",
            BecomeKind::PasswordRejected => "become password rejected",
            BecomeKind::NotAllowed => "privilege escalation not allowed",
            BecomeKind::Unavailable => "sudo/doas not installed",
        }
    }
}

impl From<&crate::transport::escalation::Refusal> for BecomeKind {
    fn from(r: &crate::transport::escalation::Refusal) -> Self {
        use crate::transport::escalation::Refusal;
        match r {
            Refusal::NeedsPassword => BecomeKind::PasswordRequired,
            Refusal::WrongPassword => BecomeKind::PasswordRejected,
            Refusal::NotAllowed(_) => BecomeKind::NotAllowed,
            Refusal::Missing(_) => BecomeKind::Unavailable,
        }
    }
}

/// Why a host failed. Every variant is what an operator would group by.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Failure {
    /// A connection for a command could not be made.
    Connect { error: ConnectKind },
    /// `wait_ssh` gave up; `error` is what the last attempt found.
    NoSsh { error: ConnectKind },
    /// The host stayed up on its old boot id after the reboot command.
    DidNotReboot,
    /// The host went down and did not answer again within the timeout.
    DidNotComeBack,
    /// Still silent after the last power cycle `remediate` allowed: set
    /// aside (`on_unreachable` decides whether it spends the budget).
    Quarantined { power_cycles: u32 },
    /// Health checks did not all pass within their timeout.
    Unhealthy,
    /// A command exited with a non-zero code.
    Exited { code: u32 },
    /// A command ended without an exit status (killed by a signal, say).
    NoExitStatus,
    /// The boot id could not be read (empty or not a boot id).
    BootId,
    /// A command did not finish within its timeout.
    CommandTimeout,
    /// The session broke while a command ran.
    CommandLost,
    /// sudo or doas refused to run the command: nothing ran.
    Become { refusal: BecomeKind },
    /// A tcp or http check could not pass.
    Probe,
    /// A BMC request failed; `status` is the HTTP status when it was one.
    Bmc { error: BmcKind, status: Option<u16> },
    /// power_on did not see the host On within its timeout.
    PowerOnTimeout { bmc_unreachable: bool },
    /// No BMC to ask: no `bmc` label, or no credentials configured.
    NoBmc,
    /// A placeholder could not be filled for this host.
    Template,
    /// The journal did not record the intent, so nothing was sent.
    NotRecorded,
    /// A `local:` command could not be started.
    Local,
    /// Stopped by the operator.
    Interrupted,
    /// A bug in rekindle: the host's task panicked.
    Internal,
    /// Recorded by an older rekindle (journal format 1) without a kind.
    #[default]
    Unknown,
}

impl From<BmcErrorKind> for Failure {
    fn from(k: BmcErrorKind) -> Self {
        let (error, status) = match k {
            BmcErrorKind::Unreachable => (BmcKind::Unreachable, None),
            BmcErrorKind::Auth => (BmcKind::Auth, None),
            BmcErrorKind::Status(s) => (BmcKind::Status, Some(s)),
            BmcErrorKind::Protocol => (BmcKind::Protocol, None),
            BmcErrorKind::Trust => (BmcKind::Trust, None),
            BmcErrorKind::Busy { .. } => (BmcKind::Busy, None),
        };
        Failure::Bmc { error, status }
    }
}

impl Failure {
    /// Whether the host could not be reached at all, so `on_unreachable:
    /// skip` sets it aside instead of failing it.
    pub fn is_unreachable(self) -> bool {
        match self {
            Failure::Connect { error } | Failure::NoSsh { error } => error.is_unreachable(),
            Failure::Bmc { error, .. } => error == BmcKind::Unreachable,
            Failure::PowerOnTimeout { bmc_unreachable } => bmc_unreachable,
            Failure::Quarantined { .. } => true,
            _ => false,
        }
    }
}

/// The short title reports group failures under.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::Connect { error } => f.write_str(error.title()),
            Failure::NoSsh { error } if error.is_unreachable() => f.write_str("no SSH"),
            Failure::NoSsh { error } => write!(f, "no SSH ({})", error.title()),
            Failure::DidNotReboot => f.write_str("did not reboot (boot id unchanged)"),
            Failure::DidNotComeBack => f.write_str("did not come back"),
            Failure::Quarantined { power_cycles: 1 } => {
                f.write_str("quarantined after 1 power cycle")
            }
            Failure::Quarantined { power_cycles } => {
                write!(f, "quarantined after {power_cycles} power cycles")
            }
            Failure::Unhealthy => f.write_str("unhealthy"),
            Failure::Exited { code } => write!(f, "command failed (exit {code})"),
            Failure::NoExitStatus => f.write_str("command failed (no exit status)"),
            Failure::BootId => f.write_str("boot id unreadable"),
            Failure::CommandTimeout => f.write_str("command timed out"),
            Failure::CommandLost => f.write_str("session lost mid-command"),
            Failure::Become { refusal } => f.write_str(refusal.title()),
            Failure::Probe => f.write_str("check failed"),
            Failure::Bmc { error, status } => match (error, status) {
                (BmcKind::Unreachable, _) => f.write_str("BMC unreachable"),
                (BmcKind::Auth, _) => f.write_str("BMC refused the credentials"),
                (BmcKind::Status, Some(s)) => write!(f, "BMC answered HTTP {s}"),
                (BmcKind::Status, None) => f.write_str("BMC error status"),
                (BmcKind::Protocol, _) => f.write_str("BMC protocol error"),
                (BmcKind::Trust, _) => f.write_str("BMC certificate not trusted"),
                (BmcKind::Busy, _) => f.write_str("BMC busy"),
            },
            Failure::PowerOnTimeout {
                bmc_unreachable: true,
            } => f.write_str("power-on timed out (BMC unreachable)"),
            Failure::PowerOnTimeout { .. } => f.write_str("power-on timed out"),
            Failure::NoBmc => f.write_str("no BMC"),
            Failure::Template => f.write_str("placeholder not filled"),
            Failure::NotRecorded => f.write_str("intent not recorded"),
            Failure::Local => f.write_str("local command did not start"),
            Failure::Interrupted => f.write_str("interrupted"),
            Failure::Internal => f.write_str("internal error"),
            Failure::Unknown => f.write_str("other"),
        }
    }
}

/// Why a step failed, inside the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub failure: Failure,
    pub reason: String,
    /// The last lines of output of the failing command.
    pub output: String,
}

impl StepFailure {
    pub fn new(failure: Failure, reason: impl Into<String>) -> StepFailure {
        StepFailure {
            failure,
            reason: reason.into(),
            output: String::new(),
        }
    }

    pub fn with_output(mut self, output: &str) -> StepFailure {
        self.output = output.to_owned();
        self
    }

    /// The host could not be reached at all.
    pub fn unreachable(&self) -> bool {
        self.failure.is_unreachable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_round_trip_through_json_and_decide_unreachable_by_kind() {
        let all = [
            Failure::Connect {
                error: ConnectKind::Timeout,
            },
            Failure::NoSsh {
                error: ConnectKind::Auth,
            },
            Failure::Exited { code: 3 },
            Failure::Bmc {
                error: BmcKind::Status,
                status: Some(500),
            },
            Failure::PowerOnTimeout {
                bmc_unreachable: true,
            },
            Failure::Internal,
            Failure::Become {
                refusal: BecomeKind::PasswordRequired,
            },
        ];
        for f in all {
            let text = serde_json::to_string(&f).expect("encode");
            assert_eq!(
                serde_json::from_str::<Failure>(&text).ok(),
                Some(f),
                "{text}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Failure::Exited { code: 3 })
                .ok()
                .as_deref(),
            Some(r#"{"kind":"exited","code":3}"#)
        );
        let unreachable: Vec<bool> = all.iter().map(|f| f.is_unreachable()).collect();
        assert_eq!(unreachable, [true, false, false, false, true, false, false]);
        assert_eq!(
            serde_json::to_string(&Failure::Become {
                refusal: BecomeKind::PasswordRejected
            })
            .ok()
            .as_deref(),
            Some(r#"{"kind":"become","refusal":"password_rejected"}"#)
        );
        assert_eq!(Failure::DidNotComeBack.to_string(), "did not come back");
    }
}
