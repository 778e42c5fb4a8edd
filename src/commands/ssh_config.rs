//! `rekindle ssh-config`: where and how rekindle reaches each host after
//! `~/.ssh/config` and the inventory, printed as `ssh -G` prints OpenSSH's
//! view. Owns that output; resolving belongs to `transport::ssh_config`.

use std::io::{self, Write};

use crate::cli::SshConfigArgs;
use crate::diag::{Sources, render_text};
use crate::exit::Exit;
use crate::inventory::{self, Host, Inventory};
use crate::transport::ssh::SshConnector;

pub fn execute(args: SshConfigArgs) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let inventory = if args.inventories.is_empty() {
        Inventory::default()
    } else {
        match inventory::load(&args.inventories, &mut sources) {
            Ok((inventory, warnings)) => {
                eprint!("{}", render_text(&sources, &warnings));
                inventory
            }
            Err(diags) => {
                eprint!("{}", render_text(&sources, &diags));
                return Ok(Exit::Usage);
            }
        }
    };
    if args.inventories.is_empty() && args.hosts.is_empty() {
        eprintln!("error: name hosts, or give an inventory with -i");
        return Ok(Exit::Usage);
    }
    let connector = match SshConnector::new(super::args::ssh_options(&args.ssh, &inventory)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let endpoints: Vec<(String, Result<_, String>)> = if args.inventories.is_empty() {
        args.hosts
            .iter()
            .map(|n| (n.clone(), connector.endpoint_for_name(n)))
            .collect()
    } else {
        let hosts = match hosts_of(&args, &inventory) {
            Some(h) => h,
            None => return Ok(Exit::Usage),
        };
        hosts
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
fn hosts_of(args: &SshConfigArgs, inventory: &Inventory) -> Option<Vec<Host>> {
    if args.hosts.is_empty() {
        return Some(inventory.hosts.clone());
    }
    let mut hosts = Vec::new();
    for name in &args.hosts {
        match inventory.hosts.iter().find(|h| &h.name == name) {
            Some(h) => hosts.push(h.clone()),
            None => {
                eprintln!("error: no host `{name}` in {}", args.inventories.join(", "));
                return None;
            }
        }
    }
    Some(hosts)
}
