//! `rekindle audit`: the plan checked against the connections hosts hold.
//!
//! Two fleets: the simulator with a dependency graph (`sim --deps`), and real
//! hosts: one network namespace per host on a private bridge, each running
//! OpenSSH's `sshd` and real TCP servers and clients (a small Python peer),
//! so every host's `/proc/net/tcp` is the kernel's own and shows only its
//! own sockets. rekindle runs in a namespace of its own on that bridge (so
//! its "bastion" has an address there, and `ip netns exec` gives it the
//! namespace's resolv.conf). The bridge's addresses are in 198.18.0.0/24,
//! the range set aside for network tests (RFC 2544): nothing leaves the
//! namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{self, KillOnDrop, SimProcess};

fn audit_json(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let (code, out, err) = support::run(
        support::rekindle_in(dir)
            .arg("audit")
            .args(args)
            .args(["--format", "json"]),
    );
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, doc, err)
}

/// `(severity, kind, stages)` of every finding.
fn kinds(doc: &Value) -> Vec<(String, String, Vec<String>)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let stages = f["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            (
                f["severity"].as_str().unwrap().to_owned(),
                f["kind"].as_str().unwrap().to_owned(),
                stages,
            )
        })
        .collect()
}

fn has(doc: &Value, severity: &str, kind: &str, stages: &[&str]) -> bool {
    kinds(doc).iter().any(|(s, k, st)| {
        s == severity && k == kind && st.iter().map(String::as_str).eq(stages.iter().copied())
    })
}

const SIM_DEPS: &str = "\
# app uses db, but the plan does not start db first
sim-0000[4-6] sim-0000[1-2] 5432 2
# web and app use each other: a cycle
sim-0000[7-8] sim-0000[4-5] 8080
sim-00004 sim-00007 9100
# cache hosts talk among themselves
sim-00009 sim-00010 6379
# db uses a host no stage brings back
sim-00001 sim-00003 2049
";

