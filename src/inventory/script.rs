//! Executable inventories (Ansible's `script` plugin: `-i ./netbox.py`): run
//! with `--list`, bounded in time and output, and their JSON read like a
//! saved `ansible-inventory --list`. Without `_meta.hostvars` the script is
//! asked `--host NAME` for each host, as Ansible asks it.
//!
//! Owns running the program (no shell, stdin closed, rekindle's environment
//! without its own `REKINDLE_*` variables, in a process group of its own)
//! and its failures: a non-zero exit, a timeout (the whole group is killed)
//! or too much output is an error quoting its stderr; a process the script
//! leaves holding its output is killed after a short grace, with a warning.
//! Reading the JSON belongs to `ansible_yaml.rs`.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::ansible::Model;
use super::ansible_yaml::{read_script, var_map};
use crate::diag::{Diagnostic, Sources, Span};
use crate::yaml::{self, Limits};

/// A script's whole run, `--host` calls included, unless
/// `REKINDLE_INVENTORY_SCRIPT_TIMEOUT` (seconds) says otherwise.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long output held open after the script exited is waited for.
const LEFTOVER_GRACE: Duration = Duration::from_millis(500);

fn timeout() -> Duration {
    std::env::var("REKINDLE_INVENTORY_SCRIPT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(TIMEOUT, Duration::from_secs)
}
/// Bytes of stdout accepted (the input-file limit).
const MAX_OUTPUT: u64 = 64 * 1024 * 1024;
/// Bytes of stderr kept for an error message.
const MAX_STDERR: u64 = 8 * 1024;

pub(crate) fn read(
    path: &str,
    model: &mut Model,
    sources: &mut Sources,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) {
    let deadline = Instant::now() + timeout();
    let span = Span::file(Arc::from(path));
    let Some(root) = run_json(path, &["--list"], deadline, sources, &span, diags) else {
        return;
    };
    let Some(missing) = read_script(model, &root, budget, diags) else {
        return;
    };
    for host in missing {
        let name = model.host_name(host).to_owned();
        let Some(vars) = run_json(path, &["--host", &name], deadline, sources, &span, diags) else {
            return;
        };
        if vars.is_null() {
            continue;
        }
        for (k, v, key) in var_map(&vars, diags) {
            model.set_host_var(host, &k, v, key.span.clone());
        }
    }
}

/// What a run of the script gave.
struct Output {
    status: Option<std::process::ExitStatus>,
    stdout: Vec<u8>,
    stderr: String,
    /// Processes the script left holding its output were killed.
    leftovers_killed: bool,
}

/// Reads a pipe to its end on a thread, into a buffer the caller can take
/// at any time (a pipe a leftover process holds open never ends).
fn drain(
    mut pipe: impl Read + Send + 'static,
    max: u64,
) -> (Arc<Mutex<Vec<u8>>>, mpsc::Receiver<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (done, ended) = mpsc::channel();
    let into = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut b = into.lock().expect("not poisoned");
                    // Keep one byte over `max`, so "too much" is known; drop the rest.
                    let room = (max + 1).saturating_sub(b.len() as u64) as usize;
                    b.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
        let _ = done.send(());
    });
    (buf, ended)
}

/// Runs the script in its own process group, so a timeout kills what it
/// started too; after it exits, output still held open by a process it
/// left behind is waited for [`LEFTOVER_GRACE`], then that group is killed.
fn run(program: &str, args: &[&str], deadline: Instant) -> std::io::Result<Output> {
    use std::os::unix::process::CommandExt as _;
    let mut child = crate::child_env::scrubbed_command(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let group = child.id() as libc::pid_t;
    let kill_group = || {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // it touches no memory.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    };
    let (stdout, out_done) = drain(child.stdout.take().expect("piped"), MAX_OUTPUT);
    let (stderr, err_done) = drain(child.stderr.take().expect("piped"), MAX_STDERR);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) if stdout.lock().expect("not poisoned").len() as u64 > MAX_OUTPUT => {
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                kill_group();
                let _ = child.wait();
                return Err(e);
            }
        }
    };
    let mut leftovers_killed = false;
    if status.is_none() {
        kill_group();
        let _ = child.wait();
    } else {
        let until = Instant::now() + LEFTOVER_GRACE;
        let ended = |rx: &mpsc::Receiver<()>| {
            rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                .is_ok()
        };
        if !(ended(&out_done) && ended(&err_done)) {
            kill_group();
            leftovers_killed = true;
        }
    }
    // A process that left the group can still hold a pipe: never wait long.
    let _ = out_done.recv_timeout(Duration::from_millis(200));
    let _ = err_done.recv_timeout(Duration::from_millis(200));
    let stdout = std::mem::take(&mut *stdout.lock().expect("not poisoned"));
    let stderr = String::from_utf8_lossy(&stderr.lock().expect("not poisoned"))
        .trim()
        .to_owned();
    Ok(Output {
        status,
        stdout,
        stderr,
        leftovers_killed,
    })
}

/// Runs `path args`, and parses its stdout as JSON (kept in `sources` under
/// the command line, so problems in it have a line and column).
fn run_json(
    path: &str,
    args: &[&str],
    deadline: Instant,
    sources: &mut Sources,
    span: &Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<yaml::Node> {
    let command = format!("{path} {}", args.join(" "));
    let fail = |diags: &mut Vec<Diagnostic>, why: String| {
        diags.push(Diagnostic::error(
            "inventory-script",
            span.clone(),
            format!("inventory script `{command}` {why}"),
        ));
    };
    // `./netbox.py`, not `netbox.py` from the PATH.
    let program = if Path::new(path).components().count() == 1 {
        format!("./{path}")
    } else {
        path.to_owned()
    };
    let output = match run(&program, args, deadline) {
        Ok(o) => o,
        Err(e) => {
            fail(diags, format!("cannot be run: {e}"));
            return None;
        }
    };
    let stderr_note = if output.stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr: {}", output.stderr)
    };
    if output.stdout.len() as u64 > MAX_OUTPUT {
        fail(
            diags,
            format!("printed more than {} MiB", MAX_OUTPUT / (1024 * 1024)),
        );
        return None;
    }
    let Some(status) = output.status else {
        fail(
            diags,
            format!(
                "did not finish within {} s and was killed with the processes it started{stderr_note}",
                timeout().as_secs()
            ),
        );
        return None;
    };
    if !status.success() {
        fail(diags, format!("failed ({status}){stderr_note}"));
        return None;
    }
    if output.leftovers_killed {
        diags.push(Diagnostic::warning(
            "inventory-script",
            span.clone(),
            format!(
                "inventory script `{command}` exited but left a process holding its output; that process group was killed after {} ms",
                LEFTOVER_GRACE.as_millis()
            ),
        ));
    }
    let Ok(text) = String::from_utf8(output.stdout) else {
        fail(diags, "printed output that is not UTF-8".to_owned());
        return None;
    };
    if !text.trim_start().starts_with('{') {
        fail(diags, format!("printed no JSON object{stderr_note}"));
        return None;
    }
    let text: Arc<str> = Arc::from(text);
    let file = sources.add(&command, text.clone());
    match yaml::parse(file, &text, Limits::default()) {
        Ok(root) => Some(root),
        Err(d) => {
            diags.push(d);
            None
        }
    }
}
