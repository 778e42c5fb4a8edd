//! `rekindle run` and `rekindle plan --preflight` end to end: the real binary
//! against private OpenSSH sshd processes on loopback (see `sshd.rs`), with
//! inventories and playbooks written into a temp dir per test.
//!
//! Hosts' commands run on this machine (sshd logs in as the current user), so
//! they leave marker files and time stamps in the test's dir: what a host did,
//! and when, is read from those files, never from wall-clock totals.

use std::fmt;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sshd::{ClientKeys, Sshd};
use crate::support;

/// Generous bound on one `rekindle` invocation: a hang fails the test.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// One inventory host.
#[derive(Clone)]
struct H {
    name: String,
    address: String,
    port: u16,
    labels: Vec<(String, String)>,
    jump: Option<String>,
    user: Option<String>,
}

impl H {
    fn new(name: &str, address: &str, port: u16) -> H {
        H {
            name: name.into(),
            address: address.into(),
            port,
            labels: Vec::new(),
            jump: None,
            user: None,
        }
    }

    fn label(mut self, key: &str, value: &str) -> H {
        self.labels.push((key.into(), value.into()));
        self
    }
}

/// One host per address of `sshd`, named `{prefix}01`, `{prefix}02`, ...
fn hosts_on(sshd: &Sshd, prefix: &str, first: usize) -> Vec<H> {
    sshd.addrs()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            H::new(
                &format!("{prefix}{:02}", first + i),
                &a.to_string(),
                sshd.port(),
            )
        })
        .collect()
}

/// A test's world: a client key, a work dir with inventory, playbook and
/// markers, and the known_hosts the inventory points at.
struct Case {
    keys: ClientKeys,
    dir: tempfile::TempDir,
    known_hosts: PathBuf,
    identity: PathBuf,
}

impl Case {
    fn new() -> Case {
        let keys = ClientKeys::new();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("marks")).expect("marks dir");
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, "").expect("known_hosts");
        let identity = keys.key();
        Case {
            keys,
            dir,
            known_hosts,
            identity,
        }
    }

    /// Trusts these sshds' host keys.
    fn trust(&self, sshds: &[&Sshd]) {
        let text: String = sshds.iter().map(|s| s.known_hosts_lines()).collect();
        std::fs::write(&self.known_hosts, text).expect("write known_hosts");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where hosts' commands leave markers (`{marks}/NAME.start` ...).
    fn marks(&self) -> String {
        self.path("marks").display().to_string()
    }

    fn mark(&self, file: &str) -> PathBuf {
        self.path("marks").join(file)
    }

    fn has_mark(&self, file: &str) -> bool {
        self.mark(file).exists()
    }

    /// Marker files whose names end with `suffix`, sorted.
    fn marks_ending(&self, suffix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("marks"))
            .expect("marks dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix))
            .collect();
        names.sort();
        names
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write test file");
        p
    }

    fn inventory(&self, hosts: &[H]) -> PathBuf {
        let mut y = format!(
            "version: 1\ndefaults:\n  identity_file: \"{}\"\n  known_hosts: \"{}\"\ndatacenters:\n  test:\n    hosts:\n",
            self.identity.display(),
            self.known_hosts.display()
        );
        for h in hosts {
            y.push_str(&format!(
                "      - name: \"{}\"\n        address: \"{}\"\n        port: {}\n",
                h.name, h.address, h.port
            ));
            if !h.labels.is_empty() {
                let labels: Vec<String> = h
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}: \"{v}\""))
                    .collect();
                y.push_str(&format!("        labels: {{ {} }}\n", labels.join(", ")));
            }
            if let Some(j) = &h.jump {
                y.push_str(&format!("        jump: \"{j}\"\n"));
            }
            if let Some(u) = &h.user {
                y.push_str(&format!("        user: \"{u}\"\n"));
            }
        }
        self.write("inventory.yaml", &y)
    }

    fn playbook(&self, text: &str) -> PathBuf {
        self.write("playbook.yaml", text)
    }

    /// `rekindle SUBCOMMAND playbook.yaml -i inventory.yaml --ssh-config EMPTY ARGS...`,
    /// from the work dir, so the machine's ~/.ssh/config does not leak in.
    fn command(&self, sub: &str, args: &[&str]) -> Command {
        let empty = self.write("ssh_config", "");
        let mut cmd = support::rekindle_in(self.dir.path());
        cmd.arg(sub)
            .arg(self.path("playbook.yaml"))
            .arg("-i")
            .arg(self.path("inventory.yaml"))
            .arg("--ssh-config")
            .arg(empty)
            .args(args);
        cmd
    }

    /// `rekindle run ... --yes ARGS`, to its end.
    fn run(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["--yes"];
        all.extend_from_slice(args);
        Running::start(self.command("run", &all)).wait(RUN_LIMIT)
    }

    fn preflight(&self, args: &[&str]) -> Outcome {
        let mut all = vec!["--preflight"];
        all.extend_from_slice(args);
        Running::start(self.command("plan", &all)).wait(RUN_LIMIT)
    }
}

/// What a finished `rekindle` said.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Outcome {
    /// Output lines starting with `word` (the plain printer's host lines).
    fn lines(&self, word: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(word))
            .collect()
    }

    /// The host line of `host`, whatever its outcome.
    fn host_line(&self, host: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(host))
            .unwrap_or_else(|| panic!("no line for {host}:\n{self}"))
    }
}

/// A `rekindle` child process, killed on Drop if still running. Its output
/// is collected as it comes, so a test can wait for a line.
struct Running {
    child: Child,
    out: Shared,
    err: Shared,
    readers: Vec<JoinHandle<()>>,
}

type Shared = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

fn reader(mut r: impl Read + Send + 'static, into: Shared) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    })
}

