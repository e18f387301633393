#!/usr/bin/env bash
# The main job: builds tandem, starts a node on a free loopback port in a
# temporary directory, loads a TPC-B-shaped data set with tandem-bench,
# runs the TPC-B mix under load with a live progress line, SIGKILLs the
# node mid-run and restarts it (crash recovery under load), checks
# consistency, and prints the report; the plot goes to demo-report.svg.
# Replication, switchover and failover join this demo as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
CLIENTS=${CLIENTS:-16}
OUT=${OUT:-$PWD/demo-report}

cargo build --release --bins >/dev/null
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d /tmp/tandem-demo.XXXXXX)
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill -9 "$node_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
metrics=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_node() {
  "$BIN/tandem" node --data-dir "$work/data" --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$metrics" >>"$work/node.log" 2>&1 &
  node_pid=$!
  for _ in $(seq 1 300); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "node did not start:"; cat "$work/node.log"; exit 1
}

echo "== starting a tandem node on 127.0.0.1:$port (data in $work/data)"
start_node
echo "== tandem-bench init -s 1"
"$BIN/tandem-bench" init -s 1 -p "$port"
echo "== tandem-bench run --mix tpcb -c $CLIENTS -j 2 -T $DURATION (SIGKILL + restart at $((DURATION / 2)) s)"
"$BIN/tandem-bench" run --mix tpcb -c "$CLIENTS" -j 2 -T "$DURATION" -P 1 \
  --hosts "127.0.0.1:$port" --mark "$((DURATION / 2))s:kill -9 + restart" \
  --json "$OUT.json" --plot "$OUT.svg" &
bench=$!
sleep "$((DURATION / 2))"
kill -9 "$node_pid"; wait "$node_pid" 2>/dev/null || true
echo "== node SIGKILLed; restarting (crash recovery)"
start_node
wait "$bench"
echo "== consistency check (sum of accounts = tellers = branches = history)"
"$BIN/tandem-bench" check -p "$port"
echo "== metrics excerpt"
curl -s "127.0.0.1:$metrics/metrics" | grep -E '^tandem_(commits_total|wal_fsyncs_total|wal_batch_groups_(sum|count)|checkpoints_total)' || true
echo "== report: $OUT.json, plot: $OUT.svg"
