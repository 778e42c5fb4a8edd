//! SSH sessions over russh: connect, host-key check, auth, jump hosts, exec.
//!
//! Owns one connection attempt per `connect` (bounded by its timeout),
//! error classification, keepalives, and the shared jump-host connections.
//! It must not retry, poll or schedule: the engine decides what a failure means.
//!
//! Cost per session: one tokio task inside russh and one socket (or one
//! channel on a shared jump connection); no threads.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, AuthResult};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{
    Algorithm, Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey,
    PublicKeyOrCertificate,
};
use russh::{ChannelMsg, MethodKind};
use tokio::sync::watch;
use tokio::time::Instant;

use super::algorithms::{AlgorithmKind, Algorithms};
use super::known_hosts::{KnownHosts, Verdict};
use super::ssh_config::{Agent, ClientConfig, Endpoint, Strictness};
use super::{ConnectError, ConnectErrorKind, Connection, Connector, ExecError, ExecOutput};
use crate::inventory::Host;
use crate::secret::Secret;

/// Keepalive every 5 s, give up after 3 unanswered: a vanished host is
/// noticed within about 20 s (docs/findings.md, russh), under the ~30 s the engine expects.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_MAX: usize = 3;
/// Output kept per command: the last lines within this many bytes.
const TAIL_BYTES: usize = 4096;
const TAIL_LINES: usize = 20;
/// A ProxyJump chain longer than this is taken for a loop in the config.
const MAX_JUMP_DEPTH: usize = 4;
/// russh reads each packet with two exact reads (length block, then the
/// rest); a read buffer turns a flight of packets into one `recvfrom`
/// (BENCHMARKS.md, scale: 77 reads per host without it).
const READ_BUFFER: usize = 4096;
/// Targets waiting on a jump host that just failed get that failure instead
/// of each hammering it again within this window.
const JUMP_FAILURE_TTL: Duration = Duration::from_secs(2);

/// Everything the SSH client needs for a run, resolved from flags and the inventory.
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// Identity files to offer after ssh-agent, in order (missing files are skipped).
    pub identities: Vec<PathBuf>,
    /// known_hosts to check (and, with `accept_new_host_keys`, append to).
    pub known_hosts: PathBuf,
    /// `known_hosts` came from a flag or the inventory: it wins over the ssh
    /// config's UserKnownHostsFile (else the config's wins, as with OpenSSH).
    pub known_hosts_explicit: bool,
    /// OpenSSH client config to honour (HostName, User, Port, IdentityFile, ProxyJump).
    pub ssh_config: Option<PathBuf>,
    pub accept_new_host_keys: bool,
    /// Use `SSH_AUTH_SOCK` when set.
    pub use_agent: bool,
}

impl SshOptions {
    /// The identities OpenSSH offers when none is configured:
    /// `~/.ssh/id_ed25519`, `~/.ssh/id_rsa` (append these after `--identity`
    /// and the inventory's `identity_file`).
    pub fn default_identities() -> Vec<PathBuf> {
        ["id_ed25519", "id_rsa"]
            .iter()
            .filter_map(|f| dot_ssh(f))
            .collect()
    }

    /// `~/.ssh/known_hosts`.
    pub fn default_known_hosts() -> PathBuf {
        dot_ssh("known_hosts").unwrap_or_else(|| PathBuf::from(".ssh/known_hosts"))
    }

    /// `~/.ssh/config`.
    pub fn default_ssh_config() -> Option<PathBuf> {
        dot_ssh("config")
    }
}

fn dot_ssh(file: &str) -> Option<PathBuf> {
    std::env::home_dir().map(|h| h.join(".ssh").join(file))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SshSetupError(pub String);

/// An identity file as loaded at start.
#[derive(Clone)]
enum KeyLoad {
    Loaded(Arc<Identity>),
    Missing,
    Unusable(String),
    /// Its `-cert.pub` does not parse: an input error, not a key to skip.
    BadCertificate(String),
}

/// A private key, and for Ed25519 the signing key prepared once: ssh-key
/// rebuilds it for every signature (a base-point multiplication and a point
/// decompression), 3 % of rekindle's CPU at thousands of logins.
struct Identity {
    key: Arc<PrivateKey>,
    ed25519: Option<Ed25519Signer>,
    /// `IDENTITY-cert.pub` next to the key, offered before the bare key.
    cert: Option<Certificate>,
}

impl Identity {
    fn new(key: PrivateKey, cert: Option<Certificate>) -> Identity {
        let ed25519 = key
            .key_data()
            .ed25519()
            .and_then(|pair| ed25519_dalek::SigningKey::try_from(pair).ok())
            .map(Ed25519Signer);
        Identity {
            key: Arc::new(key),
            ed25519,
            cert,
        }
    }
}

/// `PATH-cert.pub`, where OpenSSH looks for an identity's certificate.
fn cert_path(identity: &Path) -> PathBuf {
    let mut name = identity.as_os_str().to_owned();
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// An OpenSSH certificate file; the error names the file and line (a
/// certificate is one line).
fn load_certificate(path: &Path) -> Result<Certificate, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let line = text
        .lines()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .unwrap_or(0);
    let first = text.lines().nth(line).unwrap_or("").trim();
    Certificate::from_openssh(first).map_err(|e| {
        format!(
            "{}:{}: not an OpenSSH certificate ({e})",
            path.display(),
            line + 1
        )
    })
}

/// Signs russh's authentication request with a prepared Ed25519 key, the
/// way ssh-agent would (russh's [`russh::Signer`] contract).
#[derive(Clone)]
struct Ed25519Signer(ed25519_dalek::SigningKey);

/// Why [`Ed25519Signer`] produced no signature.
#[derive(Debug, thiserror::Error)]
enum SignError {
    #[error("the SSH session went away")]
    Send,
    #[error("cannot encode the signature: {0}")]
    Encode(#[from] russh::keys::ssh_key::Error),
}

impl From<russh::SendError> for SignError {
    fn from(_: russh::SendError) -> SignError {
        SignError::Send
    }
}

impl russh::Signer for Ed25519Signer {
    type Error = SignError;

    async fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        _hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, SignError> {
        use russh::keys::signature::Signer as _;
        use russh::keys::ssh_encoding::Encode as _;
        let signature = self.0.sign(&to_sign).to_bytes();
        let signature =
            russh::keys::ssh_key::Signature::new(Algorithm::Ed25519, signature.to_vec())?;
        let blob = signature
            .encode_vec()
            .map_err(russh::keys::ssh_key::Error::from)?;
        // As an agent's answer: the signed data, then the signature as an
        // SSH string (russh sends what follows the request it built).
        let mut signed = to_sign;
        signed.extend_from_slice(&u32::try_from(blob.len()).unwrap_or(u32::MAX).to_be_bytes());
        signed.extend_from_slice(&blob);
        Ok(signed)
    }
}

fn load_key(path: &Path) -> KeyLoad {
    if !path.exists() {
        return KeyLoad::Missing;
    }
    let cert_file = cert_path(path);
    let cert = match cert_file.exists() {
        false => None,
        true => match load_certificate(&cert_file) {
            Ok(c) => Some(c),
            Err(e) => return KeyLoad::BadCertificate(e),
        },
    };
    match russh::keys::load_secret_key(path, None) {
        Ok(k) => KeyLoad::Loaded(Arc::new(Identity::new(k, cert))),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            KeyLoad::Unusable("encrypted; add it to ssh-agent".into())
        }
        Err(e) => KeyLoad::Unusable(e.to_string()),
    }
}

/// One live SSH connection; `via` keeps the jump connection that carries it
/// alive, `proxy` the ProxyCommand process (killed when the connection is dropped).
struct Conn {
    handle: client::Handle<Client>,
    /// Ends (its sender is dropped) when russh's session task ends.
    alive: watch::Receiver<()>,
    _via: Option<Arc<Conn>>,
    _proxy: Option<tokio::process::Child>,
}

#[derive(Default)]
struct JumpSlot {
    conn: Option<Arc<Conn>>,
    failed: Option<(Instant, ConnectError)>,
}

struct Inner {
    opts: SshOptions,
    /// ssh-agent socket, from `SSH_AUTH_SOCK` at start (when `use_agent`).
    agent: Option<PathBuf>,
    /// `opts.known_hosts`, loaded at start (so a bad file fails the run early).
    known: Arc<KnownHosts>,
    /// Other known_hosts files (UserKnownHostsFile, GlobalKnownHostsFile), loaded on first use.
    known_files: Mutex<HashMap<PathBuf, Arc<KnownHosts>>>,
    /// Config warnings already printed (each once per run).
    warned: Mutex<std::collections::HashSet<String>>,
    config: ClientConfig,
    /// `opts.identities`, loaded once.
    keys: Vec<(PathBuf, KeyLoad)>,
    /// IdentityFile entries from ssh config, loaded on first use.
    config_keys: Mutex<HashMap<PathBuf, KeyLoad>>,
    /// CertificateFile entries from ssh config, parsed on first use.
    config_certs: Mutex<HashMap<PathBuf, Result<Certificate, String>>>,
    jumps: Mutex<HashMap<String, Arc<tokio::sync::Mutex<JumpSlot>>>>,
    /// russh configs, one per distinct algorithm order and keepalive.
    configs: Mutex<HashMap<ConfigKey, Arc<client::Config>>>,
}

/// What a russh config is built from (see [`Inner::config_for`]).
#[derive(PartialEq, Eq, Hash)]
struct ConfigKey {
    algorithms: Algorithms,
    /// Host-key algorithms known_hosts holds for the host, preferred.
    known: Vec<String>,
    certificates: bool,
    keepalive: (Duration, usize),
}

/// OpenSSH's global known_hosts files, read (never written) after the user's.
const GLOBAL_KNOWN_HOSTS: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

fn base_config() -> client::Config {
    client::Config {
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    }
}

/// Opens SSH sessions; cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct SshConnector {
    inner: Arc<Inner>,
}

