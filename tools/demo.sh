#!/usr/bin/env bash
# The main job: switchover and failover of a 3-node tandem cluster under
# TPC-B load, driven only by the user-facing tools (tandemctl, tandem-bench).
#
#  1. `tandemctl cluster up`: node0 primary, node1 and node2 standbys built
#     from it, free loopback ports, every node knowing the others as peers,
#     synchronous commit `on` with `ANY 1 (*)` (a commit waits until one
#     standby has flushed it, so a failover loses no acknowledged write).
#  2. `tandem-bench init -s 10`, then `run --mix tpcb` against all three
#     hosts (it follows whichever is primary), a progress line per second.
#  3. At 1/3 of the run: `tandemctl switchover` to a standby (planned: the
#     primary is fenced, the standby catches up and promotes, the old
#     primary follows it; no build, a short write pause).
#  4. At 2/3: SIGKILL of the current primary (`tandemctl stop --mode
#     immediate`), `tandemctl failover --auto-pick` on the two others. The
#     killed node is restarted from its config: it comes back pending
#     (read-only) and then either follows the new timeline as a standby or
#     reports needs_build with its divergence LSN; then it is rebuilt from
#     the new primary (`tandemctl build`) and started again.
#  5. After the run: 1 primary + 2 streaming standbys, all caught up; the
#     TPC-B consistency check and the page digest on every node (all equal),
#     `tandemctl query` of the primary, the report with the write pauses
#     around each event, and the plot (DIR/demo-report.svg, events marked).
#
# Any failed step or check exits 1 with the reason. `tandemctl cluster down`
# runs on every exit; on success the nodes' data is removed and DIR keeps
# the report (report.json, demo-report.svg, events), on failure DIR keeps
# everything (node logs in DIR/nodeI/data/node.log).
#
# Knobs: DURATION (seconds of load, default 40), CLIENTS (default 16),
# SCALE (default 10), DIR (default: a new directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-40}
CLIENTS=${CLIENTS:-16}
SCALE=${SCALE:-10}

cargo build --release --bins >/dev/null
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
CTL=$BIN/tandemctl
BENCH=$BIN/tandem-bench

if [ -n "${DIR:-}" ]; then
  mkdir -p "$DIR"
  [ -z "$(ls -A "$DIR")" ] || { echo "demo: DIR=$DIR is not empty" >&2; exit 1; }
else
  DIR=$(mktemp -d /tmp/tandem-demo.XXXXXX)
fi
DIR=$(cd "$DIR" && pwd)
EVENTS=$DIR/events
bench_pid=
t0_ms=

# --- helpers ---------------------------------------------------------------

now_ms() { date +%s%3N; }

# `== [+12.3s] text`: time since the load started (before it: no time).
say() {
  if [ -n "$t0_ms" ]; then
    local d=$(($(now_ms) - t0_ms))
    printf '== [+%d.%ds] %s\n' $((d / 1000)) $((d % 1000 / 100)) "$*"
  else
    printf '== %s\n' "$*"
  fi
}

die() {
  echo "demo: FAILED: $*" >&2
  exit 1
}

# An event mark on the plot: a line `UNIX_MS LABEL` for --events-file.
mark() { echo "$(now_ms) $1" >>"$EVENTS"; }

# Sleeps until SECONDS after the load started.
sleep_until() {
  local left=$((t0_ms + $1 * 1000 - $(now_ms)))
  [ "$left" -le 0 ] || sleep "$((left / 1000)).$(printf '%03d' $((left % 1000)))"
}

