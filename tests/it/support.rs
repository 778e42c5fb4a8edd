//! Shared test helpers: running the CLI and reading its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project root (for examples under inventories/ and playbooks/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the project root, as a string for command lines.
pub fn project_file(rel: &str) -> String {
    root().join(rel).to_string_lossy().into_owned()
}

/// A `rekindle` command running from `dir` (so relative paths in output are stable).
pub fn rekindle_in(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekindle"));
    cmd.current_dir(dir);
    cmd.env_remove("SSH_AUTH_SOCK");
    cmd
}

/// A `rekindle` command running from the project root.
pub fn rekindle() -> Command {
    rekindle_in(&root())
}

/// Runs `cmd` and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("rekindle runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
