//! `tandem redo-bench`: redo throughput on a recorded WAL, with several
//! worker counts, measured through crash recovery (the pipeline every
//! redo path shares).
//!
//! Method: the source is a stopped node's data directory whose WAL after
//! the last checkpoint holds the load to replay (perf/redo-bench.sh makes
//! one: a 64-client TPC-B run with checkpoints pushed away, then SIGKILL).
//! Each run copies it to a scratch directory beside it (so every run redoes
//! the same WAL onto the same pages; the copy leaves the files in the page
//! cache, so runs measure redo, not the disk), opens an engine on the copy
//! with N workers, and reads crash recovery's report: WAL bytes and
//! records redone, seconds, and per worker the records it applied and the
//! time it was busy. The engine is then dropped and the copy removed.

use std::path::{Path, PathBuf};

use crate::engine::{Engine, EngineConfig, RecoveryReport};

pub struct BenchRun {
    pub workers: usize,
    pub run: usize,
    pub report: RecoveryReport,
}

/// Copies `from` (a directory tree of plain files) to `to`, and syncs
/// the copies: recovery fsyncs the WAL it redoes, and a fresh copy's
/// dirty pages would make that a disk write no real crash leaves behind.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if ty.is_file() && entry.file_name() != "lock" {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    Ok(())
}

/// Runs recovery of `source` `runs` times for each worker count.
pub fn run(
    source: &Path,
    workers: &[usize],
    runs: usize,
    buffer_pool_bytes: u64,
    cores: &[usize],
    mut each: impl FnMut(&BenchRun),
) -> anyhow::Result<Vec<BenchRun>> {
    let mut out = Vec::new();
    for &n in workers {
        for run in 1..=runs {
            let scratch = PathBuf::from(format!("{}.redo-bench-{n}-{run}", source.display()));
            let _ = std::fs::remove_dir_all(&scratch);
            copy_tree(source, &scratch)?;
            let result = Engine::open(&EngineConfig {
                data_dir: scratch.clone(),
                buffer_pool_pages: (buffer_pool_bytes / crate::page::PAGE_BYTES as u64) as usize,
                wal_segment_bytes: crate::config::limits::WAL_SEGMENT_BYTES_DEFAULT,
                wal_segments_ahead: 1,
                wal_flush_poll: std::time::Duration::ZERO,
                wal_gather: std::time::Duration::ZERO,
                data_extend_pages: crate::config::limits::DATA_EXTEND_PAGES_DEFAULT,
                flusher_core: None,
                redo_workers: n,
                redo_cores: cores.to_vec(),
            })
            .map(|e| e.recovery_report().clone());
            let _ = std::fs::remove_dir_all(&scratch);
            let r = BenchRun {
                workers: n,
                run,
                report: result?,
            };
            each(&r);
            out.push(r);
        }
    }
    Ok(out)
}
