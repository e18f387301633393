#!/usr/bin/env bash
# A/B of two tandem builds on this machine, alternating, so both see the
# same load and device (this shared VM drifts 10-20 % within minutes).
# Each round runs, for A then B:
#   - primary + one synchronous standby (`on`, FIRST 1 (s1)), tandem-bench
#     `--mix simple-update` at 1 and 64 clients and `--mix tpcb` at 64;
#   - a single node (`local`), redis-benchmark SET `-d 100` at 1 and 64
#     clients.
# Prints one line per measurement: build, load, clients, rate, p50.
#
# Usage: perf/ab.sh A_DIR B_DIR   (each holds `tandem` and `tandem-bench`,
#        e.g. target/release of two worktrees)
# Env:   ROUNDS (default 3), T seconds per tandem-bench run (default 6),
#        N / N1 redis-benchmark requests at 64 / 1 clients (default 300000
#        / 20000), A_CONFIG / B_CONFIG: a TOML file given to every node of
#        that build (e.g. to compare settings of one build: A_DIR = B_DIR).
# Every process it starts is stopped and every temp dir removed on exit.
# This is how the side-by-side figures of README "Benchmarking" (session
# of 2026-11-27) were taken.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
source perf/lib.sh

[ $# -eq 2 ] || { echo "usage: perf/ab.sh A_DIR B_DIR" >&2; exit 2; }
A_DIR=$1 B_DIR=$2
ROUNDS=${ROUNDS:-3} T=${T:-6} N=${N:-300000} N1=${N1:-20000}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_ping() {
    for _ in $(seq 200); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "node on port $1 did not answer; the nodes' logs:" >&2
    find "$WORK" -name '*.log' -exec tail -n 5 {} + >&2 || true
    return 1
}

# node DIR DATA PORT [flags...]: starts a node, echoes its pid.
node() {
    local dir=$1 data=$2 port=$3 conf=$4
    shift 4
    "$dir/tandem" node --data-dir "$data" --listen "127.0.0.1:$port" \
        --repl-listen "127.0.0.1:$(free_port)" ${conf:+--config "$conf"} "$@" \
        >/dev/null 2>"$data.log" &
    echo $!
}

# replicated NAME DIR CONF
replicated() {
    local name=$1 dir=$2 conf=$3 w p1 r1 p2 pid1 pid2 c mix j
    w=$(mktemp -d -p "$WORK")
    p1=$(free_port) r1=$(free_port) p2=$(free_port)
    "$dir/tandem" node --data-dir "$w/p" --listen "127.0.0.1:$p1" \
        --repl-listen "127.0.0.1:$r1" --name p --cluster-secret s \
        ${conf:+--config "$conf"} --synchronous-commit on \
        --synchronous-standby-names 'FIRST 1 (s1)' >/dev/null 2>"$w/p.log" &
    pid1=$!; PIDS+=("$pid1")
    wait_ping "$p1"
    "$dir/tandem" build --from "127.0.0.1:$r1" --data-dir "$w/s1" --name s1 \
        --cluster-secret s --quiet >/dev/null 2>&1
    pid2=$(node "$dir" "$w/s1" "$p2" "$conf" --name s1 --cluster-secret s)
    PIDS+=("$pid2")
    for _ in $(seq 200); do
        redis-cli -p "$p1" info replication | grep -q "sync_state=sync" && break
        sleep 0.05
    done
    "$dir/tandem-bench" init -s 1 -p "$p1" >/dev/null 2>&1
    for run in "simple-update 1" "simple-update 64" "tpcb 64"; do
        read -r mix c <<<"$run"
        j=2; [ "$c" -lt 2 ] && j=1
        "$dir/tandem-bench" run --mix "$mix" -c "$c" -j "$j" -T "$T" -p "$p1" \
            --json "$w/r.json" >/dev/null 2>&1
        printf '%s on %s c=%s tps=%.0f p50=%s ms\n' "$name" "$mix" "$c" \
            "$(json_field "$w/r.json" tps)" "$(json_field "$w/r.json" latency_p50_ms)"
    done
    stop_pid "$pid2"; stop_pid "$pid1"
}

# single NAME DIR CONF
single() {
    local name=$1 dir=$2 conf=$3 w p pid c n
    w=$(mktemp -d -p "$WORK")
    p=$(free_port)
    pid=$(node "$dir" "$w/d" "$p" "$conf" --synchronous-commit local)
    PIDS+=("$pid")
    wait_ping "$p"
    for c in 1 64; do
        n=$N; [ "$c" = 1 ] && n=$N1
        redis-benchmark -p "$p" -t set -c "$c" -n "$n" -d 100 --csv | tr -d '"' |
            awk -F, -v b="$name" -v c="$c" 'NR>1{printf "%s local redis-benchmark SET c=%s rps=%.0f p50=%s ms\n", b, c, $2, $5}'
    done
    stop_pid "$pid"
}

for round in $(seq "$ROUNDS"); do
    echo "# round $round"
    replicated A "$A_DIR" "${A_CONFIG:-}"
    replicated B "$B_DIR" "${B_CONFIG:-}"
    single A "$A_DIR" "${A_CONFIG:-}"
    single B "$B_DIR" "${B_CONFIG:-}"
done
