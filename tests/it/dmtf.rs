//! `power_on` against DMTF's own Redfish Mockup Server (redfishMockupServer.py
//! 1.2.6, BSD-3-Clause, kept verbatim in tests/fixtures/redfish/mockup-server
//! and run with the venv scripts/test.sh makes under target/venv-mockup)
//! serving DMTF's published mockups (tests/fixtures/redfish/README.md names
//! each file's repository and commit): a Redfish service and documents
//! nobody here wrote.
//!
//! What the mockups show: DMTF's system ids (`437XR1138R2`, four blades
//! behind one service), their `#ComputerSystem.Reset` targets and
//! `ResetType@Redfish.AllowableValues`, a session login answered 204 with
//! `Location` and `X-Auth-Token` and a session collection that lists what
//! is open. What they cannot: the server is static, so power never changes
//! by itself; the test plays the power supply (it PATCHes `PowerState` to
//! `Off` before the run and to `On` once the server's log shows the reset
//! rekindle sent). It checks no credentials (rekindle's are sent anyway).
//! Ports 29300-29309 on 127.29.3.x.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::power::{http, json_body, members, status_of};
use crate::support::{self, KillOnDrop};

/// The venv's python (`REKINDLE_MOCKUP_PYTHON` overrides).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("REKINDLE_MOCKUP_PYTHON") {
        return PathBuf::from(p);
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_owned();
    let path = target.join("venv-mockup/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it makes the Redfish mockup server's venv)",
        path.display()
    );
    path
}

fn fixture(rel: &str) -> PathBuf {
    support::root().join("tests/fixtures/redfish").join(rel)
}

/// A running redfishMockupServer.py serving one mockup, killed on drop.
struct Mockup {
    _proc: KillOnDrop,
    dir: tempfile::TempDir,
    addr: &'static str,
    port: u16,
}

