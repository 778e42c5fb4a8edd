//! The expanded inventory for people and machines (`rekindle hosts`): an
//! aligned table or JSON, and the note naming the vars files read.
//!
//! Owns that output; reading and selecting hosts belong to `inventory` and
//! `select`.

use std::io::{self, Write};

use serde::Serialize;

use crate::inventory::{self, Host};

/// Which `group_vars/`/`host_vars/` files gave variables (Ansible reads the
/// playbook directory's too, so a file outside the inventory can change a
/// host's connection): listed on stderr, the table stays the hosts'.
pub fn vars_files_note(inventory: &inventory::Inventory) -> String {
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
pub fn write_table(out: &mut impl Write, hosts: &[&Host]) -> io::Result<()> {
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
pub fn write_json(out: &mut impl Write, hosts: &[&Host]) -> io::Result<()> {
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
