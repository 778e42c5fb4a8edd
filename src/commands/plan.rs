//! `rekindle plan PLAYBOOK -i INV [--limit SEL] [--format text|json]`: the dry
//! run. Input problems go to stderr with exit 2; the plan goes to stdout.
//! With `--preflight` it also checks every selected host (see `preflight`).
//! The renderings are `report::plan`'s.

use crate::cli::{OutputFormat, PlanArgs};
use crate::diag::{self, Diagnostic, Sources};
use crate::exit::{Exit, usage};
use crate::inventory::Inventory;
use crate::plan::Plan;
use crate::playbook::Playbook;
use crate::report::plan::{render_json, render_text, with_checks};
use crate::select::Selector;
use crate::session::plan_check::Refused;
use crate::session::preflight;

pub fn execute(args: PlanArgs) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let loaded = match crate::session::load(
        &args.input.inventories,
        &args.input.playbook,
        args.input.limit.as_deref(),
        &mut sources,
    ) {
        Ok(l) => l,
        Err(crate::session::LoadError::Diagnostics(errors)) => {
            return Err(refuse(&sources, &errors));
        }
        Err(crate::session::LoadError::Limit(e)) => return Err(usage(e)),
    };
    let crate::session::Loaded {
        inventory,
        book: playbook,
        mut plan,
        warnings: mut notes,
        limit,
    } = loaded;
    match crate::session::plan_check::check(&plan, &inventory, args.bmc_credentials.as_deref()) {
        Ok(warnings) => notes.extend(warnings),
        Err(Refused::Diagnostics(problems)) => return Err(refuse(&sources, &problems)),
        Err(Refused::Credentials(e)) => return Err(usage(e)),
    }
    // `load` already holds the plan's warnings among its own.
    diag::sort(&mut notes);
    plan.warnings = notes;
    if args.preflight {
        return preflight(
            &args,
            &plan,
            &playbook,
            &inventory,
            limit.as_ref(),
            &sources,
        );
    }
    let out = match args.format {
        OutputFormat::Text => render_text(&plan, &playbook, &inventory, limit.as_ref(), &sources),
        OutputFormat::Json => render_json(&plan, &playbook, &inventory, limit.as_ref()),
    };
    print!("{out}");
    Ok(Exit::Success)
}

/// The plan, then every selected host's connection check: exit 0 when all
/// answered with a boot id, 1 otherwise.
fn preflight(
    args: &PlanArgs,
    plan: &Plan,
    playbook: &Playbook,
    inventory: &Inventory,
    limit: Option<&Selector>,
    sources: &Sources,
) -> anyhow::Result<Exit> {
    let ssh = super::args::ssh_options(&args.ssh, inventory);
    let bmc = crate::session::BmcSettings {
        credentials: args.bmc_credentials.clone(),
        ..super::args::bmc_tls(&args.bmc_tls)
    };
    let found = preflight::run(ssh, plan, inventory, bmc).map_err(usage)?;
    for w in &found.warnings {
        eprintln!("warning: {w}");
    }
    let out = match args.format {
        OutputFormat::Text => {
            let mut text = render_text(plan, playbook, inventory, limit, sources)
                + &preflight::render_text(inventory, plan, &found.checks);
            if let Some(power) = &found.power {
                text.push_str(&crate::session::power_check::render_text(inventory, power));
            }
            text
        }
        OutputFormat::Json => with_checks(
            &render_json(plan, playbook, inventory, limit),
            preflight::render_json(inventory, plan, &found.checks),
            found
                .power
                .as_ref()
                .map(|p| crate::session::power_check::render_json(inventory, p)),
        )?,
    };
    print!("{out}");
    Ok(if found.all_ok() {
        Exit::Success
    } else {
        Exit::Failures
    })
}

fn refuse(sources: &Sources, diags: &[Diagnostic]) -> anyhow::Error {
    eprint!("{}", diag::render_text(sources, diags));
    crate::exit::reported()
}
