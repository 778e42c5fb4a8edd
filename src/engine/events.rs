//! Events: the only way the engine tells the world anything. Consumers
//! (journal, progress, plain printer, report) read them from one channel.
//!
//! Owns the event vocabulary and the acknowledgement of intent events. It must
//! not print, write files or know any consumer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

pub use super::failure::Failure;

/// One thing that happened during a run, with wall-clock time and time since
/// the run started (the latter follows tokio's clock, so paused-clock tests see it).
#[derive(Debug)]
pub struct Event {
    pub at: SystemTime,
    pub elapsed: Duration,
    pub kind: EventKind,
    /// Present on intent events only: the engine does not act on the host
    /// until this is acknowledged, so a journal can write and flush first.
    pub ack: Option<Ack>,
}

/// The acknowledgement an intent event waits for. Dropping it without
/// calling [`Ack::done`] tells the engine the intent was NOT recorded, and the
/// action is not sent.
#[derive(Debug)]
pub struct Ack(oneshot::Sender<()>);

impl Ack {
    /// A fresh acknowledgement and what resolves once it is done (an
    /// error once it is dropped undone): a recorder that must also wait
    /// for another one hands that one the fresh ack and acknowledges the
    /// engine's own only when both are safe.
    pub fn pair() -> (Ack, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (Ack(tx), rx)
    }

    pub fn done(self) {
        // The engine may have been aborted meanwhile; nobody is left to tell.
        let _ = self.0.send(());
    }
}

/// Which host an event is about: its index in `Inventory::hosts` and its
/// name, so consumers need no inventory lookups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRef {
    pub index: usize,
    pub name: String,
}

/// Which stage: its index in `Plan::stages` and its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRef {
    pub index: usize,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        plan: String,
        stages: usize,
        hosts: usize,
    },
    RunFinished {
        outcome: RunOutcome,
    },
    /// The operator paused the run: no host starts, no host starts a new
    /// step; steps in flight finish.
    RunPaused,
    /// The operator let the paused run go on.
    RunContinued,
    StageStarted {
        stage: StageRef,
        hosts: usize,
    },
    StageFinished {
        stage: StageRef,
        outcome: StageOutcome,
        done: usize,
        failed: usize,
        skipped: usize,
    },
    HostStarted {
        stage: StageRef,
        host: HostRef,
        canary: bool,
    },
    StepStarted {
        stage: StageRef,
        host: HostRef,
        step: usize,
        kind: StepKind,
    },
    StepFinished {
        stage: StageRef,
        host: HostRef,
        step: usize,
        kind: StepKind,
        /// `None` on success, the reason otherwise.
        error: Option<String>,
    },
    /// Intent: the reboot command is about to be sent. Acknowledged before sending.
    RebootIssued {
        stage: StageRef,
        host: HostRef,
        step: usize,
        boot_id_before: String,
    },
    /// Intent: `systemctl restart UNIT` is about to be sent.
    ServiceRestartIssued {
        stage: StageRef,
        host: HostRef,
        step: usize,
        unit: String,
    },
    /// Intent: a BMC power-on is about to be sent.
    PowerOnIssued {
        stage: StageRef,
        host: HostRef,
        step: usize,
        /// The Redfish reset type sent (`On`, or `ForceOn`/`PushPowerButton`
        /// for a BMC that does not offer `On`); absent in older journals.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reset_type: Option<String>,
    },
    /// Intent: a BMC power cycle of a host that did not come back is about
    /// to be sent (`remediate`); `attempt` counts from 1 per host and step.
    PowerCycleIssued {
        stage: StageRef,
        host: HostRef,
        step: usize,
        attempt: u32,
        /// The ResetType sent (`PowerCycle` or `ForceRestart`).
        reset_type: String,
    },
    HostFinished {
        stage: StageRef,
        host: HostRef,
        outcome: HostOutcome,
        duration: Duration,
    },
    /// The host's turn came in `stage`, but it waits for stage `on`: it is
    /// in flight there (a host is in one stage at a time), or `on` comes
    /// before `stage` and has not finished it yet. It keeps its place and
    /// starts (or is skipped) once free.
    HostWaiting {
        stage: StageRef,
        host: HostRef,
        on: StageRef,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every host done.
    Success,
    /// Every stage finished inside its budget, but some hosts failed or were skipped.
    Failures,
    /// A failure budget was exceeded or a canary failed.
    Aborted,
    /// Cancelled by the operator.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StageOutcome {
    /// Every host finished; failures stayed inside the budget.
    Done,
    /// Budget exceeded or a canary failed; dependants will not start.
    Aborted { reason: String },
    /// Never started because a stage it waits for did not finish inside its budget.
    Skipped { dependency: String },
    /// Cancelled before all of its hosts ran.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HostOutcome {
    Done,
    /// A step failed; the host spends the stage's failure budget.
    Failed {
        step: usize,
        kind: StepKind,
        /// What went wrong, for grouping (absent from format-1 journals).
        #[serde(default)]
        failure: Failure,
        reason: String,
        /// The last lines of the failing command's output, if any.
        output: String,
    },
    /// The host could not be reached and the stage says `on_unreachable: skip`.
    Unreachable {
        step: usize,
        #[serde(default)]
        failure: Failure,
        reason: String,
    },
    /// Stopped by Ctrl-C twice while a step was running.
    Interrupted {
        step: usize,
        kind: StepKind,
    },
    /// Not run in this stage: it failed (or, `unreachable`, was set aside
    /// as unreachable) in stage `earlier` of this run first. Not a failure
    /// of this stage: its budget is not spent.
    Skipped {
        earlier: String,
        unreachable: bool,
    },
}

