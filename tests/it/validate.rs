//! `rekindle validate`: every diagnostic's exact rendered text (snapshots),
//! the output formats and the exit codes, through the real binary.

use std::path::PathBuf;

use crate::support::{rekindle_in, root, run};

fn fixtures() -> PathBuf {
    root().join("tests/fixtures/playbooks")
}

/// Runs `rekindle validate ARGS...` from the fixtures directory, so paths in
/// the output are the short relative ones.
fn validate(args: &[&str]) -> (i32, String, String) {
    run(rekindle_in(&fixtures()).arg("validate").args(args))
}

#[test]
fn a_valid_playbook_passes() {
    let (code, out, err) = validate(&["valid.yaml"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "valid.yaml: valid\n", "")
    );
}

#[test]
fn yaml_syntax_error() {
    let (code, out, _) = validate(&["syntax.yaml"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn unknown_keys_suggest_the_nearest() {
    let (code, out, _) = validate(&["typos.yaml"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn wrong_types() {
    let (code, out, _) = validate(&["types.yaml"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn bad_durations_rates_and_percentages() {
    let (code, out, _) = validate(&["units.yaml"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn duplicate_stages_unknown_after_and_the_whole_cycle() {
    let (code, out, _) = validate(&["graph.yaml"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("error: dependency cycle: a -> b -> c -> a\n"),
        "{out}"
    );
    insta::assert_snapshot!(out);
}

#[test]
fn step_shapes_placeholders_and_empty_select() {
    let (code, out, _) = validate(&["steps.yaml"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn every_file_gets_a_verdict() {
    let (code, out, _) = validate(&["valid.yaml", "typos.yaml"]);
    assert_eq!(code, 1);
    assert!(
        out.ends_with("valid.yaml: valid\ntypos.yaml: invalid (4 errors)\n"),
        "{out}"
    );
}

#[test]
fn an_unreadable_file_exits_2() {
    let (code, out, _) = validate(&["valid.yaml", "missing.yaml"]);
    assert_eq!(code, 2);
    assert!(
        out.starts_with("missing.yaml: error: cannot read missing.yaml: No such file or directory"),
        "{out}"
    );
    assert!(
        out.ends_with("valid.yaml: valid\nmissing.yaml: unreadable\n"),
        "{out}"
    );
}

#[test]
fn json_lists_file_line_column_severity_code_message() {
    let (code, out, _) = validate(&["--format", "json", "typos.yaml"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let first = &v[0];
    assert_eq!(first["file"], "typos.yaml");
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(first["severity"], "error");
    assert_eq!(first["code"], "unknown-key");
    assert_eq!(first["message"], "unknown key `selct` in stage");
    assert_eq!(first["help"], "did you mean `select`?");
    assert_eq!(v.as_array().map(Vec::len), Some(4));
}

#[test]
fn github_annotations() {
    let (code, out, _) = validate(&["--format", "github", "graph.yaml"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

#[test]
fn the_examples_are_valid_without_an_inventory() {
    let (code, out, _) = run(crate::support::rekindle().args([
        "validate",
        "playbooks/dc-cold-start.yaml",
        "playbooks/rolling-kernel-reboot.yaml",
        "playbooks/service-restart.yaml",
    ]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "playbooks/dc-cold-start.yaml: valid\nplaybooks/rolling-kernel-reboot.yaml: valid\nplaybooks/service-restart.yaml: valid\n"
    );
}

#[test]
fn an_alias_bomb_is_refused() {
    let (code, out, _) = validate(&["alias-bomb.yaml"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("error: document expands to more than 3000000 nodes (an alias bomb?)"),
        "{out}"
    );
    assert!(
        out.ends_with("alias-bomb.yaml: invalid (1 error)\n"),
        "{out}"
    );
}

#[test]
fn deep_nesting_is_refused() {
    let (code, out, _) = validate(&["deep.yaml"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("deep.yaml:2:"), "{out}");
    assert!(
        out.contains("error: document is nested more than 64 levels deep"),
        "{out}"
    );
}

#[test]
fn an_unknown_stage_suggests_only_a_close_name() {
    // Regression: `after: dbs` suggested the stage `b`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nstages:\n  - name: b\n    select: { role: b }\n    steps: [ wait_ssh ]\n  - name: c\n    after: dbs\n    select: { role: c }\n    steps: [ wait_ssh ]\n",
    )
    .unwrap();
    let (code, out, _) = run(rekindle_in(dir.path()).args(["validate", "p.yaml"]));
    assert_eq!(code, 1);
    assert!(out.contains("unknown stage `dbs`"), "{out}");
    assert!(!out.contains("did you mean"), "{out}");
}

#[test]
fn every_argument_of_every_subcommand_has_a_help_line() {
    // Regression: `plan`, `run`, `drill` showed bare `<PLAYBOOK>` and `-i`,
    // `--limit` and `report <JOURNAL>` had no description.
    let (_, top, _) = run(crate::support::rekindle().arg("--help"));
    let subcommands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A description that wraps continues on a deeper indent.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        subcommands.contains(&"plan") && subcommands.contains(&"report"),
        "{top}"
    );
    for sub in subcommands {
        let (code, help, _) = run(crate::support::rekindle().args([sub, "--help"]));
        assert_eq!(code, 0, "{sub}");
        let mut bare = Vec::new();
        let lines: Vec<&str> = help.lines().collect();
        let indent = |l: &str| l.len() - l.trim_start().len();
        for (i, line) in lines.iter().enumerate() {
            let item = line.trim_start();
            // An argument line: `  <PLAYBOOK>  text` or `  -i, --inventory <INV>  text`,
            // or (clap's long layout) the text indented on the next line.
            if (2..=6).contains(&indent(line)) && (item.starts_with('-') || item.starts_with('<')) {
                let inline = item
                    .split_once("  ")
                    .is_some_and(|(_, text)| !text.trim().is_empty());
                let below = lines
                    .get(i + 1)
                    .is_some_and(|next| indent(next) > indent(line) + 2 && !next.trim().is_empty());
                if !inline && !below {
                    bare.push(item.to_owned());
                }
            }
        }
        assert!(
            bare.is_empty(),
            "`rekindle {sub} --help` has arguments without help: {bare:?}\n{help}"
        );
    }
}
