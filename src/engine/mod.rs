//! The storage engine: B+tree on 8 KiB pages in a buffer pool, logged to
//! the WAL, recovered from it, checkpointed.
//!
//! Concurrency: the tree and the pool live behind one engine lock, held
//! only for in-memory work (a transaction's page changes and encoding its
//! record group, microseconds) and page misses; commit waits happen after
//! it is released, in [`crate::wal::Wal::wait_flushed`]. Holding it across
//! "apply + append" keeps WAL order equal to page-change order, which
//! physiological redo needs. Finer page latches would let session cores
//! change disjoint pages in parallel; on the 2-core machines this runs on
//! the lock is not the bottleneck (the flusher's fsync is), so it stays
//! simple until a profile says otherwise.
//!
//! Invariants:
//! - a transaction's records reach the WAL as one group ending in a
//!   `Commit`, or not at all ([`tx::Tx`]);
//! - a page changed by a transaction carries `visible_lsn` = its commit
//!   end; readers wait for that LSN to be durable (issue 2, point 10);
//! - recovery redoes complete groups only and cuts the WAL after the last.

pub mod btree;
pub mod buffer_pool;
pub mod control_file;
pub mod data_file;
pub mod pool;
pub mod recovery;
pub mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use self::buffer_pool::{PoolError, PoolStats};
use self::control_file::{ControlData, ControlError, ControlFile, NodeState, Role};
use self::data_file::{DataFile, DataFileError};
use self::pool::Pool;
use self::tx::Tx;
use crate::ids::{Lsn, PageNo, SystemId, TimelineId};
use crate::page::meta::{Meta, MetaError};
use crate::page::{PageError, PageKind};
use crate::redo::applied::Applied;
use crate::redo::feed::Feed;
use crate::redo::gate::Gate;
use crate::redo::pipeline::{Redo, RedoHooks, RedoHost, RedoStats, WalSource};
use crate::redo::workers::{WorkerStats, Workers};
use crate::redo::{ApplyError, RedoError};
use crate::wal::{Wal, WalConfig, WalError};

/// First LSN of a new cluster's WAL. Not zero: page LSN 0 means "never
/// changed", and the first record must be newer than that.
pub const WAL_START: Lsn = Lsn(16);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Corrupt(#[from] PageError),
    #[error("disk full: no space left for new pages or WAL segments")]
    DiskFull,
    #[error("data file: {0}")]
    DataFile(DataFileError),
    #[error("WAL: {0}")]
    Wal(WalError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("redo: {0}")]
    Apply(ApplyError),
    #[error("redo failed: {0}")]
    Redo(RedoError),
    #[error("this node stopped its redo ({0}): it needs a build")]
    RedoStopped(RedoError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("page {page}: expected a tree page, found {found:?}")]
    TreeCorrupt { page: PageNo, found: PageKind },
    #[error("key of {len} bytes exceeds the maximum of {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes exceeds the maximum of {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("this node is a standby: it does not take writes")]
    ReadOnly,
    #[error("writes are blocked on this node: {0}")]
    WritesBlocked(WriteBlock),
    #[error("the WAL could not be made durable before page {page} was written back: {reason}")]
    WalFlushFailed { page: PageNo, reason: String },
    #[error("internal error: {0}")]
    Bug(&'static str),
}

impl From<DataFileError> for EngineError {
    fn from(e: DataFileError) -> Self {
        match e {
            DataFileError::DiskFull => EngineError::DiskFull,
            other => EngineError::DataFile(other),
        }
    }
}

impl From<PoolError> for EngineError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::DataFile(d) => d.into(),
            PoolError::Corrupt(c) => EngineError::Corrupt(c),
            PoolError::WalFlush { page, reason } => EngineError::WalFlushFailed { page, reason },
        }
    }
}

impl From<WalError> for EngineError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::DiskFull { .. } => EngineError::DiskFull,
            other => EngineError::Wal(other),
        }
    }
}

/// Why a primary refuses writes for now (the role stays primary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WriteBlock {
    /// Handing the primary role over (switchover): in-flight commits finish,
    /// new writes go to the new primary.
    Switchover = 1,
    /// Restarted with peers: waiting for one to confirm no newer timeline
    /// exists (DESIGN.md section 4, pending mode).
    Pending = 2,
    /// Learned of a newer timeline its WAL went past: it needs a build.
    NeedsBuild = 3,
    /// Restarted after a crash, it could not yet write the history of the
    /// timeline it must write on (no space); retried every second.
    NoTimelineYet = 4,
    /// The data file failed to sync (`engine::data_file`, "Error
    /// policy"): writes are refused for good; a restart recovers from the
    /// WAL.
    DataFileFailed = 5,
}

