//! Node configuration: TOML file keys in snake_case, command-line flags
//! override them (DESIGN.md section 5), and every limit in one place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::replication::sync_commit::{StandbyNames, SyncLevel};

/// Settings read from the config file; all optional, defaults below.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub repl_listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub name: Option<String>,
    pub requirepass: Option<String>,
    pub cluster_secret: Option<String>,
    pub synchronous_commit: Option<String>,
    pub synchronous_standby_names: Option<String>,
    pub most_available_sync: Option<bool>,
    pub synchronous_commit_timeout_ms: Option<u64>,
    pub max_wal_retention: Option<u64>,
    pub wal_sender_timeout_ms: Option<u64>,
    pub peers: Option<Vec<String>>,
    pub buffer_pool_bytes: Option<u64>,
    pub wal_segment_bytes: Option<u64>,
    pub wal_segments_ahead: Option<u32>,
    pub wal_flush_poll_us: Option<u64>,
    pub wal_gather_us: Option<u64>,
    pub session_poll_us: Option<u64>,
    pub checkpoint_interval_secs: Option<u64>,
    pub checkpoint_wal_bytes: Option<u64>,
    pub session_cores: Option<usize>,
    pub core_map: Option<CoreMapConfig>,
    pub connections_max: Option<usize>,
    pub request_bytes_max: Option<usize>,
    pub data_extend_pages: Option<u32>,
    pub recovery_redo_workers: Option<usize>,
    pub recovery_time_target: Option<u64>,
}

/// Which CPU each role is pinned to (`None`: the default map).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreMapConfig {
    pub sessions: Option<Vec<usize>>,
    pub wal_flusher: Option<usize>,
    pub wal_sender: Option<usize>,
    pub wal_receiver: Option<usize>,
    pub background: Option<usize>,
    pub redo_workers: Option<Vec<usize>>,
}

/// The resolved configuration a node runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub repl_listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub name: String,
    pub requirepass: Option<String>,
    pub cluster_secret: Option<String>,
    pub synchronous_commit: SyncLevel,
    pub synchronous_standby_names: StandbyNames,
    pub most_available_sync: bool,
    /// 0: commits wait for their standbys without a time limit.
    pub synchronous_commit_timeout_ms: u64,
    pub max_wal_retention: u64,
    /// A standby silent this long (no status, or no room to send) is
    /// dropped, so it stops counting for synchronous commit. 0: never.
    pub wal_sender_timeout_ms: u64,
    /// Replication addresses (HOST:PORT) of the other nodes of the cluster.
    /// A primary that knows peers starts pending (read-only) until one of
    /// them confirms that no newer timeline exists (DESIGN.md section 4).
    pub peers: Vec<String>,
    pub buffer_pool_bytes: u64,
    pub wal_segment_bytes: u64,
    pub wal_segments_ahead: u32,
    /// How long a primary's flusher polls for the write of a batch its WAL
    /// senders ship before it sleeps (`wal::flusher`, "Polling"). 0: never.
    pub wal_flush_poll_us: u64,
    /// How long a flusher that just finished a large batch waits for the
    /// next one to fill before it writes a small one (`wal::flusher`,
    /// "Gathering"). 0: never.
    pub wal_gather_us: u64,
    /// How long a session core polls its ring after its last task ran
    /// before it sleeps (`io::net_runtime`, "Polling before sleeping").
    /// 0: it sleeps at once.
    pub session_poll_us: u64,
    pub checkpoint_interval_secs: u64,
    pub checkpoint_wal_bytes: u64,
    pub core_map: CoreMap,
    pub connections_max: usize,
    pub request_bytes_max: usize,
    pub data_extend_pages: u32,
    /// Redo workers (`redo::pipeline`): pages are split among them by page
    /// number; 1 = serial redo. Used by crash recovery, a standby's
    /// streaming redo and the replay before a promotion.
    pub recovery_redo_workers: usize,
    /// Seconds a synchronous standby may need to redo what it received
    /// (its estimated RTO); the primary slows commits to keep it there
    /// (`replication::rto`). 0 = off, as in openGauss.
    pub recovery_time_target: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreMap {
    pub sessions: Vec<usize>,
    pub wal_flusher: usize,
    /// The `wal-sender` thread (all standby streams of a primary).
    pub wal_sender: usize,
    /// The `wal-receiver` thread (stream and serial redo of a standby).
    pub wal_receiver: usize,
    pub background: usize,
    /// One core per redo worker, in worker order (worker 0 is the redo
    /// dispatcher itself); cycled when there are more workers than cores.
    pub redo_workers: Vec<usize>,
}

