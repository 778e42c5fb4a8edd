//! `rekindle audit PLAYBOOK -i INV`: arguments into audit settings, the
//! audit, its report. Exit 0 with no error-level finding, 1 with one, 2 on
//! input errors (nothing is read then).

use crate::audit;
use crate::cli::{AuditArgs, OutputFormat};
use crate::diag::{self, Sources};
use crate::exit::Exit;

pub fn execute(args: AuditArgs) -> anyhow::Result<Exit> {
    let settings = super::args::audit(&args)?;
    let mut sources = Sources::new();
    let loaded = match crate::session::load(
        &args.input.inventories,
        &args.input.playbook,
        args.input.limit.as_deref(),
        &mut sources,
    ) {
        Ok(l) => l,
        Err(crate::session::LoadError::Diagnostics(errors)) => {
            eprint!("{}", diag::render_text(&sources, &errors));
            return Err(crate::exit::reported());
        }
        Err(crate::session::LoadError::Limit(e)) => anyhow::bail!("{e}"),
    };
    let crate::session::Loaded {
        inventory, plan, ..
    } = loaded;
    if let Some(sel) = &settings.assume_lost
        && !inventory.hosts.iter().any(|h| sel.matches(h))
    {
        anyhow::bail!(
            "--assume-lost `{sel}` matches none of the {} hosts",
            inventory.hosts.len()
        );
    }
    let ssh = super::args::ssh_options(&args.ssh, &inventory);
    eprintln!(
        "audit: reading the sockets of {} hosts ({} samples, {} apart), read-only",
        audit::selected(&plan).len(),
        settings.samples,
        crate::playbook::units::humane(settings.interval)
    );
    let result = audit::run(ssh, &plan, &inventory, &settings)?;
    match args.format {
        OutputFormat::Text => print!(
            "{}",
            audit::render::text(&args.input.playbook, &inventory, &result, settings.samples)
        ),
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&audit::render::json(&inventory, &result))?
        ),
    }
    Ok(if result.has_errors() {
        Exit::Failures
    } else {
        Exit::Success
    })
}