impl SshConnector {
    /// Reads known_hosts, ssh config and identity files once for the whole run.
    pub fn new(opts: SshOptions) -> Result<Self, SshSetupError> {
        let known =
            KnownHosts::load(&opts.known_hosts).map_err(|e| SshSetupError(e.to_string()))?;
        let config = ClientConfig::load(opts.ssh_config.as_deref())
            .map_err(|e| SshSetupError(e.to_string()))?;
        let mut keys: Vec<(PathBuf, KeyLoad)> = Vec::new();
        for path in &opts.identities {
            if !keys.iter().any(|(p, _)| p == path) {
                let key = load_key(path);
                if let KeyLoad::BadCertificate(e) = &key {
                    return Err(SshSetupError(format!("certificate {e}")));
                }
                keys.push((path.clone(), key));
            }
        }
        Ok(SshConnector {
            inner: Arc::new(Inner {
                agent: opts
                    .use_agent
                    .then(|| std::env::var_os("SSH_AUTH_SOCK"))
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from),
                opts,
                known: Arc::new(known),
                known_files: Mutex::new(HashMap::new()),
                warned: Mutex::new(std::collections::HashSet::new()),
                config,
                keys,
                config_keys: Mutex::new(HashMap::new()),
                config_certs: Mutex::new(HashMap::new()),
                jumps: Mutex::new(HashMap::new()),
                configs: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Uses this ssh-agent socket instead of `SSH_AUTH_SOCK` (tests, or an
    /// agent the operator names explicitly). Call before sharing the connector.
    pub fn with_agent_socket(mut self, socket: PathBuf) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.agent = Some(socket);
        }
        self
    }

    /// Identity files that could not be used (missing or unreadable), for a
    /// startup warning; they are skipped at connect time.
    pub fn unusable_identities(&self) -> Vec<String> {
        self.inner
            .keys
            .iter()
            .filter_map(|(p, k)| match k {
                KeyLoad::Loaded(_) => None,
                KeyLoad::Missing => Some(format!("{} (not found)", p.display())),
                KeyLoad::Unusable(why) | KeyLoad::BadCertificate(why) => {
                    Some(format!("{} ({why})", p.display()))
                }
            })
            .collect()
    }

    /// Where `host` would be reached (after ssh config), for `hosts`/preflight output.
    pub fn endpoint(&self, host: &Host) -> Result<Endpoint, String> {
        self.inner.config.resolve_host(host)
    }

    /// Where a plain `name` would be reached through the ssh config alone
    /// (`ssh -G name`).
    pub fn endpoint_for_name(&self, name: &str) -> Result<Endpoint, String> {
        self.inner.config.resolve_name(name, None, None)
    }

    /// The known_hosts files checked for `ep`, user files first (the first
    /// one is where accept-new records), then the global ones.
    pub fn known_hosts_files(&self, ep: &Endpoint) -> (Vec<PathBuf>, Vec<PathBuf>) {
        self.inner.known_hosts_files(ep)
    }

    /// Whether an unknown host key would be recorded for `ep`.
    pub fn accepts_new(&self, ep: &Endpoint) -> bool {
        self.inner.accepts_new(ep)
    }

    /// What rekindle will do for `ep`, as `ssh -G` prints it: lowercase
    /// keywords, one `keyword value` pair per line (IdentityFile and
    /// CertificateFile as written, repeated; known_hosts files expanded).
    pub fn effective_config(&self, ep: &Endpoint) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = vec![
            ("host", ep.name.clone()),
            ("user", ep.user.clone()),
            ("hostname", ep.address.clone()),
            ("port", ep.port.to_string()),
        ];
        if let Some(j) = &ep.jump {
            out.push(("proxyjump", j.clone()));
        }
        if let Some(c) = &ep.proxy_command_raw {
            out.push(("proxycommand", c.clone()));
        }
        if ep.identity_files_raw.is_empty() {
            for p in &self.inner.opts.identities {
                out.push(("identityfile", p.display().to_string()));
            }
        }
        for f in &ep.identity_files_raw {
            out.push(("identityfile", f.clone()));
        }
        for f in &ep.certificate_files_raw {
            out.push(("certificatefile", f.clone()));
        }
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        out.push(("identitiesonly", yes_no(ep.identities_only)));
        match &ep.agent {
            Agent::Environment => {}
            Agent::None => out.push(("identityagent", "none".into())),
            Agent::Socket(p) => out.push(("identityagent", p.display().to_string())),
        }
        let (user, global) = self.known_hosts_files(ep);
        let join = |files: &[PathBuf]| {
            if files.is_empty() {
                "none".to_string()
            } else {
                files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        out.push(("globalknownhostsfile", join(&global)));
        out.push(("userknownhostsfile", join(&user)));
        out.push((
            "stricthostkeychecking",
            match &ep.strict {
                Strictness::Yes => "true".into(),
                Strictness::AcceptNew => "accept-new".into(),
                Strictness::Ask | Strictness::Default => "ask".into(),
                Strictness::Off(_) => "false".into(),
            },
        ));
        out.push((
            "rekindleunknownhostkeys",
            if self.accepts_new(ep) {
                "accept-new"
            } else {
                "refuse"
            }
            .into(),
        ));
        if let Some(a) = &ep.host_key_alias {
            out.push(("hostkeyalias", a.clone()));
        }
        out.push((
            "connecttimeout",
            ep.connect_timeout
                .map_or_else(|| "none".into(), |d| d.as_secs().to_string()),
        ));
        out.push((
            "serveraliveinterval",
            ep.server_alive_interval
                .unwrap_or(KEEPALIVE_INTERVAL)
                .as_secs()
                .to_string(),
        ));
        out.push((
            "serveralivecountmax",
            ep.server_alive_count_max
                .unwrap_or(KEEPALIVE_MAX)
                .to_string(),
        ));
        for kind in AlgorithmKind::ALL {
            let key = match kind {
                AlgorithmKind::Kex => "kexalgorithms",
                AlgorithmKind::Cipher => "ciphers",
                AlgorithmKind::Mac => "macs",
                AlgorithmKind::HostKey => "hostkeyalgorithms",
                AlgorithmKind::Pubkey => "pubkeyacceptedalgorithms",
            };
            out.push((key, ep.algorithms.get(kind).join(",")));
        }
        out
    }
}

/// An authenticated connection to one host.
///
/// Some servers close a connection the client still holds: tinysshd when a
/// session channel ends, sshd with `MaxSessions 1` or an idle timeout, a
/// middlebox. When that shows as a failure to *open* the next channel,
/// nothing of the command has reached the host, so the session logs in
/// again once and opens the channel there. A command whose channel was open
/// is never sent twice: a drop after that is [`ExecError::Disconnected`].
pub struct SshSession {
    conn: Mutex<Arc<Conn>>,
    inner: Arc<Inner>,
    ep: Endpoint,
    connect_timeout: Duration,
}

// Phases of a connect attempt, for the timeout message.
const PHASE_TCP: u8 = 0;
const PHASE_JUMP: u8 = 1;
const PHASE_HANDSHAKE: u8 = 2;
const PHASE_AUTH: u8 = 3;

impl Connector for SshConnector {
    type Connection = SshSession;

    async fn connect(&self, host: &Host, timeout: Duration) -> Result<SshSession, ConnectError> {
        let ep = self
            .inner
            .config
            .resolve_host(host)
            .map_err(|message| ConnectError {
                kind: ConnectErrorKind::Protocol,
                message: format!("{}: ssh config: {message}", host.name),
            })?;
        let phase = AtomicU8::new(PHASE_TCP);
        match tokio::time::timeout(timeout, self.inner.connect_endpoint(&ep, 0, &phase)).await {
            Ok(Ok(conn)) => Ok(SshSession {
                conn: Mutex::new(conn),
                inner: self.inner.clone(),
                ep,
                connect_timeout: timeout,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                let target = format!("{}:{}", ep.address, ep.port);
                let (kind, what) = match phase.load(Ordering::Relaxed) {
                    PHASE_TCP => (
                        ConnectErrorKind::Timeout,
                        format!("no TCP connection to {target}"),
                    ),
                    PHASE_JUMP => (
                        ConnectErrorKind::Jump,
                        format!(
                            "jump host {} did not connect",
                            ep.jump.as_deref().unwrap_or("?")
                        ),
                    ),
                    PHASE_HANDSHAKE => (
                        ConnectErrorKind::Timeout,
                        format!("SSH handshake with {target} not finished"),
                    ),
                    _ => (
                        ConnectErrorKind::Timeout,
                        format!("authentication on {target} not finished"),
                    ),
                };
                Err(ConnectError {
                    kind,
                    message: format!("{}: {what} within {timeout:?}", host.name),
                })
            }
        }
    }
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Inner {
    /// Connects, checks the host key and authenticates; recursive through jump hosts.
    fn connect_endpoint<'a>(
        &'a self,
        ep: &'a Endpoint,
        depth: usize,
        phase: &'a AtomicU8,
    ) -> BoxFut<'a, Result<Arc<Conn>, ConnectError>> {
        Box::pin(async move {
            self.warn_once(ep);
            let names = ep.known_hosts_names();
            let (alive_tx, alive) = watch::channel(());
            let (known, writable) = self.known_for(ep)?;
            let handler = Client {
                _alive: alive_tx,
                known: known.clone(),
                names: names.clone(),
                bare: bare_fallback(ep),
                principals: ep.bare_names(),
                display: ep.name.clone(),
                accept_new: writable && self.accepts_new(ep),
            };
            let config = self.config_for(&known, &names, ep);
            let mut proxy = None;
            let (result, via) = match &ep.jump {
                Some(spec) => {
                    phase.store(PHASE_JUMP, Ordering::Relaxed);
                    let jump = self
                        .jump_conn(spec, depth + 1)
                        .await
                        .map_err(|e| ConnectError {
                            kind: e.kind,
                            message: format!("{}: {}", ep.name, e.message),
                        })?;
                    let channel = jump
                        .handle
                        .channel_open_direct_tcpip(
                            ep.address.clone(),
                            u32::from(ep.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| forward_error(e, ep, spec))?;
                    phase.store(PHASE_HANDSHAKE, Ordering::Relaxed);
                    let r = client::connect_stream(config, channel.into_stream(), handler).await;
                    (r, Some(jump))
                }
                None => match &ep.proxy_command {
                    Some(command) => {
                        let (child, stream) = spawn_proxy(command, ep)?;
                        proxy = Some(child);
                        phase.store(PHASE_HANDSHAKE, Ordering::Relaxed);
                        let stream = tokio::io::BufReader::with_capacity(READ_BUFFER, stream);
                        (client::connect_stream(config, stream, handler).await, None)
                    }
                    None => {
                        let tcp = match ep.connect_timeout {
                            Some(limit) => tokio::time::timeout(limit, tcp_connect(ep))
                                .await
                                .map_err(|_| ConnectError {
                                    kind: ConnectErrorKind::Timeout,
                                    message: format!(
                                        "{}: no TCP connection to {}:{} within ConnectTimeout {limit:?}",
                                        ep.name, ep.address, ep.port
                                    ),
                                })??,
                            None => tcp_connect(ep).await?,
                        };
                        phase.store(PHASE_HANDSHAKE, Ordering::Relaxed);
                        let stream = tokio::io::BufReader::with_capacity(READ_BUFFER, tcp);
                        (client::connect_stream(config, stream, handler).await, None)
                    }
                },
            };
            let mut handle = result.map_err(|e| handshake_error(e, ep))?;
            phase.store(PHASE_AUTH, Ordering::Relaxed);
            self.authenticate(&mut handle, ep).await?;
            Ok(Arc::new(Conn {
                handle,
                alive,
                _via: via,
                _proxy: proxy,
            }))
        })
    }

    /// The russh config for `ep`: its algorithm lists, with host-key
    /// algorithms already known for this host preferred (as OpenSSH does),
    /// so a host with several keys offers the one we have instead of failing
    /// as "changed". When an `@cert-authority` line could match, the
    /// certificate host-key algorithms come first, so a host with a
    /// certificate proves itself with it; otherwise none is offered.
    fn config_for(
        &self,
        known_files: &[Arc<KnownHosts>],
        names: &[String],
        ep: &Endpoint,
    ) -> Arc<client::Config> {
        let mut known = Vec::new();
        let mut certificates = false;
        let bare = bare_fallback(ep);
        for kh in known_files {
            known.extend(kh.known_algorithms(names));
            certificates |= kh.has_authority(names) || kh.has_authority(&bare);
        }
        let same_family = |a: &Algorithm, b: &Algorithm| match (a, b) {
            (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
            _ => a == b,
        };
        let keepalive = ep.server_alive_interval.unwrap_or(KEEPALIVE_INTERVAL);
        let keepalive_max = ep.server_alive_count_max.unwrap_or(KEEPALIVE_MAX);
        let key = ConfigKey {
            algorithms: ep.algorithms.clone(),
            known: known.iter().map(|a| a.to_string()).collect(),
            certificates,
            keepalive: (keepalive, keepalive_max),
        };
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        configs
            .entry(key)
            .or_insert_with(|| {
                let preferred = ep.algorithms.preferred();
                let (mut first, rest): (Vec<_>, Vec<_>) = preferred
                    .keys
                    .into_iter()
                    .partition(|a| known.iter().any(|k| same_family(a, k)));
                first.extend(rest);
                let certs: Vec<Algorithm> = if certificates {
                    preferred.certificates
                } else {
                    Vec::new()
                };
                let mut config = base_config();
                config.keepalive_interval = Some(keepalive);
                config.keepalive_max = keepalive_max;
                config.preferred.kex = preferred.kex.into();
                config.preferred.cipher = preferred.cipher.into();
                config.preferred.mac = preferred.mac.into();
                config.preferred.host_key_certificates = certs.into();
                config.preferred.key = first.into();
                Arc::new(config)
            })
            .clone()
    }

    /// The known_hosts files for `ep`: (user files, global files).
    fn known_hosts_files(&self, ep: &Endpoint) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let user = match (&ep.user_known_hosts, self.opts.known_hosts_explicit) {
            (Some(files), false) => files.clone(),
            // OpenSSH's default pair: `known_hosts`, then `known_hosts2` beside it.
            (None, false) => vec![
                self.opts.known_hosts.clone(),
                self.opts.known_hosts.with_file_name("known_hosts2"),
            ],
            (_, true) => vec![self.opts.known_hosts.clone()],
        };
        let global = ep
            .global_known_hosts
            .clone()
            .unwrap_or_else(|| GLOBAL_KNOWN_HOSTS.iter().map(PathBuf::from).collect());
        (user, global)
    }

    /// The loaded files, and whether accept-new has a file to record in.
    fn known_for(&self, ep: &Endpoint) -> Result<(Vec<Arc<KnownHosts>>, bool), ConnectError> {
        let (user, global) = self.known_hosts_files(ep);
        let mut out = Vec::new();
        for path in user.iter().chain(global.iter()) {
            if *path == self.opts.known_hosts {
                out.push(self.known.clone());
                continue;
            }
            let mut cache = self.known_files.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = cache.get(path) {
                out.push(k.clone());
                continue;
            }
            let k = Arc::new(KnownHosts::load(path).map_err(|e| ConnectError {
                kind: ConnectErrorKind::HostKeyUnknown,
                message: format!("{}: {e}", ep.name),
            })?);
            cache.insert(path.clone(), k.clone());
            out.push(k);
        }
        // accept-new writes to the first file: none when UserKnownHostsFile is `none`.
        Ok((out, !user.is_empty()))
    }

    /// `StrictHostKeyChecking yes` refuses unknown keys even with
    /// `--accept-new-host-keys`; `accept-new` records them; anything else
    /// keeps rekindle's own rule (the flag).
    fn accepts_new(&self, ep: &Endpoint) -> bool {
        match ep.strict {
            Strictness::Yes => false,
            Strictness::AcceptNew => true,
            Strictness::Default | Strictness::Ask | Strictness::Off(_) => {
                self.opts.accept_new_host_keys
            }
        }
    }

    /// Says once per run what the config asked that rekindle does differently.
    fn warn_once(&self, ep: &Endpoint) {
        if ep.warnings.is_empty() {
            return;
        }
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        for line in &ep.warnings {
            if warned.insert(line.clone()) {
                eprintln!("warning: ssh config {line}");
            }
        }
    }

    /// The shared connection to a jump host, opened (or reopened) on demand.
    async fn jump_conn(&self, spec: &str, depth: usize) -> Result<Arc<Conn>, ConnectError> {
        if depth > MAX_JUMP_DEPTH {
            return Err(ConnectError {
                kind: ConnectErrorKind::Jump,
                message: format!(
                    "ProxyJump chain through {spec} is deeper than {MAX_JUMP_DEPTH} hops (a loop in ssh config?)"
                ),
            });
        }
        let slot = {
            let mut map = self.jumps.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(spec.to_string()).or_default().clone()
        };
        // Held across the connect so concurrent targets share one login.
        let mut slot = slot.lock().await;
        if let Some(conn) = &slot.conn
            && !conn.handle.is_closed()
        {
            return Ok(conn.clone());
        }
        if let Some((at, err)) = &slot.failed
            && at.elapsed() < JUMP_FAILURE_TTL
        {
            return Err(err.clone());
        }
        let ep = self
            .config
            .resolve_jump(spec)
            .map_err(|message| ConnectError {
                kind: ConnectErrorKind::Jump,
                message: format!("jump host {spec}: ssh config: {message}"),
            })?;
        let phase = AtomicU8::new(PHASE_TCP);
        match self.connect_endpoint(&ep, depth, &phase).await {
            Ok(conn) => {
                slot.conn = Some(conn.clone());
                slot.failed = None;
                Ok(conn)
            }
            Err(e) => {
                // Security failures keep their kind: a bad jump key must not be "skipped".
                let kind = match e.kind {
                    ConnectErrorKind::HostKeyUnknown
                    | ConnectErrorKind::HostKeyChanged
                    | ConnectErrorKind::HostCertificate
                    | ConnectErrorKind::Auth => e.kind,
                    _ => ConnectErrorKind::Jump,
                };
                let err = ConnectError {
                    kind,
                    message: format!("jump host {spec}: {}", e.message),
                };
                slot.conn = None;
                slot.failed = Some((Instant::now(), err.clone()));
                Err(err)
            }
        }
    }

    fn identity(&self, path: &Path) -> KeyLoad {
        if let Some((_, k)) = self.keys.iter().find(|(p, _)| p == path) {
            return k.clone();
        }
        let mut cache = self.config_keys.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(path.to_path_buf())
            .or_insert_with(|| load_key(path))
            .clone()
    }

    async fn authenticate(
        &self,
        handle: &mut client::Handle<Client>,
        ep: &Endpoint,
    ) -> Result<(), ConnectError> {
        let mut tried: Vec<String> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        let mut rsa_hash: Option<Option<HashAlg>> = None;
        let mut publickey_refused = false;
        // Success, or whether to go on offering.
        let judge = |r: Option<AuthResult>, refused: &mut bool| match r {
            Some(AuthResult::Success) => true,
            Some(AuthResult::Failure {
                remaining_methods, ..
            }) => {
                *refused |= !remaining_methods.contains(&MethodKind::PublicKey);
                false
            }
            None => false,
        };

        let agent = match &ep.agent {
            Agent::Environment => self.agent.clone(),
            Agent::None => None,
            Agent::Socket(p) => Some(p.clone()),
        };
        // IdentitiesOnly: agent keys only when an identity file holds them.
        let only: Option<Vec<russh::keys::ssh_key::public::KeyData>> =
            ep.identities_only.then(|| {
                ep.identity_files
                    .iter()
                    .filter_map(|p| match self.identity(p) {
                        KeyLoad::Loaded(k) => Some(k.key.public_key().key_data().clone()),
                        _ => None,
                    })
                    .collect()
            });
        let algs = &ep.algorithms;
        let offered =
            |alg: &Algorithm, data: &russh::keys::ssh_key::public::KeyData, cert: bool| {
                algs.accepts_pubkey(alg, cert) && only.as_ref().is_none_or(|o| o.contains(data))
            };
        if (self.opts.use_agent || self.agent.is_some()) && ep.agent != Agent::None
            || matches!(ep.agent, Agent::Socket(_))
        {
            match &agent {
                None => skipped.push("ssh-agent (SSH_AUTH_SOCK not set)".into()),
                Some(sock) => match AgentClient::connect_uds(sock).await {
                    Err(e) => skipped.push(format!("ssh-agent at {} ({e})", sock.display())),
                    Ok(mut agent) => {
                        let mut ids = agent.request_identities().await.unwrap_or_default();
                        // Certificates first, as OpenSSH offers them.
                        ids.sort_by_key(|id| !matches!(id, AgentIdentity::Certificate { .. }));
                        let (mut keys, mut certs) = (0, 0);
                        for id in ids {
                            if publickey_refused || handle.is_closed() {
                                break;
                            }
                            let result = match id {
                                AgentIdentity::PublicKey { key, .. }
                                    if !offered(&key.algorithm(), key.key_data(), false) =>
                                {
                                    continue;
                                }
                                AgentIdentity::Certificate { certificate, .. }
                                    if !offered(
                                        &certificate.algorithm(),
                                        certificate.public_key(),
                                        true,
                                    ) =>
                                {
                                    continue;
                                }
                                AgentIdentity::PublicKey { key, .. } => {
                                    keys += 1;
                                    let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
                                        rsa_hash_for(handle, &mut rsa_hash).await
                                    } else {
                                        None
                                    };
                                    handle
                                        .authenticate_publickey_with(
                                            &ep.user, key, hash, &mut agent,
                                        )
                                        .await
                                        .ok()
                                }
                                AgentIdentity::Certificate { certificate, .. } => {
                                    certs += 1;
                                    let hash =
                                        if matches!(certificate.algorithm(), Algorithm::Rsa { .. })
                                        {
                                            rsa_hash_for(handle, &mut rsa_hash).await
                                        } else {
                                            None
                                        };
                                    handle
                                        .authenticate_certificate_with(
                                            &ep.user,
                                            certificate,
                                            hash,
                                            &mut agent,
                                        )
                                        .await
                                        .ok()
                                }
                            };
                            if judge(result, &mut publickey_refused) {
                                return Ok(());
                            }
                        }
                        let plural = |n: usize, what: &str| {
                            format!("{n} {what}{}", if n == 1 { "" } else { "s" })
                        };
                        tried.push(if certs == 0 {
                            format!("ssh-agent ({})", plural(keys, "key"))
                        } else {
                            format!(
                                "ssh-agent ({}, {})",
                                plural(keys, "key"),
                                plural(certs, "certificate")
                            )
                        });
                    }
                },
            }
        }

        let mut paths: Vec<PathBuf> = ep.identity_files.clone();
        for (p, _) in &self.keys {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
        let config_certs = self.config_certificates(ep, &mut skipped);
        for path in paths {
            if publickey_refused || handle.is_closed() {
                break;
            }
            let key = match self.identity(&path) {
                KeyLoad::Loaded(k) => k,
                KeyLoad::Missing => {
                    skipped.push(format!("{} (not found)", path.display()));
                    continue;
                }
                KeyLoad::Unusable(why) | KeyLoad::BadCertificate(why) => {
                    skipped.push(format!("{} ({why})", path.display()));
                    continue;
                }
            };
            let public = key.key.public_key().key_data().clone();
            if !algs.accepts_pubkey(&key.key.algorithm(), false)
                && !algs.accepts_pubkey(&key.key.algorithm(), true)
            {
                skipped.push(format!(
                    "{} ({} is not in PubkeyAcceptedAlgorithms)",
                    path.display(),
                    key.key.algorithm()
                ));
                continue;
            }
            let mut certs: Vec<(String, Certificate)> = Vec::new();
            if let Some(c) = &key.cert {
                certs.push((cert_path(&path).display().to_string(), c.clone()));
            }
            for (file, c) in &config_certs {
                if *c.public_key() == public && !certs.iter().any(|(_, k)| k == c) {
                    certs.push((file.display().to_string(), c.clone()));
                }
            }
            let hash = if matches!(key.key.algorithm(), Algorithm::Rsa { .. }) {
                rsa_hash_for(handle, &mut rsa_hash).await
            } else {
                None
            };
            for (file, cert) in certs {
                if publickey_refused || handle.is_closed() {
                    break;
                }
                if !algs.accepts_pubkey(&cert.algorithm(), true) {
                    continue;
                }
                tried.push(format!("{file} (certificate `{}`)", cert.key_id()));
                let result = match &key.ed25519 {
                    Some(signer) => handle
                        .authenticate_certificate_with(&ep.user, cert, None, &mut signer.clone())
                        .await
                        .ok(),
                    None => handle
                        .authenticate_openssh_cert(&ep.user, key.key.clone(), cert)
                        .await
                        .ok(),
                };
                if judge(result, &mut publickey_refused) {
                    return Ok(());
                }
            }
            if publickey_refused || handle.is_closed() {
                break;
            }
            if !algs.accepts_pubkey(&key.key.algorithm(), false) {
                continue;
            }
            tried.push(path.display().to_string());
            let result = match &key.ed25519 {
                Some(signer) => {
                    let public = key.key.public_key().clone();
                    handle
                        .authenticate_publickey_with(&ep.user, public, None, &mut signer.clone())
                        .await
                        .ok()
                }
                None => {
                    let key = PrivateKeyWithHashAlg::new(key.key.clone(), hash);
                    handle.authenticate_publickey(&ep.user, key).await.ok()
                }
            };
            if judge(result, &mut publickey_refused) {
                return Ok(());
            }
        }

        let mut message = format!(
            "{}@{} ({}:{}): authentication failed; tried {}",
            ep.user,
            ep.name,
            ep.address,
            ep.port,
            if tried.is_empty() {
                "nothing (no ssh-agent key, no identity file found)".to_string()
            } else {
                tried.join(", ")
            }
        );
        if !skipped.is_empty() {
            message.push_str(&format!("; skipped {}", skipped.join(", ")));
        }
        if handle.is_closed() {
            message.push_str("; the server closed the connection (MaxAuthTries?)");
        }
        Err(ConnectError {
            kind: ConnectErrorKind::Auth,
            message,
        })
    }

    /// The ssh config's `CertificateFile`s for this host, parsed once per
    /// run; one that does not parse is skipped, and said so.
    fn config_certificates(
        &self,
        ep: &Endpoint,
        skipped: &mut Vec<String>,
    ) -> Vec<(PathBuf, Certificate)> {
        let mut cache = self.config_certs.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for file in &ep.certificate_files {
            let loaded = cache
                .entry(file.clone())
                .or_insert_with(|| load_certificate(file));
            match loaded {
                Ok(c) => out.push((file.clone(), c.clone())),
                Err(e) => skipped.push(format!("CertificateFile {e}")),
            }
        }
        out
    }
}

async fn rsa_hash_for(
    handle: &client::Handle<Client>,
    cache: &mut Option<Option<HashAlg>>,
) -> Option<HashAlg> {
    if let Some(h) = cache {
        return *h;
    }
    let h = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    *cache = Some(h);
    h
}

async fn tcp_connect(ep: &Endpoint) -> Result<tokio::net::TcpStream, ConnectError> {
    let target = format!("{}:{}", ep.address, ep.port);
    let addrs: Vec<_> = match super::resolve::lookup(&ep.address, ep.port).await {
        Ok(a) => a,
        Err(e) => {
            return Err(ConnectError {
                kind: ConnectErrorKind::Unreachable,
                message: format!("{}: cannot resolve {}: {e}", ep.name, ep.address),
            });
        }
    };
    let mut last = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                // Nagle would delay our small packets behind the server's acks.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(e) = last else {
        return Err(ConnectError {
            kind: ConnectErrorKind::Unreachable,
            message: format!("{}: {} resolves to no address", ep.name, ep.address),
        });
    };
    Err(ConnectError {
        kind: io_kind(&e),
        message: format!("{}: cannot connect to {target}: {e}", ep.name),
    })
}

fn io_kind(e: &std::io::Error) -> ConnectErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::TimedOut => ConnectErrorKind::Timeout,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected => ConnectErrorKind::Unreachable,
        _ => ConnectErrorKind::Protocol,
    }
}

fn handshake_error(e: HandlerError, ep: &Endpoint) -> ConnectError {
    let target = format!("{}:{}", ep.address, ep.port);
    let e = match e {
        HandlerError::HostKey(e) => return e,
        HandlerError::Ssh(e) => e,
    };
    let (kind, what) = match &e {
        russh::Error::IO(io) => (
            io_kind(io),
            format!("SSH handshake with {target} failed: {io}"),
        ),
        russh::Error::Disconnect | russh::Error::HUP => (
            ConnectErrorKind::Unreachable,
            format!("{target} closed the connection during the SSH handshake"),
        ),
        russh::Error::Version => (
            ConnectErrorKind::Protocol,
            format!("{target} does not speak SSH"),
        ),
        russh::Error::NoCommonAlgo { kind, ours, theirs } => {
            let (what, option) = match kind {
                russh::AlgorithmKind::Kex => ("key exchange", AlgorithmKind::Kex),
                russh::AlgorithmKind::Key => ("host key", AlgorithmKind::HostKey),
                russh::AlgorithmKind::Cipher => ("cipher", AlgorithmKind::Cipher),
                russh::AlgorithmKind::Mac => ("MAC", AlgorithmKind::Mac),
                russh::AlgorithmKind::Compression => {
                    return ConnectError {
                        kind: ConnectErrorKind::Protocol,
                        message: format!(
                            "{}: no common compression algorithm with {target}: ours {}, theirs {}",
                            ep.name,
                            ours.join(","),
                            theirs.join(",")
                        ),
                    };
                }
            };
            let ours: Vec<&String> = ours
                .iter()
                .filter(|n| !n.starts_with("ext-info-") && !n.starts_with("kex-strict-"))
                .collect();
            let ours: Vec<&str> = ours.iter().map(|s| s.as_str()).collect();
            let widen: Vec<&str> = theirs
                .iter()
                .map(String::as_str)
                .filter(|n| option.supported().contains(n))
                .collect();
            let hint = match widen.first() {
                Some(n) => format!(
                    "; to allow one, add `{} +{n}` for this host in ~/.ssh/config (as with OpenSSH)",
                    option.option()
                ),
                None => "; rekindle (russh) implements none of the server's".to_string(),
            };
            (
                ConnectErrorKind::Protocol,
                format!(
                    "no common {what} algorithm with {target}: rekindle offers {}, the server offers {}{hint}",
                    ours.join(","),
                    theirs.join(",")
                ),
            )
        }
        other => (
            ConnectErrorKind::Protocol,
            format!("SSH handshake with {target} failed: {other}"),
        ),
    };
    ConnectError {
        kind,
        message: format!("{}: {what}", ep.name),
    }
}

/// Starts a ProxyCommand (`sh -c "exec COMMAND"`, as OpenSSH) whose
/// stdin/stdout carry the SSH connection; its stderr stays rekindle's, and
/// its environment has none of rekindle's secrets.
fn spawn_proxy(
    command: &str,
    ep: &Endpoint,
) -> Result<
    (
        tokio::process::Child,
        tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    ),
    ConnectError,
> {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("exec {command}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    super::ssh_config::scrub_env(&mut cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let fail = |e: String| ConnectError {
        kind: ConnectErrorKind::Unreachable,
        message: format!("{}: ProxyCommand `{command}`: {e}", ep.name),
    };
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(fail("no stdin/stdout".into()));
    };
    Ok((child, tokio::io::join(stdout, stdin)))
}

fn forward_error(e: russh::Error, ep: &Endpoint, spec: &str) -> ConnectError {
    let target = format!("{}:{}", ep.address, ep.port);
    let kind = match &e {
        // The jump host is fine but cannot reach the target.
        russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed) => {
            ConnectErrorKind::Unreachable
        }
        _ => ConnectErrorKind::Jump,
    };
    ConnectError {
        kind,
        message: format!(
            "{}: jump host {spec} could not open a connection to {target}: {e}",
            ep.name
        ),
    }
}

