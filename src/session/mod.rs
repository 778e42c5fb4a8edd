//! The execution pipeline `run`, `resume` and `drill` share: load the
//! inputs and plan them, prepare what a run needs (hosts in flight under the
//! descriptor limit, the SSH connector, the BMC client), open the journal
//! under the plan's lock, then execute: the engine, every consumer of its
//! events, Ctrl-C, and the outcome's exit code.
//!
//! - [`consume`]: the consumer trait and the one fan-out loop.
//! - [`control`]: `rekindle pause` / `continue` through a control file.
//! - [`descriptors`]: the one file-descriptor policy.
//! - [`drill`]: a run's rehearsal on a simulated copy of its hosts.
//! - [`front`]: what the command line lends a resume or takeover
//!   (settings, printing, confirmation, live views).
//! - [`plan_check`]: what `plan` checks of the BMC inputs without a host.
//! - [`preflight`]: `plan --preflight`'s bounded connection check.
//! - [`power_check`]: `plan --preflight`'s power state read of `power_on` hosts.
//! - [`resume`]: a resume: what it checks, narrows and reports about its
//!   reboots, and the resume itself.
//! - [`run`]: `rekindle run` once its inputs are prepared.
//! - [`takeover`]: a run taken over from etcd (`resume --etcd`) and the
//!   standby loop that waits to take it over.
//!
//! Owns the order of those steps: every input is checked before the lock is
//! taken or the journal created, and the lock is held until the journal is
//! closed. It does not print: what it has to say comes back as notes and
//! errors for the command to print (the interrupt notices go through the
//! function the command hands [`ctrl_c`]). The scheduling is the engine's,
//! the wording of progress and summary `report`'s.

pub mod consume;
pub mod control;
pub mod descriptors;
pub mod drill;
pub mod front;
pub mod plan_check;
pub mod power_check;
pub mod preflight;
pub mod resume;
pub mod run;
pub mod takeover;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::diag::{Diagnostic, Sources};
use crate::engine::{self, CancelLevel, EngineOptions, HostStart, RunOutcome};
use crate::exit::Exit;
use crate::inventory::Inventory;
use crate::journal::{self, lock};
use crate::plan::Plan;
use crate::playbook::Rate;

use crate::report::summary::Summary;
use crate::select::Selector;
use crate::transport::bmc_trust::{CERT_LABEL, Fingerprint};
use crate::transport::redfish::{Bmc, CredentialStore, Redfish, RedfishOptions};
use crate::transport::ssh::{SshConnector, SshOptions};
use consume::Consumer;

/// Inputs loaded and planned, with the warnings found on the way.
pub struct Loaded {
    pub inventory: Inventory,
    /// The playbook the plan was built from (a drill rehearses it).
    pub book: crate::playbook::Playbook,
    pub plan: Plan,
    pub warnings: Vec<Diagnostic>,
    /// `--limit`, parsed here once.
    pub limit: Option<Selector>,
}

/// Why inputs could not be loaded: diagnostics with places, or a bad `--limit`.
#[derive(Debug)]
pub enum LoadError {
    Diagnostics(Vec<Diagnostic>),
    Limit(String),
}

