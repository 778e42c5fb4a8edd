#!/usr/bin/env bash
# Benchmark 4 (issue 7 item 4, DESIGN "Schedule"): rolling reboot of $HOSTS
# simulated hosts with boot times $BOOT, window $WINDOW. rekindle's makespan
# (wall of `rekindle run`) vs the lower bound the window allows, computed from
# the simulator's own boot-time samples (examples/boot_times.rs), and vs
# Ansible `serial: $WINDOW` with the `reboot` module where it can run.
source "$(dirname "$0")/lib.sh"
HOSTS="${HOSTS:-2000}"
WINDOW="${WINDOW:-500}"
BOOT="${BOOT:-10s..20s}"
SEED="${SEED:-1}"
LIMIT="${LIMIT:-600}"

bench_outdir rolling-reboot

install_peers
build_release
(cd "$ROOT" && cargo build --release --locked --quiet --example boot_times)
BOUNDS="$("$ROOT/target/release/examples/boot_times" "$HOSTS" "$WINDOW" "$BOOT" "$SEED")"
log "bounds: $BOUNDS"
netns_up roll

# Every host of the fleet must show exactly one reboot.
check_reboots() {
    python3 - "$1/status.json" <<'PY'
import json, sys, collections
d = json.load(open(sys.argv[1]))
c = collections.Counter(h["reboots"] for h in d["hosts"].values())
print(" ".join(f"{k}x:{v}" for k, v in sorted(c.items())))
PY
}

# rekindle.
sim_start "$D/fleet" --hosts "$HOSTS" --boot-time "$BOOT" --seed "$SEED"
playbook "$D/reboot.yaml" "{ dc: sim }" "$WINDOW" "reboot: { timeout: 10m }"
measure rekindle "$HOSTS" 1 "$LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/reboot.yaml" \
    -i "$D/fleet/inventory.yaml" --yes --quiet --journal "$D/journal" --ssh-config "$D/empty_ssh_config"
cp "$OUT/last-$$.stdout" "$D/rekindle.out"
sim_stop
REK_REBOOTS="$(check_reboots "$D/fleet")"
log "rekindle reboots per host: $REK_REBOOTS"

# Ansible's reboot module against the simulator (a few hosts suffice to see
# whether it can run at all): it wraps every command in `/bin/sh -c`, makes a
# remote temp dir and runs Python modules, none of which a simulated host has.
sim_start "$D/fleet" --hosts "$HOSTS" --boot-time "$BOOT" --seed "$SEED"
sim_addresses "$D/fleet" | { echo "[sim]"; cat; } >"$D/hosts.ini"
client_config "$D/fleet" "$D/ssh_config"
ANSIBLE=(env ANSIBLE_HOME="$D/ansible" ANSIBLE_LOCAL_TEMP="$D/ansible/tmp"
    ANSIBLE_SSH_ARGS="-F $D/ssh_config -o ControlMaster=no" ANSIBLE_HOST_KEY_CHECKING=True
    ANSIBLE_NOCOLOR=1 ANSIBLE_REMOTE_USER=root ANSIBLE_FORKS="$WINDOW")
cat >"$D/reboot-module.yaml" <<YAML
- hosts: all
  gather_facts: false
  serial: $WINDOW
  tasks:
    - ansible.builtin.reboot:
        reboot_command: systemctl reboot
        boot_time_command: cat /proc/sys/kernel/random/boot_id
        test_command: "true"
        reboot_timeout: 600
YAML
in_ns timeout 120 "${ANSIBLE[@]}" "$VENV/bin/ansible-playbook" -i "$D/hosts.ini" --limit 'all[0:2]' \
    "$D/reboot-module.yaml" >"$D/reboot-module.out" 2>&1 || true
MODULE_ERR="$(grep -m1 -o 'Failed to create temporary directory[^.]*' "$D/reboot-module.out" || grep -m1 'fatal' "$D/reboot-module.out" || echo 'no error?')"
MODULE_RECAP="$(grep -c 'unreachable=1\|failed=1' "$D/reboot-module.out" || true) of 3 hosts failed"
log "ansible reboot module: $MODULE_RECAP: $MODULE_ERR"
sim_stop

# What an SRE can still do with Ansible here: serial batches of raw commands,
# the wait for the host delegated to the bastion (an ssh poll every second, as
# the reboot module polls), the boot id compared after.
sim_start "$D/fleet" --hosts "$HOSTS" --boot-time "$BOOT" --seed "$SEED"
cat >"$D/reboot-raw.yaml" <<YAML
- hosts: all
  gather_facts: false
  serial: $WINDOW
  tasks:
    - ansible.builtin.raw: cat /proc/sys/kernel/random/boot_id
      register: before
    - ansible.builtin.raw: systemctl reboot
    - ansible.builtin.raw: >-
        sleep 1; for i in \$(seq 600); do
        ssh -F $D/ssh_config -o ConnectTimeout=5 {{ inventory_hostname }} true 2>/dev/null && exit 0;
        sleep 1; done; exit 1
      delegate_to: localhost
      vars: { ansible_connection: local }
    - ansible.builtin.raw: cat /proc/sys/kernel/random/boot_id
      register: after
      failed_when: after.rc != 0 or after.stdout == before.stdout
YAML
measure ansible-serial-raw "$HOSTS" 1 "$LIMIT" "${ANSIBLE[@]}" \
    "$VENV/bin/ansible-playbook" -i "$D/hosts.ini" "$D/reboot-raw.yaml"
cp "$OUT/last-$$.stdout" "$D/ansible.out"
sim_stop
ANS_REBOOTS="$(check_reboots "$D/fleet")"
ANS_RECAP="$(grep -c ' ok=4 ' "$D/ansible.out" || true) hosts ok, $(grep -c 'failed=[1-9]\|unreachable=[1-9]' "$D/ansible.out" || true) failed or unreachable"
ANS_ERR="$(grep -m1 'fatal' "$D/ansible.out" || echo none)"

echo "### Rolling reboot: $HOSTS simulated hosts, boot time $BOOT (seed $SEED), window $WINDOW ($(machine))"
echo
echo "Ansible's \`reboot\` module cannot run against the simulator ($MODULE_RECAP): \`$MODULE_ERR\`."
echo
python3 - "$RESULTS" "$BOUNDS" "$REK_REBOOTS" "$ANS_REBOOTS" "$ANS_RECAP" "$ANS_ERR" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
b = json.loads(sys.argv[2])
lb = b["lower_bound_s"]
print(f'Lower bound (max of total/window, longest host, W-th + (W+1)-th longest): **{lb:.2f} s**; '
      f'ideal rolling window in inventory order: {b["ideal_rolling_s"]:.2f} s; '
      f'ideal `serial` batches (each waits for its slowest host): {b["ideal_serial_batches_s"]:.2f} s; '
      f'mean host outage {b["mean_job_s"]:.2f} s, longest {b["longest_job_s"]:.2f} s (boot time + 0.1 s reboot grace).')
print()
print("| tool | exit | makespan s | vs lower bound | CPU s (user+sys) | peak RSS MiB | reboots per host (count x: hosts) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
for (tool, n, run, rc, wall, user, sys_, rss), reb in zip(rows, sys.argv[3:5]):
    wall = float(wall)
    print(f"| {tool} | {rc} | {wall:.2f} | {100 * (wall / lb - 1):+.1f} % | {float(user) + float(sys_):.2f} | {int(rss) / 1024:.1f} | {reb} |")
print()
print(f"ansible-serial-raw recap: {sys.argv[5]}; first error: `{sys.argv[6][:200]}`.")
PY