impl Mockup {
    fn start(mockup: &str, addr: &'static str, port: u16) -> Mockup {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("mockup.log")).expect("log");
        let mut cmd = Command::new(python());
        cmd.arg(fixture("mockup-server/redfishMockupServer.py"))
            // The mockups are in the short form (no /redfish/v1 directories).
            .arg("-S")
            .arg("-D")
            .arg(fixture(mockup))
            .args(["-H", addr, "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let proc = KillOnDrop::new(cmd.spawn().expect("the mockup server starts"));
        let m = Mockup {
            _proc: proc,
            dir,
            addr,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while status_of(&m.get("/redfish/v1")) != 200 {
            assert!(
                Instant::now() < deadline,
                "the mockup server did not answer on {addr}:{port}: {}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    fn get(&self, path: &str) -> String {
        http(self.addr, self.port, "GET", path, &[], "")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mockup.log")).unwrap_or_default()
    }

    /// PATCHes a system's `PowerState` (what the power supply would do).
    fn set_power(&self, system: &str, state: &str) {
        let body = format!("{{\"PowerState\": \"{state}\"}}");
        let answer = http(self.addr, self.port, "PATCH", system, &[], &body);
        assert_eq!(status_of(&answer), 204, "{answer}");
        assert_eq!(json_body(&self.get(system))["PowerState"], state);
    }

    fn sessions(&self) -> Vec<String> {
        members(&json_body(&self.get("/redfish/v1/SessionService/Sessions")))
    }

    /// `rekindle run` of a power_on playbook over `hosts` (name, system id)
    /// while this thread plays the power supply: each system the server's
    /// log shows a reset for is PATCHed `On`. Returns (exit code, stdout,
    /// stderr, journal).
    fn power_on(&self, hosts: &[(&str, &str)], password: &str) -> (i32, String, String, String) {
        let mut inv = String::from("version: 1\ndatacenters:\n  lab:\n    hosts:\n");
        for (name, system) in hosts {
            inv.push_str(&format!(
                "      - name: {name}\n        address: {addr}\n        port: 9\n        labels: \
                 {{ bmc: \"http://{addr}:{port}\", bmc_allow_http: \"true\", redfish_system: \
                 \"{system}\", pdu: pdu-a }}\n",
                addr = self.addr,
                port = self.port,
            ));
        }
        let dir = self.dir.path();
        std::fs::write(dir.join("inv.yaml"), inv).expect("inventory");
        std::fs::write(
            dir.join("power.yaml"),
            "version: 1\nname: power\nstages:\n  - name: all\n    select: { dc: lab }\n    \
             parallel: 100%\n    steps:\n      - power_on: { timeout: 1m, pdu_interval: 200ms }\n",
        )
        .expect("playbook");
        let mut child = KillOnDrop::new(
            support::rekindle_in(dir)
                .args(["run", "power.yaml", "-i", "inv.yaml", "--yes", "--journal"])
                .arg(dir.join("journal"))
                .env("REKINDLE_BMC_USER", "Administrator")
                .env("REKINDLE_BMC_PASSWORD", password)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("out")).expect("out"))
                .stderr(std::fs::File::create(dir.join("err")).expect("err"))
                .spawn()
                .expect("rekindle starts"),
        );
        let mut pending: Vec<&str> = hosts.iter().map(|(_, s)| *s).collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            let log = self.log();
            pending.retain(|system| {
                let reset = format!(
                    "\"POST /redfish/v1/Systems/{system}/Actions/ComputerSystem.Reset HTTP/1.1\" 204"
                );
                if log.contains(&reset) {
                    self.set_power(&format!("/redfish/v1/Systems/{system}"), "On");
                    return false;
                }
                true
            });
            if let Some(status) = child.wait_for(Duration::from_millis(200)) {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "rekindle did not finish: {}",
                self.log()
            );
        };
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let journal =
            std::fs::read_to_string(support::journal_in(&dir.join("journal"))).unwrap_or_default();
        (
            status.code().unwrap_or(-1),
            read("out"),
            read("err"),
            journal,
        )
    }
}

/// DMTF's public-rackmount1: one system, `437XR1138R2`, whose allowed
/// reset types include `On`. rekindle logs in (204 + `Location` +
/// `X-Auth-Token`), reads the system, posts `On` to the document's own
/// target, waits for On and deletes its session by the `Location` the
/// server gave: the collection is back to the mockup's one session.
#[test]
fn power_on_through_dmtfs_mockup_server_uses_its_target_and_logs_out() {
    let m = Mockup::start("public-rackmount1", "127.29.3.1", 29300);
    let system = "/redfish/v1/Systems/437XR1138R2";
    let before = m.sessions();
    assert_eq!(
        before,
        ["/redfish/v1/SessionService/Sessions/1234567890ABCDEF"]
    );
    m.set_power(system, "Off");
    let password = "dmtf-pw-7f3a91";
    let (code, out, err, journal) = m.power_on(&[("rack-1", "437XR1138R2")], password);
    let log = m.log();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}\nmockup:\n{log}");
    // The reset went to the mockup's target with the type rekindle chose
    // from the mockup's allowable values (the server logs the body).
    assert!(log.contains("POST: Data: {'ResetType': 'On'}"), "{log}");
    assert!(journal.contains("\"reset_type\":\"On\""), "{journal}");
    // rekindle's session was the mockup's next member, and it deleted it.
    assert!(
        log.contains("\"POST /redfish/v1/SessionService/Sessions HTTP/1.1\" 204"),
        "{log}"
    );
    assert!(
        log.contains(
            "\"DELETE /redfish/v1/SessionService/Sessions/1234567890ABCDEF1 HTTP/1.1\" 204"
        ),
        "{log}"
    );
    assert_eq!(m.sessions(), before, "a session leaked: {log}");
    assert_eq!(json_body(&m.get(system))["PowerState"], "On");
    for text in [&out, &err, &journal] {
        assert!(!text.contains(password), "{text}");
    }
}

/// DMTF's public-bladed: four Systems behind one service. Two hosts pick
/// theirs by `redfish_system` (the other blades' documents are not even
/// served, so a wrong pick fails); each reset goes to its own blade's
/// target, and no session is left open.
#[test]
fn power_on_picks_blades_of_dmtfs_bladed_mockup_by_redfish_system() {
    let m = Mockup::start("public-bladed", "127.29.3.2", 29301);
    let before = m.sessions();
    assert_eq!(
        before,
        ["/redfish/v1/SessionService/Sessions/12623963E803C264"]
    );
    let blades = ["529QB9451R6", "529QB9452R6"];
    for b in blades {
        m.set_power(&format!("/redfish/v1/Systems/{b}"), "Off");
    }
    let (code, out, err, _) = m.power_on(
        &[("blade-2", blades[0]), ("blade-3", blades[1])],
        "dmtf-pw-1",
    );
    let log = m.log();
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}\nmockup:\n{log}");
    for b in blades {
        let reset =
            format!("\"POST /redfish/v1/Systems/{b}/Actions/ComputerSystem.Reset HTTP/1.1\" 204");
        assert_eq!(log.matches(&reset).count(), 1, "{b}: {log}");
        assert_eq!(
            json_body(&m.get(&format!("/redfish/v1/Systems/{b}")))["PowerState"],
            "On"
        );
    }
    for other in ["529QB9450R6", "529QB9453R6"] {
        assert!(
            !log.contains(&format!("/Systems/{other}")),
            "{other}: {log}"
        );
    }
    assert_eq!(m.sessions(), before, "a session leaked: {log}");
    // Every session rekindle opened was deleted (as many DELETEs as POSTs).
    let opened = log
        .matches("\"POST /redfish/v1/SessionService/Sessions HTTP/1.1\" 204")
        .count();
    let closed = log
        .matches("\"DELETE /redfish/v1/SessionService/Sessions/")
        .count();
    assert!(
        opened >= 1 && opened == closed,
        "{opened} opened, {closed} closed: {log}"
    );
}