/// Loads inventories and the playbook and plans them. The checks against
/// hosts run once, in `plan::build`, where `--limit` is known.
pub fn load(
    inventories: &[String],
    playbook: &str,
    limit: Option<&str>,
    sources: &mut Sources,
) -> Result<Loaded, LoadError> {
    let mut warnings: Vec<Diagnostic> = Vec::new();
    let (inventory, w) =
        crate::inventory::load(inventories, sources).map_err(LoadError::Diagnostics)?;
    warnings.extend(w);
    let (book, w) =
        crate::playbook::load(playbook, None, sources).map_err(LoadError::Diagnostics)?;
    warnings.extend(w);
    let limit = limit
        .map(Selector::parse)
        .transpose()
        .map_err(|e| LoadError::Limit(format!("--limit: {e}")))?;
    let plan =
        crate::plan::build(&book, &inventory, limit.as_ref()).map_err(LoadError::Diagnostics)?;
    warnings.extend(plan.warnings.iter().cloned());
    Ok(Loaded {
        inventory,
        book,
        plan,
        warnings,
        limit,
    })
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn expand_tilde(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// The SSH flags (`-i`, `--known-hosts`, `--ssh-config`,
/// `--accept-new-host-keys`), as given.
#[derive(Debug, Clone, Default)]
pub struct SshFlags {
    pub identities: Vec<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
    pub accept_new_host_keys: bool,
}

/// Flags first, then the inventory's defaults, then OpenSSH's usual files.
pub fn ssh_options(ssh: SshFlags, inventory: &Inventory) -> SshOptions {
    let mut identities: Vec<PathBuf> = ssh.identities;
    identities.extend(inventory.identity_files.iter().map(|p| expand_tilde(p)));
    if let Some(home) = home() {
        identities.push(home.join(".ssh/id_ed25519"));
        identities.push(home.join(".ssh/id_rsa"));
    }
    let explicit = ssh
        .known_hosts
        .or_else(|| inventory.known_hosts.as_deref().map(expand_tilde));
    let known_hosts_explicit = explicit.is_some();
    let known_hosts = explicit.unwrap_or_else(|| expand_tilde("~/.ssh/known_hosts"));
    let ssh_config = ssh.ssh_config.or_else(|| {
        let default = expand_tilde("~/.ssh/config");
        default.is_file().then_some(default)
    });
    SshOptions {
        identities,
        known_hosts,
        known_hosts_explicit,
        ssh_config,
        accept_new_host_keys: ssh.accept_new_host_keys,
        use_agent: std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty()),
    }
}

/// How to reach BMCs, as the operator configured it.
#[derive(Debug, Clone, Default)]
pub struct BmcSettings {
    pub credentials: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
    pub insecure: bool,
    /// `--bmc-allow-http`: plain-http BMCs are allowed.
    pub allow_http: bool,
    /// `--bmc-known-certs` and `--accept-new-bmc-certs`.
    pub known_certs: Option<PathBuf>,
    pub accept_new_certs: bool,
}

/// A run's typed configuration, from the command line (and, for a resume,
/// the journal's header).
#[derive(Debug, Clone)]
pub struct Settings {
    pub parallel: Option<usize>,
    pub rate: Option<Rate>,
    pub ssh: SshOptions,
    pub bmc: BmcSettings,
    /// `--become-password-file` (read, and its mode checked, in [`prepare`]).
    pub become_password: Option<PathBuf>,
}

/// Everything the engine needs, checked: nothing here touched a host, took
/// a lock or created a file.
pub struct Prepared {
    pub plan: Plan,
    pub inventory: Inventory,
    pub connector: SshConnector,
    pub opts: EngineOptions,
    /// Notes for the operator (clamped parallelism).
    pub notes: Vec<String>,
}

/// Checks settings against the plan and builds the connector and BMC client.
/// An error here means exit 2 with nothing done.
pub fn prepare(plan: Plan, inventory: Inventory, settings: &Settings) -> anyhow::Result<Prepared> {
    let fit = descriptors::for_plan(&plan, settings.parallel, 0, 0);
    let connector = SshConnector::new(settings.ssh.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bmc = bmc_client(&plan, &inventory, &settings.bmc)?;
    let become_password = settings
        .become_password
        .as_deref()
        .map(crate::transport::escalation::read_password_file)
        .transpose()?;
    Ok(Prepared {
        opts: EngineOptions {
            parallel: fit.parallel,
            rate: settings.rate,
            starts: HashMap::new(),
            bmc,
            bmc_time_scale: 1.0,
            become_password,
            pause: None,
            may_act: None,
            hold_resumed_until: None,
        },
        plan,
        inventory,
        connector,
        notes: fit.notes,
    })
}

/// The BMC client when a stage reaches hosts through their BMCs
/// ([`Plan::reaches_bmcs`]: credentials are loaded only then, and every
/// host's entry is checked before any host is touched).
pub fn bmc_client(
    plan: &Plan,
    inventory: &Inventory,
    bmc: &BmcSettings,
) -> anyhow::Result<Option<Arc<dyn Bmc>>> {
    if !plan.reaches_bmcs() {
        return Ok(None);
    }
    bmc_client_for(&plan.bmc_hosts(), inventory, bmc).map(Some)
}

/// The BMC client for `hosts` (indices in the inventory), every host's
/// credentials entry, certificate pin, cipher suite and scheme checked first.
pub fn bmc_client_for(
    hosts: &[usize],
    inventory: &Inventory,
    bmc: &BmcSettings,
) -> anyhow::Result<Arc<dyn Bmc>> {
    let cleartext = plain_http_bmcs(hosts, inventory, bmc.allow_http);
    if !cleartext.is_empty() {
        anyhow::bail!(
            "{}",
            crate::diag::render_text(&Sources::new(), &cleartext).trim_end()
        );
    }
    let credentials = CredentialStore::load(bmc.credentials.as_deref())?;
    let problems = bmc_credential_problems(hosts, inventory, &credentials);
    if !problems.is_empty() {
        anyhow::bail!(
            "{}",
            crate::diag::render_text(&Sources::new(), &problems).trim_end()
        );
    }
    let spacing = bmc_spacing_problems(hosts, inventory);
    if !spacing.is_empty() {
        anyhow::bail!(
            "{}",
            crate::diag::render_text(&Sources::new(), &spacing).trim_end()
        );
    }
    let pins = match bmc_cert_pins(hosts, inventory) {
        Ok(pins) => pins,
        Err(problems) => anyhow::bail!(
            "{}",
            crate::diag::render_text(&Sources::new(), &problems).trim_end()
        ),
    };
    let opts = RedfishOptions {
        ca_bundle: bmc.ca_bundle.clone(),
        insecure: bmc.insecure,
        pins,
        known_certs: bmc.known_certs.clone(),
        accept_new_certs: bmc.accept_new_certs,
    };
    let credentials = Arc::new(credentials);
    let redfish = Redfish::new(Arc::clone(&credentials), &opts)?;
    let suites = match ipmi_suite_pins(hosts, inventory) {
        Ok(s) => s,
        Err(problems) => anyhow::bail!(
            "{}",
            crate::diag::render_text(&Sources::new(), &problems).trim_end()
        ),
    };
    let ipmi = crate::transport::ipmi::Ipmi::new(credentials).with_pinned_suites(suites);
    Ok(Arc::new(crate::transport::ipmi::Bmcs::new(redfish, ipmi)))
}

/// The `bmc_cert_sha256` pins of the hosts the plan reaches through BMCs,
/// by BMC origin; one diagnostic per host whose pin is malformed, is on a
/// BMC without TLS, or differs from another host's pin for the same BMC.
pub fn bmc_cert_pins(
    hosts: &[usize],
    inventory: &Inventory,
) -> Result<HashMap<String, Fingerprint>, Vec<Diagnostic>> {
    let mut pins: HashMap<String, (Fingerprint, String)> = HashMap::new();
    let mut problems = Vec::new();
    for h in hosts.iter().filter_map(|&i| inventory.hosts.get(i)) {
        let Some(pin) = h.label(CERT_LABEL) else {
            continue;
        };
        let mut problem = |what: String| {
            problems.push(Diagnostic::error(
                "bad-bmc-cert-pin",
                h.span.clone(),
                format!("host {}: label `{CERT_LABEL}`: {what}", h.name),
            ));
        };
        let fp = match Fingerprint::parse(pin) {
            Ok(fp) => fp,
            Err(e) => {
                problem(e);
                continue;
            }
        };
        let Some(bmc) = h
            .bmc_address()
            .map(crate::transport::redfish::Endpoint::from)
        else {
            continue;
        };
        if !bmc.as_str().starts_with("https://") {
            problem(format!(
                "BMC `{bmc}` does not use TLS: there is no certificate to pin"
            ));
            continue;
        }
        match pins.get(&bmc.origin()) {
            Some((other, by)) if *other != fp => problem(format!(
                "pins {fp} for BMC {}, but host {by} pins {other}",
                bmc.origin()
            )),
            Some(_) => {}
            None => {
                pins.insert(bmc.origin(), (fp, h.name.clone()));
            }
        }
    }
    if problems.is_empty() {
        Ok(pins.into_iter().map(|(o, (fp, _))| (o, fp)).collect())
    } else {
        Err(problems)
    }
}

/// The `bmc_spacing` labels of the hosts the plan reaches through BMCs;
/// one diagnostic per host whose label is not a duration within the
/// bounds, or whose BMC's other hosts say otherwise (a host without the
/// label means the default: which host reached the BMC first must not
/// decide its spacing).
pub fn bmc_spacing_problems(hosts: &[usize], inventory: &Inventory) -> Vec<Diagnostic> {
    use crate::engine::power::{SPACING_LABEL, parse_spacing};
    use crate::transport::redfish::Endpoint;
    let mut seen: HashMap<Endpoint, (Option<std::time::Duration>, String)> = HashMap::new();
    let mut problems = Vec::new();
    for h in hosts.iter().filter_map(|&i| inventory.hosts.get(i)) {
        let problem = |what: String| {
            Diagnostic::error(
                "bad-bmc-spacing",
                h.span.clone(),
                format!("host {}: label `{SPACING_LABEL}`: {what}", h.name),
            )
        };
        let spacing = match h.label(SPACING_LABEL).map(parse_spacing) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                problems.push(problem(e));
                continue;
            }
        };
        let Some(bmc) = h.bmc_address().map(Endpoint::from) else {
            continue;
        };
        let shown = |d: Option<std::time::Duration>| match d {
            Some(d) => crate::playbook::units::humane(d),
            None => "unset (1s)".to_owned(),
        };
        match seen.get(&bmc) {
            Some((other, by)) if *other != spacing => problems.push(problem(format!(
                "{} on BMC {bmc}, but host {by} on the same BMC has {}: give every host of \
                 one BMC the same `{SPACING_LABEL}`",
                shown(spacing),
                shown(*other)
            ))),
            Some(_) => {}
            None => {
                seen.insert(bmc, (spacing, h.name.clone()));
            }
        }
    }
    problems
}

