#!/usr/bin/env bash
# Profiles a tandem node under TPC-B load on loopback:
#   1. starts a node (synchronous_commit=local) in a temp dir on free ports,
#      tandem-bench init -s 1, then tandem-bench run --mix tpcb -c 32 -j 2
#      -T 20 in the background;
#   2. after a warm-up, `perf record -F 999 -g -p PID` for RECORD_SECS (10);
#   3. a flame graph SVG: perf script | inferno-collapse-perf |
#      inferno-flamegraph > perf/results/flame-<date>.svg;
#   4. the top 25 symbols (perf report --no-children --sort sym);
#   5. counters per transaction: perf stat -e task-clock,context-switches,
#      cpu-migrations,cycles,instructions -p PID around a second, measured
#      tandem-bench run (-T STAT_SECS), divided by its transactions. Machines
#      without a PMU (VMs) report cycles/instructions "not supported": then
#      task-clock and context switches are the figures;
#   6. optionally (CALLGRIND=1) instructions per transaction under
#      valgrind --tool=callgrind for a short fixed run (-t per client).
#      valgrind 3.19 does not emulate io_uring: here the node never answers
#      PING under it, so after 30 s this step reports "skipped".
# Installs linux-perf (perf) and inferno (cargo install) when missing. When
# the kernel forbids perf (perf_event_paranoid, seccomp) it says so and
# exits 0. Text output also goes to perf/results/profile-<date>.txt.
#
# Env: CLIENTS (32), LOAD_SECS (20), RECORD_SECS (10), WARMUP_SECS (4),
#      STAT_SECS (10), CALLGRAPH (fp = -g; dwarf = --call-graph dwarf, deeper
#      Rust stacks, bigger data), CALLGRIND (0), OUTDIR (perf/results).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
CLIENTS="${CLIENTS:-32}"
LOAD_SECS="${LOAD_SECS:-20}"
RECORD_SECS="${RECORD_SECS:-10}"
WARMUP_SECS="${WARMUP_SECS:-4}"
STAT_SECS="${STAT_SECS:-10}"
CALLGRAPH="${CALLGRAPH:-fp}"
CALLGRIND="${CALLGRIND:-0}"
OUTDIR="${OUTDIR:-$ROOT/perf/results}"
DATE="$(date +%Y-%m-%d-%H%M)"
JOBS=2

