//! Timelines, switchover, failover and pending mode on real 3-node
//! clusters on loopback (issue 5): node processes, `tandem build`,
//! `tandemctl` and the load tool, all as users run them.
//!
//! What the tests assert:
//! - switchover under TPC-B load, 5 times: the load tool follows the
//!   primary, TPC-B `check` passes and page digests are equal on every
//!   node, no node needs a build, every acknowledged counter increment is
//!   on the last primary; the write pause of each switchover is printed;
//! - failover after SIGKILL of the primary under `on`: every acknowledged
//!   increment is on the new primary, the other standby follows the new
//!   timeline, and the restarted old primary starts pending, then either
//!   reports needs_build with the divergence LSN equal to the new
//!   timeline's first LSN or (when its WAL ended there) follows as a
//!   standby; it never takes a write;
//! - `tandemctl ... --json` outputs carry their documented fields.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::cluster::{
    cluster, ctl_json, hosts, primary_of, repl_info, run, wait_healthy, BENCH, CTL,
};
use common::repl::{build, field, field_u64, output_text, SECRET};
use common::{wait_until, NodeProc};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A client that INCRs one counter on whichever node is the primary and
/// remembers the highest value a primary acknowledged.
struct Counter {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Counter {
    fn start(addrs: Vec<String>) -> Counter {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let mut conn: Option<redis::Connection> = None;
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => {
                        i = (i + 1) % addrs.len();
                        let url = format!("redis://{}/", addrs[i]);
                        match redis::Client::open(url)
                            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                        {
                            Ok(c) => conn.insert(c),
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(2));
                                continue;
                            }
                        }
                    }
                };
                match redis::cmd("INCR").arg("acked-counter").query::<u64>(c) {
                    Ok(v) => {
                        a.fetch_max(v, Ordering::Relaxed);
                    }
                    Err(_) => conn = None,
                }
            }
        });
        Counter {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.load(Ordering::Relaxed)
    }
}

fn counter_on(n: &NodeProc) -> u64 {
    let mut c = n.client();
    redis::cmd("GET")
        .arg("acked-counter")
        .query::<Option<u64>>(&mut c)
        .unwrap()
        .unwrap_or(0)
}

