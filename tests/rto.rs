//! Goal (issue 12, RTO control): a standby reports its redo backlog, redo
//! rate and estimated recovery time (INFO, the primary's standby line);
//! with `recovery_time_target` the primary slows its commits while a
//! synchronous standby's estimate is over the target, says so
//! (`rto_throttle_us`), and lets go once the standby caught up.
//!
//! Method: a primary (`on`, `ANY 1 (s)`, `--recovery-time-target 1`) and a
//! standby whose redo is made slow with the failpoint
//! `redo::workers::share` (each record takes 100 us longer);
//! `on` waits for the standby's flush, not its redo, so a writer builds a
//! redo backlog. The failpoint is cleared and the throttle must lift.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::repl::{field_u64, standby_entry, wait_streaming};
use common::{wait_until, NodeProc};

const WITHIN: Duration = Duration::from_secs(60);

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_slow_standby_redo_throttles_commits_until_it_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let p = NodeProc::start_primary(
        &dir.path().join("p"),
        "p",
        &[
            "--synchronous-commit",
            "on",
            "--synchronous-standby-names",
            "ANY 1 (s)",
            "--recovery-time-target",
            "1",
        ],
    );
    let s = NodeProc::start_standby(&dir.path().join("s"), p.repl_port, "s", &[]);
    wait_streaming(&p, "s", WITHIN);
    let info = s.info("replication");
    assert_eq!(field_u64(&info, "estimated_rto_ms"), 0, "{info}");
    for f in [
        "redo_workers",
        "redo_backlog_bytes",
        "redo_rate_bytes_per_s",
    ] {
        field_u64(&info, f);
    }
    s.set_failpoint("redo::workers::share", "return(100)");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut c = p.client();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for i in 0..50 {
                    pipe.cmd("SET")
                        .arg(format!("k{}", (n + i) % 50_000))
                        .arg("v".repeat(200))
                        .ignore();
                }
                let () = pipe.query(&mut c).unwrap();
                n += 50;
            }
        })
    };
    let mut standby_rto = 0;
    wait_until(WITHIN, "the primary to throttle commits", || {
        standby_rto = standby_rto.max(field_u64(&s.info("replication"), "estimated_rto_ms"));
        field_u64(&p.info("replication"), "rto_throttle_us") > 0
    });
    let info = p.info("replication");
    let entry = standby_entry(&info, "s").unwrap();
    let reported: u64 = entry["estimated_rto_ms"].parse().unwrap();
    println!("standby estimate up to {standby_rto} ms; the primary sees {reported} ms:\n{info}");
    assert!(
        standby_rto > 1000,
        "the standby never estimated more than the target"
    );
    assert_eq!(field_u64(&info, "recovery_time_target"), 1);
    // A write's reply is held at least as long as the throttle says.
    let delay = field_u64(&p.info("replication"), "rto_throttle_us");
    let mut c = p.client();
    let t = Instant::now();
    let () = redis::cmd("SET")
        .arg("timed")
        .arg("v")
        .query(&mut c)
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_micros(delay / 2),
        "a write took {:?} under a throttle of {delay} us",
        t.elapsed()
    );

    s.set_failpoint("redo::workers::share", "off");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    wait_until(WITHIN, "the throttle to lift", || {
        field_u64(&p.info("replication"), "rto_throttle_us") == 0
    });
    wait_until(WITHIN, "the standby to catch up", || {
        field_u64(&s.info("replication"), "estimated_rto_ms") == 0
    });
}
