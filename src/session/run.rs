//! `rekindle run` once its inputs are prepared: the plan confirmed, the
//! journal's header, the live views, the run stored in etcd and its lead
//! taken (or, when the same run is live, this one waiting as its standby),
//! the journal opened under the plan's lock, then the execution and its
//! summary shown.
//!
//! Owns that order (etcd is reached before anyone is asked to confirm; the
//! lead is given up when the journal cannot open). It does not print: lines
//! go through the [`Front`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use super::front::Front;
use super::{Display, Execution, Locking, Prepared};
use crate::etcd::Store;
use crate::etcd::takeover;
use crate::exit::{Exit, usage};
use crate::journal::{self, lock};
use crate::report::fold::Collector;
use crate::report::state::RunState;

/// A run as the command line asks for it; what the header records.
pub struct Request {
    pub playbook: String,
    pub inventories: Vec<String>,
    pub limit: Option<String>,
    pub parallel: Option<usize>,
    /// `--rate` as given (the header keeps the text).
    pub rate: Option<String>,
    /// Confirmed already (`--yes`).
    pub yes: bool,
    pub quiet: bool,
    pub verbose: bool,
    /// What the plan's lock may take over.
    pub breaking: lock::Break,
    /// The journal directory (`--journal`).
    pub journal_dir: PathBuf,
    /// Whether `--become-password-file` was given (a standby's check).
    pub become_password: bool,
}

/// Runs `prepared`: with `store`, kept in etcd.
pub fn run(
    prepared: Prepared,
    request: Request,
    store: Option<Store>,
    front: &dyn Front,
) -> anyhow::Result<Exit> {
    let say = front.say();
    if !request.yes {
        front.confirm(&prepared.plan)?;
    }
    let mut header = super::header(
        &prepared.plan,
        &request.playbook,
        &request.inventories,
        request.limit.as_deref(),
        request.parallel,
        request.rate.as_deref(),
        SystemTime::now(),
    )?;
    if let Some(s) = &store {
        header.bastion.clone_from(&s.settings.bastion);
        header.etcd = Some(journal::EtcdHome {
            endpoints: s.settings.client.endpoints.clone(),
            prefix: s.settings.prefix.clone(),
        });
    }
    let mut collector = Collector::new();
    collector.record(&journal::Record::Header(header.clone()));
    let state = RunState::new(collector).shared();
    let consumers = front.live_views(&header.run_id, &prepared.plan, &state)?;
    let locking = Locking::Lock {
        breaking: request.breaking,
        plan: &prepared.plan,
        inventory: &prepared.inventory,
    };
    // A second identical run (same inputs, same --limit) waits as the live one's standby.
    if let Some(s) = &store
        && let Some(d) = s
            .same_live_run(&header)
            .map_err(|e| usage(format!("--etcd: {e}")))?
    {
        say(&format!(
            "etcd: the same run is live: {} (`{}`) driven by {}",
            d.run_id,
            d.plan,
            takeover::driver_words(&d)
        ));
        let store = store.ok_or_else(|| usage("--etcd is needed"))?;
        let standby = super::resume::Request::standby(
            &d.run_id,
            request.quiet,
            request.verbose,
            request.breaking,
            request.journal_dir.clone(),
        );
        return super::takeover::stand_by(
            store,
            &d.run_id,
            standby,
            request.become_password,
            front,
        );
    }
    let mut lead = match &store {
        Some(store) => {
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
            Some(takeover::begin(store, &header, &hosts, say).map_err(usage)?)
        }
        None => None,
    };
    let opened = match super::open_new(&request.journal_dir, &header, locking, &[]) {
        Ok(o) => o,
        Err(e) => {
            if let Some(l) = lead {
                l.close();
            }
            return Err(e);
        }
    };
    opened.notes.iter().for_each(|n| say(n));
    say(&format!(
        "journal: {} (resume with `rekindle resume {}`)",
        opened.path.display(),
        opened.path.display()
    ));
    let finished = super::execute(
        Execution {
            prepared,
            journal: Some(opened),
            state,
            already_done: 0,
            starts: HashMap::new(),
            display: Display::Progress {
                quiet: request.quiet,
                verbose: request.verbose,
            },
            consumers,
            mirror: lead.as_mut().map(crate::etcd::Lead::mirror),
        },
        say,
    )?;
    front.finished(&finished);
    takeover::finish(lead, finished.exit)
}
