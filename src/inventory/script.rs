//! Executable inventories (Ansible's `script` plugin: `-i ./netbox.py`): run
//! with `--list`, bounded in time and output, and their JSON read like a
//! saved `ansible-inventory --list`. Without `_meta.hostvars` the script is
//! asked `--host NAME` for each host, as Ansible asks it.
//!
//! Owns running the program (no shell, stdin closed, the environment as
//! rekindle's own; nothing added to it) and its failures: a non-zero exit,
//! a timeout or too much output is an error quoting its stderr.
//! Reading the JSON belongs to `ansible_yaml.rs`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ansible::Model;
use super::ansible_yaml::{read_script, var_map};
use crate::diag::{Diagnostic, Sources, Span};
use crate::yaml::{self, Limits};

/// A script's whole run, `--host` calls included.
const TIMEOUT: Duration = Duration::from_secs(60);
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
    let deadline = Instant::now() + TIMEOUT;
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
    let mut child = match Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            fail(diags, format!("cannot be run: {e}"));
            return None;
        }
    };
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.take(MAX_OUTPUT + 1).read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = stderr.take(MAX_STDERR);
        let _ = limited.read_to_end(&mut buf);
        // Drain the rest so the script never blocks on a full pipe.
        let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
        buf
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let out = out.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err.join().unwrap_or_default())
        .trim()
        .to_owned();
    let stderr_note = if err.is_empty() {
        String::new()
    } else {
        format!("; its stderr: {err}")
    };
    let Some(status) = status else {
        fail(
            diags,
            format!(
                "did not finish within {} s and was killed{stderr_note}",
                TIMEOUT.as_secs()
            ),
        );
        return None;
    };
    if !status.success() {
        fail(diags, format!("failed ({status}){stderr_note}"));
        return None;
    }
    if out.len() as u64 > MAX_OUTPUT {
        fail(
            diags,
            format!("printed more than {} MiB", MAX_OUTPUT / (1024 * 1024)),
        );
        return None;
    }
    let Ok(text) = String::from_utf8(out) else {
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
