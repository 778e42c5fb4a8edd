//! The Ansible inventory model shared by every Ansible source (INI, YAML,
//! script JSON, directories, `group_vars/`, `host_vars/`): groups, children,
//! variables by layer, implicit `all`/`ungrouped`, and Ansible's variable
//! precedence. All `-i` sources of one load feed one [`Model`], as Ansible's
//! sources feed one `InventoryData`, so a group declared in one file can get
//! children or variables in another.
//!
//! Precedence (Ansible's `VariableManager.get_vars` with the default
//! `VARIABLE_PRECEDENCE`), lowest first: `all`'s inventory vars; the host's
//! other groups' inventory vars, sorted by depth, `ansible_group_priority` and
//! name; `group_vars/all` of each source in `-i` order; `group_vars/GROUP`,
//! source by source and in the same group order within a source; the host's
//! inventory vars; `host_vars/HOST` source by source.
//!
//! It must not parse files (the readers feed it) nor decide what a variable
//! means to rekindle (`connection.rs` does).

use std::collections::HashMap;

use super::Host;
use super::connection::{self, Refusal, Reports};
use super::template::{Compiled, HostData, is_template};
use crate::diag::{Diagnostic, Span};

pub(crate) use super::var::Var;

/// One variable setting with the place it came from.
pub(crate) type Setting = (String, Var, Span);

/// A host's variables after precedence: (name, value, where it was set).
type Merged<'a> = Vec<(&'a str, &'a Var, &'a Span)>;

#[derive(Debug)]
struct Group {
    name: String,
    /// Set by inventory sources (`[g:vars]`, `vars:`).
    vars: Vec<Setting>,
    /// Set by `group_vars/` files: (vars source index, settings).
    file_vars: Vec<(usize, Vec<Setting>)>,
    parents: Vec<usize>,
}

#[derive(Debug)]
struct AHost {
    name: String,
    vars: Vec<Setting>,
    file_vars: Vec<(usize, Vec<Setting>)>,
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

fn set_var(vars: &mut Vec<Setting>, key: &str, value: Var, span: Span) {
    match vars.iter_mut().find(|(k, _, _)| k == key) {
        Some(slot) => {
            slot.1 = value;
            slot.2 = span;
        }
        None => vars.push((key.to_owned(), value, span)),
    }
}

/// Group order for precedence: depth, then `ansible_group_priority`, then name.
struct Order<'a> {
    depth: &'a [usize],
    priority: &'a [i64],
}

/// Ansible's `combine_vars` with the default `hash_behaviour=replace`.
fn combine<'a>(into: &mut Vec<(&'a str, &'a Var, &'a Span)>, layer: &'a [Setting]) {
    for (k, v, s) in layer {
        match into.iter_mut().find(|(key, _, _)| key == k) {
            Some(slot) => *slot = (k, v, s),
            None => into.push((k, v, s)),
        }
    }
}

