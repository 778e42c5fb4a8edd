//! The execution plan: an inventory and a playbook resolved into stages of
//! concrete hosts with absolute limits. Pure and deterministic: no I/O, no
//! clock, no randomness, so `plan` output is diffable and the engine can be
//! tested on hand-built plans.
//!
//! Owns dependency ordering, host selection per stage, canary choice and the
//! translation of percentages into counts. It must not touch hosts or print.

use std::time::Duration;

use crate::diag::Diagnostic;
use crate::playbook::{OnUnreachable, Rate, Step};

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    /// Stages in a dependency order (every stage after all of its `after`).
    pub stages: Vec<StagePlan>,
    /// Groups of stage indices that may run at the same time, in order.
    pub waves: Vec<Vec<usize>>,
    /// Hosts no stage selects, hosts two stages select, unmeetable limits.
    pub warnings: Vec<Diagnostic>,
    /// Estimated wall time of the whole plan.
    pub estimate: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub name: String,
    /// Indices into `plan.stages` of the stages this one waits for.
    pub after: Vec<usize>,
    /// Indices into `Inventory::hosts`; the first `canaries` of them are the canaries.
    pub hosts: Vec<usize>,
    pub canaries: usize,
    /// Hosts in flight at once (after canaries), at least 1.
    pub window: usize,
    /// Failures tolerated; one more aborts the stage.
    pub failure_budget: usize,
    pub rate: Option<Rate>,
    pub rate_per: Option<String>,
    /// Label key and the most hosts in flight per value of it.
    pub max_unavailable: Vec<(String, usize)>,
    pub on_unreachable: OnUnreachable,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub steps: Vec<Step>,
    /// Estimated duration of one host, and of the whole stage.
    pub host_estimate: Duration,
    pub estimate: Duration,
}

/// Resolves `playbook` against `inventory` (narrowed by `limit`). Pure.
/// An empty selection is an error, never "all hosts".
pub fn build(
    playbook: &crate::playbook::Playbook,
    inventory: &crate::inventory::Inventory,
    limit: Option<&crate::select::Selector>,
) -> Result<Plan, Vec<Diagnostic>> {
    // Placeholder until planning lands; see issue "The offline half".
    let _ = (inventory, limit);
    Err(vec![Diagnostic::error(
        "unsupported",
        None,
        format!("cannot plan `{}` yet", playbook.name),
    )])
}
