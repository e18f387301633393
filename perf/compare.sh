#!/usr/bin/env bash
# Side-by-side benchmark: tandem vs PostgreSQL 15 vs Redis, on this machine,
# in one run, so every figure shares the machine's current load and device.
# Every server runs on loopback on a free port in a temp dir; every process
# started here is stopped on exit (also on error or Ctrl-C).
#
# Sections (SECTIONS, comma-separated; default all, in this order):
#   latency  fsync-probe (8 KiB pwrite+fdatasync p50/p99, same file system)
#            and a loopback round trip (redis-benchmark -t ping -c 1 p50
#            against a redis-server): the floor of a durable 1-client commit.
#   tandem   tandem primary alone (synchronous_commit=local), then a primary
#            with one synchronous standby (FIRST 1 (s1)) at `on` and at
#            `remote_apply` (CONFIG SET between the two); tandem-bench init
#            -s 1, then run --mix tpcb and --mix simple-update at each client
#            count, -j 2.
#   pg       PostgreSQL 15 primary alone and with one synchronous standby
#            (pg_basebackup -R, synchronous_standby_names 'FIRST 1 (s1)');
#            defaults otherwise. pgbench -i -s 1, then pgbench -n -c C -j 2
#            on the TPC-B builtin and on a single-UPDATE script.
#   redis    redis-server appendfsync always / everysec, alone and with one
#            (asynchronous) replica, driven by tandem-bench --mix tpcb.
#   build    full build throughput: `tandem build` of a standby from a
#            primary loaded with tandem-bench init -s 10, vs pg_basebackup
#            (-c fast, -X stream) of a pgbench -s 10 database.
#
# Env:
#   SECTIONS   e.g. SECTIONS=pg,tandem (default latency,tandem,pg,redis,build)
#   T          seconds per tandem and PostgreSQL run (default 20)
#   REDIS_T    seconds per Redis run (default 5: keeps the default run near
#              15 minutes; Redis is the secondary comparison)
#   PROBE_COUNT / ADJ_PROBE_COUNT  fsync-probe writes in the latency section
#              (2000) and right before each 1-client tandem run (500)
#   CLIENTS    client counts (default "1 8 32 64")
#   SMOKE=1    T=2, REDIS_T=2, clients 1 and 8, build at -s 1, probe 200:
#              a check that everything runs (CI runs SMOKE=1 SECTIONS=tandem)
#   OUT        results file (default perf/results/compare-<date>.md; SMOKE
#              runs only print, unless OUT is given)
#   BUILD_SCALE  scale factor of the build section (default 10)
#   BIN_DIR    directory holding prebuilt tandem, tandem-bench, fsync-probe
#              (default: cargo build --release, then its target dir)
# Prints one markdown table per section with ratio columns (tandem vs
# PostgreSQL same setup and clients; tandem vs Redis same durability), and
# writes it all to OUT.
#
# Examples:
#   perf/compare.sh                          # everything, ~15 min
#   SECTIONS=pg,tandem T=10 perf/compare.sh  # two sections, 10 s runs
#   SMOKE=1 SECTIONS=tandem perf/compare.sh  # the CI smoke, ~40 s
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
SECTIONS="${SECTIONS:-latency,tandem,pg,redis,build}"
if [[ "${SMOKE:-0}" == 1 ]]; then
    T="${T:-2}"
    REDIS_T="${REDIS_T:-2}"
    CLIENTS="${CLIENTS:-1 8}"
    PROBE_COUNT="${PROBE_COUNT:-200}"
    ADJ_PROBE_COUNT="${ADJ_PROBE_COUNT:-100}"
    PING_N="${PING_N:-2000}"
    BUILD_SCALE="${BUILD_SCALE:-1}"
else
    T="${T:-20}"
    REDIS_T="${REDIS_T:-5}"
    CLIENTS="${CLIENTS:-1 8 32 64}"
    PROBE_COUNT="${PROBE_COUNT:-2000}"
    ADJ_PROBE_COUNT="${ADJ_PROBE_COUNT:-500}"
    PING_N="${PING_N:-20000}"
    BUILD_SCALE="${BUILD_SCALE:-10}"
fi
JOBS=2
SECRET="compare-secret"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
DATE="$(date +%Y%m%d-%H%M%S)"

