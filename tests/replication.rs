//! Goal: streaming replication keeps standbys identical to their primary.
//! Two standbys built with `tandem build` while the primary serves writes
//! end up, once writes stop, applied up to the primary's flushed LSN with
//! byte-identical pages and the same answers; standbys refuse writes
//! naming the primary and answer ROLE as Redis replicas do; a standby
//! built from another standby (cascade) streams from it and converges too.
//! Method: real node processes on loopback in temp dirs. Writer threads
//! run TPC-B-style MULTI/EXEC transfers (account, teller, branch deltas
//! plus a history row) during the builds and for about 2 s after; then
//! INFO replication is polled until every standby's `applied_lsn` equals
//! the primary's `flush_lsn`, and `INFO digest` (CRC over every page) and
//! the TPC-B sums are compared across nodes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::repl::{digest, field, field_u64, wait_caught_up, wait_streaming};
use common::{redis_cli, wait_until, NodeProc};
use rand::{Rng, SeedableRng};

const ACCOUNTS: u64 = 500;
const TELLERS: u64 = 20;
const BRANCHES: u64 = 4;
const BALANCE: i64 = 1000;
const WRITERS: u64 = 2;
const WITHIN: Duration = Duration::from_secs(30);

fn init_tpcb(n: &NodeProc) {
    let mut c = n.client();
    let mut pipe = redis::pipe();
    for a in 0..ACCOUNTS {
        pipe.set(format!("acct:{a}"), BALANCE).ignore();
    }
    for t in 0..TELLERS {
        pipe.set(format!("teller:{t}"), 0).ignore();
    }
    for b in 0..BRANCHES {
        pipe.set(format!("branch:{b}"), 0).ignore();
    }
    let () = pipe.query(&mut c).unwrap();
}

/// Runs TPC-B-style transactions until `stop`; counts committed ones.
fn writer(n: &NodeProc, w: u64, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) -> JoinHandle<()> {
    let mut c = n.client();
    std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(w);
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let delta: i64 = rng.random_range(-500..=500);
            let () = redis::pipe()
                .atomic()
                .incr(format!("acct:{}", rng.random_range(0..ACCOUNTS)), delta)
                .ignore()
                .incr(format!("teller:{}", rng.random_range(0..TELLERS)), delta)
                .ignore()
                .incr(format!("branch:{}", rng.random_range(0..BRANCHES)), delta)
                .ignore()
                .set(
                    format!("hist:{w}:{seq}"),
                    format!("{delta:>+6} {}", "h".repeat(80)),
                )
                .ignore()
                .query(&mut c)
                .unwrap();
            seq += 1;
            done.fetch_add(1, Ordering::Relaxed);
        }
    })
}

fn sum(c: &mut redis::Connection, prefix: &str, count: u64) -> i64 {
    let keys: Vec<String> = (0..count).map(|i| format!("{prefix}:{i}")).collect();
    let vals: Vec<i64> = redis::cmd("MGET").arg(&keys).query(c).unwrap();
    vals.iter().sum()
}

/// `(sum of accounts, sum of tellers, sum of branches, keys)` on a node.
fn tpcb_sums(n: &NodeProc) -> (i64, i64, i64, u64) {
    let mut c = n.client();
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    (
        sum(&mut c, "acct", ACCOUNTS),
        sum(&mut c, "teller", TELLERS),
        sum(&mut c, "branch", BRANCHES),
        dbsize,
    )
}

struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    handles: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(n: &NodeProc) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let handles = (0..WRITERS)
            .map(|w| writer(n, w, stop.clone(), done.clone()))
            .collect();
        Load {
            stop,
            done,
            handles,
        }
    }

    fn committed(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `more` further transactions committed.
    fn wait_more(&self, more: u64) {
        let target = self.committed() + more;
        wait_until(WITHIN, "writers to make progress", || {
            self.committed() >= target
        });
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.join().expect("writer thread panicked");
        }
        self.done.load(Ordering::Relaxed)
    }
}

/// Every node has the same digest, page count and TPC-B sums, and the sums
/// are consistent (money moved, never created).
fn assert_identical(nodes: &[(&str, &NodeProc)]) {
    let (p_name, p) = nodes[0];
    let p_digest = digest(p);
    let p_sums = tpcb_sums(p);
    println!("{p_name}: digest {p_digest:?}, sums {p_sums:?}");
    let (accts, tellers, branches, _) = p_sums;
    assert_eq!(accts - ACCOUNTS as i64 * BALANCE, tellers, "TPC-B sums");
    assert_eq!(tellers, branches, "TPC-B sums");
    for &(name, s) in &nodes[1..] {
        assert_eq!(digest(s), p_digest, "{name}'s pages vs {p_name}'s");
        assert_eq!(tpcb_sums(s), p_sums, "{name}'s TPC-B sums vs {p_name}'s");
    }
}