impl HostOutcome {
    /// Why a [`HostOutcome::Skipped`] host did not run, for people:
    /// "failed in stage `db`".
    pub fn skip_reason(earlier: &str, unreachable: bool) -> String {
        let what = if unreachable { "unreachable" } else { "failed" };
        format!("{what} in stage `{earlier}`")
    }
}

/// The kind of a step, as events carry it: the playbook's own.
pub use crate::playbook::StepKind;

/// The engine's side of the event channel: stamps times and waits for acks
/// (and, while the run is paused, holds hosts between steps).
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Event>,
    started: tokio::time::Instant,
    hold: Option<Hold>,
    may_act: Option<MayAct>,
}

/// Asked right after an intent is acknowledged, before its action goes
/// out: `false` means this driver lost the right to act (an etcd lease
/// that lapsed while the process was stopped, say), so nothing is sent.
#[derive(Clone)]
pub struct MayAct(pub Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for MayAct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MayAct")
    }
}

/// The pause switch, and the cancel level that overrides it (a drain lets
/// hosts in flight finish even when paused).
#[derive(Debug, Clone)]
struct Hold {
    pause: watch::Receiver<bool>,
    cancel: watch::Receiver<super::CancelLevel>,
}

/// The consumer did not record an intent (it dropped the ack or hung up).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the event consumer did not record the intent; not acting on the host")]
pub struct NotAcknowledged;

impl Emitter {
    pub fn new(tx: mpsc::Sender<Event>) -> Emitter {
        Emitter {
            tx,
            started: tokio::time::Instant::now(),
            hold: None,
            may_act: None,
        }
    }

    /// Checks `may_act` after every acknowledged intent (see [`MayAct`]).
    pub fn with_may_act(mut self, may_act: Option<MayAct>) -> Emitter {
        self.may_act = may_act;
        self
    }

    /// Holds hosts between steps while `pause` is true, unless `cancel` says
    /// to drain or stop.
    pub fn with_hold(
        mut self,
        pause: watch::Receiver<bool>,
        cancel: watch::Receiver<super::CancelLevel>,
    ) -> Emitter {
        self.hold = Some(Hold { pause, cancel });
        self
    }

    /// Returns at once unless the run is paused; then when it goes on (or
    /// is cancelled, or the switch is gone).
    pub async fn unpaused(&self) {
        let Some(h) = &self.hold else { return };
        let (mut pause, mut cancel) = (h.pause.clone(), h.cancel.clone());
        loop {
            if !*pause.borrow_and_update()
                || *cancel.borrow_and_update() != super::CancelLevel::None
            {
                return;
            }
            tokio::select! {
                r = pause.changed() => if r.is_err() { return },
                r = cancel.changed() => if r.is_err() { return },
            }
        }
    }

    fn stamp(&self, kind: EventKind, ack: Option<Ack>) -> Event {
        Event {
            at: SystemTime::now(),
            elapsed: self.started.elapsed(),
            kind,
            ack,
        }
    }

    /// Sends an event. A consumer that hung up is not the engine's problem:
    /// the run goes on (the command decides whether that is fatal).
    pub async fn emit(&self, kind: EventKind) {
        let _ = self.tx.send(self.stamp(kind, None)).await;
    }

    /// Sends an intent event and waits until the consumer acknowledges it.
    pub async fn intent(&self, kind: EventKind) -> Result<(), NotAcknowledged> {
        let (ack_tx, ack_rx) = oneshot::channel();
        self.tx
            .send(self.stamp(kind, Some(Ack(ack_tx))))
            .await
            .map_err(|_| NotAcknowledged)?;
        ack_rx.await.map_err(|_| NotAcknowledged)?;
        match &self.may_act {
            Some(MayAct(may)) if !may() => Err(NotAcknowledged),
            _ => Ok(()),
        }
    }
}
