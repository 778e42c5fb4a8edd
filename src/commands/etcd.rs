//! The `--etcd` side of the commands: the store from the etcd flags,
//! `report RUN_ID --etcd` and `standby RUN_ID`.
//! The rules, the lead and the takeover are `etcd::takeover`'s, the standby
//! loop `session::takeover`'s; this file turns arguments into those calls.

use super::args::{self, Terminal};
use crate::cli::{EtcdArgs, ExecArgs, StandbyArgs};
use crate::etcd::Store;
use crate::etcd::takeover;
use crate::exit::{Exit, usage};
use crate::journal::Journal;
use crate::session::resume::Request;

/// The store `--etcd` names, connected; an error without `--etcd`.
pub(crate) fn store(etcd: &EtcdArgs, exec: &ExecArgs) -> anyhow::Result<Store> {
    match args::etcd(etcd).map_err(usage)? {
        Some(mut settings) => {
            settings.become_password = exec.become_password_file.is_some();
            args::etcd_store(settings).map_err(usage)
        }
        None => Err(usage("--etcd (or REKINDLE_ETCD) is needed")),
    }
}

/// `report RUN_ID --etcd ...`: the run's journal as etcd has it.
pub(crate) fn journal(etcd: &EtcdArgs, run: &str) -> anyhow::Result<Journal> {
    let store = store(etcd, &ExecArgs::default())?;
    takeover::journal(&store, run).map_err(usage)
}

/// `standby RUN_ID --etcd ...`: waits while the run's driver lives, then
/// takes it over (one standby wins; the others go on waiting).
pub(crate) fn standby(args: StandbyArgs, verbose: u8) -> anyhow::Result<Exit> {
    let store = store(&args.etcd, &args.exec)?;
    let run = takeover::run_id(&args.run_id);
    stand_by(store, &run, args.exec, verbose)
}

/// The standby loop with these flags, for `standby` and a second identical `run`.
pub(crate) fn stand_by(
    store: Store,
    run: &str,
    exec: ExecArgs,
    verbose: u8,
) -> anyhow::Result<Exit> {
    let request = Request::standby(
        run,
        exec.quiet,
        verbose > 0,
        args::breaking(&exec),
        exec.journal.clone(),
    );
    let become_password = exec.become_password_file.is_some();
    crate::session::takeover::stand_by(store, run, request, become_password, &Terminal::new(exec))
}
