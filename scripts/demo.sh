#!/usr/bin/env bash
# Builds Cairn (debug profile: the first build takes about 5 minutes on 2 cores, later ones
# seconds) and runs the demo: ingest the bundled attack story, correlate it, print the
# incidents and serve the API on http://127.0.0.1:8080. Extra arguments go to `cairn demo`
# (e.g. --once, --listen 127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ensure_rust
ensure_build_packages
# The same package selection as the tests, so demo and tests share every compiled crate.
cargo build --workspace --bins --locked
exec "$CARGO_TARGET_DIR/debug/cairn" demo "$@"
