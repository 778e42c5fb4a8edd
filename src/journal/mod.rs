//! The append-only run journal: one JSON line per record, mode 0600. A
//! header says what ran (plan and inventory hashes, operator, bastion); then
//! every engine event follows with its time. Intent events are written and
//! flushed (fdatasync) before their ack, with group commit so thousands of
//! hosts in flight share one flush. [`replay`] turns a journal back into
//! per-host starts for `resume`; [`lock`] stops two runs of one plan at once,
//! and [`registry`] two runs over one host on this machine; once either is
//! taken over, the writer stops (see [`Writer::fence`]).
//!
//! Owns the journal's file format, its writer thread and its reader. It must
//! not print, touch hosts, or record secrets (no environment, no credentials:
//! only what the header names and what events carry).

pub mod lock;
pub mod registry;
pub mod replay;
mod run_lock;

pub use run_lock::RunLock;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::events::{Ack, EventKind};

/// The journal's time stamps; the format is [`crate::time`]'s.
pub use crate::time::{parse_rfc3339, rfc3339};

/// Version of the record format; bumped when a reader could misread old files.
/// 2: host outcomes carry a typed `failure`, a drill marks its journal.
/// Format 1 journals still load (their failures read as kind `unknown`).
pub const FORMAT: u32 = 2;

/// What ran, where and by whom: the first record of every journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub run_id: String,
    /// The plan's name (the playbook's `name`).
    pub plan: String,
    /// The playbook path, absolute, and the SHA-256 of its content.
    pub playbook: FileHash,
    pub inventories: Vec<FileHash>,
    pub limit: Option<String>,
    /// `--parallel` and `--rate` as given, so `resume` runs the same way.
    pub parallel: Option<usize>,
    pub rate: Option<String>,
    pub operator: String,
    pub bastion: String,
    pub rekindle_version: String,
    pub started_at: String,
    /// The plan's stages in order with their host counts, so a report lists
    /// stages that never started.
    #[serde(default)]
    pub stages: Vec<StageHead>,
    /// Where the run is kept in etcd (`--etcd`): there, one driver at a time
    /// holds its lease, so a `resume` without `--etcd` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdHome>,
}

/// The etcd cluster and prefix a run is kept under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdHome {
    pub endpoints: Vec<String>,
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageHead {
    pub name: String,
    pub hosts: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

impl FileHash {
    /// Hashes the file at `path` and records it by its absolute path, so a
    /// resume from another directory finds it.
    pub fn of(path: &str) -> io::Result<FileHash> {
        if is_host_list(path) {
            return Ok(FileHash {
                path: path.to_owned(),
                sha256: hex::encode(Sha256::digest(path.as_bytes())),
            });
        }
        let abs = std::fs::canonicalize(path)?;
        Ok(FileHash {
            sha256: sha256_file(&abs)?,
            path: abs.to_string_lossy().into_owned(),
        })
    }

    /// Whether the file still has the content it had; `Err` if unreadable.
    pub fn unchanged(&self) -> io::Result<bool> {
        if is_host_list(&self.path) {
            return Ok(hex::encode(Sha256::digest(self.path.as_bytes())) == self.sha256);
        }
        Ok(sha256_file(Path::new(&self.path))? == self.sha256)
    }
}

/// An inventory given as `-i 'web1,web2,'` (Ansible's host list): no file.
fn is_host_list(path: &str) -> bool {
    path.contains(',') && !Path::new(path).exists()
}

/// A file's SHA-256; for a directory (an Ansible directory inventory), one
/// over every file below it with its relative path, so a changed
/// `host_vars/` file counts as a change too.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    if path.is_dir() {
        let mut files = Vec::new();
        tree_files(path, path, &mut files)?;
        files.sort();
        let mut hasher = Sha256::new();
        for rel in files {
            hasher.update(rel.as_os_str().as_encoded_bytes());
            hasher.update([0]);
            hasher.update(sha256_file(&path.join(&rel))?.as_bytes());
        }
        return Ok(hex::encode(hasher.finalize()));
    }
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn tree_files(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            tree_files(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Header(Header),
    /// A `resume` continued the run from here on.
    Resumed {
        at: String,
        operator: String,
        bastion: String,
        pid: u32,
        /// The operator passed `--force` over a changed playbook or inventory.
        forced: bool,
    },
    /// The run is a drill: a rehearsal on simulated hosts with time
    /// compressed `speed` times, never to be resumed against real hosts.
    Drill {
        speed: f64,
        sample: f64,
        /// What the rehearsal cannot model, one sentence each (its report
        /// says them; `report` shows them as notes).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        caveats: Vec<String>,
    },
    /// A drill's prediction, in real time, written when its rehearsal
    /// ended ([`Prediction`]).
    Predicted(Prediction),
    Event {
        /// Wall-clock time, RFC 3339 UTC with milliseconds.
        at: String,
        /// Milliseconds since this process's run started.
        ms: u64,
        #[serde(flatten)]
        kind: EventKind,
    },
}

/// What a drill predicts for the real run: its measured times multiplied
/// by its speed, except the stages it replayed at their full size (and,
/// after them, the stages that wait for them, and the whole run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The whole run, in real time.
    pub total_ms: u64,
    /// Every stage, in plan order.
    pub stages: Vec<PredictedStage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictedStage {
    pub name: String,
    /// From its start to its end, in real time; `None` when it did not end
    /// in the drill.
    pub duration_ms: Option<u64>,
    /// Set when the drill replayed the stage at its full size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Replayed>,
}

/// A stage replayed at its full size: its pace run with its hosts' times
/// drawn from the simulated hosts'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    /// The full stage's hosts, and how many the drill simulated.
    pub hosts: usize,
    pub simulated: usize,
    /// The pace the replay ran, as people read it.
    pub pace: String,
    /// The stage's time as the drill measured it, in real time.
    pub measured_ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct JournalError {
    pub path: PathBuf,
    pub kind: JournalErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalErrorKind {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("line {line}: not a journal record: {message}")]
    Corrupt { line: usize, message: String },
    #[error("empty journal (no header record)")]
    NoHeader,
    #[error("the first record is not a header")]
    HeaderFirst,
    #[error(
        "journal format {format} was written by a newer rekindle (this one reads up to format {FORMAT})"
    )]
    Newer { format: u32 },
}

