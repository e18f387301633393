#!/usr/bin/env bash
# Compares tandem with redis-server on this machine, in one run, so the
# figures share the machine's current load and device:
#   - tandem (release build), default synchronous_commit=local: a write is
#     answered once its WAL group is fdatasync'ed;
#   - redis-server --appendonly yes --appendfsync always (durable per write);
#   - redis-server --appendonly yes --appendfsync everysec (not durable);
#   - tandem-off: tandem with synchronous_commit=off, 64 clients only: the
#     ceiling of any durable SET rate on these cores;
#   - a raw device baseline: 8 KiB pwrite+fdatasync latency on the same
#     file system (tools/fsync-probe), which bounds a durable c=1 SET.
# Each server runs alone on loopback on a free port in its own temp dir,
# is benchmarked with redis-benchmark (c=64 with N requests, c=1 with N1),
# and is stopped before the next starts. Prints one markdown table; ratios
# are requests/s against redis in the same run.
#
# Env: N (default 500000) requests at c=64; N1 (default 20000) at c=1;
#      KEYSPACE: if set, passed as redis-benchmark -r (random keys; by
#      default every SET/GET hits the one key "key:__rand_int__");
#      PROBE_COUNT (default 2000) fsync-probe writes;
#      SMOKE=1: tiny N, N1 and PROBE_COUNT, a check that everything runs.
# Leaves nothing behind: every process it started is stopped and its temp
# dir removed on exit (also on error or Ctrl-C).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
if [[ "${SMOKE:-0}" == 1 ]]; then
    N="${N:-2000}"
    N1="${N1:-200}"
    PROBE_COUNT="${PROBE_COUNT:-100}"
else
    N="${N:-500000}"
    N1="${N1:-20000}"
    PROBE_COUNT="${PROBE_COUNT:-2000}"
fi
RANDOM_KEYS=()
if [[ -n "${KEYSPACE:-}" ]]; then
    RANDOM_KEYS=(-r "$KEYSPACE")
fi

log() { echo "compare-redis: $*" >&2; }

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    log "installing redis-server and redis-tools"
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
    "${SUDO[@]}" apt-get install -y redis-server redis-tools >&2
fi

log "building tandem and fsync-probe (release)"
(cd "$ROOT" && cargo build --release --quiet --bin tandem --bin fsync-probe)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
TANDEM="$TARGET/release/tandem"
PROBE="$TARGET/release/fsync-probe"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/compare-redis.XXXXXX")"
SERVER_PID=""
TANDEM_METRICS_PORT=""
TANDEM_FSYNC="n/a"

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then stop_pid "$SERVER_PID"; fi
    SERVER_PID=""
}

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


wait_ready() {
    local port=$1 name=$2
    for _ in $(seq 200); do
        if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; then
            return
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "$name exited during start-up; its log:"
            cat "$WORK/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.05
    done
    log "$name did not answer PING on port $port"
    exit 1
}

start_redis() {
    local name=$1 fsync=$2 port=$3
    mkdir -p "$WORK/$name"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$name" \
        --appendonly yes --appendfsync "$fsync" --save '' \
        --daemonize no --logfile "$WORK/$name.log" &
    SERVER_PID=$!
    wait_ready "$port" "$name"
}

# start_tandem NAME PORT [SYNCHRONOUS_COMMIT]
start_tandem() {
    local name=$1 port=$2 sync=${3:-local}
    TANDEM_METRICS_PORT=$(free_port)
    printf 'synchronous_commit = "%s"\n' "$sync" >"$WORK/$name.toml"
    TANDEM_LOG=warn "$TANDEM" node --data-dir "$WORK/$name" --config "$WORK/$name.toml" \
        --listen "127.0.0.1:$port" --repl-listen "127.0.0.1:$(free_port)" \
        --metrics-listen "127.0.0.1:$TANDEM_METRICS_PORT" \
        >/dev/null 2>"$WORK/$name.log" &
    SERVER_PID=$!
    wait_ready "$port" "$name"
}

# Appends "system,clients,TEST,rps,p50_ms,p99_ms" lines to $WORK/results.
run_bench() {
    local name=$1 port=$2 clients=$3 n=$4
    log "$name: c=$clients n=$n"
    redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -c "$clients" -n "$n" -d 100 \
        "${RANDOM_KEYS[@]}" --csv |
        tr -d '"' |
        awk -F, -v sys="$name" -v c="$clients" \
            '$1 == "SET" || $1 == "GET" { print sys "," c "," $1 "," $2 "," $5 "," $7 }' \
            >>"$WORK/results"
}

