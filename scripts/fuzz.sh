#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser and decoder that takes outside input, on the stable
# toolchain: the targets in fuzz/fuzz_targets are built with LLVM's SanitizerCoverage passes
# (stable -C flags, the ones cargo-fuzz passes; no nightly, no cargo-fuzz, no AddressSanitizer —
# the code has no `unsafe`, so what a fuzzer can find is a panic, an overflow or a hang) and
# linked with libFuzzer by libfuzzer-sys. Each target runs for SECONDS from its corpus in
# fuzz/corpus/TARGET (kept in the repository); new inputs that add coverage are merged back.
#
#   scripts/fuzz.sh [--ci] [SECONDS] [TARGET...]
#
# Default 60 s per target, every target. --ci: runs from the corpus without merging anything back
# (what scripts/test.sh does, briefly). Prints a table (target, seconds, executions, exec/s,
# corpus inputs, crashes) and exits non-zero if any target crashed; a crashing input is kept in
# fuzz/artifacts/TARGET/ — reproduce with `fuzz/target/x86_64-unknown-linux-gnu/release/TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

ci=0
if [ "${1:-}" = "--ci" ]; then ci=1; shift; fi
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^breakglass-fuzz$')
fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
# Its own target directory: the coverage flags make every crate a different build anyway.
export CARGO_TARGET_DIR="$PWD/target"
# The target triple is explicit so the flags reach the targets and not build scripts.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
cargo build --quiet --release --target "$triple" "${bins[@]}"

rows=()
failed=0
for t in "${targets[@]}"; do
  corpus="corpus/$t"
  artifacts="artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  fresh="$(mktemp -d)"
  log="$(mktemp)"
  set +e
  # 1 s per input at most (a hang is a finding), 2 GiB of RSS, inputs up to 64 KiB.
  "target/$triple/release/$t" -max_total_time="$secs" -timeout=1 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" \
    "$fresh" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  crashes=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  if [ "$rc" -ne 0 ]; then
    failed=1
    [ "$crashes" -gt 0 ] || crashes=1
    echo "== $t failed (exit $rc):" >&2
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" >&2 || tail -20 "$log" >&2
  fi
  if [ "$ci" -eq 0 ]; then
    # Keep only what adds coverage: the repository's corpus stays small.
    "target/$triple/release/$t" -merge=1 -max_len=65536 "$corpus" "$fresh" >/dev/null 2>&1 || true
  fi
  n=$(find "$corpus" -type f | wc -l)
  runs=${runs:-0}
  took=${took:-$secs}
  rate=$(( runs / (took > 0 ? took : 1) ))
  rows+=("| $t | $took | $runs | $rate | $n | $crashes |")
  rm -rf "$fresh" "$log"
done

echo "| target | seconds | executions | exec/s | corpus inputs | crashes |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
