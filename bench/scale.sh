#!/usr/bin/env bash
# Benchmark 5 (issue 4 "Speed", issue 7 item 5): $HOSTS simulated hosts (sim
# sharded into worker processes) rebooted with zero boot time at parallel
# $PARALLEL. Checks every host received exactly one reboot (status.json).
# Wall counts from starting the simulator to the end of the run; rekindle's
# CPU and RSS are its own process's, the simulator is measured separately.
# Goals: wall < 90 s, rekindle CPU < 1 ms per host, RSS < 1 GiB; past
# 32,000 hosts (issue 15: 100,000, four sites together) < 150 s and < 1.5 GiB.
# ETCD=1: the same with --etcd on a three-member etcd cluster in the
# namespace (etcd's own CPU is not rekindle's: a row of its own;
# bench/etcd.sh compares).
source "$(dirname "$0")/lib.sh"
HOSTS="${HOSTS:-32000}"
if ((HOSTS > 32000)); then WALL_GOAL=150 RSS_GOAL=1536; else WALL_GOAL=90 RSS_GOAL=1024; fi
PARALLEL="${PARALLEL:-4000}"
LIMIT="${LIMIT:-300}"

bench_outdir scale

install_peers
build_release
netns_up scale
ETCD_ARGS=()
if [[ -n "${ETCD:-}" ]]; then
    etcd_up "$D/etcd"
    ETCD_ARGS=(--etcd "$ETCD_ENDPOINTS")
fi

T0="$(date +%s.%N)"
SIM_WRAP=(/usr/bin/time -o "$D/sim.time" -f '%e\t%U\t%S\t%M')
sim_start "$D/fleet" --hosts "$HOSTS" --boot-time 0s
T1="$(date +%s.%N)"
ETCD_CPU0="$( ((${#ETCD_PIDS[@]})) && etcd_cpu || echo 0)"
playbook "$D/reboot.yaml" "{ dc: sim }" "$PARALLEL" "reboot: { timeout: 10m }"
measure rekindle "$HOSTS" 1 "$LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/reboot.yaml" \
    -i "$D/fleet/inventory.yaml" --yes --quiet --journal "$D/journal" --ssh-config "$D/empty_ssh_config" "${ETCD_ARGS[@]}"
T2="$(date +%s.%N)"
ETCD_CPU="$( ((${#ETCD_PIDS[@]})) && python3 -c "print(f'{$(etcd_cpu) - $ETCD_CPU0:.1f}')" || echo -)"
ETCD_SEGMENTS="$( ((${#ETCD_PIDS[@]})) && etcd_segments || echo -)"
# TCP connections rekindle opened (the namespace's own counter; the simulator
# opens none): two logins per host is the floor for a verified reboot.
CONNECTS="$(in_ns nstat -az TcpActiveOpens | awk '$1 == "TcpActiveOpens" {print $2}')"
cp "$OUT/last-$$.stdout" "$D/rekindle.out"
cp "$OUT/last-$$.stderr" "$D/rekindle.err"
sim_stop
SIM_WRAP=()
REBOOTS="$(python3 - "$D/fleet/status.json" <<'PY'
import json, sys, collections
d = json.load(open(sys.argv[1]))
c = collections.Counter(h["reboots"] for h in d["hosts"].values())
print(" ".join(f"{k}x:{v}" for k, v in sorted(c.items())))
PY
)"
WORKERS="$(grep -o 'in [0-9]* worker processes' "$D/fleet.log" || echo 'in one process')"

echo "### Scale: $HOSTS simulated hosts, reboot, zero boot time, parallel $PARALLEL${ETCD:+, --etcd (3 members)} ($(machine))"
echo
python3 - "$RESULTS" "$D/sim.time" "$T0" "$T1" "$T2" "$HOSTS" "$REBOOTS" "$WORKERS" "$CONNECTS" "$WALL_GOAL" "$RSS_GOAL" "$ETCD_CPU" "$ETCD_SEGMENTS" <<'PY'
import sys
tool, n, run, rc, wall, user, sys_, rss = open(sys.argv[1]).read().split("\n")[0].split("\t")
sw, su, ss, srss = open(sys.argv[2]).read().strip().split("\n")[-1].split("\t")
t0, t1, t2 = map(float, sys.argv[3:6])
n = int(sys.argv[6])
cpu = float(user) + float(sys_)
print("| measure | value | goal |")
print("| --- | ---: | --- |")
print(f"| rekindle run exit code | {rc} | 0 |")
print(f"| reboots per host (count x: hosts) | {sys.argv[7]} | 1x:{n} |")
print(f"| simulator start (until ready, {sys.argv[8]}) | {t1 - t0:.1f} s | |")
print(f"| rekindle run wall | {float(wall):.1f} s | |")
print(f"| total wall, simulator included | {t2 - t0:.1f} s | < {sys.argv[10]} s |")
print(f"| rekindle CPU (user+sys) | {cpu:.1f} s = {cpu * 1000 / n:.2f} ms/host | < 1 ms/host |")
print(f"| rekindle peak RSS | {int(rss) / 1024:.0f} MiB | < {sys.argv[11]} MiB |")
connects = int(sys.argv[9] or 0)
print(f"| TCP connects by rekindle | {connects} = {connects / n:.2f} per host | 2 per host |")
print(f"| simulator CPU (all workers, whole life) | {float(su) + float(ss):.1f} s | |")
print(f"| simulator peak RSS (largest process) | {int(srss) / 1024:.0f} MiB | |")
if sys.argv[12] != "-":
    print(f"| etcd CPU (3 members, during the run) | {float(sys.argv[12]):.1f} s | |")
    segments, size = sys.argv[13].split()
    print(f"| etcd log segments (one transaction each), stored size | {segments}, {int(size) / 2**20:.1f} MiB | |")
PY
