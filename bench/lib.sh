# Shared helpers for the bench/ scripts (sourced, not run).
# Owns: machine description, peer installation, network namespaces, a private
# sshd, measurement (/usr/bin/time) and the median. Must not touch anything
# outside bench/out/, the namespaces it names rkb-*, and processes it started.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
OUT="$BENCH_DIR/out"
VENV="$OUT/venv"
REKINDLE="${REKINDLE:-$ROOT/target/release/rekindle}"
# The simulator's binary; set it to compare two rekindle builds against one simulator.
SIM_REKINDLE="${SIM_REKINDLE:-$REKINDLE}"
mkdir -p "$OUT"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# One line describing the machine and its load, for BENCHMARKS.md.
machine() {
    local cpu mem load
    cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    mem="$(free -g | awk '/^Mem:/ {print $2}')"
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'nproc %s, %s, %s GiB RAM, load %s, %s' \
        "$(nproc)" "$cpu" "$mem" "$load" "$(date -u +%Y-%m-%dT%H:%MZ)"
}

build_release() {
    [[ -n "${SKIP_BUILD:-}" ]] && return 0
    (cd "$ROOT" && cargo build --release --locked --quiet) || die "release build failed"
    [[ -x "$REKINDLE" ]] || die "no $REKINDLE"
}

# Debian packages and a venv with ansible-core and parallel-ssh; idempotent.
install_peers() {
    local missing=()
    command -v pdsh >/dev/null || missing+=(pdsh)
    command -v clush >/dev/null || missing+=(clustershell)
    command -v parallel-ssh >/dev/null || missing+=(pssh)
    command -v hyperfine >/dev/null || missing+=(hyperfine)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        timeout 300 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [[ ! -x "$VENV/bin/ansible" || ! -x "$VENV/bin/python" ]] \
        || ! "$VENV/bin/python" -c 'import pssh.clients.native' 2>/dev/null; then
        log "pip venv $VENV: ansible-core parallel-ssh"
        python3 -m venv "$VENV"
        timeout 600 "$VENV/bin/pip" install -q ansible-core parallel-ssh
    fi
}

# Versions of everything compared, one per line.
peer_versions() {
    echo "rekindle $("$REKINDLE" --version | awk '{print $2}') ($(cd "$ROOT" && git rev-parse --short HEAD))"
    echo "pdsh $(pdsh -V 2>&1 | head -1)"
    echo "clush $(clush --version 2>&1 | head -1)"
    echo "pssh (Debian) $(dpkg-query -W -f='${Version}' pssh 2>/dev/null)"
    echo "parallel-ssh (pip) $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("parallel-ssh"))')"
    echo "$("$VENV/bin/ansible" --version | head -1)"
    echo "$(ssh -V 2>&1)"
}

# A network namespace with only loopback up. Name: rkb-<tag>-<pid>.
NETNS=""
netns_up() {
    NETNS="rkb-$1-$$"
    ip netns del "$NETNS" 2>/dev/null || true
    ip netns add "$NETNS"
    ip netns exec "$NETNS" ip link set lo up
}
netns_down() {
    if [[ -n "$NETNS" ]]; then
        # Anything still running in the namespace was started by this script.
        local pids
        pids="$(ip netns pids "$NETNS" 2>/dev/null || true)"
        [[ -n "$pids" ]] && kill $pids 2>/dev/null || true
        sleep 0.2
        pids="$(ip netns pids "$NETNS" 2>/dev/null || true)"
        [[ -n "$pids" ]] && kill -9 $pids 2>/dev/null || true
        ip netns del "$NETNS" 2>/dev/null || true
        NETNS=""
    fi
}
in_ns() { ip netns exec "$NETNS" "$@"; }

