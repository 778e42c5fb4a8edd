//! IPMI 2.0 (RMCP+, "lanplus") power control for `power_on` and the
//! `remediate` power cycle, through Debian's `ipmitool` as an external
//! program: no maintained Rust crate
//! speaks IPMI 2.0 well. A host whose `bmc` label is `ipmi://ADDR[:PORT]`
//! (port 623 by default) is powered on this way.
//!
//! Owns the `ipmitool` command lines, their bounded run (each call is
//! killed when it overruns [`CALL_TIMEOUT`]) and reading their answers. The
//! password goes to the child alone, in its `IPMI_PASSWORD` environment
//! (`-E`): never on a command line (`ps` shows those), never in a message.
//!
//! [`Bmcs`] presents an IPMI BMC to the engine as the one-system Redfish
//! service the [`Bmc`] trait describes (a systems collection with one member,
//! its `PowerState`, a reset action), so `engine::power` applies the same
//! pacing, etiquette, intent and resume rules to both. Like the rest of the
//! transport it must not retry, poll or pace: one call is one `ipmitool` run.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::bmc::{
    Auth, Bmc, BmcError, BmcErrorKind, BmcFuture, CredentialStore, Endpoint, SYSTEMS_PATH,
};
use super::redfish::Redfish;

/// The IANA port of RMCP.
pub use crate::inventory::bmc::IPMI_PORT as DEFAULT_PORT;
/// Where an `ipmi://` BMC listens: the model's type, read with the inventory.
pub use crate::inventory::bmc::IpmiTarget as Target;
/// One `ipmitool` run: a session handshake and one command.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The one "system" an IPMI BMC has, as the engine addresses it.
pub const IPMI_SYSTEM: &str = "/ipmi/chassis";
/// Cipher suites tried in order: 17 (RAKP-HMAC-SHA256, AES-CBC-128), which
/// newer BMCs require (some with 3 disabled), then 3 (RAKP-HMAC-SHA1,
/// AES-CBC-128), which older BMCs and `ipmi_sim` accept. The first one a
/// BMC accepts is kept for it for the rest of the run.
pub const CIPHER_SUITES: [u8; 2] = [17, 3];
/// The host label that pins a BMC's cipher suite (no fallback then).
pub const SUITE_LABEL: &str = "ipmi_cipher_suite";
/// Output kept from a failed call, for the message.
const TAIL: usize = 300;

/// The `ipmitool` client.
pub struct Ipmi {
    program: PathBuf,
    credentials: Arc<CredentialStore>,
    timeout: Duration,
    /// `ipmi_cipher_suite` labels, by target (`ipmi://ADDR:PORT`).
    pinned: HashMap<String, u8>,
    /// The suite each BMC accepted, by target, for the rest of the run.
    chosen: Mutex<HashMap<String, u8>>,
}

impl fmt::Debug for Ipmi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipmi")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

/// What `chassis power status` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChassisPower {
    On,
    Off,
}

impl Ipmi {
    pub fn new(credentials: Arc<CredentialStore>) -> Ipmi {
        Ipmi {
            program: PathBuf::from("ipmitool"),
            credentials,
            timeout: CALL_TIMEOUT,
            pinned: HashMap::new(),
            chosen: Mutex::new(HashMap::new()),
        }
    }

    /// Cipher suites pinned by `ipmi_cipher_suite` labels, by target.
    pub fn with_pinned_suites(mut self, pinned: HashMap<String, u8>) -> Ipmi {
        self.pinned = pinned;
        self
    }

