#!/usr/bin/env bash
# Benchmark 8 (issue 14 item 4): does `rekindle drill` predict right? One
# playbook and one inventory ($HOSTS hosts in three dependent stages, boot
# times $BOOT, faults $FAIL) run twice: once in full, in real time, with
# `rekindle run` against `rekindle sim` (the measurement), and $DRILLS times
# as `rekindle drill --sample $SAMPLE --speed $SPEED` (the prediction, one
# seed per drill). Compares the drill's predicted recovery time with the
# measured one, per stage and in total, from the two journals
# (`rekindle report --format json`: the drill's `predicted`, its times
# scaled by its speed, a stage paced by `max_unavailable` alone extended to
# all its groups).
# Goal: within 5 % in total and 10 % per stage.
#
# SHAPE picks the plan (issue 28 item 4 asks for five): `tiers` (the
# default: three dependent stages, one bound by `parallel`, two by `rate`),
# `window` (one rolling window bound by `parallel`), `unavailable` (bound by
# `max_unavailable: { rack: 2 }`, racks of 20), `rate` (bound by a stage
# rate), `waves` (growing waves), `gate` (a second stage at an 80 %
# readiness gate of the first).
#
# Each shape and boot range writes to its own directory,
# bench/out/drill-accuracy-$SHAPE-$BOOT, so two can run at once (each in its
# own network namespace; TAG=x appends -x to it). With long boots, fewer rounds keep a full run
# within minutes: WINDOW (the `window` shape's `parallel`, 10%), RACK_LIMIT
# (`unavailable`'s hosts per rack, 2), RATE (`rate`'s stage rate, 2/s), WAVES
# (`waves`' sizes, [1, 2%, 5%, 10%]), GATE_PAR (`gate`'s `parallel`, 20%);
# REBOOT_TIMEOUT (80s) must stay above the longest boot.
source "$(dirname "$0")/lib.sh"
HOSTS="${HOSTS:-2000}"
BOOT="${BOOT:-10s..60s}"
FAIL="${FAIL:-never_returns=0.005,unhealthy=0.005,slow_boot=0.01}"
SEED="${SEED:-1}"
SAMPLE="${SAMPLE:-0.1}"
SPEED="${SPEED:-10}"
DRILLS="${DRILLS:-3}"
SHAPE="${SHAPE:-tiers}"
# REUSE_RUN=1: keep the last full run (bench/out/drill-accuracy/run*) and
# only drill again, e.g. after changing the drill's model.
REUSE_RUN="${REUSE_RUN:-}"
WINDOW="${WINDOW:-10%}"
RACK_LIMIT="${RACK_LIMIT:-2}"
RATE="${RATE:-2/s}"
WAVES="${WAVES:-[1, 2%, 5%, 10%]}"
GATE_PAR="${GATE_PAR:-20%}"
# Every shape's reboot timeout: above the longest boot.
REBOOT_TIMEOUT="${REBOOT_TIMEOUT:-80s}"
NAME="drill-accuracy-$SHAPE-${BOOT//./}${TAG:+-$TAG}"
# Bounds: the full run takes several minutes in real time.
LIMIT="${LIMIT:-1200}"
DRILL_LIMIT="${DRILL_LIMIT:-600}"

if [[ -n "$REUSE_RUN" ]]; then
    D="$OUT/$NAME"
    [[ -s "$D/run.json" ]] || die "REUSE_RUN: no earlier full run in $D"
    RESULTS="$D/results.tsv"
    trap 'sim_stop; netns_down' EXIT
    trap 'exit 130' INT TERM
    rm -rf "$D"/drill-*
    grep -P '^run\t' "$RESULTS" >"$D/results.keep" && mv "$D/results.keep" "$RESULTS"
else
    bench_outdir "$NAME"
fi
build_release
netns_up drill
# A run registry of its own: two shapes measured at once have hosts of the
# same names (in two namespaces), which one registry would take for one fleet.
export XDG_STATE_HOME="$D/state"
mkdir -p "$XDG_STATE_HOME"

