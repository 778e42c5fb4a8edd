//! The war room end to end against the simulator's real SSH hosts: the live
//! status page in real headless Chromium, `/metrics` through a real
//! Prometheus text-format parser, `/api/status`, and refusals (other methods,
//! addresses on every interface), notifications, pause and SIGTERM. The
//! simulators and the status page listen on ports the kernel picks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, KillOnDrop, SimProcess};

/// A port free on the simulator's first address right now: other
/// developers' test runs on this machine use the fixed ports too.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.1.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.1.0.1")
}

/// A `rekindle sim` of `hosts` hosts booting in `boot`, with `extra`
/// arguments (faults), on SSH and HTTP ports the kernel says are free.
pub fn sim(hosts: usize, boot: &str, extra: &[&str]) -> SimProcess {
    let (n, p, h) = (
        hosts.to_string(),
        free_port().to_string(),
        free_port().to_string(),
    );
    let mut args = vec![
        "--hosts",
        &n,
        "--port",
        &p,
        "--http-port",
        &h,
        "--boot-time",
        boot,
    ];
    args.extend_from_slice(extra);
    SimProcess::builder(&args).stderr_null().start()
}

/// A playbook rebooting every simulated host, `parallel` at a time, within
/// `timeout`, tolerating `max_failures`.
pub fn reboot_book(dir: &Path, parallel: usize, timeout: &str, max_failures: usize) -> PathBuf {
    let path = dir.join("book.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: war-room\ndefaults: {{ connect_timeout: 5s, command_timeout: 20s }}\n\
             stages:\n  - name: all\n    select: {{ name: \"sim-*\" }}\n    parallel: {parallel}\n\
             \x20   max_failures: {max_failures}\n    steps:\n\
             \x20     - reboot: {{ timeout: {timeout} }}\n      - run: \"true\"\n"
        ),
    )
    .expect("write playbook");
    path
}

/// A `rekindle` process in the background: stderr collected as it comes,
/// killed on drop.
pub struct Bg {
    child: KillOnDrop,
    err: Arc<Mutex<String>>,
    out: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&text);
        }
    })
}

impl Bg {
    pub fn start(mut cmd: Command) -> Bg {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("rekindle starts");
        let (out, err) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().expect("stdout"), Arc::clone(&out)),
            collect(child.stderr.take().expect("stderr"), Arc::clone(&err)),
        ];
        Bg {
            child: KillOnDrop::new(child),
            err,
            out,
            readers,
        }
    }

    pub fn child_pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn stderr(&self) -> String {
        self.err.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (bounded) for stderr to hold `needle`; returns stderr so far.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        while start.elapsed() < limit {
            let e = self.stderr();
            if e.contains(needle) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("stderr never showed {needle:?}:\n{}", self.stderr());
    }

    /// The exit code, stdout and stderr, waiting at most `limit`.
    pub fn finish(mut self, limit: Duration) -> (i32, String, String) {
        let status = self.child.wait_for(limit).unwrap_or_else(|| {
            panic!("rekindle did not exit within {limit:?}:\n{}", self.stderr())
        });
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.out.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (status.code().unwrap_or(-1), out, self.stderr())
    }
}

/// One HTTP/1.1 request over loopback: (status code, body).
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the status page");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// `ADDR:PORT` from the `live: status page http://ADDR:PORT/` line.
pub fn live_addr(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("live: status page http://"))
        .unwrap_or_else(|| panic!("no live line:\n{stderr}"));
    line["live: status page http://".len()..]
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

