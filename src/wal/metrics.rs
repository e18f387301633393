//! WAL counters: fsyncs, fsync latency, bytes, batch sizes.
//!
//! Plain atomics written by the flusher thread and read by anyone (the
//! metrics exporter, benches). Histograms have fixed buckets so recording is
//! a few relaxed atomic adds and never allocates.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (inclusive) of the fsync latency buckets, microseconds. The
/// range brackets what DESIGN.md section 6 measured here (125-280 us per
/// 8 KiB write+fdatasync) with room for slow outliers.
pub const FSYNC_LATENCY_US_BOUNDS: &[u64] = &[
    50, 100, 150, 200, 300, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000,
];
/// Upper bounds of the batch size buckets, bytes.
pub const BATCH_BYTES_BOUNDS: &[u64] = &[
    128,
    512,
    2 << 10,
    8 << 10,
    32 << 10,
    128 << 10,
    512 << 10,
    2 << 20,
    8 << 20,
];
/// Upper bounds of the batch size buckets, groups (appends) per flush.
pub const BATCH_GROUPS_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 1024];

/// A fixed-bucket histogram: `buckets[i]` counts values `<= bounds[i]` (and
/// above the previous bound); the last bucket counts values above every bound.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    buckets: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn record(&self, value: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bounds(&self) -> &'static [u64] {
        self.bounds
    }

    /// Bucket counts; one more than `bounds()` (the overflow bucket last).
    pub fn bucket_counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Mean of the recorded values, 0 if none.
    pub fn mean(&self) -> f64 {
        let count = self.count();
        if count == 0 {
            0.0
        } else {
            self.sum() as f64 / count as f64
        }
    }
}

/// Counters of one `Wal`.
#[derive(Debug)]
pub struct WalMetrics {
    /// Durable (O_DSYNC) writes completed: one per segment a batch touches.
    /// (Named after the fdatasyncs they replace; scripts read the name.)
    pub fsyncs: AtomicU64,
    /// Time of one durable write, submission to completion, microseconds.
    pub fsync_latency_us: Histogram,
    pub bytes_written: AtomicU64,
    /// Flushes: batches taken from the pending buffer.
    pub batches: AtomicU64,
    pub batch_bytes: Histogram,
    pub batch_groups: Histogram,
    /// Appends that had to wait for a segment file to be prepared (the
    /// preparer fell behind, or a retry after `DiskFull`).
    pub segment_waits: AtomicU64,
}

impl Default for WalMetrics {
    fn default() -> Self {
        WalMetrics {
            fsyncs: AtomicU64::new(0),
            fsync_latency_us: Histogram::new(FSYNC_LATENCY_US_BOUNDS),
            bytes_written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batch_bytes: Histogram::new(BATCH_BYTES_BOUNDS),
            batch_groups: Histogram::new(BATCH_GROUPS_BOUNDS),
            segment_waits: AtomicU64::new(0),
        }
    }
}

impl WalMetrics {
    /// Appends these figures in Prometheus text format (names
    /// `tandem_wal_*`; latencies in seconds as Prometheus expects).
    pub fn render_prometheus(&self, out: &mut String) {
        use crate::metrics::{counter, histogram};
        counter(
            out,
            "tandem_wal_fsyncs_total",
            "WAL durable writes (O_DSYNC) completed",
            self.fsyncs.load(Ordering::Relaxed),
        );
        counter(
            out,
            "tandem_wal_bytes_total",
            "WAL bytes written",
            self.bytes_written.load(Ordering::Relaxed),
        );
        counter(
            out,
            "tandem_wal_flushes_total",
            "Group-commit flushes",
            self.batches.load(Ordering::Relaxed),
        );
        let secs: Vec<f64> = self
            .fsync_latency_us
            .bounds()
            .iter()
            .map(|&b| b as f64 / 1e6)
            .collect();
        histogram(
            out,
            "tandem_wal_fsync_latency_seconds",
            "Time of one durable WAL write (O_DIRECT|O_DSYNC), submission to completion",
            &secs,
            &self.fsync_latency_us.bucket_counts(),
            self.fsync_latency_us.sum() as f64 / 1e6,
        );
        let as_f64 = |h: &Histogram| h.bounds().iter().map(|&b| b as f64).collect::<Vec<_>>();
        histogram(
            out,
            "tandem_wal_batch_bytes",
            "Bytes per group-commit flush",
            &as_f64(&self.batch_bytes),
            &self.batch_bytes.bucket_counts(),
            self.batch_bytes.sum() as f64,
        );
        histogram(
            out,
            "tandem_wal_batch_groups",
            "Transactions (record groups) per group-commit flush",
            &as_f64(&self.batch_groups),
            &self.batch_groups.bucket_counts(),
            self.batch_groups.sum() as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets() {
        let h = Histogram::new(&[10, 100]);
        for v in [0, 10, 11, 100, 101, 5000] {
            h.record(v);
        }
        assert_eq!(h.bucket_counts(), vec![2, 2, 2]);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum(), 5222);
    }
}
