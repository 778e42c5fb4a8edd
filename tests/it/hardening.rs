//! Regression tests for what an adversarial pass broke (issue 17), each named
//! after what broke: torn UTF-8 journal tails, alias bombs made of one large
//! string, quadratic overlap warnings, placeholders inside the author's own
//! quotes, and the plan lock (an old holder deleting a new holder's lock,
//! `--break-lock` against a live holder, runs from different directories).
//! Hostile inputs run under an address-space ceiling (`setrlimit`) in the
//! child, never a timed assertion. Simulators here use ports 29xx.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{self, SimProcess};

/// A simulated fleet of `hosts` hosts on `port` (HTTP `port+1`).
fn start_sim(port: u16, hosts: usize, extra: &[&str]) -> SimProcess {
    let (n, p, h) = (hosts.to_string(), port.to_string(), (port + 1).to_string());
    let mut args = vec!["--hosts", &n, "--port", &p, "--http-port", &h];
    args.extend_from_slice(extra);
    SimProcess::builder(&args).stderr_null().start()
}

/// The address-space ceiling hostile inputs run under: far above what
/// `validate`, `plan` or `hosts` need for any input the limits let through
/// (64 MiB files), far below what the attacks reached (3 to 17 GB).
const CEILING: u64 = 1024 * 1024 * 1024;

