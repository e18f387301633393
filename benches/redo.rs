//! Redo of one WAL record onto one page (`redo::apply`), the per-record
//! cost of recovery and of a standby's redo workers, and decoding the
//! record from WAL bytes (`record::decode`, CRC included) that precedes it.
//!
//! Each `apply` iteration starts from a fresh copy of a template leaf
//! (`iter_batched`, copy not timed): 40 cells of a 16-byte key and a
//! 101-byte stored value (inline tag + 100 bytes), as `btree::put` makes
//! them. Baseline in the same group: one 8 KiB memcpy, i.e. what a
//! full-page write costs before any logic. Throughput is one record per
//! iteration for every entry, so the figures compare per operation.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tandem::ids::{Lsn, PageNo};
use tandem::page::{self, slotted, PageBuf, PageKind};
use tandem::redo::{self, apply::image_of};
use tandem::wal::record::{self, Record};

const LEAF: PageNo = PageNo(42);
const CELLS: u64 = 40;
const VALUE_BYTES: usize = 100;
const PAGE_LSN: Lsn = Lsn(1 << 20);
const RECORD_LSN: Lsn = Lsn((1 << 20) + 4096);

/// 16-byte key, spread over the key space so inserts land mid-page.
fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).as_bytes());
    k
}

/// A leaf cell value as the B+tree stores it: inline tag, then the bytes.
fn stored_value() -> Vec<u8> {
    let mut v = vec![0u8]; // btree's INLINE tag
    v.extend(std::iter::repeat_n(b'v', VALUE_BYTES));
    v
}

fn template_leaf() -> PageBuf {
    let mut p = page::new_page_buf();
    page::init(&mut p, LEAF, PageKind::Leaf);
    let value = stored_value();
    for i in 0..CELLS {
        slotted::put(&mut p, &key(i), &value);
    }
    page::set_lsn(&mut p, PAGE_LSN);
    p
}

fn bench_redo(c: &mut Criterion) {
    let template = template_leaf();
    let value = stored_value();
    let new_key = key(CELLS + 1);
    let put = Record::LeafPut {
        page: LEAF,
        key: &new_key,
        value: &value,
    };
    let image = image_of(&template);
    let mut put_bytes = Vec::new();
    put.encode_into(PAGE_LSN, &mut put_bytes);
    let mut image_bytes = Vec::new();
    image.encode_into(PAGE_LSN, &mut image_bytes);
    eprintln!(
        "redo bench: LeafPut record {} bytes, PageImage record {} bytes ({} cells)",
        put_bytes.len(),
        image_bytes.len(),
        CELLS
    );

    let mut g = c.benchmark_group("redo");
    g.throughput(Throughput::Elements(1));
    let mut dst = page::new_page_buf();
    g.bench_function("baseline/memcpy_8k", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&template[..])))
    });
    g.bench_function("apply/leaf_put", |b| {
        b.iter_batched(
            || template.clone(),
            |mut p| {
                redo::apply(&mut p, RECORD_LSN, black_box(&put)).expect("apply LeafPut");
                p
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("apply/page_image", |b| {
        b.iter_batched(
            || template.clone(),
            |mut p| {
                redo::apply(&mut p, RECORD_LSN, black_box(&image)).expect("apply PageImage");
                p
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decode/leaf_put", |b| {
        b.iter(|| record::decode(black_box(&put_bytes), PAGE_LSN).expect("decode"))
    });
    g.bench_function("decode/page_image", |b| {
        b.iter(|| record::decode(black_box(&image_bytes), PAGE_LSN).expect("decode"))
    });
    let mut out = Vec::with_capacity(record::RECORD_BYTES_MAX);
    g.bench_function("encode/leaf_put", |b| {
        b.iter(|| {
            out.clear();
            black_box(&put).encode_into(PAGE_LSN, &mut out);
        })
    });
    g.bench_function("encode/page_image", |b| {
        b.iter(|| {
            out.clear();
            black_box(&image).encode_into(PAGE_LSN, &mut out);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_redo);
criterion_main!(benches);
