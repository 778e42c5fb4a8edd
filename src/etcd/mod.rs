//! A run kept in etcd (`--etcd`), so that it survives the loss of the
//! bastion that drives it: the journal mirrored record by record, the
//! inputs stored with their SHA-256, one driver at a time through a leader
//! key held with a lease, fencing, and the listing `status` shows.
//!
//! - [`client`]: etcd's v3 JSON gateway over reqwest.
//! - [`lead`]: the lease, the guard and the journal mirror (an event consumer).
//! - [`status`]: the table `rekindle status` prints.
//! - [`takeover`]: taking a run's lead (new run, takeover, standby) and
//!   writing a taken-over run's inputs and journal from etcd.
//!
//! Layout under the prefix (default `/rekindle/`):
//!
//! ```text
//! PREFIX epoch                      bumped by every leader change (collision checks are atomic with it)
//! PREFIX leader/RUN_ID              the driver (JSON), attached to its lease; create revision = fencing token
//! PREFIX standby/RUN_ID/BASTION-PID a waiting standby (JSON), attached to its own lease
//! PREFIX run/RUN_ID/header          the journal header (JSON)
//! PREFIX run/RUN_ID/pause           present while the run is paused (who and when): binds every driver
//! PREFIX run/RUN_ID/hosts/NNNNNN    the selected host names, one per line, in chunks
//! PREFIX run/RUN_ID/input/N/meta    one input file: its path and SHA-256 and chunk count
//! PREFIX run/RUN_ID/input/N/NNNNNN  its content in chunks
//! PREFIX run/RUN_ID/log/NNNNNNNNNNNN journal records, JSON lines each stamped with its token
//! ```
//!
//! Owns that layout and the rules on it (a leader key is created only
//! where none is, and every journal write is a transaction guarded by the
//! leader key's create revision). It runs on a runtime of its own, beside
//! the session's, and must not print (notices go through the function the
//! command hands in) nor touch hosts: what runs is the session's.

pub mod client;
pub mod lead;
pub mod status;
pub mod takeover;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::journal::{self, Header, Record};
use client::{Client, ClientOptions, Compare, EtcdError, Op};
use lead::{Fenced, Guard, MirrorTask};

/// Where runs are kept unless `--etcd-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/rekindle/";

/// `--etcd-ttl`'s default: the lease's time to live.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// How long `--etcd` may take to connect before the run gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a driver reads its run's pause key.
pub const PAUSE_POLL: Duration = Duration::from_secs(1);

/// Chunks of inputs and host lists: well under etcd's 1.5 MiB request limit.
const CHUNK: usize = 256 * 1024;

/// Everything `--etcd` and its companion flags say, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub client: ClientOptions,
    /// Ends with `/`.
    pub prefix: String,
    pub ttl: Duration,
    /// Who this process is to other bastions (`--bastion`, else the host name).
    pub bastion: String,
    /// This process was given `--become-password-file`: said in its leader
    /// key, so that a standby without one is refused (it could not take over).
    pub become_password: bool,
}

/// The keys of one run.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    run: String,
}

impl Keys {
    pub fn new(prefix: &str, run: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            run: run.to_owned(),
        }
    }
    fn k(&self, rest: &str) -> Vec<u8> {
        format!("{}{rest}", self.prefix).into_bytes()
    }
    pub fn leader(&self) -> Vec<u8> {
        self.k(&format!("leader/{}", self.run))
    }
    fn standby(&self) -> Vec<u8> {
        self.k(&format!("standby/{}/", self.run))
    }
    fn header(&self) -> Vec<u8> {
        self.k(&format!("run/{}/header", self.run))
    }
    pub(crate) fn pause(&self) -> Vec<u8> {
        self.k(&format!("run/{}/pause", self.run))
    }
    fn hosts(&self) -> Vec<u8> {
        self.k(&format!("run/{}/hosts/", self.run))
    }
    fn input(&self, n: usize) -> Vec<u8> {
        self.k(&format!("run/{}/input/{n}/", self.run))
    }
    fn log(&self) -> Vec<u8> {
        self.k(&format!("run/{}/log/", self.run))
    }
    pub fn segment(&self, seq: u64) -> Vec<u8> {
        let mut k = self.log();
        k.extend_from_slice(format!("{seq:012}").as_bytes());
        k
    }
}

/// The driver of a run, as its leader key says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Driver {
    pub run_id: String,
    pub plan: String,
    pub operator: String,
    pub bastion: String,
    pub pid: u32,
    /// When it took the lead (RFC 3339).
    pub since: String,
    /// It was given a become password file (never the password).
    #[serde(default)]
    pub become_password: bool,
    /// The leader key's create revision: filled in when read back.
    #[serde(default)]
    pub token: i64,
}

