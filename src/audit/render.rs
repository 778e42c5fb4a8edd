//! The audit for people (findings grouped by kind, worst first, host lists
//! folded into ranges) and for tools (JSON). Owns only the words and the
//! layout; it must not judge.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::deps::Peer;
use super::{Audit, Finding, Severity};
use crate::inventory::Inventory;
use crate::report::nodeset;

fn names<'a>(inventory: &'a Inventory, hosts: &[usize]) -> Vec<&'a str> {
    hosts
        .iter()
        .filter_map(|&h| inventory.hosts.get(h).map(|x| x.name.as_str()))
        .collect()
}

/// What `audit` prints: a header line, then each finding.
pub fn text(playbook: &str, inventory: &Inventory, audit: &Audit, samples: usize) -> String {
    let mut out = String::new();
    let count = |s: Severity| audit.findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "Audit of {playbook}: {} of {} hosts read ({samples} samples each), {} dependencies seen",
        audit.hosts_read,
        audit.hosts_selected,
        audit.dependencies.len()
    );
    let _ = writeln!(
        out,
        "{} errors, {} warnings, {} notes",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
    for f in &audit.findings {
        finding(&mut out, inventory, f);
    }
    out
}

fn finding(out: &mut String, inventory: &Inventory, f: &Finding) {
    let _ = writeln!(
        out,
        "\n{}[{}]: {}",
        f.severity.as_str(),
        f.kind.code(),
        f.message
    );
    if !f.stages.is_empty() {
        let _ = writeln!(out, "  stages: {}", f.stages.join(", "));
    }
    if !f.hosts.is_empty() {
        let _ = writeln!(
            out,
            "  hosts:  {}",
            nodeset::fold_text(names(inventory, &f.hosts))
        );
    }
    for d in &f.details {
        let _ = writeln!(out, "    {d}");
    }
    if !f.fix.is_empty() {
        let _ = writeln!(out, "  fix:    {}", f.fix);
    }
}

/// `audit --format json`:
/// `{ "hosts_selected", "hosts_read", "errors", "warnings", "notes",
///    "findings": [{ "severity", "kind", "message", "stages", "hosts", "details", "fix" }],
///    "dependencies": [{ "client", "server" | "external", "port", "connections" }] }`.
pub fn json(inventory: &Inventory, audit: &Audit) -> Value {
    let count = |s: Severity| audit.findings.iter().filter(|f| f.severity == s).count();
    let findings: Vec<Value> = audit
        .findings
        .iter()
        .map(|f| {
            json!({
                "severity": f.severity.as_str(),
                "kind": f.kind.code(),
                "message": f.message,
                "stages": f.stages,
                "hosts": names(inventory, &f.hosts),
                "details": f.details,
                "fix": f.fix,
            })
        })
        .collect();
    let deps: Vec<Value> = audit
        .dependencies
        .iter()
        .map(|d| {
            let client = inventory.hosts.get(d.client).map(|h| h.name.as_str());
            match d.server {
                Peer::Host(s) => json!({
                    "client": client,
                    "server": inventory.hosts.get(s).map(|h| h.name.as_str()),
                    "port": d.port,
                    "connections": d.connections,
                }),
                Peer::External(ip) => json!({
                    "client": client,
                    "external": ip.to_string(),
                    "port": d.port,
                    "connections": d.connections,
                }),
            }
        })
        .collect();
    json!({
        "hosts_selected": audit.hosts_selected,
        "hosts_read": audit.hosts_read,
        "errors": count(Severity::Error),
        "warnings": count(Severity::Warning),
        "notes": count(Severity::Info),
        "findings": findings,
        "dependencies": deps,
    })
}