fn text(s: &Shared) -> String {
    String::from_utf8_lossy(&s.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

impl Running {
    fn start(cmd: Command) -> Running {
        Running::start_with_input(cmd, None)
    }

    /// Starts `cmd` with `input` on its stdin (then closed), or none.
    fn start_with_input(mut cmd: Command, input: Option<&str>) -> Running {
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("rekindle starts");
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(text.as_bytes()).expect("write stdin");
        }
        let (out, err) = (Shared::default(), Shared::default());
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(reader(o, out.clone()));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(reader(e, err.clone()));
        }
        Running {
            child,
            out,
            err,
            readers,
        }
    }

    fn stderr_so_far(&self) -> String {
        text(&self.err)
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: a plain syscall on the child this test started and still holds.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Waits (bounded) for the exit and collects the output.
    fn wait(mut self, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break Some(st);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let outcome = Outcome {
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: text(&self.out),
            stderr: text(&self.err),
        };
        assert!(
            status.is_some(),
            "rekindle did not exit within {limit:?}:\n{outcome}"
        );
        if std::env::var_os("REKINDLE_TEST_SHOW").is_some() {
            eprintln!("{outcome}");
        }
        outcome
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls (bounded) until `cond` holds.
fn wait_for(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `date +%s.%N` stamp a host wrote.
fn stamp(path: &Path) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()))
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// A port that drops SYNs, like a firewall black hole: a listener with a
/// backlog of 0 whose one queue slot is taken and never accepted, so the
/// kernel ignores further connection attempts.
struct SynHole {
    _listener: TcpListener,
    _filler: std::net::TcpStream,
    port: u16,
}

impl SynHole {
    fn new() -> SynHole {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket syscalls on a fresh descriptor that the
        // TcpListener takes ownership of right after.
        let listener = unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket");
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
                },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            assert_eq!(libc::bind(fd, (&raw const addr).cast(), len), 0, "bind");
            assert_eq!(libc::listen(fd, 0), 0, "listen");
            TcpListener::from_raw_fd(fd)
        };
        let port = listener.local_addr().expect("addr").port();
        let filler = std::net::TcpStream::connect(("127.0.0.1", port)).expect("fill the queue");
        SynHole {
            _listener: listener,
            _filler: filler,
            port,
        }
    }
}

// ---------------------------------------------------------------- 1. run: commands

#[test]
fn twenty_four_hosts_run_commands_and_all_succeed() {
    let case = Case::new();
    let a = Sshd::start(&case.keys, 16);
    let b = Sshd::start(&case.keys, 8);
    case.trust(&[&a, &b]);
    let mut hosts = hosts_on(&a, "h", 1);
    hosts.extend(hosts_on(&b, "h", 17));
    case.inventory(&hosts);
    case.playbook(&format!(
        r#"version: 1
name: fan-out
stages:
  - name: all
    select: {{ dc: test }}
    parallel: 24
    connect_timeout: 5s
    steps:
      - run: 'echo ran on {{name}} > {marks}/{{name}}.ran'
"#,
        marks = case.marks()
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.lines("ok").len(), 24, "{o}");
    for h in &hosts {
        let text = std::fs::read_to_string(case.mark(&format!("{}.ran", h.name)))
            .unwrap_or_else(|e| panic!("{} did not run: {e}\n{o}", h.name));
        assert_eq!(text.trim(), format!("ran on {}", h.name));
        assert!(o.host_line(&h.name).starts_with("ok"), "{o}");
    }
    // The summary's wording is the report's; only its verdict is checked here.
    assert!(o.stdout.contains("every host done"), "{o}");
    assert_eq!(a.logins() + b.logins(), 24);
}

/// Regression: validation read `{{`/`}}` as literal braces but the engine
/// substituted with its own code and sent them doubled, so the README's
/// `awk '{{print $1}}'` validated and then failed on the host (`echo
/// ${{HOME}}`: "bad substitution"). Real sshd, end to end; awk alone would
/// accept `{{...}}` as nested blocks, so `printf` proves the braces too.
#[test]
fn literal_braces_in_commands_reach_the_host_as_single_braces() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 1);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(
        &r#"version: 1
stages:
  - name: all
    select: { dc: test }
    steps:
      - run: "echo 'x y' | awk '{{print $2}}' > MARKS/{name}.awk"
      - run: "echo ${{HOME}} > MARKS/{name}.home"
      - run: "printf '%s\n' 'a{{b}}c' > MARKS/{name}.braces"
"#
        .replace("MARKS", &case.marks()),
    );
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
    let read =
        |f: &str| std::fs::read_to_string(case.mark(f)).unwrap_or_else(|e| panic!("{f}: {e}\n{o}"));
    assert_eq!(read("h01.awk"), "y\n");
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(read("h01.home").trim_end(), home.trim_end_matches('/'));
    assert_eq!(read("h01.braces"), "a{b}c\n");
}

#[test]
fn nonzero_exits_fail_hosts_with_their_output_tail_inside_the_budget() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 5);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(
        r#"version: 1
stages:
  - name: all
    select: { dc: test }
    parallel: 5
    max_failures: 2
    steps:
      - run: 'case {name} in h02|h04) for i in 1 2 3 4 5 6 7; do echo noise $i; done; echo boom on {name} >&2; exit 7;; esac; echo fine'
"#,
    );
    let o = case.run(&[]);
    assert_eq!(o.code, 1, "failures inside the budget exit 1\n{o}");
    assert_eq!(o.lines("ok").len(), 3, "{o}");
    assert_eq!(o.lines("FAILED").len(), 2, "{o}");
    for h in ["h02", "h04"] {
        let line = o.host_line(h);
        assert!(line.starts_with("FAILED"), "{o}");
        assert!(line.contains("exited with 7"), "{line}");
    }
    // The tail of the output is shown under the host line (last lines only).
    assert!(o.stdout.contains("    | boom on h02"), "{o}");
    assert!(o.stdout.contains("    | noise 7"), "{o}");
    assert!(!o.stdout.contains("    | noise 1\n"), "only the tail: {o}");
    assert!(
        o.stdout
            .contains("finished with failures inside the budgets"),
        "{o}"
    );
}

// ---------------------------------------------------------------- 2. host keys, auth

const ONE_RUN: &str = r#"version: 1
stages:
  - name: all
    select: { dc: test }
    parallel: 4
    max_failures: 100%
    steps:
      - run: 'touch MARKS/{name}.ran'
"#;

fn one_run(case: &Case) -> String {
    ONE_RUN.replace("MARKS", &case.marks())
}