/// The token stamped on a journal line in etcd.
#[cfg(test)]
#[derive(Debug, Deserialize)]
pub(crate) struct Stamp {
    pub token: Option<i64>,
}

/// A run whose selected hosts overlap those of the run being started.
#[derive(Debug, Clone)]
pub struct Collision {
    pub driver: Driver,
    pub overlap: usize,
    pub sample: Vec<String>,
}

impl std::fmt::Display for Collision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.driver;
        write!(
            f,
            "refusing to start: {} selected hosts overlap live run {} (`{}`) driven by {} on bastion {} (pid {}, fencing token {}), e.g. {}",
            self.overlap,
            d.run_id,
            d.plan,
            d.operator,
            d.bastion,
            d.pid,
            d.token,
            self.sample.join(", ")
        )
    }
}

/// Another run in etcd that selected some of the same hosts (see
/// [`Store::others_with_hosts`]).
#[derive(Debug, Clone)]
pub struct OtherRun {
    pub header: Header,
    pub overlap: usize,
    pub sample: Vec<String>,
    /// Its journal records the run's end.
    pub finished: bool,
    /// A driver holds its lead now.
    pub driven: bool,
}

/// Why a run could not be started or taken in etcd.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    #[error("{0}")]
    Collision(Box<Collision>),
    #[error("{0}")]
    Input(String),
}

/// A connection to the cluster, on a runtime of its own.
pub struct Store {
    rt: tokio::runtime::Runtime,
    client: Arc<Client>,
    pub settings: Settings,
}

/// One run as etcd has it: for `status`.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub header: Header,
    pub driver: Option<Driver>,
    pub standbys: usize,
    pub done: usize,
    pub failed: usize,
    pub in_flight: usize,
    pub finished: Option<String>,
    /// Time of the last record.
    pub last_record: Option<SystemTime>,
    /// Why its log in etcd does not read back (see [`Store::journal`]).
    pub unreadable: Option<String>,
}

