//! fsync-probe: the device baseline for durable-write figures. Overwrites
//! 8 KiB blocks of a preallocated file (written with real zeros and
//! synced first, so no block is unwritten or needs a metadata update),
//! each `pwrite` followed by `fdatasync`, and prints the latency
//! percentiles in microseconds. `perf/compare-redis.sh` runs it in the same
//! temp dir (same file system) as the servers it compares.
//!
//! Usage: `fsync-probe DIR [COUNT] [sync|uring]` (COUNT defaults to 2000).
//! `sync` (default): `pwrite` then `fdatasync` system calls. `uring`: the
//! same two as one linked io_uring chain through `tandem::io::Ring`, as
//! the WAL flusher issues them. Prints one line:
//! `fsync_probe mode=.. count=N p50_us=.. p90_us=.. p99_us=.. max_us=..`.
//! The file `DIR/fsync-probe.dat` is removed afterwards.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use tandem::io::Ring;

const BLOCK_BYTES: usize = 8192;
/// Blocks in the file: writes cycle over them, 16 MiB in all.
const BLOCKS: u64 = 2048;
const COUNT_DEFAULT: usize = 2000;

fn percentile_us(sorted: &[u64], pct: usize) -> u64 {
    let idx = (sorted.len() * pct / 100).min(sorted.len().saturating_sub(1));
    sorted.get(idx).copied().unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: fsync-probe DIR [COUNT]")?);
    let count: usize = match args.next() {
        Some(s) => s.parse().context("COUNT must be a number")?,
        None => COUNT_DEFAULT,
    };
    anyhow::ensure!(count > 0, "COUNT must be positive");
    let mode = args.next().unwrap_or_else(|| "sync".to_string());
    let mut ring = match mode.as_str() {
        "sync" => None,
        "uring" => Some(Ring::new(8).context("io_uring setup")?),
        _ => anyhow::bail!("mode must be sync or uring"),
    };
    let path = dir.join("fsync-probe.dat");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let zeros = vec![0u8; BLOCK_BYTES];
    for _ in 0..BLOCKS {
        file.write_all(&zeros).context("preallocate")?;
    }
    file.sync_all().context("sync preallocated file")?;

    let block = vec![0xa5u8; BLOCK_BYTES];
    let mut lat_us = Vec::with_capacity(count);
    for i in 0..count {
        let off = (i as u64 % BLOCKS) * BLOCK_BYTES as u64;
        let start = Instant::now();
        match ring.as_mut() {
            None => {
                file.write_all_at(&block, off).context("pwrite")?;
                file.sync_data().context("fdatasync")?;
            }
            Some(ring) => {
                let fd = file.as_raw_fd();
                ring.write_and_sync(&[(fd, off, &block)], &[fd])
                    .context("io_uring write+fdatasync")?;
            }
        }
        lat_us.push(start.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path).context("remove probe file")?;
    lat_us.sort_unstable();
    println!(
        "fsync_probe mode={} count={} p50_us={} p90_us={} p99_us={} max_us={}",
        mode,
        count,
        percentile_us(&lat_us, 50),
        percentile_us(&lat_us, 90),
        percentile_us(&lat_us, 99),
        lat_us.last().copied().unwrap_or(0),
    );
    Ok(())
}
