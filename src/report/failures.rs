//! Failures folded by cause, as pdsh's dshbak folds identical output: hosts
//! that failed the same way (same stage, step, reason and last output lines)
//! form one group, their names folded into ranges ([`super::nodeset`]),
//! largest group first. The text summary and the HTML report print groups;
//! the JSON report keeps every host.
//!
//! Owns the grouping and its wording. It must not touch hosts or files.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::nodeset;
use super::summary::{HostResult, HostStatus, OUTPUT_LINES, Summary};
use crate::engine::failure::Failure;

/// Folded patterns shown per group before "and N more".
const PATTERNS_SHOWN: usize = 20;

/// Hosts that failed the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<'a> {
    pub stage: &'a str,
    /// `step 2 (health)` or `unreachable, set aside`.
    pub what: String,
    /// The hosts' reason when they all share it; else the kind with the
    /// first host's reason as an example.
    pub reason: String,
    /// The last [`OUTPUT_LINES`] lines of output, shared by every host here.
    pub output: Vec<&'a str>,
    /// Host names in the order they appear in the summary.
    pub hosts: Vec<&'a str>,
}

impl Group<'_> {
    /// The hosts folded into ranges: `pg-r[001-003,007]-db1`.
    pub fn folded(&self) -> Vec<String> {
        nodeset::fold(self.hosts.iter().copied())
    }

    /// The folded hosts on one line, at most [`PATTERNS_SHOWN`] patterns.
    pub fn folded_line(&self) -> String {
        let folded = self.folded();
        let more = folded.len().saturating_sub(PATTERNS_SHOWN);
        let mut line = folded[..folded.len() - more].join(",");
        if more > 0 {
            let _ = write!(
                line,
                " and {more} more (all of them: `rekindle report JOURNAL --format hosts --status failed,unreachable`)"
            );
        }
        line
    }
}

fn what(h: &HostResult) -> String {
    if h.status == HostStatus::Unreachable {
        "unreachable, set aside".to_owned()
    } else {
        format!(
            "step {} ({})",
            h.step.unwrap_or(0),
            h.step_kind.as_deref().unwrap_or("?")
        )
    }
}

fn last_lines(h: &HostResult) -> Vec<&str> {
    let lines: Vec<&str> = h.output.as_deref().unwrap_or("").lines().collect();
    lines[lines.len().saturating_sub(OUTPUT_LINES)..].to_vec()
}

/// What makes two failures the same cause: the stage, step and status, the
/// failure's kind (the reason text for journals that predate kinds) and the
/// last output lines. Hosts unreachable at different addresses fold together.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Why<'a> {
    Kind(Failure),
    Text(&'a str),
}

fn cause(h: &HostResult) -> (&str, String, Why<'_>, Vec<&str>) {
    let why = match h.failure {
        Some(kind) if kind != Failure::Unknown => Why::Kind(kind),
        _ => Why::Text(h.reason.as_deref().unwrap_or("")),
    };
    (h.stage.as_str(), what(h), why, last_lines(h))
}

