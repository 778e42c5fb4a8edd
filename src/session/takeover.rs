//! A run taken over from etcd: `resume RUN_ID --etcd` (its driver is gone)
//! and the standby loop (`standby`, or a second identical `run`) that
//! waits while the driver lives and then takes the run over. Either way the
//! run's inputs and journal are written from etcd's copy into the journal
//! directory and the run goes on as [`super::resume::resume`] does,
//! mirrored in etcd under the new lead.
//!
//! Owns the standby's loop and its readiness check; the lead, the layout
//! and what is written are `etcd::takeover`'s. It does not print: lines go
//! through the [`Front`].

use std::path::Path;
use std::time::{Duration, Instant};

use super::front::Front;
use super::resume::{Request, resume};
use crate::etcd::takeover::{
    self, Attempt, TakeError, Takeover, driver_words, no_run, progress_words,
};
use crate::etcd::{Driver, Lead, Store};
use crate::exit::{Exit, usage};
use crate::journal::Journal;

/// How often a standby looks at the leader key.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// `resume RUN_ID --etcd ...`: takes over a run whose driver is gone
/// (`request.journal_file` names the run, or a journal of it).
pub fn resume_from_etcd(store: Store, request: Request, front: &dyn Front) -> anyhow::Result<Exit> {
    let run = takeover::run_id(&request.journal_file.to_string_lossy());
    match takeover::try_lead(&store, &run, front.say()) {
        Ok(Attempt::Led(led)) => {
            let (lead, journal) = *led;
            continue_run(store, lead, &journal, request, front)
        }
        Ok(Attempt::Driven(d)) => Err(usage(format!(
            "run {run} is driven by {}; `rekindle standby {run} --etcd ...` waits to take it over",
            driver_words(&d)
        ))),
        Err(e) => Err(usage(e)),
    }
}

/// Writes the run's inputs and journal from etcd into the journal
/// directory and resumes from there, mirrored under the new lead.
fn continue_run(
    store: Store,
    mut lead: Lead,
    journal: &Journal,
    mut request: Request,
    front: &dyn Front,
) -> anyhow::Result<Exit> {
    let since = Instant::now();
    let dir = request.journal_dir.clone();
    directories(&dir, &journal.header.run_id).map_err(usage)?;
    request.journal_file =
        takeover::take_over(&store, &mut lead, journal, &dir, request.force, front.say())
            .map_err(usage)?;
    resume(request, Some(Takeover::new(lead, since, store)), front)
}

/// The journal directory and the inputs' directory under it.
fn directories(dir: &Path, run: &str) -> Result<(), String> {
    super::journal_dir(dir).map_err(|e| format!("{e:#}"))?;
    super::journal_dir(&takeover::inputs_dir(dir, run)).map_err(|e| format!("{e:#}"))
}

/// Whether this standby could take `run` over now: its inputs from etcd
/// loaded and prepared with this standby's settings, the very checks a
/// takeover makes (BMC credentials for a plan that powers on or
/// power-cycles, the become password file, the SSH client's known_hosts
/// and keys). A standby that would fail them when its turn came is no
/// standby: the run would be left stale, without a driver.
fn ready_to_take_over(
    store: &Store,
    run: &str,
    dir: &Path,
    become_password: bool,
    front: &dyn Front,
) -> Result<(), String> {
    let header = store
        .header(run)
        .map_err(|e| format!("--etcd: {e}"))?
        .ok_or_else(|| no_run(store, run))?;
    // Whether become needs a password only the hosts' sudo knows; the
    // driver says whether it was given one.
    if let Some(d) = store.driver(run).map_err(|e| format!("--etcd: {e}"))?
        && d.become_password
        && !become_password
    {
        return Err(format!(
            "its driver {} was given --become-password-file, and this standby was not: a takeover would find sudo asking for a password",
            driver_words(&d)
        ));
    }
    directories(dir, run)?;
    let moved = takeover::write_inputs(store, &header, dir)?;
    let inventories: Vec<String> = moved.inventories.iter().map(|f| f.path.clone()).collect();
    let loaded = front
        .load(&inventories, &moved.playbook.path, moved.limit.as_deref())
        .map_err(|e| {
            if Exit::says(&e) {
                front.say()(&format!("error: {e:#}"));
            }
            format!("run {run}: its inputs do not load here (see above)")
        })?;
    let settings = front
        .settings(&header, &loaded.inventory)
        .map_err(|e| format!("{e:#}"))?;
    super::prepare(loaded.plan, loaded.inventory, &settings)
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

/// The standby loop, for `standby` and for a second identical `run`: waits
/// while the run's driver lives, then takes it over (one standby wins; the
/// others go on waiting). `request` is the resume a takeover makes (its
/// journal file the run's id); `become_password` whether this standby was
/// given `--become-password-file`.
pub fn stand_by(
    store: Store,
    run: &str,
    mut request: Request,
    become_password: bool,
    front: &dyn Front,
) -> anyhow::Result<Exit> {
    let say = front.say();
    if let Err(e) = ready_to_take_over(&store, run, &request.journal_dir, become_password, front) {
        return Err(usage(format!(
            "refusing to stand by for run {run}: a takeover would fail: {e}\n\
             (a standby is checked when it starts with what taking the run over needs; give it what the driver has)"
        )));
    }
    let announced = store
        .standby(run)
        .map_err(|e| usage(format!("--etcd: {e}")))?;
    // Taking over happens unattended, maybe hours later: starting the standby was the confirmation.
    request.yes = true;
    let mut last_driver: Option<Driver> = None;
    let mut unreachable = false;
    loop {
        match takeover::try_lead(&store, run, say) {
            Ok(Attempt::Driven(d)) => {
                unreachable = false;
                if last_driver.as_ref() != Some(&d) {
                    let progress = store
                        .runs()
                        .ok()
                        .and_then(|rs| rs.into_iter().find(|r| r.header.run_id == run))
                        .map(|r| progress_words(&r))
                        .unwrap_or_default();
                    say(&format!(
                        "standby: run {run} is driven by {}; {progress}; waiting to take over when its lease expires",
                        driver_words(&d)
                    ));
                    last_driver = Some(d);
                }
            }
            Ok(Attempt::Led(led)) => {
                let (lead, journal) = *led;
                if crate::etcd::journal_finished(&journal.records) {
                    drop(lead);
                    say(&format!(
                        "standby: run {run} finished; nothing to take over"
                    ));
                    return Ok(Exit::Success);
                }
                drop(announced);
                say(&format!(
                    "standby: the driver's lease of run {run} expired; taking over"
                ));
                request.journal_file = run.into();
                return continue_run(store, lead, &journal, request, front);
            }
            Err(TakeError::Etcd(e)) if e.transient() => {
                if !unreachable {
                    say(&format!("standby: --etcd: {e}; still waiting"));
                    unreachable = true;
                }
            }
            Err(e) => return Err(usage(e)),
        }
        std::thread::sleep(STANDBY_POLL);
    }
}
