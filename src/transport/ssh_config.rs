//! `~/.ssh/config` as OpenSSH's client reads it, and the rule that merges it
//! with the inventory.
//!
//! Owns parsing (`Keyword value`, `Keyword=value`, quotes, comments,
//! `Include` with globs, `Host` and `Match` blocks) and resolving a host name
//! into an [`Endpoint`] the way OpenSSH 9's `readconf.c` does: the first
//! value obtained for an option wins (IdentityFile and CertificateFile
//! accumulate); `Match host|originalhost|user|localuser|all|exec`; the
//! tokens `%h %p %r %u %n %d %l %L %i %k %C %%` where OpenSSH expands them.
//! It must not open connections; `Match exec` runs its command (in an
//! environment without rekindle's secrets) because OpenSSH does.
//!
//! Every option that changes where rekindle connects, as whom, through what,
//! or whether it trusts the host is honoured or refused with its file:line;
//! options that only tune OpenSSH's own process are ignored (the list is
//! [`IGNORED`]; docs/ssh.md).
//!
//! Merge rule: what the inventory set explicitly wins; the config fills the
//! rest. An address equal to the host's name counts as "not set" (the
//! inventory defaults it to the name), so `HostName` applies; port 22 counts
//! as "not set", so `Port` applies; `user` unset lets `User` apply, else the
//! local user; the inventory's `jump` wins over `ProxyJump`/`ProxyCommand`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::algorithms::{AlgorithmKind, Algorithms, assemble};
use crate::inventory::Host;

/// Include depth OpenSSH allows.
const MAX_INCLUDE_DEPTH: usize = 16;
/// `Match exec` commands are bounded: a hung one must not hang the run.
const MATCH_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// Options that only tune OpenSSH's own process, or features rekindle does
/// not use (forwarding, terminals, multiplexing): accepted and ignored.
pub const IGNORED: &[&str] = &[
    "addkeystoagent",
    "batchmode",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "checkhostip",
    "clearallforwardings",
    "compression",
    "connectionattempts",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "dynamicforward",
    "enableescapecommandline",
    "escapechar",
    "exitonforwardfailure",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "gssapiauthentication",
    "gssapidelegatecredentials",
    "hashknownhosts",
    "ignoreunknown",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "passwordauthentication",
    "permitlocalcommand",
    "permitremoteopen",
    "preferredauthentications",
    "rekeylimit",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "requiredrsasize",
    "sendenv",
    "sessiontype",
    "setenv",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "tcpkeepalive",
    "updatehostkeys",
    "usekeychain",
    "verifyhostkeydns",
    "visualhostkey",
    "xauthlocation",
];

/// Options that would change where, as whom, through what, or whether the
/// host is trusted, which rekindle cannot honour: an error where they apply
/// (unless set to the value that changes nothing).
const REFUSED: &[(&str, &str)] = &[
    ("addressfamily", "any"),
    ("bindaddress", ""),
    ("bindinterface", ""),
    ("casignaturealgorithms", ""),
    ("hostbasedauthentication", "no"),
    ("hostbasedacceptedalgorithms", ""),
    ("knownhostscommand", "none"),
    ("pkcs11provider", "none"),
    ("proxyusefdpass", "no"),
    ("revokedhostkeys", ""),
    ("securitykeyprovider", "internal"),
    ("tunnel", "no"),
    ("tunneldevice", ""),
    ("gssapikeyexchange", "no"),
    ("gssapiclientidentity", ""),
    ("gssapiserveridentity", ""),
    ("enablesshkeysign", "no"),
    ("pubkeyauthentication", "yes"),
];

/// Options rekindle honours (beyond Host, Match and Include).
const HONOURED: &[&str] = &[
    "hostname",
    "port",
    "user",
    "proxyjump",
    "proxycommand",
    "identityfile",
    "certificatefile",
    "identitiesonly",
    "identityagent",
    "userknownhostsfile",
    "globalknownhostsfile",
    "stricthostkeychecking",
    "hostkeyalias",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
    "kexalgorithms",
    "ciphers",
    "macs",
    "hostkeyalgorithms",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "canonicalizehostname",
];

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: Arc<PathBuf>,
    pub line: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// How strictly host keys are checked, as the config asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strictness {
    /// Not set (OpenSSH's `ask`): rekindle's own rule (unknown refused
    /// unless `--accept-new-host-keys`).
    Default,
    /// `yes`: unknown keys refused, even with `--accept-new-host-keys`.
    Yes,
    /// `accept-new`: unknown keys recorded, changed keys refused.
    AcceptNew,
    /// `ask`: as [`Strictness::Default`] (rekindle never asks).
    Ask,
    /// `no`/`off`: rekindle keeps its own rule and says so once.
    Off(At),
}

