//! `power_on` end to end: `rekindle run` with a power_on + wait_ssh playbook
//! against the Redfish BMCs of `rekindle sim --powered-off` (real HTTP, real
//! SSH on loopback). What the hosts received is read from the sim's
//! status.json: power state, power-on count and when each reset arrived.
//! Each test uses its own ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, BmcSim};

impl BmcSim {
    fn path(&self, name: &str) -> PathBuf {
        self.sim.path(name)
    }

    fn inventory(&self) -> PathBuf {
        self.path("inventory.yaml")
    }

    /// The default account's password (the file's first line).
    fn password(&self) -> String {
        self.passwords().swap_remove(0)
    }

    /// Every password of the credentials file, the default's first.
    fn passwords(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path("bmc-credentials")).expect("credentials");
        text.lines()
            .map(|l| {
                let account = l.rsplit(' ').next().expect("a line");
                let (_, pw) = account.split_once(':').expect("user:password");
                pw.to_owned()
            })
            .collect()
    }

    /// Polls status.json (bounded: 15 s) until `pred` holds.
    fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.sim.wait_status(what, Duration::from_secs(15), pred)
    }

    /// `rekindle run` of `playbook` against this fleet: (exit code, stdout, stderr).
    fn run(&self, playbook: &Path, extra: &[&str]) -> (i32, String, String) {
        let mut cmd = support::rekindle();
        cmd.arg("run")
            .arg(playbook)
            .arg("-i")
            .arg(self.inventory())
            .args(["--yes", "--journal"])
            .arg(self.dir.path().join("journal"))
            .args(extra)
            .env_remove("REKINDLE_BMC_USER")
            .env_remove("REKINDLE_BMC_PASSWORD");
        support::run(&mut cmd)
    }

    fn run_with_credentials(&self, playbook: &Path, extra: &[&str]) -> (i32, String, String) {
        let creds = self.path("bmc-credentials");
        let mut args = vec!["--bmc-credentials", creds.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        self.run(playbook, &args)
    }
}

fn playbook(dir: &Path, power_on: &str) -> PathBuf {
    let path = dir.join("power.yaml");
    std::fs::write(
        &path,
        format!(
            "version: 1\nname: power\nstages:\n  - name: all\n    select: {{ dc: sim }}\n    parallel: 100%\n    steps:\n      - power_on: {power_on}\n      - wait_ssh: {{ timeout: 1m }}\n"
        ),
    )
    .expect("write playbook");
    path
}

fn host<'a>(status: &'a Value, name: &str) -> &'a Value {
    &status["hosts"][name]
}

#[test]
fn power_on_brings_hosts_up_for_ssh_and_leaves_hosts_that_are_on_alone() {
    let sim = BmcSim::start(3601, &["--hosts", "3"]);
    let pb = playbook(sim.dir.path(), "{ timeout: 2m, pdu_interval: 200ms }");
    let before = sim.status();
    for name in ["sim-00001", "sim-00002", "sim-00003"] {
        assert_eq!(host(&before, name)["power"], "off", "{before}");
        assert_eq!(host(&before, name)["state"], "off", "{before}");
    }

    // First only one host: the others stay off.
    let (code, out, err) = sim.run_with_credentials(&pb, &["--limit", "name=sim-00001"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let s = sim.wait_status("sim-00001 up", |s| host(s, "sim-00001")["state"] == "up");
    assert_eq!(host(&s, "sim-00001")["power_ons"], 1);
    assert_eq!(host(&s, "sim-00002")["power"], "off");
    assert_eq!(host(&s, "sim-00002")["power_ons"], 0);

    // Then all: the one already on gets no second power-on, and wait_ssh
    // passing proves SSH came up on the others.
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("every host done"), "{out}");
    assert_eq!(out.matches("ok          all").count(), 3, "{out}");
    let s = sim.wait_status("all up", |s| s["hosts_up"] == 3);
    for name in ["sim-00001", "sim-00002", "sim-00003"] {
        assert_eq!(host(&s, name)["power"], "on", "{s}");
        assert_eq!(host(&s, name)["power_ons"], 1, "{name}: {s}");
        assert_eq!(host(&s, name)["reboots"], 0, "{name}: {s}");
    }
}

#[test]
fn power_ons_on_one_pdu_are_at_least_pdu_interval_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("racks.yaml");
    std::fs::write(
        &inv,
        "version: 1\ndatacenters:\n  sim:\n    hosts:\n      - name: \"a[1-3]\"\n        labels: { pdu: pdu-a, rack: a }\n      - name: \"b[1-3]\"\n        labels: { pdu: pdu-b, rack: b }\n",
    )
    .expect("write inventory");
    let sim = BmcSim::start(3611, &["-i", inv.to_str().expect("utf-8")]);
    let pb = playbook(
        sim.dir.path(),
        "{ timeout: 2m, pdu_interval: 1s, rate: 100/s }",
    );
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let s = sim.wait_status("six power-ons", |s| {
        s["hosts"]
            .as_object()
            .is_some_and(|h| h.values().all(|v| v["reset_at_ms"].is_u64()))
    });
    for pdu in ["a", "b"] {
        let mut at: Vec<u64> = (1..=3)
            .map(|i| {
                host(&s, &format!("{pdu}{i}"))["reset_at_ms"]
                    .as_u64()
                    .expect("time")
            })
            .collect();
        at.sort_unstable();
        for w in at.windows(2) {
            // Sent >= 1 s apart; arrival is stamped by the sim, so allow
            // delivery jitter on a loaded machine (unpaced would be ~0 apart).
            assert!(w[1] - w[0] >= 900, "pdu-{pdu} power-ons too close: {at:?}");
        }
    }
}

