//! Selectors: which hosts a stage, `--limit` or `--select` means.
//!
//! Owns the selector language (`key=value` pairs joined by commas, glob
//! values, `group=NAME`, `name=GLOB`, `host=PATTERN` with inventory ranges;
//! in playbooks the same as a map with scalar or list values) and matching a
//! [`Host`]. It must not decide what an empty match means: callers refuse
//! empty selections.

use std::collections::HashSet;
use std::fmt;

use crate::diag::Diagnostic;
use crate::inventory::Host;
use crate::inventory::pattern::{HostPattern, Syntax};
use crate::yaml::Node;

/// Every term must match (AND); a term matches when any of its values does (OR).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    pub terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// A label key, or the special keys `group`, `name` and `host`.
    pub key: String,
    /// Globs; for `host`, the patterns as written (shown, not matched).
    pub values: Vec<glob::Pattern>,
    /// For `host`: every name its patterns expand to.
    pub hosts: HashSet<String>,
}

/// The key whose values are host patterns with ranges (`pg-r[001-003]-db1`),
/// the form `rekindle report --format hosts` prints. In a glob `[001-003]`
/// is a character class, so ranges need a key of their own.
pub const HOST_KEY: &str = "host";

/// Ansible's implicit group of every host: `group=all` selects the whole inventory.
const ALL_GROUP: &str = "all";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector `{input}`: {reason}")]
pub struct SelectorError {
    pub input: String,
    pub reason: String,
}

impl Selector {
    /// Parses the command-line form: `role=db,dc=pangyo`, `rack=pg-r00*`.
    /// Repeating a key (`role=db,role=cache`) means either value.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |reason: String| SelectorError {
            input: input.to_owned(),
            reason,
        };
        let mut selector = Selector::default();
        for part in split_terms(input).into_iter().map(str::trim) {
            if part.is_empty() {
                return Err(err("empty term (two commas, or a trailing comma?)".into()));
            }
            let Some((key, value)) = part.split_once('=') else {
                return Err(err(format!("`{part}` is not key=value")));
            };
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(err(format!("`{part}` needs both a key and a value")));
            }
            if key.contains(char::is_whitespace) || value.contains(char::is_whitespace) {
                // `role=db role=lb` would otherwise be one value, `db role=lb`, matching nothing.
                let joined = part.split_whitespace().collect::<Vec<_>>().join(",");
                return Err(err(format!(
                    "`{part}` contains a space; join terms with commas (`{joined}`), \
                     and match a space inside a value with `?`"
                )));
            }
            selector.push_value(key, value).map_err(err)?;
        }
        Ok(selector)
    }

    /// Reads the playbook form: `{ role: [db, cache], dc: pangyo }`.
    /// Problems are pushed to `diags`; `None` means the node was unusable.
    pub fn from_node(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Selector> {
        let Some(entries) = node.as_map() else {
            diags.push(node.expected("a mapping of label: value(s)"));
            return None;
        };
        if entries.is_empty() {
            diags.push(Diagnostic::error(
                "empty-selector",
                node.span.clone(),
                "empty selector: a stage must select hosts by at least one label",
            ));
            return None;
        }
        let mut selector = Selector::default();
        let mut ok = true;
        for (k, v) in entries {
            let Some(key) = k.string(diags) else {
                ok = false;
                continue;
            };
            let Some(values) = v.string_or_list(diags) else {
                ok = false;
                continue;
            };
            if values.is_empty() {
                diags.push(Diagnostic::error(
                    "empty-selector",
                    v.span.clone(),
                    format!("`{key}` lists no values, so it can match no host"),
                ));
                ok = false;
            }
            for value in values {
                if let Err(message) = selector.push_value(&key, &value) {
                    diags.push(Diagnostic::error("bad-glob", v.span.clone(), message));
                    ok = false;
                }
            }
        }
        ok.then_some(selector)
    }

    /// Adds one value of `key`: a glob, or for `host` a host pattern.
    fn push_value(&mut self, key: &str, value: &str) -> Result<(), String> {
        let mut names = Vec::new();
        let shown = if key == HOST_KEY {
            let pattern = HostPattern::parse(value, Syntax::Native)
                .map_err(|e| format!("bad host pattern `{value}`: {e}"))?;
            names = pattern.expand();
            // Kept only to print the selector back; a pattern that is not
            // also a valid glob is kept escaped.
            glob::Pattern::new(value).or_else(|_| glob::Pattern::new(&glob::Pattern::escape(value)))
        } else {
            glob::Pattern::new(value)
        }
        .map_err(|e| format!("bad glob `{value}`: {e}"))?;
        let term = match self.terms.iter().position(|t| t.key == key) {
            Some(i) => &mut self.terms[i],
            None => {
                self.terms.push(Term {
                    key: key.to_owned(),
                    values: Vec::new(),
                    hosts: HashSet::new(),
                });
                self.terms.last_mut().expect("just pushed")
            }
        };
        term.values.push(shown);
        term.hosts.extend(names);
        Ok(())
    }

    /// A selector with no terms matches every host; callers decide whether
    /// that is allowed (a stage's `select` may never be empty).
    pub fn matches(&self, host: &Host) -> bool {
        self.terms.iter().all(|t| t.matches(host))
    }

    /// Label keys the selector reads (not `group`/`name`).
    pub fn label_keys(&self) -> impl Iterator<Item = &str> {
        self.terms
            .iter()
            .map(|t| t.key.as_str())
            .filter(|k| !matches!(*k, "group" | "name" | HOST_KEY))
    }
}

