#!/usr/bin/env bash
# The README's first command: a fire drill. Builds rekindle, then rehearses a
# datacenter-wide plan over a sample of inventories/kakao-like.yaml on a
# simulated fleet (real SSH servers on loopback 127.x.y.z, nothing else is
# touched), with faults injected, and prints the recovery time it predicts.
# About one to two minutes on a 2-core machine, with progress as hosts finish.
#
# Override with environment variables, or pass more `rekindle drill` flags:
#   PLAYBOOK=playbooks/service-restart.yaml ./scripts/drill.sh --limit dc=pangyo
#
# The cold start powers every host on through its (simulated) Redfish BMC,
# paced per PDU, then waits for SSH and health checks, tier by tier.
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYBOOK=${PLAYBOOK:-playbooks/dc-cold-start.yaml}
INVENTORY=${INVENTORY:-inventories/kakao-like.yaml}
# 0.5% of the fleet (every stage, dc and role keeps at least one host), and
# time compressed 150x: a 90 s boot takes 0.6 s; reported times are real.
SAMPLE=${SAMPLE:-0.005}
SPEED=${SPEED:-150}
BOOT_TIME=${BOOT_TIME:-60s..120s}
FAIL=${FAIL:-never_returns=0.003:recover=0.5,slow_boot=0.01,flap=0.01}
SEED=${SEED:-1}

# A debug build (its dependencies are optimised, Cargo.toml; the drill itself
# spends about 2 s of CPU), made by `cargo test --no-run`: the test build
# turns on dev-dependency features (tokio's test-util, ...), so a plain
# `cargo build` would compile most dependencies a second time for
# scripts/test.sh. This way test.sh reuses every artifact, and the binary
# below is the one the tests run. A first build compiles about 300 crates:
# several minutes on 2 cores (README); cargo shows its progress.
echo "building rekindle (cargo test --locked --no-run; the first build takes minutes) ..." >&2
cargo test --locked --no-run
target_dir=$(cargo metadata --locked --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null \
  || echo target)

set -x
exec "$target_dir/debug/rekindle" drill "$PLAYBOOK" -i "$INVENTORY" \
  --sample "$SAMPLE" --speed "$SPEED" --boot-time "$BOOT_TIME" \
  --fail "$FAIL" --seed "$SEED" "$@"
