//! The Ansible inventory model shared by the INI and YAML readers: groups,
//! children, group and host variables, implicit `all`/`ungrouped`, variable
//! precedence, and the mapping of an Ansible host onto a [`Host`].
//!
//! Mapping (documented for users in the report and `rekindle hosts --help`):
//! - `ansible_host`/`ansible_ssh_host` -> address (default: the name),
//!   `ansible_port`/`ansible_ssh_port` -> port (default 22),
//!   `ansible_user`/`ansible_ssh_user` -> user,
//!   `-J X`/`ProxyJump=X` in `ansible_ssh_common_args`/`ansible_ssh_extra_args` -> jump;
//! - every group the host is in, with ancestor groups and without `all`
//!   (Ansible's `group_names`), sorted -> `groups` (selector `group=NAME`);
//! - every other variable with a scalar value (after Ansible's precedence:
//!   `all`, then groups by depth, priority and name, then host vars) -> a label;
//!   `ansible_*` variables and lists/maps are not labels.
//!
//! It must not parse files; the readers feed it.

use std::collections::{BTreeMap, HashMap};

use super::pattern::tidy_ipv4;
use super::{Host, check_label_key};
use crate::diag::{Diagnostic, Span};

/// A variable value, reduced to what rekindle can use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Var {
    /// Strings, numbers and booleans, as text (`true`, `22`, `db`).
    Scalar(String),
    Null,
    /// Lists and mappings: kept by Ansible, not usable as a label.
    Complex,
}

#[derive(Debug)]
struct Group {
    name: String,
    vars: Vec<(String, Var, Span)>,
    parents: Vec<usize>,
}

#[derive(Debug)]
struct AHost {
    name: String,
    vars: Vec<(String, Var, Span)>,
    span: Span,
    groups: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct Model {
    groups: Vec<Group>,
    group_index: HashMap<String, usize>,
    hosts: Vec<AHost>,
    host_index: HashMap<String, usize>,
}

pub(crate) const ALL: usize = 0;
pub(crate) const UNGROUPED: usize = 1;

fn set_var(vars: &mut Vec<(String, Var, Span)>, key: &str, value: Var, span: Span) {
    match vars.iter_mut().find(|(k, _, _)| k == key) {
        Some(slot) => {
            slot.1 = value;
            slot.2 = span;
        }
        None => vars.push((key.to_owned(), value, span)),
    }
}

impl Model {
    pub(crate) fn new() -> Model {
        let mut m = Model {
            groups: Vec::new(),
            group_index: HashMap::new(),
            hosts: Vec::new(),
            host_index: HashMap::new(),
        };
        m.group("all");
        m.group("ungrouped");
        m.groups[UNGROUPED].parents.push(ALL);
        m
    }

    pub(crate) fn group_name(&self, group: usize) -> &str {
        &self.groups[group].name
    }

    pub(crate) fn has_group(&self, name: &str) -> bool {
        self.group_index.contains_key(name)
    }

    /// The group's index, creating it if needed.
    pub(crate) fn group(&mut self, name: &str) -> usize {
        if let Some(&i) = self.group_index.get(name) {
            return i;
        }
        self.groups.push(Group {
            name: name.to_owned(),
            vars: Vec::new(),
            parents: Vec::new(),
        });
        self.group_index
            .insert(name.to_owned(), self.groups.len() - 1);
        self.groups.len() - 1
    }

    fn is_ancestor(&self, maybe_ancestor: usize, of: usize) -> bool {
        let mut stack = vec![of];
        let mut seen = vec![false; self.groups.len()];
        while let Some(g) = stack.pop() {
            if g == maybe_ancestor {
                return true;
            }
            for &p in &self.groups[g].parents {
                if !std::mem::replace(&mut seen[p], true) {
                    stack.push(p);
                }
            }
        }
        false
    }

    /// Makes `child` a child group of `parent`; a loop is an error.
    pub(crate) fn add_child(&mut self, parent: usize, child: usize) -> Result<(), String> {
        if self.is_ancestor(child, parent) {
            return Err(format!(
                "group `{}` cannot be a child of `{}`: that makes a loop",
                self.groups[child].name, self.groups[parent].name
            ));
        }
        if !self.groups[child].parents.contains(&parent) {
            self.groups[child].parents.push(parent);
        }
        Ok(())
    }