impl CoreMap {
    /// Default: the WAL threads (flusher, sender, receiver) on the last
    /// core, sessions on all the others (on 2 cores: sessions on 0, WAL on
    /// 1; on 1 core everything shares it).
    ///
    /// Why the WAL threads share one core: each batch goes flusher ->
    /// sender (primary) and receiver -> flusher -> receiver (standby), and a
    /// hand-off to an idle core costs a cross-CPU wake-up (about 30 us per
    /// hop on the 2-vCPU VM here, measured with timestamps; under 3 us on
    /// the same core). Why sessions stay off that core: measured side by
    /// side on 2 cores, sessions on [0] against [0, 1] (WAL on 1 in both):
    /// tandem-bench local TPC-B c=64 54-56k vs 39k tps, single INCRBY c=64
    /// 98-101k vs 82-90k, `on` with a standby on the same machine 52-53k
    /// vs 47k (p99 2.3 vs 4.7-5.1 ms), redis-benchmark GET c=64 161-166k vs
    /// 126-128k/s; 1-client latency the same. Pinning the standby's WAL
    /// threads to the other core instead was worse (40k vs 47-53k).
    pub fn default_for(cores: usize) -> CoreMap {
        let cores = cores.max(1);
        let last = cores - 1;
        let sessions = if cores == 1 {
            vec![0]
        } else {
            (0..last).collect()
        };
        CoreMap {
            sessions,
            wal_flusher: last,
            wal_sender: last,
            wal_receiver: last,
            background: 0,
            // Redo runs while a standby's sessions only read and its WAL
            // threads only receive: it may use every core.
            redo_workers: (0..cores).collect(),
        }
    }

    /// The core of redo worker `i`.
    pub fn redo_worker(&self, i: usize) -> Option<usize> {
        if self.redo_workers.is_empty() {
            return None;
        }
        self.redo_workers.get(i % self.redo_workers.len()).copied()
    }
}

impl std::fmt::Display for CoreMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sessions={:?} wal_flusher={} wal_sender={} wal_receiver={} background(checkpointer,metrics)={} redo_workers={:?}",
            self.sessions, self.wal_flusher, self.wal_sender, self.wal_receiver, self.background,
            self.redo_workers
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("invalid setting {key} = {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("no data directory: pass --data-dir or set data_dir in the config file")]
    NoDataDir,
}

