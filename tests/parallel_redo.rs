//! Goal (issue 12): parallel redo on real nodes.
//! - Atomic hot-standby reads: while the primary runs MULTI/EXEC transfers
//!   between accounts spread over many pages (so one transfer's two pages
//!   are usually applied by different workers), a reader on a standby with
//!   2 workers sums all accounts with one MGET, again and again: the sum
//!   never changes.
//! - A standby SIGKILLed while it redoes a backlog, and a primary SIGKILLed
//!   during its crash recovery, each restart and converge to pages
//!   byte-identical to the other node's.
//!
//! Method: real processes on loopback (`--recovery-redo-workers 2`),
//! SIGSTOP to build a backlog, page digests (`INFO digest`) to compare.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::repl::{digest, field, field_u64, streaming_standby, wait_caught_up, wait_streaming};
use common::{wait_until, NodeProc};

const WITHIN: Duration = Duration::from_secs(60);
const ACCOUNTS: usize = 600;
const BALANCE: i64 = 1000;

/// Long keys spread the accounts over many leaf pages (and slices).
fn account(i: usize) -> String {
    format!("acct:{i:04}:{}", "p".repeat(800))
}

#[test]
fn a_standby_reader_never_sees_half_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let s = streaming_standby(dir.path(), &p, &["--recovery-redo-workers", "2"]);
    let mut c = p.client();
    let mut mset = redis::cmd("MSET");
    for i in 0..ACCOUNTS {
        mset.arg(account(i)).arg(BALANCE);
    }
    let () = mset.query(&mut c).unwrap();
    wait_caught_up(&p, &[&s], WITHIN);
    let pages = field_u64(&p.info("digest"), "digest_pages");
    assert!(pages > 40, "accounts on {pages} pages only");

    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (stop, transfers) = (stop.clone(), transfers.clone());
            let mut c = p.client();
            std::thread::spawn(move || {
                let mut x: u64 = 0x9e37_79b9 + w;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (a, b) = (
                        (x % ACCOUNTS as u64) as usize,
                        ((x >> 20) % ACCOUNTS as u64) as usize,
                    );
                    let amount = (x >> 40) % 50 + 1;
                    let () = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg(account(a))
                        .arg(amount)
                        .ignore()
                        .cmd("INCRBY")
                        .arg(account(b))
                        .arg(amount)
                        .ignore()
                        .query(&mut c)
                        .unwrap();
                    transfers.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let mut r = s.client();
    let keys: Vec<String> = (0..ACCOUNTS).map(account).collect();
    let applied_before = field_u64(&s.info("replication"), "applied_lsn");
    let (mut reads, mut violations) = (0u64, Vec::new());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        let balances: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut r).unwrap();
        let sum: i64 = balances.iter().sum();
        reads += 1;
        if sum != BALANCE * ACCOUNTS as i64 && violations.len() < 5 {
            violations.push(sum);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let applied_after = field_u64(&s.info("replication"), "applied_lsn");
    println!(
        "{reads} sums read on the standby during {} transfers; applied {applied_before} -> {applied_after}",
        transfers.load(Ordering::Relaxed)
    );
    assert!(violations.is_empty(), "sums seen: {violations:?}");
    assert!(reads > 50 && transfers.load(Ordering::Relaxed) > 500);
    assert!(applied_after > applied_before, "redo ran during the reads");
    wait_caught_up(&p, &[&s], WITHIN);
    assert_eq!(digest(&p), digest(&s));
}

/// A writer that SETs numbered keys until stopped; returns how many.
fn write_for(p: &NodeProc, how_long: Duration) -> u64 {
    let mut c = p.client();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < how_long {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET")
                .arg(format!("w:{:08}", n + i))
                .arg(format!("{}-{}", n + i, "v".repeat(60)))
                .ignore();
        }
        let () = pipe.query(&mut c).unwrap();
        n += 100;
    }
    n
}

#[test]
fn a_standby_killed_while_it_redoes_a_backlog_restarts_and_converges() {
    killed_while_it_redoes_a_backlog("2");
}

