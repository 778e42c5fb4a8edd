//! The consumer trait: how whatever reads the engine's event stream (the
//! journal, progress, the run's state, the live views, the etcd mirror)
//! sees it, and the mirror a second recorder of the journal is. Defined
//! here, below every consumer, so that the consumers (`journal`, `report`,
//! `live`, `etcd`) and the session that wires them import it downward.
//!
//! Owns the trait only; the fan-out loop is `session::consume`'s. The
//! engine itself never calls a consumer: it emits events.

use std::io;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::events::{Ack, EventKind, MayAct};

/// One event as a consumer sees it (the ack is passed beside it).
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub at: SystemTime,
    pub elapsed: Duration,
    pub kind: &'a EventKind,
}

/// Something that reads the event stream. Every method has a default, so a
/// consumer implements only what it cares about.
pub trait Consumer: Send {
    /// One event. `ack` is present on intents: a consumer that records
    /// events durably takes it and calls [`Ack::done`] once the record is
    /// safe; whatever is left is acknowledged after every consumer saw it.
    fn event(&mut self, event: Seen<'_>, ack: &mut Option<Ack>) -> io::Result<()>;

    /// The channel is momentarily empty: a good time to flush.
    fn idle(&mut self) {}

    /// Once a second, with the time since the run started.
    fn tick(&mut self, _elapsed: Duration) -> io::Result<()> {
        Ok(())
    }

    /// The stream ended.
    fn finish(&mut self) {}

    /// Named in the warning when the consumer fails.
    fn name(&self) -> &'static str;
}

/// A second recorder of the journal: it sees every event before the local
/// journal (and passes intents' acks on to it), and once `stop` turns true
/// the run stops now, as on a second Ctrl-C: this driver may no longer act.
pub struct Mirror {
    pub consumer: Box<dyn Consumer>,
    pub stop: watch::Receiver<bool>,
    /// Asked once more after each acknowledged intent, just before its
    /// action goes out: a driver stopped (SIGSTOP) between the ack and the
    /// send finds out here, and sends nothing.
    pub may_act: MayAct,
    /// The run's pause switch where the run is kept (etcd): it binds this
    /// driver as the control file beside the journal does.
    pub pause: Option<watch::Receiver<bool>>,
}
