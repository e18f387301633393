//! Replication figures for /metrics: where commit time goes, stage by
//! stage (DESIGN.md section 3, issue 4 point 8).
//!
//! Primary: from sending WAL to the standby's acknowledgement that it is
//! received, flushed, applied. Standby: per received batch, the time to
//! hand it to the WAL, to have it durable, to apply it. The primary's own
//! flush is `tandem_wal_fsync_latency_seconds`. All in microseconds here,
//! exported in seconds.

use std::fmt::Write as _;

use super::status::{LinkState, StandbyEntry};
use crate::ids::Lsn;
use crate::metrics::histogram;
use crate::wal::metrics::Histogram;

/// 20 us .. 5 s.
pub const STAGE_US_BOUNDS: &[u64] = &[
    20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 200_000, 1_000_000, 5_000_000,
];

pub struct ReplMetrics {
    pub ack_received_us: Histogram,
    pub ack_flushed_us: Histogram,
    pub ack_applied_us: Histogram,
    pub standby_write_us: Histogram,
    pub standby_flush_us: Histogram,
    pub standby_apply_us: Histogram,
}

impl Default for ReplMetrics {
    fn default() -> Self {
        ReplMetrics {
            ack_received_us: Histogram::new(STAGE_US_BOUNDS),
            ack_flushed_us: Histogram::new(STAGE_US_BOUNDS),
            ack_applied_us: Histogram::new(STAGE_US_BOUNDS),
            standby_write_us: Histogram::new(STAGE_US_BOUNDS),
            standby_flush_us: Histogram::new(STAGE_US_BOUNDS),
            standby_apply_us: Histogram::new(STAGE_US_BOUNDS),
        }
    }
}

fn seconds_histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let bounds: Vec<f64> = h.bounds().iter().map(|&b| b as f64 / 1e6).collect();
    histogram(
        out,
        name,
        help,
        &bounds,
        &h.bucket_counts(),
        h.sum() as f64 / 1e6,
    );
}

impl ReplMetrics {
    pub fn render(&self, out: &mut String, standbys: &[StandbyEntry], end: Lsn) {
        let stages = [
            (
                "tandem_repl_ack_received_seconds",
                "From sending WAL to a standby's receipt ack",
                &self.ack_received_us,
            ),
            (
                "tandem_repl_ack_flushed_seconds",
                "From sending WAL to a standby's flush ack",
                &self.ack_flushed_us,
            ),
            (
                "tandem_repl_ack_applied_seconds",
                "From sending WAL to a standby's apply ack",
                &self.ack_applied_us,
            ),
            (
                "tandem_standby_write_seconds",
                "Standby: handing a received batch to its WAL",
                &self.standby_write_us,
            ),
            (
                "tandem_standby_flush_seconds",
                "Standby: making a received batch durable",
                &self.standby_flush_us,
            ),
            (
                "tandem_standby_apply_seconds",
                "Standby: applying a received batch",
                &self.standby_apply_us,
            ),
        ];
        for (name, help, h) in stages {
            seconds_histogram(out, name, help, h);
        }
        let _ = write!(
            out,
            "# HELP tandem_standby_lag_bytes WAL bytes a standby has not applied yet.\n# TYPE tandem_standby_lag_bytes gauge\n"
        );
        for s in standbys
            .iter()
            .filter(|s| s.state != LinkState::Disconnected)
        {
            let _ = writeln!(
                out,
                "tandem_standby_lag_bytes{{name=\"{}\"}} {}",
                s.name,
                end.bytes_since(s.applied)
            );
        }
        let _ = write!(
            out,
            "# HELP tandem_standby_flush_lsn Flushed LSN a standby reported.\n# TYPE tandem_standby_flush_lsn gauge\n"
        );
        for s in standbys
            .iter()
            .filter(|s| s.state != LinkState::Disconnected)
        {
            let _ = writeln!(
                out,
                "tandem_standby_flush_lsn{{name=\"{}\"}} {}",
                s.name, s.flushed.0
            );
        }
    }
}