    /// One `ipmitool -I lanplus` run of `args` against `target` with the
    /// credentials entry `account`: its stdout, or the classified failure.
    /// The cipher suite is the pinned one, else the one this BMC accepted
    /// before, else 17 and then 3 (a second run only when the BMC refused
    /// 17's algorithms: wrong credentials are never tried twice).
    async fn call(
        &self,
        target: &Target,
        account: Option<&str>,
        args: &[&str],
    ) -> Result<String, BmcError> {
        let key = target.to_string();
        if let Some(&suite) = self.pinned.get(&key) {
            return self
                .call_with(target, account, args, suite)
                .await
                .map_err(|e| match e {
                    Attempt::SuiteRefused => BmcError::new(
                        BmcErrorKind::Protocol,
                        format!(
                            "BMC {target} refused cipher suite {suite}, which its host's \
                         `{SUITE_LABEL}` label pins"
                        ),
                    ),
                    Attempt::Failed(e) => e,
                });
        }
        let known = self
            .chosen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        let suites: Vec<u8> = match known {
            Some(s) => vec![s],
            None => CIPHER_SUITES.to_vec(),
        };
        for suite in &suites {
            match self.call_with(target, account, args, *suite).await {
                Ok(out) => {
                    self.chosen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(key, *suite);
                    return Ok(out);
                }
                Err(Attempt::SuiteRefused) => continue,
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        let tried: Vec<String> = suites.iter().map(u8::to_string).collect();
        Err(BmcError::new(
            BmcErrorKind::Protocol,
            format!(
                "BMC {target} refused cipher suites {} (pin the one it takes with the host \
                 label `{SUITE_LABEL}`)",
                tried.join(" and ")
            ),
        ))
    }

    /// One run with cipher suite `suite`.
    async fn call_with(
        &self,
        target: &Target,
        account: Option<&str>,
        args: &[&str],
        suite: u8,
    ) -> Result<String, Attempt> {
        let suite = suite.to_string();
        let credentials = self
            .credentials
            .entry(account)
            .map_err(|e| BmcError::new(BmcErrorKind::Auth, e.to_string()))?;
        let port = target.port.to_string();
        let mut cmd = tokio::process::Command::new(&self.program);
        // -v: its session errors tell a bad password from no answer.
        // -N/-R: ipmitool's own retransmits stay inside our bound.
        cmd.args(["-v", "-I", "lanplus", "-C", &suite, "-N", "2", "-R", "2"])
            .args([
                "-H",
                &target.host,
                "-p",
                &port,
                "-U",
                &credentials.user,
                "-E",
            ])
            .args(args)
            // Only what ipmitool needs: no other secret of ours (the operator's
            // REKINDLE_BMC_PASSWORD, say) reaches it.
            .env_clear()
            .envs(std::env::var_os("PATH").map(|p| ("PATH", p)))
            .env("LC_ALL", "C")
            .env("IPMI_PASSWORD", credentials.password.expose())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = args.join(" ");
        let child = cmd.spawn().map_err(|e| {
            Attempt::Failed(BmcError::new(
                BmcErrorKind::Protocol,
                format!("BMC {target}: cannot run ipmitool ({e}); install Debian's `ipmitool`"),
            ))
        })?;
        // Dropping the future on timeout kills the child (kill_on_drop).
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => {
                return Err(Attempt::Failed(BmcError::new(
                    BmcErrorKind::Unreachable,
                    format!(
                        "BMC {target}: `{what}` got no answer within {}s",
                        self.timeout.as_secs()
                    ),
                )));
            }
            Ok(Err(e)) => {
                return Err(Attempt::Failed(BmcError::new(
                    BmcErrorKind::Protocol,
                    format!("BMC {target}: ipmitool: {e}"),
                )));
            }
            Ok(Ok(out)) => out,
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        if suite_refused(&stderr) {
            return Err(Attempt::SuiteRefused);
        }
        Err(Attempt::Failed(classify(
            target,
            &what,
            &stderr,
            &credentials.source,
        )))
    }

    /// `chassis status`: the power and the power-restore policy (as
    /// Redfish names it: `AlwaysOn`, `AlwaysOff`, `LastState`; `None` when
    /// the BMC does not say).
    pub async fn chassis(
        &self,
        target: &Target,
        account: Option<&str>,
    ) -> Result<(ChassisPower, Option<&'static str>), BmcError> {
        let out = self.call(target, account, &["chassis", "status"]).await?;
        parse_chassis(&out).ok_or_else(|| {
            BmcError::new(
                BmcErrorKind::Protocol,
                format!(
                    "BMC {target}: unexpected answer to `chassis status`: {}",
                    tail(out.trim())
                ),
            )
        })
    }

    /// `chassis power status`.
    pub async fn power(
        &self,
        target: &Target,
        account: Option<&str>,
    ) -> Result<ChassisPower, BmcError> {
        let out = self
            .call(target, account, &["chassis", "power", "status"])
            .await?;
        parse_status(&out).ok_or_else(|| {
            BmcError::new(
                BmcErrorKind::Protocol,
                format!(
                    "BMC {target}: unexpected answer to `chassis power status`: {}",
                    tail(out.trim())
                ),
            )
        })
    }
}

/// How one `ipmitool` run failed.
enum Attempt {
    /// The BMC refused the cipher suite's algorithms (try the next suite).
    SuiteRefused,
    Failed(BmcError),
}

impl From<BmcError> for Attempt {
    fn from(e: BmcError) -> Attempt {
        Attempt::Failed(e)
    }
}

/// The open-session answer that refuses a cipher suite's algorithms (it
/// comes before authentication, so it says nothing about the password).
fn suite_refused(stderr: &str) -> bool {
    stderr.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("invalid authentication algorithm")
            || l.contains("invalid integrity algorithm")
            || l.contains("invalid confidentiality algorithm")
            || l.contains("no matching cipher suite")
            || l.contains("invalid cipher suite")
    })
}

