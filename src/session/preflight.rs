//! `rekindle plan --preflight`: connect to every host the plan selects (host
//! key, authentication), read its boot id, and report each host's problem
//! grouped by kind. Nothing on a host changes: the one command sent is a read
//! of `/proc/sys/kernel/random/boot_id`.
//!
//! Owns the preflight's bounded fan-out, the classification of problems and
//! their report. SSH itself is the transport's; it must not run steps,
//! schedule stages or retry (one attempt per host says how a run would start).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::engine::steps::BOOT_ID_COMMAND;
use crate::inventory::{Host, Inventory};
use crate::plan::Plan;
use crate::playbook::{Check, Step};
use crate::transport::{ConnectErrorKind, Connection, Connector};

/// Hosts checked at once. sshd handles about 40 handshakes a second per
/// core; more in flight only queues them and risks `MaxStartups` drops.
pub const PARALLEL: usize = 32;
/// Reading the boot id is instant on a healthy host.
const BOOT_ID_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a host would not start cleanly, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    UnknownKey,
    ChangedKey,
    /// A host certificate the known CAs do not vouch for.
    Certificate,
    Auth,
    Unreachable,
    /// Connected, but something else went wrong (protocol, boot id unreadable).
    Other,
}

impl ProblemKind {
    pub(crate) fn title(self) -> &'static str {
        match self {
            ProblemKind::UnknownKey => "unknown host key",
            ProblemKind::ChangedKey => "CHANGED host key",
            ProblemKind::Certificate => "host certificate refused",
            ProblemKind::Auth => "authentication failed",
            ProblemKind::Unreachable => "unreachable",
            ProblemKind::Other => "other",
        }
    }

    fn code(self) -> &'static str {
        match self {
            ProblemKind::UnknownKey => "unknown_host_key",
            ProblemKind::ChangedKey => "changed_host_key",
            ProblemKind::Certificate => "host_certificate",
            ProblemKind::Auth => "auth",
            ProblemKind::Unreachable => "unreachable",
            ProblemKind::Other => "other",
        }
    }

    /// What an operator changes so the host answers.
    pub(crate) fn fix(self) -> &'static str {
        match self {
            ProblemKind::UnknownKey => {
                "add the host's key to known_hosts (check its fingerprint first), or --accept-new-host-keys"
            }
            ProblemKind::ChangedKey => {
                "find out why the key changed; replace the known_hosts line only once it is explained"
            }
            ProblemKind::Certificate => {
                "check the host certificate's principals and validity against the @cert-authority line"
            }
            ProblemKind::Auth => {
                "check the login user and the identity files (--identity, ssh-agent)"
            }
            ProblemKind::Unreachable => {
                "check the address, the port, the jump host and the network path"
            }
            ProblemKind::Other => "see the message of each host",
        }
    }

    pub(crate) fn of(kind: ConnectErrorKind) -> ProblemKind {
        match kind {
            ConnectErrorKind::HostKeyUnknown => ProblemKind::UnknownKey,
            ConnectErrorKind::HostKeyChanged => ProblemKind::ChangedKey,
            ConnectErrorKind::HostCertificate => ProblemKind::Certificate,
            ConnectErrorKind::Auth => ProblemKind::Auth,
            k if k.is_unreachable() => ProblemKind::Unreachable,
            _ => ProblemKind::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

/// One host's preflight: its boot id, or what stopped us reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCheck {
    /// Index in `Inventory::hosts`.
    pub host: usize,
    pub result: Result<String, Problem>,
}

/// Whether a step logs in over SSH (`local`, `power_on`, tcp and http
/// checks never do).
fn uses_ssh(step: &Step) -> bool {
    match step {
        Step::WaitSsh { .. }
        | Step::Run { .. }
        | Step::Reboot { .. }
        | Step::RestartService { .. } => true,
        Step::Health(h) => h.checks.iter().any(|c| matches!(c, Check::Ssh(_))),
        Step::PowerOn(_) | Step::Local { .. } => false,
    }
}

/// Every host some stage would reach over SSH, once, with the connect
/// timeout of the first such stage (in plan order). A host only `local` or
/// `power_on` steps touch is not checked: nothing in the run logs into it.
fn targets(plan: &Plan) -> Vec<(usize, Duration)> {
    let mut seen: BTreeMap<usize, Duration> = BTreeMap::new();
    for s in plan.stages.iter().filter(|s| s.steps.iter().any(uses_ssh)) {
        for &h in &s.hosts {
            seen.entry(h).or_insert(s.connect_timeout);
        }
    }
    seen.into_iter().collect()
}

/// Hosts some stage selects that [`check`] leaves alone (no SSH step).
pub fn unchecked(plan: &Plan) -> usize {
    plan.distinct_hosts() - targets(plan).len()
}

/// Checks every selected host, at most `parallel` at once; results in
/// inventory order.
pub async fn check<C: Connector>(
    connector: Arc<C>,
    inventory: &Inventory,
    plan: &Plan,
    parallel: usize,
) -> Vec<HostCheck> {
    let work = targets(plan)
        .into_iter()
        .filter_map(|(index, timeout)| Some((index, inventory.hosts.get(index)?, timeout)));
    let mut results: Vec<HostCheck> = futures::stream::iter(work)
        .map(|(index, host, timeout)| {
            let connector = Arc::clone(&connector);
            async move {
                HostCheck {
                    host: index,
                    result: check_one(&*connector, host, timeout).await,
                }
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    results.sort_by_key(|c| c.host);
    results
}

async fn check_one<C: Connector>(
    connector: &C,
    host: &Host,
    timeout: Duration,
) -> Result<String, Problem> {
    let session = connector
        .connect(host, timeout)
        .await
        .map_err(|e| Problem {
            kind: ProblemKind::of(e.kind),
            message: e.message,
        })?;
    let other = |message: String| Problem {
        kind: ProblemKind::Other,
        message,
    };
    let out = session
        .exec(BOOT_ID_COMMAND, BOOT_ID_TIMEOUT)
        .await
        .map_err(|e| other(format!("cannot read the boot id: {e}")))?;
    match out.exit_status {
        Some(0) => {}
        Some(code) => {
            return Err(other(format!(
                "cannot read the boot id: `{BOOT_ID_COMMAND}` exited with {code}: {}",
                last_line(&out.output)
            )));
        }
        None => {
            return Err(other(format!(
                "cannot read the boot id: `{BOOT_ID_COMMAND}` ended without an exit status"
            )));
        }
    }
    crate::engine::steps::parse_boot_id(&out.output).map_err(other)
}

fn last_line(text: &str) -> &str {
    text.trim().lines().last().unwrap_or("")
}

/// The name once, then the message without the name it usually starts with.
fn detail<'a>(name: &str, message: &'a str) -> &'a str {
    message
        .strip_prefix(name)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message)
}

fn grouped<'a>(
    inventory: &'a Inventory,
    checks: &'a [HostCheck],
) -> BTreeMap<ProblemKind, Vec<(&'a str, &'a str)>> {
    let mut groups: BTreeMap<ProblemKind, Vec<(&str, &str)>> = BTreeMap::new();
    for c in checks {
        if let (Err(p), Some(h)) = (&c.result, inventory.hosts.get(c.host)) {
            groups
                .entry(p.kind)
                .or_default()
                .push((h.name.as_str(), detail(&h.name, &p.message)));
        }
    }
    groups
}

