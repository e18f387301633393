#!/usr/bin/env bash
# Switchover and failover, side by side: tandem vs PostgreSQL 15 streaming
# replication, on this machine, in one run. Every server runs on loopback on
# free ports in a temp dir; every process started here is stopped and every
# temp dir removed on exit (also on error or Ctrl-C).
#
# Sections (SECTIONS, comma-separated; default pg,tandem):
#   pg      Each run on a fresh pair: primary (synchronous_commit = on,
#           synchronous_standby_names = '*') and a pg_basebackup -R standby
#           (application_name s1; its own synchronous_standby_names = '', so
#           once promoted, alone, it commits locally instead of waiting for a
#           standby forever). Writer: perf/failover.py write, 4 threads of
#           single-row INSERTs (psycopg2), each acknowledged commit stamped;
#           on an error a thread moves to the other node and retries after
#           ~1 ms on its open connection.
#           failover:   kill -9 of the primary's postmaster and its children,
#                       then `pg_ctl promote -w` on the standby. Figures:
#                       promote command -> first commit on the standby, and
#                       kill -> first commit.
#           switchover: by hand: `pg_ctl stop -m fast` on the primary (its
#                       exit awaited by polling postmaster.pid every ~1 ms, not
#                       pg_ctl's 100 ms poll), `pg_ctl promote` on the
#                       standby, then the old primary gets standby.signal and
#                       a primary_conninfo to the new one and is started.
#                       Figures: write pause = last commit on the old primary
#                       -> first commit on the new one; stop command -> the
#                       old primary streaming from the new one again.
#           Both check that every commit the writer saw acknowledged is on
#           the new primary (lost = 0).
#   tandem  Each run on a fresh `tandemctl cluster up --standbys 1
#           --synchronous-commit on --synchronous-standby-names '*'`, the
#           standby B then set to synchronous_standby_names '' (CONFIG SET),
#           as the PostgreSQL standby is; load: tandem-bench run --mix
#           simple-update -c 4 -j 2 --hosts A,B --pause-threshold-ms 1
#           --reconnect-backoff-max-ms 1 --max-tries 1000 (so the tool's own
#           backoff stays out of the outage and no transaction is given up
#           while the primary is fenced), after tandem-bench init -s 1.
#           switchover: `tandemctl switchover --host B`; write pause = the
#                       longest pause (no ack on any client) overlapping the
#                       command that goes from A to B (as PostgreSQL's: last
#                       ack on A -> first ack on B); old primary streaming
#                       again = the command's start -> B lists a streaming
#                       standby and A reports role standby (INFO replication
#                       over /dev/tcp, a poll every ~5 ms).
#           failover:   SIGKILL of A (the pid in its data directory's lock
#                       file: the same instant kill as PostgreSQL's), then
#                       `tandemctl failover --host B`; the pause that holds
#                       the failover command ends at the first ack on B:
#                       failover command -> first ack, and kill -> first ack.
#           Skipped with a message when this tandemctl has no switchover,
#           failover or cluster up command yet.
#
# Env:
#   SECTIONS   pg, tandem or pg,tandem (default)
#   SCENARIOS  failover, switchover or failover,switchover (default)
#   RUNS       runs per scenario and system (default 5); p50 over them
#   SMOKE=1    RUNS=1 and shorter loads: a check that everything runs
#   OUT        results file (default perf/results/compare-failover-<date>.md;
#              SMOKE runs only print, unless OUT is given)
#   BIN_DIR    directory holding prebuilt tandem, tandemctl, tandem-bench
#              (default: cargo build --release, then its target dir)
#   PGBIN      PostgreSQL 15 binaries (default /usr/lib/postgresql/15/bin)
#   TANDEM_PAUSE_THRESHOLD_MS  tandem-bench --pause-threshold-ms (default 1:
#              a switchover pause of a few ms must show; only pauses around
#              the command count, so the many short ones elsewhere do not)
#   KEEP_WORK=1  keep the temp dir (server logs, writer records) for a post-mortem
# Needs root (PostgreSQL runs as 'postgres' through runuser); installs
# postgresql and python3-psycopg2 with apt-get when missing.
#
# Examples:
#   perf/compare-failover.sh                     # both sections, 5 runs each
#   SECTIONS=pg RUNS=3 perf/compare-failover.sh  # PostgreSQL only
#   SMOKE=1 perf/compare-failover.sh             # one run of everything
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=perf/lib.sh
source "$ROOT/perf/lib.sh"
SECTIONS="${SECTIONS:-pg,tandem}"
SCENARIOS="${SCENARIOS:-failover,switchover}"
if [[ "${SMOKE:-0}" == 1 ]]; then
    RUNS="${RUNS:-1}"
    WARM_S=1
