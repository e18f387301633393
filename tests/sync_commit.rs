//! Goal: each `synchronous_commit` level holds a commit for exactly what it
//! promises; `FIRST n` / `ANY n` count the connected standbys with
//! PostgreSQL's rules; a commit the standbys cannot confirm returns the
//! distinct timeout error (or proceeds, flagged, with
//! `most_available_sync`); WAIT counts live standbys; and a write whose
//! client died while waiting stays invisible to other readers until the
//! standby confirms it.
//! Method: real primary and standbys on loopback. A slow standby disk is
//! the failpoint `replication::receiver::before_write=return(300)` (the
//! receiver acknowledges receipt, then waits 300 ms before writing): one SET is
//! timed per level after the standby caught up, bounds are generous (the
//! point is waiting or not, not speed). Standbys are taken down with
//! SIGKILL (gone) or SIGSTOP (connected but silent); raw RESP sockets with
//! read timeouts show a reply that does not come.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::repl::{field, field_u64, standby_entry, wait_caught_up, wait_streaming};
use common::{wait_until, NodeProc};
use redis::Commands;

const WITHIN: Duration = Duration::from_secs(30);

fn config_set(c: &mut redis::Connection, name: &str, value: &str) {
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(c)
        .unwrap_or_else(|e| panic!("CONFIG SET {name} {value}: {e}"));
}

/// Times one SET; panics if it fails.
fn timed_set(c: &mut redis::Connection, key: &str) -> Duration {
    let t = Instant::now();
    let () = c.set(key, "v").unwrap();
    t.elapsed()
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn each_level_waits_for_its_stage_on_a_slow_standby_disk() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(
        &dir.path().join("p"),
        "p",
        &["--synchronous-standby-names", "FIRST 1 (slow)"],
    );
    let mut s = NodeProc::build_standby(&dir.path().join("slow"), p.repl_port, "slow", &[]);
    s.env.push((
        "FAILPOINTS".into(),
        "replication::receiver::before_write=return(300)".into(),
    ));
    s.spawn();
    wait_streaming(&p, "slow", WITHIN);
    let mut c = p.client();
    let mut times = Vec::new();
    for level in [
        "local",
        "remote_receive",
        "remote_write",
        "on",
        "remote_apply",
    ] {
        config_set(&mut c, "synchronous_commit", level);
        wait_caught_up(&p, &[&s], WITHIN); // no WAL of earlier SETs in flight
        let took = timed_set(&mut c, &format!("k:{level}"));
        println!("{level}: {took:?}");
        times.push((level, took));
    }
    for (level, took) in times {
        let waits = !matches!(level, "local" | "remote_receive");
        if waits {
            assert!(
                took >= Duration::from_millis(250),
                "{level} returned in {took:?}: did not wait for the standby's disk"
            );
        } else {
            assert!(
                took < Duration::from_millis(150),
                "{level} took {took:?}: waited for the standby's disk"
            );
        }
    }
    // Every acknowledged SET reached the standby.
    wait_caught_up(&p, &[&s], WITHIN);
    let mut sc = s.client();
    let got: Option<String> = sc.get("k:remote_apply").unwrap();
    assert_eq!(got.as_deref(), Some("v"));
}

/// `sync_state` of standby `name` on the primary.
fn sync_state(p: &NodeProc, name: &str) -> String {
    let info = p.info("replication");
    standby_entry(&info, name).unwrap_or_else(|| panic!("no standby {name}:\n{info}"))["sync_state"]
        .clone()
}

/// A primary with `on` and `FIRST 1 (a, b)` (plus `extra` flags), and
/// standbys a and b streaming; a is the sync one.
fn primary_with_a_and_b(dir: &std::path::Path, extra: &[&str]) -> (NodeProc, NodeProc, NodeProc) {
    let mut flags = vec![
        "--synchronous-commit",
        "on",
        "--synchronous-standby-names",
        "FIRST 1 (a, b)",
    ];
    flags.extend_from_slice(extra);
    let p = NodeProc::start_primary(&dir.join("p"), "p", &flags);
    let a = NodeProc::start_standby(&dir.join("a"), p.repl_port, "a", &[]);
    let b = NodeProc::start_standby(&dir.join("b"), p.repl_port, "b", &[]);
    wait_streaming(&p, "a", WITHIN);
    wait_streaming(&p, "b", WITHIN);
    assert_eq!(sync_state(&p, "a"), "sync");
    (p, a, b)
}