/// The load tool running TPC-B against `--hosts` for `secs`.
fn start_load(nodes: &[NodeProc], secs: u32, report: &Path) -> Child {
    let h = hosts(nodes);
    let out = run(BENCH, &["init", "-s", "1", "--hosts", &h]);
    assert!(out.status.success(), "init: {}", output_text(&out));
    Command::new(BENCH)
        .args(["run", "--mix", "tpcb", "-c", "4", "-T", &secs.to_string()])
        .args(["--hosts", &h, "--pause-threshold-ms", "5", "--json"])
        .arg(report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish_load(mut load: Child, report: &Path) -> serde_json::Value {
    let status = load.wait().unwrap();
    assert!(status.success(), "tandem-bench run failed: {status:?}");
    serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
}

/// TPC-B consistency and equal page digests on every running node.
fn check_all(nodes: &[NodeProc]) {
    let p = primary_of(nodes);
    common::repl::wait_caught_up(
        &nodes[p],
        &nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != p && n.child.is_some())
            .map(|(_, n)| n)
            .collect::<Vec<_>>(),
        Duration::from_secs(20),
    );
    let mut digests = Vec::new();
    for n in nodes.iter().filter(|n| n.child.is_some()) {
        let out = run(BENCH, &["check", "-p", &n.port.to_string()]);
        assert!(
            out.status.success(),
            "check on {}: {}",
            n.addr(),
            output_text(&out)
        );
        digests.push((n.addr(), common::repl::digest(n)));
        assert!(
            field(&repl_info(n), "needs_build_reason").is_none(),
            "{} needs a build",
            n.addr()
        );
    }
    assert!(
        digests.windows(2).all(|w| w[0].1 == w[1].1),
        "page digests differ: {digests:?}"
    );
}

/// The load tool's longest write pause overlapping `[from_ms, to_ms]`
/// (wall clock): `(ms, end_unix_ms)`.
fn pause_around(report: &serde_json::Value, from_ms: u64, to_ms: u64) -> Option<(f64, f64)> {
    report["pauses"]
        .as_array()?
        .iter()
        .filter_map(|p| {
            let start = p["start_unix_ms"].as_f64()?;
            let end = p["end_unix_ms"].as_f64()?;
            (end >= from_ms as f64 && start <= to_ms as f64)
                .then(|| (p["ms"].as_f64().unwrap_or(0.0), end))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn is_readonly(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::ReadOnly
}

#[test]
fn switchover_under_tpcb_load_five_times_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(
        dir.path(),
        3,
        &[
            "--synchronous-commit",
            "on",
            "--synchronous-standby-names",
            "ANY 1 (n0, n1, n2)",
        ],
    );
    let report = dir.path().join("load.json");
    let load = start_load(&nodes, 12, &report);
    let counter = Counter::start(nodes.iter().map(NodeProc::addr).collect());
    wait_until(Duration::from_secs(10), "the load writes", || {
        counter_on(&nodes[0]) > 20
    });
    let mut pauses = Vec::new();
    for round in 0..5 {
        let p = primary_of(&nodes);
        let target = (p + 1 + round % 2) % nodes.len();
        let before = unix_ms();
        let v = ctl_json(&[
            "switchover",
            "--host",
            &nodes[target].addr(),
            "--hosts",
            &hosts(&nodes),
            "--json",
        ]);
        let after = unix_ms();
        for key in [
            "new_primary",
            "old_primary",
            "timeline",
            "switch_lsn",
            "write_block_ms",
            "followed",
        ] {
            assert!(!v[key].is_null(), "switchover --json lacks {key}: {v}");
        }
        assert_eq!(v["new_primary"], nodes[target].addr());
        wait_healthy(&nodes, Duration::from_secs(20));
        assert_eq!(primary_of(&nodes), target);
        pauses.push((before, after, v["write_block_ms"].as_f64().unwrap()));
        // Let the load run on the new primary before the next round.
        let base = counter_on(&nodes[target]);
        wait_until(Duration::from_secs(10), "writes on the new primary", || {
            counter_on(&nodes[target]) > base + 20
        });
    }
    let acked = counter.finish();
    let report = finish_load(load, &report);
    let last = primary_of(&nodes);
    assert!(
        counter_on(&nodes[last]) >= acked,
        "acknowledged increments lost: {} < {acked}",
        counter_on(&nodes[last])
    );
    check_all(&nodes);
    for (i, (from, to, blocked)) in pauses.iter().enumerate() {
        let pause = pause_around(&report, *from, *to);
        println!(
            "switchover {}: writes blocked {blocked:.1} ms (fence to promote); load tool's write pause {}",
            i + 1,
            pause.map_or("below 5 ms".into(), |(p, _)| format!("{p:.1} ms"))
        );
    }
    for n in &mut nodes {
        assert_eq!(n.terminate(), Some(0), "clean stop of {}", n.addr());
    }
}

#[test]
fn failover_after_sigkill_keeps_every_acknowledged_write_and_fences_the_old_primary() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(
        dir.path(),
        3,
        &[
            "--synchronous-commit",
            "on",
            "--synchronous-standby-names",
            "ANY 1 (n1, n2)",
        ],
    );
    let report = dir.path().join("load.json");
    let load = start_load(&nodes, 6, &report);
    let counter = Counter::start(nodes.iter().map(NodeProc::addr).collect());
    wait_until(Duration::from_secs(10), "the load writes", || {
        counter_on(&nodes[0]) > 200
    });
    nodes[0].kill9();
    let killed_ms = unix_ms();
    let started = Instant::now();
    let alive: Vec<String> = nodes[1..].iter().map(NodeProc::addr).collect();
    let v = ctl_json(&[
        "failover",
        "--auto-pick",
        "--hosts",
        &alive.join(","),
        "--json",
    ]);
    let failover_ms = started.elapsed().as_secs_f64() * 1e3;
    for key in [
        "new_primary",
        "timeline",
        "switch_lsn",
        "promote_ms",
        "followed",
    ] {
        assert!(!v[key].is_null(), "failover --json lacks {key}: {v}");
    }
    let new = nodes
        .iter()
        .position(|n| v["new_primary"] == n.addr())
        .unwrap();
    let other = if new == 1 { 2 } else { 1 };
    wait_healthy(&nodes[1..], Duration::from_secs(20));
    let tli = field_u64(&repl_info(&nodes[new]), "timeline");
    assert_eq!(tli, 2);
    assert_eq!(field_u64(&repl_info(&nodes[other]), "timeline"), 2);
    let acked = counter.finish();
    let report = finish_load(load, &report);
    assert!(
        counter_on(&nodes[new]) >= acked,
        "acknowledged increments lost in the failover: {} < {acked}",
        counter_on(&nodes[new])
    );
    check_all(&nodes);
    let first_ack = pause_around(&report, killed_ms, killed_ms).map(|(_, end)| end);
    println!(
        "failover: tandemctl failover took {failover_ms:.1} ms (promotion {:.1} ms); first acknowledged write {} ms after the SIGKILL",
        v["promote_ms"].as_f64().unwrap_or(0.0),
        first_ack.map_or("?".into(), |f| format!("{:.1}", f - killed_ms as f64))
    );

    // The old primary comes back: pending, then fenced for good or a
    // standby of the new timeline; it never takes a write.
    let switch_lsn = field_u64(&repl_info(&nodes[new]), "timeline_start_lsn");
    assert_eq!(switch_lsn, v["switch_lsn"].as_u64().unwrap());
    nodes[0].spawn();
    let mut c = nodes[0].client();
    let refused: redis::RedisResult<()> = redis::cmd("SET").arg("split").arg("brain").query(&mut c);
    let err = refused.expect_err("a restarted old primary must not take writes");
    assert!(is_readonly(&err), "{err}");
    let mut role = String::new();
    wait_until(Duration::from_secs(20), "the old primary settles", || {
        let info = repl_info(&nodes[0]);
        role = field(&info, "role").unwrap_or_default().to_string();
        // A standby settles once streaming on the new timeline (it adopts
        // the timeline from the first message after the handshake).
        role == "needs_build"
            || (role == "standby"
                && field(&info, "upstream_state") == Some("streaming")
                && field_u64(&info, "timeline") == tli)
    });
    let info = repl_info(&nodes[0]);
    if role == "needs_build" {
        assert_eq!(
            field_u64(&info, "divergence_lsn"),
            switch_lsn,
            "divergence at the new timeline's first LSN:\n{info}"
        );
        println!("old primary: needs_build, diverged at {switch_lsn}");
    } else {
        assert_eq!(field_u64(&info, "timeline"), tli);
        println!("old primary: its WAL ended at the switch; it follows timeline {tli}");
    }
    let refused: redis::RedisResult<()> = redis::cmd("SET").arg("split").arg("brain").query(&mut c);
    assert!(refused.is_err(), "the old primary took a write");
    let mut p = nodes[new].client();
    let split: Option<String> = redis::cmd("GET").arg("split").query(&mut p).unwrap();
    assert_eq!(split, None);
}

#[test]
fn promote_and_demote_by_hand_with_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), 2, &[]);
    let q = ctl_json(&["query", "--host", &nodes[1].addr(), "--json"]);
    assert!(q.is_object(), "query --json: {q}");
    let text = q.to_string();
    for key in ["role", "timeline", "flush_lsn", "applied_lsn"] {
        assert!(
            text.contains(&format!("\"{key}\"")),
            "query --json lacks {key}: {q}"
        );
    }
    // A fenced primary refuses writes; demote makes it a standby of n1
    // once n1 is promoted.
    let mut c0 = nodes[0].client();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c0).unwrap();
    let end: u64 = redis::cmd("REPL").arg("FENCE").query(&mut c0).unwrap();
    let err = redis::cmd("SET")
        .arg("k")
        .arg("w")
        .query::<()>(&mut c0)
        .expect_err("fenced");
    assert!(is_readonly(&err), "{err}");
    let mut c1 = nodes[1].client();
    let applied: u64 = redis::cmd("REPL")
        .arg("WAITLSN")
        .arg(end)
        .arg(5000)
        .query(&mut c1)
        .unwrap();
    assert!(applied >= end);
    let p = ctl_json(&["promote", "--host", &nodes[1].addr(), "--json"]);
    assert_eq!(p["timeline"], 2);
    assert_eq!(p["switch_lsn"].as_u64(), Some(end));
    let d = ctl_json(&[
        "demote",
        "--host",
        &nodes[0].addr(),
        "--upstream",
        &nodes[1].repl_addr(),
        "--json",
    ]);
    assert_eq!(d["wal_end"].as_u64(), Some(end));
    wait_healthy(&nodes, Duration::from_secs(20));
    let _: () = redis::cmd("SET").arg("k").arg("x").query(&mut c1).unwrap();
    wait_until(Duration::from_secs(10), "n0 sees the write of n1", || {
        redis::cmd("GET").arg("k").query::<String>(&mut c0).unwrap() == "x"
    });
    // Promoting a primary is refused with a reason and a non-zero exit.
    let out = run(CTL, &["promote", "--host", &nodes[1].addr()]);
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("already the primary"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn a_restarted_old_primary_cut_off_from_its_peers_stays_pending_and_never_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 2, &[]);
    let mut c0 = nodes[0].client();
    let _: () = redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query(&mut c0)
        .unwrap();
    common::repl::wait_caught_up(&nodes[0], &[&nodes[1]], Duration::from_secs(10));
    nodes[0].kill9();
    let v = ctl_json(&["failover", "--host", &nodes[1].addr(), "--json"]);
    assert_eq!(v["timeline"], 2);
    let mut c1 = nodes[1].client();
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("2")
        .query(&mut c1)
        .unwrap();

    // n0 reaches its only peer through a proxy that drops every connection.
    let proxy = common::proxy::Proxy::start(nodes[1].repl_addr().parse().unwrap());
    proxy.set_mode(common::proxy::Mode::Drop);
    let at = nodes[0].extra.iter().position(|a| a == "--peers").unwrap();
    nodes[0].extra[at + 1] = proxy.addr().to_string();
    nodes[0].spawn();
    wait_until(
        Duration::from_secs(20),
        "two probe rounds without an answer",
        || nodes[0].log_text().matches("still pending").count() >= 2,
    );
    let mut c0 = nodes[0].client();
    assert_eq!(field(&repl_info(&nodes[0]), "role"), Some("pending"));
    let err = redis::cmd("SET")
        .arg("split")
        .arg("brain")
        .query::<()>(&mut c0)
        .expect_err("a pending node takes no writes");
    assert!(is_readonly(&err), "{err}");
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c0).unwrap();
    assert_eq!(
        role[0],
        redis::Value::BulkString(b"slave".to_vec()),
        "ROLE of a pending node"
    );

    // Once it reaches the peer it learns of timeline 2 and settles.
    proxy.set_mode(common::proxy::Mode::Forward);
    wait_until(
        Duration::from_secs(20),
        "the old primary learns of timeline 2",
        || {
            let info = repl_info(&nodes[0]);
            match field(&info, "role") {
                Some("needs_build") => true,
                Some("standby") => field_u64(&info, "timeline") == 2,
                _ => false,
            }
        },
    );
    let err = redis::cmd("SET")
        .arg("split")
        .arg("brain")
        .query::<()>(&mut c0)
        .expect_err("never a second primary");
    assert!(is_readonly(&err), "{err}");
    let split: Option<String> = redis::cmd("GET").arg("split").query(&mut c1).unwrap();
    assert_eq!(split, None);
}

