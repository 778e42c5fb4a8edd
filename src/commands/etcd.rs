//! What `run`, `resume` and `report` do differently with `--etcd`: the
//! run stored and its lead taken (or refused, naming the run it collides
//! with), and a fenced driver's exit. The rules are `etcd`'s; this file
//! only turns them into messages and exit codes.

use crate::etcd::{Lead, Store};
use crate::exit::Exit;
use crate::journal::Header;
use crate::session::Prepared;

/// Stores a new run in etcd and takes its lead; `Err` is the message.
pub(crate) fn begin(store: &Store, header: &Header, prepared: &Prepared) -> Result<Lead, String> {
    let mut hosts: Vec<&str> = prepared
        .plan
        .stages
        .iter()
        .flat_map(|s| s.hosts.iter())
        .filter_map(|&h| prepared.inventory.hosts.get(h))
        .map(|h| h.name.as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let lead = store
        .begin(header, &hosts, super::args::notice)
        .map_err(|e| format!("--etcd: {e}"))?;
    eprintln!(
        "etcd: run {} kept in etcd under {} as driver {} (fencing token {}); another bastion can take it over with `rekindle resume {} --etcd ...`",
        header.run_id, store.settings.prefix, store.settings.bastion, lead.token, header.run_id
    );
    Ok(lead)
}

/// Gives the lead up after the run; a fenced driver exits with its own
/// code and says why, whatever the engine's outcome was.
pub(crate) fn finish(lead: Option<Lead>, exit: Exit) -> Exit {
    let Some(lead) = lead else { return exit };
    let fenced = lead.fenced().map(|why| lead.fenced_message(&why));
    lead.close();
    match fenced {
        Some(message) => {
            eprintln!("error: {message}");
            Exit::Fenced
        }
        None => exit,
    }
}

/// `resume RUN_ID --etcd ...`: not there yet.
pub(crate) fn resume(args: crate::cli::ResumeArgs, _verbose: u8) -> anyhow::Result<Exit> {
    eprintln!(
        "error: resume --etcd {}: taking a run over from etcd is not implemented yet",
        args.journal_file.display()
    );
    Ok(Exit::Usage)
}
