#!/usr/bin/env bash
# Runs every test: unit and property tests, the process-level tests under
# tests/ (they start their own nodes and servers on free ports), and doc
# tests. Ends with one summary line over all test binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release -- --test-threads=2 2>&1 | tee "$log" || status=$?
read -r passed failed < <(awk '/^test result:/ {
  for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i }
} END { print p + 0, f + 0 }' "$log")
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