#[test]
fn a_bmc_that_answers_late_is_powered_on_when_it_returns() {
    let sim = BmcSim::start(
        3621,
        &[
            "--hosts",
            "1",
            "--fail",
            "bmc_unreachable=1",
            "--bmc-outage",
            "3s",
        ],
    );
    let pb = playbook(sim.dir.path(), "{ timeout: 1m, reprobe: 1s }");
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let s = sim.wait_status("host up", |s| s["hosts_up"] == 1);
    assert_eq!(host(&s, "sim-00001")["power_ons"], 1, "{s}");
    assert_eq!(host(&s, "sim-00001")["fault"], "bmc_unreachable");
}

#[test]
fn bad_credentials_fail_clearly_without_showing_them() {
    let sim = BmcSim::start(3631, &["--hosts", "2", "--fail", "bmc_bad_credentials=0.5"]);
    let pb = playbook(sim.dir.path(), "{ timeout: 1m }");
    let password = sim.password();
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_ne!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("rejected the credentials"), "{out}");
    assert!(!out.contains(&password) && !err.contains(&password));

    // Wrong ones from the environment: same message, never the password.
    let wrong = "not-the-password-5e5e";
    let mut cmd = support::rekindle();
    cmd.arg("run")
        .arg(&pb)
        .arg("-i")
        .arg(sim.inventory())
        .args(["--yes", "--journal"])
        .arg(sim.dir.path().join("journal2"))
        .env("REKINDLE_BMC_USER", "rekindle")
        .env("REKINDLE_BMC_PASSWORD", wrong);
    let (code, out, err) = support::run(&mut cmd);
    assert_ne!(code, 0);
    assert!(
        out.contains("rejected the credentials from REKINDLE_BMC_USER/REKINDLE_BMC_PASSWORD"),
        "{out}"
    );
    assert!(!out.contains(wrong) && !err.contains(wrong), "{out}\n{err}");
    let s = sim.status();
    let faulty = ["sim-00001", "sim-00002"]
        .into_iter()
        .find(|n| host(&s, n)["fault"] == "bmc_bad_credentials")
        .expect("one host has the fault");
    assert_eq!(host(&s, faulty)["power_ons"], 0, "{s}");
    assert_eq!(host(&s, faulty)["power"], "off", "{s}");
}

#[test]
fn a_credentials_file_others_can_read_is_refused_before_any_host_is_touched() {
    use std::os::unix::fs::PermissionsExt;
    let sim = BmcSim::start(3641, &["--hosts", "1"]);
    let pb = playbook(sim.dir.path(), "{ timeout: 1m }");
    let creds = sim.path("bmc-credentials");
    let mode = std::fs::metadata(&creds)
        .expect("credentials")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the sim writes it private");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let password = sim.password();
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("readable by others (mode 0644)"), "{err}");
    assert!(!out.contains(&password) && !err.contains(&password));
    assert_eq!(host(&sim.status(), "sim-00001")["power_ons"], 0);
}

