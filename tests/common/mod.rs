//! Test harness: start real `tandem node` processes on free loopback
//! ports in temporary directories, wait until they answer, and stop them
//! (also when a test fails: `Drop` kills the process).
#![allow(dead_code)]

pub mod cluster;
pub mod commit_probe;
pub mod proxy;
pub mod repl;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn tandem_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tandem"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (ip_local_port_range, 32768 and
    // up by default): a node restarted on the same port can then never find
    // it taken by some client connection's ephemeral source port.
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919) % 12_000;
    NEXT.compare_exchange(0, seed, Ordering::SeqCst, Ordering::SeqCst)
        .ok();
    for _ in 0..12_000 {
        let port = 20_000 + NEXT.fetch_add(1, Ordering::SeqCst) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

pub struct NodeProc {
    pub child: Option<Child>,
    pub port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub extra: Vec<String>,
    /// The replication port (`--repl-listen`), the same on every spawn.
    pub repl_port: u16,
    /// Extra environment variables for the process (test knobs).
    pub env: Vec<(String, String)>,
}

impl NodeProc {
    /// Starts a node on `data_dir` with extra flags, waits for PING.
    pub fn start(data_dir: &Path, extra: &[&str]) -> NodeProc {
        let mut n = NodeProc::new(data_dir, extra);
        n.spawn();
        n
    }

    /// A node on `data_dir` with its ports chosen, not started yet.
    pub fn new(data_dir: &Path, extra: &[&str]) -> NodeProc {
        NodeProc {
            child: None,
            port: free_port(),
            metrics_port: free_port(),
            data_dir: data_dir.to_path_buf(),
            log: data_dir.with_extension("log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            repl_port: free_port(),
            env: Vec::new(),
        }
    }

    /// (Re)starts the process on the same ports and directory.
    pub fn spawn(&mut self) {
        self.spawn_unready();
        self.wait_ready();
    }

    /// Starts the process without waiting for it to answer (to catch it
    /// in crash recovery, for instance).
    pub fn spawn_unready(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(tandem_bin())
            .arg("node")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--repl-listen")
            .arg(format!("127.0.0.1:{}", self.repl_port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tandem");
        self.child = Some(child);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn repl_addr(&self) -> String {
        format!("127.0.0.1:{}", self.repl_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// Sends `sig` (`STOP`, `CONT`, ...) to the running process.
    pub fn signal(&self, sig: &str) {
        unsafe_free_kill(self.pid(), sig);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Polls PING until the node answers (bounded: 30 s), or panics with
    /// the log if the process died.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "tandem exited with {status} during start:\n{}",
                        self.log_text()
                    );
                }
            }
            if let Ok(mut s) = TcpStream::connect(self.addr()) {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                if s.write_all(b"PING\r\n").is_ok() {
                    let mut line = String::new();
                    let _ = BufReader::new(&s).read_line(&mut line);
                    if line.starts_with("+PONG") || line.starts_with("-NOAUTH") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "tandem did not answer:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.as_ref()?.id();
        unsafe_free_kill(pid, "TERM");
        self.wait_exit(Duration::from_secs(30))
    }

    /// Waits for the process to exit by itself (e.g. after SHUTDOWN).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn scrape_metrics(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn unsafe_free_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Runs `redis-cli` against a node with the given arguments; returns
/// stdout followed by stderr.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// Writes `toml` to `<data_dir>.toml` and starts a node with `--config`
/// on it plus `extra` flags.
pub fn start_with_config(data_dir: &Path, toml: &str, extra: &[&str]) -> NodeProc {
    let cfg = data_dir.with_extension("toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut flags = vec!["--config", cfg.to_str().unwrap()];
    flags.extend_from_slice(extra);
    NodeProc::start(data_dir, &flags)
}

/// Runs `tandem verify-pages` on a stopped node's data directory; returns
/// the exit code and stdout followed by stderr.
pub fn verify_pages(data_dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(tandem_bin())
        .arg("verify-pages")
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run tandem verify-pages");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// A numeric `field:value` line of `INFO <section>`.
pub fn info_u64(c: &mut redis::Connection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("INFO {section} lacks {field}:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after
/// `within`.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl NodeProc {
    /// Sets failpoint `name` to `actions` at run time (`PUT /failpoints/NAME`
    /// on the metrics port; builds with the `failpoints` feature only).
    pub fn set_failpoint(&self, name: &str, actions: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        let req = format!(
            "PUT /failpoints/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{actions}",
            actions.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "failpoint {name}={actions}: {reply}"
        );
    }
}
