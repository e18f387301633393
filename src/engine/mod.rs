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
pub mod recovery;
pub mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use self::buffer_pool::{BufferPool, PoolError, PoolStats};
use self::control_file::{ControlData, ControlError, ControlFile, NodeState, Role};
use self::data_file::{DataFile, DataFileError};
use self::tx::Tx;
use crate::ids::{Lsn, PageNo, SystemId, TimelineId};
use crate::page::meta::{Meta, MetaError};
use crate::page::{PageError, PageKind};
use crate::redo::ApplyError;
use crate::wal::reader::OwnedRecordBytes;
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
            PoolError::WalFlush { .. } => EngineError::Bug("WAL flush failed during eviction"),
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
}

impl WriteBlock {
    fn from_u8(v: u8) -> Option<WriteBlock> {
        match v {
            1 => Some(WriteBlock::Switchover),
            2 => Some(WriteBlock::Pending),
            3 => Some(WriteBlock::NeedsBuild),
            4 => Some(WriteBlock::NoTimelineYet),
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
        })
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
}

struct State {
    pool: BufferPool,
    meta: Meta,
    /// Redo point of the last checkpoint begun: pages not changed since
    /// get a full image on their next change.
    redo_lsn: Lsn,
    shutting_down: bool,
    /// Standby: refuses writes; pages change only by [`Engine::apply_group`].
    role: Role,
    /// Standby: end of the last applied record group and the LSN of its
    /// last record (the redo point a restartpoint may use).
    applied: (Lsn, Lsn),
}

