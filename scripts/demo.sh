#!/usr/bin/env bash
# Runs breakglass on the embedded store with the demo policy, printing how to break glass.
# Usage: scripts/demo.sh [DATA_DIR]   (default: ./demo-data; listens on 127.0.0.1:8700)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-./demo-data}"
cargo build --release --quiet --bin breakglass
bin=./target/release/breakglass
"$bin" init --data-dir "$data"
exec "$bin" serve --data-dir "$data" --policy examples/demo-policy.yaml --listen "${BREAKGLASS_LISTEN:-127.0.0.1:8700}"
