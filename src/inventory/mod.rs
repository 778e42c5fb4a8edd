//! Inventories: native YAML, Ansible INI and Ansible YAML files read into one
//! [`Inventory`] of fully expanded [`Host`]s, plus host-pattern expansion.
//!
//! Owns file formats, range expansion, `{N}` captures, merging several `-i`
//! files and the diagnostics for all of that. It must not know about
//! playbooks, plans or SSH sessions.

mod ansible;
mod ansible_ini;
mod ansible_yaml;
mod native;
pub mod pattern;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::diag::{Diagnostic, Sources, Span};
use crate::yaml::{self, Limits, Node, Value};

/// One host, after every pattern, default and group variable is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    /// Where to connect (an IP or DNS name); the name when the inventory gives none.
    pub address: String,
    pub port: u16,
    /// Login user; `None` leaves it to `~/.ssh/config` or the local user.
    pub user: Option<String>,
    /// ProxyJump host (`[user@]host[:port]`), if this host is reached through one.
    pub jump: Option<String>,
    /// Free-form labels; `dc`, `rack`, `role`, `pdu` and `bmc` are conventional.
    pub labels: BTreeMap<String, String>,
    /// Identity file for this host alone (Ansible's `ansible_ssh_private_key_file`),
    /// offered before the run's own identity files.
    pub identity_file: Option<std::path::PathBuf>,
    /// Privilege escalation this host asks for (Ansible's `ansible_become*`);
    /// it takes precedence over the playbook's `become`.
    pub escalation: Option<crate::transport::escalation::Escalation>,
    /// Groups the host belongs to, sorted: Ansible groups with their ancestors,
    /// without `all` (Ansible's `group_names`). Empty for native inventories.
    pub groups: Vec<String>,
    /// Where the host was defined, for diagnostics.
    pub span: Span,
}

impl Host {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// The merged result of every `-i` file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    /// Identity files named by the inventories' `defaults.identity_file`.
    pub identity_files: Vec<String>,
    /// known_hosts file named by the inventories' `defaults.known_hosts`.
    pub known_hosts: Option<String>,
}

/// Hosts over this many in one `load` are refused (memory bound).
pub const MAX_HOSTS: u64 = 1_000_000;

/// Reads and merges inventory files (format detected per file: native YAML
/// has `version:` and `datacenters:`, Ansible YAML has `all:`/groups, else INI).
/// Returns every problem found; warnings may accompany an `Ok`.
///
/// Merging: a host named in several places is one host; its labels and groups
/// are united. Different `address`, `port`, `user` or `jump`, or two values for
/// one label, are errors naming both places.
pub fn load(
    paths: &[String],
    sources: &mut Sources,
) -> Result<(Inventory, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut merged = Merger::default();
    let mut budget = MAX_HOSTS;
    for path in paths {
        if let Some(file) = read_file(path, sources, &mut budget, &mut diags) {
            merged.add(file, &mut diags);
        }
    }
    let inventory = merged.finish();
    if inventory.hosts.is_empty() && !crate::diag::has_errors(&diags) {
        diags.push(Diagnostic::error(
            "no-hosts",
            None,
            format!("no hosts in {}", paths.join(", ")),
        ));
    }
    crate::diag::sort(&mut diags);
    if crate::diag::has_errors(&diags) {
        Err(diags)
    } else {
        Ok((inventory, diags))
    }
}

/// What one file contributes before merging.
#[derive(Debug, Default)]
pub(crate) struct FileInventory {
    pub hosts: Vec<Host>,
    pub identity_files: Vec<String>,
    pub known_hosts: Option<(String, Span)>,
}

