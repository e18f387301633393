//! Process life of a node: data-directory lock, engine start, the role
//! threads (session cores, checkpointer, metrics), signals and clean
//! shutdown.
//!
//! Thread layout (DESIGN.md section 1), pinned from the config's core map:
//! - `session-N`: one compio (io_uring) runtime each, its own
//!   `SO_REUSEPORT` listener on the client port, one task per connection;
//! - `wal-flusher`: group commit (started by [`crate::wal::Wal`]);
//! - `checkpointer`: periodic and WAL-volume triggered checkpoints;
//! - `metrics`: the HTTP exporter; `signals`: SIGTERM/SIGINT.
//!
//! Shutdown (SIGTERM, SIGINT or the SHUTDOWN command): new commands are
//! refused, in-flight commands finish (bounded wait), the engine
//! checkpoints and marks the control file clean, the process exits 0.
//!
//! A panic on any thread stops the whole process ([`abort_on_panic`]):
//! crash-only, as PostgreSQL's postmaster restarts every backend after one
//! crashes. A node with one dead role thread would look alive while it is
//! not (a standby whose receiver died serves ever older reads; a primary
//! whose sender died holds its synchronous commits forever), and a panic
//! may have left shared state half-changed. Nothing acknowledged is lost:
//! the restart recovers from the WAL.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::config::{Config, SyncLevel};
use crate::engine::control_file::Role;
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::metrics::Metrics;
use crate::replication::context::ReplContext;
use crate::replication::sync_commit::SyncRule;
use crate::replication::sync_rule_file::{self, OriginKind, RuleOrigin};
use crate::replication::sync_wait::SyncRep;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {dir} is in use by another tandem process{holder}")]
    DirLocked { dir: String, holder: String },
    #[error("cannot use data directory {dir}: {source}")]
    Dir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("data directory {dir} holds an interrupted build: it needs a build (tandem build --from HOST:PORT --data-dir {dir})")]
    NeedsBuild { dir: String },
    #[error("data directory {dir}: timeline history: {reason}")]
    History { dir: String, reason: String },
    #[error("standby data directory {dir} has no readable upstream file: {source}")]
    NoUpstream { dir: String, source: std::io::Error },
    #[error("synchronous-commit rule: {0}")]
    SyncRule(#[from] crate::replication::sync_rule_file::RuleFileError),
    #[error("cannot start thread {name}: {source}")]
    Thread {
        name: String,
        source: std::io::Error,
    },
}

/// Why the node is stopping.
#[derive(Clone, Copy, Debug)]
pub enum StopReason {
    Signal(i32),
    ShutdownCommand,
}

/// State shared by all session cores.
pub struct Node {
    pub config: Config,
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    pub repl: Arc<ReplContext>,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
    pub connections: AtomicUsize,
    pub started: Instant,
    stop_tx: Sender<StopReason>,
}

impl Node {
    /// The node's `synchronous_commit` (the rule in force, see
    /// `replication::sync_wait`); a connection may override it.
    pub fn synchronous_commit(&self) -> SyncLevel {
        self.repl.sync.level()
    }

    pub fn is_standby(&self) -> bool {
        self.engine.role() == Role::Standby
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn request_stop(&self, reason: StopReason) {
        let _ = self.stop_tx.try_send(reason);
    }

    /// Marks a command batch as running; shutdown waits for the guard.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

pub struct InFlight(Arc<Node>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes an exclusive lock on `<dir>/lock` (flock), held while the
/// process lives; writes our pid into it for the next one's message.
fn lock_data_dir(dir: &Path) -> Result<File, NodeError> {
    let d = dir.display().to_string();
    std::fs::create_dir_all(dir).map_err(|source| NodeError::Dir {
        dir: d.clone(),
        source,
    })?;
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| NodeError::Dir {
            dir: d.clone(),
            source,
        })?;
    if !crate::io::try_lock_exclusive(file.as_raw_fd()) {
        let holder = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map(|pid| format!(" (pid {pid})"))
            .unwrap_or_default();
        return Err(NodeError::DirLocked { dir: d, holder });
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

fn spawn(
    name: String,
    core: Option<usize>,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), NodeError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
            f()
        })
        .map(|_| ())
        .map_err(|source| NodeError::Thread { name, source })
}

/// Makes a panic on any thread of this process log its thread and place,
/// then abort (see the module doc). Called once by [`run`].
fn abort_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(thread = name, at = %place, "a thread panicked (a bug): stopping the node; a restart recovers from the WAL");
        default_hook(info);
        std::process::abort();
    }));
}