else
    RUNS="${RUNS:-5}"
    WARM_S=2
fi
CLIENTS=4
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PAUSE_MS="${TANDEM_PAUSE_THRESHOLD_MS:-1}"
HELPER="$ROOT/perf/failover.py"
DATE="$(date +%Y%m%d-%H%M%S)"
# Bounds on every wait (seconds): a stuck server fails the script, never hangs it.
WAIT_S=30

log() { echo "compare-failover: $*" >&2; }
die() {
    log "error: $*"
    if [[ -n "${WORK:-}" ]]; then
        for f in "$WORK"/*.log "$WORK"/pg/*.log "$WORK"/pg/*/log/*; do
            [[ -s "$f" ]] || continue
            log "--- tail of $f"
            tail -n 8 "$f" >&2
        done
    fi
    exit 1
}
has_section() { [[ ",$SECTIONS," == *",$1,"* ]]; }
has_scenario() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
now_us() { date +%s%6N; }

for s in ${SECTIONS//,/ }; do
    case "$s" in
    pg | tandem) ;;
    *) die "unknown section '$s' (known: pg,tandem)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"

# ---------------------------------------------------------------- installs
apt_install() {
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    log "installing $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2 ||
        { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2; }
}
# The helper's python: the first that has psycopg2 (pg section), else python3.
# (A pyenv python3 first on PATH does not see Debian's python3-psycopg2.)
PY=""
pick_python() {
    local cand
    for cand in "${PYTHON:-}" python3 /usr/bin/python3; do
        if [[ -z "$cand" ]] || ! command -v "$cand" >/dev/null; then continue; fi
        if "$cand" -c "$1" 2>/dev/null; then
            PY=$cand
            return 0
        fi
    done
    return 1
}
if has_section pg; then
    if [[ ! -x "$PGBIN/pg_ctl" ]]; then apt_install postgresql; fi
    [[ -x "$PGBIN/pg_ctl" ]] || die "no PostgreSQL 15 in $PGBIN (set PGBIN)"
    id postgres >/dev/null 2>&1 || die "no 'postgres' user"
    [[ "$(id -u)" == 0 ]] || die "the pg section runs PostgreSQL as 'postgres' via runuser: run as root"
    if ! pick_python 'import psycopg2'; then
        apt_install python3-psycopg2
        pick_python 'import psycopg2' || die "no python3 with psycopg2 (set PYTHON)"
    fi
else
    pick_python 'import json' || { apt_install python3 && pick_python 'import json'; } || die "no python3"
fi

TANDEM_READY=0
if has_section tandem; then
    if [[ -n "${BIN_DIR:-}" ]]; then
        log "using binaries in $BIN_DIR"
    else
        log "building tandem, tandemctl and tandem-bench (release)"
        (cd "$ROOT" && cargo build --release --quiet --bin tandem --bin tandemctl --bin tandem-bench)
        BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
    fi
    CTL="$BIN_DIR/tandemctl"
    BENCH="$BIN_DIR/tandem-bench"
    for b in "$BIN_DIR/tandem" "$CTL" "$BENCH"; do [[ -x "$b" ]] || die "missing binary $b"; done
    TANDEM_READY=1
    for cmd in "switchover" "failover" "cluster up"; do
        # shellcheck disable=SC2086 # "cluster up" is two words on purpose
        if ! "$CTL" $cmd --help >/dev/null 2>&1; then
            log "SKIPPING the tandem section: '$CTL $cmd --help' fails (this tandemctl has no '$cmd' command yet)"
            TANDEM_READY=0
            break
        fi
    done
    if ((TANDEM_READY)) && ! "$BENCH" run --help 2>/dev/null | grep -q -- --pause-threshold-ms; then
        log "SKIPPING the tandem section: tandem-bench has no --pause-threshold-ms"
        TANDEM_READY=0
    fi
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/compare-failover.XXXXXX")"
chmod 755 "$WORK" # the postgres user must reach its dirs below
if [[ -z "${OUT:-}" && "${SMOKE:-0}" != 1 ]]; then OUT="$ROOT/perf/results/compare-failover-$DATE.md"; fi
if [[ -n "${OUT:-}" ]]; then mkdir -p "$(dirname "$OUT")"; fi
RESULTS="$WORK/results.csv" # system,scenario,metric,run,value_ms
: >"$RESULTS"
NOTES="$WORK/notes.txt"
: >"$NOTES"

# ---------------------------------------------------------------- processes
PIDS=()            # writers, tandem-bench runs
PG_DIRS=()         # PostgreSQL data dirs started with pg_ctl
TANDEM_CLUSTERS=() # dirs of `tandemctl cluster up`

stop_all() {
    local i d
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}"; done
    PIDS=()
    for ((i = ${#PG_DIRS[@]} - 1; i >= 0; i--)); do
        d=${PG_DIRS[$i]}
        if [[ -f "$d/postmaster.pid" ]]; then
            runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    PG_DIRS=()
    for ((i = ${#TANDEM_CLUSTERS[@]} - 1; i >= 0; i--)); do
        "$CTL" cluster down --dir "${TANDEM_CLUSTERS[$i]}" >/dev/null 2>&1 || true
    done
    TANDEM_CLUSTERS=()
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
trap 'exit 130' INT TERM

# Like lib.sh's free_port (below the ephemeral range: nodes restart on their
# ports while the writer's connections come and go), but never the same
# port twice in one run.
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
# record SYSTEM SCENARIO RUN "k=v k=v ...": one CSV row per k=v.
record() {
    local system=$1 scenario=$2 run=$3 kv
    for kv in $4; do
        echo "$system,$scenario,${kv%%=*},$run,${kv#*=}" >>"$RESULTS"
    done
}

# wait_file FILE WHAT: waits up to WAIT_S for FILE to exist.
wait_file() {
    local i
    for ((i = 0; i < WAIT_S * 200; i++)); do
        [[ -e "$1" ]] && return
        sleep 0.005
    done
    die "timed out waiting for $2"
}

# ---------------------------------------------------------------- postgres
pg() { runuser -u postgres -- "$@"; }
# For the timed steps: setpriv adds ~1 ms to an exec, runuser (a PAM
# session) 4-7 ms here; tandemctl runs without either.
pg_fast() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
pg_conf() { # pg_conf DIR PORT [lines...]: later lines override earlier ones
    local dir=$1 port=$2 l
    shift 2
    {
        echo "# compare-failover.sh"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$WORK/pg'"
        for l in "$@"; do echo "$l"; done
    } | pg tee -a "$dir/postgresql.conf" >/dev/null
}
pg_start() { # pg_start DIR: pg_ctl start -w
    PG_DIRS+=("$1")
    pg "$PGBIN/pg_ctl" -D "$1" -l "$1.log" -w -t 60 start >/dev/null ||
        { cat "$1.log" >&2; die "PostgreSQL in $1 did not start"; }
}
psql_q() { # psql_q PORT SQL
    pg "$PGBIN/psql" -h "$WORK/pg" -p "$1" -U postgres -d postgres -Atqc "$2"
}
pg_pid() { head -n 1 "$1/postmaster.pid"; }

# pg_pair RUN: a fresh primary (port PG_P1, dir PG_D1) with a synchronous
# standby s1 (PG_P2, PG_D2), the writer's table created.
PG_P1="" PG_P2="" PG_D1="" PG_D2=""
pg_pair() {
    local run=$1 i
    next_port; PG_P1=$PORT
    next_port; PG_P2=$PORT
    PG_D1="$WORK/pg/$run-a"
    PG_D2="$WORK/pg/$run-b"
    pg cp -a "$WORK/pg/template" "$PG_D1"
    pg_conf "$PG_D1" "$PG_P1" "synchronous_commit = on" "synchronous_standby_names = '*'"
    pg_start "$PG_D1"
    # No standby yet: this one commit must not wait for one.
    psql_q "$PG_P1" "SET synchronous_commit = local; CREATE TABLE t (w int, seq bigint, at timestamptz DEFAULT now())" >/dev/null
    pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PG_P1" -U postgres -D "$PG_D2" -R -X stream -c fast \
        >"$WORK/pg/basebackup.log" 2>&1 || { cat "$WORK/pg/basebackup.log" >&2; die "pg_basebackup failed"; }
    pg_conf "$PG_D2" "$PG_P2" "synchronous_standby_names = ''"
    echo "primary_conninfo = 'host=127.0.0.1 port=$PG_P1 user=postgres application_name=s1'" |
        pg tee -a "$PG_D2/postgresql.auto.conf" >/dev/null
    pg_start "$PG_D2"
    for ((i = 0; i < WAIT_S * 10; i++)); do
        [[ "$(psql_q "$PG_P1" "SELECT sync_state FROM pg_stat_replication WHERE application_name = 's1'")" == sync ]] && return
        sleep 0.1
    done
    die "PostgreSQL standby s1 did not become synchronous"
}

# writer_start NAME: the PostgreSQL writer on PG_P1,PG_P2; waits for its first commits.
WRITER_PID="" WRITER_OUT="" WRITER_STOP=""
writer_start() {
    WRITER_OUT="$WORK/pg/$1.commits"
    WRITER_STOP="$WORK/pg/$1.stop"
    "$PY" "$HELPER" write "$PG_P1,$PG_P2" "$CLIENTS" "$WRITER_OUT" "$WRITER_STOP" 200 300 \
        >"$WORK/writer.log" 2>&1 &
    WRITER_PID=$!
    PIDS+=("$WRITER_PID")
    wait_file "$WRITER_OUT.ready" "the writer's first commits"
}
writer_stop() {
    touch "$WRITER_STOP"
    wait "$WRITER_PID" || { cat "$WORK/writer.log" >&2; die "the writer failed"; }
}

pg_failover_run() {
    local run=$1 pm kids shmid t_kill t_promote t_promoted figures
    pg_pair "fo$run"
    writer_start "fo$run"
    sleep "$WARM_S"
    # The node is lost: the postmaster and every child at once.
    pm=$(pg_pid "$PG_D1")
    kids=$(ps -o pid= --ppid "$pm" | tr '\n' ' ')
    t_kill=$(now_us)
    # shellcheck disable=SC2086 # kids is a list of pids
    kill -KILL "$pm" $kids
    t_promote=$(now_us)
    pg_fast "$PGBIN/pg_ctl" -D "$PG_D2" -w -t "$WAIT_S" promote >/dev/null || die "pg_ctl promote failed"
    t_promoted=$(now_us)
    wait_file "$WRITER_OUT.first.$PG_P2" "the first commit on the promoted standby"
    # The killed postmaster's System V segment (postmaster.pid line 7: key id)
    # outlives it; nothing will start on that directory again to reclaim it.
    shmid=$(sed -n '7p' "$PG_D1/postmaster.pid" | awk '{ print $2 }')
    if [[ -n "$shmid" ]]; then ipcrm -m "$shmid" 2>/dev/null || true; fi
    sleep 0.3
    writer_stop
    figures=$("$PY" "$HELPER" pg-failover "$WRITER_OUT" "$PG_P1" "$PG_P2" "$t_kill" "$t_promote" "$t_promoted") ||
        die "no figures for PostgreSQL failover run $run"
    log "postgresql failover run $run: $figures"
    record postgresql failover "$run" "$figures"
    note_slow_promote failover "$run" "$figures" pg_ctl_promote_ms
    stop_all
    if [[ "${KEEP_WORK:-0}" != 1 ]]; then rm -rf "$PG_D1" "$PG_D2" "$PG_D1.log" "$PG_D2.log"; fi
}

pg_switchover_run() {
    local run=$1 i t_stop t_stopped t_promote t_streaming figures
    pg_pair "so$run"
    writer_start "so$run"
    sleep "$WARM_S"
    t_stop=$(now_us)
    pg_fast "$PGBIN/pg_ctl" -D "$PG_D1" -m fast -W stop >/dev/null || die "pg_ctl stop failed"
    for ((i = 0; i < WAIT_S * 1000; i++)); do
        [[ -e "$PG_D1/postmaster.pid" ]] || break
        sleep 0.001
    done
    [[ ! -e "$PG_D1/postmaster.pid" ]] || die "the old primary did not stop"
    t_stopped=$(now_us)
    t_promote=$(now_us)
    pg_fast "$PGBIN/pg_ctl" -D "$PG_D2" -W promote >/dev/null || die "pg_ctl promote failed"
    # The writer's first commit there says the promotion is done.
    wait_file "$WRITER_OUT.first.$PG_P2" "the first commit on the promoted standby"
    pg_fast touch "$PG_D1/standby.signal"
    echo "primary_conninfo = 'host=127.0.0.1 port=$PG_P2 user=postgres application_name=s0'" |
        pg_fast tee -a "$PG_D1/postgresql.auto.conf" >/dev/null
    pg_fast "$PGBIN/pg_ctl" -D "$PG_D1" -l "$PG_D1.log" -W start >/dev/null || die "restart of the old primary failed"
    t_streaming=$("$PY" "$HELPER" wait-sql "$PG_P2" \
        "SELECT count(*) FROM pg_stat_replication WHERE application_name = 's0' AND state = 'streaming'" 1 "$WAIT_S") ||
        die "the old primary did not stream from the new one"
    sleep 0.3
    writer_stop
    figures=$("$PY" "$HELPER" pg-switchover "$WRITER_OUT" "$PG_P1" "$PG_P2" "$t_stop" "$t_stopped" "$t_promote" "$t_streaming") ||
        die "no figures for PostgreSQL switchover run $run"
    log "postgresql switchover run $run: $figures"
    record postgresql switchover "$run" "$figures"
    note_slow_promote switchover "$run" "$figures" promote_to_first_ms
    stop_all
    if [[ "${KEEP_WORK:-0}" != 1 ]]; then rm -rf "$PG_D1" "$PG_D2" "$PG_D1.log" "$PG_D2.log"; fi
}

# note_slow_promote SCENARIO RUN FIGURES KEY: a note when KEY is over 1 s.
note_slow_promote() {
    local v
    v=$(tr ' ' '\n' <<<"$3" | sed -n "s/^$4=//p")
    if awk -v v="$v" 'BEGIN { exit !(v > 1000) }'; then
        echo "PostgreSQL $1 run $2: the promotion took $v ms ($4). Seen in some runs here (0 to 3 of 5): the standby logs \"received promote request\", then \"waiting for WAL to become available\" and sleeps wal_retrieve_retry_interval (5 s default) before it promotes (the request came while it handled the lost stream). The summary's last rows leave such runs out." >>"$NOTES"
    fi
}

section_pg() {
    local run
    mkdir -p "$WORK/pg"
    chown postgres "$WORK/pg"
    # One initdb; each run starts from a copy of it.
    pg "$PGBIN/initdb" -D "$WORK/pg/template" -U postgres --auth=trust >"$WORK/pg/initdb.log" 2>&1 ||
        { cat "$WORK/pg/initdb.log" >&2; die "initdb failed"; }
    if has_scenario failover; then
        for ((run = 1; run <= RUNS; run++)); do pg_failover_run "$run"; done
    fi
    if has_scenario switchover; then
        for ((run = 1; run <= RUNS; run++)); do pg_switchover_run "$run"; done
    fi
}

# ---------------------------------------------------------------- tandem
info_has() { # info_has ADDR REGEX: INFO replication has a matching line
    local reply
    reply="$(resp "$1" INFO replication)" || return 1
    grep -q -- "$2" <<<"$reply"
}

# tandem_pair RUN: T_DIR, T_A / T_A_DIR (the primary's client address and
# data dir), T_B (the standby's client address).
T_DIR="" T_A="" T_A_DIR="" T_B=""
tandem_pair() {
    local run=$1 addr dir line nodes=()
    T_DIR="$WORK/tandem-$run"
    TANDEM_CLUSTERS+=("$T_DIR")
    # cluster up picks free ports itself (--base-port would need P..P+201).
    "$CTL" cluster up --dir "$T_DIR" --standbys 1 --synchronous-commit on \
        --synchronous-standby-names '*' --json >"$WORK/up.json" 2>"$WORK/up.log" ||
        { cat "$WORK/up.log" >&2; die "tandemctl cluster up failed"; }
    mapfile -t nodes < <("$PY" "$HELPER" tandem-nodes "$WORK/up.json")
    ((${#nodes[@]} == 2)) || die "cluster up did not report two nodes: $(cat "$WORK/up.json")"
    T_A="" T_B=""
    for line in "${nodes[@]}"; do
        addr=${line%% *}
        dir=${line#* }
        if info_has "$addr" '^role:primary'; then T_A=$addr T_A_DIR=$dir; else T_B=$addr; fi
    done
    [[ -n "$T_A" && -n "$T_B" ]] || die "no primary and standby among ${nodes[*]}"
    # As the PostgreSQL standby: once promoted, alone, it commits locally.
    [[ "$(resp "$T_B" CONFIG SET synchronous_standby_names '')" == "+OK" ]] ||
        die "CONFIG SET synchronous_standby_names '' on $T_B failed"
    "$BENCH" init -s 1 --hosts "$T_A,$T_B" >"$WORK/init.out" 2>&1 ||
        { cat "$WORK/init.out" >&2; die "tandem-bench init failed"; }
}

# tandem_load NAME SECONDS: tandem-bench in the background; sets T_JSON, T_EVENTS.
T_JSON="" T_EVENTS="" T_BENCH_PID=""
tandem_load() {
    T_JSON="$WORK/$1.json"
    T_EVENTS="$WORK/$1.events"
    : >"$T_EVENTS"
    "$BENCH" run --mix simple-update -c "$CLIENTS" -j 2 -T "$2" --hosts "$T_A,$T_B" \
        --pause-threshold-ms "$PAUSE_MS" --reconnect-backoff-max-ms 1 --max-tries 1000 \
        --json "$T_JSON" --events-file "$T_EVENTS" >"$WORK/$1.out" 2>&1 &
    T_BENCH_PID=$!
    PIDS+=("$T_BENCH_PID")
}
tandem_load_wait() {
    wait "$T_BENCH_PID" || { cat "$WORK/$1.out" >&2; die "tandem-bench run failed"; }
}

tandem_switchover_run() {
    local run=$1 t_cmd t_done t_streaming="" i figures
    tandem_pair "so$run"
    tandem_load "so$run" $((WARM_S + 4))
    sleep "$WARM_S"
    t_cmd=$(now_us)
    "$CTL" switchover --host "$T_B" --timeout-ms 10000 --json >"$WORK/switchover.json" 2>&1 ||
        { cat "$WORK/switchover.json" >&2; die "tandemctl switchover failed"; }
    t_done=$(now_us)
    echo "$((t_cmd / 1000)) switchover" >>"$T_EVENTS"
    for ((i = 0; i < WAIT_S * 200; i++)); do
        if info_has "$T_B" '^standby0:.*state=streaming' && info_has "$T_A" '^role:standby'; then
            t_streaming=$(now_us)
            break
        fi
        sleep 0.002
    done
    [[ -n "$t_streaming" ]] || die "the old primary $T_A did not become a connected standby of $T_B"
    tandem_load_wait "so$run"
    figures=$("$PY" "$HELPER" tandem-pause "$T_JSON" switchover "$T_A" "$T_B" 0 "$t_cmd" "$t_done") ||
        die "no figures for tandem switchover run $run"
    if [[ "$figures" == *upper_bound=1* ]]; then
        echo "tandem switchover run $run: no pause above $PAUSE_MS ms around the command; recorded as $PAUSE_MS ms (an upper bound)" >>"$NOTES"
    elif [[ "$figures" == *host_switch=0* ]]; then
        echo "tandem switchover run $run: no pause from $T_A to $T_B above $PAUSE_MS ms; the longest pause around the command is recorded" >>"$NOTES"
    fi
    figures+=" streaming_ms=$(((t_streaming - t_cmd) / 1000)) command_ms=$(((t_done - t_cmd) / 1000))"
    log "tandem switchover run $run: $figures"
    record tandem switchover "$run" "$figures"
    stop_all
    rm -rf "$T_DIR"
}

tandem_failover_run() {
    local run=$1 pid t_kill t_cmd t_done figures
    tandem_pair "fo$run"
    tandem_load "fo$run" $((WARM_S + 4))
    sleep "$WARM_S"
    # The node is lost at once (`tandemctl stop --mode immediate` sends the same
    # SIGKILL but then waits for the exit, which would delay the failover).
    pid=$(cat "$T_A_DIR/lock")
    [[ "$pid" =~ ^[0-9]+$ ]] || die "no pid in $T_A_DIR/lock"
    t_kill=$(now_us)
    kill -KILL "$pid"
    t_cmd=$(now_us)
    "$CTL" failover --host "$T_B" --json >"$WORK/failover.json" 2>&1 ||
        { cat "$WORK/failover.json" >&2; die "tandemctl failover failed"; }
    t_done=$(now_us)
    printf '%s kill\n%s failover\n' "$((t_kill / 1000))" "$((t_cmd / 1000))" >>"$T_EVENTS"
    tandem_load_wait "fo$run"
    figures=$("$PY" "$HELPER" tandem-pause "$T_JSON" failover "$T_A" "$T_B" "$t_kill" "$t_cmd" "$t_done") ||
        die "no figures for tandem failover run $run"
    figures+=" command_ms=$(((t_done - t_cmd) / 1000))"
    log "tandem failover run $run: $figures"
    record tandem failover "$run" "$figures"
    stop_all
    rm -rf "$T_DIR"
}

section_tandem() {
    local run
    if ((!TANDEM_READY)); then
        echo "tandem section skipped: this tandemctl lacks switchover, failover or cluster up" >>"$NOTES"
        return
    fi
    if has_scenario failover; then
        for ((run = 1; run <= RUNS; run++)); do tandem_failover_run "$run"; done
    fi
    if has_scenario switchover; then
        for ((run = 1; run <= RUNS; run++)); do tandem_switchover_run "$run"; done
    fi
}

# ---------------------------------------------------------------- run
STARTED=$(date +%s)
for s in pg tandem; do
    if has_section "$s"; then
        log "=== section $s ==="
        "section_$s"
    fi
done
ELAPSED=$(($(date +%s) - STARTED))

# ---------------------------------------------------------------- report
report() {
    echo "# Switchover and failover: tandem vs PostgreSQL, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Host: $(nproc) cores, $(uname -r), $(df -PT "$WORK" | awk 'NR == 2 { print $2 }') on $(df -P "$WORK" | awk 'NR == 2 { print $1 }');" \
        "tandem $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?');" \
        "$("$PGBIN/postgres" --version 2>/dev/null || echo 'PostgreSQL ?')."
    echo "Command: \`SECTIONS=$SECTIONS RUNS=$RUNS${SMOKE:+ SMOKE=$SMOKE} perf/compare-failover.sh\` ($ELAPSED s)."
    echo "$CLIENTS writer clients on each system, synchronous_commit = on with one synchronous standby;"
    echo "clients, servers and the script share the machine's $(nproc) cores. Times in ms; p50 over the runs."
    echo
    awk -F, '
    function median(list,    n, v, i, j, t) {
        n = split(list, v, " ")
        if (n == 0) return ""
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    function f1(x) { return x == "" ? "-" : sprintf("%.1f", x) }
    function ratio(a, b) { return (a != "" && b != "" && b > 0) ? sprintf("%.2g", a / b) : "-" }
    {
        key = $1 "|" $2 "|" $3
        if ($5 != "" && $5 ~ /^[0-9.]+$/) vals[key] = vals[key] " " $5
        raw[key "|" $4] = $5
        if ($4 > runs) runs = $4
    }
    END {
        # metric label | scenario | tandem metric | PostgreSQL metric
        m[1] = "switchover: write pause (last ack on the old primary -> first on the new)|switchover|pause_ms|pause_ms"
        m[2] = "switchover: start -> old primary streaming from the new one|switchover|streaming_ms|streaming_ms"
        m[3] = "failover: promote/failover command -> first ack on the new primary|failover|failover_to_first_ms|promote_to_first_ms"
        m[4] = "failover: kill -> first ack on the new primary|failover|kill_to_first_ms|kill_to_first_ms"
        print "## Summary (p50)"
        print ""
        print "| metric | tandem p50 | PostgreSQL p50 | tandem / PostgreSQL |"
        print "|---|---:|---:|---:|"
        for (i = 1; i <= 4; i++) {
            split(m[i], f, "|")
            t = median(vals["tandem|" f[2] "|" f[3]])
            p = median(vals["postgresql|" f[2] "|" f[4]])
            printf "| %s | %s | %s | %s |\n", f[1], f1(t), f1(p), ratio(t, p)
        }
        # PostgreSQL now and then waits wal_retrieve_retry_interval (5 s) before
        # it promotes (see the notes): the same figures over the other runs.
        q[1] = "switchover: write pause|switchover|pause_ms|pause_ms|promote_to_first_ms"
        q[2] = "failover: command -> first ack|failover|failover_to_first_ms|promote_to_first_ms|pg_ctl_promote_ms"
        for (i = 1; i <= 2; i++) {
            split(q[i], f, "|")
            fast = ""; slow = 0; all = 0
            for (r = 1; r <= runs; r++) {
                v = raw["postgresql|" f[2] "|" f[4] "|" r]
                if (v == "") continue
                all++
                if (raw["postgresql|" f[2] "|" f[5] "|" r] + 0 > 1000) slow++; else fast = fast " " v
            }
            if (slow == 0) continue
            t = median(vals["tandem|" f[2] "|" f[3]]); p = median(fast)
            printf "| %s, PostgreSQL runs whose promotion did not wait 5 s (%d of %d) | %s | %s | %s |\n", f[1], all - slow, all, f1(t), f1(p), ratio(t, p)
        }
        print ""
        print "## Per run"
        print ""
        hdr = "| system | scenario | figure |"; sep = "|---|---|---|"
        for (r = 1; r <= runs; r++) { hdr = hdr " run " r " |"; sep = sep "---:|" }
        print hdr; print sep
        n = split("postgresql|failover|promote_to_first_ms postgresql|failover|kill_to_first_ms " \
            "postgresql|failover|pause_ms postgresql|failover|pg_ctl_promote_ms postgresql|failover|lost " \
            "postgresql|switchover|pause_ms postgresql|switchover|streaming_ms postgresql|switchover|stop_ms " \
            "postgresql|switchover|promote_to_first_ms postgresql|switchover|lost " \
            "tandem|failover|failover_to_first_ms tandem|failover|kill_to_first_ms tandem|failover|pause_ms " \
            "tandem|failover|command_ms tandem|failover|failed " \
            "tandem|switchover|pause_ms tandem|switchover|streaming_ms tandem|switchover|command_ms " \
            "tandem|switchover|host_switch tandem|switchover|pauses_in_window " \
            "tandem|switchover|failed", rows, " ")
        for (i = 1; i <= n; i++) {
            split(rows[i], f, "|")
            line = "| " f[1] " | " f[2] " | " f[3] " |"; any = 0
            for (r = 1; r <= runs; r++) {
                v = raw[rows[i] "|" r]
                if (v != "") any = 1
                line = line " " (v == "" ? "-" : v) " |"
            }
            if (any) print line
        }
        print ""
    }' "$RESULTS"
    cat <<'EOF'
How each figure is taken:
- PostgreSQL: a python/psycopg2 writer (perf/failover.py, 4 threads of single-row INSERTs)
  stamps every acknowledged commit; on an error a thread retries on the other node after
  ~1 ms. failover = kill -9 of the primary's processes, then `pg_ctl promote -w`;
  switchover = `pg_ctl stop -m fast` (exit awaited with a 1 ms poll), `pg_ctl promote`,
  then the old primary restarted with standby.signal and primary_conninfo to the new one.
  The promoted standby has synchronous_standby_names = '' so it commits alone at once
  (with '*' its commits would wait until a standby attaches): PostgreSQL's fastest case.
  stop_ms = the fast shutdown; pg_ctl_promote_ms = `pg_ctl promote -w` (it polls every
  100 ms, the writer does not wait for it); lost = acknowledged commits missing on the new
  primary. The timed pg_ctl calls run as postgres through setpriv (~1 ms), not runuser.
  "streaming" is polled every ~2 ms (pg_stat_replication on one connection).
- tandem: tandem-bench --mix simple-update -c 4 -j 2 --pause-threshold-ms THRESHOLD
  --reconnect-backoff-max-ms 1; a pause is a window in which no client got any ack.
  switchover pause = the pause overlapping `tandemctl switchover` that goes from the old
  primary to the new one (last ack on the old -> first on the new, as for PostgreSQL);
  failover = the end of the pause holding `tandemctl failover` (the first ack on the new
  primary) minus the command's start; kill = SIGKILL of the node's pid. The standby has
  synchronous_standby_names = '' as PostgreSQL's has; --max-tries 1000 keeps clients
  retrying while the primary is fenced.
  command_ms = the ctl command's own duration; failed = transactions tandem-bench gave up on.
  "streaming" is polled every ~5 ms (two INFO replication round trips from bash), so it
  reads a few ms long.
EOF
    echo
    echo "THRESHOLD here: $PAUSE_MS ms."
    echo
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
