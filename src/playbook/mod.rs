//! Playbooks: YAML read into typed [`Playbook`] models and validated.
//!
//! Owns the playbook format (stages, policies, steps, durations, rates,
//! percentages) and every diagnostic about it, including the checks that need
//! an inventory (empty selections, canary sizes, missing labels, overlaps).
//! It must not build schedules (that is `plan`) or touch hosts.

pub mod parse;
pub mod template;
pub mod units;
pub mod validate;

use std::time::Duration;

use crate::diag::Span;
use crate::select::Selector;
pub use template::Template;

#[derive(Debug, Clone, PartialEq)]
pub struct Playbook {
    pub name: String,
    /// The file it was read from, as given on the command line.
    pub file: String,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub span: Span,
    /// Names of stages that must finish (inside their budgets) first.
    pub after: Vec<String>,
    /// Readiness gates (`after: { storage: 95% }`): for some of `after`, the
    /// percentage of that stage's hosts done (below 100) that is enough to
    /// start, while that stage is inside its budget. The others wait for the
    /// whole stage.
    pub gates: Vec<(String, f64)>,
    pub select: Selector,
    /// Hosts in flight at once; default 1. With growing waves, the size that
    /// holds to the end.
    pub parallel: Amount,
    /// Growing waves (`parallel: [1, 1%, 5%, 10%]`): the sizes of the waves
    /// before `parallel` holds, in order; empty for a fixed window. Each
    /// wave must finish without a failure for the window to grow.
    pub ramp: Vec<Amount>,
    /// Host starts per second for this stage (token bucket).
    pub rate: Option<Rate>,
    /// When set, `rate` applies per value of this label instead of stage-wide.
    pub rate_per: Option<String>,
    /// At most this many hosts in flight per value of the label, across stages.
    pub max_unavailable: Vec<(String, Amount)>,
    /// Failures tolerated; one more aborts the stage. Default 0.
    pub max_failures: Amount,
    /// Hosts that go first, alone; all must pass.
    pub canary: usize,
    pub on_unreachable: OnUnreachable,
    /// `retry_failed_hosts: true`: run hosts that failed (or were set aside
    /// as unreachable) in another stage of the run. Default false: such a
    /// host is skipped, "failed in stage `db`".
    pub retry_failed_hosts: bool,
    /// `remediate`: what is done about a host that does not come back.
    pub remediate: Option<Remediate>,
    /// `become`: how commands that need privilege are run (the host's own
    /// escalation, from its inventory, takes precedence).
    pub escalation: Option<crate::inventory::Become>,
    /// The operator's own estimate of one host's duration, for `plan`.
    pub estimate: Option<Duration>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub steps: Vec<Step>,
}

/// A count or a percentage of a stage's hosts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Count(usize),
    Percent(f64),
}

/// `count` per `per`, e.g. `50/s`, `3000/m`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnreachable {
    /// Count an unreachable host as a failure against the budget.
    #[default]
    Fail,
    /// Set the host aside and report it; it does not spend the budget.
    Skip,
}

/// `remediate: { power_cycle: N }`: a host that has not answered SSH
/// within a `wait_ssh` or `reboot` wait (or that its BMC never reports On
/// in a `power_on`) is power-cycled through its BMC at most `power_cycle`
/// times, waited for again each time, then quarantined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Remediate {
    /// BMC power cycles at most, per host and step, in the whole run
    /// (a resume continues the count).
    pub power_cycle: u32,
    /// The cycles' resets are paced like power-ons (a cycle ends in one's
    /// inrush): this spacing per PDU and this fleet-wide rate. The stage's
    /// `power_on` step's when it has one ([`Remediate::paced_by`]), else
    /// that step's defaults.
    pub pdu_interval: Duration,
    pub rate: Rate,
}

impl Remediate {
    /// `power_cycle` cycles, paced by `power_on`'s defaults.
    pub fn new(power_cycle: u32) -> Remediate {
        let pacing = PowerOn::default();
        Remediate {
            power_cycle,
            pdu_interval: pacing.pdu_interval,
            rate: pacing.rate,
        }
    }

    /// Paced like the first `power_on` among `steps`, if any.
    pub fn paced_by(self, steps: &[Step]) -> Remediate {
        match steps.iter().find_map(|s| match s {
            Step::PowerOn(p) => Some(p),
            _ => None,
        }) {
            Some(p) => Remediate {
                pdu_interval: p.pdu_interval,
                rate: p.rate,
                ..self
            },
            None => self,
        }
    }
}

/// The most power cycles `remediate` may ask for: a host that did not come
/// back after that many needs a person, not another cycle.
pub const MAX_POWER_CYCLES: u32 = 5;

/// What a step does, without its settings: the one place a step kind's
/// name is written (the playbook key, events, journal, `plan` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    WaitSsh,
    Run,
    Reboot,
    RestartService,
    PowerOn,
    Health,
    Local,
}

