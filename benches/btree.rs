//! The B+tree through the engine: `btree::get` of a random existing key
//! and `btree::put` of a new key, each one transaction in
//! `Engine::execute` (engine lock, private page copies, record encoding,
//! WAL append, install). The WAL append is included, the wait for the
//! flush is not: this is the in-memory transaction path a session core
//! runs before it parks on the flushed LSN.
//!
//! Two engines, each in its own temp dir, preloaded with the same 100k
//! keys (16 bytes, random order) and 100-byte values:
//! - `mem`: a pool of 1 GiB, so every page stays cached (also while the
//!   put benchmark grows the tree);
//! - `evict`: a 4 MiB pool (512 frames) for a tree of some 2,000+ pages,
//!   so most gets miss (the data file is buffered: a miss is a read from
//!   the page cache plus a checksum) and puts evict dirty pages, which
//!   first waits for the WAL to be durable up to the victim's LSN.
//!
//! Baseline in the same group: std `BTreeMap<[u8; 16], Vec<u8>>` get and
//! insert of the same keys. Throughput: one operation per iteration.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use tandem::engine::{btree, Engine, EngineConfig};

const PRELOAD_KEYS: u64 = 100_000;
const VALUE_BYTES: usize = 100;
const POOL_MEM_BYTES: usize = 1 << 30;
const POOL_EVICT_BYTES: usize = 4 << 20;

/// splitmix64: a bijection on u64, so distinct indexes give distinct keys.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key number `i`: 16 lowercase hex digits of `mix(i)`.
fn key(i: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let x = mix(i);
    let mut k = [0u8; 16];
    for (n, b) in k.iter_mut().enumerate() {
        *b = HEX[((x >> (60 - 4 * n)) & 0xf) as usize];
    }
    k
}

/// Cheap random index into the preloaded keys (xorshift64).
struct Picker(u64);

impl Picker {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % PRELOAD_KEYS
    }
}

fn open_engine(dir: &Path, pool_bytes: usize) -> Arc<Engine> {
    let engine = Engine::open(&EngineConfig {
        data_dir: dir.to_path_buf(),
        buffer_pool_pages: pool_bytes / tandem::page::PAGE_BYTES,
        wal_segment_bytes: 16 << 20,
        wal_segments_ahead: 2,
        wal_flush_poll: std::time::Duration::ZERO,
        wal_gather: std::time::Duration::ZERO,
        data_extend_pages: 128,
        flusher_core: None,
        redo_workers: 2,
        redo_cores: Vec::new(),
    })
    .expect("open engine");
    let value = [b'v'; VALUE_BYTES];
    let mut last = None;
    for i in 0..PRELOAD_KEYS {
        let out = engine
            .execute(|tx| btree::put(tx, &key(i), &value))
            .expect("preload put");
        last = Some(out.wait_lsn);
    }
    if let Some(lsn) = last {
        engine
            .wal()
            .wait_flushed_blocking(lsn)
            .expect("flush preload");
    }
    engine
}

fn bench_engine(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    pool: usize,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = open_engine(dir.path(), pool);
    let value = [b'v'; VALUE_BYTES];
    let mut pick = Picker(0x2545_f491_4f6c_dd1d);
    g.bench_function(format!("{name}/get"), |b| {
        b.iter(|| {
            let k = key(pick.next());
            let out = engine
                .execute(|tx| btree::get(tx, black_box(&k)))
                .expect("get");
            assert!(out.value.is_some());
            out.value
        })
    });
    let mut next = PRELOAD_KEYS;
    g.bench_function(format!("{name}/put"), |b| {
        b.iter(|| {
            let k = key(next);
            next += 1;
            let out = engine
                .execute(|tx| btree::put(tx, black_box(&k), black_box(&value)))
                .expect("put");
            assert!(!out.value, "key existed");
            out.wait_lsn
        })
    });
    let s = engine.pool_stats();
    eprintln!(
        "{name}: {} keys after the run; pool hits {} misses {} evictions {} writes {}",
        engine.key_count(),
        s.hits.load(Ordering::Relaxed),
        s.misses.load(Ordering::Relaxed),
        s.evictions.load(Ordering::Relaxed),
        s.writes.load(Ordering::Relaxed),
    );
    drop(engine); // the WAL flusher stops before the directory goes
}

fn bench_btree(c: &mut Criterion) {
    let mut g = c.benchmark_group("btree");
    g.throughput(Throughput::Elements(1));

    let value = vec![b'v'; VALUE_BYTES];
    let mut map: BTreeMap<[u8; 16], Vec<u8>> =
        (0..PRELOAD_KEYS).map(|i| (key(i), value.clone())).collect();
    let mut pick = Picker(0x2545_f491_4f6c_dd1d);
    g.bench_function("baseline/btreemap_get", |b| {
        b.iter(|| map.get(black_box(&key(pick.next()))).map(|v| v.len()))
    });
    let mut next = PRELOAD_KEYS;
    g.bench_function("baseline/btreemap_insert", |b| {
        b.iter(|| {
            let k = key(next);
            next += 1;
            map.insert(black_box(k), value.clone())
        })
    });
    drop(map);

    bench_engine(&mut g, "mem", POOL_MEM_BYTES);
    bench_engine(&mut g, "evict", POOL_EVICT_BYTES);
    g.finish();
}

criterion_group!(benches, bench_btree);
criterion_main!(benches);
