#!/usr/bin/env bash
# Benchmark 3 (issue 7 item 2): `true` on $SIZES simulated hosts (`rekindle sim`,
# real SSH servers on 127.x.y.z:22 in a network namespace of its own), rekindle
# vs pdsh, clush, Debian's pssh, pip's parallel-ssh and `ansible -m raw`, all at
# fanout $FANOUT, plus rekindle at --parallel $WIDE. Peers reach the fleet with
# plain OpenSSH (the fleet's key and known_hosts). A peer that does not finish
# within $LIMIT s is killed and recorded as exit 124. CPU and RSS are the
# client's only (the simulator runs outside /usr/bin/time).
source "$(dirname "$0")/lib.sh"
SIZES="${SIZES:-2000 10000}"
FANOUT="${FANOUT:-100}"
WIDE="${WIDE:-1000}"
ROUNDS_SMALL="${ROUNDS_SMALL:-3}" # rounds for fleets up to 2,000 hosts, one above
LIMIT="${LIMIT:-240}"
TOOLS="${TOOLS:-rekindle rekindle-wide pdsh clush pssh-debian parallel-ssh-pip ansible-raw}"

bench_outdir fanout-sim

install_peers
build_release
netns_up sim

run_tool() { # tool, n, round, fleet dir
    local t="$1" n="$2" r="$3" f="$4"
    case "$t" in
    rekindle | rekindle-wide)
        local par="$FANOUT"
        [[ "$t" == rekindle-wide ]] && par="$WIDE"
        playbook "$D/true.yaml" "{ dc: sim }" "$par" 'run: "true"'
        rm -rf "$D/journal"
        measure "$t" "$n" "$r" "$LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/true.yaml" \
            -i "$f/inventory.yaml" --yes --quiet --journal "$D/journal" --ssh-config "$D/empty_ssh_config" ;;
    pdsh)
        measure pdsh "$n" "$r" "$LIMIT" env PDSH_SSH_ARGS_APPEND="-F $D/ssh_config" \
            pdsh -S -R ssh -f "$FANOUT" -w "^$D/hosts" true ;;
    clush)
        measure clush "$n" "$r" "$LIMIT" clush -S -f "$FANOUT" --hostfile="$D/hosts" \
            -o "-F $D/ssh_config" true ;;
    pssh-debian)
        measure pssh-debian "$n" "$r" "$LIMIT" parallel-ssh -h "$D/hosts" -p "$FANOUT" -t 120 \
            -x "-F $D/ssh_config" true ;;
    parallel-ssh-pip)
        measure parallel-ssh-pip "$n" "$r" "$LIMIT" "$VENV/bin/python" "$BENCH_DIR/pssh_native.py" \
            "$D/hosts" "$f/id_ed25519" "$FANOUT" 22 true ;;
    ansible-raw)
        measure ansible-raw "$n" "$r" "$LIMIT" env ANSIBLE_HOME="$D/ansible" ANSIBLE_LOCAL_TEMP="$D/ansible/tmp" \
            ANSIBLE_SSH_ARGS="-F $D/ssh_config -o ControlMaster=no" ANSIBLE_HOST_KEY_CHECKING=True \
            ANSIBLE_NOCOLOR=1 ANSIBLE_REMOTE_USER=root \
            "$VENV/bin/ansible" all -i "$D/hosts.ini" -m raw -a true -f "$FANOUT"
        # How far Ansible got (it prints one line per host).
        log "ansible-raw: $(grep -c ' | CHANGED\| | SUCCESS' "$OUT/last-$$.stdout" || true) hosts ok, $(grep -c ' | FAILED\| | UNREACHABLE' "$OUT/last-$$.stdout" || true) failed"
        cp "$OUT/last-$$.stdout" "$D/ansible-$n-$r.out" ;;
    *) die "unknown tool $t" ;;
    esac
}

for n in $SIZES; do
    sim_start "$D/fleet" --hosts "$n"
    sim_addresses "$D/fleet" >"$D/hosts"
    { echo "[sim]"; cat "$D/hosts"; } >"$D/hosts.ini"
    client_config "$D/fleet" "$D/ssh_config"
    rounds="$ROUNDS_SMALL"
    ((n > 2000)) && rounds=1
    for ((r = 1; r <= rounds; r++)); do
        for t in $TOOLS; do run_tool "$t" "$n" "$r" "$D/fleet"; done
    done
    sim_stop
done

echo "### Fan-out on the simulator: \`true\` on $SIZES hosts, fanout $FANOUT ($(machine))"
echo
summarize
