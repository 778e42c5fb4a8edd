//! Test fixture: private OpenSSH `sshd` processes on loopback.
//!
//! ```ignore
//! let keys = ClientKeys::new();                  // a client key pair in a temp dir
//! let sshd = Sshd::start(&keys, 3);               // one sshd on 3 fresh 127.x.y.z addresses
//! let kh = keys.known_hosts(&[&sshd]);            // known_hosts with its key for each address
//! sshd.addrs(); sshd.port(); sshd.logins();       // where it listens; "Accepted publickey" count
//! ```
//!
//! Each sshd has its own config, a generated ed25519 host key, `UsePAM no`,
//! `StrictModes no` (keys live under /tmp), curve25519 key exchange and a high
//! `MaxStartups`; it logs to a file (`-D -e`) and is killed on Drop. Logins are
//! as the current user with the client key. Root's `.bashrc` is not sourced
//! for commands (`SetEnv SHLVL=1`: Debian's bash skips it when SHLVL > 1),
//! because pyenv there costs hundreds of milliseconds per command.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// One sshd listens on at most 16 addresses (docs/findings.md, the machine).
pub const MAX_ADDRS: usize = 16;

/// A client key pair, shared by the sshds of one test.
pub struct ClientKeys {
    pub dir: tempfile::TempDir,
}

impl ClientKeys {
    pub fn new() -> ClientKeys {
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(&dir.path().join("id_ed25519"));
        ClientKeys { dir }
    }

    /// The private key to pass as an identity.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// A fresh path in this key dir (for test files: known_hosts, ssh config...).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a known_hosts holding every address of `sshds` and returns its path.
    pub fn known_hosts(&self, sshds: &[&Sshd]) -> PathBuf {
        let path = self.path("known_hosts");
        let text: String = sshds.iter().map(|s| s.known_hosts_lines()).collect();
        std::fs::write(&path, text).expect("write known_hosts");
        path
    }
}

/// A running private sshd.
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    addrs: Vec<Ipv4Addr>,
    port: u16,
}

/// Distinct 127.x.y.z addresses per process and call, so parallel tests (and
/// other test binaries on this machine) do not collide.
fn fresh_addrs(n: usize) -> Vec<Ipv4Addr> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = NEXT.fetch_add(n as u32, Ordering::SeqCst);
    let second = 100 + (std::process::id() % 100) as u8;
    (0..n as u32)
        .map(|i| {
            let k = base + i;
            Ipv4Addr::new(127, second, (k / 250) as u8, (k % 250 + 1) as u8)
        })
        .collect()
}

pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rekindle-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(st.success(), "ssh-keygen failed for {}", path.display());
}

impl Sshd {
    /// Starts one sshd on `n` (1..=16) fresh loopback addresses, one shared port.
    pub fn start(keys: &ClientKeys, n: usize) -> Sshd {
        Sshd::start_with(keys, n, |_, _| String::new())
    }

