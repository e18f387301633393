//! Goal: `tandemctl cluster up|status|down`, `start` and `stop --mode
//! immediate` run a local cluster as README and DESIGN.md section 5 say:
//! `up` makes a primary and streaming standbys that replicate writes,
//! refuses a directory whose cluster runs, a standby killed and started
//! again from its config catches up, `down` leaves no process behind,
//! `up` on a stopped cluster starts it again with its data, and
//! a node that cannot start fails `start` with the tail of its log.
//! Method: the ctl binary run as a user would, on a temporary directory
//! with free loopback ports; the redis crate for data; polls with
//! deadlines, no fixed sleeps; a guard runs `cluster down --mode
//! immediate` if the test fails half-way.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{free_port, wait_until};
use serde_json::Value;
use tandem::ctl::process::pid_alive;

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs tandemctl, asserts success, returns stdout.
fn ctl_ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert!(
        out.status.success(),
        "tandemctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(args: &[&str]) -> Value {
    let text = ctl_ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Stops whatever the cluster in `dir` still runs, also on panic.
struct ClusterGuard(PathBuf);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let dir = self.0.to_str().unwrap();
        let _ = ctl(&["cluster", "down", "--dir", dir, "--mode", "immediate"]);
    }
}

/// `cluster status --json` shows one primary and `standbys` standbys
/// streaming from it.
fn all_streaming(dir: &str, standbys: usize) -> bool {
    let status = json(&["cluster", "status", "--dir", dir, "--json"]);
    let nodes = status["nodes"].as_array().unwrap();
    let role = |r: &str| nodes.iter().filter(|n| n["role"] == r).count();
    let streaming = nodes
        .iter()
        .filter(|n| n["role"] == "standby" && n["upstream_state"] == "streaming")
        .count();
    role("primary") == 1 && streaming == standbys
}

fn client(addr: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn get(addr: &str, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(&mut client(addr)).unwrap()
}

fn set(addr: &str, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(&mut client(addr))
        .unwrap();
}

fn field<'a>(node: &'a Value, key: &str) -> &'a str {
    node[key].as_str().unwrap()
}

#[test]
fn cluster_up_replicates_restarts_a_standby_and_goes_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_path = tmp.path().join("c");
    let dir = dir_path.to_str().unwrap();
    let _guard = ClusterGuard(dir_path.clone());
    let up = json(&["cluster", "up", "--dir", dir, "--standbys", "2", "--json"]);
    let nodes = up["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3);
    let mut pids: Vec<u32> = nodes
        .iter()
        .map(|n| n["pid"].as_u64().unwrap() as u32)
        .collect();
    assert!(pids.iter().all(|p| pid_alive(*p)));
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(field(n, "name"), format!("node{i}"));
        assert!(Path::new(field(n, "config")).is_file());
        assert!(Path::new(field(n, "data_dir")).join("node.log").is_file());
    }
    wait_until(
        Duration::from_secs(20),
        "1 primary, 2 streaming standbys",
        || all_streaming(dir, 2),
    );

    let again = ctl(&["cluster", "up", "--dir", dir, "--standbys", "2"]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("holds a running cluster"), "{err}");

    let primary = field(&nodes[0], "client");
    set(primary, "k1", "v1");
    for n in &nodes[1..] {
        wait_until(Duration::from_secs(10), "k1 on the standbys", || {
            get(field(n, "client"), "k1").as_deref() == Some("v1")
        });
    }

    let standby = &nodes[1];
    let out = ctl_ok(&[
        "stop",
        "--host",
        field(standby, "client"),
        "--mode",
        "immediate",
    ]);
    assert!(out.contains(&format!("killed pid {}", pids[1])), "{out}");
    assert!(!pid_alive(pids[1]));
    set(primary, "k2", "v2");

    let started = json(&[
        "start",
        "--data-dir",
        field(standby, "data_dir"),
        "--config",
        field(standby, "config"),
        "--json",
    ]);
    assert_eq!(started["client"], standby["client"]);
    pids.push(started["pid"].as_u64().unwrap() as u32);
    wait_until(Duration::from_secs(20), "node1 streaming again", || {
        all_streaming(dir, 2)
    });
    wait_until(
        Duration::from_secs(10),
        "k2 on the restarted standby",
        || get(field(standby, "client"), "k2").as_deref() == Some("v2"),
    );

    let out = ctl_ok(&["cluster", "down", "--dir", dir]);
    assert!(out.contains("all 3 nodes stopped"), "{out}");
    for pid in &pids {
        assert!(!pid_alive(*pid), "pid {pid} still runs after cluster down");
    }
    for n in &nodes {
        assert!(TcpStream::connect(field(n, "client")).is_err());
    }
    let out = ctl_ok(&["cluster", "down", "--dir", dir]);
    assert!(out.contains("node1: not running"), "{out}");

    // `up` on the stopped cluster starts the same nodes again: node0 is a
    // restarted primary with peers, pending until a standby confirms it.
    let again = json(&["cluster", "up", "--dir", dir, "--standbys", "2", "--json"]);
    assert_eq!(again["nodes"][1]["client"], nodes[1]["client"]);
    wait_until(
        Duration::from_secs(20),
        "the restarted cluster streaming",
        || all_streaming(dir, 2),
    );
    wait_until(
        Duration::from_secs(10),
        "the restarted primary taking writes",
        || {
            redis::cmd("SET")
                .arg("k3")
                .arg("v3")
                .query::<()>(&mut client(primary))
                .is_ok()
        },
    );
    assert_eq!(get(primary, "k1").as_deref(), Some("v1"));
    let out = ctl_ok(&["cluster", "down", "--dir", dir, "--mode", "immediate"]);
    assert!(out.contains("all 3 nodes stopped"), "{out}");
    for n in again["nodes"].as_array().unwrap() {
        let pid = n["pid"].as_u64().unwrap() as u32;
        assert!(!pid_alive(pid), "pid {pid} still runs after cluster down");
    }
}

#[test]
fn start_failure_shows_the_log_tail_and_exits_nonzero() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let repl = taken.local_addr().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let data_dir = tmp.path().join("d");
    let out = ctl(&[
        "start",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        &listen,
        "--repl-listen",
        &repl,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains(&format!("cannot listen on {repl}")), "{err}");
    assert!(!err.contains('\u{1b}'), "colour escapes in the log: {err}");

    let out = ctl(&["cluster", "status", "--dir", tmp.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster in"));
}