#[test]
fn first_and_any_count_connected_standbys_and_timeouts_are_distinct() {
    let dir = tempfile::tempdir().unwrap();
    // A wrong choice of standby fails the SET instead of hanging.
    let (p, mut a, _b) =
        primary_with_a_and_b(dir.path(), &["--synchronous-commit-timeout-ms", "10000"]);
    assert_eq!(sync_state(&p, "b"), "potential");
    let mut c = p.client();
    let () = c.set("both", "up").unwrap();

    a.kill9();
    wait_until(WITHIN, "the primary to see a gone", || {
        sync_state(&p, "a") != "sync"
    });
    // FIRST picks the highest-priority *connected* standbys: b.
    assert_eq!(sync_state(&p, "b"), "sync");
    let took = timed_set(&mut c, "first1");
    assert!(
        took < Duration::from_secs(5),
        "FIRST 1 (a, b) took {took:?}"
    );

    config_set(&mut c, "synchronous_standby_names", "ANY 1 (a, b)");
    assert_eq!(sync_state(&p, "b"), "quorum");
    let () = c.set("any1", "v").unwrap();

    config_set(&mut c, "synchronous_standby_names", "FIRST 2 (a, b)");
    config_set(&mut c, "synchronous_commit_timeout_ms", "500");
    let t = Instant::now();
    let err = c.set::<_, _, ()>("first2", "v").unwrap_err();
    let took = t.elapsed();
    assert!(
        err.to_string().contains("not confirmed by standbys"),
        "FIRST 2 (a, b) with a down: {err}"
    );
    assert!(took >= Duration::from_millis(450), "gave up after {took:?}");
    let info = p.info("replication");
    assert_eq!(field_u64(&info, "sync_degraded"), 0, "{info}");

    config_set(&mut c, "most_available_sync", "on");
    let () = c.set("degraded", "v").unwrap();
    let info = p.info("replication");
    assert_eq!(field_u64(&info, "sync_degraded"), 1, "{info}");
    assert_eq!(field(&info, "most_available_sync"), Some("on"));
}

/// `WAIT numreplicas timeout_ms` on `c`; returns the count and the time.
fn wait_cmd(c: &mut redis::Connection, replicas: u32, timeout_ms: u64) -> (i64, Duration) {
    let t = Instant::now();
    let n: i64 = redis::cmd("WAIT")
        .arg(replicas)
        .arg(timeout_ms)
        .query(c)
        .unwrap();
    (n, t.elapsed())
}

#[test]
fn wait_counts_live_standbys_that_flushed_the_last_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let mut s = NodeProc::start_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    wait_streaming(&p, "s", WITHIN);
    let mut c = p.client();
    let () = c.set("k1", "v").unwrap();
    let (n, took) = wait_cmd(&mut c, 1, 1000);
    assert_eq!(n, 1, "WAIT 1 1000 with one live standby");
    assert!(took < Duration::from_millis(900), "WAIT took {took:?}");

    s.kill9();
    wait_until(WITHIN, "the primary to see s gone", || {
        field_u64(&p.info("replication"), "connected_standbys") == 0
    });
    let () = c.set("k2", "v").unwrap();
    let (n, took) = wait_cmd(&mut c, 1, 1000);
    assert_eq!(n, 0, "WAIT 1 1000 with no standby");
    assert!(
        took >= Duration::from_millis(900),
        "WAIT gave up after {took:?}"
    );
}

/// Sends one raw RESP request; returns the socket.
fn send(addr: &str, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s
}

/// Reads what arrives within `within`; `None` if nothing did.
fn read_within(s: &mut TcpStream, within: Duration) -> Option<String> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => panic!("read: {e}"),
    }
}

#[test]
fn write_of_a_client_killed_while_waiting_stays_invisible_until_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(
        &dir.path().join("p"),
        "p",
        &[
            "--synchronous-commit",
            "on",
            "--synchronous-standby-names",
            "FIRST 1 (s)",
        ],
    );
    let s = NodeProc::start_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    wait_streaming(&p, "s", WITHIN);
    let mut c = p.client();
    let () = c.set("k", "old").unwrap();
    let flushed = field_u64(&p.info("replication"), "flush_lsn");

    s.signal("STOP");
    let mut writer = send(&p.addr(), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nnew\r\n");
    wait_until(WITHIN, "the SET to be durable on the primary", || {
        field_u64(&p.info("replication"), "flush_lsn") > flushed
    });
    assert_eq!(
        read_within(&mut writer, Duration::from_millis(300)),
        None,
        "SET acknowledged while the sync standby is stopped"
    );
    drop(writer); // the client dies while its commit waits

    let mut reader = send(&p.addr(), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    let early = read_within(&mut reader, Duration::from_millis(300));
    assert_eq!(
        early, None,
        "a reader got an answer before the standby confirmed the write"
    );
    s.signal("CONT");
    let reply = read_within(&mut reader, Duration::from_secs(20));
    assert_eq!(reply.as_deref(), Some("$3\r\nnew\r\n"));
    wait_caught_up(&p, &[&s], WITHIN);
}

/// A hung standby (SIGSTOP: the connection stays open, nothing answers)
/// is dropped after `wal_sender_timeout_ms`, so FIRST 1 (a, b) moves on to
/// b and commits continue instead of waiting for a standby that is gone.
#[test]
fn a_hung_standby_is_dropped_after_wal_sender_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (p, a, _b) = primary_with_a_and_b(dir.path(), &["--wal-sender-timeout-ms", "700"]);
    let mut c = p.client();
    let () = c.set("before", "v").unwrap();
    a.signal("STOP");
    // The commit waits for a until the sender gives up on it, then b is sync.
    let took = timed_set(&mut c, "during");
    a.signal("CONT");
    assert!(
        took >= Duration::from_millis(400),
        "commit did not wait for the hung standby: {took:?}"
    );
    assert!(
        took < Duration::from_secs(8),
        "hung standby held the commit for {took:?}"
    );
    let info = p.info("replication");
    assert!(
        info.contains("name=b") && info.contains("sync_state=sync"),
        "{info}"
    );
}