/// The `ipmi_cipher_suite` labels of the hosts the plan reaches through
/// BMCs, by IPMI target; one diagnostic per host whose label is not a
/// cipher suite (0-17), is on a BMC that is not `ipmi://`, or differs from
/// another host's for the same BMC.
pub fn ipmi_suite_pins(
    hosts: &[usize],
    inventory: &Inventory,
) -> Result<HashMap<String, u8>, Vec<Diagnostic>> {
    use crate::transport::ipmi::SUITE_LABEL;
    let mut pins: HashMap<String, (u8, String)> = HashMap::new();
    let mut problems = Vec::new();
    for h in hosts.iter().filter_map(|&i| inventory.hosts.get(i)) {
        let Some(value) = h.label(SUITE_LABEL) else {
            continue;
        };
        let mut problem = |what: String| {
            problems.push(Diagnostic::error(
                "bad-ipmi-cipher-suite",
                h.span.clone(),
                format!("host {}: label `{SUITE_LABEL}`: {what}", h.name),
            ));
        };
        let Some(suite) = value.trim().parse::<u8>().ok().filter(|s| *s <= 17) else {
            problem(format!(
                "`{value}` is not an IPMI cipher suite (0-17; 17 or 3 on most BMCs)"
            ));
            continue;
        };
        let Some(target) = h.bmc_address().and_then(|b| b.ipmi()) else {
            problem("the host's `bmc` is not an ipmi:// address".to_owned());
            continue;
        };
        let key = target.to_string();
        match pins.get(&key) {
            Some((other, by)) if *other != suite => problem(format!(
                "pins suite {suite} for BMC {key}, but host {by} pins {other}"
            )),
            Some(_) => {}
            None => {
                pins.insert(key, (suite, h.name.clone()));
            }
        }
    }
    if problems.is_empty() {
        Ok(pins.into_iter().map(|(k, (s, _))| (k, s)).collect())
    } else {
        Err(problems)
    }
}

