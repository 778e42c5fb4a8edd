//! `rekindle hosts` through the real binary: table, JSON, selectors, and the
//! refusal of empty selections and broken inventories.

use crate::support::{rekindle, run};

const SMALL: &str = "tests/fixtures/inventory/small.yaml";

#[test]
fn text_is_an_aligned_table() {
    let (code, out, err) = run(rekindle().args(["hosts", "-i", SMALL]));
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "\
NAME        ADDRESS    PORT  USER  JUMP                        LABELS
pg-r08-db1  10.1.8.1     22  root  bastion.pangyo.example.net  dc=pangyo,rack=pg-r08,role=db
pg-r08-db2  10.1.8.2     22  root  bastion.pangyo.example.net  dc=pangyo,rack=pg-r08,role=db
pg-r09-db1  10.1.9.1     22  root  bastion.pangyo.example.net  dc=pangyo,rack=pg-r09,role=db
pg-r09-db2  10.1.9.2     22  root  bastion.pangyo.example.net  dc=pangyo,rack=pg-r09,role=db
pg-r10-db1  10.1.10.1    22  root  bastion.pangyo.example.net  dc=pangyo,rack=pg-r10,role=db
pg-r10-db2  10.1.10.2    22  root  bastion.pangyo.example.net  dc=pangyo,rack=pg-r10,role=db
pg-lb1      pg-lb1     2222  ops   bastion.pangyo.example.net  dc=pangyo,role=lb
as-web1     as-web1      22  root  -                           dc=ansan,role=web
as-web3     as-web3      22  root  -                           dc=ansan,role=web
"
    );
}

#[test]
fn json_has_exactly_the_documented_fields() {
    let (code, out, err) = run(rekindle().args([
        "hosts",
        "-i",
        SMALL,
        "--select",
        "role=db,rack=pg-r1*",
        "--format",
        "json",
    ]));
    assert_eq!((code, err.as_str()), (0, ""));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"name": "pg-r10-db1", "address": "10.1.10.1", "port": 22, "user": "root",
             "jump": "bastion.pangyo.example.net",
             "labels": {"dc": "pangyo", "rack": "pg-r10", "role": "db"}, "groups": []},
            {"name": "pg-r10-db2", "address": "10.1.10.2", "port": 22, "user": "root",
             "jump": "bastion.pangyo.example.net",
             "labels": {"dc": "pangyo", "rack": "pg-r10", "role": "db"}, "groups": []}
        ])
    );
}

#[test]
fn json_null_user_and_jump() {
    let (code, out, _) = run(rekindle().args([
        "hosts",
        "-i",
        "inventories/ansible-example.ini",
        "--select",
        "name=web01*",
        "--format",
        "json",
    ]));
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["name"], "web01.gasan.example.net");
    assert_eq!(json[0]["jump"], serde_json::Value::Null);
    assert_eq!(
        json[0]["groups"],
        serde_json::json!(["app", "gasan", "web"])
    );
}

#[test]
fn ansible_groups_are_selectable() {
    let (code, out, err) = run(rekindle().args([
        "hosts",
        "-i",
        "inventories/ansible-example.ini",
        "--select",
        "group=db,db_role=replica",
    ]));
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "\
NAME                    ADDRESS                 PORT  USER  JUMP  GROUPS               LABELS
db02.gasan.example.net  db02.gasan.example.net    22  root  -     db,db_replica,gasan  db_role=replica,dc=gasan,rack=gs-r06,role=db,tier=stateful
db03.gasan.example.net  db03.gasan.example.net    22  root  -     db,db_replica,gasan  db_role=replica,dc=gasan,rack=gs-r06,role=db,tier=stateful
db04.gasan.example.net  db04.gasan.example.net    22  root  -     db,db_replica,gasan  db_role=replica,dc=gasan,rack=gs-r06,role=db,tier=stateful
"
    );
}

#[test]
fn an_empty_selection_is_an_error_not_all_hosts() {
    let (code, out, err) = run(rekindle().args(["hosts", "-i", SMALL, "--select", "role=dbb"]));
    assert_eq!(code, 2);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!(
            "error: selector `role=dbb` matches none of the 9 hosts in {SMALL}\n  = help: `rekindle hosts -i INV` lists every host with its labels\n"
        )
    );
}

#[test]
fn group_all_selects_every_host_as_in_ansible() {
    for inv in [SMALL, "inventories/ansible-example.ini"] {
        let (code, every, err) = run(rekindle().args(["hosts", "-i", inv]));
        assert_eq!((code, err.as_str()), (0, ""), "{inv}");
        let (code, all, err) = run(rekindle().args(["hosts", "-i", inv, "--select", "group=all"]));
        assert_eq!((code, err.as_str()), (0, ""), "{inv}");
        assert_eq!(all, every, "{inv}: group=all is every host");
    }
}

#[test]
fn a_selector_with_a_space_is_refused_with_a_hint() {
    // Regression: read silently as one value `db role=lb`, which matched nothing.
    let (code, out, err) =
        run(rekindle().args(["hosts", "-i", SMALL, "--select", "role=db role=lb"]));
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "error: invalid selector `role=db role=lb`: `role=db role=lb` contains a space; \
         join terms with commas (`role=db,role=lb`), and match a space inside a value with `?`\n"
    );
}

#[test]
fn a_bad_selector_is_a_usage_error() {
    let (code, _, err) = run(rekindle().args(["hosts", "-i", SMALL, "--select", "role"]));
    assert_eq!(code, 2);
    assert!(err.contains("invalid selector `role`"), "{err}");
}

#[test]
fn inventory_problems_are_rendered_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inv.yaml"),
        "version: 1\ndatacenters:\n  x:\n    hosts:\n      - name: web[3-1]\n        lables: {}\n",
    )
    .unwrap();
    let (code, out, err) =
        run(crate::support::rekindle_in(dir.path()).args(["hosts", "-i", "inv.yaml"]));
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err,
        "\
inv.yaml:5:19: error: range `3-1` runs backwards
  |
5 |       - name: web[3-1]
  |                   ^^^
inv.yaml:6:9: error: unknown key `lables` in host entry
  |
6 |         lables: {}
  |         ^^^^^^
  = help: did you mean `labels`?
"
    );
}

#[test]
fn a_missing_file_is_an_input_error() {
    let (code, _, err) = run(rekindle().args(["hosts", "-i", "no/such/inventory.yaml"]));
    assert_eq!(code, 2);
    assert!(
        err.starts_with("no/such/inventory.yaml: error: cannot read no/such/inventory.yaml"),
        "{err}"
    );
}

#[test]
fn kakao_like_lists_every_host() {
    let (code, out, err) = run(rekindle().args([
        "hosts",
        "-i",
        "inventories/kakao-like.yaml",
        "--select",
        "dc=pangyo",
    ]));
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out.lines().count(), 1 + 31_584);
    let line = out
        .lines()
        .find(|l| l.starts_with("pg-h1-r006-st01 "))
        .expect("pg-h1-r006-st01 is listed");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        [
            "pg-h1-r006-st01",
            "10.11.6.1",
            "22",
            "root",
            "bastion.pangyo.example.net",
            "bmc=10.201.6.1,dc=pangyo,pdu=pg-h1-r006-pdu,rack=pg-h1-r006,role=storage"
        ]
    );
}
