//! `rekindle run`: arguments into settings, the inputs loaded and
//! prepared, etcd reached; then `session::run` (confirmation, lock,
//! journal, engine, consumers) talking through the terminal.

use super::args::{self, Terminal};
use crate::cli::RunArgs;
use crate::diag::Sources;
use crate::exit::{Exit, usage};
use crate::session::{self, run::Request, run::run};

pub fn execute(args: RunArgs, verbose: u8) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let loaded = args::load(
        &args.input.inventories,
        &args.input.playbook,
        args.input.limit.as_deref(),
        &mut sources,
    )?;
    let rate = args::rate(&args.exec).map_err(usage)?;
    let etcd = args::etcd(&args.etcd).map_err(usage)?;
    let settings = args::settings(&args.exec, rate, &loaded.inventory);
    // Every input is checked before the lock is taken or the journal created.
    let prepared = session::prepare(loaded.plan, loaded.inventory, &settings)?;
    args::print_notes(&prepared.notes);
    // etcd is reached (or not) before anyone is asked to confirm.
    let etcd = etcd.map(|mut e| {
        e.become_password = args.exec.become_password_file.is_some();
        e
    });
    let store = etcd.map(args::etcd_store).transpose().map_err(usage)?;
    let request = Request {
        playbook: args.input.playbook.clone(),
        inventories: args.input.inventories.clone(),
        limit: args.input.limit.clone(),
        parallel: args.exec.parallel,
        rate: args.exec.rate.clone(),
        yes: args.exec.yes,
        quiet: args.exec.quiet,
        verbose: verbose > 0,
        breaking: args::breaking(&args.exec),
        journal_dir: args.exec.journal.clone(),
        become_password: args.exec.become_password_file.is_some(),
    };
    run(prepared, request, store, &Terminal::new(args.exec))
}