# json EXPR: evaluates a Python expression over the JSON on stdin (`j`).
json() { python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"; }

# field HOST KEY: KEY of `tandemctl query --json` ("down" if no answer).
field() {
  local out
  out=$("$CTL" query --host "$1" --json 2>/dev/null) || { echo down; return; }
  json "j.get('$2', '')" <<<"$out"
}

# The nodes of cluster.json, by index: client, repl, config, data dir, name.
node() { json "j['nodes'][$1]['$2']" <"$DIR/cluster.json"; }
index_of() {
  json "[n['client'] for n in j['nodes']].index('$1')" <"$DIR/cluster.json"
}

primary() {
  local h
  for h in "${HOSTS[@]}"; do
    [ "$(field "$h" role)" = primary ] && { echo "$h"; return; }
  done
  return 1
}

# Waits until HOST is a standby streaming from its upstream.
wait_streaming() {
  for _ in $(seq 1 300); do
    [ "$(field "$1" role)" = standby ] && [ "$(field "$1" upstream_state)" = streaming ] && return
    sleep 0.1
  done
  die "$1 does not stream (role $(field "$1" role), upstream $(field "$1" upstream_state))"
}

# --- steps -----------------------------------------------------------------

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  if [ -f "$DIR/cluster.json" ]; then
    echo "== tandemctl cluster down --dir $DIR"
    "$CTL" cluster down --dir "$DIR" --wait-secs 10 || rc=1
  fi
  if [ "$rc" -eq 0 ]; then
    rm -rf "$DIR"/node*/
  else
    echo "demo: exit status $rc; node logs are in $DIR/node*/data/node.log" >&2
  fi
  exit "$rc"
}

cluster_up() {
  say "tandemctl cluster up --dir $DIR --standbys 2 --synchronous-commit on --synchronous-standby-names 'ANY 1 (*)'"
  local up
  up=$("$CTL" cluster up --dir "$DIR" --standbys 2 --synchronous-commit on \
    --synchronous-standby-names 'ANY 1 (*)' --json) || die "cluster up"
  mapfile -t HOSTS < <(json "'\n'.join(n['client'] for n in j['nodes'])" <<<"$up")
  json "'\n'.join('   %s  client %s  repl %s  pid %s' % (n['name'], n['client'], n['repl'], n['pid']) for n in j['nodes'])" <<<"$up"
  HOSTLIST=$(IFS=,; echo "${HOSTS[*]}")
}

start_load() {
  say "tandem-bench init -s $SCALE --hosts $HOSTLIST"
  "$BENCH" init -s "$SCALE" --hosts "$HOSTLIST" || die "tandem-bench init"
  : >"$EVENTS"
  say "tandem-bench run --mix tpcb -c $CLIENTS -j 2 -T $DURATION -P 1 --hosts (all three) --pause-threshold-ms 5"
  t0_ms=$(now_ms)
  "$BENCH" run --mix tpcb -c "$CLIENTS" -j 2 -T "$DURATION" -P 1 --hosts "$HOSTLIST" \
    --pause-threshold-ms 5 --events-file "$EVENTS" \
    --json "$DIR/report.json" --plot "$DIR/demo-report.svg" &
  bench_pid=$!
}

switchover() {
  local p target out
  p=$(primary) || die "no primary before the switchover"
  for target in "${HOSTS[@]}"; do [ "$target" != "$p" ] && break; done
  say "SWITCHOVER: tandemctl switchover --host $target (primary $p)"
  mark switchover
  out=$("$CTL" switchover --host "$target" --hosts "$HOSTLIST" --json) || die "switchover to $target"
  say "switchover: $out"
  json "'   %s is the primary on timeline %s (switch LSN %s); writes blocked %.1f ms (catch-up %.1f ms); %s follows it; followed: %s' % (j['new_primary'], j['timeline'], j['switch_lsn'], j['write_block_ms'], j['catch_up_ms'], j['old_primary'], ', '.join(j['followed']) or '-')" <<<"$out"
}

