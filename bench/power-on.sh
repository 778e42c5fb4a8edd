#!/usr/bin/env bash
# Benchmark (issue 6 "Speed"): the power-on phase of $HOSTS simulated,
# powered-off hosts over $((HOSTS / 40)) PDUs (the sim puts 40 hosts in a rack
# and one PDU per rack), paced at one power-on per PDU every $PDU_INTERVAL and
# $RATE fleet-wide. Reads each host's reset arrival time from the simulator's
# status.json and compares the schedule with the ideal one: every PDU's
# power-ons exactly $PDU_INTERVAL apart, the whole phase as long as the
# longest PDU queue (or HOSTS / RATE if that is longer). Goal: within 2 %.
source "$(dirname "$0")/lib.sh"
HOSTS="${HOSTS:-32000}"
PARALLEL="${PARALLEL:-4000}"
PDU_INTERVAL_S="${PDU_INTERVAL_S:-2}"
RATE="${RATE:-1000}"
LIMIT="${LIMIT:-400}"

bench_outdir power-on

build_release
[[ -x /usr/bin/time ]] || die "needs /usr/bin/time (apt-get install time)"
netns_up power

sim_start "$D/fleet" --hosts "$HOSTS" --powered-off --boot-time 0s
playbook "$D/power.yaml" "{ dc: sim }" "$PARALLEL" \
    "power_on: { pdu_interval: ${PDU_INTERVAL_S}s, rate: $RATE/s, timeout: 20m }"
in_ns "$REKINDLE" hosts -i "$D/fleet/inventory.yaml" --format json >"$D/hosts.json"
measure rekindle "$HOSTS" 1 "$LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/power.yaml" \
    -i "$D/fleet/inventory.yaml" --yes --quiet --journal "$D/journal" \
    --ssh-config "$D/empty_ssh_config" --bmc-credentials "$D/fleet/bmc-credentials"
cp "$OUT/last-$$.stdout" "$D/rekindle.out"
sleep 2 # one more status.json refresh
cp "$D/fleet/status.json" "$D/status.json"
sim_stop

echo "### Power-on pacing: $HOSTS powered-off simulated hosts, $((HOSTS / 40)) PDUs, ${PDU_INTERVAL_S}s per PDU, $RATE/s fleet-wide ($(machine))"
echo
python3 - "$RESULTS" "$D/status.json" "$D/hosts.json" "$PDU_INTERVAL_S" "$RATE" <<'PY'
import collections, json, sys
tool, n, run, rc, wall, user, sys_, rss = open(sys.argv[1]).read().split("\n")[0].split("\t")
status = json.load(open(sys.argv[2]))["hosts"]
pdu_of = {h["name"]: h["labels"]["pdu"] for h in json.load(open(sys.argv[3]))}
interval, rate = float(sys.argv[4]), float(sys.argv[5])
by_pdu = collections.defaultdict(list)
for name, h in status.items():
    if h.get("reset_at_ms") is not None:
        by_pdu[pdu_of[name]].append(h["reset_at_ms"] / 1000)
resets = sum(len(v) for v in by_pdu.values())
gaps, spans = [], []
for times in by_pdu.values():
    times.sort()
    gaps += [b - a for a, b in zip(times, times[1:])]
    spans.append((times[-1] - times[0], len(times)))
first = min(t for v in by_pdu.values() for t in v)
last = max(t for v in by_pdu.values() for t in v)
longest = max(k for _, k in spans)
ideal_pdu = (longest - 1) * interval
ideal = max(ideal_pdu, (resets - 1) / rate)
worst_span = max(s for s, _ in spans)
print("| measure | value | ideal / goal |")
print("| --- | ---: | --- |")
print(f"| rekindle run exit code | {rc} | 0 |")
print(f"| hosts powered on (reset received) | {resets} | {n} |")
print(f"| PDUs | {len(by_pdu)} | |")
print(f"| smallest gap between power-ons on one PDU | {min(gaps):.3f} s | >= {interval:.3f} s |")
print(f"| median gap on one PDU | {sorted(gaps)[len(gaps) // 2]:.3f} s | {interval:.3f} s |")
print(f"| longest PDU span (first to last power-on) | {worst_span:.2f} s | {ideal_pdu:.2f} s ({100 * (worst_span / ideal_pdu - 1):+.2f} %) |")
print(f"| whole power-on phase (first to last reset) | {last - first:.2f} s | {ideal:.2f} s ({100 * ((last - first) / ideal - 1):+.2f} %, goal within 2 %) |")
print(f"| rekindle run wall | {float(wall):.1f} s | |")
print(f"| rekindle CPU (user+sys) | {float(user) + float(sys_):.1f} s | |")
print(f"| rekindle peak RSS | {int(rss) / 1024:.0f} MiB | |")
PY