/// Where rekindle's agent comes from for this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// `SSH_AUTH_SOCK` (the default, and `IdentityAgent SSH_AUTH_SOCK`).
    Environment,
    /// `IdentityAgent none`.
    None,
    /// `IdentityAgent PATH` (or `$VAR` naming a path).
    Socket(PathBuf),
}

/// Where and how to reach one SSH server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The name the operator knows the host by (inventory name or jump spec host).
    pub name: String,
    /// What to connect to (IP or DNS name).
    pub address: String,
    pub port: u16,
    pub user: String,
    /// ProxyJump spec (`[user@]host[:port]`, a whole chain `a,b`).
    pub jump: Option<String>,
    /// ProxyCommand, tokens expanded: run on the bastion, SSH over its stdin/stdout.
    pub proxy_command: Option<String>,
    /// ProxyCommand as written (what `ssh -G` prints).
    pub proxy_command_raw: Option<String>,
    /// Identity files for this host, in order: the inventory's own
    /// (`identity_file` of the host), then the config's IdentityFile entries.
    pub identity_files: Vec<PathBuf>,
    /// The config's IdentityFile entries as written (for the `ssh -G` view).
    pub identity_files_raw: Vec<String>,
    /// The config's CertificateFile entries for this host.
    pub certificate_files: Vec<PathBuf>,
    pub certificate_files_raw: Vec<String>,
    /// `IdentitiesOnly yes`: agent keys only if they match an identity file.
    pub identities_only: bool,
    pub agent: Agent,
    /// UserKnownHostsFile (expanded); `None` when the config does not set it.
    pub user_known_hosts: Option<Vec<PathBuf>>,
    /// GlobalKnownHostsFile (expanded); `None` when the config does not set it.
    pub global_known_hosts: Option<Vec<PathBuf>>,
    pub strict: Strictness,
    /// HostKeyAlias: the name host keys are looked up and recorded under.
    pub host_key_alias: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// ServerAliveInterval (`None`: rekindle's own keepalive).
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: Option<usize>,
    pub algorithms: Algorithms,
    /// Things said once about this host's config (skipped algorithms ...).
    pub warnings: Vec<String>,
}

impl Endpoint {
    /// A bare endpoint (no config): rekindle's defaults.
    pub fn plain(name: &str, address: &str, port: u16, user: &str) -> Endpoint {
        Endpoint {
            name: name.to_string(),
            address: address.to_string(),
            port,
            user: user.to_string(),
            jump: None,
            proxy_command: None,
            proxy_command_raw: None,
            identity_files: Vec::new(),
            identity_files_raw: Vec::new(),
            certificate_files: Vec::new(),
            certificate_files_raw: Vec::new(),
            identities_only: false,
            agent: Agent::Environment,
            user_known_hosts: None,
            global_known_hosts: None,
            strict: Strictness::Default,
            host_key_alias: None,
            connect_timeout: None,
            server_alive_interval: None,
            server_alive_count_max: None,
            algorithms: Algorithms::default(),
            warnings: Vec::new(),
        }
    }

    /// Names to look the host key up under, in `[x]:port` form when the
    /// port is not 22: the HostKeyAlias alone (without port) when set, as
    /// OpenSSH, else the name and the address.
    pub fn known_hosts_names(&self) -> Vec<String> {
        // The alias replaces name and port (sshconnect.c, get_hostfile_hostname_ipaddr).
        if let Some(alias) = &self.host_key_alias {
            return vec![alias.clone()];
        }
        let mut names = vec![super::known_hosts::host_port_name(&self.name, self.port)];
        if self.address != self.name {
            names.push(super::known_hosts::host_port_name(&self.address, self.port));
        }
        names
    }

