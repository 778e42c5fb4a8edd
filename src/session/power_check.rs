//! `plan --preflight` for the hosts reached through a BMC (`power_on` and
//! `remediate`): read each one's power state
//! through its BMC (Redfish or IPMI), changing nothing.
//!
//! Owns the bounded fan-out and its report. The BMC calls and their
//! etiquette are `engine::power`'s (one request at a time per BMC, spaced);
//! it must not power anything on.

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::engine::power::PowerControl;
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::transport::redfish::{BmcError, BmcErrorKind, PowerState};

/// One host's power state, or why it could not be read.
#[derive(Debug, Clone)]
pub struct PowerCheck {
    /// Index in `Inventory::hosts`.
    pub host: usize,
    pub result: Result<PowerState, BmcError>,
}

/// Reads the state of every host reached through its BMC
/// ([`Plan::bmc_hosts`]: power_on and remediate), at most `parallel` at once.
pub async fn check(
    power: Arc<PowerControl>,
    inventory: &Inventory,
    plan: &Plan,
    parallel: usize,
) -> Vec<PowerCheck> {
    let work = plan
        .bmc_hosts()
        .into_iter()
        .filter_map(|i| Some((i, inventory.hosts.get(i)?)));
    let mut out: Vec<PowerCheck> = futures::stream::iter(work)
        .map(|(i, host)| {
            let power = Arc::clone(&power);
            async move {
                PowerCheck {
                    host: i,
                    result: power.power_state(host).await,
                }
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    out.sort_by_key(|c| c.host);
    out
}

fn problem(e: &BmcError) -> &'static str {
    match e.kind {
        BmcErrorKind::Auth => "credentials rejected",
        BmcErrorKind::Unreachable => "BMC unreachable",
        BmcErrorKind::Trust => "certificate not trusted",
        BmcErrorKind::Busy { .. } => "BMC busy",
        BmcErrorKind::Status(_) | BmcErrorKind::Protocol => "other",
    }
}

/// `power (N hosts through their BMCs): on A, off B`, then each problem.
pub fn render_text(inventory: &Inventory, checks: &[PowerCheck]) -> String {
    let count = |want: &PowerState| {
        checks
            .iter()
            .filter(|c| c.result.as_ref().is_ok_and(|s| s == want))
            .count()
    };
    let (on, off) = (count(&PowerState::On), count(&PowerState::Off));
    let other = checks.iter().filter(|c| c.result.is_ok()).count() - on - off;
    let failed: Vec<&PowerCheck> = checks.iter().filter(|c| c.result.is_err()).collect();
    let mut s = format!(
        "\npower ({} hosts through their BMCs): on {on}, off {off}",
        checks.len()
    );
    if other > 0 {
        s.push_str(&format!(", other {other}"));
    }
    if !failed.is_empty() {
        s.push_str(&format!(", not read {}", failed.len()));
    }
    s.push('\n');
    for c in failed {
        if let (Some(h), Err(e)) = (inventory.hosts.get(c.host), &c.result) {
            s.push_str(&format!("  {}: {}: {}\n", h.name, problem(e), e.message));
        }
    }
    s
}

/// `[{host, power} | {host, problem, message}]`.
pub fn render_json(inventory: &Inventory, checks: &[PowerCheck]) -> Value {
    Value::Array(
        checks
            .iter()
            .filter_map(|c| {
                let name = &inventory.hosts.get(c.host)?.name;
                Some(match &c.result {
                    Ok(state) => json!({"host": name, "power": state.as_str()}),
                    Err(e) => json!({"host": name, "problem": problem(e), "message": e.message}),
                })
            })
            .collect(),
    )
}
