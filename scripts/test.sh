#!/usr/bin/env bash
# Runs rekindle's whole test suite. Installs what the tests need when it is
# missing, so this one command works on a fresh Debian machine:
# - OpenSSH's sshd: the SSH tests start private sshd instances on loopback;
# - Chromium: the HTML report test takes a headless screenshot of it.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} (needed by the tests)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --locked "$@"