    /// The bare names (no port) a host certificate's principals and an
    /// `@cert-authority` line are matched against.
    pub fn bare_names(&self) -> Vec<String> {
        if let Some(alias) = &self.host_key_alias {
            return vec![alias.clone()];
        }
        let mut names = vec![self.name.clone()];
        if self.address != self.name {
            names.push(self.address.clone());
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

/// One line of a config file, split into keyword and arguments.
#[derive(Debug, Clone)]
struct Directive {
    keyword: String,
    args: Vec<String>,
    at: At,
}

#[derive(Debug, Clone)]
enum Item {
    Host {
        patterns: Vec<String>,
    },
    Match {
        args: Vec<String>,
        at: At,
    },
    /// An included file: its Host/Match lines do not leak into the includer.
    Include(Vec<Item>),
    Set(Directive),
}

/// A parsed client config (empty when none was given or the file is missing).
pub struct ClientConfig {
    items: Vec<Item>,
    local_user: String,
    home: PathBuf,
    /// Results of `Match exec` commands, so each runs once per run.
    exec_cache: Mutex<HashMap<String, bool>>,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            items: Vec::new(),
            local_user: local_user(),
            home: std::env::home_dir().unwrap_or_else(|| PathBuf::from("/")),
            exec_cache: Mutex::new(HashMap::new()),
        }
    }
}

/// The options one resolution gathered (first value wins).
#[derive(Default)]
struct Gathered {
    values: HashMap<String, (Vec<String>, At)>,
    identity_files: Vec<String>,
    certificate_files: Vec<String>,
}

impl Gathered {
    fn first(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .and_then(|(a, _)| a.first())
            .map(String::as_str)
    }

    fn at(&self, key: &str) -> Option<&At> {
        self.values.get(key).map(|(_, at)| at)
    }
}

impl ClientConfig {
    /// Reads `path`; a missing file is an empty config, unreadable or invalid is an error.
    pub fn load(path: Option<&Path>) -> Result<ClientConfig, SshConfigError> {
        let mut config = ClientConfig::default();
        let Some(path) = path else {
            return Ok(config);
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(config),
            _ => {}
        }
        let home = config.home.clone();
        config.items = read_file(path, &home, 0).map_err(|message| SshConfigError {
            path: path.display().to_string(),
            message,
        })?;
        Ok(config)
    }

    /// The endpoint for an inventory host.
    pub fn resolve_host(&self, host: &Host) -> Result<Endpoint, String> {
        let mut e = self.resolve_name(&host.name, None, None)?;
        if host.address != host.name {
            e.address = host.address.clone();
        }
        if host.port != 22 {
            e.port = host.port;
        }
        if let Some(u) = &host.user {
            e.user = u.clone();
        }
        if let Some(j) = &host.jump {
            e.jump = Some(j.clone());
            e.proxy_command = None;
            e.proxy_command_raw = None;
        }
        if let Some(id) = &host.identity_file {
            e.identity_files.insert(0, id.clone());
        }
        Ok(e)
    }

    /// The endpoint for a ProxyJump spec `[user@]host[:port]`; values in the
    /// spec win over the config, as with OpenSSH. A chain `a,b` is the
    /// endpoint `b` reached through `a` (the last hop is next to the target).
    pub fn resolve_jump(&self, spec: &str) -> Result<Endpoint, String> {
        let (chain, spec) = match spec.rsplit_once(',') {
            Some((chain, last)) => (Some(chain.trim().to_string()), last.trim()),
            None => (None, spec.trim()),
        };
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (name, port) = split_host_port(rest);
        let mut e = self.resolve_name(&name, user.as_deref(), port)?;
        if let Some(chain) = chain {
            e.jump = Some(chain);
            e.proxy_command = None;
            e.proxy_command_raw = None;
        }
        Ok(e)
    }

    /// OpenSSH's view of `name` (`ssh [-l user] [-p port] name`).
    pub fn resolve_name(
        &self,
        name: &str,
        user: Option<&str>,
        port: Option<u16>,
    ) -> Result<Endpoint, String> {
        let mut g = Gathered::default();
        // Command-line values come first in OpenSSH, so they win.
        let cli = At {
            file: Arc::new(PathBuf::from("<command line>")),
            line: 0,
        };
        if let Some(u) = user {
            g.values
                .insert("user".into(), (vec![u.to_string()], cli.clone()));
        }
        if let Some(p) = port {
            g.values.insert("port".into(), (vec![p.to_string()], cli));
        }
        self.walk(&self.items, true, false, name, &mut g)?;
        self.finish(name, g)
    }

    fn walk(
        &self,
        items: &[Item],
        mut active: bool,
        never: bool,
        name: &str,
        g: &mut Gathered,
    ) -> Result<(), String> {
        for item in items {
            match item {
                Item::Host { patterns } => {
                    active = !never && host_matches(patterns, name);
                }
                Item::Match { args, at } => {
                    active = !never && self.match_line(args, at, name, g)?;
                }
                Item::Include(sub) => {
                    // An inactive Include is read for syntax only.
                    self.walk(sub, active, never || !active, name, g)?;
                }
                Item::Set(d) if active => set(d, g)?,
                Item::Set(_) => {}
            }
        }
        Ok(())
    }

