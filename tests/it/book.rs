//! Examples that cannot lie: every ```` ```console ```` block of the book
//! (docs/book/src, and the docs/*.md pages it includes) and of README.md. Each `$ rekindle ...` line in any such
//! block must parse with rekindle's own command line (a renamed flag or
//! subcommand fails here). Blocks marked ```` ```console,run ```` are also
//! executed, in order, one temporary directory per page (with `playbooks/`,
//! `inventories/`, `schemas/` and `scripts/` linked in, and the rekindle under test on
//! PATH), through bash; the lines under a command are its expected output
//! (stdout and stderr), where a line `...` stands for any number of lines,
//! and `...` inside a line for any text; a last line `? N` gives the exit
//! code (0 when absent). A command ending
//! in ` &` runs in the background and is killed when the page is done.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser as _;

use crate::support::{KillOnDrop, root};

/// One `$ command` of a console block and what it shows.
#[derive(Debug)]
struct Example {
    file: String,
    line: usize,
    command: String,
    output: Vec<String>,
    exit: i32,
    run: bool,
}

/// The console blocks of one Markdown text.
fn examples(file: &str, text: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut in_block: Option<bool> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        match in_block {
            None => {
                if let Some(info) = trimmed.strip_prefix("```console") {
                    in_block = Some(info.split(',').any(|a| a.trim() == "run"));
                }
            }
            Some(run) => {
                if trimmed.starts_with("```") {
                    in_block = None;
                } else if let Some(cmd) = trimmed.strip_prefix("$ ") {
                    let mut command = cmd.to_owned();
                    while command.ends_with('\\') {
                        command.pop();
                        match lines.next() {
                            Some((_, more)) => command.push_str(more.trim_start()),
                            None => break,
                        }
                    }
                    out.push(Example {
                        file: file.to_owned(),
                        line: n + 1,
                        command,
                        output: Vec::new(),
                        exit: 0,
                        run,
                    });
                } else if let Some(last) = out.last_mut() {
                    match trimmed.strip_prefix("? ").map(str::parse) {
                        Some(Ok(code)) => last.exit = code,
                        _ => last.output.push(line.to_owned()),
                    }
                }
            }
        }
    }
    out
}

/// README.md, the topic pages under docs/ (the book includes them) and every
/// page of the book, but not what scripts/book.sh generates into it.
fn pages() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs/book/src")];
    let md = |p: &Path| p.extension().is_some_and(|e| e == "md");
    for entry in std::fs::read_dir(root().join("docs")).expect("docs") {
        let path = entry.expect("entry").path();
        if path.is_file() && md(&path) {
            files.push(path);
        }
    }
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("book source") {
            let path = entry.expect("entry").path();
            if path.is_dir() && !path.ends_with("generated") {
                dirs.push(path);
            } else if md(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root()).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&p).expect("read page"))
        })
        .collect()
}

/// The words of a `rekindle ...` command, without redirections and pipes.
fn rekindle_words(command: &str) -> Option<Vec<String>> {
    let command = command.trim().trim_end_matches('&').trim();
    let first = command
        .split(['|', '>', ';'])
        .next()
        .unwrap_or_default()
        .trim();
    let words = shlex::split(first)?;
    (words.first().map(String::as_str) == Some("rekindle")).then_some(words)
}