#[test]
fn unknown_host_key_fails_with_its_fingerprint_until_accept_new_appends_it() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 12);
    // known_hosts exists but is empty: every key is unknown.
    let hosts = hosts_on(&sshd, "h", 1);
    case.inventory(&hosts);
    case.playbook(&one_run(&case).replace("parallel: 4", "parallel: 12"));
    let o = case.run(&[]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.lines("FAILED").len(), 12, "{o}");
    let fp = sshd.fingerprint();
    for h in &hosts {
        let line = o.host_line(&h.name);
        assert!(
            line.contains("host key is not in") && line.contains(&fp),
            "{line}"
        );
        assert!(line.contains("--accept-new-host-keys"), "{line}");
    }
    assert!(case.marks_ending(".ran").is_empty(), "nothing ran");
    assert_eq!(sshd.logins(), 0, "no login to an unverified host");

    // Twelve hosts accepted at once: twelve whole lines, one per address.
    let o = case.run(&["--accept-new-host-keys"]);
    assert_eq!(o.code, 0, "{o}");
    let kh = std::fs::read_to_string(&case.known_hosts).expect("known_hosts");
    assert_eq!(kh.lines().count(), 12, "{kh}");
    for a in sshd.addrs() {
        let entry = format!("[{a}]:{}", sshd.port());
        assert_eq!(
            kh.lines().filter(|l| l.contains(&entry)).count(),
            1,
            "{entry}: {kh}"
        );
    }
    // OpenSSH itself reads every appended line as this host's key.
    for a in sshd.addrs() {
        let out = Command::new("ssh-keygen")
            .arg("-F")
            .arg(format!("[{a}]:{}", sshd.port()))
            .arg("-f")
            .arg(&case.known_hosts)
            .output()
            .expect("ssh-keygen -F");
        let found = String::from_utf8_lossy(&out.stdout);
        assert!(found.contains(&sshd.host_key()), "{a}: {found}");
    }
    assert_eq!(case.marks_ending(".ran").len(), 12);

    // The appended lines are what a later run trusts.
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
}

#[test]
fn changed_host_key_fails_loudly_even_with_accept_new() {
    let case = Case::new();
    let real = Sshd::start(&case.keys, 1);
    let other = Sshd::start(&case.keys, 1);
    // known_hosts says `real`'s address has `other`'s key.
    std::fs::write(
        &case.known_hosts,
        format!("[{}]:{} {}\n", real.addr(), real.port(), other.host_key()),
    )
    .expect("known_hosts");
    case.inventory(&hosts_on(&real, "h", 1));
    case.playbook(&one_run(&case));
    for args in [&[][..], &["--accept-new-host-keys"][..]] {
        let o = case.run(args);
        assert_eq!(o.code, 1, "{args:?}\n{o}");
        let line = o.host_line("h01");
        assert!(line.starts_with("FAILED"), "{o}");
        assert!(
            line.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
            "{line}"
        );
        assert!(line.contains(&real.fingerprint()), "{line}");
        assert!(line.contains(&other.fingerprint()), "{line}");
    }
    let kh = std::fs::read_to_string(&case.known_hosts).expect("known_hosts");
    assert_eq!(
        kh.lines().count(),
        1,
        "a changed key is never appended: {kh}"
    );
    assert!(!case.has_mark("h01.ran"));
    assert_eq!(real.logins(), 0);

    // `--known-hosts` overrides the inventory's file.
    let right = case.write("right_known_hosts", &real.known_hosts_lines());
    let right = right.display().to_string();
    let o = case.run(&["--known-hosts", &right]);
    assert_eq!(o.code, 0, "{o}");
    assert!(case.has_mark("h01.ran"));
}

#[test]
fn failed_auth_names_the_identity_it_tried() {
    let mut case = Case::new();
    let sshd = Sshd::start(&case.keys, 1);
    case.trust(&[&sshd]);
    // A key the sshd does not authorize.
    let stranger = ClientKeys::new();
    case.identity = stranger.key();
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&one_run(&case));
    let o = case.run(&[]);
    assert_eq!(o.code, 1, "{o}");
    let line = o.host_line("h01");
    assert!(line.contains("authentication failed"), "{line}");
    assert!(
        line.contains(&stranger.key().display().to_string()),
        "names the key it tried: {line}"
    );
    assert!(!case.has_mark("h01.ran"));

    // `--identity` adds a key ahead of the inventory's.
    let good = case.keys.key().display().to_string();
    let o = case.run(&["--identity", &good]);
    assert_eq!(o.code, 0, "{o}");
    assert!(case.has_mark("h01.ran"));
}

// ---------------------------------------------------------------- 3. unreachable

fn unreachable_playbook(case: &Case, on_unreachable: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: all
    select: {{ dc: test }}
    parallel: 4
    connect_timeout: 1s
    on_unreachable: {on_unreachable}
    steps:
      - run: 'touch {marks}/{{name}}.ran'
"#,
        marks = case.marks()
    )
}

#[test]
fn refused_and_black_holed_hosts_fail_within_connect_timeout_or_are_skipped() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 1);
    case.trust(&[&sshd]);
    // Accepts TCP (the kernel's backlog) but never speaks SSH: a hung host.
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_port = hole.local_addr().expect("addr").port();
    let syn_hole = SynHole::new();
    let mut hosts = hosts_on(&sshd, "good", 1);
    hosts.push(H::new("refused", "127.0.0.1", closed_port()));
    hosts.push(H::new("holed", "127.0.0.1", hole_port));
    hosts.push(H::new("dropped", "127.0.0.1", syn_hole.port));
    case.inventory(&hosts);

    // Default: unreachable hosts are failures and spend the budget (0).
    case.playbook(&unreachable_playbook(&case, "fail"));
    let o = case.run(&[]);
    assert_eq!(o.code, 3, "budget 0 exceeded\n{o}");
    let refused = o.host_line("refused");
    assert!(
        refused.starts_with("FAILED") && refused.contains("refused"),
        "{refused}"
    );
    let holed = o.host_line("holed");
    assert!(
        holed.starts_with("FAILED") && holed.contains("not finished within 1s"),
        "{holed}"
    );
    let dropped = o.host_line("dropped");
    assert!(
        dropped.starts_with("FAILED") && dropped.contains("no TCP connection to 127.0.0.1"),
        "{dropped}"
    );
    assert!(dropped.contains("within 1s"), "{dropped}");

    // `on_unreachable: skip`: set aside, reported, and the budget is untouched.
    std::fs::remove_file(case.mark("good01.ran")).ok();
    case.playbook(&unreachable_playbook(&case, "skip"));
    let o = case.run(&[]);
    assert_eq!(o.code, 1, "skipped hosts are not success\n{o}");
    assert!(o.host_line("good01").starts_with("ok"), "{o}");
    for h in ["refused", "holed", "dropped"] {
        let line = o.host_line(h);
        assert!(
            line.starts_with("skipped") && line.contains("unreachable"),
            "{line}"
        );
    }
    assert!(
        o.stdout
            .contains("finished with failures inside the budgets"),
        "{o}"
    );
    assert!(
        !o.stdout.contains("ABORTED"),
        "the budget was not spent: {o}"
    );
    assert!(case.has_mark("good01.ran"));
    drop(hole);
}

