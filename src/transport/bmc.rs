//! What every BMC client speaks: the [`Bmc`] trait (login, read, reset,
//! logout on a Redfish-shaped service), the address it is given
//! ([`Endpoint`], from the inventory's [`BmcAddress`]), the credentials of a
//! run ([`CredentialStore`]), a system's power state as the engine reads it,
//! and the errors. `redfish` and `ipmi` implement the trait beside each other
//! (IPMI presents its chassis as a one-system service).
//!
//! Owns only these shared types. It must not make a request, retry or pace
//! (that is the clients' and `engine::power`'s).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

use crate::inventory::{BmcAddress, Host};
use crate::secret::Secret;

/// The systems collection; its first member is the host.
pub const SYSTEMS_PATH: &str = "/redfish/v1/Systems";
/// Environment variables with the BMC user and password.
pub const USER_VAR: &str = "REKINDLE_BMC_USER";
pub const PASSWORD_VAR: &str = "REKINDLE_BMC_PASSWORD";
/// A credentials file or a BMC answer larger than this is not what we expect.
const MAX_FILE: u64 = 64 * 1024;

/// BMC login credentials and where they came from (for messages).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
    /// `REKINDLE_BMC_USER/REKINDLE_BMC_PASSWORD` or the file's path.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(String);

impl Credentials {
    pub fn from_env(
        user: Option<String>,
        password: Option<String>,
    ) -> Result<Credentials, CredentialsError> {
        match (user, password) {
            (Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
                Ok(Credentials {
                    user,
                    password: Secret::new(password),
                    source: format!("{USER_VAR}/{PASSWORD_VAR}"),
                })
            }
            _ => Err(CredentialsError(format!(
                "power_on needs BMC credentials: set {USER_VAR} and {PASSWORD_VAR}, \
                 or pass --bmc-credentials FILE (user:password, mode 0600)"
            ))),
        }
    }
}

/// The label that names a host's entry in the credentials file.
pub const CREDENTIALS_LABEL: &str = "bmc_credentials";

/// Every BMC account of a run: the default one (`user:password`, used by
/// hosts without a `bmc_credentials` label) and named entries
/// (`NAME user:password`), one per vendor or rack as the fleet has them.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    default: Option<Credentials>,
    named: BTreeMap<String, Credentials>,
    /// The file's path or the environment variables' names.
    source: String,
}

impl CredentialStore {
    /// From `file` when given (`--bmc-credentials`), else from the environment.
    pub fn load(file: Option<&Path>) -> Result<CredentialStore, CredentialsError> {
        match file {
            Some(path) => CredentialStore::from_file(path),
            None => Ok(CredentialStore::single(Credentials::from_env(
                std::env::var(USER_VAR).ok(),
                std::env::var(PASSWORD_VAR).ok(),
            )?)),
        }
    }

    /// One default account and no named entries.
    pub fn single(credentials: Credentials) -> CredentialStore {
        CredentialStore {
            source: credentials.source.clone(),
            default: Some(credentials),
            named: BTreeMap::new(),
        }
    }

    /// A file that only its owner may read (no group or other bits).
    pub fn from_file(path: &Path) -> Result<CredentialStore, CredentialsError> {
        use super::secret_file::{self, SecretFileError};
        let shown = path.display();
        let text = secret_file::read(path, MAX_FILE).map_err(|e| match e {
            SecretFileError::OthersCanRead(mode) => CredentialsError(format!(
                "BMC credentials {shown} are readable by others (mode {mode:04o}); \
                 refusing to use them: run `chmod 600 {shown}`"
            )),
            SecretFileError::NotRegular | SecretFileError::TooLarge(_) => {
                CredentialsError(format!("BMC credentials {shown}: not a small regular file"))
            }
            SecretFileError::Io(e) => CredentialsError(format!("BMC credentials {shown}: {e}")),
        })?;
        CredentialStore::parse(&text, &shown.to_string())
    }