/// Runs a node until it is told to stop; returns after a clean shutdown.
pub fn run(config: Config) -> Result<(), NodeError> {
    abort_on_panic();
    crate::failpoints::setup_from_env();
    let _lock = lock_data_dir(&config.data_dir)?;
    if config
        .data_dir
        .join(crate::replication::build::MARKER)
        .exists()
    {
        return Err(NodeError::NeedsBuild {
            dir: config.data_dir.display().to_string(),
        });
    }
    tracing::info!(core_map = %config.core_map, "core map");
    let engine = Engine::open(&EngineConfig {
        data_dir: config.data_dir.clone(),
        buffer_pool_pages: (config.buffer_pool_bytes / crate::page::PAGE_BYTES as u64) as usize,
        wal_segment_bytes: config.wal_segment_bytes,
        wal_segments_ahead: config.wal_segments_ahead,
        wal_flush_poll: std::time::Duration::from_micros(config.wal_flush_poll_us),
        wal_gather: std::time::Duration::from_micros(config.wal_gather_us),
        data_extend_pages: config.data_extend_pages,
        flusher_core: Some(config.core_map.wal_flusher),
        redo_workers: config.recovery_redo_workers,
        redo_cores: (0..config.recovery_redo_workers)
            .filter_map(|i| config.core_map.redo_worker(i))
            .collect(),
    })?;
    let (stop_tx, stop_rx) = bounded(4);
    let (rule, origin) = sync_rule_at_start(&config)?;
    let sync = Arc::new(SyncRep::new(rule, origin, Some(config.data_dir.clone())));
    let history =
        crate::replication::timeline::load(&config.data_dir.join("wal"), engine.timeline())
            .map_err(|e| NodeError::History {
                dir: config.data_dir.display().to_string(),
                reason: e.to_string(),
            })?;
    let mut repl = ReplContext::new(
        engine.clone(),
        config
            .cluster_secret
            .clone()
            .unwrap_or_default()
            .into_bytes(),
        config.name.clone(),
        config.listen.to_string(),
        config.data_dir.join("wal"),
        sync,
        config.max_wal_retention,
    );
    *repl.history.get_mut() = history;
    repl.repl_addr = config.repl_listen.to_string();
    repl.peers = config.peers.clone();
    repl.throttle = crate::replication::rto::Throttle::new(config.recovery_time_target);
    repl.wal_sender_timeout = (config.wal_sender_timeout_ms > 0)
        .then(|| Duration::from_millis(config.wal_sender_timeout_ms));
    let repl = Arc::new(repl);
    let node = Arc::new(Node {
        repl: repl.clone(),
        config,
        engine: engine.clone(),
        metrics: Arc::new(Metrics::new()),
        shutting_down: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
        started: Instant::now(),
        stop_tx,
    });
    if let Some(addr) = node.config.metrics_listen {
        let bound = crate::metrics::serve(addr, node.metrics.clone(), engine.clone(), repl.clone())
            .map_err(|source| NodeError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        tracing::info!(%bound, "metrics listening");
    }
    let repl_bound = crate::replication::sender::start(
        repl.clone(),
        node.config.repl_listen,
        Some(node.config.core_map.wal_sender),
    )
    .map_err(|source| NodeError::Listen {
        addr: node.config.repl_listen.to_string(),
        source,
    })?;
    tracing::info!(%repl_bound, "replication port listening");
    crate::replication::receiver::start(repl.clone(), Some(node.config.core_map.wal_receiver))
        .map_err(|source| NodeError::Thread {
            name: "wal-receiver".into(),
            source,
        })?;
    if node.is_standby() {
        let path = node
            .config
            .data_dir
            .join(crate::replication::build::UPSTREAM_FILE);
        let upstream = std::fs::read_to_string(&path)
            .map_err(|source| NodeError::NoUpstream {
                dir: node.config.data_dir.display().to_string(),
                source,
            })?
            .trim()
            .to_string();
        repl.receiver.follow(upstream.clone());
        tracing::info!(%upstream, "starting as a standby");
    } else if repl.peers.is_empty() || engine.created() {
        if let Err(e) = crate::replication::roles::begin_timeline_after_crash(&repl) {
            // Reads are served; writes wait for the timeline (the
            // checkpointer retries every second).
            tracing::error!(error = %e, "cannot start the post-crash timeline yet; writes are refused until it is");
            engine.set_write_block(Some(crate::engine::WriteBlock::NoTimelineYet));
        }
    } else if !repl.peers.is_empty() && !engine.created() {
        // A restarted primary that knows peers must not take writes until
        // one confirms no newer timeline exists (DESIGN.md section 4).
        engine.set_write_block(Some(crate::engine::WriteBlock::Pending));
        tracing::warn!(peers = ?repl.peers, "starting pending (read-only) until a peer confirms this node is still the primary");
        crate::replication::pending::start(repl.clone()).map_err(|source| NodeError::Thread {
            name: "peer-probe".into(),
            source,
        })?;
    }
    crate::server::listener::start(&node)?;
    let (ckpt_stop_tx, ckpt_stop_rx) = bounded::<()>(1);
    start_checkpointer(&node, ckpt_stop_rx)?;
    start_signal_thread(&node)?;
    tracing::info!(
        listen = %node.config.listen, data_dir = %node.config.data_dir.display(),
        system_id = %engine.system_id(), "ready to accept connections"
    );
    let reason = stop_rx.recv().unwrap_or(StopReason::ShutdownCommand);
    shutdown(&node, reason, &ckpt_stop_tx, &stop_rx)
}

/// The synchronous-commit rule a node starts with: the one kept in
/// `sync_rule.toml` (set at run time here or carried from a primary,
/// see `replication::sync_rule_file`), else the config file's.
fn sync_rule_at_start(config: &Config) -> Result<(SyncRule, RuleOrigin), NodeError> {
    let configured = SyncRule {
        level: config.synchronous_commit,
        names: config.synchronous_standby_names.clone(),
        most_available_sync: config.most_available_sync,
        timeout_ms: config.synchronous_commit_timeout_ms,
    };
    match sync_rule_file::load(&config.data_dir).map_err(NodeError::SyncRule)? {
        None => Ok((
            configured,
            RuleOrigin {
                kind: OriginKind::ConfigFile,
                node: config.name.clone(),
                at_ms: 0,
            },
        )),
        Some((kept, origin)) => {
            if kept != configured {
                tracing::warn!(
                    kept = ?kept, configured = ?configured, %origin,
                    "the synchronous-commit rule set at run time (sync_rule.toml) overrides the config file's; CONFIG SET on the primary changes it"
                );
            } else {
                tracing::info!(%origin, "synchronous-commit rule from sync_rule.toml");
            }
            Ok((kept, origin))
        }
    }
}

fn shutdown(
    node: &Arc<Node>,
    reason: StopReason,
    ckpt_stop: &Sender<()>,
    _stop_rx: &Receiver<StopReason>,
) -> Result<(), NodeError> {
    tracing::info!(?reason, "shutting down: finishing in-flight commands");
    node.shutting_down.store(true, Ordering::Release);
    let _ = ckpt_stop.try_send(());
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = node.engine.shutdown()?;
    tracing::info!(wal_end = %end, "shut down cleanly");
    Ok(())
}

fn start_checkpointer(node: &Arc<Node>, stop: Receiver<()>) -> Result<(), NodeError> {
    let engine = node.engine.clone();
    let repl = node.repl.clone();
    let interval = Duration::from_secs(node.config.checkpoint_interval_secs);
    let wal_bytes = node.config.checkpoint_wal_bytes;
    spawn(
        "checkpointer".into(),
        Some(node.config.core_map.background),
        move || {
            let mut last = Instant::now();
            // Polls WAL volume once a second; the interval is the upper bound.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                stop.recv_timeout(Duration::from_secs(1))
            {
                if engine.write_block() == Some(crate::engine::WriteBlock::NoTimelineYet) {
                    match crate::replication::roles::begin_timeline_after_crash(&repl) {
                        Ok(()) => {
                            engine.set_write_block(None);
                            tracing::info!("post-crash timeline started: taking writes");
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "post-crash timeline still not started")
                        }
                    }
                }
                let behind = engine.wal().inserted().bytes_since(engine.redo_lsn());
                if last.elapsed() < interval && behind < wal_bytes {
                    continue;
                }
                if let Err(e) = engine.checkpoint_keeping(repl.retention_floor()) {
                    tracing::error!(error = %e, "checkpoint failed");
                }
                last = Instant::now();
            }
        },
    )
}

fn start_signal_thread(node: &Arc<Node>) -> Result<(), NodeError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|source| {
        NodeError::Thread {
            name: "signals".into(),
            source,
        }
    })?;
    let node = node.clone();
    spawn("signals".into(), None, move || {
        if let Some(sig) = signals.forever().next() {
            node.request_stop(StopReason::Signal(sig));
        }
    })
}
