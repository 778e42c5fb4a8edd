//! `rekindle plan` through the real binary, over the fixture inventory and
//! the kakao-like example (snapshots of the examples' JSON plans).

use crate::support::{rekindle_in, root, run};

fn fixtures() -> std::path::PathBuf {
    root().join("tests/fixtures")
}

fn plan(args: &[&str]) -> (i32, String, String) {
    run(rekindle_in(&fixtures()).arg("plan").args(args))
}

#[test]
fn a_bad_limit_is_a_usage_error() {
    let (code, out, err) = plan(&[
        "playbooks/valid.yaml",
        "-i",
        "inventories/small.yaml",
        "--limit",
        "role",
    ]);
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "error: --limit: invalid selector `role`: `role` is not key=value\n"
    );
}

#[test]
fn json_plan_of_the_small_fleet() {
    let (code, out, err) = plan(&[
        "playbooks/valid.yaml",
        "-i",
        "inventories/small.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["format"], 1);
    assert_eq!(v["waves"], serde_json::json!([["storage"], ["db"]]));
    assert_eq!(v["stages"][0]["hosts"], 6);
    assert_eq!(
        v["stages"][0]["canaries"],
        serde_json::json!(["pg-r01-st1"])
    );
    assert_eq!(v["stages"][0]["window"], 3);
    assert_eq!(
        v["stages"][1]["by_dc"],
        serde_json::json!({"ansan": 2, "pangyo": 2})
    );
    assert_eq!(v["estimate"], "1h59m");
}

#[test]
fn an_invalid_playbook_is_reported_on_stderr_with_exit_2() {
    let (code, out, err) = plan(&["playbooks/typos.yaml", "-i", "inventories/small.yaml"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(
        err.starts_with("playbooks/typos.yaml:5:5: error: unknown key `selct` in stage\n"),
        "{err}"
    );
}

#[test]
fn a_limit_that_no_stage_selects_from_is_refused() {
    let (code, out, err) = plan(&[
        "playbooks/valid.yaml",
        "-i",
        "inventories/small.yaml",
        "--limit",
        "role=app",
    ]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "error: nothing to plan: --limit `role=app` keeps 2 hosts but no stage selects any of them\n"
    );
}

#[test]
fn a_stage_the_limit_empties_runs_no_host_with_a_warning() {
    // One rack of a cold start: the stages with nothing in it run no host
    // instead of refusing the whole plan.
    let (code, out, err) = plan(&[
        "playbooks/valid.yaml",
        "-i",
        "inventories/small.yaml",
        "--limit",
        "role=db",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "  stage storage\n    hosts            0  (none inside --limit: runs no host)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("  stage db (after storage)\n    hosts            4 "),
        "{out}"
    );
    assert!(
        out.contains("playbooks/valid.yaml:5:11: warning: stage `storage` runs no host: none of the 6 hosts `role=storage` selects is inside --limit `role=db`\n"),
        "{out}"
    );
}

#[test]
fn an_empty_limit_is_refused_never_all_hosts() {
    let (code, out, err) = plan(&[
        "playbooks/valid.yaml",
        "-i",
        "inventories/small.yaml",
        "--limit",
        "dc=mars",
    ]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "error: nothing to plan: --limit `dc=mars` matches none of the 12 hosts\n"
    );
}

#[test]
fn validate_with_an_inventory_reports_empty_selections() {
    let (code, out, _) = run(rekindle_in(&fixtures()).args([
        "validate",
        "-i",
        "inventories/small.yaml",
        "playbooks/valid.yaml",
    ]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: 2 of 12 hosts are selected by no stage (e.g. pg-app1, pg-app2)"),
        "{out}"
    );
}

/// `plan --format json` of an example over inventories/kakao-like.yaml, run
/// from the project root so paths in the output are the documented ones.
fn example_plan(playbook: &str) -> String {
    let (code, out, err) = run(crate::support::rekindle().args([
        "plan",
        playbook,
        "-i",
        "inventories/kakao-like.yaml",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn dc_cold_start_plan_json() {
    insta::assert_snapshot!(example_plan("playbooks/dc-cold-start.yaml"));
}

#[test]
fn rolling_kernel_reboot_plan_json() {
    insta::assert_snapshot!(example_plan("playbooks/rolling-kernel-reboot.yaml"));
}

#[test]
fn service_restart_plan_json() {
    insta::assert_snapshot!(example_plan("playbooks/service-restart.yaml"));
}

#[test]
fn an_ansible_inventory_without_labels_shows_its_groups() {
    // Regression: printed `dc: (none) 3; role: (none) 3; 1 rack of 3`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hosts.ini"),
        "[web]\nweb[1:3].example.net\n\n[db]\ndb1.example.net\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nstages:\n  - name: web\n    select: { group: web }\n    steps: [ wait_ssh ]\n  - name: everything\n    after: web\n    select: { group: all }\n    steps: [ wait_ssh ]\n",
    )
    .unwrap();
    let (code, out, err) = run(rekindle_in(dir.path()).args(["plan", "p.yaml", "-i", "hosts.ini"]));
    assert_eq!(code, 0, "{err}");
    let hosts: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("hosts "))
        .collect();
    assert_eq!(
        hosts,
        [
            "    hosts            3  (no dc, role or rack labels; groups: web 3)",
            "    hosts            4  (no dc, role or rack labels; groups: web 3, db 1)",
        ],
        "{out}"
    );
}

#[test]
fn only_the_label_dimensions_hosts_have_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inv.yaml"),
        "version: 1\ndatacenters:\n  pangyo:\n    hosts:\n      - name: \"pg-r[1-2]-db[1-2]\"\n        labels: { role: db, rack: \"pg-r{1}\" }\n      - name: pg-lb1\n        labels: { role: lb }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nstages:\n  - name: all\n    select: { dc: pangyo }\n    steps: [ wait_ssh ]\n",
    )
    .unwrap();
    let (code, out, err) = run(rekindle_in(dir.path()).args(["plan", "p.yaml", "-i", "inv.yaml"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("    hosts            5  (dc: pangyo 5; role: db 4, lb 1; 2 racks of 2, 1 without a rack)\n"),
        "{out}"
    );
}

#[test]
fn host_patterns_select_in_playbooks_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nstages:\n  - name: two\n    select: { host: \"pg-r[08-09]-db1\" }\n    steps: [ wait_ssh ]\n",
    )
    .unwrap();
    let inv = fixtures().join("inventory/small.yaml");
    let inv = inv.to_str().unwrap();
    let (code, out, err) =
        run(rekindle_in(dir.path()).args(["plan", "p.yaml", "-i", inv, "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stages"][0]["hosts"], 2);
    let (code, out, err) = run(rekindle_in(dir.path()).args([
        "plan",
        "p.yaml",
        "-i",
        inv,
        "--format",
        "json",
        "--limit",
        "host=pg-r09-db[1-2]",
    ]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stages"][0]["hosts"], 1, "{v}");
}