impl JournalError {
    fn new(path: &Path, kind: impl Into<JournalErrorKind>) -> Self {
        JournalError {
            path: path.to_owned(),
            kind: kind.into(),
        }
    }
}

/// A journal read back: its header and every record after it (header
/// included as the first record).
#[derive(Debug, Clone)]
pub struct Journal {
    pub header: Header,
    pub records: Vec<Record>,
    /// A last line cut short (power loss, kill -9) was dropped.
    pub torn_tail: bool,
}

/// Reads a journal. A torn last line is tolerated (reported in `torn_tail`)
/// whatever byte it was cut at, even inside a multi-byte UTF-8 character;
/// a bad line anywhere else (invalid JSON or UTF-8) is corruption.
pub fn read(path: &Path) -> Result<Journal, JournalError> {
    let file = File::open(path).map_err(|e| JournalError::new(path, e))?;
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut torn_tail = false;
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        // Bytes, not `read_line`: a cut can split a character, and only a
        // complete line has to be text.
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| JournalError::new(path, e))?;
        if n == 0 {
            break;
        }
        number += 1;
        // The writer ends every record with a newline: a line without one is
        // the torn tail, even when it is a prefix that happens to parse.
        if !line.ends_with(b"\n") {
            torn_tail = true;
            break;
        }
        let corrupt = |message: String| {
            JournalError::new(
                path,
                JournalErrorKind::Corrupt {
                    line: number,
                    message,
                },
            )
        };
        let text = std::str::from_utf8(&line).map_err(|e| {
            corrupt(format!(
                "invalid UTF-8 at byte {} of the line",
                e.valid_up_to() + 1
            ))
        })?;
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        let record = serde_json::from_str::<Record>(text).map_err(|e| corrupt(e.to_string()))?;
        if let Record::Header(h) = &record
            && records.is_empty()
            && h.format > FORMAT
        {
            return Err(JournalError::new(
                path,
                JournalErrorKind::Newer { format: h.format },
            ));
        }
        records.push(record);
    }
    let header = match records.first() {
        None => return Err(JournalError::new(path, JournalErrorKind::NoHeader)),
        Some(Record::Header(h)) => h.clone(),
        Some(_) => return Err(JournalError::new(path, JournalErrorKind::HeaderFirst)),
    };
    Ok(Journal {
        header,
        records,
        torn_tail,
    })
}