# SIGKILL of the primary, failover to the best of the two others; sets KILLED.
failover() {
  local p others=() h out
  p=$(primary) || die "no primary before the failover"
  for h in "${HOSTS[@]}"; do [ "$h" != "$p" ] && others+=("$h"); done
  say "FAILOVER: SIGKILL the primary $p (tandemctl stop --mode immediate)"
  "$CTL" stop --host "$p" --mode immediate || die "stop --mode immediate $p"
  mark failover
  say "tandemctl failover --auto-pick --hosts ${others[0]},${others[1]}"
  out=$("$CTL" failover --auto-pick --hosts "${others[0]},${others[1]}" --json) || die "failover"
  say "failover: $out"
  json "'   %s is the primary on timeline %s (switch LSN %s); promotion took %.1f ms; followed: %s' % (j['new_primary'], j['timeline'], j['switch_lsn'], j['promote_ms'], ', '.join(j['followed']) or '-')" <<<"$out"
  KILLED=$p
}

# Restarts the killed node from its config: pending, then a standby of the
# new timeline or needs_build (then rebuilt from the new primary).
rejoin() {
  local i cfg data name role last='' p from logged=0
  i=$(index_of "$KILLED")
  cfg=$(node "$i" config)
  data=$(node "$i" data_dir)
  name=$(node "$i" name)
  [ -f "$data/node.log" ] && logged=$(wc -l <"$data/node.log")
  say "restart the old primary $name: tandemctl start --data-dir $data --config $cfg"
  "$CTL" start --data-dir "$data" --config "$cfg" || die "start $name"
  for _ in $(seq 1 300); do
    role=$(field "$KILLED" role)
    [ "$role" = "$last" ] || say "tandemctl query --host $KILLED: role $role, timeline $(field "$KILLED" timeline)"
    last=$role
    [ "$role" = needs_build ] && break
    [ "$role" = standby ] && [ "$(field "$KILLED" upstream_state)" = streaming ] && break
    sleep 0.1
  done
  # The pending phase is short (one round of probes to the peers, often
  # over before the node answers its first query): the node's log says it.
  echo "   $name's log since the restart (pending, then the peers' verdict):"
  tail -n +"$((logged + 1))" "$data/node.log" |
    grep -E 'pending|needs a build|newer timeline|confirmed|starting as a standby' |
    sed -E 's/^[^ ]+ +([A-Z]+) [^ ]+ /     \1 /' || true
  case $role in
    standby)
      say "$name follows timeline $(field "$KILLED" timeline) as a standby of $(field "$KILLED" primary): its WAL ended before the switch, no build needed"
      ;;
    needs_build)
      say "$name needs a build: divergence_lsn $(field "$KILLED" divergence_lsn), timeline $(field "$KILLED" timeline) (its WAL went past the new timeline's switch: commits that no standby had confirmed, so none was acknowledged)"
      p=$(primary) || die "no primary to rebuild $name from"
      from=$(field "$p" repl_listen)
      say "rebuild $name: tandemctl stop, empty its data dir, tandemctl build --from $from, tandemctl start"
      "$CTL" stop --host "$KILLED" || die "stop $name"
      mv "$data/node.log" "$DIR/$name-before-build.log" 2>/dev/null || true
      rm -rf "$data"
      "$CTL" build --from "$from" --data-dir "$data" --config "$cfg" --quiet || die "build of $name"
      "$CTL" start --data-dir "$data" --config "$cfg" || die "start $name after the build"
      wait_streaming "$KILLED"
      say "tandemctl query --host $KILLED: role $(field "$KILLED" role), timeline $(field "$KILLED" timeline), streaming from $(field "$KILLED" primary)"
      ;;
    *) die "$name did not settle (role $role)" ;;
  esac
}

finish_load() {
  local rc=0
  wait "$bench_pid" || rc=$?
  bench_pid=
  [ "$rc" -eq 0 ] || die "tandem-bench run exited with $rc"
}

