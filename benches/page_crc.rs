//! Page checksum: CRC32C over one 8 KiB page, the cost paid by every page
//! write (`page::seal`) and every page read from disk (`page::verify`).
//!
//! Baselines in the same group: `crc32c::crc32c` over the same 8 KiB (the
//! raw library speed; `compute_crc` should match it, as it only splits the
//! range around the CRC field) and an 8 KiB memcpy (memory bandwidth).
//! Throughput is in bytes, so figures read as GiB/s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem::ids::PageNo;
use tandem::page::{self, PageKind, PAGE_BYTES};

/// A leaf page with pseudo-random bytes in its body (CRC speed does not
/// depend on content, but a zero page could hide a shortcut).
fn sample_page() -> page::PageBuf {
    let mut p = page::new_page_buf();
    page::init(&mut p, PageNo(7), PageKind::Leaf);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in p[page::HEADER_BYTES..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    page::seal(&mut p);
    p
}

fn bench_page_crc(c: &mut Criterion) {
    let mut p = sample_page();
    let mut dst = page::new_page_buf();
    let mut g = c.benchmark_group("page_crc");
    g.throughput(Throughput::Bytes(PAGE_BYTES as u64));
    g.bench_function("baseline/memcpy_8k", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&p[..])))
    });
    g.bench_function("baseline/crc32c_8k", |b| {
        b.iter(|| crc32c::crc32c(black_box(&p[..])))
    });
    g.bench_function("compute_crc", |b| {
        b.iter(|| page::compute_crc(black_box(&p)))
    });
    g.bench_function("seal", |b| b.iter(|| page::seal(black_box(&mut p))));
    g.bench_function("verify", |b| {
        b.iter(|| page::verify(black_box(&p), PageNo(7)))
    });
    g.finish();
    assert_eq!(page::verify(&p, PageNo(7)), Ok(()));
}

criterion_group!(benches, bench_page_crc);
criterion_main!(benches);