/// `Chassis Power is on|off`.
/// `System Power : on` and `Power Restore Policy : previous` of
/// `ipmitool chassis status`.
fn parse_chassis(out: &str) -> Option<(ChassisPower, Option<&'static str>)> {
    let field = |name: &str| {
        out.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| v.trim().to_owned())
        })
    };
    let power = match field("System Power")?.as_str() {
        "on" => ChassisPower::On,
        "off" => ChassisPower::Off,
        _ => return None,
    };
    let policy = field("Power Restore Policy").and_then(|p| match p.as_str() {
        "always-on" => Some("AlwaysOn"),
        "always-off" => Some("AlwaysOff"),
        "previous" => Some("LastState"),
        _ => None,
    });
    Some((power, policy))
}

fn parse_status(out: &str) -> Option<ChassisPower> {
    out.lines().find_map(
        |l| match l.trim().strip_prefix("Chassis Power is ")?.trim() {
            "on" => Some(ChassisPower::On),
            "off" => Some(ChassisPower::Off),
            _ => None,
        },
    )
}

/// What a failed `ipmitool` run means. The RAKP errors come only after the
/// BMC answered, so they are the credentials; a missing answer to the first
/// request (Get Channel Authentication Capabilities) is an absent BMC.
fn classify(target: &Target, what: &str, stderr: &str, source: &str) -> BmcError {
    let said: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Loading IANA"))
        .collect();
    let has = |needle: &str| said.iter().any(|l| l.contains(needle));
    if has("RAKP 2 HMAC is invalid")
        || has("unauthorized name")
        || has("RAKP 4 message has invalid integrity check")
        || has("invalid role")
    {
        return BmcError::new(
            BmcErrorKind::Auth,
            format!("BMC {target} rejected the credentials from {source} (IPMI RMCP+ session)"),
        );
    }
    let last = said.last().copied().unwrap_or("no message");
    if has("Get Auth Capabilities error")
        || has("Error issuing Get Channel Authentication Capabilities")
        || has("No response")
        || has("Connection refused")
    {
        return BmcError::new(
            BmcErrorKind::Unreachable,
            format!("BMC {target}: no IPMI answer to `{what}` ({})", tail(last)),
        );
    }
    BmcError::new(
        BmcErrorKind::Protocol,
        format!("BMC {target}: `{what}` failed: {}", tail(last)),
    )
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(TAIL);
    let start = (start..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    &s[start..]
}

/// The Redfish reset types an IPMI chassis takes (see [`reset_command`]).
const IPMI_RESET_TYPES: [&str; 4] = ["On", "ForceOn", "PowerCycle", "ForceRestart"];

/// The `ipmitool` commands for a Redfish reset type.
fn reset_command(reset_type: &str) -> Option<&'static [&'static str]> {
    Some(match reset_type {
        "On" | "ForceOn" => &["chassis", "power", "on"],
        "PowerCycle" => &["chassis", "power", "cycle"],
        "ForceRestart" => &["chassis", "power", "reset"],
        _ => return None,
    })
}

/// Every BMC of a run: Redfish for `https://` (and bare) `bmc` labels,
/// IPMI for `ipmi://` ones.
#[derive(Debug)]
pub struct Bmcs {
    redfish: Redfish,
    ipmi: Ipmi,
}

impl Bmcs {
    pub fn new(redfish: Redfish, ipmi: Ipmi) -> Bmcs {
        Bmcs { redfish, ipmi }
    }
}

/// The IPMI target of an endpoint, if it is one.
fn ipmi_target(bmc: &Endpoint) -> Option<Result<Target, BmcError>> {
    Target::parse(bmc.as_str()).map(|r| r.map_err(|e| BmcError::new(BmcErrorKind::Protocol, e)))
}

impl Bmc for Bmcs {
    fn known_login(&self, bmc: &Endpoint, account: Option<&str>) -> Option<Auth> {
        match ipmi_target(bmc) {
            None => self.redfish.known_login(bmc, account),
            // RMCP+ opens a session per ipmitool run: no request to make.
            Some(Ok(_)) if self.ipmi.credentials.entry(account).is_ok() => Some(Auth::Basic {
                account: account.map(str::to_owned),
            }),
            Some(_) => None,
        }
    }