/// Regression: the last poll ran at the deadline with what little time was
/// left, and its "SSH handshake not finished within 1ms" replaced the real
/// reason; a host with an unknown key was then taken for unreachable and
/// skipped.
#[test]
fn wait_ssh_reports_the_real_failure_not_a_last_instant_timeout() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 1);
    // known_hosts stays empty: sshd's key is unknown.
    case.inventory(&[
        H::new("refused", "127.0.0.1", closed_port()),
        H::new("stranger", &sshd.addr(), sshd.port()),
    ]);
    case.playbook(
        r#"version: 1
stages:
  - name: wait
    select: { dc: test }
    parallel: 2
    on_unreachable: skip
    steps:
      - wait_ssh: { timeout: 3s }
"#,
    );
    let o = case.run(&[]);
    assert_eq!(
        o.code, 3,
        "an unknown key is a failure, not unreachable\n{o}"
    );
    let line = o.host_line("refused");
    assert!(line.starts_with("skipped"), "{o}");
    assert!(
        line.contains("did not answer SSH within 3s") && line.contains("Connection refused"),
        "{line}"
    );
    let line = o.host_line("stranger");
    assert!(line.starts_with("FAILED"), "{o}");
    assert!(
        line.contains("did not answer SSH within 3s") && line.contains("host key is not in"),
        "{line}"
    );
}

#[test]
fn a_host_dropping_its_connection_mid_command_fails_that_host() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 2);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&format!(
        r#"version: 1
stages:
  - name: all
    select: {{ dc: test }}
    parallel: 2
    max_failures: 100%
    steps:
      - run: 'touch {marks}/{{name}}.start; sleep 30; touch {marks}/{{name}}.end'
"#,
        marks = case.marks()
    ));
    let run = Running::start(case.command("run", &["--yes"]));
    wait_for("both hosts in flight", Duration::from_secs(20), || {
        case.marks_ending(".start").len() == 2
    });
    // Like a host that crashes: its sshd processes (and the command) die.
    assert!(sshd.drop_connections() > 0);
    let o = run.wait(Duration::from_secs(25));
    assert_eq!(o.code, 1, "{o}");
    for h in ["h01", "h02"] {
        let line = o.host_line(h);
        assert!(
            line.starts_with("FAILED")
                && line.contains("connection closed before the command finished"),
            "{line}"
        );
    }
    assert!(case.marks_ending(".end").is_empty());
}

// ---------------------------------------------------------------- 4. health checks

/// A tiny HTTP server on a thread: `/ok` answers 200 "status: healthy",
/// `/starting` 200 "status: starting", anything else 503. Stops on Drop.
struct HttpServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    fn start() -> HttpServer {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut sock, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = sock.set_nonblocking(false);
                let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() {
                    match sock.read(&mut buf[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /ok ") {
                    ("200 OK", "status: healthy")
                } else if req.starts_with("GET /starting ") {
                    ("200 OK", "status: starting")
                } else {
                    ("503 Service Unavailable", "status: down")
                };
                let _ = write!(
                    sock,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        HttpServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn tcp_and_http_health_checks_pass_and_fail() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 1);
    case.trust(&[&sshd]);
    let addr = sshd.addr();
    // A listener on the host's own address: `tcp: PORT` probes the host.
    let open = TcpListener::bind((addr.as_str(), 0)).expect("bind");
    let open_port = open.local_addr().expect("addr").port();
    let http = HttpServer::start();
    let port = sshd.port();
    let hosts: Vec<H> = ["pass", "tcpfail", "status", "body", "sshfail"]
        .iter()
        .map(|c| H::new(&format!("hc-{c}"), &addr, port).label("check", c))
        .collect();
    case.inventory(&hosts);
    let closed = closed_port();
    let hp = http.port;
    case.playbook(&format!(
        r#"version: 1
defaults:
  parallel: 5
  max_failures: 100%
  connect_timeout: 2s
stages:
  - name: pass
    select: {{ check: pass }}
    steps:
      - health:
          checks:
            - {{ tcp: {open_port} }}
            - {{ http: "http://127.0.0.1:{hp}/ok", status: 200, body: healthy }}
            - {{ ssh: "test -d /" }}
          timeout: 2s
          interval: 200ms
  - name: tcpfail
    select: {{ check: tcpfail }}
    steps:
      - health: {{ checks: [ {{ tcp: {closed} }} ], timeout: 1s, interval: 200ms }}
  - name: status
    select: {{ check: status }}
    steps:
      - health: {{ checks: [ {{ http: "http://127.0.0.1:{hp}/down" }} ], timeout: 1s, interval: 200ms }}
  - name: body
    select: {{ check: body }}
    steps:
      - health: {{ checks: [ {{ http: "http://127.0.0.1:{hp}/starting", body: healthy }} ], timeout: 1s, interval: 200ms }}
  - name: sshfail
    select: {{ check: sshfail }}
    steps:
      - health: {{ checks: [ {{ tcp: {open_port} }}, {{ ssh: "echo not yet; exit 3" }} ], timeout: 1s, interval: 200ms }}
"#
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.host_line("hc-pass").starts_with("ok"), "{o}");
    let expect = [
        (
            "hc-tcpfail",
            format!("tcp {addr}:{closed}: Connection refused"),
        ),
        ("hc-status", "status 503, expected 200".to_string()),
        ("hc-body", "does not contain \"healthy\"".to_string()),
        ("hc-sshfail", "exited with 3".to_string()),
    ];
    for (h, why) in expect {
        let line = o.host_line(h);
        assert!(line.starts_with("FAILED"), "{o}");
        assert!(
            line.contains("health checks did not pass within 1s") && line.contains(&why),
            "{h}: want {why:?}: {line}"
        );
    }
    // The target is named once, not once per layer.
    assert_eq!(o.host_line("hc-status").matches("/down").count(), 1, "{o}");
    drop(open);
}

/// Regression: an `ssh:` health check connected with the stage's whole
/// `connect_timeout`, so a silent host held the step past its own timeout.
#[test]
fn ssh_health_check_on_a_silent_host_stops_at_the_health_timeout() {
    let case = Case::new();
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = hole.local_addr().expect("addr").port();
    case.inventory(&[H::new("silent", "127.0.0.1", port)]);
    case.playbook(
        r#"version: 1
stages:
  - name: check
    select: { dc: test }
    connect_timeout: 20s
    steps:
      - health: { checks: [ { ssh: "true" } ], timeout: 1s, interval: 200ms }
"#,
    );
    let o = case.run(&[]);
    assert_eq!(o.code, 3, "{o}");
    let line = o.host_line("silent");
    assert!(
        line.contains("health checks did not pass within 1s"),
        "{line}"
    );
    assert!(
        !line.contains("within 20s"),
        "the connect outlived the check: {line}"
    );
    drop(hole);
}

// ---------------------------------------------------------------- 5. failure budget

#[test]
fn failure_budget_stops_the_stage_and_its_dependants_never_start() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 8);
    case.trust(&[&sshd]);
    let hosts: Vec<H> = hosts_on(&sshd, "h", 1)
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let role = if i < 5 { "first" } else { "second" };
            H {
                name: format!("{role}-{}", h.name),
                ..h
            }
            .label("role", role)
        })
        .collect();
    case.inventory(&hosts);
    case.playbook(&format!(
        r#"version: 1
stages:
  - name: first
    select: {{ role: first }}
    parallel: 1
    max_failures: 1
    steps:
      - run: 'touch {marks}/{{name}}.start; case {{name}} in first-h01|first-h02) exit 1;; esac'
  - name: second
    after: [first]
    select: {{ role: second }}
    parallel: 3
    steps:
      - run: 'touch {marks}/{{name}}.start'
"#,
        marks = case.marks()
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 3, "{o}");
    // One at a time: the two failures exceed a budget of 1; nothing after them starts.
    assert_eq!(
        case.marks_ending(".start"),
        ["first-h01.start", "first-h02.start"],
        "{o}"
    );
    for h in [
        "first-h03",
        "first-h04",
        "first-h05",
        "second-h06",
        "second-h07",
        "second-h08",
    ] {
        assert!(!case.has_mark(&format!("{h}.start")), "{h} ran\n{o}");
        assert!(!o.stdout.contains(h), "{h} reported\n{o}");
    }
    assert!(o.stdout.contains("failure budget exceeded"), "{o}");
    assert!(
        o.stdout
            .contains("not started: `first` did not finish inside its budget"),
        "{o}"
    );
    assert!(o.stdout.contains("ABORTED"), "{o}");
}