    /// `Match` criteria, as readconf.c's `match_cfg_line`.
    fn match_line(
        &self,
        args: &[String],
        at: &At,
        name: &str,
        g: &Gathered,
    ) -> Result<bool, String> {
        let host = match g.first("hostname") {
            Some(h) => expand(h, name, &[('h', name)]).map_err(|e| format!("{at}: {e}"))?,
            None => name.to_string(),
        };
        let user = g.first("user").unwrap_or(&self.local_user).to_string();
        let port = g.first("port").unwrap_or("22").to_string();
        let mut result = true;
        let mut attributes = 0;
        let mut i = 0;
        while i < args.len() {
            let raw = &args[i];
            i += 1;
            let (negate, attr) = match raw.strip_prefix('!') {
                Some(a) => (true, a.to_ascii_lowercase()),
                None => (false, raw.to_ascii_lowercase()),
            };
            if attr == "all" {
                if attributes > 0 || i < args.len() {
                    return Err(format!(
                        "{at}: Match `all` cannot be combined with other Match attributes"
                    ));
                }
                return Ok(result && !negate);
            }
            attributes += 1;
            if attr == "canonical" || attr == "final" {
                return Err(format!(
                    "{at}: Match {attr} needs hostname canonicalization, which rekindle does not do"
                ));
            }
            let Some(arg) = args.get(i) else {
                return Err(format!("{at}: Match {attr} needs an argument"));
            };
            i += 1;
            let r = match attr.as_str() {
                "host" => pattern_list(&host.to_ascii_lowercase(), arg, true),
                "originalhost" => pattern_list(&name.to_ascii_lowercase(), arg, true),
                "user" => pattern_list(&user, arg, false),
                "localuser" => pattern_list(&self.local_user, arg, false),
                "exec" => {
                    if !result {
                        continue;
                    }
                    let alias = g.first("hostkeyalias").unwrap_or(&host).to_string();
                    let cmd = self
                        .tokens(arg, &host, name, &port, &user, &alias)
                        .map_err(|e| format!("{at}: Match exec: {e}"))?;
                    self.exec(&cmd)
                        .map_err(|e| format!("{at}: Match exec `{cmd}`: {e}"))?
                }
                other => {
                    return Err(format!(
                        "{at}: Match {other} is not supported by rekindle (it knows host, \
                         originalhost, user, localuser, exec, all)"
                    ));
                }
            };
            if r == negate {
                result = false;
            }
        }
        if attributes == 0 {
            return Err(format!("{at}: Match needs one or more attributes"));
        }
        Ok(result)
    }

    fn exec(&self, cmd: &str) -> Result<bool, String> {
        if let Some(r) = self
            .exec_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cmd)
        {
            return Ok(*r);
        }
        let mut child = std::process::Command::new("/bin/sh");
        child
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        scrub_env(&mut child);
        let mut child = child.spawn().map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + MATCH_EXEC_TIMEOUT;
        let status = loop {
            match child.try_wait().map_err(|e| e.to_string())? {
                Some(s) => break s,
                None if std::time::Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("did not finish within {MATCH_EXEC_TIMEOUT:?}"));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let r = status.success();
        self.exec_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cmd.to_string(), r);
        Ok(r)
    }

    /// The tokens of IdentityFile, CertificateFile, UserKnownHostsFile,
    /// IdentityAgent and Match exec.
    fn tokens(
        &self,
        s: &str,
        host: &str,
        original: &str,
        port: &str,
        user: &str,
        alias: &str,
    ) -> Result<String, String> {
        let this = this_host();
        let short = this.split('.').next().unwrap_or("").to_string();
        let home = self.home.display().to_string();
        let uid = unsafe_free_uid().to_string();
        let hash = connection_hash(&this, host, port, user);
        expand(
            s,
            original,
            &[
                ('C', &hash),
                ('L', &short),
                ('d', &home),
                ('h', host),
                ('i', &uid),
                ('k', alias),
                ('l', &this),
                ('n', original),
                ('p', port),
                ('r', user),
                ('u', &self.local_user),
            ],
        )
    }

