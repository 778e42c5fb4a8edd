//! The boot path, read through the BMCs: what each host does when the
//! site's power returns (`PowerRestorePolicy`: Redfish, or IPMI's `chassis
//! status`), its power state, and where its next boot is pointed (the
//! one-time boot override). Read-only: one login, one read of the system,
//! one logout per host, under the engine's BMC etiquette.
//!
//! Owns those facts and their findings. It must not power, reset or
//! re-point anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use serde_json::Value;

use super::deps::plural;
use super::{Finding, Kind, Severity};
use crate::engine::power::PowerControl;
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::playbook::Step;
use crate::transport::redfish::BmcErrorKind;

/// What one BMC said about its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFacts {
    /// `PowerState` (`On`, `Off`, ...).
    pub power: String,
    /// `PowerRestorePolicy`: `AlwaysOn`, `AlwaysOff`, `LastState`; `None`
    /// when the BMC does not say.
    pub restore_policy: Option<String>,
    /// The one-time (or continuous) boot override's target, when enabled.
    pub boot_override: Option<String>,
}

impl BootFacts {
    /// The facts in a ComputerSystem resource.
    pub fn from_system(v: &Value) -> BootFacts {
        let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let enabled = text("/Boot/BootSourceOverrideEnabled");
        let target = text("/Boot/BootSourceOverrideTarget");
        let boot_override = match (enabled.as_deref(), target) {
            (Some("Once" | "Continuous"), Some(t)) if t != "None" => Some(t),
            _ => None,
        };
        BootFacts {
            power: text("/PowerState").unwrap_or_else(|| "unknown".into()),
            restore_policy: text("/PowerRestorePolicy"),
            boot_override,
        }
    }

    /// Powers itself on when the site's power returns.
    fn self_powering(&self) -> bool {
        match self.restore_policy.as_deref() {
            Some("AlwaysOn") => true,
            Some("LastState") => self.power == "On",
            _ => false,
        }
    }
}

/// One host's BMC read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BmcReading {
    Read(BootFacts),
    /// Could not be read: whether the credentials were refused, and why.
    Failed {
        refused: bool,
        message: String,
    },
}

/// Every selected host with a `bmc` label, in inventory order.
pub fn targets(plan: &Plan, inventory: &Inventory) -> Vec<usize> {
    super::selected(plan)
        .into_iter()
        .filter(|&h| {
            inventory
                .hosts
                .get(h)
                .is_some_and(|x| x.label("bmc").is_some())
        })
        .collect()
}

/// Reads every target's system, at most `parallel` at once.
pub async fn read(
    power: Arc<PowerControl>,
    inventory: &Inventory,
    hosts: &[usize],
    parallel: usize,
) -> Vec<(usize, BmcReading)> {
    let mut out: Vec<(usize, BmcReading)> = futures::stream::iter(
        hosts
            .iter()
            .filter_map(|&h| Some((h, inventory.hosts.get(h)?))),
    )
    .map(|(h, host)| {
        let power = Arc::clone(&power);
        async move {
            let reading = match power.system(host).await {
                Ok(system) => BmcReading::Read(BootFacts::from_system(&system)),
                Err(e) => BmcReading::Failed {
                    refused: e.kind == BmcErrorKind::Auth,
                    message: e.to_string(),
                },
            };
            (h, reading)
        }
    })
    .buffer_unordered(parallel.max(1))
    .collect()
    .await;
    out.sort_by_key(|(h, _)| *h);
    out
}

/// The power_on step of each stage that has one.
fn power_on_of(plan: &Plan, stage: usize) -> Option<&crate::playbook::PowerOn> {
    plan.stages[stage].steps.iter().find_map(|s| match s {
        Step::PowerOn(p) => Some(p),
        _ => None,
    })
}

