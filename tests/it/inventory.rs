//! Inventory loading through the library: Ansible files against what
//! `ansible-inventory --list` reported for them (committed fixtures), merging,
//! limits, and the example inventories.

use std::collections::{BTreeMap, BTreeSet};

use rekindle::diag::{Sources, render_text};
use rekindle::inventory::{Inventory, load};
use serde_json::Value;

use crate::support::project_file;

fn load_ok(paths: &[&str]) -> Inventory {
    let paths: Vec<String> = paths.iter().map(|p| project_file(p)).collect();
    let mut sources = Sources::new();
    match load(&paths, &mut sources) {
        Ok((inv, _warnings)) => inv,
        Err(diags) => panic!("{}", render_text(&sources, &diags)),
    }
}

fn load_err(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        paths.push(path.to_string_lossy().into_owned());
    }
    let mut sources = Sources::new();
    match load(&paths, &mut sources) {
        Ok((inv, _)) => panic!("expected errors, loaded {} hosts", inv.hosts.len()),
        Err(diags) => render_text(&sources, &diags).replace(&*dir.path().to_string_lossy(), "DIR"),
    }
}

/// What a host looks like to rekindle, derived only from ansible-inventory's JSON.
#[derive(Debug, PartialEq)]
struct Expected {
    address: String,
    port: u16,
    user: Option<String>,
    labels: BTreeMap<String, String>,
    groups: BTreeSet<String>,
}

fn expected_from_ansible(fixture: &str) -> BTreeMap<String, Expected> {
    let text = std::fs::read_to_string(project_file(fixture)).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let json = json.as_object().unwrap();
    let empty = serde_json::Map::new();
    let hostvars = json["_meta"]["hostvars"].as_object().unwrap_or(&empty);
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (group, body) in json.iter().filter(|(k, _)| *k != "_meta") {
        for child in body["children"].as_array().into_iter().flatten() {
            parents
                .entry(child.as_str().unwrap())
                .or_default()
                .push(group);
        }
        for host in body["hosts"].as_array().into_iter().flatten() {
            direct
                .entry(host.as_str().unwrap())
                .or_default()
                .push(group);
        }
    }
    let names: BTreeSet<&str> = hostvars
        .keys()
        .map(String::as_str)
        .chain(direct.keys().copied())
        .collect();
    let mut out = BTreeMap::new();
    for name in names {
        let mut groups = BTreeSet::new();
        let mut stack: Vec<&str> = direct.get(name).cloned().unwrap_or_default();
        while let Some(g) = stack.pop() {
            if groups.insert(g.to_owned()) {
                stack.extend(parents.get(g).into_iter().flatten().copied());
            }
        }
        groups.remove("all");
        let vars = hostvars
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let labels = vars
            .iter()
            .filter(|(k, _)| !k.starts_with("ansible_"))
            .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
            .collect();
        out.insert(
            name.to_owned(),
            Expected {
                address: vars
                    .get("ansible_host")
                    .and_then(text)
                    .unwrap_or_else(|| name.to_owned()),
                port: vars
                    .get("ansible_port")
                    .and_then(Value::as_u64)
                    .map_or(22, |p| p as u16),
                user: vars.get("ansible_user").and_then(text),
                labels,
                groups,
            },
        );
    }
    out
}

fn assert_matches_ansible(inventory: &str, fixture: &str) {
    let inv = load_ok(&[inventory]);
    let expected = expected_from_ansible(fixture);
    let got: BTreeMap<String, Expected> = inv
        .hosts
        .iter()
        .map(|h| {
            let mut sorted = h.groups.clone();
            sorted.sort();
            assert_eq!(h.groups, sorted, "groups of {} are sorted", h.name);
            (
                h.name.clone(),
                Expected {
                    address: h.address.clone(),
                    port: h.port,
                    user: h.user.clone(),
                    labels: h.labels.clone(),
                    groups: h.groups.iter().cloned().collect(),
                },
            )
        })
        .collect();
    assert_eq!(got.len(), inv.hosts.len(), "host names are unique");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "host set of {inventory}"
    );
    for (name, want) in &expected {
        assert_eq!(&got[name], want, "host {name} of {inventory}");
    }
}

#[test]
fn ansible_ini_example_matches_ansible_inventory() {
    assert_matches_ansible(
        "inventories/ansible-example.ini",
        "tests/fixtures/inventory/ansible-example.ini.ansible-inventory.json",
    );
}

#[test]
fn ansible_yaml_example_matches_ansible_inventory() {
    assert_matches_ansible(
        "inventories/ansible-example.yaml",
        "tests/fixtures/inventory/ansible-example.yaml.ansible-inventory.json",
    );
}

