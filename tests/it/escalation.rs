//! `become` against real sshd and real sudo: the login user is the
//! dedicated unprivileged `rekindle-test` (scripts/test.sh creates it and
//! its sudoers drop-in: NOPASSWD to root, a password to `rekindle-test-pw`,
//! nothing else). Each test that needs the password sets a fresh random one.
//! Checks: NOPASSWD runs as root, a password-wanting sudo fails at once
//! without `--become-password-file` and works with it, a wrong password and
//! a refused target are their own failures, host values stay quoted through
//! the wrapping, and the password shows up nowhere.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::sshd::{ClientKeys, Sshd};
use crate::support;

const USER: &str = "rekindle-test";

/// Tests that change rekindle-test's password run one at a time.
static PASSWORD: Mutex<()> = Mutex::new(());

/// Whether this machine has the test user and drop-in (scripts/test.sh).
fn prepared() -> bool {
    let user = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    let dropin = Path::new("/etc/sudoers.d/rekindle-test").is_file();
    assert!(
        user && dropin,
        "run scripts/test.sh once: it creates the user {USER} and /etc/sudoers.d/rekindle-test"
    );
    true
}

/// A fresh random password for the login user (as root, through chpasswd).
fn set_password() -> String {
    let password = format!("rk-{:016x}-pw", rand_u64());
    let mut child = Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("chpasswd runs");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        format!("{USER}:{password}\n").as_bytes(),
    )
    .expect("write chpasswd");
    assert!(child.wait().expect("chpasswd").success());
    password
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    let f = std::fs::File::open("/dev/urandom").expect("urandom");
    std::io::Read::read_exact(&mut &f, &mut b).expect("random");
    u64::from_le_bytes(b)
}

/// An sshd the test user can log in to: its directory must be readable by
/// that user (sshd reads authorized_keys as the user).
struct World {
    sshd: Sshd,
    keys: ClientKeys,
    dir: tempfile::TempDir,
}