pub fn status(addr: &str) -> Value {
    let (code, body) = http(addr, "GET", "/api/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("/api/status is JSON")
}

/// Polls `/api/status` (bounded) until `pred` holds.
pub fn wait_status(
    addr: &str,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    while start.elapsed() < limit {
        let s = status(addr);
        if pred(&s) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("/api/status never showed {what}: {}", status(addr));
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromium is not installed: scripts/test.sh installs Debian's `chromium`")
}

/// Headless Chromium on `url` with `what` (`--dump-dom` or
/// `--screenshot=FILE`): its stdout. Bounded: 60 s.
fn browse(url: &str, what: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tempfile::NamedTempFile::new().expect("stdout file");
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1100",
            what,
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdout(out.reopen().expect("reopen"))
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let exited = KillOnDrop::new(child).wait_for(Duration::from_secs(60));
    assert!(exited.is_some(), "chromium did not finish within 60 s");
    std::fs::read_to_string(out.path()).unwrap_or_default()
}

/// The number in `<b id="ID">N</b>` of a DOM dump.
fn dom_number(dom: &str, id: &str) -> usize {
    let at = dom
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in the DOM:\n{dom}"));
    let rest = &dom[at + id.len() + 6..];
    rest[..rest.find('<').unwrap_or(0)]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("#{id} is not a number: {rest:.40}"))
}

/// A screenshot of `url`, kept under the target directory for looking at.
fn screenshot(url: &str, name: &str) -> PathBuf {
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&keep);
    browse(url, &format!("--screenshot={}", keep.display()));
    let png = std::fs::read(&keep).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // A blank page compresses to a few KiB; tables, bars and a timeline do not.
    assert!(
        png.len() > 20_000,
        "screenshot nearly empty: {} bytes",
        png.len()
    );
    keep
}

const HOSTS: usize = 12;

fn run_cmd(work: &Path, sim: &SimProcess, book: &Path, extra: &[&str]) -> Command {
    let mut c = support::rekindle_in(work);
    c.arg("run")
        .arg(book)
        .arg("-i")
        .arg(sim.path("inventory.yaml"))
        .args(["--yes", "--journal"])
        .arg(work.join("journal"))
        .args(extra);
    c
}

#[test]
fn live_page_in_chromium_shows_bars_moving_and_more_hosts_done_later() {
    let work = tempfile::tempdir().unwrap();
    let sim = sim(HOSTS, "3s..4s", &[]);
    let book = reboot_book(work.path(), 2, "90s", 0);
    let run = Bg::start(run_cmd(work.path(), &sim, &book, &["--listen", "0"]));
    let err = run.wait_stderr("live: status page", Duration::from_secs(30));
    let addr = live_addr(&err);
    assert!(
        addr.starts_with("127.0.0.1:"),
        "loopback by default: {addr}"
    );
    let url = format!("http://{addr}/");
    wait_status(&addr, "a host in flight", Duration::from_secs(30), |s| {
        s["totals"]["in_flight"].as_u64() > Some(0)
    });

    let first = browse(&url, "--dump-dom");
    assert!(
        first.contains("class=\"bar\""),
        "stage bars drawn:\n{first}"
    );
    assert!(first.contains("<svg"), "timeline drawn:\n{first}");
    assert_eq!(dom_number(&first, "total-hosts"), HOSTS);
    let done_first = dom_number(&first, "total-done");
    assert!(done_first < HOSTS, "mid-run: {done_first} of {HOSTS} done");
    assert!(dom_number(&first, "total-in-flight") > 0);
    let mid = screenshot(&url, "live-page-mid.png");

    wait_status(&addr, "more hosts done", Duration::from_secs(60), |s| {
        s["totals"]["done"].as_u64().unwrap_or(0) as usize > done_first + 1
    });
    let later = browse(&url, "--dump-dom");
    let done_later = dom_number(&later, "total-done");
    assert!(
        done_later > done_first,
        "more hosts done later: {done_first} then {done_later}"
    );
    let later_shot = screenshot(&url, "live-page-later.png");
    eprintln!("screenshots: {} {}", mid.display(), later_shot.display());

    let (code, out, err) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out}\n{err}");
}