impl Store {
    /// Connects: one read within the connect timeout, or a clear error.
    pub fn connect(settings: Settings) -> Result<Store, EtcdError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rekindle-etcd")
            .enable_all()
            .build()
            .map_err(|e| EtcdError::Config(format!("cannot start the etcd runtime: {e}")))?;
        let client = Arc::new(Client::new(&settings.client)?);
        let epoch = format!("{}epoch", settings.prefix).into_bytes();
        let c = Arc::clone(&client);
        let endpoints = settings.client.endpoints.join(",");
        let timeout = settings.client.connect_timeout;
        rt.block_on(async move {
            match tokio::time::timeout(timeout, c.get(&epoch)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(EtcdError::Unreachable(format!(
                    "{endpoints}: no answer within {}s",
                    timeout.as_secs()
                ))),
            }
        })?;
        Ok(Store {
            rt,
            client,
            settings,
        })
    }

    fn keys(&self, run: &str) -> Keys {
        Keys::new(&self.settings.prefix, run)
    }

    /// Every live run's driver (a leader key held by a lease).
    pub fn drivers(&self) -> Result<Vec<Driver>, EtcdError> {
        let prefix = format!("{}leader/", self.settings.prefix).into_bytes();
        let kvs = self.rt.block_on(self.client.range(&prefix, true))?;
        Ok(kvs.iter().filter_map(driver_of).collect())
    }

    /// The host names a run selected.
    pub fn hosts_of(&self, run: &str) -> Result<Vec<String>, EtcdError> {
        let kvs = self
            .rt
            .block_on(self.client.range(&self.keys(run).hosts(), true))?;
        Ok(host_list(kvs.iter().map(|kv| kv.value.as_slice())))
    }

    /// The first live run (other than `me`) whose hosts overlap `hosts`.
    fn collision(&self, hosts: &HashSet<&str>, me: &str) -> Result<Option<Collision>, EtcdError> {
        for d in self.drivers()? {
            if d.run_id == me {
                continue;
            }
            let theirs = self.hosts_of(&d.run_id)?;
            let mut common: Vec<String> = theirs
                .into_iter()
                .filter(|h| hosts.contains(h.as_str()))
                .collect();
            if !common.is_empty() {
                common.sort();
                let overlap = common.len();
                common.truncate(5);
                return Ok(Some(Collision {
                    driver: d,
                    overlap,
                    sample: common,
                }));
            }
        }
        Ok(None)
    }

    /// Stores a new run (header, hosts, inputs) and takes its lead: refused
    /// when a live run selects one of `hosts`.
    pub fn begin(
        &self,
        header: &Header,
        hosts: &[&str],
        notice: fn(&str),
    ) -> Result<Lead, StartError> {
        let keys = self.keys(&header.run_id);
        let selected: HashSet<&str> = hosts.iter().copied().collect();
        if let Some(c) = self.collision(&selected, &header.run_id)? {
            return Err(StartError::Collision(Box::new(c)));
        }
        let inputs = read_inputs(header)?;
        self.rt.block_on(async {
            let c = &self.client;
            for (i, chunk) in chunks(hosts.join("\n").as_bytes()).enumerate() {
                let mut k = keys.hosts();
                k.extend_from_slice(format!("{i:06}").as_bytes());
                c.put(&k, chunk).await?;
            }
            for (n, (meta, content)) in inputs.iter().enumerate() {
                let base = keys.input(n);
                let mut count = 0;
                for (i, chunk) in chunks(content).enumerate() {
                    let mut k = base.clone();
                    k.extend_from_slice(format!("{i:06}").as_bytes());
                    c.put(&k, chunk).await?;
                    count += 1;
                }
                let meta = InputMeta {
                    chunks: count,
                    ..meta.clone()
                };
                let mut k = base;
                k.extend_from_slice(b"meta");
                c.put(&k, &serde_json::to_vec(&meta).unwrap_or_default())
                    .await?;
            }
            Ok::<_, EtcdError>(())
        })?;
        let lead = self.take_lead(header, &selected, 0, notice)?;
        let line = lead::header_line(header, lead.token);
        self.rt.block_on(self.client.put(
            &keys.header(),
            &serde_json::to_vec(header).unwrap_or_default(),
        ))?;
        // The header is segment 0, under the token like every record.
        let mut lead = lead;
        lead.first_segment(line)?;
        Ok(lead)
    }

    /// Creates the leader key where none is, atomically with the epoch the
    /// collision check read (a run started meanwhile makes it try again).
    fn take_lead(
        &self,
        header: &Header,
        hosts: &HashSet<&str>,
        next_seq: u64,
        notice: fn(&str),
    ) -> Result<Lead, StartError> {
        let keys = self.keys(&header.run_id);
        let epoch = format!("{}epoch", self.settings.prefix).into_bytes();
        let ttl = self.settings.ttl;
        for _ in 0..5 {
            let seen = self
                .rt
                .block_on(self.client.get(&epoch))?
                .map_or(0, |kv| kv.mod_revision);
            if let Some(c) = self.collision(hosts, &header.run_id)? {
                return Err(StartError::Collision(Box::new(c)));
            }
            let granted_at = Instant::now();
            let lease = self.rt.block_on(self.client.grant(ttl))?;
            let driver = Driver {
                run_id: header.run_id.clone(),
                plan: header.plan.clone(),
                operator: journal::operator(),
                bastion: self.settings.bastion.clone(),
                pid: std::process::id(),
                since: journal::rfc3339(SystemTime::now()),
                become_password: self.settings.become_password,
                token: 0,
            };
            let r = self.rt.block_on(self.client.txn(
                &[
                    Compare::Created(keys.leader(), 0),
                    Compare::Modified(epoch.clone(), seen),
                ],
                &[
                    Op::Put {
                        key: keys.leader(),
                        value: serde_json::to_vec(&driver).unwrap_or_default(),
                        lease,
                    },
                    Op::Put {
                        key: epoch.clone(),
                        value: header.run_id.as_bytes().to_vec(),
                        lease: 0,
                    },
                ],
                &[Op::Range {
                    prefix: keys.leader(),
                }],
            ))?;
            if r.succeeded {
                let guard = Guard::new(granted_at, ttl);
                let client = Arc::clone(&self.client);
                let g = Arc::clone(&guard);
                let keepalive = self.rt.spawn(lead::keep_alive(client, lease, g));
                let handle = self.rt.handle().clone();
                return Ok(Lead {
                    rt: handle,
                    client: Arc::clone(&self.client),
                    keys,
                    lease,
                    token: r.revision,
                    guard,
                    keepalive,
                    mirror: None,
                    pause: None,
                    next_seq,
                    notice,
                    ttl,
                    closed: false,
                });
            }
            let _ = self.rt.block_on(self.client.revoke(lease));
            if let Some(kv) = r.ranges.first().and_then(|r| r.first()) {
                let d = driver_of(kv).unwrap_or(driver);
                return Err(StartError::Input(format!(
                    "run {} is driven by {} on bastion {} (pid {}, fencing token {})",
                    header.run_id, d.operator, d.bastion, d.pid, d.token
                )));
            }
        }
        Err(StartError::Input(
            "other runs kept starting meanwhile; try again".into(),
        ))
    }

    /// The live run other than `header`'s own with the same playbook and
    /// inventory content and the same `--limit`: a second identical `run`
    /// becomes its standby.
    pub fn same_live_run(&self, header: &Header) -> Result<Option<Driver>, EtcdError> {
        for d in self.drivers()? {
            let Some(kv) = self
                .rt
                .block_on(self.client.get(&self.keys(&d.run_id).header()))?
            else {
                continue;
            };
            let Ok(theirs) = serde_json::from_slice::<Header>(&kv.value) else {
                continue;
            };
            let shas = |h: &Header| -> Vec<String> {
                std::iter::once(&h.playbook)
                    .chain(&h.inventories)
                    .map(|f| f.sha256.clone())
                    .collect()
            };
            if d.run_id != header.run_id
                && shas(&theirs) == shas(header)
                && theirs.limit == header.limit
            {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// A run's header, without its records.
    pub fn header(&self, run: &str) -> Result<Option<Header>, EtcdError> {
        let kv = self
            .rt
            .block_on(self.client.get(&self.keys(run).header()))?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// Every run in etcd other than `me` that selected some of `hosts`,
    /// live or not, finished or not: a new run beside a stale one, or a
    /// resume of a stale one after a newer run, acts on those hosts twice.
    pub fn others_with_hosts(
        &self,
        hosts: &HashSet<&str>,
        me: &str,
    ) -> Result<Vec<OtherRun>, EtcdError> {
        let prefix = format!("{}run/", self.settings.prefix);
        let keys = self.rt.block_on(self.client.keys(prefix.as_bytes()))?;
        let drivers: HashSet<String> = self.drivers()?.into_iter().map(|d| d.run_id).collect();
        let mut others = Vec::new();
        for key in keys.iter().filter(|k| k.ends_with(b"/header")) {
            let key = String::from_utf8_lossy(key);
            let Some(run) = key
                .strip_prefix(&prefix)
                .and_then(|k| k.strip_suffix("/header"))
            else {
                continue;
            };
            if run == me {
                continue;
            }
            let mut common: Vec<String> = self
                .hosts_of(run)?
                .into_iter()
                .filter(|h| hosts.contains(h.as_str()))
                .collect();
            if common.is_empty() {
                continue;
            }
            let Some(header) = self.header(run)? else {
                continue;
            };
            let finished = match self.journal(run) {
                Ok(Some(j)) => journal_finished(&j.records),
                _ => false,
            };
            common.sort();
            let overlap = common.len();
            common.truncate(5);
            others.push(OtherRun {
                driven: drivers.contains(run),
                header,
                overlap,
                sample: common,
                finished,
            });
        }
        Ok(others)
    }

    /// Pauses `run` (puts its pause key, saying who and when) or continues
    /// it (deletes the key). The pause lives with the run: whoever drives
    /// it, now or after a takeover, watches the key. Returns whether
    /// anything changed.
    pub fn set_paused(&self, run: &str, paused: bool, by: &str) -> Result<bool, EtcdError> {
        let key = self.keys(run).pause();
        let absent = [Compare::Created(key.clone(), 0)];
        let r = if paused {
            let value = format!("paused by {by} at {}", journal::rfc3339(SystemTime::now()));
            self.rt.block_on(self.client.txn(
                &absent,
                &[Op::Put {
                    key,
                    value: value.into_bytes(),
                    lease: 0,
                }],
                &[],
            ))?
        } else {
            let r = self
                .rt
                .block_on(self.client.txn(&absent, &[], &[Op::Delete { key }]))?;
            return Ok(!r.succeeded);
        };
        Ok(r.succeeded)
    }

    /// How many times `run`'s journal in etcd says it paused (or continued).
    pub fn acknowledgements(&self, run: &str, paused: bool) -> Result<usize, EtcdError> {
        use crate::engine::events::EventKind;
        Ok(self.journal(run)?.map_or(0, |j| {
            j.records
                .iter()
                .filter(|r| match r {
                    Record::Event {
                        kind: EventKind::RunPaused,
                        ..
                    } => paused,
                    Record::Event {
                        kind: EventKind::RunContinued,
                        ..
                    } => !paused,
                    _ => false,
                })
                .count()
        }))
    }

    /// The driver of `run`, if it is live.
    pub fn driver(&self, run: &str) -> Result<Option<Driver>, EtcdError> {
        let kv = self
            .rt
            .block_on(self.client.get(&self.keys(run).leader()))?;
        Ok(kv.as_ref().and_then(driver_of))
    }

    /// Takes the lead of an existing run whose driver is gone: refused while
    /// its leader key lives. The journal continues after its last segment.
    pub fn take_over(&self, header: &Header, notice: fn(&str)) -> Result<Lead, StartError> {
        let keys = self.keys(&header.run_id);
        let hosts = self.hosts_of(&header.run_id)?;
        let selected: HashSet<&str> = hosts.iter().map(String::as_str).collect();
        let log = self.rt.block_on(self.client.range(&keys.log(), true))?;
        let next_seq = log
            .last()
            .and_then(|kv| {
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                key.rsplit('/').next()?.parse::<u64>().ok()
            })
            .map_or(0, |n| n + 1);
        self.take_lead(header, &selected, next_seq, notice)
    }

    /// The run's input files as stored, each checked against the header's
    /// SHA-256: (the path the header names, its content). A host-list
    /// inventory has no file and is left out.
    pub fn inputs(&self, header: &Header) -> Result<Vec<(String, Vec<u8>)>, StartError> {
        let keys = self.keys(&header.run_id);
        let mut out = Vec::new();
        for (n, f) in std::iter::once(&header.playbook)
            .chain(&header.inventories)
            .enumerate()
        {
            let kvs = self.rt.block_on(self.client.range(&keys.input(n), true))?;
            let Some(meta) = kvs
                .iter()
                .find(|kv| kv.key.ends_with(b"/meta"))
                .and_then(|kv| serde_json::from_slice::<InputMeta>(&kv.value).ok())
            else {
                return Err(StartError::Input(format!(
                    "run {}: etcd holds no copy of {}",
                    header.run_id, f.path
                )));
            };
            if meta.chunks == 0 && !std::path::Path::new(&f.path).is_absolute() {
                continue;
            }
            let content: Vec<u8> = kvs
                .iter()
                .filter(|kv| !kv.key.ends_with(b"/meta"))
                .flat_map(|kv| kv.value.iter().copied())
                .collect();
            let sha = hex::encode(Sha256::digest(&content));
            if sha != f.sha256 || meta.sha256 != f.sha256 {
                return Err(StartError::Input(format!(
                    "run {}: the copy of {} in etcd does not match the header's SHA-256 ({sha} != {})",
                    header.run_id, f.path, f.sha256
                )));
            }
            out.push((f.path.clone(), content));
        }
        Ok(out)
    }

    /// Announces this process as a standby of `run` (a key on a lease of
    /// its own, kept alive until the handle is dropped), for `status`.
    pub fn standby(&self, run: &str) -> Result<Standby, EtcdError> {
        let lease = self.rt.block_on(self.client.grant(self.settings.ttl))?;
        let mut key = self.keys(run).standby();
        key.extend_from_slice(
            format!("{}-{}", self.settings.bastion, std::process::id()).as_bytes(),
        );
        let me = serde_json::json!({
            "operator": journal::operator(),
            "bastion": self.settings.bastion,
            "pid": std::process::id(),
        });
        self.rt.block_on(self.client.txn(
            &[],
            &[Op::Put {
                key,
                value: me.to_string().into_bytes(),
                lease,
            }],
            &[],
        ))?;
        let guard = Guard::new(Instant::now(), self.settings.ttl);
        let task = self
            .rt
            .spawn(lead::keep_alive(Arc::clone(&self.client), lease, guard));
        Ok(Standby {
            rt: self.rt.handle().clone(),
            client: Arc::clone(&self.client),
            lease,
            task,
        })
    }

    /// Everything etcd holds about `run`: its journal (records in order).
    /// A segment that does not read back is an error naming it: a takeover
    /// that missed an intent in it could repeat that action.
    pub fn journal(&self, run: &str) -> Result<Option<journal::Journal>, EtcdError> {
        let kvs = self
            .rt
            .block_on(self.client.range(&self.keys(run).log(), true))?;
        journal_of(&kvs).map_err(|e| {
            EtcdError::Corrupt(format!(
                "run {run}: {e}; the run cannot be taken over or reported from etcd (the bastion that drove it has the record in its local journal)"
            ))
        })
    }

    /// Every run etcd holds, newest first, with its driver and progress.
    pub fn runs(&self) -> Result<Vec<RunInfo>, EtcdError> {
        let prefix = self.settings.prefix.clone();
        let headers = self
            .rt
            .block_on(self.client.range(format!("{prefix}run/").as_bytes(), true))?;
        let drivers: BTreeMap<String, Driver> = self
            .drivers()?
            .into_iter()
            .map(|d| (d.run_id.clone(), d))
            .collect();
        let standbys = self.rt.block_on(
            self.client
                .range(format!("{prefix}standby/").as_bytes(), true),
        )?;
        let mut runs = Vec::new();
        for kv in headers.iter().filter(|kv| kv.key.ends_with(b"/header")) {
            let Ok(header) = serde_json::from_slice::<Header>(&kv.value) else {
                continue;
            };
            let journal = self.journal(&header.run_id);
            let mut info = RunInfo {
                driver: drivers.get(&header.run_id).cloned(),
                standbys: standbys
                    .iter()
                    .filter(|s| s.key.starts_with(&self.keys(&header.run_id).standby()))
                    .count(),
                done: 0,
                failed: 0,
                in_flight: 0,
                finished: None,
                last_record: None,
                unreadable: None,
                header,
            };
            match journal {
                Ok(Some(j)) => progress(&j, &mut info),
                Ok(None) => {}
                Err(EtcdError::Corrupt(why)) => info.unreadable = Some(why),
                Err(e) => return Err(e),
            }
            runs.push(info);
        }
        runs.sort_by(|a, b| b.header.started_at.cmp(&a.header.started_at));
        Ok(runs)
    }
}

/// Whether a journal's last driver recorded the run's end (a resume after
/// a run's end makes it unfinished again).
pub fn journal_finished(records: &[Record]) -> bool {
    records.iter().rev().find_map(|r| match r {
        Record::Resumed { .. } => Some(false),
        Record::Event {
            kind: crate::engine::events::EventKind::RunFinished { .. },
            ..
        } => Some(true),
        _ => None,
    }) == Some(true)
}

/// Done, failed and in-flight hosts, the outcome and the last record's time.
fn progress(j: &journal::Journal, info: &mut RunInfo) {
    use crate::report::summary::HostStatus;
    for r in &j.records {
        if let Record::Event { at, .. } = r {
            info.last_record = journal::parse_rfc3339(at).or(info.last_record);
        }
    }
    let s = crate::report::state::RunState::replay(&j.records).summary();
    for h in &s.hosts {
        match h.status {
            HostStatus::Done => info.done += 1,
            HostStatus::Failed | HostStatus::Unreachable => info.failed += 1,
            HostStatus::Running => info.in_flight += 1,
            HostStatus::Interrupted | HostStatus::Skipped => {}
        }
    }
    info.finished = s
        .outcome
        .map(|o| crate::report::summary::outcome_words(Some(o)).to_owned());
}

fn driver_of(kv: &client::Kv) -> Option<Driver> {
    let mut d: Driver = serde_json::from_slice(&kv.value).ok()?;
    d.token = kv.create_revision;
    Some(d)
}

/// The journal in a run's log segments, in key order.
fn journal_of(kvs: &[client::Kv]) -> Result<Option<journal::Journal>, String> {
    let mut records = Vec::new();
    for kv in kvs {
        let key = String::from_utf8_lossy(&kv.key);
        let lines = lead::unpack(&kv.value).ok_or_else(|| {
            format!("log segment {key} does not unpack (not gzip, or larger than any segment rekindle writes)")
        })?;
        for (n, line) in lines
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
        {
            let r = serde_json::from_slice::<Record>(line)
                .map_err(|e| format!("log segment {key}, line {}: {e}", n + 1))?;
            records.push(r);
        }
    }
    let header = match records.first() {
        Some(Record::Header(h)) => h.clone(),
        _ => return Ok(None),
    };
    Ok(Some(journal::Journal {
        header,
        records,
        torn_tail: false,
    }))
}

/// The host names of a run's host-list chunks (in key order): the chunks
/// joined back first, then split into lines. The list is cut into chunks
/// by bytes, so a name (or a character) may straddle two chunks; splitting
/// each chunk on its own made two fragments of it, and the collision check
/// missed that host.
fn host_list<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    let whole: Vec<u8> = chunks.flatten().copied().collect();
    String::from_utf8_lossy(&whole)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn chunks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let n = bytes.len().div_ceil(CHUNK).max(1);
    (0..n).map(move |i| &bytes[(i * CHUNK).min(bytes.len())..((i + 1) * CHUNK).min(bytes.len())])
}

/// One stored input file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InputMeta {
    /// The path the header names.
    path: String,
    sha256: String,
    chunks: usize,
}

/// The playbook and inventory files the header names, read and checked
/// against its hashes (an input that changed since it was hashed is refused).
fn read_inputs(header: &Header) -> Result<Vec<(InputMeta, Vec<u8>)>, StartError> {
    std::iter::once(&header.playbook)
        .chain(&header.inventories)
        .map(|f| {
            let p = std::path::Path::new(&f.path);
            if p.is_dir() {
                return Err(StartError::Input(format!(
                    "--etcd: {} is a directory inventory; etcd stores input files only (give its files with -i each)",
                    f.path
                )));
            }
            if !p.exists() {
                // A host list given as `-i 'a,b,'`: the header carries it.
                return Ok((
                    InputMeta {
                        path: f.path.clone(),
                        sha256: f.sha256.clone(),
                        chunks: 0,
                    },
                    Vec::new(),
                ));
            }
            let content = std::fs::read(p)
                .map_err(|e| StartError::Input(format!("cannot read {}: {e}", f.path)))?;
            if hex::encode(Sha256::digest(&content)) != f.sha256 {
                return Err(StartError::Input(format!(
                    "{} changed while the run started",
                    f.path
                )));
            }
            Ok((
                InputMeta {
                    path: f.path.clone(),
                    sha256: f.sha256.clone(),
                    chunks: 0,
                },
                content,
            ))
        })
        .collect()
}

/// A standby's announcement; withdrawn when dropped.
pub struct Standby {
    rt: tokio::runtime::Handle,
    client: Arc<Client>,
    lease: i64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.task.abort();
        let (client, lease) = (&self.client, self.lease);
        let _ = self.rt.block_on(async move {
            tokio::time::timeout(CONNECT_TIMEOUT, client.revoke(lease)).await
        });
    }
}

