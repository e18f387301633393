//! Goal: the node's process life is predictable from outside. A second
//! node on a data dir in use refuses to start and names the holder; SIGTERM
//! and the SHUTDOWN command stop the node with exit code 0 after a clean
//! shutdown; a restart sees all data; a SIGTERM while a pipeline of writes
//! is in flight still exits 0 and keeps every write that got a reply.
//! Method: real node processes on free loopback ports in temp dirs; the
//! in-flight pipeline is raw RESP on a TCP socket, written and read by two
//! threads.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, redis_cli, tandem_bin, wait_until, NodeProc};
use redis::Commands;

fn node() -> (tempfile::TempDir, NodeProc) {
    let dir = tempfile::tempdir().unwrap();
    let n = NodeProc::start(&dir.path().join("data"), &[]);
    (dir, n)
}

fn write_keys(n: &NodeProc, prefix: &str, count: usize) {
    let mut c = n.client();
    for i in 0..count {
        let _: () = c.set(format!("{prefix}{i}"), format!("v{i}")).unwrap();
    }
}

fn assert_keys(n: &NodeProc, prefix: &str, count: usize) {
    let mut c = n.client();
    for i in 0..count {
        let got: Option<String> = c.get(format!("{prefix}{i}")).unwrap();
        assert_eq!(got, Some(format!("v{i}")), "{prefix}{i}");
    }
}

#[test]
fn second_node_on_a_locked_data_dir_refuses_to_start() {
    let (_d, n) = node();
    let pid = n.child.as_ref().unwrap().id();
    let mut second = Command::new(tandem_bin())
        .arg("node")
        .arg("--data-dir")
        .arg(&n.data_dir)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--repl-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second node did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "second node exited 0: {stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    // The first node is unaffected.
    let mut c = n.client();
    assert_eq!(redis::cmd("PING").query::<String>(&mut c).unwrap(), "PONG");
}

#[test]
fn sigterm_exits_zero_after_a_clean_shutdown_and_restart_sees_data() {
    let (_d, mut n) = node();
    write_keys(&n, "t", 200);
    assert_eq!(n.terminate(), Some(0), "{}", n.log_text());
    assert!(
        n.log_text().contains("shut down cleanly"),
        "{}",
        n.log_text()
    );
    n.spawn();
    assert_keys(&n, "t", 200);
    // The lock was released: the restarted node holds it now.
    assert_eq!(n.terminate(), Some(0));
}

#[test]
fn shutdown_command_exits_zero_and_restart_sees_data() {
    let (_d, mut n) = node();
    write_keys(&n, "s", 200);
    let out = redis_cli(n.port, &["SHUTDOWN"]);
    assert!(!out.contains("ERR"), "SHUTDOWN answered: {out}");
    assert_eq!(n.wait_exit(Duration::from_secs(30)), Some(0));
    assert_eq!(n.log_text().matches("shut down cleanly").count(), 1);
    n.spawn();
    assert_keys(&n, "s", 200);
    // Again through the redis crate: the connection just closes.
    write_keys(&n, "r", 50);
    let mut c = n.client();
    let _ = redis::cmd("SHUTDOWN").query::<redis::Value>(&mut c);
    assert_eq!(n.wait_exit(Duration::from_secs(30)), Some(0));
    n.spawn();
    assert_keys(&n, "s", 200);
    assert_keys(&n, "r", 50);
}

const PIPELINED: usize = 50_000;

/// Writes `PIPELINED` SETs on one socket without waiting; a reader thread
/// counts replies. Returns the reply lines and the reader's progress.
fn start_pipeline(n: &NodeProc) -> (std::thread::JoinHandle<Vec<String>>, Arc<AtomicUsize>) {
    let s = TcpStream::connect(n.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || {
        for chunk in (0..PIPELINED).collect::<Vec<_>>().chunks(1000) {
            let mut buf = Vec::new();
            for i in chunk {
                let (k, v) = (format!("p{i}"), format!("v{i}"));
                write!(
                    buf,
                    "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                    k.len(),
                    v.len()
                )
                .unwrap();
            }
            if w.write_all(&buf).is_err() {
                return; // the node closed the connection while stopping
            }
        }
    });
    let progress = Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            lines.push(line);
            p.store(lines.len(), Ordering::Relaxed);
        }
        lines
    });
    (reader, progress)
}

#[test]
fn sigterm_during_a_write_pipeline_keeps_every_acknowledged_write() {
    let (_d, mut n) = node();
    let (reader, progress) = start_pipeline(&n);
    wait_until(Duration::from_secs(30), "the first replies", || {
        progress.load(Ordering::Relaxed) >= 500
    });
    assert_eq!(n.terminate(), Some(0), "{}", n.log_text());
    let replies = reader.join().unwrap();
    let acked = replies.iter().take_while(|l| *l == "+OK").count();
    println!(
        "{} replies, {acked} +OK before the first other",
        replies.len()
    );
    assert!(
        (500..PIPELINED).contains(&acked),
        "acked {acked}: not in flight"
    );
    for r in &replies[acked..] {
        assert!(r.starts_with("-ERR server is shutting down"), "reply {r:?}");
    }
    n.spawn();
    let mut c = n.client();
    let mut pipe = redis::pipe();
    for i in 0..acked {
        pipe.get(format!("p{i}"));
    }
    let got: Vec<Option<String>> = pipe.query(&mut c).unwrap();
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v.as_deref(), Some(format!("v{i}").as_str()), "p{i}");
    }
}