#[test]
fn a_host_stuck_powering_on_fails_at_the_step_timeout() {
    let sim = BmcSim::start(3651, &["--hosts", "1", "--fail", "stuck_powering_on=1"]);
    let pb = playbook(sim.dir.path(), "{ timeout: 6s }");
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_ne!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("power_on did not finish within 6s") && out.contains("PoweringOn"),
        "{out}"
    );
    let s = sim.wait_status("the reset counted", |s| {
        host(s, "sim-00001")["power_ons"] == 1
    });
    assert_eq!(host(&s, "sim-00001")["power"], "powering_on");
}

/// Writes `text` as a private credentials file in `dir`.
fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write credentials");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

#[test]
fn each_host_logs_in_with_its_own_credentials_entry_and_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("vendors.yaml");
    std::fs::write(
        &inv,
        "version: 1\ndatacenters:\n  sim:\n    hosts:\n      - name: \"dell[1-2]\"\n        labels: { pdu: pdu-a, bmc_credentials: dell }\n      - name: hp1\n        labels: { pdu: pdu-b, bmc_credentials: hp, redfish_system: System.Embedded.1 }\n      - name: plain1\n        labels: { pdu: pdu-b }\n",
    )
    .expect("write inventory");
    let sim = BmcSim::start(3661, &["-i", inv.to_str().expect("utf-8")]);
    let text = std::fs::read_to_string(sim.path("bmc-credentials")).expect("credentials");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("dell rekindle:") && lines[2].starts_with("hp rekindle:"));
    let passwords = sim.passwords();
    assert_eq!(passwords.len(), 3, "three distinct accounts: {passwords:?}");
    let pb = playbook(sim.dir.path(), "{ timeout: 1m, pdu_interval: 100ms }");

    // The default account alone: the labelled hosts' entries are missing,
    // found before any host is touched, at the host's line.
    let only_default = private_file(sim.dir.path(), "default-only", &format!("{}\n", lines[0]));
    let shown = only_default.to_str().expect("utf-8");
    let (code, out, err) = sim.run(&pb, &["--bmc-credentials", shown]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    let inventory = std::fs::read_to_string(sim.inventory()).expect("inventory");
    let line_of = |name: &str| {
        1 + inventory
            .lines()
            .position(|l| {
                l.contains(&format!("name: {name},")) || l.contains(&format!("name: \"{name}\""))
            })
            .unwrap_or_else(|| panic!("{name} in {inventory}"))
    };
    for (name, entry) in [("dell1", "dell"), ("dell2", "dell"), ("hp1", "hp")] {
        let at = format!("inventory.yaml:{}:", line_of(name));
        assert!(
            err.lines().any(|l| l.contains(&at)
                && l.contains(&format!("error: host {name}: BMC credentials"))
                && l.contains(&format!("have no entry `{entry}`"))),
            "{name} at {at}: {err}"
        );
    }
    assert!(!err.contains("plain1"), "{err}");
    for pw in &passwords {
        assert!(!out.contains(pw) && !err.contains(pw));
    }
    let s = sim.status();
    assert!(
        s["hosts"]
            .as_object()
            .expect("hosts")
            .values()
            .all(|h| h["power_ons"] == 0),
        "{s}"
    );
    // `plan` says the same without touching anything.
    let mut plan = support::rekindle();
    plan.arg("plan")
        .arg(&pb)
        .arg("-i")
        .arg(sim.inventory())
        .args(["--bmc-credentials", shown]);
    let (code, _, err) = support::run(&mut plan);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error: host dell1: BMC credentials"), "{err}");

    // Entries swapped: the BMC refuses, and the message names the entry.
    let swapped = private_file(
        sim.dir.path(),
        "swapped",
        &format!(
            "{}\ndell rekindle:{}\nhp rekindle:{}\n",
            lines[0], passwords[2], passwords[1]
        ),
    );
    let (code, out, err) = sim.run(
        &pb,
        &["--bmc-credentials", swapped.to_str().expect("utf-8")],
    );
    assert_ne!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("rejected the credentials from") && out.contains("(entry `dell`)"),
        "{out}"
    );
    for pw in &passwords {
        assert!(!out.contains(pw) && !err.contains(pw));
    }

    // `plan --preflight` reads each power state with its entry (plain1 is on
    // since the swapped run), and sends nothing.
    let mut plan = support::rekindle();
    plan.arg("plan")
        .arg(&pb)
        .arg("-i")
        .arg(sim.inventory())
        .arg("--preflight")
        .arg("--bmc-credentials")
        .arg(sim.path("bmc-credentials"));
    let (_, out, err) = support::run(&mut plan);
    assert!(
        out.contains("power (4 hosts through their BMCs): on 1, off 3\n"),
        "{out}\n{err}"
    );

    // The sim's own file: every host powered on with its entry.
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let s = sim.wait_status("all up", |s| s["hosts_up"] == 4);
    for name in ["dell1", "dell2", "hp1", "plain1"] {
        assert_eq!(host(&s, name)["power_ons"], 1, "{name}: {s}");
    }
}