#[test]
fn ansible_ini_edge_cases_match_ansible_inventory() {
    assert_matches_ansible(
        "tests/fixtures/inventory/tricky.ini",
        "tests/fixtures/inventory/tricky.ini.ansible-inventory.json",
    );
}

#[test]
fn ansible_jump_comes_from_ssh_args() {
    let inv = load_ok(&["inventories/ansible-example.yaml"]);
    let web = inv
        .hosts
        .iter()
        .find(|h| h.name == "web03.sangam.example.net")
        .unwrap();
    assert_eq!(web.jump.as_deref(), Some("ops@bastion.sangam.example.net"));
    let db = inv
        .hosts
        .iter()
        .find(|h| h.name == "db01.sangam.example.net")
        .unwrap();
    assert_eq!(db.jump, None);
}

#[test]
fn kakao_like_has_four_datacenters_and_about_32000_hosts_in_pangyo() {
    let inv = load_ok(&["inventories/kakao-like.yaml"]);
    let mut per_dc: BTreeMap<&str, usize> = BTreeMap::new();
    let mut roles = BTreeSet::new();
    for h in &inv.hosts {
        *per_dc.entry(h.label("dc").unwrap()).or_default() += 1;
        roles.insert(h.label("role").unwrap().to_owned());
        for key in ["rack", "pdu", "bmc"] {
            assert!(h.label(key).is_some(), "{} lacks label {key}", h.name);
        }
        assert!(h.jump.is_some(), "{} has no jump host", h.name);
    }
    assert_eq!(per_dc.len(), 4, "{per_dc:?}");
    let pangyo = per_dc["pangyo"];
    assert!((31_000..=33_000).contains(&pangyo), "pangyo has {pangyo}");
    for (dc, n) in &per_dc {
        if *dc != "pangyo" {
            assert!((200..=5_000).contains(n), "{dc} has {n}");
        }
    }
    let want = [
        "app", "auth", "batch", "cache", "config", "db", "dns", "mq", "network", "ntp", "oob",
        "storage",
    ];
    assert_eq!(roles, want.iter().map(|r| r.to_string()).collect());
    assert_eq!(inv.hosts.len(), 36_029, "total hosts of kakao-like.yaml");
    // Addresses are unique and valid dotted quads.
    let addresses: BTreeSet<&str> = inv.hosts.iter().map(|h| h.address.as_str()).collect();
    assert_eq!(addresses.len(), inv.hosts.len());
    let bmcs: BTreeSet<&str> = inv.hosts.iter().filter_map(|h| h.label("bmc")).collect();
    assert_eq!(bmcs.len(), inv.hosts.len());
    for a in addresses.iter().chain(bmcs.iter()) {
        assert!(a.parse::<std::net::Ipv4Addr>().is_ok(), "{a}");
    }
}

#[test]
fn several_files_merge_and_conflicting_addresses_name_both_places() {
    let text = load_err(&[
        (
            "a.yaml",
            "version: 1\ndatacenters:\n  x:\n    hosts:\n      - { name: \"web[1-3]\", address: \"10.0.0.{1}\" }\n",
        ),
        ("b.ini", "[web]\nweb2 ansible_host=10.9.9.9\nweb3\n"),
    ]);
    assert_eq!(
        text,
        "DIR/b.ini:2:1: error: host `web2` has address `10.9.9.9` here but `10.0.0.2` at DIR/a.yaml:5:17\n  |\n2 | web2 ansible_host=10.9.9.9\n  | ^^^^\n  = help: a host defined twice must agree; remove one definition or make them match\nDIR/b.ini:3:1: error: host `web3` has address `web3` here but `10.0.0.3` at DIR/a.yaml:5:17\n  |\n3 | web3\n  | ^^^^\n  = help: a host defined twice must agree; remove one definition or make them match\n"
    );
}

#[test]
fn agreeing_definitions_merge_labels_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.ini");
    std::fs::write(
        &a,
        "version: 1\ndatacenters:\n  x:\n    hosts:\n      - { name: \"web[1-2]\", labels: { role: web } }\n",
    )
    .unwrap();
    std::fs::write(&b, "[frontend]\nweb2 tier=edge\nweb9\n").unwrap();
    let mut sources = Sources::new();
    let paths = [a, b].map(|p| p.to_string_lossy().into_owned());
    let (inv, _) = load(&paths, &mut sources).unwrap();
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["web1", "web2", "web9"]);
    let web2 = &inv.hosts[1];
    assert_eq!(web2.label("role"), Some("web"));
    assert_eq!(web2.label("tier"), Some("edge"));
    assert_eq!(web2.label("dc"), Some("x"));
    assert_eq!(web2.groups, ["frontend"]);
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let f = std::fs::File::create(&path).unwrap();
    // Sparse: no 65 MiB are written, the size check must not read them either.
    f.set_len(65 * 1024 * 1024).unwrap();
    let mut sources = Sources::new();
    let diags = load(&[path.to_string_lossy().into_owned()], &mut sources).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].code, "too-large");
    assert!(
        diags[0].message.contains("over the 64 MiB limit"),
        "{}",
        diags[0].message
    );
}