    /// [`Sshd::start`] with extra config lines, which take precedence (sshd
    /// keeps the first value of a keyword). `extra` gets the sshd's directory
    /// (its host key is `host_ed25519` there) and its addresses, before sshd starts.
    pub fn start_with(
        keys: &ClientKeys,
        n: usize,
        extra: impl FnOnce(&Path, &[Ipv4Addr]) -> String,
    ) -> Sshd {
        assert!(
            (1..=MAX_ADDRS).contains(&n),
            "one sshd serves 1..=16 addresses"
        );
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let mut dir = tempfile::tempdir().expect("tempdir");
        keygen(&dir.path().join("host_ed25519"));
        std::fs::copy(
            keys.key().with_extension("pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorize client key");
        let addrs = fresh_addrs(n);
        let extra = extra(dir.path(), &addrs);
        // The port is picked by the kernel and released; a lost race shows as an
        // early exit, and we try again with another port.
        for _attempt in 0..5 {
            let port = TcpListener::bind((addrs[0], 0))
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let config = dir.path().join("sshd_config");
            std::fs::write(&config, sshd_config(dir.path(), &addrs, port, &extra))
                .expect("write config");
            let log = std::fs::File::create(dir.path().join("sshd.log")).expect("log");
            let child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            let mut sshd = Sshd {
                child,
                dir,
                addrs: addrs.clone(),
                port,
            };
            if sshd.wait_listening() {
                return sshd;
            }
            let log = sshd.log();
            // Reuse the temp dir for the next attempt; Drop kills the child.
            let _ = sshd.child.kill();
            let _ = sshd.child.wait();
            if !log.contains("Address already in use") {
                panic!("sshd did not start:\n{log}");
            }
            dir = std::mem::replace(&mut sshd.dir, tempfile::tempdir().expect("tempdir"));
        }
        panic!("sshd: no free port after 5 attempts");
    }

    /// Polls (bounded: 10 s) until every address accepts, or sshd exited.
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let all_up = self.addrs.iter().all(|a| {
                TcpStream::connect_timeout(
                    &SocketAddr::from((*a, self.port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if all_up {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn addrs(&self) -> &[Ipv4Addr] {
        &self.addrs
    }

    pub fn addr(&self) -> String {
        self.addrs[0].to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ip:port` of the first address, as a ProxyJump spec.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.addrs[0], self.port)
    }

    /// Also accepts the client key whose public half is `public` (sshd
    /// reads authorized_keys at each login).
    pub fn authorize(&self, public: &Path) {
        let line = std::fs::read_to_string(public).expect("public key");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("authorized_keys");
        std::io::Write::write_all(&mut file, line.as_bytes()).expect("authorize");
    }

    /// The host public key line (`ssh-ed25519 AAAA...`).
    pub fn host_key(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).expect("host key");
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn host_key_path(&self) -> PathBuf {
        self.dir.path().join("host_ed25519.pub")
    }

    /// The SHA256 fingerprint as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.host_key_path())
            .output()
            .expect("ssh-keygen -l");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("fingerprint field")
            .to_string()
    }

    /// `[addr]:port key` for each address.
    pub fn known_hosts_lines(&self) -> String {
        let key = self.host_key();
        self.addrs
            .iter()
            .map(|a| format!("[{a}]:{} {key}\n", self.port))
            .collect()
    }

    /// Everything sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Kills every per-connection sshd process (and what runs under them),
    /// keeping the listener: like a host dropping all its connections. Returns
    /// how many processes were killed.
    pub fn drop_connections(&self) -> usize {
        let root = self.child.id() as i32;
        let mut parents: Vec<(i32, i32)> = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // Fields after the ")" that closes the command name: state, ppid, ...
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse().ok());
                if let Some(ppid) = ppid {
                    parents.push((pid, ppid));
                }
            }
        }
        let mut tree = vec![root];
        let mut i = 0;
        while i < tree.len() {
            let p = tree[i];
            tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        for pid in &tree[1..] {
            // SAFETY: plain syscall on descendants of the sshd this fixture started.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        tree.len() - 1
    }

    /// The sshd's own directory (host key, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Successful logins so far (one per SSH connection that authenticated).
    pub fn logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd_config(dir: &Path, addrs: &[Ipv4Addr], port: u16, extra: &str) -> String {
    let mut c = format!("Port {port}\n");
    for a in addrs {
        c.push_str(&format!("ListenAddress {a}\n"));
    }
    c.push_str(extra);
    c.push_str(&format!(
        "HostKey {dir}/host_ed25519\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         PidFile none\n\
         UsePAM no\n\
         StrictModes no\n\
         MaxStartups 1000:30:2000\n\
         MaxSessions 1000\n\
         KexAlgorithms curve25519-sha256\n\
         AllowTcpForwarding yes\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         SetEnv SHLVL=1\n\
         LogLevel VERBOSE\n",
        dir = dir.display()
    ));
    c
}