impl WriteBlock {
    fn from_u8(v: u8) -> Option<WriteBlock> {
        match v {
            1 => Some(WriteBlock::Switchover),
            2 => Some(WriteBlock::Pending),
            3 => Some(WriteBlock::NeedsBuild),
            4 => Some(WriteBlock::NoTimelineYet),
            5 => Some(WriteBlock::DataFileFailed),
            _ => None,
        }
    }
}

impl std::fmt::Display for WriteBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteBlock::Switchover => "switchover in progress",
            WriteBlock::Pending => {
                "pending: waiting for a peer to confirm this node is still the primary"
            }
            WriteBlock::NeedsBuild => "this node needs a build",
            WriteBlock::NoTimelineYet => "disk full: the history file of the timeline that follows the crash cannot be written yet (retried every second)",
            WriteBlock::DataFileFailed => "the data file failed to sync: this node is faulted and refuses writes until a restart recovers from the WAL (as PostgreSQL's PANIC does)",
        })
    }
}

/// What crash recovery did when the engine opened: for the log, the
/// redo benchmark (`tandem redo-bench`) and INFO.
#[derive(Clone, Debug)]
pub struct RecoveryReport {
    pub from: Lsn,
    pub to: Lsn,
    pub groups: u64,
    pub records: u64,
    pub seconds: f64,
    /// Per redo worker: page records applied and time busy applying them.
    pub worker_records: Vec<u64>,
    pub worker_busy_seconds: Vec<f64>,
}

impl RecoveryReport {
    fn of(redo: &Redo, from: Lsn, end: recovery::RecoveryEnd, took: std::time::Duration) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        let workers = redo.worker_stats();
        RecoveryReport {
            from,
            to: end.next,
            groups: end.groups,
            records: redo.stats().records.load(Relaxed),
            seconds: took.as_secs_f64(),
            worker_records: workers.iter().map(|w| w.records.load(Relaxed)).collect(),
            worker_busy_seconds: workers
                .iter()
                .map(|w| w.busy_ns.load(Relaxed) as f64 / 1e9)
                .collect(),
        }
    }
}

/// What a standby found when it replayed the rest of its WAL to promote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayEnd {
    /// End of the WAL (after any incomplete group): the switch LSN.
    pub wal_end: Lsn,
    /// True when the WAL ends inside a group (its primary died mid-send).
    pub partial_group: bool,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub buffer_pool_pages: usize,
    pub wal_segment_bytes: u64,
    pub wal_segments_ahead: u32,
    /// See `WalConfig::flush_poll`.
    pub wal_flush_poll: std::time::Duration,
    /// See `WalConfig::gather`.
    pub wal_gather: std::time::Duration,
    pub data_extend_pages: u32,
    pub flusher_core: Option<usize>,
    /// Redo workers; the pool has one shard per worker.
    pub redo_workers: usize,
    /// Core of each redo worker (worker 0 is the `redo-dispatcher`
    /// thread; during crash recovery, the thread opening the engine).
    pub redo_cores: Vec<usize>,
}

struct State {
    meta: Meta,
    /// Redo point of the last checkpoint begun: pages not changed since
    /// get a full image on their next change.
    redo_lsn: Lsn,
    shutting_down: bool,
    /// Standby: refuses writes; pages change only by redo.
    role: Role,
}

