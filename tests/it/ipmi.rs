//! `power_on` over IPMI 2.0 (lanplus) end to end: `rekindle run` drives
//! Debian's `ipmitool` against real `ipmi_sim` BMCs (openipmi) on loopback,
//! each started and stopped by the test. A BMC's chassis power is a file its
//! `chassis_control` program reads and writes, and every power command it
//! receives is appended to a log, so the test sees what was sent.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, KillOnDrop};

/// One `ipmi_sim` BMC on 127.0.0.1:port, user `admin`.
struct IpmiSim {
    /// Declared first: killed before its directory is removed.
    _child: KillOnDrop,
    dir: tempfile::TempDir,
    port: u16,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

impl IpmiSim {
    fn start(password: &str, powered_on: bool) -> IpmiSim {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("state")).expect("state dir");
        std::fs::write(d.join("power"), if powered_on { "1\n" } else { "0\n" }).expect("power");
        let control = d.join("control.sh");
        std::fs::write(
            &control,
            format!(
                "#!/bin/sh\ncase \"$1 $2\" in\n  'get power') echo \"power:$(cat {d}/power)\" ;;\n  'set power') echo \"$3\" > {d}/power; echo \"set power $3\" >> {d}/commands ;;\nesac\n",
                d = d.display()
            ),
        )
        .expect("control program");
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(
            d.join("cmds"),
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
        )
        .expect("cmds");
        for _attempt in 0..5 {
            let port = free_udp_port();
            std::fs::write(
                d.join("lan.conf"),
                format!(
                    "name \"bmc1\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n    allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n    allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n    guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{}\"\n  user 2 true \"admin\" \"{password}\" admin 10 none md2 md5 straight\n",
                    control.display()
                ),
            )
            .expect("lan.conf");
            let log = std::fs::File::create(d.join("sim.log")).expect("log");
            let child = Command::new("ipmi_sim")
                .arg("-c")
                .arg(d.join("lan.conf"))
                .arg("-f")
                .arg(d.join("cmds"))
                .arg("-n")
                .arg("-s")
                .arg(d.join("state"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("ipmi_sim starts (apt-get install openipmi)");
            let mut child = KillOnDrop::new(child);
            // Ready when it answers a power status; bounded (5 s).
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if child.child().try_wait().expect("try_wait").is_some() {
                    break;
                }
                let st = Command::new("ipmitool")
                    .args([
                        "-I",
                        "lanplus",
                        "-C",
                        "3",
                        "-N",
                        "1",
                        "-R",
                        "1",
                        "-H",
                        "127.0.0.1",
                    ])
                    .args(["-p", &port.to_string(), "-U", "admin", "-E"])
                    .args(["chassis", "power", "status"])
                    .env("IPMI_PASSWORD", password)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("ipmitool runs (apt-get install ipmitool)");
                if st.success() {
                    return IpmiSim {
                        _child: child,
                        dir,
                        port,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "ipmi_sim did not start:\n{}",
            std::fs::read_to_string(dir.path().join("sim.log")).unwrap_or_default()
        );
    }

    fn bmc(&self) -> String {
        format!("ipmi://127.0.0.1:{}", self.port)
    }

    fn is_on(&self) -> bool {
        std::fs::read_to_string(self.dir.path().join("power"))
            .expect("power")
            .trim()
            == "1"
    }

    /// The power commands it received, in order.
    fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("commands"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An inventory of (name, bmc, extra labels) hosts, and a power_on playbook.
    fn write(&self, hosts: &[(&str, &str, &str)], power_on: &str) {
        let mut y = String::from("version: 1\ndatacenters:\n  lab:\n    hosts:\n");
        for (name, bmc, extra) in hosts {
            y.push_str(&format!(
                "      - name: {name}\n        labels: {{ pdu: p1, bmc: \"{bmc}\"{extra} }}\n"
            ));
        }
        std::fs::write(self.path("inventory.yaml"), y).expect("inventory");
        std::fs::write(
            self.path("power.yaml"),
            format!(
                "version: 1\nstages:\n  - name: power\n    select: {{ dc: lab }}\n    parallel: 100%\n    max_failures: 100%\n    steps:\n      - power_on: {power_on}\n"
            ),
        )
        .expect("playbook");
    }

    fn credentials(&self, text: &str) -> PathBuf {
        let p = self.path("bmc-credentials");
        std::fs::write(&p, text).expect("credentials");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        p
    }

    fn run(&self, journal: &str, creds: &Path) -> (i32, String, String) {
        let mut cmd = support::rekindle_in(self.dir.path());
        cmd.arg("run")
            .arg(self.path("power.yaml"))
            .arg("-i")
            .arg(self.path("inventory.yaml"))
            .args(["--yes", "--journal"])
            .arg(self.path(journal))
            .arg("--bmc-credentials")
            .arg(creds)
            .env_remove("REKINDLE_BMC_USER")
            .env_remove("REKINDLE_BMC_PASSWORD");
        support::run(&mut cmd)
    }

    /// The journal and its reports, as an operator would read them.
    fn written(&self, journal: &str) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.path(journal))
            .expect("journal")
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                all.push_str(&std::fs::read_to_string(&p).expect("journal"));
                for format in ["text", "json"] {
                    let mut cmd = support::rekindle();
                    cmd.args(["report", "--format", format]).arg(&p);
                    all.push_str(&support::run(&mut cmd).1);
                }
            }
        }
        all
    }
}

fn failed_line<'a>(out: &'a str, host: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with("FAILED") && l.split_whitespace().nth(2) == Some(host))
        .unwrap_or_else(|| panic!("no FAILED line for {host}:\n{out}"))
}

