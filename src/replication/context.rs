//! State the replication tasks of one node share: identity, the secret,
//! the standby table (primary side), the upstream status (standby side),
//! synchronous-commit horizons, WAL retention pins, the timeline history,
//! the WAL receiver's controls and why the node needs a build, if it does.
//!
//! `epoch` grows with every role or timeline change; a WAL sender that
//! sees it move ends its stream, so its standby reconnects and learns the
//! new timeline in the handshake (never WAL of a timeline it has not
//! adopted).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::receiver::ReceiverControl;
use super::status::{Standbys, Upstream};
use super::sync_wait::SyncRep;
use super::timeline::TimelineHistory;
use crate::engine::Engine;
use crate::ids::Lsn;
use crate::wal::segment::SegmentDir;
use crate::wal::WalError;

pub struct ReplContext {
    pub engine: Arc<Engine>,
    /// `cluster_secret`; empty when not configured (then any peer that
    /// knows the system id may connect: the log warns at start-up).
    pub secret: Vec<u8>,
    pub name: String,
    /// This node's client (RESP) address, told to standbys so their
    /// READONLY errors can name the primary.
    pub client_addr: String,
    pub wal_dir: PathBuf,
    pub standbys: Standbys,
    pub upstream: Upstream,
    pub sync: Arc<SyncRep>,
    pub metrics: super::metrics::ReplMetrics,
    /// WAL a standby may still need is kept up to this many bytes behind
    /// the end; a standby further behind must be rebuilt.
    pub max_wal_retention: u64,
    /// See `Config::wal_sender_timeout_ms`; `None`: never.
    pub wal_sender_timeout: Option<std::time::Duration>,
    /// LSNs pinned by running builds (WAL from there on must stay).
    build_pins: Mutex<Vec<(u64, Lsn)>>,
    next_id: AtomicU64,
    /// The history of the node's current timeline (`engine.timeline()`).
    pub history: Mutex<TimelineHistory>,
    /// Role or timeline changes so far (see the module doc).
    pub epoch: AtomicU64,
    pub receiver: ReceiverControl,
    /// Set when the node learned it cannot stream on without a build.
    pub needs_build: Mutex<Option<NeedsBuild>>,
    /// This node's replication address (as peers reach it).
    pub repl_addr: String,
    /// Replication addresses of the other nodes (config `peers`).
    pub peers: Vec<String>,
    /// Serialises role and timeline changes (`roles`).
    pub role_change: Mutex<()>,
    /// This process started its post-crash timeline (`roles`).
    pub resumed_after_crash: std::sync::atomic::AtomicBool,
    /// The commit throttle of `recovery_time_target` (`rto`).
    pub throttle: super::rto::Throttle,
}

/// Why a node needs a build, for INFO and `tandemctl query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeedsBuild {
    pub reason: String,
    /// First LSN at which this node's WAL may differ from the cluster's
    /// (when known: a divergence found through timeline histories).
    pub divergence: Option<Lsn>,
}

impl ReplContext {
    pub fn new(
        engine: Arc<Engine>,
        secret: Vec<u8>,
        name: String,
        client_addr: String,
        wal_dir: PathBuf,
        sync: Arc<SyncRep>,
        max_wal_retention: u64,
    ) -> ReplContext {
        ReplContext {
            engine,
            secret,
            name,
            client_addr,
            wal_dir,
            standbys: Standbys::default(),
            upstream: Upstream::default(),
            sync,
            metrics: Default::default(),
            max_wal_retention,
            wal_sender_timeout: None,
            build_pins: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            history: Mutex::new(TimelineHistory::new()),
            epoch: AtomicU64::new(0),
            receiver: ReceiverControl::default(),
            needs_build: Mutex::new(None),
            repl_addr: String::new(),
            peers: Vec::new(),
            role_change: Mutex::new(()),
            resumed_after_crash: Default::default(),
            throttle: super::rto::Throttle::new(0),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A role or timeline change: streams of the old epoch end.
    pub fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub fn needs_build(&self) -> Option<NeedsBuild> {
        self.needs_build.lock().clone()
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn segments(&self) -> Result<SegmentDir, WalError> {
        let wal = self.engine.wal();
        SegmentDir::new(
            &self.wal_dir,
            wal.config().segment_bytes,
            self.engine.timeline(),
        )
    }

    pub fn pin(&self, id: u64, lsn: Lsn) {
        self.build_pins.lock().push((id, lsn));
    }

    pub fn unpin(&self, id: u64) {
        self.build_pins.lock().retain(|(i, _)| *i != id);
    }

    /// Oldest LSN whose WAL must be kept: running builds, and standbys
    /// (connected ones) that are within `max_wal_retention` of the end.
    /// `Lsn(u64::MAX)` when nothing is needed.
    pub fn retention_floor(&self) -> Lsn {
        let end = self.engine.wal().inserted();
        let cap_start = Lsn(end.0.saturating_sub(self.max_wal_retention));
        let mut floor = Lsn(u64::MAX);
        for (_, lsn) in self.build_pins.lock().iter() {
            floor = floor.min(*lsn);
        }
        for s in self.standbys.snapshot() {
            if s.flushed >= cap_start {
                floor = floor.min(s.flushed);
            }
        }
        floor
    }
}
