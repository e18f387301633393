//! Goal: read-your-writes across nodes holds: a client that writes on the
//! primary, asks `LASTLSN` there and sends `WAITLSN <lsn> <timeout_ms>` to
//! a standby always reads its own write on that standby afterwards (with
//! parallel redo); `WAITLSN` times out with `TIMEOUT applied <lsn>` naming
//! the standby's applied LSN, no earlier than its timeout; on a primary it
//! waits for the flushed WAL (its own last write: at once); a wait on a
//! standby that is promoted meanwhile goes on against its flushed WAL; bad
//! arguments get Redis-style errors; and `tandem-bench run
//! --read-your-writes` finds no stale read.
//! Method: a real primary and a standby built from it (`tandem build`),
//! started with `--recovery-redo-workers 2`, on loopback; the primary
//! commits at `synchronous_commit = local` (the default), so the standby
//! may lag behind every acknowledged write and a read on it without
//! `WAITLSN` can be stale (the test counts how often, it does not depend
//! on it). Unique values per write make a stale read unambiguous. Error
//! and timeout replies are read as raw RESP lines over a plain socket, so
//! the exact text is checked; elapsed times are bounded from below only
//! (the point is waiting, not speed).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::repl::{field_u64, wait_caught_up, wait_streaming};
use common::NodeProc;
use redis::Commands;

const WITHIN: Duration = Duration::from_secs(30);
const BENCH: &str = env!("CARGO_BIN_EXE_tandem-bench");

/// A primary `p` and a standby `s` with two redo workers, streaming.
fn primary_and_standby(dir: &Path) -> (NodeProc, NodeProc) {
    let p = NodeProc::start_primary(&dir.join("p"), "p", &[]);
    let s = NodeProc::start_standby(
        &dir.join("s"),
        p.repl_port,
        "s",
        &["--recovery-redo-workers", "2"],
    );
    wait_streaming(&p, "s", WITHIN);
    (p, s)
}

/// A raw RESP connection: one command out, one reply line back (enough for
/// integer, status and error replies).
struct Raw {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn open(node: &NodeProc) -> Raw {
        let writer = TcpStream::connect(node.addr()).unwrap();
        writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        Raw { writer, reader }
    }

    fn send(&mut self, args: &[&str]) {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.writer.write_all(req.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.line()
    }

    /// True if no reply byte arrives within `quiet` (the command is still
    /// waiting); restores the normal read timeout after.
    fn silent_for(&mut self, quiet: Duration) -> bool {
        let stream = self.reader.get_ref();
        stream.set_read_timeout(Some(quiet)).unwrap();
        let silent = match self.reader.fill_buf() {
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        silent
    }
}

fn applied_lsn(node: &NodeProc) -> u64 {
    field_u64(&node.info("replication"), "applied_lsn")
}

fn flush_lsn(node: &NodeProc) -> u64 {
    field_u64(&node.info("replication"), "flush_lsn")
}

#[test]
fn a_standby_never_serves_a_stale_read_after_waitlsn() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = primary_and_standby(dir.path());
    let mut pc = p.client();
    let mut sc = s.client();
    let mut last = 0u64;
    let mut stale_without_wait = 0;
    for i in 0..2000u32 {
        let key = format!("ryw:{}", i % 50);
        let value = format!("v{i}-{}", std::process::id());
        let () = pc.set(&key, &value).unwrap();
        let lsn: u64 = redis::cmd("LASTLSN").query(&mut pc).unwrap();
        assert!(lsn > last, "LASTLSN went from {last} to {lsn}");
        last = lsn;
        if i % 2 == 0 {
            // How often the same read without WAITLSN would be stale.
            let early: Option<String> = sc.get(&key).unwrap();
            stale_without_wait += usize::from(early.as_deref() != Some(value.as_str()));
        }
        let applied: u64 = redis::cmd("WAITLSN")
            .arg(lsn)
            .arg(5000)
            .query(&mut sc)
            .unwrap_or_else(|e| panic!("WAITLSN {lsn} on the standby, write {i}: {e}"));
        assert!(applied >= lsn, "WAITLSN {lsn} replied {applied}");
        let got: Option<String> = sc.get(&key).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value.as_str()),
            "stale read of {key} on the standby after WAITLSN {lsn} replied {applied} (write {i})"
        );
    }
    println!("reads without WAITLSN that were stale: {stale_without_wait} of 1000");
}

