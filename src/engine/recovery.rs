//! Crash recovery: redo complete record groups from the checkpoint's redo
//! point through the redo pipeline (`redo::pipeline`, with the node's redo
//! workers), and find where the WAL continues: after the last complete
//! group.
//!
//! A transaction torn by a crash is never half applied (the pipeline
//! applies complete groups only); the incomplete group at the end of the
//! WAL is discarded, and the WAL is cut there by [`crate::wal::Wal::open`].
//! A page whose LSN is already at or past a record is skipped (the page was
//! written after that change). A record that replaces the whole page
//! (image, meta) never reads the old page, so a torn page on disk is
//! repaired by the image logged after the checkpoint.
//!
//! The WAL is made durable before redo begins (every segment from the
//! redo point on is fdatasync'ed): a process crash leaves WAL the kernel
//! had not yet written, and pages redone from it must not reach the disk
//! before it does (the WAL rule).

use std::path::Path;

use super::control_file::ControlData;
use super::EngineError;
use crate::ids::{Lsn, SegmentNo};
use crate::redo::pipeline::{Redo, RedoHooks, WalSource};
use crate::redo::RedoError;
use crate::wal::segment::SegmentDir;

/// Where the WAL continues after recovery.
#[derive(Clone, Copy, Debug)]
pub struct RecoveryEnd {
    /// End of the last complete group: the next record goes here.
    pub next: Lsn,
    /// LSN of the last record of that group (the next record's prev link).
    pub prev: Lsn,
    pub groups: u64,
}

/// No reader exists during crash recovery: no gate, nothing to publish.
struct Recovering;

impl RedoHooks for Recovering {
    fn has_readers(&self) -> bool {
        false
    }

    fn close_gate(&self) {}

    fn open_gate(&self) {}

    fn applied(&self, _end: Lsn, _last: Lsn) {}

    fn refresh_meta(&self) -> Result<(), RedoError> {
        Ok(())
    }
}

/// Redoes the WAL from the checkpoint `cd` names with `redo` (which
/// starts there); returns where the WAL continues.
pub fn redo(redo: &mut Redo, wal_dir: &Path, cd: &ControlData) -> Result<RecoveryEnd, EngineError> {
    sync_segments_from(wal_dir, cd)?;
    let source = WalSource {
        dir: wal_dir.to_path_buf(),
        segment_bytes: cd.segment_bytes,
        timeline: cd.timeline,
    };
    let groups_before = redo
        .stats()
        .groups
        .load(std::sync::atomic::Ordering::Relaxed);
    let read = redo
        .read_wal(&source, Lsn(u64::MAX), &Recovering)
        .and_then(|read| redo.flush(&Recovering).map(|()| read))
        .map_err(EngineError::Redo)?;
    if redo.open_group() {
        tracing::warn!(
            at = %redo.complete().0,
            "discarding an incomplete transaction at the end of the WAL"
        );
    }
    let (next, prev) = redo.complete();
    redo.rewind((next, prev));
    tracing::info!(at = %next, reason = ?read.ended, "end of WAL");
    Ok(RecoveryEnd {
        next,
        prev,
        groups: redo
            .stats()
            .groups
            .load(std::sync::atomic::Ordering::Relaxed)
            - groups_before,
    })
}

/// fdatasync of every WAL segment from the one holding the redo point on.
fn sync_segments_from(wal_dir: &Path, cd: &ControlData) -> Result<(), EngineError> {
    let segs = SegmentDir::new(wal_dir, cd.segment_bytes, cd.timeline)?;
    let first = SegmentNo::of(cd.redo_lsn, cd.segment_bytes);
    for (segno, (_, path)) in segs.list()? {
        if segno < first {
            continue;
        }
        std::fs::File::open(&path)
            .and_then(|f| f.sync_data())
            .map_err(|e| crate::wal::segment::io_error("fdatasync", &path, e))?;
    }
    Ok(())
}