    /// Lines of `user:password` (at most one: the default) or
    /// `NAME user:password`; blank lines and `#` comments are skipped. A
    /// first word without `:` is a name. Errors name the line, never its text
    /// (it may hold a password).
    pub fn parse(text: &str, source: &str) -> Result<CredentialStore, CredentialsError> {
        let mut store = CredentialStore {
            default: None,
            named: BTreeMap::new(),
            source: source.to_owned(),
        };
        let mut default_line = 0;
        for (idx, raw) in text.lines().enumerate() {
            let n = idx + 1;
            let line = raw.trim_end_matches('\r').trim_start();
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            let (name, account) = if first.contains(':') {
                (None, line)
            } else {
                (Some(first), line[first.len()..].trim_start())
            };
            let bad = || {
                CredentialsError(format!(
                    "BMC credentials {source}:{n}: expected `user:password` or `NAME user:password`"
                ))
            };
            let (user, password) = account.split_once(':').ok_or_else(bad)?;
            if user.is_empty() || password.is_empty() || user.contains(char::is_whitespace) {
                return Err(bad());
            }
            let entry_source = match name {
                Some(name) => format!("{source} (entry `{name}`)"),
                None => source.to_owned(),
            };
            let credentials = Credentials {
                user: user.to_owned(),
                password: Secret::new(password),
                source: entry_source,
            };
            match name {
                None if store.default.is_some() => {
                    return Err(CredentialsError(format!(
                        "BMC credentials {source}:{n}: a second default `user:password` line \
                         (the first is line {default_line}); name one: `NAME user:password`"
                    )));
                }
                None => {
                    default_line = n;
                    store.default = Some(credentials);
                }
                Some(name) => {
                    if store.named.insert(name.to_owned(), credentials).is_some() {
                        return Err(CredentialsError(format!(
                            "BMC credentials {source}:{n}: entry `{name}` is defined twice"
                        )));
                    }
                }
            }
        }
        if store.default.is_none() && store.named.is_empty() {
            return Err(CredentialsError(format!(
                "BMC credentials {source}: no `user:password` line"
            )));
        }
        Ok(store)
    }

    /// The account for a host: its `bmc_credentials` entry, else the default.
    pub fn for_host(&self, host: &Host) -> Result<&Credentials, CredentialsError> {
        self.entry(host.label(CREDENTIALS_LABEL))
    }

    /// The named entry, or the default for `None`.
    pub fn entry(&self, name: Option<&str>) -> Result<&Credentials, CredentialsError> {
        match name {
            Some(name) => self.named.get(name).ok_or_else(|| {
                let known: Vec<&str> = self.named.keys().map(String::as_str).collect();
                CredentialsError(format!(
                    "BMC credentials {} have no entry `{name}`{}",
                    self.source,
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (entries: {})", known.join(", "))
                    }
                ))
            }),
            None => self.default.as_ref().ok_or_else(|| {
                CredentialsError(format!(
                    "BMC credentials {} have no default `user:password` line, and the host \
                     has no `{CREDENTIALS_LABEL}` label naming an entry",
                    self.source
                ))
            }),
        }
    }
}

/// A BMC's base URL, from the host's `bmc` label: an address means
/// `https://ADDR`, a URL is used as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(String);