#[test]
fn patterns_over_a_million_hosts_are_refused() {
    let text = load_err(&[(
        "big.yaml",
        "version: 1\ndatacenters:\n  x:\n    hosts:\n      - name: \"n[1-2000]-[1-1000]\"\n",
    )]);
    assert!(
        text.contains(
            "big.yaml:5:16: error: pattern expands to 2000000 hosts, over the limit of 1000000"
        ),
        "{text}"
    );
}

#[test]
fn the_load_wide_host_limit_holds_across_entries() {
    let text = load_err(&[(
        "big.yaml",
        "version: 1\ndatacenters:\n  x:\n    hosts:\n      - name: \"a[1-1000]-[1-1000]\"\n      - name: \"b1\"\n",
    )]);
    assert!(
        text.contains("big.yaml:6:15: error: inventories hold more than 1000000 hosts"),
        "{text}"
    );
}

#[test]
fn ansible_ini_errors_have_places() {
    let text = load_err(&[(
        "hosts",
        "[web]\nweb[1-3]\nweb:\n[web:bogus]\n[db:children]\nmissing\n[x:vars]\nnovalue\n",
    )]);
    assert_eq!(
        text,
        "DIR/hosts:2:5: error: `1-3` is not an Ansible range: write `begin:end` or `begin:end:step`, e.g. `[01:50]`
  |
2 | web[1-3]
  |     ^^^
DIR/hosts:3:1: error: host `web:` ends in `:`, which is reserved for a port number
  |
3 | web:
  | ^^^^
DIR/hosts:4:1: error: section [web:bogus] has unknown type `bogus`
  |
4 | [web:bogus]
  | ^^^^^^^^^^^
  = help: a section is [group], [group:children] or [group:vars]
DIR/hosts:6:1: error: [db:children] includes undefined group `missing`
  |
6 | missing
  | ^^^^^^^
  = help: declare it with a [missing] section
DIR/hosts:7:2: error: section [x:vars] is for group `x`, which is never defined
  |
7 | [x:vars]
  |  ^
  = help: declare it with a [x] section
DIR/hosts:8:1: error: expected key=value in a [:vars] section, found `novalue`
  |
8 | novalue
  | ^^^^^^^
"
    );
}

#[test]
fn ansible_yaml_unknown_keys_are_errors_with_a_suggestion() {
    let text = load_err(&[(
        "inv.yml",
        "all:\n  children:\n    web:\n      host:\n        web1:\n",
    )]);
    assert_eq!(
        text,
        "DIR/inv.yml:4:7: error: unknown key `host` in Ansible group\n  |\n4 |       host:\n  |       ^^^^\n  = help: did you mean `hosts`?\n"
    );
}

/// Loads the files of `dir`, given as `-i` paths relative to it.
fn load_in(dir: &std::path::Path, paths: &[&str]) -> Result<(Inventory, String), String> {
    let paths: Vec<String> = paths
        .iter()
        .map(|p| dir.join(p).to_string_lossy().into_owned())
        .collect();
    let mut sources = Sources::new();
    let clean = |t: String| t.replace(&*dir.to_string_lossy(), "DIR");
    match load(&paths, &mut sources) {
        Ok((inv, warnings)) => Ok((inv, clean(render_text(&sources, &warnings)))),
        Err(diags) => Err(clean(render_text(&sources, &diags))),
    }
}

/// Issue 25: Excel's "CSV UTF-8" starts with a byte order mark; it read as
/// "no `name` column".
#[test]
fn a_csv_header_after_an_excel_byte_order_mark_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cmdb.csv"),
        "\u{feff}name,address,rack\r\nweb1,10.0.0.1,r1\r\n",
    )
    .unwrap();
    let (inv, warnings) = load_in(dir.path(), &["cmdb.csv"]).unwrap();
    assert_eq!(warnings, "");
    assert_eq!(inv.hosts[0].name, "web1");
    assert_eq!(inv.hosts[0].address, "10.0.0.1");
    assert_eq!(inv.hosts[0].label("rack"), Some("r1"));
}