pub struct Engine {
    state: Mutex<State>,
    control: Mutex<ControlFile>,
    wal: Arc<Wal>,
    pool_stats: Arc<PoolStats>,
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
                source,
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
        let mut pool = BufferPool::new(file, cfg.buffer_pool_pages, Box::new(|_| Ok(())));
        let started = Instant::now();
        let end = recovery::redo(&mut pool, &wal_dir, &cd)?;
        tracing::info!(
            from = %cd.redo_lsn, to = %end.next, groups = end.groups,
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
        pool.set_flush_to(Box::new(move |lsn| {
            flush_wal
                .wait_flushed_blocking(lsn)
                .map_err(|e| e.to_string())
        }));
        let meta = crate::page::meta::Meta::read(pool.get(PageNo::META)?.0)?;
        control.write(ControlData {
            state: NodeState::Running,
            ..cd
        })?;
        let pool_stats = pool.stats();
        let engine = Arc::new(Engine {
            state: Mutex::new(State {
                pool,
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
                applied: (end.next, end.prev),
            }),
            control: Mutex::new(control),
            wal,
            pool_stats,
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
        f: impl FnOnce(&mut Tx<'_>) -> Result<R, EngineError>,
    ) -> Result<Outcome<R>, EngineError> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let (next, prev) = self.wal.insert_position();
        let mut tx = Tx::new(&mut st.pool, st.meta, st.redo_lsn, next, prev);
        let value = f(&mut tx)?;
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
            st.pool.install(*no, buf, end)?;
        }
        st.meta = out.meta;
        Ok(Outcome {
            value,
            wait_lsn: end.max(out.read_visible),
            wrote: true,
        })
    }

    /// Standby: applies one complete record group that is already durable
    /// in the local WAL; `end` is the LSN after its commit record. Readers
    /// see all of the group or none of it (the engine lock is held).
    pub fn apply_group(
        &self,
        group: &[(Lsn, OwnedRecordBytes)],
        end: Lsn,
        last: Lsn,
    ) -> Result<(), EngineError> {
        let mut st = self.state.lock();
        let st = &mut *st;
        assert_eq!(st.role, Role::Standby, "apply_group on a primary");
        assert!(
            end > st.applied.0,
            "applied LSN must grow: {} -> {end}",
            st.applied.0
        );
        recovery::apply_group(&mut st.pool, group)?;
        if group
            .iter()
            .any(|(_, r)| matches!(r.record(), crate::wal::record::Record::MetaSet { .. }))
        {
            if let Some(meta) = Meta::read(st.pool.get(PageNo::META)?.0)? {
                st.meta = meta;
            }
        }
        st.applied = (end, last);
        Ok(())
    }

    /// A digest of every page (CRC32C chained over each page's bytes but
    /// its checksum field, which only disk copies carry) and the LSN it
    /// reflects: equal on nodes holding the same data (DESIGN.md section 3
    /// invariant). Holds the engine lock for the whole walk: a debugging
    /// and test tool, not for production traffic.
    pub fn digest(&self) -> Result<(Lsn, u32, u32), EngineError> {
        let mut st = self.state.lock();
        let st = &mut *st;
        let lsn = match st.role {
            Role::Primary => self.wal.insert_position().0,
            Role::Standby => st.applied.0,
        };
        let pages = st.meta.page_count;
        let mut digest = 0u32;
        for n in 0..pages {
            let (p, _) = st.pool.get(PageNo(n))?;
            digest = crc32c::crc32c_append(digest, &p[..8]);
            digest = crc32c::crc32c_append(digest, &p[12..]);
        }
        Ok((lsn, pages, digest))
    }

    /// Standby: end of the last applied group and the LSN of its last
    /// record (where redo of the rest of the WAL starts).
    pub fn applied_position(&self) -> (Lsn, Lsn) {
        self.state.lock().applied
    }

    /// Standby: end of the last applied group.
    pub fn applied_lsn(&self) -> Lsn {
        self.state.lock().applied.0
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
        let (redo, redo_prev, dirty) = {
            let mut st = self.state.lock();
            // A standby's pages reflect only applied groups: its redo point
            // (a restartpoint) is the applied position, not the WAL's end.
            let (next, prev) = match st.role {
                Role::Primary => self.wal.insert_position(),
                Role::Standby => st.applied,
            };
            st.redo_lsn = next;
            (next, prev, st.pool.dirty_pages())
        };
        self.wal.wait_flushed_blocking(redo)?;
        for chunk in dirty.chunks(64) {
            self.state.lock().pool.write_dirty(chunk)?;
        }
        self.state.lock().pool.sync()?;
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

    pub fn pool_stats(&self) -> &Arc<PoolStats> {
        &self.pool_stats
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
        self.write_block.store(
            block.map_or(0, |b| b as u8),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// Standby about to promote (its WAL receiver stopped): applies every
    /// complete group between the applied position and the end of the
    /// local WAL, and says whether the WAL ends inside a group.
    pub fn replay_to_wal_end(&self) -> Result<ReplayEnd, EngineError> {
        let mut st = self.state.lock();
        let st = &mut *st;
        assert_eq!(st.role, Role::Standby, "replay_to_wal_end on a primary");
        let (wal_end, _) = self.wal.insert_position();
        self.wal.wait_flushed_blocking(wal_end)?;
        let (from, from_prev) = st.applied;
        let mut reader = crate::wal::reader::WalReader::open(
            &self.data_dir.join("wal"),
            self.wal.config().segment_bytes,
            self.timeline(),
            from,
            from_prev,
        )?;
        let mut group: Vec<(Lsn, OwnedRecordBytes)> = Vec::new();
        while let Some((lsn, rec)) = reader.next()? {
            if lsn >= wal_end {
                break;
            }
            let end = lsn.add(rec.bytes().len() as u64);
            match rec.record() {
                crate::wal::record::Record::Commit { .. } => {
                    recovery::apply_group(&mut st.pool, &group)?;
                    group.clear();
                    st.applied = (end, lsn);
                }
                crate::wal::record::Record::Abort => {
                    group.clear();
                    st.applied = (end, lsn);
                }
                _ => group.push((lsn, rec)),
            }
        }
        if let Some(meta) = Meta::read(st.pool.get(PageNo::META)?.0)? {
            st.meta = meta;
        }
        Ok(ReplayEnd {
            wal_end,
            partial_group: st.applied.0 < wal_end,
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
            st.applied = (end, next);
        }
        debug_assert_eq!(st.applied.0, self.wal.insert_position().0);
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
        st.applied = (end, last);
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

/// A new cluster's WAL starts in segment 0; it must exist before the
/// control file that points into it.
fn prepare_first_segment(wal_dir: &Path, segment_bytes: u64) -> Result<(), EngineError> {
    let segs = crate::wal::segment::SegmentDir::new(wal_dir, segment_bytes, TimelineId::FIRST)?;
    let mut ring = crate::io::Ring::new(8).map_err(|source| {
        EngineError::DataFile(DataFileError::Io {
            op: "io_uring setup",
            source,
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
