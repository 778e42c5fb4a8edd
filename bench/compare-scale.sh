#!/usr/bin/env bash
# Benchmark 5 (or 6) side by side: two rekindle builds, alternating, against
# one simulator binary, so only the client differs and load drifts hit both
# alike (this machine's speed drifts by a third within an hour: compare only
# runs interleaved like this). Prints every run and the medians.
#
#   bench/compare-scale.sh OLD_BINARY NEW_BINARY [ROUNDS]
#   BENCH=power-on bench/compare-scale.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# BENCH picks the benchmark: scale (default, bench/scale.sh) or power-on
# (bench/power-on.sh). HOSTS, PARALLEL and LIMIT pass through to it;
# SIM_REKINDLE picks the simulator (default: NEW_BINARY). Must not touch
# anything but bench/out/ (through the benchmark script).
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "$0")" && pwd)"
OLD="${1:?usage: bench/compare-scale.sh OLD_BINARY NEW_BINARY [ROUNDS]}"
NEW="${2:?usage: bench/compare-scale.sh OLD_BINARY NEW_BINARY [ROUNDS]}"
ROUNDS="${3:-3}"
BENCH="${BENCH:-scale}"
case "$BENCH" in
  scale | power-on) ;;
  *) echo "BENCH must be scale or power-on, not $BENCH" >&2; exit 2 ;;
esac
[[ -x "$OLD" && -x "$NEW" ]] || { echo "both binaries must be executable files" >&2; exit 2; }
export SIM_REKINDLE="${SIM_REKINDLE:-$NEW}" SKIP_BUILD=1
ROWS="$BENCH_DIR/out/compare-$BENCH.tsv"
mkdir -p "$BENCH_DIR/out"
: >"$ROWS"

# One benchmark run: appends "label round" and the measures of $BENCH:
# scale: cpu_ms_per_host rss_mib connects_per_host total_wall_s;
# power-on: exit hosts_powered_on median_gap_s pdu_span_vs_ideal phase_s phase_vs_ideal cpu_s rss_mib.
one() {
    local label="$1" bin="$2" round="$3" table
    # A private state directory: another benchmark on this machine with
    # simulated hosts of the same names would otherwise be refused as a
    # colliding run (rekindle's registry), which is right for a user and
    # wrong for a measurement.
    table="$(XDG_STATE_HOME="$BENCH_DIR/out/state-compare" REKINDLE="$bin" timeout 900 "$BENCH_DIR/$BENCH.sh")" || {
        echo "$label round $round: $BENCH.sh failed" >&2
        return 1
    }
    # A run that did not finish is no measurement.
    if ! grep -Eq '(rekindle run exit code|exit code) \| 0 \|' <<<"$table"; then
        echo "$label round $round: rekindle exited non-zero; its stderr ends:" >&2
        tail -5 "$BENCH_DIR"/out/last-*.stderr 2>/dev/null | tail -5 >&2
        echo "$table" >&2
        return 1
    fi
    TABLE="$table" python3 - "$label" "$round" "$BENCH" >>"$ROWS" <<'PY'
import os, re, sys
t = os.environ["TABLE"]
def num(pattern):
    m = re.search(pattern, t)
    return m.group(1) if m else "nan"
if sys.argv[3] == "scale":
    cols = [num(r"= ([0-9.]+) ms/host"), num(r"peak RSS \| ([0-9]+) MiB"),
            num(r"= ([0-9.]+) per host"), num(r"total wall, simulator included \| ([0-9.]+) s")]
else:
    cols = [num(r"exit code \| ([0-9]+)"), num(r"powered on \(reset received\) \| ([0-9]+)"),
            num(r"median gap on one PDU \| ([0-9.]+) s"),
            num(r"longest PDU span[^|]*\|[^|]*\|[^(]*\(([-+0-9.]+) %\)"),
            num(r"whole power-on phase[^|]*\| ([0-9.]+) s"),
            num(r"whole power-on phase[^|]*\|[^|]*\|[^(]*\(([-+0-9.]+) %"),
            num(r"rekindle CPU \(user\+sys\) \| ([0-9.]+) s"), num(r"peak RSS \| ([0-9]+) MiB")]
print("\t".join([sys.argv[1], sys.argv[2]] + cols))
PY
    tail -1 "$ROWS" >&2
}

for ((r = 1; r <= ROUNDS; r++)); do
    one old "$OLD" "$r"
    one new "$NEW" "$r"
done

echo "### Side by side ($BENCH): $(basename "$OLD") vs $(basename "$NEW"), ${HOSTS:-32000} hosts, $ROUNDS rounds ($(cut -d' ' -f1-3 /proc/loadavg) load at the end, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
python3 - "$ROWS" "$BENCH" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
if sys.argv[2] == "scale":
    heads = ["CPU ms/host", "peak RSS MiB", "connects/host", "total wall s"]
    summary = [(2, "{:.2f} ms/host"), (3, "{:.0f} MiB"), (4, "{:.2f} connects/host"), (5, "{:.1f} s")]
else:
    heads = ["exit", "hosts powered on", "median gap s", "longest PDU span vs ideal %",
             "whole phase s", "whole phase vs ideal %", "rekindle CPU s", "peak RSS MiB"]
    summary = [(4, "median gap {:.3f} s"), (5, "PDU span {:+.2f} %"), (6, "phase {:.2f} s"),
               (7, "phase {:+.2f} %"), (8, "{:.1f} s CPU"), (9, "{:.0f} MiB")]
print("| build | round | " + " | ".join(heads) + " |")
print("| --- | ---: | " + " | ".join("---:" for _ in heads) + " |")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
for label in ("old", "new"):
    mine = [r for r in rows if r[0] == label]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"- {label}, median of the rounds: " + ", ".join(f.format(med(i)) for i, f in summary))
PY