/// The lead of a run: its lease kept alive, its guard, and its mirror.
pub struct Lead {
    rt: tokio::runtime::Handle,
    client: Arc<Client>,
    keys: Keys,
    lease: i64,
    pub token: i64,
    guard: Arc<Guard>,
    keepalive: tokio::task::JoinHandle<()>,
    mirror: Option<tokio::task::JoinHandle<u64>>,
    /// The task that watches the run's pause key.
    pause: Option<tokio::task::JoinHandle<()>>,
    next_seq: u64,
    notice: fn(&str),
    ttl: Duration,
    closed: bool,
}

impl Lead {
    /// Writes `record` as the next segment under the token, before the mirror starts.
    pub fn record(&mut self, record: &Record) -> Result<(), StartError> {
        self.first_segment(lead::stamped(record, self.token))
    }

    /// How long after taking the lead a driver that took over waits before
    /// acting on an intent whose outcome is unknown: the safety margin. The
    /// rule is TTL plus margin since the old driver last renewed its lease;
    /// the lease's expiry, which let this driver take the lead, already
    /// proves the TTL has passed since then (see docs/design.md).
    pub fn hold(&self) -> Duration {
        lead::safety_margin(self.ttl)
    }

    /// Writes `line` as the next segment under the token, before any mirror.
    fn first_segment(&mut self, line: Vec<u8>) -> Result<(), StartError> {
        let r = self.rt.block_on(self.client.txn(
            &[Compare::Created(self.keys.leader(), self.token)],
            &[Op::Put {
                key: self.keys.segment(self.next_seq),
                value: lead::pack(&line),
                lease: 0,
            }],
            &[],
        ))?;
        if !r.succeeded {
            self.guard.fence(Fenced::Refused);
            return Err(StartError::Input(format!(
                "lost the lead of run {} at once",
                self.keys.run
            )));
        }
        self.next_seq += 1;
        Ok(())
    }

