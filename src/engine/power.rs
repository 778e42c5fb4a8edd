//! The `power_on` step: Redfish power-on of one host through its BMC, and
//! BMC etiquette shared by every host of a run; and the power cycle
//! `remediate` sends to a host that did not come back.
//!
//! Owns per-BMC etiquette (request spacing per BMC, the cap on BMC requests
//! in flight) and the step's sequence: login, read the system, reset when it
//! is Off, wait for On, logout. Before a reset goes out it waits for its turn
//! from the coordinator (`admission` owns PDU spacing and the fleet-wide
//! power-on rate), so host tasks share no pacing state. It must not schedule
//! hosts (the scheduler does) or speak HTTP (`transport::redfish` does); it
//! reports only through its return value and the intent callback.
//!
//! Every wait is on tokio's clock, so tests drive it under a paused clock.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};
use tokio::time::Instant;

use super::admission::{PowerTurn, TurnLine};
use super::backoff::Backoff;
use super::events::NotAcknowledged;
use super::failure::{Failure, StepFailure};
use crate::inventory::Host;
use crate::playbook::units::humane;
use crate::playbook::{PowerOn, Rate, Remediate};
use crate::transport::redfish::{
    Auth, Bmc, BmcError, BmcErrorKind, BmcFuture, CREDENTIALS_LABEL, Endpoint, PowerState,
    SYSTEM_LABEL, SYSTEMS_PATH, SystemInfo, pick_member,
};

/// Requests to one BMC are at least this far apart (BMCs are small computers).
pub const BMC_SPACING: Duration = Duration::from_secs(1);
/// The host label that sets its BMC's spacing (`200ms`): a chassis BMC with
/// many Systems behind it answers faster than one request a second.
pub const SPACING_LABEL: &str = "bmc_spacing";
/// `bmc_spacing` may not go below this: still one request at a time per
/// BMC, at most ten a second.
pub const MIN_BMC_SPACING: Duration = Duration::from_millis(100);
/// Nor above this (a typo such as `10m` would stall every host of the BMC).
pub const MAX_BMC_SPACING: Duration = Duration::from_secs(60);

/// A `bmc_spacing` label's value: a duration between [`MIN_BMC_SPACING`]
/// and [`MAX_BMC_SPACING`]. The one parser: `run` and `plan` validate with
/// it, and the engine spaces by what it returns.
pub fn parse_spacing(value: &str) -> Result<Duration, String> {
    let d = crate::playbook::units::parse_duration(value).map_err(|e| e.to_string())?;
    if d < MIN_BMC_SPACING || d > MAX_BMC_SPACING {
        return Err(format!(
            "`{value}` is outside {} to {} (one request at a time per BMC, at most ten a second)",
            humane(MIN_BMC_SPACING),
            humane(MAX_BMC_SPACING)
        ));
    }
    Ok(d)
}
/// BMC requests in flight across the whole run.
pub const BMC_IN_FLIGHT: usize = 256;
/// Polling PowerState after a reset: full-jitter backoff from 1 s, capped.
const POLL_BASE: Duration = Duration::from_secs(1);
const POLL_CAP: Duration = Duration::from_secs(15);

/// A remediation power cycle (login, read the system, reset, logout) gives
/// up after this long: a BMC that cannot answer in a minute will not help.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One BMC's etiquette: when its last request ended (one request in flight
/// per BMC) and how far apart its requests are.
struct BmcGate {
    ended: AsyncMutex<Option<Instant>>,
    spacing: Duration,
}
type Gate = Arc<BmcGate>;
/// A BMC's systems collection, once read.
type Collection = Arc<AsyncMutex<Option<serde_json::Value>>>;

/// Shared by every host of a run: the BMC client and per-BMC etiquette.
pub struct PowerControl {
    bmc: Arc<dyn Bmc>,
    bmcs: Mutex<HashMap<Endpoint, Gate>>,
    /// Each BMC's systems collection, read once per run by the first host
    /// that needs it while the others wait: a BMC with many Systems behind
    /// it answers one request a second, so every request saved per host
    /// shortens its queue.
    collections: Mutex<HashMap<Endpoint, Collection>>,
    in_flight: Semaphore,
    /// BMC spacing (a BMC's `bmc_spacing` label, else [`BMC_SPACING`]) and
    /// PowerState polling, divided by `scale` for compressed-time drills.
    scale: f64,
    poll: (Duration, Duration),
    cycle_timeout: Duration,
}

impl std::fmt::Debug for PowerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerControl")
            .field("bmc", &self.bmc)
            .finish_non_exhaustive()
    }
}

/// What a successful step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOutcome {
    /// The host was already On: nothing was sent.
    AlreadyOn,
    /// A reset was sent and the host reached On.
    PoweredOn,
}

impl PowerControl {
    pub fn new(bmc: Arc<dyn Bmc>) -> PowerControl {
        PowerControl {
            bmc,
            bmcs: Mutex::new(HashMap::new()),
            collections: Mutex::new(HashMap::new()),
            in_flight: Semaphore::new(BMC_IN_FLIGHT),
            scale: 1.0,
            poll: (POLL_BASE, POLL_CAP),
            cycle_timeout: CYCLE_TIMEOUT,
        }
    }

    /// Divides BMC etiquette and polling by `scale` (a drill's `--speed`:
    /// its simulated BMCs answer in compressed time too). 1 leaves them.
    pub fn time_scaled(mut self, scale: f64) -> PowerControl {
        if scale > 1.0 {
            self.scale = scale;
            self.poll = (POLL_BASE.div_f64(scale), POLL_CAP.div_f64(scale));
            self.cycle_timeout = CYCLE_TIMEOUT.div_f64(scale);
        }
        self
    }