#[test]
fn a_redfish_system_the_bmc_lacks_fails_the_host_naming_what_it_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("blade.yaml");
    std::fs::write(
        &inv,
        "version: 1\ndatacenters:\n  sim:\n    hosts:\n      - name: blade1\n        labels: { pdu: p, redfish_system: Node.9 }\n",
    )
    .expect("write inventory");
    let sim = BmcSim::start(3671, &["-i", inv.to_str().expect("utf-8")]);
    let pb = playbook(sim.dir.path(), "{ timeout: 1m }");
    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
    assert_ne!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("no system `Node.9` (redfish_system label)")
            && out.contains("/redfish/v1/Systems/System.Embedded.1"),
        "{out}"
    );
    assert_eq!(host(&sim.status(), "blade1")["power_ons"], 0);
}

#[test]
fn the_bmc_password_from_the_environment_stays_out_of_local_hooks() {
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: h1\n",
        // Every REKINDLE_* variable stays out (child_env); an ordinary one
        // reaches the hook, so the check itself can fail.
        "version: 1\nstages:\n  - name: s\n    select: { dc: dc }\n    steps: [ { local: \"test -z \\\"$REKINDLE_BMC_PASSWORD\\\" && test -z \\\"$REKINDLE_BMC_USER\\\" && test -n \\\"$OPS_TEAM\\\"\" } ]\n",
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
    ])
    .env("REKINDLE_BMC_USER", "ops")
    .env("OPS_TEAM", "ops")
    .env("REKINDLE_BMC_PASSWORD", "env-secret-4411");
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
}

/// Regression: a FIFO as `--bmc-credentials` blocked `open()` forever,
/// holding the lock, after creating an empty journal. The path is checked
/// first, and every input before the lock or the journal exists.
#[test]
fn a_fifo_as_credentials_file_is_refused_before_any_journal_or_lock() {
    use std::os::unix::ffi::OsStrExt;
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: h1\n        labels: { bmc: \"https://127.0.0.1:9\", pdu: p1 }\n",
        "version: 1\nstages:\n  - name: s\n    select: { dc: dc }\n    steps: [ { power_on: { timeout: 1m } } ]\n",
    );
    let fifo = dir.path().join("creds");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let child = support::rekindle_in(dir.path())
        .args([
            "run",
            "pb.yaml",
            "-i",
            "inv.yaml",
            "--yes",
            "--journal",
            "j",
        ])
        .arg("--bmc-credentials")
        .arg(&fifo)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rekindle starts");
    let mut child = support::KillOnDrop::new(child);
    let stderr = child.child().stderr.take();
    let status = child
        .wait_for(std::time::Duration::from_secs(60))
        .expect("rekindle must not hang on a FIFO");
    assert_eq!(status.code(), Some(2));
    let mut err = String::new();
    if let Some(mut e) = stderr {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(err.contains("not a small regular file"), "{err}");
    assert!(
        !dir.path().join("j").exists(),
        "no journal directory, journal or lock before the inputs are checked"
    );
}

/// Regression: a `bmc` label with an `http://` URL made rekindle POST the
/// BMC password in cleartext without a word. `run` refuses it (before any
/// journal) unless `--bmc-allow-http`; `plan` warns.
#[test]
fn plain_http_bmcs_are_refused_unless_allowed_and_plan_warns() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: h1\n        labels: { bmc: \"http://127.0.0.1:9\", pdu: p1 }\n",
        "version: 1\nstages:\n  - name: s\n    select: { dc: dc }\n    steps: [ { power_on: { timeout: 1m } } ]\n",
    );
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "admin:secret-7781\n").expect("credentials");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, out, err) = support::run(
        support::rekindle_in(dir.path())
            .args([
                "run",
                "pb.yaml",
                "-i",
                "inv.yaml",
                "--yes",
                "--journal",
                "j",
            ])
            .arg("--bmc-credentials")
            .arg(&creds)
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("is plain http"), "{err}");
    assert!(err.contains("--bmc-allow-http"), "{err}");
    assert!(!err.contains("secret-7781"), "{err}");
    assert!(
        !dir.path().join("j").exists(),
        "nothing recorded before the refusal"
    );
    let (code, out, err) =
        support::run(support::rekindle_in(dir.path()).args(["plan", "pb.yaml", "-i", "inv.yaml"]));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("warning: host h1: BMC `http://127.0.0.1:9` is plain http"),
        "{out}"
    );
}

