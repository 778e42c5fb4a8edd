#!/usr/bin/env bash
# Benchmark (issue 23): power-on through sushy-tools, a Redfish service
# nobody here wrote: $BMCS emulators (`sushy-emulator --fake`, HTTP Basic,
# power applied 1-11 s after a reset) with $PER_BMC Systems each, every host
# picked by `redfish_system`, hosts spread over $PDUS PDUs (host i on PDU
# i % PDUS, so every PDU spans every BMC), paced at $PDU_INTERVAL_S s per
# PDU. From the journal: time to the first reset, to the last reset and to
# the last host On, against the pacing asked for (the last reset of the
# longest PDU queue at (queue - 1) x interval). BMC_SPACING (e.g. 250ms)
# labels every host `bmc_spacing` (unset: rekindle's default, 1 s between
# requests to one BMC). Needs the venv scripts/test.sh
# makes (target/venv-sushy). Touches only bench/out/ and the emulators it
# starts (stopped by PID).
source "$(dirname "$0")/lib.sh"
# Loopback addresses of our own: no network namespace needed.
in_ns() { "$@"; }
BMCS="${BMCS:-5}"
PER_BMC="${PER_BMC:-10}"
PDUS="${PDUS:-5}"
PDU_INTERVAL_S="${PDU_INTERVAL_S:-2}"
BMC_SPACING="${BMC_SPACING:-}"
spacing_label=""
[[ -n "$BMC_SPACING" ]] && spacing_label=", bmc_spacing: \"$BMC_SPACING\""
SUSHY="${SUSHY:-$ROOT/target/venv-sushy/bin/sushy-emulator}"
[[ -x "$SUSHY" ]] || die "no $SUSHY: run scripts/test.sh (it makes the venv)"

D="$OUT/power-on-sushy"
RESULTS="$D/results.tsv"
rm -rf "$D" && mkdir -p "$D"
: >"$RESULTS"
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap stop_all EXIT
build_release

password="bench-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf 'admin:%s\n' "$password" >"$D/creds" && chmod 600 "$D/creds"
"$(dirname "$SUSHY")/python" -c 'import bcrypt,sys;print("admin:"+bcrypt.hashpw(sys.argv[1].encode(),bcrypt.gensalt(4)).decode())' \
    "$password" >"$D/htpasswd"

{ echo "version: 1"; echo "datacenters:"; echo "  lab:"; echo "    hosts:"; } >"$D/inventory.yaml"
n=0
for ((b = 1; b <= BMCS; b++)); do
    addr="127.42.3.$b" port=42301 systems=""
    mkdir -p "$D/bmc$b/state"
    for ((s = 1; s <= PER_BMC; s++)); do
        uuid="$(printf '5a1e0000-0000-4000-8000-%08d%04d' "$b" "$s")"
        systems+="{'uuid': '$uuid', 'name': 'n$b-$s', 'power_state': 'Off', 'nics': []}, "
        cat >>"$D/inventory.yaml" <<EOF
      - name: node-$b-$s
        address: $addr
        labels: { bmc: "http://$addr:$port", bmc_allow_http: "true", redfish_system: "$uuid", pdu: "pdu-$((n % PDUS))"$spacing_label }
EOF
        n=$((n + 1))
    done
    cat >"$D/bmc$b/conf.py" <<EOF
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_STATE_DIR = '$D/bmc$b/state'
SUSHY_EMULATOR_AUTH_FILE = '$D/htpasswd'
SUSHY_EMULATOR_FAKE_SYSTEMS = [$systems]
EOF
    "$SUSHY" --fake --config "$D/bmc$b/conf.py" -i "$addr" -p "$port" >"$D/bmc$b/log" 2>&1 &
    PIDS+=($!)
done
for ((b = 1; b <= BMCS; b++)); do
    for _ in $(seq 600); do
        python3 -c "import socket,sys; socket.create_connection(('127.42.3.$b', 42301), 1)" 2>/dev/null && break
        sleep 0.1
    done