#[test]
fn ipmi_bmcs_are_powered_on_with_their_own_credentials() {
    let off = IpmiSim::start("pw-rack-a-7c1", false);
    let on = IpmiSim::start("pw-default-91e", true);
    let wrong = IpmiSim::start("pw-actual-3d0", false);
    let unreachable = format!("ipmi://127.0.0.1:{}", free_udp_port());
    let case = Case::new();
    case.write(
        &[
            ("off1", &off.bmc(), ", bmc_credentials: rack-a"),
            ("on1", &on.bmc(), ""),
            ("wrong1", &wrong.bmc(), ", bmc_credentials: rack-c"),
            ("gone1", &unreachable, ""),
        ],
        "{ timeout: 20s, reprobe: 2s, pdu_interval: 100ms }",
    );
    let creds = case.credentials(
        "admin:pw-default-91e\nrack-a admin:pw-rack-a-7c1\nrack-c admin:not-the-ipmi-pw-55\n",
    );
    // `plan --preflight` reads every power state and changes nothing.
    let mut cmd = support::rekindle_in(case.dir.path());
    cmd.arg("plan")
        .arg(case.path("power.yaml"))
        .arg("-i")
        .arg(case.path("inventory.yaml"))
        .arg("--preflight")
        .arg("--bmc-credentials")
        .arg(&creds);
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("power (4 hosts through their BMCs): on 1, off 1, not read 2"),
        "{out}"
    );
    assert!(out.contains("  wrong1: credentials rejected: "), "{out}");
    assert!(out.contains("  gone1: BMC unreachable: "), "{out}");
    assert!(off.commands().is_empty() && !off.is_on());

    let (code, out, err) = case.run("j", &creds);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");

    // From off: one `chassis power on`, and it is on now.
    assert!(off.is_on(), "{out}");
    assert_eq!(off.commands(), ["set power 1"], "{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("FAILED") && l.contains(" off1 "))
    );
    // Already on: no command at all.
    assert!(on.is_on());
    assert!(on.commands().is_empty(), "{:?}", on.commands());
    // Wrong password: refused, nothing sent, the entry named.
    let line = failed_line(&out, "wrong1");
    assert!(
        line.contains("rejected the credentials from")
            && line.contains("(entry `rack-c`)")
            && line.contains("IPMI"),
        "{line}"
    );
    assert!(!wrong.is_on() && wrong.commands().is_empty());
    // No BMC there: unreachable until the step's timeout.
    let line = failed_line(&out, "gone1");
    assert!(
        line.contains("power_on did not finish within 20s")
            && line.contains(&unreachable)
            && line.contains("unreachable"),
        "{line}"
    );

    // Secrets stay out of output, journal and reports.
    let seen = format!("{out}{err}{}", case.written("j"));
    for secret in [
        "pw-rack-a-7c1",
        "pw-default-91e",
        "pw-actual-3d0",
        "not-the-ipmi-pw-55",
    ] {
        assert!(!seen.contains(secret), "{secret} leaked");
    }

    // Run again over the two that are on: neither gets a command.
    case.write(
        &[
            ("off1", &off.bmc(), ", bmc_credentials: rack-a"),
            ("on1", &on.bmc(), ""),
        ],
        "{ timeout: 20s }",
    );
    let (code, out, _) = case.run("j2", &creds);
    assert_eq!(code, 0, "{out}");
    assert_eq!(off.commands(), ["set power 1"], "{out}");
    assert!(on.commands().is_empty());
}

