//! Shared test helpers: running the CLI and reading its output, and running
//! `rekindle sim` for the tests that need a simulated fleet.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The project root (for examples under inventories/ and playbooks/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the project root, as a string for command lines.
pub fn project_file(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

/// A `rekindle` command running from `dir` (so relative paths in output are stable).
/// Its per-user run registry is a fresh directory of its own, so tests running
/// side by side over simulators with the same host names do not refuse each
/// other; a test of the registry sets `XDG_STATE_HOME` itself.
pub fn rekindle_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekindle"));
    cmd.current_dir(dir);
    cmd.env_remove("SSH_AUTH_SOCK");
    cmd.env("XDG_STATE_HOME", fresh_state_dir());
    cmd
}

/// A new directory under the target's scratch space for one command's state.
fn fresh_state_dir() -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("state-{}-{n}", std::process::id()))
}

/// A `rekindle` command running from the project root.
/// A temporary directory holding `inv.yaml` and `pb.yaml` with these contents.
pub fn inputs(inventory: &str, playbook: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("inv.yaml"), inventory).expect("inventory");
    std::fs::write(dir.path().join("pb.yaml"), playbook).expect("playbook");
    dir
}

pub fn rekindle() -> Command {
    rekindle_in(&root())
}

/// Runs `cmd` and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("rekindle runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Kills (SIGKILL) and reaps a child process when dropped, however the test
/// ends, so nothing a test starts outlives it.
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// The child's pid; 0 once it has been reaped.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// The child itself (its pipes, `try_wait`), until [`Self::wait_for`] reaps it.
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child was already reaped")
    }

    /// Polls (bounded by `limit`) for the child to exit by itself. On exit it
    /// is reaped and no longer killed on drop; None if it still runs.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let step = Duration::from_millis(20);
        let deadline = Instant::now() + limit;
        let child = self.0.as_mut()?;
        for _ in 0..=limit.as_millis() / step.as_millis() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.0 = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(step);
        }
        None
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How long `rekindle sim` may take to print its ready line (every host listening).
const SIM_READY_WITHIN: Duration = Duration::from_secs(120);

/// A running `rekindle sim ... --out DIR` for one test. It owns the child
/// process (killed and reaped on drop: nothing is left running), the out
/// directory (a fresh tempdir, removed on drop, unless the caller gave a
/// path), and a thread draining the sim's stdout for its whole life (the sim
/// must never see its stdout closed: its next print would fail). Starting it
/// waits (bounded) for the first line and asserts it is the `ready: ` line;
/// later lines are read with [`SimProcess::next_line`], and
/// [`SimProcess::interrupt`] stops it gracefully to get its summary.
pub struct SimProcess {
    child: KillOnDrop,
    out: PathBuf,
    ready: String,
    lines: mpsc::Receiver<String>,
    /// Declared after `child`: removed only once the sim is dead.
    _tempdir: Option<tempfile::TempDir>,
}

/// Options for [`SimProcess`]: see [`SimProcess::builder`].
pub struct SimBuilder {
    args: Vec<String>,
    out: Option<PathBuf>,
    stderr_null: bool,
}

impl SimBuilder {
    /// The `--out` directory (the sim creates it); default: a fresh tempdir.
    pub fn out(mut self, dir: impl Into<PathBuf>) -> SimBuilder {
        self.out = Some(dir.into());
        self
    }

    /// Discards the sim's stderr (default: inherited, shown with the test output).
    pub fn stderr_null(mut self) -> SimBuilder {
        self.stderr_null = true;
        self
    }

    /// Starts the sim and waits (bounded) for its ready line.
    pub fn start(self) -> SimProcess {
        let (out, tempdir) = match self.out {
            Some(dir) => (dir, None),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                (t.path().to_owned(), Some(t))
            }
        };
        let mut cmd = rekindle();
        cmd.arg("sim")
            .args(&self.args)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(if self.stderr_null {
                Stdio::null()
            } else {
                Stdio::inherit()
            });
        let mut child = cmd.spawn().expect("rekindle sim starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        // Built first, so a panic below still kills the sim.
        let mut sim = SimProcess {
            child: KillOnDrop::new(child),
            out,
            ready: String::new(),
            lines,
            _tempdir: tempdir,
        };
        // Ends at EOF, when the sim exits; keeps draining even if nobody listens.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = sim
            .next_line(SIM_READY_WITHIN)
            .expect("sim prints a ready line");
        assert!(line.starts_with("ready: "), "first line: {line:?}");
        sim.ready = line;
        sim
    }
}

