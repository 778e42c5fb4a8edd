//! `rekindle audit PLAYBOOK -i INV`: arguments into audit settings, the
//! audit, its report. Exit 0 with no error-level finding, 1 with one, 2 on
//! input errors (nothing is read then).

use crate::audit::{self, Settings, own};
use crate::cli::{AuditArgs, OutputFormat};
use crate::diag::{self, Sources};
use crate::exit::Exit;
use crate::select::Selector;

pub fn execute(args: AuditArgs) -> anyhow::Result<Exit> {
    let interval = crate::playbook::units::parse_duration(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval {}: {e}", args.interval))?;
    if args.samples == 0 {
        anyhow::bail!("--samples: at least one read of each host is needed");
    }
    let assume_lost = args
        .assume_lost
        .as_deref()
        .map(Selector::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--assume-lost: {e}"))?;
    let etcd = args
        .etcd
        .as_deref()
        .map(etcd_endpoints)
        .transpose()?
        .unwrap_or_default();
    let notify = crate::live::notify::targets(&args.notify)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .iter()
        .map(|t| t.shown())
        .collect();
    let mut sources = Sources::new();
    let loaded = match crate::session::load(
        &args.inventories,
        &args.playbook,
        args.limit.as_deref(),
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
    if let Some(sel) = &assume_lost
        && !inventory.hosts.iter().any(|h| sel.matches(h))
    {
        anyhow::bail!(
            "--assume-lost `{sel}` matches none of the {} hosts",
            inventory.hosts.len()
        );
    }
    let settings = Settings {
        samples: args.samples,
        interval,
        parallel: args.parallel.max(1),
        assume_lost,
        own: own::Sources {
            etcd,
            notify,
            resolv_conf: Some(audit::default_resolv_conf()),
            bastion: Some(own::bastion()),
            jumps: None,
        },
        bmc: crate::session::BmcSettings {
            credentials: args.bmc_credentials.clone(),
            ..super::args::bmc_tls(&args.bmc_tls)
        },
    };
    let ssh = super::args::ssh_options(&args.ssh, &inventory);
    eprintln!(
        "audit: reading the sockets of {} hosts ({} samples, {} apart), read-only",
        audit::selected(&plan).len(),
        settings.samples,
        crate::playbook::units::humane(interval)
    );
    let result = audit::run(ssh, &plan, &inventory, &settings)?;
    match args.format {
        OutputFormat::Text => print!(
            "{}",
            audit::render::text(&args.playbook, &inventory, &result, settings.samples)
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

/// `--etcd` endpoints as the report may print them: credentials in a URL
/// are refused (without repeating them), as `run --etcd` refuses them.
fn etcd_endpoints(list: &str) -> anyhow::Result<Vec<String>> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let with_scheme = if e.contains("://") {
                e.to_owned()
            } else {
                format!("http://{e}")
            };
            let url = reqwest::Url::parse(&with_scheme)
                .map_err(|err| anyhow::anyhow!("--etcd: not an endpoint URL ({err})"))?;
            if !url.username().is_empty() || url.password().is_some() {
                anyhow::bail!("--etcd: credentials in an endpoint URL are refused; use --etcd-cert/--etcd-key or a file");
            }
            let host = url
                .host_str()
                .ok_or_else(|| anyhow::anyhow!("--etcd: an endpoint without a host"))?;
            Ok(match url.port() {
                Some(p) => format!("{}://{host}:{p}", url.scheme()),
                None => format!("{}://{host}", url.scheme()),
            })
        })
        .collect()
}
