//! Holding the lead of a run: the lease kept alive, the guard that says
//! whether this driver may still act, and the journal mirror, the event
//! consumer that group-commits records into etcd in transactions guarded by
//! the leader key's create revision (the fencing token).
//!
//! Owns the rule "no intent is acknowledged unless it is committed in etcd
//! (and on the local disk) while this driver provably still holds its
//! lease". It must not print (stalls and recoveries go through the
//! `notice` function the command hands in) nor decide the exit code.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::Keys;
use super::client::{Client, Compare, Op};
use crate::engine::consumer::{Consumer, Seen};
use crate::engine::events::Ack;
use crate::journal::{self, Record};

/// A segment (one etcd value, one transaction) holds at most this much
/// JSON before it is packed: well under etcd's default 1.5 MiB request
/// limit even if it did not compress at all.
pub(crate) const MAX_SEGMENT: usize = 512 * 1024;

/// The most a packed segment may unpack to: a little past the largest one
/// a driver writes (one line may overshoot [`MAX_SEGMENT`]), so a hostile
/// value cannot blow up in memory.
const MAX_UNPACKED: u64 = 16 * 1024 * 1024;

/// The shortest time from one transaction's start to the next one's: what
/// comes meanwhile goes in one transaction. Each costs every member about
/// a millisecond of CPU and an fsync whatever its size, and intents come
/// all the time in a large run, so committing at once would mean one
/// transaction per round trip (BENCHMARKS.md 9d). An intent waits at most
/// this much longer for its acknowledgement.
const COMMIT_GAP: Duration = Duration::from_millis(50);

/// A log segment as stored: its JSON lines gzipped (a journal's lines
/// repeat themselves; about a tenth of the bytes for every member to
/// replicate, fsync and keep). `etcdctl get KEY --print-value-only | zcat`
/// reads one.
pub(crate) fn pack(lines: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(lines.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(lines);
    gz.finish().unwrap_or_default()
}

/// A stored segment's JSON lines: a packed one unpacked, a plain one (as an
/// older rekindle wrote them) as it is. `None`: a packed value that does
/// not unpack, or unpacks past [`MAX_UNPACKED`].
pub(crate) fn unpack(value: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read as _;
    if !value.starts_with(&[0x1f, 0x8b]) {
        return Some(std::borrow::Cow::Borrowed(value));
    }
    let mut lines = Vec::new();
    flate2::read::GzDecoder::new(value)
        .take(MAX_UNPACKED + 1)
        .read_to_end(&mut lines)
        .ok()?;
    (lines.len() as u64 <= MAX_UNPACKED).then_some(std::borrow::Cow::Owned(lines))
}

/// Why a driver stopped acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fenced {
    /// No keepalive succeeded for this long (more than TTL minus the margin).
    KeepaliveLate(Duration),
    /// etcd said the lease is gone.
    LeaseExpired,
    /// A guarded write was refused: the leader key is not ours any more.
    Refused,
}

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fenced::KeepaliveLate(d) => write!(
                f,
                "no lease keepalive succeeded for {:.1}s, more than the lease TTL minus the safety margin",
                d.as_secs_f64()
            ),
            Fenced::LeaseExpired => write!(f, "etcd says the run's lease expired"),
            Fenced::Refused => write!(
                f,
                "etcd refused a guarded write: the run's leader key is no longer this driver's"
            ),
        }
    }
}

/// Whether this driver may still act: the lease's local deadline (the last
/// keepalive's send time plus TTL minus the margin) and, once fenced, why.
pub struct Guard {
    deadline: Mutex<Instant>,
    last_ok: Mutex<Instant>,
    ttl: Duration,
    margin: Duration,
    fenced: watch::Sender<Option<Fenced>>,
}