/// Findings of the boot path: self-powering hosts counted per PDU against
/// the plan's pacing, hosts that stay off where no stage powers them on,
/// boot overrides left pointing elsewhere, and BMCs that could not be read.
pub fn check(plan: &Plan, inventory: &Inventory, readings: &[(usize, BmcReading)]) -> Vec<Finding> {
    let mut stages_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in plan.stages.iter().enumerate() {
        for &h in &s.hosts {
            stages_of.entry(h).or_default().push(i);
        }
    }
    let powered_on = |h: usize| {
        stages_of
            .get(&h)
            .is_some_and(|ss| ss.iter().any(|&s| power_on_of(plan, s).is_some()))
    };
    let reaches_bmc = |h: usize| {
        stages_of.get(&h).is_some_and(|ss| {
            ss.iter()
                .any(|&s| power_on_of(plan, s).is_some() || plan.stages[s].remediate.is_some())
        })
    };
    let stage_names = |hosts: &[usize]| -> Vec<String> {
        let mut v: Vec<usize> = hosts
            .iter()
            .filter_map(|h| stages_of.get(h))
            .flatten()
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(|s| plan.stages[s].name.clone()).collect()
    };
    let name = |h: usize| inventory.hosts[h].name.as_str();

    let mut findings = Vec::new();
    let mut by_pdu: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut stay_off = Vec::new();
    let mut overrides: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut unread = Vec::new();
    for (h, r) in readings {
        match r {
            BmcReading::Read(f) => {
                if f.self_powering() {
                    let pdu = inventory.hosts[*h].label("pdu").unwrap_or("(no pdu label)");
                    by_pdu.entry(pdu.to_owned()).or_default().push(*h);
                }
                if f.restore_policy.as_deref() == Some("AlwaysOff") && !powered_on(*h) {
                    stay_off.push(*h);
                }
                if let Some(t) = &f.boot_override
                    && !t.eq_ignore_ascii_case("Hdd")
                {
                    overrides.entry(t.clone()).or_default().push(*h);
                }
            }
            BmcReading::Failed {
                refused: true,
                message,
            } => refused.push((*h, message)),
            BmcReading::Failed { message, .. } => unread.push((*h, message)),
        }
    }

    if !by_pdu.is_empty() {
        let hosts: Vec<usize> = by_pdu.values().flatten().copied().collect();
        let (worst_pdu, worst) = by_pdu
            .iter()
            .max_by_key(|(p, hs)| (hs.len(), std::cmp::Reverse(p.as_str())))
            .map(|(p, hs)| (p.clone(), hs.len()))
            .unwrap_or_default();
        let paced: Vec<String> = (0..plan.stages.len())
            .filter_map(|s| {
                let p = power_on_of(plan, s)?;
                hosts
                    .iter()
                    .any(|h| plan.stages[s].hosts.contains(h))
                    .then(|| {
                        format!(
                            "stage {} paces power-ons 1 per PDU every {}",
                            plan.stages[s].name,
                            crate::playbook::units::humane(p.pdu_interval)
                        )
                    })
            })
            .collect();
        let pacing = if paced.is_empty() {
            "no power_on step paces them".to_owned()
        } else {
            format!("{}, but these come up before it acts", paced.join("; "))
        };
        let mut details: Vec<(usize, String)> = by_pdu
            .iter()
            .map(|(pdu, hs)| {
                let names: Vec<&str> = hs.iter().map(|&h| name(h)).collect();
                (
                    hs.len(),
                    format!(
                        "PDU {pdu}: {} at once ({})",
                        plural(hs.len(), "host"),
                        crate::report::nodeset::fold_text(names)
                    ),
                )
            })
            .collect();
        details.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let shown = 10;
        let more = details.len().saturating_sub(shown);
        let mut details: Vec<String> = details.into_iter().take(shown).map(|(_, d)| d).collect();
        if more > 0 {
            details.push(format!("... and {more} more PDUs"));
        }
        findings.push(Finding {
            severity: Severity::Warning,
            kind: Kind::BootPath,
            message: format!(
                "{} power themselves on the moment the site's power returns (PowerRestorePolicy \
                 AlwaysOn, or LastState while on): up to {worst} at once on PDU {worst_pdu}; {pacing}",
                plural(hosts.len(), "host")
            ),
            stages: stage_names(&hosts),
            hosts,
            details,
            fix: "set PowerRestorePolicy to AlwaysOff on these hosts (through their BMCs) and let \
                  the plan's power_on pace them"
                .into(),
        });
    }
    if !stay_off.is_empty() {
        findings.push(Finding {
            severity: Severity::Error,
            kind: Kind::BootPath,
            message: format!(
                "{} stay off when the site's power returns (PowerRestorePolicy AlwaysOff), and no \
                 stage that selects them powers them on: after a power loss they never come back",
                plural(stay_off.len(), "host")
            ),
            stages: stage_names(&stay_off),
            hosts: stay_off,
            details: Vec::new(),
            fix: "add a power_on step to their stage, or set their PowerRestorePolicy to LastState"
                .into(),
        });
    }
    for (target, hosts) in overrides {
        findings.push(Finding {
            severity: Severity::Warning,
            kind: Kind::BootPath,
            message: format!(
                "{}: the next boot is pointed at {target} (a boot override left enabled): {}",
                plural(hosts.len(), "host"),
                if target.eq_ignore_ascii_case("Pxe") {
                    "they will network-boot, which can take hours per node or reinstall them"
                } else {
                    "they will not boot from disk"
                }
            ),
            stages: stage_names(&hosts),
            hosts,
            details: Vec::new(),
            fix: "clear the boot override (BootSourceOverrideEnabled: Disabled) through the BMCs"
                .into(),
        });
    }
    for (bad, refused_creds) in [(refused, true), (unread, false)] {
        if bad.is_empty() {
            continue;
        }
        let hosts: Vec<usize> = bad.iter().map(|(h, _)| *h).collect();
        let needed = hosts.iter().any(|&h| reaches_bmc(h));
        findings.push(Finding {
            severity: if needed {
                Severity::Error
            } else {
                Severity::Warning
            },
            kind: Kind::BootPath,
            message: format!(
                "{}' BMCs {}{}",
                plural(hosts.len(), "host"),
                if refused_creds {
                    "refuse the credentials"
                } else {
                    "could not be read"
                },
                if needed {
                    ": a power_on or remediate step would fail them"
                } else {
                    ""
                }
            ),
            stages: stage_names(&hosts),
            details: bad
                .iter()
                .map(|(h, m)| format!("{}: {m}", name(*h)))
                .collect(),
            hosts,
            fix: if refused_creds {
                "check --bmc-credentials (and the hosts' bmc_credentials labels)".into()
            } else {
                "check the BMC addresses, their network and their certificates".into()
            },
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn facts_of_a_system_as_redfish_and_ipmi_give_them() {
        let dell = json!({
            "PowerState": "On",
            "PowerRestorePolicy": "LastState",
            "Boot": { "BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe" },
        });
        let f = BootFacts::from_system(&dell);
        assert_eq!(f.restore_policy.as_deref(), Some("LastState"));
        assert_eq!(f.boot_override.as_deref(), Some("Pxe"));
        assert!(f.self_powering());
        let off = json!({ "PowerState": "Off", "PowerRestorePolicy": "LastState",
            "Boot": { "BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "Pxe" } });
        let f = BootFacts::from_system(&off);
        assert_eq!(f.boot_override, None, "a disabled override points nowhere");
        assert!(!f.self_powering(), "LastState while off stays off");
        // What rekindle's IPMI client makes of `chassis status`.
        let ipmi = json!({ "PowerState": "Off", "PowerRestorePolicy": "AlwaysOff" });
        assert_eq!(
            BootFacts::from_system(&ipmi),
            BootFacts {
                power: "Off".into(),
                restore_policy: Some("AlwaysOff".into()),
                boot_override: None
            }
        );
        // A BMC that does not say has no policy: no finding either way.
        let quiet = BootFacts::from_system(&json!({ "PowerState": "On" }));
        assert!(!quiet.self_powering());
    }
}