/// Creates a new journal file (mode 0600, never over an existing one) and
/// writes its header, flushed.
pub fn create(path: &Path, header: &Header) -> Result<Writer, JournalError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| JournalError::new(path, e))?;
    let mut line = serde_json::to_vec(&Record::Header(header.clone()))
        .map_err(|e| JournalError::new(path, io::Error::other(e)))?;
    line.push(b'\n');
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(|e| JournalError::new(path, e))?;
    Ok(Writer::spawn(file, path))
}

/// Opens an existing journal to append to it. A torn last line is cut off
/// first, so the next record starts on a line of its own.
pub fn append(path: &Path) -> Result<Writer, JournalError> {
    let err = |e| JournalError::new(path, e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    let keep = complete_prefix(&mut file, len).map_err(err)?;
    if keep < len {
        file.set_len(keep).map_err(err)?;
        file.sync_data().map_err(err)?;
    }
    file.seek(SeekFrom::Start(keep)).map_err(err)?;
    Ok(Writer::spawn(file, path))
}

/// Length of the file up to and including its last newline.
fn complete_prefix(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// What the consumer hands the writer thread: encoded lines and the acks
/// that wait for them to be on disk.
struct Batch {
    bytes: Vec<u8>,
    acks: Vec<Ack>,
    /// From [`Writer::fence`]: what the run must still hold to write.
    fence: Option<lock::Held>,
}

/// Appends records from a dedicated thread. While that thread waits for one
/// fdatasync, new records queue up and go out together with the next one
/// (group commit): intents never wait for more than one flush in progress.
pub struct Writer {
    tx: Option<std_mpsc::Sender<Batch>>,
    thread: Option<JoinHandle<io::Result<WriteStats>>>,
    pending: Batch,
    path: PathBuf,
    /// Records handed to [`Writer::push`] so far.
    pushed: u64,
    /// Records the writer thread has on disk (written and flushed).
    durable: Arc<AtomicU64>,
}

/// A closed writer's account: how many records it was given, how many are
/// on disk, and how it ended. `pushed > recorded` means records were lost.
#[derive(Debug)]
pub struct Closed {
    pub pushed: u64,
    pub recorded: u64,
    pub result: Result<WriteStats, JournalError>,
}

/// Records without an intent are flushed at least this often, so a crash
/// loses little of what finished.
const IDLE_FLUSH: Duration = Duration::from_secs(1);

impl Writer {
    fn spawn(file: File, path: &Path) -> Writer {
        let (tx, rx) = std_mpsc::channel::<Batch>();
        let durable = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&durable);
        let thread = std::thread::Builder::new()
            .name("rekindle-journal".into())
            .spawn(move || write_loop(file, rx, &counter))
            .ok();
        Writer {
            tx: Some(tx),
            thread,
            pending: Batch {
                bytes: Vec::new(),
                acks: Vec::new(),
                fence: None,
            },
            path: path.to_owned(),
            pushed: 0,
            durable,
        }
    }

    /// Records handed to [`Writer::push`] so far; the next one gets this
    /// number (0-based, counting from this writer's first).
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Writes and flushes everything, stops the thread, and says how many
    /// records reached the disk.
    pub fn close_counted(mut self) -> Closed {
        let result = self.close();
        Closed {
            pushed: self.pushed,
            recorded: self.durable.load(Ordering::SeqCst),
            result,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// From now on, every batch is written only while the run still holds
    /// `held` (its plan lock and registry entry), checked before the write
    /// and again after the flush, before intents are acknowledged. Once
    /// another run took over, the writer stops: no record more, no ack (the
    /// engine does not act on an unacknowledged intent), and
    /// [`Writer::finish`] says why.
    pub fn fence(&mut self, held: lock::Held) {
        self.pending.fence = Some(held);
    }

    /// Queues a record. Its `ack` (intent events) is kept until the record
    /// is on disk; call [`Writer::commit`] to hand the queue to the disk.
    pub fn push(&mut self, record: &Record, ack: Option<Ack>) {
        // Records are plain data; encoding into a Vec cannot fail.
        if serde_json::to_writer(&mut self.pending.bytes, record).is_ok() {
            self.pending.bytes.push(b'\n');
            self.pushed += 1;
        }
        if let Some(ack) = ack {
            self.pending.acks.push(ack);
        }
    }

    /// Queues an engine event with its times.
    pub fn push_event(
        &mut self,
        at: SystemTime,
        elapsed: Duration,
        kind: &EventKind,
        ack: Option<Ack>,
    ) {
        let record = Record::Event {
            at: rfc3339(at),
            ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            kind: kind.clone(),
        };
        self.push(&record, ack);
    }

    /// Hands what is queued to the writer thread. Cheap: call it whenever
    /// the event channel is momentarily empty.
    pub fn commit(&mut self) {
        if self.pending.bytes.is_empty()
            && self.pending.acks.is_empty()
            && self.pending.fence.is_none()
        {
            return;
        }
        let batch = std::mem::replace(
            &mut self.pending,
            Batch {
                bytes: Vec::new(),
                acks: Vec::new(),
                fence: None,
            },
        );
        if let Some(tx) = &self.tx {
            // A dead writer thread drops the acks: the engine then does not act.
            let _ = tx.send(batch);
        }
    }

    /// Writes and flushes everything and stops the thread.
    pub fn finish(mut self) -> Result<WriteStats, JournalError> {
        self.close()
    }

    fn close(&mut self) -> Result<WriteStats, JournalError> {
        self.commit();
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            None => Err(JournalError::new(
                &self.path,
                io::Error::other("the journal writer thread did not start"),
            )),
            Some(Err(_)) => Err(JournalError::new(
                &self.path,
                io::Error::other("the journal writer thread panicked"),
            )),
            Some(Ok(r)) => r.map_err(|e| JournalError::new(&self.path, e)),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// What the writer thread did, for tests and benchmarks of group commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// fdatasync calls.
    pub flushes: u64,
    /// Intents acknowledged.
    pub intents: u64,
}

fn write_loop(
    mut file: File,
    rx: std_mpsc::Receiver<Batch>,
    durable: &AtomicU64,
) -> io::Result<WriteStats> {
    let mut stats = WriteStats::default();
    let mut dirty = false;
    // Records written since the last flush: durable once it succeeds.
    let mut unsynced = 0u64;
    let synced = |unsynced: &mut u64| {
        durable.fetch_add(std::mem::take(unsynced), Ordering::SeqCst);
    };
    let mut fence: Option<lock::Held> = None;
    let held = |fence: &Option<lock::Held>| match fence {
        Some(f) => f.check().map_err(io::Error::other),
        None => Ok(()),
    };
    loop {
        let first = match rx.recv_timeout(IDLE_FLUSH) {
            Ok(b) => b,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                if dirty {
                    file.sync_data()?;
                    synced(&mut unsynced);
                    stats.flushes += 1;
                    dirty = false;
                }
                continue;
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut acks = first.acks;
        let mut bytes = first.bytes;
        fence = first.fence.or(fence);
        // Everything queued meanwhile goes out with this flush.
        while let Ok(more) = rx.try_recv() {
            bytes.extend_from_slice(&more.bytes);
            acks.extend(more.acks);
            fence = more.fence.or(fence);
        }
        // Not a record more once another run holds the plan: it may be
        // appending to this very journal.
        held(&fence)?;
        file.write_all(&bytes)?;
        unsynced += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        dirty = true;
        if !acks.is_empty() {
            file.sync_data()?;
            synced(&mut unsynced);
            stats.flushes += 1;
            dirty = false;
            // After the flush, so that a run taking over later (and reading
            // the journal after taking the lock) sees every acknowledged
            // intent; an intent written but refused here is re-verified by
            // boot id on resume, never acted on here.
            held(&fence)?;
            stats.intents += acks.len() as u64;
            for ack in acks {
                ack.done();
            }
        }
    }
    if dirty {
        file.sync_data()?;
        synced(&mut unsynced);
        stats.flushes += 1;
    }
    Ok(stats)
}

/// The login name running this process: `$USER`, `$LOGNAME`, else the uid.
pub fn operator() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map_or_else(|_| "unknown".into(), |m| format!("uid {}", m.uid()))
}

/// This machine's host name.
pub fn bastion() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// A run id that sorts by time: `20261121T221500Z-PLAN-1a2b`.
pub fn run_id(plan: &str, at: SystemTime) -> String {
    let stamp: String = rfc3339(at)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect();
    let safe: String = plan
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("{stamp}Z-{safe}-{:04x}", rand::random::<u16>())
}

#[cfg(test)]
mod tests;
