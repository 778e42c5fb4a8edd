//! `rekindle resume JOURNAL`: continue an interrupted run (with `--etcd`,
//! take over a run kept in etcd). Arguments into the library's resume
//! request; the resume itself is `session::resume`'s, the takeover
//! `session::takeover`'s.

use super::args::{self, Terminal};
use crate::cli::ResumeArgs;
use crate::exit::Exit;
use crate::session::resume::{Request, resume};
use crate::session::takeover;

pub fn execute(args: ResumeArgs, verbose: u8) -> anyhow::Result<Exit> {
    let request = Request {
        journal_file: args.journal_file.clone(),
        force: args.force,
        failed_only: args.failed_only,
        limit: args.limit.clone(),
        accept_failures: args.accept_failures,
        without_etcd: args.without_etcd,
        yes: args.exec.yes,
        quiet: args.exec.quiet,
        verbose: verbose > 0,
        breaking: args::breaking(&args.exec),
        journal_dir: args.exec.journal.clone(),
    };
    if args.without_etcd {
        if args.etcd.etcd.is_some() {
            eprintln!("warning: --without-etcd: --etcd (or REKINDLE_ETCD) is ignored");
        }
    } else if args.etcd.etcd.is_some() {
        let store = super::etcd::store(&args.etcd, &args.exec)?;
        return takeover::resume_from_etcd(store, request, &Terminal::new(args.exec));
    }
    resume(request, None, &Terminal::new(args.exec))
}
