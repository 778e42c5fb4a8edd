//! What `rekindle plan` checks of a plan's BMC inputs without reaching a
//! host: the credentials file holds an account for every host a stage
//! reaches through its BMC (power_on and remediate), certificate and IPMI cipher-suite pins and `bmc_spacing`
//! labels read, and plain http BMCs (a run refuses them without
//! `--bmc-allow-http`; the plan warns).
//!
//! Owns that list; each rule is the session's, the same a run applies.

use std::path::Path;

use crate::diag::{Diagnostic, Severity};
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::transport::redfish::CredentialStore;

/// Why the plan cannot be shown.
pub enum Refused {
    /// Problems at their places in the inputs.
    Diagnostics(Vec<Diagnostic>),
    /// The credentials file cannot be read.
    Credentials(String),
}

/// The plan's BMC inputs checked; `Ok` holds warnings to show with it.
pub fn check(
    plan: &Plan,
    inventory: &Inventory,
    credentials: Option<&Path>,
) -> Result<Vec<Diagnostic>, Refused> {
    if !plan.reaches_bmcs() {
        return Ok(Vec::new());
    }
    let bmc_hosts = plan.bmc_hosts();
    if let Some(file) = credentials {
        let store =
            CredentialStore::from_file(file).map_err(|e| Refused::Credentials(e.to_string()))?;
        let problems = super::bmc_credential_problems(&bmc_hosts, inventory, &store);
        if !problems.is_empty() {
            return Err(Refused::Diagnostics(problems));
        }
    }
    let mut problems = super::bmc_cert_pins(&bmc_hosts, inventory)
        .err()
        .unwrap_or_default();
    problems.extend(
        super::ipmi_suite_pins(&bmc_hosts, inventory)
            .err()
            .unwrap_or_default(),
    );
    problems.extend(super::bmc_spacing_problems(&bmc_hosts, inventory));
    if !problems.is_empty() {
        return Err(Refused::Diagnostics(problems));
    }
    Ok(super::plain_http_bmcs(&bmc_hosts, inventory, false)
        .into_iter()
        .map(|mut d| {
            d.severity = Severity::Warning;
            d
        })
        .collect())
}
