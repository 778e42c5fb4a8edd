//! The steps of one host, in order: connect, run, reboot with boot-id proof,
//! restart a service, health checks, local commands; and the remediation
//! ladder (`remediate`) of a host that stays silent through a `wait_ssh` or
//! `reboot` wait, or that its BMC never reports On in a `power_on`: a last
//! look, a BMC power cycle, another wait, quarantine.
//!
//! Owns what a step means and its polling. It must not schedule hosts, count
//! budgets, or print; it reports through the [`Emitter`] and its return value.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::HostStart;
use super::admission::TurnLine;
use super::backoff::Backoff;
use super::events::{
    Emitter, EventKind, HostOutcome, HostRef, NotAcknowledged, StageRef, StepKind,
};
use super::failure::{Failure, StepFailure};
use super::power::PowerControl;
use crate::inventory::Host;
use crate::inventory::escalation::{Become, BecomeMethod};
use crate::plan::StagePlan;
use crate::playbook::{Check, Health, PowerOn, Step, Template};
use crate::secret::Secret;
use crate::transport::escalation::{Prompt, Refusal};
use crate::transport::{ConnectError, Connection, Connector, ExecError, ExecOutput};

/// Where Linux exposes the id of the current boot; it changes on every boot.
pub const BOOT_ID_COMMAND: &str = "cat /proc/sys/kernel/random/boot_id";

/// The boot id in `cat /proc/sys/kernel/random/boot_id`'s output: a UUID
/// (36 hex digits and dashes). Anything else would make every reboot look
/// like "did not reboot" or "rebooted", so it is refused. The one rule for
/// steps and `plan --preflight`.
pub fn parse_boot_id(output: &str) -> Result<String, String> {
    let id = output.trim();
    let uuid = id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if uuid {
        Ok(id.to_owned())
    } else if id.is_empty() {
        Err("could not read the boot id (empty output)".to_owned())
    } else {
        let last = id.lines().last().unwrap_or("");
        Err(format!(
            "`{BOOT_ID_COMMAND}` printed {last:?}, not a boot id"
        ))
    }
}

/// A resumed reboot whose host stays up on its old boot this long (or a
/// quarter of the step timeout, if shorter) was never delivered: send it.
const REISSUE_GRACE: Duration = Duration::from_secs(30);
/// How long the reboot command itself may take before we assume the host is
/// going down (a hung `systemctl reboot` usually means it is).
const REBOOT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait for a rebooting host to close our connection before
/// polling it anyway.
const GOING_DOWN_WAIT_MAX: Duration = Duration::from_secs(10);

/// A connection for a command could not be made.
fn connect_failure(err: &ConnectError) -> StepFailure {
    StepFailure::new(
        Failure::Connect { error: err.kind },
        format!("cannot connect: {err}"),
    )
}