impl Guard {
    pub(crate) fn new(granted_at: Instant, ttl: Duration) -> Arc<Guard> {
        let margin = safety_margin(ttl);
        let (fenced, _) = watch::channel(None);
        Arc::new(Guard {
            deadline: Mutex::new(granted_at + ttl.saturating_sub(margin)),
            last_ok: Mutex::new(granted_at),
            ttl,
            margin,
            fenced,
        })
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A keepalive sent at `sent` succeeded.
    fn renewed(&self, sent: Instant) {
        *Self::lock(&self.deadline) = sent + self.ttl.saturating_sub(self.margin);
        *Self::lock(&self.last_ok) = sent;
    }

    /// Time left before the local deadline.
    fn left(&self) -> Duration {
        Self::lock(&self.deadline).saturating_duration_since(Instant::now())
    }

    /// Whether the driver may act now; fences it when the deadline passed.
    pub fn valid(&self) -> bool {
        if self.fenced.borrow().is_some() {
            return false;
        }
        let now = Instant::now();
        if now >= *Self::lock(&self.deadline) {
            let late = now.saturating_duration_since(*Self::lock(&self.last_ok));
            self.fence(Fenced::KeepaliveLate(late));
            return false;
        }
        true
    }

    /// Stops the driver for `why` (the first reason stays).
    pub fn fence(&self, why: Fenced) {
        self.fenced.send_if_modified(|f| {
            let first = f.is_none();
            if first {
                *f = Some(why);
            }
            first
        });
    }

    pub fn fenced(&self) -> Option<Fenced> {
        self.fenced.borrow().clone()
    }

    /// Turns true once the driver is fenced.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        let mut f = self.fenced.subscribe();
        let (tx, rx) = watch::channel(f.borrow().is_some());
        tokio::spawn(async move {
            while f.changed().await.is_ok() {
                if f.borrow().is_some() {
                    let _ = tx.send(true);
                    break;
                }
            }
            // Held until the session drops its end: a closed channel reads as a change.
            tx.closed().await;
        });
        rx
    }
}

/// How long before the lease's TTL runs out a driver stops acting: clock
/// drift and a keepalive in flight must not let it act past the expiry.
pub fn safety_margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_secs(1)).min(ttl / 2)
}

/// Renews the lease every TTL/5 until fenced. An attempt may take until the
/// guard's deadline: the client gives each endpoint the request timeout
/// (TTL/5) and then tries the next, so a hung member (stopped, not dead:
/// it accepts the connection and never answers) costs one request
/// timeout, and the next member renews the lease well within the TTL.
/// Capping the attempt at the interval instead cut it off before it ever
/// reached the second member.
pub(crate) async fn keep_alive(client: Arc<Client>, lease: i64, guard: Arc<Guard>) {
    let every = (guard.ttl / 5).max(Duration::from_millis(200));
    loop {
        if !guard.valid() {
            return;
        }
        let sent = Instant::now();
        let left = guard.left().max(every);
        match tokio::time::timeout(left, client.keepalive(lease)).await {
            Ok(Ok(true)) => guard.renewed(sent),
            Ok(Ok(false)) => {
                guard.fence(Fenced::LeaseExpired);
                return;
            }
            Ok(Err(_)) | Err(_) => {}
        }
        tokio::time::sleep_until((sent + every).into()).await;
    }
}

/// What the consumer hands the mirror task.
enum Item {
    Line(Vec<u8>),
    /// The engine's ack, and what says the local journal has the record.
    Intent(Ack, oneshot::Receiver<()>),
}

/// The journal mirror as an event consumer. It goes before the local
/// journal: it keeps the engine's ack and hands the journal a fresh one,
/// so an intent is acknowledged only when both hold it.
pub struct MirrorConsumer {
    tx: mpsc::UnboundedSender<Item>,
    token: i64,
}

impl MirrorConsumer {
    fn line(&self, record: &Record) -> Vec<u8> {
        stamped(record, self.token)
    }
}

/// A journal line with `"token":N` first: the fencing token of the driver
/// that wrote it.
pub(crate) fn stamped(record: &Record, token: i64) -> Vec<u8> {
    let body = serde_json::to_vec(record).unwrap_or_default();
    let mut line = format!("{{\"token\":{token}").into_bytes();
    if body.len() > 2 {
        line.push(b',');
        line.extend_from_slice(&body[1..]);
    } else {
        line.push(b'}');
    }
    line.push(b'\n');
    line
}

impl Consumer for MirrorConsumer {
    fn event(&mut self, e: Seen<'_>, ack: &mut Option<Ack>) -> io::Result<()> {
        let record = Record::Event {
            at: journal::rfc3339(e.at),
            ms: u64::try_from(e.elapsed.as_millis()).unwrap_or(u64::MAX),
            kind: e.kind.clone(),
        };
        // A closed channel means the mirror stopped (fenced): acks dropped
        // with the item are what keeps the engine from acting.
        let _ = self.tx.send(Item::Line(self.line(&record)));
        if let Some(engine_ack) = ack.take() {
            let (local, local_done) = Ack::pair();
            *ack = Some(local);
            let _ = self.tx.send(Item::Intent(engine_ack, local_done));
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "etcd mirror"
    }
}

/// The mirror task's state.
pub(crate) struct MirrorTask {
    pub client: Arc<Client>,
    pub keys: Keys,
    pub token: i64,
    pub guard: Arc<Guard>,
    pub next_seq: u64,
    pub notice: fn(&str),
}

impl MirrorTask {
    /// The consumer, and the task that commits what it is given.
    pub(crate) fn start(self) -> (MirrorConsumer, tokio::task::JoinHandle<u64>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let token = self.token;
        let task = tokio::spawn(self.run(rx));
        (MirrorConsumer { tx, token }, task)
    }