/// ROLE on a standby: `slave`, the primary's client host and port.
fn assert_role_names(standby: &NodeProc, primary: &NodeProc) {
    let mut c = standby.client();
    let (role, host, port, state, _offset): (String, String, u16, String, u64) =
        redis::cmd("ROLE").query(&mut c).unwrap();
    assert_eq!(role, "slave");
    assert_eq!((host.as_str(), port), ("127.0.0.1", primary.port));
    assert_eq!(state, "connected");
}

#[test]
fn two_standbys_built_under_writes_hold_identical_pages() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    init_tpcb(&p);
    let load = Load::start(&p);
    load.wait_more(50);
    let mut standbys = Vec::new();
    for name in ["a", "b"] {
        let before = load.committed();
        let s = NodeProc::start_standby(&dir.path().join(name), p.repl_port, name, &[]);
        assert!(
            load.committed() > before,
            "no transaction committed while {name} was built"
        );
        standbys.push(s);
    }
    wait_streaming(&p, "a", WITHIN);
    wait_streaming(&p, "b", WITHIN);
    load.wait_more(200); // streamed, not only built
    let load_for = Duration::from_secs(2).saturating_sub(started.elapsed());
    std::thread::sleep(load_for); // keeps the load going ~2 s; not a sync
    let committed = load.stop();
    let (a, b) = (&standbys[0], &standbys[1]);
    let lsn = wait_caught_up(&p, &[a, b], WITHIN);
    println!("{committed} transactions; caught up at {lsn}");
    assert_eq!(
        field_u64(&p.info("replication"), "connected_standbys"),
        2,
        "{}",
        p.info("replication")
    );
    for s in [a, b] {
        let digest_lsn = field_u64(&s.info("digest"), "digest_lsn");
        assert_eq!(digest_lsn, lsn, "a standby's digest covers up to {lsn}");
    }
    assert_identical(&[("p", &p), ("a", a), ("b", b)]);
    let out = redis_cli(a.port, &["SET", "acct:0", "1000000"]);
    assert!(out.contains("READONLY"), "SET on a standby: {out}");
    assert!(out.contains(&p.addr()), "READONLY names the primary: {out}");
    assert_role_names(a, &p);
    assert_role_names(b, &p);
    println!("done in {:?}", started.elapsed());
}

#[test]
fn cascaded_standby_streams_from_a_standby_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    init_tpcb(&p);
    let s1 = NodeProc::start_standby(&dir.path().join("s1"), p.repl_port, "s1", &[]);
    wait_streaming(&p, "s1", WITHIN);
    let load = Load::start(&p);
    load.wait_more(50);
    let s2 = NodeProc::start_standby(&dir.path().join("s2"), s1.repl_port, "s2", &[]);
    wait_streaming(&s1, "s2", WITHIN);
    load.wait_more(300);
    load.stop();
    wait_caught_up(&p, &[&s1, &s2], WITHIN);
    let info = s2.info("replication");
    assert_eq!(field(&info, "role"), Some("standby"), "{info}");
    assert_eq!(field(&info, "upstream"), Some(s1.repl_addr().as_str()));
    assert_eq!(field(&info, "upstream_state"), Some("streaming"));
    // Down the chain, READONLY errors name the node that takes writes.
    assert_eq!(field(&info, "primary"), Some(p.addr().as_str()), "{info}");
    let out = redis_cli(s2.port, &["SET", "k", "v"]);
    assert!(out.contains("READONLY") && out.contains(&p.addr()), "{out}");
    // s2 is s1's standby, not the primary's.
    let p_info = p.info("replication");
    assert_eq!(field_u64(&p_info, "connected_standbys"), 1, "{p_info}");
    assert_identical(&[("p", &p), ("s1", &s1), ("s2", &s2)]);
}

/// Regression: a standby that connected with nothing left to send was
/// listed as `catchup` until the primary wrote again.
#[test]
fn standby_of_an_idle_primary_is_reported_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(&dir.path().join("p"), "p", &[]);
    let _s = NodeProc::start_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    wait_streaming(&p, "s", Duration::from_secs(10));
}
