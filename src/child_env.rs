//! The environment rekindle gives the programs it starts (inventory
//! scripts, `local:` steps, ProxyCommand, `Match exec`): its own, less every
//! `REKINDLE_*` variable it inherited and `IPMI_PASSWORD`. Those configure
//! rekindle and carry its secrets (`REKINDLE_BMC_PASSWORD`, and ipmitool's
//! password variable); a child that needs a value gets it set explicitly by
//! its caller (a `local:` step's `REKINDLE_HOST`, ipmitool its own password).
//!
//! A leaf module: it imports nothing of rekindle's.

use std::ffi::{OsStr, OsString};
use std::process::Command;

/// Inherited variables with this prefix never reach a child.
pub const PREFIX: &str = "REKINDLE_";
/// ipmitool's password variable (`-E`): never passed on either.
pub const IPMI_PASSWORD: &str = "IPMI_PASSWORD";

fn withheld(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with(PREFIX) || name == IPMI_PASSWORD
}

/// The inherited variables a child must not get (for callers that build a
/// `tokio::process::Command`; remove them before setting the child's own).
pub fn inherited_to_remove() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| withheld(name))
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
    fn ipmitools_password_variable_is_withheld_too() {
        assert!(super::withheld(std::ffi::OsStr::new("IPMI_PASSWORD")));
        assert!(super::withheld(std::ffi::OsStr::new(
            "REKINDLE_BECOME_PASSWORD"
        )));
        assert!(!super::withheld(std::ffi::OsStr::new("PATH")));
    }

    #[test]
    fn the_bmc_password_variable_is_one_of_those_removed() {
        assert!(crate::transport::redfish::PASSWORD_VAR.starts_with(super::PREFIX));
    }
}