#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey(ConnectError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

/// The russh client handler: host-key policy lives here.
struct Client {
    /// Dropped with the handler when the connection's task ends, which is
    /// what [`SshSession::closed`] waits for.
    _alive: watch::Sender<()>,
    /// User known_hosts files first (accept-new records in the first), then global ones.
    known: Vec<Arc<KnownHosts>>,
    names: Vec<String>,
    /// The names without the port, tried when nothing is known under
    /// `names` (OpenSSH's "checking without port identifier"); empty on port 22.
    bare: Vec<String>,
    /// The host's name and address, which a host certificate must list.
    principals: Vec<String>,
    display: String,
    accept_new: bool,
}

/// The bare names to fall back to when the port is not 22 and no
/// HostKeyAlias is set (sshconnect.c, `check_host_key`).
fn bare_fallback(ep: &Endpoint) -> Vec<String> {
    if ep.port == 22 || ep.host_key_alias.is_some() {
        Vec::new()
    } else {
        ep.bare_names()
    }
}

/// A key's verdict over several known_hosts files: revoked anywhere wins,
/// then a match anywhere, then a conflicting entry anywhere.
fn check_files(files: &[Arc<KnownHosts>], names: &[String], key: &PublicKey) -> (Verdict, String) {
    let mut changed: Option<(Vec<super::known_hosts::KnownLine>, String)> = None;
    let mut matched = None;
    for kh in files {
        let path = kh.path().display().to_string();
        match kh.check(names, key) {
            Verdict::Revoked { line } => return (Verdict::Revoked { line }, path),
            Verdict::Match => {
                matched.get_or_insert(path);
            }
            Verdict::Changed { known } => {
                changed.get_or_insert((known, path));
            }
            Verdict::Unknown => {}
        }
    }
    if let Some(path) = matched {
        return (Verdict::Match, path);
    }
    if let Some((known, path)) = changed {
        return (Verdict::Changed { known }, path);
    }
    let first = files
        .first()
        .map(|k| k.path().display().to_string())
        .unwrap_or_else(|| "(no known_hosts file: UserKnownHostsFile none)".into());
    (Verdict::Unknown, first)
}