/// Two stages selecting the same hosts, neither waiting for the other: a
/// host is in one stage at a time, so `audit`'s hosts wait while `db`
/// reboots them, and the wait shows in the status API, on the page in
/// Chromium and on the progress line; then `audit` runs every host.
#[test]
fn hosts_busy_in_another_stage_show_as_waiting_on_the_page_and_the_progress_line() {
    let work = tempfile::tempdir().unwrap();
    let hosts = 4;
    // Boots longer than the progress line's 10 s, so one line falls inside them.
    let sim = sim(hosts, "12s..13s", &[]);
    let book = work.path().join("book.yaml");
    std::fs::write(
        &book,
        "version: 1\nname: overlap\ndefaults: { connect_timeout: 5s, command_timeout: 20s }\n\
         stages:\n  - name: db\n    select: { name: \"sim-*\" }\n    parallel: 4\n\
         \x20   steps: [ { reboot: { timeout: 90s } } ]\n\
         \x20 - name: audit\n    select: { name: \"sim-*\" }\n    parallel: 4\n\
         \x20   steps: [ { run: \"true\" } ]\n",
    )
    .unwrap();
    let run = Bg::start(run_cmd(work.path(), &sim, &book, &["--listen", "0"]));
    let addr = live_addr(&run.wait_stderr("live: status page", Duration::from_secs(30)));
    let held = wait_status(
        &addr,
        "audit waiting for db",
        Duration::from_secs(30),
        |s| s["stages"][1]["held"]["db"].as_u64() > Some(0),
    );
    assert_eq!(held["stages"][1]["name"], "audit", "{held}");
    assert_eq!(
        held["stages"][1]["in_flight"], 0,
        "no host in two stages: {held}"
    );
    assert_eq!(held["stages"][0]["status"], "running", "{held}");
    let dom = browse(&format!("http://{addr}/"), "--dump-dom");
    assert!(
        dom.contains("busy in db"),
        "the page shows the wait:\n{dom}"
    );
    let (code, out, err) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out}\n{err}");
    // Off a terminal the progress is a status line every 10 s, on stdout.
    assert!(
        out.lines().any(|l| l.contains("in flight")
            && l.contains("; audit waits for")
            && l.contains("busy in db")),
        "the progress line names the wait:\n{out}"
    );
    let r = support::run(
        support::rekindle_in(work.path())
            .arg("report")
            .arg(only_journal(&work.path().join("journal")))
            .args(["--format", "json"]),
    );
    assert_eq!(r.0, 0, "{}", r.2);
    let report: Value = serde_json::from_str(&r.1).expect("report JSON");
    for stage in ["db", "audit"] {
        let done = report["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .filter(|h| h["stage"] == stage && h["status"] == "done")
            .count();
        assert_eq!(done, hosts, "{stage}: {report}");
    }
}

/// The value of the one sample of `name` whose labels include `want`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    match found[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: not a plain value: {other:?}"),
    }
}

fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let (code, body) = http(addr, "GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text")
}

