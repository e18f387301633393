//! Full build: a new standby from an empty directory while the source
//! keeps serving (DESIGN.md section 4, "build").
//!
//! Source side ([`serve`]): checkpoint (its redo point R is pinned so the
//! WAL from R stays), stream every page of the data file as it is on disk
//! (pages may be read mid-write: any page changed after R gets a full-page
//! image in the WAL from R, which redo applies without reading the page,
//! the argument PostgreSQL's base backups rest on), then the WAL from R to
//! the source's flushed end E, then `BuildEnd`.
//!
//! Target side ([`run`]): refuses a non-empty directory, marks the
//! directory `build_in_progress` first (a node refuses to start on it:
//! "needs build"), writes pages and WAL (checked record by record against
//! the chain), and only at the end writes the control file (role standby,
//! redo point R) and the `upstream` file; then removes the marker. The
//! new standby's first start redoes R..E and streams from E.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::conn::{self, ConnError, FrameWriter};
use super::context::ReplContext;
use super::frame::{Message, Purpose};
use super::sender::Peer;
use super::wal_range;
use crate::engine::control_file::{ControlData, ControlFile, NodeState, Role};
use crate::ids::{Lsn, SegmentNo};
use crate::page::PAGE_BYTES;
use crate::wal::segment::SegmentDir;

/// Pages per `BuildPages` frame (512 KiB).
const PAGES_PER_FRAME: u32 = 64;
pub const MARKER: &str = "build_in_progress";
pub const UPSTREAM_FILE: &str = "upstream";

fn io(e: impl std::fmt::Display) -> ConnError {
    ConnError::Io(std::io::Error::other(e.to_string()))
}

/// Source side: streams a consistent base to a building standby.
pub async fn serve(ctx: &ReplContext, peer: &Peer, w: &mut FrameWriter) -> Result<(), ConnError> {
    let engine = &ctx.engine;
    let id = ctx.next_id();
    // Pin from the current end first: the checkpoint's redo point is later.
    ctx.pin(id, engine.wal().inserted());
    let result = async {
        let point = engine.checkpoint_keeping(ctx.retention_floor()).map_err(io)?;
        ctx.pin(id, point.redo);
        let page_count = engine.page_count();
        let segs = ctx.segments().map_err(io)?;
        w.send(&Message::BuildStart {
            system_id: engine.system_id(),
            timeline: engine.timeline(),
            redo_lsn: point.redo,
            redo_prev: point.redo_prev,
            segment_bytes: segs.segment_bytes(),
            page_count,
        })
        .await?;
        let history = ctx.history.lock().clone();
        if !history.switches().is_empty() {
            w.send(&Message::TimelineSwitch { history }).await?;
        }
        let file = File::open(engine.data_dir().join("pages")).map_err(ConnError::Io)?;
        // Page reads go through io_uring; a 512 KiB read from the page cache
        // blocks this sender thread for tens of microseconds at most.
        let mut ring = crate::io::Ring::new(8).map_err(ConnError::Io)?;
        let mut first = 0u32;
        while first < page_count {
            let n = PAGES_PER_FRAME.min(page_count - first);
            let mut pages = vec![0u8; n as usize * PAGE_BYTES];
            // Short at the end of the file: pages past it stay zero, and
            // redo of the WAL from the redo point creates them.
            ring.read_at(file.as_raw_fd(), &mut pages, first as u64 * PAGE_BYTES as u64)
                .map_err(ConnError::Io)?;
            w.send(&Message::BuildPages { first_page: first, pages }).await?;
            first += n;
        }
        let end = engine.wal().flushed();
        let mut at = point.redo;
        while at < end {
            let bytes = wal_range::read_records(&segs, at, end).map_err(io)?;
            if bytes.is_empty() {
                return Err(io(format!("no whole WAL record at {at}")));
            }
            let len = bytes.len() as u64;
            w.send(&Message::BuildWal { start: at, bytes }).await?;
            at = at.add(len);
        }
        w.send(&Message::BuildEnd { end_lsn: end, end_prev: Lsn::ZERO }).await?;
        tracing::info!(name = %peer.name, pages = page_count, redo = %point.redo, end = %end, "build sent");
        Ok(())
    }
    .await;
    ctx.unpin(id);
    result
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("data directory {0} is not empty: a build needs an empty (or new) directory")]
    NotEmpty(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("WAL from the source is damaged at {lsn}: {reason}")]
    BadWal { lsn: Lsn, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Options of `tandem build`.
pub struct BuildOptions {
    pub from: String,
    pub data_dir: PathBuf,
    pub name: String,
    pub secret: Vec<u8>,
    /// Bytes per second, 0 = unlimited.
    pub max_rate: u64,
    pub progress: bool,
}

/// Target side: builds `data_dir` into a standby of `from`.
pub fn run(opts: &BuildOptions) -> Result<BuildSummary, BuildError> {
    prepare_dir(&opts.data_dir)?;
    let runtime = crate::io::net_runtime::network_runtime()?;
    runtime.block_on(receive(opts))
}

pub struct BuildSummary {
    pub bytes: u64,
    pub seconds: f64,
    pub pages: u32,
    pub redo: Lsn,
    pub end: Lsn,
}

fn prepare_dir(dir: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir)?;
    if dir.join(MARKER).exists() {
        // An interrupted build of ours: start over.
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else if entry.file_name() != MARKER {
                std::fs::remove_file(&path)?;
            }
        }
    }
    let mut entries = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name());
    if let Some(first) = entries.find(|n| n != MARKER) {
        let _ = first;
        return Err(BuildError::NotEmpty(dir.display().to_string()));
    }
    File::create(dir.join(MARKER))?.sync_all()?;
    Ok(())
}

