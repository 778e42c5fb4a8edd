//! The simulated fleet behind `rekindle sim` (and later `drill` and tests):
//! real SSH servers (russh) and HTTP health endpoints on loopback addresses
//! 127.x.y.z, with boot ids, reboots, boot times and injected faults, sharded
//! across worker processes so a 32,000-host fleet fits the per-process
//! descriptor limit.
//!
//! Owns everything a simulated host does and the files a fleet writes
//! (inventory.yaml, known_hosts, id_ed25519, status.json, bmc-credentials). It must not import
//! the engine, and the engine must never import it: they meet only over SSH.
//!
//! - [`config`]: fleet shape, faults, boot times, address assignment.
//! - `host`: one host's boot cycle and listeners; `ssh`: its SSH side and shell;
//!   `bmc`: its Redfish BMC (powered-off fleets).
//! - `shard`: hosts of one process, and the worker-process protocol.
//! - [`fleet`]: [`Fleet::start`] -> [`FleetHandle`]: files, workers, status.
//! - [`drill`]: an inventory and playbook mapped onto a fleet for `rekindle drill`;
//!   [`replay`]: a drill's stage replayed at the full stage's size, for its prediction.
//! - [`deps`]: connections between hosts (`sim --deps`), as `/proc/net/tcp` shows them.

mod bmc;
pub mod config;
pub(crate) mod core;
pub mod deps;
pub mod drill;
pub mod fleet;
mod host;
mod net;
pub mod replay;
mod shard;
mod ssh;

use std::net::SocketAddr;

pub use config::{
    BmcProfile, BootTimeRange, FailSpec, FaultKind, FleetConfig, SimHost, parse_fail, parse_faults,
};
pub use core::{HostPower, Phase};
pub use fleet::{Fleet, FleetHandle, FleetPaths, FleetStatus, HostReport};
pub use shard::run_worker;

/// Why the simulator could not start or stop.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SimError {
    pub kind: SimErrorKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimErrorKind {
    /// The fleet's configuration is invalid (faults, boot time, addresses).
    Config,
    /// An address/port could not be bound.
    Bind,
    /// Output files could not be written.
    Io,
    /// Key generation or parsing failed.
    Key,
    /// A worker process failed or broke the protocol.
    Worker,
}

impl SimError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        SimError {
            kind: SimErrorKind::Config,
            message: message.into(),
        }
    }

    pub(crate) fn bind(addr: SocketAddr, e: std::io::Error) -> Self {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (ports below 1024 need root; try --port 2222)"
        } else if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another fleet or server uses it; try another --port)"
        } else {
            ""
        };
        SimError {
            kind: SimErrorKind::Bind,
            message: format!("cannot listen on {addr}: {e}{hint}"),
        }
    }

    pub(crate) fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        SimError {
            kind: SimErrorKind::Io,
            message: format!("{what}: {e}"),
        }
    }

    pub(crate) fn key(message: impl Into<String>) -> Self {
        SimError {
            kind: SimErrorKind::Key,
            message: format!("ssh key: {}", message.into()),
        }
    }

    pub(crate) fn worker(message: impl Into<String>) -> Self {
        SimError {
            kind: SimErrorKind::Worker,
            message: message.into(),
        }
    }
}
