//! Exit codes, mapped in one place (docs/design.md, "Commands and exit codes").

use std::process::ExitCode;

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