fn read_file(
    path: &str,
    sources: &mut Sources,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) -> Option<FileInventory> {
    let limits = Limits::default();
    let text = match yaml::read_bounded(path, limits.max_bytes) {
        Ok(text) => text,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let base = Path::new(path).parent().unwrap_or(Path::new(""));
    let text: std::sync::Arc<str> = std::sync::Arc::from(text);
    let file = sources.add(path, text.clone());
    if !looks_like_yaml(path, &text) {
        return Some(ansible_ini::read(&file, &text, base, budget, diags));
    }
    let root = match yaml::parse(file.clone(), &text, limits) {
        Ok(root) => root,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    if is_native(&root) {
        Some(native::read(&root, base, budget, diags))
    } else {
        Some(ansible_yaml::read(&root, base, budget, diags))
    }
}

/// `.yaml`/`.yml`/`.json` are YAML; other names (Ansible's `hosts`, `*.ini`)
/// are INI unless the first meaningful line reads as a YAML mapping key.
fn looks_like_yaml(path: &str, text: &str) -> bool {
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("yaml" | "yml" | "json") => true,
        Some("ini" | "cfg") => false,
        _ => text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .is_some_and(|l| l == "---" || (!l.starts_with('[') && l.contains(':'))),
    }
}

fn is_native(root: &Node) -> bool {
    root.as_map().is_some_and(|entries| {
        entries
            .iter()
            .any(|(k, _)| matches!(k.as_scalar(), Some("version" | "datacenters")))
    })
}

/// The span of the part of a scalar that a pattern error points at.
pub(crate) fn inner_span(node: &Node, e: &pattern::PatternError) -> Span {
    let quote = match &node.value {
        Value::Scalar(s) if !s.plain => 1,
        _ => 0,
    };
    let mut span = node.span.clone();
    span.col += quote + e.offset as u32;
    span.len = e.len as u32;
    span
}

/// A relative `identity_file`/`known_hosts` is relative to the inventory file,
/// so an inventory written next to its key (as `rekindle sim` does) works from
/// any directory. `~` is left for the SSH layer to expand.
pub(crate) fn resolve_path(base: &Path, value: &str) -> String {
    if value.starts_with('~') || Path::new(value).is_absolute() || base.as_os_str().is_empty() {
        value.to_owned()
    } else {
        base.join(value).to_string_lossy().into_owned()
    }
}

/// Takes `n` hosts from the load-wide budget, or reports why not.
pub(crate) fn take_budget(
    budget: &mut u64,
    n: u64,
    span: &Span,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if n > *budget {
        diags.push(Diagnostic::error(
            "too-many-hosts",
            span.clone(),
            format!("inventories hold more than {MAX_HOSTS} hosts; refusing to expand further"),
        ));
        *budget = 0;
        return false;
    }
    *budget -= n;
    true
}

/// Checks a label key is usable in `--select` (`key=value,key=value`).
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty label key".into());
    }
    if matches!(key, "name" | "group") {
        return Err(format!(
            "label `{key}` is reserved: selectors read `{key}=` as the host's {key}"
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '=' | ',' | '*' | '?' | '[' | ']'))
    {
        return Err(format!(
            "label key `{key}` contains `{c}`, which selectors cannot express"
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Merger {
    hosts: Vec<Host>,
    index: HashMap<String, usize>,
    identity_files: Vec<String>,
    known_hosts: Option<(String, Span)>,
}

impl Merger {
    fn add(&mut self, file: FileInventory, diags: &mut Vec<Diagnostic>) {
        for f in file.identity_files {
            if !self.identity_files.contains(&f) {
                self.identity_files.push(f);
            }
        }
        if let Some((path, span)) = file.known_hosts {
            match &self.known_hosts {
                Some((first, first_span)) if *first != path => diags.push(Diagnostic::error(
                    "conflicting-defaults",
                    span,
                    format!("known_hosts `{path}` differs from `{first}` set at {first_span}"),
                )),
                Some(_) => {}
                None => self.known_hosts = Some((path, span)),
            }
        }
        self.hosts.reserve(file.hosts.len());
        for host in file.hosts {
            match self.index.entry(host.name.clone()) {
                Entry::Vacant(v) => {
                    v.insert(self.hosts.len());
                    self.hosts.push(host);
                }
                Entry::Occupied(o) => merge_host(&mut self.hosts[*o.get()], host, diags),
            }
        }
    }

    fn finish(self) -> Inventory {
        Inventory {
            hosts: self.hosts,
            identity_files: self.identity_files,
            known_hosts: self.known_hosts.map(|(p, _)| p),
        }
    }
}

fn merge_host(first: &mut Host, other: Host, diags: &mut Vec<Diagnostic>) {
    let name = &first.name;
    let mut conflict = |what: &str, a: &str, b: &str| {
        diags.push(
            Diagnostic::error(
                "conflicting-host",
                other.span.clone(),
                format!(
                    "host `{name}` has {what} `{b}` here but `{a}` at {}",
                    first.span
                ),
            )
            .with_help("a host defined twice must agree; remove one definition or make them match"),
        );
    };
    if first.address != other.address {
        conflict("address", &first.address, &other.address);
    }
    if first.port != other.port {
        conflict("port", &first.port.to_string(), &other.port.to_string());
    }
    let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "(none)".into());
    if other.user.is_some() && first.user.is_some() && first.user != other.user {
        conflict("user", &show(&first.user), &show(&other.user));
    }
    if other.jump.is_some() && first.jump.is_some() && first.jump != other.jump {
        conflict("jump", &show(&first.jump), &show(&other.jump));
    }
    for (k, v) in &other.labels {
        if let Some(mine) = first.labels.get(k)
            && mine != v
        {
            conflict(&format!("label {k}"), mine, v);
        }
    }
    if first.user.is_none() {
        first.user = other.user;
    }
    if first.jump.is_none() {
        first.jump = other.jump;
    }
    for (k, v) in other.labels {
        first.labels.entry(k).or_insert(v);
    }
    for g in other.groups {
        if let Err(i) = first.groups.binary_search(&g) {
            first.groups.insert(i, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_detection() {
        assert!(looks_like_yaml("inv.yaml", "[web]\n"));
        assert!(looks_like_yaml("inv.YML", ""));
        assert!(!looks_like_yaml("hosts.ini", "all:\n"));
        assert!(!looks_like_yaml("hosts", "# c\n[web]\nweb1\n"));
        assert!(!looks_like_yaml("hosts", "web1 ansible_port=22\n"));
        assert!(looks_like_yaml("hosts", "; c\nall:\n  hosts:\n"));
        assert!(looks_like_yaml("hosts", "---\nall: {}\n"));
    }

    #[test]
    fn overlapping_entries_in_one_file_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yaml");
        std::fs::write(
            &path,
            "version: 1\ndatacenters:\n  x:\n    hosts:\n      - { name: \"w[1-3]\", labels: { role: web } }\n      - { name: \"w[3-4]\", labels: { role: db } }\n",
        )
        .unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut sources = Sources::new();
        let diags = load(std::slice::from_ref(&path), &mut sources).unwrap_err();
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags[0].message,
            format!("host `w3` has label role `db` here but `web` at {path}:5:17")
        );
        assert_eq!(diags[0].span.as_ref().map(|s| s.line), Some(6));
    }

    #[test]
    fn relative_key_paths_follow_the_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.yaml");
        std::fs::write(
            &path,
            "version: 1\ndefaults: { identity_file: id_ed25519, known_hosts: /etc/kh }\ndatacenters:\n  sim:\n    hosts: [ { name: h1, address: 127.0.0.2 } ]\n",
        )
        .unwrap();
        let mut sources = Sources::new();
        let (inv, warnings) = load(&[path.to_string_lossy().into_owned()], &mut sources).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            inv.identity_files,
            [dir.path().join("id_ed25519").to_string_lossy().into_owned()]
        );
        assert_eq!(inv.known_hosts.as_deref(), Some("/etc/kh"));
        assert_eq!(inv.hosts[0].address, "127.0.0.2");
    }
}
