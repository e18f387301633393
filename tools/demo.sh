#!/usr/bin/env bash
# The main job: builds tandem, starts a primary on free loopback ports in a
# temporary directory, loads a TPC-B-shaped data set with tandem-bench and
# runs the TPC-B mix with a live progress line. During the run it builds a
# standby from the primary (the primary keeps serving), starts it, turns on
# synchronous commit (`on`, the standby named in synchronous_standby_names),
# then SIGKILLs the primary and restarts it (crash recovery; the standby
# reconnects). At the end: the consistency check on both nodes, equal page
# digests, `tandemctl query`, the report, and the plot (demo-report.svg)
# with the events marked. Switchover and failover join when they land.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-24}
CLIENTS=${CLIENTS:-16}
OUT=${OUT:-$PWD/demo-report}

cargo build --release --bins >/dev/null
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d /tmp/tandem-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p_port=$(free_port); p_repl=$(free_port); p_metrics=$(free_port)
s_port=$(free_port); s_repl=$(free_port)
secret=demo-secret-$RANDOM

wait_ping() {
  for _ in $(seq 1 600); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "node on port $1 did not start"; cat "$work"/*.log; exit 1
}
start_primary() {
  "$BIN/tandem" node --data-dir "$work/primary" --listen "127.0.0.1:$p_port" \
    --repl-listen "127.0.0.1:$p_repl" --metrics-listen "127.0.0.1:$p_metrics" \
    --name primary --cluster-secret "$secret" \
    --synchronous-standby-names 'FIRST 1 (standby1)' >>"$work/primary.log" 2>&1 &
  primary_pid=$!; pids+=("$primary_pid")
  wait_ping "$p_port"
}

echo "== primary on 127.0.0.1:$p_port (replication port $p_repl, data in $work)"
start_primary
"$BIN/tandem-bench" init -s 1 -p "$p_port"
t0=$(date +%s.%N)
at() { python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}s')"; }
# Event marks at fixed offsets: what the script does at those moments.
b=$((DURATION / 6)); s=$((DURATION / 3)); k=$((DURATION * 2 / 3))
echo "== tandem-bench run --mix tpcb -c $CLIENTS -j 2 -T $DURATION"
"$BIN/tandem-bench" run --mix tpcb -c "$CLIENTS" -j 2 -T "$DURATION" -P 2 \
  --hosts "127.0.0.1:$p_port" \
  --mark "${b}s:build standby" --mark "${s}s:sync commit on" --mark "${k}s:kill -9 primary" \
  --json "$OUT.json" --plot "$OUT.svg" &
bench=$!
sleep "$b"
echo "== [$(at)] tandem build: a standby from the primary while it serves"
"$BIN/tandem" build --from "127.0.0.1:$p_repl" --data-dir "$work/standby" --name standby1 \
  --cluster-secret "$secret" --quiet
"$BIN/tandem" node --data-dir "$work/standby" --listen "127.0.0.1:$s_port" \
  --repl-listen "127.0.0.1:$s_repl" --name standby1 --cluster-secret "$secret" >>"$work/standby.log" 2>&1 &
pids+=("$!")
wait_ping "$s_port"
sleep $((s - b > 0 ? s - b : 0))
echo "== [$(at)] CONFIG SET synchronous_commit on (commits wait for standby1's flush)"
redis-cli -p "$p_port" config set synchronous_commit on >/dev/null
sleep $((k - s))
echo "== [$(at)] SIGKILL the primary, restart it (crash recovery; the standby reconnects)"
kill -9 "$primary_pid"; wait "$primary_pid" 2>/dev/null || true
start_primary
redis-cli -p "$p_port" config set synchronous_commit on >/dev/null
wait "$bench"
echo "== waiting for the standby to apply everything"
for _ in $(seq 1 600); do
  p=$(redis-cli -p "$p_port" info replication | tr -d '\r' | sed -n 's/^flush_lsn://p')
  a=$(redis-cli -p "$s_port" info replication | tr -d '\r' | sed -n 's/^applied_lsn://p')
  [ -n "$p" ] && [ "$p" = "$a" ] && break
  sleep 0.05
done
echo "== consistency check on the primary and on the standby"
"$BIN/tandem-bench" check -p "$p_port"
"$BIN/tandem-bench" check -p "$s_port"
echo "== page digests (equal = byte-identical pages)"
"$BIN/tandemctl" digest --host "127.0.0.1:$p_port"
"$BIN/tandemctl" digest --host "127.0.0.1:$s_port"
pd=$("$BIN/tandemctl" digest --host "127.0.0.1:$p_port" | awk '{print $NF}')
sd=$("$BIN/tandemctl" digest --host "127.0.0.1:$s_port" | awk '{print $NF}')
[ "$pd" = "$sd" ] || { echo "DIGESTS DIFFER"; exit 1; }
echo "== tandemctl query"
"$BIN/tandemctl" query --host "127.0.0.1:$p_port"
echo "== metrics excerpt"
curl -s "127.0.0.1:$p_metrics/metrics" | grep -E '^tandem_(commits_total|wal_fsyncs_total|wal_batch_groups_(sum|count)|repl_ack_flushed_seconds_(sum|count))' || true
echo "== report: $OUT.json, plot: $OUT.svg"