    /// `bmc`'s gate, made on first use with the spacing of the host that
    /// first reaches it (`run` and `plan` refused hosts of one BMC that
    /// disagree, and labels that do not parse).
    fn bmc_gate(&self, bmc: &Endpoint, host: &Host) -> Gate {
        let mut m = self.bmcs.lock().unwrap_or_else(|p| p.into_inner());
        let gate = m.entry(bmc.clone()).or_insert_with(|| {
            let spacing = host
                .label(SPACING_LABEL)
                .and_then(|v| parse_spacing(v).ok())
                .unwrap_or(BMC_SPACING);
            Arc::new(BmcGate {
                ended: AsyncMutex::new(None),
                spacing: if self.scale > 1.0 {
                    spacing.div_f64(self.scale)
                } else {
                    spacing
                },
            })
        });
        Arc::clone(gate)
    }

    fn gate<K: std::hash::Hash + Eq + Clone, T>(
        map: &Mutex<HashMap<K, Arc<AsyncMutex<Option<T>>>>>,
        key: &K,
    ) -> Arc<AsyncMutex<Option<T>>> {
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(key.clone()).or_default())
    }

    /// Reads `host`'s PowerState through its BMC (login, its system,
    /// logout) under the same etiquette as a power-on; changes nothing.
    /// For `plan --preflight`.
    pub async fn power_state(&self, host: &Host) -> Result<PowerState, BmcError> {
        let system = self.system(host).await?;
        SystemInfo::from_json(&system).map(|info| info.power_state)
    }

    /// `host`'s ComputerSystem resource as its BMC gives it (login, its
    /// system, logout), under the same etiquette as a power-on; changes
    /// nothing. For `plan --preflight` and `audit`.
    pub async fn system(&self, host: &Host) -> Result<serde_json::Value, BmcError> {
        let bmc = endpoint(host)
            .ok_or_else(|| BmcError::new(BmcErrorKind::Protocol, "no `bmc` label"))??;
        let gate = self.bmc_gate(&bmc, host);
        let mut auth = None;
        let result = self.discover_json(&gate, &bmc, host, &mut auth).await;
        if let Some(auth) = auth {
            let _ = self.call(&gate, || self.bmc.logout(&bmc, &auth)).await;
        }
        result.map(|(_, system)| system)
    }

    /// Power-cycles `host` through its BMC for `remediate`: `PowerCycle`,
    /// else `ForceRestart`, per the system's allowed reset types (`On` for
    /// a host its BMC says is Off). The reset takes its turn on `turns`
    /// like a power-on (`remediate`'s PDU spacing and fleet rate), since a
    /// cycle ends in a power-on's inrush too; the turn comes after the
    /// BMC's reads, so the spacing is between the resets themselves.
    /// `intent` learns the reset type and is awaited once the turn came,
    /// right before the reset; an error from it means the intent was not
    /// recorded, and nothing is sent. One BMC request at a time per BMC, like every request here.
    /// Returns the type sent.
    pub async fn power_cycle<F, Fut>(
        &self,
        host: &Host,
        remediate: &Remediate,
        turns: &TurnLine,
        intent: F,
    ) -> Result<String, StepFailure>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), NotAcknowledged>>,
    {
        let bmc = endpoint(host)
            .ok_or_else(|| {
                StepFailure::new(
                    Failure::NoBmc,
                    format!(
                        "host {} has no `bmc` label: remediate needs its BMC address",
                        host.name
                    ),
                )
            })?
            .map_err(fail)?;
        let gate = self.bmc_gate(&bmc, host);
        let mut auth = None;
        let result = self
            .cycle(host, &bmc, &gate, remediate, turns, intent, &mut auth)
            .await;
        if let Some(auth) = auth {
            let _ = self.call(&gate, || self.bmc.logout(&bmc, &auth)).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn cycle<F, Fut>(
        &self,
        host: &Host,
        bmc: &Endpoint,
        gate: &Gate,
        remediate: &Remediate,
        turns: &TurnLine,
        intent: F,
        auth_slot: &mut Option<Auth>,
    ) -> Result<String, StepFailure>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), NotAcknowledged>>,
    {
        let late = |what: &str| {
            StepFailure::new(
                Failure::Bmc {
                    error: super::failure::BmcKind::Unreachable,
                    status: None,
                },
                format!("BMC {bmc}: {what} within {}", humane(self.cycle_timeout)),
            )
        };
        let (path, info) = tokio::time::timeout(
            self.cycle_timeout,
            self.discover(gate, bmc, host, auth_slot),
        )
        .await
        .map_err(|_| late("no answer to the power cycle's reads"))?
        .map_err(fail)?;
        let protocol = |what: String| {
            StepFailure::new(
                Failure::Bmc {
                    error: super::failure::BmcKind::Protocol,
                    status: None,
                },
                format!("BMC {bmc}: {what}"),
            )
        };
        let reset_type = if info.power_state == PowerState::Off {
            "On"
        } else {
            info.power_cycle_type().map_err(protocol)?
        };
        let target = info.reset_target.clone().ok_or_else(|| {
            protocol(format!(
                "the system {path} offers no #ComputerSystem.Reset action"
            ))
        })?;
        let auth = auth_slot
            .clone()
            .ok_or_else(|| protocol("no BMC session".to_owned()))?;
        // The BMC's spacing first, then the turn, then the intent, and the
        // reset right after it. Unlike a power-on's (recorded before the
        // turn; a resumed power_on reads the power state first), a cycle's
        // intent counts: a resume goes on from its attempt number and never
        // sends it again. Recorded before the turn, every silent host of a
        // PDU had its cycle journaled while it queued, and a crash during
        // that wait left cycles never sent counted as sent (and hosts
        // quarantined that were never cycled). The flush now falls between
        // the turn and the reset; cycles are the few stragglers.
        let mut ended = gate.ended.lock().await;
        if let Some(t) = *ended {
            tokio::time::sleep_until(t + gate.spacing).await;
        }
        let pacing = (remediate.pdu_interval, remediate.rate, Duration::ZERO);
        take_turn(host, pacing, turns, "power cycle").await?;
        tokio::time::timeout(self.cycle_timeout, intent(reset_type.to_owned()))
            .await
            .map_err(|_| late("the power cycle's intent was not recorded"))?
            .map_err(|e| StepFailure::new(Failure::NotRecorded, e.to_string()))?;
        let permit = self.in_flight.acquire().await;
        let sent = tokio::time::timeout(
            self.cycle_timeout,
            self.bmc.reset(bmc, &auth, &target, reset_type),
        )
        .await;
        drop(permit);
        *ended = Some(Instant::now());
        sent.map_err(|_| late("the power cycle did not go out"))?
            .map_err(fail)?;
        Ok(reset_type.to_owned())
    }

    /// Powers `host` on (unless it is On) and waits until its BMC says On.
    /// `intent` learns the reset type (the step's, or `ForceOn`/
    /// `PushPowerButton` for a BMC without `On`) and is awaited right
    /// before the reset is sent; an error from it means the intent was not
    /// recorded, and nothing is sent. The reset then waits for its turn
    /// (PDU and fleet pacing) on `turns`.
    pub async fn power_on<F, Fut>(
        &self,
        host: &Host,
        step: &PowerOn,
        turns: &TurnLine,
        intent: F,
    ) -> Result<PowerOutcome, StepFailure>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), NotAcknowledged>>,
    {
        let bmc = endpoint(host)
            .ok_or_else(|| {
                StepFailure::new(
                    Failure::NoBmc,
                    format!(
                        "host {} has no `bmc` label: power_on needs its BMC address",
                        host.name
                    ),
                )
            })?
            .map_err(fail)?;
        let mut last = Last {
            what: String::from("no answer yet"),
            unreachable: false,
        };
        let mut auth = None;
        let result = tokio::time::timeout(
            step.timeout,
            self.run(host, &bmc, step, turns, intent, &mut last, &mut auth),
        )
        .await;
        // Best effort: a session left behind expires on the BMC anyway.
        if let Some(auth) = auth {
            let gate = self.bmc_gate(&bmc, host);
            let _ = self.call(&gate, || self.bmc.logout(&bmc, &auth)).await;
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(StepFailure::new(
                Failure::PowerOnTimeout {
                    bmc_unreachable: last.unreachable,
                },
                format!(
                    "power_on did not finish within {} (BMC {bmc}: {})",
                    humane(step.timeout),
                    last.what
                ),
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run<F, Fut>(
        &self,
        host: &Host,
        bmc: &Endpoint,
        step: &PowerOn,
        turns: &TurnLine,
        intent: F,
        last: &mut Last,
        auth_slot: &mut Option<Auth>,
    ) -> Result<PowerOutcome, StepFailure>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), NotAcknowledged>>,
    {
        let gate = self.bmc_gate(bmc, host);
        // Power returns in stages: an unreachable BMC is probed again every
        // `reprobe` until the step's timeout (which bounds this loop).
        // A busy BMC (session table full, 503 while it starts) is asked
        // again after its Retry-After, else after a backoff from 1 s.
        let mut busy = Backoff::new(self.poll.0, self.poll.1);
        let (path, mut info) = loop {
            match self.discover(&gate, bmc, host, auth_slot).await {
                Ok(found) => break found,
                Err(e) if e.kind == BmcErrorKind::Unreachable => {
                    last.unreachable(&e);
                    tokio::time::sleep(step.reprobe).await;
                }
                Err(BmcError {
                    kind: BmcErrorKind::Busy { retry_after },
                    message,
                }) => {
                    last.saw(message);
                    let wait = retry_after.unwrap_or_else(|| busy.next_delay());
                    tokio::time::sleep(wait.max(self.poll.0)).await;
                }
                Err(e) => return Err(fail(e)),
            }
        };
        last.saw(format!("PowerState {}", info.power_state.as_str()));
        let on_means_done = matches!(step.reset_type.as_str(), "On" | "ForceOn");
        if info.power_state == PowerState::On && on_means_done {
            return Ok(PowerOutcome::AlreadyOn);
        }
        let mut intent = Some(intent);
        let mut poll = Backoff::new(self.poll.0, self.poll.1);
        loop {
            let ready = match &info.power_state {
                PowerState::Off => true,
                // An explicit restart type the playbook asked for goes to an On host too.
                PowerState::On => !on_means_done,
                _ => false,
            };
            if ready && let Some(intent) = intent.take() {
                let target = info.reset_target.clone().ok_or_else(|| {
                    StepFailure::new(
                        Failure::Bmc {
                            error: super::failure::BmcKind::Protocol,
                            status: None,
                        },
                        format!(
                            "BMC {bmc}: the system {path} offers no #ComputerSystem.Reset action"
                        ),
                    )
                })?;
                let auth = auth_slot.clone().ok_or_else(|| {
                    StepFailure::new(
                        Failure::Bmc {
                            error: super::failure::BmcKind::Protocol,
                            status: None,
                        },
                        "no BMC session",
                    )
                })?;
                let reset_type = info.power_on_type(&step.reset_type).map_err(|e| {
                    StepFailure::new(
                        Failure::Bmc {
                            error: super::failure::BmcKind::Protocol,
                            status: None,
                        },
                        format!("BMC {bmc}: {e}"),
                    )
                })?;
                let sent = self
                    .paced_reset(
                        host, &gate, bmc, &auth, &target, reset_type, step, turns, intent,
                    )
                    .await;
                match sent {
                    Ok(()) => last.saw(format!("reset {reset_type} sent")),
                    // Some BMCs answer a power-on of a system that is
                    // already On (or just came on) with 400 or 409: a
                    // fresh read decides.
                    Err(f)
                        if matches!(
                            f.failure,
                            Failure::Bmc {
                                status: Some(400 | 409),
                                ..
                            }
                        ) =>
                    {
                        match self.read_system(&gate, bmc, auth_slot, &path).await {
                            Ok(i) if i.power_state == PowerState::On => {
                                return Ok(PowerOutcome::PoweredOn);
                            }
                            _ => return Err(f),
                        }
                    }
                    Err(f) => return Err(f),
                }
            } else if info.power_state == PowerState::On {
                // Still holding the intent: someone else powered it on meanwhile.
                return Ok(if intent.is_some() {
                    PowerOutcome::AlreadyOn
                } else {
                    PowerOutcome::PoweredOn
                });
            }
            // Bounded by the step's timeout around `run`.
            tokio::time::sleep(poll.next_delay()).await;
            match self.read_system(&gate, bmc, auth_slot, &path).await {
                Ok(i) => {
                    info = i;
                    last.saw(format!("PowerState {}", info.power_state.as_str()));
                }
                // A BMC busy with the power-on may miss an answer: poll again.
                Err(e) if e.kind == BmcErrorKind::Unreachable => last.unreachable(&e),
                Err(e) if matches!(e.kind, BmcErrorKind::Busy { .. }) => last.saw(e.message),
                Err(e) => return Err(fail(e)),
            }
        }
    }

    /// Login with the host's credentials entry, the systems collection, the
    /// host's system (its `redfish_system` label, else the first).
    async fn discover(
        &self,
        gate: &Gate,
        bmc: &Endpoint,
        host: &Host,
        auth_slot: &mut Option<Auth>,
    ) -> Result<(String, SystemInfo), BmcError> {
        let (path, system) = self.discover_json(gate, bmc, host, auth_slot).await?;
        Ok((path, SystemInfo::from_json(&system)?))
    }

    /// Logs in (unless `auth_slot` holds a session), finds `host`'s system
    /// and returns its path and resource.
    async fn discover_json(
        &self,
        gate: &Gate,
        bmc: &Endpoint,
        host: &Host,
        auth_slot: &mut Option<Auth>,
    ) -> Result<(String, serde_json::Value), BmcError> {
        // The hosts of one BMC log in and read its collection one after
        // another, so the first one's answers (a fallback to Basic, the
        // collection) spare the others their requests.
        let slot = PowerControl::gate(&self.collections, bmc);
        let mut known = slot.lock().await;
        if auth_slot.is_none() {
            let account = host.label(CREDENTIALS_LABEL);
            *auth_slot = match self.bmc.known_login(bmc, account) {
                Some(auth) => Some(auth),
                None => Some(self.call(gate, || self.bmc.login(bmc, account)).await?),
            };
        }
        let collection = match &*known {
            Some(c) => c.clone(),
            None => {
                let c = self.get(gate, bmc, auth_slot, SYSTEMS_PATH).await?;
                *known = Some(c.clone());
                c
            }
        };
        drop(known);
        let path = pick_member(&collection, host.label(SYSTEM_LABEL))?;
        let system = self.get(gate, bmc, auth_slot, &path).await?;
        Ok((path, system))
    }

    async fn read_system(
        &self,
        gate: &Gate,
        bmc: &Endpoint,
        auth_slot: &mut Option<Auth>,
        path: &str,
    ) -> Result<SystemInfo, BmcError> {
        SystemInfo::from_json(&self.get(gate, bmc, auth_slot, path).await?)
    }

    /// A GET; a session the BMC forgot (expired during a long wait) is
    /// replaced once by a new login.
    async fn get(
        &self,
        gate: &Gate,
        bmc: &Endpoint,
        auth_slot: &mut Option<Auth>,
        path: &str,
    ) -> Result<serde_json::Value, BmcError> {
        let auth = auth_slot
            .clone()
            .ok_or_else(|| BmcError::new(BmcErrorKind::Protocol, "not logged in"))?;
        match self.call(gate, || self.bmc.get(bmc, &auth, path)).await {
            Err(e) if e.kind == BmcErrorKind::Auth && matches!(auth, Auth::Session { .. }) => {
                let fresh = self
                    .call(gate, || self.bmc.login(bmc, auth.account()))
                    .await?;
                *auth_slot = Some(fresh.clone());
                self.call(gate, || self.bmc.get(bmc, &fresh, path)).await
            }
            other => other,
        }
    }

    /// One request under BMC etiquette: alone on its BMC, a second after the
    /// previous one ended, and within the run-wide cap.
    async fn call<'a, T>(
        &self,
        gate: &Gate,
        request: impl FnOnce() -> BmcFuture<'a, T>,
    ) -> Result<T, BmcError> {
        let mut ended = gate.ended.lock().await;
        if let Some(t) = *ended {
            tokio::time::sleep_until(t + gate.spacing).await;
        }
        let permit = self.in_flight.acquire().await;
        let result = request().await;
        drop(permit);
        *ended = Some(Instant::now());
        result
    }

    /// The reset, sent when the BMC allows and the coordinator gave its
    /// turn (the host's PDU and the fleet's rate). The PDU's time is taken
    /// when the turn is given, right before the reset goes out, not when the
    /// host asked, so a wait for the fleet rate cannot squeeze two power-ons
    /// on one PDU closer than `pdu_interval`.
    #[allow(clippy::too_many_arguments)]
    async fn paced_reset<F, Fut>(
        &self,
        host: &Host,
        gate: &Gate,
        bmc: &Endpoint,
        auth: &Auth,
        target: &str,
        reset_type: &str,
        step: &PowerOn,
        turns: &TurnLine,
        intent: F,
    ) -> Result<(), StepFailure>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), NotAcknowledged>>,
    {
        let mut ended = gate.ended.lock().await;
        if let Some(t) = *ended {
            tokio::time::sleep_until(t + gate.spacing).await;
        }
        // Recorded before the host queues for its PDU turn, so the journal's
        // flush does not stretch every PDU's cadence (it did: 2.28 s instead
        // of 2 s under load). Safe to record early: power_on reads PowerState
        // first, so a resumed run never powers a host on twice.
        intent(reset_type.to_owned())
            .await
            .map_err(|e| StepFailure::new(Failure::NotRecorded, e.to_string()))?;
        let jitter = if step.jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = u64::try_from(step.jitter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(rand::rng().random_range(0..=nanos))
        };
        let pacing = (step.pdu_interval, step.rate, jitter);
        take_turn(host, pacing, turns, "power-on").await?;
        let permit = self.in_flight.acquire().await;
        let result = self.bmc.reset(bmc, auth, target, reset_type).await;
        drop(permit);
        *ended = Some(Instant::now());
        result.map_err(fail)
    }
}

