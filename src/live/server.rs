//! The read-only HTTP server of `--listen`: `GET /` (the page), `GET
//! /api/status` (JSON), `GET /metrics` (Prometheus text), `GET
//! /timeline.svg`. Any other method is refused with 405, any other path
//! with 404. It runs on a thread of its own with a small runtime, so a slow
//! or hostile client never competes with the engine for its runtime.
//!
//! Owns the listen-address policy and the routes. It must not change the
//! run: it only reads the shared [`Live`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};

use super::state::Live;

/// At most this many connections are served at once; more wait in the
/// kernel's backlog.
const CONNECTIONS: usize = 64;

/// At most this many of them from one client address: one reader (or one
/// hostile client) holding idle connections cannot keep everyone else off
/// the page. A page polls once a second over one connection; a browser
/// opens a few.
const PER_CLIENT: usize = 8;

/// A connection idle this long (headers not sent) is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses `--listen`: `PORT` or `:PORT` (loopback, 127.0.0.1), or
/// `IP:PORT` / `[IPv6]:PORT`. Loopback addresses are always fine. Any other
/// address must be a specific interface's address, named by the operator:
/// the unspecified `0.0.0.0` / `[::]` (every interface) and host names are
/// refused, so the page is never exposed by accident.
pub fn parse_listen(input: &str) -> Result<SocketAddr, String> {
    let s = input.trim();
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let addr: SocketAddr = s.parse().map_err(|_| {
        format!(
            "--listen `{input}`: expected PORT, 127.0.0.1:PORT, or an interface's IP:PORT ([IPv6]:PORT); host names are not accepted"
        )
    })?;
    if addr.ip().is_unspecified() {
        return Err(format!(
            "--listen `{input}`: refusing to serve the status page on every interface; name the one interface address to serve on"
        ));
    }
    Ok(addr)
}

/// Whether serving on `ip` reaches beyond this machine.
pub fn is_public(ip: IpAddr) -> bool {
    !ip.is_loopback()
}

/// Binds `addr` now (so a taken port is an error before the run starts).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("--listen {addr}: cannot listen: {e}"))?;
    l.set_nonblocking(true)
        .map_err(|e| format!("--listen {addr}: {e}"))?;
    Ok(l)
}

/// Serves `live` on `listener` from a thread of its own until the process exits.
pub fn spawn(listener: TcpListener, live: Arc<Mutex<Live>>) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("rekindle-listen".into())
        .spawn(move || runtime.block_on(accept(listener, live)))?;
    Ok(())
}

async fn accept(listener: TcpListener, live: Arc<Mutex<Live>>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    let clients: Arc<Mutex<std::collections::HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of descriptors, say: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(client) = ClientSlot::take(&clients, peer.ip()) else {
            // Closed at once: this client holds its share already.
            drop(stream);
            continue;
        };
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let _client = client;
            let service = hyper::service::service_fn(move |req| {
                let live = Arc::clone(&live);
                async move { Ok::<_, Infallible>(respond(&req, &live)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

/// One connection of a client address, counted until dropped.
struct ClientSlot {
    clients: Arc<Mutex<std::collections::HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    /// A slot for `ip`, unless it holds [`PER_CLIENT`] connections already.
    fn take(
        clients: &Arc<Mutex<std::collections::HashMap<IpAddr, usize>>>,
        ip: IpAddr,
    ) -> Option<ClientSlot> {
        let mut map = clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(ip).or_insert(0);
        if *n >= PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: Arc::clone(clients),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// One request: GET and HEAD on the known paths; anything else refused.
fn respond(req: &Request<Incoming>, live: &Mutex<Live>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/" | "/api/status" | "/metrics" | "/timeline.svg");
    if !known {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "read-only: only GET is served\n".into(),
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let live = live
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut r = match path {
        "/api/status" => reply(
            StatusCode::OK,
            "application/json",
            super::status_json(&live).to_string(),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            super::metrics::render(&live),
        ),
        "/timeline.svg" => reply(
            StatusCode::OK,
            "image/svg+xml",
            crate::report::formats::timeline_svg(&live.summary()),
        ),
        _ => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::page_html(&live),
        ),
    };
    if req.method() == Method::HEAD {
        *r.body_mut() = Full::new(Bytes::new());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_holds_at_most_its_share_of_connections() {
        let clients = Arc::default();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let held: Vec<ClientSlot> = (0..PER_CLIENT)
            .map(|_| ClientSlot::take(&clients, a).expect("within the share"))
            .collect();
        assert!(ClientSlot::take(&clients, a).is_none());
        assert!(
            ClientSlot::take(&clients, b).is_some(),
            "another client is served"
        );
        drop(held);
        assert!(ClientSlot::take(&clients, a).is_some(), "slots come back");
    }

    #[test]
    fn listen_addresses_default_to_loopback_and_refuse_every_interface() {
        assert_eq!(
            parse_listen("8080").ok(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listen(":0").ok(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen("[::1]:9").ok(),
            Some("[::1]:9".parse().unwrap())
        );
        let named = parse_listen("10.1.2.3:8080").unwrap();
        assert!(is_public(named.ip()));
        assert!(!is_public(parse_listen("127.0.0.5:1").unwrap().ip()));
        let every = parse_listen("0.0.0.0:8080").unwrap_err();
        assert!(every.contains("every interface"), "{every}");
        assert!(parse_listen("[::]:8080").is_err());
        let name = parse_listen("localhost:8080").unwrap_err();
        assert!(name.contains("host names are not accepted"), "{name}");
    }
}
