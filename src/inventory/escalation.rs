//! The become policy a host, a playbook or a plan asks for: which program
//! (`sudo`, `doas`) runs commands as which user. Plain data, read from the
//! playbook's `become:` and Ansible's `ansible_become*`.
//!
//! Owns the type and the method names. It must not wrap or run commands:
//! `transport::escalation` does that with it.

/// How a command is run as another user on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Become {
    pub method: BecomeMethod,
    /// Target user (`root` unless the playbook or inventory says otherwise).
    pub user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BecomeMethod {
    Sudo,
    Doas,
}

impl BecomeMethod {
    /// Parses a method name as playbooks and Ansible spell it; `None` for one
    /// rekindle does not support (the caller names it in an error).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sudo" => Some(Self::Sudo),
            "doas" => Some(Self::Doas),
            _ => None,
        }
    }

    /// The program's name, as [`BecomeMethod::parse`] reads it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sudo => "sudo",
            Self::Doas => "doas",
        }
    }
}

impl Become {
    /// `root` through `sudo`: what `become: true` means.
    pub fn root() -> Self {
        Become {
            method: BecomeMethod::Sudo,
            user: "root".into(),
        }
    }

    /// Whether this method can read a password from stdin (`doas` reads
    /// only a terminal, so it always runs non-interactively).
    pub fn takes_stdin_password(&self) -> bool {
        self.method == BecomeMethod::Sudo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_read_back() {
        for m in [BecomeMethod::Sudo, BecomeMethod::Doas] {
            assert_eq!(BecomeMethod::parse(m.name()), Some(m));
        }
        assert_eq!(BecomeMethod::parse("su"), None);
    }
}
