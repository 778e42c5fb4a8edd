#!/usr/bin/env bash
# Benchmark 5 side by side: two rekindle builds, alternating, against one
# simulator binary, so only the client differs and load drifts hit both
# alike (this machine's speed drifts by a third within an hour: compare only
# runs interleaved like this). Prints every run and the medians.
#
#   bench/compare-scale.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# HOSTS, PARALLEL and LIMIT pass through to bench/scale.sh; SIM_REKINDLE
# picks the simulator (default: NEW_BINARY). Must not touch anything but
# bench/out/ (through scale.sh).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
OLD="${1:?usage: bench/compare-scale.sh OLD_BINARY NEW_BINARY [ROUNDS]}"
NEW="${2:?usage: bench/compare-scale.sh OLD_BINARY NEW_BINARY [ROUNDS]}"
ROUNDS="${3:-3}"
[[ -x "$OLD" && -x "$NEW" ]] || { echo "both binaries must be executable files" >&2; exit 2; }
export SIM_REKINDLE="${SIM_REKINDLE:-$NEW}" SKIP_BUILD=1
ROWS="$BENCH_DIR/out/compare-scale.tsv"
mkdir -p "$BENCH_DIR/out"
: >"$ROWS"

# One scale.sh run: appends "label round cpu_ms_per_host rss_mib connects_per_host total_wall_s".
one() {
    local label="$1" bin="$2" round="$3" table
    table="$(REKINDLE="$bin" timeout 900 "$BENCH_DIR/scale.sh")" || {
        echo "$label round $round: scale.sh failed" >&2
        return 1
    }
    TABLE="$table" python3 - "$label" "$round" >>"$ROWS" <<'PY'
import os, re, sys
t = os.environ["TABLE"]
def num(pattern):
    m = re.search(pattern, t)
    return m.group(1) if m else "nan"
print("\t".join([sys.argv[1], sys.argv[2],
    num(r"= ([0-9.]+) ms/host"), num(r"peak RSS \| ([0-9]+) MiB"),
    num(r"= ([0-9.]+) per host"), num(r"total wall, simulator included \| ([0-9.]+) s")]))
PY
    tail -1 "$ROWS" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    one old "$OLD" "$r"
    one new "$NEW" "$r"
done

echo "### Side by side: $(basename "$OLD") vs $(basename "$NEW"), ${HOSTS:-32000} hosts, $ROUNDS rounds ($(cut -d' ' -f1-3 /proc/loadavg) load at the end, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
python3 - "$ROWS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print("| build | round | CPU ms/host | peak RSS MiB | connects/host | total wall s |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
for label in ("old", "new"):
    mine = [r for r in rows if r[0] == label]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"- {label}: median {med(2):.2f} ms/host, {med(3):.0f} MiB, {med(4):.2f} connects/host, {med(5):.1f} s")
PY
