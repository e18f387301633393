//! Write pauses: windows of the run in which no client got any acknowledgement.
//!
//! A switchover or failover shows up to a client as a window without acks; its
//! length is what a switchover/failover benchmark reports. Each worker thread
//! owns an `AckGaps` (single-threaded, no locks) into which its clients record
//! every acknowledged transaction: the time since the run's start (us) and the
//! index of the host that acknowledged it. When the gap since the thread's
//! previous ack is at least the threshold (`--pause-threshold-ms`), the gap is
//! kept with the hosts at both ends; shorter gaps cost nothing. At the end of the
//! run the main thread intersects the threads' ack-free sets (`merge`): a pause
//! is a window free of acks on *every* thread, between two acks, longer than the
//! threshold. Its `from_host` is the host of the last ack before it, `to_host`
//! the host of the first ack after it.
//!
//! Why gaps and not 1 ms bitmaps: the edges stay exact (microseconds, the real
//! ack times) instead of rounded to buckets, and a thread with steady load keeps
//! nothing at all. Memory stays bounded: kept gaps are disjoint and at least the
//! threshold long, so a thread keeps at most `run length / threshold` of them,
//! and never more than `GAPS_MAX`. A thread that reaches the cap stops keeping
//! gaps; pauses are then reported only up to the earliest such point
//! (`Pauses::complete_until_us`), so a missed gap never hides or invents one.
//!
//! Called from `run.rs` (record, per thread; merge, main thread) and read by
//! `report.rs` and `plot.rs`.

/// Gaps kept per thread: 16 bytes each, so at most 1.6 MiB per thread. With the
/// default 20 ms threshold a thread reaches it only after 2,000 s of gaps.
pub const GAPS_MAX: usize = 100_000;

/// One edge of an ack-free window: the ack that bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Microseconds since the run's start.
    pub t_us: u64,
    /// Index into the run's host list.
    pub host: u16,
}

/// An ack-free window of one thread (or, merged, of all threads). `None` as
/// start: from the beginning of time; `None` as end: until the end of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: Option<Ack>,
    end: Option<Ack>,
}

impl Window {
    const ALL: Window = Window {
        start: None,
        end: None,
    };

    fn intersect(&self, other: &Window) -> Option<Window> {
        let start = match (self.start, other.start) {
            (Some(a), Some(b)) => Some(if a.t_us >= b.t_us { a } else { b }),
            (a, b) => a.or(b),
        };
        let end = match (self.end, other.end) {
            (Some(a), Some(b)) => Some(if a.t_us <= b.t_us { a } else { b }),
            (a, b) => a.or(b),
        };
        let empty = matches!((start, end), (Some(s), Some(e)) if s.t_us >= e.t_us);
        (!empty).then_some(Window { start, end })
    }
}

/// Per-thread record of acks: the first, the last and the long gaps between.
#[derive(Debug)]
pub struct AckGaps {
    threshold_us: u64,
    first: Option<Ack>,
    last: Option<Ack>,
    /// Gaps of at least `threshold_us`, in time order, each between two acks.
    gaps: Vec<(Ack, Ack)>,
    /// Set when `GAPS_MAX` was reached: the time of the first gap not kept.
    full_at_us: Option<u64>,
}

impl AckGaps {
    pub fn new(threshold_us: u64) -> AckGaps {
        assert!(threshold_us > 0, "a zero threshold would keep every gap");
        AckGaps {
            threshold_us,
            first: None,
            last: None,
            gaps: Vec::new(),
            full_at_us: None,
        }
    }

    /// Records one acknowledged transaction. Times come from one thread's clock
    /// reads in program order, so they never go back.
    pub fn record(&mut self, t_us: u64, host: u16) {
        let ack = Ack { t_us, host };
        match self.last {
            None => self.first = Some(ack),
            Some(last) => {
                assert!(
                    t_us >= last.t_us,
                    "ack times went back: {last:?} then {ack:?}"
                );
                if t_us - last.t_us >= self.threshold_us {
                    if self.gaps.len() < GAPS_MAX {
                        self.gaps.push((last, ack));
                    } else {
                        self.full_at_us.get_or_insert(last.t_us);
                    }
                }
            }
        }
        self.last = Some(ack);
    }

    /// The thread's ack-free windows in time order, including the open ones
    /// before its first and after its last ack.
    fn windows(&self) -> Vec<Window> {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return vec![Window::ALL];
        };
        let mut windows = Vec::with_capacity(self.gaps.len() + 2);
        windows.push(Window {
            start: None,
            end: Some(first),
        });
        windows.extend(self.gaps.iter().map(|(a, b)| Window {
            start: Some(*a),
            end: Some(*b),
        }));
        windows.push(Window {
            start: Some(last),
            end: None,
        });
        windows
    }
}

/// One pause: no thread got an ack between `start` and `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub start: Ack,
    pub end: Ack,
}

impl Pause {
    pub fn us(&self) -> u64 {
        self.end.t_us - self.start.t_us
    }
}

/// The merged result over all threads.
#[derive(Debug, Default)]
pub struct Pauses {
    /// Longer than the threshold, in time order.
    pub pauses: Vec<Pause>,
    /// Set when a thread hit `GAPS_MAX`: pauses after this time are not known.
    pub complete_until_us: Option<u64>,
}

