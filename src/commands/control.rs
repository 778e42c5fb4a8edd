//! `rekindle pause RUN` and `rekindle continue RUN`: flip a run's control
//! file (for a run kept in etcd, its pause key there, which binds whoever
//! drives the run), then wait (bounded) for the running process to say in
//! the journal that it took it.
//!
//! Owns where the run is (here, or in etcd and which); flipping and
//! waiting are `session::control`'s, the pause key `etcd`'s.

use crate::cli::ControlArgs;
use crate::exit::{Exit, usage};
use crate::journal;
use crate::session::control;

pub fn execute(args: ControlArgs, pause: bool) -> anyhow::Result<Exit> {
    // A run kept in etcd is paused there, whichever bastion asks: a control
    // file here would not reach a driver that took the run over elsewhere.
    let local = control::resolve(&args.run, &args.journal)
        .ok()
        .and_then(|p| journal::read(&p).ok());
    let home = local.as_ref().and_then(|j| j.header.etcd.clone());
    // `--etcd` (or REKINDLE_ETCD) reaches a run whose journal is not here;
    // a local run's own journal says it is not kept in etcd.
    if home.is_some() || (local.is_none() && args.etcd.etcd.is_some()) {
        let run = local
            .as_ref()
            .map_or_else(|| args.run.clone(), |j| j.header.run_id.clone());
        return in_etcd(&args, &run, home.as_ref(), pause);
    }
    control::flip(&args.run, &args.journal, pause, super::args::notice)?;
    Ok(Exit::Success)
}

/// Pause or continue a run kept in etcd, reached with `--etcd` or the
/// endpoints the run's journal names.
fn in_etcd(
    args: &ControlArgs,
    run: &str,
    home: Option<&journal::EtcdHome>,
    pause: bool,
) -> anyhow::Result<Exit> {
    let verb = if pause { "pause" } else { "continue" };
    let mut etcd = args.etcd.clone();
    if etcd.etcd.is_none()
        && let Some(home) = home
    {
        etcd.etcd = Some(home.endpoints.join(","));
        etcd.etcd_prefix.clone_from(&home.prefix);
    }
    let store = super::args::etcd(&etcd)
        .and_then(|s| match s {
            Some(s) => super::args::etcd_store(s),
            None => Err("--etcd is needed".into()),
        })
        .map_err(|e| {
            usage(format!(
                "cannot {verb} run {run}, which is kept in etcd: {e}"
            ))
        })?;
    control::flip_in_etcd(&store, run, pause, super::args::notice)?;
    Ok(Exit::Success)
}