pub struct Engine {
    /// Redo gate: a batch of redo holds it exclusively, every transaction
    /// (reads included) and a checkpoint's snapshot hold it shared, so a
    /// reader sees the data as of a batch boundary, which is a transaction
    /// boundary (`redo::pipeline`). Taken before `state`.
    gate: Gate,
    state: Mutex<State>,
    pool: Arc<Pool>,
    /// End of the last applied record group (and the LSN of its last
    /// record): written by redo only (`redo::applied`).
    applied: Arc<Applied>,
    /// The redo pipeline (crash recovery ran through it); the
    /// `redo-dispatcher` thread holds it while it applies a batch.
    redo: Mutex<Redo>,
    /// The WAL receiver's hand-off to the dispatcher.
    feed: Arc<Feed>,
    /// Why redo stopped for good (`redo::pipeline`, "Errors"): every
    /// transaction is refused from then on.
    redo_fault: Mutex<Option<RedoError>>,
    /// What crash recovery did at this start.
    recovery_report: RecoveryReport,
    redo_workers: usize,
    redo_stats: Arc<RedoStats>,
    redo_worker_stats: Arc<Vec<WorkerStats>>,
    control: Mutex<ControlFile>,
    wal: Arc<Wal>,
    system_id: SystemId,
    timeline: std::sync::atomic::AtomicU32,
    checkpoints: std::sync::atomic::AtomicU64,
    data_dir: PathBuf,
    is_standby: std::sync::atomic::AtomicBool,
    /// 0 or a [`WriteBlock`]; read by `execute` under the state lock.
    write_block: std::sync::atomic::AtomicU8,
    /// The data directory was created by this start (not a restart).
    created: bool,
    /// The last run did not shut down cleanly (recovery ran from a crash).
    crashed: bool,
}

/// Where recovery from a checkpoint starts: the first record's LSN and
/// the LSN of the record before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedoPoint {
    pub redo: Lsn,
    pub redo_prev: Lsn,
}

/// What a committed (or read-only) transaction must wait for before its
/// reply: the LSN that must be durable.
pub struct Outcome<R> {
    pub value: R,
    pub wait_lsn: Lsn,
    pub wrote: bool,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// Opens (or creates) the data directory, runs crash recovery, and
    /// starts the WAL flusher.
    pub fn open(cfg: &EngineConfig) -> Result<Arc<Engine>, EngineError> {
        let control_path = cfg.data_dir.join("control");
        let wal_dir = cfg.data_dir.join("wal");
        std::fs::create_dir_all(&wal_dir).map_err(|source| {
            EngineError::DataFile(DataFileError::Io {
                op: "mkdir wal",
                message: source.to_string(),
            })
        })?;
        let created = !control_path.exists();
        let mut control = if !created {
            ControlFile::open(&control_path)?
        } else {
            let data = ControlData {
                role: control_file::Role::Primary,
                system_id: SystemId(rand::random::<u64>() | 1),
                timeline: TimelineId::FIRST,
                state: NodeState::Running,
                redo_lsn: WAL_START,
                redo_prev: Lsn::ZERO,
                checkpoint_end: WAL_START,
                segment_bytes: cfg.wal_segment_bytes,
                created_us: now_us(),
            };
            tracing::info!(system_id = %data.system_id, "initialising a new cluster");
            prepare_first_segment(&wal_dir, cfg.wal_segment_bytes)?;
            ControlFile::create(&control_path, data)?
        };
        let cd = control.data();
        let file = DataFile::open(&cfg.data_dir.join("pages"), cfg.data_extend_pages)?;
        let workers = cfg.redo_workers.max(1);
        // Crash recovery writes pages only once the WAL it redoes is
        // durable (`recovery::redo` syncs it first).
        let pool = Arc::new(Pool::new(
            file,
            cfg.buffer_pool_pages,
            Arc::new(|_| Ok(Lsn(u64::MAX))),
        )?);
        let redo_cores = cfg.redo_cores.clone();
        let redo_workers = Workers::start(pool.clone(), workers, |i| {
            (!redo_cores.is_empty()).then(|| redo_cores[i % redo_cores.len()])
        })
        .map_err(|e| {
            EngineError::DataFile(DataFileError::Io {
                op: "start redo workers",
                message: e.to_string(),
            })
        })?;
        let mut redo = Redo::new(redo_workers, (cd.redo_lsn, cd.redo_prev));
        let started = Instant::now();
        let end = recovery::redo(&mut redo, &wal_dir, &cd)?;
        let recovery_report = RecoveryReport::of(&redo, cd.redo_lsn, end, started.elapsed());
        tracing::info!(
            from = %cd.redo_lsn, to = %end.next, groups = end.groups, workers,
            ms = started.elapsed().as_millis() as u64, "recovery done"
        );
        let wal = Wal::open(
            WalConfig {
                dir: wal_dir,
                segment_bytes: cd.segment_bytes,
                timeline: cd.timeline,
                segments_ahead: cfg.wal_segments_ahead,
                buffer_bytes_max: 64 << 20,
                flusher_core: cfg.flusher_core,
                flush_poll: cfg.wal_flush_poll,
                gather: cfg.wal_gather,
            },
            end.next,
            end.prev,
        )?;
        wal.set_sessions_append(cd.role == Role::Primary);
        let flush_wal = wal.clone();
        pool.set_flush_to(Arc::new(move |lsn| {
            flush_wal
                .wait_flushed_blocking(lsn)
                .map(|()| flush_wal.flushed())
                .map_err(|e| e.to_string())
        }));
        let meta = crate::page::meta::Meta::read(pool.guards().get(PageNo::META)?.0)?;
        control.write(ControlData {
            state: NodeState::Running,
            ..cd
        })?;
        let (redo_stats, redo_worker_stats) = (redo.stats().clone(), redo.worker_stats().clone());
        let engine = Arc::new(Engine {
            gate: Gate::default(),
            pool,
            applied: Applied::new(end.next, end.prev),
            redo: Mutex::new(redo),
            feed: Arc::new(Feed::new(end.next)),
            redo_fault: Mutex::new(None),
            recovery_report,
            redo_workers: workers,
            redo_stats,
            redo_worker_stats,
            state: Mutex::new(State {
                meta: meta.unwrap_or(Meta {
                    root: PageNo::NONE,
                    page_count: 1,
                    free_head: PageNo::NONE,
                    height: 0,
                    key_count: 0,
                }),
                redo_lsn: cd.redo_lsn,
                shutting_down: false,
                role: cd.role,
            }),
            control: Mutex::new(control),
            wal,
            system_id: cd.system_id,
            timeline: std::sync::atomic::AtomicU32::new(cd.timeline.0),
            checkpoints: Default::default(),
            data_dir: cfg.data_dir.clone(),
            is_standby: std::sync::atomic::AtomicBool::new(cd.role == Role::Standby),
            write_block: Default::default(),
            created,
            crashed: !created && cd.state == NodeState::Running,
        });
        if meta.is_none() && cd.role == Role::Primary {
            engine.bootstrap()?;
        }
        // With one worker the dispatcher applies every batch itself: pin it
        // as that worker. With more, workers have threads of their own and
        // the dispatcher (reading, cutting batches) runs where it can.
        let dispatcher_core = if workers == 1 {
            cfg.redo_cores.first().copied()
        } else {
            None
        };
        start_dispatcher(&engine, dispatcher_core)?;
        Ok(engine)
    }

