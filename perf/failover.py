#!/usr/bin/env python3
"""Helpers of perf/compare-failover.sh (not meant to be run by hand).

Subcommands:
  write    PostgreSQL writer: N threads, each committing single-row INSERTs
           (synchronous_commit as configured on the server) and following the
           primary over a list of ports. Every acknowledged commit is recorded
           as "unix_us port"; on an error the thread moves to the next port and
           retries after ~1 ms, keeping its open connections (a hot-standby
           session can write as soon as its server is promoted, so the first
           commit after a promotion is seen within about a millisecond).
           Touches OUT.ready after the first READY commits, writes
           OUT.first.PORT (the unix_us of the first commit on PORT) as soon as it
           happens, and stops when the STOP file exists.
  wait-sql PORT SQL EXPECTED: polls SQL on a PostgreSQL port every ~2 ms over one
           connection until its first column reads EXPECTED; prints the unix_us.
  pg-failover / pg-switchover: figures of one PostgreSQL run from the writer's
           record and the script's timestamps; also checks that every commit
           the writer saw acknowledged is on the new primary.
  tandem-nodes FILE: "client data_dir" of each node of `tandemctl cluster up --json`.
  tandem-pause: figures of one tandem run from tandem-bench's JSON report.

Times are microseconds since the Unix epoch (date +%s%6N in the script);
figures are printed in milliseconds.
"""

import json
import os
import sys
import threading
import time


def now_us():
    return time.time_ns() // 1000


def pg_connect(port):
    import psycopg2

    return psycopg2.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        dbname="postgres",
        connect_timeout=2,
        application_name="failover-writer",
    )


def write(argv):
    import psycopg2

    ports = [int(p) for p in argv[0].split(",")]
    clients, out, stop_file, ready_after = int(argv[1]), argv[2], argv[3], int(argv[4])
    # Bound: a run never lasts longer than this even if the script died.
    deadline = time.monotonic() + float(argv[5]) if len(argv) > 5 else None
    stop = threading.Event()
    ready = threading.Event()
    lock = threading.Lock()
    seen_first = set()
    total = [0]
    records = [[] for _ in range(clients)]

    def first_commit(port, t_us):
        with lock:
            if port in seen_first:
                return
            seen_first.add(port)
        tmp = f"{out}.first.{port}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{t_us}\n")
        os.rename(tmp, f"{out}.first.{port}")

    def worker(w):
        conns = [None] * len(ports)
        i, seq = 0, 0
        rec = records[w]
        while not stop.is_set():
            c = conns[i]
            try:
                if c is None:
                    c = conns[i] = pg_connect(ports[i])
                seq += 1
                with c.cursor() as cur:
                    cur.execute("INSERT INTO t (w, seq) VALUES (%s, %s)", (w, seq))
                c.commit()
                t = now_us()
                rec.append((t, ports[i]))
                if ports[i] not in seen_first:
                    first_commit(ports[i], t)
                if not ready.is_set():
                    with lock:
                        total[0] += 1
                        if total[0] >= ready_after and not ready.is_set():
                            open(out + ".ready", "w").close()
                            ready.set()
            except psycopg2.Error:
                if c is not None:
                    if c.closed:
                        conns[i] = None
                    else:
                        try:
                            c.rollback()
                        except psycopg2.Error:
                            c.close()
                            conns[i] = None
                i = (i + 1) % len(ports)
                time.sleep(0.001)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    while not os.path.exists(stop_file):
        if deadline is not None and time.monotonic() > deadline:
            print("writer: time limit reached", file=sys.stderr)
            break
        time.sleep(0.005)
    stop.set()
    for t in threads:
        t.join()
    merged = sorted(r for rec in records for r in rec)
    with open(out, "w") as f:
        for t, port in merged:
            f.write(f"{t} {port}\n")
    print(f"writer: {len(merged)} commits")


def wait_sql(argv):
    import psycopg2

    port, sql, expected = int(argv[0]), argv[1], argv[2]
    timeout_s = float(argv[3]) if len(argv) > 3 else 30.0
    deadline = time.monotonic() + timeout_s
    conn = None
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = pg_connect(port)
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
            if row is not None and str(row[0]) == expected:
                print(now_us())
                return
        except psycopg2.Error:
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(0.002)
    sys.exit(f"wait-sql: {sql!r} on port {port} did not return {expected!r} in {timeout_s} s")


def read_commits(path):
    with open(path) as f:
        return [(int(t), int(p)) for t, p in (line.split() for line in f if line.strip())]


def rows_on(port):
    conn = pg_connect(port)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM t")
        n = cur.fetchone()[0]
    conn.close()
    return n