/// Limits (STYLE.md habit 10). Tuning notes say what chose them.
pub mod limits {
    /// Largest request (all arguments of one command), as Redis'
    /// proto-max-bulk-len default is far larger; ours is the value limit
    /// plus room for the key and framing.
    pub const REQUEST_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
    pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
    pub const ARGS_MAX: usize = 1024 * 1024;
    pub const INLINE_BYTES_MAX: usize = 64 * 1024;
    pub const BUFFER_POOL_BYTES_DEFAULT: u64 = 256 << 20;
    pub const WAL_SEGMENT_BYTES_DEFAULT: u64 = 16 << 20;
    pub const CHECKPOINT_INTERVAL_SECS_DEFAULT: u64 = 60;
    pub const CHECKPOINT_WAL_BYTES_DEFAULT: u64 = 256 << 20;
    /// Data file growth step: 1 MiB; small enough for tmpfs tests.
    pub const DATA_EXTEND_PAGES_DEFAULT: u32 = 128;
    /// PostgreSQL's wal_sender_timeout is 60 s; a synchronous commit
    /// stalled on a hung standby for a minute is too long for us: 10 s.
    pub const WAL_SENDER_TIMEOUT_MS_DEFAULT: u64 = 10_000;
    /// WAL kept for standbys behind the end: 1 GiB.
    pub const MAX_WAL_RETENTION_DEFAULT: u64 = 1 << 30;
    /// A little over one O_DIRECT|O_DSYNC write here (p50 about 200 us):
    /// enough to catch most completions of a shipped batch by polling.
    pub const WAL_FLUSH_POLL_US_DEFAULT: u64 = 300;
    /// See `wal::flusher`, "Gathering": about the time half of 64
    /// clients take to come back after their commit (a round trip of the
    /// 2 shared cores' CPU work is about 400 us here). 1000 measured the
    /// same side by side, and bounds a held commit's wait less tightly.
    pub const WAL_GATHER_US_DEFAULT: u64 = 300;
    /// Cap of `wal_flush_poll_us`, `wal_gather_us` and `session_poll_us`: polling longer
    /// than a slow write only burns the core.
    pub const POLL_US_MAX: u64 = 10_000;
    /// About one commit round trip (write+fdatasync and the reply): a
    /// client's next request or a commit's acknowledgement usually lands
    /// inside it.
    pub const SESSION_POLL_US_DEFAULT: u64 = 300;
    /// SCAN cursors remembered per connection.
    pub const SCAN_CURSORS_MAX: usize = 64;
    /// Most redo workers a node runs (each takes at least one page slice
    /// of a batch, so more than `POOL_SHARDS` would idle).
    pub const REDO_WORKERS_MAX: usize = POOL_SHARDS;
    /// Default redo workers: one per core, up to this many.
    pub const REDO_WORKERS_DEFAULT_MAX: usize = 8;
    /// Shards of the buffer pool, which are also the page slices redo
    /// hands to its workers (`redo::assembler`, `redo::dispatcher`): enough
    /// that a batch's hot pages spread over the workers.
    pub const POOL_SHARDS: usize = 16;
    /// A redo batch (what readers on a standby wait for at most, and the
    /// unit between two barriers of the workers) covers at most this much
    /// WAL or this many page records (`redo::dispatcher`). See
    /// `redo::pipeline` for the measurement that chose them.
    pub const REDO_BATCH_BYTES_MAX: u64 = 1 << 20;
    pub const REDO_BATCH_RECORDS_MAX: u64 = 8192;
    /// WAL records the WAL receiver may queue in memory for the redo
    /// dispatcher; past this the dispatcher reads them back from the
    /// segment files (`redo::feed`).
    pub const REDO_FEED_BYTES_MAX: u64 = 64 << 20;
}

/// `recovery_redo_workers`: the file's value (1 to
/// `limits::REDO_WORKERS_MAX`) or one per core, at most
/// `limits::REDO_WORKERS_DEFAULT_MAX`.
fn recovery_redo_workers(value: Option<usize>, cores: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(cores.clamp(1, limits::REDO_WORKERS_DEFAULT_MAX)),
        Some(n) if (1..=limits::REDO_WORKERS_MAX).contains(&n) => Ok(n),
        Some(n) => Err(ConfigError::Invalid {
            key: "recovery_redo_workers",
            value: n.to_string(),
            reason: "1 (serial) to 16 workers",
        }),
    }
}

/// A polling or gathering budget in microseconds: the file's value or
/// `default`, capped at `limits::POLL_US_MAX`.
fn poll_us(value: Option<u64>, default: u64) -> u64 {
    value.unwrap_or(default).min(limits::POLL_US_MAX)
}