# Mean WAL fdatasync latency (us) from tandem's own metrics, over the
# run so far: what its flusher saw from the device, beside the probe.
tandem_fsync_mean_us() {
    local text
    text="$(curl -s "http://127.0.0.1:$TANDEM_METRICS_PORT/metrics" 2>/dev/null || true)"
    awk '$1 == "tandem_wal_fsync_latency_seconds_sum" { s = $2 }
         $1 == "tandem_wal_fsync_latency_seconds_count" { n = $2 }
         END { if (n > 0) printf "%.0f us mean over %d fdatasyncs", s * 1e6 / n, n; else print "n/a" }' \
        <<<"$text"
}

bench_system() {
    local name=$1 port=$2
    run_bench "$name" "$port" 64 "$N"
    run_bench "$name" "$port" 1 "$N1"
    if [[ "$name" == tandem ]]; then TANDEM_FSYNC="$(tandem_fsync_mean_us)"; fi
    stop_server
}

# The device baseline, run twice: at the start and right after tandem's
# c=1 run (the last one), because fdatasync latency on a shared machine
# swings with other processes' I/O. The ratio uses the later probe.
probe() {
    local line
    log "fsync probe: $PROBE_COUNT x 8 KiB pwrite+fdatasync in $WORK"
    line="$("$PROBE" "$WORK" "$PROBE_COUNT")"
    log "$line"
    echo "$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$line"),$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")"
}
PROBE_FIRST="$(probe)"

: >"$WORK/results"
port=$(free_port)
start_redis redis-always always "$port"
bench_system redis-always "$port"
port=$(free_port)
start_redis redis-everysec everysec "$port"
bench_system redis-everysec "$port"
port=$(free_port)
start_tandem tandem "$port"
bench_system tandem "$port"
PROBE_LAST="$(probe)"
# The ceiling of a durable SET here: tandem answering before the WAL is
# durable (synchronous_commit=off), 64 clients only.
port=$(free_port)
start_tandem tandem-off "$port" off
run_bench tandem-off "$port" 64 "$N"
stop_server

KEYS_NOTE="one key"
if [[ -n "${KEYSPACE:-}" ]]; then KEYS_NOTE="-r $KEYSPACE"; fi
echo
echo "redis-benchmark -t set,get -d 100 ($KEYS_NOTE): c=64 n=$N, c=1 n=$N1;" \
    "$(redis-server --version | awk '{print $3}'), tandem $(git -C "$ROOT" rev-parse --short HEAD)"
echo
awk -F, -v first="$PROBE_FIRST" -v last="$PROBE_LAST" -v tandem_fsync="$TANDEM_FSYNC" '
    { sys[NR] = $1; c[NR] = $2; t[NR] = $3; rps[NR] = $4; p50[NR] = $5; p99[NR] = $6
      key = $2 "," $3
      if ($1 == "redis-always") always[key] = $4
      if ($1 == "redis-everysec") everysec[key] = $4
      if ($1 == "tandem" && $2 == 1 && $3 == "SET") tandem_set_p50 = $5
      if ($1 == "tandem-off" && $2 == 64 && $3 == "SET") off_set = $4 }
    function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "-" }
    END {
      print "| system | clients | test | requests/s | p50 ms | p99 ms | vs redis always | vs redis everysec |"
      print "|---|---:|---|---:|---:|---:|---:|---:|"
      for (i = 1; i <= NR; i++) {
        key = c[i] "," t[i]
        printf "| %s | %s | %s | %.0f | %s | %s | %s | %s |\n", sys[i], c[i], t[i], rps[i],
          p50[i], p99[i], ratio(rps[i], always[key]), ratio(rps[i], everysec[key])
      }
      print ""
      split(first, f, ","); split(last, l, ","); probe = l[1]
      printf "fsync probe (8 KiB pwrite+fdatasync, preallocated file, same fs):" \
        " p50 %d us, p99 %d us at the start; p50 %d us, p99 %d us after tandem c=1\n",
        f[1], f[2], l[1], l[2]
      printf "tandem WAL fdatasync (its own metrics, whole run): %s\n", tandem_fsync
      if (probe > 0 && tandem_set_p50 != "")
        printf "tandem c=1 SET p50 %.0f us = %.2f x the later fsync probe p50\n",
          tandem_set_p50 * 1000, tandem_set_p50 * 1000 / probe
      if (off_set != "" && always["64,SET"] > 0)
        printf "ceiling: tandem-off (synchronous_commit=off) SET c=64 %.0f/s = %.2f x redis always\n",
          off_set, off_set / always["64,SET"]
    }' "$WORK/results"
