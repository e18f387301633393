//! WAL I/O end to end: append from several threads, group commit, read back.
//!
//! Goal: what `Wal::append` acknowledged as flushed is exactly what
//! `WalReader` returns, across segment boundaries; a torn tail is cut and
//! new records after the cut never chain onto stale ones; recycling keeps
//! the directory bounded; a full file system fails appends with `DiskFull`
//! without losing anything flushed.
//!
//! Method: real files in temp directories (a small tmpfs for the full-disk
//! case, mounted by the test as root and skipped with a message if that is
//! not possible), 1 MiB segments, records up to 8 KiB. Threads hold an
//! external mutex around `insert_position` + `append`, as the engine will.
//! Synchronisation is only by `wait_flushed*`, joins and the mutex.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use tandem::ids::{Lsn, PageNo, SegmentNo, TimelineId};
use tandem::wal::record::Record;
use tandem::wal::segment::file_name;
use tandem::wal::{EndOfWal, Wal, WalConfig, WalError, WalReader};

const SEG: u64 = 1 << 20;

fn cfg(dir: &Path) -> WalConfig {
    WalConfig {
        segment_bytes: SEG,
        ..WalConfig::new(dir)
    }
}

/// A group of `puts` leaf puts with values of `value_bytes` and a commit,
/// chained from `prev`, starting at `next`. Returns the bytes and the LSN of
/// the commit record.
fn group(next: Lsn, prev: Lsn, puts: usize, value_bytes: usize, tag: u8) -> (Vec<u8>, Lsn) {
    let mut out = Vec::new();
    let value = vec![tag; value_bytes];
    let mut prev = prev;
    for _ in 0..puts {
        let at = next.add(out.len() as u64);
        Record::LeafPut {
            page: PageNo(tag as u32),
            key: &[tag],
            value: &value,
        }
        .encode_into(prev, &mut out);
        prev = at;
    }
    let commit = next.add(out.len() as u64);
    Record::Commit {
        commit_time_us: tag as u64,
    }
    .encode_into(prev, &mut out);
    (out, commit)
}

/// Appends one group under `lock`; returns its start, bytes and end.
fn append(
    wal: &Wal,
    lock: &Mutex<()>,
    puts: usize,
    value_bytes: usize,
    tag: u8,
) -> Result<(Lsn, Vec<u8>, Lsn), WalError> {
    let _g = lock.lock().unwrap();
    let (next, prev) = wal.insert_position();
    let (bytes, last) = group(next, prev, puts, value_bytes, tag);
    let end = wal.append(&bytes, last)?;
    Ok((next, bytes, end))
}

/// Every record from `start` to the end, concatenated, and the end reason.
fn read_all(dir: &Path, start: Lsn, prev: Lsn) -> (Vec<u8>, Vec<Lsn>, EndOfWal, (Lsn, Lsn)) {
    let mut reader = WalReader::open(dir, SEG, TimelineId(1), start, prev).unwrap();
    let mut bytes = Vec::new();
    let mut lsns = Vec::new();
    while let Some((lsn, rec)) = reader.next().unwrap() {
        assert_eq!(lsn, start.add(bytes.len() as u64));
        bytes.extend_from_slice(rec.bytes());
        lsns.push(lsn);
    }
    let end = reader.end_reason().unwrap().clone();
    (bytes, lsns, end, reader.position())
}

#[test]
fn threads_append_groups_and_reader_returns_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(cfg(dir.path()), Lsn(0), Lsn(0)).unwrap();
    let lock = Arc::new(Mutex::new(()));
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let wal = wal.clone();
            let lock = lock.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let mut mine = Vec::new();
                for _ in 0..300 {
                    let puts = rng.random_range(0..4);
                    let value_bytes = rng.random_range(0..8000);
                    let (start, bytes, end) =
                        append(&wal, &lock, puts, value_bytes, t + 1).unwrap();
                    wal.wait_flushed_blocking(end).unwrap();
                    assert!(wal.flushed() >= end);
                    mine.push((start, bytes));
                }
                mine
            })
        })
        .collect();
    let mut groups: Vec<(Lsn, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    groups.sort_by_key(|g| g.0);
    let expected: Vec<u8> = groups.iter().flat_map(|g| g.1.clone()).collect();
    let end = wal.shutdown().unwrap();
    assert_eq!(end.0, expected.len() as u64);
    assert!(end.0 > 3 * SEG, "the test should span several segments");
    let m = wal.metrics();
    let batches = m.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=2400).contains(&batches));
    assert_eq!(m.batch_groups.sum(), 2400);
    println!(
        "{batches} flushes for 2400 groups; {} appends waited for a segment",
        m.segment_waits.load(std::sync::atomic::Ordering::Relaxed)
    );

    let (bytes, _, reason, position) = read_all(dir.path(), Lsn(0), Lsn(0));
    assert!(
        bytes == expected,
        "read back differs from what was appended"
    );
    assert_eq!(reason, EndOfWal::Zero { lsn: end });
    assert_eq!(position.0, end);
}

