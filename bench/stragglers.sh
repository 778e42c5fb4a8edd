#!/usr/bin/env bash
# Benchmark 10 (issue 14, "Speed"): the whole-datacenter cold start
# (playbooks/dc-cold-start.yaml over inventories/kakao-like.yaml) rehearsed
# with 1 % `never_returns` and 1 % `stuck_powering_on` hosts, side by side in
# one run of this script:
#   today    the playbook's list-form `after:` (every tier waits for its
#            dependencies' last straggler) and no remediation: a stuck host
#            costs its whole wait_ssh / power_on timeout at every tier;
#   gated    the same playbook with every `after:` gated at $GATE % and
#            `remediate: { power_cycle: 1 }` in its defaults: tiers start
#            without their stragglers, and a power cycle cures a stuck host
#            with the probability $RECOVER.
# Both variants get the same failure budget ($BUDGET hosts per stage, in the
# drill scaled to its sample; network's 0 too): a percentage rounds down to 0
# in the sample's small stages, and a run that aborts early "recovers" in
# less time only because it stopped. Prints a side-by-side table; the drill
# reports are in bench/out/stragglers/.
source "$(dirname "$0")/lib.sh"
SAMPLE="${SAMPLE:-0.02}"
SPEED="${SPEED:-150}"
BOOT_TIME="${BOOT_TIME:-60s..120s}"
GATE="${GATE:-95}"
RECOVER="${RECOVER:-0.5}"
BUDGET="${BUDGET:-5}"
SEEDS="${SEEDS:-1}"
LIMIT="${LIMIT:-900}"
FAIL="never_returns=0.01:recover=$RECOVER,stuck_powering_on=0.01:recover=$RECOVER"

D="$OUT/stragglers"
rm -rf "$D"
mkdir -p "$D"
build_release

# The two playbooks, derived from the shipped one by text edits checked below.
python3 - "$ROOT/playbooks/dc-cold-start.yaml" "$D" "$GATE" "$BUDGET" <<'PY'
import re, sys
src, out, gate, budget = sys.argv[1:]
text = open(src).read()
today = re.sub(r"max_failures: [0-9.]+%?", f"max_failures: {budget}", text)
assert today.count(f"max_failures: {budget}") >= 2, "budgets not found"
def gated_after(m):
    names = [n.strip() for n in m.group(2).split(",")]
    return m.group(1) + "{ " + ", ".join(f"{n}: {gate}%" for n in names) + " }"
gated, n = re.subn(r"^(\s*after: )\[([^\]]*)\]", gated_after, today, flags=re.M)
assert n >= 5, f"only {n} after: lines"
gated, n = re.subn(r"^defaults:\n", "defaults:\n  remediate: { power_cycle: 1 }\n", gated, flags=re.M)
assert n == 1, "no defaults block"
open(f"{out}/today.yaml", "w").write(today)
open(f"{out}/gated.yaml", "w").write(gated)
PY
for v in today gated; do
    "$REKINDLE" validate "$D/$v.yaml" >/dev/null || die "$v.yaml does not validate"
done

MACHINE="$(machine)"
printf 'variant\tseed\tpredicted_s\tfailed\tpower_cycles_in_journal\n' >"$D/results.tsv"
for seed in $SEEDS; do
    for v in today gated; do
        log "drill $v, seed $seed (sample $SAMPLE, ${SPEED}x) ..."
        out="$D/$v-$seed.out"
        timeout "$LIMIT" "$REKINDLE" drill "$D/$v.yaml" -i "$ROOT/inventories/kakao-like.yaml" \
            --sample "$SAMPLE" --speed "$SPEED" --boot-time "$BOOT_TIME" \
            --fail "$FAIL" --seed "$seed" --journal "$D/journal-$v-$seed" --quiet \
            >"$out" 2>"$D/$v-$seed.err" || true
        grep -q "predicted recovery time" "$out" || die "drill $v seed $seed printed no prediction: see $out"
        python3 - "$out" "$D/journal-$v-$seed" "$v" "$seed" >>"$D/results.tsv" <<'PY'
import glob, json, re, sys
out, jdir, variant, seed = sys.argv[1:]
text = open(out).read()
m = re.search(r"predicted recovery time: (\S+)", text)
def secs(h):
    total = 0.0
    for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", h):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u]
    return total
failed = sum(int(l.split()[3]) for l in text.splitlines()
             if len(l.split()) >= 6 and l.split()[1].isdigit() and l.split()[3].isdigit())
cycles = 0
for j in glob.glob(f"{jdir}/*.jsonl"):
    for line in open(j):
        try:
            if json.loads(line).get("event") == "power_cycle_issued":
                cycles += 1
        except ValueError:
            pass
print(f"{variant}\t{seed}\t{secs(m.group(1)):.0f}\t{failed}\t{cycles}")
PY
    done
done

echo
echo "### Stragglers: dc-cold-start drill, 1 % never_returns + 1 % stuck_powering_on (recover $RECOVER), sample $SAMPLE at ${SPEED}x ($MACHINE)"
echo
echo "Command: \`bench/stragglers.sh\` (SAMPLE=$SAMPLE SPEED=$SPEED GATE=$GATE RECOVER=$RECOVER BUDGET=$BUDGET SEEDS=\"$SEEDS\")"
echo
python3 - "$D/results.tsv" "$GATE" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
gate = sys.argv[2]
print("| seed | today: predicted | today: failed | gated " + gate + " % + 1 power cycle: predicted | failed | power cycles | change |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for seed in sorted({r["seed"] for r in rows}):
    t = next(r for r in rows if r["seed"] == seed and r["variant"] == "today")
    g = next(r for r in rows if r["seed"] == seed and r["variant"] == "gated")
    ts, gs = float(t["predicted_s"]), float(g["predicted_s"])
    change = f"{(gs - ts) / ts * 100:+.1f} %" if ts else "-"
    print(f"| {seed} | {ts/60:.1f} min | {t['failed']} | {gs/60:.1f} min | {g['failed']} | {g['power_cycles_in_journal']} | {change} |")
PY
