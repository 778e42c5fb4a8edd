//! The static build (`scripts/build-static.sh`): one file that runs in an
//! empty chroot holding only itself, its inputs and an `/etc/hosts`. There,
//! `validate` and `plan` work, and `plan --preflight` reaches a simulated
//! host by a name only the chroot's `/etc/hosts` knows. The binary is built
//! with `PROFILE=static-test` (unoptimised; `scripts/test.sh` builds it
//! before the suite, so here the script only finds it fresh). Needs root
//! (chroot). The simulator here uses ports 2971-2972.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{self, SimProcess};

const PLAYBOOK: &str = "\
version: 1
name: static-chroot
defaults: { connect_timeout: 10s, command_timeout: 30s }
stages:
  - name: web
    select: { dc: chroot }
    parallel: 2
    steps:
      - run: \"true\"
";

/// The static binary, built once per test process; None (with the reason
/// printed) where it cannot be built outside CI. In CI it must build.
fn static_binary() -> Option<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build) {
        Ok(path) => Some(path),
        Err(why) if std::env::var_os("CI").is_some() => panic!("{why}"),
        Err(why) => {
            eprintln!("skipped: the static binary cannot be built here: {why}");
            None
        }
    }
}

fn build() -> Result<PathBuf, String> {
    // The suite's own target dir: .../target/debug/rekindle -> .../target.
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_rekindle"));
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory above the test binary")?;
    let out = Command::new(support::root().join("scripts/build-static.sh"))
        .current_dir(support::root())
        .env("PROFILE", "static-test")
        .env("CARGO_TARGET_DIR", target)
        .output()
        .map_err(|e| format!("scripts/build-static.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(format!(
            "scripts/build-static.sh failed ({}):\n{}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let path = stdout.lines().last().ok_or("the script printed no path")?;
    Ok(support::root().join(path))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: chroot needs root");
    }
    root
}

/// An empty directory tree to chroot into: `/rekindle` (a copy of `bin`),
/// `/etc/hosts`, and `/in/` for inputs.
struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new(bin: &Path, hosts: &str) -> Chroot {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::write(dir.path().join("etc/hosts"), hosts).unwrap();
        std::fs::copy(bin, dir.path().join("rekindle")).expect("copy the binary");
        Chroot { dir }
    }

    fn put(&self, name: &str, text: &str) {
        let p = self.dir.path().join("in").join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Every file in the tree, relative, sorted: what the chroot holds.
    fn files(&self) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }

    /// `chroot DIR /rekindle ARGS...` with a bare environment.
    fn rekindle(&self, args: &[&str]) -> (i32, String, String) {
        // By path: the bare environment below has no PATH to search.
        let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chroot(8) is installed (coreutils)");
        let mut cmd = Command::new(chroot);
        cmd.arg(self.dir.path())
            .arg("/rekindle")
            .args(args)
            .env_clear()
            .env("HOME", "/in")
            .env("USER", "root")
            .env("XDG_STATE_HOME", "/in/state");
        support::run(&mut cmd)
    }
}

#[test]
fn the_static_binary_is_static_and_plans_and_validates_in_an_empty_chroot() {
    let Some(bin) = static_binary() else { return };
    let file = Command::new("file")
        .arg("-b")
        .arg(bin)
        .output()
        .expect("file(1) runs");
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "file(1) says: {file}"
    );
    let ldd = Command::new("ldd").arg(bin).output().expect("ldd runs");
    let ldd = String::from_utf8_lossy(&ldd.stdout) + String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "ldd lists libraries: {ldd}"
    );
    if !is_root() {
        return;
    }

    let chroot = Chroot::new(bin, "127.0.0.1 localhost\n10.9.0.1 web-1.chroot.test\n");
    chroot.put(
        "inv.yaml",
        "version: 1\ndatacenters:\n  chroot:\n    hosts:\n      \
         - { name: web-1, address: web-1.chroot.test }\n      \
         - { name: web-2, address: 10.9.0.2 }\n",
    );
    chroot.put("pb.yaml", PLAYBOOK);
    assert_eq!(
        chroot.files(),
        ["etc/hosts", "in/inv.yaml", "in/pb.yaml", "rekindle"]
    );

    let (code, out, err) = chroot.rekindle(&["validate", "/in/pb.yaml", "-i", "/in/inv.yaml"]);
    assert_eq!(code, 0, "validate in the chroot: {out}{err}");
    let (code, out, err) = chroot.rekindle(&[
        "plan",
        "/in/pb.yaml",
        "-i",
        "/in/inv.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "plan in the chroot: {err}");
    let plan: serde_json::Value = serde_json::from_str(&out).expect("the plan is JSON");
    assert_eq!(plan["stages"][0]["hosts"], 2, "{out}");

    // The chroot really is empty: the ordinary, dynamically linked build
    // cannot even start there (no dynamic loader, no libc).
    let dynamic = Chroot::new(Path::new(env!("CARGO_BIN_EXE_rekindle")), "");
    let (code, _, err) = dynamic.rekindle(&["--version"]);
    assert_ne!(code, 0, "the dynamic build ran in an empty chroot: {err}");
}

#[test]
fn the_static_binary_reaches_an_ssh_host_named_only_in_the_chroots_etc_hosts() {
    let Some(bin) = static_binary() else { return };
    if !is_root() {
        return;
    }
    let sim = SimProcess::builder(&["--hosts", "1", "--port", "2971", "--http-port", "2972"])
        .stderr_null()
        .start();
    // "[127.a.b.c]:2971 ssh-ed25519 AAAA...": the host's address and key.
    let known = std::fs::read_to_string(sim.path("known_hosts")).unwrap();
    let (host, key) = known
        .lines()
        .next()
        .and_then(|l| l.split_once(' '))
        .expect("a known_hosts line");
    let address = host
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap()
        .to_owned();

    let chroot = Chroot::new(bin, &format!("{address}\tpeer.chroot.test\n"));
    chroot.put(
        "inv.yaml",
        "version: 1\ndefaults:\n  user: root\n  port: 2971\n  identity_file: /in/id_ed25519\n  \
         known_hosts: /in/known_hosts\ndatacenters:\n  chroot:\n    hosts:\n      \
         - { name: peer, address: peer.chroot.test }\n      \
         - { name: ghost, address: ghost.chroot.test }\n",
    );
    chroot.put("pb.yaml", PLAYBOOK);
    chroot.put("ssh_config", "");
    chroot.put(
        "id_ed25519",
        &std::fs::read_to_string(sim.path("id_ed25519")).unwrap(),
    );
    // Trusted under the name only: the address is not in known_hosts.
    chroot.put("known_hosts", &format!("[peer.chroot.test]:2971 {key}\n"));

    let (code, out, err) = chroot.rekindle(&[
        "plan",
        "/in/pb.yaml",
        "-i",
        "/in/inv.yaml",
        "--preflight",
        "--ssh-config",
        "/in/ssh_config",
        "--format",
        "json",
    ]);
    // ghost is named nowhere, so the preflight fails (exit 1) for it alone.
    assert_eq!(code, 1, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let pf = &report["preflight"];
    assert_eq!(
        (&pf["checked"], &pf["problems"]),
        (&2.into(), &1.into()),
        "{out}"
    );
    // peer was reached through the chroot's /etc/hosts: it gave its boot id.
    assert!(
        pf["boot_ids"]["peer"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{out}"
    );
    assert!(
        out.contains("ghost.chroot.test is not in /etc/hosts"),
        "ghost's failure names /etc/hosts: {out}"
    );
}