#[test]
fn metrics_parse_as_prometheus_text_and_agree_with_the_status_api() {
    let work = tempfile::tempdir().unwrap();
    // A third of the hosts ignore the reboot: they fail "did not reboot"
    // after the 8 s step timeout, inside the budget.
    let sim = sim(6, "2s..3s", &["--fail", "no_reboot=0.34"]);
    let book = reboot_book(work.path(), 2, "8s", 6);
    let run = Bg::start(run_cmd(
        work.path(),
        &sim,
        &book,
        &["--listen", "127.0.0.1:0"],
    ));
    let addr = live_addr(&run.wait_stderr("live: status page", Duration::from_secs(30)));

    // Mid-run: one host done (a step duration observed), some in flight.
    let s = wait_status(&addr, "a host done", Duration::from_secs(60), |s| {
        s["totals"]["done"].as_u64() > Some(0)
    });
    let m = scrape(&addr);
    let run_id = s["run_id"].as_str().expect("run id");
    assert!(run_id.contains("-war-room-"), "{run_id}");
    assert_eq!(sample(&m, "rekindle_run_info", &[("run_id", run_id)]), 1.0);
    let states = ["pending", "in_flight", "done", "failed", "skipped"];
    let total: f64 = states
        .iter()
        .map(|st| sample(&m, "rekindle_hosts", &[("stage", "all"), ("state", st)]))
        .sum();
    assert_eq!(total, 6.0, "every host in exactly one state");
    assert!(sample(&m, "rekindle_hosts", &[("stage", "all"), ("state", "done")]) >= 1.0);
    assert!(sample(&m, "rekindle_actions_total", &[("kind", "reboot")]) >= 1.0);
    assert_eq!(
        sample(&m, "rekindle_actions_total", &[("kind", "power_cycle")]),
        0.0
    );
    let reboot_steps = m
        .samples
        .iter()
        .find(|s| {
            s.metric == "rekindle_step_duration_seconds" && s.labels.get("kind") == Some("reboot")
        })
        .expect("reboot step durations");
    let prometheus_parse::Value::Histogram(buckets) = &reboot_steps.value else {
        panic!("step durations are a histogram: {reboot_steps:?}");
    };
    // A reboot of a host booting in 2..3 s takes at least 2 s.
    let at = |le: f64| buckets.iter().find(|b| b.less_than == le).map(|b| b.count);
    assert_eq!(at(1.0), Some(0.0), "{buckets:?}");
    assert!(at(f64::INFINITY) >= Some(1.0), "{buckets:?}");
    assert_eq!(
        m.docs.get("rekindle_hosts").map(String::is_empty),
        Some(false)
    );

    // Read-only: no other method, on any path.
    for (method, path) in [
        ("POST", "/"),
        ("PUT", "/metrics"),
        ("DELETE", "/api/status"),
    ] {
        let (code, body) = http(&addr, method, path);
        assert_eq!(code, 405, "{method} {path}: {body}");
    }
    assert_eq!(http(&addr, "GET", "/nope").0, 404);
    // Nothing secret: the sim's key paths and the environment stay out.
    let (_, page) = http(&addr, "GET", "/");
    let (_, api) = http(&addr, "GET", "/api/status");
    for text in [&page, &api] {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains("id_ed25519"), "{text}");
    }

    // The failures: counted by kind in the metrics, folded by cause in the API.
    let s = wait_status(&addr, "a failure", Duration::from_secs(60), |s| {
        s["totals"]["failed"].as_u64() > Some(0)
    });
    let m = scrape(&addr);
    let failed = s["totals"]["failed"].as_u64().unwrap_or(0) as f64;
    let counted = sample(
        &m,
        "rekindle_failures_total",
        &[
            ("stage", "all"),
            ("status", "failed"),
            ("kind", "did_not_reboot"),
            ("step", "reboot"),
        ],
    );
    // The scrape came after the status: it may have seen one more failure.
    assert!(
        counted >= failed,
        "{counted} failures counted, {failed} in the status"
    );
    let group = &s["failures"][0];
    assert_eq!(group["what"], "step 1 (reboot)", "{s}");
    assert!(
        group["reason"]
            .as_str()
            .unwrap_or("")
            .contains("did not reboot"),
        "{group}"
    );
    assert!(
        group["hosts"].as_str().unwrap_or("").starts_with("sim-"),
        "{group}"
    );

    let (code, out, err) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 1, "failures inside the budget: {out}\n{err}");
}