/// Runs `cmd` with its address space capped at `bytes` (RLIMIT_AS, set in the
/// child before exec), so a test of a memory bound fails by the child running
/// out of memory (killed or aborting), not by a timer.
fn run_under_ceiling(cmd: &mut Command, bytes: u64) -> (i32, String, String) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // setrlimit, which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = cmd.stdin(Stdio::null()).output().expect("rekindle runs");
    let code = match out.status.code() {
        Some(c) => c,
        None => panic!(
            "killed by a signal (over the {} MiB ceiling?): {:?}\n{}",
            bytes >> 20,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    (
        code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every `.jsonl` journal in `dir`.
fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Cuts `journal` inside the first multi-byte character of its last line
/// that has one, `keep` bytes into that character, dropping everything after.
fn tear_inside_a_character(journal: &Path, keep: usize) {
    let bytes = std::fs::read(journal).expect("journal");
    let line_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    // The last line holding a multi-byte character.
    let mut start = line_start;
    let at = loop {
        if let Some(i) = bytes[start..].iter().position(|&b| b >= 0xC0) {
            break start + i;
        }
        assert!(start > 0, "no multi-byte character in the journal");
        start = bytes[..start - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
    };
    std::fs::write(journal, &bytes[..at + keep]).expect("tear the journal");
}

#[test]
fn torn_tail_splitting_a_utf8_character_leaves_report_working() {
    let dir = tempfile::tempdir().unwrap();
    let journal = crate::report::synthetic_journal(dir.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    // A failure's output line, cut in the middle of `é` (C3 A9).
    bytes.extend_from_slice("{\"record\":\"event\",\"output\":\"caf".as_bytes());
    bytes.push(0xC3);
    std::fs::write(&journal, &bytes).unwrap();
    let (code, out, err) = support::run(
        support::rekindle()
            .args(["report", "--format", "json"])
            .arg(&journal),
    );
    assert_eq!(code, 0, "report over a torn UTF-8 tail: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hosts"].as_array().unwrap().len(), 60);

    // Invalid UTF-8 in a complete line is corruption, named by its line.
    let mut bytes = std::fs::read(&journal).unwrap();
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes.insert(second + 3, 0xFF);
    std::fs::write(&journal, &bytes).unwrap();
    let (code, _, err) = support::run(support::rekindle().arg("report").arg(&journal));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 2: not a journal record: invalid UTF-8 at byte 4 of the line"),
        "{err}"
    );
}

#[test]
fn torn_tail_splitting_a_utf8_character_leaves_resume_working() {
    let sim = start_sim(2901, 4, &[]);
    let work = tempfile::tempdir().unwrap();
    let playbook = work.path().join("복구.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nname: 데이터센터-복구\nstages:\n  - name: 재시작\n    select: { name: \"sim-*\" }\n    parallel: 2\n    steps:\n      - run: \"true\"\n",
    )
    .unwrap();
    let journal_dir = work.path().join("journal");
    let (code, out, err) = support::run(
        support::rekindle_in(work.path())
            .arg("run")
            .arg(&playbook)
            .arg("-i")
            .arg(sim.path("inventory.yaml"))
            .args(["--yes", "--quiet", "--journal"])
            .arg(&journal_dir)
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let [journal] = journals(&journal_dir).try_into().expect("one journal");
    // The disk filled in the middle of the stage name `재` (EC 9E AC).
    for keep in [1, 2] {
        tear_inside_a_character(&journal, keep);
        let (code, out, err) = support::run(
            support::rekindle_in(work.path())
                .arg("resume")
                .arg(&journal)
                .args(["--yes", "--quiet"])
                .stdin(Stdio::null()),
        );
        assert_eq!(
            code, 0,
            "resume over a tail cut {keep} bytes into a character: {out}\n{err}"
        );
        assert!(err.contains("last record was cut short"), "{err}");
        assert!(out.contains("every host done"), "{out}");
    }
    let (code, out, err) = support::run(
        support::rekindle_in(work.path())
            .args(["report", "--format", "json"])
            .arg(&journal),
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stages"][0]["done"], 4, "{out}");
}

/// `x: &a "<1 MiB>"` and `aliases` references to it, under `key:` as a list.
fn one_large_string_bomb(prefix: &str, key: &str, aliases: usize) -> String {
    let indent = " ".repeat(key.len() - key.trim_start().len() + 2);
    let mut text = format!("{prefix}{key}:\n");
    text.reserve((1 << 20) + aliases * (indent.len() + 6));
    text.push_str(&format!("{indent}- &a \""));
    text.push_str(&"A".repeat(1 << 20));
    text.push_str("\"\n");
    for _ in 0..aliases {
        text.push_str(&format!("{indent}- *a\n"));
    }
    text
}

#[test]
fn alias_bomb_of_one_large_string_is_refused_by_validate_under_a_memory_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let book = dir.path().join("bomb.yaml");
    let text = one_large_string_bomb(
        "version: 1\nstages:\n",
        "  - name: s\n    select: { role: x }\n    steps",
        20_000,
    );
    std::fs::write(&book, text).unwrap();
    let (code, out, err) = run_under_ceiling(
        support::rekindle_in(dir.path()).arg("validate").arg(&book),
        CEILING,
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("error: document expands to more than 64 MiB of text through its aliases (an alias bomb?)"),
        "{out}"
    );
    // `plan` reads the same playbook through the same bound.
    let inv = dir.path().join("inv.yaml");
    std::fs::write(
        &inv,
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: h1\n        labels: { role: x }\n",
    )
    .unwrap();
    let (code, out, err) = run_under_ceiling(
        support::rekindle_in(dir.path())
            .arg("plan")
            .arg(&book)
            .arg("-i")
            .arg(&inv),
        CEILING,
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("document expands to more than 64 MiB of text through its aliases"),
        "{err}"
    );
}

#[test]
fn alias_bomb_of_one_large_string_is_refused_by_hosts_under_a_memory_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yaml");
    let text = one_large_string_bomb(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: h1\n        labels:\n",
        "          x",
        3_000,
    );
    std::fs::write(&inv, text).unwrap();
    let (code, out, err) = run_under_ceiling(
        support::rekindle_in(dir.path())
            .args(["hosts", "-i"])
            .arg(&inv),
        CEILING,
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("document expands to more than 64 MiB of text through its aliases"),
        "{err}"
    );
}

/// A playbook of `stages` stages that all select `role=x`, and an inventory of
/// `hosts` such hosts, in `dir`.
fn same_selector_fleet(dir: &Path, stages: usize, hosts: usize) -> (PathBuf, PathBuf) {
    let mut book = String::from("version: 1\nstages:\n");
    for i in 0..stages {
        book.push_str(&format!(
            "  - {{ name: s{i}, select: {{ role: x }}, steps: [reboot] }}\n"
        ));
    }
    let inv = format!(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: \"h[1-{hosts}]\"\n        labels: {{ role: x }}\n"
    );
    let (b, i) = (dir.join("book.yaml"), dir.join("inv.yaml"));
    std::fs::write(&b, book).unwrap();
    std::fs::write(&i, inv).unwrap();
    (b, i)
}

#[test]
fn ten_thousand_stages_with_one_selector_are_refused_under_a_memory_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let (_, inv) = same_selector_fleet(dir.path(), 10_000, 2_000);
    for command in ["validate", "plan"] {
        let (code, out, err) = run_under_ceiling(
            support::rekindle_in(dir.path())
                .arg(command)
                .arg("book.yaml")
                .arg("-i")
                .arg(&inv),
            CEILING,
        );
        let all = format!("{out}{err}");
        assert_ne!(code, 0, "{command}: {all}");
        assert!(
            all.contains(
                "book.yaml:1003:13: error: the playbook has 10000 stages, over the limit of 1000"
            ),
            "{command}: {all}"
        );
    }
}

#[test]
fn overlap_warnings_of_a_thousand_stages_stay_bounded_under_a_memory_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let (_, inv) = same_selector_fleet(dir.path(), 1_000, 2_000);
    let (code, out, err) = run_under_ceiling(
        support::rekindle_in(dir.path())
            .args(["validate", "book.yaml", "-i"])
            .arg(&inv),
        CEILING,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(out.matches("warning: ").count(), 11, "{out}");
    assert!(out.contains("book.yaml:4:17: warning: 2000 hosts selected by both stage `s0` and stage `s1` run one stage at a time, in whichever order reaches them first (neither stage comes after the other); `s1` skips one that failed in `s0`, `s0` skips one that failed in `s1` (e.g. h1, h2, h3)"), "{out}");
    assert!(out.contains("warning: more stages overlap than the 10 pairs shown, from stage `s0` and stage `s11` on: in all, 2000 hosts are selected by more than one stage"), "{out}");

    let (code, out, err) = run_under_ceiling(
        support::rekindle_in(dir.path())
            .args(["plan", "book.yaml", "--format", "json", "-i"])
            .arg(&inv),
        CEILING,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("plan json");
    assert_eq!(v["stages"].as_array().map(Vec::len), Some(1_000));
}

#[test]
fn placeholder_inside_the_authors_quotes_is_refused_by_validate_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("quoted.yaml"),
        r#"version: 1
stages:
  - name: s
    select: { role: x }
    steps:
      - run: "logger '{label.role}'"
      - local: "echo \"{label.sub}\""
      - health: { checks: [ { ssh: "test -n '{name}'" }, { http: "http://{address}/'{name}'" } ] }
"#,
    )
    .unwrap();
    let (code, out, _) =
        support::run(support::rekindle_in(dir.path()).args(["validate", "quoted.yaml"]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("quoted.yaml:6:23: error: placeholder `{label.role}` is inside single quotes: rekindle shell-quotes every value itself, and this undoes that quoting (a value such as `$(...)` would run)\n"), "{out}");
    assert!(
        out.contains(
            "= help: close the quotes before `{label.role}` and open them again after it if needed"
        ),
        "{out}"
    );
    // An escaped scalar: the place is the whole command.
    assert!(
        out.contains("quoted.yaml:7:16: error: placeholder `{label.sub}` is inside double quotes"),
        "{out}"
    );
    assert!(
        out.contains("quoted.yaml:8:36: error: placeholder `{name}` is inside single quotes"),
        "{out}"
    );
    // The URL's value is percent-encoded: its quotes are not an error.
    assert!(out.ends_with("quoted.yaml: invalid (3 errors)\n"), "{out}");

    // Every example playbook still validates, against the example inventory too.
    for book in ["dc-cold-start", "rolling-kernel-reboot", "service-restart"] {
        let (code, out, err) = support::run(support::rekindle().args([
            "validate",
            &format!("playbooks/{book}.yaml"),
            "-i",
            "inventories/kakao-like.yaml",
        ]));
        assert_eq!(code, 0, "{book}: {out}{err}");
    }
}

/// Polls (bounded: `within`) until `file` holds `needle` at least `n` times.
fn wait_for_count(file: &Path, needle: &str, n: usize, within: Duration) -> String {
    let step = Duration::from_millis(50);
    for _ in 0..=within.as_millis() / step.as_millis() {
        if let Ok(text) = std::fs::read_to_string(file)
            && text.matches(needle).count() >= n
        {
            return text;
        }
        std::thread::sleep(step);
    }
    panic!("{} never held {n} × {needle}", file.display());
}

fn reboot_counts(sim: &SimProcess) -> Vec<(String, u64)> {
    let status = sim.status();
    let mut counts: Vec<(String, u64)> = status["hosts"]
        .as_object()
        .expect("hosts")
        .iter()
        .map(|(k, h)| (k.clone(), h["reboots"].as_u64().unwrap_or(u64::MAX)))
        .collect();
    counts.sort();
    counts
}

#[test]
fn old_lock_holder_never_deletes_the_new_holders_lock_and_stops_issuing_intents() {
    const HOSTS: usize = 10;
    let sim = start_sim(2911, HOSTS, &["--boot-time", "2s"]);
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let playbook = work.path().join("reboot.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nname: lock-e2e\nstages:\n  - name: all\n    select: { name: \"sim-*\" }\n    parallel: 1\n    steps:\n      - reboot: { timeout: 60s }\n",
    )
    .unwrap();
    let inventory = sim.path("inventory.yaml");
    let journal_dir = work.path().join("journal");
    let cmd = |args: &[&str]| {
        let mut c = support::rekindle_in(work.path());
        c.args(args)
            .env("XDG_STATE_HOME", &state)
            .stdin(Stdio::null());
        c
    };
    let run_args = |journal: &Path| {
        let mut c = cmd(&["run"]);
        c.arg(&playbook)
            .arg("-i")
            .arg(&inventory)
            .args(["--yes", "--quiet", "--journal"])
            .arg(journal);
        c
    };
    let log = |name: &str| std::fs::File::create(work.path().join(name)).unwrap();

    // A runs, one host at a time.
    let mut a = support::KillOnDrop::new(
        run_args(&journal_dir)
            .stdout(log("a.out"))
            .stderr(log("a.err"))
            .spawn()
            .expect("run A starts"),
    );
    let journal = {
        let start = std::time::Instant::now();
        loop {
            if let [one] = journals(&journal_dir).as_slice() {
                break one.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no journal");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for_count(&journal, "\"reboot_issued\"", 2, Duration::from_secs(60));

    // --break-lock does not take a run alive on this machine.
    let resume = |flag: &str| {
        let mut c = cmd(&["resume"]);
        c.arg(&journal).args([flag, "--yes", "--quiet"]);
        c
    };
    let (code, _, err) = support::run(&mut resume("--break-lock"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("(pid {}", a.pid())), "{err}");
    assert!(
        err.contains("its process is alive on this machine, so --break-lock does not take it"),
        "{err}"
    );
    assert!(err.contains("--break-live-lock"), "{err}");

    // B takes A's run over on purpose.
    let mut b = support::KillOnDrop::new(
        resume("--break-live-lock")
            .stdout(log("b.out"))
            .stderr(log("b.err"))
            .spawn()
            .expect("resume B starts"),
    );
    let b_pid = b.pid();
    let a_status = a.wait_for(Duration::from_secs(60)).expect("A stops");
    let a_err = std::fs::read_to_string(work.path().join("a.err")).unwrap();
    assert!(!a_status.success(), "A must not report success: {a_err}");
    assert!(a_err.contains("was taken over by"), "{a_err}");
    assert!(a_err.contains(&format!("(pid {b_pid}")), "{a_err}");

    // A is gone; B holds the lock A left alone, so C is refused, from the
    // same journal directory (the plan lock) and from another (the registry).
    let b_running = b.child().try_wait().unwrap().is_none();
    assert!(b_running, "B still runs (the test needs it to)");
    let lock_file = std::fs::read_dir(&journal_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "lock"))
        .expect("B's lock is still there after A exited");
    assert!(
        std::fs::read_to_string(&lock_file)
            .unwrap()
            .contains(&format!("\"pid\": {b_pid}")),
        "the lock is B's"
    );
    let (code, _, err) = support::run(&mut run_args(&journal_dir));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("plan is locked by") && err.contains(&format!("(pid {b_pid}")),
        "{err}"
    );
    let (code, _, err) = support::run(&mut run_args(&work.path().join("elsewhere")));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{HOSTS} of the {HOSTS} hosts this run selects are in run `lock-e2e` of "
        )) && err.contains(&format!("(pid {b_pid}")),
        "{err}"
    );

    let b_status = b.wait_for(Duration::from_secs(120)).expect("B finishes");
    let b_out = std::fs::read_to_string(work.path().join("b.out")).unwrap();
    let b_err = std::fs::read_to_string(work.path().join("b.err")).unwrap();
    assert!(b_status.success(), "{b_out}\n{b_err}");
    assert!(
        b_err.contains("--break-live-lock: took the lock from"),
        "{b_err}"
    );
    let counts = reboot_counts(&sim);
    assert_eq!(counts.len(), HOSTS);
    for (host, n) in &counts {
        assert_eq!(*n, 1, "{host} rebooted {n} times: {counts:?}");
    }
    assert!(!lock_file.exists(), "B released its lock");
    let entries = std::fs::read_dir(state.join("rekindle/runs"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "run"))
        .count();
    assert_eq!(entries, 0, "every registry entry released");
}