/// Splits at commas outside `[...]`, so `host=db[1,3]` and the glob class
/// `name=db[1,3]` stay one term each.
fn split_terms(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in input.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

impl Term {
    pub fn matches(&self, host: &Host) -> bool {
        match self.key.as_str() {
            "name" => self.values.iter().any(|p| p.matches(&host.name)),
            HOST_KEY => self.hosts.contains(&host.name),
            // Every host is in Ansible's implicit group `all`.
            "group" => self
                .values
                .iter()
                .any(|p| p.matches(ALL_GROUP) || host.groups.iter().any(|g| p.matches(g))),
            key => match host.labels.get(key) {
                Some(v) => self.values.iter().any(|p| p.matches(v)),
                None => false,
            },
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for t in &self.terms {
            for v in &t.values {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{}={}", t.key, v.as_str())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::diag::Span;

    fn host(name: &str, labels: &[(&str, &str)], groups: &[&str]) -> Host {
        Host {
            name: name.into(),
            address: name.into(),
            port: 22,
            user: None,
            jump: None,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            identity_file: None,
            escalation: None,
            bmc: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            span: Span::file(Arc::from("t")),
        }
        .read_bmc_label()
    }

    #[test]
    fn terms_and_values() {
        let h = host(
            "pg-r001-db1",
            &[("role", "db"), ("dc", "pangyo"), ("rack", "pg-r001")],
            &["dbs"],
        );
        assert!(Selector::parse("role=db,dc=pangyo").unwrap().matches(&h));
        assert!(Selector::parse("role=cache,role=db").unwrap().matches(&h));
        assert!(Selector::parse("rack=pg-r00*").unwrap().matches(&h));
        assert!(Selector::parse("group=dbs,name=pg-*").unwrap().matches(&h));
        assert!(!Selector::parse("role=db,dc=ansan").unwrap().matches(&h));
        assert!(
            !Selector::parse("pdu=*").unwrap().matches(&h),
            "a missing label never matches"
        );
    }

    #[test]
    fn host_patterns_match_exactly_their_names() {
        let sel = Selector::parse("host=pg-r[001-003,007]-db1,host=lb1").unwrap();
        for name in ["pg-r001-db1", "pg-r003-db1", "pg-r007-db1", "lb1"] {
            assert!(sel.matches(&host(name, &[], &[])), "{name}");
        }
        // As a glob `[001-003,007]` would be one character; as a range it is not.
        for name in ["pg-r0-db1", "pg-r004-db1", "pg-r001-db2", "lb"] {
            assert!(!sel.matches(&host(name, &[], &[])), "{name}");
        }
        assert_eq!(sel.to_string(), "host=pg-r[001-003,007]-db1,host=lb1");
        assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        assert_eq!(sel.label_keys().count(), 0);
        let e = Selector::parse("host=web[3-1]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid selector `host=web[3-1]`: bad host pattern `web[3-1]`: range `3-1` runs backwards"
        );
    }

    #[test]
    fn group_all_matches_every_host() {
        let grouped = host("web01", &[], &["web"]);
        let native = host("pg-r001-db1", &[("role", "db")], &[]);
        let all = Selector::parse("group=all").unwrap();
        assert!(all.matches(&grouped) && all.matches(&native));
        assert!(!Selector::parse("group=db").unwrap().matches(&native));
    }

    #[test]
    fn whitespace_inside_a_term_is_refused_with_a_hint() {
        let e = Selector::parse("role=db role=lb").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid selector `role=db role=lb`: `role=db role=lb` contains a space; \
             join terms with commas (`role=db,role=lb`), and match a space inside a value with `?`"
        );
        assert!(Selector::parse("dc=pangyo rack=x").is_err());
        // Spaces around the separators stay allowed.
        assert!(Selector::parse(" role=db , dc=pangyo ").is_ok());
        assert!(Selector::parse("role = db").is_ok());
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in ["", "role", "role=", "=db", "role=db,,dc=x", "role=[x"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        let s = Selector::parse("role=db,role=cache,dc=p*").unwrap();
        assert_eq!(s.to_string(), "role=db,role=cache,dc=p*");
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }
}
