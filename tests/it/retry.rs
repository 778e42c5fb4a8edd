//! Retrying subsets end to end on the simulator: `resume --failed-only`
//! runs again only the hosts that failed, `resume --limit SELECTOR` only
//! the hosts it matches; the rest are left for a later resume. Proven from
//! the journal: which hosts start after each `resumed` record.

use std::path::Path;
use std::process::Stdio;

use crate::live::sim;
use crate::support;

/// Hosts started after the last `resumed` record of the journal, sorted.
fn started_after_last_resume(journal: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(journal).expect("journal");
    let tail = text
        .rsplit_once("\"record\":\"resumed\"")
        .map(|(_, t)| t)
        .expect("a resumed record");
    let mut hosts: Vec<String> = tail
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "host_started")
        .filter_map(|v| v["host"]["name"].as_str().map(str::to_owned))
        .collect();
    hosts.sort();
    hosts
}

#[test]
fn resume_failed_only_retries_just_the_failed_hosts_and_limit_just_the_matching_ones() {
    let work = tempfile::tempdir().unwrap();
    let sim = sim(4, "0s", &[]);
    // `first` fails both its hosts and aborts; `second` waits for it and
    // never runs.
    let book = work.path().join("book.yaml");
    std::fs::write(
        &book,
        "version: 1\nname: retry\ndefaults: { connect_timeout: 5s, command_timeout: 20s }\nstages:\n\
         \x20 - name: first\n    select: { name: \"sim-0000[12]\" }\n    parallel: 2\n    steps:\n      - run: \"false\"\n\
         \x20 - name: second\n    after: [first]\n    select: { name: \"sim-0000[34]\" }\n    steps:\n      - run: \"true\"\n",
    )
    .unwrap();
    let dir = work.path().join("journal");
    let (code, out, err) = support::run(
        support::rekindle_in(work.path())
            .arg("run")
            .arg(&book)
            .arg("-i")
            .arg(sim.path("inventory.yaml"))
            .args(["--yes", "--journal"])
            .arg(&dir)
            .stdin(Stdio::null()),
    );
    assert_eq!(code, 3, "first aborts: {out}\n{err}");
    let journal = support::journal_in(&dir);
    let failed: Vec<String> = {
        let text = std::fs::read_to_string(&journal).unwrap();
        let mut v: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "host_finished" && v["outcome"]["status"] == "failed")
            .filter_map(|v| v["host"]["name"].as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    assert!(!failed.is_empty(), "some host of `first` failed");

    let resume = |extra: &[&str]| {
        support::run(
            support::rekindle_in(work.path())
                .arg("resume")
                .arg(&journal)
                .args(["--yes"])
                .args(extra)
                .stdin(Stdio::null()),
        )
    };
    // --failed-only: the failed hosts again (they fail again), nothing of `second`.
    let (code, out, err) = resume(&["--failed-only"]);
    assert_eq!(code, 3, "{out}\n{err}");
    let line = format!(
        "--failed-only: {} hosts to run; {} left out",
        failed.len(),
        4 - failed.len()
    );
    assert!(err.contains(&line), "{err}");
    assert_eq!(started_after_last_resume(&journal), failed);
    assert!(out.contains("left out"), "the summary says so: {out}");

    // --limit: only sim-00003 leaves `first`'s failed hosts out. Its budget
    // (0) stays broken, so `second` must not run: refused, nothing started
    // (it once counted `first` as done and exited 0 "every host done").
    let (code, out, err) = resume(&["--limit", "name=sim-00003"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains(&format!(
            "error: --limit name=sim-00003: stage first tolerates 0 failed hosts, and {} that failed there",
            if failed.len() == 1 { "1 host".to_owned() } else { format!("{} hosts", failed.len()) }
        )) && err.contains("pass --accept-failures"),
        "{err}"
    );
    assert_eq!(
        started_after_last_resume(&journal),
        failed,
        "nothing new ran"
    );
    // Said explicitly: `first` counts as finished, `second` runs sim-00003,
    // and the summary does not claim the left-out hosts were retried.
    let (code, out, err) = resume(&["--limit", "name=sim-00003", "--accept-failures"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        started_after_last_resume(&journal),
        ["sim-00003".to_owned()]
    );
    assert!(
        err.contains("warning: --accept-failures: stage first tolerates 0 failed hosts"),
        "{err}"
    );
    assert!(
        out.contains("--accept-failures: stage first") && !out.contains("were retried"),
        "{out}"
    );

    // A limit that leaves nothing to run, and a bad one, are refused.
    let (code, _, err) = resume(&["--failed-only", "--limit", "name=sim-00004"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nothing to resume"), "{err}");
    let (code, _, err) = resume(&["--limit", "role=db role=lb"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--limit"), "{err}");
}