    fn login<'a>(&'a self, bmc: &'a Endpoint, account: Option<&'a str>) -> BmcFuture<'a, Auth> {
        match ipmi_target(bmc) {
            None => self.redfish.login(bmc, account),
            // RMCP+ opens a session per ipmitool run: nothing to open now.
            Some(target) => Box::pin(async move {
                target?;
                self.ipmi
                    .credentials
                    .entry(account)
                    .map_err(|e| BmcError::new(BmcErrorKind::Auth, e.to_string()))?;
                Ok(Auth::Basic {
                    account: account.map(str::to_owned),
                })
            }),
        }
    }

    fn get<'a>(&'a self, bmc: &'a Endpoint, auth: &'a Auth, path: &'a str) -> BmcFuture<'a, Value> {
        match ipmi_target(bmc) {
            None => self.redfish.get(bmc, auth, path),
            Some(target) => Box::pin(async move {
                let target = target?;
                if path == SYSTEMS_PATH {
                    return Ok(json!({"Members": [{"@odata.id": IPMI_SYSTEM}]}));
                }
                if path != IPMI_SYSTEM {
                    return Err(BmcError::new(
                        BmcErrorKind::Protocol,
                        format!("BMC {target}: an IPMI BMC has no resource {path}"),
                    ));
                }
                let (power, policy) = self.ipmi.chassis(&target, auth.account()).await?;
                Ok(json!({
                    "@odata.id": IPMI_SYSTEM,
                    "PowerState": match power { ChassisPower::On => "On", ChassisPower::Off => "Off" },
                    "PowerRestorePolicy": policy,
                    "Actions": {"#ComputerSystem.Reset": {
                        "target": IPMI_SYSTEM,
                        // What `reset_command` maps to chassis commands.
                        "ResetType@Redfish.AllowableValues": IPMI_RESET_TYPES,
                    }},
                }))
            }),
        }
    }

    fn reset<'a>(
        &'a self,
        bmc: &'a Endpoint,
        auth: &'a Auth,
        target: &'a str,
        reset_type: &'a str,
    ) -> BmcFuture<'a, ()> {
        match ipmi_target(bmc) {
            None => self.redfish.reset(bmc, auth, target, reset_type),
            Some(ipmi) => Box::pin(async move {
                let ipmi = ipmi?;
                let command = reset_command(reset_type).ok_or_else(|| {
                    BmcError::new(
                        BmcErrorKind::Protocol,
                        format!(
                            "BMC {ipmi}: reset_type `{reset_type}` has no IPMI chassis command \
                             (IPMI BMCs take On, ForceOn, PowerCycle, ForceRestart)"
                        ),
                    )
                })?;
                self.ipmi
                    .call(&ipmi, auth.account(), command)
                    .await
                    .map(|_| ())
            }),
        }
    }

    fn logout<'a>(&'a self, bmc: &'a Endpoint, auth: &'a Auth) -> BmcFuture<'a, ()> {
        match ipmi_target(bmc) {
            None => self.redfish.logout(bmc, auth),
            Some(_) => Box::pin(async { Ok(()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipmitool_answers_are_read() {
        // ipmitool 1.8.19 against ipmi_sim (openipmi 2.0.33), as printed.
        let said = "System Power         : off\nPower Overload       : false\n\
                    Power Restore Policy : always-off\nLast Power Event     : \n";
        assert_eq!(
            parse_chassis(said),
            Some((ChassisPower::Off, Some("AlwaysOff")))
        );
        let said = "System Power : on\nPower Restore Policy : previous\n";
        assert_eq!(
            parse_chassis(said),
            Some((ChassisPower::On, Some("LastState")))
        );
        assert_eq!(
            parse_chassis("System Power : on\n"),
            Some((ChassisPower::On, None))
        );
        assert_eq!(parse_chassis("Chassis Power is on"), None);
        assert_eq!(
            parse_status("Chassis Power is on\n"),
            Some(ChassisPower::On)
        );
        assert_eq!(
            parse_status("Chassis Power is off"),
            Some(ChassisPower::Off)
        );
        assert_eq!(parse_status("garbage"), None);
        let t = Target {
            host: "h".into(),
            port: 623,
        };
        let e = classify(
            &t,
            "chassis power status",
            "Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n",
            "creds (entry `x`)",
        );
        assert_eq!(e.kind, BmcErrorKind::Auth);
        assert!(
            e.message
                .contains("rejected the credentials from creds (entry `x`)")
        );
        let e = classify(
            &t,
            "chassis power status",
            "Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\nError: Unable to establish IPMI v2 / RMCP+ session\n",
            "c",
        );
        assert_eq!(e.kind, BmcErrorKind::Unreachable, "{e:?}");
        assert!(suite_refused(
            "Error in open session response message : invalid authentication algorithm\n"
        ));
        assert!(!suite_refused("> RAKP 2 HMAC is invalid\n"));
        assert_eq!(reset_command("On"), Some(&["chassis", "power", "on"][..]));
        assert_eq!(reset_command("GracefulRestart"), None);
        // Every advertised type has a chassis command; a power cycle is `cycle`.
        for t in IPMI_RESET_TYPES {
            assert!(reset_command(t).is_some(), "{t}");
        }
        assert_eq!(
            reset_command("PowerCycle"),
            Some(&["chassis", "power", "cycle"][..])
        );
    }
}
