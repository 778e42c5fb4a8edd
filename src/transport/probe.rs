//! Health probes that need no SSH session: TCP connect and HTTP GET.

use std::time::Duration;

/// One TCP connect to `address:port` within `timeout`.
pub async fn tcp(address: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let _ = (address, port, timeout);
    Err("tcp probe not built yet".into())
}

/// One HTTP GET of `url` within `timeout`; passes when the status is `status`
/// and, if given, the body contains `body_contains`.
pub async fn http(
    url: &str,
    status: u16,
    body_contains: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let _ = (url, status, body_contains, timeout);
    Err("http probe not built yet".into())
}