#[test]
fn listen_on_every_interface_or_a_bad_notify_url_is_refused_before_anything_runs() {
    let work = tempfile::tempdir().unwrap();
    let inv = work.path().join("inv.yaml");
    std::fs::write(
        &inv,
        "version: 1\ndatacenters:\n  dc1:\n    hosts:\n      - { name: a, address: 127.0.0.1, port: 1, labels: { role: app } }\n",
    )
    .unwrap();
    let book = work.path().join("book.yaml");
    std::fs::write(
        &book,
        "version: 1\nname: refuse\nstages:\n  - name: all\n    select: { role: app }\n    steps:\n      - run: \"true\"\n",
    )
    .unwrap();
    for (flag, addr, says) in [
        ("--listen", "0.0.0.0:8080", "every interface"),
        ("--listen", "[::]:8080", "every interface"),
        ("--listen", "localhost:8080", "host names are not accepted"),
        (
            "--notify",
            "ftp://127.0.0.1/x",
            "expected an http:// or https:// URL",
        ),
    ] {
        let (code, _, err) = support::run(
            support::rekindle_in(work.path())
                .arg("run")
                .arg(&book)
                .arg("-i")
                .arg(&inv)
                .args(["--yes", flag, addr, "--journal"])
                .arg(work.path().join("journal")),
        );
        assert_eq!(code, 2, "{addr}: {err}");
        assert!(err.contains(says), "{addr}: {err}");
        assert!(
            !work.path().join("journal").exists()
                || std::fs::read_dir(work.path().join("journal"))
                    .map(|d| d.count() == 0)
                    .unwrap_or(true),
            "no journal for a refused run"
        );
    }
}

/// How a test's webhook receiver answers.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    Error,
    /// Reads the request and never answers (until the test ends).
    Hang,
}

/// A loopback HTTP receiver: records every JSON body POSTed to it. Stops
/// (bounded) when dropped.
struct Receiver {
    addr: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn read_request(s: &mut TcpStream) -> Option<Value> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if raw.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    while raw.len() < head_end + len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    serde_json::from_slice(&raw[head_end..head_end + len]).ok()
}

