//! The journal end to end against the simulator's real SSH hosts: kill -9 a
//! run while hosts are mid-reboot, then `resume` (after refusing a changed
//! playbook, with a torn last line): every host ends verified and rebooted
//! exactly once. Also: a second concurrent run is refused naming the holder.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{self, KillOnDrop, SimProcess};

/// A `rekindle sim` of `hosts` hosts on its own ports, its fleet in `dir`.
fn start_sim(dir: &Path, hosts: usize, port: u16, boot: &str) -> SimProcess {
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
    .stderr_null()
    .start()
}

fn reboots(sim_dir: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(sim_dir.join("status.json")).expect("status.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("status.json parses");
    let mut out: Vec<(String, u64)> = v["hosts"]
        .as_object()
        .expect("hosts")
        .iter()
        .map(|(k, h)| (k.clone(), h["reboots"].as_u64().unwrap_or(u64::MAX)))
        .collect();
    out.sort();
    out
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Waits (bounded) until `cond` holds on the journal's text.
fn wait_journal(path: &Path, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Ok(text) = std::fs::read_to_string(path)
            && cond(&text)
        {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for the journal to show {what}");
}

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

const HOSTS: usize = 12;

#[test]
fn kill_9_mid_reboot_then_resume_reboots_every_host_exactly_once() {
    let work = tempfile::tempdir().unwrap();
    let sim_dir = work.path().join("sim");
    let _sim = start_sim(&sim_dir, HOSTS, 24_517, "2s..4s");
    let playbook = work.path().join("reboot.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nname: journal-e2e\ndefaults: { connect_timeout: 5s, command_timeout: 20s }\n\
         stages:\n  - name: all\n    select: { name: \"sim-*\" }\n    parallel: 4\n    steps:\n\
         \x20     - reboot: { timeout: 90s }\n      - run: \"true\"\n",
    )
    .unwrap();
    let inventory = sim_dir.join("inventory.yaml");
    let journal_dir = work.path().join("journal");
    let run_cmd = || {
        let mut c = support::rekindle_in(work.path());
        c.arg("run")
            .arg(&playbook)
            .arg("-i")
            .arg(&inventory)
            .args(["--yes", "--journal"])
            .arg(&journal_dir);
        c
    };

    let first = KillOnDrop::new(
        run_cmd()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run starts"),
    );
    let journal = only_journal(&journal_dir);

    // A second run of the same plan while the first holds the lock.
    let (code, _, err) = support::run(&mut run_cmd());
    assert_eq!(code, 2, "second run must be refused: {err}");
    assert!(err.contains("plan is locked by"), "{err}");
    assert!(
        err.contains(&format!("pid {}", first.pid())),
        "holder named: {err}"
    );

    // Kill while at least one reboot is issued and not yet verified.
    let text = wait_journal(&journal, "a host mid-reboot", |t| {
        count(t, "\"reboot_issued\"") >= 5
    });
    drop(first); // SIGKILL
    let text = std::fs::read_to_string(&journal).unwrap_or(text);
    let issued = count(&text, "\"reboot_issued\"");
    let done = count(&text, "\"host_finished\"");
    assert!(
        issued > done,
        "some host must be mid-reboot: {issued} issued, {done} finished"
    );
    assert!(
        !text.contains("\"run_finished\""),
        "the run was killed before its end"
    );

    // A power cut tears the last line.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(b"{\"record\":\"event\",\"at\":\"2026-11-2")
        .unwrap();

    // A changed playbook is refused.
    let original = std::fs::read_to_string(&playbook).unwrap();
    std::fs::write(&playbook, format!("{original}# edited\n")).unwrap();
    let resume = || {
        let mut c = support::rekindle_in(work.path());
        c.arg("resume").arg(&journal).args(["--yes", "--quiet"]);
        c
    };
    let (code, _, err) = support::run(&mut resume());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("changed since the run began"), "{err}");
    assert!(err.contains("--force"), "{err}");
    std::fs::write(&playbook, original).unwrap();

    // Resume: the stale lock of the killed run is taken over.
    let (code, out, err) = support::run(&mut resume());
    assert_eq!(code, 0, "resume: {out}\n{err}");
    assert!(err.contains("took over a stale lock"), "{err}");
    assert!(err.contains("last record was cut short"), "{err}");
    assert!(err.contains("re-verified by boot id"), "{err}");
    assert!(out.contains("every host done"), "{out}");
    assert!(
        !out.contains("ok          all"),
        "--quiet prints only the summary: {out}"
    );
    assert!(out.contains("(resumed once)"), "{out}");

    let counts = reboots(&sim_dir);
    assert_eq!(counts.len(), HOSTS);
    for (host, n) in &counts {
        assert_eq!(*n, 1, "{host} rebooted {n} times: {counts:?}");
    }

    // The same journal holds both runs; the report reads it.
    let (code, out, err) = support::run(
        support::rekindle_in(work.path())
            .args(["report", "--format", "json"])
            .arg(&journal),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["resumes"], 1);
    assert_eq!(v["outcome"], "success");
    assert_eq!(v["stages"][0]["done"], HOSTS);
    assert_eq!(v["boot_time"]["hosts"], HOSTS);
    // The lock is gone after the resumed run.
    let locks = std::fs::read_dir(&journal_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "lock"))
        .count();
    assert_eq!(locks, 0);
}
