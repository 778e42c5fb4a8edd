//! Exit codes, mapped in one place (docs/design.md, "Commands and exit codes"):
//! a command returns `Ok(Exit)` when it ran, or an error through `?`, which
//! [`Exit::of`] maps to its code (a usage or input error, unless typed
//! otherwise here).

use std::fmt::Display;
use std::process::ExitCode;

/// Why a command stopped without doing (or finishing) its work, beyond a
/// plain usage error. `lib.rs` prints any error as `error: MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage or input, in one sentence.
    #[error("{0}")]
    Usage(String),
    /// Bad usage or input already explained on stderr (diagnostics with
    /// their places, a confirmation refused): nothing more is printed.
    #[error("input errors were printed above")]
    Reported,
    /// The driver lost the lead of its run in etcd; why.
    #[error("{0}")]
    Fenced(String),
}

/// A usage error with `message`, as an error `?` carries.
pub fn usage(message: impl Display) -> anyhow::Error {
    Error::Usage(message.to_string()).into()
}

/// Usage errors already explained on stderr.
pub fn reported() -> anyhow::Error {
    Error::Reported.into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every host done (validate: input valid).
    Success,
    /// Finished with failures inside the budgets (validate: input invalid).
    Failures,
    /// Usage or input error; nothing was done.
    Usage,
    /// A failure budget was exceeded or a canary failed.
    Aborted,
    /// Interrupted by the operator; the journal is consistent and resumable.
    Interrupted,
    /// The run ended, but its journal could not record every outcome (a
    /// full disk, say): which records were lost was said on stderr.
    JournalIncomplete,
    /// The driver lost the lead of its run in etcd (lease keepalive late, or
    /// a guarded write refused): it stopped acting at once; another bastion
    /// may drive the run, or `resume --etcd` takes it over.
    Fenced,
}

impl Exit {
    /// The one mapping from a command's error to its exit code.
    pub fn of(error: &anyhow::Error) -> Exit {
        match error.downcast_ref::<Error>() {
            Some(Error::Fenced(_)) => Exit::Fenced,
            Some(Error::Usage(_) | Error::Reported) | None => Exit::Usage,
        }
    }

    /// Whether `error` still needs saying (one already explained does not).
    pub fn says(error: &anyhow::Error) -> bool {
        !matches!(error.downcast_ref::<Error>(), Some(Error::Reported))
    }

    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failures => 1,
            Exit::Usage => 2,
            Exit::Aborted => 3,
            Exit::Interrupted => 130,
            Exit::JournalIncomplete => 4,
            Exit::Fenced => 5,
        }
    }
}

impl From<crate::engine::RunOutcome> for Exit {
    fn from(outcome: crate::engine::RunOutcome) -> Exit {
        use crate::engine::RunOutcome;
        match outcome {
            RunOutcome::Success => Exit::Success,
            RunOutcome::Failures => Exit::Failures,
            RunOutcome::Aborted => Exit::Aborted,
            RunOutcome::Interrupted => Exit::Interrupted,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}
