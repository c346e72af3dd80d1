#!/usr/bin/env bash
# Fuzzes every target (or the ones named) for a bounded time each, one after the other,
# then prints per-target figures. Installs the pinned cargo-fuzz when it is missing.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     SECONDS per target: $FUZZ_SECONDS, else 60
#   FUZZ_CMIN=1 fuzz/run.sh ...           also minimize each corpus afterwards (commit that)
#
# The stable toolchain is enough: RUSTC_BOOTSTRAP=1 lets it take the -Z flags cargo-fuzz
# passes (sanitizer, coverage). New inputs go to fuzz/corpus/TARGET (committed once
# minimized), starting from the hand-written fuzz/seeds/TARGET; crash inputs go to
# fuzz/artifacts/TARGET. CI does not fuzz: `cargo test --workspace` replays these dirs
# (shared/tests/fuzz_regressions.rs, aws/tests/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(ws_frame http_request jwt stream_record)

seconds=${1:-${FUZZ_SECONDS:-60}}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")

export RUSTC_BOOTSTRAP=1
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# -a: debug assertions and overflow checks on, so an arithmetic overflow is a finding.
cargo fuzz build -a

logs=fuzz/target/logs
mkdir -p "$logs"
summary=()
found=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  crashes_before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  echo "== $t: ${seconds}s"
  status=0
  cargo fuzz run -a "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$logs/$t.log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
  if [ "${FUZZ_CMIN:-0}" = 1 ] && [ "$status" = 0 ]; then
    # Edge coverage only (no hit counters) and a set cover: a few hundred files.
    cargo fuzz cmin -a "$t" "fuzz/corpus/$t" -- -use_counters=0 -set_cover_merge=1 \
      >"$logs/$t.cmin.log" 2>&1
  fi
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(( $(find "fuzz/artifacts/$t" -type f | wc -l) - crashes_before ))
  [ "$status" != 0 ] && found=1 && tail -30 "$logs/$t.log"
  summary+=("$(printf '%-14s %6ss %12s execs %8s/s %6s corpus %3s new crashes (exit %s)' \
    "$t" "$seconds" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes" "$status")")
done

echo
printf '%s\n' "${summary[@]}"
echo "logs: $logs/"
exit "$found"
