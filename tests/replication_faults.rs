//! Goal: replication survives and contains faults. A standby SIGKILLed
//! under load catches up from the primary's WAL files without a build; a
//! standby held down past `max_wal_retention` is told to rebuild while the
//! primary's WAL directory stays capped; a wrong secret, another cluster's
//! standby and garbage bytes on the replication port are refused with a
//! clear log line and leave the primary serving; with `synchronous_commit
//! on`, SIGKILLing the primary under load loses no acknowledged write on
//! the synchronous standby.
//! Method: real node processes on loopback in temp dirs; writer threads
//! on their own connections record which writes were acknowledged; states
//! are awaited by polling INFO with bounded deadlines; the WAL directory
//! is measured by summing its files after each checkpoint.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::repl::{
    build, digest, dir_bytes, field, field_u64, output_text, wait_caught_up, wait_streaming, SECRET,
};
use common::{info_u64, start_with_config, wait_until, NodeProc};
use rand::{Rng, SeedableRng};
use redis::Commands;

const WITHIN: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

/// Writer threads doing single SETs `z:{t}:{n}` = `n` in order; each
/// thread's counter is the number of SETs acknowledged so far.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Vec<Arc<AtomicU64>>,
    handles: Vec<JoinHandle<()>>,
}

impl Writers {
    fn start(n: &NodeProc, threads: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Vec<_> = (0..threads).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let handles = acked
            .iter()
            .enumerate()
            .map(|(t, count)| {
                let mut c = n.client();
                c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let (stop, count) = (stop.clone(), count.clone());
                std::thread::spawn(move || {
                    let pad = "p".repeat(200);
                    while !stop.load(Ordering::Relaxed) {
                        let i = count.load(Ordering::Relaxed);
                        let r: redis::RedisResult<()> =
                            c.set(format!("z:{t}:{i}"), format!("{i}{pad}"));
                        if r.is_err() {
                            return; // the node went away
                        }
                        count.store(i + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            handles,
        }
    }

    fn total(&self) -> u64 {
        self.acked.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    fn wait_more(&self, more: u64) {
        let target = self.total() + more;
        wait_until(WITHIN, "writers to make progress", || {
            self.total() >= target
        });
    }

    /// Stops the writers; returns each one's acknowledged count.
    fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.join().expect("writer panicked");
        }
        self.acked
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }
}

/// Every acknowledged `z:{t}:{n}` is on `n` with its value.
fn assert_acked_present(n: &NodeProc, acked: &[u64]) {
    let mut c = n.client();
    for (t, &count) in acked.iter().enumerate() {
        let mut pipe = redis::pipe();
        for i in 0..count {
            pipe.get(format!("z:{t}:{i}"));
        }
        let got: Vec<Option<String>> = pipe.query(&mut c).unwrap();
        for (i, v) in got.iter().enumerate() {
            let ok = v
                .as_deref()
                .is_some_and(|v| v.starts_with(&format!("{i}p")));
            assert!(ok, "acknowledged z:{t}:{i} missing or wrong: {v:?}");
        }
    }
}

#[test]
fn standby_sigkilled_under_load_catches_up_without_a_build() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments and 1 s checkpoints: while the standby is down the
    // primary recycles segments, except those the standby still needs.
    let flags = [
        "--name",
        "p",
        "--cluster-secret",
        SECRET,
        "--wal-segment-bytes",
        "65536",
    ];
    let p = start_with_config(
        &dir.path().join("p"),
        "checkpoint_interval_secs = 1\n",
        &flags,
    );
    let mut s = NodeProc::start_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    wait_streaming(&p, "s", WITHIN);
    let writers = Writers::start(&p, 2);
    writers.wait_more(300);
    s.kill9();
    let mut c = p.client();
    let behind_from = info_u64(&mut c, "persistence", "wal_flushed_lsn");
    writers.wait_more(1000);
    let checkpoints = info_u64(&mut c, "persistence", "checkpoints");
    wait_until(WITHIN, "a checkpoint while the standby is down", || {
        info_u64(&mut c, "persistence", "checkpoints") > checkpoints
    });
    let behind = info_u64(&mut c, "persistence", "wal_flushed_lsn") - behind_from;
    assert!(behind > 4 * 65536, "standby only {behind} bytes behind");
    s.spawn();
    wait_until(WITHIN, "the standby to stream again", || {
        let info = s.info("replication");
        assert_ne!(field(&info, "role"), Some("needs_build"), "{info}");
        field(&info, "upstream_state") == Some("streaming")
    });
    wait_streaming(&p, "s", WITHIN);
    writers.wait_more(300);
    let acked = writers.stop();
    let lsn = wait_caught_up(&p, &[&s], WITHIN);
    println!("acked {acked:?}, caught up at {lsn}");
    assert_eq!(digest(&s), digest(&p), "pages after catching up");
    assert_acked_present(&s, &acked);
    let info = s.info("replication");
    assert_eq!(field(&info, "role"), Some("standby"), "{info}");
    let builds = p.log_text().matches("build sent").count();
    assert_eq!(builds, 1, "the restart needed a build:\n{}", p.log_text());
}

const RETENTION: u64 = 4 * MIB;
const SEGMENT: u64 = MIB;

/// Writes `bytes` of values (64 KiB each, overwriting 32 keys) in one
/// pipeline.
fn write_bulk(c: &mut redis::Connection, bytes: u64, round: u64) {
    let value = format!("{round:08}").repeat(8192);
    let mut pipe = redis::pipe();
    for i in 0..bytes / value.len() as u64 {
        pipe.set(format!("big:{}", i % 32), &value).ignore();
    }
    let () = pipe.query(c).unwrap();
}

#[test]
fn standby_held_down_past_retention_needs_a_build_and_wal_stays_capped() {
    let dir = tempfile::tempdir().unwrap();
    let retention = RETENTION.to_string();
    let segment = SEGMENT.to_string();
    let flags = [
        "--name",
        "p",
        "--cluster-secret",
        SECRET,
        "--max-wal-retention",
        retention.as_str(),
        "--wal-segment-bytes",
        segment.as_str(),
    ];
    let pdir = dir.path().join("p");
    let p = start_with_config(&pdir, "checkpoint_interval_secs = 1\n", &flags);
    let mut s = NodeProc::start_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    wait_streaming(&p, "s", WITHIN);
    let mut c = p.client();
    write_bulk(&mut c, MIB, 0);
    let left_at = wait_caught_up(&p, &[&s], WITHIN);
    assert_eq!(s.terminate(), Some(0), "{}", s.log_text());

    let mut largest = 0;
    for round in 1..=10 {
        write_bulk(&mut c, 2 * MIB, round);
        let before = info_u64(&mut c, "persistence", "checkpoints");
        wait_until(WITHIN, "a checkpoint", || {
            info_u64(&mut c, "persistence", "checkpoints") > before
        });
        largest = largest.max(dir_bytes(&pdir.join("wal")));
    }
    let end = info_u64(&mut c, "persistence", "wal_flushed_lsn");
    let final_bytes = dir_bytes(&pdir.join("wal"));
    println!(
        "wrote {} MiB of WAL past the standby; WAL dir at most {largest}, finally {final_bytes} bytes",
        (end - left_at) / MIB
    );
    assert!(end - left_at > 3 * RETENTION, "not past retention");
    // Retention, the last round's WAL (before its checkpoint) and spares.
    let cap = RETENTION + 2 * MIB + 6 * SEGMENT;
    assert!(largest <= cap, "WAL dir reached {largest} bytes, cap {cap}");
    assert!(final_bytes <= cap, "WAL dir ends at {final_bytes} bytes");

    s.spawn();
    wait_until(WITHIN, "the standby to report needs_build", || {
        field(&s.info("replication"), "role") == Some("needs_build")
    });
    assert!(s.log_text().contains("needs a build"), "{}", s.log_text());
    assert!(
        p.log_text().contains("no longer retained"),
        "{}",
        p.log_text()
    );
}

#[test]
fn build_with_a_wrong_secret_is_refused_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let out = build(
        p.repl_port,
        &dir.path().join("s"),
        "intruder",
        "wrong-secret",
    );
    let text = output_text(&out);
    assert!(!out.status.success(), "build with a wrong secret: {text}");
    assert!(text.contains("authentication failed"), "{text}");
    wait_until(WITHIN, "the primary's log line", || {
        p.log_text().contains("intruder")
    });
    let log = p.log_text();
    assert!(
        log.contains("peer intruder at 127.0.0.1:") && log.contains("failed authentication"),
        "{log}"
    );
    assert!(
        !text.contains(SECRET) && !log.contains(SECRET),
        "a secret leaked"
    );
    let mut c = p.client();
    let () = c.set("k", "v").unwrap();
}

#[test]
fn standby_of_another_cluster_is_refused_and_reports_needs_build() {
    let dir = tempfile::tempdir().unwrap();
    let a = NodeProc::start_primary(&dir.path().join("a"), "a", &[]);
    let b = NodeProc::start_primary(&dir.path().join("b"), "b", &[]);
    let sdir = dir.path().join("s");
    let mut s = NodeProc::build_standby(&sdir, a.repl_port, "s", &[]);
    std::fs::write(sdir.join("upstream"), format!("{}\n", b.repl_addr())).unwrap();
    s.spawn();
    wait_until(WITHIN, "the standby to report needs_build", || {
        field(&s.info("replication"), "role") == Some("needs_build")
    });
    assert!(s.log_text().contains("another cluster"), "{}", s.log_text());
    assert!(b.log_text().contains("another cluster"), "{}", b.log_text());
    let mut c = b.client();
    let () = c.set("k", "v").unwrap();
    assert_eq!(c.get::<_, String>("k").unwrap(), "v");
    let info = b.info("replication");
    assert_eq!(field_u64(&info, "connected_standbys"), 0, "{info}");
}

/// Sends `bytes` to the replication port; asserts the connection closes.
fn assert_refused(repl_addr: &str, bytes: &[u8], what: &str) {
    let mut s = TcpStream::connect(repl_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue, // a refusal frame may come first
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{what}: connection not closed: {e}"),
        }
    }
}

#[test]
fn garbage_on_the_replication_port_is_refused_and_the_primary_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let mut random: Vec<u8> = (0..4096).map(|_| rng.random()).collect();
    random[0] = b'X'; // never the magic "TR"
    assert_refused(&p.repl_addr(), &random, "random bytes");
    assert_refused(
        &p.repl_addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "an HTTP request",
    );
    // A Hello header with a 4-byte payload and a wrong checksum.
    let mut bad_crc = b"TR\x01\x00\x04\x00\x00\x00\xde\xad\xbe\xef".to_vec();
    bad_crc.extend_from_slice(b"abcd");
    assert_refused(&p.repl_addr(), &bad_crc, "a frame with a bad checksum");
    let mut c = p.client();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
    let () = c.set("k", "v").unwrap();
    wait_until(WITHIN, "log lines for the bad frames", || {
        let log = p.log_text();
        log.contains("bad frame magic [58,") && log.contains("checksum mismatch")
    });
    assert!(
        p.log_text().contains("bad frame magic [47, 45]"),
        "{}",
        p.log_text()
    );
}

