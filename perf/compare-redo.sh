#!/usr/bin/env bash
# Redo speed, side by side: tandem vs PostgreSQL 15, on this machine, in one
# run, so every figure shares the machine's current load and device. Every
# server runs on loopback on free ports in a temp dir; every process started
# here is stopped (a SIGSTOPped one continued first) and every temp dir
# removed on exit (also on error or Ctrl-C).
#
# Sections (SECTIONS, comma-separated; default catchup,recovery):
#   catchup   A standby's catch-up after it was stopped.
#             tandem, for each W in WORKERS, on a fresh pair: a primary
#             (synchronous_commit local, no synchronous_standby_names) and a
#             standby s1 made with `tandem build`, both started with
#             --recovery-redo-workers W; tandem-bench init -s SCALE, wait
#             until the standby's applied_lsn reaches the primary's flush_lsn
#             (A0 = that applied_lsn, INFO replication), SIGSTOP the standby
#             process, tandem-bench run --mix tpcb -c 64 -j 2 -T STOP_SECS
#             against the primary, then P = the primary's flush_lsn (INFO
#             replication) and the transactions of the run (--json report),
#             SIGCONT the standby and poll its INFO replication every ~20 ms
#             (received_lsn, flush_lsn, applied_lsn) until applied_lsn >= P.
#             PostgreSQL: primary + pg_basebackup -R -C -S s1 standby (a
#             replication slot keeps the WAL the stopped standby needs, as
#             tandem's max_wal_retention does), synchronous_commit = local, no
#             synchronous_standby_names; pgbench -i -s SCALE, CHECKPOINT, wait
#             until pg_last_wal_replay_lsn() on the standby reaches
#             pg_current_wal_lsn() on the primary (A0 = that replay LSN),
#             SIGSTOP the standby's postmaster and every process below it,
#             pgbench -n -c 64 -j 2 -T STOP_SECS (TPC-B builtin), P =
#             pg_current_wal_lsn() on the primary and the transactions from
#             pgbench's output, SIGCONT, then a psql `\watch 0.02` on the
#             standby samples clock_timestamp(), pg_stat_wal_receiver.
#             written_lsn (received), pg_last_wal_receive_lsn() (flushed) and
#             pg_last_wal_replay_lsn() (applied) until replay >= P.
#             Figures, from the SIGCONT: backlog = P - A0; the time until
#             received / flushed / applied reached P; MiB/s and transactions/s
#             applied (transactions of the run / apply seconds).
#             Both sides: the primary's wal_sender_timeout is STOP_SECS + 60 s
#             (PostgreSQL's default is 60 s, tandem's 10 s) so neither drops
#             the stopped standby (no reconnect inside the measurement), and
#             the standby's memory is the same: tandem's default buffer pool
#             (256 MiB) = PostgreSQL's shared_buffers.
#   recovery  Crash recovery of about RECOVERY_MB MiB of WAL.
#             tandem: one node, tandem-bench init -s SCALE, clean restart
#             (SIGTERM: shutdown checkpoint, so the redo holds only the load
#             below) with checkpoint_interval_secs = 3600, checkpoint_wal_bytes
#             = 10 GiB, buffer_pool_bytes = 1 GiB; tandem-bench run --mix tpcb
#             -c 64 -j 2 in chunks until flush_lsn (INFO replication) minus
#             checkpoint_redo_lsn (INFO persistence) >= RECOVERY_MB; SIGKILL;
#             the crashed directory is copied once (cp -a, the crash image);
#             then for each W a fresh cp -a of that image is started with
#             --recovery-redo-workers W: wall time from the exec to the first
#             PING answer (polled every ~5 ms), and the node's log line
#             "recovery done from=F to=T groups=G ms=M" (bytes = T - F, redo
#             time = M).
#             PostgreSQL: checkpoint_timeout = 1h, max_wal_size = 20GB,
#             shared_buffers = 1GB (tandem's pool), synchronous_commit = local;
#             pgbench -i -s SCALE, CHECKPOINT, pgbench -n -c 64 -j 2 (TPC-B) in
#             chunks until pg_wal_lsn_diff(pg_current_wal_lsn(), redo_lsn of
#             pg_control_checkpoint()) >= RECOVERY_MB; pg_ctl stop -m
#             immediate; cp -a of the crashed directory; pg_ctl start of the
#             copy: wall time from the exec to postmaster.pid saying "ready"
#             (what pg_ctl -w waits for, polled every ~5 ms instead of
#             pg_ctl's 100 ms), and the log lines "redo starts at X", "redo
#             done at Y ... elapsed: S s" (bytes = Y - X, redo time = S) and
#             the end-of-recovery checkpoint's "checkpoint complete: ...
#             total=C s" (PostgreSQL writes it before it accepts connections;
#             tandem answers right after redo).
#             Figures: WAL MiB redone, seconds (redo, and start to ready),
#             MiB/s, transactions/s redone (transactions of the load / redo s).
# The ratio columns: each tandem W against tandem W = 1, and tandem against
# PostgreSQL per byte (MiB/s) and per transaction (transactions/s). PostgreSQL's
# WAL carries full-page images (the first change of each page after a
# checkpoint logs the whole 8 KiB page), tandem's does not: per byte and per
# transaction differ a lot, so both are shown. PostgreSQL's redo is serial: one
# row. MiB = 2^20 bytes.
#
# Env:
#   SECTIONS     catchup, recovery or catchup,recovery (default)
#   SYSTEMS      tandem, pg or tandem,pg (default; SMOKE: tandem)
#   WORKERS      tandem redo worker counts, each a run (default "1 2")
#   SCALE        tandem-bench init / pgbench -i scale (default 10)
#   STOP_SECS    seconds the standby stays stopped under load (default 15)
#   RECOVERY_MB  MiB of WAL to crash-recover (default 1000; below 9000)
#   CATCHUP_TIMEOUT_S  bound on any catch-up or recovery wait (default 600)
#   SMOKE=1      SYSTEMS=tandem SCALE=1 STOP_SECS=2 RECOVERY_MB=20 WORKERS="1 2":
#                a check that everything runs, well under a minute
#   OUT          results file (default perf/results/compare-redo-<date>.md;
#                SMOKE runs only print, unless OUT is given)
#   BIN_DIR      directory holding prebuilt tandem and tandem-bench (default:
#                cargo build --release, then its target dir)
#   PGBIN        PostgreSQL 15 binaries (default /usr/lib/postgresql/15/bin)
#   KEEP_WORK=1  keep the temp dir (logs, samples) for a post-mortem
# tandem and tandem-bench are copied into the temp dir at the start (a
# rebuild in the tree during the run must not mix builds); the report names
# the commit and the binary's build time. The pg parts need root (PostgreSQL
# runs as 'postgres' through runuser / setpriv) and install postgresql with
# apt-get when it is missing.
#
# Examples:
#   perf/compare-redo.sh                                   # all, 20-35 min (*)
#   SECTIONS=catchup WORKERS="1 2 4" perf/compare-redo.sh  # catch-up only
#   SCALE=2 STOP_SECS=5 RECOVERY_MB=200 perf/compare-redo.sh
#   SMOKE=1 perf/compare-redo.sh                           # tandem only, ~10 s
# (*) on the 2-core dev VM, most of it PostgreSQL's load to 1000 MiB: after
# the first seconds (full-page images) pgbench -c 64 at scale 10 writes only
# ~0.7-0.9 MiB/s of WAL there; SCALE=2 STOP_SECS=5 RECOVERY_MB=200 takes ~6 min.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
SECTIONS="${SECTIONS:-catchup,recovery}"
if [[ "${SMOKE:-0}" == 1 ]]; then
    SYSTEMS="${SYSTEMS:-tandem}"
    SCALE="${SCALE:-1}"
    STOP_SECS="${STOP_SECS:-2}"
    RECOVERY_MB="${RECOVERY_MB:-20}"
    CATCHUP_TIMEOUT_S="${CATCHUP_TIMEOUT_S:-60}"