# Three tiers, 20 % / 30 % / 50 % of the hosts; racks of 20 (a `rack` label).
python3 - "$HOSTS" >"$D/inventory.yaml" <<'PY'
import sys
n = int(sys.argv[1])
tiers = [("storage", n * 2 // 10), ("db", n * 3 // 10)]
tiers.append(("app", n - sum(c for _, c in tiers)))
print("version: 1\ndatacenters:\n  lab:\n    hosts:")
i = 0
for role, count in tiers:
    for k in range(1, count + 1):
        print(f'      - name: "{role}{k:04d}"')
        print(f'        labels: {{ role: {role}, rack: "r{i // 20:03d}" }}')
        i += 1
PY
case "$SHAPE" in
  tiers)
    cat >"$D/playbook.yaml" <<YAML
version: 1
name: drill-accuracy
defaults: { connect_timeout: 20s, command_timeout: 1m, max_failures: 15% }
stages:
  - name: storage
    select: { role: storage }
    parallel: 30%
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { tcp: 8080 }, { ssh: "systemctl is-system-running" } ]
          timeout: 20s
          interval: 2s
  - name: db
    after: [storage]
    select: { role: db }
    parallel: 30%
    rate: 5/s
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { ssh: "systemctl is-active postgres" } ]
          timeout: 20s
          interval: 2s
  - name: app
    after: [db]
    select: { role: app }
    parallel: 30%
    rate: 10/s
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { http: "http://{address}:8080/healthz" } ]
          timeout: 20s
          interval: 2s
YAML
    ;;
  window)
    cat >"$D/playbook.yaml" <<YAML
version: 1
name: drill-accuracy-window
defaults: { connect_timeout: 20s, command_timeout: 1m, max_failures: 15% }
stages:
  - name: all
    select: { role: [storage, db, app] }
    parallel: $WINDOW
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { ssh: "systemctl is-system-running" } ]
          timeout: 20s
          interval: 2s
YAML
    ;;
  unavailable)
    cat >"$D/playbook.yaml" <<YAML
version: 1
name: drill-accuracy-unavailable
defaults: { connect_timeout: 20s, command_timeout: 1m, max_failures: 15% }
stages:
  - name: all
    select: { role: [storage, db, app] }
    parallel: 100%
    max_unavailable: { rack: $RACK_LIMIT }
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { ssh: "systemctl is-system-running" } ]
          timeout: 20s
          interval: 2s
YAML
    ;;
  rate)
    cat >"$D/playbook.yaml" <<YAML
version: 1
name: drill-accuracy-rate
defaults: { connect_timeout: 20s, command_timeout: 1m, max_failures: 15% }
stages:
  - name: all
    select: { role: [storage, db, app] }
    parallel: 100%
    rate: $RATE
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { ssh: "systemctl is-system-running" } ]
          timeout: 20s
          interval: 2s
YAML
    ;;
  waves)
    cat >"$D/playbook.yaml" <<YAML
version: 1
name: drill-accuracy-waves
defaults: { connect_timeout: 20s, command_timeout: 1m, max_failures: 15% }
stages:
  - name: all
    select: { role: [storage, db, app] }
    parallel: $WAVES
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { ssh: "systemctl is-system-running" } ]
          timeout: 20s
          interval: 2s
YAML
    ;;
  gate)
    cat >"$D/playbook.yaml" <<YAML
version: 1
name: drill-accuracy-gate
defaults: { connect_timeout: 20s, command_timeout: 1m, max_failures: 15% }
stages:
  - name: first
    select: { role: [storage, db] }
    parallel: $GATE_PAR
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { ssh: "systemctl is-system-running" } ]
          timeout: 20s
          interval: 2s
  - name: second
    after: { first: 80% }
    select: { role: app }
    parallel: $GATE_PAR
    steps:
      - reboot: { timeout: $REBOOT_TIMEOUT }
      - health:
          checks: [ { ssh: "systemctl is-system-running" } ]
          timeout: 20s
          interval: 2s
YAML
    ;;
  *) die "SHAPE must be tiers, window, unavailable, rate, waves or gate, not $SHAPE" ;;
esac

# The measurement: the whole fleet, in real time.
if [[ -z "$REUSE_RUN" ]]; then
sim_start "$D/fleet" -i "$D/inventory.yaml" --boot-time "$BOOT" --fail "$FAIL" --seed "$SEED"
log "full run: $HOSTS hosts in real time (several minutes, at most $LIMIT s)"
measure run "$HOSTS" 1 "$LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/playbook.yaml" \
    -i "$D/fleet/inventory.yaml" --yes --quiet --journal "$D/run-journal" \
    --ssh-config "$D/empty_ssh_config"
