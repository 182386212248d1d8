#!/usr/bin/env bash
# Crash trials (issue 16): builds the release binaries, then kills the real server with SIGKILL
# TRIALS times under a mixed load (real PostgreSQL, real sshd, a webhook receiver) and checks
# after each restart that nothing was orphaned, lost or audited wrongly. See RELIABILITY.md.
#
#   scripts/crash-trials.sh [TRIALS [SEED]]     defaults: 100 trials, a random seed (printed)
#
# Needs what the integration tests need (postgresql, openssh-server, openssh-client; the
# first lines of scripts/test.sh install them). Extra arguments after SEED go to the driver
# (e.g. --clients 6, --verbose).
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-100}
args=(--crash-trials "$trials")
if [ -n "${2:-}" ]; then
  args+=(--seed "$2")
fi
shift $(( $# < 2 ? $# : 2 ))
cargo build --release -p breakglass -p breakglass-bench
exec ./target/release/breakglass-bench "${args[@]}" "$@"
