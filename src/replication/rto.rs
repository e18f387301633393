//! RTO control (openGauss's `recovery_time_target`): how long a standby
//! would need, if promoted now, to redo what it received and has not
//! applied (its estimated recovery time), and the primary's throttle that
//! keeps its synchronous standbys' estimates under the target.
//!
//! Standby: `redo_backlog_bytes` = received - applied; `redo_rate` = redo's
//! recent rate while it had work (`redo::pipeline::RedoStats`: what redo
//! can do, not what it was given); `estimated_rto_ms` = backlog / rate.
//! A standby sends its estimate in every `StandbyStatus`.
//!
//! Primary: with `recovery_time_target` > 0 the sender feeds the worst
//! estimate among the standbys that count for synchronous commit (sync or
//! quorum) to [`Throttle`], at most every `UPDATE_EVERY`. The throttle
//! holds each write's reply a little longer (`delay`) while the worst
//! estimate is over the target, and lets go while it is under half of it:
//! fewer commits per second from the closed-loop clients, so less WAL per
//! second for the standby to redo. The delay grows by half (at least
//! 100 us) per update, shrinks by a quarter, and never passes
//! `DELAY_US_MAX`. Visible in INFO (`rto_throttle_us`) and /metrics.
//! Pure logic plus atomics; no I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The longest a write's reply is held (a throttle, not a stop).
pub const DELAY_US_MAX: u64 = 100_000;
/// Throttle updates at most this often (statuses arrive far more often).
const UPDATE_EVERY: Duration = Duration::from_millis(100);
/// When redo has not measured a rate yet, estimates assume this (a slow
/// disk's sequential speed: an estimate that errs long).
const RATE_FLOOR_BYTES_PER_S: u64 = 20 << 20;

/// A standby's estimated recovery time for `backlog_bytes` of WAL at
/// `rate_bytes_per_s` (0: not measured yet).
pub fn estimate_ms(backlog_bytes: u64, rate_bytes_per_s: u64) -> u64 {
    if backlog_bytes == 0 {
        return 0;
    }
    let rate = rate_bytes_per_s.max(RATE_FLOOR_BYTES_PER_S / 4).max(1);
    backlog_bytes.saturating_mul(1000) / rate
}

/// The next delay, from the current one, the worst estimate and the
/// target (both in ms; target 0 = off).
pub fn next_delay_us(current_us: u64, worst_ms: u64, target_ms: u64) -> u64 {
    if target_ms == 0 {
        return 0;
    }
    if worst_ms > target_ms {
        (current_us + (current_us / 2).max(100)).min(DELAY_US_MAX)
    } else if worst_ms < target_ms / 2 {
        let next = current_us - current_us / 4;
        if next < 50 {
            0
        } else {
            next
        }
    } else {
        current_us
    }
}

/// The primary's commit throttle.
pub struct Throttle {
    target_ms: u64,
    delay_us: AtomicU64,
    last_update: Mutex<Option<Instant>>,
    /// The worst estimate of the last update, for INFO.
    worst_ms: AtomicU64,
}

impl Throttle {
    /// `target_secs` = `recovery_time_target` (0: off).
    pub fn new(target_secs: u64) -> Throttle {
        Throttle {
            target_ms: target_secs.saturating_mul(1000),
            delay_us: AtomicU64::new(0),
            last_update: Mutex::new(None),
            worst_ms: AtomicU64::new(0),
        }
    }

    pub fn target_ms(&self) -> u64 {
        self.target_ms
    }

    /// The delay each write's reply gets now.
    pub fn delay_us(&self) -> u64 {
        self.delay_us.load(Ordering::Relaxed)
    }

    /// The worst estimate among the synchronous standbys at the last
    /// update.
    pub fn worst_ms(&self) -> u64 {
        self.worst_ms.load(Ordering::Relaxed)
    }

    /// A status arrived; `worst_ms` is the worst estimate among the
    /// standbys that count (0 if none).
    pub fn update(&self, worst_ms: u64) {
        if self.target_ms == 0 {
            return;
        }
        let mut last = self.last_update.lock();
        if last.is_some_and(|t| t.elapsed() < UPDATE_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.worst_ms.store(worst_ms, Ordering::Relaxed);
        let now = self.delay_us.load(Ordering::Relaxed);
        let next = next_delay_us(now, worst_ms, self.target_ms);
        if (now == 0) != (next == 0) {
            if next > 0 {
                tracing::warn!(worst_ms, target_ms = self.target_ms, "synchronous standbys' estimated recovery time is over recovery_time_target: slowing commits");
            } else {
                tracing::info!(worst_ms, "commit throttle lifted");
            }
        }
        self.delay_us.store(next, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_divide_backlog_by_rate() {
        assert_eq!(estimate_ms(0, 0), 0);
        assert_eq!(estimate_ms(100 << 20, 200 << 20), 500);
        // No rate yet: assume a slow one, never divide by zero.
        assert!(estimate_ms(10 << 20, 0) >= 1000);
    }

    #[test]
    fn the_delay_grows_over_the_target_shrinks_under_half_and_is_bounded() {
        assert_eq!(next_delay_us(0, 5000, 0), 0, "off");
        let mut d = 0;
        for _ in 0..100 {
            d = next_delay_us(d, 2000, 1000);
        }
        assert_eq!(d, DELAY_US_MAX);
        assert_eq!(
            next_delay_us(d, 700, 1000),
            d,
            "between half and the target: hold"
        );
        let mut steps = 0;
        while d > 0 {
            d = next_delay_us(d, 100, 1000);
            steps += 1;
        }
        assert!(steps < 40, "the throttle lifts in {steps} updates");
    }
}
