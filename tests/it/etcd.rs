//! `--etcd` end to end: a real three-member etcd cluster (Debian's
//! `etcd-server`) on loopback ports with its own data directories, and the
//! simulator's real SSH hosts. Two rekindle processes on this machine stand
//! for two bastions (`--bastion NAME`). One test runs a single TLS member
//! that demands client certificates (made by rcgen for a private CA).
//! Everything started is stopped by PID.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{self, KillOnDrop, SimProcess};

/// One etcd member's process and how to start it again.
struct Member {
    name: String,
    client: u16,
    args: Vec<String>,
    /// etcd's own log (appended on each start), shown when it never becomes healthy.
    log: PathBuf,
    process: Option<KillOnDrop>,
}

/// Three members on `127.0.0.1:base..base+2` (peers on base+3..base+5), data in a tempdir.
struct Cluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(base: u16) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let initial: Vec<String> = (0..3)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", base + 3 + i))
            .collect();
        let members = (0..3u16)
            .map(|i| {
                let name = format!("m{i}");
                let client = base + i;
                let peer = base + 3 + i;
                let args = vec![
                    format!("--name={name}"),
                    format!("--data-dir={}", dir.path().join(&name).display()),
                    format!("--listen-client-urls=http://127.0.0.1:{client}"),
                    format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                    format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                    format!("--initial-cluster={}", initial.join(",")),
                    "--initial-cluster-state=new".into(),
                    format!("--initial-cluster-token=rekindle-test-{base}"),
                    // A loaded two-core machine: no spurious elections.
                    "--heartbeat-interval=200".into(),
                    "--election-timeout=2000".into(),
                ];
                Member {
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client,
                    args,
                    process: None,
                }
            })
            .collect();
        let mut cluster = Cluster { members, _dir: dir };
        for i in 0..3 {
            cluster.resume_member(i);
        }
        cluster.wait_healthy(&[0, 1, 2]);
        cluster
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` (SIGKILL, by PID).
    fn stop_member(&mut self, i: usize) {
        self.members[i].process = None;
    }

    /// Starts member `i` (again, on its data directory).
    fn resume_member(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let child = Command::new("etcd")
            .args(&m.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("etcd {} starts (is etcd-server installed?): {e}", m.name));
        m.process = Some(KillOnDrop::new(child));
    }

    /// Sends `sig` to member `i` (SIGSTOP: hung, not dead; it still accepts
    /// connections and never answers).
    fn signal_member(&self, i: usize, sig: i32) {
        let pid = self.members[i].process.as_ref().map_or(0, KillOnDrop::pid);
        let pid = i32::try_from(pid).expect("pid");
        assert!(pid > 0, "member {i} runs");
        // SAFETY: signalling a child this test started and still holds.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// The index of the member that leads the raft group now.
    fn leader(&self) -> usize {
        let status = |port: u16| -> Option<(u64, u64)> {
            let v: serde_json::Value =
                serde_json::from_str(&http(port, "POST", "/v3/maintenance/status", "{}")?).ok()?;
            let id = |x: &serde_json::Value| x.as_str()?.parse::<u64>().ok();
            Some((id(&v["header"]["member_id"])?, id(&v["leader"])?))
        };
        let mut found = None;
        assert!(
            poll(Duration::from_secs(30), || {
                found = self
                    .members
                    .iter()
                    .position(|m| status(m.client).is_some_and(|(me, leader)| me == leader));
                found.is_some()
            }),
            "no member says it leads"
        );
        found.expect("a leader")
    }

    /// The endpoints with member `first` first.
    fn endpoints_from(&self, first: usize) -> String {
        (0..3)
            .map(|k| format!("http://127.0.0.1:{}", self.members[(first + k) % 3].client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits (bounded) until each of `members` says it is healthy (has a leader).
    fn wait_healthy(&self, members: &[usize]) {
        for &i in members {
            let port = self.members[i].client;
            let ok = poll(Duration::from_secs(60), || {
                http(port, "GET", "/health", "").is_some_and(|b| b.contains("\"health\":\"true\""))
            });
            if !ok {
                let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "etcd member {i} never became healthy; the end of its log:\n{}",
                    tail.join("\n")
                );
            }
        }
    }

    fn get(&self, key: &str) -> Vec<serde_json::Value> {
        let body = format!(
            "{{\"key\":\"{}\",\"range_end\":\"{}\"}}",
            b64(key.as_bytes()),
            b64(&prefix_end(key.as_bytes()))
        );
        let answer = self
            .members
            .iter()
            .filter(|m| m.process.is_some())
            .find_map(|m| http(m.client, "POST", "/v3/kv/range", &body))
            .expect("a member answers");
        let v: serde_json::Value = serde_json::from_str(&answer).expect("json");
        v["kvs"].as_array().cloned().unwrap_or_default()
    }

    fn put(&self, key: &str, value: &str) {
        self.put_bytes(key, value.as_bytes());
    }

    fn put_bytes(&self, key: &str, value: &[u8]) {
        let body = format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            b64(key.as_bytes()),
            b64(value)
        );
        assert!(
            self.members
                .iter()
                .filter(|m| m.process.is_some())
                .any(|m| http(m.client, "POST", "/v3/kv/put", &body).is_some()),
            "put {key}"
        );
    }

    /// The values of every key under `prefix`, decoded; a gzipped one (a
    /// log segment) unpacked, as `etcdctl get ... | zcat` would.
    fn values(&self, prefix: &str) -> Vec<(String, String)> {
        self.get(prefix)
            .iter()
            .map(|kv| {
                let value = unb64(kv["value"].as_str().unwrap_or(""));
                let value = if value.starts_with(&[0x1f, 0x8b]) {
                    let mut text = String::new();
                    flate2::read::GzDecoder::new(&value[..])
                        .read_to_string(&mut text)
                        .expect("a gzipped segment");
                    text
                } else {
                    String::from_utf8_lossy(&value).into_owned()
                };
                (
                    String::from_utf8_lossy(&unb64(kv["key"].as_str().unwrap_or(""))).into_owned(),
                    value,
                )
            })
            .collect()
    }
}

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    let last = e.pop().expect("non-empty");
    e.push(last + 1);
    e
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let Some(v) = B64.iter().position(|&x| x == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A one-shot HTTP/1.0 request to 127.0.0.1:`port`; the body on a 2xx.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 2") || head.starts_with("HTTP/1.1 2")).then(|| body.to_owned())
}

/// Polls `cond` every 100 ms until it holds or `limit` has passed (a slow
/// `cond` counts against the limit), at most one try per step.
fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let step = Duration::from_millis(100);
    let deadline = std::time::Instant::now() + limit;
    for _ in 0..=limit.as_millis() / step.as_millis() {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(step);
    }
    false
}

/// A simulated fleet of `hosts` hosts on its own ports.
fn sim(dir: &Path, hosts: usize, port: u16, boot: &str) -> SimProcess {
    let (n, p, h) = (hosts.to_string(), port.to_string(), (port + 1).to_string());
    SimProcess::builder(&[
        "--hosts",
        &n,
        "--port",
        &p,
        "--http-port",
        &h,
        "--boot-time",
        boot,
    ])
    .out(dir)
    // Its stderr stays visible: a simulator that cannot start says why.
    .start()
}

/// Reboots per host, from the simulator's status.json.
fn reboots(sim: &SimProcess) -> Vec<(String, u64)> {
    let v = sim.status();
    let mut out: Vec<(String, u64)> = v["hosts"]
        .as_object()
        .expect("hosts")
        .iter()
        .map(|(k, h)| (k.clone(), h["reboots"].as_u64().unwrap_or(u64::MAX)))
        .collect();
    out.sort();
    out
}

fn total_reboots(sim: &SimProcess) -> u64 {
    reboots(sim).iter().map(|(_, n)| n).sum()
}

/// The status.json refresh period, and then some: counters read after it
/// include everything sent before.
const STATUS_SETTLE: Duration = Duration::from_millis(2500);

/// A test's working directory: sim, playbook, journals.
struct Case {
    work: tempfile::TempDir,
    sim: SimProcess,
    playbook: PathBuf,
}

impl Case {
    fn new(hosts: usize, port: u16, boot: &str, parallel: usize) -> Case {
        let work = tempfile::tempdir().expect("tempdir");
        let sim = sim(&work.path().join("sim"), hosts, port, boot);
        let playbook = work.path().join("reboot.yaml");
        std::fs::write(
            &playbook,
            format!(
                "version: 1\nname: etcd-e2e\ndefaults: {{ connect_timeout: 5s, command_timeout: 20s }}\n\
                 stages:\n  - name: all\n    select: {{ name: \"sim-*\" }}\n    parallel: {parallel}\n    steps:\n\
                 \x20     - reboot: {{ timeout: 90s }}\n      - run: \"true\"\n"
            ),
        )
        .expect("playbook");
        Case {
            work,
            sim,
            playbook,
        }
    }

    fn inventory(&self) -> PathBuf {
        self.sim.path("inventory.yaml")
    }

    /// `rekindle run` of the case's playbook with `--etcd` from `bastion`.
    fn run(&self, etcd: &str, bastion: &str, extra: &[&str]) -> Command {
        self.run_playbook(&self.playbook, etcd, bastion, extra)
    }

    fn run_playbook(&self, playbook: &Path, etcd: &str, bastion: &str, extra: &[&str]) -> Command {
        let mut c = support::rekindle_in(self.work.path());
        c.arg("run")
            .arg(playbook)
            .arg("-i")
            .arg(self.inventory())
            .args(["--yes", "--journal"])
            .arg(self.work.path().join(format!("journal-{bastion}")))
            .args(["--etcd", etcd, "--bastion", bastion])
            .args(extra);
        c
    }
}

/// A child whose stderr is collected as it comes.
struct Running {
    child: KillOnDrop,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rekindle starts");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let into = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .expect("stderr")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Running {
            child: KillOnDrop::new(child),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    fn wait_stderr(&self, what: &str, limit: Duration) {
        assert!(
            poll(limit, || self.stderr().contains(what)),
            "never said {what:?}: {}",
            self.stderr()
        );
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.pid()).expect("pid");
        assert!(pid > 0);
        // SAFETY: signalling our own child, not yet reaped, by its pid.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// The exit code, waiting at most `limit`.
    fn wait(mut self, limit: Duration) -> (i32, String) {
        let status = self.child.wait_for(limit);
        // The reader thread ends at EOF, just after the exit.
        std::thread::sleep(Duration::from_millis(200));
        let err = self.stderr();
        let status = status.unwrap_or_else(|| panic!("did not exit within {limit:?}: {err}"));
        (status.code().unwrap_or(-1), err)
    }
}

#[test]
fn etcd_unreachable_at_start_is_a_clear_error_and_nothing_runs() {
    let case = Case::new(2, 24_610, "0s", 2);
    // Nothing listens on this port.
    let mut cmd = case.run("http://127.0.0.1:23799", "b1", &[]);
    let started = Instant::now();
    let (code, _, err) = support::run(&mut cmd);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--etcd: etcd unreachable: http://127.0.0.1:23799"),
        "{err}"
    );
    // Refused before the journal or any host: no reboot was sent.
    assert!(
        !case.work.path().join("journal-b1").exists(),
        "no journal for a run that never started"
    );
    std::thread::sleep(STATUS_SETTLE);
    assert_eq!(total_reboots(&case.sim), 0);
    // A bound, not a timing claim: a refused connection is not waited out.
    assert!(started.elapsed() < Duration::from_secs(60));

    let (code, _, err) = support::run(case.run("127.0.0.1:2379", "b1", &[]).arg("-q"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not http(s)://host:port"), "{err}");
    let (code, _, err) = support::run(
        support::rekindle_in(case.work.path())
            .arg("run")
            .arg(&case.playbook)
            .arg("-i")
            .arg(case.inventory())
            .args(["--yes", "--etcd-ca", "/nonexistent/ca.pem"])
            .env_remove("REKINDLE_ETCD"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--etcd-ca needs --etcd"), "{err}");
    let (code, _, err) = support::run(&mut case.run(
        "http://127.0.0.1:23799",
        "b1",
        &["--etcd-ca", "/nonexistent/ca.pem"],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--etcd-ca /nonexistent/ca.pem"), "{err}");
}

#[test]
fn a_run_is_mirrored_into_etcd_and_a_colliding_run_from_another_bastion_is_refused() {
    let cluster = Cluster::start(23_710);
    let etcd = cluster.endpoints();
    let case = Case::new(6, 24_620, "2s", 2);
    let first = Running::start(case.run(&etcd, "bastion-a", &[]));
    first.wait_stderr("fencing token", Duration::from_secs(60));
    // Another bastion, the same hosts through a different playbook file.
    let other = case.work.path().join("other.yaml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&case.playbook)
            .expect("playbook")
            .replace("etcd-e2e", "other-plan"),
    )
    .expect("other playbook");
    let (code, _, err) = support::run(
        case.run_playbook(
            &other,
            &etcd,
            "bastion-b",
            &["--limit", "name=sim-0000[1-3]"],
        )
        .env("REKINDLE_BASTION", "the-flag-wins"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing to start: 3 selected hosts overlap live run")
            && err.contains("on bastion bastion-a")
            && err.contains("sim-00001, sim-00002, sim-00003"),
        "{err}"
    );
    let (code, err) = first.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(STATUS_SETTLE);
    assert!(
        reboots(&case.sim).iter().all(|(_, n)| *n == 1),
        "{:?}",
        reboots(&case.sim)
    );

    // The whole journal is in etcd, every record stamped with the token,
    // in gzipped segments.
    let segments: Vec<Vec<u8>> = cluster
        .get("/rekindle/run/")
        .iter()
        .filter(|kv| {
            unb64(kv["key"].as_str().unwrap_or(""))
                .windows(5)
                .any(|w| w == b"/log/")
        })
        .map(|kv| unb64(kv["value"].as_str().unwrap_or("")))
        .collect();
    assert!(!segments.is_empty());
    assert!(segments.iter().all(|v| v.starts_with(&[0x1f, 0x8b])));
    let log = cluster.values("/rekindle/run/");
    let records: Vec<serde_json::Value> = log
        .iter()
        .filter(|(k, _)| k.contains("/log/"))
        .flat_map(|(_, v)| {
            v.lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(records[0]["record"], "header");
    let token = records[0]["token"].as_i64().expect("token");
    assert!(records.iter().all(|r| r["token"].as_i64() == Some(token)));
    let issued = records
        .iter()
        .filter(|r| r["event"] == "reboot_issued")
        .count();
    assert_eq!(issued, 6);
    assert!(records.iter().any(|r| r["event"] == "run_finished"));
    // The inputs, whole, with the header's hash.
    assert!(
        log.iter()
            .any(|(k, v)| k.ends_with("/input/0/000000") && v.contains("etcd-e2e"))
    );
    // Finished and gone from the leaders: the lease was given up.
    assert!(cluster.get("/rekindle/leader/").is_empty());
    // Now the other run may go.
    let (code, _, err) = support::run(&mut case.run_playbook(
        &other,
        &etcd,
        "bastion-b",
        &["--limit", "name=sim-0000[1-3]", "-q"],
    ));
    assert_eq!(code, 0, "{err}");
}

/// The run id a driver printed (`etcd: run RUN_ID kept in etcd ...`).
fn run_id_of(driver: &Running) -> String {
    driver.wait_stderr("kept in etcd under", Duration::from_secs(60));
    let err = driver.stderr();
    let line = err
        .lines()
        .find(|l| l.starts_with("etcd: run "))
        .expect("the run line");
    line["etcd: run ".len()..]
        .split_whitespace()
        .next()
        .expect("run id")
        .to_owned()
}

/// `rekindle standby RUN_ID` from `bastion`.
fn standby(case: &Case, etcd: &str, run: &str, bastion: &str, ttl: &str) -> Running {
    let mut c = support::rekindle_in(case.work.path());
    c.args([
        "standby",
        run,
        "--etcd",
        etcd,
        "--bastion",
        bastion,
        "--etcd-ttl",
        ttl,
    ])
    .arg("--journal")
    .arg(case.work.path().join(format!("journal-{bastion}")));
    Running::start(c)
}

#[test]
fn a_driver_stopped_past_its_lease_is_fenced_the_standby_finishes_and_every_host_reboots_once() {
    let cluster = Cluster::start(23_730);
    let etcd = cluster.endpoints();
    let case = Case::new(6, 24_630, "2s", 1);
    let driver = Running::start(case.run(&etcd, "b1", &["--etcd-ttl", "3s"]));
    let run = run_id_of(&driver);
    let waiting = standby(&case, &etcd, &run, "b2", "3s");
    waiting.wait_stderr("standby: run ", Duration::from_secs(60));
    assert!(
        waiting.stderr().contains("is driven by") && waiting.stderr().contains("on bastion b1"),
        "{}",
        waiting.stderr()
    );
    assert!(
        poll(Duration::from_secs(60), || total_reboots(&case.sim) >= 1),
        "no reboot started"
    );
    driver.signal(libc::SIGSTOP);
    // Past the TTL: the lease expires and the standby takes the lead.
    waiting.wait_stderr("etcd: took over run", Duration::from_secs(60));
    driver.signal(libc::SIGCONT);
    let (code, err) = driver.wait(Duration::from_secs(60));
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("error: fenced: this driver (fencing token "),
        "{err}"
    );
    let (code, err) = waiting.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(STATUS_SETTLE);
    let after = reboots(&case.sim);
    assert!(after.iter().all(|(_, n)| *n == 1), "{after:?}");
}

/// Where in a reboot stage the driver dies, relative to its intents.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// As soon as the run is in etcd, before (or at) its first intent.
    Before,
    /// With some reboots issued and others not.
    During,
    /// Every reboot issued, hosts still booting.
    After,
}

/// kill -9 the driver at `at`; a standby (a second identical `run` for
/// `Before`, `standby` otherwise) takes over and finishes.
fn kill_9_then_the_standby_finishes(at: KillAt, etcd_base: u16, sim_port: u16) {
    let cluster = Cluster::start(etcd_base);
    let etcd = cluster.endpoints();
    const HOSTS: usize = 8;
    let case = Case::new(HOSTS, sim_port, "3s", 2);
    let driver = Running::start(case.run(&etcd, "b1", &["--etcd-ttl", "3s"]));
    let run = run_id_of(&driver);
    let waiting = match at {
        KillAt::Before => Running::start(case.run(&etcd, "b2", &["--etcd-ttl", "3s"])),
        _ => standby(&case, &etcd, &run, "b2", "3s"),
    };
    waiting.wait_stderr("waiting to take over", Duration::from_secs(60));
    match at {
        KillAt::Before => {}
        KillAt::During => assert!(
            poll(Duration::from_secs(60), || total_reboots(&case.sim) >= 3),
            "no reboots"
        ),
        KillAt::After => assert!(
            poll(Duration::from_secs(90), || total_reboots(&case.sim)
                >= HOSTS as u64),
            "not every reboot issued"
        ),
    }
    driver.signal(libc::SIGKILL);
    let _ = driver.wait(Duration::from_secs(10));
    let (code, err) = waiting.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "{at:?}: {err}");
    assert!(err.contains("etcd: took over run"), "{err}");
    if matches!(at, KillAt::During | KillAt::After) {
        // Hosts mid-reboot: their outcome is unknown, so the standby waits out the old lease.
        assert!(
            err.contains("with an action whose outcome is unknown; they wait"),
            "{err}"
        );
    }
    std::thread::sleep(STATUS_SETTLE);
    let after = reboots(&case.sim);
    assert!(
        after.iter().all(|(_, n)| *n == 1),
        "{at:?}: {after:?}\n{err}"
    );
    assert_eq!(after.len(), HOSTS);
}

#[test]
fn kill_9_before_the_first_intent_a_second_identical_run_takes_over() {
    kill_9_then_the_standby_finishes(KillAt::Before, 23_770, 24_670);
}

#[test]
fn kill_9_during_the_intents_the_standby_takes_over() {
    kill_9_then_the_standby_finishes(KillAt::During, 23_780, 24_680);
}

#[test]
fn kill_9_after_the_intents_the_standby_takes_over() {
    kill_9_then_the_standby_finishes(KillAt::After, 23_790, 24_690);
}

#[test]
fn a_stale_run_is_shown_by_status_and_taken_over_by_resume_from_another_bastion() {
    let cluster = Cluster::start(23_830);
    let etcd = cluster.endpoints();
    let case = Case::new(6, 24_700, "2s", 2);
    let driver = Running::start(case.run(&etcd, "b1", &["--etcd-ttl", "3s"]));
    let run = run_id_of(&driver);
    assert!(
        poll(Duration::from_secs(60), || total_reboots(&case.sim) >= 2),
        "no reboots"
    );
    let status =
        || support::run(support::rekindle_in(case.work.path()).args(["status", "--etcd", &etcd]));
    let (code, out, err) = status();
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(&run))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("etcd-e2e") && line.contains("@b1 pid ") && line.contains("live"),
        "{out}"
    );
    driver.signal(libc::SIGKILL);
    let _ = driver.wait(Duration::from_secs(10));
    // The lease runs out (3 s): the run is stale.
    assert!(
        poll(Duration::from_secs(30), || status()
            .1
            .contains("stale: no driver, no standby")),
        "{}",
        status().1
    );
    // Its local journal alone does not resume it: etcd holds the one lead.
    let local_journal = case
        .work
        .path()
        .join("journal-b1")
        .join(format!("{run}.jsonl"));
    let local_resume = |extra: &[&str]| {
        let mut c = support::rekindle_in(case.work.path());
        c.arg("resume")
            .arg(&local_journal)
            .args(["--yes", "-q", "--journal"])
            .arg(case.work.path().join("journal-b1"))
            .args(extra)
            .env_remove("REKINDLE_ETCD");
        support::run(&mut c)
    };
    let (code, _, err) = local_resume(&[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "run {run} is kept in etcd ({etcd}, under /rekindle/)"
        )) && err.contains(&format!("`rekindle resume {run} --etcd {etcd}`")),
        "{err}"
    );
    // `resume RUN --etcd` from bastion b2, its journal into `dir`.
    let take_over = |dir: &str| {
        support::run(
            support::rekindle_in(case.work.path())
                .args(["resume", &run, "--etcd", &etcd, "--bastion", "b2"])
                .args(["--yes", "-q", "--journal"])
                .arg(case.work.path().join(dir)),
        )
    };
    // A copy of an input that does not match the header's hash is refused.
    let key = format!("/rekindle/run/{run}/input/0/000000");
    let (_, original) = cluster
        .values(&key)
        .into_iter()
        .next()
        .expect("the playbook's first chunk");
    cluster.put(&key, "name: tampered\n");
    let (code, _, err) = take_over("journal-b2");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not match the header's SHA-256"), "{err}");
    cluster.put(&key, &original);
    // A log segment that does not read back stops a takeover (an intent in
    // it could be repeated) and shows in `status`, named.
    let segment = format!("/rekindle/run/{run}/log/000000000001");
    let raw = unb64(
        cluster.get(&segment)[0]["value"]
            .as_str()
            .expect("segment 1"),
    );
    cluster.put(&segment, "not a segment");
    let (code, _, err) = take_over("journal-b2");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("run {run}: log segment {segment}, line 1: "))
            && err.contains("cannot be taken over"),
        "{err}"
    );
    let (code, out, err) = status();
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("UNREADABLE in etcd"), "{out}");
    assert!(
        err.contains(&format!("error: run {run}: log segment")),
        "{err}"
    );
    cluster.put_bytes(&segment, &raw);
    // Still driven by nobody: a plain resume takes it, here into the dead
    // driver's journal directory, whose own journal is kept aside.
    let before = std::fs::read(&local_journal).expect("b1's journal");
    let (code, _, err) = take_over("journal-b1");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("inputs checked against the header's SHA-256")
            && err.contains("etcd: this bastion's own journal of the run is kept as "),
        "{err}"
    );
    let kept: Vec<PathBuf> = std::fs::read_dir(case.work.path().join("journal-b1"))
        .expect("journal dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".jsonl.before-takeover-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).expect("kept"), before);
    std::thread::sleep(STATUS_SETTLE);
    assert!(
        reboots(&case.sim).iter().all(|(_, n)| *n == 1),
        "{:?}",
        reboots(&case.sim)
    );
    let (_, out, _) = status();
    let line = out
        .lines()
        .find(|l| l.contains(&run))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("ended: every host done") || line.contains("ended"),
        "{out}"
    );
    assert!(line.contains(" 6 "), "{out}");

    // The report from etcd, in every format.
    let report = |format: &str| {
        support::run(
            support::rekindle_in(case.work.path())
                .args(["report", &run, "--etcd", &etcd, "--format", format]),
        )
    };
    let (code, out, err) = report("json");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let hosts = v["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 6, "{out}");
    assert!(hosts.iter().all(|h| h["status"] == "done"), "{out}");
    for format in ["text", "junit", "html", "hosts"] {
        let (code, out, err) = report(format);
        assert_eq!(code, 0, "{format}: {err}");
        assert!(!out.is_empty(), "{format}");
    }
    // Only with etcd gone for good: --without-etcd resumes from the local
    // journal alone (which never saw the takeover: the reason it is not the
    // default).
    let (code, _, err) = local_resume(&["--without-etcd"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "--without-etcd: resuming run {run} from this journal alone"
        )),
        "{err}"
    );

    let (code, _, err) = support::run(support::rekindle_in(case.work.path()).args([
        "report",
        "no-such-run",
        "--etcd",
        &etcd,
    ]));
    assert_eq!(code, 2);
    assert!(
        err.contains("no run no-such-run in etcd under /rekindle/"),
        "{err}"
    );
}

#[test]
fn losing_one_member_goes_on_and_losing_quorum_holds_every_action_until_it_returns() {
    let mut cluster = Cluster::start(23_750);
    let case = Case::new(8, 24_650, "1s", 1);
    let driver = Running::start(case.run(&cluster.endpoints(), "b1", &[]));
    assert!(
        poll(Duration::from_secs(60), || total_reboots(&case.sim) >= 1),
        "no reboot started"
    );
    cluster.stop_member(0);
    let at_one_down = total_reboots(&case.sim);
    assert!(
        poll(Duration::from_secs(60), || total_reboots(&case.sim)
            >= at_one_down + 2),
        "the run did not go on with one member down: {}",
        driver.stderr()
    );
    cluster.stop_member(1);
    driver.wait_stderr("etcd: cannot commit the journal", Duration::from_secs(60));
    std::thread::sleep(STATUS_SETTLE);
    let held = reboots(&case.sim);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reboots(&case.sim), held, "a reboot went out without quorum");
    cluster.resume_member(0);
    cluster.resume_member(1);
    let (code, err) = driver.wait(Duration::from_secs(180));
    std::thread::sleep(STATUS_SETTLE);
    let after = reboots(&case.sim);
    assert!(
        after.iter().all(|(_, n)| *n <= 1),
        "a host rebooted twice: {after:?}"
    );
    eprintln!("quorum test: the driver exited {code}");
    match code {
        0 => {
            assert!(err.contains("etcd: committing again"), "{err}");
            assert!(after.iter().all(|(_, n)| *n == 1), "{after:?}");
        }
        // Quorum came back after the lease's deadline: fenced, resumable.
        5 => assert!(err.contains("error: fenced"), "{err}"),
        other => panic!("exit {other}: {err}"),
    }
}

/// A private CA's files in `dir`: `ca.pem`, a server certificate for
/// 127.0.0.1 (`server.pem`/`.key`, also good for client auth: etcd 3.4's
/// JSON gateway dials its own gRPC server with it), a client certificate
/// (`client.pem`/`.key`) and a second CA that signed nothing (`other-ca.pem`).
fn pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).expect("CA");
        (cert, Issuer::new(p, key))
    };
    let (ca_cert, issuer) = ca("rekindle test CA");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("ca.pem");
    std::fs::write(dir.join("other-ca.pem"), ca("another CA").0.pem()).expect("other-ca.pem");
    let leaf = |name: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(sans).expect("params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = usages;
        let cert = p.signed_by(&key, &issuer).expect("signed");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("cert");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("key");
    };
    leaf(
        "server",
        vec!["127.0.0.1".into(), "localhost".into()],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    );
    leaf(
        "client",
        Vec::new(),
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
}

/// The TLS flags: a real etcd member that serves only TLS and demands a
/// client certificate signed by its CA. A run over the simulator is kept
/// there end to end (every reboot's intent committed through TLS); the
/// wrong CA or no client certificate is a clear error before anything runs.
#[test]
fn a_run_is_kept_in_an_etcd_that_demands_tls_client_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    pki(dir.path());
    let (client, peer, metrics) = (23_850u16, 23_851u16, 23_852u16);
    let file = |name: &str| dir.path().join(name).display().to_string();
    let _etcd = KillOnDrop::new(
        Command::new("etcd")
            .args([
                "--name=tls0".to_string(),
                format!("--data-dir={}", file("data")),
                format!("--listen-client-urls=https://127.0.0.1:{client}"),
                format!("--advertise-client-urls=https://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=tls0=http://127.0.0.1:{peer}"),
                format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"),
                format!("--cert-file={}", file("server.pem")),
                format!("--key-file={}", file("server.key")),
                format!("--trusted-ca-file={}", file("ca.pem")),
                "--client-cert-auth".into(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts (is etcd-server installed?)"),
    );
    assert!(
        poll(Duration::from_secs(60), || {
            http(metrics, "GET", "/health", "").is_some_and(|b| b.contains("\"health\":\"true\""))
        }),
        "the TLS etcd member never became healthy"
    );
    let etcd = format!("https://127.0.0.1:{client}");
    let (ca, other_ca) = (file("ca.pem"), file("other-ca.pem"));
    let (cert, key) = (file("client.pem"), file("client.key"));
    let case = Case::new(4, 24_720, "1s", 2);
    let status = |flags: &[&str]| {
        support::run(
            support::rekindle_in(case.work.path())
                .args(["status", "--etcd", &etcd])
                .args(flags),
        )
    };

    let (code, _, err) = status(&[
        "--etcd-ca",
        &other_ca,
        "--etcd-cert",
        &cert,
        "--etcd-key",
        &key,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("etcd unreachable: {etcd}"))
            && err.contains("is --etcd-ca the CA that signed the etcd members' certificates?"),
        "{err}"
    );
    let (code, _, err) = status(&["--etcd-ca", &ca]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("etcd unreachable: {etcd}"))
            && err
                .contains("does the cluster want a client certificate (--etcd-cert, --etcd-key)?"),
        "{err}"
    );

    let tls = ["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key];
    let driver = Running::start(case.run(&etcd, "b1", &tls));
    let (code, err) = driver.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("kept in etcd under /rekindle/"), "{err}");
    std::thread::sleep(STATUS_SETTLE);
    let counts = reboots(&case.sim);
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    assert_eq!(counts.len(), 4);

    let (code, out, err) = status(&tls);
    assert_eq!(code, 0, "{err}");
    let run = out
        .split_whitespace()
        .find(|w| w.contains("-etcd-e2e-"))
        .unwrap_or_else(|| panic!("{out}"))
        .to_owned();
    let (code, out, err) = support::run(
        support::rekindle_in(case.work.path())
            .args(["report", &run, "--etcd", &etcd, "--format", "json"])
            .args(tls),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let hosts = v["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 4, "{out}");
    assert!(hosts.iter().all(|h| h["status"] == "done"), "{out}");
}

// Issue 25: what an adversarial pass of etcd runs broke. Ports 25000-25099.

/// A playbook over every simulated host whose one step takes `secs`
/// seconds: the run waits in a long step, with nothing to commit.
fn long_step_book(dir: &Path, secs: u32) -> PathBuf {
    let path = dir.join("long.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: long-step\ndefaults: {{ connect_timeout: 5s, command_timeout: 60s }}\n\
             stages:\n  - name: all\n    select: {{ name: \"sim-*\" }}\n    parallel: 1\n    steps:\n\
             \x20     - run: \"sleep {secs}\"\n"
        ),
    )
    .expect("playbook");
    path
}

/// One member stopped (SIGSTOP: it accepts connections and never answers),
/// quorum intact, while the run waits in a long step: the driver's
/// keepalives and reads go on through the other two members. It was fenced
/// (exit 5, "no lease keepalive succeeded"): every keepalive began at the
/// hung member and was cut off before it reached another.
#[test]
fn one_stopped_etcd_member_does_not_fence_a_healthy_driver() {
    let cluster = Cluster::start(25_000);
    // A follower first in the driver's list: stopping the raft leader would
    // also cost an election, which is not what this test is about.
    let hung = (cluster.leader() + 1) % 3;
    let etcd = cluster.endpoints_from(hung);
    let case = Case::new(2, 25_010, "0s", 1);
    let book = long_step_book(case.work.path(), 6);
    let driver = Running::start(case.run_playbook(&book, &etcd, "b1", &["--etcd-ttl", "3s"]));
    driver.wait_stderr("fencing token", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    cluster.signal_member(hung, libc::SIGSTOP);
    let (code, err) = driver.wait(Duration::from_secs(120));
    cluster.signal_member(hung, libc::SIGCONT);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("fenced"), "{err}");
}

/// A standby without the BMC credentials a `remediate` plan needs is
/// refused when it starts (it used to count as one, then fail the takeover
/// with exit 2 and leave the run stale); one with them stands by.
#[test]
fn a_standby_without_the_bmc_credentials_the_run_needs_refuses_to_stand_by() {
    let cluster = Cluster::start(25_020);
    let etcd = cluster.endpoints();
    let fleet = support::BmcSim::start_up(25_030, &["--hosts", "2"]);
    let work = fleet.dir.path();
    let book = work.join("book.yaml");
    std::fs::write(
        &book,
        // Long enough (2 x 12 s) that the driver still runs when the third
        // standby, after two refused ones, starts waiting on a loaded machine.
        "version: 1\nname: bmc-standby\ndefaults: { connect_timeout: 5s, command_timeout: 60s }\nstages:\n  - name: all\n    select: { dc: sim }\n    parallel: 1\n    remediate: { power_cycle: 1 }\n    steps:\n      - run: \"sleep 12\"\n",
    )
    .expect("playbook");
    let credentials = fleet.sim.path("bmc-credentials");
    let become_file = work.join("become-password");
    std::fs::write(&become_file, "not-needed-by-this-plan\n").expect("password file");
    std::fs::set_permissions(
        &become_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod 600");
    let mut run = support::rekindle_in(work);
    run.arg("run")
        .arg(&book)
        .arg("-i")
        .arg(fleet.sim.path("inventory.yaml"))
        .args(["--yes", "--journal"])
        .arg(work.join("journal-b1"))
        .args(["--etcd", &etcd, "--bastion", "b1", "--bmc-credentials"])
        .arg(&credentials)
        .arg("--become-password-file")
        .arg(&become_file)
        .env_remove("REKINDLE_BMC_USER")
        .env_remove("REKINDLE_BMC_PASSWORD");
    let driver = Running::start(run);
    let run_id = run_id_of(&driver);
    let standby = |with_credentials: bool, with_become: bool| {
        let mut c = support::rekindle_in(work);
        c.args([
            "standby",
            &run_id,
            "--etcd",
            &etcd,
            "--bastion",
            "b2",
            "--journal",
        ])
        .arg(work.join("journal-b2"))
        .env_remove("REKINDLE_BMC_USER")
        .env_remove("REKINDLE_BMC_PASSWORD");
        if with_credentials {
            c.arg("--bmc-credentials").arg(&credentials);
        }
        if with_become {
            c.arg("--become-password-file").arg(&become_file);
        }
        c
    };
    let refused = format!("refusing to stand by for run {run_id}: a takeover would fail");
    let (code, _, err) = support::run(&mut standby(false, true));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&refused) && err.to_lowercase().contains("credentials"),
        "{err}"
    );
    // Whether sudo wants a password only the hosts know: the driver says
    // it was given a password file, so a standby without one is refused.
    let (code, _, err) = support::run(&mut standby(true, false));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&refused) && err.contains("was given --become-password-file"),
        "{err}"
    );
    assert!(
        cluster.get("/rekindle/standby/").is_empty(),
        "a refused standby is not announced"
    );
    let waiting = Running::start(standby(true, true));
    waiting.wait_stderr("waiting to take over", Duration::from_secs(60));
    assert_eq!(cluster.get("/rekindle/standby/").len(), 1);
    let (code, err) = driver.wait(Duration::from_secs(120));
    assert_eq!(code, 0, "{err}");
    let (code, err) = waiting.wait(Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to take over"), "{err}");
}

/// A driver paused (acknowledged in etcd) and then stopped (SIGSTOP) on its
/// bastion; a standby beside it on the same machine (one run registry):
///
/// - the standby takes the lead lawfully once the lease expires, and the
///   local registry gives way (it refused: the stopped driver is alive
///   here, so the run was left stale);
/// - the new driver starts paused: the pause lives in etcd (12 more hosts
///   started after such a takeover);
/// - `pause` and `continue` on the old bastion go through etcd and reach
///   the new driver (`pause` there exited 0 without reaching anyone).
#[test]
fn a_paused_run_taken_over_beside_its_stopped_driver_stays_paused_until_continued() {
    let cluster = Cluster::start(25_040);
    let etcd = cluster.endpoints();
    let case = Case::new(6, 25_050, "1s", 1);
    let registry = case.work.path().join("one-machine-state");
    let mut run = case.run(&etcd, "b1", &["--etcd-ttl", "3s"]);
    run.env("XDG_STATE_HOME", &registry);
    let driver = Running::start(run);
    let run_id = run_id_of(&driver);
    assert!(
        poll(Duration::from_secs(60), || total_reboots(&case.sim) >= 1),
        "no reboot started"
    );
    let control = |verb: &str| {
        support::run(
            support::rekindle_in(case.work.path())
                .args([verb, &run_id, "--journal"])
                .arg(case.work.path().join("journal-b1"))
                .env_remove("REKINDLE_ETCD"),
        )
    };
    let (code, _, err) = control("pause");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("paused run {run_id} (driven by ")) && err.contains("bastion b1"),
        "{err}"
    );
    assert_eq!(
        cluster.get(&format!("/rekindle/run/{run_id}/pause")).len(),
        1
    );
    // Hosts in flight finish; then nothing moves.
    std::thread::sleep(Duration::from_secs(4) + STATUS_SETTLE);
    let paused_at = reboots(&case.sim);
    driver.signal(libc::SIGSTOP);

    let mut c = support::rekindle_in(case.work.path());
    c.args(["standby", &run_id, "--etcd", &etcd, "--bastion", "b2"])
        .args(["--etcd-ttl", "3s", "--journal"])
        .arg(case.work.path().join("journal-b2"))
        .env("XDG_STATE_HOME", &registry);
    let waiting = Running::start(c);
    waiting.wait_stderr("etcd: took over run", Duration::from_secs(60));
    waiting.wait_stderr("gives way here too", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(4) + STATUS_SETTLE);
    assert_eq!(
        reboots(&case.sim),
        paused_at,
        "a paused run was taken over unpaused"
    );
    let journal_b2 = case
        .work
        .path()
        .join("journal-b2")
        .join(format!("{run_id}.jsonl"));
    let text = std::fs::read_to_string(&journal_b2).expect("the new driver's journal");
    let after_takeover = text
        .rsplit_once("\"record\":\"resumed\"")
        .expect("resumed")
        .1;
    assert!(
        after_takeover.contains("\"event\":\"run_paused\""),
        "{after_takeover}"
    );
    assert!(
        !after_takeover.contains("\"event\":\"host_started\""),
        "{after_takeover}"
    );

    // The old bastion's `pause` reads etcd: paused already, no false claim.
    let (code, _, err) = control("pause");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("run {run_id} is paused already (in etcd)")),
        "{err}"
    );
    let (code, _, err) = control("continue");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("continued run {run_id} (driven by ")) && err.contains("bastion b2"),
        "{err}"
    );
    let (code, err) = waiting.wait(Duration::from_secs(180));
    assert_eq!(code, 0, "{err}");
    driver.signal(libc::SIGCONT);
    let (code, err) = driver.wait(Duration::from_secs(60));
    assert_eq!(code, 5, "{err}");
    std::thread::sleep(STATUS_SETTLE);
    let after = reboots(&case.sim);
    assert!(after.iter().all(|(_, n)| *n == 1), "{after:?}");
}

/// The host list of a live run is kept in 256 KiB chunks cut by bytes; a
/// name that straddles a cut was read back as two fragments, and a second
/// run selecting only that host started while the live run held it.
#[test]
fn a_host_straddling_a_chunk_boundary_is_caught_by_the_collision_check() {
    const CHUNK: usize = 256 * 1024;
    let cluster = Cluster::start(25_080);
    let etcd = cluster.endpoints();
    let case = Case::new(2, 25_090, "0s", 1);
    // A live run elsewhere (a leader key on a lease), its hosts as the
    // driver writes them: joined by newlines, cut every 256 KiB, with
    // `sim-00001` across the cut.
    let port = cluster.members[0].client;
    let grant = http(port, "POST", "/v3/lease/grant", "{\"TTL\":\"120\"}").expect("lease");
    let lease: serde_json::Value = serde_json::from_str(&grant).expect("json");
    let lease = lease["ID"].as_str().expect("lease id").to_owned();
    let driver = "{\"run_id\":\"elsewhere\",\"plan\":\"other\",\"operator\":\"op\",\"bastion\":\"far\",\"pid\":1,\"since\":\"2026-12-01T00:00:00.000Z\"}";
    let body = format!(
        "{{\"key\":\"{}\",\"value\":\"{}\",\"lease\":\"{lease}\"}}",
        b64(b"/rekindle/leader/elsewhere"),
        b64(driver.as_bytes())
    );
    assert!(http(port, "POST", "/v3/kv/put", &body).is_some());
    let list = format!("{}\nsim-00001\nlast-host", "f".repeat(CHUNK - 5));
    let bytes = list.as_bytes();
    assert_eq!(
        &bytes[CHUNK - 4..CHUNK],
        b"sim-",
        "the cut falls inside the name"
    );
    cluster.put_bytes("/rekindle/run/elsewhere/hosts/000000", &bytes[..CHUNK]);
    cluster.put_bytes("/rekindle/run/elsewhere/hosts/000001", &bytes[CHUNK..]);
    let (code, _, err) = support::run(
        case.run(&etcd, "b1", &["--limit", "name=sim-00001", "-q"])
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing to start: 1 selected hosts overlap live run elsewhere")
            && err.contains("e.g. sim-00001"),
        "{err}"
    );
    std::thread::sleep(STATUS_SETTLE);
    assert_eq!(total_reboots(&case.sim), 0);
}