log() { echo "compare: $*" >&2; }
die() {
    log "error: $*"
    if [[ -n "${WORK:-}" ]]; then
        for f in "$WORK"/*.log "$WORK"/pg/*.log; do
            [[ -s "$f" ]] || continue
            log "--- tail of $f"
            tail -n 8 "$f" >&2
        done
    fi
    exit 1
}
has_section() { [[ ",$SECTIONS," == *",$1,"* ]]; }

for s in ${SECTIONS//,/ }; do
    case "$s" in
    latency | tandem | pg | redis | build) ;;
    *) die "unknown section '$s' (known: latency,tandem,pg,redis,build)" ;;
    esac
done

# ---------------------------------------------------------------- installs
apt_install() {
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    log "installing $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 ||
        { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; }
}
if has_section redis || has_section latency; then
    if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
        apt_install redis-server redis-tools
    fi
fi
if has_section pg || has_section build; then
    if [[ ! -x "$PGBIN/pg_ctl" || ! -x "$PGBIN/pgbench" ]]; then
        apt_install postgresql
    fi
    [[ -x "$PGBIN/pg_ctl" ]] || die "no PostgreSQL 15 in $PGBIN (set PGBIN)"
    id postgres >/dev/null 2>&1 || die "no 'postgres' user"
    [[ "$(id -u)" == 0 ]] || die "the pg and build sections run PostgreSQL as 'postgres' via runuser: run as root"
fi

if [[ -n "${BIN_DIR:-}" ]]; then
    # Prebuilt binaries (the CI smoke test passes cargo's own; a nested
    # cargo build would wait on the lock the running cargo test holds).
    log "using binaries in $BIN_DIR"
else
    log "building tandem, tandem-bench and fsync-probe (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin tandem --bin tandem-bench --bin fsync-probe)
    BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
TANDEM="$BIN_DIR/tandem"
BENCH="$BIN_DIR/tandem-bench"
PROBE="$BIN_DIR/fsync-probe"
for b in "$TANDEM" "$BENCH" "$PROBE"; do [[ -x "$b" ]] || die "missing binary $b"; done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/compare.XXXXXX")"
chmod 755 "$WORK" # the postgres user must reach its dirs below
if [[ -z "${OUT:-}" && "${SMOKE:-0}" != 1 ]]; then OUT="$ROOT/perf/results/compare-$DATE.md"; fi
if [[ -n "${OUT:-}" ]]; then mkdir -p "$(dirname "$OUT")"; fi
RESULTS="$WORK/results.csv" # section,system,setup,load,clients,tps,p50_ms,p99_ms
: >"$RESULTS"
NOTES="$WORK/notes.txt"
: >"$NOTES"

# ---------------------------------------------------------------- processes
PIDS=()        # servers started directly (tandem, redis)
PG_DIRS=()     # PostgreSQL data dirs started with pg_ctl

stop_all() {
    local pid d
    # Standbys/replicas were started last: stop in reverse order.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        stop_pid "$pid"
    done
    PIDS=()
    for ((i = ${#PG_DIRS[@]} - 1; i >= 0; i--)); do
        d=${PG_DIRS[$i]}
        if [[ -f "$d/postmaster.pid" ]]; then
            runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    PG_DIRS=()
}
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Like lib.sh's free_port, but never the same port twice in one run.
USED_PORTS=" "
free_port() {
    local p
    while :; do
        p=$((PORT_MIN + RANDOM % PORT_SPAN))
        [[ "$USED_PORTS" == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return
        fi
    done
}
# Reserves a port in the main shell (free_port in $(...) cannot record it).
PORT=""
next_port() {
    PORT=$(free_port)
    USED_PORTS+="$PORT "
}


# resp_grep PORT REGEX CMD...: whether the reply has a line matching REGEX
# (captured first: grep -q closing the pipe early would fail a pipefail test).
resp_grep() {
    local port=$1 re=$2 reply
    shift 2
    reply="$(resp "$port" "$@")" || return 1
    grep -q -- "$re" <<<"$reply"
}

wait_ping() {
    local port=$1 pid=$2 name=$3
    for _ in $(seq 300); do
        if [[ "$(resp "$port" PING)" == "+PONG" ]]; then return; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during start-up; its log:"
            cat "$WORK/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    die "$name did not answer PING on port $port"
}

# ---------------------------------------------------------------- tandem
# start_tandem NAME PORT REPL_PORT [extra node args...]; sets LAST_PID.
LAST_PID=""
start_tandem() {
    local name=$1 port=$2 rport=$3
    shift 3
    TANDEM_LOG="${TANDEM_LOG:-warn}" "$TANDEM" node --data-dir "$WORK/$name" \
        --listen "127.0.0.1:$port" --repl-listen "127.0.0.1:$rport" \
        --name "$name" --cluster-secret "$SECRET" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_ping "$port" "$LAST_PID" "$name"
}

wait_tandem_sync() {
    local port=$1 standby=$2
    for _ in $(seq 300); do
        if resp_grep "$port" "name=$standby,.*sync_state=sync" INFO replication; then return; fi
        sleep 0.1
    done
    resp "$port" INFO replication >&2 || true
    die "tandem standby $standby did not become synchronous"
}

jobs_for() { # -j never above -c (both tools refuse that)
    if (($1 < JOBS)); then echo "$1"; else echo "$JOBS"; fi
}

# bench_run SECTION SYSTEM SETUP MIX CLIENTS PORT SECS
bench_run() {
    local section=$1 system=$2 setup=$3 mix=$4 c=$5 port=$6 secs=$7
    local json="$WORK/run-$system-$setup-$mix-$c.json" j
    j=$(jobs_for "$c")
    if [[ "$system" == tandem && "$c" == 1 ]]; then
        # fdatasync latency on this shared VM swings 0.1-4 ms within minutes:
        # a short probe right before each 1-client tandem run gives the floor
        # that run is held against (latency table).
        probe_row "adjacent-probe,$setup,$mix" "$ADJ_PROBE_COUNT"
    fi
    log "$system $setup: --mix $mix -c $c -j $j -T $secs"
    if ! "$BENCH" run --mix "$mix" -c "$c" -j "$j" -T "$secs" -p "$port" \
        --json "$json" >"$WORK/bench.out" 2>&1; then
        # Not fatal: the row shows "-" and the notes say why; the run goes on.
        cat "$WORK/bench.out" >&2
        log "tandem-bench run failed against $system $setup c=$c; server logs:"
        tail -n 5 "$WORK"/*.log >&2 2>/dev/null || true
        echo "FAILED: $system $setup $mix c=$c: $(tail -n 1 "$WORK/bench.out")" >>"$NOTES"
        echo "$section,$system,$setup,$mix,$c,,," >>"$RESULTS"
        return 0
    fi
    echo "$section,$system,$setup,$mix,$c,$(json_field "$json" tps),$(json_field "$json" latency_p50_ms),$(json_field "$json" latency_p99_ms)" >>"$RESULTS"
}

bench_init() { # bench_init PORT SCALE NAME
    log "$3: tandem-bench init -s $2"
    if ! "$BENCH" init -s "$2" -p "$1" >"$WORK/init.out" 2>&1; then
        cat "$WORK/init.out" >&2
        die "tandem-bench init failed against $3"
    fi
}

section_tandem() {
    local p1 r1 p2 r2 c mix
    # Primary alone, synchronous_commit=local (fdatasync before the reply).
    next_port; p1=$PORT
    next_port; r1=$PORT
    start_tandem tandem-alone "$p1" "$r1" --synchronous-commit local
    bench_init "$p1" 1 tandem-alone
    for mix in tpcb simple-update; do
        for c in $CLIENTS; do bench_run tandem tandem local "$mix" "$c" "$p1" "$T"; done
    done
    stop_all

    # Primary + one synchronous standby s1. The standby is built while the
    # primary is empty, then the data set is loaded through it.
    next_port; p1=$PORT
    next_port; r1=$PORT
    next_port; p2=$PORT
    next_port; r2=$PORT
    start_tandem tandem-p "$p1" "$r1" --synchronous-commit on \
        --synchronous-standby-names 'FIRST 1 (s1)'
    log "tandem build of standby s1"
    "$TANDEM" build --from "127.0.0.1:$r1" --data-dir "$WORK/s1" --name s1 \
        --cluster-secret "$SECRET" --quiet >"$WORK/build-s1.out" 2>&1 ||
        { cat "$WORK/build-s1.out" >&2; die "tandem build failed"; }
    start_tandem s1 "$p2" "$r2"
    wait_tandem_sync "$p1" s1
    bench_init "$p1" 1 tandem-p
    for mode in on remote_apply; do
        [[ "$(resp "$p1" CONFIG SET synchronous_commit "$mode")" == "+OK" ]] ||
            die "CONFIG SET synchronous_commit $mode failed"
        resp_grep "$p1" "^synchronous_commit:$mode" INFO persistence ||
            die "synchronous_commit is not $mode after CONFIG SET"
        wait_tandem_sync "$p1" s1
        for mix in tpcb simple-update; do
            for c in $CLIENTS; do bench_run tandem tandem "$mode" "$mix" "$c" "$p1" "$T"; done
        done
    done
    stop_all
}

# ---------------------------------------------------------------- latency
# probe_row "SECTION,SYSTEM,SETUP|LOAD..." COUNT: one fsync-probe row (ms).
probe_row() {
    local what=$1 count=$2 line
    log "fsync probe: $count x 8 KiB pwrite+fdatasync in $WORK"
    line="$("$PROBE" "$WORK" "$count")"
    log "$line"
    awk -v w="$what" -v l="$line" 'BEGIN {
        split(w, f, ","); if (f[3] == "") f[3] = "-"
        match(l, /p50_us=[0-9]+/); p50 = substr(l, RSTART + 7, RLENGTH - 7)
        match(l, /p99_us=[0-9]+/); p99 = substr(l, RSTART + 7, RLENGTH - 7)
        printf "latency,%s,%s,%s,1,-,%.3f,%.3f\n", f[1], f[2], f[3], p50 / 1000, p99 / 1000 }' >>"$RESULTS"
}

section_latency() {
    local p port pid
    probe_row "fsync-probe,8KiB pwrite+fdatasync" "$PROBE_COUNT"
    next_port; port=$PORT
    mkdir -p "$WORK/redis-ping"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/redis-ping" --save '' \
        --appendonly no --daemonize no --logfile "$WORK/redis-ping.log" &
    pid=$!
    PIDS+=("$pid")
    wait_ping "$port" "$pid" redis-ping
    log "loopback round trip: redis-benchmark -t ping -c 1 -n $PING_N"
    redis-benchmark -h 127.0.0.1 -p "$port" -t ping -c 1 -n "$PING_N" --csv | tr -d '"' |
        awk -F, '$1 == "PING_MBULK" { print "latency,loopback-rtt,redis-benchmark PING c=1,-,1," $2 "," $5 "," $7 }' >>"$RESULTS"
    stop_all
    p=$(grep -c -e '^latency,fsync-probe,' -e '^latency,loopback-rtt,' "$RESULTS" || true)
    [[ "$p" == 2 ]] || die "latency section produced $p of 2 rows"
}

# ---------------------------------------------------------------- redis
start_redis() { # start_redis NAME FSYNC PORT [extra args]; sets LAST_PID
    local name=$1 fsync=$2 port=$3
    shift 3
    mkdir -p "$WORK/$name"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$WORK/$name" \
        --appendonly yes --appendfsync "$fsync" --save '' \
        --daemonize no --logfile "$WORK/$name.log" "$@" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_ping "$port" "$LAST_PID" "$name"
}

section_redis() {
    local fsync repl p1 p2 setup c
    for fsync in always everysec; do
        for repl in alone replica; do
            setup="$fsync"
            next_port; p1=$PORT
            start_redis "redis-$fsync-$repl" "$fsync" "$p1"
            if [[ "$repl" == replica ]]; then
                setup="$fsync+replica"
                next_port; p2=$PORT
                start_redis "redis-$fsync-replica2" "$fsync" "$p2" --replicaof 127.0.0.1 "$p1"
                for _ in $(seq 200); do
                    resp_grep "$p2" '^master_link_status:up' INFO replication && break
                    sleep 0.1
                done
                resp_grep "$p2" '^master_link_status:up' INFO replication ||
                    die "redis replica did not connect"
            fi
            bench_init "$p1" 1 "redis $setup"
            for c in $CLIENTS; do bench_run redis redis "$setup" tpcb "$c" "$p1" "$REDIS_T"; done
            stop_all
        done
    done
}

# ---------------------------------------------------------------- postgres
pg() { runuser -u postgres -- "$@"; }

# pg_start NAME PORT [conf lines...]: initdb + start; the dir is $WORK/pg/NAME
pg_conf() { # pg_conf DIR PORT [lines...]
    local dir=$1 port=$2
    shift 2
    {
        echo "# compare.sh"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$WORK/pg'"
        local l
        for l in "$@"; do echo "$l"; done
    } | pg tee -a "$dir/postgresql.conf" >/dev/null
}
pg_ctl_start() {
    local dir=$1
    PG_DIRS+=("$dir")
    pg "$PGBIN/pg_ctl" -D "$dir" -l "$dir.log" -w -t 60 start >/dev/null ||
        { cat "$dir.log" >&2; die "PostgreSQL in $dir did not start"; }
}
pg_init_primary() { # pg_init_primary NAME PORT [conf lines...]
    local name=$1 port=$2
    shift 2
    local dir="$WORK/pg/$name"
    pg "$PGBIN/initdb" -D "$dir" -U postgres --auth=trust >"$WORK/pg/$name.initdb.log" 2>&1 ||
        { cat "$WORK/pg/$name.initdb.log" >&2; die "initdb failed"; }
    pg_conf "$dir" "$port" "$@"
    pg_ctl_start "$dir"
}
psql_q() { # psql_q PORT SQL
    pg "$PGBIN/psql" -h "$WORK/pg" -p "$1" -U postgres -d postgres -Atqc "$2"
}

PG_UPDATE_SCRIPT=""
# pg_run SETUP LOAD CLIENTS PORT
pg_run() {
    local setup=$1 load=$2 c=$3 port=$4
    local logdir="$WORK/pg/log-$setup-$load-$c" args=() j
    j=$(jobs_for "$c")
    mkdir -p "$logdir"
    chown postgres "$logdir"
    if [[ "$load" == single-update ]]; then args=(-f "$PG_UPDATE_SCRIPT"); fi
    log "postgresql $setup: pgbench -n -c $c -j $j -T $T ${args[*]}"
    (cd "$logdir" && pg "$PGBIN/pgbench" -h "$WORK/pg" -p "$port" -U postgres -n \
        -c "$c" -j "$j" -T "$T" -l --log-prefix "$logdir/tx" "${args[@]}" postgres) \
        >"$WORK/pgbench.out" 2>&1 || { cat "$WORK/pgbench.out" >&2; die "pgbench failed"; }
    local tps pct
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$WORK/pgbench.out")
    [[ -n "$tps" ]] || { cat "$WORK/pgbench.out" >&2; die "no tps in pgbench output"; }
    # Per-transaction log: column 3 is the latency in microseconds.
    pct=$(cat "$logdir"/tx.* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "0,0"; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%.3f,%.3f", v[i50] / 1000, v[i99] / 1000 }')
    echo "pg,postgresql,$setup,$load,$c,$tps,$pct" >>"$RESULTS"
    rm -rf "$logdir"
}

pg_wait_sync() { # pg_wait_sync PORT
    for _ in $(seq 300); do
        [[ "$(psql_q "$1" "select sync_state from pg_stat_replication where application_name = 's1'" 2>/dev/null)" == sync ]] && return
        sleep 0.1
    done
    die "PostgreSQL standby s1 did not become synchronous"
}

section_pg() {
    local p1 p2 load c
    mkdir -p "$WORK/pg"
    chown postgres "$WORK/pg"
    PG_UPDATE_SCRIPT="$WORK/pg/single-update.sql"
    printf '%s\n' '\set aid random(1, 100000 * :scale)' '\set delta random(-5000, 5000)' \
        'UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;' >"$PG_UPDATE_SCRIPT"
    chmod 644 "$PG_UPDATE_SCRIPT"

    # Primary alone (defaults: synchronous_commit = on, no standby: local flush).
    next_port; p1=$PORT
    pg_init_primary alone "$p1" "synchronous_commit = on"
    log "postgresql alone: pgbench -i -s 1"
    pg "$PGBIN/pgbench" -h "$WORK/pg" -p "$p1" -U postgres -i -s 1 -q postgres >"$WORK/pg/init.log" 2>&1 ||
        { cat "$WORK/pg/init.log" >&2; die "pgbench -i failed"; }
    for load in tpcb single-update; do
        for c in $CLIENTS; do pg_run alone "$load" "$c" "$p1"; done
    done
    stop_all

    # Primary + one synchronous standby s1 (pg_basebackup -R).
    next_port; p1=$PORT
    next_port; p2=$PORT
    pg_init_primary primary "$p1" "synchronous_commit = on" "synchronous_standby_names = 'FIRST 1 (s1)'"
    log "pg_basebackup -R of the standby"
    pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D "$WORK/pg/standby" -R -X stream -c fast \
        >"$WORK/pg/basebackup.log" 2>&1 || { cat "$WORK/pg/basebackup.log" >&2; die "pg_basebackup failed"; }
    pg_conf "$WORK/pg/standby" "$p2"
    # After the line pg_basebackup -R wrote (auto.conf is read last): name it s1.
    echo "primary_conninfo = 'host=127.0.0.1 port=$p1 user=postgres application_name=s1'" |
        pg tee -a "$WORK/pg/standby/postgresql.auto.conf" >/dev/null
    pg_ctl_start "$WORK/pg/standby"
    pg_wait_sync "$p1"
    log "postgresql sync standby: pgbench -i -s 1"
    pg "$PGBIN/pgbench" -h "$WORK/pg" -p "$p1" -U postgres -i -s 1 -q postgres >"$WORK/pg/init.log" 2>&1 ||
        { cat "$WORK/pg/init.log" >&2; die "pgbench -i failed"; }
    for load in tpcb single-update; do
        for c in $CLIENTS; do pg_run sync-standby "$load" "$c" "$p1"; done
    done
    stop_all
}

# ---------------------------------------------------------------- build
section_build() {
    local p1 r1 line mib secs rate dir start end bytes
    next_port; p1=$PORT
    next_port; r1=$PORT
    start_tandem build-src "$p1" "$r1"
    start=$(date +%s.%N)
    bench_init "$p1" "$BUILD_SCALE" build-src
    end=$(date +%s.%N)
    echo "tandem-bench init -s $BUILD_SCALE took $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s" >>"$NOTES"
    log "tandem build from a -s $BUILD_SCALE primary"
    "$TANDEM" build --from "127.0.0.1:$r1" --data-dir "$WORK/build-dst" --name b1 \
        --cluster-secret "$SECRET" --quiet >"$WORK/build.out" 2>&1 ||
        { cat "$WORK/build.out" >&2; die "tandem build failed"; }
    line=$(grep '^build done' "$WORK/build.out")
    log "$line"
    # build done: N pages, X MiB in Y s (Z MiB/s), ...
    mib=$(sed -n 's/.* pages, \([0-9.]*\) MiB in .*/\1/p' <<<"$line")
    secs=$(sed -n 's/.* MiB in \([0-9.]*\) s (.*/\1/p' <<<"$line")
    rate=$(sed -n 's/.* s (\([0-9.]*\) MiB\/s).*/\1/p' <<<"$line")
    echo "build,tandem build,scale $BUILD_SCALE,$mib,$secs,$rate" >>"$WORK/build.csv"
    stop_all
    rm -rf "$WORK/build-dst" "$WORK/build-src"

    mkdir -p "$WORK/pg"
    chown postgres "$WORK/pg"
    next_port; p1=$PORT
    pg_init_primary build-src "$p1"
    log "postgresql: pgbench -i -s $BUILD_SCALE"
    pg "$PGBIN/pgbench" -h "$WORK/pg" -p "$p1" -U postgres -i -s "$BUILD_SCALE" -q postgres >"$WORK/pg/init.log" 2>&1 ||
        { cat "$WORK/pg/init.log" >&2; die "pgbench -i failed"; }
    dir="$WORK/pg/build-dst"
    log "pg_basebackup -X stream -c fast"
    start=$(date +%s.%N)
    pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D "$dir" -X stream -c fast \
        >"$WORK/pg/bb.log" 2>&1 || { cat "$WORK/pg/bb.log" >&2; die "pg_basebackup failed"; }
    end=$(date +%s.%N)
    bytes=$(du -sb "$dir" | awk '{ print $1 }')
    awk -v a="$start" -v b="$end" -v n="$bytes" -v s="$BUILD_SCALE" 'BEGIN {
        t = b - a; m = n / 1048576
        printf "build,pg_basebackup,scale %s,%.1f,%.2f,%.1f\n", s, m, t, m / t }' >>"$WORK/build.csv"
    stop_all
    rm -rf "$dir"
}

