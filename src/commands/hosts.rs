//! `rekindle hosts`: the expanded inventory, optionally narrowed by a
//! selector, as an aligned table or JSON. Owns that output; reading and
//! selecting hosts belong to `inventory` and `select`.

use std::io::{self, Write};

use anyhow::Context as _;
use serde::Serialize;

use crate::cli::{HostsArgs, OutputFormat};
use crate::diag::{Sources, render_text};
use crate::exit::Exit;
use crate::inventory::{self, Host};
use crate::select::Selector;

pub fn execute(args: HostsArgs) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let inventory = match inventory::load(&args.inventories, &mut sources) {
        Ok((inventory, warnings)) => {
            eprint!("{}", render_text(&sources, &warnings));
            inventory
        }
        Err(diags) => {
            eprint!("{}", render_text(&sources, &diags));
            return Ok(Exit::Usage);
        }
    };
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
                return Ok(Exit::Usage);
            }
            hosts
        }
    };
    let refused = inventory.refusals(hosts.iter().copied());
    if !refused.is_empty() {
        eprint!("{}", render_text(&sources, &refused));
        return Ok(Exit::Usage);
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

/// Which `group_vars/`/`host_vars/` files gave variables (Ansible reads the
/// playbook directory's too, so a file outside the inventory can change a
/// host's connection): listed on stderr, the table stays the hosts'.
fn vars_files_note(inventory: &inventory::Inventory) -> String {
    const SHOWN: usize = 20;
    let files = &inventory.vars_files;
    if files.is_empty() {
        return String::new();
    }
    let mut text = format!("variables read from {} vars file(s):\n", files.len());
    for f in files.iter().take(SHOWN) {
        let place = if f.playbook_dir {
            " (playbook directory)"
        } else {
            ""
        };
        text.push_str(&format!("  {}{place}\n", f.path));
    }
    if files.len() > SHOWN {
        let from_playbook = files.iter().filter(|f| f.playbook_dir).count();
        text.push_str(&format!(
            "  ... and {} more ({from_playbook} of all {} from the playbook directory)\n",
            files.len() - SHOWN,
            files.len()
        ));
    }
    text
}

fn labels_text(host: &Host) -> String {
    let mut text = String::new();
    for (i, (k, v)) in host.labels.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(k);
        text.push('=');
        text.push_str(v);
    }
    text
}

/// Columns are as wide as their widest cell; labels come last, unpadded.
/// JUMP is `-` for a host reached directly. A GROUPS column appears only when
/// some host has groups (Ansible inventories).
pub(crate) fn write_table(out: &mut impl Write, hosts: &[&Host]) -> io::Result<()> {
    let user = |h: &Host| h.user.clone().unwrap_or_else(|| "-".into());
    let jump = |h: &Host| h.jump.clone().unwrap_or_else(|| "-".into());
    let width = |header: &str, cell: &dyn Fn(&Host) -> usize| {
        hosts
            .iter()
            .map(|h| cell(h))
            .max()
            .unwrap_or(0)
            .max(header.len())
    };
    let name_w = width("NAME", &|h| h.name.chars().count());
    let addr_w = width("ADDRESS", &|h| h.address.chars().count());
    let port_w = width("PORT", &|h| h.port.to_string().len());
    let user_w = width("USER", &|h| user(h).chars().count());
    let jump_w = width("JUMP", &|h| jump(h).chars().count());
    let show_groups = hosts.iter().any(|h| !h.groups.is_empty());
    let groups_w = width("GROUPS", &|h| h.groups.join(",").chars().count());
    let mut line = format!(
        "{:name_w$}  {:addr_w$}  {:>port_w$}  {:user_w$}  {:jump_w$}  ",
        "NAME", "ADDRESS", "PORT", "USER", "JUMP"
    );
    if show_groups {
        line.push_str(&format!("{:groups_w$}  ", "GROUPS"));
    }
    writeln!(out, "{line}LABELS")?;
    for h in hosts {
        line.clear();
        line.push_str(&format!(
            "{:name_w$}  {:addr_w$}  {:>port_w$}  {:user_w$}  {:jump_w$}  ",
            h.name,
            h.address,
            h.port,
            user(h),
            jump(h),
        ));
        if show_groups {
            line.push_str(&format!("{:groups_w$}  ", h.groups.join(",")));
        }
        line.push_str(&labels_text(h));
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonHost<'a> {
    name: &'a str,
    address: &'a str,
    port: u16,
    user: Option<&'a str>,
    jump: Option<&'a str>,
    labels: &'a std::collections::BTreeMap<String, String>,
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_file: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "become", skip_serializing_if = "Option::is_none")]
    escalation: Option<JsonBecome<'a>>,
}

#[derive(Serialize)]
struct JsonBecome<'a> {
    method: &'static str,
    user: &'a str,
}

/// A JSON array of `{name, address, port, user, jump, labels, groups}`, plus
/// `identity_file` and `become: {method, user}` for hosts that have them.
pub(crate) fn write_json(out: &mut impl Write, hosts: &[&Host]) -> io::Result<()> {
    let items: Vec<JsonHost<'_>> = hosts
        .iter()
        .map(|h| JsonHost {
            name: &h.name,
            address: &h.address,
            port: h.port,
            user: h.user.as_deref(),
            jump: h.jump.as_deref(),
            labels: &h.labels,
            groups: &h.groups,
            identity_file: h.identity_file.as_deref().map(|p| p.to_string_lossy()),
            escalation: h.escalation.as_ref().map(|e| JsonBecome {
                method: e.method.name(),
                user: &e.user,
            }),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &items)?;
    writeln!(out)
}
