//! `rekindle hosts`: the expanded inventory, optionally narrowed by a
//! selector, as an aligned table or JSON. The output is `report::hosts`';
//! reading and selecting hosts belong to `inventory` and `select`.

use std::io::{self, Write};

use crate::cli::{HostsArgs, OutputFormat};
use crate::diag::{Sources, render_text};
use crate::exit::{Exit, reported};
use crate::inventory::Host;
use crate::report::hosts::{vars_files_note, write_json, write_table};
use crate::select::Selector;
use anyhow::Context as _;

pub fn execute(args: HostsArgs) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let inventory = super::args::inventory(&args.inventories, &mut sources)?;
    let hosts: Vec<&Host> = match &args.select {
        None => inventory.hosts.iter().collect(),
        Some(text) => {
            let selector = Selector::parse(text)?;
            let hosts: Vec<&Host> = inventory
                .hosts
                .iter()
                .filter(|h| selector.matches(h))
                .collect();
            if hosts.is_empty() {
                // Never fall back to "everything": an empty selection is an error.
                eprintln!(
                    "error: selector `{selector}` matches none of the {} hosts in {}",
                    inventory.hosts.len(),
                    args.inventories.join(", ")
                );
                eprintln!("  = help: `rekindle hosts -i INV` lists every host with its labels");
                return Err(reported());
            }
            hosts
        }
    };
    let refused = inventory.refusals(hosts.iter().copied());
    if !refused.is_empty() {
        eprint!("{}", render_text(&sources, &refused));
        return Err(reported());
    }
    if args.format == OutputFormat::Text {
        eprint!("{}", vars_files_note(&inventory));
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = match args.format {
        OutputFormat::Text => write_table(&mut out, &hosts),
        OutputFormat::Json => write_json(&mut out, &hosts),
    }
    .and_then(|()| out.flush());
    match written {
        // `rekindle hosts | head` is normal use, not a failure.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Exit::Success),
        other => other.map(|()| Exit::Success).context("writing to stdout"),
    }
}