fn sim_playbook(app_after_db: bool) -> String {
    format!(
        "version: 1
name: audit-sim
stages:
  - name: db
    select: {{ name: \"sim-0000[12]\" }}
    steps: [ reboot ]
  - name: app
{}    select: {{ name: \"sim-0000[456]\" }}
    steps: [ reboot ]
  - name: web
    after: app
    select: {{ name: \"sim-0000[78]\" }}
    steps: [ reboot ]
  - name: cache
    select: {{ name: \"sim-000[01][09]\" }}
    steps: [ reboot ]
",
        if app_after_db { "    after: db\n" } else { "" }
    )
}

fn start_sim(dir: &Path, port: u16) -> SimProcess {
    std::fs::write(dir.join("deps.txt"), SIM_DEPS).unwrap();
    let (ssh, http) = (port.to_string(), (port + 1).to_string());
    let deps = dir.join("deps.txt");
    SimProcess::start(&[
        "--hosts",
        "10",
        "--port",
        &ssh,
        "--http-port",
        &http,
        "--deps",
        deps.to_str().unwrap(),
    ])
}

#[test]
fn the_simulators_dependency_graph_comes_back_as_findings() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), 25610);
    std::fs::write(dir.path().join("pb.yaml"), sim_playbook(false)).unwrap();
    let inv = sim.path("inventory.yaml");
    let (code, doc, err) = audit_json(
        dir.path(),
        &[
            "pb.yaml",
            "-i",
            inv.to_str().unwrap(),
            "--samples",
            "2",
            "--interval",
            "200ms",
        ],
    );
    assert_eq!(code, 1, "an order error exits 1: {doc:#}\n{err}");
    assert!(has(&doc, "error", "order", &["app", "db"]), "{doc:#}");
    assert!(has(&doc, "error", "cycle", &["app", "web"]), "{doc:#}");
    assert!(has(&doc, "warning", "unplanned", &["db"]), "{doc:#}");
    assert!(has(&doc, "info", "same-stage", &["cache"]), "{doc:#}");
    // app -> web is part of the cycle, so it is not also an order error.
    assert!(!has(&doc, "error", "order", &["app", "web"]), "{doc:#}");
    assert_eq!(doc["hosts_read"], 9, "{doc:#}");
    // 3 app hosts x 2 db hosts x 2 connections, each counted once although
    // both ends and both samples show it.
    let to_db: u64 = doc["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["port"] == 5432)
        .map(|d| d["connections"].as_u64().unwrap())
        .sum();
    assert_eq!(to_db, 12, "{doc:#}");

    // The same fleet with `app` after `db`: no order error is left, only the cycle.
    std::fs::write(dir.path().join("pb.yaml"), sim_playbook(true)).unwrap();
    let (code, doc, _) = audit_json(
        dir.path(),
        &["pb.yaml", "-i", inv.to_str().unwrap(), "--samples", "1"],
    );
    assert_eq!(code, 1);
    assert!(!has(&doc, "error", "order", &["app", "db"]), "{doc:#}");
    assert!(has(&doc, "error", "cycle", &["app", "web"]), "{doc:#}");

    // The text report folds host lists into ranges.
    let (_, text, _) = support::run(support::rekindle_in(dir.path()).args([
        "audit",
        "pb.yaml",
        "-i",
        inv.to_str().unwrap(),
        "--samples",
        "1",
    ]));
    assert!(
        text.contains("error[cycle]: stages app, web depend on each other"),
        "{text}"
    );
    assert!(
        text.contains("hosts:  sim-[00004-00005,00007-00008]"),
        "{text}"
    );
}

#[test]
fn etcd_and_the_site_assumed_lost() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path(), 25620);
    std::fs::write(dir.path().join("pb.yaml"), sim_playbook(true)).unwrap();
    let inv = sim.path("inventory.yaml");
    let inv = inv.to_str().unwrap();
    let etcd = "http://127.1.0.1:2379,http://127.1.0.2:2379,http://127.1.0.9:2379";
    let base = ["pb.yaml", "-i", inv, "--samples", "1", "--etcd", etcd];
    // Two of three members in the lost site: no quorum.
    let (code, doc, _) = audit_json(
        dir.path(),
        &[&base[..], &["--assume-lost", "name=sim-0000[12]"]].concat(),
    );
    assert_eq!(code, 1);
    let quorum = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains("etcd quorum"))
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(quorum["severity"], "error");
    assert!(
        quorum["message"]
            .as_str()
            .unwrap()
            .contains("2 of 3 members in the site assumed lost"),
        "{quorum}"
    );
    // One of three: quorum holds, a warning.
    let (_, doc, _) = audit_json(
        dir.path(),
        &[&base[..], &["--assume-lost", "name=sim-00009"]].concat(),
    );
    let quorum = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains("etcd quorum"))
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(quorum["severity"], "warning", "{quorum}");
    // Without a lost site, members on hosts the plan restarts are warnings.
    let (_, doc, _) = audit_json(dir.path(), &base);
    let restarted = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["kind"] == "recovery-dependency"
                && f["message"].as_str().unwrap().contains("etcd member")
        })
        .count();
    assert_eq!(restarted, 3, "{doc:#}");
}