    /// The consumer that mirrors the journal into etcd (it goes before the
    /// local journal), and what turns true once this driver is fenced.
    pub fn mirror(&mut self) -> crate::engine::consumer::Mirror {
        let _entered = self.rt.enter();
        let (consumer, task) = MirrorTask {
            client: Arc::clone(&self.client),
            keys: self.keys.clone(),
            token: self.token,
            guard: Arc::clone(&self.guard),
            next_seq: self.next_seq,
            notice: self.notice,
        }
        .start();
        self.mirror = Some(task);
        let guard = Arc::clone(&self.guard);
        crate::engine::consumer::Mirror {
            consumer: Box::new(consumer),
            stop: self.guard.stopped(),
            may_act: crate::engine::events::MayAct(Arc::new(move || guard.valid())),
            pause: Some(self.pause_switch()),
        }
    }

    /// The run's pause switch as etcd holds it: read now (a takeover of a
    /// paused run starts paused, before any host), then every
    /// [`PAUSE_POLL`]. A read that fails leaves the switch as it was: a
    /// driver that cannot reach etcd cannot commit an intent either.
    fn pause_switch(&mut self) -> tokio::sync::watch::Receiver<bool> {
        let (client, key) = (Arc::clone(&self.client), self.keys.pause());
        let read = move || {
            let (client, key) = (Arc::clone(&client), key.clone());
            async move {
                tokio::time::timeout(CONNECT_TIMEOUT, client.get(&key))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|kv| kv.is_some())
            }
        };
        let now = self.rt.block_on(read()).unwrap_or(false);
        let (tx, rx) = tokio::sync::watch::channel(now);
        self.pause = Some(self.rt.spawn(async move {
            loop {
                tokio::time::sleep(PAUSE_POLL).await;
                if tx.is_closed() {
                    return;
                }
                if let Some(paused) = read().await {
                    tx.send_if_modified(|p| std::mem::replace(p, paused) != paused);
                }
            }
        }));
        rx
    }

    /// Why this driver stopped acting, if it did.
    pub fn fenced(&self) -> Option<Fenced> {
        self.guard.fenced()
    }

    /// The message a fenced driver exits with.
    pub fn fenced_message(&self, why: &Fenced) -> String {
        format!(
            "fenced: this driver (fencing token {}) lost the lead of run {}: {why}; it started nothing more \
             and sent nothing queued. Another bastion may be driving the run now (`rekindle status --etcd ...`); \
             if none is, take it over with `rekindle resume {} --etcd ...`",
            self.token, self.keys.run, self.keys.run
        )
    }

    /// Waits for the mirror to commit what it was given (the consumer
    /// must be gone: the session dropped it), then gives the lead up.
    pub fn close(mut self) {
        self.give_up();
    }

    fn give_up(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let mirror = self.mirror.take();
        let ttl = self.ttl;
        self.rt.block_on(async {
            if let Some(m) = mirror {
                let _ = tokio::time::timeout(ttl, m).await;
            }
        });
        self.keepalive.abort();
        if let Some(p) = self.pause.take() {
            p.abort();
        }
        if self.guard.fenced().is_none() {
            let (client, lease) = (&self.client, self.lease);
            let _ = self.rt.block_on(async move {
                tokio::time::timeout(CONNECT_TIMEOUT, client.revoke(lease)).await
            });
        }
    }
}

