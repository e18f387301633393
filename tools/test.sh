#!/usr/bin/env bash
# Runs every test: unit and property tests, and the process-level tests
# under tests/ (they start their own nodes and servers on free ports).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --all-targets
cargo test --release -- --test-threads=2