    /// Adds `name` to `group` (first definition's place is kept).
    pub(crate) fn add_host(&mut self, name: &str, group: usize, span: &Span) -> usize {
        let h = match self.host_index.get(name) {
            Some(&h) => h,
            None => {
                self.hosts.push(AHost {
                    name: name.to_owned(),
                    vars: Vec::new(),
                    span: span.clone(),
                    groups: Vec::new(),
                });
                self.host_index
                    .insert(name.to_owned(), self.hosts.len() - 1);
                self.hosts.len() - 1
            }
        };
        if !self.hosts[h].groups.contains(&group) {
            self.hosts[h].groups.push(group);
        }
        h
    }

    pub(crate) fn set_host_var(&mut self, host: usize, key: &str, value: Var, span: Span) {
        set_var(&mut self.hosts[host].vars, key, value, span);
    }

    pub(crate) fn set_group_var(&mut self, group: usize, key: &str, value: Var, span: Span) {
        set_var(&mut self.groups[group].vars, key, value, span);
    }

    /// Ansible's reconcile step, variable precedence and the mapping onto hosts.
    pub(crate) fn resolve(mut self, diags: &mut Vec<Diagnostic>) -> Vec<Host> {
        for g in 2..self.groups.len() {
            if self.groups[g].parents.is_empty() {
                self.groups[g].parents.push(ALL);
            }
        }
        let depth = self.depths();
        let priority: Vec<i64> = self
            .groups
            .iter()
            .map(|g| {
                g.vars
                    .iter()
                    .find(|(k, _, _)| k == "ansible_group_priority")
                    .and_then(|(_, v, _)| match v {
                        Var::Scalar(s) => s.parse().ok(),
                        _ => None,
                    })
                    .unwrap_or(1)
            })
            .collect();
        let mut hosts = Vec::with_capacity(self.hosts.len());
        let mut member = vec![false; self.groups.len()];
        for h in &self.hosts {
            member.iter_mut().for_each(|m| *m = false);
            let mut direct: Vec<usize> = h.groups.clone();
            // Ansible puts a host in `ungrouped` only if no other group holds it.
            if direct.iter().any(|&g| g != ALL && g != UNGROUPED) {
                direct.retain(|&g| g != UNGROUPED);
            } else {
                direct = vec![UNGROUPED];
            }
            let mut stack = direct;
            while let Some(g) = stack.pop() {
                if !std::mem::replace(&mut member[g], true) {
                    stack.extend(self.groups[g].parents.iter().copied());
                }
            }
            let mut mine: Vec<usize> = (0..self.groups.len()).filter(|&g| member[g]).collect();
            mine.sort_by(|&a, &b| {
                (depth[a], priority[a], &self.groups[a].name).cmp(&(
                    depth[b],
                    priority[b],
                    &self.groups[b].name,
                ))
            });
            let mut vars: Vec<(&str, &Var, &Span)> = Vec::new();
            let layers = mine
                .iter()
                .map(|&g| &self.groups[g].vars)
                .chain(std::iter::once(&h.vars));
            for layer in layers {
                for (k, v, s) in layer {
                    match vars.iter_mut().find(|(key, _, _)| key == k) {
                        Some(slot) => *slot = (k, v, s),
                        None => vars.push((k, v, s)),
                    }
                }
            }
            let mut groups: Vec<String> = mine
                .iter()
                .filter(|&&g| g != ALL)
                .map(|&g| self.groups[g].name.clone())
                .collect();
            groups.sort();
            hosts.push(to_host(h, vars, groups, diags));
        }
        hosts
    }

