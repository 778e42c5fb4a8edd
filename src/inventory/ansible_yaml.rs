//! Ansible YAML inventories, read as Ansible's `yaml` inventory plugin reads
//! them: top-level keys are groups (usually just `all`), each with optional
//! `hosts` (pattern -> vars), `vars` and `children` (name -> group).
//! Plain scalars are typed as PyYAML (YAML 1.1) types them: `yes` is true,
//! `010` is 8, `1:30` is 90. Also the JSON inventory scripts print (and
//! `ansible-inventory --list` writes), read as Ansible's `script` plugin does.
//! Top-level keys that are no group (`x-defaults: &d` anchors) are skipped
//! with a warning, as Ansible skips them.
//!
//! Owns that layout and its diagnostics; unknown keys in a group are errors
//! with a suggestion (Ansible only warns and skips them, which hides typos).
//! Groups, precedence and the mapping onto hosts belong to `ansible.rs`.

use super::ansible::{Model, Var, split_port};
use super::pattern::{HostPattern, Syntax};
use super::{inner_span, take_budget};
use crate::diag::Diagnostic;
use crate::yaml::{MapReader, Node, Value};

const GROUP_KEYS: &[&str] = &["hosts", "vars", "children"];

/// True for the JSON an inventory script prints (and `ansible-inventory
/// --list` writes): `_meta`, or groups whose `hosts`/`children` are lists.
pub(crate) fn is_script_json(root: &Node) -> bool {
    let Some(groups) = root.as_map() else {
        return false;
    };
    groups.iter().any(|(k, v)| {
        k.as_scalar() == Some("_meta")
            || v.as_seq().is_some()
            || v.as_map().is_some_and(|m| {
                m.iter().any(|(k, v)| {
                    matches!(k.as_scalar(), Some("hosts" | "children")) && v.as_seq().is_some()
                })
            })
    })
}

/// Reads one Ansible YAML document into `model`.
pub(crate) fn read(model: &mut Model, root: &Node, budget: &mut u64, diags: &mut Vec<Diagnostic>) {
    match root.as_map() {
        Some(groups) => {
            for (name, group) in groups {
                let Some(name) = name.string(diags) else {
                    continue;
                };
                // Ansible skips top-level keys that are no group definition
                // (`x-defaults: &d` anchors); so do we, but say so.
                let is_group = group.is_null()
                    || group.as_map().is_some_and(|m| {
                        m.is_empty()
                            || m.iter().any(|(k, _)| {
                                matches!(k.as_scalar(), Some("hosts" | "vars" | "children"))
                            })
                    });
                if !is_group {
                    diags.push(Diagnostic::warning(
                        "not-a-group",
                        name_span(root, &name),
                        format!(
                            "top-level key `{name}` is not a group (no `hosts`, `vars` or `children`): skipped, as Ansible skips it"
                        ),
                    ));
                    continue;
                }
                read_group(model, &name, group, budget, diags);
            }
        }
        None if root.is_null() => {}
        None => diags.push(root.expected("a mapping of groups (`all:` with `hosts`/`children`)")),
    }
}

fn name_span(map: &Node, name: &str) -> crate::diag::Span {
    map.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_scalar() == Some(name)))
        .map(|(k, _)| k.span.clone())
        .unwrap_or_else(|| map.span.clone())
}

