//! `rekindle report JOURNAL --format text|json|junit|html|hosts [-o FILE]`:
//! the summary of a run read back from its journal, for people and machines.
//!
//! Owns the command; the formats are `report::formats`'.

use std::io::Write;

use anyhow::Context;

use crate::cli::{HostStatus, ReportArgs, ReportFormat};
use crate::exit::{Exit, usage};
use crate::journal;
use crate::report::formats;
use crate::report::state::RunState;
use crate::report::text::render_text;

pub fn execute(args: ReportArgs) -> anyhow::Result<Exit> {
    if !args.status.is_empty() && args.format != ReportFormat::Hosts {
        return Err(usage("--status selects hosts for `--format hosts` only"));
    }
    let journal = if args.etcd.etcd.is_some() {
        super::etcd::journal(&args.etcd, &args.journal_file.to_string_lossy())?
    } else {
        journal::read(&args.journal_file).map_err(usage)?
    };
    if journal.torn_tail {
        eprintln!("note: the journal's last record was cut short; it is ignored");
    }
    let summary = RunState::replay(&journal.records).summary();
    let text = match args.format {
        ReportFormat::Text => render_text(&summary),
        ReportFormat::Json => formats::json(&summary),
        ReportFormat::Junit => formats::junit(&summary),
        ReportFormat::Html => formats::html(&summary),
        ReportFormat::Hosts => {
            let statuses: Vec<&str> = args
                .status
                .iter()
                .flat_map(|s| match s {
                    HostStatus::Done => &["done"][..],
                    HostStatus::Failed => &["failed"][..],
                    HostStatus::Unreachable => &["unreachable"][..],
                    HostStatus::Interrupted => &["interrupted", "running"][..],
                })
                .copied()
                .collect();
            let (selector, unspellable) = formats::hosts_selector(&summary, &statuses);
            if !unspellable.is_empty() {
                eprintln!(
                    "warning: {} cannot be written as a host pattern (brackets, braces, commas or spaces in the name), left out: {}",
                    crate::report::plural(unspellable.len(), "host"),
                    unspellable.join(" ")
                );
            }
            match selector {
                Some(selector) => format!("{selector}\n"),
                None => {
                    // Nothing to retry is an answer, not an error; stdout stays empty.
                    eprintln!("note: no host of this run has the status asked for");
                    String::new()
                }
            }
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(Exit::Success)
}
