//! The environment rekindle gives the programs it starts (inventory
//! scripts, `local:` steps): its own, less every `REKINDLE_*` variable it
//! inherited. Those configure rekindle and carry its secrets
//! (`REKINDLE_BMC_PASSWORD`); a child that needs a value gets it set
//! explicitly by its caller (a `local:` step's `REKINDLE_HOST`).
//!
//! A leaf module: it imports nothing of rekindle's.

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// Inherited variables with this prefix never reach a child.
pub const PREFIX: &str = "REKINDLE_";

/// The inherited variables a child must not get (for callers that build a
/// `tokio::process::Command`; remove them before setting the child's own).
pub fn inherited_to_remove() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_string_lossy().starts_with(PREFIX))
        .collect()
}

/// `Command::new(program)` with rekindle's own variables removed from the
/// environment it inherits.
pub fn scrubbed_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for name in inherited_to_remove() {
        command.env_remove(name);
    }
    command
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bmc_password_variable_is_one_of_those_removed() {
        assert!(crate::transport::redfish::PASSWORD_VAR.starts_with(super::PREFIX));
    }
}
