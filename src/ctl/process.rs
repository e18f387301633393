//! Node processes on this machine: `tandemctl start`, `stop` and `build`.
//!
//! `start` runs `tandem node` detached (its own process group, stdin from
//! /dev/null, stdout and stderr appended to `DATA_DIR/node.log`) and waits
//! until it answers PING; `stop` ends one cleanly (SHUTDOWN) or at once
//! (SIGKILL, like `pg_ctl stop -m immediate`); `build` runs `tandem build`.
//!
//! Invariants:
//! - the only file `start` writes into a data directory is `node.log`; the
//!   node owns the rest, `DATA_DIR/lock` (flock, holding its pid) included;
//! - a signal goes only to a positive pid on this machine whose program is
//!   `tandem` (a stale pid is never signalled blindly);
//! - success means done: `start` returns once the node answers, `stop`
//!   once it no longer accepts connections and (if local) its process is
//!   gone; every wait is bounded.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::client::{ping, Conn};
use super::CtlError;
use crate::config::Config;

/// The node's log in its data directory.
pub const LOG_FILE: &str = "node.log";
/// The node's lock file in its data directory (flock; holds its pid).
pub const LOCK_FILE: &str = "lock";
/// The client address a node listens on without `--listen` or `listen`.
pub const LISTEN_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 6380);
/// Lines of `node.log` shown when a node fails to start.
pub const LOG_TAIL_LINES: usize = 20;
/// Poll interval of every wait here: short against a start of ~100 ms.
const POLL: Duration = Duration::from_millis(50);

/// What `tandemctl start` passes to `tandem node`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct StartOptions {
    /// The node's data directory (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// TOML config file; the flags below override its keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Client address (default: `listen` of the config, else 127.0.0.1:6380).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    #[arg(long)]
    pub repl_listen: Option<SocketAddr>,
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    #[arg(long)]
    pub name: Option<String>,
    /// Replication addresses of the other nodes (HOST:PORT,HOST:PORT).
    #[arg(long, value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// How long to wait for the node to answer PING.
    #[arg(long, default_value_t = 30)]
    pub wait_secs: u64,
}

/// A node `start` launched and saw answering.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
    /// The address it answers on (HOST:PORT).
    pub client: String,
    /// The process; dropping it leaves the node running.
    pub child: Child,
}

/// How `stop` ends a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StopMode {
    /// SHUTDOWN: in-flight commits finish, checkpoint, exit 0.
    #[default]
    Fast,
    /// SIGKILL: the next start runs recovery.
    Immediate,
}

/// What `tandemctl build` passes to `tandem build`.
#[derive(Clone, Debug, clap::Args)]
pub struct BuildOptions {
    /// The source's replication address (its --repl-listen).
    #[arg(long)]
    pub from: String,
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "full")]
    pub mode: String,
    /// This standby's name (as the primary lists it).
    #[arg(long)]
    pub name: Option<String>,
    /// TOML config to read cluster_secret (and name) from.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub cluster_secret: Option<String>,
    /// Bytes per second; 0 = unlimited.
    #[arg(long)]
    pub max_rate: Option<u64>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// The `tandem` binary: next to the running executable (as cargo and
/// packages install them), else whatever PATH finds.
pub fn tandem_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("tandem")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("tandem"))
}

/// The address to reach a node listening on `listen`: an unspecified
/// address (0.0.0.0, ::) is reached on loopback.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The client address the node of `opts` will answer on.
pub fn client_addr(opts: &StartOptions) -> Result<SocketAddr, CtlError> {
    let from_file = match (&opts.listen, &opts.config) {
        (None, Some(path)) => Config::from_file(path)?.listen,
        _ => None,
    };
    Ok(reachable(
        opts.listen.or(from_file).unwrap_or(LISTEN_DEFAULT),
    ))
}

/// Whether a node process holds `data_dir`'s lock, and its pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirLock {
    Free,
    /// Held; the pid is `None` for the instant between the node's flock
    /// and its writing the pid.
    Held {
        pid: Option<u32>,
    },
}

/// Tests `data_dir`'s lock by trying to take it (and letting it go at
/// once). A node starting in that instant would find it taken and exit;
/// callers use this only to stop nodes or before starting one.
pub fn dir_lock(data_dir: &Path) -> Result<DirLock, CtlError> {
    let path = data_dir.join(LOCK_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirLock::Free),
        Err(source) => return Err(CtlError::File { path, source }),
    };
    if crate::io::try_lock_exclusive(file.as_raw_fd()) {
        return Ok(DirLock::Free);
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|source| CtlError::File { path, source })?;
    Ok(DirLock::Held {
        pid: text.trim().parse().ok().filter(|p| *p > 0),
    })
}

/// Whether `pid` is a live process: one of its threads has not finished
/// exiting. A zombie leader whose other threads still exit is alive (they
/// may hold its files, the data-directory lock among them); once only
/// zombies remain, every file is closed and it counts as gone.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return false; // that thread is gone
        };
        // "tid (comm) S ...": the state follows the last ')'; comm may hold any byte.
        let state = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 1..))
            .and_then(|rest| rest.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X") | None)
    })
}

