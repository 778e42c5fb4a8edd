#!/usr/bin/env bash
# Builds rekindle as one fully static x86_64 Linux executable: no dynamic
# loader, no shared libraries, so the same file runs on any x86_64 Linux
# bastion (any distribution, any glibc, or none: an empty chroot).
#
#   scripts/build-static.sh            # release build; prints the binary's path
#   PROFILE=static-test scripts/build-static.sh   # quick, unoptimised (the tests')
#
# How: glibc linked statically (`-C target-feature=+crt-static` on the
# x86_64-unknown-linux-gnu target; `--target` keeps build scripts and proc
# macros, which must stay dynamic, out of it), and the `dns` feature, so
# rekindle resolves host names itself (/etc/hosts, then DNS from
# /etc/resolv.conf): a static glibc's getaddrinfo would load NSS modules at
# run time. The getrandom crate is told to call the getrandom(2) system call
# (`getrandom_backend="linux_getrandom"`): by default it looks the libc
# function up with dlsym, which a static binary cannot do, and falls back to
# /dev/urandom, which an empty chroot does not have. Checks the result with
# `file` and `ldd` and fails if it is not static. Honours CARGO_TARGET_DIR;
# extra cargo arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-release}"
TARGET=x86_64-unknown-linux-gnu
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

[ "$(uname -m)" = x86_64 ] || { echo "build-static.sh: builds for x86_64 only (this is $(uname -m))" >&2; exit 2; }
# The static C library (Debian: libc6-dev, which any Rust toolchain on Debian needs).
for lib in libc.a libm.a libpthread.a; do
  [ -n "$(gcc -print-file-name="$lib" 2>/dev/null | grep /)" ] \
    || { echo "build-static.sh: no static $lib (install libc6-dev)" >&2; exit 2; }
done

RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
  cargo build --locked --profile "$PROFILE" --target "$TARGET" --features dns --bin rekindle "$@"

bin="$TARGET_DIR/$TARGET/$PROFILE/rekindle"
description="$(file -b "$bin")"
case "$description" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "build-static.sh: $bin is not static: $description" >&2; exit 1 ;;
esac
# A static(-pie) binary: "not a dynamic executable" (exit 1) or "statically linked".
libraries="$(ldd "$bin" 2>&1 || true)"
case "$libraries" in
  *"not a dynamic executable"* | *"statically linked"*) ;;
  *) echo "build-static.sh: $bin needs shared libraries:" >&2; echo "$libraries" >&2; exit 1 ;;
esac
echo "$bin"