impl Client {
    /// The plain key's verdict, with the bare-name fallback.
    fn plain_verdict(&self, key: &PublicKey) -> (Verdict, String) {
        let (verdict, path) = check_files(&self.known, &self.names, key);
        if verdict == Verdict::Unknown && !self.bare.is_empty() {
            let (bare, bare_path) = check_files(&self.known, &self.bare, key);
            if bare == Verdict::Match {
                return (bare, bare_path);
            }
        }
        (verdict, path)
    }

    /// A host certificate: trusted through an `@cert-authority` line
    /// (accept-new never records a CA). As OpenSSH, a certificate no CA
    /// vouches for (unknown CA, expired, another host's) is then checked
    /// as the plain key inside it; a revoked one is not.
    fn check_certificate(&self, cert: &russh::keys::Certificate) -> Result<bool, HandlerError> {
        use super::known_hosts::CertVerdict;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let principals: Vec<&str> = self.principals.iter().map(String::as_str).collect();
        let mut reason: Option<(CertVerdict, String)> = None;
        let mut unknown = None;
        for names in [&self.names, &self.bare] {
            if names.is_empty() || reason.is_some() {
                continue;
            }
            for kh in &self.known {
                let path = kh.path().display().to_string();
                match kh.check_certificate(names, &principals, cert, now) {
                    CertVerdict::Trusted { .. } => return Ok(true),
                    v @ CertVerdict::UnknownAuthority { .. } => {
                        unknown.get_or_insert((v, path));
                    }
                    // The first refusal, unless a later file revokes.
                    v => {
                        let revoked = matches!(v, CertVerdict::Revoked { .. });
                        let have_revoked = matches!(reason, Some((CertVerdict::Revoked { .. }, _)));
                        if reason.is_none() || (revoked && !have_revoked) {
                            reason = Some((v, path));
                        }
                    }
                }
            }
        }
        let (verdict, kh) = reason.or(unknown).unwrap_or((
            CertVerdict::UnknownAuthority {
                ca_fingerprint: cert
                    .signature_key()
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            },
            "known_hosts".into(),
        ));
        if !matches!(verdict, CertVerdict::Revoked { .. }) {
            let plain = PublicKey::new(cert.public_key().clone(), "");
            if self.plain_verdict(&plain).0 == Verdict::Match {
                return Ok(true);
            }
        }
        let why = match verdict {
            CertVerdict::Trusted { .. } => return Ok(true),
            CertVerdict::UnknownAuthority { ca_fingerprint } => format!(
                "its host certificate is signed by CA {ca_fingerprint}, which no \
                 @cert-authority line of {kh} trusts for {}",
                self.names.join(", ")
            ),
            CertVerdict::Revoked { line, what } => {
                format!("its host certificate is refused: {what} is marked @revoked in {kh}:{line}")
            }
            CertVerdict::Expired { valid_before } => format!(
                "its host certificate expired at {} ({} s ago)",
                unix_time(valid_before),
                now.saturating_sub(valid_before)
            ),
            CertVerdict::NotYetValid { valid_after } => format!(
                "its host certificate is not valid before {} (clock skew?)",
                unix_time(valid_after)
            ),
            CertVerdict::WrongPrincipal { principals: listed } => format!(
                "its host certificate is for {}, not for {}",
                listed.join(", "),
                principals.join(" or ")
            ),
            CertVerdict::Invalid { reason } => format!("its host certificate is refused: {reason}"),
        };
        Err(HandlerError::HostKey(ConnectError {
            kind: ConnectErrorKind::HostCertificate,
            message: format!(
                "{}: {why} (key ID `{}`, serial {}); not connecting",
                self.display,
                cert.key_id(),
                cert.serial()
            ),
        }))
    }
}

