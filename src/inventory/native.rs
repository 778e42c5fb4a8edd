//! rekindle's own inventory format (docs/design.md, "Inputs"): `version`,
//! `defaults`, `datacenters.NAME.{jump, labels, hosts[...]}`.
//!
//! Owns turning that YAML tree into hosts: defaults, per-datacenter jump
//! hosts and labels, the `dc` label, patterns and `{N}` captures. Every
//! problem is collected in one pass. It must not merge files (mod.rs does).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use super::pattern::{HostPattern, Syntax, Template, tidy_ipv4};
use super::{FileInventory, Host, check_label_key, inner_span, resolve_path, take_budget};
use crate::diag::Diagnostic;
use crate::yaml::{MapReader, Node};

const ROOT_KEYS: &[&str] = &["version", "defaults", "datacenters"];
const DEFAULT_KEYS: &[&str] = &["user", "port", "identity_file", "known_hosts"];
const DC_KEYS: &[&str] = &["jump", "labels", "hosts"];
const HOST_KEYS: &[&str] = &["name", "labels", "address", "port", "user", "jump"];

struct Defaults {
    user: Option<String>,
    port: u16,
}

pub(crate) fn read(
    root: &Node,
    base: &Path,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) -> FileInventory {
    let mut out = FileInventory::default();
    let Some(mut r) = MapReader::new(root, "inventory", ROOT_KEYS, diags) else {
        return out;
    };
    match r.require("version", &root.span, diags) {
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => diags.push(Diagnostic::error(
            "unsupported-version",
            v.span.clone(),
            format!(
                "unsupported inventory version `{}` (this rekindle reads version 1)",
                v.as_scalar().unwrap_or("?")
            ),
        )),
        None => {}
    }
    let mut defaults = Defaults {
        user: None,
        port: 22,
    };
    if let Some(node) = r.get("defaults") {
        read_defaults(node, base, &mut defaults, &mut out, diags);
    }
    if let Some(dcs) = r.require("datacenters", &root.span, diags) {
        match dcs.as_map() {
            Some(entries) => {
                for (name, dc) in entries {
                    if let Some(name) = name.string(diags) {
                        read_dc(&name, dc, &defaults, budget, &mut out.hosts, diags);
                    }
                }
            }
            None => diags.push(dcs.expected("a mapping of datacenter names")),
        }
    }
    r.finish(diags);
    out
}

fn read_defaults(
    node: &Node,
    base: &Path,
    defaults: &mut Defaults,
    out: &mut FileInventory,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(mut r) = MapReader::new(node, "inventory defaults", DEFAULT_KEYS, diags) else {
        return;
    };
    if let Some(user) = r.get("user") {
        defaults.user = user.string(diags);
    }
    if let Some(port) = r.get("port")
        && let Some(p) = read_port(port, diags)
    {
        defaults.port = p;
    }
    if let Some(files) = r.get("identity_file")
        && let Some(files) = files.string_or_list(diags)
    {
        out.identity_files = files.iter().map(|f| resolve_path(base, f)).collect();
    }
    if let Some(kh) = r.get("known_hosts")
        && let Some(path) = kh.string(diags)
    {
        out.known_hosts = Some((resolve_path(base, &path), kh.span.clone()));
    }
    r.finish(diags);
}

fn read_port(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<u16> {
    match node.as_u64().and_then(|p| u16::try_from(p).ok()) {
        Some(p) if p > 0 => Some(p),
        _ => {
            diags.push(Diagnostic::error(
                "wrong-type",
                node.span.clone(),
                format!(
                    "expected a port number (1-65535), found {}",
                    node.as_scalar()
                        .map(|s| format!("`{s}`"))
                        .unwrap_or_else(|| node.kind_name().to_owned())
                ),
            ));
            None
        }
    }
}

/// Reads a `labels` mapping into (key, value node) pairs with checked keys.
fn read_labels<'a>(node: &'a Node, diags: &mut Vec<Diagnostic>) -> Vec<(String, &'a Node)> {
    let Some(entries) = node.as_map() else {
        diags.push(node.expected("a mapping of label: value"));
        return Vec::new();
    };
    let mut labels = Vec::new();
    for (k, v) in entries {
        let Some(key) = k.string(diags) else { continue };
        if let Err(e) = check_label_key(&key) {
            diags.push(Diagnostic::error("bad-label", k.span.clone(), e));
            continue;
        }
        if v.as_scalar().is_none() {
            diags.push(v.expected("a label value (a string or number)"));
            continue;
        }
        labels.push((key, v));
    }
    labels
}

fn read_dc(
    dc: &str,
    node: &Node,
    defaults: &Defaults,
    budget: &mut u64,
    hosts: &mut Vec<Host>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(mut r) = MapReader::new(node, "datacenter", DC_KEYS, diags) else {
        return;
    };
    let jump = r.get("jump").and_then(|j| j.string(diags));
    let dc_labels = r
        .get("labels")
        .map(|l| read_labels(l, diags))
        .unwrap_or_default();
    for (key, value) in &dc_labels {
        if key == "dc" && value.as_scalar() != Some(dc) {
            diags.push(Diagnostic::error(
                "bad-label",
                value.span.clone(),
                format!("label `dc` is set from the datacenter name (`{dc}`)"),
            ));
        }
    }
    if let Some(list) = r.require("hosts", &node.span, diags) {
        match list.as_seq() {
            Some(items) => {
                for item in items {
                    read_host(
                        dc,
                        item,
                        defaults,
                        jump.as_deref(),
                        &dc_labels,
                        budget,
                        hosts,
                        diags,
                    );
                }
            }
            None => diags.push(list.expected("a list of host entries")),
        }
    }
    r.finish(diags);
}

