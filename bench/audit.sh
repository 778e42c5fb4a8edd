#!/usr/bin/env bash
# Benchmark 11 (issue 26): `rekindle audit` of $HOSTS simulated hosts whose
# socket tables show a known dependency graph (sim --deps), $SAMPLES reads
# $INTERVAL apart. Checks the findings are exactly those the graph implies:
# one order error (web uses app, the plan does not start app first), one
# unplanned warning (db uses a host no stage selects), one same-stage note
# (cache), nothing else; and that every edge was seen.
# Goals: wall < 60 s and rekindle CPU < 1.5 ms per host on 2 cores.
source "$(dirname "$0")/lib.sh"
HOSTS="${HOSTS:-32000}"
SAMPLES="${SAMPLES:-2}"
INTERVAL="${INTERVAL:-1s}"
PARALLEL="${PARALLEL:-2000}"

bench_outdir audit
build_release
netns_up audit

# Tiers by index: db 5 %, app 30 %, web 55 %, cache the rest but the last host,
# which no stage selects.
python3 - "$HOSTS" "$D" <<'PY'
import sys
n, d = int(sys.argv[1]), sys.argv[2]
name = lambda i: f"sim-{i:05d}"
db = range(1, n // 20 + 1)
app = range(db.stop, db.stop + n * 3 // 10)
web = range(app.stop, app.stop + n * 11 // 20)
cache = range(web.stop, n)
lost = n
edges = 0
with open(f"{d}/deps.txt", "w") as f:
    for k, i in enumerate(app):
        f.write(f"{name(i)} {name(db[k % len(db)])} 5432\n"); edges += 1
    for k, i in enumerate(web):
        f.write(f"{name(i)} {name(app[k % len(app)])} 8080\n"); edges += 1
    for k in range(0, len(cache) - 1, 2):
        f.write(f"{name(cache[k])} {name(cache[k + 1])} 6379\n"); edges += 1
    f.write(f"sim-[{db[0]:05d}-{db[-1]:05d}] {name(lost)} 2049\n"); edges += len(db)
open(f"{d}/edges", "w").write(str(edges))
with open(f"{d}/pb.yaml", "w") as f:
    f.write("version: 1\nname: audit-bench\nstages:\n")
    f.write(f'  - {{ name: db, select: {{ host: "sim-[{db[0]:05d}-{db[-1]:05d}]" }}, steps: [ reboot ] }}\n')
    f.write(f'  - {{ name: app, after: db, select: {{ host: "sim-[{app[0]:05d}-{app[-1]:05d}]" }}, steps: [ reboot ] }}\n')
    f.write(f'  - {{ name: web, select: {{ host: "sim-[{web[0]:05d}-{web[-1]:05d}]" }}, steps: [ reboot ] }}\n')
    f.write(f'  - {{ name: cache, select: {{ host: "sim-[{cache[0]:05d}-{cache[-1]:05d}]" }}, steps: [ reboot ] }}\n')
PY

sim_start "$D/fleet" --hosts "$HOSTS" --deps "$D/deps.txt"
measure rekindle "$HOSTS" 1 600 env -u SSH_AUTH_SOCK "$REKINDLE" audit "$D/pb.yaml" \
    -i "$D/fleet/inventory.yaml" --format json --samples "$SAMPLES" --interval "$INTERVAL" \
    --parallel "$PARALLEL" --ssh-config "$D/empty_ssh_config"
cp "$OUT/last-$$.stdout" "$D/audit.json"
cp "$OUT/last-$$.stderr" "$D/audit.err"
sim_stop

echo "### Audit: $HOSTS simulated hosts with a dependency graph, $SAMPLES samples $INTERVAL apart, parallel $PARALLEL ($(machine))"
echo
python3 - "$RESULTS" "$D/audit.json" "$HOSTS" "$(cat "$D/edges")" <<'PY'
import sys, json
tool, n, run, rc, wall, user, sys_, rss = open(sys.argv[1]).read().split("\n")[0].split("\t")
doc = json.load(open(sys.argv[2]))
n, edges = int(sys.argv[3]), int(sys.argv[4])
cpu = float(user) + float(sys_)
found = sorted((f["severity"], f["kind"], ",".join(f["stages"])) for f in doc["findings"])
want = sorted([("error", "order", "web,app"), ("warning", "unplanned", "db"), ("info", "same-stage", "cache")])
seen = len(doc["dependencies"])
print("| measure | value | goal |")
print("| --- | ---: | --- |")
print(f"| rekindle audit exit code | {rc} | 1 (an order error) |")
print(f"| hosts read / selected | {doc['hosts_read']} / {doc['hosts_selected']} | {n - 1} / {n - 1} |")
print(f"| dependencies seen / written | {seen} / {edges} | equal |")
print(f"| findings exactly those implied | {'yes' if found == want else 'NO: ' + repr(found)} | yes |")
print(f"| wall | {float(wall):.1f} s | < 60 s |")
print(f"| rekindle CPU (user+sys) | {cpu:.1f} s = {cpu * 1000 / n:.2f} ms/host | < 1.5 ms/host |")
print(f"| rekindle peak RSS | {int(rss) / 1024:.0f} MiB | |")
PY
netns_down