impl World {
    fn start() -> World {
        let keys = ClientKeys::new();
        let sshd = Sshd::start(&keys, 1);
        for p in [sshd.dir().to_path_buf(), sshd.dir().join("authorized_keys")] {
            let mode = if p.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let kh = dir.path().join("known_hosts");
        std::fs::write(&kh, sshd.known_hosts_lines()).expect("known_hosts");
        std::fs::write(
            dir.path().join("inventory.yaml"),
            format!(
                "version: 1\ndefaults:\n  user: {USER}\n  identity_file: \"{}\"\n  known_hosts: \"{}\"\ndatacenters:\n  t:\n    hosts:\n      - name: box1\n        address: \"{}\"\n        port: {}\n        labels: {{ odd: \"it's a $(x) `y`\" }}\n",
                keys.key().display(),
                kh.display(),
                sshd.addr(),
                sshd.port()
            ),
        )
        .expect("inventory");
        std::fs::write(dir.path().join("ssh_config"), "").expect("ssh config");
        World { sshd, keys, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A playbook of one stage with `become` (YAML) and `steps` (YAML list).
    fn playbook(&self, name: &str, become_: &str, steps: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(
            &path,
            format!(
                "version: 1\ndefaults: {{ command_timeout: 2m }}\nstages:\n  - name: s\n    select: {{ dc: t }}\n{become_}    steps: {steps}\n"
            ),
        )
        .expect("playbook");
        path
    }

    fn password_file(&self, password: &str) -> PathBuf {
        let path = self.path("become-password");
        std::fs::write(&path, format!("{password}\n")).expect("password file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    /// `rekindle run PLAYBOOK` with ARGS: (code, stdout, stderr).
    fn run(&self, playbook: &Path, journal: &str, args: &[&str]) -> (i32, String, String) {
        let mut cmd = support::rekindle_in(self.dir.path());
        cmd.arg("run")
            .arg(playbook)
            .arg("-i")
            .arg(self.path("inventory.yaml"))
            .arg("--ssh-config")
            .arg(self.path("ssh_config"))
            .args(["--yes", "--journal"])
            .arg(self.path(journal))
            .args(args);
        support::run(&mut cmd)
    }

    /// Everything a run left where an operator reads: its journal(s) and
    /// the text and JSON reports of each.
    fn written(&self, journal: &str) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.path(journal))
            .expect("journal dir")
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                all.push_str(&std::fs::read_to_string(&p).expect("journal"));
                for format in ["text", "json", "html"] {
                    let mut cmd = support::rekindle();
                    cmd.args(["report", "--format", format]).arg(&p);
                    all.push_str(&support::run(&mut cmd).1);
                }
            }
        }
        all
    }
}

#[test]
fn nopasswd_sudo_runs_every_privileged_step_as_root_and_keeps_values_quoted() {
    assert!(prepared());
    let w = World::start();
    let steps = r#"
      - run: "test $(id -u) = 0 && test {label.odd} = \"it's a \\$(x) \\`y\\`\""
      - health: { checks: [ { ssh: "test $(id -un) = root" } ], timeout: 30s }
"#;
    let without = w.playbook("plain.yaml", "", steps);
    let (code, out, err) = w.run(&without, "j1", &[]);
    assert_eq!(
        code, 3,
        "without become the user is not root:\n{out}\n{err}"
    );
    assert!(out.contains("exited with 1"), "{out}");

    let with = w.playbook("become.yaml", "    become: true\n", steps);
    let (code, out, err) = w.run(&with, "j2", &[]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        w.sshd
            .log()
            .contains(&format!("Accepted publickey for {USER}"))
    );

    // `defaults.become`, with a user other than root: needs a password.
    let defaults = w.path("defaults.yaml");
    std::fs::write(
        &defaults,
        "version: 1\ndefaults: { become: { method: sudo, user: rekindle-test-pw }, command_timeout: 2m }\nstages:\n  - name: s\n    select: { dc: t }\n    steps: [ { run: \"true\" } ]\n",
    )
    .expect("playbook");
    let (code, out, _) = w.run(&defaults, "j3", &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("sudo requires a password on box1"), "{out}");
}

#[test]
fn a_sudo_that_wants_a_password_fails_at_once_or_takes_it_from_the_file() {
    assert!(prepared());
    let _one = PASSWORD.lock().unwrap_or_else(|p| p.into_inner());
    let w = World::start();
    let password = set_password();
    let as_pw_user = "    become: { user: rekindle-test-pw }\n";
    let pb = w.playbook(
        "pw.yaml",
        as_pw_user,
        r#"[ { run: "test $(id -un) = rekindle-test-pw" }, { restart_service: "no-such-unit-{name}" } ]"#,
    );

    // No file: the sudo prompt is never waited on (the command timeout is 2m;
    // the failure is sudo's message, not a timeout).
    let (code, out, err) = w.run(&pb, "j1", &[]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("sudo requires a password on box1 (pass --become-password-file"),
        "{out}"
    );
    assert!(!out.contains("timed out"), "{out}");
    // Its own kind in the journal and reports, not a command's exit.
    let j1 = w.written("j1");
    assert!(j1.contains(r#""refusal":"password_required""#), "{j1}");
    assert!(j1.contains("sudo requires a password"), "{j1}");

    // The right password: the run step passes as the target user; the
    // restart of a missing unit then fails as systemctl's own failure.
    let file = w.password_file(&password);
    let file_arg = file.to_str().expect("utf-8");
    let (code, out, err) = w.run(&pb, "j2", &["--become-password-file", file_arg]);
    assert_eq!(code, 3, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("systemctl restart 'no-such-unit-box1'") && !out.contains("sudo requires"),
        "{out}"
    );

    // A wrong password is its own failure.
    let wrong = w.password_file("not-the-password-77");
    let (code, out, _) = w.run(
        &pb,
        "j3",
        &["--become-password-file", wrong.to_str().expect("utf-8")],
    );
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("sudo rejected the password from --become-password-file on box1"),
        "{out}"
    );

    // A target user sudo does not allow: refused, after the password.
    let file = w.password_file(&password);
    let refused = w.playbook(
        "nobody.yaml",
        "    become: { user: nobody }\n",
        r#"[ { run: "true" } ]"#,
    );
    let (code, out, _) = w.run(&refused, "j4", &["--become-password-file", file_arg]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("sudo refused to run the command as nobody on box1")
            && out.contains("is not allowed to execute"),
        "{out}"
    );

    // The password is nowhere: not in output, journal or any report, nor
    // on the command line sshd logged.
    let mut seen = out;
    for j in ["j1", "j2", "j3", "j4"] {
        seen.push_str(&w.written(j));
    }
    seen.push_str(&w.sshd.log());
    assert!(!seen.contains(&password), "the become password leaked");
    assert!(
        !seen.contains("not-the-password-77"),
        "the wrong password leaked"
    );

    // A file others can read is refused before anything runs.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (code, _, err) = w.run(&pb, "j5", &["--become-password-file", file_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("readable by others (mode 0644)"), "{err}");
    assert!(!err.contains(&password));
    // Lock the account's password again.
    let st = Command::new("usermod").args(["-p", "*", USER]).status();
    assert!(st.is_ok_and(|s| s.success()));
}

#[test]
fn a_hosts_own_ansible_become_wins_over_the_stages() {
    assert!(prepared());
    let w = World::start();
    // The host asks for rekindle-test-pw (which needs a password); the stage
    // for root (which does not): the host's wins, so sudo wants a password.
    let inv = w.path("hosts.ini");
    std::fs::write(
        &inv,
        format!(
            "[t]\nbox1 ansible_host={} ansible_port={} ansible_user={USER} ansible_become=true ansible_become_user=rekindle-test-pw\nbox2 ansible_host={} ansible_port={} ansible_user={USER}\n",
            w.sshd.addr(),
            w.sshd.port(),
            w.sshd.addr(),
            w.sshd.port()
        ),
    )
    .expect("inventory");
    let kh = w.path("kh2");
    std::fs::write(
        &kh,
        format!(
            "{}[box1]:{port} {key}\n[box2]:{port} {key}\n",
            w.sshd.known_hosts_lines(),
            port = w.sshd.port(),
            key = w.sshd.host_key()
        ),
    )
    .expect("known_hosts");
    let pb = w.path("pb.yaml");
    std::fs::write(
        &pb,
        "version: 1\nstages:\n  - name: s\n    select: { group: t }\n    parallel: 2\n    max_failures: 1\n    become: true\n    steps: [ { run: \"test $(id -u) = 0\" } ]\n",
    )
    .expect("playbook");
    let mut cmd = support::rekindle_in(w.dir.path());
    cmd.arg("run")
        .arg(&pb)
        .arg("-i")
        .arg(&inv)
        .arg("--ssh-config")
        .arg(w.path("ssh_config"))
        .arg("--identity")
        .arg(w.keys.key())
        .arg("--known-hosts")
        .arg(&kh)
        .args(["--yes", "--journal"])
        .arg(w.path("j"));
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("sudo requires a password on box1"), "{out}");
    assert!(
        !out.contains("on box2"),
        "box2 ran as root with the stage's become: {out}"
    );
}

#[test]
fn an_unknown_become_method_is_an_input_error_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pb = dir.path().join("pb.yaml");
    std::fs::write(
        &pb,
        "version: 1\nstages:\n  - name: s\n    select: { dc: t }\n    become: { method: pbrun }\n    steps: [ { run: \"true\" } ]\n",
    )
    .expect("write");
    let mut cmd = support::rekindle();
    cmd.arg("validate").arg(&pb);
    let (code, out, err) = support::run(&mut cmd);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("pb.yaml:5:23: error: invalid `method` value `pbrun`")
            && all.contains("rekindle knows the become methods sudo and doas"),
        "{all}"
    );
}
