//! The execution engine: runs a [`Plan`](crate::plan::Plan) against hosts
//! through a [`Connector`](crate::transport::Connector) and reports only
//! through [`events::Event`]s.
//!
//! - [`scheduler`]: the one coordinator that owns all run state and drives
//!   [`admission`], the synchronous state machine that decides what starts
//!   (stages, windows, canaries, budgets, rate limits, `max_unavailable`,
//!   power-on pacing per PDU and fleet).
//! - [`steps`]: what each step does on one host.
//! - [`failure`]: why a host failed, as data.
//! - [`consumer`]: the trait every reader of the event stream implements.
//! - [`power`]: the `power_on` step and per-BMC etiquette.
//! - [`limits`], [`backoff`]: token buckets driven by the caller's instant; polling delays.
//!
//! The engine never prints, never reads files, and never imports the simulator.

pub mod admission;
pub mod backoff;
pub mod consumer;
pub mod events;
pub mod failure;
pub mod limits;
pub mod power;
pub mod scheduler;
pub mod steps;

use std::collections::HashMap;
use std::sync::Arc;

pub use events::{Event, EventKind, HostOutcome, RunOutcome, StageOutcome, StepKind};
pub use failure::{Failure, StepFailure};
pub use scheduler::run;

use crate::playbook::Rate;
use crate::transport::redfish::Bmc;

/// What the operator asked for with Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum CancelLevel {
    #[default]
    None,
    /// Start nothing new; let hosts in flight finish.
    Drain,
    /// Stop now; hosts in flight are reported as interrupted mid-step.
    Abort,
}

/// Where a host starts, for resuming a run from its journal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostStart {
    /// From its first step.
    #[default]
    Fresh,
    /// Finished before: skipped, counted as done.
    Done,
    /// From step `step`. When `reboot_boot_id` is set, that step is a reboot
    /// whose command was already sent with this boot id read before it: the
    /// engine does not send it again, it waits for the host and checks that
    /// the boot id changed.
    ///
    /// `power_cycles` is how many remediation power cycles that step has
    /// already had (their intents are in the journal): the count goes on
    /// from there, and none of them is sent again.
    From {
        step: usize,
        reboot_boot_id: Option<String>,
        power_cycles: u32,
    },
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Global cap on hosts in flight across all stages (already clamped to
    /// what the file descriptor limit allows). At least 1.
    pub parallel: usize,
    /// Global cap on host starts (`--rate`), shared by all stages.
    pub rate: Option<Rate>,
    /// Per (stage index, host index): where to start. Missing means [`HostStart::Fresh`].
    pub starts: HashMap<(usize, usize), HostStart>,
    /// The BMC client for `power_on` steps (`None`: those steps fail clearly).
    pub bmc: Option<Arc<dyn Bmc>>,
    /// Divides BMC etiquette and PowerState polling intervals; 1 for real
    /// runs, the drill's `--speed` for a rehearsal with compressed time.
    pub bmc_time_scale: f64,
    /// `--become-password-file`: the password sudo reads on stdin (`None`:
    /// sudo runs non-interactively and a host that wants one fails).
    pub become_password: Option<crate::secret::Secret>,
    /// The pause switch (`rekindle pause`): while true no host starts and no
    /// host in flight starts a new step. `None`: never paused.
    pub pause: Option<tokio::sync::watch::Receiver<bool>>,
    /// Asked after each acknowledged intent, before the action is sent
    /// (`--etcd`: whether this driver still holds its lease). `None`: always.
    pub may_act: Option<events::MayAct>,
    /// A takeover's hold (`--etcd`): hosts resumed mid-way
    /// ([`HostStart::From`], whose last action's outcome may be unknown)
    /// act on nothing before this instant, so a paused old driver's action
    /// cannot race theirs; fresh hosts start at once. `None`: no hold.
    pub hold_resumed_until: Option<tokio::time::Instant>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            parallel: usize::MAX,
            rate: None,
            starts: HashMap::new(),
            bmc: None,
            bmc_time_scale: 1.0,
            become_password: None,
            pause: None,
            may_act: None,
            hold_resumed_until: None,
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;