/// Unix seconds as RFC 3339 UTC (the journal's format, a pure function).
fn unix_time(secs: u64) -> String {
    // Far-future `valid_before` (forever) stays printable.
    let secs = secs.min(253_402_300_799);
    crate::time::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => return self.check_certificate(cert),
        };
        let key = &key;
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let (mut verdict, mut kh) = self.plain_verdict(key);
        if verdict == Verdict::Unknown
            && self.accept_new
            && let Some(first) = self.known.first()
        {
            kh = first.path().display().to_string();
            verdict = first.accept_new(&self.names, key).map_err(|e| {
                HandlerError::HostKey(ConnectError {
                    kind: ConnectErrorKind::HostKeyUnknown,
                    message: format!(
                        "{}: cannot record the new host key {fingerprint}: {e}",
                        self.display
                    ),
                })
            })?;
        }
        let err = |kind, message| Err(HandlerError::HostKey(ConnectError { kind, message }));
        match verdict {
            Verdict::Match => Ok(true),
            Verdict::Unknown => err(
                ConnectErrorKind::HostKeyUnknown,
                format!(
                    "{}: host key is not in {kh} ({} {fingerprint}, looked up as {}); \
                     verify it and add it, or pass --accept-new-host-keys",
                    self.display,
                    key.algorithm(),
                    self.names.join(", ")
                ),
            ),
            Verdict::Changed { known } => {
                let lines: Vec<String> = known
                    .iter()
                    .map(|k| format!("{kh}:{} has {} {}", k.line, k.algorithm, k.fingerprint))
                    .collect();
                err(
                    ConnectErrorKind::HostKeyChanged,
                    format!(
                        "{}: REMOTE HOST IDENTIFICATION HAS CHANGED! The host now offers {} {fingerprint} \
                         but {}. Someone could be eavesdropping (man-in-the-middle), or the host was \
                         reinstalled. Not connecting; if the change is expected, remove the old line \
                         (ssh-keygen -R) and reconnect",
                        self.display,
                        key.algorithm(),
                        lines.join("; ")
                    ),
                )
            }
            Verdict::Revoked { line } => err(
                ConnectErrorKind::HostKeyChanged,
                format!(
                    "{}: host key {fingerprint} is marked @revoked in {kh}:{line}; not connecting",
                    self.display
                ),
            ),
        }
    }
}