/// `plan --bmc-credentials` checks every host a stage reaches through its
/// BMC, `remediate`'s power cycles as well as `power_on`: before, a plan
/// whose only BMC use was `remediate` passed with a file that had no account
/// for its hosts, and the run then failed each straggler on the spot.
#[test]
fn plan_checks_bmc_credentials_for_remediate_as_well_as_power_on() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - name: h1\n        labels: { bmc: \"https://127.0.0.1:9\", bmc_credentials: rack7 }\n",
        "version: 1\nstages:\n  - name: s\n    select: { dc: dc }\n    remediate: { power_cycle: 1 }\n    steps: [ { reboot: { timeout: 5m } } ]\n",
    );
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "rack1 admin:secret-5512\n").expect("credentials");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let plan = |creds: &std::path::Path| {
        support::run(
            support::rekindle_in(dir.path())
                .args(["plan", "pb.yaml", "-i", "inv.yaml", "--bmc-credentials"])
                .arg(creds),
        )
    };
    let (code, out, err) = plan(&creds);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("inv.yaml:5:")
            && err.contains("host h1: BMC credentials")
            && err.contains("no entry `rack7`"),
        "{err}"
    );
    assert!(!err.contains("secret-5512") && !out.contains("secret-5512"));
    std::fs::write(&creds, "rack7 admin:secret-5512\n").expect("credentials");
    let (code, out, err) = plan(&creds);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
}

/// Every `sim --bmc-profile`: the BMC behaviours of one vendor family (see
/// src/sim/bmc.rs and docs/bmc.md): system ids `System.Embedded.1`, `1`,
/// `system`; 200 and 202-with-a-task-monitor answers to a reset; a session
/// without a Location header; two logins refused with SessionLimitExceeded
/// (backed off, not failed); 503 with Retry-After while the BMC starts; no
/// `On` among the allowed reset types (ForceOn sent, and the journal says
/// so). Each host is powered on once and comes up for SSH.
#[test]
fn every_vendor_profile_of_the_simulated_bmc_is_powered_on_once() {
    let profiles = [
        ("dell", "On"),
        ("hpe", "On"),
        ("supermicro", "On"),
        ("openbmc", "On"),
        ("lenovo", "ForceOn"),
    ];
    std::thread::scope(|scope| {
        let runs: Vec<_> = profiles
            .iter()
            .enumerate()
            .map(|(i, (profile, reset))| {
                scope.spawn(move || {
                    let base = 25400 + 10 * i as u16;
                    let sim = BmcSim::start(base, &["--hosts", "2", "--bmc-profile", profile]);
                    let pb = playbook(sim.dir.path(), "{ timeout: 2m, pdu_interval: 200ms }");
                    let (code, out, err) = sim.run_with_credentials(&pb, &[]);
                    assert_eq!(code, 0, "{profile}: stdout:\n{out}\nstderr:\n{err}");
                    let s = sim.wait_status("all up", |s| s["hosts_up"] == 2);
                    for name in ["sim-00001", "sim-00002"] {
                        assert_eq!(host(&s, name)["power_ons"], 1, "{profile} {name}: {s}");
                    }
                    let journal = support::journal_in(&sim.dir.path().join("journal"));
                    let text = std::fs::read_to_string(journal).expect("journal");
                    let sent = format!("\"reset_type\":\"{reset}\"");
                    assert_eq!(text.matches(&sent).count(), 2, "{profile}: {text}");
                    let password = sim.password();
                    assert!(!text.contains(&password) && !out.contains(&password));
                })
            })
            .collect();
        for r in runs {
            r.join().expect("profile run");
        }
    });
}