// ---------------------------------------------------------------- 6. limits

/// `(start, end)` stamps each host's command wrote, in `hosts` order.
fn spans(case: &Case, hosts: &[H]) -> Vec<(f64, f64)> {
    hosts
        .iter()
        .map(|h| {
            (
                stamp(&case.mark(&format!("{}.start", h.name))),
                stamp(&case.mark(&format!("{}.end", h.name))),
            )
        })
        .collect()
}

fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn max_unavailable_keeps_one_host_per_rack_in_flight_across_stages() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 12);
    case.trust(&[&sshd]);
    // Two independent stages (they run at once) over the same three racks.
    let hosts: Vec<H> = hosts_on(&sshd, "h", 1)
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            h.label("rack", &format!("r{}", i % 3))
                .label("role", if i < 6 { "a" } else { "b" })
        })
        .collect();
    case.inventory(&hosts);
    let stage = |name: &str| {
        format!(
            r#"  - name: {name}
    select: {{ role: {name} }}
    parallel: 6
    max_unavailable: {{ rack: 1 }}
    steps:
      - run: 'date +%s.%N > {marks}/{{name}}.start; sleep 0.5; date +%s.%N > {marks}/{{name}}.end'
"#,
            marks = case.marks()
        )
    };
    case.playbook(&format!(
        "version: 1\nstages:\n{}{}",
        stage("a"),
        stage("b")
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
    // Each command runs inside its host's time in flight, so overlapping
    // commands prove overlapping flights.
    let spans = spans(&case, &hosts);
    for i in 0..hosts.len() {
        for j in i + 1..hosts.len() {
            if hosts[i].labels[0] == hosts[j].labels[0] {
                assert!(
                    !overlap(spans[i], spans[j]),
                    "{} and {} ({:?}) in flight at once: {:?} {:?}",
                    hosts[i].name,
                    hosts[j].name,
                    hosts[i].labels[0],
                    spans[i],
                    spans[j]
                );
            }
        }
    }
    // Not serialised beyond the constraint: different racks overlap.
    let most = spans
        .iter()
        .map(|a| spans.iter().filter(|b| b.0 <= a.0 && a.0 < b.1).count())
        .max()
        .unwrap_or(0);
    assert!(
        (2..=3).contains(&most),
        "{most} in flight at once: {spans:?}"
    );
}

#[test]
fn canaries_go_first_and_alone() {
    let case = Case::new();
    // local steps: no SSH needed to see the order hosts start in.
    let hosts: Vec<H> = (1..=6)
        .map(|i| H::new(&format!("c{i}"), "127.0.0.1", 22))
        .collect();
    case.inventory(&hosts);
    case.playbook(&format!(
        r#"version: 1
stages:
  - name: canaried
    select: {{ dc: test }}
    parallel: 4
    canary: 2
    steps:
      - local: 'date +%s.%N > {marks}/$REKINDLE_HOST.start; sleep 0.4; date +%s.%N > {marks}/$REKINDLE_HOST.end'
"#,
        marks = case.marks()
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
    let spans = spans(&case, &hosts);
    // The plan's canaries are its first hosts: c1 then c2, each alone.
    assert!(
        spans[0].1 <= spans[1].0,
        "canaries one at a time: {spans:?}"
    );
    for rest in &spans[2..] {
        assert!(
            spans[1].1 <= rest.0,
            "the others wait for the canaries: {spans:?}"
        );
    }
    let most = spans[2..]
        .iter()
        .map(|a| {
            spans[2..]
                .iter()
                .filter(|b| b.0 <= a.0 && a.0 < b.1)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(most >= 2, "after the canaries, the window opens: {spans:?}");
}

/// Host start stamps are at least `gap` apart (4/s: 250 ms, burst of one).
/// Only lower bounds are asserted (a slow machine spaces them more), with
/// slack for the time a local shell takes to stamp.
fn assert_spaced(mut starts: Vec<f64>, gap: f64) {
    starts.sort_by(f64::total_cmp);
    let slack = 0.15;
    for (k, s) in starts.iter().enumerate() {
        assert!(
            s - starts[0] >= gap * k as f64 - slack,
            "start {k} came {:.3}s after the first: {starts:?}",
            s - starts[0]
        );
    }
    for w in starts.windows(2) {
        assert!(w[1] - w[0] >= gap - slack, "{starts:?}");
    }
}

/// When the engine started each host, in seconds since the run began, from
/// the journal's `host_started` records: the admission's own clock, so a
/// loaded machine's slow process start-up does not blur the spacing.
fn start_stamps(case: &Case, hosts: &[H]) -> Vec<f64> {
    let journal = support::journal_in(&case.path("rekindle-journal"));
    let text = std::fs::read_to_string(journal).expect("journal");
    let started: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "host_started")
        .filter_map(|v| {
            let name = v["host"]["name"].as_str()?.to_owned();
            Some((name, v["ms"].as_f64()? / 1000.0))
        })
        .collect();
    for h in hosts {
        assert!(
            case.has_mark(&format!("{}.start", h.name)),
            "{} ran its step",
            h.name
        );
    }
    assert_eq!(started.len(), hosts.len(), "{started:?}");
    started.into_iter().map(|(_, t)| t).collect()
}

#[test]
fn stage_rate_spaces_host_starts() {
    let case = Case::new();
    // local steps: no SSH; the journal's start times are the spacing.
    let hosts: Vec<H> = (1..=8)
        .map(|i| H::new(&format!("r{i}"), "127.0.0.1", 22))
        .collect();
    case.inventory(&hosts);
    case.playbook(&format!(
        r#"version: 1
stages:
  - name: paced
    select: {{ dc: test }}
    parallel: 8
    rate: 4/s
    steps:
      - local: 'date +%s.%N > {marks}/$REKINDLE_HOST.start'
"#,
        marks = case.marks()
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
    assert_spaced(start_stamps(&case, &hosts), 0.25);
}

#[test]
fn global_rate_spaces_starts_across_stages_running_at_once() {
    let case = Case::new();
    let hosts: Vec<H> = (1..=8)
        .map(|i| {
            H::new(&format!("g{i}"), "127.0.0.1", 22).label("role", if i <= 4 { "a" } else { "b" })
        })
        .collect();
    case.inventory(&hosts);
    let stage = |name: &str| {
        format!(
            "  - name: {name}\n    select: {{ role: {name} }}\n    parallel: 4\n    steps:\n      - local: 'date +%s.%N > {marks}/$REKINDLE_HOST.start'\n",
            marks = case.marks()
        )
    };
    case.playbook(&format!(
        "version: 1\nstages:\n{}{}",
        stage("a"),
        stage("b")
    ));
    let o = case.run(&["--rate", "4/s"]);
    assert_eq!(o.code, 0, "{o}");
    assert_spaced(start_stamps(&case, &hosts), 0.25);
}

/// A soft and hard `RLIMIT_NOFILE` of `n` for the child.
fn nofile_limit(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the hook.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn parallel_beyond_the_file_descriptor_limit_is_clamped_and_said() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 2);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&one_run(&case));
    let mut cmd = case.command("run", &["--yes", "--parallel", "5000"]);
    nofile_limit(&mut cmd, 400);
    let o = Running::start(cmd).wait(RUN_LIMIT);
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stderr.contains("--parallel 5000 clamped to") && o.stderr.contains("limit is 400"),
        "{o}"
    );
    assert_eq!(case.marks_ending(".ran").len(), 2);
}

#[test]
fn a_finished_host_is_replaced_at_once_not_after_the_slowest_of_a_batch() {
    let case = Case::new();
    let hosts: Vec<H> = (1..=5)
        .map(|i| H::new(&format!("w{i}"), "127.0.0.1", 22))
        .collect();
    case.inventory(&hosts);
    case.playbook(&format!(
        r#"version: 1
stages:
  - name: rolling
    select: {{ dc: test }}
    parallel: 2
    steps:
      - local: 'date +%s.%N > {marks}/$REKINDLE_HOST.start; case $REKINDLE_HOST in w1) sleep 2;; *) sleep 0.1;; esac; date +%s.%N > {marks}/$REKINDLE_HOST.end'
"#,
        marks = case.marks()
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
    let spans = spans(&case, &hosts);
    // w1 is slow; w2..w5 take turns in the second slot while it runs.
    for (h, span) in hosts.iter().zip(&spans).skip(2) {
        assert!(
            span.0 < spans[0].1,
            "{} waited for w1 to finish: {spans:?}",
            h.name
        );
    }
}

// ---------------------------------------------------------------- 7. Ctrl-C

fn slow_playbook(case: &Case, seconds: &str) -> String {
    format!(
        r#"version: 1
stages:
  - name: slow
    select: {{ dc: test }}
    parallel: 3
    steps:
      - run: 'echo $$ > {marks}/{{name}}.pid; touch {marks}/{{name}}.start; sleep {seconds}; touch {marks}/{{name}}.end'
  - name: later
    after: [slow]
    select: {{ dc: test }}
    steps:
      - run: 'touch {marks}/{{name}}.later'
"#,
        marks = case.marks()
    )
}

#[test]
fn first_ctrl_c_lets_hosts_in_flight_finish_and_starts_nothing_new() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 8);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&slow_playbook(&case, "3"));
    let run = Running::start(case.command("run", &["--yes"]));
    wait_for("three hosts in flight", Duration::from_secs(20), || {
        case.marks_ending(".start").len() >= 3
    });
    run.signal(libc::SIGINT);
    let o = run.wait(RUN_LIMIT);
    assert_eq!(o.code, 130, "{o}");
    let started = case.marks_ending(".start");
    assert_eq!(started.len(), 3, "nothing new starts after Ctrl-C\n{o}");
    for s in &started {
        let end = s.replace(".start", ".end");
        assert!(case.has_mark(&end), "{s}: in flight, so it finishes\n{o}");
    }
    assert_eq!(o.lines("ok").len(), 3, "{o}");
    assert!(case.marks_ending(".later").is_empty(), "{o}");
    assert!(o.stderr.contains("starting no new hosts"), "{o}");
    assert!(o.stdout.contains("interrupted (resumable)"), "{o}");
}

#[test]
fn second_ctrl_c_stops_at_once() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 4);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&slow_playbook(&case, "60"));
    let run = Running::start(case.command("run", &["--yes"]));
    wait_for("three hosts in flight", Duration::from_secs(20), || {
        case.marks_ending(".pid").len() >= 3
    });
    run.signal(libc::SIGINT);
    wait_for(
        "the first interrupt to be seen",
        Duration::from_secs(10),
        || run.stderr_so_far().contains("starting no new hosts"),
    );
    run.signal(libc::SIGINT);
    // Well before the 60 s commands could end.
    let o = run.wait(Duration::from_secs(20));
    // The remote commands outlive the dropped sessions; end them.
    for pidfile in case.marks_ending(".pid") {
        let pid: i32 = std::fs::read_to_string(case.mark(&pidfile))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0);
        if pid > 1 {
            // SAFETY: plain syscall; the pid is a shell this test's sshd ran.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    sshd.drop_connections();
    assert_eq!(o.code, 130, "{o}");
    assert!(case.marks_ending(".end").is_empty(), "{o}");
    assert_eq!(o.lines("interrupted").len(), 3, "{o}");
    assert!(o.stderr.contains("stopping now"), "{o}");
    assert!(o.host_line("h01").contains("during step 1 (run)"), "{o}");
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: only a process that still runs matters.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Regression: stopping at once dropped a `local` step's shell, but what the
/// shell had started kept running after rekindle exited.
#[test]
fn second_ctrl_c_kills_what_local_steps_started() {
    let case = Case::new();
    let hosts: Vec<H> = (1..=2)
        .map(|i| H::new(&format!("l{i}"), "127.0.0.1", 22))
        .collect();
    case.inventory(&hosts);
    case.playbook(&format!(
        r#"version: 1
stages:
  - name: local
    select: {{ dc: test }}
    parallel: 2
    steps:
      - local: 'sleep 60 & echo $! > {marks}/$REKINDLE_HOST.child; wait; touch {marks}/$REKINDLE_HOST.end'
"#,
        marks = case.marks()
    ));
    let run = Running::start(case.command("run", &["--yes"]));
    wait_for("both local commands", Duration::from_secs(20), || {
        case.marks_ending(".child").len() == 2
    });
    let pids: Vec<i32> = case
        .marks_ending(".child")
        .iter()
        .map(|f| {
            std::fs::read_to_string(case.mark(f))
                .unwrap_or_default()
                .trim()
                .parse()
                .unwrap_or(0)
        })
        .collect();
    assert!(pids.iter().all(|&p| p > 1 && alive(p)), "{pids:?}");
    run.signal(libc::SIGINT);
    wait_for("the first interrupt", Duration::from_secs(10), || {
        run.stderr_so_far().contains("starting no new hosts")
    });
    run.signal(libc::SIGINT);
    let o = run.wait(Duration::from_secs(20));
    let survivors = || {
        pids.iter()
            .copied()
            .filter(|&p| alive(p))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !survivors().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = survivors();
    for &p in &left {
        // SAFETY: plain syscall; clean up what this test's run started.
        unsafe {
            libc::kill(p, libc::SIGKILL);
        }
    }
    assert_eq!(o.code, 130, "{o}");
    assert!(
        left.is_empty(),
        "still running after rekindle exited: {left:?}\n{o}"
    );
}

// ---------------------------------------------------------------- 8. jump host

#[test]
fn jump_host_carries_every_target_over_one_login() {
    let case = Case::new();
    let jump = Sshd::start(&case.keys, 1);
    let targets = Sshd::start(&case.keys, 6);
    case.trust(&[&jump, &targets]);
    let hosts: Vec<H> = hosts_on(&targets, "t", 1);
    // The jump host is the datacenter's, as docs/design.md's inventory has it.
    let text = std::fs::read_to_string(case.inventory(&hosts)).expect("inventory");
    let text = text.replace(
        "  test:\n    hosts:\n",
        &format!("  test:\n    jump: \"{}\"\n    hosts:\n", jump.spec()),
    );
    case.write("inventory.yaml", &text);
    case.playbook(&format!(
        r#"version: 1
stages:
  - name: behind
    select: {{ dc: test }}
    parallel: 6
    steps:
      - run: 'echo $SSH_CONNECTION > {marks}/{{name}}.conn'
      - run: 'true'
"#,
        marks = case.marks()
    ));
    let o = case.run(&[]);
    assert_eq!(o.code, 0, "{o}");
    for h in &hosts {
        let conn = std::fs::read_to_string(case.mark(&format!("{}.conn", h.name)))
            .unwrap_or_else(|e| panic!("{}: {e}\n{o}", h.name));
        // SSH_CONNECTION = client_ip client_port server_ip server_port
        let server_ip = conn.split_whitespace().nth(2).unwrap_or_default();
        assert_eq!(server_ip, h.address, "{conn}");
    }
    assert_eq!(jump.logins(), 1, "one jump login:\n{}", jump.log());
    assert_eq!(targets.logins(), 6);
}

// ---------------------------------------------------------------- 9. selection, confirmation

#[test]
fn limit_narrows_the_hosts() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 4);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&one_run(&case));
    let o = case.run(&["--limit", "name=h0[23]"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(case.marks_ending(".ran"), ["h02.ran", "h03.ran"], "{o}");
    assert_eq!(o.lines("ok").len(), 2, "{o}");
}

/// Regression: `run` checked the playbook against the whole inventory and
/// then again in the plan, so each warning printed twice, once counting
/// hosts that `--limit` excludes.
#[test]
fn warnings_print_once_and_count_only_hosts_inside_the_limit() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 4);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&one_run(&case));
    let o = case.run(&["--limit", "name=h0[23]"]);
    assert_eq!(o.code, 0, "{o}");
    let warnings: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{o}");
    assert!(warnings[0].contains("lets all 2 hosts"), "{o}");
}