/// The preflight section of `plan`'s text output.
pub fn render_text(inventory: &Inventory, plan: &Plan, checks: &[HostCheck]) -> String {
    let mut out = String::new();
    let problems = checks.iter().filter(|c| c.result.is_err()).count();
    let _ = writeln!(
        out,
        "\nPreflight: {} hosts checked, {} ok, {problems} with problems",
        checks.len(),
        checks.len() - problems
    );
    let skipped = unchecked(plan);
    if skipped > 0 {
        let _ = writeln!(
            out,
            "  {skipped} hosts not checked: their stages never log in over SSH"
        );
    }
    for (kind, hosts) in grouped(inventory, checks) {
        let _ = writeln!(out, "  {} ({}):", kind.title(), hosts.len());
        let width = hosts.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, message) in hosts {
            let _ = writeln!(out, "    {name:<width$}  {message}");
        }
    }
    out
}

/// The `preflight` member of `plan --format json`:
/// `{ "checked": int, "ok": int, "problems": int, "not_checked": int,
///    "by_kind": { kind: [{ "host", "message" }] }, "boot_ids": { host: id } }`.
pub fn render_json(inventory: &Inventory, plan: &Plan, checks: &[HostCheck]) -> Value {
    let problems = checks.iter().filter(|c| c.result.is_err()).count();
    let by_kind: serde_json::Map<String, Value> = grouped(inventory, checks)
        .into_iter()
        .map(|(kind, hosts)| {
            let list = hosts
                .into_iter()
                .map(|(host, message)| json!({ "host": host, "message": message }))
                .collect();
            (kind.code().to_owned(), Value::Array(list))
        })
        .collect();
    let boot_ids: serde_json::Map<String, Value> = checks
        .iter()
        .filter_map(|c| {
            let id = c.result.as_ref().ok()?;
            let h = inventory.hosts.get(c.host)?;
            Some((h.name.clone(), Value::String(id.clone())))
        })
        .collect();
    json!({
        "checked": checks.len(),
        "ok": checks.len() - problems,
        "problems": problems,
        "not_checked": unchecked(plan),
        "by_kind": by_kind,
        "boot_ids": boot_ids,
    })
}