/// A label or address template with the node it came from, for errors.
struct Field<'a> {
    key: String,
    template: Template,
    node: &'a Node,
}

fn field<'a>(
    key: String,
    node: &'a Node,
    ranges: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<Field<'a>> {
    let text = node.as_scalar()?;
    match Template::parse(text, ranges) {
        Ok(template) => Some(Field {
            key,
            template,
            node,
        }),
        Err(e) => {
            diags.push(Diagnostic::error(
                "bad-template",
                inner_span(node, &e),
                e.message.clone(),
            ));
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_host(
    dc: &str,
    node: &Node,
    defaults: &Defaults,
    dc_jump: Option<&str>,
    dc_labels: &[(String, &Node)],
    budget: &mut u64,
    hosts: &mut Vec<Host>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(mut r) = MapReader::new(node, "host entry", HOST_KEYS, diags) else {
        return;
    };
    let before = diags.len();
    let name_node = r.require("name", &node.span, diags);
    let pattern = name_node.and_then(|n| {
        let text = n.string(diags)?;
        HostPattern::parse(&text, Syntax::Native)
            .map_err(|e| {
                diags.push(Diagnostic::error(
                    "bad-pattern",
                    inner_span(n, &e),
                    e.message.clone(),
                ))
            })
            .ok()
    });
    let ranges = pattern.as_ref().map_or(0, HostPattern::ranges);
    let host_labels = r
        .get("labels")
        .map(|l| read_labels(l, diags))
        .unwrap_or_default();
    let mut fields: Vec<Field<'_>> = Vec::new();
    for (key, value) in dc_labels.iter().chain(host_labels.iter()) {
        if key == "dc" {
            // Datacenter-level `dc` labels were checked in `read_dc`.
            let from_host = host_labels.iter().any(|(_, v)| std::ptr::eq(*v, *value));
            if from_host && value.as_scalar() != Some(dc) {
                diags.push(Diagnostic::error(
                    "bad-label",
                    value.span.clone(),
                    format!("label `dc` is set from the datacenter name (`{dc}`)"),
                ));
            }
            continue;
        }
        if let Some(f) = field(key.clone(), value, ranges, diags) {
            // Host labels come after datacenter labels and override them.
            fields.retain(|old| old.key != f.key);
            fields.push(f);
        }
    }
    let address = r.get("address").and_then(|a| match a.as_scalar() {
        Some(_) => field(String::new(), a, ranges, diags),
        None => {
            diags.push(a.expected("an address (IP or DNS name)"));
            None
        }
    });
    let port = match r.get("port") {
        Some(p) => read_port(p, diags),
        None => Some(defaults.port),
    };
    let user = match r.get("user") {
        Some(u) => u.string(diags),
        None => defaults.user.clone(),
    };
    let jump = match r.get("jump") {
        Some(j) => j.string(diags),
        None => dc_jump.map(str::to_owned),
    };
    r.finish(diags);
    let (Some(pattern), Some(name_node), Some(port)) = (pattern, name_node, port) else {
        return;
    };
    if diags.len() > before || !take_budget(budget, pattern.count(), &name_node.span, diags) {
        return;
    }
    hosts.reserve(pattern.count() as usize);
    // One report per field, not one per expanded host.
    let mut reported = vec![false; fields.len() + 1];
    pattern.for_each(|name, captures| {
        let mut labels = BTreeMap::new();
        for (i, f) in fields.iter().enumerate() {
            let value = f.template.render(captures);
            let value = match tidy_ipv4(&value) {
                Ok(Cow::Borrowed(_)) => value,
                Ok(Cow::Owned(tidy)) => tidy,
                Err(e) => {
                    // Only `bmc` must be an address; other labels may be anything.
                    if f.key == "bmc" && !std::mem::replace(&mut reported[i], true) {
                        diags.push(Diagnostic::error("bad-address", f.node.span.clone(), e));
                    }
                    value
                }
            };
            labels.insert(f.key.clone(), value);
        }
        labels.insert("dc".to_owned(), dc.to_owned());
        let address = match &address {
            Some(f) => {
                let text = f.template.render(captures);
                match tidy_ipv4(&text) {
                    Ok(v) => v.into_owned(),
                    Err(e) => {
                        if !std::mem::replace(&mut reported[fields.len()], true) {
                            diags.push(Diagnostic::error("bad-address", f.node.span.clone(), e));
                        }
                        text
                    }
                }
            }
            None => tidy_ipv4(name).map_or_else(|_| name.to_owned(), Cow::into_owned),
        };
        hosts.push(Host {
            name: name.to_owned(),
            address,
            port,
            user: user.clone(),
            jump: jump.clone(),
            labels,
            identity_file: None,
            escalation: None,
            bmc: None,
            groups: Vec::new(),
            span: name_node.span.clone(),
        });
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::diag::{Sources, render_text};
    use crate::yaml::{Limits, parse};

    fn load(text: &str) -> (Vec<Host>, String) {
        let mut sources = Sources::new();
        let file = sources.add("inv.yaml", Arc::from(text));
        let root = parse(file, text, Limits::default()).expect("valid YAML");
        let mut diags = Vec::new();
        let mut budget = super::super::MAX_HOSTS;
        let out = read(&root, Path::new(""), &mut budget, &mut diags);
        crate::diag::sort(&mut diags);
        (out.hosts, render_text(&sources, &diags))
    }

    #[test]
    fn design_example() {
        let (hosts, errors) = load(
            r#"version: 1
defaults: { user: root, port: 22 }
datacenters:
  pangyo:
    jump: bastion.pangyo.example.net
    hosts:
      - name: "pg-r[001-200]-db[1-2].example.net"
        labels: { role: db, rack: "pg-r{1}" }
        address: "10.1.{1}.{2}"
"#,
        );
        assert_eq!(errors, "");
        assert_eq!(hosts.len(), 400);
        let h = &hosts[3];
        assert_eq!(h.name, "pg-r002-db2.example.net");
        assert_eq!(h.address, "10.1.2.2");
        assert_eq!((h.port, h.user.as_deref()), (22, Some("root")));
        assert_eq!(h.jump.as_deref(), Some("bastion.pangyo.example.net"));
        let labels: Vec<(&str, &str)> = h
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("dc", "pangyo"), ("rack", "pg-r002"), ("role", "db")]
        );
        assert_eq!((h.span.line, h.span.col), (7, 15));
    }

    #[test]
    fn host_fields_override_datacenter_and_defaults() {
        let (hosts, errors) = load(
            "version: 1\ndefaults: {user: root}\ndatacenters:\n  a:\n    jump: j\n    labels: {tier: x, role: app}\n    hosts:\n      - {name: h1, port: 2222, user: ops, jump: k, labels: {role: db}}\n      - {name: h2}\n",
        );
        assert_eq!(errors, "");
        assert_eq!(hosts[0].port, 2222);
        assert_eq!(hosts[0].user.as_deref(), Some("ops"));
        assert_eq!(hosts[0].jump.as_deref(), Some("k"));
        assert_eq!(hosts[0].label("role"), Some("db"));
        assert_eq!(hosts[0].label("tier"), Some("x"));
        assert_eq!(hosts[1].label("role"), Some("app"));
        assert_eq!(hosts[1].address, "h2");
        assert_eq!(hosts[1].user.as_deref(), Some("root"));
    }

    #[test]
    fn every_problem_in_one_pass_with_places() {
        let (hosts, errors) = load(
            r#"version: 2
defaults: { usr: root, port: 70000 }
datacenters:
  pangyo:
    jmp: bastion
    hosts:
      - name: "web[10-1]"
      - name: db[1-2]
        labels: { rack: "r{3}", "a=b": x }
      - { name: "db[1-2]", address: "10.1.{1}.300" }
      - nam: x
"#,
        );
        // Entries without errors still expand; `load` refuses the file as a whole.
        assert_eq!(hosts.len(), 2);
        assert_eq!(
            errors,
            r#"inv.yaml:1:10: error: unsupported inventory version `2` (this rekindle reads version 1)
  |
1 | version: 2
  |          ^
inv.yaml:2:13: error: unknown key `usr` in inventory defaults
  |
2 | defaults: { usr: root, port: 70000 }
  |             ^^^
  = help: did you mean `user`?
inv.yaml:2:30: error: expected a port number (1-65535), found `70000`
  |
2 | defaults: { usr: root, port: 70000 }
  |                              ^^^^^
inv.yaml:5:5: error: unknown key `jmp` in datacenter
  |
5 |     jmp: bastion
  |     ^^^
  = help: did you mean `jump`?
inv.yaml:7:20: error: range `10-1` runs backwards
  |
7 |       - name: "web[10-1]"
  |                    ^^^^
inv.yaml:9:27: error: `{3}` refers to no range (the host pattern has 1 range: use {1})
  |
9 |         labels: { rack: "r{3}", "a=b": x }
  |                           ^^^
inv.yaml:9:33: error: label key `a=b` contains `=`, which selectors cannot express
  |
9 |         labels: { rack: "r{3}", "a=b": x }
  |                                 ^^^^^
inv.yaml:10:37: error: `10.1.1.300` is not a valid IPv4 address (octet `300` is over 255)
   |
10 |       - { name: "db[1-2]", address: "10.1.{1}.300" }
   |                                     ^^^^^^^^^^^^^^^
inv.yaml:11:9: error: host entry is missing required key `name`
   |
11 |       - nam: x
   |         ^
inv.yaml:11:9: error: unknown key `nam` in host entry
   |
11 |       - nam: x
   |         ^^^
  = help: did you mean `name`?
"#
        );
    }
}