    /// Creates the empty tree: meta page and an empty root leaf.
    fn bootstrap(&self) -> Result<(), EngineError> {
        let out = self.execute(|tx| {
            let root = PageNo(1);
            tx.meta_mut().page_count = 1;
            let allocated = tx.allocate()?;
            debug_assert_eq!(allocated, root);
            tx.write_image(root, PageKind::Leaf, |_| {})?;
            let meta = tx.meta_mut();
            meta.root = root;
            meta.height = 1;
            Ok(())
        })?;
        self.wal.wait_flushed_blocking(out.wait_lsn)?;
        Ok(())
    }

    /// Runs `f` as one transaction under the engine lock. Its changes are
    /// appended to the WAL as one record group and installed, or, if `f`
    /// or the append fails, dropped entirely. The caller must wait for
    /// `wait_lsn` to be durable (per its commit mode) before replying.
    pub fn execute<R>(
        &self,
        f: impl FnOnce(&mut Tx<'_, '_>) -> Result<R, EngineError>,
    ) -> Result<Outcome<R>, EngineError> {
        let _gate = self.gate.reader();
        if let Some(e) = self.redo_fault.lock().as_ref() {
            return Err(EngineError::RedoStopped(e.clone()));
        }
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let mut pages = self.pool.guards();
        let (next, prev) = self.wal.insert_position();
        let mut tx = Tx::new(&mut pages, st.meta, st.redo_lsn, next, prev);
        let value = f(&mut tx).inspect_err(|e| self.note_failure(e))?;
        let out = tx.finish(now_us())?;
        if out.wal.is_empty() {
            return Ok(Outcome {
                value,
                wait_lsn: out.read_visible,
                wrote: false,
            });
        }
        if st.shutting_down {
            return Err(EngineError::ShuttingDown);
        }
        if st.role == Role::Standby {
            return Err(EngineError::ReadOnly);
        }
        if let Some(block) = self.write_block() {
            return Err(EngineError::WritesBlocked(block));
        }
        let end = self.wal.append(&out.wal, out.last_record)?;
        debug_assert_eq!(end, next.add(out.wal.len() as u64));
        for (no, buf) in &out.pages {
            pages.install(*no, buf, end)?;
        }
        st.meta = out.meta;
        Ok(Outcome {
            value,
            wait_lsn: end.max(out.read_visible),
            wrote: true,
        })
    }