/// Reads script JSON (`{"group": {"hosts": [...], "vars": {...},
/// "children": [...]}, "_meta": {"hostvars": {...}}}`, a group may also be a
/// plain list of hosts) into `model`, as Ansible's `script` plugin does.
/// Without `_meta`, host variables would need `--host` calls: `hostvars`
/// returns the hosts that still need them.
pub(crate) fn read_script(
    model: &mut Model,
    root: &Node,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<usize>> {
    let Some(groups) = root.as_map() else {
        diags.push(root.expected("a JSON object of groups"));
        return Some(Vec::new());
    };
    let mut hostvars = None;
    let mut hosts = Vec::new();
    for (name, data) in groups {
        let Some(name) = name.string(diags) else {
            continue;
        };
        if name == "_meta" {
            hostvars = data
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_scalar() == Some("hostvars")))
                .map(|(_, v)| v);
            continue;
        }
        let group = model.group(&name);
        let (host_list, vars, children) = match &data.value {
            Value::Seq(_) => (Some(data), None, None),
            Value::Map(m)
                if !m.is_empty()
                    && !m.iter().any(|(k, _)| {
                        matches!(k.as_scalar(), Some("hosts" | "vars" | "children"))
                    }) =>
            {
                // Ansible's script plugin reads `{"solo": {"ansible_host": ..}}`
                // as the group's sole host, its variables never templated
                // (deprecated, to be removed in ansible-core 2.23).
                diags.push(Diagnostic::warning(
                    "script-shorthand",
                    data.span.clone(),
                    format!(
                        "group `{name}` has no `hosts`, `vars` or `children`: read as the sole host `{name}` of that group with these variables, as Ansible reads it (deprecated in Ansible, removed in ansible-core 2.23)"
                    ),
                ));
                if !take_budget(budget, 1, &data.span, diags) {
                    return Some(hosts);
                }
                let h = model.add_host(&name, group, &data.span);
                if !hosts.contains(&h) {
                    hosts.push(h);
                }
                for (k, v, key) in var_map(data, diags) {
                    let v = match v {
                        Var::Scalar(text) => Var::Unsafe(text),
                        other => other,
                    };
                    model.set_host_var(h, &k, v, key.span.clone());
                }
                continue;
            }
            Value::Map(m) => {
                let get = |key: &str| {
                    m.iter()
                        .find(|(k, _)| k.as_scalar() == Some(key))
                        .map(|(_, v)| v)
                };
                (get("hosts"), get("vars"), get("children"))
            }
            _ if data.is_null() => (None, None, None),
            _ => {
                diags.push(data.expected("a group: a list of hosts or {hosts, vars, children}"));
                continue;
            }
        };
        for host in host_list.map(|h| list(h, diags)).unwrap_or_default() {
            let Some(host_name) = host.string(diags) else {
                continue;
            };
            if !take_budget(budget, 1, &host.span, diags) {
                return Some(hosts);
            }
            let h = model.add_host(&host_name, group, &host.span);
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        if let Some(vars) = vars {
            for (k, v, key) in var_map(vars, diags) {
                model.set_group_var(group, &k, v, key.span.clone());
            }
        }
        for child in children.map(|c| list(c, diags)).unwrap_or_default() {
            let Some(child_name) = child.string(diags) else {
                continue;
            };
            let child_group = model.group(&child_name);
            if let Err(e) = model.add_child(group, child_group) {
                diags.push(Diagnostic::error("group-loop", child.span.clone(), e));
            }
        }
    }
    let Some(hostvars) = hostvars else {
        return Some(hosts);
    };
    match hostvars.as_map() {
        Some(entries) => {
            for (name, vars) in entries {
                let Some(name) = name.as_scalar() else {
                    continue;
                };
                let Some(h) = model.find_host(name) else {
                    continue;
                };
                for (k, v, key) in var_map(vars, diags) {
                    model.set_host_var(h, &k, v, key.span.clone());
                }
            }
        }
        None if hostvars.is_null() => {}
        None => diags.push(hostvars.expected("a mapping of host names to variables")),
    }
    None
}

fn list<'a>(node: &'a Node, diags: &mut Vec<Diagnostic>) -> Vec<&'a Node> {
    match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ if node.is_null() => Vec::new(),
        _ => {
            diags.push(node.expected("a list of names"));
            Vec::new()
        }
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