/// The same with one worker (serial redo: the dispatcher applies inline and
/// no worker thread answers; a standby once stopped applying at all then).
#[test]
fn a_serial_standby_killed_while_it_redoes_a_backlog_restarts_and_converges() {
    killed_while_it_redoes_a_backlog("1");
}

fn killed_while_it_redoes_a_backlog(workers: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let mut s = NodeProc::start_standby(
        &dir.path().join("s"),
        p.repl_port,
        "s",
        &["--recovery-redo-workers", workers],
    );
    assert_eq!(
        field_u64(&s.info("replication"), "redo_workers"),
        workers.parse::<u64>().unwrap()
    );
    wait_streaming(&p, "s", WITHIN);
    let start = field_u64(&s.info("replication"), "applied_lsn");
    common::commit_probe::stop(&s);
    let written = write_for(&p, Duration::from_secs(3));
    let target = field_u64(&p.info("replication"), "flush_lsn");
    common::commit_probe::cont(&s);
    // Kill it once redo is under way on the backlog, before it is done.
    let mut applied = start;
    let fifth = start + (target - start) / 5;
    wait_until(WITHIN, "redo to be a fifth through the backlog", || {
        applied = field_u64(&s.info("replication"), "applied_lsn");
        applied > fifth
    });
    s.kill9();
    println!("{written} keys written; standby killed at applied {applied} of {start}..{target}");
    assert!(applied < target, "redo was done before the kill");
    s.spawn();
    wait_streaming(&p, "s", WITHIN);
    wait_caught_up(&p, &[&s], WITHIN);
    assert_eq!(digest(&p), digest(&s));
    let mut c = s.client();
    let last: Option<String> = redis::cmd("GET")
        .arg(format!("w:{:08}", written - 1))
        .query(&mut c)
        .unwrap();
    assert!(last.is_some_and(|v| v.starts_with(&format!("{}-", written - 1))));
}

#[test]
fn a_primary_killed_during_crash_recovery_restarts_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = NodeProc::start_primary(
        &dir.path().join("p"),
        "p",
        &[
            "--checkpoint-interval-secs",
            "3600",
            "--recovery-redo-workers",
            "2",
        ],
    );
    let s = streaming_standby(dir.path(), &p, &["--recovery-redo-workers", "2"]);
    let written = write_for(&p, Duration::from_secs(4));
    wait_caught_up(&p, &[&s], WITHIN);
    let before = digest(&p);
    p.kill9();
    // Restart, and kill again while it recovers (its log says when
    // recovery is done); the delay shrinks until the kill lands in time.
    let mut delay = Duration::from_millis(120);
    let mut killed_mid_recovery = false;
    for _ in 0..6 {
        let log_before = p.log_text().matches("recovery done").count();
        p.spawn_unready();
        std::thread::sleep(delay);
        let done = p.log_text().matches("recovery done").count() > log_before;
        p.kill9();
        if !done {
            killed_mid_recovery = true;
            break;
        }
        delay /= 2;
    }
    assert!(
        killed_mid_recovery,
        "recovery always finished before the kill"
    );
    p.spawn();
    assert_eq!(field(&p.info("replication"), "role"), Some("primary"));
    let mut c = p.client();
    let last: Option<String> = redis::cmd("GET")
        .arg(format!("w:{:08}", written - 1))
        .query(&mut c)
        .unwrap();
    assert!(last.is_some(), "the last acknowledged write survived");
    // The recovered primary's pages are those it had before the crash, and
    // its standby follows its post-crash timeline to the same pages.
    assert_eq!(digest(&p).1, before.1);
    let () = redis::cmd("SET")
        .arg("after")
        .arg("recovery")
        .query(&mut c)
        .unwrap();
    wait_until(WITHIN, "the standby to follow the new timeline", || {
        let info = s.info("replication");
        field(&info, "upstream_state") == Some("streaming")
            && field_u64(&info, "timeline") == field_u64(&p.info("replication"), "timeline")
    });
    wait_caught_up(&p, &[&s], WITHIN);
    assert_eq!(digest(&p), digest(&s));
}