/// The label that lets one host's BMC be reached over plain http (the
/// simulator's inventory sets it: its BMCs live on loopback).
pub const ALLOW_HTTP_LABEL: &str = "bmc_allow_http";

/// One diagnostic per host a power_on step reaches whose `bmc` label is a
/// plain `http://` URL: the BMC password would cross the network in
/// cleartext. Errors unless `allowed` (`--bmc-allow-http`) or the host's
/// `bmc_allow_http: "true"` label says so; `plan` shows them as warnings.
pub fn plain_http_bmcs(hosts: &[usize], inventory: &Inventory, allowed: bool) -> Vec<Diagnostic> {
    if allowed {
        return Vec::new();
    }
    hosts
        .iter()
        .filter_map(|&i| inventory.hosts.get(i))
        .filter(|h| h.label(ALLOW_HTTP_LABEL) != Some("true"))
        .filter_map(|h| {
            // The label as written, for the message; the address decides.
            let bmc = h.label("bmc")?;
            let http = h
                .bmc_address()
                .is_some_and(crate::inventory::BmcAddress::is_plain_http);
            http.then(|| {
                Diagnostic::error(
                    "plain-http-bmc",
                    h.span.clone(),
                    format!(
                        "host {}: BMC `{bmc}` is plain http, so its password would cross the network in cleartext",
                        h.name
                    ),
                )
                .with_help(format!(
                    "use https (with --bmc-ca or --bmc-insecure for a self-signed certificate), \
                     or pass --bmc-allow-http (or label the host `{ALLOW_HTTP_LABEL}: \"true\"`)"
                ))
            })
        })
        .collect()
}

/// One error per host a power_on step reaches whose `bmc_credentials`
/// entry (or the default account) the credentials do not hold, at the
/// host's place in the inventory.
pub fn bmc_credential_problems(
    hosts: &[usize],
    inventory: &Inventory,
    credentials: &CredentialStore,
) -> Vec<Diagnostic> {
    hosts
        .iter()
        .filter_map(|&i| inventory.hosts.get(i))
        .filter_map(|h| {
            let e = credentials.for_host(h).err()?;
            Some(Diagnostic::error(
                "missing-bmc-credentials",
                h.span.clone(),
                format!("host {}: {e}", h.name),
            ))
        })
        .collect()
}

/// The header of a new run's journal: what ran, from which files, by whom.
pub fn header(
    plan: &Plan,
    playbook: &str,
    inventories: &[String],
    limit: Option<&str>,
    parallel: Option<usize>,
    rate: Option<&str>,
    now: SystemTime,
) -> anyhow::Result<journal::Header> {
    let hash = |p: &str| {
        journal::FileHash::of(p).with_context(|| format!("cannot hash {p} for the journal"))
    };
    Ok(journal::Header {
        format: journal::FORMAT,
        run_id: journal::run_id(&plan.name, now),
        plan: plan.name.clone(),
        playbook: hash(playbook)?,
        inventories: inventories
            .iter()
            .map(|p| hash(p))
            .collect::<anyhow::Result<_>>()?,
        limit: limit.map(str::to_owned),
        parallel,
        rate: rate.map(str::to_owned),
        operator: journal::operator(),
        bastion: journal::bastion(),
        rekindle_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: journal::rfc3339(now),
        stages: plan
            .stages
            .iter()
            .map(|s| journal::StageHead {
                name: s.name.clone(),
                hosts: s.hosts.len(),
            })
            .collect(),
        etcd: None,
    })
}

/// A journal open for writing, and the plan's lock (with the run's registry
/// entry) when the run holds one; the writer then stops once either is
/// taken over by another run.
pub struct Opened {
    pub writer: journal::Writer,
    pub path: PathBuf,
    pub lock: Option<journal::RunLock>,
    /// What taking the lock found (a stale lock taken over, ...).
    pub notes: Vec<String>,
}

