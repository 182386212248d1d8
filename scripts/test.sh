#!/usr/bin/env bash
# Runs the whole test suite, first installing what the tests need (Debian packages) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v oathtool >/dev/null 2>&1 || need+=(oathtool)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# A real sshd (loopback, test-owned config) and a real PostgreSQL server (initdb in a temp dir).
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
# A node whose wall clock is off (LD_PRELOAD), for the several-nodes tests.
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(libfaketime)
# Replaying exported session recordings as a reviewer would.
command -v asciinema >/dev/null 2>&1 || need+=(asciinema)
# A real browser for the web UI tests (driven by Selenium through Debian's chromedriver).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing test dependencies: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A real SMTP server for the email-alert tests.
python3 -c 'import aiosmtpd' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check aiosmtpd
# A real PostgreSQL driver for the gateway tests (pure Python; uses the libpq psql brings).
python3 -c 'import psycopg' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check psycopg
# Selenium drives chromium for the web UI tests (crates/cli/tests/it/web_drive.py).
python3 -c 'import selenium' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check selenium

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
log=$(mktemp)
crash_log=$(mktemp)
trap 'rm -f "$log" "$crash_log"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# Crash-trial smoke run: 2 SIGKILLs of the real (debug) server under load, ~20 s; counted as one
# test. The 100-trial run is scripts/crash-trials.sh (RELIABILITY.md).
cargo build --quiet -p breakglass -p breakglass-bench
target_dir="${CARGO_TARGET_DIR:-target}"
BREAKGLASS_BIN="$target_dir/debug/breakglass" "$target_dir/debug/breakglass-bench" --crash-trials 2 --seed 16 >"$crash_log" 2>&1
crash=$?
cat "$crash_log" >>"$log"
if [ "$crash" -eq 0 ]; then
  grep -E '^\|' "$crash_log"
  echo "test result: ok. 1 passed; 0 failed; (crash-trial smoke run)" >>"$log"
else
  tail -40 "$crash_log"
  echo "test result: FAILED. 0 passed; 1 failed; (crash-trial smoke run)" >>"$log"
  status=1
fi
# Node-fault smoke run (issue 14): 3 nodes on one PostgreSQL store; kill -9, SIGSTOP 17 s,
# the store's PostgreSQL crashed and restarted, one node cut off; ~60 s, counted as one test.
# Timings are printed, not gated here; the full run is scripts/node-faults.sh (docs/NODE-FAULTS.md).
faults_log=$(mktemp)
if BREAKGLASS_BIN="$target_dir/debug/breakglass" "$target_dir/debug/breakglass-bench" --node-faults --smoke --seed 14 >"$faults_log" 2>&1; then
  grep -E '^\|' "$faults_log"
  echo "test result: ok. 1 passed; 0 failed; (node-fault smoke run)" >>"$log"
else
  grep -E '^\|' "$faults_log"
  tail -40 "$faults_log"
  echo "test result: FAILED. 0 passed; 1 failed; (node-fault smoke run)" >>"$log"
  status=1
fi
rm -f "$faults_log"
# Fuzzing smoke run: every fuzz target for 5 s from its corpus (scripts/fuzz.sh; the long runs
# and their figures are in RELIABILITY.md); counted as one test.
fuzz_log=$(mktemp)
if bash scripts/fuzz.sh --ci 5 >"$fuzz_log" 2>&1; then
  grep -E '^\|' "$fuzz_log"
  echo "test result: ok. 1 passed; 0 failed; (fuzzing smoke run)" >>"$log"
else
  tail -40 "$fuzz_log"
  echo "test result: FAILED. 0 passed; 1 failed; (fuzzing smoke run)" >>"$log"
  status=1
fi
rm -f "$fuzz_log"
set -e
# One closing line for the whole run (cargo prints one per test binary, the last often a doc-test
# binary with nothing in it).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