done
playbook "$D/power.yaml" "{ dc: lab }" "100%" \
    "power_on: { pdu_interval: ${PDU_INTERVAL_S}s, rate: 1000/s, timeout: 10m }"
measure rekindle "$n" 1 900 env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/power.yaml" \
    -i "$D/inventory.yaml" --yes --quiet --journal "$D/journal" --bmc-credentials "$D/creds"

echo "### Power-on through sushy-tools: $n systems behind $BMCS BMCs, $PDUS PDUs, ${PDU_INTERVAL_S}s per PDU, bmc_spacing ${BMC_SPACING:-unset (1s)} ($(machine))"
echo
python3 - "$RESULTS" "$D/journal" "$PDU_INTERVAL_S" "$PDUS" "$D" <<'PY'
import glob, json, re, sys, datetime
tool, n, run, rc, wall, user, sys_, rss = open(sys.argv[1]).read().split("\n")[0].split("\t")
interval, pdus = float(sys.argv[3]), int(sys.argv[4])
events = [json.loads(l) for f in glob.glob(sys.argv[2] + "/*.jsonl") for l in open(f)]
events = [e for e in events if e.get("record") == "event"]
start = min(e["ms"] for e in events)
resets = sorted(e["ms"] for e in events if e["event"] == "power_on_issued")
done = sorted(e["ms"] for e in events if e["event"] == "host_finished"
              and e["outcome"]["status"] == "done")
queue = -(-int(n) // pdus)
print("| measure | value | asked for |")
print("| --- | ---: | --- |")
print(f"| rekindle run exit code | {rc} | 0 |")
print(f"| hosts On (done) | {len(done)} | {n} |")
print(f"| first reset (intent journaled) after start | {resets[0] / 1000:.1f} s | |")
print(f"| last intent after the first | {(resets[-1] - resets[0]) / 1000:.1f} s | {(queue - 1) * interval:.1f} s ({queue} hosts per PDU x {interval:g} s) |")
# Host node-B-S is the n-th of the inventory, n = (B-1) x per-BMC + S-1, on PDU n % PDUS.
per_bmc = -(-int(n) // len({e["host"]["name"].split("-")[1] for e in events if "host" in e}))
by_pdu = {}
for e in events:
    if e["event"] == "power_on_issued":
        _, b, s = e["host"]["name"].split("-")
        by_pdu.setdefault(((int(b) - 1) * per_bmc + int(s) - 1) % pdus, []).append(e["ms"])
span = max(max(t) - min(t) for t in by_pdu.values())
print(f"| longest PDU's last intent after its first | {span / 1000:.1f} s | {(queue - 1) * interval:.1f} s |")
# The resets as each emulator logged their arrival (whole seconds): system
# 5a1e0000-0000-4000-8000-BBBBBBBBSSSS is host node-B-S.
arrived = {}
for log in glob.glob(sys.argv[5] + "/bmc*/log"):
    for line in open(log, errors="replace"):
        m = re.search(r"\[(\d+/\w+/\d+ [\d:]+)\].*Systems/5a1e0000-0000-4000-8000-(\d{8})(\d{4})/Actions/ComputerSystem.Reset", line)
        if m:
            t = datetime.datetime.strptime(m.group(1), "%d/%b/%Y %H:%M:%S").timestamp()
            b, s = int(m.group(2)), int(m.group(3))
            arrived.setdefault(((b - 1) * per_bmc + s - 1) % pdus, []).append(t)
if arrived:
    got = max(max(t) - min(t) for t in arrived.values())
    print(f"| longest PDU's last reset after its first, as the emulators logged them (1 s resolution) | {got:.0f} s | {(queue - 1) * interval:.1f} s |")
print(f"| last host On after start | {done[-1] / 1000:.1f} s | |")
print(f"| rekindle run wall | {float(wall):.1f} s | |")
print(f"| rekindle CPU (user+sys) | {float(user) + float(sys_):.1f} s | |")
PY