/// Whether `pid` runs the `tandem` program (argv\[0\]'s file name).
pub fn is_tandem(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
        let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
        Path::new(&*String::from_utf8_lossy(argv0))
            .file_name()
            .is_some_and(|n| n == "tandem")
    })
}

/// Waits until `pid` is gone; false if it still lives at `deadline`.
pub fn wait_gone(pid: u32, deadline: Instant) -> bool {
    while pid_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// SIGKILLs the tandem process `pid` and waits (at most `wait`) until it
/// is gone. A process that is already gone is fine.
pub fn kill_tandem(pid: u32, wait: Duration) -> Result<(), CtlError> {
    if !pid_alive(pid) {
        return Ok(());
    }
    if !is_tandem(pid) {
        return Err(CtlError::NotTandem { pid });
    }
    match crate::io::signal_process(pid, libc::SIGKILL) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(source) => return Err(CtlError::Signal { pid, source }),
    }
    if wait_gone(pid, Instant::now() + wait) {
        Ok(())
    } else {
        Err(CtlError::StillRunning {
            pid,
            secs: wait.as_secs(),
        })
    }
}

/// Starts `tandem node` for `opts` and waits until it answers PING.
pub fn start(opts: &StartOptions) -> Result<Started, CtlError> {
    let client = client_addr(opts)?.to_string();
    if ping(&client, Duration::from_secs(1)) {
        return Err(CtlError::AlreadyAnswering { client });
    }
    if let DirLock::Held { pid } = dir_lock(&opts.data_dir)? {
        return Err(CtlError::DataDirInUse {
            dir: opts.data_dir.clone(),
            pid: pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        });
    }
    let dir_err = |source| CtlError::File {
        path: opts.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&opts.data_dir).map_err(dir_err)?;
    let log_path = opts.data_dir.join(LOG_FILE);
    let log_err = |source| CtlError::File {
        path: log_path.clone(),
        source,
    };
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(log_err)?;
    let log_start = log.seek(SeekFrom::End(0)).map_err(log_err)?;
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("node").arg("--data-dir").arg(&opts.data_dir);
    if let Some(c) = &opts.config {
        cmd.arg("--config").arg(c);
    }
    for (flag, addr) in [
        ("--listen", opts.listen),
        ("--repl-listen", opts.repl_listen),
        ("--metrics-listen", opts.metrics_listen),
    ] {
        if let Some(a) = addr {
            cmd.arg(flag).arg(a.to_string());
        }
    }
    if let Some(n) = &opts.name {
        cmd.arg("--name").arg(n);
    }
    if let Some(p) = &opts.peers {
        cmd.arg("--peers").arg(p.join(","));
    }
    let stdout = log.try_clone().map_err(log_err)?;
    let mut child = cmd
        // The log is a file: no colour escapes in it (tracing honours NO_COLOR).
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|source| CtlError::Spawn {
            program: tandem_bin().display().to_string(),
            source,
        })?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(opts.wait_secs);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CtlError::Exited {
                status,
                tail: log_tail(&log_path, log_start),
                log: log_path,
            });
        }
        if ping(&client, Duration::from_secs(1)) {
            return Ok(Started { pid, client, child });
        }
        if Instant::now() > deadline {
            return Err(CtlError::NotReady {
                client,
                secs: opts.wait_secs,
                pid,
                log: log_path,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// The last [`LOG_TAIL_LINES`] lines written to `path` after `offset`.
fn log_tail(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            // A log of one failed start is short; bound it anyway.
            let _ = f.take(1 << 20).read_to_string(&mut text);
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines.get(from..).unwrap_or_default().join("\n")
}

/// Whether `host`'s address is one of this machine's (loopback, or one a
/// socket can bind to).
pub fn host_is_local(host: &str) -> bool {
    host.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| a.ip().is_loopback() || TcpListener::bind((a.ip(), 0)).is_ok())
}

/// The `process_id` a node reports in `INFO server`.
fn node_pid(conn: &mut Conn) -> Result<u32, CtlError> {
    let info = conn.info(&["server"])?;
    info.get("server")
        .and_then(|s| s.get("process_id"))
        .and_then(|p| p.trim().parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| CtlError::NoPid {
            host: conn.host().to_string(),
        })
}

/// Stops the node at `host`; returns its pid when known. `Fast` sends
/// SHUTDOWN and waits until the port stops answering and (if the node is
/// on this machine) its process is gone; `Immediate` SIGKILLs the pid the
/// node reports and waits until it is gone.
pub fn stop(
    host: &str,
    password: Option<&str>,
    mode: StopMode,
    wait: Duration,
) -> Result<Option<u32>, CtlError> {
    let deadline = Instant::now() + wait;
    let mut conn = Conn::open(host, password)?;
    let local = host_is_local(host);
    match mode {
        StopMode::Immediate => {
            let pid = node_pid(&mut conn)?;
            if !local {
                return Err(CtlError::NotLocal {
                    host: host.to_string(),
                });
            }
            drop(conn);
            kill_tandem(pid, wait)?;
            Ok(Some(pid))
        }
        StopMode::Fast => {
            let pid = if local {
                node_pid(&mut conn).ok()
            } else {
                None
            };
            shutdown(conn)?;
            while TcpStream::connect(host).is_ok() {
                if Instant::now() > deadline {
                    return Err(CtlError::StillAccepting {
                        host: host.to_string(),
                        secs: wait.as_secs(),
                    });
                }
                std::thread::sleep(POLL);
            }
            if let Some(p) = pid {
                if !wait_gone(p, deadline) {
                    return Err(CtlError::StillRunning {
                        pid: p,
                        secs: wait.as_secs(),
                    });
                }
            }
            Ok(pid)
        }
    }
}

/// Sends SHUTDOWN on `conn`; the node closes the connection when it
/// stops, so any reply means it refused.
pub fn shutdown(mut conn: Conn) -> Result<(), CtlError> {
    conn.send(&["SHUTDOWN"])?;
    match conn.read_line() {
        Ok(Some(reply)) => Err(CtlError::StopRefused {
            host: conn.host().to_string(),
            reply,
        }),
        Ok(None) | Err(_) => Ok(()),
    }
}

/// Runs `tandem build` with `opts` (stdout and stderr inherited) and
/// returns its exit status.
pub fn build(opts: &BuildOptions) -> Result<ExitStatus, CtlError> {
    let mut cmd = Command::new(tandem_bin());
    cmd.arg("build")
        .arg("--from")
        .arg(&opts.from)
        .arg("--data-dir")
        .arg(&opts.data_dir)
        .arg("--mode")
        .arg(&opts.mode);
    if let Some(n) = &opts.name {
        cmd.arg("--name").arg(n);
    }
    if let Some(c) = &opts.config {
        cmd.arg("--config").arg(c);
    }
    if let Some(s) = &opts.cluster_secret {
        cmd.arg("--cluster-secret").arg(s);
    }
    if let Some(r) = opts.max_rate {
        cmd.arg("--max-rate").arg(r.to_string());
    }
    if opts.quiet {
        cmd.arg("--quiet");
    }
    cmd.status().map_err(|source| CtlError::Spawn {
        program: tandem_bin().display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:7000".parse().unwrap();
        assert_eq!(reachable(any).to_string(), "127.0.0.1:7000");
        let any6: SocketAddr = "[::]:7000".parse().unwrap();
        assert_eq!(reachable(any6).to_string(), "[::1]:7000");
        let ip: SocketAddr = "10.1.2.3:7000".parse().unwrap();
        assert_eq!(reachable(ip), ip);
    }

    #[test]
    fn client_addr_prefers_flag_then_config_then_default() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("n.toml");
        std::fs::write(&cfg, "listen = \"0.0.0.0:7100\"\n").unwrap();
        let mut o = StartOptions {
            data_dir: dir.path().join("d"),
            ..StartOptions::default()
        };
        assert_eq!(client_addr(&o).unwrap(), LISTEN_DEFAULT);
        o.config = Some(cfg);
        assert_eq!(client_addr(&o).unwrap().to_string(), "127.0.0.1:7100");
        o.listen = Some("127.0.0.1:7200".parse().unwrap());
        assert_eq!(client_addr(&o).unwrap().to_string(), "127.0.0.1:7200");
        o.listen = None;
        o.config = Some(dir.path().join("missing.toml"));
        assert!(client_addr(&o).is_err());
    }

    #[test]
    fn own_process_is_alive_and_not_tandem() {
        let me = std::process::id();
        assert!(pid_alive(me));
        assert!(!is_tandem(me));
        assert!(!pid_alive(u32::MAX));
        assert!(matches!(
            kill_tandem(me, Duration::ZERO),
            Err(CtlError::NotTandem { .. })
        ));
    }

    #[test]
    fn dir_lock_sees_a_holder_and_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dir_lock(dir.path()).unwrap(), DirLock::Free);
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, "4242").unwrap();
        assert_eq!(dir_lock(dir.path()).unwrap(), DirLock::Free);
        let held = File::open(&path).unwrap();
        assert!(crate::io::try_lock_exclusive(held.as_raw_fd()));
        assert_eq!(
            dir_lock(dir.path()).unwrap(),
            DirLock::Held { pid: Some(4242) }
        );
        drop(held);
        assert_eq!(dir_lock(dir.path()).unwrap(), DirLock::Free);
    }

    #[test]
    fn log_tail_shows_only_this_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let old: String = (0..5).map(|i| format!("old {i}\n")).collect();
        let new: String = (0..30).map(|i| format!("new {i}\n")).collect();
        std::fs::write(&path, format!("{old}{new}")).unwrap();
        let tail = log_tail(&path, old.len() as u64);
        assert!(!tail.contains("old"));
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert!(tail.ends_with("new 29"));
    }
}