/// What `plan --preflight` found.
pub struct Found {
    pub checks: Vec<HostCheck>,
    /// The power state of every host reached through its BMC; `None` when
    /// the plan reaches no BMC or it could not be read (see `warnings`).
    pub power: Option<Vec<super::power_check::PowerCheck>>,
    pub warnings: Vec<String>,
}

impl Found {
    /// Every host answered with a boot id, and every power state was read.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.result.is_ok())
            && self.power.iter().flatten().all(|c| c.result.is_ok())
    }
}

/// `plan --preflight` on a runtime of its own: every selected host's
/// connection check and, when the plan powers hosts on, the power state
/// read through the BMCs (`bmc`'s credentials file, else the environment), at most
/// [`PARALLEL`] at once, fewer when the descriptor limit cannot hold them.
/// `Err` means nothing was checked.
pub fn run(
    ssh: crate::transport::ssh::SshOptions,
    plan: &Plan,
    inventory: &Inventory,
    bmc: super::BmcSettings,
) -> anyhow::Result<Found> {
    let connector = Arc::new(
        crate::transport::ssh::SshConnector::new(ssh).map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let parallel = parallelism();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let checks = runtime.block_on(check(connector, inventory, plan, parallel));
    let mut warnings = Vec::new();
    let power = power_states(plan, inventory, &bmc, &runtime, parallel).unwrap_or_else(|e| {
        warnings.push(format!("power state not read: {e}"));
        None
    });
    // Connections still closing must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(Found {
        checks,
        power,
        warnings,
    })
}

/// The power state of every host reached through its BMC (power_on and
/// remediate; Redfish or IPMI); `None` when the plan reaches no BMC.
fn power_states(
    plan: &Plan,
    inventory: &Inventory,
    settings: &super::BmcSettings,
    runtime: &tokio::runtime::Runtime,
    parallel: usize,
) -> anyhow::Result<Option<Vec<super::power_check::PowerCheck>>> {
    let Some(bmc) = super::bmc_client(plan, inventory, settings)? else {
        return Ok(None);
    };
    let power = Arc::new(crate::engine::power::PowerControl::new(bmc));
    Ok(Some(runtime.block_on(super::power_check::check(
        power, inventory, plan, parallel,
    ))))
}

