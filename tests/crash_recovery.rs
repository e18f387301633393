//! Goal: a SIGKILL at any moment loses no acknowledged transaction and
//! never leaves one half applied, across repeated crashes, with pages
//! evicted and checkpoints running under load; afterwards every page on
//! disk passes its checksum.
//! Method: one node with a small buffer pool and 1 s checkpoints; four
//! writer threads, each on its own connection, run MULTI/EXEC
//! transactions (SET `w{t}:a:{n}` and `w{t}:b:{n}` to one value, INCRBY
//! `w{t}:count`) and record which got an EXEC reply. At a seeded random
//! moment the node is SIGKILLed and restarted on the same directory; the
//! whole key space is checked against the writers' records. Five cycles,
//! sequence numbers continuing; then SIGTERM and `tandem verify-pages`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{info_u64, start_with_config, verify_pages, wait_until, NodeProc};
use rand::{Rng, SeedableRng};
use redis::Commands;

const WRITERS: usize = 4;
const CYCLES: usize = 5;
const CONFIG: &str = "buffer_pool_bytes = 262144\n\
                      checkpoint_interval_secs = 1\n\
                      data_extend_pages = 16\n";

/// Deterministic value of writer `t`'s transaction `n` (300 bytes, so the
/// tree outgrows the 32-page pool within the first cycles).
fn value(t: usize, n: u64) -> String {
    let head = format!("w{t}:{n}:");
    let fill = "abcdefghijklmnopqrstuvwxyz".repeat(12);
    format!("{head}{}", &fill[..300 - head.len()])
}

/// What one writer did in one node life: transactions `[start, acked)` got
/// an EXEC reply; `[acked, attempted)` were sent without one (at most one).
struct WriterRun {
    acked: u64,
    attempted: u64,
}

fn writer(n: &NodeProc, t: usize, start: u64, stop: Arc<AtomicBool>) -> JoinHandle<WriterRun> {
    let mut c = n.client();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::thread::spawn(move || {
        let mut next = start;
        while !stop.load(Ordering::Relaxed) {
            let v = value(t, next);
            let r: redis::RedisResult<((), (), i64)> = redis::pipe()
                .atomic()
                .set(format!("w{t}:a:{next}"), &v)
                .set(format!("w{t}:b:{next}"), &v)
                .incr(format!("w{t}:count"), 1)
                .query(&mut c);
            if r.is_err() {
                return WriterRun {
                    acked: next,
                    attempted: next + 1,
                };
            }
            next += 1;
        }
        WriterRun {
            acked: next,
            attempted: next,
        }
    })
}

/// What is known about writer `t` so far: transactions below `attempted`
/// were sent; those in `in_doubt` got no reply (a crash cut them off), all
/// others were acknowledged.
#[derive(Clone, Default)]
struct Ledger {
    attempted: u64,
    in_doubt: Vec<u64>,
}

/// Checks writer `t`: every acknowledged transaction is whole, none is
/// half applied, the counter equals the complete pairs. Returns the keys
/// the writer owns on the node.
fn check_writer(c: &mut redis::Connection, t: usize, l: &Ledger) -> u64 {
    let mut pairs = 0u64;
    for chunk_start in (0..l.attempted).step_by(500) {
        let end = (chunk_start + 500).min(l.attempted);
        let mut pipe = redis::pipe();
        for i in chunk_start..end {
            pipe.get(format!("w{t}:a:{i}")).get(format!("w{t}:b:{i}"));
        }
        let got: Vec<Option<String>> = pipe.query(c).unwrap();
        for (i, ab) in (chunk_start..end).zip(got.chunks(2)) {
            match (&ab[0], &ab[1]) {
                (Some(a), Some(b)) => {
                    assert_eq!(a, &value(t, i), "w{t}:a:{i}");
                    assert_eq!(b, &value(t, i), "w{t}:b:{i}");
                    pairs += 1;
                }
                (None, None) => {
                    assert!(l.in_doubt.contains(&i), "acknowledged w{t} tx {i} lost")
                }
                (a, b) => panic!("w{t} tx {i} half applied: a={a:?} b={b:?}"),
            }
        }
    }
    let count: Option<u64> = c.get(format!("w{t}:count")).unwrap();
    assert_eq!(count.unwrap_or(0), pairs, "w{t}:count vs complete pairs");
    2 * pairs + u64::from(count.is_some())
}

fn check_all(n: &NodeProc, ledgers: &[Ledger]) {
    let mut c = n.client();
    let mut expected_keys = 0;
    for (t, l) in ledgers.iter().enumerate() {
        expected_keys += check_writer(&mut c, t, l);
    }
    let scanned = c.scan::<String>().unwrap().count() as u64;
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(scanned, expected_keys, "SCAN vs the writers' keys");
    assert_eq!(dbsize, scanned, "DBSIZE vs SCAN");
}

/// Runs the writers from `starts` until the node is killed at a random
/// moment; odd cycles first wait for a checkpoint under load.
fn run_cycle(
    n: &mut NodeProc,
    starts: &[u64],
    rng: &mut rand::rngs::StdRng,
    cycle: usize,
) -> Vec<WriterRun> {
    let mut info = n.client();
    let checkpoints_before = info_u64(&mut info, "persistence", "checkpoints");
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..WRITERS)
        .map(|t| writer(n, t, starts[t], stop.clone()))
        .collect();
    if cycle % 2 == 1 {
        wait_until(Duration::from_secs(10), "a checkpoint under load", || {
            info_u64(&mut info, "persistence", "checkpoints") > checkpoints_before
        });
    }
    let delay = rng.random_range(50..=400);
    std::thread::sleep(Duration::from_millis(delay)); // the crash moment, not a sync
    n.kill9();
    stop.store(true, Ordering::Relaxed);
    let runs: Vec<WriterRun> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let acked: u64 = runs.iter().zip(starts).map(|(r, s)| r.acked - s).sum();
    println!("cycle {cycle}: killed {delay} ms in, {acked} transactions acknowledged");
    assert!(
        acked > 0,
        "no transaction was acknowledged in cycle {cycle}"
    );
    runs
}

#[test]
fn sigkill_under_load_keeps_acknowledged_transactions_whole() {
    let started = Instant::now();
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (rerun with CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut n = start_with_config(&data, CONFIG, &[]);
    let mut ledgers = vec![Ledger::default(); WRITERS];
    for cycle in 0..CYCLES {
        let starts: Vec<u64> = ledgers.iter().map(|l| l.attempted).collect();
        let runs = run_cycle(&mut n, &starts, &mut rng, cycle);
        for (l, r) in ledgers.iter_mut().zip(&runs) {
            l.in_doubt.extend(r.acked..r.attempted);
            l.attempted = r.attempted;
        }
        n.spawn();
        check_all(&n, &ledgers);
    }
    let pages_bytes = std::fs::metadata(data.join("pages")).unwrap().len();
    assert!(
        pages_bytes > 4 * 262144,
        "data file of {pages_bytes} bytes: the pool never had to evict"
    );
    assert_eq!(
        n.terminate(),
        Some(0),
        "SIGTERM exit code:\n{}",
        n.log_text()
    );
    let (code, out) = verify_pages(&data);
    assert_eq!(code, Some(0), "verify-pages:\n{out}");
    assert!(out.contains(", 0 bad"), "verify-pages:\n{out}");
    println!("done in {:?}", started.elapsed());
}