/// Whether a new journal is taken under the plan's lock (and the hosts of
/// `plan` registered in the per-user run registry). A drill touches no real
/// host, so it writes its journal without locking the plan.
#[derive(Debug, Clone, Copy)]
pub enum Locking<'a> {
    Lock {
        breaking: lock::Break,
        plan: &'a Plan,
        inventory: &'a Inventory,
    },
    None,
}

/// Creates the journal directory (0700: journals name hosts and commands).
/// An existing one that every user may write to is refused: anyone could
/// create the run's pause file there (and pause it), or plant a lock.
pub fn journal_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the journal directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the journal directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 {
        anyhow::bail!(
            "the journal directory {} is writable by every user (mode {:o}): any of them could pause the run              (its control file lives there) or plant a lock; use a directory of your own (`chmod o-w` it,              or give another --journal)",
            dir.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// Takes the plan's lock in `dir` for `journal_file`, then registers the
/// hosts `plan` selects in the per-user run registry (refused when a live
/// run selects one of them, whatever its journal directory).
fn take_lock(
    dir: &Path,
    playbook_abs: &str,
    journal_file: &Path,
    breaking: lock::Break,
    (plan, inventory): (&Plan, &Inventory),
    led_in_etcd: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<journal::RunLock> {
    let flag = match breaking {
        lock::Break::Live => "--break-live-lock",
        _ => "--break-lock",
    };
    let path = lock::lock_path(dir, playbook_abs);
    let l = lock::acquire(&path, journal_file, breaking)?;
    match &l.taken {
        lock::Taken::Free => {}
        lock::Taken::Stale(h) => notes.push(format!(
            "note: took over a stale lock of a process that is gone: {h}"
        )),
        lock::Taken::Broken(Some(h)) => notes.push(format!("note: {flag}: took the lock from {h}")),
        lock::Taken::Broken(None) => {
            notes.push(format!("note: {flag}: replaced an unreadable lock"))
        }
    }
    let hosts = plan
        .stages
        .iter()
        .flat_map(|s| s.hosts.iter())
        .filter_map(|&h| inventory.hosts.get(h))
        .map(|h| h.name.as_str());
    let run = journal_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned());
    let claim = journal::registry::Claim {
        plan: &plan.name,
        run: run.as_deref(),
        led_in_etcd,
    };
    let registry = journal::registry::register_run(
        &journal::registry::dir()?,
        claim,
        hosts,
        &lock::Holder::me(journal_file),
        breaking,
    )?;
    for r in &registry.replaced {
        match r {
            journal::registry::Replaced::Broken(o) => notes.push(format!(
                "note: {flag}: took over the hosts of a live run: {o}"
            )),
            journal::registry::Replaced::TakenOver(h) => notes.push(format!(
                "note: this process took the run's lead in etcd; the run's previous driver on this machine ({h}) gives way here too, and stops at its next intent if it wakes"
            )),
            journal::registry::Replaced::Stale(_) => {}
        }
    }
    Ok(journal::RunLock { plan: l, registry })
}

/// A new run's journal in `dir`, named after its run id, with `extra`
/// records after the header (a drill's marker).
pub fn open_new(
    dir: &Path,
    header: &journal::Header,
    locking: Locking,
    extra: &[journal::Record],
) -> anyhow::Result<Opened> {
    journal_dir(dir)?;
    let path = dir.join(format!("{}.jsonl", header.run_id));
    let mut notes = Vec::new();
    let lock = match locking {
        Locking::Lock {
            breaking,
            plan,
            inventory,
        } => Some(take_lock(
            dir,
            &header.playbook.path,
            &path,
            breaking,
            (plan, inventory),
            false,
            &mut notes,
        )?),
        Locking::None => None,
    };
    let mut writer = journal::create(&path, header)?;
    if let Some(l) = &lock {
        writer.fence(l.held());
    }
    for r in extra {
        writer.push(r, None);
    }
    writer.commit();
    Ok(Opened {
        writer,
        path,
        lock,
        notes,
    })
}

/// Takes the plan's lock for an existing journal (the journal's directory
/// holds it, whatever `--journal` says); the journal is opened for
/// appending later, by [`open_append`], once the operator confirmed.
/// `led_in_etcd`: this process took the run's lead in etcd, which decides
/// who drives it; the same run's entry in this machine's registry (its
/// previous driver, stopped here) gives way.
pub fn lock_existing(
    journal_file: &Path,
    playbook_abs: &str,
    breaking: lock::Break,
    selected: (&Plan, &Inventory),
    led_in_etcd: bool,
) -> anyhow::Result<(journal::RunLock, Vec<String>)> {
    let dir = journal_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    journal_dir(&dir)?;
    let mut notes = Vec::new();
    let l = take_lock(
        &dir,
        playbook_abs,
        journal_file,
        breaking,
        selected,
        led_in_etcd,
        &mut notes,
    )?;
    Ok((l, notes))
}

/// An existing journal opened for appending under a lock already held.
pub fn open_append(journal_file: &Path, lock: journal::RunLock) -> anyhow::Result<Opened> {
    let mut writer = journal::append(journal_file)
        .with_context(|| format!("cannot append to {}", journal_file.display()))?;
    writer.fence(lock.held());
    Ok(Opened {
        writer,
        path: journal_file.to_owned(),
        lock: Some(lock),
        notes: Vec::new(),
    })
}

/// How the live display reads.
#[derive(Debug, Clone, Copy)]
pub enum Display {
    /// Bars on a terminal, lines otherwise (run, resume).
    Progress { quiet: bool, verbose: bool },
    /// The plain printer on stdout, durations multiplied by `scale` (drill).
    Plain {
        quiet: bool,
        verbose: bool,
        scale: f64,
    },
}

/// One execution: what was prepared, where it is recorded, how it shows.
pub struct Execution {
    pub prepared: Prepared,
    pub journal: Option<Opened>,
    /// The run's state, its summary already fed with what happened before
    /// (a resume's journal): the execution feeds it once per event; the
    /// progress display, the live views and the summary read it.
    pub state: crate::report::state::Shared,
    /// Hosts a resumed run skips because they finished before.
    pub already_done: usize,
    /// Per (stage, host): where to start (resume).
    pub starts: HashMap<(usize, usize), HostStart>,
    pub display: Display,
    /// More consumers, after the journal, display and summary.
    pub consumers: Vec<Box<dyn Consumer>>,
    /// A recorder that keeps the journal elsewhere too (etcd, `--etcd`).
    pub mirror: Option<Mirror>,
}

pub use crate::engine::consumer::Mirror;

/// What an execution ended with.
pub struct Finished {
    pub outcome: RunOutcome,
    pub exit: Exit,
    pub summary: Summary,
    pub journal: Option<PathBuf>,
    /// Time from the engine's start to its end.
    pub elapsed: Duration,
    /// Consumers that failed, a journal that could not close.
    pub warnings: Vec<String>,
    /// Records the journal could not write (a full disk, say).
    pub lost: Option<Lost>,
}

/// Runs an execution on a runtime of its own, with Ctrl-C handling.
pub fn execute(execution: Execution, notice: fn(&str)) -> anyhow::Result<Finished> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let finished = runtime.block_on(async move {
        let (cancel, handler) = ctrl_c(notice);
        let finished = execute_in(execution, cancel).await;
        handler.abort();
        finished
    });
    // Connections still closing must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(finished)
}

/// Runs an execution on the current runtime; `cancel` says when to drain or stop.
pub async fn execute_in(execution: Execution, cancel: watch::Receiver<CancelLevel>) -> Finished {
    let Execution {
        prepared,
        journal,
        state,
        already_done,
        starts,
        display,
        consumers: extra,
        mirror,
    } = execution;
    let Prepared {
        plan,
        inventory,
        connector,
        mut opts,
        notes: _,
    } = prepared;
    opts.starts = starts;
    let stage_sizes: Vec<(String, usize)> = plan
        .stages
        .iter()
        .map(|s| (s.name.clone(), s.hosts.len()))
        .collect();
    {
        let mut s = crate::report::state::lock(&state);
        s.summary.stages(stage_sizes.clone());
        s.totals = crate::report::progress::Totals::new(stage_sizes, already_done)
            .with_plan(&plan, &opts.starts);
    }
    let (writer, journal_path, lock) = match journal {
        Some(o) => (Some(Arc::new(Mutex::new(o.writer))), Some(o.path), o.lock),
        None => (None, None, None),
    };
    // A run with a journal can be paused through the control file beside it.
    let pause = journal_path
        .as_deref()
        .map(|j| control::watch(control::pause_file(j)));
    opts.pause = pause.as_ref().map(|(rx, _)| rx.clone());
    let outcomes: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let mut consumers: Vec<Box<dyn Consumer>> = Vec::new();
    let mut stop = None;
    let mut pause_join = None;
    if let Some(m) = mirror {
        consumers.push(m.consumer);
        stop = Some(m.stop);
        opts.may_act = Some(m.may_act);
        if let Some(kept) = m.pause {
            opts.pause = Some(match opts.pause.take() {
                Some(local) => {
                    let (either, task) = control::either(local, kept);
                    pause_join = Some(task);
                    either
                }
                None => kept,
            });
        }
    }
    // The journal first: an intent is on disk before anyone else hears of it.
    if let Some(w) = &writer {
        consumers.push(Box::new(consume::JournalConsumer::new(
            Arc::clone(w),
            Arc::clone(&outcomes),
        )));
    }
    // The state before the display, which reads it.
    consumers.push(Box::new(consume::StateConsumer(Arc::clone(&state))));
    match display {
        Display::Progress { quiet, verbose } => {
            consumers.push(Box::new(consume::ProgressConsumer(
                crate::report::progress::Progress::new(quiet, verbose, Arc::clone(&state)),
            )));
        }
        Display::Plain {
            quiet,
            verbose,
            scale,
        } => consumers.push(Box::new(consume::PlainConsumer::new(
            crate::report::plain::Plain::new(std::io::stdout(), quiet, verbose),
            scale,
        ))),
    }
    consumers.extend(extra);

    // A run whose lock another run took over starts no new host (its
    // journal already refuses every intent).
    let (cancel, watcher) = match &lock {
        Some(l) => {
            let (c, w) = drain_when_lost(l.held(), cancel);
            (c, Some(w))
        }
        None => (cancel, None),
    };
    let (cancel, stopper) = match stop {
        Some(s) => {
            let (c, w) = abort_when(s, cancel);
            (c, Some(w))
        }
        None => (cancel, None),
    };
    let (tx, rx) = mpsc::channel(4096);
    let fan = tokio::spawn(consume::fan_out(rx, consumers));
    let clock = tokio::time::Instant::now();
    let outcome = engine::run(
        Arc::new(plan),
        Arc::new(inventory),
        Arc::new(connector),
        opts,
        tx,
        cancel,
    )
    .await;
    for w in [watcher, stopper].into_iter().flatten() {
        w.abort();
    }
    let elapsed = clock.elapsed();
    if let Some((_, watching)) = pause {
        watching.abort();
    }
    if let Some(joining) = pause_join {
        joining.abort();
    }
    let mut lost = None;
    let mut warnings = match fan.await {
        Ok(w) => w,
        Err(e) => vec![format!("the event consumers failed: {e}")],
    };
    if let Some(w) = writer {
        match Arc::try_unwrap(w) {
            Ok(w) => {
                let w = w
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // The engine already acted on every acknowledged intent; a
                // failure loses later records, and the run must say whose.
                let closed = w.close_counted();
                let outcomes = outcomes
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                lost = lost_records(&closed, &outcomes);
                if let (None, Err(e)) = (&lost, &closed.result) {
                    warnings.push(format!("journal: {e}"));
                }
            }
            Err(_) => warnings.push("journal: still in use after the run".to_owned()),
        }
    }
    drop(lock);
    let summary = crate::report::state::lock(&state).summary();
    // A run whose journal lost an outcome must not look done: `report` and
    // `resume` would not know what happened to those hosts.
    let exit = match (Exit::from(outcome), &lost) {
        (Exit::Success | Exit::Failures, Some(_)) => Exit::JournalIncomplete,
        (exit, _) => exit,
    };
    Finished {
        outcome,
        exit,
        summary,
        journal: journal_path,
        elapsed,
        warnings,
        lost,
    }
}

/// What a journal that could not write everything lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Records given to the journal and not on disk.
    pub records: u64,
    /// The first of them, counting this process's records from 1.
    pub from: u64,
    /// Hosts whose outcome is among them, in the order they finished.
    pub outcomes: Vec<String>,
    /// Why the journal stopped.
    pub error: String,
}