# ---------------------------------------------------------------- run
: >"$WORK/build.csv"
STARTED=$(date +%s)
for s in latency tandem pg redis build; do
    if has_section "$s"; then
        log "=== section $s ==="
        "section_$s"
    fi
done
ELAPSED=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------- report
report() {
    echo "# tandem side-by-side benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Host: $(nproc) cores, $(uname -r), $(df -PT "$WORK" | awk 'NR == 2 { print $2 }') on $(df -P "$WORK" | awk 'NR == 2 { print $1 }');" \
        "tandem $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')."
    echo "Command: \`SECTIONS=$SECTIONS T=$T REDIS_T=$REDIS_T CLIENTS=\"$CLIENTS\"${SMOKE:+ SMOKE=$SMOKE} perf/compare.sh\` ($ELAPSED s)."
    echo "Load generator and servers share the same $(nproc) cores; the machine is shared, so"
    echo "compare ratios within this run, not absolute figures across runs."
    echo
    awk -F, -v sections="$SECTIONS" '
    function r(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2f", a / b) : "-" }
    function num(x) { return x == "" ? "-" : x }
    function f0(x) { return x == "" ? "-" : sprintf("%.0f", x) }
    function f3(x) { return x == "" ? "-" : sprintf("%.3f", x) }
    {
        n++; sec[n] = $1; sys[n] = $2; setup[n] = $3; load[n] = $4; c[n] = $5
        tps[n] = $6; p50[n] = $7; p99[n] = $8
        T[$2 "|" $3 "|" $4 "|" $5] = $6
        P50[$2 "|" $3 "|" $4 "|" $5] = $7
    }
    # The PostgreSQL setup and load tandem is compared with.
    function pg_setup(s) { return s == "local" ? "alone" : "sync-standby" }
    function pg_load(l) { return l == "tpcb" ? "tpcb" : "single-update" }
    function redis_setup(s) { return s == "local" ? "always" : "always+replica" }
    function tandem_setup_pg(s) { return s == "alone" ? "local" : "on" }
    function tandem_load_pg(l) { return l == "tpcb" ? "tpcb" : "simple-update" }
    function tandem_setup_redis(s) { return s ~ /replica/ ? "on" : "local" }
    END {
        if (index("," sections ",", ",latency,")) {
            print "## Latency baseline (1 client)"
            print ""
            print "| probe | p50 ms | p99 ms |"
            print "|---|---:|---:|"
            for (i = 1; i <= n; i++) if (sec[i] == "latency" && sys[i] != "adjacent-probe")
                printf "| %s (%s) | %s | %s |\n", sys[i], setup[i], f3(p50[i]), f3(p99[i])
            fs = P50["fsync-probe|8KiB pwrite+fdatasync|-|1"]
            rtt = P50["loopback-rtt|redis-benchmark PING c=1|-|1"]
            if (fs != "" && rtt != "")
                printf "| **floor = fdatasync p50 + round trip p50** | **%.3f** | |\n", fs + rtt
            print ""
            print "tandem 1-client commit latency against the floor (target with a sync standby: within 1.5x)."
            print "\"adjacent\" = a 500-write fsync probe run right before that tandem run (the device\x27s latency"
            print "swings within minutes on this shared VM, so that is the fair floor); \"start\" = the probe above."
            print ""
            print "| tandem mode | load | p50 ms | adjacent fdatasync p50 ms | p50 / (adjacent + rtt) | p50 / (start floor) |"
            print "|---|---|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) if (sys[i] == "tandem" && c[i] == 1) {
                adj = P50["adjacent-probe|" setup[i] "|" load[i] "|1"]
                printf "| %s | %s | %s | %s | %s | %s |\n", setup[i], load[i], f3(p50[i]), f3(adj),
                    (rtt != "" && adj != "") ? r(p50[i], adj + rtt) : "-",
                    (rtt != "" && fs != "") ? r(p50[i], fs + rtt) : "-"
            }
            print ""
        }
        if (index("," sections ",", ",tandem,")) {
            print "## tandem (tandem-bench, -j 2)"
            print ""
            print "local = primary alone, fdatasync before the reply; on / remote_apply = primary with one"
            print "synchronous standby (FIRST 1 (s1)) on the same machine. PostgreSQL counterpart: alone for"
            print "local, sync standby for on and remote_apply; tpcb vs pgbench TPC-B builtin, simple-update (one"
            print "INCRBY) vs the single-UPDATE script. Redis counterpart (tpcb only): appendfsync always, alone"
            print "for local, with its (asynchronous) replica for on / remote_apply."
            print ""
            print "| mode | load | clients | tps | p50 ms | p99 ms | PostgreSQL tps | x PostgreSQL | Redis tps | x Redis |"
            print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) if (sys[i] == "tandem") {
                pt = T["postgresql|" pg_setup(setup[i]) "|" pg_load(load[i]) "|" c[i]]
                rt = load[i] == "tpcb" ? T["redis|" redis_setup(setup[i]) "|tpcb|" c[i]] : ""
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", setup[i], load[i], c[i],
                    f0(tps[i]), f3(p50[i]), f3(p99[i]), f0(pt), r(tps[i], pt), f0(rt), r(tps[i], rt)
            }
            print ""
        }
        if (index("," sections ",", ",pg,")) {
            print "## PostgreSQL 15 (pgbench -n -j 2, defaults, synchronous_commit = on)"
            print ""
            print "| setup | load | clients | tps | p50 ms | p99 ms | tandem tps (same setup) | tandem / PostgreSQL |"
            print "|---|---|---:|---:|---:|---:|---:|---:|"
            for (i = 1; i <= n; i++) if (sys[i] == "postgresql") {
                tt = T["tandem|" tandem_setup_pg(setup[i]) "|" tandem_load_pg(load[i]) "|" c[i]]
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", setup[i], load[i], c[i],
                    f0(tps[i]), f3(p50[i]), f3(p99[i]), f0(tt), r(tt, tps[i])
            }
            print ""
        }
        if (index("," sections ",", ",redis,")) {
            print "## Redis (tandem-bench --mix tpcb, MULTI/EXEC, -j 2; replica = asynchronous --replicaof)"
            print ""
            print "| setup | clients | tps | p50 ms | p99 ms | tandem tps | tandem mode | tandem / Redis |"
            print "|---|---:|---:|---:|---:|---:|---|---:|"
            for (i = 1; i <= n; i++) if (sys[i] == "redis") {
                tm = tandem_setup_redis(setup[i])
                tt = T["tandem|" tm "|tpcb|" c[i]]
                printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", setup[i], c[i],
                    f0(tps[i]), f3(p50[i]), f3(p99[i]), f0(tt), tm, r(tt, tps[i])
            }
            print ""
        }
    }' "$RESULTS"
    if has_section build; then
        echo "## Full build throughput (scale $BUILD_SCALE data set)"
        echo
        echo "| tool | data MiB | seconds | MiB/s | x pg_basebackup |"
        echo "|---|---:|---:|---:|---:|"
        awk -F, '{ n++; tool[n] = $2; mib[n] = $4; s[n] = $5; rate[n] = $6; if ($2 == "pg_basebackup") pgr = $6 }
            END { for (i = 1; i <= n; i++)
                printf "| %s | %s | %s | %s | %s |\n", tool[i], mib[i], s[i], rate[i],
                    (pgr > 0 ? sprintf("%.2f", rate[i] / pgr) : "-") }' "$WORK/build.csv"
        echo
        echo "tandem build: MiB/s from its summary line (pages sent + WAL); pg_basebackup: the"
        echo "copied data directory's size over wall time (-c fast checkpoint included)."
        echo
    fi
    if [[ -s "$NOTES" ]]; then
        echo "Notes:"
        sed 's/^/- /' "$NOTES"
        echo
    fi
}
report >"$WORK/report.md"
echo
cat "$WORK/report.md"
if [[ -n "${OUT:-}" ]]; then
    cp "$WORK/report.md" "$OUT"
    log "written to $OUT"
fi