impl Endpoint {
    /// Reads a `bmc` label (the inventory's rule: [`BmcAddress::parse`]).
    pub fn parse(label: &str) -> Result<Endpoint, BmcError> {
        BmcAddress::parse(label)
            .map(|a| Endpoint::from(&a))
            .map_err(|e| BmcError::new(BmcErrorKind::Protocol, e.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]`: what TLS trust is keyed by.
    pub fn origin(&self) -> String {
        reqwest::Url::parse(&self.0)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.0.clone())
    }

    /// `path` (absolute, as Redfish links are) on this BMC. An absolute URL
    /// (a `Location` header may be one) is taken as its path on this BMC:
    /// a session token never goes to another origin.
    pub(super) fn url(&self, path: &str) -> String {
        if path.contains("://") {
            let Ok(u) = reqwest::Url::parse(path) else {
                return self.url("/");
            };
            let mut rel = u.path().to_owned();
            if let Some(q) = u.query() {
                rel.push('?');
                rel.push_str(q);
            }
            return self.url(&rel);
        }
        // A URL with a path prefix keeps it only for our own fixed paths;
        // Redfish links are absolute paths on the BMC's origin.
        match reqwest::Url::parse(&self.0) {
            Ok(u) if path.starts_with('/') => {
                let origin = u.origin().ascii_serialization();
                format!("{origin}{path}")
            }
            _ => format!("{}/{}", self.0, path.trim_start_matches('/')),
        }
    }
}

/// The address the inventory read, as the clients address it: the base
/// URL, or `ipmi://ADDR:PORT`.
impl From<&BmcAddress> for Endpoint {
    fn from(address: &BmcAddress) -> Endpoint {
        Endpoint(address.to_string())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How requests authenticate after [`Bmc::login`].
#[derive(Debug, Clone)]
pub enum Auth {
    /// A Redfish session: `X-Auth-Token`, deleted by [`Bmc::logout`].
    Session {
        token: Secret,
        location: Option<String>,
        /// The credentials entry it was opened with (for messages).
        account: Option<String>,
    },
    /// The BMC has no session service: HTTP Basic on every request, with
    /// this entry of the credentials file (`None`: the default account).
    Basic { account: Option<String> },
}

impl Auth {
    /// The credentials entry behind this authentication (`None`: the default).
    pub fn account(&self) -> Option<&str> {
        match self {
            Auth::Session { account, .. } | Auth::Basic { account } => account.as_deref(),
        }
    }
}

/// `PowerState` of a ComputerSystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    PoweringOn,
    PoweringOff,
    Other(String),
}

impl PowerState {
    pub fn parse(s: &str) -> PowerState {
        match s {
            "On" => PowerState::On,
            "Off" => PowerState::Off,
            "PoweringOn" => PowerState::PoweringOn,
            "PoweringOff" => PowerState::PoweringOff,
            other => PowerState::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PowerState::On => "On",
            PowerState::Off => "Off",
            PowerState::PoweringOn => "PoweringOn",
            PowerState::PoweringOff => "PoweringOff",
            PowerState::Other(s) => s,
        }
    }
}

/// What the engine needs of a ComputerSystem resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub power_state: PowerState,
    /// The `#ComputerSystem.Reset` action's `target`, as the BMC gave it.
    pub reset_target: Option<String>,
    /// Its `ResetType@Redfish.AllowableValues` (`None`: the BMC does not say).
    pub allowed_resets: Option<Vec<String>>,
}

impl SystemInfo {
    pub fn from_json(v: &Value) -> Result<SystemInfo, BmcError> {
        let power_state = v
            .get("PowerState")
            .and_then(Value::as_str)
            .map(PowerState::parse)
            .ok_or_else(|| {
                BmcError::new(BmcErrorKind::Protocol, "the system has no `PowerState`")
            })?;
        let reset_target = v
            .pointer("/Actions/#ComputerSystem.Reset/target")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let allowed_resets = v
            .pointer("/Actions/#ComputerSystem.Reset")
            .and_then(|a| a.get("ResetType@Redfish.AllowableValues"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
        Ok(SystemInfo {
            power_state,
            reset_target,
            allowed_resets,
        })
    }

    /// The reset that power-cycles this system: `PowerCycle` when the BMC
    /// allows it, else `ForceRestart`; `PowerCycle` when it lists nothing
    /// (the DMTF name for "off, then on again"). `Err` names what it allows.
    pub fn power_cycle_type(&self) -> Result<&'static str, String> {
        let Some(allowed) = &self.allowed_resets else {
            return Ok("PowerCycle");
        };
        ["PowerCycle", "ForceRestart"]
            .into_iter()
            .find(|t| allowed.iter().any(|a| a == t))
            .ok_or_else(|| {
                format!(
                    "the BMC offers neither PowerCycle nor ForceRestart (it allows: {})",
                    if allowed.is_empty() {
                        "nothing".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                )
            })
    }
}

impl SystemInfo {
    /// The reset type that powers this system on when the step asks for
    /// `wanted`: `wanted` itself, except that a BMC whose allowed values
    /// lack `On` gets `ForceOn`, else `PushPowerButton` (in that order:
    /// the button is what a person would press, and some BMCs list only
    /// it). `Err` names what the BMC allows.
    pub fn power_on_type<'a>(&self, wanted: &'a str) -> Result<&'a str, String> {
        let Some(allowed) = &self.allowed_resets else {
            return Ok(wanted);
        };
        if wanted != "On" || allowed.iter().any(|a| a == "On") {
            return Ok(wanted);
        }
        ["ForceOn", "PushPowerButton"]
            .into_iter()
            .find(|t| allowed.iter().any(|a| a == t))
            .ok_or_else(|| {
                format!(
                    "the BMC offers no reset that powers on: neither On, ForceOn nor \
                     PushPowerButton (it allows: {})",
                    if allowed.is_empty() {
                        "nothing".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                )
            })
    }
}

/// The label that picks one of several Systems behind a BMC.
pub const SYSTEM_LABEL: &str = "redfish_system";

/// The member of a systems collection that is the host: the one whose
/// `@odata.id` is `wanted` or ends in `/wanted` (its Id), else the first.
pub fn pick_member(v: &Value, wanted: Option<&str>) -> Result<String, BmcError> {
    let members: Vec<&str> = v
        .get("Members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let Some(wanted) = wanted else {
        return members.first().map(|m| (*m).to_owned()).ok_or_else(|| {
            BmcError::new(
                BmcErrorKind::Protocol,
                "the Systems collection has no members",
            )
        });
    };
    let wanted = wanted.trim_end_matches('/');
    members
        .iter()
        .find(|m| {
            let m = m.trim_end_matches('/');
            m == wanted || m.rsplit('/').next() == Some(wanted)
        })
        .map(|m| (*m).to_owned())
        .ok_or_else(|| {
            BmcError::new(
                BmcErrorKind::Protocol,
                format!(
                    "the BMC has no system `{wanted}` ({SYSTEM_LABEL} label); it has {}",
                    if members.is_empty() {
                        "none".to_owned()
                    } else {
                        members.join(", ")
                    }
                ),
            )
        })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BmcError {
    pub kind: BmcErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmcErrorKind {
    /// Connection refused or failed, or no answer in time: re-probe later.
    Unreachable,
    /// The BMC rejected the credentials (401/403).
    Auth,
    /// Any other HTTP status.
    Status(u16),
    /// An answer that is not the Redfish we expect, or a bad `bmc` label.
    Protocol,
    /// The BMC's TLS certificate is not trusted (not a CA's, not pinned,
    /// changed): asking again will not change it.
    Trust,
    /// The BMC is busy: its session table is full, or it answered 503
    /// (still starting after power returned). Try again after `retry_after`
    /// (its `Retry-After`, when it gave one).
    Busy { retry_after: Option<Duration> },
}

impl BmcError {
    pub fn new(kind: BmcErrorKind, message: impl Into<String>) -> BmcError {
        BmcError {
            kind,
            message: message.into(),
        }
    }
}

pub type BmcFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BmcError>> + Send + 'a>>;

/// One HTTP request per call. A trait so the engine's pacing can be tested
/// under a paused clock with a recording fake; boxed futures because there
/// are a handful of calls per host, not per byte.
pub trait Bmc: Send + Sync + fmt::Debug + 'static {
    /// Creates a session with the credentials entry `account` (the host's
    /// `bmc_credentials` label; `None`: the default), or says the BMC
    /// wants HTTP Basic.
    fn login<'a>(&'a self, bmc: &'a Endpoint, account: Option<&'a str>) -> BmcFuture<'a, Auth>;
    /// The authentication a login would give without asking the BMC (one
    /// that answered an earlier login with "use Basic", an IPMI BMC, whose
    /// sessions are per call), so the caller spends no request on it.
    fn known_login(&self, bmc: &Endpoint, account: Option<&str>) -> Option<Auth> {
        let _ = (bmc, account);
        None
    }
    /// A resource's JSON (`GET path`).
    fn get<'a>(&'a self, bmc: &'a Endpoint, auth: &'a Auth, path: &'a str) -> BmcFuture<'a, Value>;
    /// Posts `{"ResetType": reset_type}` to the action `target`.
    fn reset<'a>(
        &'a self,
        bmc: &'a Endpoint,
        auth: &'a Auth,
        target: &'a str,
        reset_type: &'a str,
    ) -> BmcFuture<'a, ()>;
    /// Deletes the session (nothing to do for Basic).
    fn logout<'a>(&'a self, bmc: &'a Endpoint, auth: &'a Auth) -> BmcFuture<'a, ()>;
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn endpoints_from_labels() {
        assert_eq!(
            Endpoint::parse("10.0.0.5").unwrap().as_str(),
            "https://10.0.0.5"
        );
        let e = Endpoint::parse("http://127.1.0.1:8443/").unwrap();
        assert_eq!(e.as_str(), "http://127.1.0.1:8443");
        assert_eq!(
            e.url("/redfish/v1/Systems"),
            "http://127.1.0.1:8443/redfish/v1/Systems"
        );
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("").is_err());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = Credentials::from_env(Some("admin".into()), Some("hunter2".into())).unwrap();
        let shown = format!("{c:?} {}", c.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
        let auth = Auth::Session {
            token: Secret::new("tok-123"),
            location: None,
            account: None,
        };
        assert!(!format!("{auth:?}").contains("tok-123"));
    }

    #[test]
    fn credentials_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds");
        std::fs::write(&path, "admin:s3cret-pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = CredentialStore::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("readable by others (mode 0644)"), "{e}");
        assert!(!e.contains("s3cret-pw"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let store = CredentialStore::from_file(&path).unwrap();
        let c = store.entry(None).unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.expose()),
            ("admin", "s3cret-pw")
        );
        std::fs::write(&path, "no-colon-s3cret\n").unwrap();
        let e = CredentialStore::from_file(&path).unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("creds:1: expected"), "{e}");
    }

    #[test]
    fn named_entries_beside_the_default() {
        let text = "# fleet BMCs\nadmin:def-pw\n\ndell-r740 root:calvin pw\nrack-07   ops:x:y\n";
        let store = CredentialStore::parse(text, "creds").unwrap();
        let d = store.entry(None).unwrap();
        assert_eq!((d.user.as_str(), d.password.expose()), ("admin", "def-pw"));
        let dell = store.entry(Some("dell-r740")).unwrap();
        // A password may hold spaces and colons.
        assert_eq!(
            (dell.user.as_str(), dell.password.expose()),
            ("root", "calvin pw")
        );
        assert_eq!(dell.source, "creds (entry `dell-r740`)");
        assert_eq!(
            store.entry(Some("rack-07")).unwrap().password.expose(),
            "x:y"
        );
        let e = store.entry(Some("hp")).unwrap_err().to_string();
        assert!(
            e.contains("no entry `hp` (entries: dell-r740, rack-07)"),
            "{e}"
        );

        let only_named = CredentialStore::parse("a u:p\n", "f").unwrap();
        let e = only_named.entry(None).unwrap_err().to_string();
        assert!(e.contains("no default"), "{e}");

        let e = CredentialStore::parse("a u:p1\na u:p2\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:2: entry `a` is defined twice"), "{e}");
        assert!(!e.contains("p2"));
        let e = CredentialStore::parse("u:p1\nu:p2\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:2: a second default"), "{e}");
        let e = CredentialStore::parse("name only-secret\n", "f")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f:1: expected") && !e.contains("only-secret"),
            "{e}"
        );
        assert!(CredentialStore::parse("# nothing\n", "f").is_err());
    }

    /// DMTF's published mockups (tests/fixtures/redfish/README.md): the
    /// documents as DMTF wrote them, not look-alikes.
    fn dmtf(rel: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/redfish")
            .join(rel);
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON")
    }

    #[test]
    fn dmtf_mockup_systems_give_their_own_targets_and_reset_types() {
        let rack = SystemInfo::from_json(&dmtf("public-rackmount1/Systems/437XR1138R2/index.json"))
            .unwrap();
        assert_eq!(rack.power_state, PowerState::On);
        assert_eq!(
            rack.reset_target.as_deref(),
            Some("/redfish/v1/Systems/437XR1138R2/Actions/ComputerSystem.Reset")
        );
        assert_eq!(rack.power_on_type("On"), Ok("On"));
        // DMTF's systems list no PowerCycle: a remediation cycle is a
        // ForceRestart there.
        assert_eq!(rack.power_cycle_type(), Ok("ForceRestart"));

        let blades = dmtf("public-bladed/Systems/index.json");
        assert_eq!(
            pick_member(&blades, None).unwrap(),
            "/redfish/v1/Systems/529QB9450R6"
        );
        for id in ["529QB9451R6", "529QB9452R6"] {
            let path = pick_member(&blades, Some(id)).unwrap();
            assert_eq!(path, format!("/redfish/v1/Systems/{id}"));
            let blade =
                SystemInfo::from_json(&dmtf(&format!("public-bladed/Systems/{id}/index.json")))
                    .unwrap();
            assert_eq!(
                blade.reset_target,
                Some(format!("{path}/Actions/ComputerSystem.Reset"))
            );
        }
        let e = pick_member(&blades, Some("529QB9459R6"))
            .unwrap_err()
            .message;
        assert!(
            e.contains("it has /redfish/v1/Systems/529QB9450R6, "),
            "{e}"
        );
    }

    #[test]
    fn system_resources_parse() {
        let v = serde_json::json!({
            "PowerState": "Off",
            "Actions": {"#ComputerSystem.Reset": {"target": "/redfish/v1/Systems/X/Actions/ComputerSystem.Reset"}}
        });
        let s = SystemInfo::from_json(&v).unwrap();
        assert_eq!(s.power_state, PowerState::Off);
        assert_eq!(
            s.reset_target.as_deref(),
            Some("/redfish/v1/Systems/X/Actions/ComputerSystem.Reset")
        );
        assert_eq!(s.allowed_resets, None);
        assert_eq!(s.power_cycle_type(), Ok("PowerCycle"));
        let cycle = |allowed: serde_json::Value| {
            SystemInfo::from_json(&serde_json::json!({
                "PowerState": "On",
                "Actions": {"#ComputerSystem.Reset": {
                    "target": "/x", "ResetType@Redfish.AllowableValues": allowed}}
            }))
            .unwrap()
            .power_cycle_type()
        };
        assert_eq!(
            cycle(serde_json::json!(["On", "ForceRestart", "PowerCycle"])),
            Ok("PowerCycle")
        );
        assert_eq!(
            cycle(serde_json::json!(["On", "ForceOff", "ForceRestart"])),
            Ok("ForceRestart")
        );
        let on = |allowed: serde_json::Value| {
            SystemInfo::from_json(&serde_json::json!({
                "PowerState": "Off",
                "Actions": {"#ComputerSystem.Reset": {
                    "target": "/x", "ResetType@Redfish.AllowableValues": allowed}}
            }))
            .unwrap()
            .power_on_type("On")
            .map(str::to_owned)
        };
        assert_eq!(
            on(serde_json::json!(["On", "ForceOn"])).as_deref(),
            Ok("On")
        );
        assert_eq!(
            on(serde_json::json!([
                "PushPowerButton",
                "ForceOn",
                "ForceOff"
            ]))
            .as_deref(),
            Ok("ForceOn")
        );
        assert_eq!(
            on(serde_json::json!(["ForceOff", "PushPowerButton"])).as_deref(),
            Ok("PushPowerButton")
        );
        let e = on(serde_json::json!(["ForceOff", "Nmi"])).unwrap_err();
        assert!(e.contains("(it allows: ForceOff, Nmi)"), "{e}");
        assert_eq!(s.power_on_type("ForceRestart"), Ok("ForceRestart"));
        let e = cycle(serde_json::json!(["On", "GracefulShutdown"])).unwrap_err();
        assert!(e.contains("(it allows: On, GracefulShutdown)"), "{e}");
        assert!(SystemInfo::from_json(&serde_json::json!({})).is_err());
        let c = serde_json::json!({"Members": [{"@odata.id": "/redfish/v1/Systems/a"}]});
        assert_eq!(pick_member(&c, None).unwrap(), "/redfish/v1/Systems/a");
        assert!(pick_member(&serde_json::json!({"Members": []}), None).is_err());
        let two = serde_json::json!({"Members": [
            {"@odata.id": "/redfish/v1/Systems/Node.1"},
            {"@odata.id": "/redfish/v1/Systems/Node.2"}
        ]});
        assert_eq!(
            pick_member(&two, Some("Node.2")).unwrap(),
            "/redfish/v1/Systems/Node.2"
        );
        assert_eq!(
            pick_member(&two, Some("/redfish/v1/Systems/Node.1")).unwrap(),
            "/redfish/v1/Systems/Node.1"
        );
        let e = pick_member(&two, Some("Node.3")).unwrap_err().message;
        assert!(
            e.contains("no system `Node.3`") && e.contains("/redfish/v1/Systems/Node.2"),
            "{e}"
        );
    }
}