impl Lost {
    /// For the operator: which records, whose outcomes, what to do.
    pub fn message(&self) -> String {
        let hosts = match self.outcomes.len() {
            0 => "no host outcome among them".to_owned(),
            n => {
                let shown: Vec<&str> = self.outcomes.iter().take(10).map(String::as_str).collect();
                let more = n.saturating_sub(shown.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("the outcomes of {n} hosts: {}{more}", shown.join(", "))
            }
        };
        format!(
            "the journal could not record {} records (this run's record {} on: {}); lost: {hosts}. \
             The hosts may have finished, but the journal, `report` and `resume` do not know it; \
             check them before running again (resume re-verifies reboots by boot id)",
            self.records, self.from, self.error
        )
    }
}

/// The records a closed journal lost, and whose outcomes they held.
fn lost_records(closed: &journal::Closed, outcomes: &[(u64, String)]) -> Option<Lost> {
    if closed.recorded >= closed.pushed && closed.result.is_ok() {
        return None;
    }
    let error = match &closed.result {
        Err(e) => e.to_string(),
        Ok(_) => "records missing".to_owned(),
    };
    if closed.recorded >= closed.pushed {
        return None;
    }
    Some(Lost {
        records: closed.pushed - closed.recorded,
        from: closed.recorded + 1,
        outcomes: outcomes
            .iter()
            .filter(|(n, _)| *n >= closed.recorded)
            .map(|(_, h)| h.clone())
            .collect(),
        error,
    })
}

/// How often a locked run checks that its lock is still its own, besides
/// the journal's check at every record.
const LOCK_CHECK: Duration = Duration::from_secs(1);

/// `outer`'s cancel levels, raised to `Drain` once `held` fails its check:
/// a run taken over by another starts no new host.
fn drain_when_lost(
    held: lock::Held,
    mut outer: watch::Receiver<CancelLevel>,
) -> (watch::Receiver<CancelLevel>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(*outer.borrow());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(LOCK_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut outer_open = true;
        let mut lost = false;
        loop {
            tokio::select! {
                changed = outer.changed(), if outer_open => {
                    outer_open = changed.is_ok();
                    let level = *outer.borrow();
                    tx.send_if_modified(|l| {
                        let raise = level > *l;
                        if raise {
                            *l = level;
                        }
                        raise
                    });
                }
                _ = tick.tick(), if !lost => {
                    if held.check().is_err() {
                        lost = true;
                        tx.send_if_modified(|l| {
                            let raise = *l < CancelLevel::Drain;
                            if raise {
                                *l = CancelLevel::Drain;
                            }
                            raise
                        });
                    }
                }
                // Kept open until the engine is done with it (the task is
                // aborted then): a closed channel would read as a change.
                () = tx.closed() => break,
            }
        }
    });
    (rx, task)
}

