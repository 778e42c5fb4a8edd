//! `~/.ssh/config` (via ssh2-config) and the rule that merges it with the inventory.
//!
//! Owns turning a [`Host`] or a ProxyJump spec into an [`Endpoint`]: where to
//! connect, as whom, through which jump host. It must not open connections.
//!
//! Rule: what the inventory set explicitly wins; the config fills the rest.
//! An address equal to the host's name counts as "not set" (the inventory
//! defaults it to the name), so `HostName` applies; port 22 counts as "not
//! set", so `Port` applies; `user` unset lets `User` apply, else the local
//! user; the inventory's `jump` wins over `ProxyJump`.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use crate::inventory::Host;

/// Where and how to reach one SSH server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The name the operator knows the host by (inventory name or jump spec host).
    pub name: String,
    /// What to connect to (IP or DNS name).
    pub address: String,
    pub port: u16,
    pub user: String,
    /// ProxyJump spec (`[user@]host[:port]`, first hop of a list).
    pub jump: Option<String>,
    /// Identity files for this host, in order: the inventory's own
    /// (`identity_file` of the host), then the config's IdentityFile entries.
    pub identity_files: Vec<PathBuf>,
    /// The config's CertificateFile for this host.
    pub certificate_files: Vec<PathBuf>,
}

impl Endpoint {
    /// Names to look the host key up under: the name and the address,
    /// in `[x]:port` form when the port is not 22.
    pub fn known_hosts_names(&self) -> Vec<String> {
        let mut names = vec![super::known_hosts::host_port_name(&self.name, self.port)];
        if self.address != self.name {
            names.push(super::known_hosts::host_port_name(&self.address, self.port));
        }
        names
    }
}

#[derive(Debug, thiserror::Error)]
#[error("ssh config {path}: {message}")]
pub struct SshConfigError {
    pub path: String,
    pub message: String,
}

/// A parsed client config (empty when none was given or the file is missing).
#[derive(Default)]
pub struct ClientConfig {
    config: Option<SshConfig>,
    local_user: String,
}

impl ClientConfig {
    /// Reads `path`; a missing file is an empty config, unreadable or invalid is an error.
    pub fn load(path: Option<&Path>) -> Result<ClientConfig, SshConfigError> {
        let local_user = local_user();
        let Some(path) = path else {
            return Ok(ClientConfig {
                config: None,
                local_user,
            });
        };
        let err = |message: String| SshConfigError {
            path: path.display().to_string(),
            message,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ClientConfig {
                    config: None,
                    local_user,
                });
            }
            Err(e) => return Err(err(e.to_string())),
        };
        // Real configs carry options we do not use (ControlMaster, ...): ignore them.
        let rules = ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS;
        let config = SshConfig::default()
            .parse(&mut BufReader::new(file), rules)
            .map_err(|e| err(e.to_string()))?;
        Ok(ClientConfig {
            config: Some(config),
            local_user,
        })
    }

    /// The endpoint for an inventory host.
    pub fn resolve_host(&self, host: &Host) -> Endpoint {
        let params = self.config.as_ref().map(|c| c.query(&host.name));
        let p = params.as_ref();
        let address = if host.address == host.name {
            p.and_then(|p| p.host_name.clone())
                .unwrap_or_else(|| host.address.clone())
        } else {
            host.address.clone()
        };
        let port = if host.port == 22 {
            p.and_then(|p| p.port).unwrap_or(22)
        } else {
            host.port
        };
        let user = host
            .user
            .clone()
            .or_else(|| p.and_then(|p| p.user.clone()))
            .unwrap_or_else(|| self.local_user.clone());
        let jump = host
            .jump
            .clone()
            .or_else(|| p.and_then(|p| jump_list(p.proxy_jump.as_deref())));
        Endpoint {
            name: host.name.clone(),
            address,
            port,
            user,
            jump,
            identity_files: host
                .identity_file
                .iter()
                .cloned()
                .chain(p.and_then(|p| p.identity_file.clone()).unwrap_or_default())
                .collect(),
            certificate_files: p
                .and_then(|p| p.certificate_file.clone())
                .into_iter()
                .collect(),
        }
    }

    /// The endpoint for a ProxyJump spec `[user@]host[:port]`; values in the
    /// spec win over the config, as with OpenSSH. A chain `a,b` is the
    /// endpoint `b` reached through `a` (the last hop is next to the target).
    pub fn resolve_jump(&self, spec: &str) -> Endpoint {
        let (chain, spec) = match spec.rsplit_once(',') {
            Some((chain, last)) => (Some(chain.trim().to_string()), last.trim()),
            None => (None, spec.trim()),
        };
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (name, port) = split_host_port(rest);
        let params = self.config.as_ref().map(|c| c.query(&name));
        let p = params.as_ref();
        Endpoint {
            address: p
                .and_then(|p| p.host_name.clone())
                .unwrap_or_else(|| name.clone()),
            port: port.or_else(|| p.and_then(|p| p.port)).unwrap_or(22),
            user: user
                .or_else(|| p.and_then(|p| p.user.clone()))
                .unwrap_or_else(|| self.local_user.clone()),
            jump: chain.or_else(|| p.and_then(|p| jump_list(p.proxy_jump.as_deref()))),
            identity_files: p.and_then(|p| p.identity_file.clone()).unwrap_or_default(),
            certificate_files: p
                .and_then(|p| p.certificate_file.clone())
                .into_iter()
                .collect(),
            name,
        }
    }
}

