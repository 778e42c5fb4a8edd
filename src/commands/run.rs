//! `rekindle run`: arguments into settings, the plan confirmed, then the
//! session's pipeline (inputs checked, lock, journal, engine, consumers)
//! and its summary printed.
//!
//! Owns the run command's terminal interaction; the pipeline is `session`'s.

use std::collections::HashMap;
use std::time::SystemTime;

use super::args;
use crate::cli::RunArgs;
use crate::diag::Sources;
use crate::exit::Exit;
use crate::journal;
use crate::report::summary::Collector;
use crate::session::{self, Display, Execution, Locking};

pub fn execute(args: RunArgs, verbose: u8) -> anyhow::Result<Exit> {
    let mut sources = Sources::new();
    let Some(loaded) = args::load(
        &args.inventories,
        &args.playbook,
        args.limit.as_deref(),
        &mut sources,
    ) else {
        return Ok(Exit::Usage);
    };
    let rate = match args::rate(&args.exec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let etcd = match args::etcd(&args.etcd) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let settings = args::settings(&args.exec, rate, &loaded.inventory);
    // Every input is checked before the lock is taken or the journal created.
    let prepared = match session::prepare(loaded.plan, loaded.inventory, &settings) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Exit::Usage);
        }
    };
    args::print_notes(&prepared.notes);
    // etcd is reached (or not) before anyone is asked to confirm.
    let etcd = etcd.map(|mut e| {
        e.become_password = args.exec.become_password_file.is_some();
        e
    });
    let store = match etcd.map(args::etcd_store).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    if !args::confirm(&prepared.plan, args.exec.yes)? {
        return Ok(Exit::Usage);
    }
    let mut header = session::header(
        &prepared.plan,
        &args.playbook,
        &args.inventories,
        args.limit.as_deref(),
        args.exec.parallel,
        args.exec.rate.as_deref(),
        SystemTime::now(),
    )?;
    if let Some(s) = &store {
        header.bastion.clone_from(&s.settings.bastion);
        header.etcd = Some(journal::EtcdHome {
            endpoints: s.settings.client.endpoints.clone(),
            prefix: s.settings.prefix.clone(),
        });
    }
    let mut earlier = Collector::new();
    earlier.record(&journal::Record::Header(header.clone()));
    let consumers = match args::live_views(&args.exec, &header.run_id, &prepared.plan, earlier, &[])
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Exit::Usage);
        }
    };
    let locking = Locking::Lock {
        breaking: args::breaking(&args.exec),
        plan: &prepared.plan,
        inventory: &prepared.inventory,
    };
    // A second identical run (same inputs, same --limit) waits as the live one's standby.
    if let Some(s) = &store {
        match s.same_live_run(&header) {
            Ok(Some(d)) => {
                eprintln!(
                    "etcd: the same run is live: {} (`{}`) driven by {}",
                    d.run_id,
                    d.plan,
                    super::etcd::driver_words(&d)
                );
                let Some(store) = store else {
                    return Ok(Exit::Usage);
                };
                return super::etcd::stand_by(
                    store,
                    &d.run_id,
                    args.exec.clone(),
                    args.etcd.clone(),
                    verbose,
                );
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: --etcd: {e}");
                return Ok(Exit::Usage);
            }
        }
    }
    let mut lead = match &store {
        Some(store) => match super::etcd::begin(store, &header, &prepared) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(Exit::Usage);
            }
        },
        None => None,
    };
    let opened = match session::open_new(&args.exec.journal, &header, locking, &[]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(l) = lead {
                l.close();
            }
            return Ok(Exit::Usage);
        }
    };
    args::print_notes(&opened.notes);
    eprintln!(
        "journal: {} (resume with `rekindle resume {}`)",
        opened.path.display(),
        opened.path.display()
    );
    let mut collector = Collector::new();
    collector.record(&journal::Record::Header(header));
    let finished = session::execute(
        Execution {
            prepared,
            journal: Some(opened),
            collector,
            already_done: 0,
            starts: HashMap::new(),
            display: Display::Progress {
                quiet: args.exec.quiet,
                verbose: verbose > 0,
            },
            consumers,
            mirror: lead.as_mut().map(crate::etcd::Lead::mirror),
        },
        args::notice,
    )?;
    args::print_finished(&finished, args.exec.quiet);
    Ok(super::etcd::finish(lead, finished.exit))
}
