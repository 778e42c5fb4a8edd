//! `rekindle status --etcd ...`: the runs kept in etcd, newest first: id,
//! playbook, driver and fencing token (or why there is none), hosts done,
//! failed and in flight, and the age of the last record.
//!
//! The table is `etcd::status`'s; this file reaches the store and chooses
//! the exit code (2 when a run cannot be read).

use std::time::SystemTime;

use crate::cli::StatusArgs;
use crate::exit::{Exit, usage};

pub fn execute(args: StatusArgs) -> anyhow::Result<Exit> {
    let settings = match super::args::etcd(&args.etcd) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(usage(
                "status lists the runs kept in etcd: give --etcd (or REKINDLE_ETCD)",
            ));
        }
        Err(e) => return Err(usage(e)),
    };
    let prefix = settings.prefix.clone();
    let store = super::args::etcd_store(settings).map_err(usage)?;
    let runs = store.runs().map_err(|e| usage(format!("--etcd: {e}")))?;
    if runs.is_empty() {
        println!("no runs in etcd under {prefix}");
        return Ok(Exit::Success);
    }
    print!("{}", crate::etcd::status::table(&runs, SystemTime::now()));
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