# After the load: everyone caught up, consistent, byte-identical.
checks() {
  local p h flush applied ok digests=() d
  p=$(primary) || die "no primary after the run"
  for h in "${HOSTS[@]}"; do
    [ "$h" = "$p" ] || wait_streaming "$h"
  done
  say "waiting until every standby applied the primary's flush LSN"
  for _ in $(seq 1 300); do
    flush=$(field "$p" flush_lsn)
    ok=1
    for h in "${HOSTS[@]}"; do
      applied=$(field "$h" applied_lsn)
      [ "$applied" = "$flush" ] || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.1
  done
  [ "$ok" = 1 ] || die "standbys did not catch up with $p (flush LSN $flush)"
  say "all nodes at LSN $flush"
  say "consistency check (tandem-bench check) on every node"
  for h in "${HOSTS[@]}"; do
    echo "   $h ($(field "$h" role)):"
    "$BENCH" check -h "${h%:*}" -p "${h##*:}" || die "consistency check on $h"
  done
  say "page digests (equal = byte-identical pages)"
  for h in "${HOSTS[@]}"; do
    "$CTL" digest --host "$h" || die "digest of $h"
    d=$("$CTL" digest --host "$h" --json | json "j['lsn'] + ' ' + j['digest']")
    digests+=("$d")
  done
  for d in "${digests[@]}"; do
    [ "$d" = "${digests[0]}" ] || die "page digests differ: ${digests[*]}"
  done
  say "tandemctl query --host $p"
  "$CTL" query --host "$p"
  [ "$(field "$p" connected_standbys)" = 2 ] || die "the primary does not have 2 standbys"
}

summary() {
  say "report ($DIR/report.json)"
  python3 - "$DIR/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"   {r['transactions']} transactions in {r['duration_s']:.1f} s = {r['tps']:.0f} tps; "
      f"{r['failed']} failed, {r['retried']} retried; latency p50 {r['latency_p50_ms']:.2f} ms, "
      f"p99 {r['latency_p99_ms']:.2f} ms, max {r['latency_max_ms']:.1f} ms")
print(f"   pauses (no ack on any client for > {r['pause_threshold_ms']:.0f} ms): "
      f"{r['pause_count']}, max {r['max_pause_ms']:.1f} ms")
start = r['start_unix_ms']
# A pause in which the writes moved to another host is the event's pause.
moves = [p for p in r['pauses'] if p['from_host'] != p['to_host']]
for e in r['events']:
    if e['kind'] == 'primary_change':
        print(f"   the load tool saw a new primary at +{e['t_s']:.2f} s: {e['detail']}")
    if e['kind'] != 'mark':
        continue
    at = start + e['t_s'] * 1000
    near = [p for p in moves if p['end_unix_ms'] >= at - 1000 and p['start_unix_ms'] <= at + 3000]
    if near:
        p = min(near, key=lambda p: abs(p['start_unix_ms'] - at))
        print(f"   {e['detail']} (marked at +{e['t_s']:.2f} s): no client got an ack for {p['ms']:.1f} ms "
              f"(+{p['at_s']:.2f} s), then writes went on at {p['to_host']} instead of {p['from_host']}")
    else:
        print(f"   {e['detail']} (marked at +{e['t_s']:.2f} s): no pause in which the writes moved")
rest = [p for p in r['pauses'] if p['from_host'] == p['to_host']]
if rest:
    worst = max(rest, key=lambda p: p['ms'])
    print(f"   other pauses: {len(rest)}, longest {worst['ms']:.1f} ms at +{worst['at_s']:.2f} s "
          f"(no failover: fsync and CPU stalls of three nodes and the load on shared cores, the rebuild)")
EOF
  [ -s "$DIR/demo-report.svg" ] || die "no plot at $DIR/demo-report.svg"
  say "plot: $DIR/demo-report.svg ($(wc -c <"$DIR/demo-report.svg") bytes, events marked)"
}

# --- the demo --------------------------------------------------------------

trap cleanup EXIT
trap 'exit 130' INT TERM
cluster_up
start_load
sleep_until $((DURATION / 3))
switchover
sleep_until $((DURATION * 2 / 3))
failover
rejoin
finish_load
checks
summary
say "demo passed: switchover, failover, old primary back; 1 primary + 2 streaming standbys, consistent, equal digests"
