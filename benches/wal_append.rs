//! WAL append + group commit against the raw device.
//!
//! (a) raw baseline: 8 KiB pwrite + fdatasync to a preallocated (written)
//!     file, one at a time: what one durable write costs on this disk;
//! (b) `Wal::append` of a 100-byte record group + `wait_flushed_blocking`,
//!     one thread: the latency of a lone committer;
//! (c) the same from 8 and from 64 threads (holding an external mutex
//!     around `insert_position` + `append`, as the engine does): group
//!     commit;
//! (d) raw baseline of the flusher's mechanism: 4 KiB O_DIRECT|O_DSYNC
//!     writes to a preallocated file, one at a time.
//! Throughput is in commits (elements). After (b) and (c) the mean batch
//! size (groups per flush) is printed to stderr.
//!
//! Run: `cargo bench --bench wal_append`. Figures are in the module doc of
//! `src/wal/flusher.rs`.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem::ids::{Lsn, PageNo};
use tandem::wal::record::Record;
use tandem::wal::{Wal, WalConfig};

const RAW_FILE_BYTES: u64 = 16 << 20;

/// A 100-byte group: a leaf put with a 41-byte value and a commit.
fn group(next: Lsn, prev: Lsn) -> (Vec<u8>, Lsn) {
    let mut out = Vec::with_capacity(100);
    Record::LeafPut {
        page: PageNo(1),
        key: b"k",
        value: &[7u8; 41],
    }
    .encode_into(prev, &mut out);
    let commit = next.add(out.len() as u64);
    Record::Commit { commit_time_us: 0 }.encode_into(next, &mut out);
    debug_assert_eq!(out.len(), 100);
    (out, commit)
}

fn commit(wal: &Wal, lock: &Mutex<()>) {
    let end = {
        let _g = lock.lock().unwrap();
        let (next, prev) = wal.insert_position();
        let (bytes, last) = group(next, prev);
        wal.append(&bytes, last).unwrap()
    };
    wal.wait_flushed_blocking(end).unwrap();
}

fn raw_baseline(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("raw"))
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for off in (0..RAW_FILE_BYTES).step_by(zeros.len()) {
        file.write_all_at(&zeros, off).unwrap();
    }
    file.sync_all().unwrap();
    let page = vec![1u8; 8192];
    let mut off = 0u64;
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_pwrite_8k_fdatasync", |b| {
        b.iter(|| {
            file.write_all_at(&page, off).unwrap();
            file.sync_data().unwrap();
            off = (off + 8192) % RAW_FILE_BYTES;
        })
    });
    g.finish();
}

fn open_wal(dir: &std::path::Path) -> Arc<Wal> {
    Wal::open(WalConfig::new(dir.join("wal")), Lsn(0), Lsn(0)).unwrap()
}

fn report(name: &str, wal: &Wal) {
    let m = wal.metrics();
    eprintln!(
        "{name}: {} flushes, mean {:.1} groups/flush, mean {:.0} bytes/flush, \
         mean write+fdatasync {:.0} us, {} appends waited for a segment",
        m.batches.load(std::sync::atomic::Ordering::Relaxed),
        m.batch_groups.mean(),
        m.batch_bytes.mean(),
        m.fsync_latency_us.mean(),
        m.segment_waits.load(std::sync::atomic::Ordering::Relaxed)
    );
}

fn one_thread(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let wal = open_wal(dir.path());
    let lock = Mutex::new(());
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("append_100b_wait_1thread", |b| {
        b.iter(|| commit(&wal, &lock))
    });
    g.finish();
    report("1 thread", &wal);
    wal.shutdown().unwrap();
}

fn many_threads(c: &mut Criterion, threads: u64) {
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let wal = open_wal(dir.path());
    let lock = Arc::new(Mutex::new(()));
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("append_100b_wait_{threads}threads"), |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(threads);
            let barrier = Arc::new(Barrier::new(threads as usize + 1));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (wal, lock, barrier) = (wal.clone(), lock.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        for _ in 0..per_thread {
                            commit(&wal, &lock);
                        }
                    })
                })
                .collect();
            barrier.wait();
            let began = Instant::now();
            for t in workers {
                t.join().unwrap();
            }
            // Per commit: scale to what `iters` commits took.
            began
                .elapsed()
                .mul_f64(iters as f64 / (per_thread * threads) as f64)
        })
    });
    g.finish();
    report(&format!("{threads} threads"), &wal);
    wal.shutdown().unwrap();
}

fn eight_threads(c: &mut Criterion) {
    many_threads(c, 8);
}

fn sixty_four_threads(c: &mut Criterion) {
    many_threads(c, 64);
}

fn raw_direct_dsync(c: &mut Criterion) {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let path = dir.path().join("raw-direct");
    let zeros = vec![0u8; 1 << 20];
    {
        let f = std::fs::File::create(&path).unwrap();
        for off in (0..RAW_FILE_BYTES).step_by(zeros.len()) {
            f.write_all_at(&zeros, off).unwrap();
        }
        f.sync_all().unwrap();
    }
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&path)
        .unwrap();
    let mut block = tandem::io::AlignedBuf::zeroed(4096);
    block.as_mut_slice().fill(1);
    let mut off = 0u64;
    let mut g = c.benchmark_group("wal_append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw_direct_dsync_4k", |b| {
        b.iter(|| {
            file.write_all_at(block.as_slice(), off).unwrap();
            off = (off + 4096) % RAW_FILE_BYTES;
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    targets = raw_baseline, raw_direct_dsync, one_thread, eight_threads, sixty_four_threads
}
criterion_main!(benches);
