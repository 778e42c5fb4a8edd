//! Privilege escalation on the host: which program (`sudo`, `doas`) and which
//! target user wrap the commands that need it.
//!
//! Owns the wrapping of a command with the policy (a model type,
//! [`Become`]; a pure function: the
//! command becomes one shell-quoted `sh -c` argument), reading what sudo or
//! doas said when they refused, and the `--become-password-file` reader. The
//! playbook (`become:`) and Ansible inventories (`ansible_become*`) produce
//! the policy; the engine applies it; the SSH session feeds the password on
//! stdin. It must not run anything itself.

use std::path::Path;

use crate::inventory::escalation::{Become, BecomeMethod};
use crate::secret::Secret;
use crate::shell::quote as shell_quote;

/// How a wrapped command is authorised on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Non-interactive: a method that wants a password fails at once.
    Never,
    /// The password comes on stdin (`sudo -S -p ''`), one line.
    Stdin,
}

// The policy is model data (`inventory::escalation`); wrapping commands
// with it is the transport's, so its methods are written here.
impl Become {
    /// `command` run as `self.user` through `self.method`. The command is
    /// one shell-quoted argument of `sh -c`, so placeholders already quoted
    /// into it stay quoted; with [`Prompt::Stdin`] the inner shell's stdin is
    /// `/dev/null`, so the command never reads the password sudo was fed.
    pub fn wrap(&self, command: &str, prompt: Prompt) -> String {
        let user = shell_quote(&self.user);
        match (self.method, prompt) {
            (BecomeMethod::Sudo, Prompt::Never) => {
                format!("sudo -n -u {user} -- sh -c {}", shell_quote(command))
            }
            (BecomeMethod::Sudo, Prompt::Stdin) => format!(
                "sudo -S -p '' -u {user} -- sh -c {}",
                shell_quote(&format!("exec </dev/null; {command}"))
            ),
            (BecomeMethod::Doas, _) => {
                format!("doas -n -u {user} sh -c {}", shell_quote(command))
            }
        }
    }

    /// What the output of a wrapped command that failed says about the
    /// escalation itself, if anything (the command's own failure is `None`).
    /// sudo and doas write their refusals as `sudo: ...` / `doas: ...` on
    /// stderr and exit with 1 before running anything.
    pub fn refusal(&self, exit_status: Option<u32>, output: &str) -> Option<Refusal> {
        if exit_status != Some(1) {
            return None;
        }
        let prefix = match self.method {
            BecomeMethod::Sudo => "sudo: ",
            BecomeMethod::Doas => "doas: ",
        };
        // The output tail holds stdout and stderr interleaved; sudo's refusal
        // is the whole of it, since nothing ran.
        let mut own: Vec<&str> = output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        // sudo's lecture (its first use by a user, `lecture=once`) comes
        // before the refusal: it was reported as the command's exit 1.
        if own
            .first()
            .is_some_and(|l| l.starts_with("We trust you have received the usual lecture"))
        {
            let end = own
                .iter()
                .position(|l| l.starts_with("#3)"))
                .map_or(1, |i| i + 1);
            own.drain(..end.min(own.len()));
        }
        let line = *own.first()?;
        let sorry = line.starts_with("Sorry, try again");
        // sudo words some refusals without its prefix.
        let unprefixed = line.starts_with("Sorry, ") || line.contains("is not in the sudoers file");
        if !line.starts_with(prefix) && !unprefixed {
            return None;
        }
        let said = |needle: &str| own.iter().any(|l| l.contains(needle));
        if said("incorrect password") || sorry {
            return Some(Refusal::WrongPassword);
        }
        if said("a password is required")
            || said("a terminal is required")
            || said("no password was provided")
            || said("Authentication failed")
            || said("authentication failed")
        {
            return Some(Refusal::NeedsPassword);
        }
        if said("not in the sudoers file")
            || said("is not allowed to")
            // `Defaults requiretty`: sudo refuses a session without a terminal.
            || said("must have a tty")
            || said("Operation not permitted")
            || said("not permitted")
        {
            return Some(Refusal::NotAllowed(line.to_owned()));
        }
        if said("command not found") || said("not found") {
            return Some(Refusal::Missing(line.to_owned()));
        }
        None
    }
}

/// Why the escalation, not the command, failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// sudo/doas wants a password and none was given (or doas, which cannot take one).
    NeedsPassword,
    /// The password given was rejected.
    WrongPassword,
    /// The login user may not run this as the target user.
    NotAllowed(String),
    /// sudo or doas is not installed.
    Missing(String),
}

/// Files larger than this are not a password.
const MAX_PASSWORD_FILE: u64 = 4096;

