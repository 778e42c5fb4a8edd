//! Redfish BMC calls for the `power_on` step: session login (with HTTP Basic
//! as fallback), the system resource (`PowerState`, the `ComputerSystem.Reset`
//! target), the reset action, logout: the [`Bmc`] trait (`bmc`) spoken over
//! HTTPS, beside `ipmi`.
//!
//! Owns HTTP, TLS and the Redfish wire format. Like the rest of the transport
//! it must not retry, poll, pace or schedule: one call is one HTTP request,
//! and the engine (`engine::power`) decides when to make it. Credentials never
//! appear in an error, a `Debug` output or an event.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::bmc_trust::{Fingerprint, KnownCerts, Policy, Verifier};

/// Where the login goes (DMTF Redfish spec, SessionService).
pub const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A BMC answer larger than this is not what we expect.
const MAX_BODY: usize = 1024 * 1024;

/// Secrets are the leaf module's; re-exported where BMC credentials hold them.
pub use crate::secret::Secret;

// The trait and the data both clients share (credentials, addresses, the
// system as the engine reads it) are `bmc`'s; re-exported here for callers
// that name them through the Redfish client.
pub use super::bmc::{
    Auth, Bmc, BmcError, BmcErrorKind, BmcFuture, CREDENTIALS_LABEL, CredentialStore, Credentials,
    CredentialsError, Endpoint, PASSWORD_VAR, PowerState, SYSTEM_LABEL, SYSTEMS_PATH, SystemInfo,
    USER_VAR, pick_member,
};

/// TLS choices for BMCs (see [`super::bmc_trust`]).
#[derive(Debug, Clone, Default)]
pub struct RedfishOptions {
    /// PEM bundle of CAs to trust (in addition to the system's); a
    /// certificate in it is also trusted as a BMC's own (self-signed) leaf.
    pub ca_bundle: Option<PathBuf>,
    /// Accept any certificate (self-signed BMCs); asked for explicitly.
    pub insecure: bool,
    /// Pinned leaf certificates by BMC origin (`bmc_cert_sha256` labels).
    pub pins: std::collections::HashMap<String, Fingerprint>,
    /// `--bmc-known-certs FILE`, and whether new BMCs are recorded in it.
    pub known_certs: Option<PathBuf>,
    pub accept_new_certs: bool,
}

/// One BMC's HTTP client and its certificate verifier.
type Client = (reqwest::Client, Arc<Verifier>);

