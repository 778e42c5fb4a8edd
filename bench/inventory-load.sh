#!/usr/bin/env bash
# Benchmark 7 (issue 11 "Speed"): load the 36,029-host inventory
# (inventories/kakao-like.yaml) written as an Ansible *directory* the way
# SREs keep one: an INI file with a group per dc and role, `:children` per dc
# and per role, `group_vars/` (user, jump host, dc, role) and one
# `host_vars/NAME.yml` per host (ansible_host, rack, pdu, bmc).
#   rekindle hosts -i DIR --format json >/dev/null        goal: < 1 s
# side by side with `ansible-inventory --list` on the plain one-file INI of
# bench/plan.sh (the same hosts and variables), if bench/out/venv exists
# (`bench/setup.sh` makes it). ANSIBLE_DIR=1 also times ansible-inventory on
# the directory (slow: minutes). Touches no network. Writes
# bench/out/inventory-load/ and prints a Markdown report.
source "$(dirname "$0")/lib.sh"
RUNS="${RUNS:-10}"
ANSIBLE_RUNS="${ANSIBLE_RUNS:-3}"
D="$OUT/inventory-load"
rm -rf "$D"
mkdir -p "$D"
build_release
cd "$ROOT"

"$REKINDLE" hosts -i inventories/kakao-like.yaml --format json >"$D/native.json"

# The directory and the plain INI, from the same host list.
python3 - "$D/native.json" "$D/dir" "$D/kakao-like.ini" <<'PY'
import json, os, sys, collections
hosts = json.load(open(sys.argv[1]))
d = sys.argv[2]
os.makedirs(f"{d}/group_vars"); os.makedirs(f"{d}/host_vars")
groups = collections.OrderedDict()
jumps = {}
for h in hosts:
    l = h["labels"]
    groups.setdefault(f'{l["dc"]}_{l["role"]}', []).append(h)
    jumps[l["dc"]] = h["jump"]
parents = collections.OrderedDict()
for g in groups:
    dc, role = g.split("_", 1)
    parents.setdefault(dc, []).append(g)
    parents.setdefault(role, []).append(g)
with open(f"{d}/hosts", "w") as f:
    for g, hs in groups.items():
        f.write(f"[{g}]\n" + "".join(h["name"] + "\n" for h in hs) + "\n")
    for p, cs in parents.items():
        f.write(f"[{p}:children]\n" + "\n".join(cs) + "\n\n")
with open(f"{d}/group_vars/all.yml", "w") as f:
    f.write("ansible_user: root\n")
for dc, jump in jumps.items():
    with open(f"{d}/group_vars/{dc}.yml", "w") as f:
        f.write(f"dc: {dc}\nansible_ssh_common_args: -o ProxyJump={jump}\n")
for role in {g.split("_", 1)[1] for g in groups}:
    with open(f"{d}/group_vars/{role}.yml", "w") as f:
        f.write(f"role: {role}\n")
for h in hosts:
    l = h["labels"]
    with open(f"{d}/host_vars/{h['name']}.yml", "w") as f:
        f.write(f"ansible_host: {h['address']}\nrack: {l['rack']}\npdu: {l['pdu']}\nbmc: {l['bmc']}\n")
# bench/plan.sh's one-file INI: the same hosts and variables, all inline.
with open(sys.argv[3], "w") as f:
    for g, hs in groups.items():
        f.write(f"[{g}]\n")
        for h in hs:
            extra = " ".join(f"{k}={v}" for k, v in sorted(h["labels"].items()) if k not in ("dc", "role"))
            f.write(f'{h["name"]} ansible_host={h["address"]} {extra}\n')
        f.write("\n")
    for p, cs in parents.items():
        f.write(f"[{p}:children]\n" + "\n".join(cs) + "\n\n")
    f.write("[all:vars]\nansible_user=root\n")
PY