# Runs "$@" under /usr/bin/time in the namespace with a timeout. Appends one
# TSV row to $RESULTS: tool, n, run, exit, wall s, user s, sys s, maxrss KiB.
# /usr/bin/time counts every descendant it waited for (ssh clients, forks);
# its maxrss is the largest single process, not the sum.
RESULTS=""
measure() {
    local tool="$1" n="$2" run="$3" limit="$4"
    shift 4
    local tf="$OUT/time.$$" rc=0
    rm -f "$tf"
    in_ns /usr/bin/time -o "$tf" -f '%e\t%U\t%S\t%M' timeout -k 5 "$limit" "$@" \
        >"$OUT/last-$$.stdout" 2>"$OUT/last-$$.stderr" || rc=$?
    local t
    t="$(tail -1 "$tf" 2>/dev/null || printf 'nan\tnan\tnan\t0')"
    printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$n" "$run" "$rc" "$t" >>"$RESULTS"
    log "$tool n=$n run=$run exit=$rc wall/user/sys/rss: $(tr '\t' ' ' <<<"$t")"
    return 0
}

# Markdown table of medians from $RESULTS: per tool and n, median wall,
# CPU (user+sys) per host in ms, peak RSS MiB, runs and exits.
summarize() {
    python3 - "$RESULTS" <<'PY'
import sys, statistics, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    tool, n, run, rc, wall, user, sys_, rss = line.rstrip("\n").split("\t")
    rows.setdefault((tool, int(n)), []).append((int(rc), float(wall), float(user) + float(sys_), int(rss)))
print("| tool | hosts | wall s (median) | CPU ms/host (median) | peak RSS MiB (max) | runs | exit codes |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
for (tool, n), rs in rows.items():
    wall = statistics.median(r[1] for r in rs)
    cpu = statistics.median(r[2] for r in rs) * 1000 / n
    rss = max(r[3] for r in rs) / 1024
    codes = ",".join(str(r[0]) for r in rs)
    print(f"| {tool} | {n} | {wall:.2f} | {cpu:.2f} | {rss:.1f} | {len(rs)} | {codes} |")
PY
}

# Starts `rekindle sim` in the namespace: sim_start DIR ARGS... Waits (bounded)
# for its ready line; sets SIM_PID. sim_stop sends SIGTERM and waits (30 s at most).
SIM_PID=""
SIM_WRAP=() # e.g. (/usr/bin/time -o FILE -f FORMAT) to measure the simulator
sim_start() {
    local dir="$1"
    shift
    rm -rf "$dir" && mkdir -p "$dir"
    # Not through in_ns: a function run in the background is a subshell, and
    # $! would name the subshell instead of the simulator.
    ip netns exec "$NETNS" "${SIM_WRAP[@]}" "$SIM_REKINDLE" sim --port 22 --http-port 8080 --out "$dir" "$@" \
        >"$dir.log" 2>&1 &
    SIM_PID=$!
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready: ' "$dir.log" 2>/dev/null && { log "$(head -1 "$dir.log")"; return 0; }
        kill -0 "$SIM_PID" 2>/dev/null || die "sim exited: $(tail -3 "$dir.log")"
        sleep 0.1
    done
    die "sim not ready within 120 s"
}
sim_stop() {
    [[ -n "$SIM_PID" ]] || return 0
    local target="$SIM_PID"
    # Wrapped: signal the simulator under GNU time. SIGTERM, because a
    # background job of a script starts with SIGINT ignored.
    ((${#SIM_WRAP[@]})) && target="$(pgrep -P "$SIM_PID" | head -1)"
    [[ -n "$target" ]] && kill -TERM "$target" 2>/dev/null || true
    local i
    for ((i = 0; i < 300 && $(kill -0 "$SIM_PID" 2>/dev/null && echo 1 || echo 0); i++)); do sleep 0.1; done
    kill -9 "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    SIM_PID=""
}

# A three-member etcd cluster on the namespace's loopback (client ports
# 2379, 2479, 2579; peers 2380, 2480, 2580), data under $1. Sets
# ETCD_ENDPOINTS; waits (bounded) until `rekindle status --etcd` answers.
# netns_down stops it with everything else in the namespace.
ETCD_ENDPOINTS=""
# The members' PIDs are in ETCD_PIDS (etcd_cpu reads their CPU).
ETCD_PIDS=()
etcd_up() {
    local dir="$1" i initial=""
    for i in 0 1 2; do initial+="${initial:+,}m$i=http://127.0.0.1:$((2380 + 100 * i))"; done
    for i in 0 1 2; do
        mkdir -p "$dir/m$i"
        ip netns exec "$NETNS" etcd --name "m$i" --data-dir "$dir/m$i" \
            --listen-client-urls "http://127.0.0.1:$((2379 + 100 * i))" \
            --advertise-client-urls "http://127.0.0.1:$((2379 + 100 * i))" \
            --listen-peer-urls "http://127.0.0.1:$((2380 + 100 * i))" \
            --initial-advertise-peer-urls "http://127.0.0.1:$((2380 + 100 * i))" \
            --initial-cluster "$initial" --initial-cluster-state new \
            >"$dir/m$i.log" 2>&1 &
        ETCD_PIDS+=("$!")
    done
    ETCD_ENDPOINTS="http://127.0.0.1:2379,http://127.0.0.1:2479,http://127.0.0.1:2579"
    for ((i = 0; i < 600; i++)); do
        in_ns "$REKINDLE" status --etcd "$ETCD_ENDPOINTS" >/dev/null 2>&1 && { log "etcd cluster up"; return 0; }
        sleep 0.1
    done
    die "etcd cluster not up within 60 s: $(tail -2 "$dir/m0.log")"
}

# CPU seconds (user+sys) the etcd members of etcd_up have used so far.
etcd_cpu() {
    python3 - "${ETCD_PIDS[@]}" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(f[11]) + int(f[12])
    except OSError:
        pass
print(f"{total / tick:.1f}")
PY
}

# How many log segments (one transaction each) and bytes etcd holds under
# the rekindle prefix: "SEGMENTS BYTES".
etcd_segments() {
    local range='{"key":"L3Jla2luZGxlL3J1bi8=","range_end":"L3Jla2luZGxlL3J1bjA="}'
    in_ns curl -s -m 30 http://127.0.0.1:2379/v3/kv/range -d "$range" | python3 -c '
import base64, json, sys
kvs = json.load(sys.stdin).get("kvs", [])
logs = [kv for kv in kvs if b"/log/" in base64.b64decode(kv["key"])]
print(len(logs), sum(len(base64.b64decode(kv.get("value", ""))) for kv in logs))'
}

# Host addresses of a sim fleet, one per line, from its status.json.
sim_addresses() {
    python3 -c 'import json,sys; [print(h["address"]) for h in json.load(open(sys.argv[1]))["hosts"].values()]' "$1/status.json"
}

# OpenSSH client config for a sim fleet or private sshd: $1 dir with id_ed25519
# and known_hosts, $2 output file.
client_config() {
    cat >"$2" <<CFG
Host *
  User root
  IdentityFile $1/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $1/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  KexAlgorithms curve25519-sha256
  ConnectTimeout 20
  LogLevel ERROR
CFG
}

# Start of a simulator benchmark: $D = bench/out/$1, emptied, with an empty
# $RESULTS and an empty ssh config ($D/empty_ssh_config, so rekindle reads
# no ~/.ssh/config); the simulator and the namespace are stopped on exit.
bench_outdir() {
    D="$OUT/$1"
    RESULTS="$D/results.tsv"
    trap 'sim_stop; netns_down' EXIT
    trap 'exit 130' INT TERM
    rm -rf "$D" && mkdir -p "$D"
    : >"$RESULTS"
    : >"$D/empty_ssh_config"
}

# One-stage playbook: $1 file, $2 selector map, $3 parallel, rest: step lines.
playbook() {
    local f="$1" sel="$2" par="$3"
    shift 3
    { echo "version: 1"; echo "name: bench"
      echo "defaults: { connect_timeout: 30s, command_timeout: 5m }"
      echo "stages:"; echo "  - name: all"; echo "    select: $sel"; echo "    parallel: $par"
      echo "    steps:"; for s in "$@"; do echo "      - $s"; done; } >"$f"
}