log() { echo "profile: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}
SUDO=()
if [[ "$(id -u)" != 0 ]]; then SUDO=(sudo); fi
apt_install() {
    log "installing $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 ||
        { "${SUDO[@]}" apt-get update >&2 && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; }
}

# ---------------------------------------------------------------- tools
if ! command -v perf >/dev/null; then apt_install linux-perf; fi
command -v perf >/dev/null || die "no perf after installing linux-perf"

perf_works() { perf stat -e task-clock -o /dev/null -- true >/dev/null 2>&1; }
if ! perf_works; then
    log "perf cannot open events here (kernel.perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo '?'))"
    if [[ "$(id -u)" == 0 ]]; then
        log "trying: sysctl kernel.perf_event_paranoid=1"
        sysctl -w kernel.perf_event_paranoid=1 >&2 || true
    fi
    if ! perf_works; then
        echo "profile: perf is not allowed on this machine (perf_event_open refused:"
        echo "  kernel.perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo '?'), or a container seccomp profile)."
        echo "  As root: sysctl kernel.perf_event_paranoid=1 (or run the container with"
        echo "  --cap-add PERFMON / --privileged). Nothing was profiled."
        exit 0
    fi
fi

if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    if [[ -x "$HOME/.cargo/bin/inferno-flamegraph" ]]; then
        PATH="$HOME/.cargo/bin:$PATH"
    else
        log "installing inferno (cargo install inferno)"
        cargo install --quiet --locked inferno >&2 || cargo install --quiet inferno >&2
        PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

log "building tandem and tandem-bench (release)"
(cd "$ROOT" && cargo build --release --quiet --bin tandem --bin tandem-bench)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
TANDEM="$TARGET/release/tandem"
BENCH="$TARGET/release/tandem-bench"

mkdir -p "$OUTDIR"
SVG="$OUTDIR/flame-$DATE.svg"
TXT="$OUTDIR/profile-$DATE.txt"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/profile.XXXXXX")"
NODE_PID=""
BG_PIDS=()

cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do stop_pid "$pid" INT; done
    if [[ -n "$NODE_PID" ]]; then stop_pid "$NODE_PID"; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

total_commits() { resp "$1" INFO stats | sed -n 's/^total_commits:\([0-9]*\).*/\1/p'; }

# ---------------------------------------------------------------- node
PORT=$(free_port)
RPORT=$(free_port)
while [[ "$RPORT" == "$PORT" ]]; do RPORT=$(free_port); done
TANDEM_LOG="${TANDEM_LOG:-warn}" "$TANDEM" node --data-dir "$WORK/node" \
    --listen "127.0.0.1:$PORT" --repl-listen "127.0.0.1:$RPORT" \
    >"$WORK/node.out" 2>"$WORK/node.log" &
NODE_PID=$!
for _ in $(seq 300); do
    [[ "$(resp "$PORT" PING)" == "+PONG" ]] && break
    kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/node.log" >&2; die "tandem node exited"; }
    sleep 0.1
done
[[ "$(resp "$PORT" PING)" == "+PONG" ]] || die "tandem node did not answer PING"
log "node pid $NODE_PID on port $PORT; tandem-bench init -s 1"
"$BENCH" init -s 1 -p "$PORT" >"$WORK/init.out" 2>&1 || { cat "$WORK/init.out" >&2; die "init failed"; }

# Everything printed from here on also goes to $TXT.
exec > >(tee "$TXT")
TEE_PID=$!
echo "# tandem profile, $(date -u '+%Y-%m-%d %H:%M UTC'), tandem $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "host: $(nproc) cores, $(uname -r); load: tandem-bench run --mix tpcb -c $CLIENTS -j $JOBS -T $LOAD_SECS (synchronous_commit=local)"
echo

# ---------------------------------------------------------------- record
log "load: tandem-bench run --mix tpcb -c $CLIENTS -j $JOBS -T $LOAD_SECS"
"$BENCH" run --mix tpcb -c "$CLIENTS" -j "$JOBS" -T "$LOAD_SECS" -p "$PORT" \
    --json "$WORK/load.json" >"$WORK/load.out" 2>&1 &
LOAD_PID=$!
BG_PIDS+=("$LOAD_PID")
sleep "$WARMUP_SECS"
CG=(-g)
if [[ "$CALLGRAPH" == dwarf ]]; then CG=(--call-graph "dwarf,16384"); fi
log "perf record -F 999 ${CG[*]} -p $NODE_PID for $RECORD_SECS s"
if ! perf record -F 999 "${CG[@]}" -p "$NODE_PID" -o "$WORK/perf.data" -- sleep "$RECORD_SECS" \
    >"$WORK/record.out" 2>&1; then
    cat "$WORK/record.out" >&2
    echo "profile: perf record failed (see above); the kernel may forbid sampling here. Nothing was profiled."
    exit 0
fi
wait "$LOAD_PID" || { cat "$WORK/load.out" >&2; die "the load run failed"; }
BG_PIDS=()
echo "load run: $(grep -E '^tps|^latency p50' "$WORK/load.out" | tr '\n' ' ')"
echo "perf record: $(grep -o "[0-9]* samples" "$WORK/record.out" | awk "NR == 1" || true)"

log "perf script | inferno-collapse-perf | inferno-flamegraph"
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf >"$WORK/folded"
inferno-flamegraph --title "tandem: tpcb -c $CLIENTS, $RECORD_SECS s, perf -F 999 ${CG[*]}" \
    <"$WORK/folded" >"$SVG"
echo "flame graph: $SVG"
echo
echo "## Top 25 symbols (perf report --no-children --sort sym, self time)"
echo
perf report -i "$WORK/perf.data" --no-children --sort sym -g none --stdio 2>/dev/null |
    grep -v -e '^#' -e '^$' | awk 'NR <= 25'
echo
echo "## Time by thread (perf report --sort comm, self time)"
echo
perf report -i "$WORK/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null |
    grep -v -e '^#' -e '^$' | awk 'NR <= 12'
echo

# ---------------------------------------------------------------- stat
log "perf stat around a measured run: tandem-bench run --mix tpcb -c $CLIENTS -T $STAT_SECS"
C0=$(total_commits "$PORT")
perf stat -x, -e task-clock,context-switches,cpu-migrations,cycles,instructions \
    -p "$NODE_PID" -o "$WORK/stat.csv" &
STAT_PID=$!
BG_PIDS+=("$STAT_PID")
sleep 0.3
"$BENCH" run --mix tpcb -c "$CLIENTS" -j "$JOBS" -T "$STAT_SECS" -p "$PORT" \
    --json "$WORK/stat.json" >"$WORK/stat-run.out" 2>&1 || { cat "$WORK/stat-run.out" >&2; die "measured run failed"; }
kill -INT "$STAT_PID"
wait "$STAT_PID" 2>/dev/null || true
BG_PIDS=()
C1=$(total_commits "$PORT")
TX=$(awk '$1 == "\"transactions\":" { v = $2; sub(/,$/, "", v); print v; exit }' "$WORK/stat.json")
TPS=$(awk '$1 == "\"tps\":" { v = $2; sub(/,$/, "", v); print v; exit }' "$WORK/stat.json")
echo "## Counters per transaction (perf stat -p $NODE_PID, whole node, over a $STAT_SECS s run)"
echo
echo "transactions: $TX (tps $(printf '%.0f' "$TPS")); server commits in the window: $((C1 - C0))"
echo
awk -F, -v tx="$TX" '
    /^#/ || NF < 3 { next }
    { val = $1; unit = $2; ev = $3
      if (val ~ /not supported|not counted/) { unsupported = unsupported " " ev; printf "| %s | %s | - |\n", ev, val; next }
      if (ev ~ /task-clock/) printf "| %s | %.0f ms | %.1f us/tx |\n", ev, val, val * 1000 / tx
      else printf "| %s | %.0f | %.3f /tx |\n", ev, val, val / tx }
    BEGIN { print "| counter | total | per transaction |"; print "|---|---:|---:|" }
    END { if (unsupported != "")
        printf "\nHardware counters not supported here (no PMU exposed to this VM):%s;\nper-transaction cost is given by task-clock (CPU time) and context switches instead.\n", unsupported }
    ' "$WORK/stat.csv"
echo

# ---------------------------------------------------------------- callgrind
if [[ "$CALLGRIND" == 1 ]]; then
    if ! command -v valgrind >/dev/null; then apt_install valgrind; fi
    CGPORT=$(free_port)
    CGRPORT=$(free_port)
    log "callgrind: a second node under valgrind --tool=callgrind"
    stop_pid "$NODE_PID"
    NODE_PID=""
    TANDEM_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
        "$TANDEM" node --data-dir "$WORK/node" --listen "127.0.0.1:$CGPORT" \
        --repl-listen "127.0.0.1:$CGRPORT" >"$WORK/cg.out" 2>"$WORK/cg.log" &
    NODE_PID=$!
    for _ in $(seq 150); do
        [[ "$(resp "$CGPORT" PING)" == "+PONG" ]] && break
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.2
    done
    if [[ "$(resp "$CGPORT" PING)" == "+PONG" ]]; then
        CG_TX_PER_CLIENT=${CG_TX_PER_CLIENT:-200}
        CG_CLIENTS=${CG_CLIENTS:-4}
        "$BENCH" run --mix tpcb -c "$CG_CLIENTS" -j 1 -t "$CG_TX_PER_CLIENT" -p "$CGPORT" >/dev/null 2>&1 || true
        resp "$CGPORT" SHUTDOWN >/dev/null || true
        stop_pid "$NODE_PID"
        NODE_PID=""
        IR=$(callgrind_annotate "$WORK/callgrind.out" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
        echo "## callgrind: $((CG_CLIENTS * CG_TX_PER_CLIENT)) tpcb transactions (plus start-up and shutdown)"
        echo "instructions: $IR total, about $((IR / (CG_CLIENTS * CG_TX_PER_CLIENT))) per transaction (upper bound)"
    else
        echo "callgrind: tandem did not answer PING within 30 s under $(valgrind --version) (its io_uring runtime is not emulated); skipped"
        tail -5 "$WORK/cg.log" || true
    fi
fi

exec 1>&2
wait "$TEE_PID" 2>/dev/null || true
log "written: $TXT, $SVG"
