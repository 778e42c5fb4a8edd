#!/usr/bin/env bash
# Benchmark 9 (issue 13 "Speed"): `--etcd` side by side, in one run of this
# script. 1) bench/scale.sh (HOSTS, default 32000, reboot, zero boot time)
# without and with ETCD=1 (a three-member etcd cluster on the namespace's
# loopback), alternating for ROUNDS rounds, same binary; medians. Goals: wall
# within 10 %, rekindle CPU per host within 15 % (etcd's own CPU is shown
# apart). 2) Takeover: a run of T_HOSTS hosts (boot time T_BOOT) with a
# standby waiting; kill -9 of the driver mid-reboot; time to the standby's
# "took over" line and to its first action (the first `*_issued` intent in
# its journal after its resume record). Goal: under TTL + 5 s.
#
#   REKINDLE=/path/to/release/rekindle SKIP_BUILD=1 bench/etcd.sh
source "$(dirname "$0")/lib.sh"
ROUNDS="${ROUNDS:-2}"
T_HOSTS="${T_HOSTS:-400}"
T_BOOT="${T_BOOT:-5s}"
T_PARALLEL="${T_PARALLEL:-50}"
TTL="${TTL:-10s}"

build_release
export SKIP_BUILD=1 REKINDLE

ROWS="$OUT/etcd-scale.tsv"
: >"$ROWS"
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in plain etcd; do
        table="$(if [[ $mode == etcd ]]; then ETCD=1 timeout 900 "$BENCH_DIR/scale.sh"; else timeout 900 "$BENCH_DIR/scale.sh"; fi)" \
            || die "scale.sh ($mode, round $r) failed"
        TABLE="$table" python3 - "$mode" "$r" >>"$ROWS" <<'PY'
import os, re, sys
t = os.environ["TABLE"]
def num(p):
    m = re.search(p, t)
    return m.group(1) if m else "nan"
print("\t".join([sys.argv[1], sys.argv[2],
    num(r"exit code \| ([0-9]+)"), num(r"reboots per host \(count x: hosts\) \| ([^|]+?) \|"),
    num(r"rekindle run wall \| ([0-9.]+) s"), num(r"= ([0-9.]+) ms/host"),
    num(r"peak RSS \| ([0-9]+) MiB"), num(r"etcd CPU \(3 members, during the run\) \| ([0-9.]+) s")]))
PY
        log "$(tail -1 "$ROWS")"
    done
done

echo "### --etcd side by side: scale.sh, ${HOSTS:-32000} hosts, $ROUNDS rounds alternating ($(machine))"
echo
python3 - "$ROWS" <<'PY'
import sys, statistics, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| mode | round | exit | reboots per host | run wall s | CPU ms/host | peak RSS MiB | etcd CPU s (3 members) |")
print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
for m, r, rc, reb, wall, cpu, rss, ecpu in rows:
    print(f"| {m} | {r} | {rc} | {reb} | {wall} | {cpu} | {rss} | {'-' if ecpu == 'nan' else ecpu} |")
med = collections.defaultdict(dict)
for key, col in (("wall", 4), ("cpu", 5), ("rss", 6)):
    for mode in ("plain", "etcd"):
        vals = [float(x[col]) for x in rows if x[0] == mode and x[col] != "nan"]
        med[mode][key] = statistics.median(vals) if vals else float("nan")
print()
for mode in ("plain", "etcd"):
    m = med[mode]
    print(f"- {mode}: median run wall {m['wall']:.1f} s, {m['cpu']:.2f} ms/host, {m['rss']:.0f} MiB")
p, e = med["plain"], med["etcd"]
print(f"- --etcd vs without: wall {100 * (e['wall'] / p['wall'] - 1):+.1f} % (goal within 10 %), "
      f"CPU per host {100 * (e['cpu'] / p['cpu'] - 1):+.1f} % (goal within 15 %), RSS {e['rss'] - p['rss']:+.0f} MiB")
PY

