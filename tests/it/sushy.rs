//! `power_on` and `plan --preflight` against OpenStack's sushy-tools Redfish
//! emulator (`sushy-emulator --fake`, PyPI sushy-tools 2.2.0, in the venv
//! scripts/test.sh makes under target/venv-sushy): a Redfish service nobody
//! here wrote. It has several Systems behind one BMC, HTTP Basic only (401
//! for every URL without credentials, the session login included), TLS, and
//! power that changes 1-11 s after a reset, as hardware does.
//!
//! What the systems' power states are is read from sushy itself (a plain
//! HTTP GET), not from rekindle. Certificates are made by `openssl` the way
//! operators make them, and their fingerprints are what `openssl x509
//! -fingerprint -sha256` prints. One emulator per test; ports 25300-25399
//! on 127.42.x.y.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, KillOnDrop};

/// The emulator in scripts/test.sh's venv (`REKINDLE_SUSHY_EMULATOR` overrides).
fn emulator() -> PathBuf {
    if let Some(p) = std::env::var_os("REKINDLE_SUSHY_EMULATOR") {
        return PathBuf::from(p);
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_owned();
    let path = target.join("venv-sushy/bin/sushy-emulator");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it makes the sushy-tools venv)",
        path.display()
    );
    path
}

/// A running `sushy-emulator --fake` with `systems` powered-off Systems,
/// HTTP Basic with user `admin`, killed on drop.
struct Sushy {
    _proc: KillOnDrop,
    dir: tempfile::TempDir,
    addr: String,
    port: u16,
    tls: bool,
    password: String,
    systems: Vec<String>,
}

