//! Ansible inventories as SREs keep them (issue 11), each case checked
//! against what ansible-core 2.19 itself reports for the same sources:
//! `tests/fixtures/inventory/cases/CASE/ansible-inventory.json` (host set,
//! groups, variables), `connection.json` (connection variables as Ansible
//! templates them before connecting, `hostvars` included) and `labels.json`
//! (the other variables, templated the same way), all written by
//! `tests/fixtures/inventory/regenerate.sh`. A case is loaded with the case
//! directory as the playbook directory (the generator runs there), or the
//! one its `playbook-dir` file names. Refusals are checked by their exact
//! messages.

use std::collections::{BTreeMap, BTreeSet};

use rekindle::diag::{Sources, render_text};
use rekindle::inventory::{Host, Inventory, load, load_with};
use serde_json::Value;

use crate::support::{project_file, rekindle, run};

const CASES: &str = "tests/fixtures/inventory/cases";

fn load_paths(paths: &[String], playbook_dir: &str) -> (Inventory, String) {
    let mut sources = Sources::new();
    match load_with(paths, std::path::Path::new(playbook_dir), &mut sources) {
        Ok((inv, warnings)) => (inv, render_text(&sources, &warnings)),
        Err(diags) => panic!("{}", render_text(&sources, &diags)),
    }
}

/// Loads `files` written into a fresh directory (name, content); paths are
/// given as `-i` in that order (a name ending in `/` is a directory source).
fn load_files(
    files: &[(&str, &str)],
    sources_in_order: &[&str],
) -> Result<(Inventory, String), String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let paths: Vec<String> = sources_in_order
        .iter()
        .map(|s| dir.path().join(s).to_string_lossy().into_owned())
        .collect();
    let mut sources = Sources::new();
    let clean = |t: String| t.replace(&*dir.path().to_string_lossy(), "DIR");
    match load(&paths, &mut sources) {
        Ok((inv, warnings)) => Ok((inv, clean(render_text(&sources, &warnings)))),
        Err(diags) => Err(clean(render_text(&sources, &diags))),
    }
}

fn load_err(files: &[(&str, &str)], order: &[&str]) -> String {
    match load_files(files, order) {
        Ok((inv, _)) => panic!("expected errors, loaded {} hosts", inv.hosts.len()),
        Err(text) => text,
    }
}

/// What rekindle must derive for one host, from Ansible's own output only.
#[derive(Debug, PartialEq)]
struct Expected {
    address: String,
    port: u16,
    user: Option<String>,
    jump: Option<String>,
    identity_file: Option<String>,
    escalation: Option<(String, String)>,
    labels: BTreeMap<String, String>,
    groups: BTreeSet<String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// ProxyJump as ssh reads it from Ansible's (templated) ssh arguments.
/// `ProxyCommand="ssh -W %h:%p [-q] [-p PORT] DEST"` is what ssh(1) says
/// `-J DEST[:PORT]` runs, so it counts as that jump.
fn jump_from(args: &str) -> Option<String> {
    let words = shlex::split(args)?;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "-J" {
            return it.next().cloned();
        }
        let option = match w.strip_prefix("-o") {
            Some("") => it.next()?.clone(),
            Some(rest) => rest.to_owned(),
            None => continue,
        };
        let (key, value) = option.split_once(['=', ' '])?;
        if key.eq_ignore_ascii_case("proxyjump") {
            return Some(value.trim().to_owned());
        }
        if key.eq_ignore_ascii_case("proxycommand") {
            let command = shlex::split(value)?;
            let at = command.iter().position(|w| w == "-W")?;
            assert_eq!(command[at + 1], "%h:%p", "{value}");
            let port = command
                .iter()
                .position(|w| w == "-p")
                .map(|i| format!(":{}", command[i + 1]));
            return Some(format!("{}{}", command.last()?, port.unwrap_or_default()));
        }
    }
    None
}

