//! Inventories: native YAML, Ansible INI and Ansible YAML files read into one
//! [`Inventory`] of fully expanded [`Host`]s, plus host-pattern expansion.
//!
//! Owns file formats, range expansion, `{N}` captures, merging several `-i`
//! files and the diagnostics for all of that. It must not know about
//! playbooks, plans or SSH sessions.

pub mod pattern;

use std::collections::BTreeMap;

use crate::diag::Span;

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
    /// Groups the host belongs to (Ansible groups, with their ancestors).
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

/// Reads and merges inventory files (format detected per file: native YAML
/// has `version:` and `datacenters:`, Ansible YAML has `all:`/groups, else INI).
/// Returns every problem found; warnings may accompany an `Ok`.
pub fn load(
    paths: &[String],
    sources: &mut crate::diag::Sources,
) -> Result<(Inventory, Vec<crate::diag::Diagnostic>), Vec<crate::diag::Diagnostic>> {
    // Placeholder until the inventory readers land; see issue "The offline half".
    let _ = sources;
    Err(vec![crate::diag::Diagnostic::error(
        "unsupported",
        None,
        format!("cannot read inventories yet: {}", paths.join(", ")),
    )])
}