/// `outer`'s cancel levels, raised to `Abort` once `stop` turns true.
fn abort_when(
    mut stop: watch::Receiver<bool>,
    mut outer: watch::Receiver<CancelLevel>,
) -> (watch::Receiver<CancelLevel>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(*outer.borrow());
    let raise = move |tx: &watch::Sender<CancelLevel>, level: CancelLevel| {
        tx.send_if_modified(|l| {
            let up = level > *l;
            if up {
                *l = level;
            }
            up
        });
    };
    if *stop.borrow() {
        raise(&tx, CancelLevel::Abort);
    }
    let task = tokio::spawn(async move {
        let (mut outer_open, mut stop_open) = (true, true);
        loop {
            tokio::select! {
                changed = outer.changed(), if outer_open => {
                    outer_open = changed.is_ok();
                    let level = *outer.borrow();
                    raise(&tx, level);
                }
                changed = stop.changed(), if stop_open => {
                    stop_open = changed.is_ok();
                    if *stop.borrow() {
                        raise(&tx, CancelLevel::Abort);
                    }
                }
                () = tx.closed() => break,
            }
        }
    });
    (rx, task)
}

/// Watches Ctrl-C and SIGTERM: the first drains, the second aborts (run,
/// resume and drill alike; a service manager's SIGTERM is an operator's
/// first Ctrl-C). `notice` tells the operator what each one does.
pub fn ctrl_c(notice: fn(&str)) -> (watch::Receiver<CancelLevel>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(CancelLevel::None);
    let handler = tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut interrupted = async || {
            let term = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.is_ok(),
                r = term => r.is_some(),
            }
        };
        if !interrupted().await {
            return;
        }
        notice(
            "\ninterrupt: starting no new hosts; waiting for hosts in flight to finish (Ctrl-C again to stop now)",
        );
        let _ = tx.send(CancelLevel::Drain);
        if !interrupted().await {
            return;
        }
        notice("\ninterrupt: stopping now; hosts in flight are recorded as interrupted");
        let _ = tx.send(CancelLevel::Abort);
    });
    (rx, handler)
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_journal_directory_every_user_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = journal_dir(&shared).unwrap_err().to_string();
        assert!(e.contains("writable by every user (mode 1777)"), "{e}");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        journal_dir(&shared).unwrap();
        let fresh = dir.path().join("new");
        journal_dir(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_whose_lock_is_taken_over_starts_no_new_host() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("run.jsonl");
        let me = lock::Holder::me(&journal);
        let take = |breaking| journal::RunLock {
            plan: lock::acquire(&dir.path().join("p.lock"), &journal, breaking).unwrap(),
            registry: journal::registry::register(
                &dir.path().join("runs"),
                "p",
                ["h1"],
                &me,
                breaking,
            )
            .unwrap(),
        };
        let old = take(lock::Break::No);
        let (_outer_tx, outer) = watch::channel(CancelLevel::None);
        let (mut cancel, task) = drain_when_lost(old.held(), outer);
        tokio::time::sleep(LOCK_CHECK * 3).await;
        assert_eq!(*cancel.borrow_and_update(), CancelLevel::None);
        let _new = take(lock::Break::Live);
        tokio::time::timeout(LOCK_CHECK * 3, cancel.changed())
            .await
            .expect("noticed within a few checks")
            .unwrap();
        assert_eq!(*cancel.borrow(), CancelLevel::Drain);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn ctrl_c_levels_pass_through_the_lock_watch() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("run.jsonl");
        let l = journal::RunLock {
            plan: lock::acquire(&dir.path().join("p.lock"), &journal, lock::Break::No).unwrap(),
            registry: journal::registry::register(
                &dir.path().join("runs"),
                "p",
                ["h1"],
                &lock::Holder::me(&journal),
                lock::Break::No,
            )
            .unwrap(),
        };
        let (outer_tx, outer) = watch::channel(CancelLevel::None);
        let (mut cancel, task) = drain_when_lost(l.held(), outer);
        outer_tx.send(CancelLevel::Abort).unwrap();
        tokio::time::timeout(LOCK_CHECK, cancel.changed())
            .await
            .expect("forwarded")
            .unwrap();
        assert_eq!(*cancel.borrow(), CancelLevel::Abort);
        task.abort();
    }
}
