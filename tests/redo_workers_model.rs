//! Goal (issue 12): redo with 1, 2 or 4 workers gives pages byte-identical
//! to the primary's, whatever the transactions were: many page splits
//! (small keys, values up to overflow size), deletes that empty and free
//! pages, multi-key transactions, checkpoints in between (so redo starts
//! mid-stream and full-page images appear), a pool far smaller than the
//! data (pages reach the disk at every LSN).
//! Method: proptest drives an in-process engine (the primary), takes its
//! page digest, makes the WAL durable and drops the engine without a
//! shutdown checkpoint (crash-like); then copies of its directory are
//! opened with each worker count, which runs crash recovery through the
//! redo pipeline, and each digest must equal the primary's.

use proptest::prelude::*;
use tandem::engine::{btree, Engine, EngineConfig};

fn config(dir: &std::path::Path, workers: usize) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        buffer_pool_pages: 16,
        wal_segment_bytes: 1 << 20,
        wal_segments_ahead: 1,
        wal_flush_poll: std::time::Duration::ZERO,
        wal_gather: std::time::Duration::ZERO,
        data_extend_pages: 16,
        flusher_core: None,
        redo_workers: workers,
        redo_cores: Vec::new(),
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// One transaction of puts (value length) and deletes (`None`).
    Tx(Vec<(Vec<u8>, Option<usize>)>),
    Checkpoint,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(b'a'..b'k', 1..10)
}

fn change() -> impl Strategy<Value = (Vec<u8>, Option<usize>)> {
    (
        key(),
        prop_oneof![
            6 => (0usize..300).prop_map(Some),
            1 => (3000usize..20_000).prop_map(Some),
            3 => Just(None),
        ],
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => proptest::collection::vec(change(), 1..6).prop_map(Op::Tx),
        1 => Just(Op::Checkpoint),
    ]
}

fn value(k: &[u8], n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| k[i % k.len()].wrapping_mul(i as u8 | 1))
        .collect()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else if e.file_name() != "lock" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn redo_with_any_worker_count_gives_the_primarys_pages(
        ops in proptest::collection::vec(op(), 20..250)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let primary = dir.path().join("primary");
        let engine = Engine::open(&config(&primary, 2)).unwrap();
        for op in &ops {
            match op {
                Op::Tx(changes) => {
                    engine
                        .execute(|tx| {
                            for (k, v) in changes {
                                match v {
                                    Some(n) => {
                                        btree::put(tx, k, &value(k, *n))?;
                                    }
                                    None => {
                                        btree::delete(tx, k)?;
                                    }
                                }
                            }
                            Ok(())
                        })
                        .unwrap();
                }
                Op::Checkpoint => {
                    engine.checkpoint().unwrap();
                }
            }
        }
        let want = engine.digest().unwrap();
        let end = engine.wal().inserted();
        engine.wal().wait_flushed_blocking(end).unwrap();
        engine.wal().shutdown().unwrap();
        drop(engine);
        for workers in [1, 2, 4] {
            let copy = dir.path().join(format!("redo-{workers}"));
            copy_dir(&primary, &copy);
            let e = Engine::open(&config(&copy, workers)).unwrap();
            prop_assert_eq!(e.digest().unwrap(), want, "{} workers", workers);
            e.wal().shutdown().unwrap();
        }
    }
}