#[test]
fn sigkill_of_a_sync_primary_loses_no_acknowledged_write_on_the_standby() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = NodeProc::start_primary(
        &dir.path().join("p"),
        "p",
        &[
            "--synchronous-commit",
            "on",
            "--synchronous-standby-names",
            "FIRST 1 (s)",
        ],
    );
    let mut s = NodeProc::start_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    wait_streaming(&p, "s", WITHIN);
    let writers = Writers::start(&p, 4);
    writers.wait_more(1000);
    p.kill9();
    let acked = writers.stop();
    println!("acknowledged before the crash: {acked:?}");
    wait_until(WITHIN, "the standby to notice the primary is gone", || {
        field(&s.info("replication"), "upstream_state") != Some("streaming")
    });
    assert_eq!(s.terminate(), Some(0), "{}", s.log_text());
    s.spawn();
    assert_acked_present(&s, &acked);
}

/// A bug that panics a role thread must not leave a half-alive node: the
/// standby whose WAL receiver panics stops (SIGABRT, with the thread named
/// in its log) instead of serving ever older reads while replicating
/// nothing; its primary serves on.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_panicking_wal_receiver_stops_the_standby_and_the_primary_serves_on() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let mut s = NodeProc::build_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    s.env.push((
        "FAILPOINTS".into(),
        "replication::receiver::on_wal=panic".into(),
    ));
    s.spawn();
    let mut c = p.client();
    let _: () = c.set("after-the-standby-started", "x").unwrap();
    let child = s.child.as_mut().expect("standby process");
    let deadline = std::time::Instant::now() + WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby kept running after its receiver panicked:\n{}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    s.child = None;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "exit: {status:?}");
    let log = s.log_text();
    assert!(
        log.contains("a thread panicked") && log.contains("wal-receiver"),
        "log does not name the panicking thread:\n{log}"
    );
    let _: () = c.set("k", "v").unwrap();
    let v: String = c.get("k").unwrap();
    assert_eq!(v, "v");
}