    /// A digest of every page (CRC32C chained over each page's bytes but
    /// its checksum field, which only disk copies carry) and the LSN it
    /// reflects: equal on nodes holding the same data (DESIGN.md section 3
    /// invariant). Holds the engine lock for the whole walk: a debugging
    /// and test tool, not for production traffic.
    pub fn digest(&self) -> Result<(Lsn, u32, u32), EngineError> {
        let _gate = self.gate.reader();
        let st = self.state.lock();
        let lsn = match st.role {
            Role::Primary => self.wal.insert_position().0,
            Role::Standby => self.applied.lsn(),
        };
        let pages = st.meta.page_count;
        let mut guards = self.pool.guards();
        let mut digest = 0u32;
        for n in 0..pages {
            let (p, _) = guards.get(PageNo(n))?;
            digest = crc32c::crc32c_append(digest, &p[..8]);
            digest = crc32c::crc32c_append(digest, &p[12..]);
        }
        Ok((lsn, pages, digest))
    }

    /// Standby: end of the last applied group and the LSN of its last
    /// record (where redo of the rest of the WAL starts).
    pub fn applied_position(&self) -> (Lsn, Lsn) {
        self.applied.position()
    }

    /// Standby: end of the last applied group.
    pub fn applied_lsn(&self) -> Lsn {
        self.applied.lsn()
    }

    /// The applied position, its waiters and its kick.
    pub fn applied(&self) -> &Arc<Applied> {
        &self.applied
    }

    /// The WAL receiver's hand-off to redo.
    pub fn redo_feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Why redo stopped, if it did (the node then needs a build).
    pub fn redo_fault(&self) -> Option<RedoError> {
        self.redo_fault.lock().clone()
    }