/// The real client (reqwest, rustls): one HTTP client per BMC origin, so
/// each verifier knows which BMC it checks (pins and known certificates
/// are per BMC, and a TLS server name carries no port). A BMC's client is
/// dropped at logout, so only BMCs in use hold one.
pub struct Redfish {
    policy: Arc<Policy>,
    clients: std::sync::Mutex<std::collections::HashMap<String, Client>>,
    credentials: Arc<CredentialStore>,
    /// (origin, credentials entry) whose session login was answered with a
    /// fallback to Basic: the next login there with the same entry would
    /// get the same answer, so it is not asked again (one request fewer
    /// per host on a BMC with many Systems).
    basic: std::sync::Mutex<std::collections::HashSet<(String, Option<String>)>>,
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
        let input = |e: String| BmcError::new(BmcErrorKind::Protocol, e);
        let pem = match &opts.ca_bundle {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| input(format!("--bmc-ca {}: {e}", path.display())))?,
            ),
            None => None,
        };
        let known = match &opts.known_certs {
            Some(path) => Some(KnownCerts::load(path, opts.accept_new_certs).map_err(input)?),
            None if opts.accept_new_certs => {
                return Err(input(
                    "--accept-new-bmc-certs needs --bmc-known-certs FILE to record them in".into(),
                ));
            }
            None => None,
        };
        let ca = opts.ca_bundle.as_deref().zip(pem.as_deref());
        let policy = Policy::new(ca, opts.insecure, opts.pins.clone(), known).map_err(input)?;
        Ok(Redfish {
            policy: Arc::new(policy),
            clients: std::sync::Mutex::new(std::collections::HashMap::new()),
            credentials,
            basic: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The client of `bmc`'s origin, made on first use.
    fn client(&self, bmc: &Endpoint) -> Result<Client, BmcError> {
        let origin = bmc.origin();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&origin) {
            return Ok(c.clone());
        }
        let broken = |e: String| {
            BmcError::new(
                BmcErrorKind::Protocol,
                format!("cannot build the HTTPS client: {e}"),
            )
        };
        let (tls, verifier) = self.policy.client_config(&origin).map_err(broken)?;
        let client = super::resolve::http(reqwest::Client::builder())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            // No idle connections: thousands of BMCs would each keep a
            // descriptor, and requests to one BMC are a second apart anyway.
            .pool_max_idle_per_host(0)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| broken(e.to_string()))?;
        let c = (client, verifier);
        clients.insert(origin, c.clone());
        Ok(c)
    }

    /// Forgets `bmc`'s client (its work is done; a later call makes another).
    fn release(&self, bmc: &Endpoint) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.remove(&bmc.origin());
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
        verifier: &Verifier,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BmcError> {
        let sent = req.send().await;
        // A refusal left by this request's handshake (none on success).
        let refusal = verifier.take_refusal();
        sent.map_err(|e| {
            if let Some(why) = refusal {
                return BmcError::new(BmcErrorKind::Trust, format!("BMC {bmc}: {why}"));
            }
            if let Some(tls) = tls_error(&e) {
                return BmcError::new(
                    BmcErrorKind::Trust,
                    format!("BMC {bmc}: {what}: TLS handshake refused: {tls}"),
                );
            }
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
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(busy(bmc, what, &resp));
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
    fn known_login(&self, bmc: &Endpoint, account: Option<&str>) -> Option<Auth> {
        let key = (bmc.origin(), account.map(str::to_owned));
        let basic = self.basic.lock().unwrap_or_else(|p| p.into_inner());
        basic.contains(&key).then(|| Auth::Basic {
            account: account.map(str::to_owned),
        })
    }

    fn login<'a>(&'a self, bmc: &'a Endpoint, account: Option<&'a str>) -> BmcFuture<'a, Auth> {
        Box::pin(async move {
            let credentials = self.account(account)?;
            let body = serde_json::json!({
                "UserName": credentials.user,
                "Password": credentials.password.expose(),
            });
            if let Some(auth) = self.known_login(bmc, account) {
                return Ok(auth);
            }
            let (client, verifier) = self.client(bmc)?;
            let req = client.post(bmc.url(SESSIONS_PATH)).json(&body);
            let resp = self.send(bmc, "login", &verifier, req).await?;
            let status = resp.status();
            // No session service (404/405/501), or one that wants Basic
            // even for the login (401/403: sushy-tools, some older BMCs):
            // HTTP Basic on every request. Whether the credentials are
            // wrong is then the first GET's answer, not this one's.
            if matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::NOT_FOUND
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::NOT_IMPLEMENTED
            ) {
                self.basic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((bmc.origin(), account.map(str::to_owned)));
                return Ok(Auth::Basic {
                    account: account.map(str::to_owned),
                });
            }
            if status.is_client_error() {
                // "Too many sessions" comes as 400, 409 or 429 by vendor.
                let retry_after = retry_after(&resp);
                let text = read_text(bmc, resp).await.unwrap_or_default();
                if session_limit(&text) || status == StatusCode::TOO_MANY_REQUESTS {
                    return Err(BmcError::new(
                        BmcErrorKind::Busy { retry_after },
                        format!(
                            "BMC {bmc}: login: no free session (HTTP {}: the BMC's session \
                             table is full)",
                            status.as_u16()
                        ),
                    ));
                }
                return Err(BmcError::new(
                    BmcErrorKind::Status(status.as_u16()),
                    format!("BMC {bmc}: login: HTTP {}", status.as_u16()),
                ));
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
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned);
            // Without a Location header the session is still ours to delete:
            // its `@odata.id` (or its `Id` in the collection) says where.
            let location = match location {
                Some(l) => Some(l),
                None => read_json(bmc, resp).await.ok().and_then(|v| {
                    v.get("@odata.id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| {
                            v.get("Id")
                                .and_then(Value::as_str)
                                .map(|id| format!("{SESSIONS_PATH}/{id}"))
                        })
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
            let (client, verifier) = self.client(bmc)?;
            let req = self.authed(client.get(bmc.url(path)), auth)?;
            let what = format!("GET {path}");
            let resp = self.send(bmc, &what, &verifier, req).await?;
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
            let (client, verifier) = self.client(bmc)?;
            let req = self.authed(client.post(bmc.url(target)).json(&body), auth)?;
            let what = format!("reset {reset_type}");
            let resp = self.send(bmc, &what, &verifier, req).await?;
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
                self.release(bmc);
                return Ok(());
            };
            let (client, verifier) = self.client(bmc)?;
            let req = self.authed(client.delete(bmc.url(location)), auth)?;
            let sent = self.send(bmc, "logout", &verifier, req).await;
            self.release(bmc);
            self.expect_ok(bmc, "logout", sent?, auth.account())
                .await
                .map(|_| ())
        })
    }
}

/// The rustls error under a request's error, if the handshake failed.
fn tls_error(e: &reqwest::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // io::Error's `source` skips the error it wraps.
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        cur = err.source();
    }
    None
}

/// A 503 or 429: the BMC is busy or still starting.
fn busy(bmc: &Endpoint, what: &str, resp: &reqwest::Response) -> BmcError {
    BmcError::new(
        BmcErrorKind::Busy {
            retry_after: retry_after(resp),
        },
        format!(
            "BMC {bmc}: {what}: HTTP {} (busy or still starting)",
            resp.status().as_u16()
        ),
    )
}

/// `Retry-After` in seconds (the HTTP-date form is not worth a parser here:
/// BMCs send seconds), capped at a minute.
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// Whether an error answer to a login says the session table is full, in
/// the words BMCs use ("Too many sessions", "maximum number of sessions",
/// "session limit", Redfish's `SessionLimitExceeded`).
pub fn session_limit(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    b.contains("sessionlimitexceeded")
        || (b.contains("session")
            && ["too many", "maximum", "limit", "exceed", "no more", "full"]
                .iter()
                .any(|w| b.contains(w)))
}

async fn read_text(bmc: &Endpoint, resp: reqwest::Response) -> Result<String, BmcError> {
    let body = read_body(bmc, resp).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn read_json(bmc: &Endpoint, resp: reqwest::Response) -> Result<Value, BmcError> {
    let body = read_body(bmc, resp).await?;
    serde_json::from_slice(&body).map_err(|e| {
        let text = String::from_utf8_lossy(&body);
        let start = text.trim_start();
        let html = start.starts_with('<')
            && start
                .get(..15)
                .is_some_and(|h| h.to_ascii_lowercase().contains("html") || h.starts_with("<!"));
        let why = if html {
            "answered an HTML page, not Redfish JSON (is the `bmc` label the BMC's Redfish \
             service, and not a web console or a proxy's login page?)"
                .to_owned()
        } else {
            format!("not JSON: {e}")
        };
        BmcError::new(BmcErrorKind::Protocol, format!("BMC {bmc}: {why}"))
    })
}

async fn read_body(bmc: &Endpoint, mut resp: reqwest::Response) -> Result<Vec<u8>, BmcError> {
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
    Ok(body)
}