#[test]
fn waitlsn_times_out_waits_on_a_primary_and_checks_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = primary_and_standby(dir.path());
    let mut pc = p.client();
    let () = pc.set("k", "v").unwrap();
    let caught_up = wait_caught_up(&p, &[&s], WITHIN);

    // A standby: an LSN far ahead times out after the timeout, naming the
    // applied LSN (writes stopped: the primary's flush LSN).
    let mut sr = Raw::open(&s);
    let far = (caught_up + (1u64 << 40)).to_string();
    let started = Instant::now();
    let reply = sr.call(&["WAITLSN", &far, "100"]);
    let took = started.elapsed();
    assert_eq!(reply, format!("-TIMEOUT applied {caught_up}"));
    assert_eq!(applied_lsn(&s), caught_up);
    assert!(
        took >= Duration::from_millis(100),
        "timed out after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "timed out after {took:?}");
    // REPL WAITLSN is the same wait, with the same reply.
    assert_eq!(
        sr.call(&["REPL", "WAITLSN", &far, "50"]),
        format!("-TIMEOUT applied {caught_up}")
    );
    // Reached LSNs answer at once with the applied LSN.
    assert_eq!(sr.call(&["WAITLSN", "0", "0"]), format!(":{caught_up}"));
    assert_eq!(
        sr.call(&["WAITLSN", &caught_up.to_string(), "100"]),
        format!(":{caught_up}")
    );

    // No limit (0): the reply comes once a later write is applied.
    sr.send(&["WAITLSN", &(caught_up + 1).to_string(), "0"]);
    std::thread::sleep(Duration::from_millis(200));
    let () = pc.set("later", "x").unwrap();
    let reply = sr.line();
    let applied: u64 = reply
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("WAITLSN without limit replied {reply:?}"));
    assert!(applied > caught_up);
    // A command pipelined behind WAITLSN (one write) runs after it.
    let () = pc.set("later", "y").unwrap();
    let lsn: u64 = redis::cmd("LASTLSN").query(&mut pc).unwrap();
    sr.send(&["WAITLSN", &lsn.to_string(), "5000"]);
    sr.send(&["GET", "later"]);
    let reply = sr.line();
    assert!(reply[1..].parse::<u64>().unwrap() >= lsn, "{reply}");
    assert_eq!(sr.line(), "$1");
    assert_eq!(sr.line(), "y");

    // A primary: its own last write is flushed, so WAITLSN returns at once
    // with the flushed LSN; an LSN ahead times out naming it.
    let mut pr = Raw::open(&p);
    assert_eq!(pr.call(&["SET", "mine", "1"]), "+OK");
    let lsn: u64 = pr.call(&["LASTLSN"])[1..].parse().unwrap();
    assert!(lsn > caught_up);
    let started = Instant::now();
    let reply = pr.call(&["WAITLSN", &lsn.to_string(), "10000"]);
    let took = started.elapsed();
    let applied: u64 = reply[1..].parse().unwrap();
    assert!(applied >= lsn, "{reply}");
    assert!(took < Duration::from_millis(200), "own write took {took:?}");
    let flushed = flush_lsn(&p);
    let started = Instant::now();
    assert_eq!(
        pr.call(&["WAITLSN", &(flushed + (1u64 << 40)).to_string(), "100"]),
        format!("-TIMEOUT applied {flushed}")
    );
    assert!(started.elapsed() >= Duration::from_millis(100));

    // Bad arguments, on both roles.
    for raw in [&mut pr, &mut sr] {
        for (args, expected) in [
            (
                &["WAITLSN"][..],
                "-ERR wrong number of arguments for 'waitlsn' command",
            ),
            (
                &["WAITLSN", "1"],
                "-ERR wrong number of arguments for 'waitlsn' command",
            ),
            (
                &["WAITLSN", "1", "2", "3"],
                "-ERR wrong number of arguments for 'waitlsn' command",
            ),
            (
                &["WAITLSN", "x", "0"],
                "-ERR value is not an integer or out of range",
            ),
            (
                &["WAITLSN", "18446744073709551616", "0"],
                "-ERR value is not an integer or out of range",
            ),
            (
                &["WAITLSN", "-1", "0"],
                "-ERR value is out of range, must be positive",
            ),
            (
                &["WAITLSN", "1", "soon"],
                "-ERR timeout is not an integer or out of range",
            ),
            (&["WAITLSN", "1", "-5"], "-ERR timeout is negative"),
        ] {
            assert_eq!(raw.call(args), expected, "{args:?}");
        }
        assert_eq!(raw.call(&["MULTI"]), "+OK");
        assert_eq!(
            raw.call(&["WAITLSN", "0", "0"]),
            "-ERR Command not allowed inside a transaction"
        );
        assert!(raw.call(&["EXEC"]).starts_with("-EXECABORT"));
        // The connection is still in step.
        assert_eq!(raw.call(&["PING"]), "+PONG");
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(BENCH).args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bench_read_your_writes_finds_no_stale_read() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = primary_and_standby(dir.path());
    let out = bench(&["init", "-s", "1", "-p", &p.port.to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let hosts = format!("{},{}", p.addr(), s.addr());
    let json = dir.path().join("ryw.json");
    let out = bench(&[
        "run",
        "--mix",
        "tpcb",
        "--read-your-writes",
        "--hosts",
        &hosts,
        "-c",
        "8",
        "-j",
        "2",
        "-T",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    let nodes = || {
        format!(
            "primary:\n{}\nstandby:\n{}\nstandby log:\n{}",
            p.info("replication"),
            s.info("replication"),
            s.log_text()
        )
    };
    assert!(out.status.success(), "{}\n{}", text(&out), nodes());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("read-your-writes: "), "{stdout}");
    assert!(stdout.contains("WAITLSN latency p50 = "), "{stdout}");
    println!("{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["stale_reads"], 0, "{report}");
    let checks = report["ryw_checks"].as_u64().unwrap();
    assert!(checks > 0, "{report}\n{}", nodes());
    assert_eq!(report["ryw_standbys"][0], s.addr().as_str());
    let transactions = report["transactions"].as_u64().unwrap();
    let unjudged =
        report["ryw_timeouts"].as_u64().unwrap() + report["ryw_errors"].as_u64().unwrap();
    // Every acknowledged transaction was read back, but for those a client
    // finished after the run's grace period (at most one per client).
    assert!(checks + unjudged <= transactions, "{report}");
    assert!(checks + unjudged + 8 >= transactions, "{report}");
    assert_eq!(report["ryw_timeouts"], 0, "{report}\n{}", nodes());
    assert!(report["waitlsn_latency_p99_ms"].as_f64().unwrap() > 0.0);

    // Refusals, each with its reason.
    let port = p.port.to_string();
    let only_primary = p.addr();
    for (args, expected) in [
        (
            vec!["run", "--read-your-writes", "-p", port.as_str(), "-t", "1"],
            "needs --hosts",
        ),
        (
            vec![
                "run",
                "--read-your-writes",
                "--mix",
                "simple-update",
                "--hosts",
                hosts.as_str(),
            ],
            "cannot check --mix simple-update",
        ),
        (
            vec![
                "run",
                "--read-your-writes",
                "--hosts",
                only_primary.as_str(),
                "-t",
                "1",
            ],
            "needs a standby among --hosts",
        ),
    ] {
        let out = bench(&args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(all.contains(expected), "{args:?}: {all}");
        assert!(
            args.contains(&"simple-update") == all.contains("mixes that have one: tpcb"),
            "{all}"
        );
    }
}

#[test]
fn a_wait_on_a_standby_follows_its_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, s) = primary_and_standby(dir.path());
    let mut pc = p.client();
    let () = pc.set("k", "v").unwrap();
    let caught_up = wait_caught_up(&p, &[&s], WITHIN);
    // Waits on redo's applied LSN, which stops at the promotion; from then
    // on the node's flushed WAL counts, and a write on it ends the wait.
    let mut waiter = Raw::open(&s);
    waiter.send(&["WAITLSN", &(caught_up + 1).to_string(), "0"]);
    assert!(
        waiter.silent_for(Duration::from_millis(200)),
        "WAITLSN for an LSN the standby has not applied answered at once"
    );
    p.kill9();
    let mut admin = Raw::open(&s);
    let promoted = admin.call(&["REPL", "PROMOTE", "test"]);
    assert!(promoted.starts_with("+PROMOTED"), "{promoted}");
    let started = Instant::now();
    assert_eq!(admin.call(&["SET", "after", "1"]), "+OK");
    let lsn: u64 = admin.call(&["LASTLSN"])[1..].parse().unwrap();
    let reply = waiter.line();
    let applied: u64 = reply
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("WAITLSN across the promotion replied {reply:?}"));
    assert!(applied > caught_up, "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The promoted node answers WAITLSN with its flushed WAL.
    let reply = admin.call(&["WAITLSN", &lsn.to_string(), "1000"]);
    assert!(reply[1..].parse::<u64>().unwrap() >= lsn, "{reply}");
}
