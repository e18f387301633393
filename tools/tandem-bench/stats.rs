//! Measurements of a run: per-second buckets, the messages worker threads send
//! and the aggregate the report is printed from.
//!
//! Data flow: each client task records a finished transaction into its thread's
//! `ThreadStats` (single-threaded, no locks), keyed by the second of the run in
//! which it finished. A ticker task per thread sends every completed second as a
//! `Msg::Second` over a bounded crossbeam channel to the main thread, which merges
//! the seconds of all threads in `Aggregate` (progress lines, the per-second series,
//! the total histogram). Latencies are in microseconds, measured from the
//! transaction's scheduled start (see `run.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::pause::AckGaps;
use crate::ryw::RywStats;

/// Significant digits of every latency histogram: 0.1 % resolution.
const HIST_SIGFIG: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    // Auto-resizing histogram: never fails to record a large latency.
    Histogram::new(HIST_SIGFIG).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
}

/// Records a latency. `record` grows the auto-resizing histogram; only a value
/// beyond what the histogram can ever hold falls back to clamping
/// (`saturating_record` alone clamps to the current size without growing).
pub fn record(hist: &mut Histogram<u64>, latency_us: u64) {
    let v = latency_us.max(1);
    if hist.record(v).is_err() {
        hist.saturating_record(v);
    }
}

/// What happened in one second on one thread (or, merged, on all threads).
#[derive(Clone)]
pub struct Bucket {
    pub hist: Histogram<u64>,
    pub failed: u64,
    /// Transactions that needed at least one retry and finished in this second.
    pub retried: u64,
    /// Retries (attempts after the first) started in this second.
    pub retries: u64,
}

impl Bucket {
    pub fn new() -> Bucket {
        Bucket {
            hist: new_histogram(),
            failed: 0,
            retried: 0,
            retries: 0,
        }
    }

    pub fn merge(&mut self, other: &Bucket) {
        // Both histograms auto-resize, so adding cannot run out of range.
        let _ = self.hist.add(&other.hist);
        self.failed += other.failed;
        self.retried += other.retried;
        self.retries += other.retries;
    }
}

/// Event kinds shown in the report and as vertical marks on the plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ConnectionError,
    PrimaryChange,
    Mark,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Seconds since the start of the run.
    pub t_s: f64,
    pub kind: EventKind,
    pub detail: String,
}

/// Messages from worker threads to the main thread.
pub enum Msg {
    /// The thread connected its clients (or failed to).
    Ready {
        result: Result<(), String>,
    },
    /// Everything one thread measured in second `second` of the run.
    Second {
        second: u64,
        bucket: Box<Bucket>,
    },
    Event(Event),
    /// A client connected to a primary at `addr` (the main thread detects changes).
    Primary {
        t_s: f64,
        addr: String,
    },
    /// A thread finished; `error` if a client gave up. `gaps`: its clients'
    /// long gaps between acks, merged into pauses at the end; `ryw`: its
    /// read-your-writes checks (all zero without `--read-your-writes`).
    Done {
        error: Option<String>,
        gaps: Box<AckGaps>,
        ryw: Box<RywStats>,
    },
}

/// Per-thread collection of finished transactions, by second of the run.
pub struct ThreadStats {
    pub start: Instant,
    /// With `-T`, the last second of the run: transactions that finish in the
    /// grace period after the end count into it, so the series has no stub point.
    second_max: Option<u64>,
    pub buckets: BTreeMap<u64, Bucket>,
}

impl ThreadStats {
    pub fn new(start: Instant, duration: Option<Duration>) -> ThreadStats {
        let second_max = duration.map(|d| d.as_secs().saturating_sub(1));
        ThreadStats {
            start,
            second_max,
            buckets: BTreeMap::new(),
        }
    }

    fn bucket(&mut self, at: Instant) -> &mut Bucket {
        let second = at.saturating_duration_since(self.start).as_secs();
        let second = self.second_max.map_or(second, |max| second.min(max));
        self.buckets.entry(second).or_insert_with(Bucket::new)
    }

    pub fn record_ok(&mut self, at: Instant, latency_us: u64, retried: bool) {
        let b = self.bucket(at);
        record(&mut b.hist, latency_us);
        if retried {
            b.retried += 1;
        }
    }

    pub fn record_failed(&mut self, at: Instant, retried: bool) {
        let b = self.bucket(at);
        b.failed += 1;
        if retried {
            b.retried += 1;
        }
    }

    pub fn record_retry(&mut self, at: Instant) {
        self.bucket(at).retries += 1;
    }

