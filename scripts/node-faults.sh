#!/usr/bin/env bash
# Node faults (issue 14): builds the release binaries, then runs 3 breakglass nodes on one
# PostgreSQL store under a load of short grants while one node is killed with SIGKILL, one is
# SIGSTOPped for 17 s, the store's PostgreSQL is crashed and restarted, and one node is cut off
# from the store; then checks from outside and prints a table. See docs/NODE-FAULTS.md.
#
#   scripts/node-faults.sh [GRANTS [SEED]]     defaults: 2000 grants, seed 14
#
# Needs what the integration tests need (postgresql, openssh-server, openssh-client; the first
# lines of scripts/test.sh install them). Extra arguments go to the driver (e.g. --clients 8).
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--node-faults --grants "${1:-2000}" --seed "${2:-14}")
shift $(( $# < 2 ? $# : 2 ))
cargo build --release -p breakglass -p breakglass-bench
exec ./target/release/breakglass-bench "${args[@]}" "$@"