/// [`PARALLEL`], or fewer when the file descriptor limit (raised to its
/// hard limit first) cannot hold that many sockets.
fn parallelism() -> usize {
    use super::descriptors;
    let mut notes = Vec::new();
    let limit = descriptors::raise_limit(&mut notes);
    let fit = descriptors::fit(limit, 1, 0, None, 1).parallel;
    PARALLEL.min(fit)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::diag::Span;
    use crate::transport::{ConnectError, ExecError, ExecOutput};

    /// Answers by host name: `unknown*`, `changed*`, `auth*`, `down*` fail to
    /// connect with that kind, `weird*` prints no boot id; it records how many
    /// connects were in flight at once.
    #[derive(Default)]
    struct Fake {
        now: AtomicUsize,
        most: AtomicUsize,
        calls: Mutex<Vec<String>>,
    }

    struct FakeSession(String);

    impl Connection for FakeSession {
        async fn exec(&self, command: &str, _: Duration) -> Result<ExecOutput, ExecError> {
            assert_eq!(command, BOOT_ID_COMMAND, "preflight only reads the boot id");
            let output = if self.0.starts_with("weird") {
                "hello".into()
            } else {
                "0a1b2c3d-0000-4000-8000-00000000000f".into()
            };
            Ok(ExecOutput {
                exit_status: Some(0),
                output,
            })
        }

        fn is_closed(&self) -> bool {
            false
        }

        async fn closed(&self) {
            std::future::pending().await
        }
    }

    impl Connector for Fake {
        type Connection = FakeSession;

        async fn connect(&self, host: &Host, _: Duration) -> Result<FakeSession, ConnectError> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            self.calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(host.name.clone());
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            let fail = |kind| {
                Err(ConnectError {
                    kind,
                    message: format!("{}: it went wrong", host.name),
                })
            };
            match &host.name {
                n if n.starts_with("unknown") => fail(ConnectErrorKind::HostKeyUnknown),
                n if n.starts_with("changed") => fail(ConnectErrorKind::HostKeyChanged),
                n if n.starts_with("auth") => fail(ConnectErrorKind::Auth),
                n if n.starts_with("down") => fail(ConnectErrorKind::Timeout),
                _ => Ok(FakeSession(host.name.clone())),
            }
        }
    }

    fn host(name: &str) -> Host {
        Host {
            name: name.into(),
            address: "127.0.0.1".into(),
            port: 22,
            user: None,
            jump: None,
            labels: BTreeMap::new(),
            identity_file: None,
            escalation: None,
            bmc: None,
            groups: vec![],
            span: Span::file(Arc::from("t")),
        }
    }

    fn world(names: &[&str], stages: &[&[usize]]) -> (Inventory, Plan) {
        let inventory = Inventory {
            hosts: names.iter().map(|n| host(n)).collect(),
            ..Inventory::default()
        };
        let stage = |hosts: &[usize]| crate::plan::StagePlan {
            name: "s".into(),
            after: vec![],
            gates: vec![],
            ramp: vec![],
            hosts: hosts.to_vec(),
            canaries: 0,
            window: 1,
            failure_budget: 0,
            rate: None,
            rate_per: None,
            max_unavailable: vec![],
            on_unreachable: crate::playbook::OnUnreachable::Fail,
            retry_failed_hosts: false,
            remediate: None,
            escalation: None,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            steps: vec![Step::Run {
                command: crate::playbook::Template::sh("true"),
                timeout: Duration::from_secs(2),
            }],
            host_estimate: Duration::ZERO,
            estimate: Duration::ZERO,
        };
        let plan = Plan {
            name: "p".into(),
            stages: stages.iter().map(|h| stage(h)).collect(),
            waves: vec![],
            warnings: vec![],
            estimate: Duration::ZERO,
        };
        (inventory, plan)
    }

    #[tokio::test(start_paused = true)]
    async fn every_selected_host_once_with_bounded_parallelism() {
        let names: Vec<String> = (0..20).map(|i| format!("ok{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Host 0..15 in one stage, 10..19 in another: 10..15 are checked once.
        let (inv, plan) = world(
            &refs,
            &[&(0..15).collect::<Vec<_>>(), &(10..20).collect::<Vec<_>>()],
        );
        let fake = Arc::new(Fake::default());
        let checks = check(Arc::clone(&fake), &inv, &plan, 3).await;
        assert_eq!(checks.len(), 20);
        assert!(checks.iter().all(|c| c.result.is_ok()));
        assert_eq!(
            checks.iter().map(|c| c.host).collect::<Vec<_>>(),
            (0..20).collect::<Vec<_>>()
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 20);
        assert_eq!(fake.most.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn hosts_no_stage_logs_into_are_not_checked() {
        let (inv, mut plan) = world(&["ssh1", "ssh2", "local1"], &[&[0, 1], &[1, 2]]);
        plan.stages[1].steps = vec![
            Step::Local {
                command: crate::playbook::Template::sh("drain {name}"),
                timeout: Duration::from_secs(1),
            },
            Step::Health(crate::playbook::Health {
                checks: vec![Check::Tcp(80)],
                timeout: Duration::from_secs(1),
                interval: Duration::from_secs(1),
            }),
        ];
        let fake = Arc::new(Fake::default());
        let checks = check(Arc::clone(&fake), &inv, &plan, 4).await;
        assert_eq!(*fake.calls.lock().unwrap(), ["ssh1", "ssh2"]);
        assert_eq!(checks.len(), 2);
        assert_eq!(unchecked(&plan), 1);
        assert!(
            render_text(&inv, &plan, &checks)
                .contains("1 hosts not checked: their stages never log in over SSH")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn problems_are_grouped_by_kind() {
        let names = [
            "ok1", "down1", "unknown1", "auth1", "changed1", "down2", "weird1",
        ];
        let (inv, plan) = world(&names, &[&[0, 1, 2, 3, 4, 5, 6]]);
        let checks = check(Arc::new(Fake::default()), &inv, &plan, 8).await;
        let text = render_text(&inv, &plan, &checks);
        let expected = "
Preflight: 7 hosts checked, 1 ok, 6 with problems
  unknown host key (1):
    unknown1  it went wrong
  CHANGED host key (1):
    changed1  it went wrong
  authentication failed (1):
    auth1  it went wrong
  unreachable (2):
    down1  it went wrong
    down2  it went wrong
  other (1):
    weird1  `cat /proc/sys/kernel/random/boot_id` printed \"hello\", not a boot id
";
        assert_eq!(text, expected);
        let json = render_json(&inv, &plan, &checks);
        assert_eq!(json["problems"], 6);
        assert_eq!(json["by_kind"]["unreachable"][1]["host"], "down2");
        assert_eq!(
            json["boot_ids"]["ok1"],
            "0a1b2c3d-0000-4000-8000-00000000000f"
        );
    }
}