    fn finish(&self, name: &str, g: Gathered) -> Result<Endpoint, String> {
        let at = |k: &str| {
            g.at(k)
                .map(ToString::to_string)
                .unwrap_or_else(|| "?".into())
        };
        let mut e = Endpoint::plain(name, name, 22, &self.local_user);
        if let Some(h) = g.first("hostname") {
            let h = expand(h, name, &[('h', name)])
                .map_err(|err| format!("{}: HostName: {err}", at("hostname")))?;
            e.address = if h.parse::<std::net::IpAddr>().is_ok() {
                h
            } else {
                h.to_ascii_lowercase()
            };
        }
        if let Some(p) = g.first("port") {
            e.port = p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{}: Port {p} is not a port number", at("port")))?;
        }
        if let Some(u) = g.first("user") {
            e.user = u.to_string();
        }
        if let Some(a) = g.first("hostkeyalias") {
            e.host_key_alias = Some(a.to_ascii_lowercase());
        }
        let port = e.port.to_string();
        let alias = e.host_key_alias.clone().unwrap_or_else(|| name.to_string());
        let tokens = |s: &str, key: &str| {
            let s = tilde(s, &self.home);
            self.tokens(&s, &e.address, name, &port, &e.user, &alias)
                .map_err(|err| format!("{}: {key}: {err}", at(key)))
        };
        // ProxyJump and ProxyCommand: whichever came first wins (readconf.c).
        let jump_at = g.values.get("proxyjump").map(|(_, a)| a.line);
        let command_at = g.values.get("proxycommand").map(|(_, a)| a.line);
        let jump_first = match (jump_at, command_at) {
            (Some(_), None) => true,
            (Some(_), Some(_)) => {
                // Same file order is what matters; both carry their At.
                let (ja, ca) = (g.at("proxyjump"), g.at("proxycommand"));
                match (ja, ca) {
                    (Some(j), Some(c)) if j.file == c.file => j.line < c.line,
                    _ => true,
                }
            }
            _ => false,
        };
        if jump_first {
            if let Some((args, _)) = g.values.get("proxyjump") {
                let spec = args.join(",");
                if !spec.eq_ignore_ascii_case("none") {
                    e.jump = Some(spec);
                }
            }
        } else if let Some((args, _)) = g.values.get("proxycommand") {
            let raw = args.join(" ");
            if !raw.eq_ignore_ascii_case("none") {
                let expanded = expand(
                    &raw,
                    name,
                    &[('h', &e.address), ('n', name), ('p', &port), ('r', &e.user)],
                )
                .map_err(|err| format!("{}: ProxyCommand: {err}", at("proxycommand")))?;
                e.proxy_command = Some(expanded);
                e.proxy_command_raw = Some(raw);
            }
        }
        for f in &g.identity_files {
            e.identity_files_raw.push(f.clone());
            e.identity_files
                .push(PathBuf::from(tokens(f, "identityfile")?));
        }
        for f in &g.certificate_files {
            e.certificate_files_raw.push(f.clone());
            e.certificate_files
                .push(PathBuf::from(tokens(f, "certificatefile")?));
        }
        e.identities_only =
            yes_no(g.first("identitiesonly"), "IdentitiesOnly", &at)?.unwrap_or(false);
        if let Some(a) = g.first("identityagent") {
            e.agent = if a.eq_ignore_ascii_case("none") {
                Agent::None
            } else if a == "SSH_AUTH_SOCK" {
                Agent::Environment
            } else if let Some(var) = a.strip_prefix('$') {
                match std::env::var_os(var) {
                    Some(v) => Agent::Socket(PathBuf::from(v)),
                    None => Agent::None,
                }
            } else {
                Agent::Socket(PathBuf::from(tokens(a, "identityagent")?))
            };
        }
        for (key, slot) in [
            ("userknownhostsfile", &mut e.user_known_hosts),
            ("globalknownhostsfile", &mut e.global_known_hosts),
        ] {
            if let Some((args, _)) = g.values.get(key) {
                if args.len() == 1 && args[0].eq_ignore_ascii_case("none") {
                    *slot = Some(Vec::new());
                } else {
                    let mut files = Vec::new();
                    for a in args {
                        files.push(PathBuf::from(tokens(a, key)?));
                    }
                    *slot = Some(files);
                }
            }
        }
        if let Some(s) = g.first("stricthostkeychecking") {
            e.strict = match s.to_ascii_lowercase().as_str() {
                "yes" | "true" => Strictness::Yes,
                "accept-new" => Strictness::AcceptNew,
                "ask" => Strictness::Ask,
                "no" | "off" | "false" => {
                    let at = g
                        .at("stricthostkeychecking")
                        .cloned()
                        .unwrap_or_else(|| At {
                            file: Arc::new(PathBuf::from("?")),
                            line: 0,
                        });
                    e.warnings.push(format!(
                        "{at}: StrictHostKeyChecking {s} is not followed: rekindle refuses a \
                         changed host key always, and an unknown one unless --accept-new-host-keys"
                    ));
                    Strictness::Off(at)
                }
                other => {
                    return Err(format!(
                        "{}: StrictHostKeyChecking {other}: expected yes, accept-new, ask, no or off",
                        at("stricthostkeychecking")
                    ));
                }
            };
        }
        let seconds = |key: &str, v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{}: {key} {v}: expected seconds", at(key)))
        };
        if let Some(v) = g.first("connecttimeout")
            && !v.eq_ignore_ascii_case("none")
        {
            let s = seconds("connecttimeout", v)?;
            if s > 0 {
                e.connect_timeout = Some(Duration::from_secs(s));
            }
        }
        if let Some(v) = g.first("serveraliveinterval") {
            let s = seconds("serveraliveinterval", v)?;
            if s > 0 {
                e.server_alive_interval = Some(Duration::from_secs(s));
            }
        }
        if let Some(v) = g.first("serveralivecountmax") {
            e.server_alive_count_max = Some(seconds("serveralivecountmax", v)? as usize);
        }
        if let Some(v) = g.first("canonicalizehostname")
            && !matches!(v.to_ascii_lowercase().as_str(), "no" | "false")
        {
            return Err(format!(
                "{}: CanonicalizeHostname {v} is not supported by rekindle (only `no`)",
                at("canonicalizehostname")
            ));
        }
        for kind in AlgorithmKind::ALL {
            let key = kind.option().to_ascii_lowercase();
            let found = g.values.get(&key).or_else(|| {
                (kind == AlgorithmKind::Pubkey)
                    .then(|| g.values.get("pubkeyacceptedkeytypes"))
                    .flatten()
            });
            if let Some((args, at)) = found {
                let value = args.join(",");
                let current = e.algorithms.get(kind).to_vec();
                let a = assemble(kind, &current, &value).map_err(|err| format!("{at}: {err}"))?;
                if !a.unsupported.is_empty() {
                    e.warnings.push(format!(
                        "{at}: {} {} not implemented by rekindle (russh); skipped",
                        kind.option(),
                        a.unsupported.join(",")
                    ));
                }
                e.algorithms.set(kind, a.list);
            }
        }
        for (key, (args, at)) in &g.values {
            if let Some((_, harmless)) = REFUSED.iter().find(|(k, _)| k == key) {
                let value = args.join(" ");
                let fine = !harmless.is_empty() && value.eq_ignore_ascii_case(harmless)
                    || (*key == "pubkeyauthentication"
                        && matches!(
                            value.to_ascii_lowercase().as_str(),
                            "yes" | "true" | "unbound" | "host-bound"
                        ))
                    || (*key == "controlpath" && value.eq_ignore_ascii_case("none"));
                if !fine && *key != "controlpath" {
                    return Err(format!(
                        "{at}: {} {value} would change how rekindle reaches or trusts {name}, \
                         and rekindle cannot honour it",
                        canonical_name(key)
                    ));
                }
            }
        }
        Ok(e)
    }
}