impl SimProcess {
    /// `rekindle sim <args> --out <a fresh tempdir>`, started and ready.
    pub fn start(args: &[&str]) -> SimProcess {
        SimProcess::builder(args).start()
    }

    /// `rekindle sim <args> --out ...`, with options, started by `.start()`.
    pub fn builder(args: &[&str]) -> SimBuilder {
        SimBuilder {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            out: None,
            stderr_null: false,
        }
    }

    /// The `ready: ...` line it printed first.
    pub fn ready_line(&self) -> &str {
        &self.ready
    }

    /// Its `--out` directory.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// A file in its out directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }

    /// Its status.json, as written (atomically) while it runs.
    pub fn status(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path("status.json")).expect("status.json exists");
        serde_json::from_str(&text).expect("status.json is whole JSON (written atomically)")
    }

    /// Polls status.json every 100 ms, for at most `within`, until `pred`
    /// holds; returns that value, or panics naming `what`.
    pub fn wait_status(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let step = Duration::from_millis(100);
        for _ in 0..=within.as_millis() / step.as_millis() {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            std::thread::sleep(step);
        }
        panic!("status.json never showed {what}: {}", self.status());
    }

    /// The next stdout line not yet read, waiting at most `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// SIGINT (so it shuts down and prints its summary), then the exit code
    /// and every stdout line not yet read, joined by newlines. Bounded: it
    /// must exit within 60 s and close stdout within 10 s after.
    pub fn interrupt(&mut self) -> (i32, String) {
        let pid = i32::try_from(self.child.pid()).expect("pid fits");
        assert!(pid > 0, "the sim is still running");
        // SAFETY: signalling our own child process, not yet reaped, by its pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let status = self
            .child
            .wait_for(Duration::from_secs(60))
            .expect("sim exits within 60 s of SIGINT");
        let code = status.code().unwrap_or(-1);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut rest = Vec::new();
        for _ in 0..100_000 {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return (code, rest.join("\n")),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        panic!(
            "sim stdout not closed 10 s after it exited (exit {code}): {}",
            rest.join("\n")
        );
    }
}

/// A running `rekindle sim` whose hosts have Redfish BMCs (`--powered-off`:
/// every one off; `--bmcs`: every one up), with its fleet in `fleet/` of a
/// tempdir that also holds the test's playbooks and journals. Each test
/// file adds its own helpers.
pub struct BmcSim {
    /// Declared first: killed before the tempdir is removed.
    pub sim: SimProcess,
    pub dir: tempfile::TempDir,
}

impl BmcSim {
    /// `sim --powered-off`. `base` picks the ports: SSH `base`, HTTP
    /// `base+1`, BMC `base+2`.
    pub fn start(base: u16, extra: &[&str]) -> BmcSim {
        BmcSim::start_as("--powered-off", "bmc: every host powered off", base, extra)
    }

    /// `sim --bmcs`: the hosts start up. Ports as [`BmcSim::start`].
    pub fn start_up(base: u16, extra: &[&str]) -> BmcSim {
        BmcSim::start_as("--bmcs", "bmc: every host up, with a BMC", base, extra)
    }

    fn start_as(mode: &str, says: &str, base: u16, extra: &[&str]) -> BmcSim {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = [base, base + 1, base + 2].map(|p| p.to_string());
        let mut args = vec![mode, "--boot-time", "500ms", "--port", &ports[0]];
        args.extend(["--http-port", &ports[1], "--bmc-port", &ports[2]]);
        args.extend_from_slice(extra);
        let sim = SimProcess::builder(&args)
            .out(dir.path().join("fleet"))
            .start();
        let bmc = sim
            .next_line(Duration::from_secs(10))
            .expect("sim prints its BMC line");
        assert!(bmc.starts_with(says), "{bmc}");
        BmcSim { sim, dir }
    }

    /// The fleet's status.json.
    pub fn status(&self) -> serde_json::Value {
        self.sim.status()
    }
}

/// The one journal (`*.jsonl`) in `dir`: one run, one journal.
pub fn journal_in(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("journal dir {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "one run, one journal: {files:?}");
    files[0].clone()
}
