//! The README's two commands, `scripts/drill.sh` and `scripts/test.sh`: they
//! share one cargo build, and the drill shows cargo's progress.

use crate::support::root;

/// The `cargo ...` command lines of a script (comments and echoes left out).
fn cargo_lines(script: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(script)).expect("script readable");
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn drill_builds_what_the_tests_build_with_progress_shown() {
    // Regression: the drill's `cargo build --quiet` sat silent for minutes
    // on a first build, and its dev-profile build without dev-dependency
    // features made scripts/test.sh compile most dependencies again.
    let drill = cargo_lines("scripts/drill.sh");
    let test = cargo_lines("scripts/test.sh");
    let builds: Vec<&String> = drill
        .iter()
        .filter(|l| !l.starts_with("cargo metadata"))
        .collect();
    assert_eq!(builds, ["cargo test --locked --no-run"], "{drill:?}");
    assert_eq!(test, ["cargo test --locked \"$@\""], "{test:?}");
    for line in drill.iter().chain(&test) {
        assert!(!line.contains("--quiet") && !line.contains(" -q"), "{line}");
        assert!(
            !line.contains("--release") && !line.contains("--profile"),
            "{line}"
        );
    }
}