def check_no_loss(commits, new_port):
    # Rows of commits that failed in doubt may be there too: at least, not equal.
    rows = rows_on(new_port)
    lost = max(0, len(commits) - rows)
    return rows, lost


def ms(us):
    return f"{us / 1000:.1f}"


def pg_failover(argv):
    """ARGS: commits old_port new_port t_kill t_promote t_promoted"""
    commits = read_commits(argv[0])
    old, new = int(argv[1]), int(argv[2])
    t_kill, t_promote, t_promoted = (int(a) for a in argv[3:6])
    last_old = max((t for t, p in commits if p == old), default=None)
    first_new = min((t for t, p in commits if p == new), default=None)
    if last_old is None or first_new is None:
        sys.exit("pg-failover: no commits on one of the two nodes")
    rows, lost = check_no_loss(commits, new)
    print(
        f"promote_to_first_ms={ms(first_new - t_promote)} kill_to_first_ms={ms(first_new - t_kill)}"
        f" pause_ms={ms(first_new - last_old)} pg_ctl_promote_ms={ms(t_promoted - t_promote)}"
        f" commits={len(commits)} rows={rows} lost={lost}"
    )


def pg_switchover(argv):
    """ARGS: commits old_port new_port t_stop t_stopped t_promote t_streaming"""
    commits = read_commits(argv[0])
    old, new = int(argv[1]), int(argv[2])
    t_stop, t_stopped, t_promote, t_streaming = (int(a) for a in argv[3:7])
    last_old = max((t for t, p in commits if p == old), default=None)
    first_new = min((t for t, p in commits if p == new), default=None)
    if last_old is None or first_new is None:
        sys.exit("pg-switchover: no commits on one of the two nodes")
    rows, lost = check_no_loss(commits, new)
    print(
        f"pause_ms={ms(first_new - last_old)} streaming_ms={ms(t_streaming - t_stop)}"
        f" stop_ms={ms(t_stopped - t_stop)} promote_to_first_ms={ms(first_new - t_promote)}"
        f" commits={len(commits)} rows={rows} lost={lost}"
    )


def tandem_nodes(argv):
    with open(argv[0]) as f:
        nodes = json.load(f)["nodes"]
    for n in nodes:
        print(n["client"], n["data_dir"])


def tandem_pause(argv):
    """ARGS: report.json mode old new t_a t_cmd t_done

    switchover: the pause overlapping [t_cmd, t_done] from the last ack on
    the old primary to the first on the new one (as PostgreSQL's figure);
    failing that, the longest pause overlapping it (t_a unused).
    failover: the pause holding t_cmd; t_a is the kill's time."""
    with open(argv[0]) as f:
        report = json.load(f)
    mode, old, new = argv[1:4]
    t_a, t_cmd, t_done = (int(a) / 1000 for a in argv[4:7])  # ms
    pauses = report.get("pauses", [])
    failed = report.get("failed", 0)
    if mode == "switchover":
        around = [p for p in pauses if p["start_unix_ms"] <= t_done and p["end_unix_ms"] >= t_cmd]
        switch = [p for p in around if p["from_host"] == old and p["to_host"] == new]
        if not around:
            # Every ack gap around the command was below the threshold.
            print(f"pause_ms={report['pause_threshold_ms']:.1f} upper_bound=1 failed={failed}")
            return
        p = switch[0] if switch else max(around, key=lambda p: p["ms"])
        print(f"pause_ms={p['ms']:.1f} host_switch={int(bool(switch))}"
              f" pauses_in_window={len(around)} failed={failed}")
    else:
        holding = [p for p in pauses if p["start_unix_ms"] <= t_cmd <= p["end_unix_ms"]]
        if not holding:
            sys.exit("tandem-pause: no pause holds the failover command: the load did not stop?")
        p = holding[0]
        if (p["from_host"], p["to_host"]) != (old, new):
            sys.exit(f"tandem-pause: the pause around the failover goes {p['from_host']} ->"
                     f" {p['to_host']}, not {old} -> {new}")
        print(f"failover_to_first_ms={p['end_unix_ms'] - t_cmd:.1f}"
              f" kill_to_first_ms={p['end_unix_ms'] - t_a:.1f} pause_ms={p['ms']:.1f}"
              f" failed={failed}")


COMMANDS = {
    "write": write,
    "wait-sql": wait_sql,
    "pg-failover": pg_failover,
    "pg-switchover": pg_switchover,
    "tandem-nodes": tandem_nodes,
    "tandem-pause": tandem_pause,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(COMMANDS)} ARGS...")
    COMMANDS[sys.argv[1]](sys.argv[2:])