impl Drop for Lead {
    /// A command that returns early (a usage error after the lead was
    /// taken) gives the lead up too, so the run does not look driven.
    fn drop(&mut self) {
        self.give_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_cut_into_chunks_under_the_request_limit_and_put_back_whole() {
        let big: Vec<u8> = (0..CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        let parts: Vec<&[u8]> = chunks(&big).collect();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() <= CHUNK));
        assert_eq!(parts.concat(), big);
        // An empty file is one empty chunk: its copy exists.
        assert_eq!(chunks(b"").count(), 1);
    }

    #[test]
    fn a_host_name_straddling_a_chunk_boundary_reads_back_whole() {
        // Names of 13 bytes and a newline: 256 KiB is no multiple of 14, so
        // some name is cut in two by the boundary.
        let names: Vec<String> = (0..CHUNK / 14 + 100)
            .map(|i| format!("host-{i:08}"))
            .collect();
        let joined = names.join("\n");
        let parts: Vec<&[u8]> = chunks(joined.as_bytes()).collect();
        assert_eq!(parts.len(), 2);
        assert!(!parts[0].ends_with(b"\n") && !parts[1].starts_with(b"\n"));
        assert_eq!(host_list(parts.into_iter()), names);
        // A multi-byte character cut by the boundary survives too.
        let wide = format!("{}é\nb", "a".repeat(CHUNK - 1));
        assert_eq!(
            host_list(chunks(wide.as_bytes())),
            [format!("{}é", "a".repeat(CHUNK - 1)), "b".to_owned()]
        );
    }