cp "$OUT/last-$$.stdout" "$D/run.out"
cp "$OUT/last-$$.stderr" "$D/run.err"
sim_stop
RUN_JOURNAL="$(ls "$D"/run-journal/*.jsonl | head -1)"
"$REKINDLE" report "$RUN_JOURNAL" --format json >"$D/run.json"
fi

# The predictions: the same playbook and inventory, sampled and sped up.
for ((i = 1; i <= DRILLS; i++)); do
    log "drill $i: --sample $SAMPLE --speed $SPEED --seed $i"
    measure drill "$HOSTS" "$i" "$DRILL_LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE" drill "$D/playbook.yaml" \
        -i "$D/inventory.yaml" --sample "$SAMPLE" --speed "$SPEED" --boot-time "$BOOT" \
        --fail "$FAIL" --seed "$i" --journal "$D/drill-journal-$i"
    cp "$OUT/last-$$.stdout" "$D/drill-$i.out"
    cp "$OUT/last-$$.stderr" "$D/drill-$i.err"
    "$REKINDLE" report "$(ls "$D"/drill-journal-$i/*.jsonl | head -1)" --format json >"$D/drill-$i.json"
done

echo "### Drill accuracy ($SHAPE): $HOSTS hosts, boot $BOOT, faults $FAIL; drills at --sample $SAMPLE --speed $SPEED ($(machine))"
echo
echo "Plan: $(grep -E '^ +(parallel|rate|max_unavailable|after):' "$D/playbook.yaml" | sed 's/^ *//' | paste -sd';' -)"
echo
python3 - "$D" "$SPEED" "$DRILLS" "$RESULTS" <<'PY'
import json, sys
d, speed, drills, results = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def times(path, scale):
    s = json.load(open(path))
    stages = {st["name"]: (st["end_ms"] - st["start_ms"]) * scale / 1000
              for st in s["stages"] if st.get("start_ms") is not None and st.get("end_ms") is not None}
    counts = {st["name"]: (st["hosts"], st["done"], st["failed"]) for st in s["stages"]}
    return s["elapsed_ms"] * scale / 1000, stages, counts, s.get("outcome")
def predicted(path):
    # What the drill predicts (its journal's last record), in real time; a
    # journal without one (a rekindle before the prediction record) is
    # read as its times times the speed.
    s = json.load(open(path))
    p = s.get("predicted")
    if p is None:
        return times(path, speed)
    stages = {st["name"]: st["duration_ms"] / 1000
              for st in p["stages"] if st.get("duration_ms") is not None}
    counts = {st["name"]: (st["hosts"], st["done"], st["failed"]) for st in s["stages"]}
    return p["total_ms"] / 1000, stages, counts, s.get("outcome")
run_total, run_stages, run_counts, run_outcome = times(f"{d}/run.json", 1.0)
preds = [predicted(f"{d}/drill-{i}.json") for i in range(1, drills + 1)]
codes = [l.split("\t")[3] for l in open(results)]
def off(p, m):
    return f"{(p - m) / m * 100:+.1f} %" if m else "-"
head = "| | measured (full run) | " + " | ".join(f"drill {i + 1} | off" for i in range(drills)) + " | mean of drills | off |"
print(head)
print("| --- | ---: |" + " ---: | ---: |" * drills + " ---: | ---: |")
rows = [(name, run_stages.get(name), [p[1].get(name) for p in preds]) for name in run_stages]
rows.append(("total", run_total, [p[0] for p in preds]))
for name, m, ps in rows:
    cells = [f"{name}", f"{m:.1f} s"]
    for p in ps:
        cells += [f"{p:.1f} s" if p is not None else "-", off(p, m) if p is not None else "-"]
    got = [p for p in ps if p is not None]
    mean = sum(got) / len(got) if got else None
    cells += [f"{mean:.1f} s" if mean else "-", off(mean, m) if mean else "-"]
    print("| " + " | ".join(cells) + " |")
print()
print(f"exit codes (run, drills): {', '.join(codes)}; hosts done/failed per stage, run: "
      + ", ".join(f"{k} {v[1]}/{v[2]} of {v[0]}" for k, v in run_counts.items()))
for i, p in enumerate(preds, 1):
    print(f"drill {i}: " + ", ".join(f"{k} {v[1]}/{v[2]} of {v[0]}" for k, v in p[2].items()))
PY