impl Connection for SshSession {
    async fn exec(&self, command: &str, timeout: Duration) -> Result<ExecOutput, ExecError> {
        self.run(command, None, timeout).await
    }

    async fn exec_with_stdin(
        &self,
        command: &str,
        input: &Secret,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        self.run(command, Some(input), timeout).await
    }

    fn is_closed(&self) -> bool {
        self.current().handle.is_closed()
    }

    async fn closed(&self) {
        let mut alive = self.current().alive.clone();
        // Nothing is ever sent: `changed` fails once the sender is dropped.
        while alive.changed().await.is_ok() {}
    }
}

impl SshSession {
    fn current(&self) -> Arc<Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A session channel on the current connection; when the server has
    /// closed that connection before the channel opened, on a fresh one
    /// (once; see [`SshSession`]).
    async fn open_channel(
        &self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(Arc<Conn>, russh::Channel<client::Msg>), ExecError> {
        let conn = self.current();
        if !conn.handle.is_closed() {
            match tokio::time::timeout_at(deadline, conn.handle.channel_open_session()).await {
                Err(_) => return Err(ExecError::Timeout(timeout)),
                Ok(Ok(c)) => return Ok((conn, c)),
                // A refused session channel ran nothing. tinysshd serves one
                // channel per connection and refuses a second ("administratively
                // prohibited"); sshd with MaxSessions 1 refuses one opened
                // before it has let go of the last ("connect failed").
                Ok(Err(russh::Error::ChannelOpenFailure(_))) => {}
                Ok(Err(e)) => match channel_error(&conn.handle, e) {
                    ExecError::Disconnected => {}
                    other => return Err(other),
                },
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let phase = AtomicU8::new(PHASE_TCP);
        let fresh = match tokio::time::timeout(
            self.connect_timeout.min(left),
            self.inner.connect_endpoint(&self.ep, 0, &phase),
        )
        .await
        {
            // The host is gone for real (rebooting): what the engine expects
            // from a dropped connection.
            Err(_) | Ok(Err(_)) => return Err(ExecError::Disconnected),
            Ok(Ok(c)) => c,
        };
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        match tokio::time::timeout_at(deadline, fresh.handle.channel_open_session()).await {
            Err(_) => Err(ExecError::Timeout(timeout)),
            Ok(Err(e)) => Err(channel_error(&fresh.handle, e)),
            Ok(Ok(c)) => Ok((fresh, c)),
        }
    }

    /// One command on a new channel; `input` (one line, then EOF) goes to
    /// its stdin inside the channel, never on a command line.
    async fn run(
        &self,
        command: &str,
        input: Option<&Secret>,
        timeout: Duration,
    ) -> Result<ExecOutput, ExecError> {
        let deadline = Instant::now() + timeout;
        let (conn, mut channel) = self.open_channel(deadline, timeout).await?;
        let handle = &conn.handle;
        let mut tail = Tail::default();
        let mut status = None;
        let mut signalled = false;
        let mut closed = false;
        let ran = tokio::time::timeout_at(deadline, async {
            channel.exec(true, command).await?;
            if let Some(input) = input {
                let mut line = input.expose().as_bytes().to_vec();
                line.push(b'\n');
                channel.data(&line[..]).await?;
                channel.eof().await?;
            }
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => tail.push(&data),
                    ChannelMsg::ExtendedData { data, .. } => tail.push(&data),
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::ExitSignal { .. } => signalled = true,
                    ChannelMsg::Failure => {
                        return Err(russh::Error::RequestDenied);
                    }
                    ChannelMsg::Close => {
                        closed = true;
                        break;
                    }
                    _ => {}
                }
            }
            Ok::<(), russh::Error>(())
        })
        .await;
        match ran {
            Err(_) => {
                // Without a pty, sshd leaves the command running when the channel
                // closes: signal it first. OpenSSH honours this for non-root users
                // only (root sessions lack privilege separation); bounded so a dead
                // connection cannot hold us.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    let _ = channel.signal(russh::Sig::TERM).await;
                    let _ = channel.close().await;
                })
                .await;
                Err(ExecError::Timeout(timeout))
            }
            Ok(Err(e)) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), channel.close()).await;
                Err(channel_error(handle, e))
            }
            Ok(Ok(())) => {
                // The channel's stream ending without a Close means the
                // connection went away under it (host rebooted, keepalive expired).
                if status.is_none() && !signalled && (!closed || handle.is_closed()) {
                    return Err(ExecError::Disconnected);
                }
                Ok(ExecOutput {
                    exit_status: status,
                    output: tail.finish(),
                })
            }
        }
    }
}

