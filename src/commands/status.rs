//! `rekindle status --etcd ...`: the runs kept in etcd, newest first: id,
//! playbook, driver and fencing token (or why there is none), hosts done,
//! failed and in flight, and the age of the last record.
//!
//! Owns the table's wording; what a run's state is comes from `etcd`.

use std::time::SystemTime;

use crate::cli::StatusArgs;
use crate::exit::Exit;

pub fn execute(args: StatusArgs) -> anyhow::Result<Exit> {
    let settings = match super::args::etcd(&args.etcd) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("error: status lists the runs kept in etcd: give --etcd (or REKINDLE_ETCD)");
            return Ok(Exit::Usage);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let prefix = settings.prefix.clone();
    let store = match super::args::etcd_store(settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let runs = match store.runs() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: --etcd: {e}");
            return Ok(Exit::Usage);
        }
    };
    if runs.is_empty() {
        println!("no runs in etcd under {prefix}");
        return Ok(Exit::Success);
    }
    let now = SystemTime::now();
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
    println!("{}", line(head.to_vec()));
    for row in &rows {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
    let mut unreadable = false;
    for why in runs.iter().filter_map(|r| r.unreadable.as_deref()) {
        eprintln!("error: {why}");
        unreadable = true;
    }
    Ok(if unreadable {
        Exit::Usage
    } else {
        Exit::Success
    })
}