#[test]
fn a_broken_ipmi_address_is_an_input_error_at_the_hosts_line() {
    let case = Case::new();
    case.write(
        &[
            ("h1", "ipmi://10.0.0.1:6230", ""),
            ("h2", "ipmi://fe80::1:623", ""),
        ],
        "{ timeout: 1m }",
    );
    let creds = case.credentials("admin:x\n");
    let (code, out, err) = case.run("j", &creds);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("inventory.yaml:7:")
            && err.contains(
                "error: host h2: bmc `ipmi://fe80::1:623`: an IPv6 address goes in brackets"
            ),
        "{err}"
    );
    assert!(!err.contains("host h1"), "{err}");
    // validate with the inventory says the same.
    let mut cmd = support::rekindle_in(case.dir.path());
    cmd.arg("validate")
        .arg(case.path("power.yaml"))
        .arg("-i")
        .arg(case.path("inventory.yaml"));
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 1, "{out}{err}");
    assert!(format!("{out}{err}").contains("host h2: bmc `ipmi://fe80::1:623`"));
}

#[test]
fn remediate_power_cycles_a_silent_host_through_ipmi_once() {
    let bmc = IpmiSim::start("pw-cycle-5e2", true);
    let case = Case::new();
    // Nothing listens on the host's SSH port: it never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free TCP port")
        .port();
    std::fs::write(case.path("known_hosts"), "").expect("known_hosts");
    std::fs::write(
        case.path("inventory.yaml"),
        format!(
            "version: 1\ndefaults: {{ known_hosts: \"{}\" }}\ndatacenters:\n  lab:\n    hosts:\n      - name: silent1\n        address: 127.0.0.1\n        port: {silent}\n        labels: {{ bmc: \"{}\" }}\n",
            case.path("known_hosts").display(),
            bmc.bmc()
        ),
    )
    .expect("inventory");
    std::fs::write(
        case.path("power.yaml"),
        "version: 1\nstages:\n  - name: wait\n    select: { dc: lab }\n    connect_timeout: 1s\n    max_failures: 1\n    remediate: { power_cycle: 1 }\n    steps:\n      - wait_ssh: { timeout: 3s }\n",
    )
    .expect("playbook");
    let creds = case.credentials("admin:pw-cycle-5e2\n");
    let (code, out, err) = case.run("j", &creds);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    // `chassis power cycle`, once: ipmi_sim turns it into one power-off,
    // then (after its own delay) at most one power-on.
    let commands = bmc.commands();
    assert_eq!(
        commands.first().map(String::as_str),
        Some("set power 0"),
        "{commands:?}"
    );
    let count = |c: &str| commands.iter().filter(|x| *x == c).count();
    assert_eq!(
        (count("set power 0"), count("set power 1") <= 1),
        (1, true),
        "{commands:?}"
    );
    assert_eq!(
        commands.len(),
        count("set power 0") + count("set power 1"),
        "{commands:?}"
    );
    let line = failed_line(&out, "silent1");
    assert!(
        line.contains("quarantined after 1 power cycle through its BMC (#1 PowerCycle after ")
            && line.contains("did not answer SSH within 3s"),
        "{line}"
    );
    let seen = format!("{out}{err}{}", case.written("j"));
    assert!(seen.contains(r#""reset_type":"PowerCycle""#), "{seen}");
    assert!(!seen.contains("pw-cycle-5e2"), "the password leaked");
}

/// ipmi_sim refuses cipher suite 17 ("invalid authentication algorithm"),
/// as BMCs without SHA-256 do: rekindle tries 17, falls back to 3, and
/// keeps 3 for that BMC for the rest of the run; a label pins a suite.
/// The `-C` of every ipmitool run is seen through a wrapper on PATH that
/// logs it and runs the real ipmitool.
#[test]
fn cipher_suite_17_is_tried_first_then_3_which_is_remembered_per_bmc() {
    let bmc = IpmiSim::start("pw-suite-4b2", false);
    let case = Case::new();
    let bin = case.path("bin");
    std::fs::create_dir(&bin).expect("bin");
    let real = ["/usr/bin/ipmitool", "/usr/sbin/ipmitool"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("ipmitool installed");
    let log = case.path("suites.log");
    std::fs::write(
        bin.join("ipmitool"),
        format!(
            "#!/bin/sh\nprev=\nfor a in \"$@\"; do [ \"$prev\" = -C ] && echo \"$a\" >> {}; prev=$a; done\nexec {real} \"$@\"\n",
            log.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(bin.join("ipmitool"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let creds = case.credentials("admin:pw-suite-4b2\n");
    let run = |journal: &str| {
        let mut cmd = support::rekindle_in(case.dir.path());
        cmd.arg("run")
            .arg(case.path("power.yaml"))
            .arg("-i")
            .arg(case.path("inventory.yaml"))
            .args(["--yes", "--journal"])
            .arg(case.path(journal))
            .arg("--bmc-credentials")
            .arg(&creds)
            .env("PATH", &path)
            .env_remove("REKINDLE_BMC_PASSWORD");
        support::run(&mut cmd)
    };
    let suites = || {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::remove_file(&log).ok();
        s.lines().map(str::to_owned).collect::<Vec<_>>()
    };

    case.write(&[("h1", &bmc.bmc(), "")], "{ timeout: 30s }");
    let (code, out, err) = run("j1");
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(bmc.is_on());
    let used = suites();
    // 17 refused once; every later call of the run goes straight to 3
    // (status, power on, status until On).
    assert_eq!(used[..2], ["17", "3"], "{used:?}");
    assert!(
        used.len() >= 3 && used[2..].iter().all(|s| s == "3"),
        "{used:?}"
    );

    // Pinned to 17: no fallback, the label named.
    case.write(
        &[("h1", &bmc.bmc(), ", ipmi_cipher_suite: \"17\"")],
        "{ timeout: 30s }",
    );
    let (code, out, _) = run("j2");
    assert_ne!(code, 0);
    assert!(
        out.contains("refused cipher suite 17") && out.contains("ipmi_cipher_suite"),
        "{out}"
    );
    assert!(suites().iter().all(|s| s == "17"));
    // Pinned to 3: no try of 17.
    case.write(
        &[("h1", &bmc.bmc(), ", ipmi_cipher_suite: \"3\"")],
        "{ timeout: 30s }",
    );
    let (code, out, _) = run("j3");
    assert_eq!(code, 0, "{out}");
    assert!(suites().iter().all(|s| s == "3"));
    // Not a suite: an input error at the host's line, nothing run.
    case.write(
        &[("h1", &bmc.bmc(), ", ipmi_cipher_suite: \"sha256\"")],
        "{ timeout: 30s }",
    );
    let (code, _, err) = run("j4");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("inventory.yaml:") && err.contains("`sha256` is not an IPMI cipher suite"),
        "{err}"
    );
    assert!(suites().is_empty());
}

/// `rekindle audit` reads the power-restore policy through IPMI's `chassis
/// status`. ipmi_sim reports `always-off` (it cannot be changed there): a
/// host whose stages never power it on would not come back after a site
/// power loss. Nothing is sent to the BMC but reads.
#[test]
fn audit_reads_the_power_restore_policy_through_ipmi() {
    let bmc = IpmiSim::start("pw-audit-7c1", true);
    let case = Case::new();
    std::fs::write(
        case.path("inventory.yaml"),
        format!(
            "version: 1\ndatacenters:\n  lab:\n    hosts:\n      - {{ name: h1, address: 127.0.0.1, port: 1, labels: {{ pdu: p1, bmc: \"{}\" }} }}\n",
            bmc.bmc()
        ),
    )
    .expect("inventory");
    let creds = case.credentials("admin:pw-audit-7c1\n");
    let audit = |steps: &str| {
        std::fs::write(
            case.path("pb.yaml"),
            format!("version: 1\nstages:\n  - name: s\n    select: {{ dc: lab }}\n    steps: [ {steps} ]\n"),
        )
        .expect("playbook");
        let (code, out, err) = support::run(
            support::rekindle_in(case.dir.path())
                .args(["audit", "pb.yaml", "-i", "inventory.yaml", "--samples", "1"])
                .args(["--format", "json", "--bmc-credentials"])
                .arg(&creds)
                .env_remove("REKINDLE_BMC_PASSWORD"),
        );
        let doc: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        (code, doc)
    };
    let stays_off = |doc: &serde_json::Value| {
        doc["findings"].as_array().unwrap().iter().any(|f| {
            f["kind"] == "boot-path"
                && f["severity"] == "error"
                && f["hosts"] == serde_json::json!(["h1"])
                && f["message"].as_str().unwrap().contains("AlwaysOff")
        })
    };
    let (code, doc) = audit("reboot");
    assert_eq!(code, 1, "{doc:#}");
    assert!(stays_off(&doc), "{doc:#}");
    // A stage that powers it on brings it back: no such finding.
    let (_, doc) = audit("power_on, wait_ssh");
    assert!(!stays_off(&doc), "{doc:#}");
    assert_eq!(bmc.commands(), Vec::<String>::new(), "the audit only reads");
    assert!(bmc.is_on());
}