/// `ProxyJump none` disables jumping; a list `a,b` is kept whole (see
/// [`ClientConfig::resolve_jump`]).
fn jump_list(list: Option<&[String]>) -> Option<String> {
    let hops: Vec<&str> = list?
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect();
    match hops.first() {
        None => None,
        Some(h) if h.eq_ignore_ascii_case("none") => None,
        Some(_) => Some(hops.join(",")),
    }
}

/// `host`, `host:port`, `[v6]:port`, `[v6]`.
fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host.to_string(), port);
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_string(), Some(port)),
            Err(_) => (s.to_string(), None),
        },
        _ => (s.to_string(), None),
    }
}

/// The user running rekindle: `$USER`, else the password database.
pub fn local_user() -> String {
    if let Ok(u) = std::env::var("USER")
        && !u.is_empty()
    {
        return u;
    }
    passwd_name().unwrap_or_else(|| "root".to_string())
}

fn passwd_name() -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: zeroed passwd is a valid out-parameter; getpwuid_r writes into `pwd`
    // and `buf` (sized above) and sets `result` to null or &pwd.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name);
        Some(name.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn host(name: &str, address: &str, port: u16, user: Option<&str>) -> Host {
        Host {
            name: name.into(),
            address: address.into(),
            port,
            user: user.map(str::to_string),
            jump: None,
            labels: BTreeMap::new(),
            identity_file: None,
            escalation: None,
            groups: vec![],
            span: crate::diag::Span::new("inv.yaml".into(), 1, 1, 1),
        }
    }

    fn config(text: &str) -> ClientConfig {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(&path, text).expect("write");
        ClientConfig::load(Some(&path)).expect("parses")
    }

    #[test]
    fn config_fills_what_inventory_left_open() {
        let c = config(
            "Host db*\n  HostName 10.9.9.9\n  User admin\n  Port 2200\n  ProxyJump ops@bastion:2022,other\n  IdentityFile /k/db\nHost *\n  User nobody\n",
        );
        let e = c.resolve_host(&host("db1", "db1", 22, None));
        assert_eq!(e.address, "10.9.9.9");
        assert_eq!(e.port, 2200);
        assert_eq!(e.user, "admin");
        assert_eq!(e.jump.as_deref(), Some("ops@bastion:2022,other"));
        assert_eq!(e.identity_files, vec![PathBuf::from("/k/db")]);
        let e = c.resolve_host(&host("db1", "10.0.0.1", 2222, Some("root")));
        assert_eq!(
            (e.address.as_str(), e.port, e.user.as_str()),
            ("10.0.0.1", 2222, "root")
        );
        let e = c.resolve_host(&host("web1", "web1", 22, None));
        assert_eq!((e.address.as_str(), e.user.as_str()), ("web1", "nobody"));
        assert_eq!(e.jump, None);
    }

    #[test]
    fn jump_specs() {
        let c = config("Host bastion\n  HostName 127.0.0.9\n  Port 2022\n");
        let j = c.resolve_jump("ops@bastion");
        assert_eq!(
            (j.address.as_str(), j.port, j.user.as_str()),
            ("127.0.0.9", 2022, "ops")
        );
        let j = c.resolve_jump("bastion:23");
        assert_eq!(j.port, 23);
        let j = c.resolve_jump("outer,ops@bastion");
        assert_eq!(
            (j.name.as_str(), j.jump.as_deref()),
            ("bastion", Some("outer"))
        );
        assert_eq!(split_host_port("[::1]:2200"), ("::1".into(), Some(2200)));
        assert_eq!(split_host_port("fe80::1"), ("fe80::1".into(), None));
    }

    #[test]
    fn missing_config_is_empty() {
        let c = ClientConfig::load(Some(Path::new("/nonexistent/rekindle/config"))).expect("ok");
        let e = c.resolve_host(&host("a", "a", 22, Some("u")));
        assert_eq!(
            (e.address.as_str(), e.port, e.user.as_str()),
            ("a", 22, "u")
        );
    }
}