/// Issue 25: a `password` column was printed by `hosts` as a label.
#[test]
fn a_secret_looking_csv_column_is_never_a_label() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cmdb.csv"),
        "name,bmc_password,rack\nweb1,hunter2,r1\n",
    )
    .unwrap();
    let (inv, warnings) = load_in(dir.path(), &["cmdb.csv"]).unwrap();
    assert_eq!(
        warnings,
        "DIR/cmdb.csv:1:6: warning: column `bmc_password` looks like a secret: left out (labels are printed and journaled; its values are never read as one)\n  |\n1 | name,bmc_password,rack\n  |      ^^^^^^^^^^^^\n"
    );
    assert_eq!(inv.hosts[0].labels.len(), 1, "{:?}", inv.hosts[0].labels);
    let (code, out, _) = crate::support::run(crate::support::rekindle().args([
        "hosts",
        "-i",
        &dir.path().join("cmdb.csv").to_string_lossy(),
        "--format",
        "json",
    ]));
    assert_eq!(code, 0);
    assert!(!out.contains("hunter2"), "{out}");
}

/// Issue 25: `a -> .` and `b -> .` made the walk follow 2^40 paths.
#[test]
fn symlink_loops_in_vars_and_inventory_directories_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    std::fs::create_dir_all(inv.join("host_vars/w1")).unwrap();
    std::fs::write(inv.join("hosts"), "[web]\nw1\n").unwrap();
    std::fs::write(inv.join("host_vars/w1/main.yml"), "rack: r1\n").unwrap();
    for name in ["a", "b"] {
        std::os::unix::fs::symlink(".", inv.join("host_vars/w1").join(name)).unwrap();
        std::os::unix::fs::symlink(".", inv.join(name)).unwrap();
    }
    let (inventory, warnings) = load_in(dir.path(), &["inv"]).unwrap();
    assert_eq!(inventory.hosts[0].label("rack"), Some("r1"));
    assert_eq!(
        warnings,
        "DIR/inv/a: warning: DIR/inv/a leads back to a directory already being read (a symlink loop): skipped
DIR/inv/b: warning: DIR/inv/b leads back to a directory already being read (a symlink loop): skipped
DIR/inv/host_vars/w1/a: warning: DIR/inv/host_vars/w1/a leads back to a directory already being read (a symlink loop): skipped
DIR/inv/host_vars/w1/b: warning: DIR/inv/host_vars/w1/b leads back to a directory already being read (a symlink loop): skipped
"
    );
}

/// Writes an executable inventory script into `dir`.
fn script(dir: &std::path::Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("inventory.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// Whether the process in `pid_file` still runs (a zombie, killed and not
/// yet reaped by whoever inherited it, does not), after up to 2 s.
fn alive(pid_file: &std::path::Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    for _ in 0..40 {
        match std::fs::read_to_string(&stat) {
            Err(_) => return false,
            Ok(text) if text.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')) => {
                return false;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    true
}

/// Issue 25: at the time limit only the script itself was killed; a child
/// holding stdout kept rekindle waiting.
#[test]
fn an_inventory_script_past_its_time_limit_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pid");
    let path = script(
        dir.path(),
        &format!("sleep 300 &\necho $! > {}\nwait\n", pids.display()),
    );
    let started = std::time::Instant::now();
    let (code, _, err) = crate::support::run(
        crate::support::rekindle()
            .env("REKINDLE_INVENTORY_SCRIPT_TIMEOUT", "1")
            .args(["hosts", "-i", &path]),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("did not finish within 1 s and was killed with the processes it started"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(!alive(&pids), "the script's child outlived the time limit");
}

/// Issue 25: a script that printed its JSON and exited, leaving a background
/// process holding stdout, hung rekindle without a message.
#[test]
fn a_finished_script_that_leaves_a_process_holding_stdout_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pid");
    let path = script(
        dir.path(),
        &format!(
            "sleep 300 &\necho $! > {}\necho '{{\"web\": {{\"hosts\": [\"w1\"]}}}}'\n",
            pids.display()
        ),
    );
    let (code, out, err) =
        crate::support::run(crate::support::rekindle().args(["hosts", "-i", &path]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("w1"), "{out}");
    assert!(
        err.contains("exited but left a process holding its output; that process group was killed after 500 ms"),
        "{err}"
    );
    assert!(!alive(&pids));
}

/// Issue 25: inventory scripts (a third-party NetBox script) saw
/// REKINDLE_BMC_PASSWORD.
#[test]
fn inventory_scripts_do_not_inherit_rekindles_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(
        dir.path(),
        "echo \"{\\\"web\\\": {\\\"hosts\\\": [\\\"w1\\\"], \\\"vars\\\": {\\\"seen\\\": \\\"${REKINDLE_BMC_PASSWORD:-none}\\\", \\\"home\\\": \\\"${HOME:+set}\\\"}}}\"\n",
    );
    let (code, out, err) = crate::support::run(
        crate::support::rekindle()
            .env("REKINDLE_BMC_PASSWORD", "s3cret-bmc")
            .args(["hosts", "-i", &path, "--format", "json"]),
    );
    assert_eq!(code, 0, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["labels"]["seen"], "none");
    // The rest of the environment is kept (scripts need HOME, PATH, proxies).
    assert_eq!(json[0]["labels"]["home"], "set");
}