    /// What crash recovery did at this start.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery_report
    }

    /// Redo workers this node runs.
    pub fn redo_workers(&self) -> usize {
        self.redo_workers
    }

    /// Redo totals and the recent rate. Read without the redo lock,
    /// which the dispatcher holds while it applies: the WAL receiver asks
    /// for the rate in every status and must never wait for redo.
    pub fn redo_stats(&self) -> Arc<RedoStats> {
        self.redo_stats.clone()
    }

    /// Per-worker redo totals, in worker order.
    pub fn redo_worker_stats(&self) -> Arc<Vec<WorkerStats>> {
        self.redo_worker_stats.clone()
    }

    fn wal_source(&self) -> WalSource {
        WalSource {
            dir: self.data_dir.join("wal"),
            segment_bytes: self.wal.config().segment_bytes,
            timeline: self.timeline(),
        }
    }

    /// Standby: cuts the WAL at `to` (`prev`: the LSN of the record
    /// ending there), after a timeline switch showed the tail was never
    /// the cluster's. Redo must not have applied past `to`; it continues
    /// from the applied position.
    pub fn cut_wal(&self, to: Lsn, prev: Lsn) -> Result<(), EngineError> {
        self.feed.lower_safe(to);
        let _paused = self.feed.pause();
        if let Some(e) = self.redo_fault() {
            return Err(EngineError::RedoStopped(e));
        }
        let mut redo = self.redo.lock();
        assert!(
            self.applied.lsn() <= to,
            "cutting the WAL at {to} below what redo applied ({})",
            self.applied.lsn()
        );
        self.wal.truncate_to(to, prev)?;
        redo.rewind(self.applied.position());
        Ok(())
    }

    /// The node's role, read without the engine lock (sessions ask on
    /// every write). Changes only with the state's role, under the lock.
    pub fn role(&self) -> Role {
        if self.is_standby.load(std::sync::atomic::Ordering::Acquire) {
            Role::Standby
        } else {
            Role::Primary
        }
    }

    /// A data-file sync that failed is final (`engine::data_file`): the
    /// first time an error shows it, writes are fenced for good.
    fn note_failure(&self, e: &EngineError) {
        if matches!(e, EngineError::DataFile(DataFileError::Failed { .. }))
            && self.write_block() != Some(WriteBlock::DataFileFailed)
        {
            tracing::error!(error = %e, "data file failed: refusing writes; restart the node to recover from the WAL");
            self.write_block.store(
                WriteBlock::DataFileFailed as u8,
                std::sync::atomic::Ordering::Release,
            );
        }
    }

    /// Fuzzy checkpoint: fixes a redo point, writes every page dirty at
    /// that moment (in small batches, releasing the lock between them),
    /// syncs the data file, records the redo point in the control file and
    /// recycles WAL segments before it.
    pub fn checkpoint(&self) -> Result<RedoPoint, EngineError> {
        self.checkpoint_keeping(Lsn(u64::MAX))
    }

    /// A checkpoint that keeps WAL segments from `keep_from` on (WAL that
    /// standbys or builds still need) even though recovery no longer does.
    pub fn checkpoint_keeping(&self, keep_from: Lsn) -> Result<RedoPoint, EngineError> {
        let r = self.checkpoint_inner(keep_from);
        if let Err(e) = &r {
            self.note_failure(e);
        }
        r
    }

    fn checkpoint_inner(&self, keep_from: Lsn) -> Result<RedoPoint, EngineError> {
        // After a failed sync nothing written since may be on disk: the
        // redo point must not move (a restart recovers from the WAL).
        if let Some(first) = self.pool.file_failure() {
            return Err(EngineError::DataFile(DataFileError::Failed { first }));
        }
        let (redo, redo_prev, dirty) = {
            let _gate = self.gate.reader();
            let mut st = self.state.lock();
            // A standby's pages reflect only applied groups: its redo point
            // (a restartpoint) is the applied position, not the WAL's end.
            let (next, prev) = match st.role {
                Role::Primary => self.wal.insert_position(),
                Role::Standby => self.applied.position(),
            };
            st.redo_lsn = next;
            (next, prev, self.pool.dirty_pages())
        };
        self.wal.wait_flushed_blocking(redo)?;
        // Shard by shard, without the engine lock: a transaction changes
        // pool pages only while it holds their shard.
        for chunk in dirty.chunks(64) {
            self.pool.write_dirty(chunk)?;
        }
        self.pool.sync()?;
        let mut control = self.control.lock();
        let cd = control.data();
        control.write(ControlData {
            redo_lsn: redo,
            redo_prev,
            checkpoint_end: self.wal.inserted(),
            ..cd
        })?;
        drop(control);
        if let Err(e) = self.wal.recycle_before(redo.min(keep_from)) {
            // Not fatal: the segments stay until the next checkpoint.
            tracing::warn!(error = %e, "recycling WAL segments failed");
        }
        self.checkpoints
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(%redo, pages = dirty.len(), "checkpoint done");
        Ok(RedoPoint { redo, redo_prev })
    }

    /// Refuses new writes, flushes the WAL, checkpoints, and marks the
    /// control file as cleanly shut down.
    pub fn shutdown(&self) -> Result<Lsn, EngineError> {
        self.state.lock().shutting_down = true;
        self.checkpoint()?;
        let end = self.wal.shutdown()?;
        let mut control = self.control.lock();
        let cd = control.data();
        control.write(ControlData {
            state: NodeState::ShutDown,
            checkpoint_end: end,
            ..cd
        })?;
        Ok(end)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// The data file's failed sync, if one failed (final until a restart).
    pub fn data_file_failure(&self) -> Option<String> {
        self.pool.file_failure()
    }

    /// Buffer-pool counters, summed over the shards now.
    pub fn pool_stats(&self) -> Arc<PoolStats> {
        self.pool.stats()
    }

    pub fn system_id(&self) -> SystemId {
        self.system_id
    }

    pub fn timeline(&self) -> TimelineId {
        TimelineId(self.timeline.load(std::sync::atomic::Ordering::Acquire))
    }

    /// True when this start created the data directory (a new cluster).
    pub fn created(&self) -> bool {
        self.created
    }

    /// True when the last run ended without a clean shutdown.
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    pub fn write_block(&self) -> Option<WriteBlock> {
        WriteBlock::from_u8(self.write_block.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Blocks (or with `None` allows) writes. Taking the state lock orders
    /// it with `execute`: once this returns, no write that has not yet
    /// appended will append, so `wal().inserted()` bounds every write.
    pub fn set_write_block(&self, block: Option<WriteBlock>) {
        let _st = self.state.lock();
        if self.write_block() == Some(WriteBlock::DataFileFailed) {
            // Final until a restart (`engine::data_file`).
            return;
        }
        self.write_block.store(
            block.map_or(0, |b| b as u8),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// Standby about to promote (its WAL receiver stopped): applies every
    /// complete group between the applied position and the end of the
    /// local WAL, and says whether the WAL ends inside a group.
    pub fn replay_to_wal_end(&self) -> Result<ReplayEnd, EngineError> {
        assert_eq!(self.role(), Role::Standby, "replay_to_wal_end on a primary");
        // The dispatcher applies what the receiver fed and parks (the
        // receiver stopped, so nothing more comes); this thread then
        // drives redo to the end of the WAL.
        let _paused = self.feed.pause();
        let mut redo = self.redo.lock();
        if let Some(e) = self.redo_fault() {
            return Err(EngineError::RedoStopped(e));
        }
        let (wal_end, _) = self.wal.insert_position();
        self.wal.wait_flushed_blocking(wal_end)?;
        let source = self.wal_source();
        redo.read_wal(&source, wal_end, self)
            .and_then(|_| redo.flush(self))
            .map_err(EngineError::Redo)?;
        // An unfinished group at the end is not applied: the new timeline
        // starts with an Abort that closes it (`become_primary`).
        let complete = redo.complete();
        redo.rewind(complete);
        Ok(ReplayEnd {
            wal_end,
            partial_group: self.applied.lsn() < wal_end,
        })
    }

    /// Standby to primary on timeline `tli` (after [`replay_to_wal_end`];
    /// the history file of `tli` must already be durable). With
    /// `abort_partial`, first ends the incomplete group at the WAL's end
    /// with an `Abort` record so new groups never chain on to it. The
    /// control file says primary on `tli` when this returns.
    ///
    /// [`replay_to_wal_end`]: Engine::replay_to_wal_end
    pub fn become_primary(&self, tli: TimelineId, abort_partial: bool) -> Result<Lsn, EngineError> {
        let mut st = self.state.lock();
        assert_eq!(st.role, Role::Standby, "become_primary on a primary");
        assert!(tli > self.timeline(), "a promotion starts a newer timeline");
        if abort_partial {
            let (next, prev) = self.wal.insert_position();
            let mut rec = Vec::new();
            crate::wal::record::Record::Abort.encode_into(prev, &mut rec);
            let end = self.wal.append(&rec, next)?;
            self.wal.wait_flushed_blocking(end)?;
            self.applied.reset(end, next);
            self.redo.lock().rewind((end, next));
        }
        debug_assert_eq!(self.applied.lsn(), self.wal.insert_position().0);
        self.timeline
            .store(tli.0, std::sync::atomic::Ordering::Release);
        st.role = Role::Primary;
        self.is_standby
            .store(false, std::sync::atomic::Ordering::Release);
        self.wal.set_sessions_append(true);
        let mut control = self.control.lock();
        let cd = control.data();
        control.write(ControlData {
            role: Role::Primary,
            timeline: tli,
            ..cd
        })?;
        Ok(self.wal.insert_position().0)
    }

    /// Primary to standby (switchover: writes are blocked and the node
    /// will follow the new primary from the end of its WAL, which is
    /// flushed first). Returns that end.
    pub fn become_standby(&self) -> Result<Lsn, EngineError> {
        let mut st = self.state.lock();
        assert_eq!(st.role, Role::Primary, "become_standby on a standby");
        let (end, last) = self.wal.insert_position();
        self.wal.wait_flushed_blocking(end)?;
        self.applied.reset(end, last);
        self.redo.lock().rewind((end, last));
        self.feed.set_safe(end);
        st.role = Role::Standby;
        self.is_standby
            .store(true, std::sync::atomic::Ordering::Release);
        self.wal.set_sessions_append(false);
        self.write_block
            .store(0, std::sync::atomic::Ordering::Release);
        let mut control = self.control.lock();
        let cd = control.data();
        control.write(ControlData {
            role: Role::Standby,
            ..cd
        })?;
        Ok(end)
    }

    /// Standby adopting a newer timeline (its history file is durable).
    pub fn set_timeline(&self, tli: TimelineId) -> Result<(), EngineError> {
        let _st = self.state.lock();
        self.timeline
            .store(tli.0, std::sync::atomic::Ordering::Release);
        let mut control = self.control.lock();
        let cd = control.data();
        control.write(ControlData {
            timeline: tli,
            ..cd
        })?;
        Ok(())
    }

    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Pages allocated in the data file (the tree's high-water mark).
    pub fn page_count(&self) -> u32 {
        self.state.lock().meta.page_count
    }

    pub fn key_count(&self) -> u64 {
        self.state.lock().meta.key_count
    }

    pub fn redo_lsn(&self) -> Lsn {
        self.control.lock().data().redo_lsn
    }
}

impl RedoHooks for Engine {
    fn has_readers(&self) -> bool {
        true
    }

    fn close_gate(&self) {
        self.gate.close();
    }

    fn open_gate(&self) {
        self.gate.open();
    }

    fn applied(&self, end: Lsn, last: Lsn) {
        self.applied.advance(end, last);
    }

    fn refresh_meta(&self) -> Result<(), RedoError> {
        let mut st = self.state.lock();
        let mut pages = self.pool.guards();
        let read = pages
            .get(PageNo::META)
            .map_err(|e| e.to_string())
            .and_then(|(p, _)| Meta::read(p).map_err(|e| e.to_string()));
        match read {
            Ok(Some(meta)) => st.meta = meta,
            Ok(None) => {}
            Err(reason) => {
                return Err(RedoError::Page {
                    lsn: self.applied.lsn(),
                    page: PageNo::META,
                    reason,
                })
            }
        }
        Ok(())
    }
}

impl RedoHost for Engine {
    fn redo(&self) -> &Mutex<Redo> {
        &self.redo
    }

    fn feed(&self) -> &Feed {
        &self.feed
    }

    fn wal_source(&self) -> WalSource {
        Engine::wal_source(self)
    }

    fn redo_failed(&self, error: RedoError) {
        {
            // The first error is the cause; later ones (other workers, or
            // the same error returned again) add nothing.
            let mut fault = self.redo_fault.lock();
            if fault.is_some() {
                return;
            }
            tracing::error!(error = %error, "redo stopped: this node needs a build; it serves nothing until then");
            *fault = Some(error);
        }
        self.applied.wake_all();
    }

    fn redo_has_failed(&self) -> bool {
        self.redo_fault.lock().is_some()
    }
}

/// Starts the `redo-dispatcher` thread (redo worker 0 of a standby's
/// streaming redo) on `core`. It holds the engine weakly: it ends when the
/// engine is dropped.
fn start_dispatcher(engine: &Arc<Engine>, core: Option<usize>) -> Result<(), EngineError> {
    let weak = Arc::downgrade(engine);
    let feed = engine.feed.clone();
    std::thread::Builder::new()
        .name("redo-dispatcher".into())
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
            crate::redo::pipeline::run_dispatcher(&feed, || {
                weak.upgrade().map(|e| e as Arc<dyn RedoHost>)
            });
        })
        .map(|_| ())
        .map_err(|e| {
            EngineError::DataFile(DataFileError::Io {
                op: "start the redo dispatcher",
                message: e.to_string(),
            })
        })
}

/// A new cluster's WAL starts in segment 0; it must exist before the
/// control file that points into it.
fn prepare_first_segment(wal_dir: &Path, segment_bytes: u64) -> Result<(), EngineError> {
    let segs = crate::wal::segment::SegmentDir::new(wal_dir, segment_bytes, TimelineId::FIRST)?;
    let mut ring = crate::io::Ring::new(8).map_err(|source| {
        EngineError::DataFile(DataFileError::Io {
            op: "io_uring setup",
            message: source.to_string(),
        })
    })?;
    segs.prepare(
        &mut ring,
        crate::ids::SegmentNo::of(WAL_START, segment_bytes),
    )?;
    Ok(())
}

/// Verifies every page of a data directory offline (the node must be
/// stopped): returns the page numbers whose checksum or header fails.
pub fn verify_pages(data_dir: &Path) -> Result<(u32, Vec<(PageNo, PageError)>), EngineError> {
    let mut file = DataFile::open(&data_dir.join("pages"), 1)?;
    let pages = file.allocated_pages();
    let mut bad = Vec::new();
    let mut buf = crate::page::new_page_buf();
    for n in 0..pages {
        file.read_page(PageNo(n), &mut buf)?;
        if let Err(e) = crate::page::verify(&buf, PageNo(n)) {
            bad.push((PageNo(n), e));
        }
    }
    Ok((pages, bad))
}