/// The summary's failed and unreachable hosts grouped by [`cause`], largest
/// group first (ties: the group whose first host comes first).
pub fn groups(s: &Summary) -> Vec<Group<'_>> {
    // Per group: its first host's reason and whether every host shares it.
    let mut groups: Vec<(Group<'_>, &str, bool, Option<Failure>)> = Vec::new();
    let mut index: HashMap<(&str, String, Why<'_>, Vec<&str>), usize> = HashMap::new();
    for h in s.failures() {
        let key = cause(h);
        let reason = h.reason.as_deref().unwrap_or("");
        let i = *index.entry(key.clone()).or_insert_with(|| {
            let (stage, what, why, output) = key;
            let kind = match why {
                Why::Kind(kind) => Some(kind),
                Why::Text(_) => None,
            };
            let group = Group {
                stage,
                what,
                reason: String::new(),
                output,
                hosts: Vec::new(),
            };
            groups.push((group, reason, true, kind));
            groups.len() - 1
        });
        let (group, first, same, _) = &mut groups[i];
        *same &= *first == reason;
        group.hosts.push(h.host.as_str());
    }
    let mut groups: Vec<Group<'_>> = groups
        .into_iter()
        .map(|(mut g, first, same, kind)| {
            g.reason = match kind {
                Some(kind) if !same => format!("{kind} (e.g. {first})"),
                _ => first.to_owned(),
            };
            g
        })
        .collect();
    // Stable: equal sizes keep the order of their first host.
    groups.sort_by_key(|g| std::cmp::Reverse(g.hosts.len()));
    groups
}

/// The text summary's failure section (nothing when no host failed):
///
/// ```text
/// failures (4):
///   storage  step 2 (health): health checks did not pass within 10m
///     3 hosts: pg-r[004,011,016]-db2
///       | osd.3 down
/// ```
pub fn write_text(out: &mut String, s: &Summary) {
    let groups = groups(s);
    let total: usize = groups.iter().map(|g| g.hosts.len()).sum();
    if total == 0 {
        return;
    }
    let _ = writeln!(out, "\nfailures ({total}):");
    for g in &groups {
        let _ = writeln!(out, "  {}  {}: {}", g.stage, g.what, g.reason);
        let _ = writeln!(
            out,
            "    {}: {}",
            super::plural(g.hosts.len(), "host"),
            g.folded_line()
        );
        for line in &g.output {
            let _ = writeln!(out, "      | {line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stage: &str, host: &str, reason: &str, output: &str) -> HostResult {
        HostResult {
            stage: stage.into(),
            host: host.into(),
            status: HostStatus::Failed,
            canary: false,
            step: Some(2),
            step_kind: Some("health".into()),
            failure: None,
            reason: Some(reason.into()),
            output: Some(output.into()).filter(|o: &String| !o.is_empty()),
            start_ms: 0,
            end_ms: 1,
            duration_ms: 1,
            power_cycles: 0,
        }
    }

    fn summary(hosts: Vec<HostResult>) -> Summary {
        Summary {
            plan: "p".into(),
            run_id: None,
            outcome: None,
            elapsed_ms: 0,
            resumes: 0,
            stages: Vec::new(),
            hosts,
            boot_time: None,
            notes: Vec::new(),
            predicted: None,
        }
    }

    #[test]
    fn same_cause_folds_largest_first() {
        let mut hosts = vec![failed("db", "lb1", "timed out", "")];
        for r in [1, 2, 3, 7] {
            hosts.push(failed(
                "db",
                &format!("pg-r{r:03}-db1"),
                "exited 3",
                "osd down\n",
            ));
        }
        // Same reason, different last output: another cause.
        hosts.push(failed("db", "pg-r009-db1", "exited 3", "disk full\n"));
        let mut done = failed("db", "ok1", "", "");
        done.status = HostStatus::Done;
        hosts.push(done);
        let s = summary(hosts);
        let g = groups(&s);
        let sizes: Vec<(usize, &str)> = g
            .iter()
            .map(|g| (g.hosts.len(), g.reason.as_str()))
            .collect();
        assert_eq!(sizes, [(4, "exited 3"), (1, "timed out"), (1, "exited 3")]);
        assert_eq!(g[0].folded(), ["pg-r[001-003,007]-db1"]);
        let mut text = String::new();
        write_text(&mut text, &s);
        insta::assert_snapshot!(text, @r"
        failures (6):
          db  step 2 (health): exited 3
            4 hosts: pg-r[001-003,007]-db1
              | osd down
          db  step 2 (health): timed out
            1 host: lb1
          db  step 2 (health): exited 3
            1 host: pg-r009-db1
              | disk full
        ");
    }

    #[test]
    fn failures_of_one_kind_fold_together_whatever_their_reason_text() {
        // Regression: unreachable hosts never folded, their reasons name their addresses.
        let no_ssh = |host: &str, addr: &str| {
            let mut h = failed("db", host, &format!("connection refused by {addr}:22"), "");
            h.failure = Some(Failure::DidNotComeBack);
            h
        };
        let mut other = no_ssh("db9", "10.0.0.9");
        other.failure = Some(Failure::Unhealthy);
        let s = summary(vec![
            no_ssh("db1", "10.0.0.1"),
            no_ssh("db2", "10.0.0.2"),
            no_ssh("db3", "10.0.0.3"),
            other,
        ]);
        let g = groups(&s);
        let sizes: Vec<(usize, &str)> = g
            .iter()
            .map(|g| (g.hosts.len(), g.reason.as_str()))
            .collect();
        assert_eq!(
            sizes,
            [
                (
                    3,
                    "did not come back (e.g. connection refused by 10.0.0.1:22)"
                ),
                (1, "connection refused by 10.0.0.9:22"),
            ]
        );
        assert_eq!(g[0].folded(), ["db[1-3]"]);
    }

    #[test]
    fn a_long_host_list_is_cut_with_the_way_to_get_it_all() {
        // A different suffix each: nothing folds, 30 patterns.
        let letters: Vec<char> = ('a'..='z').chain('A'..='D').collect();
        let hosts = letters
            .iter()
            .map(|c| failed("db", &format!("h1{c}"), "x", ""))
            .collect();
        let s = summary(hosts);
        let line = groups(&s)[0].folded_line();
        assert!(line.starts_with("h1A,h1B,"), "{line}");
        assert!(
            line.contains(" and 10 more (all of them: `rekindle report JOURNAL --format hosts"),
            "{line}"
        );
    }

    #[test]
    fn no_failures_no_section() {
        let mut text = String::new();
        write_text(&mut text, &summary(Vec::new()));
        assert_eq!(text, "");
    }
}
