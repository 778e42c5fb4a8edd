//! `rekindle ssh-config`: where and how rekindle reaches each host after
//! `~/.ssh/config` and the inventory, printed as `ssh -G` prints OpenSSH's
//! view. Owns that output; resolving belongs to `transport::ssh_config`.

use std::io::{self, Write};

use crate::cli::SshConfigArgs;
use crate::diag::Sources;
use crate::exit::{Exit, usage};
use crate::inventory::{Host, Inventory};
use crate::transport::ssh::SshConnector;

pub fn execute(args: SshConfigArgs) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let inventory = if args.inventories.is_empty() {
        Inventory::default()
    } else {
        super::args::inventory(&args.inventories, &mut sources)?
    };
    if args.inventories.is_empty() && args.hosts.is_empty() {
        return Err(usage("name hosts, or give an inventory with -i"));
    }
    let connector =
        SshConnector::new(super::args::ssh_options(&args.ssh, &inventory)).map_err(usage)?;
    let endpoints: Vec<(String, Result<_, String>)> = if args.inventories.is_empty() {
        args.hosts
            .iter()
            .map(|n| (n.clone(), connector.endpoint_for_name(n)))
            .collect()
    } else {
        hosts_of(&args, &inventory)?
            .iter()
            .map(|h| (h.name.clone(), connector.endpoint(h)))
            .collect()
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut failed = false;
    for (i, (name, ep)) in endpoints.into_iter().enumerate() {
        match ep {
            Ok(ep) => {
                if i > 0 {
                    writeln!(out)?;
                }
                for w in &ep.warnings {
                    eprintln!("warning: ssh config {w}");
                }
                for (key, value) in connector.effective_config(&ep) {
                    writeln!(out, "{key} {value}")?;
                }
            }
            Err(e) => {
                eprintln!("error: {name}: ssh config {e}");
                failed = true;
            }
        }
    }
    out.flush()?;
    Ok(if failed { Exit::Usage } else { Exit::Success })
}

/// The inventory hosts named on the command line (all when none is).
fn hosts_of(args: &SshConfigArgs, inventory: &Inventory) -> anyhow::Result<Vec<Host>> {
    if args.hosts.is_empty() {
        return Ok(inventory.hosts.clone());
    }
    let missing = |name: &String| {
        usage(format!(
            "no host `{name}` in {}",
            args.inventories.join(", ")
        ))
    };
    args.hosts
        .iter()
        .map(|name| {
            let found = inventory.hosts.iter().find(|h| &h.name == name);
            found.cloned().ok_or_else(|| missing(name))
        })
        .collect()
}