async fn receive(opts: &BuildOptions) -> Result<BuildSummary, BuildError> {
    let started = Instant::now();
    let stream = compio::net::TcpStream::connect(opts.from.as_str()).await?;
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = conn::split(stream);
    conn::handshake_as_standby(
        &mut r,
        &mut w,
        &opts.secret,
        &opts.name,
        None,
        Lsn::ZERO,
        Purpose::Build,
    )
    .await?;
    let start = r.recv().await?;
    let Message::BuildStart {
        system_id,
        timeline,
        redo_lsn,
        redo_prev,
        segment_bytes,
        page_count,
    } = start
    else {
        return Err(conn::unexpected("BuildStart", &start).into());
    };
    let dir = &opts.data_dir;
    let pages_file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(dir.join("pages"))?;
    pages_file.set_len(page_count as u64 * PAGE_BYTES as u64)?;
    let wal_dir = dir.join("wal");
    std::fs::create_dir_all(&wal_dir)?;
    let segs = SegmentDir::new(&wal_dir, segment_bytes, timeline)
        .map_err(|e| BuildError::Other(e.to_string()))?;
    let mut ring = crate::io::Ring::new(8)?;
    let mut open_seg: Option<(SegmentNo, File)> = None;
    let total = page_count as u64 * PAGE_BYTES as u64;
    let mut bytes = 0u64;
    let mut prev = redo_prev;
    let mut next = redo_lsn;
    let mut last_report = Instant::now();
    loop {
        let m = r.recv().await?;
        match m {
            Message::BuildPages { first_page, pages } => {
                ring.write_all_at(
                    pages_file.as_raw_fd(),
                    &pages,
                    first_page as u64 * PAGE_BYTES as u64,
                )?;
                bytes += pages.len() as u64;
            }
            Message::TimelineSwitch { history } => {
                if history.current() != timeline {
                    return Err(BuildError::Other(format!(
                        "the source sent the history of timeline {}, its base is on {timeline}",
                        history.current()
                    )));
                }
                super::timeline::write(&wal_dir, &history)?;
            }
            Message::BuildWal { start, bytes: wal } => {
                if start != next {
                    return Err(BuildError::BadWal {
                        lsn: start,
                        reason: format!("expected WAL at {next}"),
                    });
                }
                let (_, last) =
                    wal_range::validate_chain(&wal, start, prev).map_err(|(lsn, e)| {
                        BuildError::BadWal {
                            lsn,
                            reason: e.to_string(),
                        }
                    })?;
                write_wal(&segs, &mut ring, &mut open_seg, start, &wal)?;
                prev = last;
                next = start.add(wal.len() as u64);
                bytes += wal.len() as u64;
            }
            Message::BuildEnd { end_lsn, .. } => {
                if end_lsn != next {
                    return Err(BuildError::BadWal {
                        lsn: next,
                        reason: format!("build ended at {end_lsn}"),
                    });
                }
                break;
            }
            other => return Err(conn::unexpected("BuildPages/BuildWal/BuildEnd", &other).into()),
        }
        throttle(opts.max_rate, bytes, started).await;
        if opts.progress && last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            report(bytes, total, started);
        }
    }
    pages_file.sync_all()?;
    if let Some((_, f)) = open_seg.take() {
        f.sync_all()?;
    }
    // The segment holding the end must exist for the node to continue it.
    if !segs.path(SegmentNo::of(next, segment_bytes)).exists() {
        segs.prepare(&mut ring, SegmentNo::of(next, segment_bytes))
            .map_err(|e| BuildError::Other(e.to_string()))?;
    }
    ControlFile::create(
        &dir.join("control"),
        ControlData {
            role: Role::Standby,
            system_id,
            timeline,
            state: NodeState::ShutDown,
            redo_lsn,
            redo_prev,
            checkpoint_end: next,
            segment_bytes,
            created_us: super::sender::now_us(),
        },
    )
    .map_err(|e| BuildError::Other(e.to_string()))?;
    let mut up = File::create(dir.join(UPSTREAM_FILE))?;
    writeln!(up, "{}", opts.from)?;
    up.sync_all()?;
    std::fs::remove_file(dir.join(MARKER))?;
    File::open(dir)?.sync_all()?;
    if opts.progress {
        report(bytes, total, started);
        eprintln!();
    }
    Ok(BuildSummary {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        pages: page_count,
        redo: redo_lsn,
        end: next,
    })
}

