//! Crash recovery: redo complete record groups from the checkpoint's redo
//! point, cut the WAL after the last complete group.
//!
//! Records are buffered per group and applied only when the group's
//! `Commit` arrives, so a transaction torn by a crash is never half
//! applied. A page whose LSN is already at or past a record is skipped
//! (the page was written after that change). A record that replaces the
//! whole page (image, meta) never reads the old page, so a torn page on
//! disk is repaired by the image logged after the checkpoint.

use std::path::Path;

use super::buffer_pool::BufferPool;
use super::control_file::ControlData;
use super::EngineError;
use crate::ids::Lsn;
use crate::redo;
use crate::wal::reader::{OwnedRecordBytes, WalReader};
use crate::wal::record::Record;

/// Where the WAL continues after recovery.
#[derive(Clone, Copy, Debug)]
pub struct RecoveryEnd {
    /// End of the last complete group: the next record goes here.
    pub next: Lsn,
    /// LSN of the last record of that group (the next record's prev link).
    pub prev: Lsn,
    pub groups: u64,
}

pub fn redo(
    pool: &mut BufferPool,
    wal_dir: &Path,
    cd: &ControlData,
) -> Result<RecoveryEnd, EngineError> {
    let mut reader = WalReader::open(
        wal_dir,
        cd.segment_bytes,
        cd.timeline,
        cd.redo_lsn,
        cd.redo_prev,
    )?;
    let mut end = RecoveryEnd {
        next: cd.redo_lsn,
        prev: cd.redo_prev,
        groups: 0,
    };
    let mut group: Vec<(Lsn, OwnedRecordBytes)> = Vec::new();
    while let Some((lsn, rec)) = reader.next()? {
        let record = rec.record();
        if matches!(record, Record::Commit { .. } | Record::Abort) {
            if matches!(record, Record::Commit { .. }) {
                apply_group(pool, &group)?;
            } else {
                tracing::info!(at = %lsn, records = group.len(), "skipping a group ended by an abort record");
            }
            group.clear();
            end = RecoveryEnd {
                next: lsn.add(rec.bytes().len() as u64),
                prev: lsn,
                groups: end.groups + 1,
            };
        } else {
            group.push((lsn, rec));
        }
    }
    if !group.is_empty() {
        tracing::warn!(
            at = %group[0].0, records = group.len(),
            "discarding an incomplete transaction at the end of the WAL"
        );
    }
    if let Some(reason) = reader.end_reason() {
        tracing::info!(at = %end.next, reason = ?reason, "end of WAL");
    }
    Ok(end)
}

/// Applies one complete group's page records.
pub fn apply_group(
    pool: &mut BufferPool,
    group: &[(Lsn, OwnedRecordBytes)],
) -> Result<(), EngineError> {
    for (lsn, owned) in group {
        let rec = owned.record();
        let Some(no) = rec.page() else { continue };
        let overwrite = matches!(rec, Record::PageImage { .. } | Record::MetaSet { .. });
        let page = pool.get_for_redo(no, overwrite)?;
        if redo::needs_redo(page, *lsn) {
            redo::apply(page, *lsn, &rec).map_err(EngineError::Apply)?;
        }
    }
    Ok(())
}