#[test]
fn every_rekindle_command_shown_parses() {
    let mut checked = 0;
    let mut bad = Vec::new();
    for (file, text) in pages() {
        for ex in examples(&file, &text) {
            let Some(words) = rekindle_words(&ex.command) else {
                continue;
            };
            checked += 1;
            if let Err(e) = rekindle::cli::Cli::try_parse_from(&words) {
                let kind = e.kind();
                if kind != clap::error::ErrorKind::DisplayHelp
                    && kind != clap::error::ErrorKind::DisplayVersion
                {
                    bad.push(format!("{}:{}: {}\n{e}", ex.file, ex.line, ex.command));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "examples that do not parse:\n{}",
        bad.join("\n")
    );
    assert!(checked >= 20, "only {checked} rekindle commands found");
}

#[test]
fn the_harness_reads_blocks_and_catches_a_renamed_flag() {
    let page = "text\n```console,run\n$ rekindle validate a.yaml \\\n    --format json\nout 1\n...\n? 1\n```\n\
                ```console\n$ rekindle plan p.yaml -i i.yaml --prefligth\n```\n";
    let ex = examples("t.md", page);
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].command, "rekindle validate a.yaml --format json");
    assert_eq!((ex[0].output.len(), ex[0].exit, ex[0].run), (2, 1, true));
    assert!(!ex[1].run);
    let words = rekindle_words(&ex[1].command).unwrap();
    assert!(rekindle::cli::Cli::try_parse_from(&words).is_err());
    assert!(matches(
        &["a".into(), "...".into(), "d".into()],
        "a\nb\nc\nd\n"
    ));
    assert!(!matches(&["a".into(), "d".into()], "a\nb\nd\n"));
    assert!(matches(&["x ... y .../p".into()], "x 1 2 y /tmp/p\n"));
    assert!(!matches(&["x ... y".into()], "x 1 z\n"));
}

/// `want` (with `...` for any lines) against `got`, line by line.
fn matches(want: &[String], got: &str) -> bool {
    fn go(want: &[String], got: &[&str]) -> bool {
        match want.split_first() {
            None => got.is_empty(),
            Some((w, rest)) if w.trim() == "..." => (0..=got.len()).any(|i| go(rest, &got[i..])),
            Some((w, rest)) => got.split_first().is_some_and(|(g, more)| {
                line_matches(w.trim_end(), g.trim_end()) && go(rest, more)
            }),
        }
    }
    /// One line, where `...` inside it stands for any text.
    fn line_matches(want: &str, got: &str) -> bool {
        let parts: Vec<&str> = want.split("...").collect();
        let [first, middle @ .., last] = parts.as_slice() else {
            return want == got;
        };
        let Some(mut rest) = got.strip_prefix(first) else {
            return false;
        };
        for part in middle {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
    let got: Vec<&str> = got.lines().collect();
    go(want, &got)
}

fn link(work: &Path, name: &str) {
    std::os::unix::fs::symlink(root().join(name), work.join(name)).expect("symlink");
}

#[test]
fn console_run_blocks_run_and_show_their_real_output() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_rekindle"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut failures = Vec::new();
    for (file, text) in pages() {
        let runnable: Vec<Example> = examples(&file, &text)
            .into_iter()
            .filter(|e| e.run)
            .collect();
        if runnable.is_empty() {
            continue;
        }
        let work = tempfile::tempdir().unwrap();
        for name in ["playbooks", "inventories", "schemas", "scripts"] {
            link(work.path(), name);
        }
        let state = work.path().join(".state");
        let mut background: Vec<KillOnDrop> = Vec::new();
        for ex in runnable {
            ran += 1;
            let mut cmd = Command::new("bash");
            cmd.current_dir(work.path())
                .env("PATH", &path)
                .env("XDG_STATE_HOME", &state)
                .env_remove("SSH_AUTH_SOCK")
                .stdin(Stdio::null());
            if let Some(bg) = ex.command.trim_end().strip_suffix('&') {
                cmd.args(["-c", &format!("exec {bg}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                background.push(KillOnDrop::new(cmd.spawn().expect("bash starts")));
                continue;
            }
            cmd.args(["-c", &format!("{} 2>&1", ex.command)])
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut child = KillOnDrop::new(cmd.spawn().expect("bash starts"));
            let mut stdout = child.child().stdout.take().expect("stdout");
            let reader = std::thread::spawn(move || {
                let mut s = String::new();
                let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
                s
            });
            let status = child.wait_for(Duration::from_secs(180));
            let got = reader.join().unwrap_or_default();
            let code = status.and_then(|s| s.code()).unwrap_or(-1);
            if code != ex.exit || (!ex.output.is_empty() && !matches(&ex.output, &got)) {
                failures.push(format!(
                    "{}:{}: $ {}\nexit {code} (want {})\n--- shown:\n{}\n--- got:\n{got}",
                    ex.file,
                    ex.line,
                    ex.command,
                    ex.exit,
                    ex.output.join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 5, "only {ran} commands ran");
}

/// Every diagnostic code rekindle's sources can emit (`Diagnostic::error("code"`
/// or `Diagnostic::warning("code"`, outside test modules).
fn diagnostic_codes() -> Vec<String> {
    let mut codes = Vec::new();
    let mut dirs = vec![root().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let text = text.split("#[cfg(test)]").next().unwrap_or_default();
            for call in ["Diagnostic::error(", "Diagnostic::warning("] {
                for (at, _) in text.match_indices(call) {
                    let rest = text[at + call.len()..].trim_start();
                    if let Some(quoted) = rest.strip_prefix('"')
                        && let Some(end) = quoted.find('"')
                    {
                        codes.push(quoted[..end].to_owned());
                    }
                }
            }
        }
    }
    codes.sort();
    codes.dedup();
    codes
}

#[test]
fn every_diagnostic_code_is_in_the_reference() {
    let codes = diagnostic_codes();
    assert!(codes.len() > 50, "{codes:?}");
    assert!(codes.iter().any(|c| c == "unknown-key"));
    let page = std::fs::read_to_string(root().join("docs/book/src/reference/diagnostics.md"))
        .expect("the diagnostics reference");
    let missing: Vec<&String> = codes
        .iter()
        .filter(|c| !page.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without an entry in reference/diagnostics.md: {missing:?}"
    );
}