fn expected(case_dir: &str) -> BTreeMap<String, Expected> {
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(format!("{case_dir}/{name}")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let listed = read("ansible-inventory.json");
    let connection = read("connection.json");
    let rendered = read("labels.json");
    let listed = listed.as_object().unwrap();
    let empty = serde_json::Map::new();
    let hostvars = listed["_meta"]["hostvars"].as_object().unwrap_or(&empty);
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (group, body) in listed.iter().filter(|(k, _)| *k != "_meta") {
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
    let mut out = BTreeMap::new();
    for (name, conn) in connection.as_object().unwrap() {
        let mut groups = BTreeSet::new();
        let mut stack: Vec<&str> = direct.get(name.as_str()).cloned().unwrap_or_default();
        while let Some(g) = stack.pop() {
            if groups.insert(g.to_owned()) {
                stack.extend(parents.get(g).into_iter().flatten().copied());
            }
        }
        groups.remove("all");
        let vars = rendered[name].as_object().unwrap_or(&empty);
        let listed_vars = hostvars
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        assert_eq!(
            vars.keys().collect::<BTreeSet<_>>(),
            listed_vars
                .keys()
                .filter(|k| !k.starts_with("ansible_"))
                .collect::<BTreeSet<_>>(),
            "labels.json and ansible-inventory.json agree on {name}'s variables"
        );
        let c = |k: &str| conn.get(k).and_then(text);
        let escalation = (conn.get("ansible_become") == Some(&Value::Bool(true))).then(|| {
            (
                c("ansible_become_method").unwrap_or_else(|| "sudo".into()),
                c("ansible_become_user").unwrap_or_else(|| "root".into()),
            )
        });
        out.insert(
            name.clone(),
            Expected {
                address: c("ansible_host")
                    .or_else(|| c("ansible_ssh_host"))
                    .unwrap_or_else(|| name.clone()),
                port: c("ansible_port").map_or(22, |p| p.parse().unwrap()),
                user: c("ansible_user"),
                jump: ["ansible_ssh_common_args", "ansible_ssh_extra_args"]
                    .iter()
                    .find_map(|k| jump_from(&c(k)?)),
                identity_file: c("ansible_ssh_private_key_file")
                    .or_else(|| c("ansible_private_key_file")),
                escalation,
                labels: vars
                    .iter()
                    .filter(|(k, _)| !k.starts_with("ansible_"))
                    .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
                    .collect(),
                groups,
            },
        );
    }
    out
}

fn derived(h: &Host) -> Expected {
    Expected {
        address: h.address.clone(),
        port: h.port,
        user: h.user.clone(),
        jump: h.jump.clone(),
        identity_file: h
            .identity_file
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        escalation: h
            .escalation
            .as_ref()
            .map(|e| (format!("{:?}", e.method).to_lowercase(), e.user.clone())),
        labels: h.labels.clone(),
        groups: h.groups.iter().cloned().collect(),
    }
}

/// Loads a case's sources (as listed in its `sources` file) and compares
/// every host with Ansible's view; returns the warnings.
fn assert_case(case: &str) -> String {
    let dir = project_file(&format!("{CASES}/{case}"));
    let listed = std::fs::read_to_string(format!("{dir}/sources")).unwrap();
    let paths: Vec<String> = listed.lines().map(|s| format!("{dir}/{s}")).collect();
    let playbook_dir = match std::fs::read_to_string(format!("{dir}/playbook-dir")) {
        Ok(d) => format!("{dir}/{}", d.trim()),
        Err(_) => dir.clone(),
    };
    let (inv, warnings) = load_paths(&paths, &playbook_dir);
    let want = expected(&dir);
    let got: BTreeMap<String, Expected> = inv
        .hosts
        .iter()
        .map(|h| (h.name.clone(), derived(h)))
        .collect();
    assert_eq!(got.len(), inv.hosts.len(), "host names are unique");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "host set of {case}"
    );
    for (name, w) in &want {
        assert_eq!(&got[name], w, "host {name} of {case}");
    }
    warnings.replace(&dir, "CASE")
}

#[test]
fn group_vars_and_host_vars_beside_an_ini_file_match_ansible() {
    let warnings = assert_case("vars-dirs");
    // group_vars/web.yaml is shadowed by web.yml, as Ansible shadows it.
    assert_eq!(
        warnings,
        "CASE/group_vars/web.yaml: warning: CASE/group_vars/web.yaml is not read: `web.yml` is read for group `web` instead, as in Ansible\n"
    );
}

#[test]
fn host_vars_give_the_address_and_port_rekindle_connects_to() {
    let (inv, _) = load_files(
        &[
            ("hosts", "[web]\nweb1\n"),
            (
                "host_vars/web1.yml",
                "ansible_host: 10.0.0.5\nansible_port: 2222\n",
            ),
        ],
        &["hosts"],
    )
    .unwrap();
    assert_eq!(
        (inv.hosts[0].address.as_str(), inv.hosts[0].port),
        ("10.0.0.5", 2222)
    );
}

#[test]
fn a_directory_inventory_matches_ansible() {
    let warnings = assert_case("directory");
    assert_eq!(warnings, "");
}

#[test]
fn several_sources_merge_as_ansible_merges_them() {
    let warnings = assert_case("multi-source");
    assert_eq!(warnings, "");
}

#[test]
fn children_of_a_group_no_source_declares_are_still_an_error() {
    let text = load_err(
        &[
            ("a.ini", "[web]\nweb1\n"),
            ("b.ini", "[front:children]\nweb\nnope\n"),
        ],
        &["a.ini", "b.ini"],
    );
    assert_eq!(
        text,
        "DIR/b.ini:3:1: error: [front:children] includes undefined group `nope`\n  |\n3 | nope\n  | ^^^^\n  = help: declare it with a [nope] section\n"
    );
}

#[test]
fn connection_variables_become_identity_file_escalation_and_jump() {
    let warnings = assert_case("connection");
    assert_eq!(
        warnings,
        "CASE/hosts.yml:17:9: warning: host `db1.example.net` and 1 more: ansible_ssh_extra_args: `-o ServerAliveInterval=30` ignored: rekindle honours only ProxyJump (`-J`, `-o ProxyJump=`) here\n   |\n17 |         ansible_ssh_extra_args: -o \"ProxyJump jump2.example.net\" -o ServerAliveInterval=30\n   |         ^^^^^^^^^^^^^^^^^^^^^^\n"
    );
}

#[test]
fn hosts_json_shows_identity_file_and_become() {
    let inv = format!("{CASES}/connection/hosts.yml");
    let (code, out, _) = run(rekindle().args([
        "hosts",
        "-i",
        &inv,
        "--select",
        "name=web2*",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["identity_file"], "~/.ssh/fleet_ed25519");
    assert_eq!(
        json[0]["become"],
        serde_json::json!({"method": "doas", "user": "www-data"})
    );
    assert_eq!(json[0]["jump"], "ops@bastion.example.net");
}

#[test]
fn refused_connection_settings_name_their_place() {
    let text = load_err(
        &[(
            "hosts",
            "[su]\ns1 ansible_become=true ansible_become_method=su\n\n[pc]\np1 ansible_ssh_common_args='-o ProxyCommand=\"nc -x proxy:1080 %h %p\"'\n",
        )],
        &["hosts"],
    );
    assert_eq!(
        text,
        "DIR/hosts:2:24: error: host `s1`: ansible_become_method `su` is not supported: rekindle escalates with sudo or doas
  |
2 | s1 ansible_become=true ansible_become_method=su
  |                        ^^^^^^^^^^^^^^^^^^^^^
DIR/hosts:5:4: error: host `p1`: ProxyCommand in ansible_ssh_common_args is not supported: use ProxyJump (`-o ProxyJump=HOST` or `-J HOST`); only `ssh -W %h:%p [-q] [-p PORT] [-l USER] [USER@]HOST` is read as one
  |
5 | p1 ansible_ssh_common_args='-o ProxyCommand=\"nc -x proxy:1080 %h %p\"'
  |    ^^^^^^^^^^^^^^^^^^^^^^^
"
    );
}

/// Issue 24 point 5: kolla-ansible's multinode inventory has
/// `localhost ansible_connection=local` beside the hosts it deploys, and
/// puts bastions in `ProxyCommand="ssh -W %h:%p ..."`.
#[test]
fn a_local_host_is_refused_only_when_selected_and_ssh_w_is_a_jump() {
    assert_eq!(assert_case("bastion-idioms"), "");
    let inv = format!("{CASES}/bastion-idioms/multinode");
    let (code, out, err) = run(rekindle().args(["hosts", "-i", &inv, "--select", "group=control"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ctl2  10.2.0.2    22  -     ops@bastion.example.net:2200"),
        "{out}"
    );
    let (code, _, err) = run(rekindle().args(["hosts", "-i", &inv]));
    assert_eq!(code, 2);
    assert_eq!(
        err.replace(CASES, "CASES"),
        "CASES/bastion-idioms/multinode:9:11: error: host `localhost`: ansible_connection `local` is not supported: rekindle reaches every host over SSH; put the host's address in ansible_host to reach it by SSH, or use a `local:` step for work on the bastion
  |
9 | localhost ansible_connection=local
  |           ^^^^^^^^^^^^^^^^^^
  = help: leave such hosts out with `--select`/`--limit`, or give them an SSH connection
"
    );
}

#[test]
fn unsupported_connection_variables_are_warned_about_once_per_place() {
    let (inv, warnings) = load_files(
        &[(
            "hosts",
            "[web]\nweb[1:3]\n\n[web:vars]\nansible_ssh_pass=secret\nansible_ssh_executable=/opt/ssh\nansible_python_interpreter=/usr/bin/python3\n",
        )],
        &["hosts"],
    )
    .unwrap();
    assert_eq!(inv.hosts.len(), 3);
    assert_eq!(
        warnings,
        "DIR/hosts: warning: host `web1` and 2 more: line 5: ansible_ssh_pass is not used: rekindle authenticates with ssh-agent and identity files only; the password is not used
DIR/hosts:6:1: warning: host `web1` and 2 more: ansible_ssh_executable is not used: rekindle speaks SSH itself and runs no ssh program
  |
6 | ansible_ssh_executable=/opt/ssh
  | ^^^^^^^^^^^^^^^^^^^^^^
"
    );
    // The password's line is named, never quoted.
    assert!(!warnings.contains("secret\n"), "{warnings}");
}

#[test]
fn templates_are_evaluated_from_the_host_variables_as_ansible_does() {
    let warnings = assert_case("templates");
    assert_eq!(warnings, "");
}

#[test]
fn templates_that_need_ansible_are_refused_with_the_template() {
    let text = load_err(
        &[(
            "hosts",
            "web1 ansible_user=\"{{ lookup('env', 'USER') }}\" ansible_host=\"{{ mgmt }}\"\n",
        )],
        &["hosts"],
    );
    assert_eq!(
        text,
        "DIR/hosts:1:6: error: host `web1`: cannot evaluate ansible_user `{{ lookup('env', 'USER') }}`: `lookup(...)` needs Ansible's runtime (lookup plugins); rekindle cannot evaluate it
  |
1 | web1 ansible_user=\"{{ lookup('env', 'USER') }}\" ansible_host=\"{{ mgmt }}\"
  |      ^^^^^^^^^^^^
DIR/hosts:1:49: error: host `web1`: cannot evaluate ansible_host `{{ mgmt }}`: `mgmt` is undefined
  |
1 | web1 ansible_user=\"{{ lookup('env', 'USER') }}\" ansible_host=\"{{ mgmt }}\"
  |                                                 ^^^^^^^^^^^^
"
    );
}

#[test]
fn a_template_in_a_host_name_gets_a_message_about_templates() {
    let text = load_err(
        &[(
            "inv.yml",
            "all:\n  hosts:\n    \"{{ name }}.example.net\":\n",
        )],
        &["inv.yml"],
    );
    assert!(
        text.starts_with("DIR/inv.yml:3:6: error: host names cannot be Jinja templates"),
        "{text}"
    );
    let text = load_err(
        &[("hosts", "[web]\n{{ name }} ansible_port=22\n")],
        &["hosts"],
    );
    assert!(
        text.starts_with("DIR/hosts:2:1: error: host names cannot be Jinja templates"),
        "{text}"
    );
}

#[test]
fn ipv6_ports_non_group_keys_and_value_types_match_ansible() {
    let warnings = assert_case("ipv6-types");
    assert!(
        warnings.contains("CASE/hosts.yml:2:1: warning: top-level key `x-defaults` is not a group (no `hosts`, `vars` or `children`): skipped, as Ansible skips it"),
        "{warnings}"
    );
    assert!(
        warnings.contains("CASE/hosts.yml:4:1: warning: top-level key `x-version`"),
        "{warnings}"
    );
}

#[test]
fn an_inventory_script_is_run_with_list() {
    assert_eq!(assert_case("script"), "");
}

#[test]
fn saved_ansible_inventory_list_output_reads_like_the_source() {
    // Ansible's own `--list` of the vars-dirs case, read back as an input file.
    let listed = project_file(&format!("{CASES}/vars-dirs/ansible-inventory.json"));
    let (inv, _) = load_paths(&[listed], ".");
    let want = expected(&project_file(&format!("{CASES}/vars-dirs")));
    for h in &inv.hosts {
        assert_eq!(derived(h), want[&h.name], "host {}", h.name);
    }
    assert_eq!(inv.hosts.len(), want.len());
}

#[test]
fn a_failing_inventory_script_is_an_error_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("netbox.py");
    std::fs::write(
        &path,
        "#!/bin/sh\necho 'netbox: 401 Unauthorized' >&2\nexit 3\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = path.to_string_lossy().into_owned();
    let mut sources = Sources::new();
    let diags = load(std::slice::from_ref(&path), &mut sources).unwrap_err();
    assert_eq!(
        diags[0].message,
        format!(
            "inventory script `{path} --list` failed (exit status: 3); its stderr: netbox: 401 Unauthorized"
        )
    );
}

#[test]
fn a_cmdb_csv_export_is_read_by_its_header() {
    let (inv, warnings) = load_files(
        &[(
            "cmdb-export",
            "name,address,port,user,jump,role,rack\nweb1,10.0.0.1,2222,ops,bastion,web,r01\n\"db1\",10.0.0.2,,,,db,\"r,02\"\n",
        )],
        &["cmdb-export"],
    )
    .unwrap();
    assert_eq!(warnings, "");
    let hosts: Vec<String> = inv
        .hosts
        .iter()
        .map(|h| {
            format!(
                "{} {}:{} {:?} {:?}",
                h.name, h.address, h.port, h.user, h.jump
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            r#"web1 10.0.0.1:2222 Some("ops") Some("bastion")"#,
            "db1 10.0.0.2:22 None None"
        ]
    );
    assert_eq!(inv.hosts[1].label("rack"), Some("r,02"));
    assert_eq!(inv.hosts[0].label("role"), Some("web"));
}

#[test]
fn a_csv_without_name_column_is_never_read_as_ini() {
    let text = load_err(
        &[("export.csv", "hostname,address\nweb1,10.0.0.1\n")],
        &["export.csv"],
    );
    assert!(
        text.contains("the CSV header has no `name` column"),
        "{text}"
    );
    let text = load_err(&[("hosts", "[web]\nweb1,web2\n")], &["hosts"]);
    assert!(
        text.contains("host name `web1,web2` contains `,`"),
        "{text}"
    );
}

#[test]
fn a_comma_separated_host_list_is_a_source() {
    let (code, out, err) = run(rekindle().args([
        "hosts",
        "-i",
        "web1,[2001:db8::1]:2200,",
        "--format",
        "json",
    ]));
    assert_eq!((code, err.as_str()), (0, ""));
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[1]["address"], "2001:db8::1");
    assert_eq!(json[1]["port"], 2200);
    assert_eq!(json[0]["groups"], serde_json::json!(["ungrouped"]));
}

#[test]
fn ini_files_in_an_inventory_directory_are_read_like_ansible_2_19() {
    let (inv, _) = load_files(
        &[("inv/a.ini", "[web]\nweb1\n"), ("inv/b.cfg", "[db]\ndb1\n")],
        &["inv"],
    )
    .unwrap();
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["web1"]);
}

#[test]
fn every_example_ansible_inventory_plans_with_every_example_playbook() {
    for inventory in [
        "inventories/ansible-example.ini",
        "inventories/ansible-example.yaml",
    ] {
        for playbook in [
            "playbooks/dc-cold-start.yaml",
            "playbooks/rolling-kernel-reboot.yaml",
            "playbooks/service-restart.yaml",
        ] {
            let (code, out, err) = run(rekindle().args(["plan", playbook, "-i", inventory]));
            assert_eq!(code, 0, "plan {playbook} -i {inventory}:\n{err}");
            assert!(
                !err.contains("error"),
                "plan {playbook} -i {inventory}:\n{err}"
            );
            assert!(out.contains("stage"), "{out}");
        }
    }
}

#[test]
fn secrets_are_never_labels_and_vault_values_are_refused_where_used() {
    let (inv, warnings) = load_files(
        &[(
            "inv.yml",
            "all:\n  vars:\n    db_password: hunter2\n    api_token: t0k3n\n    role: db\n    secret_note: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n  hosts:\n    db1:\n",
        )],
        &["inv.yml"],
    )
    .unwrap();
    assert_eq!(inv.hosts[0].labels.keys().collect::<Vec<_>>(), ["role"]);
    assert!(
        !warnings.contains("hunter2") && !warnings.contains("t0k3n"),
        "{warnings}"
    );
    assert!(
        warnings.contains("variable `db_password` is not a label: it looks like a secret"),
        "{warnings}"
    );
    let text = load_err(
        &[(
            "inv.yml",
            "all:\n  hosts:\n    db1:\n      ansible_user: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        6162\n",
        )],
        &["inv.yml"],
    );
    assert!(
        text.starts_with("DIR/inv.yml:4:7: error: host `db1`: ansible_user is encrypted with ansible-vault: rekindle cannot decrypt it"),
        "{text}"
    );
}

#[test]
fn a_vault_encrypted_vars_file_is_skipped_with_a_warning() {
    let (inv, warnings) = load_files(
        &[
            ("hosts", "[db]\ndb1\n"),
            (
                "group_vars/db/vault.yml",
                "$ANSIBLE_VAULT;1.1;AES256\n6162\n",
            ),
            ("group_vars/db/main.yml", "role: db\n"),
        ],
        &["hosts"],
    )
    .unwrap();
    assert_eq!(inv.hosts[0].label("role"), Some("db"));
    assert!(
        warnings.contains("group_vars/db/vault.yml is encrypted with ansible-vault: skipped, rekindle cannot decrypt it"),
        "{warnings}"
    );
}

#[test]
fn legacy_ansible_ssh_names_win_over_the_current_ones_as_in_ansible() {
    // ansible-core 2.19.14 `ansible -m ping -vvv` on this line connects as
    // `ssh -o Port=2202 -o IdentityFile="/tmp/k2" -o User="u2" 127.0.0.8`.
    let (inv, _) = load_files(
        &[(
            "inv",
            "h1 ansible_host=127.0.0.7 ansible_ssh_host=127.0.0.8 ansible_port=2201 ansible_ssh_port=2202 ansible_user=u1 ansible_ssh_user=u2 ansible_private_key_file=/tmp/k1 ansible_ssh_private_key_file=/tmp/k2\n",
        )],
        &["inv"],
    )
    .unwrap();
    let h = &inv.hosts[0];
    assert_eq!(
        (
            h.address.as_str(),
            h.port,
            h.user.as_deref(),
            h.identity_file.as_deref()
        ),
        (
            "127.0.0.8",
            2202,
            Some("u2"),
            Some(std::path::Path::new("/tmp/k2"))
        )
    );
}

#[test]
fn a_directory_inventory_is_fingerprinted_for_the_journal_with_its_vars_files() {
    use rekindle::journal::FileHash;
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    std::fs::create_dir_all(inv.join("host_vars")).unwrap();
    std::fs::write(inv.join("hosts"), "[web]\nweb1\n").unwrap();
    std::fs::write(inv.join("host_vars/web1.yml"), "ansible_port: 2222\n").unwrap();
    let hash = FileHash::of(&inv.to_string_lossy()).unwrap();
    assert!(hash.unchanged().unwrap());
    std::fs::write(inv.join("host_vars/web1.yml"), "ansible_port: 2200\n").unwrap();
    assert!(
        !hash.unchanged().unwrap(),
        "a changed host_vars file is a changed inventory"
    );
    let list = FileHash::of("web1,web2:2222,").unwrap();
    assert!(list.unchanged().unwrap());
}

#[test]
fn run_connects_where_a_directory_inventorys_host_vars_say() {
    use std::process::Stdio;
    use std::time::Duration;
    let sim = crate::support::SimProcess::start(&[
        "--port",
        "2483",
        "--http-port",
        "2484",
        "--hosts",
        "2",
    ]);
    let native = sim.path("inventory.yaml").to_string_lossy().into_owned();
    let (code, out, err) = run(rekindle().args(["hosts", "-i", &native, "--format", "json"]));
    assert_eq!(code, 0, "{err}");
    let served: Value = serde_json::from_str(&out).unwrap();
    // The same two hosts under other names, reached only through host_vars.
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv");
    std::fs::create_dir_all(inv.join("host_vars")).unwrap();
    std::fs::create_dir_all(inv.join("group_vars")).unwrap();
    std::fs::write(inv.join("hosts"), "[fleet]\nalpha\nbeta\n").unwrap();
    std::fs::write(
        inv.join("group_vars/fleet.yml"),
        format!(
            "ansible_user: {}\nrole: web\n",
            served[0]["user"].as_str().unwrap()
        ),
    )
    .unwrap();
    for (name, host) in ["alpha", "beta"].iter().zip(served.as_array().unwrap()) {
        std::fs::write(
            inv.join(format!("host_vars/{name}.yml")),
            format!(
                "ansible_host: {}\nansible_port: {}\n",
                host["address"].as_str().unwrap(),
                host["port"]
            ),
        )
        .unwrap();
    }
    let playbook = dir.path().join("book.yaml");
    std::fs::write(
        &playbook,
        "version: 1\nstages:\n  - name: all\n    select: { group: fleet }\n    parallel: 2\n    steps: [ { run: \"true\" } ]\n",
    )
    .unwrap();
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(&ssh_config, "").unwrap();
    let err_path = dir.path().join("stderr");
    let mut child = crate::support::KillOnDrop::new(
        rekindle()
            .args([
                "run",
                &playbook.to_string_lossy(),
                "-i",
                &inv.to_string_lossy(),
                "--yes",
                "--quiet",
            ])
            .arg("--identity")
            .arg(sim.path("id_ed25519"))
            .arg("--known-hosts")
            .arg(sim.path("known_hosts"))
            .arg("--ssh-config")
            .arg(&ssh_config)
            .arg("--journal")
            .arg(dir.path().join("journal"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let status = child
        .wait_for(Duration::from_secs(60))
        .expect("run finishes within 60 s");
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "rekindle run -i DIR: {status}\n{err}");
}

#[test]
fn a_script_without_meta_is_asked_for_each_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.py");
    std::fs::write(
        &path,
        "#!/bin/sh\nif [ \"$1\" = --list ]; then echo '{\"web\": [\"web1\", \"web2\"]}'; else echo \"{\\\"ansible_host\\\": \\\"10.0.0.$(echo $2 | tr -dc 0-9)\\\"}\"; fi\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (inv, _) = load_paths(&[path.to_string_lossy().into_owned()], ".");
    let got: Vec<(&str, &str)> = inv
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address.as_str()))
        .collect();
    assert_eq!(got, [("web1", "10.0.0.1"), ("web2", "10.0.0.2")]);
}

#[test]
fn plugin_configurations_and_toml_are_refused_with_a_way_out() {
    let text = load_err(
        &[(
            "aws_ec2.yml",
            "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
        )],
        &["aws_ec2.yml"],
    );
    assert_eq!(
        text,
        "DIR/aws_ec2.yml:1:9: error: inventory plugin configuration (`plugin: amazon.aws.aws_ec2`) is not supported\n  |\n1 | plugin: amazon.aws.aws_ec2\n  |         ^^^^^^^^^^^^^^^^^^\n  = help: export it once: `ansible-inventory -i DIR/aws_ec2.yml --list > inventory.json`, then use that file\n"
    );
    let text = load_err(
        &[("hosts.toml", "[web.hosts]\nweb1 = {}\n")],
        &["hosts.toml"],
    );
    assert!(
        text.contains("TOML inventories are not supported"),
        "{text}"
    );
}

/// Issue 24 points 1 and 4: ansible-core 2.19 writes unsafe values as
/// `{"__ansible_unsafe": ...}`; a group that is a bare mapping of variables
/// is a host in Ansible.
#[test]
fn unsafe_markers_and_the_group_as_host_shorthand_read_as_ansible_does() {
    let warnings = assert_case("script-markers");
    assert!(
        warnings.contains("warning: group `solo` has no `hosts`, `vars` or `children`: read as the sole host `solo` of that group with these variables, as Ansible reads it (deprecated in Ansible, removed in ansible-core 2.23)"),
        "{warnings}"
    );
}

/// Issue 24 point 1: `{"__ansible_vault": ...}` is refused where it is
/// used, as an inline `!vault` is (Ansible cannot template it without the
/// vault password either: see the case's connection.json).
#[test]
fn a_vault_marker_is_refused_like_an_inline_vault() {
    let dir = project_file(&format!("{CASES}/script-vault"));
    let mut sources = Sources::new();
    let diags = load(&[format!("{dir}/inventory.py")], &mut sources).unwrap_err();
    let text = render_text(&sources, &diags).replace(&dir, "CASE");
    assert!(text.starts_with("CASE/inventory.py --list:1:"), "{text}");
    assert!(
        text.contains("error: host `web1`: ansible_user is encrypted with ansible-vault: rekindle cannot decrypt it"),
        "{text}"
    );
    let inline = load_err(
        &[(
            "hosts.yml",
            "all:\n  hosts:\n    web1:\n      ansible_user: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        3132333435\n",
        )],
        &["hosts.yml"],
    );
    assert!(
        inline.starts_with("DIR/hosts.yml:4:7: error: host `web1`: ansible_user is encrypted with ansible-vault: rekindle cannot decrypt it"),
        "{inline}"
    );
}

/// Issue 24 point 2: `metal/group_vars/all.yml` beside the playbook,
/// `metal/inventories/prod.yml` the inventory.
#[test]
fn the_playbook_directory_vars_are_read_as_ansible_reads_them() {
    assert_eq!(assert_case("playbook-dir"), "");
    let case = project_file(&format!("{CASES}/playbook-dir"));
    let metal = format!("{case}/metal");
    // The current directory by default, as ansible-inventory.
    let (code, out, err) = run(
        crate::support::rekindle_in(std::path::Path::new(&metal)).args([
            "hosts",
            "-i",
            "inventories/prod.yml",
            "--select",
            "name=web1",
        ]),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("web1  10.1.0.1    22  metal "), "{out}");
    assert_eq!(
        err,
        "variables read from 4 vars file(s):
  inventories/group_vars/all.yml
  inventories/group_vars/db.yml
  ./group_vars/all.yml (playbook directory)
  ./host_vars/web2.yml (playbook directory)
"
    );
    // `--playbook-dir` elsewhere: only the inventory's own group_vars.
    let (code, out, _) = run(
        crate::support::rekindle_in(std::path::Path::new(&case)).args([
            "hosts",
            "-i",
            "metal/inventories/prod.yml",
            "--playbook-dir",
            "metal/inventories",
            "--select",
            "name=web1",
        ]),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("web1  10.1.0.1    22  inventory-side "),
        "{out}"
    );
}

/// Issue 24 points 3 and 6: `hostvars`, `groups`, `group_names`,
/// `inventory_hostname_short`; trim_blocks, a kept trailing newline, `None`
/// as null (no label), a sole expression keeping its type.
#[test]
fn hostvars_and_jinja_output_match_ansible() {
    assert_eq!(assert_case("hostvars"), "");
}

/// Issue 24 point 3: the jump host must never come from `default()` standing
/// in for a variable that failed.
#[test]
fn a_connection_value_from_a_failed_variable_is_an_error_naming_both() {
    let text = load_err(
        &[(
            "hosts.yml",
            "all:\n  hosts:\n    web1:\n      jump_ip: \"{{ hostvars[groups['bastions'][0]].ansible_host }}\"\n      ansible_ssh_common_args: \"-J ops@{{ jump_ip | default('jump.example.net') }}\"\n",
        )],
        &["hosts.yml"],
    );
    assert!(
        text.contains("DIR/hosts.yml:5:7: error: host `web1`: cannot evaluate ansible_ssh_common_args `-J ops@{{ jump_ip | default('jump.example.net') }}`: in variable `jump_ip`: a variable it uses is undefined"),
        "{text}"
    );
}

/// Issue 24 point 5: `!unsafe` is text, never a template.
#[test]
fn unsafe_tagged_values_are_text() {
    assert_eq!(assert_case("tags"), "");
}

/// Issue 24 point 5: Ansible refuses `!!python/...` tags (its message:
/// "Could not determine a constructor for the tag ... Origin: FILE:4:10").
#[test]
fn python_object_tags_are_refused_with_their_place() {
    let text = load_err(
        &[(
            "hosts.yml",
            "all:\n  hosts:\n    web1:\n      x: !!python/object/apply:os.system [\"true\"]\n",
        )],
        &["hosts.yml"],
    );
    assert!(
        text.starts_with("DIR/hosts.yml:4:10: error: YAML tag `!!python/object/apply:os.system` constructs a Python object: refused (Ansible refuses it too)"),
        "{text}"
    );
}

/// Issue 25: templates that would run for hours stop with the variable named.
#[test]
fn runaway_templates_are_refused_naming_the_variable() {
    let mut fanout = String::from("[all:vars]\nv30=x\n");
    for i in 0..30 {
        fanout.push_str(&format!(
            "v{i}=\"{{{{ v{n} }}}}{{{{ v{n} }}}}\"\n",
            n = i + 1
        ));
    }
    fanout.push_str("ansible_user=\"{{ v0 }}\"\n[web]\nweb1\n");
    let text = load_err(&[("hosts", &fanout)], &["hosts"]);
    assert!(
        text.contains("error: host `web1`: cannot evaluate ansible_user `{{ v0 }}`: evaluating it takes more than 10000 variable evaluations"),
        "{text}"
    );
    let text = load_err(
        &[(
            "hosts",
            "web1 ansible_user=\"{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}\"\n",
        )],
        &["hosts"],
    );
    assert!(text.contains("steps of work"), "{text}");
}
