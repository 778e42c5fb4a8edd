//! Ansible YAML inventories, read as Ansible's `yaml` inventory plugin reads
//! them: top-level keys are groups (usually just `all`), each with optional
//! `hosts` (pattern -> vars), `vars` and `children` (name -> group).
//! Plain scalars are typed as PyYAML (YAML 1.1) types them: `yes` is true.
//!
//! Owns that layout and its diagnostics; unknown keys in a group are errors
//! with a suggestion (Ansible only warns and skips them, which hides typos).
//! Groups, precedence and the mapping onto hosts belong to `ansible.rs`.

use std::path::Path;

use super::ansible::{Model, Var, split_port};
use super::pattern::{HostPattern, Syntax};
use super::{FileInventory, inner_span, take_budget};
use crate::diag::Diagnostic;
use crate::yaml::{MapReader, Node, Value};

const GROUP_KEYS: &[&str] = &["hosts", "vars", "children"];

pub(crate) fn read(
    root: &Node,
    _base: &Path,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) -> FileInventory {
    let mut model = Model::new();
    match root.as_map() {
        Some(groups) => {
            for (name, group) in groups {
                if let Some(name) = name.string(diags) {
                    read_group(&mut model, &name, group, budget, diags);
                }
            }
        }
        None if root.is_null() => {}
        None => diags.push(root.expected("a mapping of groups (`all:` with `hosts`/`children`)")),
    }
    FileInventory {
        hosts: model.resolve(diags),
        ..FileInventory::default()
    }
}

fn read_group(
    model: &mut Model,
    name: &str,
    node: &Node,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) -> usize {
    let group = model.group(name);
    if node.is_null() {
        return group;
    }
    let what = "Ansible group";
    let Some(mut r) = MapReader::new(node, what, GROUP_KEYS, diags) else {
        return group;
    };
    if let Some(vars) = r.get("vars") {
        for (k, v, key) in var_map(vars, diags) {
            model.set_group_var(group, &k, v, key.span.clone());
        }
    }
    if let Some(children) = r.get("children") {
        for (child_name, child) in entries(children, diags) {
            let Some(child_name) = child_name.string(diags) else {
                continue;
            };
            let child_group = match child {
                Some(child) => read_group(model, &child_name, child, budget, diags),
                None => model.group(&child_name),
            };
            if let Err(e) = model.add_child(group, child_group) {
                diags.push(Diagnostic::error(
                    "group-loop",
                    child_name_span(children, &child_name),
                    e,
                ));
            }
        }
    }
    if let Some(hosts) = r.get("hosts") {
        for (pattern_node, vars) in entries(hosts, diags) {
            read_hosts(model, group, pattern_node, vars, budget, diags);
        }
    }
    r.finish(diags);
    group
}

fn child_name_span(children: &Node, name: &str) -> crate::diag::Span {
    children
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_scalar() == Some(name)))
        .map(|(k, _)| k.span.clone())
        .unwrap_or_else(|| children.span.clone())
}

/// A `hosts`/`children` section: a mapping, or (as Ansible allows) one name.
fn entries<'a>(node: &'a Node, diags: &mut Vec<Diagnostic>) -> Vec<(&'a Node, Option<&'a Node>)> {
    match &node.value {
        Value::Map(entries) => entries.iter().map(|(k, v)| (k, Some(v))).collect(),
        Value::Scalar(_) if node.is_null() => Vec::new(),
        Value::Scalar(_) => vec![(node, None)],
        Value::Seq(_) => {
            diags.push(node.expected("a mapping of names"));
            Vec::new()
        }
    }
}

fn read_hosts(
    model: &mut Model,
    group: usize,
    pattern_node: &Node,
    vars_node: Option<&Node>,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(text) = pattern_node.string(diags) else {
        return;
    };
    let span = pattern_node.span.clone();
    let (pattern_text, port) = match split_port(&text) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::error("bad-host", span, e));
            return;
        }
    };
    let pattern = match HostPattern::parse(pattern_text, Syntax::Ansible) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::error(
                "bad-pattern",
                inner_span(pattern_node, &e),
                e.message.clone(),
            ));
            return;
        }
    };
    let vars = vars_node.map(|v| var_map(v, diags)).unwrap_or_default();
    if !take_budget(budget, pattern.count(), &span, diags) {
        return;
    }
    pattern.for_each(|name, _| {
        let h = model.add_host(name, group, &span);
        if let Some(p) = port {
            model.set_host_var(h, "ansible_port", Var::Scalar(p.to_string()), span.clone());
        }
        for (k, v, key) in &vars {
            model.set_host_var(h, k, v.clone(), key.span.clone());
        }
    });
}

fn var_map<'a>(node: &'a Node, diags: &mut Vec<Diagnostic>) -> Vec<(String, Var, &'a Node)> {
    if node.is_null() {
        return Vec::new();
    }
    let Some(entries) = node.as_map() else {
        diags.push(node.expected("a mapping of variables"));
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|(k, v)| Some((k.string(diags)?, yaml_var(v), k)))
        .collect()
}

/// PyYAML's (YAML 1.1) resolution of a node, reduced to [`Var`].
fn yaml_var(node: &Node) -> Var {
    match &node.value {
        Value::Seq(_) | Value::Map(_) => Var::Complex,
        Value::Scalar(_) if node.is_null() => Var::Null,
        Value::Scalar(s) if !s.plain => Var::Scalar(s.text.clone()),
        Value::Scalar(s) => {
            let t = s.text.as_str();
            match t {
                "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
                    return Var::Scalar("true".into());
                }
                "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
                    return Var::Scalar("false".into());
                }
                _ => {}
            }
            let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
            let decimal = !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit() || c == '_')
                && (digits == "0" || !digits.starts_with('0'));
            if decimal && let Ok(n) = digits.replace('_', "").parse::<i128>() {
                let n = if t.starts_with('-') { -n } else { n };
                return Var::Scalar(n.to_string());
            }
            Var::Scalar(t.to_owned())
        }
    }
}