#[test]
fn an_empty_selection_is_refused() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 2);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&one_run(&case));
    let o = case.run(&["--limit", "name=nothing-*"]);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("match"), "says why: {o}");
    assert!(case.marks_ending(".ran").is_empty());
    assert_eq!(sshd.logins(), 0);
}

#[test]
fn off_a_terminal_without_yes_the_run_is_refused() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 2);
    case.trust(&[&sshd]);
    case.inventory(&hosts_on(&sshd, "h", 1));
    case.playbook(&one_run(&case));
    let o = Running::start(case.command("run", &[])).wait(RUN_LIMIT);
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("--yes"), "{o}");
    assert!(case.marks_ending(".ran").is_empty());
    assert_eq!(sshd.logins(), 0);
}

/// `rekindle run` on a terminal (a pty from util-linux `script`), answering
/// the confirmation prompt with `answer`.
fn run_on_a_terminal(case: &Case, answer: &str) -> Outcome {
    let line = format!(
        "{} run {} -i {} --ssh-config /dev/null",
        env!("CARGO_BIN_EXE_rekindle"),
        case.path("playbook.yaml").display(),
        case.path("inventory.yaml").display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(case.dir.path())
        .env_remove("SSH_AUTH_SOCK");
    Running::start_with_input(cmd, Some(answer)).wait(RUN_LIMIT)
}

#[test]
fn on_a_terminal_the_run_asks_first_and_only_yes_proceeds() {
    let case = Case::new();
    let hosts: Vec<H> = (1..=3)
        .map(|i| H::new(&format!("t{i}"), "127.0.0.1", 22))
        .collect();
    case.inventory(&hosts);
    case.playbook(&format!(
        r#"version: 1
name: asked
stages:
  - name: only
    select: {{ dc: test }}
    parallel: 3
    steps:
      - local: 'touch {marks}/$REKINDLE_HOST.ran'
"#,
        marks = case.marks()
    ));
    let o = run_on_a_terminal(&case, "n\n");
    assert_eq!(o.code, 2, "{o}");
    // A pty merges stderr into what `script` prints.
    assert!(o.stdout.contains("About to run `asked`"), "{o}");
    assert!(o.stdout.contains("only: 3 hosts"), "{o}");
    assert!(o.stdout.contains("Proceed? [y/N]"), "{o}");
    assert!(o.stdout.contains("not confirmed; nothing was done"), "{o}");
    assert!(case.marks_ending(".ran").is_empty(), "{o}");

    let o = run_on_a_terminal(&case, "y\n");
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(case.marks_ending(".ran").len(), 3, "{o}");
}

// ---------------------------------------------------------------- 10. plan --preflight

#[test]
fn preflight_reads_every_boot_id_and_changes_nothing() {
    let case = Case::new();
    let sshd = Sshd::start(&case.keys, 6);
    case.trust(&[&sshd]);
    let hosts = hosts_on(&sshd, "h", 1);
    case.inventory(&hosts);
    case.playbook(&one_run(&case));
    let o = case.preflight(&["--format", "json"]);
    assert_eq!(o.code, 0, "{o}");
    let doc: serde_json::Value = serde_json::from_str(&o.stdout).expect("json");
    // Still the plan...
    assert_eq!(doc["hosts_selected"], 6, "{o}");
    // ...and every host's boot id: these sshds run here, so it is ours.
    let ours = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    let pf = &doc["preflight"];
    assert_eq!(pf["checked"], 6, "{o}");
    assert_eq!(pf["problems"], 0, "{o}");
    for h in &hosts {
        assert_eq!(pf["boot_ids"][&h.name], ours.trim(), "{o}");
    }
    assert_eq!(sshd.logins(), 6);
    assert!(case.marks_ending(".ran").is_empty(), "no step ran");

    let o = case.preflight(&["--limit", "name=h0[12]"]);
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("stage all"), "the plan comes first: {o}");
    assert!(
        o.stdout
            .contains("Preflight: 2 hosts checked, 2 ok, 0 with problems"),
        "--limit narrows the preflight too: {o}"
    );
    assert_eq!(sshd.logins(), 8);

    let o = case.preflight(&[]);
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stdout
            .contains("Preflight: 6 hosts checked, 6 ok, 0 with problems"),
        "{o}"
    );
}

