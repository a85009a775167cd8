#!/usr/bin/env bash
# Runs every test of Cairn on a fresh machine: installs what the build needs, builds the
# `cairn` binary (the end-to-end tests run it), then runs all tests with cargo-nextest
# (or cargo test where nextest is not installed) and prints the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ensure_rust
ensure_build_packages
ensure_test_packages
ensure_moto
start=$(date +%s)
cargo build --workspace --bins --locked
# Doc tests first: nextest does not run them, and its summary should be the last thing shown.
doc_log=$(mktemp)
if ! cargo test --workspace --doc --locked --quiet >"$doc_log" 2>&1; then
    cat "$doc_log"; rm -f "$doc_log"
    echo "doc tests failed" >&2
    exit 1
fi
rm -f "$doc_log"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --lib --bins --tests --locked --no-fail-fast
fi
echo "All tests passed in $(( $(date +%s) - start )) s (target: $CARGO_TARGET_DIR)"