pub(crate) fn var_map<'a>(
    node: &'a Node,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(String, Var, &'a Node)> {
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

/// PyYAML's (YAML 1.1) resolution of a node, reduced to [`Var`] (numbers as
/// Python prints them, which is what `ansible-inventory` shows).
///
/// ansible-core 2.19's JSON marks values: `{"__ansible_unsafe": "TEXT"}` is
/// text that is never a template (as the `!unsafe` tag), `{"__ansible_vault":
/// "$ANSIBLE_VAULT;..."}` an encrypted value, kept as its text so it is
/// refused where it is used, as an inline `!vault` is.
pub(crate) fn yaml_var(node: &Node) -> Var {
    if let Some([(key, value)]) = node.as_map()
        && let Some(text) = value.as_scalar()
    {
        match key.as_scalar() {
            Some("__ansible_unsafe") => return Var::Unsafe(text.to_owned()),
            Some("__ansible_vault") => return Var::Scalar(text.to_owned()),
            _ => {}
        }
    }
    match &node.value {
        Value::Scalar(s) if s.unsafe_text => Var::Unsafe(s.text.clone()),
        Value::Seq(_) | Value::Map(_) => Var::Complex,
        Value::Scalar(_) if node.is_null() => Var::Null,
        Value::Scalar(s) if !s.plain => Var::Scalar(s.text.clone()),
        Value::Scalar(s) => Var::Scalar(resolve_plain(&s.text)),
    }
}

fn resolve_plain(t: &str) -> String {
    match t {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return "true".into();
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return "false".into();
        }
        _ => {}
    }
    if let Some(n) = yaml11_int(t) {
        return n.to_string();
    }
    if let Some(f) = yaml11_float(t) {
        return python_float(f);
    }
    t.to_owned()
}

/// PyYAML's int: `0b1010`, `0x1f`, `017` (octal), `1_000`, `1:30` (base 60).
fn yaml11_int(t: &str) -> Option<i128> {
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    let clean = || digits.replace('_', "");
    let n = if let Some(b) = digits.strip_prefix("0b") {
        (!b.is_empty() && b.chars().all(|c| matches!(c, '0' | '1' | '_')))
            .then(|| i128::from_str_radix(&b.replace('_', ""), 2).ok())??
    } else if let Some(h) = digits.strip_prefix("0x") {
        (!h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit() || c == '_'))
            .then(|| i128::from_str_radix(&h.replace('_', ""), 16).ok())??
    } else if digits.contains(':') {
        let mut parts = digits.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| ('1'..='9').contains(&c))
            || !first.chars().all(|c| c.is_ascii_digit() || c == '_')
        {
            return None;
        }
        let mut n: i128 = first.replace('_', "").parse().ok()?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let v: i128 = p.parse().ok()?;
            if v > 59 {
                return None;
            }
            n = n * 60 + v;
        }
        n
    } else if digits.len() > 1 && digits.starts_with('0') {
        digits
            .chars()
            .all(|c| matches!(c, '0'..='7' | '_'))
            .then(|| i128::from_str_radix(&clean(), 8).ok())??
    } else if digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
        clean().parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -n } else { n })
}

/// PyYAML's float: a dot is required, an exponent needs its sign (`1e3` is
/// a string), `.inf`, `.nan`, `1:30.5`.
fn yaml11_float(t: &str) -> Option<f64> {
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let sign = if t.starts_with('-') { -1.0 } else { 1.0 };
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if body.len() == t.len() => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(e) = exponent {
        let digits = e.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let (int, frac) = mantissa.split_once('.')?;
    let int_ok = int.is_empty() && !frac.is_empty() && !frac.starts_with('_')
        || int.starts_with(|c: char| c.is_ascii_digit());
    if !int_ok
        || !int.chars().all(|c| c.is_ascii_digit() || c == '_')
        || !frac.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let text = format!(
        "{}.{}{}",
        int.replace('_', ""),
        frac.replace('_', ""),
        exponent.map(|e| format!("e{e}")).unwrap_or_default()
    );
    let text = if text.starts_with('.') {
        format!("0{text}")
    } else {
        text
    };
    text.parse::<f64>().ok().map(|f| sign * f)
}

/// Python's `repr` of a float, as far as inventories meet them.
pub(crate) fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let mut text = f.to_string();
    if !text.contains(['.', 'e', 'E']) {
        text.push_str(".0");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_typed_like_pyyaml() {
        for (text, want) in [
            ("yes", "true"),
            ("Off", "false"),
            ("22", "22"),
            ("010", "8"),
            ("0x1F", "31"),
            ("0b101", "5"),
            ("1_000", "1000"),
            ("1:30", "90"),
            ("-7", "-7"),
            ("1.5", "1.5"),
            ("1.0e+3", "1000.0"),
            ("1e3", "1e3"),
            ("08", "08"),
            ("10.0.0.1", "10.0.0.1"),
            ("y", "y"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(resolve_plain(text), want, "{text}");
        }
    }
}
