//! tandem-bench against a real redis-server (and one real tandem node).
//!
//! Goal: the load tool's contract holds end to end: `init` + `check`, every
//! built-in mix runs without failures, `check` passes after a TPC-B run and fails
//! after a corrupted balance, `--plot` writes an SVG, an unreachable server gives
//! a clear error, a server restart during `run --hosts` shows up as a
//! connection-error event and a dip in the per-second series, and a node frozen
//! for 300 ms (SIGSTOP, SIGCONT) shows up as exactly one pause of about that
//! length in the report (`--pause-threshold-ms`), drawn on the plot with the
//! marks of `--events-file`.
//!
//! Method: each test starts its own `redis-server` (no persistence) on a free
//! loopback port in a temporary directory, owned by a guard that kills it on
//! drop, also when the test fails. Readiness is awaited by polling PING with a
//! bound, never by a fixed sleep. The tool runs as a child process
//! (`CARGO_BIN_EXE_tandem-bench`); its `--json` output is parsed with serde_json.
//! Needs `redis-server` on PATH (Debian: `apt-get install redis-server`). The
//! pause test starts a `tandem node` through `tests/common` instead.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_tandem-bench");
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A redis-server child process; killed and reaped on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(Vec::new())
    }

    fn start_replica_of(primary: &Redis) -> Redis {
        let args = ["--replicaof", "127.0.0.1", &primary.arg_port()];
        Redis::start_with(args.iter().map(|a| a.to_string()).collect())
    }

    fn start_with(extra_args: Vec<String>) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let mut redis = Redis {
            child: None,
            port,
            dir,
            extra_args,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if command(self.port, &["PING"]).is_some_and(|r| r.starts_with("+PONG")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn arg_port(&self) -> String {
        self.port.to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one inline command and returns the raw reply text (enough for
/// status, integer and short bulk replies); `None` if the server is not there.
fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(req.as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
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

fn init(redis: &Redis) {
    let out = bench(&["init", "-p", &redis.arg_port(), "-s", "1"]);
    assert!(out.status.success(), "{}", text(&out));
}

fn check(redis: &Redis) -> Output {
    bench(&["check", "-p", &redis.arg_port()])
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs one mix for 2 s and returns its JSON report after the basic assertions.
fn run_mix(redis: &Redis, mix: &str, extra: &[&str]) -> Value {
    let json = redis.dir.path().join(format!("{mix}.json"));
    let port = redis.arg_port();
    let mut args = vec![
        "run", "-p", &port, "-c", "2", "-j", "1", "-T", "2", "--mix", mix,
    ];
    let json_arg = json.to_str().unwrap();
    args.extend(["--json", json_arg]);
    args.extend(extra);
    let out = bench(&args);
    assert!(out.status.success(), "{}", text(&out));
    let report = read_json(&json);
    assert!(report["transactions"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    assert!(!report["series"].as_array().unwrap().is_empty());
    report
}

#[test]
fn init_then_check_passes() {
    let redis = Redis::start();
    init(&redis);
    let out = check(&redis);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("check: pass"));
    let out = bench(&["init", "-p", &redis.arg_port(), "--drop"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        command(redis.port, &["EXISTS", "account:1"]).as_deref(),
        Some(":0\r\n")
    );
}

#[test]
fn tpcb_run_keeps_check_and_corruption_fails_it() {
    let redis = Redis::start();
    init(&redis);
    let svg = redis.dir.path().join("run.svg");
    let svg_arg = svg.to_str().unwrap();
    let report = run_mix(&redis, "tpcb", &["--plot", svg_arg, "--mark", "1s:midway"]);
    assert_eq!(report["transaction_type"], "tpcb");

    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"), "not an SVG");
    assert!(plot.contains("<polyline"), "no data line in the plot");
    assert!(plot.contains("midway"), "the --mark is not drawn");
    assert!(plot.contains("p99 latency"), "no latency panel");

    let out = check(&redis);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("check: pass"));

    let reply = command(redis.port, &["SET", "account:1", "123456789"]);
    assert_eq!(reply.as_deref(), Some("+OK\r\n"));
    let out = check(&redis);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("check: FAIL"));
}

#[test]
fn simple_update_runs() {
    let redis = Redis::start();
    init(&redis);
    run_mix(&redis, "simple-update", &[]);
}

#[test]
fn select_only_runs_pipelined() {
    let redis = Redis::start();
    init(&redis);
    let report = run_mix(&redis, "select-only", &["--pipeline", "4"]);
    assert_eq!(report["pipeline"], 4);
}

#[test]
fn set_get_runs_rate_limited() {
    let redis = Redis::start();
    // No init: set-get needs no data set; the scale comes from -s.
    let report = run_mix(&redis, "set-get", &["-s", "1", "-R", "500"]);
    let tx = report["transactions"].as_u64().unwrap();
    // 500 tps for 2 s, Poisson arrivals: far from both 0 and unthrottled.
    assert!(
        (500..=1500).contains(&tx),
        "rate limit not followed: {tx} transactions"
    );
}

#[test]
fn custom_script_runs_fixed_count() {
    let redis = Redis::start();
    let script = redis.dir.path().join("custom.txt");
    let body = "-- custom\n\\set k random(1, 10 * :scale)\n\\set d random(-3, 3)\n\
                MULTI\nINCRBY custom::k :d\nSET last::client_id \"k=:k d=:d\"\nEXEC\n";
    std::fs::write(&script, body).unwrap();
    let json = redis.dir.path().join("custom.json");
    let port = redis.arg_port();
    let out = bench(&[
        "run",
        "-p",
        &port,
        "-c",
        "2",
        "-t",
        "100",
        "-s",
        "2",
        "-f",
        script.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report = read_json(&json);
    assert_eq!(report["transactions"].as_u64(), Some(200), "{report}");
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    let last = command(redis.port, &["GET", "last:1"]).unwrap();
    assert!(last.contains("k=") && last.contains(" d="), "{last}");
}

#[test]
fn closed_port_fails_with_clear_message() {
    let port = common::free_port().to_string();
    let out = bench(&["run", "-p", &port, "-T", "1", "-s", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect") && stderr.contains(&port),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("panicked"), "{}", text(&out));
}

#[test]
fn bad_arguments_are_rejected() {
    for args in [
        &["run", "-c", "0"][..],
        &["run", "-c", "2", "-j", "3"],
        &["run", "--mark", "soon"],
        &["run", "--hosts", "nohost"],
        &["run", "--pause-threshold-ms", "0"],
        &["run", "--reconnect-backoff-max-ms", "0"],
        &["run", "--mix", "nope"],
        &["run", "-f", "/nonexistent/script.txt", "-s", "1"],
        &["init", "-s", "0"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.is_empty() && !stderr.contains("panicked"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

#[test]
fn restart_during_run_shows_as_gap_and_event() {
    let mut redis = Redis::start();
    let json = redis.dir.path().join("restart.json");
    let hosts = format!("127.0.0.1:{}", redis.port);
    let child = Command::new(BENCH)
        .args([
            "run", "--hosts", &hosts, "-c", "2", "-j", "1", "-T", "5", "--mix", "set-get",
        ])
        .args(["-s", "1", "--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until the run is under way: the server has counted writes.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let info = command(redis.port, &["DBSIZE"]).unwrap_or_default();
        let keys: u64 = info.trim_start_matches(':').trim().parse().unwrap_or(0);
        if keys > 100 {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not start writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Timing, not synchronisation: let a full second of load pass, then keep the
    // server down long enough to empty at least one second of the series.
    std::thread::sleep(Duration::from_millis(1200));
    redis.kill();
    std::thread::sleep(Duration::from_millis(1200));
    redis.spawn();

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = read_json(&json);
    let events = report["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "connection_error"),
        "no connection error event: {report}"
    );
    let tps: Vec<f64> = report["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tps"].as_f64().unwrap())
        .collect();
    let best = tps.iter().copied().fold(0.0, f64::max);
    assert!(best > 0.0, "{report}");
    assert!(
        tps.iter().any(|t| *t < best / 2.0),
        "no second with clearly lower throughput: {tps:?}"
    );
    // Transactions caught by the restart were retried, and their latency counts
    // from their scheduled start, so the outage is not hidden.
    assert!(report["retried"].as_u64().unwrap() > 0, "{report}");
    let max_ms = report["latency_max_ms"].as_f64().unwrap();
    assert!(max_ms > 500.0, "latency max {max_ms} ms hides the outage");
    // Load came back after the restart.
    assert!(
        tps.last().is_some_and(|t| *t > 0.0),
        "no load after the restart: {tps:?}"
    );
    assert!(report["transactions"].as_u64().unwrap() > 0);
}

#[test]
fn switchover_follows_the_new_primary() {
    let a = Redis::start();
    let b = Redis::start_replica_of(&a);
    let deadline = Instant::now() + READY_TIMEOUT;
    let in_sync = |r: String| r.contains("master_link_status:up");
    while !command(b.port, &["INFO", "replication"]).is_some_and(in_sync) {
        assert!(Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(20));
    }
    let hosts = format!("127.0.0.1:{},127.0.0.1:{}", a.port, b.port);
    let json = a.dir.path().join("switchover.json");
    let child = Command::new(BENCH)
        .args([
            "run", "--hosts", &hosts, "-c", "2", "-j", "1", "-T", "3", "--mix", "set-get",
        ])
        .args(["-s", "1", "--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the replica has received writes of the run, then swap roles:
    // clients on A get READONLY and must find B through ROLE.
    while command(b.port, &["DBSIZE"]).is_none_or(|r| r.trim_start_matches(':').trim() == "0") {
        assert!(Instant::now() < deadline, "no writes reached the replica");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        command(b.port, &["REPLICAOF", "NO", "ONE"]).as_deref(),
        Some("+OK\r\n")
    );
    let reply = command(a.port, &["REPLICAOF", "127.0.0.1", &b.arg_port()]);
    assert_eq!(reply.as_deref(), Some("+OK\r\n"));

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = read_json(&json);
    let changes: Vec<&Value> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "primary_change")
        .collect();
    // One move, reported once: on the first ack at the new primary, not on
    // every connect attempt.
    assert_eq!(changes.len(), 1, "primary changes: {changes:?}");
    let change = changes[0];
    assert!(
        change["detail"].as_str().unwrap().ends_with(&b.arg_port()),
        "{change}"
    );
    assert!(report["retried"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
}

/// Milliseconds since the Unix epoch, as the harness of a failover benchmark
/// writes them into `--events-file`.
fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn frozen_node_shows_as_one_pause() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::NodeProc::start(&dir.path().join("node"), &[]);
    let json = dir.path().join("pause.json");
    let svg = dir.path().join("pause.svg");
    let events = dir.path().join("events.txt");
    // The threshold is far above a slow fsync on a busy machine and far below
    // the freeze, so the freeze is the only pause.
    let child = Command::new(BENCH)
        .args(["run", "-p", &node.port.to_string(), "-c", "4", "-j", "2"])
        .args(["-T", "3", "--mix", "set-get", "-s", "1"])
        .args(["--pause-threshold-ms", "200"])
        .args([
            "--json",
            json.to_str().unwrap(),
            "--plot",
            svg.to_str().unwrap(),
        ])
        .args(["--events-file", events.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until the run is under way: the node has taken writes.
    let deadline = Instant::now() + READY_TIMEOUT;
    let keys = || {
        let reply = command(node.port, &["DBSIZE"]).unwrap_or_default();
        reply
            .trim_start_matches(':')
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    while keys() < 100 {
        assert!(Instant::now() < deadline, "the run did not start writing");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The sleep is the fault itself: the node is frozen for 300 ms.
    std::thread::sleep(Duration::from_millis(500));
    let frozen_ms = unix_ms();
    node.signal("STOP");
    std::thread::sleep(Duration::from_millis(300));
    node.signal("CONT");
    std::fs::write(&events, format!("{frozen_ms} freeze\n")).unwrap();

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = read_json(&json);
    assert_eq!(report["failed"].as_u64(), Some(0), "{report}");
    let pauses = report["pauses"].as_array().unwrap();
    assert_eq!(pauses.len(), 1, "expected one pause: {report}");
    let pause = &pauses[0];
    let ms = pause["ms"].as_f64().unwrap();
    assert!((250.0..2000.0).contains(&ms), "pause of {ms} ms: {pause}");
    assert_eq!(report["max_pause_ms"].as_f64(), Some(ms));
    assert_eq!(pause["from_host"], pause["to_host"], "{pause}");
    assert_eq!(pause["from_host"].as_str(), Some(node.addr().as_str()));
    // The wall-clock edges bracket the moment of the freeze.
    let start = pause["start_unix_ms"].as_f64().unwrap();
    let end = pause["end_unix_ms"].as_f64().unwrap();
    let frozen = frozen_ms as f64;
    assert!(
        start <= frozen + 5.0 && end >= frozen + 250.0,
        "{pause} vs {frozen_ms}"
    );
    assert!((end - start - ms).abs() < 0.01, "{pause}");

    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = format!("({} -> {}) at +", node.addr(), node.addr());
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("pause: ") && l.contains(&line)),
        "{}",
        text(&out)
    );
    let mark = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["detail"] == "freeze");
    let mark = mark.unwrap_or_else(|| panic!("no freeze mark: {report}"));
    let at_s = pause["at_s"].as_f64().unwrap();
    assert!(
        (mark["t_s"].as_f64().unwrap() - at_s).abs() < 0.1,
        "{mark} vs {pause}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.contains("freeze"), "the events-file mark is not drawn");
    assert!(
        plot.lines()
            .any(|l| l.starts_with("pause ") && l.ends_with(" ms")),
        "the pause is not labelled on the plot"
    );
    assert!(plot.contains("fill=\"#DC2828\""), "the pause is not shaded");
}
