#!/usr/bin/env bash
# Installs the peers the benchmarks compare against and builds rekindle (release).
source "$(dirname "$0")/lib.sh"
install_peers
build_release
peer_versions