impl Receiver {
    fn start(answer: Answer) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, st) = (Arc::clone(&bodies), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let stopped = || st.load(std::sync::atomic::Ordering::Relaxed);
            // Bounded: at most 2 minutes of serving.
            let until = Instant::now() + Duration::from_secs(120);
            let mut held = Vec::new();
            while !stopped() && Instant::now() < until {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let Some(body) = read_request(&mut s) else {
                    continue;
                };
                b.lock().unwrap_or_else(|p| p.into_inner()).push(body);
                match answer {
                    Answer::Ok => {
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                    }
                    Answer::Error => {
                        let _ = s.write_all(
                            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                    Answer::Hang => held.push(s),
                }
            }
        });
        Receiver {
            addr,
            bodies,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook/SECRET-TOKEN", self.addr)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn notify_posts_stage_and_run_messages_and_a_hung_or_failing_receiver_only_warns() {
    let work = tempfile::tempdir().unwrap();
    let sim = sim(2, "0s", &[]);
    let book = work.path().join("book.yaml");
    std::fs::write(
        &book,
        "version: 1\nname: notify\ndefaults: { connect_timeout: 5s, command_timeout: 20s }\nstages:\n\
         \x20 - name: first\n    select: { name: sim-00001 }\n    steps:\n      - run: \"true\"\n\
         \x20 - name: second\n    after: [first]\n    select: { name: sim-00002 }\n    steps:\n      - run: \"false\"\n",
    )
    .unwrap();
    let ok = Receiver::start(Answer::Ok);
    let failing = Receiver::start(Answer::Error);
    let hung = Receiver::start(Answer::Hang);
    // The good URL from a file (a webhook's secret stays off the command line).
    let list = work.path().join("hooks");
    std::fs::write(&list, format!("# the room\n{}\n", ok.url())).unwrap();
    let run = Bg::start(run_cmd(
        work.path(),
        &sim,
        &book,
        &[
            "--notify",
            &format!("@{}", list.display()),
            "--notify",
            &failing.url(),
            "--notify",
            &hung.url(),
        ],
    ));
    let (code, out, err) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 3, "the second stage aborts: {out}\n{err}");

    let got = ok.bodies();
    let events: Vec<&str> = got.iter().filter_map(|m| m["event"].as_str()).collect();
    assert_eq!(
        events,
        [
            "stage_started",
            "stage_finished",
            "stage_started",
            "stage_aborted",
            "run_finished"
        ],
        "{got:?}"
    );
    for m in &got {
        assert!(
            m["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("rekindle `notify`")),
            "{m}"
        );
        assert!(
            m["run_id"].as_str().is_some_and(|r| r.contains("notify")),
            "{m}"
        );
    }
    assert_eq!(got[1]["stage"], "first");
    assert_eq!(got[1]["done"], 1);
    assert_eq!(got[3]["stage"], "second");
    assert_eq!(got[3]["failed"], 1);
    assert!(
        got[3]["text"].as_str().unwrap_or("").contains("ABORTED"),
        "{}",
        got[3]
    );
    assert_eq!(got[4]["outcome"], "aborted");
    // The failing receiver got every message and answered 500 to each.
    assert_eq!(failing.bodies().len(), 5);
    assert!(
        err.contains(&format!(
            "warning: --notify http://{}/…: answered 500",
            failing.addr
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "warning: --notify http://{}/…: no answer within 5s",
            hung.addr
        )),
        "{err}"
    );
    assert!(
        err.contains("gave up on the messages still waiting"),
        "{err}"
    );
    assert!(
        !err.contains("SECRET-TOKEN"),
        "URL paths stay out of warnings: {err}"
    );
}

/// The run's only journal in `dir` (bounded wait for it to appear).
fn only_journal(dir: &Path) -> PathBuf {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default();
        if let [one] = files.as_slice() {
            return one.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no journal appeared in {}", dir.display());
}

fn total_reboots(sim: &SimProcess) -> u64 {
    sim.status()["total_reboots"]
        .as_u64()
        .expect("total_reboots")
}

fn reboots_per_host(sim: &SimProcess) -> Vec<u64> {
    sim.status()["hosts"]
        .as_object()
        .expect("hosts")
        .values()
        .map(|h| h["reboots"].as_u64().unwrap_or(u64::MAX))
        .collect()
}

#[test]
fn pause_starts_no_new_host_or_step_until_continue_then_the_run_finishes() {
    let work = tempfile::tempdir().unwrap();
    let hosts = 8;
    let sim = sim(hosts, "2s..3s", &[]);
    let book = reboot_book(work.path(), 2, "90s", 0);
    let run = Bg::start(run_cmd(work.path(), &sim, &book, &["--listen", "0"]));
    let addr = live_addr(&run.wait_stderr("live: status page", Duration::from_secs(30)));
    let journal = only_journal(&work.path().join("journal"));
    wait_status(&addr, "a reboot sent", Duration::from_secs(60), |s| {
        s["actions"]["reboot"].as_u64() > Some(0)
    });

    let (code, _, err) = support::run(
        support::rekindle_in(work.path())
            .arg("pause")
            .arg(&journal)
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("paused run "), "{err}");
    let at_pause = wait_status(&addr, "paused", Duration::from_secs(10), |s| {
        s["paused"] == true
    });
    assert_eq!(at_pause["state"], "paused");
    let pending = at_pause["totals"]["pending"].as_u64().expect("pending");
    assert!(pending > 0, "paused mid-run: {at_pause}");
    let in_flight = at_pause["totals"]["in_flight"].as_u64().expect("in flight");
    let sent = total_reboots(&sim);
    assert_eq!(sample(&scrape(&addr), "rekindle_run_paused", &[]), 1.0);

    // For longer than a boot: nothing new starts; a host in flight sends at
    // most the reboot of the step it was in.
    std::thread::sleep(Duration::from_secs(5));
    let held = status(&addr);
    assert_eq!(
        held["totals"]["pending"].as_u64(),
        Some(pending),
        "no host started: {held}"
    );
    assert!(
        total_reboots(&sim) <= sent + in_flight,
        "reboots grew beyond the hosts in flight: {sent} + {in_flight} -> {}",
        total_reboots(&sim)
    );
    assert!(
        std::fs::read_to_string(&journal)
            .unwrap()
            .contains("\"event\":\"run_paused\""),
        "the journal says so"
    );
    assert!(
        held["totals"]["done"].as_u64() < Some(hosts as u64),
        "{held}"
    );

    // Continue by run id, from the journal's directory.
    let run_id = at_pause["run_id"].as_str().expect("run id").to_owned();
    let (code, _, err) = support::run(
        support::rekindle_in(work.path())
            .args(["continue", &run_id, "--journal"])
            .arg(work.path().join("journal"))
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("continued run "), "{err}");

    let (code, out, err) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("paused: no host starts"),
        "progress says so: {out}"
    );
    assert!(out.contains("continued: hosts start again"), "{out}");
    assert!(
        reboots_per_host(&sim).iter().all(|&n| n == 1),
        "{:?}",
        reboots_per_host(&sim)
    );
    // A finished run cannot be paused.
    let (code, _, err) = support::run(support::rekindle_in(work.path()).arg("pause").arg(&journal));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has finished"), "{err}");
}

#[test]
fn sigterm_drains_like_the_first_ctrl_c_and_resume_finishes() {
    let work = tempfile::tempdir().unwrap();
    let sim = sim(8, "2s..3s", &[]);
    let book = reboot_book(work.path(), 2, "90s", 0);
    let run = Bg::start(run_cmd(work.path(), &sim, &book, &[]));
    let journal = only_journal(&work.path().join("journal"));
    let start = Instant::now();
    while total_reboots(&sim) == 0 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = i32::try_from(run.child_pid()).expect("pid");
    // SAFETY: signalling the child this test started and still holds.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (code, out, err) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 130, "{out}\n{err}");
    assert!(err.contains("interrupt: starting no new hosts"), "{err}");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.contains("\"outcome\":\"interrupted\""),
        "journal consistent to the end"
    );

    let (code, out, err) = support::run(
        support::rekindle_in(work.path())
            .arg("resume")
            .arg(&journal)
            .args(["--yes", "--quiet"])
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        reboots_per_host(&sim).iter().all(|&n| n == 1),
        "{:?}",
        reboots_per_host(&sim)
    );
}

