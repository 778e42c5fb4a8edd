//! The table `rekindle status --etcd` prints: the runs kept in etcd,
//! newest first: id, playbook, driver and fencing token (or why there is
//! none), hosts done, failed and in flight, the age of the last record.
//!
//! Owns the table's wording; what a run's state is comes from [`super::Store::runs`].

use std::time::SystemTime;

use super::RunInfo;

/// The table, one line per run after the heading; ages as of `now`.
pub fn table(runs: &[RunInfo], now: SystemTime) -> String {
    let rows: Vec<[String; 9]> = runs
        .iter()
        .map(|r| {
            let state = match (&r.driver, &r.finished) {
                _ if r.unreadable.is_some() => "UNREADABLE in etcd (see below)".to_owned(),
                (Some(_), _) => "live".to_owned(),
                (None, Some(outcome)) => format!("ended: {outcome}"),
                (None, None) if r.standbys > 0 => "stale: a standby takes over".to_owned(),
                (None, None) => {
                    "stale: no driver, no standby (resume RUN_ID --etcd ...)".to_owned()
                }
            };
            let state = match r.standbys {
                0 => state,
                n if r.driver.is_some() => {
                    format!("{state}, {}", crate::report::plural(n, "standby"))
                }
                _ => state,
            };
            let (driver, token) = match &r.driver {
                Some(d) => (
                    format!("{}@{} pid {}", d.operator, d.bastion, d.pid),
                    d.token.to_string(),
                ),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let age = r
                .last_record
                .and_then(|t| now.duration_since(t).ok())
                .map_or_else(|| "-".to_owned(), |d| format!("{}s ago", d.as_secs()));
            [
                r.header.run_id.clone(),
                r.header.plan.clone(),
                driver,
                token,
                r.done.to_string(),
                r.failed.to_string(),
                r.in_flight.to_string(),
                age,
                state,
            ]
        })
        .collect();
    let head = [
        "run",
        "playbook",
        "driver",
        "token",
        "done",
        "failed",
        "in flight",
        "last record",
        "state",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s
    };
    let mut out = line(head.to_vec());
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}