impl Config {
    pub fn from_file(path: &Path) -> Result<FileConfig, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: p, source })
    }

    /// Resolves file settings (already merged with flags) into a config.
    pub fn resolve(f: FileConfig) -> Result<Config, ConfigError> {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mut core_map = CoreMap::default_for(cores);
        if let Some(n) = f.session_cores {
            core_map.sessions = (0..n.max(1)).map(|i| i % cores).collect();
        }
        if let Some(m) = f.core_map {
            if let Some(s) = m.sessions {
                core_map.sessions = s;
            }
            if let Some(c) = m.wal_flusher {
                core_map.wal_flusher = c;
                // The sender and receiver follow the flusher unless set.
                core_map.wal_sender = c;
                core_map.wal_receiver = c;
            }
            if let Some(c) = m.wal_sender {
                core_map.wal_sender = c;
            }
            if let Some(c) = m.wal_receiver {
                core_map.wal_receiver = c;
            }
            if let Some(c) = m.background {
                core_map.background = c;
            }
            if let Some(r) = m.redo_workers {
                core_map.redo_workers = r;
            }
        }
        if core_map.sessions.is_empty() {
            return Err(ConfigError::Invalid {
                key: "core_map.sessions",
                value: "[]".into(),
                reason: "needs at least one core",
            });
        }
        let synchronous_commit = match f.synchronous_commit {
            None => SyncLevel::Local,
            Some(s) => SyncLevel::parse(&s).map_err(|_| ConfigError::Invalid {
                key: "synchronous_commit",
                value: s,
                reason: "expected off, local, remote_receive, remote_write, on, remote_flush or remote_apply",
            })?,
        };
        let names_text = f.synchronous_standby_names.unwrap_or_default();
        let synchronous_standby_names =
            StandbyNames::parse(&names_text).map_err(|_| ConfigError::Invalid {
                key: "synchronous_standby_names",
                value: names_text.clone(),
                reason: "expected '', '*', 'FIRST n (a, b)', 'ANY n (a, b)' or 'a, b'",
            })?;
        if let Some(name) = &f.name {
            if !crate::replication::frame::name_is_valid(name) {
                return Err(ConfigError::Invalid {
                    key: "name",
                    value: name.clone(),
                    reason: "1 to 64 characters of A-Z a-z 0-9 _ . -",
                });
            }
        }
        let wal_segment_bytes = f
            .wal_segment_bytes
            .unwrap_or(limits::WAL_SEGMENT_BYTES_DEFAULT);
        if !wal_segment_bytes.is_power_of_two() || wal_segment_bytes < (64 << 10) {
            return Err(ConfigError::Invalid {
                key: "wal_segment_bytes",
                value: wal_segment_bytes.to_string(),
                reason: "must be a power of two of at least 64 KiB",
            });
        }
        let buffer_pool_bytes = f
            .buffer_pool_bytes
            .unwrap_or(limits::BUFFER_POOL_BYTES_DEFAULT);
        if buffer_pool_bytes < 16 * 8192 {
            return Err(ConfigError::Invalid {
                key: "buffer_pool_bytes",
                value: buffer_pool_bytes.to_string(),
                reason: "must hold at least 16 pages (128 KiB)",
            });
        }
        let listen = f.listen.unwrap_or_else(|| ([127, 0, 0, 1], 6380).into());
        Ok(Config {
            data_dir: f.data_dir.ok_or(ConfigError::NoDataDir)?,
            listen,
            repl_listen: f
                .repl_listen
                .unwrap_or_else(|| ([127, 0, 0, 1], 7380).into()),
            metrics_listen: f.metrics_listen,
            name: f.name.unwrap_or_else(|| format!("node-{}", listen.port())),
            requirepass: f.requirepass.filter(|p| !p.is_empty()),
            cluster_secret: f.cluster_secret,
            synchronous_commit,
            synchronous_standby_names,
            most_available_sync: f.most_available_sync.unwrap_or(false),
            synchronous_commit_timeout_ms: f.synchronous_commit_timeout_ms.unwrap_or(0),
            wal_sender_timeout_ms: f
                .wal_sender_timeout_ms
                .unwrap_or(limits::WAL_SENDER_TIMEOUT_MS_DEFAULT),
            peers: f.peers.unwrap_or_default(),
            max_wal_retention: f
                .max_wal_retention
                .unwrap_or(limits::MAX_WAL_RETENTION_DEFAULT),
            buffer_pool_bytes,
            wal_segment_bytes,
            wal_segments_ahead: f.wal_segments_ahead.unwrap_or(2).max(1),
            wal_flush_poll_us: poll_us(f.wal_flush_poll_us, limits::WAL_FLUSH_POLL_US_DEFAULT),
            wal_gather_us: poll_us(f.wal_gather_us, limits::WAL_GATHER_US_DEFAULT),
            session_poll_us: poll_us(f.session_poll_us, limits::SESSION_POLL_US_DEFAULT),
            checkpoint_interval_secs: f
                .checkpoint_interval_secs
                .unwrap_or(limits::CHECKPOINT_INTERVAL_SECS_DEFAULT)
                .max(1),
            checkpoint_wal_bytes: f
                .checkpoint_wal_bytes
                .unwrap_or(limits::CHECKPOINT_WAL_BYTES_DEFAULT),
            core_map,
            connections_max: f.connections_max.unwrap_or(limits::CONNECTIONS_MAX_DEFAULT),
            request_bytes_max: f
                .request_bytes_max
                .unwrap_or(limits::REQUEST_BYTES_MAX_DEFAULT),
            data_extend_pages: f
                .data_extend_pages
                .unwrap_or(limits::DATA_EXTEND_PAGES_DEFAULT)
                .max(1),
            recovery_redo_workers: recovery_redo_workers(f.recovery_redo_workers, cores)?,
            recovery_time_target: f.recovery_time_target.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_core_map_keeps_sessions_off_the_wal_core() {
        assert_eq!(
            CoreMap::default_for(2),
            CoreMap {
                sessions: vec![0],
                wal_flusher: 1,
                wal_sender: 1,
                wal_receiver: 1,
                background: 0,
                redo_workers: vec![0, 1],
            }
        );
        assert_eq!(CoreMap::default_for(8).sessions, (0..7).collect::<Vec<_>>());
        assert_eq!(CoreMap::default_for(8).wal_sender, 7);
        assert_eq!(CoreMap::default_for(1).sessions, vec![0]);
        assert_eq!(CoreMap::default_for(1).wal_flusher, 0);
    }

    #[test]
    fn toml_keys_parse_and_bad_values_are_refused() {
        let f: FileConfig =
            toml::from_str("data_dir = \"/tmp/x\"\nsynchronous_commit = \"off\"\n").unwrap();
        let c = Config::resolve(f).unwrap();
        assert_eq!(c.synchronous_commit, SyncLevel::Off);
        let f: FileConfig =
            toml::from_str("data_dir = \"/x\"\nsynchronous_commit = \"maybe\"\n").unwrap();
        assert!(Config::resolve(f).is_err());
        assert!(toml::from_str::<FileConfig>("no_such_key = 1\n").is_err());
    }

    #[test]
    fn flush_poll_defaults_and_is_capped() {
        let resolve = |text: &str| Config::resolve(toml::from_str(text).unwrap()).unwrap();
        let c = resolve("data_dir = \"/x\"\n");
        assert_eq!(c.wal_flush_poll_us, limits::WAL_FLUSH_POLL_US_DEFAULT);
        assert_eq!(
            resolve("data_dir = \"/x\"\nwal_flush_poll_us = 0\n").wal_flush_poll_us,
            0
        );
        let c = resolve("data_dir = \"/x\"\nwal_flush_poll_us = 99999999\n");
        assert_eq!(c.wal_flush_poll_us, limits::POLL_US_MAX);
        assert_eq!(c.session_poll_us, limits::SESSION_POLL_US_DEFAULT);
        let c = resolve("data_dir = \"/x\"\nsession_poll_us = 0\n");
        assert_eq!(c.session_poll_us, 0);
        assert_eq!(c.wal_gather_us, limits::WAL_GATHER_US_DEFAULT);
        let c = resolve("data_dir = \"/x\"\nwal_gather_us = 99999999\n");
        assert_eq!(c.wal_gather_us, limits::POLL_US_MAX);
        assert_eq!(
            resolve("data_dir = \"/x\"\nwal_gather_us = 0\n").wal_gather_us,
            0
        );
    }
}
