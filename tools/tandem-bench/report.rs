//! The end-of-run report: pgbench-style text on stdout and the `--json` file.
//!
//! Owns `Report`, built once from a `RunResult` by the main thread. The JSON file
//! carries the same figures as the text plus the per-second series (tps, p99,
//! failures) and the event list (connection errors, primary changes, user marks),
//! which `plot.rs` also draws. Field names carry their unit last (`latency_p99_ms`).
//!
//! Pauses (`pause.rs`) are reported with wall-clock edges (`start_unix_ms`,
//! `end_unix_ms`, milliseconds since the Unix epoch with a microsecond fraction)
//! so a harness can hold them against the time it issued a switchover or killed
//! a node, and with `at_s` (seconds since the run's start) for the plot.
//!
//! With `--read-your-writes` the report adds `ryw_checks`, `stale_reads` (0
//! unless read-your-writes is broken), `ryw_timeouts`, `ryw_errors`, the
//! WAITLSN latency (`waitlsn_latency_{p50,p99,max}_ms`), `ryw_standbys` and
//! `ryw_timeout_ms` (top-level JSON fields, absent without the flag).

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::pause::Ack;
use crate::run::RunResult;
use crate::ryw::{RywConfig, RywStats};
use crate::stats::{Event, EventKind, SecondPoint};

/// Pauses listed in the report (the JSON file); `pause_count` has them all.
/// Only a rate-limited run with a tiny threshold comes near it.
const PAUSES_LISTED_MAX: usize = 10_000;
/// Pauses printed one per line in the text summary.
const PAUSES_PRINTED_MAX: usize = 20;

/// A window in which no client got an ack, longer than the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct PauseReport {
    pub start_unix_ms: f64,
    pub end_unix_ms: f64,
    pub ms: f64,
    /// Host of the last ack before the window.
    pub from_host: String,
    /// Host of the first ack after it.
    pub to_host: String,
    /// Start of the window, seconds since the run's start.
    pub at_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub transaction_type: String,
    pub scaling_factor: i64,
    pub clients: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub rate_limit_tps: Option<f64>,
    pub duration_s: f64,
    pub transactions: u64,
    pub failed: u64,
    pub retried: u64,
    pub retries: u64,
    pub tps: f64,
    pub latency_avg_ms: f64,
    pub latency_stddev_ms: f64,
    pub latency_p50_ms: f64,
    pub latency_p90_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_p999_ms: f64,
    pub latency_max_ms: f64,
    pub initial_connection_time_ms: f64,
    pub aborted: Option<String>,
    /// Wall-clock start of the run (milliseconds since the Unix epoch).
    pub start_unix_ms: f64,
    pub pause_threshold_ms: f64,
    pub pause_count: usize,
    pub max_pause_ms: f64,
    pub pauses: Vec<PauseReport>,
    /// Set when pause tracking hit its memory bound: later pauses are unknown.
    pub pauses_complete_until_s: Option<f64>,
    pub series: Vec<SecondPoint>,
    pub events: Vec<Event>,
    /// Set with `--read-your-writes`.
    #[serde(flatten)]
    pub ryw: Option<RywReport>,
}

/// The read-your-writes figures of a run (`ryw.rs`).
#[derive(Debug, Serialize)]
pub struct RywReport {
    pub ryw_standbys: Vec<String>,
    pub ryw_timeout_ms: u64,
    /// Reads judged (WAITLSN reached the LSN, then GET answered).
    pub ryw_checks: u64,
    /// Judged reads that missed the transaction's own write.
    pub stale_reads: u64,
    /// WAITLSN replies `TIMEOUT applied <lsn>` (not judged).
    pub ryw_timeouts: u64,
    /// Connection errors and other error replies on a standby (not judged).
    pub ryw_errors: u64,
    pub waitlsn_latency_p50_ms: f64,
    pub waitlsn_latency_p99_ms: f64,
    pub waitlsn_latency_max_ms: f64,
}