/// The option's name as ssh_config(5) spells it, for messages.
fn canonical_name(key: &str) -> String {
    const NAMES: &[&str] = &[
        "AddressFamily",
        "BindAddress",
        "BindInterface",
        "CASignatureAlgorithms",
        "HostbasedAuthentication",
        "HostbasedAcceptedAlgorithms",
        "KnownHostsCommand",
        "PKCS11Provider",
        "ProxyUseFdpass",
        "RevokedHostKeys",
        "SecurityKeyProvider",
        "Tunnel",
        "TunnelDevice",
        "GSSAPIKeyExchange",
        "GSSAPIClientIdentity",
        "GSSAPIServerIdentity",
        "EnableSSHKeysign",
        "PubkeyAuthentication",
    ];
    NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(key))
        .map_or_else(|| key.to_string(), |n| n.to_string())
}

fn yes_no(v: Option<&str>, key: &str, at: &dyn Fn(&str) -> String) -> Result<Option<bool>, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("yes" | "true") => Ok(Some(true)),
        Some("no" | "false") => Ok(Some(false)),
        Some(other) => Err(format!(
            "{}: {key} {other}: expected yes or no",
            at(&key.to_ascii_lowercase())
        )),
    }
}

/// Records one option if it is the first value for it (IdentityFile and
/// CertificateFile accumulate).
fn set(d: &Directive, g: &mut Gathered) -> Result<(), String> {
    let key = d.keyword.as_str();
    if d.args.is_empty() {
        return Err(format!("{}: {} needs a value", d.at, d.keyword));
    }
    match key {
        "identityfile" => g.identity_files.push(d.args[0].clone()),
        "certificatefile" => g.certificate_files.push(d.args[0].clone()),
        _ => {
            g.values
                .entry(key.to_string())
                .or_insert_with(|| (d.args.clone(), d.at.clone()));
        }
    }
    Ok(())
}