fn channel_error(handle: &client::Handle<Client>, e: russh::Error) -> ExecError {
    if handle.is_closed()
        || matches!(
            e,
            russh::Error::SendError | russh::Error::Disconnect | russh::Error::HUP
        )
    {
        ExecError::Disconnected
    } else {
        ExecError::Channel(format!("ssh channel: {e}"))
    }
}

/// The last `TAIL_BYTES` of output, cut to the last `TAIL_LINES` lines at the end.
#[derive(Default)]
struct Tail {
    buf: std::collections::VecDeque<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(TAIL_BYTES)..];
        let overflow = (self.buf.len() + data.len()).saturating_sub(TAIL_BYTES);
        self.buf.drain(..overflow);
        self.buf.extend(data);
    }

    fn finish(self) -> String {
        let bytes: Vec<u8> = self.buf.into();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines_and_bytes() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let out = t.finish();
        assert_eq!(out.lines().count(), TAIL_LINES);
        assert!(out.starts_with("line 80\n"), "{out}");
        assert!(out.ends_with("line 99"), "{out}");

        let mut t = Tail::default();
        t.push(&vec![b'x'; 10_000]);
        t.push(b"end");
        let out = t.finish();
        assert_eq!(out.len(), TAIL_BYTES);
        assert!(out.ends_with("xend"));
    }
}