    /// Longest path from `all`, as Ansible's `Group.depth`.
    fn depths(&self) -> Vec<usize> {
        fn depth(m: &Model, g: usize, memo: &mut Vec<Option<usize>>) -> usize {
            if let Some(d) = memo[g] {
                return d;
            }
            let parents = m.groups[g].parents.clone();
            let d = parents
                .into_iter()
                .map(|p| depth(m, p, memo) + 1)
                .max()
                .unwrap_or(0);
            memo[g] = Some(d);
            d
        }
        let mut memo = vec![None; self.groups.len()];
        (0..self.groups.len())
            .map(|g| depth(self, g, &mut memo))
            .collect()
    }
}

fn to_host(
    h: &AHost,
    vars: Vec<(&str, &Var, &Span)>,
    groups: Vec<String>,
    diags: &mut Vec<Diagnostic>,
) -> Host {
    let scalar = |names: &[&str]| {
        // The current name wins over its legacy `ansible_ssh_*` alias.
        names.iter().find_map(|n| {
            vars.iter().find_map(|(k, v, s)| match v {
                Var::Scalar(text) if k == n => Some((text.clone(), *s)),
                _ => None,
            })
        })
    };
    let mut address = scalar(&["ansible_host", "ansible_ssh_host"])
        .map(|(a, _)| a)
        .unwrap_or_else(|| h.name.clone());
    if let Ok(tidy) = tidy_ipv4(&address) {
        address = tidy.into_owned();
    }
    let port = match scalar(&["ansible_port", "ansible_ssh_port"]) {
        None => 22,
        Some((text, span)) => match text.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                diags.push(Diagnostic::error(
                    "wrong-type",
                    span.clone(),
                    format!("ansible_port `{text}` is not a port number (1-65535)"),
                ));
                22
            }
        },
    };
    let user = scalar(&["ansible_user", "ansible_ssh_user"]).map(|(u, _)| u);
    let jump = ["ansible_ssh_common_args", "ansible_ssh_extra_args"]
        .iter()
        .find_map(|n| scalar(&[n]).and_then(|(args, _)| proxy_jump(&args)));
    let mut labels = BTreeMap::new();
    for (k, v, span) in &vars {
        let Var::Scalar(value) = v else { continue };
        if k.starts_with("ansible_") {
            continue;
        }
        if let Err(e) = check_label_key(k) {
            diags.push(Diagnostic::warning(
                "unusable-variable",
                (*span).clone(),
                format!("variable `{k}` is not a label: {e}"),
            ));
            continue;
        }
        labels.insert((*k).to_owned(), value.clone());
    }
    Host {
        name: h.name.clone(),
        address,
        port,
        user,
        jump,
        labels,
        identity_file: None,
        escalation: None,
        groups,
        span: h.span.clone(),
    }
}

/// Splits Ansible's `host:port` (the colon must be outside `[...]` ranges and
/// the only one there, so bare IPv6 addresses keep their colons).
pub(crate) fn split_port(token: &str) -> Result<(&str, Option<u16>), String> {
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (i, c) in token.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    let [colon] = colons.as_slice() else {
        return Ok((token, None));
    };
    let (host, port) = (&token[..*colon], &token[colon + 1..]);
    if port.is_empty() {
        return Err(format!(
            "host `{token}` ends in `:`, which is reserved for a port number"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok((host, Some(p))),
        _ => Err(format!(
            "`{port}` in `{token}` is not a port number (1-65535)"
        )),
    }
}

/// The ProxyJump target in ssh arguments: `-J x`, `-Jx`, `-o ProxyJump=x`.
fn proxy_jump(args: &str) -> Option<String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let w = w.trim_matches(|c| c == '"' || c == '\'');
        if w == "-J" {
            return words.get(i + 1).map(|s| s.to_string());
        }
        if let Some(rest) = w.strip_prefix("-J") {
            return Some(rest.to_owned());
        }
        let option = w.strip_prefix("-o").unwrap_or(w);
        let lower = option.to_ascii_lowercase();
        if let Some(value) = lower
            .strip_prefix("proxyjump=")
            .map(|_| &option["proxyjump=".len()..])
        {
            return Some(value.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_jump_forms() {
        assert_eq!(proxy_jump("-J bastion").as_deref(), Some("bastion"));
        assert_eq!(proxy_jump("-Jops@b:22").as_deref(), Some("ops@b:22"));
        assert_eq!(
            proxy_jump("-o StrictHostKeyChecking=no -o ProxyJump=b1").as_deref(),
            Some("b1")
        );
        assert_eq!(proxy_jump("-oProxyJump=b2").as_deref(), Some("b2"));
        assert_eq!(proxy_jump("-C"), None);
    }

    #[test]
    fn ports_split_outside_ranges() {
        assert_eq!(
            split_port("web[01:03]:2222").unwrap(),
            ("web[01:03]", Some(2222))
        );
        assert_eq!(split_port("web[01:03]").unwrap(), ("web[01:03]", None));
        assert_eq!(split_port("fe80::1").unwrap(), ("fe80::1", None));
        assert!(split_port("web:").is_err());
        assert!(split_port("web:http").is_err());
    }

    #[test]
    fn loops_are_refused() {
        let mut m = Model::new();
        let (a, b) = (m.group("a"), m.group("b"));
        m.add_child(a, b).unwrap();
        assert!(m.add_child(b, a).unwrap_err().contains("loop"));
    }
}