    /// Removes and returns the buckets of seconds before `second`.
    pub fn take_before(&mut self, second: u64) -> Vec<(u64, Bucket)> {
        let later = self.buckets.split_off(&second);
        let done = std::mem::replace(&mut self.buckets, later);
        done.into_iter().collect()
    }
}

/// One point of the per-second series.
#[derive(Debug, Clone, Serialize)]
pub struct SecondPoint {
    /// Second of the run (0-based); the point covers `[second, second + 1)`.
    pub second: u64,
    pub transactions: u64,
    pub tps: f64,
    pub latency_avg_ms: f64,
    pub latency_p99_ms: f64,
    pub failures: u64,
    pub retries: u64,
}

/// Merges seconds from all threads; owned by the main thread.
pub struct Aggregate {
    threads: usize,
    pending: BTreeMap<u64, (Bucket, usize)>,
    pub series: Vec<SecondPoint>,
    pub total: Bucket,
    window: Bucket,
    window_start_s: u64,
}

impl Aggregate {
    pub fn new(threads: usize) -> Aggregate {
        Aggregate {
            threads,
            pending: BTreeMap::new(),
            series: Vec::new(),
            total: Bucket::new(),
            window: Bucket::new(),
            window_start_s: 0,
        }
    }

    /// Adds one thread's second; returns the seconds now complete on all threads.
    pub fn add(&mut self, second: u64, bucket: &Bucket) -> Vec<u64> {
        let entry = self
            .pending
            .entry(second)
            .or_insert_with(|| (Bucket::new(), 0));
        entry.0.merge(bucket);
        entry.1 += 1;
        let mut complete = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().1 < self.threads {
                break;
            }
            let second = *entry.key();
            let (bucket, _) = entry.remove();
            self.finish_second(second, bucket);
            complete.push(second);
        }
        complete
    }

    /// Finishes seconds that not every thread reported (a thread had nothing).
    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (second, (bucket, _)) in pending {
            self.finish_second(second, bucket);
        }
    }

    fn finish_second(&mut self, second: u64, bucket: Bucket) {
        // Seconds in which no thread finished anything still get a point (a gap
        // must show as zero, not vanish from the series).
        let next = self.series.last().map_or(0, |p| p.second + 1);
        for empty in next..second {
            self.series.push(point(empty, &Bucket::new()));
        }
        self.series.push(point(second, &bucket));
        self.total.merge(&bucket);
        self.window.merge(&bucket);
    }

    /// Takes the progress window (everything since the last call).
    pub fn take_window(&mut self, now_s: u64) -> (u64, Bucket) {
        let start = self.window_start_s;
        self.window_start_s = now_s;
        (start, std::mem::replace(&mut self.window, Bucket::new()))
    }
}

fn point(second: u64, b: &Bucket) -> SecondPoint {
    let n = b.hist.len();
    SecondPoint {
        second,
        transactions: n,
        tps: n as f64,
        latency_avg_ms: if n > 0 { b.hist.mean() / 1000.0 } else { 0.0 },
        latency_p99_ms: if n > 0 {
            b.hist.value_at_quantile(0.99) as f64 / 1000.0
        } else {
            0.0
        },
        failures: b.failed,
        retries: b.retries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_complete_when_all_threads_reported() {
        let mut agg = Aggregate::new(2);
        let mut b = Bucket::new();
        record(&mut b.hist, 100);
        assert!(agg.add(0, &b).is_empty());
        assert_eq!(agg.add(0, &b), vec![0]);
        agg.add(2, &b);
        agg.add(2, &b);
        assert_eq!(agg.series.len(), 3);
        assert_eq!(agg.series[1].transactions, 0);
        assert_eq!(agg.series[2].transactions, 2);
        assert_eq!(agg.total.hist.len(), 4);
    }

    #[test]
    fn thread_stats_split_by_second() {
        let start = Instant::now();
        let mut s = ThreadStats::new(start, None);
        s.record_ok(start, 10, false);
        s.record_ok(start + Duration::from_millis(1500), 10, true);
        let done = s.take_before(1);
        assert_eq!(done.len(), 1);
        assert_eq!(s.buckets.len(), 1);
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    #[test]
    fn large_latencies_are_kept_after_merge() {
        let mut b = Bucket::new();
        record(&mut b.hist, 80);
        record(&mut b.hist, 1_100_000);
        let mut total = Bucket::new();
        total.merge(&b);
        assert!(total.hist.max() >= 1_099_000, "max {}", total.hist.max());
    }
}
