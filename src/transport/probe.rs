//! Health probes that need no SSH session: TCP connect and HTTP GET.
//!
//! Owns one bounded attempt per call and its error text. It must not retry
//! or poll: the engine's health step does that with backoff.

use std::sync::OnceLock;
use std::time::Duration;

/// Body bytes read at most when looking for a substring.
const MAX_BODY: usize = 1024 * 1024;

/// One TCP connect to `address:port` within `timeout`.
pub async fn tcp(address: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let addrs = super::resolve::lookup(address, port).await?;
        tokio::net::TcpStream::connect(&addrs[..]).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(format!("tcp {address}:{port}: {e}")),
        Err(_) => Err(format!(
            "tcp {address}:{port}: no connection within {timeout:?}"
        )),
    }
}

/// One shared client: connection pools and TLS roots are built once, not per probe.
fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            super::resolve::http(reqwest::Client::builder())
                // Health endpoints answer directly; a redirect is a finding, not a hop.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("http client: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// One HTTP GET of `url` within `timeout`; passes when the status is `status`
/// and, if given, the body contains `body_contains`.
pub async fn http(
    url: &str,
    status: u16,
    body_contains: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let client = client()?;
    let attempt = async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("http {url}: {}", error_chain(&e)))?;
        let got = resp.status().as_u16();
        if got != status {
            return Err(format!("http {url}: status {got}, expected {status}"));
        }
        let Some(needle) = body_contains else {
            return Ok(());
        };
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("http {url}: reading body: {}", error_chain(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        if String::from_utf8_lossy(&body).contains(needle) {
            Ok(())
        } else {
            Err(format!(
                "http {url}: status {got} but the body does not contain {needle:?}"
            ))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("http {url}: no answer within {timeout:?}")),
    }
}

/// reqwest's top-level message is "error sending request"; the cause says why.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
