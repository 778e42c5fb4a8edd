#!/usr/bin/env bash
# Benchmark 1 (issue 2 "Speed", issue 7 item 3): offline speed.
#  a) `rekindle plan playbooks/dc-cold-start.yaml -i inventories/kakao-like.yaml`
#     (about 36,000 hosts, 32,000 in the main datacenter): wall by hyperfine,
#     peak RSS by /usr/bin/time. Goal: < 0.3 s, < 150 MiB.
#  b) the same inventory written as an Ansible INI (one line per host, groups
#     per dc and role, `:children`): `rekindle hosts --format json` vs
#     `ansible-inventory --list`.
# Touches no network. Writes bench/out/plan/ and prints a Markdown report.
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-10}"
ANSIBLE_RUNS="${ANSIBLE_RUNS:-3}"
D="$OUT/plan"
mkdir -p "$D"
install_peers
build_release
cd "$ROOT"

INV=inventories/kakao-like.yaml
BOOK=playbooks/dc-cold-start.yaml
"$REKINDLE" plan "$BOOK" -i "$INV" >"$D/plan.txt" || die "plan failed"
"$REKINDLE" hosts -i "$INV" --format json >"$D/hosts.json"

# The INI an SRE's generator would write: one line per host with its vars,
# a group per dc+role, parents per dc and per role.
python3 - "$D/hosts.json" "$D/kakao-like.ini" <<'PY'
import json, sys, collections
hosts = json.load(open(sys.argv[1]))
groups = collections.OrderedDict()
for h in hosts:
    l = h["labels"]
    groups.setdefault(f'{l["dc"]}_{l.get("role", "misc")}', []).append(h)
with open(sys.argv[2], "w") as f:
    for g, hs in groups.items():
        f.write(f"[{g}]\n")
        for h in hs:
            extra = " ".join(f"{k}={v}" for k, v in sorted(h["labels"].items()) if k not in ("dc", "role"))
            f.write(f'{h["name"]} ansible_host={h["address"]} {extra}\n')
        f.write("\n")
    parents = collections.OrderedDict()
    for g in groups:
        dc, role = g.split("_", 1)
        parents.setdefault(dc, []).append(g)
        parents.setdefault(role, []).append(g)
    for p, cs in parents.items():
        f.write(f"[{p}:children]\n" + "\n".join(cs) + "\n\n")
    f.write("[all:vars]\nansible_user=root\n")
PY
NHOSTS="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$D/hosts.json")"
"$REKINDLE" hosts -i "$D/kakao-like.ini" --format json >"$D/ini-hosts.json"
NINI="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$D/ini-hosts.json")"
[[ "$NINI" == "$NHOSTS" ]] || die "INI has $NINI hosts, YAML $NHOSTS"
ANSIBLE_ENV=(env ANSIBLE_HOME="$OUT/ansible-home" ANSIBLE_INVENTORY_ENABLED=ini ANSIBLE_NOCOLOR=1)
"${ANSIBLE_ENV[@]}" "$VENV/bin/ansible-inventory" -i "$D/kakao-like.ini" --list >"$D/ansible.json"
NANS="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["_meta"]["hostvars"]))' "$D/ansible.json")"
[[ "$NANS" == "$NHOSTS" ]] || die "ansible-inventory lists $NANS hosts, expected $NHOSTS"

rss() { # peak RSS in MiB of one run of "$@"
    /usr/bin/time -f '%M' -o "$D/rss" "$@" >/dev/null 2>&1 || die "failed: $*"
    awk '{printf "%.1f", $1/1024}' "$D/rss"
}

PLAN_CMD="$REKINDLE plan $BOOK -i $INV"
HOSTS_CMD="$REKINDLE hosts -i $D/kakao-like.ini --format json"
ANS_CMD="${ANSIBLE_ENV[*]} $VENV/bin/ansible-inventory -i $D/kakao-like.ini --list"
log "hyperfine: plan"
hyperfine -N --warmup 2 --runs "$RUNS" --export-json "$D/plan.json" "$PLAN_CMD" >&2
hyperfine -N --warmup 1 --runs "$RUNS" --export-json "$D/hosts-ini.json" "$HOSTS_CMD" >&2
log "hyperfine: ansible-inventory ($ANSIBLE_RUNS runs)"
hyperfine -N --warmup 0 --runs "$ANSIBLE_RUNS" --export-json "$D/ansible-inventory.json" "$ANS_CMD" >&2
RSS_PLAN="$(rss $PLAN_CMD)"
RSS_HOSTS="$(rss $HOSTS_CMD)"
RSS_ANS="$(rss "${ANSIBLE_ENV[@]}" "$VENV/bin/ansible-inventory" -i "$D/kakao-like.ini" --list)"

row() { # name, hyperfine json, rss
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))["results"][0]
print(f'| {sys.argv[1]} | {r["median"]:.3f} | {r["mean"]:.3f} ± {r["stddev"] or 0:.3f} | {r["user"] + r["system"]:.3f} | {sys.argv[3]} | {len(r["times"])} |')
PY
}
echo "### Offline: plan and inventory load ($(machine))"
echo
echo "Inventory: \`$INV\` = $NHOSTS hosts; INI: $(wc -c <"$D/kakao-like.ini") bytes, $NHOSTS hosts."
echo
echo '| command | wall s median | wall s mean ± sd | CPU s (user+sys, mean) | peak RSS MiB | runs |'
echo '| --- | ---: | ---: | ---: | ---: | ---: |'
row "\`rekindle plan $BOOK -i $INV\`" "$D/plan.json" "$RSS_PLAN"
row "\`rekindle hosts -i kakao-like.ini --format json\`" "$D/hosts-ini.json" "$RSS_HOSTS"
row "\`ansible-inventory -i kakao-like.ini --list\`" "$D/ansible-inventory.json" "$RSS_ANS"