impl Sushy {
    /// `tls`: (certificate, key) PEM files to serve HTTPS with.
    fn start(addr: &str, port: u16, systems: usize, tls: Option<(&Path, &Path)>) -> Sushy {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = format!("sushy-{:016x}", rand_u64());
        let venv_python = emulator().with_file_name("python");
        // bcrypt, as sushy's htpasswd reader wants; the password on stdin.
        let mut hash = Command::new(&venv_python)
            .args([
                "-c",
                "import bcrypt,sys;print(bcrypt.hashpw(sys.stdin.read().encode(),bcrypt.gensalt(4)).decode())",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("venv python");
        hash.stdin
            .take()
            .expect("stdin")
            .write_all(password.as_bytes())
            .expect("write");
        let out = hash.wait_with_output().expect("bcrypt");
        assert!(out.status.success());
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(
            &htpasswd,
            format!("admin:{}", String::from_utf8_lossy(&out.stdout)),
        )
        .expect("htpasswd");
        let systems: Vec<String> = (1..=systems)
            .map(|i| format!("5a1e0000-0000-4000-8000-{port:08}{i:04}"))
            .collect();
        let fake: Vec<String> = systems
            .iter()
            .enumerate()
            .map(|(i, uuid)| {
                format!(
                    "{{'uuid': '{uuid}', 'name': 'node-{}', 'power_state': 'Off', 'nics': []}}",
                    i + 1
                )
            })
            .collect();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        let conf = dir.path().join("conf.py");
        std::fs::write(
            &conf,
            format!(
                "SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = '{}'\n\
                 SUSHY_EMULATOR_AUTH_FILE = '{}'\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{}]\n",
                state.display(),
                htpasswd.display(),
                fake.join(", ")
            ),
        )
        .expect("conf");
        let log = std::fs::File::create(dir.path().join("sushy.log")).expect("log");
        let mut cmd = Command::new(emulator());
        cmd.arg("--fake")
            .arg("--config")
            .arg(&conf)
            .args(["-i", addr, "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some((cert, key)) = tls {
            cmd.arg("--ssl-certificate")
                .arg(cert)
                .arg("--ssl-key")
                .arg(key);
        }
        let proc = KillOnDrop::new(cmd.spawn().expect("sushy-emulator starts"));
        let sushy = Sushy {
            _proc: proc,
            dir,
            addr: addr.to_owned(),
            port,
            tls: tls.is_some(),
            password,
            systems,
        };
        // Bounded: a Flask app starts in a few seconds even on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect((addr, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sushy-emulator did not listen on {addr}:{port}: {}",
                std::fs::read_to_string(sushy.dir.path().join("sushy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sushy
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.addr, self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A credentials file (mode 0600) with `password` for `admin`.
    fn credentials(&self, name: &str, password: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, format!("admin:{password}\n")).expect("credentials");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    /// `PowerState` of system `i` (0-based) as sushy reports it (plain HTTP only).
    fn power(&self, i: usize) -> String {
        assert!(!self.tls, "read power states from a plain-http emulator");
        let auth = base64(format!("admin:{}", self.password).as_bytes());
        let path = format!("/redfish/v1/Systems/{}", self.systems[i]);
        let mut s = TcpStream::connect((self.addr.as_str(), self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\r\n",
            self.addr
        )
        .expect("request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        let body = answer.split_once("\r\n\r\n").expect("headers").1;
        let v: Value = serde_json::from_str(body).expect("JSON");
        v["PowerState"].as_str().expect("PowerState").to_owned()
    }

    /// An inventory of `hosts` hosts, host i on system i (by `redfish_system`),
    /// each with `extra` labels; their SSH side points at a closed port.
    fn inventory(&self, name: &str, hosts: usize, extra: &str) -> PathBuf {
        let mut text = String::from("version: 1\ndatacenters:\n  lab:\n    hosts:\n");
        for i in 0..hosts {
            text.push_str(&format!(
                "      - name: node-{n}\n        address: {addr}\n        port: 9\n        \
                 labels: {{ bmc: \"{url}\", redfish_system: \"{sys}\", pdu: pdu-a{extra} }}\n",
                n = i + 1,
                addr = self.addr,
                url = self.url(),
                sys = self.systems[i],
            ));
        }
        let path = self.path(name);
        std::fs::write(&path, text).expect("inventory");
        path
    }

    /// A power_on playbook for every host.
    fn playbook(&self) -> PathBuf {
        let pb = self.path("power.yaml");
        std::fs::write(
            &pb,
            "version: 1\nname: power\nstages:\n  - name: all\n    select: { dc: lab }\n    \
             parallel: 100%\n    steps:\n      - power_on: { timeout: 2m, pdu_interval: 200ms }\n",
        )
        .expect("playbook");
        pb
    }

    /// `rekindle run` of the power_on playbook: (exit code, stdout, stderr).
    fn run(&self, inventory: &Path, args: &[&str]) -> (i32, String, String) {
        let pb = self.playbook();
        let mut cmd = support::rekindle_in(self.dir.path());
        cmd.arg("run")
            .arg(&pb)
            .arg("-i")
            .arg(inventory)
            .args(["--yes", "--journal"])
            .arg(self.path("journal"))
            .args(args)
            .env_remove("REKINDLE_BMC_USER")
            .env_remove("REKINDLE_BMC_PASSWORD");
        support::run(&mut cmd)
    }

    /// Every journal line written so far.
    fn journals(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.path("journal")) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "jsonl") {
                    all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        all
    }
}

/// A plain HTTP GET's whole answer ("" when nothing answers).
fn http_get(addr: &str, port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect((addr, port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_err() {
        return String::new();
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .elapsed()
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

pub(crate) fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                char::from(A[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

/// `openssl ARGS` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A self-signed certificate for `ip` made the usual way (`openssl req
/// -x509`, which marks it CA:TRUE): (cert, key).
fn self_signed(dir: &Path, name: &str, ip: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            "/CN=bmc-lab",
            "-addext",
            &format!("subjectAltName=IP:{ip}"),
        ],
    );
    let text = openssl(dir, &["x509", "-in", &cert, "-noout", "-text"]);
    assert!(
        text.contains("CA:TRUE"),
        "openssl req -x509 made no CA:TRUE cert: {text}"
    );
    (dir.join(cert), dir.join(key))
}

/// `openssl x509 -fingerprint -sha256`'s value (AA:BB:...).
fn fingerprint(cert: &Path) -> String {
    let out = openssl(
        cert.parent().expect("dir"),
        &[
            "x509",
            "-in",
            &cert.to_string_lossy(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    out.trim()
        .split_once('=')
        .expect("Fingerprint=")
        .1
        .to_owned()
}

fn creds_arg(path: &Path) -> [&str; 2] {
    ["--bmc-credentials", path.to_str().expect("utf-8")]
}

#[test]
fn sushy_basic_only_bmc_powers_the_picked_systems_on_and_refuses_a_wrong_password_at_once() {
    let sushy = Sushy::start("127.42.0.1", 25301, 4, None);
    // Three hosts on systems 1-3 of the one BMC; system 4 belongs to nobody.
    let inv = sushy.inventory("inv.yaml", 3, ", bmc_allow_http: \"true\"");
    let good = sushy.credentials("creds", &sushy.password);
    let bad = sushy.credentials("bad-creds", "not-the-password-9f3");

    // plan --preflight reads every power state through sushy (SSH is
    // closed on purpose: the power line is what is checked).
    let preflight = |want: &str| {
        let mut cmd = support::rekindle_in(sushy.dir.path());
        cmd.arg("plan")
            .arg(sushy.playbook())
            .arg("-i")
            .arg(&inv)
            .arg("--preflight")
            .args(creds_arg(&good))
            .env_remove("REKINDLE_BMC_PASSWORD");
        let (_, out, err) = support::run(&mut cmd);
        assert!(
            out.contains(want),
            "want `{want}`\nstdout:\n{out}\nstderr:\n{err}"
        );
        assert!(!out.contains(&sushy.password) && !err.contains(&sushy.password));
    };
    preflight("power (3 hosts through their BMCs): on 0, off 3");

    // A wrong password: sushy answers 401 to the session login (it has no
    // SessionService) and 401 to Basic: refused at once, nothing powered on.
    let started = Instant::now();
    let (code, out, err) = sushy.run(&inv, &creds_arg(&bad));
    assert_ne!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("rejected the credentials"), "{out}\n{err}");
    // The step's timeout is 2 minutes: an Auth failure must not wait for it.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    for i in 0..4 {
        assert_eq!(sushy.power(i), "Off", "system {i}");
    }

    // The right password: Basic after the 401 on the login; each host's
    // system by its redfish_system label; sushy applies power 1-11 s after
    // the reset, and the step waits for it. The live page, its API and
    // metrics are read all along (for the secret scan below).
    let mut cmd = support::rekindle_in(sushy.dir.path());
    cmd.arg("run")
        .arg(sushy.playbook())
        .arg("-i")
        .arg(&inv)
        .args(["--yes", "--journal"])
        .arg(sushy.path("journal"))
        .args(creds_arg(&good))
        .args(["--listen", "25302"])
        .env_remove("REKINDLE_BMC_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop::new(cmd.spawn().expect("rekindle runs"));
    let mut served = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.child().try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "the run did not end");
        for path in ["/", "/api/status", "/metrics"] {
            served.push_str(&http_get("127.0.0.1", 25302, path));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut out = String::new();
    let mut err = String::new();
    let c = child.child();
    c.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    c.stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    let code = child
        .wait_for(Duration::from_secs(5))
        .and_then(|s| s.code());
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        served.contains("rekindle_"),
        "the metrics were served: {served}"
    );
    for i in 0..3 {
        assert_eq!(sushy.power(i), "On", "system {i}");
    }
    assert_eq!(sushy.power(3), "Off", "the system no host names stays off");
    preflight("power (3 hosts through their BMCs): on 3, off 0");

    let journals = sushy.journals();
    assert!(journals.contains("power_on_issued"), "{journals}");
    let mut reports = String::new();
    for entry in std::fs::read_dir(sushy.path("journal"))
        .expect("journals")
        .flatten()
    {
        for format in ["text", "json", "html"] {
            let mut cmd = support::rekindle();
            cmd.args(["report", "--format", format]).arg(entry.path());
            reports.push_str(&support::run(&mut cmd).1);
        }
    }
    assert!(reports.contains("node-1"), "{reports}");
    for text in [&out, &err, &journals, &served, &reports] {
        assert!(!text.contains(&sushy.password));
        assert!(!text.contains("not-the-password-9f3"));
    }
}

#[test]
fn sushy_with_a_self_signed_certificate_is_trusted_only_as_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = "127.42.1.1";
    let (cert, key) = self_signed(dir.path(), "bmc", ip);
    let (other, _) = self_signed(dir.path(), "other", ip);
    let fp = fingerprint(&cert);
    let sushy = Sushy::start(ip, 25311, 2, Some((&cert, &key)));
    let creds = sushy.credentials("creds", &sushy.password);
    let inv = sushy.inventory("inv.yaml", 1, "");
    let mut args: Vec<&str> = creds_arg(&creds).to_vec();

    // Not trusted: its own failure kind, at once, naming what it saw and
    // the flags that would trust it.
    let started = Instant::now();
    let (code, out, err) = sushy.run(&inv, &args);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(out.contains("TLS certificate not trusted"), "{out}");
    assert!(
        out.contains(&fp),
        "the fingerprint openssl prints: {fp}\n{out}"
    );
    for flag in ["bmc_cert_sha256", "--bmc-known-certs", "--bmc-ca"] {
        assert!(out.contains(flag), "{flag}: {out}");
    }
    assert!(!out.contains("unreachable"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    // The certificate itself as --bmc-ca: rustls alone refuses it
    // (CaUsedAsEndEntity), curl and OpenSSL accept it; so does rekindle.
    let cert_s = cert.to_str().expect("utf-8").to_owned();
    let (code, out, err) = sushy.run(&inv, &[&args[..], &["--bmc-ca", &cert_s]].concat());
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");

    // Pinned by label: the fingerprint openssl printed.
    let pinned = sushy.inventory("pinned.yaml", 2, &format!(", bmc_cert_sha256: \"{fp}\""));
    let (code, out, err) = sushy.run(&pinned, &args);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // A pin of another certificate: refused, naming both.
    let wrong = sushy.inventory(
        "wrong.yaml",
        1,
        &format!(", bmc_cert_sha256: \"{}\"", fingerprint(&other)),
    );
    let (code, out, _) = sushy.run(&wrong, &args);
    assert_ne!(code, 0);
    assert!(
        out.contains("does not match the pinned one") && out.contains(&fp),
        "{out}"
    );
    // A malformed pin: an input error at its place, before any BMC is asked.
    let broken = sushy.inventory("broken.yaml", 1, ", bmc_cert_sha256: \"AA:BB:zz\"");
    let (code, out, err) = sushy.run(&broken, &args);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("broken.yaml:") && err.contains("bmc_cert_sha256"),
        "{err}"
    );
    assert!(err.contains("not a SHA-256 fingerprint"), "{err}");

    // Trust on first use: recorded as openssl prints it, then required.
    let known = sushy.path("known-bmc-certs");
    let known_s = known.to_str().expect("utf-8").to_owned();
    args.extend(["--bmc-known-certs", &known_s]);
    let (code, out, err) = sushy.run(&inv, &[&args[..], &["--accept-new-bmc-certs"]].concat());
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let recorded = std::fs::read_to_string(&known).expect("recorded");
    assert_eq!(recorded, format!("{} {fp}\n", sushy.url()));
    let (code, out, err) = sushy.run(&inv, &args);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    // A changed certificate is refused and never replaced, even with
    // --accept-new-bmc-certs.
    let changed = format!("# lab\n{} {}\n", sushy.url(), fingerprint(&other));
    std::fs::write(&known, &changed).expect("known");
    let (code, out, _) = sushy.run(&inv, &[&args[..], &["--accept-new-bmc-certs"]].concat());
    assert_ne!(code, 0);
    assert!(
        out.contains("CHANGED") && out.contains("known-bmc-certs:2"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&known).expect("known"), changed);
    // A file that does not parse: file:line:col, nothing touched.
    std::fs::write(&known, "lab-bmc\n").expect("known");
    let (code, _, err) = sushy.run(&inv, &args);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("known-bmc-certs:1:1: expected `BMC FINGERPRINT`"),
        "{err}"
    );
}

#[test]
fn sushy_with_a_certificate_from_a_private_ca_is_trusted_through_bmc_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ip = "127.42.2.1";
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=lab-ca",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "bmc.key",
            "-out",
            "bmc.csr",
            "-subj",
            "/CN=bmc",
        ],
    );
    std::fs::write(
        d.join("ext"),
        format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "bmc.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "bmc.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    let sushy = Sushy::start(ip, 25321, 1, Some((&d.join("bmc.pem"), &d.join("bmc.key"))));
    let creds = sushy.credentials("creds", &sushy.password);
    let inv = sushy.inventory("inv.yaml", 1, "");
    let (code, out, _) = sushy.run(&inv, &creds_arg(&creds));
    assert_ne!(code, 0);
    assert!(out.contains("TLS certificate not trusted"), "{out}");
    let ca = d.join("ca.pem");
    let ca_s = ca.to_str().expect("utf-8");
    let (code, out, err) = sushy.run(
        &inv,
        &[&creds_arg(&creds)[..], &["--bmc-ca", ca_s]].concat(),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
}

/// A `bmc` label that points at a web page, not a Redfish service (here
/// Python's own `http.server`, serving an HTML login page): the host fails
/// at once, saying so, instead of "not JSON: expected value at line 1".
#[test]
fn a_bmc_answering_html_instead_of_json_fails_the_host_at_once_saying_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir_all(d.join("www/redfish/v1")).expect("dirs");
    std::fs::write(
        d.join("www/redfish/v1/Systems"),
        "<!DOCTYPE html>\n<html><body><form>Login</form></body></html>\n",
    )
    .expect("page");
    let (addr, port) = ("127.42.5.1", 25350);
    let server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            addr,
            "--directory",
        ])
        .arg(d.join("www"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let _server = KillOnDrop::new(server);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((addr, port)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(
        d.join("inv.yaml"),
        format!(
            "version: 1\ndatacenters:\n  lab:\n    hosts:\n      - name: web1\n        labels: {{ bmc: \"http://{addr}:{port}\", bmc_allow_http: \"true\", pdu: p1 }}\n"
        ),
    )
    .expect("inventory");
    std::fs::write(
        d.join("pb.yaml"),
        "version: 1\nname: power\nstages:\n  - name: all\n    select: { dc: lab }\n    steps:\n      - power_on: { timeout: 2m }\n",
    )
    .expect("playbook");
    let creds = d.join("creds");
    std::fs::write(&creds, "admin:html-test-pw\n").expect("creds");
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let started = Instant::now();
    let mut cmd = support::rekindle_in(d);
    cmd.args([
        "run",
        "pb.yaml",
        "-i",
        "inv.yaml",
        "--yes",
        "--journal",
        "j",
    ])
    .args(creds_arg(&creds))
    .env_remove("REKINDLE_BMC_PASSWORD");
    let (code, out, err) = support::run(&mut cmd);
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("answered an HTML page, not Redfish JSON"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