# 2) Takeover time.
bench_outdir etcd-takeover
netns_up takeover
etcd_up "$D/etcd"
sim_start "$D/fleet" --hosts "$T_HOSTS" --boot-time "$T_BOOT"
playbook "$D/reboot.yaml" "{ dc: sim }" "$T_PARALLEL" "reboot: { timeout: 10m }"
common=(--yes --ssh-config "$D/empty_ssh_config" --etcd "$ETCD_ENDPOINTS" --etcd-ttl "$TTL")
ip netns exec "$NETNS" env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/reboot.yaml" -i "$D/fleet/inventory.yaml" \
    --quiet --journal "$D/ja" --bastion a "${common[@]}" >"$D/driver.out" 2>"$D/driver.err" &
DRIVER=$!
for ((i = 0; i < 600; i++)); do grep -q 'kept in etcd' "$D/driver.err" && break; sleep 0.1; done
RUN="$(sed -n 's/^etcd: run \([^ ]*\) kept in etcd.*/\1/p' "$D/driver.err")"
[[ -n "$RUN" ]] || die "the driver did not start: $(tail -3 "$D/driver.err")"
ip netns exec "$NETNS" env -u SSH_AUTH_SOCK "$REKINDLE" standby "$RUN" --quiet --journal "$D/jb" \
    --bastion b "${common[@]}" >"$D/standby.out" 2>"$D/standby.err" &
STANDBY=$!
for ((i = 0; i < 600; i++)); do grep -q 'waiting to take over' "$D/standby.err" && break; sleep 0.1; done
reboots() { python3 -c 'import json,sys; print(sum(h["reboots"] for h in json.load(open(sys.argv[1]))["hosts"].values()))' "$D/fleet/status.json"; }
for ((i = 0; i < 1200; i++)); do (($(reboots) >= T_HOSTS / 4)) && break; sleep 0.1; done
T_KILL="$(date +%s.%N)"
kill -9 "$DRIVER"
wait "$DRIVER" 2>/dev/null || true
for ((i = 0; i < 1200; i++)); do grep -q 'etcd: took over run' "$D/standby.err" && break; sleep 0.05; done
T_TOOK="$(date +%s.%N)"
rc=0
timeout 600 tail --pid="$STANDBY" -f /dev/null || true
wait "$STANDBY" || rc=$?
sleep 2
python3 - "$D" "$RUN" "$T_KILL" "$T_TOOK" "$rc" "$T_HOSTS" "$TTL" "$(machine)" "$T_BOOT" <<'PY'
import json, sys, collections, datetime
d, run, t_kill, t_took, rc, n, ttl, machine, boot = sys.argv[1:]
t_kill, t_took = float(t_kill), float(t_took)
records = [json.loads(l) for l in open(f"{d}/jb/{run}.jsonl")]
last_resume = max(i for i, r in enumerate(records) if r.get("record") == "resumed")
# The first action the standby sent: its first intent record (an action
# goes out only after its intent is recorded).
first = next(r for r in records[last_resume + 1:]
             if r.get("record") == "event" and str(r.get("event", "")).endswith("_issued"))
at = datetime.datetime.strptime(first["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
status = json.load(open(f"{d}/fleet/status.json"))
c = collections.Counter(h["reboots"] for h in status["hosts"].values())
hold = "outcome is unknown" in open(f"{d}/standby.err").read()
print(f"### --etcd takeover: {n} hosts, boot {boot}, lease TTL {ttl}, kill -9 mid-reboot ({machine})")
print()
print("| measure | value | goal |")
print("| --- | ---: | --- |")
print(f"| standby exit code | {rc} | 0 |")
print(f"| reboots per host (count x: hosts) | {' '.join(f'{k}x:{v}' for k, v in sorted(c.items()))} | 1x:{n} |")
print(f"| kill -9 to the standby's 'took over' line | {t_took - t_kill:.1f} s | |")
print(f"| kill -9 to the standby's first recorded action ({first.get('event')}) | {at - t_kill:.1f} s | < TTL + 5 s |")
print(f"| the standby held its hosts with an intent of unknown outcome (until TTL + margin after the old lease's last renewal) | {'yes' if hold else 'no'} | |")
PY