fn flip_bit(dir: &Path, lsn: Lsn) {
    let segno = SegmentNo::of(lsn, SEG);
    let path = dir.join(file_name(TimelineId(1), segno));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(lsn.0 % SEG) as usize] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn torn_last_record_is_cut_and_new_records_follow_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let lock = Mutex::new(());
    let wal = Wal::open(cfg(dir.path()), Lsn(0), Lsn(0)).unwrap();
    let mut groups = Vec::new();
    // About 1.3 segments, so the tail sits in segment 1.
    while wal.inserted().0 < SEG + SEG / 3 {
        groups.push(append(&wal, &lock, 2, 3000, 1).unwrap());
    }
    let (last_start, last_bytes, last_end) = groups.last().unwrap().clone();
    wal.shutdown().unwrap();
    drop(wal);
    // The commit record of the last group is the last 32 bytes.
    let last_commit = last_end.add(0).0 - 32;
    flip_bit(dir.path(), Lsn(last_commit + 24));

    let (_, lsns, reason, (next, prev)) = read_all(dir.path(), Lsn(0), Lsn(0));
    assert!(
        matches!(reason, EndOfWal::Torn { lsn, .. } if lsn == Lsn(last_commit)),
        "{reason:?}"
    );
    assert_eq!(next, Lsn(last_commit));
    // Recovery cuts at the end of the last complete group: before the
    // last group, whose commit is torn.
    let cut = last_start;
    let cut_prev = *lsns.iter().rev().find(|&&l| l < cut).unwrap();
    assert!(
        prev > cut,
        "the reader got past the cut inside the torn group"
    );
    assert!(last_bytes.len() > 32);

    let wal = Wal::open(cfg(dir.path()), cut, cut_prev).unwrap();
    assert_eq!(wal.insert_position(), (cut, cut_prev));
    let mut new_groups = Vec::new();
    for _ in 0..3 {
        // Smaller groups than before, so the new end falls inside old data.
        new_groups.push(append(&wal, &lock, 1, 100, 2).unwrap());
    }
    let new_end = new_groups.last().unwrap().2;
    wal.wait_flushed_blocking(new_end).unwrap();
    wal.shutdown().unwrap();

    let (bytes, _, reason, (next, _)) = read_all(dir.path(), cut, cut_prev);
    let expected: Vec<u8> = new_groups.iter().flat_map(|g| g.1.clone()).collect();
    assert!(bytes == expected, "stale or missing records after the cut");
    assert_eq!(reason, EndOfWal::Zero { lsn: new_end });
    assert_eq!(next, new_end);
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            tandem::wal::segment::parse_name(name.to_str().unwrap()).is_some()
        })
        .count()
}

#[test]
fn recycling_keeps_the_directory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let lock = Mutex::new(());
    let wal = Wal::open(cfg(dir.path()), Lsn(0), Lsn(0)).unwrap();
    let mut most = 0;
    let mut recycled = 0;
    let mut end = Lsn(0);
    while end.0 < 12 * SEG {
        end = append(&wal, &lock, 3, 8000, 3).unwrap().2;
        if end.0 % SEG < 30_000 {
            wal.wait_flushed_blocking(end).unwrap();
            recycled += wal.recycle_before(end).unwrap().0;
        }
        most = most.max(segment_files(dir.path()));
    }
    wal.shutdown().unwrap();
    assert!(recycled >= 5, "recycled only {recycled}");
    // The segment being written, the one before it (not yet recycled) and
    // 2 * segments_ahead spares.
    assert!(most <= 6, "directory grew to {most} segments");
    // Everything still reads from the oldest kept segment on.
    let listed = tandem::wal::segment::SegmentDir::new(dir.path(), SEG, TimelineId(1))
        .unwrap()
        .list()
        .unwrap();
    assert!(listed.keys().next().unwrap().0 >= 9);
}

/// A tmpfs mounted on a temp dir for the life of the guard.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            other => {
                println!("skipping: cannot mount a tmpfs ({other:?})");
                None
            }
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("wal")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a panicking test's files): detach it lazily.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

#[test]
fn full_disk_fails_appends_with_disk_full_and_keeps_what_was_flushed() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let dir = fs.path();
    let lock = Mutex::new(());
    let wal = Wal::open(cfg(&dir), Lsn(0), Lsn(0)).unwrap();
    let mut flushed_groups = Vec::new();
    let err = loop {
        match append(&wal, &lock, 3, 8000, 4) {
            Ok(g) => {
                wal.wait_flushed_blocking(g.2).unwrap();
                flushed_groups.push(g);
            }
            Err(e) => break e,
        }
        assert!(flushed_groups.len() < 10_000, "the disk never filled");
    };
    assert!(matches!(err, WalError::DiskFull { .. }), "{err:?}");
    let end = flushed_groups.last().unwrap().2;
    assert_eq!(wal.inserted(), end, "a failed append must not append");
    assert_eq!(wal.flushed(), end);
    // Not sticky: still DiskFull (not Fenced) on the next try...
    assert!(matches!(
        append(&wal, &lock, 3, 8000, 4),
        Err(WalError::DiskFull { .. })
    ));
    // ...and recycling after a checkpoint makes room again.
    let (recycled, _) = wal.recycle_before(end).unwrap();
    assert!(recycled > 0);
    let g = append(&wal, &lock, 3, 8000, 5).unwrap();
    wal.wait_flushed_blocking(g.2).unwrap();
    let end = wal.shutdown().unwrap();
    assert_eq!(end, g.2);
    assert!(end.0 > 6 * SEG);
}

#[test]
fn full_disk_keeps_flushed_data_readable() {
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let dir = fs.path();
    let lock = Mutex::new(());
    let wal = Wal::open(cfg(&dir), Lsn(0), Lsn(0)).unwrap();
    let mut groups = Vec::new();
    while let Ok(g) = append(&wal, &lock, 1, 5000, 6) {
        groups.push(g);
    }
    let end = groups.last().unwrap().2;
    wal.wait_flushed_blocking(end).unwrap();
    wal.shutdown().unwrap();
    let expected: Vec<u8> = groups.iter().flat_map(|g| g.1.clone()).collect();
    let (bytes, _, _, (next, _)) = read_all(&dir, Lsn(0), Lsn(0));
    assert_eq!(next, end);
    assert!(bytes == expected);
}
