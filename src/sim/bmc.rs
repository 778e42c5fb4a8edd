//! A simulated host's Redfish BMC (hyper, HTTP on the host's address and the
//! fleet's BMC port): service root, the systems collection, the system with
//! its `PowerState` and `#ComputerSystem.Reset` action, and session login,
//! logout and the collection of open sessions (what a test reads to prove a
//! client left none), with authentication enforced (session token or HTTP
//! Basic).
//!
//! A host with a `bmc_credentials` label accepts only that entry's
//! password (the fleet's credentials file has one per distinct entry), so a
//! drill rehearses per-host BMC credentials.
//!
//! A [`BmcProfile`] (`sim --bmc-profile`) makes every BMC behave as the
//! BMCs of one vendor family do in ways a client must handle: system ids,
//! allowed reset types, how a reset is answered (204, 200, 202 with a task
//! monitor), what a power-on of a system that is already On gets (400/409),
//! sessions without a `Location` header, a full session table, 503 while
//! the BMC starts. docs/bmc.md lists them.
//!
//! Owns the Redfish side of a simulated host and its faults
//! (`bmc_unreachable`, `bmc_bad_credentials`; `stuck_powering_on` is the
//! host's boot cycle). Power changes go through [`HostCore::reset`]; it must
//! not touch the host's SSH side.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use super::config::{BmcConfig, BmcProfile, FaultKind};
use super::core::{HostCore, Shared};

pub const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
pub const SYSTEMS: &str = "/redfish/v1/Systems";
const TASKS: &str = "/redfish/v1/TaskService/Tasks";
/// Sessions one BMC keeps; the oldest is dropped beyond this (BMCs have small tables).
const MAX_SESSIONS: usize = 16;
const MAX_REQUEST_BODY: usize = 16 * 1024;
/// A connection is held at most this long.
const CONN_CAP: Duration = Duration::from_secs(600);

/// One BMC's live sessions: (id, token), oldest first; and how many busy
/// answers its profile still owes.
#[derive(Default)]
struct Sessions {
    live: Mutex<VecDeque<(u64, String)>>,
    next: Mutex<u64>,
    busy_left: Mutex<u32>,
    tasks: Mutex<u64>,
}