/// `<!--<script>` in a command's output (here a failure's last output,
/// listed on the page) used to make the HTML parser swallow the page's own
/// script: Chromium showed 0 hosts and no "not updating" note. The state
/// is escaped for a `<script type="application/json">` element now.
#[test]
fn script_like_output_on_the_live_page_leaves_it_working_in_chromium() {
    let work = tempfile::tempdir().unwrap();
    let sim = sim(2, "0s", &[]);
    let book = work.path().join("book.yaml");
    std::fs::write(
        &book,
        "version: 1\nname: war-room\ndefaults: { connect_timeout: 5s, command_timeout: 60s }\nstages:\n\
         \x20 - name: bad\n    select: { name: sim-00001 }\n    max_failures: 1\n    steps:\n\
         \x20     - run: \"echo <!--<script>; false\"\n\
         \x20 - name: slow\n    select: { name: sim-00002 }\n    steps:\n      - run: \"sleep 40\"\n",
    )
    .expect("write playbook");
    let run = Bg::start(run_cmd(work.path(), &sim, &book, &["--listen", "0"]));
    let err = run.wait_stderr("live: status page", Duration::from_secs(30));
    let addr = live_addr(&err);
    wait_status(&addr, "the failure listed", Duration::from_secs(30), |s| {
        s["totals"]["failed"].as_u64() == Some(1)
    });
    let (code, page) = http(&addr, "GET", "/");
    assert_eq!(code, 200);
    let initial = page
        .split_once("<script id=\"initial\" type=\"application/json\">")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .expect("the initial state element")
        .0;
    assert!(
        !initial.contains('<') && !initial.contains('>'),
        "{initial}"
    );
    let back: Value = serde_json::from_str(initial).expect("the initial state is JSON");
    assert!(back.to_string().contains("<!--<script>"), "{back}");
    let dom = browse(&format!("http://{addr}/"), "--dump-dom");
    assert_eq!(dom_number(&dom, "total-hosts"), 2, "{dom}");
    assert_eq!(dom_number(&dom, "total-failed"), 1, "{dom}");
    assert!(
        dom.contains("&lt;!--&lt;script&gt;"),
        "the output shown as text:\n{dom}"
    );
}