# Same hosts, addresses, users, jump hosts and labels as the native file.
"$REKINDLE" hosts -i "$D/dir" --format json >"$D/dir.json"
python3 - "$D/native.json" "$D/dir.json" <<'PY' || die "the directory does not give the native hosts"
import json, sys
a = {h["name"]: (h["address"], h["port"], h["user"], h["jump"], h["labels"]) for h in json.load(open(sys.argv[1]))}
b = {h["name"]: (h["address"], h["port"], h["user"], h["jump"], h["labels"]) for h in json.load(open(sys.argv[2]))}
assert a == b, f"{len(a)} native hosts, {len(b)} from the directory; first difference: " + next(
    (f"{k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)), "")
print(f"{len(b)} hosts identical", file=sys.stderr)
PY
NHOSTS="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$D/dir.json")"
NFILES="$(find "$D/dir" -type f | wc -l)"

rss() { # peak RSS in MiB of one run of "$@"
    /usr/bin/time -f '%M' -o "$D/rss" "$@" >/dev/null 2>&1 || die "failed: $*"
    awk '{printf "%.1f", $1/1024}' "$D/rss"
}
row() { # name, hyperfine json, rss
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))["results"][0]
print(f'| {sys.argv[1]} | {r["median"]:.3f} | {r["mean"]:.3f} ± {r["stddev"] or 0:.3f} | {r["user"] + r["system"]:.3f} | {sys.argv[3]} | {len(r["times"])} |')
PY
}

DIR_CMD="$REKINDLE hosts -i $D/dir --format json"
INI_CMD="$REKINDLE hosts -i $D/kakao-like.ini --format json"
log "hyperfine: rekindle on the directory and on the INI"
hyperfine -N --warmup 2 --runs "$RUNS" --output=null --export-json "$D/dir-time.json" "$DIR_CMD" >&2
hyperfine -N --warmup 2 --runs "$RUNS" --output=null --export-json "$D/ini-time.json" "$INI_CMD" >&2
RSS_DIR="$(rss $DIR_CMD)"
RSS_INI="$(rss $INI_CMD)"

ANSIBLE_ENV=(env ANSIBLE_HOME="$OUT/ansible-home" ANSIBLE_NOCOLOR=1)
if [[ -x "$VENV/bin/ansible-inventory" ]]; then
    ANS_CMD="${ANSIBLE_ENV[*]} $VENV/bin/ansible-inventory -i $D/kakao-like.ini --list"
    log "hyperfine: ansible-inventory on the INI ($ANSIBLE_RUNS runs)"
    hyperfine -N --warmup 0 --runs "$ANSIBLE_RUNS" --output=null --export-json "$D/ansible-ini.json" "$ANS_CMD" >&2
    RSS_ANS="$(rss "${ANSIBLE_ENV[@]}" "$VENV/bin/ansible-inventory" -i "$D/kakao-like.ini" --list)"
    ANS_VERSION="$("$VENV/bin/ansible-inventory" --version 2>/dev/null | sed -n '1p')"
    if [[ -n "${ANSIBLE_DIR:-}" ]]; then
        ANS_DIR_CMD="${ANSIBLE_ENV[*]} $VENV/bin/ansible-inventory -i $D/dir --list"
        log "hyperfine: ansible-inventory on the directory (1 run)"
        hyperfine -N --warmup 0 --runs 1 --output=null --export-json "$D/ansible-dir.json" "$ANS_DIR_CMD" >&2
        RSS_ANS_DIR="$(rss "${ANSIBLE_ENV[@]}" "$VENV/bin/ansible-inventory" -i "$D/dir" --list)"
    fi
fi

echo "### Ansible inventory load ($(machine))"
echo
echo "Inventory: \`inventories/kakao-like.yaml\` as an Ansible directory: $NHOSTS hosts, $NFILES files" \
    "(\`hosts\`, $(ls "$D/dir/group_vars" | wc -l) \`group_vars/\`, $(ls "$D/dir/host_vars" | wc -l) \`host_vars/\`);" \
    "the plain INI: $(wc -c <"$D/kakao-like.ini") bytes. rekindle $("$REKINDLE" --version | awk '{print $2}')${ANS_VERSION:+, $ANS_VERSION}."
echo
echo '| command | wall s median | wall s mean ± sd | CPU s (user+sys, mean) | peak RSS MiB | runs |'
echo '| --- | ---: | ---: | ---: | ---: | ---: |'
row "\`rekindle hosts -i DIR --format json\`" "$D/dir-time.json" "$RSS_DIR"
row "\`rekindle hosts -i kakao-like.ini --format json\`" "$D/ini-time.json" "$RSS_INI"
[[ -f "$D/ansible-ini.json" ]] && row "\`ansible-inventory -i kakao-like.ini --list\`" "$D/ansible-ini.json" "$RSS_ANS"
[[ -f "$D/ansible-dir.json" ]] && row "\`ansible-inventory -i DIR --list\`" "$D/ansible-dir.json" "$RSS_ANS_DIR"
true