    #[test]
    fn a_log_reads_back_in_segment_order_and_needs_its_header_first() {
        let header = Header {
            format: journal::FORMAT,
            run_id: "r".into(),
            plan: "p".into(),
            playbook: journal::FileHash {
                path: "/pb.yaml".into(),
                sha256: "00".into(),
            },
            inventories: Vec::new(),
            limit: None,
            parallel: None,
            rate: None,
            operator: "op".into(),
            bastion: "b".into(),
            rekindle_version: "0".into(),
            started_at: "2026-12-01T00:00:00.000Z".into(),
            stages: Vec::new(),
            etcd: None,
        };
        let resumed = Record::Resumed {
            at: "2026-12-01T00:00:01.000Z".into(),
            operator: "op".into(),
            bastion: "b2".into(),
            pid: 1,
            forced: false,
        };
        let kv = |n: u64, value: Vec<u8>| client::Kv {
            key: Keys::new("/x/", "r").segment(n),
            value,
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        };
        let mut two = lead::stamped(&resumed, 9);
        two.extend(lead::stamped(&resumed, 9));
        // A plain segment (as an older rekindle wrote) and a packed one.
        let packed = lead::pack(&two);
        assert!(
            packed.len() < two.len(),
            "{} !< {}",
            packed.len(),
            two.len()
        );
        let j = journal_of(&[kv(0, lead::header_line(&header, 7)), kv(1, packed)])
            .expect("segments that read back")
            .expect("a journal");
        assert_eq!(j.header, header);
        assert_eq!(j.records.len(), 3);
        assert!(
            journal_of(&[kv(1, lead::stamped(&resumed, 9))])
                .expect("readable")
                .is_none()
        );
        // A segment that does not read back is named, never skipped: a
        // takeover that missed an intent in it could repeat the action.
        let head = || kv(0, lead::header_line(&header, 7));
        let e = journal_of(&[head(), kv(1, b"\x1f\x8bnot gzip".to_vec())]).unwrap_err();
        assert!(e.starts_with("log segment /x/run/r/log/"), "{e}");
        assert!(e.contains("does not unpack"), "{e}");
        let e =
            journal_of(&[head(), kv(1, lead::pack(b"{\"record\":\"nonsense\"}\n"))]).unwrap_err();
        assert!(e.contains(", line 1: "), "{e}");
        // A value that claims to be packed but is not, or unpacks to more
        // than any driver writes, is no segment.
        assert!(lead::unpack(b"\x1f\x8bnot gzip").is_none());
        let bomb = lead::pack(&vec![b' '; 17 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert!(lead::unpack(&bomb).is_none());
    }
}
