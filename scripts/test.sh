#!/usr/bin/env bash
# Runs rekindle's whole test suite. Installs what the tests need when it is
# missing, so this one command works on a fresh Debian machine:
# - OpenSSH's sshd: the SSH tests start private sshd instances on loopback;
# - Chromium: the HTML report test takes a headless screenshot of it;
# - sudo, and a dedicated unprivileged login user `rekindle-test` with a
#   sudoers drop-in: the `become` tests log in as it (NOPASSWD to root, a
#   password to the user `rekindle-test-pw`, nothing else; the tests set a
#   fresh random password each run, so no fixed password exists);
# - ipmitool and openipmi's ipmi_sim: the IPMI power-on tests;
# - file: the static-binary test checks the binary scripts/build-static.sh
#   makes (and the script itself does);
# - etcd-server: the `--etcd` tests start a three-member cluster on loopback;
# - dropbear-bin, tinysshd and ucspi-tcp (tcpserver): the OpenSSH conformance
#   tests run them next to sshd, logging in as the unprivileged user
#   `rekindle-ssh` (key logins only; the tests add their keys to its
#   ~/.ssh/authorized_keys);
# - prometheus (for promtool): checks a live run's /metrics;
# - man-db and git: the man page and pre-commit tests (tests/it/conventions.rs);
# - python3-venv: scripts/py-tools.sh's venv (check-jsonschema, pre-commit,
#   the SARIF schema, mdBook; from PyPI), made here once;
# - iproute2 and python3: the audit test builds hosts in network namespaces
#   (sshd and a small Python TCP peer in each);
# - python3-venv and openssl, and a venv with sushy-tools (OpenStack's
#   Redfish emulator, PyPI) under target/venv-sushy: the sushy tests power
#   its Systems on and make their certificates with openssl;
# - a venv with grequests (and its gevent; PyPI) under target/venv-mockup:
#   DMTF's Redfish Mockup Server (kept in tests/fixtures/redfish/mockup-server)
#   imports it; tests/it/dmtf.rs serves DMTF's mockups with it.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/sudo ] || missing+=(sudo)
[ -x /usr/bin/ipmitool ] || missing+=(ipmitool)
[ -x /usr/bin/ipmi_sim ] || missing+=(openipmi)
[ -x /usr/bin/file ] || missing+=(file)
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
[ -x /usr/sbin/dropbear ] || missing+=(dropbear-bin)
[ -x /usr/sbin/tinysshd ] || missing+=(tinysshd)
[ -x /usr/bin/tcpserver ] || missing+=(ucspi-tcp)
[ -x /usr/bin/promtool ] || missing+=(prometheus)
[ -x /usr/bin/man ] || missing+=(man-db)
command -v git >/dev/null || missing+=(git)
[ -x /usr/bin/ip ] || [ -x /usr/sbin/ip ] || missing+=(iproute2)
[ -x /usr/bin/python3 ] || missing+=(python3)
[ -x /usr/bin/openssl ] || missing+=(openssl)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} (needed by the tests)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! id rekindle-test >/dev/null 2>&1; then
  echo "test.sh: creating the unprivileged test user rekindle-test" >&2
  $sudo useradd -m -s /bin/bash rekindle-test
  # Not locked ('!'), so sshd lets it log in with a key; no password yet.
  $sudo usermod -p '*' rekindle-test
fi
id rekindle-test-pw >/dev/null 2>&1 || $sudo useradd -M -s /usr/sbin/nologin rekindle-test-pw
if ! id rekindle-ssh >/dev/null 2>&1; then
  echo "test.sh: creating the unprivileged test user rekindle-ssh (dropbear, tinysshd)" >&2
  $sudo useradd -m -s /bin/sh rekindle-ssh
  $sudo usermod -p '*' rekindle-ssh
fi
dropin=/etc/sudoers.d/rekindle-test
if [ ! -f "$dropin" ]; then
  echo "test.sh: writing $dropin" >&2
  tmp=$(mktemp)
  cat >"$tmp" <<'SUDOERS'
# rekindle's `become` tests (scripts/test.sh): NOPASSWD to root, a password
# to rekindle-test-pw, nothing else.
Defaults:rekindle-test !lecture
rekindle-test ALL=(root) NOPASSWD: ALL
rekindle-test ALL=(rekindle-test-pw) ALL
SUDOERS
  $sudo visudo -cqf "$tmp"
  $sudo install -m 0440 "$tmp" "$dropin"
  rm -f "$tmp"
fi

# sushy-tools, pinned; made once (a marker file says the install finished).
venv="${CARGO_TARGET_DIR:-target}/venv-sushy"
sushy_version=2.2.0
if [ ! -f "$venv/.sushy-$sushy_version" ]; then
  echo "test.sh: making $venv with sushy-tools $sushy_version (PyPI; about a minute)" >&2
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check --progress-bar off -q "sushy-tools==$sushy_version"
  touch "$venv/.sushy-$sushy_version"
fi

# What DMTF's redfishMockupServer.py imports (its requirements.txt: requests,
# grequests), pinned; made once like the sushy venv.
mockup_venv="${CARGO_TARGET_DIR:-target}/venv-mockup"
grequests_version=0.7.0
if [ ! -f "$mockup_venv/.grequests-$grequests_version" ]; then
  echo "test.sh: making $mockup_venv with grequests $grequests_version (PyPI)" >&2
  rm -rf "$mockup_venv"
  /usr/bin/python3 -m venv "$mockup_venv"
  "$mockup_venv/bin/pip" install --disable-pip-version-check --progress-bar off -q \
    "grequests==$grequests_version" "gevent==26.9.0" "requests==2.34.2"
  touch "$mockup_venv/.grequests-$grequests_version"
fi

# The whole suite runs tests/it/static_binary.rs, which needs the static
# build; build it first (quick profile) so it does not share the CPU with the
# running tests. With arguments (a part of the suite), that test builds it
# itself if it is selected.
if [ $# -eq 0 ]; then
  echo "test.sh: building the static binary (scripts/build-static.sh, PROFILE=static-test)" >&2
  PROFILE=static-test ./scripts/build-static.sh >/dev/null
fi

scripts/py-tools.sh >/dev/null

cargo test --locked "$@"