/// Waits for `host`'s turn on `turns`: `(interval, rate, jitter)` is its
/// PDU's spacing after the PDU's previous reset, the fleet-wide rate and
/// the extra random delay. Hosts without a `pdu` label share only the fleet
/// rate (validate warns about them). `what` names the reset for the error.
async fn take_turn(
    host: &Host,
    (interval, rate, jitter): (Duration, Rate, Duration),
    turns: &TurnLine,
    what: &str,
) -> Result<(), StepFailure> {
    let turn = PowerTurn {
        pdu: host.label("pdu").map(str::to_owned),
        interval,
        rate,
        jitter,
    };
    turns.wait(turn).await.map_err(|_| {
        StepFailure::new(
            Failure::Internal,
            format!("the run ended before this {what}'s turn came"),
        )
    })
}

/// What the BMC said last, for the timeout's message and kind.
struct Last {
    what: String,
    unreachable: bool,
}

impl Last {
    fn saw(&mut self, what: String) {
        self.what = what;
        self.unreachable = false;
    }

    fn unreachable(&mut self, e: &BmcError) {
        self.what = format!("unreachable: {}", e.message);
        self.unreachable = true;
    }
}

/// `host`'s BMC as the transport addresses it, from the address the
/// inventory read; `None` without a `bmc` label.
fn endpoint(host: &Host) -> Option<Result<Endpoint, BmcError>> {
    Some(match host.bmc.as_ref()? {
        Ok(address) => Ok(Endpoint::from(address)),
        Err(bad) => Err(BmcError::new(BmcErrorKind::Protocol, bad.0.clone())),
    })
}