fn write_wal(
    segs: &SegmentDir,
    ring: &mut crate::io::Ring,
    open_seg: &mut Option<(SegmentNo, File)>,
    start: Lsn,
    bytes: &[u8],
) -> Result<(), BuildError> {
    let seg_bytes = segs.segment_bytes();
    let mut done = 0usize;
    while done < bytes.len() {
        let at = start.add(done as u64);
        let segno = SegmentNo::of(at, seg_bytes);
        if open_seg.as_ref().map(|(s, _)| *s) != Some(segno) {
            if let Some((_, f)) = open_seg.take() {
                f.sync_all()?;
            }
            if !segs.path(segno).exists() {
                segs.prepare(ring, segno)
                    .map_err(|e| BuildError::Other(e.to_string()))?;
            }
            *open_seg = Some((
                segno,
                segs.open(segno)
                    .map_err(|e| BuildError::Other(e.to_string()))?,
            ));
        }
        let Some((_, f)) = open_seg.as_ref() else {
            break;
        };
        let off = at.0 - segno.start(seg_bytes).0;
        let n = ((seg_bytes - off) as usize).min(bytes.len() - done);
        ring.write_all_at(f.as_raw_fd(), &bytes[done..done + n], off)?;
        done += n;
    }
    Ok(())
}

async fn throttle(max_rate: u64, bytes: u64, started: Instant) {
    if max_rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(bytes as f64 / max_rate as f64);
    let elapsed = started.elapsed();
    if due > elapsed {
        compio::time::sleep(due - elapsed).await;
    }
}

fn report(bytes: u64, total_pages_bytes: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    let rate = bytes as f64 / secs / (1 << 20) as f64;
    let left = total_pages_bytes.saturating_sub(bytes) as f64 / (1 << 20) as f64;
    let eta = if rate > 0.0 { left / rate } else { 0.0 };
    eprint!(
        "\rbuild: {:.1} MiB received, {:.1} MiB/s, ETA {:.0} s (pages {:.1} MiB)   ",
        bytes as f64 / (1 << 20) as f64,
        rate,
        eta,
        total_pages_bytes as f64 / (1 << 20) as f64
    );
}