/// `Host` patterns: any match selects the block, a matching `!pattern`
/// rejects it (match_pattern, case-sensitive as OpenSSH).
fn host_matches(patterns: &[String], name: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if super::algorithms::wildcard(neg, name) => return false,
            Some(_) => {}
            None => hit |= super::algorithms::wildcard(p, name),
        }
    }
    hit
}

/// OpenSSH's `match_pattern_list`: comma-separated patterns, `!` negates
/// (a negated match fails the whole list); `lower` matches case-insensitively.
fn pattern_list(s: &str, list: &str, lower: bool) -> bool {
    let mut hit = false;
    for p in list.split(',') {
        let p = if lower {
            p.to_ascii_lowercase()
        } else {
            p.to_string()
        };
        match p.strip_prefix('!') {
            Some(neg) if super::algorithms::wildcard(neg, s) => return false,
            Some(_) => {}
            None => hit |= super::algorithms::wildcard(&p, s),
        }
    }
    hit
}

/// `%x` tokens; an unknown one is an error (as OpenSSH's percent_expand).
fn expand(s: &str, _name: &str, tokens: &[(char, &str)]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match tokens.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v),
                None => return Err(format!("unknown token %{t} in `{s}`")),
            },
            None => return Err(format!("`{s}` ends in a lone %")),
        }
    }
    Ok(out)
}

fn tilde(s: &str, home: &Path) -> String {
    if s == "~" {
        return home.display().to_string();
    }
    match s.strip_prefix("~/") {
        Some(rest) => home.join(rest).display().to_string(),
        None => s.to_string(),
    }
}

fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn unsafe_free_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// `%C`: SHA-1 of `%l%h%p%r`, hex (OpenSSH's ssh_connection_hash).
fn connection_hash(this: &str, host: &str, port: &str, user: &str) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(format!("{this}{host}{port}{user}").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes rekindle's secrets from a child's environment (ProxyCommand,
/// Match exec), as [`crate::child_env`] does for every child.
pub fn scrub_env(cmd: &mut std::process::Command) {
    for name in crate::child_env::inherited_to_remove() {
        cmd.env_remove(name);
    }
}

/// Parses one config file (and what it includes).
fn read_file(path: &Path, home: &Path, depth: usize) -> Result<Vec<Item>, String> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(format!(
            "{}: Include nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = Arc::new(path.to_path_buf());
    let mut items = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let at = At {
            file: file.clone(),
            line: idx + 1,
        };
        let Some(d) = split_line(line, at.clone())? else {
            continue;
        };
        match d.keyword.as_str() {
            "host" => items.push(Item::Host { patterns: d.args }),
            "match" => items.push(Item::Match { args: d.args, at }),
            "include" => {
                for arg in &d.args {
                    let full = if arg.starts_with('/') {
                        arg.clone()
                    } else if arg.starts_with('~') {
                        tilde(arg, home)
                    } else {
                        home.join(".ssh").join(arg).display().to_string()
                    };
                    let mut paths: Vec<PathBuf> = glob::glob(&full)
                        .map_err(|e| format!("{at}: Include {arg}: {e}"))?
                        .filter_map(Result::ok)
                        .collect();
                    paths.sort();
                    for p in paths {
                        items.push(Item::Include(read_file(&p, home, depth + 1)?));
                    }
                }
            }
            k if HONOURED.contains(&k)
                || IGNORED.contains(&k)
                || REFUSED.iter().any(|(r, _)| *r == k) =>
            {
                items.push(Item::Set(d));
            }
            _ => {
                return Err(format!(
                    "{at}: unknown option `{}` (OpenSSH would refuse it too)",
                    d.keyword
                ));
            }
        }
    }
    Ok(items)
}

/// `Keyword value...`, `Keyword=value`, quotes, `#` comments.
fn split_line(line: &str, at: At) -> Result<Option<Directive>, String> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_token = true;
            }
            None if c == '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_token = true;
                }
            }
            None if c.is_whitespace() => {
                if in_token {
                    args.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            None if c == '#' && !in_token => break,
            None => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("{at}: unterminated quote"));
    }
    if in_token {
        args.push(cur);
    }
    // ProxyCommand and Match exec take the rest of the line as a command.
    if keyword == "proxycommand" {
        let raw = rest.trim_end().to_string();
        return Ok(Some(Directive {
            keyword,
            args: vec![raw],
            at,
        }));
    }
    Ok(Some(Directive { keyword, args, at }))
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
            bmc: None,
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
        let e = c.resolve_host(&host("db1", "db1", 22, None)).unwrap();
        assert_eq!(e.address, "10.9.9.9");
        assert_eq!(e.port, 2200);
        assert_eq!(e.user, "admin");
        assert_eq!(e.jump.as_deref(), Some("ops@bastion:2022,other"));
        assert_eq!(e.identity_files, vec![PathBuf::from("/k/db")]);
        let e = c
            .resolve_host(&host("db1", "10.0.0.1", 2222, Some("root")))
            .unwrap();
        assert_eq!(
            (e.address.as_str(), e.port, e.user.as_str()),
            ("10.0.0.1", 2222, "root")
        );
        let e = c.resolve_host(&host("web1", "web1", 22, None)).unwrap();
        assert_eq!((e.address.as_str(), e.user.as_str()), ("web1", "nobody"));
        assert_eq!(e.jump, None);
    }

    #[test]
    fn jump_specs() {
        let c = config("Host bastion\n  HostName 127.0.0.9\n  Port 2022\n");
        let j = c.resolve_jump("ops@bastion").unwrap();
        assert_eq!(
            (j.address.as_str(), j.port, j.user.as_str()),
            ("127.0.0.9", 2022, "ops")
        );
        let j = c.resolve_jump("bastion:23").unwrap();
        assert_eq!(j.port, 23);
        let j = c.resolve_jump("outer,ops@bastion").unwrap();
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
        let e = c.resolve_host(&host("a", "a", 22, Some("u"))).unwrap();
        assert_eq!(
            (e.address.as_str(), e.port, e.user.as_str()),
            ("a", 22, "u")
        );
    }

    #[test]
    fn proxy_command_tokens_first_wins_and_none() {
        let c = config(
            "Host a\n  ProxyCommand nc %h %p # not a comment\n  ProxyJump j\nHost b\n  ProxyJump j1\n  ProxyCommand nc %h %p\nHost c\n  ProxyCommand none\nHost *\n  ProxyCommand nc x\n",
        );
        let a = c.resolve_name("a", None, None).unwrap();
        assert_eq!(a.proxy_command.as_deref(), Some("nc a 22 # not a comment"));
        assert_eq!(a.jump, None);
        let b = c.resolve_name("b", None, None).unwrap();
        assert_eq!((b.jump.as_deref(), b.proxy_command), (Some("j1"), None));
        let cc = c.resolve_name("c", None, None).unwrap();
        assert_eq!(cc.proxy_command, None);
    }

    #[test]
    fn refused_and_unknown_options_name_their_line() {
        let c = config("Host a\n  BindAddress 10.0.0.1\n");
        let e = c.resolve_name("a", None, None).unwrap_err();
        assert!(e.ends_with("config:2: BindAddress 10.0.0.1 would change how rekindle reaches or trusts a, and rekindle cannot honour it"), "{e}");
        assert!(c.resolve_name("b", None, None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        std::fs::write(&p, "Host a\n\n  Bogus yes\n").unwrap();
        let e = ClientConfig::load(Some(&p)).err().unwrap().to_string();
        assert!(e.contains("config:3: unknown option `bogus`"), "{e}");
    }

    #[test]
    fn match_and_strictness_and_algorithms() {
        let c = config(
            "Match originalhost old* user root,admin\n  KexAlgorithms +diffie-hellman-group14-sha1\n  StrictHostKeyChecking no\nMatch host 10.*\n  Port 2022\nHost n\n  HostName 10.1.1.1\n",
        );
        let e = c.resolve_name("old1", Some("admin"), None).unwrap();
        assert!(
            e.algorithms
                .get(AlgorithmKind::Kex)
                .iter()
                .any(|n| n == "diffie-hellman-group14-sha1")
        );
        assert!(matches!(e.strict, Strictness::Off(ref at) if at.line == 3));
        let e = c.resolve_name("old1", Some("bob"), None).unwrap();
        assert_eq!(e.strict, Strictness::Default);
        // `Match host` sees the HostName set before it... but only later lines
        // set it here, so 10.* does not match on the first pass (as OpenSSH).
        let e = c.resolve_name("n", None, None).unwrap();
        assert_eq!((e.address.as_str(), e.port), ("10.1.1.1", 22));
    }
}
