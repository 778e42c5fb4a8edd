#!/usr/bin/env bash
# Runs rekindle's whole test suite. Installs what the tests need when it is
# missing (OpenSSH's sshd, started privately by the SSH tests), so this one
# command works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/sbin/sshd ]; then
  echo "test.sh: installing openssh-server (the SSH tests start private sshd instances)" >&2
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssh-server >/dev/null
fi

cargo test --locked "$@"
