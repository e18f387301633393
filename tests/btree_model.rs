//! Goal: the B+tree behaves like a `BTreeMap` for any sequence of puts,
//! deletes, gets and scans, including splits, overflow values, page
//! eviction (a pool far smaller than the data) and recovery after a
//! reopen without checkpoint-on-shutdown (crash-like).
//! Method: proptest drives an in-process engine in a temp dir and a model
//! side by side; every result is compared.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tandem::engine::{btree, Engine, EngineConfig};

fn config(dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        buffer_pool_pages: 16,
        wal_segment_bytes: 1 << 20,
        wal_segments_ahead: 1,
        wal_flush_poll: std::time::Duration::ZERO,
        wal_gather: std::time::Duration::ZERO,
        data_extend_pages: 16,
        flusher_core: None,
        redo_workers: 2,
        redo_cores: Vec::new(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, usize),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    Scan(Vec<u8>, usize),
    Reopen,
    Checkpoint,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet makes collisions (replace, delete hits) common.
    proptest::collection::vec(b'a'..b'h', 1..12)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (key(), prop_oneof![8 => 0usize..200, 1 => 2000usize..30_000]).prop_map(|(k, n)| Op::Put(k, n)),
        3 => key().prop_map(Op::Delete),
        3 => key().prop_map(Op::Get),
        1 => (key(), 1usize..50).prop_map(|(k, n)| Op::Scan(k, n)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
    ]
}

fn value(k: &[u8], n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| k[i % k.len()].wrapping_add(i as u8))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_btreemap(ops in proptest::collection::vec(op(), 1..400)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let mut engine = Engine::open(&cfg).unwrap();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, n) => {
                    let v = value(&k, n);
                    let existed = engine.execute(|tx| btree::put(tx, &k, &v)).unwrap().value;
                    prop_assert_eq!(existed, model.insert(k, v).is_some());
                }
                Op::Delete(k) => {
                    let existed = engine.execute(|tx| btree::delete(tx, &k)).unwrap().value;
                    prop_assert_eq!(existed, model.remove(&k).is_some());
                }
                Op::Get(k) => {
                    let got = engine.execute(|tx| btree::get(tx, &k)).unwrap().value;
                    prop_assert_eq!(got.as_ref(), model.get(&k));
                }
                Op::Scan(k, n) => {
                    let (keys, _) = engine.execute(|tx| btree::scan(tx, &k, n)).unwrap().value;
                    let want: Vec<Vec<u8>> = model.range(k..).take(n).map(|(k, _)| k.clone()).collect();
                    prop_assert_eq!(keys, want);
                }
                Op::Checkpoint => {
                    engine.checkpoint().unwrap();
                }
                Op::Reopen => {
                    // Make the WAL durable, then drop without a checkpoint:
                    // the next open must redo from the last checkpoint.
                    let end = engine.wal().inserted();
                    engine.wal().wait_flushed_blocking(end).unwrap();
                    engine.wal().shutdown().unwrap();
                    drop(engine);
                    engine = Engine::open(&cfg).unwrap();
                }
            }
            prop_assert_eq!(engine.key_count(), model.len() as u64);
        }
        let (all, more) = engine.execute(|tx| btree::scan(tx, b"", usize::MAX)).unwrap().value;
        prop_assert!(!more);
        prop_assert_eq!(all, model.keys().cloned().collect::<Vec<_>>());
        engine.shutdown().unwrap();
    }
}

#[test]
fn reads_wait_for_the_commit_of_pages_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&config(dir.path())).unwrap();
    let w = engine.execute(|tx| btree::put(tx, b"k", b"v")).unwrap();
    assert!(w.wrote);
    let r = engine.execute(|tx| btree::get(tx, b"k")).unwrap();
    assert!(!r.wrote);
    assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
    // The read touched the page the write changed: it must wait for the
    // write's commit to be durable before replying.
    assert!(
        r.wait_lsn >= w.wait_lsn,
        "read waits for {} < commit {}",
        r.wait_lsn,
        w.wait_lsn
    );
    engine.wal().wait_flushed_blocking(w.wait_lsn).unwrap();
    engine.shutdown().unwrap();
}

#[test]
fn a_failed_transaction_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&config(dir.path())).unwrap();
    engine.execute(|tx| btree::put(tx, b"a", b"1")).unwrap();
    let before = engine.wal().inserted();
    let err = engine.execute(|tx| {
        btree::put(tx, b"b", b"2")?;
        btree::put(tx, b"c", &vec![0u8; btree::VALUE_BYTES_MAX + 1])
    });
    assert!(err.is_err());
    assert_eq!(
        engine.wal().inserted(),
        before,
        "nothing of the failed transaction was logged"
    );
    let got = engine.execute(|tx| btree::get(tx, b"b")).unwrap().value;
    assert_eq!(got, None);
    assert_eq!(engine.key_count(), 1);
    engine.shutdown().unwrap();
}