/// Serves the BMC of `core` forever. `listener` was bound at the start;
/// `None` for a `bmc_unreachable` host, which binds only after its outage.
pub(crate) async fn run(
    core: Arc<HostCore>,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    account: Option<String>,
) {
    let Some(mut config) = shared.bmc.clone() else {
        return;
    };
    // This BMC's own account: its entry's password, or the default one.
    if let Some(pw) = account.and_then(|a| config.accounts.get(&a).cloned()) {
        config.password = pw;
    }
    config.accounts.clear();
    let listener = match listener {
        Some(l) => l,
        None => {
            tokio::time::sleep(config.outage).await;
            // Bounded: the address was free at the start.
            let mut bound = None;
            for _ in 0..50 {
                if let Ok(l) = super::net::bind(core.address, config.port) {
                    bound = Some(l);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            match bound {
                Some(l) => l,
                None => return,
            }
        }
    };
    let sessions = Arc::new(Sessions {
        busy_left: Mutex::new(config.profile.busy_answers()),
        ..Sessions::default()
    });
    let config = Arc::new(config);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(
                    core.clone(),
                    config.clone(),
                    sessions.clone(),
                    stream,
                ));
            }
            // Out of descriptors, typically: wait instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn serve(
    core: Arc<HostCore>,
    config: Arc<BmcConfig>,
    sessions: Arc<Sessions>,
    stream: TcpStream,
) {
    let service = hyper::service::service_fn(move |req| {
        let (core, config, sessions) = (core.clone(), config.clone(), sessions.clone());
        async move { Ok::<_, Infallible>(handle(&core, &config, &sessions, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONN_CAP, conn).await;
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        json!({"error": {"code": "Base.1.0.GeneralError", "message": message}}),
    )
}

async fn handle(
    core: &HostCore,
    config: &BmcConfig,
    sessions: &Sessions,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    // The `bmc_bad_credentials` BMC was set up with some other password.
    let password_ok = |user: &str, password: &str| {
        core.fault != Some(FaultKind::BmcBadCredentials)
            && user == config.user
            && password == config.password
    };
    let profile = config.profile;
    let system = format!("{SYSTEMS}/{}", profile.system_id());
    let reset = format!("{system}/Actions/ComputerSystem.Reset");
    // Still starting (503) or a full session table, as the profile owes.
    let busy = || {
        let mut left = sessions.busy_left.lock().unwrap_or_else(|p| p.into_inner());
        let owed = *left > 0;
        *left = left.saturating_sub(1);
        owed
    };
    if profile == BmcProfile::Openbmc && busy() {
        let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "service starting");
        resp.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        return resp;
    }
    if parts.method == Method::GET && path == "/redfish/v1" {
        // The service root needs no authentication (Redfish spec).
        return respond(
            StatusCode::OK,
            json!({
                "@odata.id": "/redfish/v1",
                "RedfishVersion": "1.15.0",
                "Systems": {"@odata.id": SYSTEMS},
                "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                "Links": {"Sessions": {"@odata.id": SESSIONS}},
            }),
        );
    }
    if parts.method == Method::POST && path == SESSIONS {
        let creds: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let user = creds.get("UserName").and_then(Value::as_str).unwrap_or("");
        let password = creds.get("Password").and_then(Value::as_str).unwrap_or("");
        if profile == BmcProfile::Hpe && busy() {
            return respond(
                StatusCode::BAD_REQUEST,
                json!({"error": {"code": "iLO.0.10.ExtendedInfo",
                    "message": "See @Message.ExtendedInfo for more information.",
                    "@Message.ExtendedInfo": [{"MessageId": "Base.1.4.SessionLimitExceeded"}]}}),
            );
        }
        if !password_ok(user, password) {
            return error(StatusCode::UNAUTHORIZED, "invalid credentials");
        }
        let token = hex::encode(rand::random::<[u8; 16]>());
        let id = {
            let mut next = sessions.next.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        {
            let mut live = sessions.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.len() >= MAX_SESSIONS {
                live.pop_front();
            }
            live.push_back((id, token.clone()));
        }
        let location = format!("{SESSIONS}/{id}");
        let mut resp = respond(
            StatusCode::CREATED,
            json!({"@odata.id": location, "Id": id.to_string(), "UserName": user}),
        );
        if let Ok(t) = token.parse() {
            resp.headers_mut().insert("X-Auth-Token", t);
        }
        if let (false, Ok(l)) = (profile == BmcProfile::Supermicro, location.parse()) {
            resp.headers_mut().insert(hyper::header::LOCATION, l);
        }
        return resp;
    }
    // Everything else needs a session token or Basic credentials.
    let token = parts
        .headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok());
    let session = token.and_then(|t| {
        let live = sessions.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter().find(|(_, tok)| tok == t).map(|(id, _)| *id)
    });
    let basic = parts
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|b| {
            let expected = base64(format!("{}:{}", config.user, config.password).as_bytes());
            b.trim() == expected && password_ok(&config.user, &config.password)
        });
    if session.is_none() && !basic {
        return error(StatusCode::UNAUTHORIZED, "authentication required");
    }
    match (&parts.method, path.as_str()) {
        (&Method::GET, SYSTEMS) => respond(
            StatusCode::OK,
            json!({
                "@odata.id": SYSTEMS,
                "Members": [{"@odata.id": system}],
                "Members@odata.count": 1,
            }),
        ),
        (&Method::GET, p) if p == system => respond(
            StatusCode::OK,
            json!({
                "@odata.id": system,
                "Id": profile.system_id(),
                "HostName": core.name,
                "PowerState": core.power().redfish(),
                "PowerRestorePolicy": core.restore_policy,
                "Boot": {
                    "BootSourceOverrideEnabled":
                        if core.boot_override.is_some() { "Once" } else { "Disabled" },
                    "BootSourceOverrideTarget": core.boot_override.as_deref().unwrap_or("None"),
                },
                "Actions": {"#ComputerSystem.Reset": {
                    "target": reset,
                    "ResetType@Redfish.AllowableValues": profile.allowed_resets(),
                }},
            }),
        ),
        (&Method::POST, p) if p == reset => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(reset_type) = v.get("ResetType").and_then(Value::as_str) else {
                return error(StatusCode::BAD_REQUEST, "ResetType is required");
            };
            if !profile.allowed_resets().contains(&reset_type) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("ResetType `{reset_type}` is not among the allowable values"),
                );
            }
            let already_on = core.power() != super::core::HostPower::Off;
            if matches!(reset_type, "On" | "ForceOn") && already_on {
                match profile {
                    BmcProfile::Dell => {
                        return error(StatusCode::CONFLICT, "Server is already powered ON.");
                    }
                    BmcProfile::Hpe => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "InvalidOperationForSystemState: the server is already on",
                        );
                    }
                    _ => {}
                }
            }
            match core.reset(reset_type) {
                Ok(()) => reset_answer(profile, sessions),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            }
        }
        // The open sessions, as a Redfish session collection lists them:
        // what a test reads to prove a client logged out.
        (&Method::GET, SESSIONS) => {
            let live = sessions.live.lock().unwrap_or_else(|p| p.into_inner());
            let members: Vec<Value> = live
                .iter()
                .map(|(id, _)| json!({"@odata.id": format!("{SESSIONS}/{id}")}))
                .collect();
            respond(
                StatusCode::OK,
                json!({
                    "@odata.id": SESSIONS,
                    "Members@odata.count": members.len(),
                    "Members": members,
                }),
            )
        }
        (&Method::GET, p) if p.starts_with(TASKS) => respond(
            StatusCode::OK,
            json!({"@odata.id": p, "TaskState": "Completed", "TaskStatus": "OK"}),
        ),
        (&Method::DELETE, p) if p.starts_with(SESSIONS) => {
            let id = p.rsplit('/').next().and_then(|s| s.parse::<u64>().ok());
            let mut live = sessions.live.lock().unwrap_or_else(|p| p.into_inner());
            match live.iter().position(|(i, _)| Some(*i) == id) {
                Some(pos) => {
                    live.remove(pos);
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = StatusCode::NO_CONTENT;
                    resp
                }
                None => error(StatusCode::NOT_FOUND, "no such session"),
            }
        }
        (_, p) if p == SYSTEMS || p == system || p == reset => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// A reset's answer: 204 (most), 200 with a message (`Hpe`,
/// `Supermicro`), 202 Accepted with a task monitor (`Lenovo`).
fn reset_answer(profile: BmcProfile, sessions: &Sessions) -> Response<Full<Bytes>> {
    match profile {
        BmcProfile::Hpe | BmcProfile::Supermicro => respond(
            StatusCode::OK,
            json!({"error": {"code": "Base.1.4.Success",
                "@Message.ExtendedInfo": [{"MessageId": "Base.1.4.Success"}]}}),
        ),
        BmcProfile::Lenovo => {
            let id = {
                let mut n = sessions.tasks.lock().unwrap_or_else(|p| p.into_inner());
                *n += 1;
                *n
            };
            let monitor = format!("{TASKS}/{id}");
            let mut resp = respond(
                StatusCode::ACCEPTED,
                json!({"@odata.id": monitor, "TaskState": "Running"}),
            );
            if let Ok(l) = monitor.parse() {
                resp.headers_mut().insert(hyper::header::LOCATION, l);
            }
            resp
        }
        _ => {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            resp
        }
    }
}

/// Standard base64 with padding (for comparing a Basic header).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