/// Intersects the ack-free windows of all threads; keeps the windows between two
/// acks that are longer than `threshold_us`.
pub fn merge(threads: &[AckGaps], threshold_us: u64) -> Pauses {
    let mut common = vec![Window::ALL];
    for thread in threads {
        common = intersect(&common, &thread.windows());
    }
    let complete_until_us = threads.iter().filter_map(|t| t.full_at_us).min();
    let pauses = common
        .iter()
        .filter_map(|w| match (w.start, w.end) {
            (Some(start), Some(end)) => Some(Pause { start, end }),
            _ => None,
        })
        .filter(|p| p.us() > threshold_us)
        .filter(|p| complete_until_us.is_none_or(|until| p.end.t_us <= until))
        .collect();
    Pauses {
        pauses,
        complete_until_us,
    }
}

/// Intersection of two sorted lists of disjoint windows (two-pointer walk).
fn intersect(a: &[Window], b: &[Window]) -> Vec<Window> {
    // Position of a window's end on the time line; `None` (open) is last.
    let end_key = |w: &Window| w.end.map_or(u64::MAX, |e| e.t_us);
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        if let Some(w) = x.intersect(y) {
            out.push(w);
        }
        // Drop whichever window ends first: it cannot meet anything later.
        if end_key(x) <= end_key(y) {
            i += 1;
        } else {
            j += 1;
        }
    }
    debug_assert!(out.windows(2).all(|p| end_key(&p[0]) <= end_key(&p[1])));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn thread(acks: &[(u64, u16)]) -> AckGaps {
        let mut g = AckGaps::new(20 * MS);
        for (t_ms, host) in acks {
            g.record(t_ms * MS, *host);
        }
        g
    }

    fn spans(p: &Pauses) -> Vec<(u64, u64, u16, u16)> {
        p.pauses
            .iter()
            .map(|p| (p.start.t_us / MS, p.end.t_us / MS, p.start.host, p.end.host))
            .collect()
    }

    #[test]
    fn one_thread_gap_is_a_pause() {
        let t = thread(&[(0, 0), (5, 0), (10, 0), (110, 1), (115, 1)]);
        let p = merge(&[t], 20 * MS);
        assert_eq!(spans(&p), vec![(10, 110, 0, 1)]);
        assert_eq!(p.complete_until_us, None);
    }

    #[test]
    fn a_pause_needs_every_thread_silent() {
        // Thread a is silent 10..110 ms, thread b acks at 50 ms: two shorter
        // windows, 10..50 and 50..110, both above the threshold.
        let a = thread(&[(0, 0), (10, 0), (110, 0)]);
        let b = thread(&[(0, 0), (50, 0), (120, 0)]);
        let p = merge(&[a, b], 20 * MS);
        assert_eq!(spans(&p), vec![(10, 50, 0, 0), (50, 110, 0, 0)]);
    }

    #[test]
    fn hosts_come_from_the_acks_at_the_edges() {
        // The last ack before the window is b's (host 0) at 12 ms, the first
        // after is a's (host 1) at 90 ms.
        let a = thread(&[(0, 0), (10, 0), (90, 1), (100, 1)]);
        let b = thread(&[(0, 0), (12, 0), (95, 1)]);
        let p = merge(&[a, b], 20 * MS);
        assert_eq!(spans(&p), vec![(12, 90, 0, 1)]);
    }

    #[test]
    fn short_windows_and_run_edges_are_not_pauses() {
        let a = thread(&[(100, 0), (115, 0), (130, 0)]);
        let b = thread(&[(300, 0)]);
        // Between a's last ack (130) and b's only ack (300): a pause. Before 100
        // and after 300: the run's edges, not pauses.
        let p = merge(&[a, b], 20 * MS);
        assert_eq!(spans(&p), vec![(130, 300, 0, 0)]);
        let c = thread(&[(100, 0), (110, 0)]);
        assert!(merge(&[c], 20 * MS).pauses.is_empty());
    }

    #[test]
    fn a_thread_without_acks_does_not_block() {
        let a = thread(&[(0, 0), (100, 0)]);
        let idle = AckGaps::new(20 * MS);
        assert_eq!(spans(&merge(&[a, idle], 20 * MS)), vec![(0, 100, 0, 0)]);
        assert!(merge(&[], 20 * MS).pauses.is_empty());
    }

    #[test]
    fn exactly_the_threshold_is_not_a_pause() {
        let a = thread(&[(0, 0), (20, 0), (41, 0)]);
        assert_eq!(spans(&merge(&[a], 20 * MS)), vec![(20, 41, 0, 0)]);
    }

    #[test]
    fn full_gap_list_cuts_the_report() {
        let mut a = AckGaps::new(MS);
        for i in 0..=(GAPS_MAX as u64 + 10) {
            a.record(i * 2 * MS, 0);
        }
        let until = a.full_at_us.expect("full");
        let p = merge(&[a], MS);
        assert_eq!(p.complete_until_us, Some(until));
        assert_eq!(p.pauses.len(), GAPS_MAX);
        assert!(p.pauses.iter().all(|p| p.end.t_us <= until));
    }
}