fn fail(e: BmcError) -> StepFailure {
    StepFailure::new(e.kind.into(), e.message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::diag::Span;
    use crate::engine::admission::TurnAsk;
    use crate::playbook::Rate;

    /// A recording fake BMC per host address: power state machine and a log
    /// of (time, bmc, request) on tokio's paused clock.
    #[derive(Debug)]
    struct FakeBmcs {
        origin: Instant,
        log: Mutex<Vec<(Duration, String, String)>>,
        state: Mutex<HashMap<String, FakeState>>,
        in_flight: AtomicUsize,
    }

    #[derive(Debug, Clone, Default)]
    struct FakeState {
        on: bool,
        /// Refuses until this long after the start.
        unreachable_until: Duration,
        powering_for: Duration,
        powered_at: Option<Duration>,
        /// The reset is answered 409; with `conflict_on` the system is On
        /// by then (someone else powered it on between read and reset).
        conflict: bool,
        conflict_on: bool,
    }

    impl FakeBmcs {
        fn new() -> Arc<FakeBmcs> {
            Arc::new(FakeBmcs {
                origin: Instant::now(),
                log: Mutex::new(Vec::new()),
                state: Mutex::new(HashMap::new()),
                in_flight: AtomicUsize::new(0),
            })
        }

        fn set(&self, bmc: &str, s: FakeState) {
            self.state
                .lock()
                .unwrap()
                .insert(format!("http://{bmc}"), s);
        }

        fn calls(&self, what: &str) -> Vec<(Duration, String)> {
            let log = self.log.lock().unwrap();
            log.iter()
                .filter(|(_, _, w)| w == what)
                .map(|(t, b, _)| (*t, b.clone()))
                .collect()
        }

        fn enter(&self, bmc: &Endpoint, what: &str) -> Result<(), BmcError> {
            let now = self.origin.elapsed();
            self.log
                .lock()
                .unwrap()
                .push((now, bmc.to_string(), what.to_owned()));
            let s = self.state.lock().unwrap();
            let st = s.get(bmc.as_str()).cloned().unwrap_or_default();
            if now < st.unreachable_until {
                return Err(BmcError::new(BmcErrorKind::Unreachable, "refused"));
            }
            Ok(())
        }

        async fn slow(&self) {
            // Two requests to one BMC must never overlap: count and hold a while.
            let n = self.in_flight.fetch_add(1, Ordering::SeqCst);
            assert!(n < BMC_IN_FLIGHT);
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Bmc for FakeBmcs {
        fn login<'a>(&'a self, bmc: &'a Endpoint, account: Option<&'a str>) -> BmcFuture<'a, Auth> {
            Box::pin(async move {
                self.enter(bmc, "login")?;
                self.slow().await;
                Ok(Auth::Session {
                    token: crate::secret::Secret::new("t"),
                    location: Some("/s/1".into()),
                    account: account.map(str::to_owned),
                })
            })
        }

        fn get<'a>(
            &'a self,
            bmc: &'a Endpoint,
            _auth: &'a Auth,
            path: &'a str,
        ) -> BmcFuture<'a, serde_json::Value> {
            Box::pin(async move {
                self.enter(bmc, "get")?;
                self.slow().await;
                if path == SYSTEMS_PATH {
                    return Ok(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/Self"}]}));
                }
                let now = self.origin.elapsed();
                let s = self.state.lock().unwrap();
                let st = s.get(bmc.as_str()).cloned().unwrap_or_default();
                let state = match st.powered_at {
                    _ if st.on => "On",
                    Some(at) if now >= at + st.powering_for => "On",
                    Some(_) => "PoweringOn",
                    None => "Off",
                };
                Ok(json!({
                    "PowerState": state,
                    "Actions": {"#ComputerSystem.Reset": {"target": "/redfish/v1/Systems/Self/Actions/ComputerSystem.Reset"}}
                }))
            })
        }

        fn reset<'a>(
            &'a self,
            bmc: &'a Endpoint,
            _auth: &'a Auth,
            target: &'a str,
            reset_type: &'a str,
        ) -> BmcFuture<'a, ()> {
            Box::pin(async move {
                assert_eq!(
                    target,
                    "/redfish/v1/Systems/Self/Actions/ComputerSystem.Reset"
                );
                assert_eq!(reset_type, "On");
                self.enter(bmc, "reset")?;
                let now = self.origin.elapsed();
                let mut s = self.state.lock().unwrap();
                let st = s.entry(bmc.to_string()).or_default();
                if st.conflict {
                    st.on = st.conflict_on;
                    return Err(BmcError::new(BmcErrorKind::Status(409), "HTTP 409"));
                }
                s.entry(bmc.to_string()).or_default().powered_at = Some(now);
                Ok(())
            })
        }

        fn logout<'a>(&'a self, bmc: &'a Endpoint, _auth: &'a Auth) -> BmcFuture<'a, ()> {
            Box::pin(async move { self.enter(bmc, "logout") })
        }
    }

    fn host(i: usize, pdu: &str) -> Host {
        Host {
            name: format!("h{i}"),
            address: format!("10.0.0.{i}"),
            port: 22,
            user: None,
            jump: None,
            labels: BTreeMap::from([
                ("bmc".to_owned(), format!("http://bmc{i}")),
                ("pdu".to_owned(), pdu.to_owned()),
            ]),
            identity_file: None,
            escalation: None,
            bmc: None,
            groups: vec![],
            span: Span::file(Arc::from("t")),
        }
        .read_bmc_label()
    }

    fn step(pdu_interval: f64, rate: u32) -> PowerOn {
        PowerOn {
            timeout: Duration::from_secs(600),
            pdu_interval: Duration::from_secs_f64(pdu_interval),
            rate: Rate {
                count: rate,
                per: Duration::from_secs(1),
            },
            reprobe: Duration::from_secs(60),
            jitter: Duration::ZERO,
            reset_type: "On".into(),
        }
    }

    /// Powers hosts on side by side, every turn given at once (pacing is
    /// admission's, tested through the engine below): BMC etiquette alone.
    async fn power_all(
        power: &Arc<PowerControl>,
        hosts: Vec<Host>,
        step: PowerOn,
    ) -> Vec<Result<PowerOutcome, StepFailure>> {
        let (turn_tx, mut turn_rx) = tokio::sync::mpsc::unbounded_channel::<TurnAsk>();
        tokio::spawn(async move {
            while let Some(ask) = turn_rx.recv().await {
                let _ = ask.reply.send(());
            }
        });
        let tasks: Vec<_> = hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let (power, step) = (Arc::clone(power), step.clone());
                let turns = TurnLine::new(i as u64, turn_tx.clone());
                tokio::spawn(async move {
                    power
                        .power_on(&h, &step, &turns, |_| async { Ok(()) })
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn power_ons_on_one_pdu_are_spaced_by_its_interval() {
        let bmcs = FakeBmcs::new();
        // Six hosts on two PDUs, a fleet rate that never binds.
        let hosts: Vec<Host> = (0..6)
            .map(|i| host(i, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        let (events, _) = run_engine(hosts, 6, true, step(2.0, 1000), &bmcs).await;
        let done = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    crate::engine::EventKind::HostFinished {
                        outcome: crate::engine::HostOutcome::Done,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(done, 6);
        let resets = bmcs.calls("reset");
        assert_eq!(resets.len(), 6);
        for pdu in [
            ["http://bmc0", "http://bmc2", "http://bmc4"],
            ["http://bmc1", "http://bmc3", "http://bmc5"],
        ] {
            let mut times: Vec<Duration> = resets
                .iter()
                .filter(|(_, b)| pdu.contains(&b.as_str()))
                .map(|(t, _)| *t)
                .collect();
            times.sort();
            for w in times.windows(2) {
                assert!(w[1] - w[0] >= Duration::from_secs(2), "{times:?}");
            }
            // Paced, not serialized behind anything else: each next one at exactly the interval.
            assert!(
                times[2] - times[0] < Duration::from_millis(4100),
                "{times:?}"
            );
        }
        // Two PDUs go side by side.
        let mut all: Vec<Duration> = resets.iter().map(|(t, _)| *t).collect();
        all.sort();
        assert!(all[1] - all[0] < Duration::from_millis(100), "{all:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn fleet_rate_spaces_power_ons_across_pdus() {
        let bmcs = FakeBmcs::new();
        let hosts: Vec<Host> = (0..5).map(|i| host(i, &format!("p{i}"))).collect();
        run_engine(hosts, 5, true, step(0.1, 2), &bmcs).await;
        let mut times: Vec<Duration> = bmcs.calls("reset").iter().map(|(t, _)| *t).collect();
        times.sort();
        assert_eq!(times.len(), 5);
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= Duration::from_millis(499), "{times:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_to_one_bmc_are_a_second_apart_and_the_session_is_closed() {
        let bmcs = FakeBmcs::new();
        bmcs.set(
            "bmc0",
            FakeState {
                powering_for: Duration::from_secs(5),
                ..FakeState::default()
            },
        );
        let power = Arc::new(PowerControl::new(bmcs.clone()));
        let r = power_all(&power, vec![host(0, "a")], step(2.0, 20)).await;
        assert_eq!(r, vec![Ok(PowerOutcome::PoweredOn)]);
        let log = bmcs.log.lock().unwrap().clone();
        for w in log.windows(2) {
            assert!(w[1].0 - w[0].0 >= BMC_SPACING, "{log:?}");
        }
        let kinds: Vec<&str> = log.iter().map(|(_, _, w)| w.as_str()).collect();
        assert_eq!(kinds[..4], ["login", "get", "get", "reset"]);
        assert_eq!(kinds.last(), Some(&"logout"));
        assert_eq!(kinds.iter().filter(|k| **k == "reset").count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bmc_spacing_label_sets_that_bmcs_spacing_only() {
        let bmcs = FakeBmcs::new();
        let mut fast = host(0, "a");
        fast.labels
            .insert(SPACING_LABEL.to_owned(), "250ms".to_owned());
        let power = Arc::new(PowerControl::new(bmcs.clone()));
        let r = power_all(&power, vec![fast, host(1, "b")], step(2.0, 20)).await;
        assert_eq!(r, vec![Ok(PowerOutcome::PoweredOn); 2]);
        let log = bmcs.log.lock().unwrap().clone();
        let gaps = |bmc: &str| {
            let t: Vec<Duration> = log
                .iter()
                .filter(|(_, b, _)| b.as_str() == bmc)
                .map(|(t, _, _)| *t)
                .collect();
            t.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        };
        let (fast, slow) = (gaps("http://bmc0"), gaps("http://bmc1"));
        assert!(fast.len() >= 3 && slow.len() >= 3, "{log:?}");
        assert!(
            fast.iter().all(|g| *g >= Duration::from_millis(250)),
            "{fast:?}"
        );
        // The labelled BMC's requests follow at its spacing, not at 1 s.
        assert!(fast.iter().any(|g| *g < BMC_SPACING), "{fast:?}");
        assert!(slow.iter().all(|g| *g >= BMC_SPACING), "{slow:?}");
    }

    #[test]
    fn bmc_spacing_labels_parse_within_bounds() {
        assert_eq!(parse_spacing("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_spacing("1s"), Ok(BMC_SPACING));
        for bad in ["50ms", "2m", "0s"] {
            let e = parse_spacing(bad).unwrap_err();
            assert!(e.contains("outside 100ms to 1m"), "{bad}: {e}");
        }
        assert!(parse_spacing("200").unwrap_err().contains("add a unit"));
    }

    #[tokio::test(start_paused = true)]
    async fn already_on_hosts_get_no_reset() {
        let bmcs = FakeBmcs::new();
        bmcs.set(
            "bmc0",
            FakeState {
                on: true,
                ..FakeState::default()
            },
        );
        let power = Arc::new(PowerControl::new(bmcs.clone()));
        let r = power_all(&power, vec![host(0, "a")], step(2.0, 20)).await;
        assert_eq!(r, vec![Ok(PowerOutcome::AlreadyOn)]);
        assert!(bmcs.calls("reset").is_empty());
        assert_eq!(bmcs.calls("logout").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_409_to_the_reset_of_a_system_that_is_on_by_then_is_success() {
        let bmcs = FakeBmcs::new();
        bmcs.set(
            "bmc0",
            FakeState {
                conflict: true,
                conflict_on: true,
                ..FakeState::default()
            },
        );
        let power = Arc::new(PowerControl::new(bmcs.clone()));
        let r = power_all(&power, vec![host(0, "a")], step(2.0, 20)).await;
        assert_eq!(r, vec![Ok(PowerOutcome::PoweredOn)]);
        // Read again after the 409, then no second reset.
        assert_eq!(bmcs.calls("reset").len(), 1);
        let kinds: Vec<String> = bmcs
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.2.clone())
            .collect();
        let after: Vec<&str> = kinds
            .iter()
            .skip_while(|k| *k != "reset")
            .map(String::as_str)
            .collect();
        assert_eq!(after, ["reset", "get", "logout"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_409_from_a_system_still_off_fails_the_host() {
        let bmcs = FakeBmcs::new();
        bmcs.set(
            "bmc0",
            FakeState {
                conflict: true,
                ..FakeState::default()
            },
        );
        let power = Arc::new(PowerControl::new(bmcs.clone()));
        let r = power_all(&power, vec![host(0, "a")], step(2.0, 20)).await;
        let Err(f) = &r[0] else { panic!("{r:?}") };
        assert_eq!(
            f.failure,
            Failure::Bmc {
                error: crate::engine::failure::BmcKind::Status,
                status: Some(409)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_bmc_is_reprobed_until_it_answers() {
        let bmcs = FakeBmcs::new();
        bmcs.set(
            "bmc0",
            FakeState {
                unreachable_until: Duration::from_secs(150),
                ..FakeState::default()
            },
        );
        let power = Arc::new(PowerControl::new(bmcs.clone()));
        let r = power_all(&power, vec![host(0, "a")], step(2.0, 20)).await;
        assert_eq!(r, vec![Ok(PowerOutcome::PoweredOn)]);
        let logins: Vec<Duration> = bmcs.calls("login").iter().map(|(t, _)| *t).collect();
        // Probed at 0, 60, 120 (refused), answered at 180.
        assert_eq!(logins.len(), 4, "{logins:?}");
        assert!(logins[3] >= Duration::from_secs(180), "{logins:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bmc_that_never_answers_fails_at_the_timeout_as_unreachable() {
        let bmcs = FakeBmcs::new();
        bmcs.set(
            "bmc0",
            FakeState {
                unreachable_until: Duration::from_secs(10_000),
                ..FakeState::default()
            },
        );
        let power = Arc::new(PowerControl::new(bmcs.clone()));
        let r = power_all(&power, vec![host(0, "a")], step(2.0, 20)).await;
        let Err(f) = &r[0] else { panic!("{r:?}") };
        assert!(f.unreachable(), "{f:?}");
        assert!(
            f.reason.contains("did not finish within 10m"),
            "{}",
            f.reason
        );
    }

    /// The whole engine (scheduler, steps, events) with the fake BMCs:
    /// (events, resets in order). `ack` false: the consumer drops intents.
    async fn run_engine(
        hosts: Vec<Host>,
        window: usize,
        ack: bool,
        power_on: PowerOn,
        bmcs: &Arc<FakeBmcs>,
    ) -> (Vec<crate::engine::EventKind>, Vec<String>) {
        use crate::engine::fake::{FakeConnector, FakeFleet};
        use crate::engine::{CancelLevel, EngineOptions};
        use crate::plan::{Plan, StagePlan};
        let stage = StagePlan {
            name: "power".into(),
            after: vec![],
            gates: vec![],
            ramp: vec![],
            hosts: (0..hosts.len()).collect(),
            canaries: 0,
            window,
            failure_budget: hosts.len(),
            rate: None,
            rate_per: None,
            max_unavailable: vec![],
            on_unreachable: crate::playbook::OnUnreachable::Fail,
            retry_failed_hosts: false,
            remediate: None,
            escalation: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(60),
            steps: vec![crate::playbook::Step::PowerOn(power_on)],
            host_estimate: Duration::ZERO,
            estimate: Duration::ZERO,
        };
        let plan = Plan {
            name: "p".into(),
            waves: vec![],
            stages: vec![stage],
            warnings: vec![],
            estimate: Duration::ZERO,
        };
        let inventory = crate::inventory::Inventory {
            hosts,
            ..crate::inventory::Inventory::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<crate::engine::Event>(64);
        let consumer = tokio::spawn(async move {
            let mut events = Vec::new();
            while let Some(ev) = rx.recv().await {
                if let Some(a) = ev.ack
                    && ack
                {
                    a.done();
                }
                events.push(ev.kind);
            }
            events
        });
        let (_cancel_tx, cancel) = tokio::sync::watch::channel(CancelLevel::None);
        let bmc: Arc<dyn Bmc> = bmcs.clone();
        let opts = EngineOptions {
            bmc: Some(bmc),
            ..EngineOptions::default()
        };
        crate::engine::run(
            Arc::new(plan),
            Arc::new(inventory),
            Arc::new(FakeConnector(FakeFleet::new())),
            opts,
            tx,
            cancel,
        )
        .await;
        let events = consumer.await.unwrap();
        let mut resets = bmcs.calls("reset");
        resets.sort();
        (events, resets.into_iter().map(|(_, b)| b).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_takes_hosts_of_every_pdu_in_turn() {
        let bmcs = FakeBmcs::new();
        // Plan order puts PDU a's hosts first; a window of 2 must not spend
        // both slots waiting on PDU a.
        let hosts = vec![host(0, "a"), host(1, "a"), host(2, "b"), host(3, "b")];
        let (events, resets) = run_engine(hosts, 2, true, step(2.0, 1000), &bmcs).await;
        let first: Vec<&str> = resets.iter().take(2).map(String::as_str).collect();
        assert!(
            first.contains(&"http://bmc0") && first.contains(&"http://bmc2"),
            "{resets:?}"
        );
        let issued = events
            .iter()
            .filter(|e| matches!(e, crate::engine::EventKind::PowerOnIssued { .. }))
            .count();
        assert_eq!(issued, 4);
        assert_eq!(resets.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn no_reset_is_sent_when_the_intent_is_not_recorded() {
        let bmcs = FakeBmcs::new();
        let (events, resets) =
            run_engine(vec![host(0, "a")], 1, false, step(2.0, 1000), &bmcs).await;
        assert!(resets.is_empty(), "{resets:?}");
        assert!(events.iter().any(|e| matches!(
            e,
            crate::engine::EventKind::HostFinished {
                outcome: crate::engine::HostOutcome::Failed { reason, .. },
                ..
            } if reason.contains("did not record the intent")
        )));
    }
}