else
    SYSTEMS="${SYSTEMS:-tandem,pg}"
    SCALE="${SCALE:-10}"
    STOP_SECS="${STOP_SECS:-15}"
    RECOVERY_MB="${RECOVERY_MB:-1000}"
    CATCHUP_TIMEOUT_S="${CATCHUP_TIMEOUT_S:-600}"
fi
WORKERS="${WORKERS:-1 2}"
CLIENTS=64
JOBS=2
SECRET="compare-redo-secret"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
DATE="$(date +%Y%m%d-%H%M%S)"
MIB=1048576
# Neither primary drops its stopped standby within the run (see the header).
SENDER_TIMEOUT_S=$((STOP_SECS + 60))
# Memory of the catch-up standbys (tandem's default pool) and of the
# recovering nodes (tandem's pool there = PostgreSQL's shared_buffers).
CATCHUP_POOL_MB=256
RECOVERY_POOL_MB=1024

log() { echo "compare-redo: $*" >&2; }
die() {
    log "error: $*"
    if [[ -n "${WORK:-}" && -d "${WORK:-}" ]]; then
        for f in "$WORK"/*.log "$WORK"/pg/*.log; do
            [[ -s "$f" ]] || continue
            log "--- tail of $f"
            tail -n 8 "$f" >&2
        done
    fi
    exit 1
}
has_section() { [[ ",$SECTIONS," == *",$1,"* ]]; }
has_system() { [[ ",$SYSTEMS," == *",$1,"* ]]; }

for s in ${SECTIONS//,/ }; do
    case "$s" in
    catchup | recovery) ;;
    *) die "unknown section '$s' (known: catchup,recovery)" ;;
    esac
done
for s in ${SYSTEMS//,/ }; do
    case "$s" in
    tandem | pg) ;;
    *) die "unknown system '$s' (known: tandem,pg)" ;;
    esac
done
[[ -n "${WORKERS// /}" ]] || die "WORKERS is empty"
for w in $WORKERS; do [[ "$w" =~ ^[1-9][0-9]*$ ]] || die "WORKERS: '$w' is not a positive number"; done
for v in SCALE STOP_SECS RECOVERY_MB CATCHUP_TIMEOUT_S; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive number (got '${!v}')"
done
((RECOVERY_MB < 9000)) || die "RECOVERY_MB must stay below tandem's checkpoint_wal_bytes here (10 GiB): use < 9000"

# ---------------------------------------------------------------- installs
apt_install() {
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    log "installing $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 ||
        { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; }
}
if has_system pg; then
    if [[ ! -x "$PGBIN/pg_ctl" || ! -x "$PGBIN/pgbench" ]]; then apt_install postgresql; fi
    [[ -x "$PGBIN/pg_ctl" ]] || die "no PostgreSQL 15 in $PGBIN (set PGBIN)"
    id postgres >/dev/null 2>&1 || die "no 'postgres' user"
    [[ "$(id -u)" == 0 ]] || die "the pg parts run PostgreSQL as 'postgres' via runuser: run as root (or SYSTEMS=tandem)"
fi
if has_system tandem; then
    if [[ -n "${BIN_DIR:-}" ]]; then
        # Prebuilt binaries (the CI smoke test passes cargo's own; a nested
        # cargo build would wait on the lock the running cargo test holds).
        log "using binaries in $BIN_DIR"
    else
        log "building tandem and tandem-bench (release)"
        (cd "$ROOT" && cargo build --release --quiet --bin tandem --bin tandem-bench)
        BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
    fi
    TANDEM="$BIN_DIR/tandem"
    BENCH="$BIN_DIR/tandem-bench"
    for b in "$TANDEM" "$BENCH"; do [[ -x "$b" ]] || die "missing binary $b"; done
    "$TANDEM" node --help 2>/dev/null | grep -q -- --recovery-redo-workers ||
        die "$TANDEM has no --recovery-redo-workers flag"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/compare-redo.XXXXXX")"
chmod 755 "$WORK" # the postgres user must reach its dirs below
# Which tandem this measures, taken now (the tree may change during the run).
BUILD_INFO="tandem $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
if ! git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null; then BUILD_INFO+=" (+ uncommitted src changes)"; fi
if has_system tandem; then
    BUILD_INFO+=", binary of $(date -u -r "$TANDEM" '+%Y-%m-%d %H:%M:%S UTC')"
    # A private copy: a rebuild in the tree during the run (cargo replaces
    # target/release/tandem) must not mix two builds in one report.
    mkdir "$WORK/bin"
    cp "$TANDEM" "$BENCH" "$WORK/bin/"
    TANDEM="$WORK/bin/tandem"
    BENCH="$WORK/bin/tandem-bench"
fi
if [[ -z "${OUT:-}" && "${SMOKE:-0}" != 1 ]]; then OUT="$ROOT/perf/results/compare-redo-$DATE.md"; fi
if [[ -n "${OUT:-}" ]]; then mkdir -p "$(dirname "$OUT")"; fi
CATCHUP_CSV="$WORK/catchup.csv"   # system,w,transactions,tps,backlog_bytes,recv_s,flush_s,apply_s
RECOVERY_CSV="$WORK/recovery.csv" # system,w,transactions,bytes,wall_s,redo_s,ckpt_s,crash_bytes
: >"$CATCHUP_CSV"
: >"$RECOVERY_CSV"
NOTES="$WORK/notes.txt"
: >"$NOTES"

# ---------------------------------------------------------------- processes
PIDS=()    # tandem nodes, background psql samplers
STOPPED=() # processes SIGSTOPped right now (continued before any stop)
PG_DIRS=() # PostgreSQL data dirs started with pg_ctl

forget_pid() { # forget_pid PID: it was stopped and reaped here
    local i
    for i in "${!PIDS[@]}"; do
        if [[ "${PIDS[$i]}" == "$1" ]]; then unset 'PIDS[i]'; fi
    done
    PIDS=("${PIDS[@]}")
}
# stop_procs PID...: SIGSTOP, and waits until each one is stopped (state T).
stop_procs() {
    local p st i
    kill -STOP "$@"
    STOPPED+=("$@")
    for p in "$@"; do
        for ((i = 0; i < 200; i++)); do
            st=$(ps -o stat= -p "$p" 2>/dev/null || true)
            [[ "$st" == T* ]] && break
            sleep 0.005
        done
        [[ "$st" == T* ]] || die "process $p did not stop (state '$st')"
    done
}
cont_stopped() {
    local p
    for p in "${STOPPED[@]}"; do kill -CONT "$p" 2>/dev/null || true; done
    STOPPED=()
}
stop_all() {
    local i d
    cont_stopped
    # Standbys and samplers were started last: stop in reverse order.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
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
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then
        log "KEEP_WORK=1: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# fg_run CMD...: runs CMD in the background and waits for it, so that a
# signal to this script is handled at once (bash runs a trap only after the
# foreground command ends) and the EXIT trap stops CMD too. CMD's status.
fg_run() {
    local pid rc=0
    "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || rc=$?
    forget_pid "$pid"
    return "$rc"
}

# Like lib.sh's free_port, but never the same port twice in one run.
USED_PORTS=" "
PORT=""
next_port() {
    local p
    while :; do
        p=$((PORT_MIN + RANDOM % PORT_SPAN))
        [[ "$USED_PORTS" == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            PORT=$p
            return
        fi
    done
}

# Microseconds since the epoch, without a fork (bash 5): sets NOW.
NOW=0
now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    NOW=$((10#$t))
}
# secs_between A_US B_US: seconds, 3 decimals.
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e6 }'; }
# The tracing log without its colours (NO_COLOR is set too; this is for
# builds whose subscriber ignores it).
plain_log() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

# ---------------------------------------------------------------- tandem
# info_field PORT SECTION KEY: one number of INFO SECTION ("" if none).
info_field() {
    local reply
    reply="$(resp "$1" INFO "$2")" || return 0
    if [[ "$reply" =~ (^|$'\n')$3:([0-9]+) ]]; then echo "${BASH_REMATCH[2]}"; fi
}

wait_ping() { # wait_ping PORT PID NAME
    local port=$1 pid=$2 name=$3
    for _ in $(seq 600); do
        if [[ "$(resp "$port" PING)" == "+PONG" ]]; then return; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during start-up; its log:"
            plain_log "$WORK/$name.log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    die "$name did not answer PING on port $port"
}

# spawn_tandem NAME DATA_DIR PORT REPL_PORT [extra node args...]: starts a
# node in the background (log $WORK/NAME.log); sets LAST_PID.
LAST_PID=""
spawn_tandem() {
    local name=$1 dir=$2 port=$3 rport=$4
    shift 4
    NO_COLOR=1 TANDEM_LOG="${TANDEM_LOG:-info}" "$TANDEM" node --data-dir "$dir" \
        --listen "127.0.0.1:$port" --repl-listen "127.0.0.1:$rport" \
        --cluster-secret "$SECRET" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
start_tandem() { # like spawn_tandem, and waits for PING
    spawn_tandem "$@"
    wait_ping "$3" "$LAST_PID" "$1"
}
# stop_tandem PID [SIG]: stops one node (TERM: clean shutdown with checkpoint).
stop_tandem() {
    # (stderr: bash's "Killed" notice of the job, not an error)
    { stop_pid "$1" "${2:-TERM}"; } 2>/dev/null
    forget_pid "$1"
}

bench_init() { # bench_init PORT NAME
    log "$2: tandem-bench init -s $SCALE"
    fg_run "$BENCH" init -s "$SCALE" -p "$1" >"$WORK/init.out" 2>&1 ||
        { cat "$WORK/init.out" >&2; die "tandem-bench init failed against $2"; }
}
# bench_tpcb PORT SECS JSON: one tandem-bench tpcb run; fatal on failure.
bench_tpcb() {
    fg_run "$BENCH" run --mix tpcb -c "$CLIENTS" -j "$JOBS" -T "$2" -p "$1" --json "$3" \
        >"$WORK/bench.out" 2>&1 || { cat "$WORK/bench.out" >&2; die "tandem-bench run failed"; }
    local aborted
    aborted=$(grep -c 'run was aborted' "$WORK/bench.out" || true)
    ((aborted == 0)) || { cat "$WORK/bench.out" >&2; die "tandem-bench run was aborted"; }
}

# wait_caught_up_tandem PRIMARY_PORT STANDBY_PORT: until the standby applied
# everything the primary flushed; sets A0 (the standby's applied_lsn).
A0=""
wait_caught_up_tandem() {
    local f="" a="" i
    for ((i = 0; i < CATCHUP_TIMEOUT_S * 20; i++)); do
        f=$(info_field "$1" replication flush_lsn)
        a=$(info_field "$2" replication applied_lsn)
        if [[ -n "$f" && -n "$a" ]] && ((a >= f)); then
            A0=$a
            return
        fi
        sleep 0.05
    done
    resp "$2" INFO replication >&2 || true
    die "the tandem standby did not catch up with its primary before the stop (applied $a < flushed $f)"
}

# poll_tandem PORT P T0 FILE: samples "us_since_T0 received flush applied"
# every ~20 ms until applied >= P; false on timeout.
poll_tandem() {
    local port=$1 target=$2 t0=$3 file=$4 info rl fl al
    local limit=$((CATCHUP_TIMEOUT_S * 1000000))
    while :; do
        info="$(resp "$port" INFO replication)" || info=""
        now_us
        rl=-1 fl=-1 al=-1
        if [[ "$info" =~ received_lsn:([0-9]+) ]]; then rl=${BASH_REMATCH[1]}; fi
        if [[ "$info" =~ (^|$'\n')flush_lsn:([0-9]+) ]]; then fl=${BASH_REMATCH[2]}; fi
        if [[ "$info" =~ applied_lsn:([0-9]+) ]]; then al=${BASH_REMATCH[1]}; fi
        echo "$((NOW - t0)) $rl $fl $al" >>"$file"
        if ((al >= target)); then return 0; fi
        if ((NOW - t0 > limit)); then return 1; fi
        sleep 0.02
    done
}

# first_reach FILE P: "recv_s flush_s apply_s", the first sample at which
# each column (2..4, microseconds in column 1) was >= P; "-" if never.
first_reach() {
    awk -v p="$2" '
    function f(us) { return sprintf("%.3f", us / 1e6) }
    { for (c = 2; c <= 4; c++) if (!(c in t) && $c >= p) t[c] = $1 }
    END { printf "%s %s %s\n", (2 in t) ? f(t[2]) : "-", (3 in t) ? f(t[3]) : "-", (4 in t) ? f(t[4]) : "-" }' "$1"
}

# first_sample_note LABEL FILE A0 P: a note on what the standby had at the
# first sample (WAL the kernel's socket buffers held at the SIGCONT counts as
# received at once).
first_sample_note() {
    local us rl fl al
    read -r us rl fl al <"$2" || return 0
    awk -v l="$1" -v us="$us" -v rl="$rl" -v al="$al" -v a0="$3" -v p="$4" 'BEGIN {
        m = 1048576
        printf "%s: first sample %.0f ms after the SIGCONT: %.1f of the %.1f MiB backlog received, %.1f applied\n",
            l, us / 1000, (rl > a0 ? rl - a0 : 0) / m, (p - a0) / m, (al > a0 ? al - a0 : 0) / m }' >>"$NOTES"
}

catchup_tandem() { # catchup_tandem W
    local w=$1 p1 r1 p2 r2 ppid spid json tx tps p t0 samples reach
    next_port; p1=$PORT
    next_port; r1=$PORT
    next_port; p2=$PORT
    next_port; r2=$PORT
    log "catchup tandem W=$w: primary, standby s1 (tandem build), both --recovery-redo-workers $w"
    start_tandem "cu-p$w" "$WORK/cu-p$w" "$p1" "$r1" --name p --recovery-redo-workers "$w" \
        --synchronous-commit local --wal-sender-timeout-ms $((SENDER_TIMEOUT_S * 1000)) \
        --max-wal-retention $((64 << 30)) --buffer-pool-bytes $((CATCHUP_POOL_MB * MIB))
    ppid=$LAST_PID
    fg_run "$TANDEM" build --from "127.0.0.1:$r1" --data-dir "$WORK/cu-s$w" --name s1 \
        --cluster-secret "$SECRET" --quiet >"$WORK/build-s$w.out" 2>&1 ||
        { cat "$WORK/build-s$w.out" >&2; die "tandem build failed"; }
    start_tandem "cu-s$w" "$WORK/cu-s$w" "$p2" "$r2" --name s1 --recovery-redo-workers "$w" \
        --buffer-pool-bytes $((CATCHUP_POOL_MB * MIB))
    spid=$LAST_PID
    bench_init "$p1" "tandem primary W=$w"
    wait_caught_up_tandem "$p1" "$p2"
    log "catchup tandem W=$w: standby at applied_lsn $A0; SIGSTOP it, tpcb -c $CLIENTS -T $STOP_SECS on the primary"
    stop_procs "$spid"
    json="$WORK/cu-tandem-$w.json"
    bench_tpcb "$p1" "$STOP_SECS" "$json"
    p=$(info_field "$p1" replication flush_lsn)
    [[ -n "$p" ]] || die "no flush_lsn from the tandem primary"
    tx=$(json_field "$json" transactions)
    tps=$(json_field "$json" tps)
    log "catchup tandem W=$w: P=$p, backlog $(((p - A0) / MIB)) MiB, $tx transactions; SIGCONT"
    samples="$WORK/cu-tandem-$w.samples"
    : >"$samples"
    now_us
    t0=$NOW
    kill -CONT "$spid"
    STOPPED=()
    poll_tandem "$p2" "$p" "$t0" "$samples" ||
        die "tandem standby W=$w did not apply up to $p within ${CATCHUP_TIMEOUT_S}s (last sample: $(tail -n 1 "$samples"))"
    reach=$(first_reach "$samples" "$p")
    log "catchup tandem W=$w: received/flushed/applied at P after $reach s"
    echo "tandem,$w,$tx,$tps,$((p - A0)),${reach// /,}" >>"$CATCHUP_CSV"
    first_sample_note "catch-up tandem W=$w" "$samples" "$A0" "$p"
    stop_tandem "$spid" KILL
    stop_tandem "$ppid" KILL
    [[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$WORK/cu-p$w" "$WORK/cu-s$w"
}

# load_until_tandem PORT BASE_LSN NAME: tpcb in chunks until flush_lsn -
# BASE_LSN >= RECOVERY_MB; sets LOAD_TX (transactions of all chunks).
LOAD_TX=0
load_until_tandem() {
    local port=$1 base=$2 name=$3 target=$((RECOVERY_MB * MIB)) done_b=0 secs rate chunk=0
    local json="$WORK/load.json" f t_start t_end
    secs=$(( ${SMOKE:-0} == 1 ? 1 : 2 ))
    LOAD_TX=0
    while ((done_b < target)); do
        chunk=$((chunk + 1))
        now_us
        t_start=$NOW
        bench_tpcb "$port" "$secs" "$json"
        now_us
        t_end=$NOW
        LOAD_TX=$((LOAD_TX + $(json_field "$json" transactions)))
        f=$(info_field "$port" replication flush_lsn)
        [[ -n "$f" ]] || die "no flush_lsn from $name"
        rate=$(((f - base - done_b) * 1000000 / (t_end - t_start + 1)))
        done_b=$((f - base))
        log "$name: chunk $chunk (${secs}s): $((done_b / MIB)) of $RECOVERY_MB MiB of WAL since the checkpoint"
        # Next chunk: what is left at this rate, 1 to 30 s.
        if ((rate > 0)); then secs=$(((target - done_b + rate - 1) / rate)); else secs=2; fi
        ((secs >= 1)) || secs=1
        ((secs <= 30)) || secs=30
    done
}

recovery_tandem() {
    local p r pid conf base base2 crash_b dir="$WORK/rc-t" img="$WORK/rc-t.crash" run w
    local t0 t1 line from to ms used ckpts
    next_port; p=$PORT
    next_port; r=$PORT
    conf="$WORK/rc-t.toml"
    {
        echo "checkpoint_interval_secs = 3600"
        echo "checkpoint_wal_bytes = 10737418240"
        echo "buffer_pool_bytes = $((RECOVERY_POOL_MB * MIB))"
    } >"$conf"
    log "recovery tandem: load node, init -s $SCALE"
    start_tandem rc-t-init "$dir" "$p" "$r" --name rc
    pid=$LAST_PID
    bench_init "$p" "tandem recovery node"
    # A clean restart: its shutdown checkpoint puts the redo point after the
    # data set load, so the crash below redoes only the tpcb load.
    stop_tandem "$pid" TERM
    plain_log "$WORK/rc-t-init.log" | grep -q 'shut down cleanly' ||
        die "the tandem node did not shut down cleanly after the data set load"
    start_tandem rc-t-load "$dir" "$p" "$r" --name rc --config "$conf"
    pid=$LAST_PID
    base=$(info_field "$p" persistence checkpoint_redo_lsn)
    ckpts=$(info_field "$p" persistence checkpoints)
    [[ -n "$base" ]] || die "no checkpoint_redo_lsn in the tandem node's INFO persistence"
    load_until_tandem "$p" "$base" "recovery tandem"
    base2=$(info_field "$p" persistence checkpoint_redo_lsn)
    [[ "$base2" == "$base" && "$(info_field "$p" persistence checkpoints)" == "$ckpts" ]] ||
        die "a checkpoint ran during the load (redo lsn $base -> $base2): the WAL to redo is not what was loaded"
    crash_b=$(($(info_field "$p" replication flush_lsn) - base))
    log "recovery tandem: SIGKILL with $((crash_b / MIB)) MiB of WAL past the checkpoint's redo point"
    stop_tandem "$pid" KILL
    cp -a "$dir" "$img"
    rm -rf "$dir"
    for w in $WORKERS; do
        run="$WORK/rc-t-run$w"
        rm -rf "$run"
        cp -a "$img" "$run"
        next_port; p=$PORT
        next_port; r=$PORT
        now_us
        t0=$NOW
        spawn_tandem "rc-t-w$w" "$run" "$p" "$r" --name rc --config "$conf" --recovery-redo-workers "$w"
        pid=$LAST_PID
        while [[ "$(resp "$p" PING)" != "+PONG" ]]; do
            if ! kill -0 "$pid" 2>/dev/null; then
                plain_log "$WORK/rc-t-w$w.log" >&2 || true
                die "the tandem node exited during recovery (W=$w)"
            fi
            now_us
            ((NOW - t0 < CATCHUP_TIMEOUT_S * 1000000)) || die "tandem recovery W=$w did not finish within ${CATCHUP_TIMEOUT_S}s"
            sleep 0.005
        done
        now_us
        t1=$NOW
        line=$(plain_log "$WORK/rc-t-w$w.log" | grep -m 1 'recovery done' || true)
        [[ -n "$line" ]] || die "no 'recovery done' line in the tandem log (W=$w)"
        from=$(sed -n 's/.* from=\([0-9]*\).*/\1/p' <<<"$line")
        to=$(sed -n 's/.* to=\([0-9]*\).*/\1/p' <<<"$line")
        ms=$(sed -n 's/.* ms=\([0-9]*\).*/\1/p' <<<"$line")
        [[ -n "$from" && -n "$to" && -n "$ms" ]] || die "cannot parse: $line"
        # Builds with parallel redo name the workers they used.
        used=$(sed -n 's/.* workers=\([0-9]*\).*/\1/p' <<<"$line")
        if [[ -n "$used" && "$used" != "$w" ]]; then
            echo "tandem recovery W=$w: its log says workers=$used" >>"$NOTES"
        fi
        log "recovery tandem W=$w: $(((to - from) / MIB)) MiB redone, redo ${ms} ms, start to PING $(secs_between "$t0" "$t1") s"
        echo "tandem,$w,$LOAD_TX,$((to - from)),$(secs_between "$t0" "$t1"),$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }'),,$crash_b" >>"$RECOVERY_CSV"
        stop_tandem "$pid" KILL
        rm -rf "$run"
    done
    [[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$img"
}

# ---------------------------------------------------------------- postgres
pg() { runuser -u postgres -- "$@"; }
# For timed steps and background processes: setpriv execs (no PAM session,
# no extra process: $! is the program itself).
# (As an array for background commands, so that $! is the program itself.)
PG_AS=(setpriv --reuid=postgres --regid=postgres --init-groups --)
pg_fast() { "${PG_AS[@]}" "$@"; }
pg_conf() { # pg_conf DIR PORT [lines...]: later lines override earlier ones
    local dir=$1 port=$2 l
    shift 2
    {
        echo "# compare-redo.sh"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$WORK/pg'"
        for l in "$@"; do echo "$l"; done
    } | pg tee -a "$dir/postgresql.conf" >/dev/null
}
pg_start() { # pg_start DIR: pg_ctl start -w
    PG_DIRS+=("$1")
    pg "$PGBIN/pg_ctl" -D "$1" -l "$1.log" -w -t 120 start >/dev/null ||
        { cat "$1.log" >&2; die "PostgreSQL in $1 did not start"; }
}
pg_stop() { # pg_stop DIR MODE
    pg "$PGBIN/pg_ctl" -D "$1" -m "$2" -w -t 120 stop >/dev/null || die "pg_ctl stop -m $2 of $1 failed"
}
pg_initdb() { # pg_initdb DIR
    pg "$PGBIN/initdb" -D "$1" -U postgres --auth=trust >"$1.initdb.log" 2>&1 ||
        { cat "$1.initdb.log" >&2; die "initdb failed"; }
}
psql_q() { # psql_q PORT SQL
    pg "$PGBIN/psql" -X -h "$WORK/pg" -p "$1" -U postgres -d postgres -Atqc "$2"
}
pgbench_init() { # pgbench_init PORT
    log "postgresql: pgbench -i -s $SCALE"
    fg_run "${PG_AS[@]}" "$PGBIN/pgbench" -h "$WORK/pg" -p "$1" -U postgres -i -s "$SCALE" -q postgres >"$WORK/pg/init.log" 2>&1 ||
        { cat "$WORK/pg/init.log" >&2; die "pgbench -i failed"; }
}
# pgbench_tpcb PORT SECS: sets PGB_TX and PGB_TPS.
PGB_TX=0 PGB_TPS=0
pgbench_tpcb() {
    fg_run "${PG_AS[@]}" "$PGBIN/pgbench" -h "$WORK/pg" -p "$1" -U postgres -n -c "$CLIENTS" -j "$JOBS" -T "$2" postgres \
        >"$WORK/pg/pgbench.out" 2>&1 || { cat "$WORK/pg/pgbench.out" >&2; die "pgbench failed"; }
    PGB_TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pg/pgbench.out")
    PGB_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$WORK/pg/pgbench.out")
    [[ -n "$PGB_TX" && -n "$PGB_TPS" ]] || { cat "$WORK/pg/pgbench.out" >&2; die "no transactions/tps in pgbench's output"; }
}
lsn_bytes() { # lsn_bytes X/Y: the LSN as a byte position
    local hi=${1%/*} lo=${1#*/}
    echo $(((16#$hi << 32) + 16#$lo))
}
# pg_tree PID: the pid and every process below it.
pg_tree() {
    local c
    echo "$1"
    for c in $(pgrep -P "$1" || true); do pg_tree "$c"; done
}

catchup_pg() {
    local p1 p2 d1="$WORK/pg/cu-primary" d2="$WORK/pg/cu-standby" pm pids p i a f t0 samples
    local spid reach tx tps
    mkdir -p "$WORK/pg"
    chown postgres "$WORK/pg"
    next_port; p1=$PORT
    next_port; p2=$PORT
    log "catchup postgresql: primary, pg_basebackup -R -C -S s1 standby"
    pg_initdb "$d1"
    pg_conf "$d1" "$p1" "synchronous_commit = local" "synchronous_standby_names = ''" \
        "shared_buffers = ${CATCHUP_POOL_MB}MB" "wal_sender_timeout = ${SENDER_TIMEOUT_S}s"
    pg_start "$d1"
    fg_run "${PG_AS[@]}" "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D "$d2" -R -C -S s1 -X stream -c fast \
        >"$WORK/pg/basebackup.log" 2>&1 || { cat "$WORK/pg/basebackup.log" >&2; die "pg_basebackup failed"; }
    pg_conf "$d2" "$p2" "wal_receiver_timeout = ${SENDER_TIMEOUT_S}s"
    # After the lines pg_basebackup -R wrote (auto.conf is read last): name it s1.
    echo "primary_conninfo = 'host=127.0.0.1 port=$p1 user=postgres application_name=s1'" |
        pg tee -a "$d2/postgresql.auto.conf" >/dev/null
    pg_start "$d2"
    pgbench_init "$p1"
    psql_q "$p1" "CHECKPOINT" >/dev/null
    for ((i = 0; i < CATCHUP_TIMEOUT_S * 10; i++)); do
        f=$(psql_q "$p1" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        a=$(psql_q "$p2" "SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, -1)")
        if ((a >= f)); then break; fi
        sleep 0.1
    done
    ((a >= f)) || die "the PostgreSQL standby did not catch up before the stop (replay $a < $f)"
    A0=$a
    pm=$(head -n 1 "$d2/postmaster.pid")
    mapfile -t pids < <(pg_tree "$pm")
    log "catchup postgresql: standby at replay $A0; SIGSTOP of its ${#pids[@]} processes, pgbench -c $CLIENTS -T $STOP_SECS"
    stop_procs "${pids[@]}"
    pgbench_tpcb "$p1" "$STOP_SECS"
    tx=$PGB_TX tps=$PGB_TPS
    p=$(psql_q "$p1" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
    log "catchup postgresql: P=$p, backlog $(((p - A0) / MIB)) MiB, $tx transactions; SIGCONT"
    samples="$WORK/cu-pg.watch"
    : >"$samples"
    chown postgres "$samples"
    now_us
    t0=$NOW
    kill -CONT "${pids[@]}"
    STOPPED=()
    # One session samples every ~20 ms: server time, received (written),
    # flushed, replayed.
    echo "SELECT 'S', extract(epoch from clock_timestamp()),
        coalesce((SELECT pg_wal_lsn_diff(written_lsn, '0/0')::bigint FROM pg_stat_wal_receiver), -1),
        coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint, -1),
        coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, -1) \\watch 0.02" |
        "${PG_AS[@]}" "$PGBIN/psql" -X -Atq -h "$WORK/pg" -p "$p2" -U postgres -d postgres >"$samples" 2>"$WORK/pg/watch.log" &
    spid=$!
    PIDS+=("$spid")
    for ((;;)); do
        if awk -F'|' -v p="$p" '$1 == "S" { last = $5 } END { exit !(last != "" && last + 0 >= p) }' "$samples"; then break; fi
        kill -0 "$spid" 2>/dev/null || { cat "$WORK/pg/watch.log" >&2; die "the psql sampler on the PostgreSQL standby exited"; }
        now_us
        ((NOW - t0 < CATCHUP_TIMEOUT_S * 1000000)) || die "the PostgreSQL standby did not replay up to $p within ${CATCHUP_TIMEOUT_S}s"
        # Only decides when to end: the times come from psql's samples.
        sleep 0.05
    done
    stop_pid "$spid"
    forget_pid "$spid"
    # Samples as "us_since_T0 received flushed replayed".
    awk -F'|' -v t0="$t0" '$1 == "S" { printf "%.0f %s %s %s\n", $2 * 1e6 - t0, $3, $4, $5 }' "$samples" >"$samples.txt"
    reach=$(first_reach "$samples.txt" "$p")
    log "catchup postgresql: received/flushed/replayed at P after $reach s"
    echo "postgresql,-,$tx,$tps,$((p - A0)),${reach// /,}" >>"$CATCHUP_CSV"
    first_sample_note "catch-up PostgreSQL" "$samples.txt" "$A0" "$p"
    stop_all
    [[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$d1" "$d2"
}

recovery_pg() {
    local p d="$WORK/pg/rc" img="$WORK/pg/rc.crash" run="$WORK/pg/rc-run" base base2 target
    local done_b=0 secs chunk=0 rate t_start t_end t0 t1 st start_lsn done_lsn elapsed ckpt tx=0 crash_b
    mkdir -p "$WORK/pg"
    chown postgres "$WORK/pg"
    next_port; p=$PORT
    pg_initdb "$d"
    pg_conf "$d" "$p" "synchronous_commit = local" "checkpoint_timeout = 1h" "max_wal_size = 20GB" \
        "shared_buffers = ${RECOVERY_POOL_MB}MB" "log_checkpoints = on"
    pg_start "$d"
    pgbench_init "$p"
    # The redo point after the data set load: the crash redoes only TPC-B.
    psql_q "$p" "CHECKPOINT" >/dev/null
    base=$(psql_q "$p" "SELECT redo_lsn FROM pg_control_checkpoint()")
    target=$((RECOVERY_MB * MIB))
    secs=2
    while ((done_b < target)); do
        chunk=$((chunk + 1))
        now_us
        t_start=$NOW
        pgbench_tpcb "$p" "$secs"
        now_us
        t_end=$NOW
        tx=$((tx + PGB_TX))
        f=$(psql_q "$p" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$base')::bigint")
        rate=$(((f - done_b) * 1000000 / (t_end - t_start + 1)))
        done_b=$f
        log "recovery postgresql: chunk $chunk (${secs}s): $((done_b / MIB)) of $RECOVERY_MB MiB of WAL since the checkpoint"
        if ((rate > 0)); then secs=$(((target - done_b + rate - 1) / rate)); else secs=2; fi
        ((secs >= 1)) || secs=1
        ((secs <= 30)) || secs=30
    done
    base2=$(psql_q "$p" "SELECT redo_lsn FROM pg_control_checkpoint()")
    [[ "$base2" == "$base" ]] || die "a PostgreSQL checkpoint ran during the load (redo $base -> $base2)"
    crash_b=$(psql_q "$p" "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$base')::bigint")
    log "recovery postgresql: pg_ctl stop -m immediate with $((crash_b / MIB)) MiB of WAL past the redo point"
    pg_stop "$d" immediate
    cp -a "$d" "$img"
    cp -a "$img" "$run"
    PG_DIRS+=("$run")
    now_us
    t0=$NOW
    pg_fast "$PGBIN/pg_ctl" -D "$run" -l "$run.log" -W start >/dev/null || die "pg_ctl start of the crashed copy failed"
    # What pg_ctl -w waits for (postmaster.pid line 8), polled every ~5 ms.
    for ((;;)); do
        st=""
        if [[ -f "$run/postmaster.pid" ]]; then
            st=$(sed -n 8p "$run/postmaster.pid" 2>/dev/null || true)
        fi
        [[ "$st" == ready* ]] && break
        now_us
        ((NOW - t0 < CATCHUP_TIMEOUT_S * 1000000)) || die "PostgreSQL recovery did not finish within ${CATCHUP_TIMEOUT_S}s"
        if [[ "$st" == stopping* ]] || grep -q 'FATAL\|PANIC' "$run.log" 2>/dev/null; then
            cat "$run.log" >&2
            die "PostgreSQL recovery failed"
        fi
        sleep 0.005
    done
    now_us
    t1=$NOW
    start_lsn=$(sed -n 's/.*redo starts at \([0-9A-F]*\/[0-9A-F]*\).*/\1/p' "$run.log" | head -n 1)
    done_lsn=$(sed -n 's/.*redo done at \([0-9A-F]*\/[0-9A-F]*\).*/\1/p' "$run.log" | head -n 1)
    elapsed=$(sed -n 's/.*redo done at .*elapsed: \([0-9.]*\) s.*/\1/p' "$run.log" | head -n 1)
    ckpt=$(grep 'checkpoint complete' "$run.log" | head -n 1 | sed -n 's/.*total=\([0-9.]*\) s.*/\1/p')
    if [[ -z "$start_lsn" || -z "$done_lsn" || -z "$elapsed" ]]; then
        cat "$run.log" >&2
        die "no 'redo starts at' / 'redo done at ... elapsed' in the PostgreSQL log"
    fi
    log "recovery postgresql: redo $start_lsn -> $done_lsn in $elapsed s (log), start to ready $(secs_between "$t0" "$t1") s"
    # Where PostgreSQL's start to ready goes, from its log's timestamps
    # (log_line_prefix '%m [%p] ': "YYYY-MM-DD HH:MM:SS.mmm UTC").
    awk -v redo="$elapsed" -v ck="${ckpt:-?}" -v wall="$(secs_between "$t0" "$t1")" '
        function sec(t, a) { split(t, a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
        NR == 1 { t0 = sec($2) }
        /redo starts at/ && !rs { rs = sec($2) }
        /database system is ready to accept connections/ && !rd { rd = sec($2) }
        END {
            if (rs < t0) rs += 86400
            if (rd < t0) rd += 86400
            printf "PostgreSQL crash recovery: %.3f s from its first log line to \"redo starts at\" (mostly the fsync of the whole data directory, recovery_init_sync_method = fsync), %s s redo, %s s end-of-recovery checkpoint, ready %.3f s after its first log line; %s s start to ready as measured here\n",
                rs - t0, redo, ck, rd - t0, wall }' "$run.log" >>"$NOTES"
    echo "postgresql,-,$tx,$(($(lsn_bytes "$done_lsn") - $(lsn_bytes "$start_lsn"))),$(secs_between "$t0" "$t1"),$elapsed,$ckpt,$crash_b" >>"$RECOVERY_CSV"
    stop_all
    [[ "${KEEP_WORK:-0}" == 1 ]] || rm -rf "$d" "$img" "$run"
}

# ---------------------------------------------------------------- run
STARTED=$(date +%s)
if has_section catchup; then
    log "=== section catchup ==="
    if has_system tandem; then for w in $WORKERS; do catchup_tandem "$w"; done; fi
    if has_system pg; then catchup_pg; fi
fi
if has_section recovery; then
    log "=== section recovery ==="
    if has_system tandem; then recovery_tandem; fi
    if has_system pg; then recovery_pg; fi
fi
ELAPSED=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------- report
report() {
    echo "# Redo speed, tandem vs PostgreSQL 15, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Host: $(nproc) cores, $(uname -r), $(df -PT "$WORK" | awk 'NR == 2 { print $2 }') on $(df -P "$WORK" | awk 'NR == 2 { print $1 }');" \
        "$BUILD_INFO."
    echo "Command: \`SECTIONS=$SECTIONS SYSTEMS=$SYSTEMS WORKERS=\"$WORKERS\" SCALE=$SCALE STOP_SECS=$STOP_SECS RECOVERY_MB=$RECOVERY_MB${SMOKE:+ SMOKE=$SMOKE} perf/compare-redo.sh\` ($ELAPSED s)."
    echo "Servers and load generators share the same $(nproc) cores; the machine is shared, so"
    echo "compare ratios within this run, not absolute figures across runs. MiB = 2^20 bytes."
    echo
    if has_section catchup; then
        echo "## Catch-up of a stopped standby (tpcb / TPC-B, $CLIENTS clients, $STOP_SECS s, scale $SCALE)"
        echo
        echo "The standby is SIGSTOPped for the whole run; backlog = primary's flush LSN after the run"
        echo "minus the standby's applied LSN before the stop. Seconds count from the SIGCONT until the"
        echo "standby's received / flushed / applied LSN reached the primary's (samples every ~20 ms)."
        echo "applied tx/s = transactions of the run / apply seconds (compare with load tps: the rate"
        echo "the standby would need to keep up). W = --recovery-redo-workers. PostgreSQL's WAL carries"
        echo "full-page images, so its bytes per transaction are higher: see both ratios."
        echo
        echo "| system | W | transactions | load tps | backlog MiB | received s | receive MiB/s | flushed s | applied s | apply MiB/s | applied tx/s | x W=1 | x PostgreSQL per byte | x PostgreSQL per tx |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F, '
        function r(a, b) { return (a != "" && b != "" && b + 0 > 0) ? sprintf("%.2f", a / b) : "-" }
        function rate(n, s) { return (s != "-" && s + 0 > 0) ? n / s : "" }
        function f1(x) { return x == "" ? "-" : sprintf("%.1f", x) }
        function f0(x) { return x == "" ? "-" : sprintf("%.0f", x) }
        {
            n++; sys[n] = $1; w[n] = $2; tx[n] = $3; tps[n] = $4; mib[n] = $5 / 1048576
            rs[n] = $6; fs[n] = $7; as[n] = $8
            rmb[n] = rate(mib[n], rs[n]); amb[n] = rate(mib[n], as[n]); atx[n] = rate(tx[n], as[n])
            if ($1 == "tandem" && $2 == "1") { w1 = amb[n] }
            if ($1 == "postgresql") { pgmb = amb[n]; pgtx = atx[n] }
        }
        END {
            for (i = 1; i <= n; i++) {
                t = sys[i] == "tandem"
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    sys[i], w[i], tx[i], f0(tps[i]), f1(mib[i]), rs[i], f1(rmb[i]), fs[i], as[i],
                    f1(amb[i]), f0(atx[i]), t ? r(amb[i], w1) : "-",
                    t ? r(amb[i], pgmb) : "-", t ? r(atx[i], pgtx) : "-"
            }
        }' "$CATCHUP_CSV"
        echo
    fi
    if has_section recovery; then
        echo "## Crash recovery of about $RECOVERY_MB MiB of WAL (tpcb / TPC-B, $CLIENTS clients, scale $SCALE)"
        echo
        echo "WAL MiB redone and redo seconds from each system's own log (tandem: \"recovery done"
        echo "from= to= ms=\"; PostgreSQL: \"redo starts at\" / \"redo done at ... elapsed:\"); start to"
        echo "ready = wall time from the exec until tandem answers PING / postmaster.pid says ready."
        echo "PostgreSQL's start to ready includes its end-of-recovery checkpoint (checkpoint s, from"
        echo "its log); tandem answers right after redo. Every start is on a fresh copy of the same"
        echo "crash image. Ratios are on the redo rate (MiB/s and transactions/s of the redo seconds)."
        echo
        echo "| system | W | transactions | WAL MiB redone | redo s | redo MiB/s | redo tx/s | checkpoint s | start to ready s | start to ready MiB/s | x W=1 | x PostgreSQL per byte | x PostgreSQL per tx |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        awk -F, '
        function r(a, b) { return (a != "" && b != "" && b + 0 > 0) ? sprintf("%.2f", a / b) : "-" }
        function rate(x, s) { return (s != "" && s + 0 > 0) ? x / s : "" }
        function f1(x) { return x == "" ? "-" : sprintf("%.1f", x) }
        function f0(x) { return x == "" ? "-" : sprintf("%.0f", x) }
        {
            n++; sys[n] = $1; w[n] = $2; tx[n] = $3; mib[n] = $4 / 1048576; wall[n] = $5
            redo[n] = $6; ck[n] = $7
            rmb[n] = rate(mib[n], redo[n]); rtx[n] = rate(tx[n], redo[n]); wmb[n] = rate(mib[n], wall[n])
            if ($1 == "tandem" && $2 == "1") { w1 = rmb[n] }
            if ($1 == "postgresql") { pgmb = rmb[n]; pgtx = rtx[n] }
        }
        END {
            for (i = 1; i <= n; i++) {
                t = sys[i] == "tandem"
                printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    sys[i], w[i], tx[i], f1(mib[i]), redo[i], f1(rmb[i]), f0(rtx[i]),
                    ck[i] == "" ? "-" : ck[i], wall[i], f1(wmb[i]), t ? r(rmb[i], w1) : "-",
                    t ? r(rmb[i], pgmb) : "-", t ? r(rtx[i], pgtx) : "-"
            }
        }' "$RECOVERY_CSV"
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