/// `--become-password-file`: a regular file only its owner may read; its
/// first line is the password. Errors never quote the file's content.
pub fn read_password_file(path: &Path) -> Result<Secret, PasswordFileError> {
    use super::secret_file::{self, SecretFileError};
    let shown = path.display();
    let err = |why: String| PasswordFileError(format!("--become-password-file {shown}: {why}"));
    let text = secret_file::read(path, MAX_PASSWORD_FILE).map_err(|e| match e {
        SecretFileError::OthersCanRead(mode) => err(format!(
            "readable by others (mode {mode:04o}); refusing to use it: run `chmod 600 {shown}`"
        )),
        other => err(other.to_string()),
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(err("the first line is empty".into()));
    }
    Ok(Secret::new(line))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PasswordFileError(String);

#[cfg(test)]
mod tests {
    use super::*;

    fn sudo() -> Become {
        Become {
            method: BecomeMethod::Sudo,
            user: "root".into(),
        }
    }

    /// Runs `wrapped` with /bin/sh, with `sudo`/`doas` replaced by a shim
    /// that prints its arguments and runs what follows `--`/the user.
    fn sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn wrapping_keeps_quoted_host_values_quoted() {
        // A host value already substituted and shell-quoted by the engine.
        let command = "echo 'it'\\''s; $(rm -rf /)' \"$HOME\" | tr a-z A-Z";
        let wrapped = sudo().wrap(command, Prompt::Never);
        assert_eq!(
            wrapped,
            format!("sudo -n -u 'root' -- sh -c {}", shell_quote(command))
        );
        // Run it with a stand-in `sudo` that drops its options: the inner
        // command must print exactly what it prints unwrapped.
        let shim = "sudo() { while [ \"$1\" != -- ]; do shift; done; shift; \"$@\"; }; ";
        assert_eq!(sh(&format!("{shim}{wrapped}")), sh(command), "{wrapped}");
        let stdin = sudo().wrap(command, Prompt::Stdin);
        assert!(
            stdin.starts_with("sudo -S -p '' -u 'root' -- sh -c "),
            "{stdin}"
        );
        assert_eq!(sh(&format!("{shim}{stdin}")), sh(command), "{stdin}");
        // The inner command does not see the password on its stdin.
        let reads = sudo().wrap("cat", Prompt::Stdin);
        assert_eq!(sh(&format!("echo hunter2 | {{ {shim}{reads}; }}")), "");

        let odd_user = Become {
            method: BecomeMethod::Doas,
            user: "svc'x".into(),
        };
        assert_eq!(
            odd_user.wrap("id", Prompt::Stdin),
            "doas -n -u 'svc'\\''x' sh -c 'id'"
        );
    }

    #[test]
    fn the_password_file_must_be_private_and_regular() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret pw\nignored\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_password_file(&path).unwrap_err().to_string();
        assert!(e.contains("readable by others (mode 0640)"), "{e}");
        assert!(!e.contains("s3cret"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_password_file(&path).unwrap().expose(), "s3cret pw");
        let e = read_password_file(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn sudo_refusals_are_told_apart_from_the_commands_failure() {
        let s = sudo();
        assert_eq!(
            s.refusal(Some(1), "sudo: a password is required\n"),
            Some(Refusal::NeedsPassword)
        );
        assert_eq!(
            s.refusal(
                Some(1),
                "Sorry, try again.\nsudo: no password was provided\nsudo: 1 incorrect password attempt"
            ),
            Some(Refusal::WrongPassword)
        );
        assert!(matches!(
            s.refusal(
                Some(1),
                "rekindle-test is not in the sudoers file.  This incident will be reported."
            ),
            Some(Refusal::NotAllowed(_))
        ));
        assert!(matches!(
            s.refusal(
                Some(1),
                "sudo: rekindle-test is not in the sudoers file.  This incident will be reported."
            ),
            Some(Refusal::NotAllowed(_))
        ));
        assert!(matches!(
            s.refusal(
                Some(1),
                "Sorry, user bob is not allowed to execute '/bin/sh -c id' as root on h."
            ),
            Some(Refusal::NotAllowed(_))
        ));
        // sudo's lecture before its refusal, and `requiretty`: refusals too.
        let lecture = "\nWe trust you have received the usual lecture from the local System\n\
            Administrator. It usually boils down to these three things:\n\n\
            \x20   #1) Respect the privacy of others.\n    #2) Think before you type.\n\
            \x20   #3) With great power comes great responsibility.\n\n";
        assert_eq!(
            s.refusal(Some(1), &format!("{lecture}sudo: a password is required\n")),
            Some(Refusal::NeedsPassword)
        );
        assert_eq!(
            s.refusal(
                Some(1),
                &format!("{lecture}Sorry, try again.\nsudo: 1 incorrect password attempt\n")
            ),
            Some(Refusal::WrongPassword)
        );
        assert_eq!(
            s.refusal(Some(1), "sudo: sorry, you must have a tty to run sudo\n"),
            Some(Refusal::NotAllowed(
                "sudo: sorry, you must have a tty to run sudo".into()
            ))
        );
        // The command's own exit 1 is the command's.
        assert_eq!(s.refusal(Some(1), "grep: no match"), None);
        assert_eq!(s.refusal(Some(2), "sudo: a password is required"), None);
        let doas = Become {
            method: BecomeMethod::Doas,
            user: "root".into(),
        };
        assert_eq!(
            doas.refusal(Some(1), "doas: Authentication failed"),
            Some(Refusal::NeedsPassword)
        );
        assert!(matches!(
            doas.refusal(Some(1), "doas: Operation not permitted"),
            Some(Refusal::NotAllowed(_))
        ));
    }
}