/// Time left until `deadline`, at least a millisecond (a zero timeout
/// would mean "no time at all" to some callees and "none" to others).
fn left_until(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// A command that did not finish: timed out, or its session broke.
fn exec_failure(command: &str, e: &ExecError) -> StepFailure {
    let failure = match e {
        ExecError::Timeout(_) => Failure::CommandTimeout,
        ExecError::Disconnected | ExecError::Channel(_) => Failure::CommandLost,
    };
    StepFailure::new(failure, format!("`{command}`: {e}"))
}

/// A step's template with `host`'s values, expanded from the parse that
/// validated it.
fn fill(template: &Template, host: &Host) -> Result<String, StepFailure> {
    template
        .expand(host)
        .map_err(|e| StepFailure::new(Failure::Template, e.message))
}

/// The journal did not take an intent: nothing is sent.
fn not_recorded(e: NotAcknowledged) -> StepFailure {
    StepFailure::new(Failure::NotRecorded, e.to_string())
}

/// One host's run through its stage's steps. Holds the SSH session so it is
/// reused across steps (and reopened when it closed, e.g. after a reboot).
pub struct HostRun<C: Connector> {
    pub connector: Arc<C>,
    pub host: Arc<Host>,
    pub host_ref: HostRef,
    pub stage: Arc<StagePlan>,
    pub stage_ref: StageRef,
    pub emitter: Emitter,
    session: Option<C::Connection>,
    /// BMC client shared by the run, and this host's line for power-on
    /// turns (`None`: no BMC configured).
    power: Option<(Arc<PowerControl>, TurnLine)>,
    /// `--become-password-file`: fed to `sudo -S` on stdin.
    become_password: Option<Secret>,
}

impl<C: Connector> HostRun<C> {
    pub fn new(
        connector: Arc<C>,
        host: Arc<Host>,
        host_ref: HostRef,
        stage: Arc<StagePlan>,
        stage_ref: StageRef,
        emitter: Emitter,
    ) -> Self {
        HostRun {
            connector,
            host,
            host_ref,
            stage,
            stage_ref,
            emitter,
            session: None,
            power: None,
            become_password: None,
        }
    }

    /// Gives this host the run's become password (`None`: sudo runs with `-n`).
    pub fn with_become_password(mut self, password: Option<Secret>) -> Self {
        self.become_password = password;
        self
    }

    /// Gives this host the run's BMC client and its line for power-on turns.
    pub fn with_power(mut self, power: Option<Arc<PowerControl>>, turns: TurnLine) -> Self {
        self.power = power.map(|p| (p, turns));
        self
    }

    /// Runs the steps from where `start` says; `on_step` learns each step
    /// index before it begins (the coordinator needs it to report an abort).
    pub async fn run(mut self, start: HostStart, on_step: impl Fn(usize)) -> HostOutcome {
        let (first, mut resumed_boot_id, resumed_cycles) = match start {
            HostStart::Done => return HostOutcome::Done,
            HostStart::Fresh => (0, None, 0),
            HostStart::From {
                step,
                reboot_boot_id,
                power_cycles,
            } => (step, reboot_boot_id, power_cycles),
        };
        let stage = Arc::clone(&self.stage);
        for (index, step) in stage.steps.iter().enumerate().skip(first) {
            let kind = StepKind::of(step);
            // A paused run starts no new step on a host in flight.
            if index > first {
                self.emitter.unpaused().await;
            }
            on_step(index);
            self.emitter
                .emit(EventKind::StepStarted {
                    stage: self.stage_ref.clone(),
                    host: self.host_ref.clone(),
                    step: index,
                    kind,
                })
                .await;
            // Only the step a resume starts at may carry a previously issued reboot.
            let (issued, cycles) = if index == first {
                (resumed_boot_id.take(), resumed_cycles)
            } else {
                (None, 0)
            };
            let result = self.step(index, step, issued, cycles).await;
            self.emitter
                .emit(EventKind::StepFinished {
                    stage: self.stage_ref.clone(),
                    host: self.host_ref.clone(),
                    step: index,
                    kind,
                    error: result.as_ref().err().map(|f| f.reason.clone()),
                })
                .await;
            if let Err(f) = result {
                return if f.unreachable() && self.skip_unreachable() {
                    HostOutcome::Unreachable {
                        step: index,
                        failure: f.failure,
                        reason: f.reason,
                    }
                } else {
                    HostOutcome::Failed {
                        step: index,
                        kind,
                        failure: f.failure,
                        reason: f.reason,
                        output: f.output,
                    }
                };
            }
        }
        HostOutcome::Done
    }

    fn skip_unreachable(&self) -> bool {
        self.stage.on_unreachable == crate::playbook::OnUnreachable::Skip
    }

    async fn step(
        &mut self,
        index: usize,
        step: &Step,
        reboot_issued: Option<String>,
        cycles: u32,
    ) -> Result<(), StepFailure> {
        let mut ladder = Ladder {
            cycles,
            resumed: cycles,
            sent: Vec::new(),
            started: Instant::now(),
        };
        match step {
            Step::WaitSsh { timeout } => self.wait_ssh(index, *timeout, &mut ladder).await,
            Step::Run { command, timeout } => {
                let command = fill(command, &self.host)?;
                let out = self.exec_privileged(&command, *timeout).await?;
                check_exit(&command, &out)
            }
            Step::Reboot { timeout, command } => {
                self.reboot(index, *timeout, command, reboot_issued, &mut ladder)
                    .await
            }
            Step::RestartService { unit, timeout } => {
                self.restart_service(index, unit, *timeout).await
            }
            Step::PowerOn(p) => self.power_on_ladder(index, p, &mut ladder).await,
            Step::Health(health) => self.health(health).await,
            Step::Local { command, timeout } => {
                let command = fill(command, &self.host)?;
                let out = crate::transport::local::run(&command, &local_env(&self.host), *timeout)
                    .await
                    .map_err(|e| {
                        StepFailure::new(Failure::Local, format!("local command `{command}`: {e}"))
                    })?;
                check_exit(&command, &out)
            }
        }
    }

    /// Like [`Self::session`], but a connect never runs past `deadline`, so
    /// a black-holed host cannot stretch a poll beyond its step's timeout.
    async fn session_within(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<&C::Connection, ConnectError> {
        if self.session.as_ref().is_none_or(|s| s.is_closed()) {
            self.session = None;
            let mut timeout = self.stage.connect_timeout;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                timeout = timeout.min(left.max(Duration::from_millis(1)));
            }
            let s = self.connector.connect(&self.host, timeout).await?;
            self.session = Some(s);
        }
        // Just set above when it was missing.
        self.session.as_ref().ok_or_else(|| ConnectError {
            kind: crate::transport::ConnectErrorKind::Protocol,
            message: "session vanished".into(),
        })
    }

    /// Runs `command`; `timeout` bounds the connect (when the session must
    /// be opened first) and the command together, so a host whose handshake
    /// hangs costs a step its own timeout, not the stage's connect_timeout.
    async fn exec(&mut self, command: &str, timeout: Duration) -> Result<ExecOutput, StepFailure> {
        let deadline = Instant::now() + timeout;
        let session = self
            .session_within(Some(deadline))
            .await
            .map_err(|e| connect_failure(&e))?;
        session
            .exec(command, left_until(deadline))
            .await
            .map_err(|e| exec_failure(command, &e))
    }

    /// A command that needs privilege (`run`, the reboot command, service
    /// restarts, `ssh:` health checks), through the host's own escalation,
    /// else the stage's `become`; without either it runs as is. sudo's
    /// refusals (password wanted, password wrong, not allowed) are failures
    /// of their own, never the command's exit code.
    async fn exec_privileged(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, StepFailure> {
        match self.exec_escalated(command, timeout).await {
            Ok(out) => Ok(out),
            Err(Escalated::Refused(f) | Escalated::Failed(f)) => Err(f),
        }
    }

    /// [`Self::exec_privileged`], telling a refused escalation (certain:
    /// nothing ran) from a command that did not finish.
    async fn exec_escalated(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, Escalated> {
        let escalation = self
            .host
            .escalation
            .clone()
            .or_else(|| self.stage.escalation.clone());
        let Some(escalation) = escalation else {
            return self.exec(command, timeout).await.map_err(Escalated::Failed);
        };
        let password = self
            .become_password
            .clone()
            .filter(|_| escalation.takes_stdin_password());
        let prompt = match password {
            Some(_) => Prompt::Stdin,
            None => Prompt::Never,
        };
        let wrapped = escalation.wrap(command, prompt);
        let deadline = Instant::now() + timeout;
        let session = self
            .session_within(Some(deadline))
            .await
            .map_err(|e| Escalated::Failed(connect_failure(&e)))?;
        let timeout = left_until(deadline);
        let out = match &password {
            None => session.exec(&wrapped, timeout).await,
            Some(password) => session.exec_with_stdin(&wrapped, password, timeout).await,
        }
        .map_err(|e| Escalated::Failed(exec_failure(command, &e)))?;
        match escalation.refusal(out.exit_status, &out.output) {
            None => Ok(out),
            Some(refusal) => Err(Escalated::Refused(
                StepFailure::new(
                    Failure::Become {
                        refusal: (&refusal).into(),
                    },
                    become_refused(&escalation, &refusal, &self.host.name, password.is_some()),
                )
                .with_output(&out.output),
            )),
        }
    }

    /// Polls connect with backoff until it succeeds or `timeout` passes.
    async fn wait_for_ssh(&mut self, deadline: Instant) -> Result<(), ConnectError> {
        let mut backoff = Backoff::ssh_within(deadline.saturating_duration_since(Instant::now()));
        let mut last: Option<ConnectError> = None;
        loop {
            let err = match self.session_within(Some(deadline)).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            // An attempt cut short by the deadline times out; that says less
            // than what an earlier attempt found (an unknown host key, a
            // refusal), and must not turn a key problem into "unreachable".
            let cut_short = err.kind == crate::transport::ConnectErrorKind::Timeout
                && last
                    .as_ref()
                    .is_some_and(|p| p.kind != crate::transport::ConnectErrorKind::Timeout);
            if !cut_short {
                last = Some(err);
            }
            if !backoff.sleep_until_next(deadline).await {
                return Err(last.unwrap_or_else(|| ConnectError {
                    kind: crate::transport::ConnectErrorKind::Timeout,
                    message: "no connection attempt finished".into(),
                }));
            }
        }
    }

    async fn wait_ssh(
        &mut self,
        index: usize,
        timeout: Duration,
        ladder: &mut Ladder,
    ) -> Result<(), StepFailure> {
        loop {
            let deadline = Instant::now() + timeout;
            let Err(e) = self.wait_for_ssh(deadline).await else {
                return Ok(());
            };
            let error = e.kind;
            let failure = StepFailure::new(
                Failure::NoSsh { error },
                format!(
                    "host did not answer SSH within {} (last error: {e})",
                    humane(timeout)
                ),
            );
            // A key or login problem means its sshd answered: it is up.
            if !error.is_unreachable() {
                return Err(failure);
            }
            match self.remediate(index, ladder, failure, None).await? {
                Rung::CameUp => return Ok(()),
                Rung::Cycled => {}
            }
        }
    }

    /// The next rung for a host silent through a whole wait: `Err` when
    /// there is none (no `remediate`, cycles used up: quarantined) or the
    /// last look found the host up but failing; `CameUp` when the last look
    /// found it back; `Cycled` when a power cycle went out (wait again).
    /// `old_boot`: the boot id a reboot step waits to see change.
    async fn remediate(
        &mut self,
        index: usize,
        ladder: &mut Ladder,
        failure: StepFailure,
        old_boot: Option<&str>,
    ) -> Result<Rung, StepFailure> {
        let Some(remediate) = self.stage.remediate else {
            return Err(failure);
        };
        // Never cycle a host that came up: one more look, past the deadline.
        if let Some(up) = self.last_look(old_boot).await {
            return up.map(|()| Rung::CameUp);
        }
        if ladder.cycles >= remediate.power_cycle {
            return Err(ladder.quarantined(failure));
        }
        let Some((power, turns)) = self.power.clone() else {
            return Err(StepFailure {
                reason: format!(
                    "{}; remediate could not power-cycle it: no BMC credentials were configured for this run",
                    failure.reason
                ),
                ..failure
            });
        };
        let attempt = ladder.cycles + 1;
        let (emitter, stage, host) = (
            self.emitter.clone(),
            self.stage_ref.clone(),
            self.host_ref.clone(),
        );
        let intent = move |reset_type: String| async move {
            emitter
                .intent(EventKind::PowerCycleIssued {
                    stage,
                    host,
                    step: index,
                    attempt,
                    reset_type,
                })
                .await
        };
        match power
            .power_cycle(&self.host, &remediate, &turns, intent)
            .await
        {
            Ok(reset_type) => {
                ladder.cycles = attempt;
                ladder.sent.push((reset_type, ladder.started.elapsed()));
                // Whatever session there was belongs to the old boot.
                self.session = None;
                Ok(Rung::Cycled)
            }
            Err(f) if f.failure == Failure::NotRecorded => Err(f),
            Err(f) => {
                let cycle = format!("power cycle {attempt} through its BMC failed: {}", f.reason);
                Err(if ladder.cycles > 0 {
                    let q = ladder.quarantined(failure);
                    StepFailure {
                        reason: format!("{}; {cycle}", q.reason),
                        ..q
                    }
                } else {
                    StepFailure {
                        reason: format!("{}; {cycle}", failure.reason),
                        ..failure
                    }
                })
            }
        }
    }

    /// One connect past a wait's deadline, before a power cycle: `None`
    /// when the host is still silent (cycle it); otherwise it is up, and
    /// is never cycled: back (`Ok`: it answers, with a new boot id when
    /// `old_boot` is set), or up but failing the step.
    async fn last_look(&mut self, old_boot: Option<&str>) -> Option<Result<(), StepFailure>> {
        self.session = None;
        let deadline = Instant::now() + self.stage.connect_timeout;
        if let Err(e) = self.session_within(Some(deadline)).await {
            let kind = e.kind;
            return (!kind.is_unreachable()).then(|| Err(connect_failure(&e)));
        }
        let Some(before) = old_boot else {
            return Some(Ok(()));
        };
        Some(match self.boot_id(self.stage.command_timeout).await {
            Ok(after) if after != before => Ok(()),
            Ok(_) => Err(StepFailure::new(
                Failure::DidNotReboot,
                format!(
                    "host answers SSH on its old boot (boot id unchanged: {before}); it is up, so it was not power-cycled"
                ),
            )),
            Err(f) => Err(StepFailure {
                reason: format!(
                    "{}; the host answers SSH, so it was not power-cycled",
                    f.reason
                ),
                ..f
            }),
        })
    }

    async fn boot_id(&mut self, timeout: Duration) -> Result<String, StepFailure> {
        let out = self.exec(BOOT_ID_COMMAND, timeout).await?;
        check_exit(BOOT_ID_COMMAND, &out)?;
        parse_boot_id(&out.output).map_err(|e| StepFailure::new(Failure::BootId, e))
    }

    /// The reboot of docs/design.md ("The steps"): boot id, intent, reboot command (a dropped
    /// connection is success), wait for SSH, boot id again.
    async fn reboot(
        &mut self,
        index: usize,
        timeout: Duration,
        command: &Template,
        already_issued: Option<String>,
        ladder: &mut Ladder,
    ) -> Result<(), StepFailure> {
        let mut started = Instant::now();
        let mut deadline = started + timeout;
        let command = fill(command, &self.host)?;
        // A resumed run whose reboot intent was recorded: the command may or
        // may not have left before the interruption. Never send it blindly;
        // only when the host stays up on its old boot for a grace period and
        // is not shutting down (below) was it certainly not delivered.
        // After a power cycle the reboot's delivery no longer matters.
        let mut undelivered_check = already_issued.is_some() && ladder.cycles == 0;
        let before = match already_issued {
            Some(before) => before,
            None => {
                let before = self
                    .boot_id(self.stage.command_timeout.min(timeout))
                    .await?;
                self.issue_reboot(index, &command, &before, timeout).await?;
                self.await_going_down(timeout, deadline).await;
                before
            }
        };
        let grace = REISSUE_GRACE.min(timeout / 4);
        let mut unchanged_since: Option<Instant> = None;
        // The old session belongs to the old boot.
        self.session = None;
        let mut backoff = Backoff::reboot_wait(timeout);
        let mut last_error = String::from("no attempt finished");
        // Whether the latest look found the host up on its old boot (rather
        // than unreachable): decides the failure message and the resend rule.
        let mut on_old_boot = false;
        // Whether the latest look reached the host but could not read its
        // boot id: it is up, so it is never power-cycled.
        let mut answered = false;
        loop {
            if Instant::now() >= deadline {
                let failure = if on_old_boot {
                    StepFailure::new(
                        Failure::DidNotReboot,
                        format!(
                            "host did not reboot (boot id unchanged: {before}) within {}",
                            humane(timeout)
                        ),
                    )
                } else {
                    StepFailure::new(
                        Failure::DidNotComeBack,
                        format!(
                            "host did not come back within the reboot timeout of {} (last error: {last_error})",
                            humane(timeout)
                        ),
                    )
                };
                if on_old_boot || answered {
                    return Err(failure);
                }
                match self
                    .remediate(index, ladder, failure, Some(&before))
                    .await?
                {
                    Rung::CameUp => return Ok(()),
                    Rung::Cycled => {
                        started = Instant::now();
                        deadline = started + timeout;
                        backoff = Backoff::reboot_wait(timeout);
                        undelivered_check = false;
                        unchanged_since = None;
                        last_error = String::from("no attempt finished");
                        continue;
                    }
                }
            }
            match self.session_within(Some(deadline)).await {
                Err(e) => {
                    last_error = e.to_string();
                    // An attempt the deadline cut short saw nothing: the
                    // last real look decides the failure.
                    on_old_boot &= Instant::now() >= deadline;
                    answered &= Instant::now() >= deadline;
                }
                Ok(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.boot_id(self.stage.command_timeout.min(left)).await {
                        Ok(after) if after != before => return Ok(()),
                        // Still the old boot: the host may not have gone down yet.
                        Ok(_) => {
                            on_old_boot = true;
                            let since = *unchanged_since.get_or_insert_with(Instant::now);
                            if undelivered_check
                                && since.elapsed() >= grace
                                && !self.shutting_down(left).await
                            {
                                // Up on the old boot all along and not stopping:
                                // the interrupted run never delivered the command.
                                undelivered_check = false;
                                self.issue_reboot(index, &command, &before, left).await?;
                                self.await_going_down(timeout, deadline).await;
                            }
                            self.session = None;
                        }
                        Err(f) => {
                            last_error = f.reason;
                            on_old_boot &= Instant::now() >= deadline;
                            answered = true;
                            self.session = None;
                        }
                    }
                }
            }
            if !on_old_boot {
                // The host went away: whatever happens next is the reboot.
                unchanged_since = None;
                undelivered_check = false;
            }
            backoff.cap_for_elapsed(started.elapsed());
            if !backoff.sleep_until_next(deadline).await {
                continue;
            }
        }
    }

    /// Records the reboot intent (flushed before anything is sent), then sends
    /// the command. The host going down under us (dropped connection,
    /// timeout) is the expected outcome; a command that was never delivered
    /// shows up later as an unchanged boot id.
    async fn issue_reboot(
        &mut self,
        index: usize,
        command: &str,
        before: &str,
        timeout: Duration,
    ) -> Result<(), StepFailure> {
        self.emitter
            .intent(EventKind::RebootIssued {
                stage: self.stage_ref.clone(),
                host: self.host_ref.clone(),
                step: index,
                boot_id_before: before.to_owned(),
            })
            .await
            .map_err(not_recorded)?;
        let out = self
            .exec_escalated(command, REBOOT_COMMAND_TIMEOUT.min(timeout))
            .await;
        // A refused escalation is certain: nothing ran, the host stays up.
        if let Err(Escalated::Refused(f)) = out {
            return Err(f);
        }
        if let Ok(out) = out
            && let Some(code) = out.exit_status.filter(|c| *c != 0)
        {
            return Err(StepFailure::new(
                Failure::Exited { code },
                format!("reboot command `{command}` exited with {code}"),
            )
            .with_output(&out.output));
        }
        Ok(())
    }

    /// After a reboot command, waits for the host to close our connection:
    /// the sign that it is going down. A poll before that can only log in to
    /// the old boot again, a whole wasted login (a quarter more logins per
    /// host at 4,000 concurrent reboots, BENCHMARKS.md). Bounded, for a host
    /// that ignores the command or whose network stops before its sshd: a
    /// sixtieth of the step's timeout, at most [`GOING_DOWN_WAIT_MAX`].
    async fn await_going_down(&mut self, timeout: Duration, deadline: Instant) {
        let Some(session) = self.session.take() else {
            return;
        };
        let wait = (timeout / 60)
            .min(GOING_DOWN_WAIT_MAX)
            .min(deadline.saturating_duration_since(Instant::now()));
        let _ = tokio::time::timeout(wait, session.closed()).await;
    }

    /// True when systemd says the host is on its way down (a reboot that was
    /// delivered but is still stopping services).
    async fn shutting_down(&mut self, left: Duration) -> bool {
        match self
            .exec(
                "systemctl is-system-running",
                self.stage.command_timeout.min(left),
            )
            .await
        {
            Ok(out) => out.output.contains("stopping"),
            // No answer is no proof that the host is up: do not re-send.
            Err(_) => true,
        }
    }

    /// Redfish power-on through the host's BMC, paced run-wide (`engine::power`).
    /// `power_on`, with the ladder for a host its reachable BMC never
    /// reports On (stuck in POST, say): a power cycle, then the step again
    /// (it reads the power state first, so it sends no second power-on to
    /// a host that came on).
    async fn power_on_ladder(
        &mut self,
        index: usize,
        step: &PowerOn,
        ladder: &mut Ladder,
    ) -> Result<(), StepFailure> {
        loop {
            match self.power_on(index, step).await {
                Err(f)
                    if f.failure
                        == (Failure::PowerOnTimeout {
                            bmc_unreachable: false,
                        }) =>
                {
                    match self.remediate(index, ladder, f, None).await? {
                        Rung::CameUp => return Ok(()),
                        Rung::Cycled => {}
                    }
                }
                other => return other,
            }
        }
    }

    async fn power_on(&mut self, index: usize, step: &PowerOn) -> Result<(), StepFailure> {
        let Some((power, turns)) = self.power.clone() else {
            return Err(StepFailure::new(
                Failure::NoBmc,
                "power_on needs a BMC client: no BMC credentials were configured for this run",
            ));
        };
        let (emitter, stage, host) = (
            self.emitter.clone(),
            self.stage_ref.clone(),
            self.host_ref.clone(),
        );
        let intent = |reset_type: String| async move {
            emitter
                .intent(EventKind::PowerOnIssued {
                    stage,
                    host,
                    step: index,
                    reset_type: Some(reset_type),
                })
                .await
        };
        power
            .power_on(&self.host, step, &turns, intent)
            .await
            .map(|_| ())
    }

    async fn restart_service(
        &mut self,
        index: usize,
        unit: &Template,
        timeout: Duration,
    ) -> Result<(), StepFailure> {
        let unit = fill(unit, &self.host)?;
        let quoted = crate::shell::quote(&unit);
        // The step's timeout bounds all of it: connect, restart and check.
        let deadline = Instant::now() + timeout;
        // Connect before the intent, so an unreachable host records no action.
        self.session_within(Some(deadline))
            .await
            .map_err(|e| connect_failure(&e))?;
        self.emitter
            .intent(EventKind::ServiceRestartIssued {
                stage: self.stage_ref.clone(),
                host: self.host_ref.clone(),
                step: index,
                unit: unit.clone(),
            })
            .await
            .map_err(not_recorded)?;
        let restart = format!("systemctl restart {quoted}");
        let out = self.exec_privileged(&restart, left_until(deadline)).await?;
        check_exit(&restart, &out)?;
        let active = format!("systemctl is-active {quoted}");
        let out = self.exec_privileged(&active, left_until(deadline)).await?;
        check_exit(&active, &out)
    }

    /// Every check must pass in the same round, before the timeout.
    async fn health(&mut self, health: &Health) -> Result<(), StepFailure> {
        let deadline = Instant::now() + health.timeout;
        let mut backoff = Backoff::health(health.interval, health.timeout);
        let mut last: Option<StepFailure> = None;
        loop {
            let Some(failure) = self.health_round(health, deadline).await else {
                return Ok(());
            };
            // A round cut short by the deadline ("timed out after 1ms") says
            // less than the full round before it: report the more telling one.
            if last.is_none() || Instant::now() < deadline {
                last = Some(failure);
            }
            if !backoff.sleep_until_next(deadline).await {
                let failure = last.expect("a failed round was recorded");
                return Err(StepFailure::new(
                    Failure::Unhealthy,
                    format!(
                        "health checks did not pass within {}: {}",
                        humane(health.timeout),
                        failure.reason
                    ),
                )
                .with_output(&failure.output));
            }
        }
    }

    /// The first failing check of one round, or `None` when all pass.
    async fn health_round(&mut self, health: &Health, deadline: Instant) -> Option<StepFailure> {
        for check in &health.checks {
            let left = deadline.saturating_duration_since(Instant::now());
            let left = left.max(Duration::from_millis(1));
            let result = match check {
                Check::Ssh(command) => match fill(command, &self.host) {
                    Err(e) => Err(e),
                    Ok(command) => {
                        let timeout = self.stage.command_timeout.min(left);
                        // Connect within the check's deadline: a silent host must
                        // not hold the step for the stage's whole connect_timeout.
                        match self.session_within(Some(deadline)).await {
                            Err(e) => Err(connect_failure(&e)),
                            Ok(_) => match self.exec_privileged(&command, timeout).await {
                                Ok(out) => check_exit(&command, &out),
                                Err(f) => {
                                    // A broken session is retried on the next round.
                                    self.session = None;
                                    Err(f)
                                }
                            },
                        }
                    }
                },
                Check::Tcp(port) => {
                    let timeout = self.stage.connect_timeout.min(left);
                    crate::transport::probe::tcp(&self.host.address, *port, timeout)
                        .await
                        .map_err(|e| StepFailure::new(Failure::Probe, e))
                }
                Check::Http {
                    url,
                    status,
                    body_contains,
                } => match fill(url, &self.host) {
                    Err(e) => Err(e),
                    Ok(url) => {
                        let timeout = self.stage.command_timeout.min(left);
                        crate::transport::probe::http(
                            &url,
                            *status,
                            body_contains.as_deref(),
                            timeout,
                        )
                        .await
                        .map_err(|e| StepFailure::new(Failure::Probe, e))
                    }
                },
            };
            if let Err(f) = result {
                return Some(f);
            }
        }
        None
    }
}

/// Where a host stands on the remediation ladder within one step.
struct Ladder {
    /// Power cycles this step has had, including before a resume.
    cycles: u32,
    /// Of those, sent before the resume (their intents are in the journal).
    resumed: u32,
    /// Sent by this process: the reset type and when, from the step's start.
    sent: Vec<(String, Duration)>,
    started: Instant,
}

impl Ladder {
    /// The host is set aside: `failure` (the last wait's) with every cycle.
    fn quarantined(&self, failure: StepFailure) -> StepFailure {
        let mut attempts: Vec<String> = (1..=self.resumed)
            .map(|n| format!("#{n} before the resume"))
            .collect();
        for (i, (reset_type, at)) in self.sent.iter().enumerate() {
            attempts.push(format!(
                "#{} {reset_type} after {}",
                self.resumed as usize + i + 1,
                humane(*at)
            ));
        }
        let n = self.cycles;
        StepFailure {
            failure: Failure::Quarantined { power_cycles: n },
            reason: format!(
                "quarantined after {n} power cycle{} through its BMC ({}): {}",
                if n == 1 { "" } else { "s" },
                attempts.join(", "),
                failure.reason
            ),
            output: failure.output,
        }
    }
}

/// What a rung of the ladder did.
enum Rung {
    /// The last look found the host back: the step passes.
    CameUp,
    /// A power cycle went out: wait again.
    Cycled,
}

/// How a privileged command failed.
enum Escalated {
    /// sudo/doas refused: the command never ran.
    Refused(StepFailure),
    /// Connecting or running failed (for a reboot, often the expected drop).
    Failed(StepFailure),
}

/// The words for a refused escalation; never the password.
fn become_refused(
    escalation: &Become,
    refusal: &Refusal,
    host: &str,
    had_password: bool,
) -> String {
    let method = escalation.method.name();
    match refusal {
        Refusal::NeedsPassword if escalation.method == BecomeMethod::Doas => format!(
            "doas requires a password on {host} (doas reads passwords only from a \
             terminal: allow the login user with `permit nopass`)"
        ),
        Refusal::NeedsPassword if had_password => format!(
            "sudo requires a password on {host} and did not take the one from \
             --become-password-file"
        ),
        Refusal::NeedsPassword => format!(
            "sudo requires a password on {host} (pass --become-password-file FILE, \
             or allow the login user NOPASSWD)"
        ),
        Refusal::WrongPassword => {
            format!("sudo rejected the password from --become-password-file on {host}")
        }
        Refusal::NotAllowed(said) => format!(
            "{method} refused to run the command as {} on {host}: {said}",
            escalation.user
        ),
        Refusal::Missing(said) => {
            format!("{method} is not available on {host}: {said}")
        }
    }
}

fn check_exit(command: &str, out: &ExecOutput) -> Result<(), StepFailure> {
    match out.exit_status {
        Some(0) => Ok(()),
        Some(code) => Err(StepFailure::new(
            Failure::Exited { code },
            format!("`{command}` exited with {code}"),
        )
        .with_output(&out.output)),
        None => Err(StepFailure::new(
            Failure::NoExitStatus,
            format!("`{command}` ended without an exit status"),
        )
        .with_output(&out.output)),
    }
}

/// `REKINDLE_HOST`, `REKINDLE_ADDRESS`, `REKINDLE_LABEL_<KEY>` for local steps.
pub fn local_env(host: &Host) -> Vec<(String, String)> {
    let mut env = vec![
        ("REKINDLE_HOST".to_owned(), host.name.clone()),
        ("REKINDLE_ADDRESS".to_owned(), host.address.clone()),
        ("REKINDLE_PORT".to_owned(), host.port.to_string()),
    ];
    for (k, v) in &host.labels {
        let key: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        env.push((format!("REKINDLE_LABEL_{key}"), v.clone()));
    }
    env
}

pub use crate::playbook::units::humane;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::diag::Span;

    fn host() -> Host {
        Host {
            name: "db1".into(),
            address: "10.0.0.1".into(),
            port: 2222,
            user: None,
            jump: None,
            labels: BTreeMap::from([
                ("rack".to_owned(), "r'1".to_owned()),
                ("path".to_owned(), "a b/c".to_owned()),
            ]),
            identity_file: None,
            escalation: None,
            bmc: None,
            groups: vec![],
            span: Span::file(Arc::from("t")),
        }
    }

    #[test]
    fn boot_ids_are_uuids() {
        let id = "3f2a1c9e-8b7d-4e6f-a5c4-0123456789ab";
        assert_eq!(parse_boot_id(&format!("{id}\n")).as_deref(), Ok(id));
        assert!(parse_boot_id("").unwrap_err().contains("empty output"));
        assert!(
            parse_boot_id("hello")
                .unwrap_err()
                .contains("printed \"hello\", not a boot id")
        );
        assert!(parse_boot_id("3f2a1c9e88b7d-4e6f-a5c4-0123456789ab").is_err());
    }

    #[test]
    fn local_env_names_labels() {
        let env = local_env(&host());
        assert!(env.contains(&("REKINDLE_LABEL_RACK".into(), "r'1".into())));
        assert!(env.contains(&("REKINDLE_HOST".into(), "db1".into())));
    }

    #[test]
    fn humane_durations() {
        assert_eq!(humane(Duration::from_secs(900)), "15m");
        assert_eq!(humane(Duration::from_secs(90)), "1m30s");
        assert_eq!(humane(Duration::from_millis(1500)), "1500ms");
    }
}