/// A primary whose flush is held back 300 ms a batch (failpoint
/// `wal::flusher::before_write`) and a standby built from it, streaming.
fn slow_disk_primary_with_standby(dir: &Path) -> (NodeProc, NodeProc) {
    let mut p = NodeProc::new(&dir.join("p"), &["--name", "p", "--cluster-secret", SECRET]);
    p.env.push((
        "FAILPOINTS".into(),
        "wal::flusher::before_write=return(300)".into(),
    ));
    p.spawn();
    let out = build(p.repl_port, &dir.join("s"), "s", SECRET);
    assert!(out.status.success(), "{}", output_text(&out));
    let mut s = NodeProc::new(&dir.join("s"), &["--name", "s", "--cluster-secret", SECRET]);
    s.spawn();
    common::repl::wait_streaming(&p, "s", Duration::from_secs(20));
    (p, s)
}

/// 50 SETs with synchronous_commit off: they return at once, and their WAL
/// reaches the standby while the primary's flush is held back. Returns the
/// client connection.
fn write_past_the_primarys_flush(p: &NodeProc) -> redis::Connection {
    let mut c = p.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("synchronous_commit")
        .arg("off")
        .query(&mut c)
        .unwrap();
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    c
}

/// The primary ships each WAL batch before its own fdatasync ends, so a
/// standby can hold WAL its primary loses in a crash. A slow primary disk
/// (test knob) makes that certain; the restarted primary writes on a new
/// timeline from its recovered end, and the standby, which applied nothing
/// past what the primary had made durable, drops its tail and follows
/// without a build.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_standby_ahead_of_a_crashed_primary_drops_its_unapplied_tail_and_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, s) = slow_disk_primary_with_standby(dir.path());
    write_past_the_primarys_flush(&p);
    let mut ahead = (0, 0);
    wait_until(
        Duration::from_secs(10),
        "the standby flushed past the primary",
        || {
            let pf = field_u64(&repl_info(&p), "flush_lsn");
            let sf = field_u64(&repl_info(&s), "flush_lsn");
            ahead = (pf, sf);
            sf > pf
        },
    );
    let applied = field_u64(&repl_info(&s), "applied_lsn");
    assert!(applied <= ahead.0 || applied <= field_u64(&repl_info(&p), "flush_lsn"));
    p.kill9();
    p.env.clear();
    p.spawn();
    let info = repl_info(&p);
    assert_eq!(field(&info, "role"), Some("primary"));
    assert_eq!(
        field_u64(&info, "timeline"),
        2,
        "a crash restart starts a new timeline"
    );
    let switch = field_u64(&info, "timeline_start_lsn");
    assert!(
        switch < ahead.1,
        "the primary lost WAL the standby had: {switch} < {}",
        ahead.1
    );
    let mut c = p.client();
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("crash")
        .query(&mut c)
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the standby follows timeline 2",
        || {
            let i = repl_info(&s);
            field_u64(&i, "timeline") == 2 && field(&i, "upstream_state") == Some("streaming")
        },
    );
    assert!(field(&repl_info(&s), "needs_build_reason").is_none());
    common::repl::wait_caught_up(&p, &[&s], Duration::from_secs(20));
    assert_eq!(common::repl::digest(&p), common::repl::digest(&s));
    assert!(
        s.log_text().contains("WAL truncated"),
        "the standby cut its tail"
    );
}

/// A standby told to follow (here: its own upstream again) while it
/// holds WAL it has not applied yet (its primary had not said the WAL was
/// durable there) starts the new stream from the end of its WAL, reloads
/// and applies the rest, and reports consistent positions.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_standby_refollowing_with_unapplied_wal_applies_it_and_streams_on() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = slow_disk_primary_with_standby(dir.path());
    let mut c = write_past_the_primarys_flush(&p);
    wait_until(
        Duration::from_secs(10),
        "the standby holds WAL it has not applied",
        || {
            let i = repl_info(&s);
            field_u64(&i, "flush_lsn") > field_u64(&i, "applied_lsn")
        },
    );
    let _: () = redis::cmd("REPL")
        .arg("FOLLOW")
        .arg(p.repl_addr())
        .query(&mut s.client())
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("follow")
        .query(&mut c)
        .unwrap();
    // The primary's flush is held back 300 ms a batch: wait for the pages.
    wait_until(Duration::from_secs(20), "equal page digests", || {
        common::repl::digest(&p) == common::repl::digest(&s)
    });
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
}