impl RywReport {
    fn new(cfg: RywConfig, stats: &RywStats) -> RywReport {
        let h = &stats.waitlsn_us;
        let ms = |us: u64| {
            if h.is_empty() {
                0.0
            } else {
                us as f64 / 1000.0
            }
        };
        RywReport {
            ryw_standbys: cfg.standbys,
            ryw_timeout_ms: cfg.timeout_ms,
            ryw_checks: stats.checks,
            stale_reads: stats.stale_reads,
            ryw_timeouts: stats.timeouts,
            ryw_errors: stats.errors,
            waitlsn_latency_p50_ms: ms(h.value_at_quantile(0.5)),
            waitlsn_latency_p99_ms: ms(h.value_at_quantile(0.99)),
            waitlsn_latency_max_ms: ms(h.max()),
        }
    }
}

/// What the run was asked to do, for the report's header.
pub struct RunShape {
    pub transaction_type: String,
    pub scaling_factor: i64,
    pub clients: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub rate_limit_tps: Option<f64>,
    pub pause_threshold_ms: f64,
    /// Set with `--read-your-writes`.
    pub ryw: Option<RywConfig>,
}

impl Report {
    pub fn new(shape: RunShape, result: RunResult, marks: Vec<Event>) -> Report {
        let total = &result.aggregate.total;
        let h = &total.hist;
        let n = h.len();
        let ms = |us: f64| if n > 0 { us / 1000.0 } else { 0.0 };
        let q = |quantile: f64| ms(h.value_at_quantile(quantile) as f64);
        let elapsed_s = result.elapsed.as_secs_f64();
        let mut events = result.events;
        events.extend(marks);
        events.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let start_unix_ms = result.start_unix_us as f64 / 1000.0;
        let host = |ack: Ack| {
            let name = result.hosts.get(usize::from(ack.host));
            name.cloned()
                .unwrap_or_else(|| format!("host #{}", ack.host))
        };
        let all = &result.pauses.pauses;
        let pauses = all
            .iter()
            .take(PAUSES_LISTED_MAX)
            .map(|p| PauseReport {
                start_unix_ms: start_unix_ms + p.start.t_us as f64 / 1000.0,
                end_unix_ms: start_unix_ms + p.end.t_us as f64 / 1000.0,
                ms: p.us() as f64 / 1000.0,
                from_host: host(p.start),
                to_host: host(p.end),
                at_s: p.start.t_us as f64 / 1e6,
            })
            .collect();
        let max_pause_ms = all.iter().map(|p| p.us()).max().unwrap_or(0) as f64 / 1000.0;
        let ryw = shape.ryw.map(|cfg| RywReport::new(cfg, &result.ryw));
        Report {
            transaction_type: shape.transaction_type,
            scaling_factor: shape.scaling_factor,
            clients: shape.clients,
            threads: shape.threads,
            pipeline: shape.pipeline,
            rate_limit_tps: shape.rate_limit_tps,
            duration_s: elapsed_s,
            transactions: n,
            failed: total.failed,
            retried: total.retried,
            retries: total.retries,
            tps: if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            },
            latency_avg_ms: ms(h.mean()),
            latency_stddev_ms: ms(h.stdev()),
            latency_p50_ms: q(0.5),
            latency_p90_ms: q(0.9),
            latency_p99_ms: q(0.99),
            latency_p999_ms: q(0.999),
            latency_max_ms: ms(h.max() as f64),
            initial_connection_time_ms: result.connect_time.as_secs_f64() * 1000.0,
            aborted: result.aborted,
            start_unix_ms,
            pause_threshold_ms: shape.pause_threshold_ms,
            pause_count: all.len(),
            max_pause_ms,
            pauses,
            pauses_complete_until_s: result.pauses.complete_until_us.map(|us| us as f64 / 1e6),
            series: result.aggregate.series,
            events,
            ryw,
        }
    }

    /// The pgbench-style summary.
    pub fn text(&self) -> String {
        let attempted = (self.transactions + self.failed).max(1) as f64;
        let pct = |x: u64| 100.0 * x as f64 / attempted;
        let mut s = String::new();
        let mut line = |l: String| {
            s.push_str(&l);
            s.push('\n');
        };
        line(format!("transaction type: {}", self.transaction_type));
        line(format!("scaling factor: {}", self.scaling_factor));
        line(format!("number of clients: {}", self.clients));
        line(format!("number of threads: {}", self.threads));
        line(format!("pipeline depth: {}", self.pipeline));
        if let Some(rate) = self.rate_limit_tps {
            line(format!(
                "rate limit: {rate:.1} tps (latency from the scheduled start)"
            ));
        }
        line(format!("duration: {:.3} s", self.duration_s));
        line(format!(
            "number of transactions actually processed: {}",
            self.transactions
        ));
        line(format!(
            "number of failed transactions: {} ({:.3}%)",
            self.failed,
            pct(self.failed)
        ));
        line(format!(
            "number of transactions retried: {} ({:.3}%)",
            self.retried,
            pct(self.retried)
        ));
        line(format!("total number of retries: {}", self.retries));
        line(format!("latency average = {:.3} ms", self.latency_avg_ms));
        line(format!("latency stddev = {:.3} ms", self.latency_stddev_ms));
        line(format!(
            "latency p50 = {:.3} ms, p90 = {:.3} ms, p99 = {:.3} ms, p99.9 = {:.3} ms, max = {:.3} ms",
            self.latency_p50_ms,
            self.latency_p90_ms,
            self.latency_p99_ms,
            self.latency_p999_ms,
            self.latency_max_ms
        ));
        line(format!(
            "initial connection time = {:.3} ms",
            self.initial_connection_time_ms
        ));
        line(format!(
            "tps = {:.3} (without initial connection time)",
            self.tps
        ));
        let conn_errors = self
            .events
            .iter()
            .filter(|e| e.kind == EventKind::ConnectionError);
        let primary_changes = self
            .events
            .iter()
            .filter(|e| e.kind == EventKind::PrimaryChange);
        line(format!(
            "events: {} connection errors, {} primary changes",
            conn_errors.count(),
            primary_changes.count()
        ));
        line(format!(
            "pauses (no ack on any client for more than {} ms): {}, max {:.1} ms",
            self.pause_threshold_ms, self.pause_count, self.max_pause_ms
        ));
        for p in self.pauses.iter().take(PAUSES_PRINTED_MAX) {
            line(format!(
                "pause: {:.1} ms ({} -> {}) at +{:.3} s",
                p.ms, p.from_host, p.to_host, p.at_s
            ));
        }
        if self.pause_count > PAUSES_PRINTED_MAX {
            line(format!(
                "... {} more pauses in the JSON report",
                self.pause_count - PAUSES_PRINTED_MAX
            ));
        }
        if let Some(until) = self.pauses_complete_until_s {
            line(format!(
                "pause tracking stopped at +{until:.3} s (too many gaps to keep): later pauses are not known"
            ));
        }
        if let Some(r) = &self.ryw {
            line(format!(
                "read-your-writes: {} checks, {} stale reads, {} WAITLSN timeouts \
                 (limit {} ms), {} errors; standbys {}",
                r.ryw_checks,
                r.stale_reads,
                r.ryw_timeouts,
                r.ryw_timeout_ms,
                r.ryw_errors,
                r.ryw_standbys.join(",")
            ));
            line(format!(
                "WAITLSN latency p50 = {:.3} ms, p99 = {:.3} ms, max = {:.3} ms",
                r.waitlsn_latency_p50_ms, r.waitlsn_latency_p99_ms, r.waitlsn_latency_max_ms
            ));
        }
        if let Some(reason) = &self.aborted {
            line(format!(
                "run was aborted: {reason}; the results are incomplete"
            ));
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot encode the JSON report")?;
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))
    }
}