    /// Commits records as they come, everything queued meanwhile in the
    /// same transaction (group commit); returns the next free segment.
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Item>) -> u64 {
        let mut last_start: Option<Instant> = None;
        while let Some(first) = rx.recv().await {
            if let Some(at) = last_start {
                tokio::time::sleep_until((at + COMMIT_GAP).into()).await;
            }
            last_start = Some(Instant::now());
            let mut bytes = Vec::new();
            let mut intents = Vec::new();
            let mut take = |item: Item, bytes: &mut Vec<u8>| match item {
                Item::Line(l) => bytes.extend_from_slice(&l),
                Item::Intent(a, r) => intents.push((a, r)),
            };
            take(first, &mut bytes);
            while bytes.len() < MAX_SEGMENT {
                match rx.try_recv() {
                    Ok(item) => take(item, &mut bytes),
                    Err(_) => break,
                }
            }
            if !self.commit(&bytes).await {
                // Fenced: nothing queued goes out, no intent is acknowledged.
                rx.close();
                while rx.recv().await.is_some() {}
                return self.next_seq;
            }
            if intents.is_empty() {
                continue;
            }
            let guard = Arc::clone(&self.guard);
            tokio::spawn(async move {
                for (ack, local) in intents {
                    if local.await.is_ok() && guard.valid() {
                        ack.done();
                    }
                }
            });
        }
        self.next_seq
    }

    /// Writes one segment under the fencing token, retrying while etcd
    /// cannot commit and the lease still holds. `false`: fenced.
    async fn commit(&mut self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return self.guard.valid();
        }
        let compare = [Compare::Created(self.keys.leader(), self.token)];
        let put = [Op::Put {
            key: self.keys.segment(self.next_seq),
            value: pack(bytes),
            lease: 0,
        }];
        let mut stalled: Option<Instant> = None;
        let mut pause = Duration::from_millis(50);
        loop {
            if !self.guard.valid() {
                return false;
            }
            match self.client.txn(&compare, &put, &[]).await {
                Ok(r) if r.succeeded => {
                    self.next_seq += 1;
                    if let Some(since) = stalled {
                        (self.notice)(&format!(
                            "etcd: committing again after {:.1}s; actions go on",
                            since.elapsed().as_secs_f64()
                        ));
                    }
                    return self.guard.valid();
                }
                Ok(_) => {
                    self.guard.fence(Fenced::Refused);
                    return false;
                }
                Err(e) => {
                    if stalled.is_none() {
                        stalled = Some(Instant::now());
                        (self.notice)(&format!(
                            "etcd: cannot commit the journal ({e}); no new action is sent until it can"
                        ));
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The header and a resume marker as they go into etcd.
pub(crate) fn header_line(header: &journal::Header, token: i64) -> Vec<u8> {
    stamped(&Record::Header(header.clone()), token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_line_reads_back_as_the_same_record_and_token() {
        let record = Record::Resumed {
            at: "2026-12-01T00:00:00.000Z".into(),
            operator: "op".into(),
            bastion: "b".into(),
            pid: 7,
            forced: false,
        };
        let line = stamped(&record, 42);
        assert!(line.starts_with(b"{\"token\":42,\"record\":\"resumed\""));
        let back: Record = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, record);
        let token: super::super::Stamp = serde_json::from_slice(&line).unwrap();
        assert_eq!(token.token, Some(42));
    }

    #[test]
    fn the_margin_leaves_time_before_the_lease_expires() {
        assert_eq!(
            safety_margin(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_past_its_deadline_is_fenced_and_says_why() {
        let guard = Guard::new(Instant::now(), Duration::from_secs(10));
        let mut stopped = guard.stopped();
        assert!(guard.valid());
        assert!(!*stopped.borrow());
        // The deadline uses the real monotonic clock (a SIGSTOP must count).
        *Guard::lock(&guard.deadline) = Instant::now();
        assert!(!guard.valid());
        assert!(matches!(guard.fenced(), Some(Fenced::KeepaliveLate(_))));
        stopped.changed().await.unwrap();
        assert!(*stopped.borrow());
        guard.fence(Fenced::Refused);
        assert!(matches!(guard.fenced(), Some(Fenced::KeepaliveLate(_))));
    }
}