#[test]
fn an_unknown_bmc_profile_is_refused_naming_the_known_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = support::rekindle();
    cmd.args([
        "sim",
        "--powered-off",
        "--hosts",
        "1",
        "--bmc-profile",
        "ibm",
        "--out",
    ])
    .arg(dir.path().join("fleet"));
    let (code, _, err) = support::run(&mut cmd);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "unknown BMC profile `ibm` (one of: generic, dell, hpe, supermicro, openbmc, lenovo)"
        ),
        "{err}"
    );
}

/// One HTTP/1.0 request to `addr:port` (bounded: 5 s to connect and read):
/// the whole answer, status line and headers included; empty when the
/// server could not be reached.
pub(crate) fn http(
    addr: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    use std::io::{Read, Write};
    let target = std::net::SocketAddr::new(addr.parse().expect("an IP address"), port);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}:{port}\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str("Content-Type: application/json\r\n");
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// The status code of an HTTP answer (0 when there is none).
pub(crate) fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The JSON body of an HTTP answer (`Null` when it has none).
pub(crate) fn json_body(answer: &str) -> Value {
    answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

/// The `@odata.id` of every member of a collection.
pub(crate) fn members(collection: &Value) -> Vec<String> {
    collection["Members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["@odata.id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Issue 23: "a session whose `Location` header is missing is still usable
/// and never leaks". The simulated BMC lists its open sessions
/// (`GET /redfish/v1/SessionService/Sessions`, as Redfish services do);
/// with the `generic` profile a login is answered with a `Location`
/// header, with `supermicro` only with the session's `@odata.id` in the
/// body. Before the run the test opens a session of its own on each BMC
/// (so the listing is shown to work, and the absence of `Location` is
/// checked, not assumed); after the run only the test's session is open:
/// rekindle deleted each of its own, found by `Location` or `@odata.id`.
#[test]
fn power_on_leaves_no_session_open_with_or_without_a_location_header() {
    for (base, profile, location) in [(29200, "generic", true), (29210, "supermicro", false)] {
        let sim = BmcSim::start(base, &["--hosts", "2", "--bmc-profile", profile]);
        let creds = std::fs::read_to_string(sim.path("bmc-credentials")).expect("credentials");
        let first = creds.lines().next().expect("a line");
        let (user, password) = first.split_once(':').expect("user:password");
        let basic = format!(
            "Basic {}",
            crate::sushy::base64(format!("{user}:{password}").as_bytes())
        );
        let port = base + 2;
        let status = sim.status();
        let addrs: Vec<String> = ["sim-00001", "sim-00002"]
            .iter()
            .map(|n| {
                host(&status, n)["address"]
                    .as_str()
                    .expect("address")
                    .to_owned()
            })
            .collect();
        let list = |addr: &str| {
            let answer = http(
                addr,
                port,
                "GET",
                bmc_sessions(),
                &[("Authorization", &basic)],
                "",
            );
            assert_eq!(status_of(&answer), 200, "{profile}: {answer}");
            members(&json_body(&answer))
        };
        let mut ours = Vec::new();
        for addr in &addrs {
            assert_eq!(list(addr), Vec::<String>::new(), "{profile} {addr}");
            let login = serde_json::json!({"UserName": user, "Password": password}).to_string();
            let answer = http(addr, port, "POST", bmc_sessions(), &[], &login);
            assert_eq!(status_of(&answer), 201, "{profile}: {answer}");
            let head = answer
                .split("\r\n\r\n")
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            assert_eq!(
                head.contains("\r\nlocation:"),
                location,
                "{profile}: {answer}"
            );
            let id = json_body(&answer)["@odata.id"]
                .as_str()
                .expect("the session's @odata.id")
                .to_owned();
            assert_eq!(list(addr), std::slice::from_ref(&id), "{profile} {addr}");
            ours.push(id);
        }

        let pb = playbook(sim.dir.path(), "{ timeout: 2m, pdu_interval: 200ms }");
        let (code, out, err) = sim.run_with_credentials(&pb, &[]);
        assert_eq!(code, 0, "{profile}: stdout:\n{out}\nstderr:\n{err}");
        let s = sim.wait_status("all up", |s| s["hosts_up"] == 2);
        for (name, (addr, id)) in ["sim-00001", "sim-00002"]
            .iter()
            .zip(addrs.iter().zip(&ours))
        {
            assert_eq!(host(&s, name)["power_ons"], 1, "{profile} {name}: {s}");
            // rekindle's session (a later id than ours) is gone; ours stays.
            assert_eq!(
                list(addr),
                std::slice::from_ref(id),
                "{profile} {name}: a session leaked"
            );
        }
        // rekindle did log in with a session (the id after ours was used),
        // not with Basic: a next login gets an id two past ours.
        let answer = http(
            &addrs[0],
            port,
            "POST",
            bmc_sessions(),
            &[],
            &serde_json::json!({"UserName": user, "Password": password}).to_string(),
        );
        let next = json_body(&answer)["Id"].as_str().unwrap_or("").to_owned();
        let first_id: u64 = ours[0]
            .rsplit('/')
            .next()
            .and_then(|i| i.parse().ok())
            .expect("id");
        assert_eq!(next, (first_id + 2).to_string(), "{profile}: {answer}");
    }
}

fn bmc_sessions() -> &'static str {
    "/redfish/v1/SessionService/Sessions"
}

/// `bmc_spacing` (issue 23, BENCHMARKS 14a): a label out of bounds, or
/// hosts of one BMC that disagree, are input errors at the host's line in
/// `plan` and `run`, before anything is recorded or sent.
#[test]
fn a_bad_or_conflicting_bmc_spacing_is_an_input_error_at_the_hosts_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      \
         - name: h1\n        labels: { bmc: \"https://127.0.0.1:9\", pdu: p1, bmc_spacing: 20ms }\n      \
         - name: h2\n        labels: { bmc: \"https://127.0.0.1:9\", pdu: p1, bmc_spacing: 200ms }\n      \
         - name: h3\n        labels: { bmc: \"https://127.0.0.1:9\", pdu: p1 }\n      \
         - name: h4\n        labels: { bmc: \"https://127.0.0.1:8\", pdu: p1, bmc_spacing: 300ms }\n",
        "version: 1\nstages:\n  - name: s\n    select: { dc: dc }\n    steps: [ { power_on: { timeout: 1m } } ]\n",
    );
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "admin:secret-5512\n").expect("credentials");
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, out, err) =
        support::run(support::rekindle_in(dir.path()).args(["plan", "pb.yaml", "-i", "inv.yaml"]));
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    let (code, out, run_err) = support::run(
        support::rekindle_in(dir.path())
            .args([
                "run",
                "pb.yaml",
                "-i",
                "inv.yaml",
                "--yes",
                "--journal",
                "j",
            ])
            .arg("--bmc-credentials")
            .arg(&creds)
            .stdin(std::process::Stdio::null()),
    );
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{run_err}");
    for err in [&err, &run_err] {
        assert!(
            err.contains(
                "inv.yaml:5:15: error: host h1: label `bmc_spacing`: `20ms` is outside 100ms to 1m"
            ),
            "{err}"
        );
        assert!(
            err.contains("inv.yaml:9:15: error: host h3: label `bmc_spacing`: unset (1s) on BMC https://127.0.0.1:9, but host h2 on the same BMC has 200ms"),
            "{err}"
        );
        // h2 and h4 are fine: one error per host at fault.
        assert_eq!(err.matches("error: host").count(), 2, "{err}");
        assert!(!err.contains("secret-5512"), "{err}");
    }
    assert!(!dir.path().join("j").exists(), "nothing recorded");
}