fn file_layer(
    file_vars: &[(usize, Vec<Setting>)],
    source: usize,
) -> impl Iterator<Item = &[Setting]> {
    file_vars
        .iter()
        .filter(move |(s, _)| *s == source)
        .map(|(_, v)| v.as_slice())
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

    pub(crate) fn find_group(&self, name: &str) -> Option<usize> {
        self.group_index.get(name).copied()
    }

    pub(crate) fn host_name(&self, host: usize) -> &str {
        &self.hosts[host].name
    }

    pub(crate) fn find_host(&self, name: &str) -> Option<usize> {
        self.host_index.get(name).copied()
    }

    /// The group's index, creating it if needed.
    pub(crate) fn group(&mut self, name: &str) -> usize {
        if let Some(&i) = self.group_index.get(name) {
            return i;
        }
        self.groups.push(Group {
            name: name.to_owned(),
            vars: Vec::new(),
            file_vars: Vec::new(),
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
                    file_vars: Vec::new(),
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

    /// Variables of one `group_vars/` file (in the order Ansible loads them).
    pub(crate) fn add_group_file_vars(&mut self, group: usize, source: usize, vars: Vec<Setting>) {
        self.groups[group].file_vars.push((source, vars));
    }

    /// Gives source `to` a copy of every vars file of source `from`.
    pub(crate) fn copy_file_vars(&mut self, from: usize, to: usize) {
        let copy = |file_vars: &mut Vec<(usize, Vec<Setting>)>| {
            let copies: Vec<_> = file_vars
                .iter()
                .filter(|(s, _)| *s == from)
                .map(|(_, v)| (to, v.clone()))
                .collect();
            file_vars.extend(copies);
        };
        self.groups.iter_mut().for_each(|g| copy(&mut g.file_vars));
        self.hosts.iter_mut().for_each(|h| copy(&mut h.file_vars));
    }

    /// Variables of one `host_vars/` file.
    pub(crate) fn add_host_file_vars(&mut self, host: usize, source: usize, vars: Vec<Setting>) {
        self.hosts[host].file_vars.push((source, vars));
    }

    /// Ansible's reconcile step, variable precedence and the mapping onto
    /// hosts; with the refusals of hosts rekindle cannot reach (by name).
    pub(crate) fn resolve(
        mut self,
        sources: usize,
        diags: &mut Vec<Diagnostic>,
    ) -> (Vec<Host>, Vec<(String, Refusal)>) {
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
        let order = Order {
            depth: &depth,
            priority: &priority,
        };
        let mut reports = Reports::default();
        let mut hosts = Vec::with_capacity(self.hosts.len());
        let mut refused = Vec::new();
        let mut member = vec![false; self.groups.len()];
        let mut vars: Vec<(&str, &Var, &Span)> = Vec::new();
        let templates = self.templates();
        if templates.is_empty() {
            // The common case: no template, so no host needs another's variables.
            for (i, h) in self.hosts.iter().enumerate() {
                let groups = self.merged(h, sources, &order, &mut member, &mut vars);
                let (host, refusal) =
                    connection::to_host(&h.name, i, &h.span, &vars, groups, None, &mut reports);
                if let Some(r) = refusal {
                    refused.push((host.name.clone(), r));
                }
                hosts.push(host);
            }
        } else {
            // Templates may read any host's variables (`hostvars`): merge all first.
            let merged: Vec<(Merged<'_>, Vec<String>)> = self
                .hosts
                .iter()
                .map(|h| {
                    let groups = self.merged(h, sources, &order, &mut member, &mut vars);
                    (vars.clone(), groups)
                })
                .collect();
            let data = self
                .hosts
                .iter()
                .zip(&merged)
                .map(|(h, (vars, groups))| HostData {
                    name: h.name.clone(),
                    groups: groups.clone(),
                    vars: vars
                        .iter()
                        .map(|(k, v, _)| ((*k).to_owned(), (*v).clone()))
                        .collect(),
                })
                .collect();
            let compiled = Compiled::new(templates, &self.group_members(), data);
            for (i, (h, (vars, groups))) in self.hosts.iter().zip(merged).enumerate() {
                let (host, refusal) = connection::to_host(
                    &h.name,
                    i,
                    &h.span,
                    &vars,
                    groups,
                    Some(&compiled),
                    &mut reports,
                );
                if let Some(r) = refusal {
                    refused.push((host.name.clone(), r));
                }
                hosts.push(host);
            }
        }
        reports.finish(diags);
        (hosts, refused)
    }

    /// One host's variables by Ansible's precedence (into `vars`), and its
    /// groups (sorted, without `all`).
    fn merged<'a>(
        &'a self,
        h: &'a AHost,
        sources: usize,
        order: &Order<'_>,
        member: &mut [bool],
        vars: &mut Vec<(&'a str, &'a Var, &'a Span)>,
    ) -> Vec<String> {
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
        let mut mine: Vec<usize> = (1..self.groups.len()).filter(|&g| member[g]).collect();
        mine.sort_by(|&a, &b| {
            (order.depth[a], order.priority[a], &self.groups[a].name).cmp(&(
                order.depth[b],
                order.priority[b],
                &self.groups[b].name,
            ))
        });
        vars.clear();
        combine(vars, &self.groups[ALL].vars);
        for &g in &mine {
            combine(vars, &self.groups[g].vars);
        }
        for source in 0..sources {
            for layer in file_layer(&self.groups[ALL].file_vars, source) {
                combine(vars, layer);
            }
        }
        for source in 0..sources {
            for &g in &mine {
                for layer in file_layer(&self.groups[g].file_vars, source) {
                    combine(vars, layer);
                }
            }
        }
        combine(vars, &h.vars);
        for source in 0..sources {
            for layer in file_layer(&h.file_vars, source) {
                combine(vars, layer);
            }
        }
        let mut groups: Vec<String> = mine.iter().map(|&g| self.groups[g].name.clone()).collect();
        groups.sort();
        groups
    }

    /// Every distinct template string of the model (none: no template work).
    fn templates(&self) -> Vec<&str> {
        let settings = self
            .groups
            .iter()
            .flat_map(|g| g.vars.iter().chain(g.file_vars.iter().flat_map(|(_, v)| v)))
            .chain(
                self.hosts
                    .iter()
                    .flat_map(|h| h.vars.iter().chain(h.file_vars.iter().flat_map(|(_, v)| v))),
            );
        settings
            .filter_map(|(_, v, _)| match v {
                Var::Scalar(s) if is_template(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Every group's hosts (with descendants' hosts), for templates' `groups`.
    fn group_members(&self) -> Vec<(&str, Vec<&str>)> {
        let mut members: Vec<Vec<&str>> = vec![Vec::new(); self.groups.len()];
        for h in &self.hosts {
            let mut seen = vec![false; self.groups.len()];
            let mut stack = h.groups.clone();
            stack.push(ALL);
            while let Some(g) = stack.pop() {
                if !std::mem::replace(&mut seen[g], true) {
                    members[g].push(&h.name);
                    stack.extend(self.groups[g].parents.iter().copied());
                }
            }
        }
        self.groups
            .iter()
            .zip(members)
            .map(|(g, m)| (g.name.as_str(), m))
            .collect()
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

/// Splits Ansible's `host:port` (the colon must be outside `[...]` ranges and
/// the only one there, so bare IPv6 addresses keep their colons).
/// `[2001:db8::11]:2222` (Ansible's `bracketed_hostport`) is an address with a port.
pub(crate) fn split_port(token: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(rest) = token.strip_prefix('[')
        && let Some((inside, port)) = rest.rsplit_once("]:")
        && inside.contains(':')
        && !inside.contains(['[', ']'])
        && !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
    {
        return match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok((inside, Some(p))),
            _ => Err(format!(
                "`{port}` in `{token}` is not a port number (1-65535)"
            )),
        };
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_split_outside_ranges() {
        assert_eq!(
            split_port("web[01:03]:2222").unwrap(),
            ("web[01:03]", Some(2222))
        );
        assert_eq!(split_port("web[01:03]").unwrap(), ("web[01:03]", None));
        assert_eq!(split_port("fe80::1").unwrap(), ("fe80::1", None));
        assert_eq!(
            split_port("[2001:db8::11]:2222").unwrap(),
            ("2001:db8::11", Some(2222))
        );
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
