#!/usr/bin/env bash
# Runs every test: unit and property tests, the process-level tests under
# tests/ (they start their own nodes and servers on free ports), and doc
# tests. Ends with one summary line over all test binaries. Builds with
# the `failpoints` feature: tests that inject faults a process cannot
# provoke from outside (src/failpoints.rs) need it; without it they are
# reported as ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --all-targets --features failpoints
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --features failpoints --no-fail-fast -- --test-threads=2 2>&1 | tee "$log" || status=$?
read -r passed failed < <(awk '/^test result:/ {
  for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i }
} END { print p + 0, f + 0 }' "$log")
echo
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