impl StepKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [StepKind; 7] = [
        StepKind::WaitSsh,
        StepKind::Run,
        StepKind::Reboot,
        StepKind::RestartService,
        StepKind::PowerOn,
        StepKind::Health,
        StepKind::Local,
    ];

    pub fn of(step: &Step) -> StepKind {
        match step {
            Step::WaitSsh { .. } => StepKind::WaitSsh,
            Step::Run { .. } => StepKind::Run,
            Step::Reboot { .. } => StepKind::Reboot,
            Step::RestartService { .. } => StepKind::RestartService,
            Step::PowerOn(_) => StepKind::PowerOn,
            Step::Health(_) => StepKind::Health,
            Step::Local { .. } => StepKind::Local,
        }
    }

    /// The name playbooks write it with (`wait_ssh`, `power_on`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            StepKind::WaitSsh => "wait_ssh",
            StepKind::Run => "run",
            StepKind::Reboot => "reboot",
            StepKind::RestartService => "restart_service",
            StepKind::PowerOn => "power_on",
            StepKind::Health => "health",
            StepKind::Local => "local",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    WaitSsh {
        timeout: Duration,
    },
    Run {
        command: Template,
        timeout: Duration,
    },
    Reboot {
        timeout: Duration,
        command: Template,
    },
    /// `unit` expands unquoted; the engine quotes the whole unit name.
    RestartService {
        unit: Template,
        timeout: Duration,
    },
    PowerOn(PowerOn),
    Health(Health),
    Local {
        command: Template,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PowerOn {
    /// Until the host's power state is On (unreachable BMCs are re-probed until then).
    pub timeout: Duration,
    /// Minimum spacing between power-ons on one PDU (label `pdu`); at least 100 ms.
    pub pdu_interval: Duration,
    /// Fleet-wide power-on rate.
    pub rate: Rate,
    /// How often an unreachable BMC is probed again.
    pub reprobe: Duration,
    /// Extra random delay added before each power-on, up to this much.
    pub jitter: Duration,
    /// `On` (default), or an explicit `ForceRestart`/`PowerCycle` the playbook asked for.
    pub reset_type: String,
}

impl Default for PowerOn {
    /// `power_on` with nothing set.
    fn default() -> Self {
        PowerOn {
            timeout: parse::DEFAULT_POWER_ON_TIMEOUT,
            pdu_interval: parse::DEFAULT_PDU_INTERVAL,
            rate: parse::DEFAULT_POWER_ON_RATE,
            reprobe: parse::DEFAULT_REPROBE,
            jitter: Duration::ZERO,
            reset_type: "On".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub checks: Vec<Check>,
    pub timeout: Duration,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Ssh(Template),
    Tcp(u16),
    Http {
        url: Template,
        status: u16,
        body_contains: Option<String>,
    },
}

/// Reads and validates one playbook file. With an inventory, also runs the
/// checks that need hosts. `Ok` may carry warnings; `Err` carries every problem
/// (errors and warnings, sorted). An unreadable file gives one diagnostic with
/// code `unreadable`.
pub fn load(
    path: &str,
    inventory: Option<&crate::inventory::Inventory>,
    sources: &mut crate::diag::Sources,
) -> Result<(Playbook, Vec<crate::diag::Diagnostic>), Vec<crate::diag::Diagnostic>> {
    let root = crate::yaml::load_file(sources, path, crate::yaml::Limits::default())
        .map_err(|d| vec![d])?;
    check(&root, path, inventory)
}

/// Like [`load`], for a playbook held in memory under the name `file`.
pub fn load_str(
    file: &str,
    text: &str,
    inventory: Option<&crate::inventory::Inventory>,
    sources: &mut crate::diag::Sources,
) -> Result<(Playbook, Vec<crate::diag::Diagnostic>), Vec<crate::diag::Diagnostic>> {
    let name = sources.add(file, std::sync::Arc::from(text));
    let root =
        crate::yaml::parse(name, text, crate::yaml::Limits::default()).map_err(|d| vec![d])?;
    check(&root, file, inventory)
}

fn check(
    root: &crate::yaml::Node,
    path: &str,
    inventory: Option<&crate::inventory::Inventory>,
) -> Result<(Playbook, Vec<crate::diag::Diagnostic>), Vec<crate::diag::Diagnostic>> {
    let file: std::sync::Arc<str> = std::sync::Arc::from(path);
    let mut diags = Vec::new();
    let Some(parsed) = parse::parse(root, &file, &mut diags) else {
        return Err(diags);
    };
    diags.extend(validate::check_structure(&parsed.playbook, &parsed.spans));
    // Host checks need sound stages; with structural errors they would only add noise.
    if let Some(inv) = inventory
        && !crate::diag::has_errors(&diags)
    {
        let selections: Vec<Vec<usize>> = parsed
            .playbook
            .stages
            .iter()
            .map(|s| validate::select_hosts(&s.select, inv, None))
            .collect();
        diags.extend(validate::check_hosts(
            &parsed.playbook,
            Some(&parsed.spans),
            inv,
            None,
            &selections,
        ));
    }
    crate::diag::sort(&mut diags);
    if crate::diag::has_errors(&diags) {
        Err(diags)
    } else {
        Ok((parsed.playbook, diags))
    }
}