#[test]
fn lock_depends_on_the_working_directory_no_more_overlapping_runs_are_refused() {
    let sim = start_sim(2921, 4, &["--boot-time", "5s"]);
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let playbook = work.path().join("reboot.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nname: wd\nstages:\n  - name: all\n    select: { name: \"sim-*\" }\n    steps:\n      - reboot: { timeout: 60s }\n",
    )
    .unwrap();
    // Each run from its own working directory, with the default journal
    // directory there: the plan locks are in different places.
    let run = |cwd: &str, limit: Option<&str>| {
        let dir = work.path().join(cwd);
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = support::rekindle_in(&dir);
        c.arg("run")
            .arg(&playbook)
            .arg("-i")
            .arg(sim.path("inventory.yaml"))
            .args(["--yes", "--quiet"])
            .args(limit.map(|l| ["--limit", l]).into_iter().flatten())
            .env("XDG_STATE_HOME", &state)
            .stdin(Stdio::null());
        c
    };
    let mut a = support::KillOnDrop::new(
        run("one", Some("name=sim-00001"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run A starts"),
    );
    let a_pid = a.pid();
    // A is registered once its journal exists.
    let start = std::time::Instant::now();
    while journals(&work.path().join("one/rekindle-journal")).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "A wrote no journal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, err) = support::run(&mut run("two", None));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: 1 of the 4 hosts this run selects are in run `wd` of ")
            && err.contains(&format!("(pid {a_pid}"))
            && err.contains("two runs must not act on one host at once"),
        "{err}"
    );
    // Another host only: no overlap, it runs beside A.
    let (code, out, err) = support::run(&mut run("three", Some("name=sim-00002")));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        a.wait_for(Duration::from_secs(60))
            .expect("A ends")
            .success()
    );
    let counts = reboot_counts(&sim);
    let n = |h: &str| counts.iter().find(|(k, _)| k == h).map(|(_, n)| *n);
    assert_eq!(
        (
            n("sim-00001"),
            n("sim-00002"),
            n("sim-00003"),
            n("sim-00004")
        ),
        (Some(1), Some(1), Some(0), Some(0)),
        "{counts:?}"
    );
}

#[test]
fn break_lock_help_and_readme_agree_it_never_takes_a_live_run_on_this_machine() {
    // The README's reference moved into the book: the journal and lock page.
    let readme =
        std::fs::read_to_string(support::root().join("docs/book/src/reference/journal.md"))
            .unwrap();
    for command in ["run", "resume"] {
        let (code, out, _) = support::run(support::rekindle().args([command, "--help"]));
        assert_eq!(code, 0);
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(
                "a run whose process is alive on this machine is never taken by this flag"
            ),
            "{out}"
        );
        assert!(flat.contains("--break-live-lock DANGEROUS: take over even a run whose process is alive on this machine"), "{out}");
    }
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("A holder whose process is alive on this machine is never taken by `--break-lock`; `--break-live-lock` does that"));
}
