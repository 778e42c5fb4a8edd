//! The listening sockets of simulated hosts and BMCs, bound the way a
//! restarting daemon binds them.
//!
//! Owns only the binding; it must not import the modules that serve on it.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};

use tokio::net::TcpListener;

use super::SimError;

/// Binds a listener the way a restarting daemon would (SO_REUSEADDR, so a
/// port left in TIME_WAIT by the previous boot does not block it).
pub(crate) fn bind(address: Ipv4Addr, port: u16) -> Result<TcpListener, SimError> {
    let addr = SocketAddr::from((address, port));
    let std = StdListener::bind(addr).map_err(|e| SimError::bind(addr, e))?;
    std.set_nonblocking(true)
        .map_err(|e| SimError::bind(addr, e))?;
    TcpListener::from_std(std).map_err(|e| SimError::bind(addr, e))
}
