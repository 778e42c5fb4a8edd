//! Redfish BMC calls for the `power_on` step: session login (with HTTP Basic
//! as fallback), the system resource (`PowerState`, the `ComputerSystem.Reset`
//! target), the reset action, logout; and where BMC credentials come from.
//!
//! Owns HTTP, TLS and the Redfish wire format. Like the rest of the transport
//! it must not retry, poll, pace or schedule: one call is one HTTP request,
//! and the engine (`engine::power`) decides when to make it. Credentials never
//! appear in an error, a `Debug` output or an event.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::inventory::Host;

/// Where the login goes (DMTF Redfish spec, SessionService).
pub const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";
/// The systems collection; its first member is the host.
pub const SYSTEMS_PATH: &str = "/redfish/v1/Systems";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variables with the BMC user and password.
pub const USER_VAR: &str = "REKINDLE_BMC_USER";
pub const PASSWORD_VAR: &str = "REKINDLE_BMC_PASSWORD";
/// A credentials file or a BMC answer larger than this is not what we expect.
const MAX_FILE: u64 = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// A secret string: its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

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
                    password: Secret(password),
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
                password: Secret(password.to_owned()),
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
    pub fn parse(label: &str) -> Result<Endpoint, BmcError> {
        let label = label.trim();
        if label.is_empty() {
            return Err(BmcError::new(BmcErrorKind::Protocol, "empty `bmc` label"));
        }
        if let Some(ipmi) = super::ipmi::Target::parse(label) {
            let target = ipmi.map_err(|e| BmcError::new(BmcErrorKind::Protocol, e))?;
            return Ok(Endpoint(target.to_string()));
        }
        let url = if label.contains("://") {
            label.to_owned()
        } else {
            format!("https://{label}")
        };
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| BmcError::new(BmcErrorKind::Protocol, format!("bmc `{label}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(BmcError::new(
                BmcErrorKind::Protocol,
                format!("bmc `{label}`: expected an address, an http(s) URL or ipmi://ADDR[:PORT]"),
            ));
        }
        Ok(Endpoint(url.trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `path` (absolute, as Redfish links are) on this BMC.
    fn url(&self, path: &str) -> String {
        if path.contains("://") {
            return path.to_owned();
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

/// TLS choices for BMCs.
#[derive(Debug, Clone, Default)]
pub struct RedfishOptions {
    /// PEM bundle of CAs to trust (in addition to the system's).
    pub ca_bundle: Option<PathBuf>,
    /// Accept any certificate (self-signed BMCs); asked for explicitly.
    pub insecure: bool,
}

/// The real client (reqwest, rustls).
pub struct Redfish {
    client: reqwest::Client,
    credentials: Arc<CredentialStore>,
}

impl fmt::Debug for Redfish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redfish")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Redfish {
    pub fn new(
        credentials: Arc<CredentialStore>,
        opts: &RedfishOptions,
    ) -> Result<Redfish, BmcError> {
        let mut builder = super::resolve::http(reqwest::Client::builder())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            // No idle connections: thousands of BMCs would each keep a
            // descriptor, and requests to one BMC are a second apart anyway.
            .pool_max_idle_per_host(0)
            .tls_danger_accept_invalid_certs(opts.insecure);
        if let Some(path) = &opts.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                BmcError::new(
                    BmcErrorKind::Protocol,
                    format!("--bmc-ca {}: {e}", path.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                BmcError::new(
                    BmcErrorKind::Protocol,
                    format!("--bmc-ca {}: {e}", path.display()),
                )
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| {
            BmcError::new(
                BmcErrorKind::Protocol,
                format!("cannot build the HTTPS client: {e}"),
            )
        })?;
        Ok(Redfish {
            client,
            credentials,
        })
    }

    fn account(&self, account: Option<&str>) -> Result<&Credentials, BmcError> {
        self.credentials
            .entry(account)
            .map_err(|e| BmcError::new(BmcErrorKind::Auth, e.to_string()))
    }

    fn authed(
        &self,
        req: reqwest::RequestBuilder,
        auth: &Auth,
    ) -> Result<reqwest::RequestBuilder, BmcError> {
        Ok(match auth {
            Auth::Session { token, .. } => req.header("X-Auth-Token", token.expose()),
            Auth::Basic { account } => {
                let c = self.account(account.as_deref())?;
                req.basic_auth(&c.user, Some(c.password.expose()))
            }
        })
    }

    fn rejected(&self, bmc: &Endpoint, status: StatusCode, source: &str) -> BmcError {
        BmcError::new(
            BmcErrorKind::Auth,
            format!(
                "BMC {bmc} rejected the credentials from {source} (HTTP {})",
                status.as_u16()
            ),
        )
    }

    async fn send(
        &self,
        bmc: &Endpoint,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BmcError> {
        req.send().await.map_err(|e| {
            let kind = if e.is_connect() || e.is_timeout() || e.is_request() {
                BmcErrorKind::Unreachable
            } else {
                BmcErrorKind::Protocol
            };
            BmcError::new(
                kind,
                format!("BMC {bmc}: {what}: {}", super::probe::error_chain(&e)),
            )
        })
    }

    async fn expect_ok(
        &self,
        bmc: &Endpoint,
        what: &str,
        resp: reqwest::Response,
        account: Option<&str>,
    ) -> Result<reqwest::Response, BmcError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let source = self
                .credentials
                .entry(account)
                .map(|c| c.source.clone())
                .unwrap_or_default();
            return Err(self.rejected(bmc, status, &source));
        }
        Err(BmcError::new(
            BmcErrorKind::Status(status.as_u16()),
            format!("BMC {bmc}: {what}: HTTP {}", status.as_u16()),
        ))
    }
}

impl Bmc for Redfish {
    fn login<'a>(&'a self, bmc: &'a Endpoint, account: Option<&'a str>) -> BmcFuture<'a, Auth> {
        Box::pin(async move {
            let credentials = self.account(account)?;
            let body = serde_json::json!({
                "UserName": credentials.user,
                "Password": credentials.password.expose(),
            });
            let req = self.client.post(bmc.url(SESSIONS_PATH)).json(&body);
            let resp = self.send(bmc, "login", req).await?;
            let status = resp.status();
            // No session service: fall back to Basic on every request.
            if matches!(
                status,
                StatusCode::NOT_FOUND
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::NOT_IMPLEMENTED
            ) {
                return Ok(Auth::Basic {
                    account: account.map(str::to_owned),
                });
            }
            let resp = self.expect_ok(bmc, "login", resp, account).await?;
            let token = resp
                .headers()
                .get("x-auth-token")
                .and_then(|v| v.to_str().ok())
                .map(Secret::new)
                .ok_or_else(|| {
                    BmcError::new(
                        BmcErrorKind::Protocol,
                        format!("BMC {bmc}: login answered without an X-Auth-Token"),
                    )
                })?;
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let location = match location {
                Some(l) => Some(l),
                None => read_json(bmc, resp).await.ok().and_then(|v| {
                    v.get("@odata.id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                }),
            };
            Ok(Auth::Session {
                token,
                location,
                account: account.map(str::to_owned),
            })
        })
    }

    fn get<'a>(&'a self, bmc: &'a Endpoint, auth: &'a Auth, path: &'a str) -> BmcFuture<'a, Value> {
        Box::pin(async move {
            let req = self.authed(self.client.get(bmc.url(path)), auth)?;
            let what = format!("GET {path}");
            let resp = self.send(bmc, &what, req).await?;
            let resp = self.expect_ok(bmc, &what, resp, auth.account()).await?;
            read_json(bmc, resp).await
        })
    }

    fn reset<'a>(
        &'a self,
        bmc: &'a Endpoint,
        auth: &'a Auth,
        target: &'a str,
        reset_type: &'a str,
    ) -> BmcFuture<'a, ()> {
        Box::pin(async move {
            let body = serde_json::json!({ "ResetType": reset_type });
            let req = self.authed(self.client.post(bmc.url(target)).json(&body), auth)?;
            let what = format!("reset {reset_type}");
            let resp = self.send(bmc, &what, req).await?;
            self.expect_ok(bmc, &what, resp, auth.account())
                .await
                .map(|_| ())
        })
    }

    fn logout<'a>(&'a self, bmc: &'a Endpoint, auth: &'a Auth) -> BmcFuture<'a, ()> {
        Box::pin(async move {
            let Auth::Session {
                location: Some(location),
                ..
            } = auth
            else {
                return Ok(());
            };
            let req = self.authed(self.client.delete(bmc.url(location)), auth)?;
            let resp = self.send(bmc, "logout", req).await?;
            self.expect_ok(bmc, "logout", resp, auth.account())
                .await
                .map(|_| ())
        })
    }
}

async fn read_json(bmc: &Endpoint, mut resp: reqwest::Response) -> Result<Value, BmcError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        BmcError::new(
            BmcErrorKind::Unreachable,
            format!(
                "BMC {bmc}: reading the answer: {}",
                super::probe::error_chain(&e)
            ),
        )
    })? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(BmcError::new(
                BmcErrorKind::Protocol,
                format!("BMC {bmc}: answer larger than {MAX_BODY} bytes"),
            ));
        }
    }
    serde_json::from_slice(&body)
        .map_err(|e| BmcError::new(BmcErrorKind::Protocol, format!("BMC {bmc}: not JSON: {e}")))
}

#[cfg(test)]
mod tests {
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