#[test]
fn preflight_groups_problems_by_kind() {
    let case = Case::new();
    let good = Sshd::start(&case.keys, 3);
    let stranger = Sshd::start(&case.keys, 2);
    // good: h01 trusted, h02 trusted but logs in as a user that does not
    // exist, h03 known with another key; stranger's hosts are not known.
    let (g, s) = (good.addrs(), stranger.addrs());
    std::fs::write(
        &case.known_hosts,
        format!(
            "[{}]:{p} {k}\n[{}]:{p} {k}\n[{}]:{p} {other}\n",
            g[0],
            g[1],
            g[2],
            p = good.port(),
            k = good.host_key(),
            other = stranger.host_key()
        ),
    )
    .expect("known_hosts");
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_port = hole.local_addr().expect("addr").port();
    let mut nobody = H::new("h02", &g[1].to_string(), good.port());
    nobody.user = Some("no-such-user-here".into());
    let hosts = vec![
        H::new("h01", &g[0].to_string(), good.port()),
        nobody,
        H::new("h03", &g[2].to_string(), good.port()),
        H::new("new1", &s[0].to_string(), stranger.port()),
        H::new("new2", &s[1].to_string(), stranger.port()),
        H::new("refused", "127.0.0.1", closed_port()),
        H::new("holed", "127.0.0.1", hole_port),
    ];
    case.inventory(&hosts);
    case.playbook(&one_run(&case).replace("parallel: 4", "parallel: 4\n    connect_timeout: 1s"));
    let o = case.preflight(&[]);
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout
            .contains("Preflight: 7 hosts checked, 1 ok, 6 with problems"),
        "{o}"
    );
    let section = o.stdout.split("Preflight:").nth(1).expect("section");
    let groups: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .map(str::trim)
        .collect();
    assert_eq!(
        groups,
        [
            "unknown host key (2):",
            "CHANGED host key (1):",
            "authentication failed (1):",
            "unreachable (2):",
        ],
        "{o}"
    );
    let line = |name: &str| {
        section
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}: {o}"))
    };
    assert!(line("new1").contains(&stranger.fingerprint()), "{o}");
    assert!(
        line("h03").contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{o}"
    );
    assert!(line("h02").contains("authentication failed"), "{o}");
    assert!(line("refused").contains("refused"), "{o}");
    assert!(line("holed").contains("within 1s"), "{o}");
    assert!(!section.contains("h01"), "h01 is fine: {o}");
    assert!(case.marks_ending(".ran").is_empty(), "no step ran");
    drop(hole);
}

/// Regression: on a full disk with only command steps the run exited 0
/// "every host done" while its journal held a fraction of the outcomes.
/// A file size limit (with SIGXFSZ ignored, as a full disk returns ENOSPC
/// rather than killing) stops the journal after a few records: the run
/// must exit 4 and name the hosts whose outcomes were lost.
#[test]
fn a_journal_that_cannot_record_every_outcome_does_not_exit_0() {
    use std::os::unix::process::CommandExt;
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: \"h[01-40]\"\n",
        "version: 1\nstages:\n  - name: s\n    select: { dc: dc }\n    parallel: 40\n    steps: [ { local: \"true\" } ]\n",
    );
    let mut cmd = support::rekindle_in(dir.path());
    cmd.args([
        "run",
        "pb.yaml",
        "-i",
        "inv.yaml",
        "--yes",
        "--journal",
        "j",
    ]);
    // SAFETY: between fork and exec only async-signal-safe calls
    // (signal, setrlimit), touching nothing but this child.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 4096,
                rlim_max: 4096,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("error: the journal could not record"), "{err}");
    assert!(err.contains("lost: the outcomes of"), "{err}");
}