#[test]
fn bad_input_is_refused_before_any_host_is_read() {
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n      - { name: h1, address: 127.0.0.1, port: 1 }\n",
        "version: 1\nstages:\n  - name: s\n    select: { name: h1 }\n    steps: [ reboot ]\n",
    );
    let run = |extra: &[&str]| {
        support::run(
            support::rekindle_in(dir.path())
                .args(["audit", "pb.yaml", "-i", "inv.yaml"])
                .args(extra),
        )
    };
    let (code, _, err) = run(&["--assume-lost", "dc=nowhere"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--assume-lost `dc=nowhere` matches none of the 1 hosts"),
        "{err}"
    );
    let (code, _, err) = run(&["--samples", "0"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["--interval", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--interval soon"), "{err}");
    let (code, _, err) = run(&["--etcd", "http://user:hunter2@127.0.0.1:2379"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password is not repeated: {err}"
    );
    // An unreachable host is a finding (the others are still read), not a crash.
    let (code, out, err) = run(&["--samples", "1"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("error[unreachable]: 1 host not read"), "{out}");
}

/// The boot path through the simulator's Redfish BMCs: what each host does
/// when power returns and where it boots next (host labels the simulator's
/// BMCs answer with), against the plan.
#[test]
fn the_boot_path_through_redfish_bmcs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.yaml"),
        "version: 1\ndatacenters:\n  lab:\n    hosts:\n\
         \x20     - { name: web1, labels: { role: web, pdu: p1, sim_power_restore_policy: AlwaysOn } }\n\
         \x20     - { name: web2, labels: { role: web, pdu: p1, sim_power_restore_policy: AlwaysOn } }\n\
         \x20     - { name: web3, labels: { role: web, pdu: p2, sim_power_restore_policy: AlwaysOff } }\n\
         \x20     - { name: db1, labels: { role: db, pdu: p2, sim_power_restore_policy: AlwaysOff } }\n\
         \x20     - { name: db2, labels: { role: db, pdu: p2, sim_power_restore_policy: AlwaysOff, sim_boot_override: Pxe } }\n",
    )
    .unwrap();
    let site = dir.path().join("site.yaml");
    let sim = SimProcess::start(&[
        "-i",
        site.to_str().unwrap(),
        "--bmcs",
        "--port",
        "25630",
        "--http-port",
        "25631",
        "--bmc-port",
        "25632",
    ]);
    std::fs::write(
        dir.path().join("pb.yaml"),
        "version: 1\nstages:\n\
         \x20 - { name: db, select: { role: db }, steps: [ reboot ] }\n\
         \x20 - { name: web, after: db, select: { role: web }, steps: [ { power_on: { pdu_interval: 5s } }, wait_ssh ] }\n",
    )
    .unwrap();
    let inv = sim.path("inventory.yaml");
    let creds = sim.path("bmc-credentials");
    let (code, doc, err) = audit_json(
        dir.path(),
        &[
            "pb.yaml",
            "-i",
            inv.to_str().unwrap(),
            "--samples",
            "1",
            "--bmc-credentials",
            creds.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{doc:#}\n{err}");
    let boot: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "boot-path")
        .collect();
    let find = |needle: &str| -> &Value {
        boot.iter()
            .find(|f| f["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?}: {doc:#}"))
    };
    // web1 and web2 power themselves on together on p1: the 5 s pacing
    // of stage web cannot space them.
    let inrush = find("power themselves on");
    assert_eq!(inrush["severity"], "warning");
    assert_eq!(inrush["hosts"], serde_json::json!(["web1", "web2"]));
    assert!(
        inrush["message"]
            .as_str()
            .unwrap()
            .contains("up to 2 at once on PDU p1"),
        "{inrush}"
    );
    assert!(
        inrush["message"].as_str().unwrap().contains("every 5s"),
        "{inrush}"
    );
    // db1 and db2 stay off and stage db has no power_on; web3 stays off
    // too, but stage web powers it on.
    let off = find("stay off");
    assert_eq!(off["severity"], "error");
    assert_eq!(off["hosts"], serde_json::json!(["db1", "db2"]));
    let pxe = find("pointed at Pxe");
    assert_eq!(pxe["hosts"], serde_json::json!(["db2"]));
    assert_eq!(boot.len(), 3, "{doc:#}");

    // Without credentials the boot path is not read, and the audit says so.
    let (_, doc, _) = audit_json(
        dir.path(),
        &["pb.yaml", "-i", inv.to_str().unwrap(), "--samples", "1"],
    );
    let skipped = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["message"].as_str().unwrap().contains("was not read"));
    assert!(skipped, "{doc:#}");
}

// ---------------------------------------------------------------------------
// Real hosts in network namespaces.

/// The TCP peer each namespace host runs: listens on some ports and holds
/// connections to others; a client may wait for a trigger file first. It
/// exits by itself after two minutes.
const PEER: &str = r#"
import socket, sys, time, os, threading
listen = [int(p) for p in sys.argv[1].split(",") if p]
connect = [c for c in sys.argv[2].split(",") if c]
trigger = sys.argv[3] if len(sys.argv) > 3 else ""
held = []
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); held.append(c)
for p in listen:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
deadline = time.time() + 120
if trigger:
    while not os.path.exists(trigger) and time.time() < deadline:
        time.sleep(0.05)
for c in connect:
    host, port = c.rsplit(":", 1)
    for _ in range(20):
        try:
            held.append(socket.create_connection((host, int(port)), timeout=2)); break
        except OSError:
            time.sleep(0.1)
print("up", flush=True)
while time.time() < deadline:
    time.sleep(0.2)
"#;

/// Debian's Python (the peer needs nothing beyond its standard library).
const PYTHON: &str = "/usr/bin/python3";

/// Namespaces, processes in them and `/etc/netns` files, removed on drop
/// (processes killed by PID first).
struct Lab {
    tag: String,
    namespaces: Vec<String>,
    procs: Vec<KillOnDrop>,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        let tag = format!("rka{}", std::process::id() % 100_000);
        let lab = Lab {
            namespaces: vec![format!("{tag}-br")],
            tag,
            procs: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let br = &lab.namespaces[0];
        ip(&["netns", "add", br]);
        ip(&["-n", br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", br, "link", "set", "br0", "up"]);
        lab
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    /// A namespace for `host` with 198.18.0.`n` on the bridge.
    fn host(&mut self, host: &str, n: u8) -> String {
        let ns = self.ns(host);
        let br = self.namespaces[0].clone();
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let port = format!("v{n}");
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &br,
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("198.18.0.{n}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &br, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &br, "link", "set", &port, "up"]);
        ns
    }

    fn spawn(&mut self, ns: &str, cmd: &[&str], log: &str) {
        let log = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ip netns exec runs");
        self.procs.push(KillOnDrop::new(child));
    }

    /// sshd on 198.18.0.`n`:22 in `ns`; returns its known_hosts line.
    fn sshd(&mut self, ns: &str, n: u8, client_pub: &Path, extra: &str) -> String {
        let d = self.dir.path().join(format!("sshd-{n}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        super::sshd::keygen(&d.join("host_ed25519"));
        std::fs::copy(client_pub, d.join("authorized_keys")).unwrap();
        let config = format!(
            "ListenAddress 198.18.0.{n}:22\n{extra}HostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile none\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nSetEnv SHLVL=1\nLogLevel VERBOSE\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let cfg = d.join("sshd_config");
        self.spawn(
            ns,
            &["/usr/sbin/sshd", "-D", "-e", "-f", cfg.to_str().unwrap()],
            &format!("sshd-{n}.log"),
        );
        let key = std::fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        format!("198.18.0.{n} {}\n", key.join(" "))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Waits (bounded) until `log` contains `needle`.
    fn wait_log(&self, name: &str, needle: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.log(name).contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{name} never said {needle:?}:\n{}", self.log(name));
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.procs.clear();
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

fn can_make_namespaces() -> bool {
    // Root and iproute2: CI and scripts/test.sh run as root.
    unsafe_is_root()
        && Command::new("ip")
            .args(["netns", "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn unsafe_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn real_hosts_in_network_namespaces() {
    assert!(
        can_make_namespaces(),
        "this test needs root and iproute2 (scripts/test.sh runs as root)"
    );
    let mut lab = Lab::new();
    // (name, address, listens, connects to)
    let hosts: [(&str, u8, &str, &str); 8] = [
        ("db1", 1, "5432", "198.18.0.7:2049"),
        ("app1", 2, "8080", "198.18.0.1:5432"),
        ("app2", 3, "8080", "198.18.0.1:5432"),
        ("web1", 4, "9100", "198.18.0.2:8080,198.18.0.200:443"),
        ("cache1", 5, "", "198.18.0.6:6379"),
        ("cache2", 6, "6379", ""),
        ("nfs1", 7, "2049", ""),
        ("legacy1", 8, "", ""),
    ];
    let client = lab.path("id_ed25519");
    super::sshd::keygen(&client);
    let client_pub = client.with_extension("pub");
    std::fs::write(lab.path("peer.py"), PEER).unwrap();
    let peer = lab.path("peer.py");
    let peer = peer.to_str().unwrap().to_owned();
    let mut known = String::new();
    let mut namespaces = Vec::new();
    for (name, n, _, _) in &hosts {
        let ns = lab.host(name, *n);
        // legacy1's shell shows no /proc: its sockets cannot be read.
        let extra = if *name == "legacy1" {
            "ForceCommand echo no proc here\n"
        } else {
            ""
        };
        known.push_str(&lab.sshd(&ns, *n, &client_pub, extra));
        namespaces.push(ns);
    }
    let ext = lab.host("ext", 200);
    lab.spawn(&ext, &[PYTHON, &peer, "443", ""], "peer-ext.log");
    // Servers first, then clients (the peer retries its connects briefly).
    for ((name, _, listen, connect), ns) in hosts.iter().zip(&namespaces) {
        lab.spawn(
            ns,
            &[PYTHON, &peer, listen, connect],
            &format!("peer-{name}.log"),
        );
    }
    // app1 also uses web1: with web1 -> app1, a cycle between app and web.
    let trigger = lab.path("go");
    let trigger_s = trigger.to_str().unwrap().to_owned();
    lab.spawn(
        &namespaces[1],
        &[PYTHON, &peer, "", "198.18.0.4:9100"],
        "peer-app1b.log",
    );
    // cache2 connects to db1 only once triggered: a connection that only a
    // later sample catches.
    lab.spawn(
        &namespaces[5],
        &[PYTHON, &peer, "", "198.18.0.1:5432", &trigger_s],
        "peer-cache2b.log",
    );
    for (name, ..) in &hosts {
        if !["cache2", "nfs1", "legacy1"].contains(name) {
            lab.wait_log(&format!("peer-{name}.log"), "up", 20);
        }
    }
    lab.wait_log("peer-app1b.log", "up", 20);

    let bastion = lab.host("bastion", 100);
    // The bastion resolves through db1: `ip netns exec` mounts this over /etc/resolv.conf.
    std::fs::create_dir_all(format!("/etc/netns/{bastion}")).unwrap();
    std::fs::write(
        format!("/etc/netns/{bastion}/resolv.conf"),
        "nameserver 198.18.0.1\n",
    )
    .unwrap();
    std::fs::write(lab.path("known_hosts"), known).unwrap();
    std::fs::write(
        lab.path("inv.yaml"),
        "version: 1\ndefaults: { user: root }\ndatacenters:\n  lab:\n    hosts:\n\
         \x20     - { name: db1, address: 198.18.0.1, labels: { role: db } }\n\
         \x20     - { name: app1, address: 198.18.0.2, labels: { role: app } }\n\
         \x20     - { name: app2, address: 198.18.0.3, labels: { role: app } }\n\
         \x20     - { name: web1, address: 198.18.0.4, labels: { role: web } }\n\
         \x20     - { name: legacy1, address: 198.18.0.8, labels: { role: web } }\n\
         \x20     - { name: cache1, address: 198.18.0.5, labels: { role: cache } }\n\
         \x20     - { name: cache2, address: 198.18.0.6, labels: { role: cache } }\n\
         \x20     - { name: nfs1, address: 198.18.0.7, labels: { role: nfs } }\n\
         \x20     - { name: gone1, address: 198.18.0.50, labels: { role: cache } }\n\
         \x20     - { name: bastion1, address: 198.18.0.100, labels: { role: ops } }\n",
    )
    .unwrap();
    std::fs::write(
        lab.path("pb.yaml"),
        "version: 1\nname: lab\nstages:\n\
         \x20 - { name: db, select: { role: db }, steps: [ reboot ] }\n\
         \x20 - { name: app, select: { role: app }, steps: [ reboot ] }\n\
         \x20 - { name: web, after: app, select: { role: web }, steps: [ reboot ] }\n\
         \x20 - { name: cache, select: { role: cache }, steps: [ reboot ] }\n",
    )
    .unwrap();
    let rekindle = env!("CARGO_BIN_EXE_rekindle");
    let key = client.to_str().unwrap().to_owned();
    let kh = lab.path("known_hosts");
    let kh = kh.to_str().unwrap().to_owned();
    let audit = |extra: &[&str]| -> (i32, Value, String) {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &bastion, rekindle, "audit", "pb.yaml", "-i", "inv.yaml",
            ])
            .args(["--identity", &key, "--known-hosts", &kh, "--format", "json"])
            .args(extra)
            .current_dir(lab.dir.path())
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}\n{err}"));
        (out.status.code().unwrap_or(-1), doc, err)
    };
    let edge = |doc: &Value, client: &str, server: &str, port: u64| {
        doc["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["client"] == client && d["server"] == server && d["port"] == port)
    };

    // One sample, before cache2 has connected to db1.
    let (code, doc, err) = audit(&["--samples", "1"]);
    assert_eq!(code, 1, "{doc:#}\n{err}");
    assert!(!edge(&doc, "cache2", "db1", 5432), "{doc:#}");
    assert!(edge(&doc, "app1", "db1", 5432), "{doc:#}");
    assert!(edge(&doc, "app2", "db1", 5432), "{doc:#}");
    assert!(edge(&doc, "cache1", "cache2", 6379), "{doc:#}");
    assert!(has(&doc, "error", "order", &["app", "db"]), "{doc:#}");
    assert!(has(&doc, "error", "cycle", &["app", "web"]), "{doc:#}");
    assert!(has(&doc, "warning", "unplanned", &["db"]), "nfs1: {doc:#}");
    assert!(
        has(&doc, "warning", "external", &["web"]),
        "198.18.0.200: {doc:#}"
    );
    assert!(has(&doc, "info", "same-stage", &["cache"]), "{doc:#}");
    let finding = |kind: &str| -> Value {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind}: {doc:#}"))
    };
    assert_eq!(
        finding("unreachable")["hosts"],
        serde_json::json!(["gone1"])
    );
    assert_eq!(
        finding("unreadable")["hosts"],
        serde_json::json!(["legacy1"])
    );
    assert!(
        finding("external")["message"]
            .as_str()
            .unwrap()
            .contains("198.18.0.200:443")
    );
    let ns_warning = doc["findings"].as_array().unwrap().iter().any(|f| {
        f["message"]
            .as_str()
            .unwrap()
            .contains("name server 198.18.0.1 is db1, which stage db restarts")
    });
    assert!(ns_warning, "the bastion's resolv.conf names db1: {doc:#}");
    assert_eq!(
        (doc["hosts_read"].clone(), doc["hosts_selected"].clone()),
        (6.into(), 8.into()),
        "{doc:#}"
    );

    // Two samples, with cache2's connection made between them: only the
    // second sees it (and the plan does not start db before cache).
    let second = Command::new("ip")
        .args([
            "netns", "exec", &bastion, rekindle, "audit", "pb.yaml", "-i", "inv.yaml",
        ])
        .args(["--identity", &key, "--known-hosts", &kh, "--format", "json"])
        .args([
            "--samples",
            "2",
            "--interval",
            "4s",
            "--assume-lost",
            "name=bastion1",
        ])
        .current_dir(lab.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first sample of cache2 follows its login (its second: the one-sample
    // audit above was the first) at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab.log("sshd-6.log").matches("Accepted publickey").count() < 2 {
        assert!(Instant::now() < deadline, "{}", lab.log("sshd-6.log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(&trigger, "").unwrap();
    let out = second.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(edge(&doc, "cache2", "db1", 5432), "{doc:#}");
    assert!(has(&doc, "error", "order", &["cache", "db"]), "{doc:#}");
    let lost = doc["findings"].as_array().unwrap().iter().any(|f| {
        f["severity"] == "error"
            && f["message"].as_str().unwrap().contains("this bastion")
            && f["message"]
                .as_str()
                .unwrap()
                .contains("is bastion1, in the site assumed lost")
    });
    assert!(lost, "{doc:#}");
}

/// A jump host named only in `~/.ssh/config` is one of rekindle's own
/// dependencies, as the inventory's `jump` is.
#[test]
fn a_jump_host_from_the_ssh_config_is_a_dependency() {
    let dir = support::inputs(
        "version: 1\ndatacenters:\n  dc:\n    hosts:\n\
         \x20     - { name: h1, address: 127.0.0.1, port: 1 }\n\
         \x20     - { name: gw1, address: 127.0.0.2, port: 1 }\n",
        "version: 1\nstages:\n  - name: s\n    select: { name: \"*\" }\n    steps: [ reboot ]\n",
    );
    std::fs::write(dir.path().join("ssh_config"), "Host h1\n  ProxyJump gw1\n").unwrap();
    let (_, doc, err) = audit_json(
        dir.path(),
        &[
            "pb.yaml",
            "-i",
            "inv.yaml",
            "--samples",
            "1",
            "--ssh-config",
            "ssh_config",
        ],
    );
    let jump = doc["findings"].as_array().unwrap().iter().any(|f| {
        f["kind"] == "recovery-dependency"
            && f["message"]
                .as_str()
                .unwrap()
                .contains("jump host gw1 is gw1, which stage s restarts")
    });
    assert!(jump, "{doc:#}\n{err}");
}