/// Issue 23: "400/409 when the system is already On (treated as On after a
/// fresh read)", end to end against the `dell` (409) and `hpe` (400)
/// profiles. Two hosts share one PDU with a 6 s interval, so the second
/// host reads its system Off and then waits for its turn; the moment the
/// first host's reset lands, the test powers the second one on itself
/// (as a colleague at the console would). rekindle's reset then meets a
/// system that is On and is refused; it reads again, finds On, and the
/// host is done. The refused reset did not count as a power-on.
#[test]
fn a_system_powered_on_by_someone_else_before_the_reset_is_done_after_400_or_409() {
    std::thread::scope(|scope| {
        let runs: Vec<_> = [(29220u16, "dell", "System.Embedded.1"), (29230, "hpe", "1")]
            .into_iter()
            .map(|(base, profile, system)| {
                scope.spawn(move || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let inv = dir.path().join("rack.yaml");
                    std::fs::write(
                        &inv,
                        "version: 1\ndatacenters:\n  sim:\n    hosts:\n      - name: \"a[1-2]\"\n        labels: { pdu: pdu-a, rack: a }\n",
                    )
                    .expect("inventory");
                    let sim = BmcSim::start(
                        base,
                        &["-i", inv.to_str().expect("utf-8"), "--bmc-profile", profile],
                    );
                    let creds = std::fs::read_to_string(sim.path("bmc-credentials"))
                        .expect("credentials");
                    let (user, password) = creds
                        .lines()
                        .next()
                        .and_then(|l| l.split_once(':'))
                        .expect("user:password");
                    let basic = format!(
                        "Basic {}",
                        crate::sushy::base64(format!("{user}:{password}").as_bytes())
                    );
                    let pb = playbook(
                        sim.dir.path(),
                        "{ timeout: 1m, pdu_interval: 6s, rate: 100/s }",
                    );
                    let status = sim.status();
                    let addr = |name: &str| {
                        host(&status, name)["address"]
                            .as_str()
                            .expect("address")
                            .to_owned()
                    };
                    let (a1, a2) = (addr("a1"), addr("a2"));
                    let out_file = sim.path("rekindle.out");
                    let err_file = sim.path("rekindle.err");
                    let mut child = support::KillOnDrop::new(
                        support::rekindle()
                            .arg("run")
                            .arg(&pb)
                            .arg("-i")
                            .arg(sim.inventory())
                            .args(["--yes", "--journal"])
                            .arg(sim.dir.path().join("journal"))
                            .arg("--bmc-credentials")
                            .arg(sim.path("bmc-credentials"))
                            .env_remove("REKINDLE_BMC_USER")
                            .env_remove("REKINDLE_BMC_PASSWORD")
                            .stdin(std::process::Stdio::null())
                            .stdout(std::fs::File::create(&out_file).expect("out"))
                            .stderr(std::fs::File::create(&err_file).expect("err"))
                            .spawn()
                            .expect("rekindle starts"),
                    );
                    // The first reset to land decides which host is second.
                    let s = sim.wait_status("a first reset", |s| {
                        host(s, "a1")["reset_at_ms"].is_u64()
                            || host(s, "a2")["reset_at_ms"].is_u64()
                    });
                    let second = if host(&s, "a1")["reset_at_ms"].is_u64() {
                        (&a2, "a2")
                    } else {
                        (&a1, "a1")
                    };
                    let answer = http(
                        second.0,
                        base + 2,
                        "POST",
                        &format!("/redfish/v1/Systems/{system}/Actions/ComputerSystem.Reset"),
                        &[("Authorization", &basic)],
                        "{\"ResetType\": \"On\"}",
                    );
                    assert!(
                        matches!(status_of(&answer), 200 | 204),
                        "{profile}: {answer}"
                    );
                    let exit = child
                        .wait_for(Duration::from_secs(90))
                        .expect("rekindle finishes within 90 s");
                    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
                    let (code, out, err) = (exit.code().unwrap_or(-1), read(&out_file), read(&err_file));
                    let second = second.1;
                    assert_eq!(code, 0, "{profile}: stdout:\n{out}\nstderr:\n{err}");
                    let s = sim.wait_status("both up", |s| s["hosts_up"] == 2);
                    for name in ["a1", "a2"] {
                        assert_eq!(host(&s, name)["power_ons"], 1, "{profile} {name}: {s}");
                    }
                    // rekindle did send the second host's reset (its intent
                    // is journaled right before): the refusal was met.
                    let journal = support::journal_in(&sim.dir.path().join("journal"));
                    let text = std::fs::read_to_string(journal).expect("journal");
                    let issued = text
                        .lines()
                        .filter(|l| l.contains("\"power_on_issued\""))
                        .filter(|l| l.contains(&format!("\"name\":\"{second}\"")))
                        .count();
                    assert_eq!(issued, 1, "{profile}: {text}");
                })
            })
            .collect();
        for r in runs {
            r.join().expect("profile run");
        }
    });
}
