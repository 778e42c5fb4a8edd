#!/usr/bin/env bash
# Benchmark 2 (issue 3 "Speed", issue 7 item 1): `true` on $HOSTS hosts at
# fanout $FANOUT through one private OpenSSH sshd in a network namespace of its
# own (only `lo` up; sshd on 0.0.0.0:22, so every 127.10.x.y answers), every
# client run inside that namespace. Tools are interleaved round by round so
# that load drifts hit them alike. Prints a Markdown report.
#
# sshd: curve25519 kex only, MaxStartups raised, UsePAM no, `SetEnv SHLVL=1`
# so Debian's bash skips root's .bashrc. OpenSSH-based peers get one ssh_config
# (same key, known_hosts, strict host key checking, BatchMode).
source "$(dirname "$0")/lib.sh"
HOSTS="${HOSTS:-200}"
FANOUT="${FANOUT:-50}"
ROUNDS="${ROUNDS:-5}"
TOOLS="${TOOLS:-rekindle pdsh clush pssh-debian parallel-ssh-pip ansible}"
LIMIT="${LIMIT:-300}" # seconds per tool run
D="$OUT/fanout-sshd"
RESULTS="$D/results.tsv"

SSHD_PID=""
cleanup() {
    [[ -n "$SSHD_PID" ]] && kill "$SSHD_PID" 2>/dev/null || true
    netns_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# SKIP_PEERS=1 with TOOLS="rekindle-before rekindle" compares two rekindle
# binaries only (REKINDLE_BEFORE: the older one), without installing peers.
[[ -n "${SKIP_PEERS:-}" ]] || install_peers
build_release
rm -rf "$D" && mkdir -p "$D"
: >"$RESULTS"

ssh-keygen -q -t ed25519 -N '' -f "$D/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -f "$D/id_ed25519"
cp "$D/id_ed25519.pub" "$D/authorized_keys"
HOSTKEY="$(cut -d' ' -f1-2 "$D/host_ed25519.pub")"
: >"$D/hosts" && : >"$D/known_hosts"
{ echo "version: 1"; echo "defaults: { user: root, port: 22, identity_file: \"$D/id_ed25519\", known_hosts: \"$D/known_hosts\" }"
  echo "datacenters:"; echo "  bench:"; echo "    hosts:"; } >"$D/inventory.yaml"
echo "[bench]" >"$D/hosts.ini"
for ((i = 0; i < HOSTS; i++)); do
    a="127.10.$((i / 250)).$((i % 250 + 1))"
    echo "$a" >>"$D/hosts"
    echo "$a $HOSTKEY" >>"$D/known_hosts"
    echo "      - { name: \"h$i\", address: \"$a\" }" >>"$D/inventory.yaml"
    echo "$a" >>"$D/hosts.ini"
done
cat >"$D/true.yaml" <<YAML
version: 1
name: fanout-true
stages:
  - name: all
    select: { dc: bench }
    parallel: $FANOUT
    steps:
      - run: "true"
YAML
: >"$D/empty_ssh_config"
cat >"$D/ssh_config" <<CFG
Host *
  User root
  IdentityFile $D/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $D/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  KexAlgorithms curve25519-sha256
  ConnectTimeout 20
  LogLevel ERROR
CFG
cat >"$D/sshd_config" <<CFG
Port 22
ListenAddress 0.0.0.0
HostKey $D/host_ed25519
AuthorizedKeysFile $D/authorized_keys
PidFile none
UsePAM no
StrictModes no
MaxStartups 1000:30:2000
MaxSessions 1000
KexAlgorithms curve25519-sha256
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
SetEnv SHLVL=1
LogLevel ERROR
CFG

netns_up sshd
mkdir -p /run/sshd
ip netns exec "$NETNS" /usr/sbin/sshd -D -e -f "$D/sshd_config" 2>>"$D/sshd.log" &
SSHD_PID=$!
for ((i = 0; i < 100; i++)); do
    in_ns ssh -F "$D/ssh_config" 127.10.0.1 true 2>/dev/null && break
    sleep 0.1
done
in_ns ssh -F "$D/ssh_config" "$(tail -1 "$D/hosts")" true || die "sshd does not answer in $NETNS"
log "sshd up in $NETNS for $HOSTS hosts"

ANSIBLE_ENV=(env ANSIBLE_HOME="$D/ansible" ANSIBLE_LOCAL_TEMP="$D/ansible/tmp"
    ANSIBLE_SSH_ARGS="-F $D/ssh_config -o ControlMaster=no" ANSIBLE_PIPELINING=True
    ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3
    ANSIBLE_NOCOLOR=1 ANSIBLE_REMOTE_USER=root)
run_tool() { # tool, round
    local t="$1" r="$2"
    case "$t" in
    rekindle)
        rm -rf "$D/journal"
        measure rekindle "$HOSTS" "$r" "$LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE" run "$D/true.yaml" \
            -i "$D/inventory.yaml" --yes --quiet --journal "$D/journal" --ssh-config "$D/empty_ssh_config" ;;
    rekindle-before)
        rm -rf "$D/journal"
        measure rekindle-before "$HOSTS" "$r" "$LIMIT" env -u SSH_AUTH_SOCK "$REKINDLE_BEFORE" run "$D/true.yaml" \
            -i "$D/inventory.yaml" --yes --quiet --journal "$D/journal" --ssh-config "$D/empty_ssh_config" ;;
    pdsh)
        measure pdsh "$HOSTS" "$r" "$LIMIT" env PDSH_SSH_ARGS_APPEND="-F $D/ssh_config" \
            pdsh -S -R ssh -f "$FANOUT" -w "^$D/hosts" true ;;
    clush)
        measure clush "$HOSTS" "$r" "$LIMIT" clush -S -f "$FANOUT" --hostfile="$D/hosts" \
            -o "-F $D/ssh_config" true ;;
    pssh-debian)
        measure pssh-debian "$HOSTS" "$r" "$LIMIT" parallel-ssh -h "$D/hosts" -p "$FANOUT" -t 120 \
            -x "-F $D/ssh_config" true ;;
    parallel-ssh-pip)
        measure parallel-ssh-pip "$HOSTS" "$r" "$LIMIT" "$VENV/bin/python" "$BENCH_DIR/pssh_native.py" \
            "$D/hosts" "$D/id_ed25519" "$FANOUT" 22 true ;;
    ansible)
        measure ansible "$HOSTS" "$r" "$LIMIT" "${ANSIBLE_ENV[@]}" "$VENV/bin/ansible" all \
            -i "$D/hosts.ini" -m command -a true -f "$FANOUT" ;;
    *) die "unknown tool $t" ;;
    esac
}
for ((r = 1; r <= ROUNDS; r++)); do
    for t in $TOOLS; do run_tool "$t" "$r"; done
done

echo "### Fan-out over OpenSSH: \`true\` on $HOSTS hosts, fanout $FANOUT ($(machine))"
echo
summarize
