//! Privilege escalation on the host: which program (`sudo`, `doas`) and which
//! target user wrap the commands that need it.
//!
//! Owns the policy's type. The playbook (`become:`) and Ansible inventories
//! (`ansible_become*`) produce it; the engine applies it to commands.

/// How a command is run as another user on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Escalation {
    pub method: EscalationMethod,
    /// Target user (`root` unless the playbook or inventory says otherwise).
    pub user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EscalationMethod {
    Sudo,
    Doas,
}

impl EscalationMethod {
    /// Parses a method name as playbooks and Ansible spell it; `None` for one
    /// rekindle does not support (the caller names it in an error).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sudo" => Some(Self::Sudo),
            "doas" => Some(Self::Doas),
            _ => None,
        }
    }
}
