//! The end-of-run report: pgbench-style text on stdout and the `--json` file.
//!
//! Owns `Report`, built once from a `RunResult` by the main thread. The JSON file
//! carries the same figures as the text plus the per-second series (tps, p99,
//! failures) and the event list (connection errors, primary changes, user marks),
//! which `plot.rs` also draws. Field names carry their unit last (`latency_p99_ms`).

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::run::RunResult;
use crate::stats::{Event, EventKind, SecondPoint};

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
    pub series: Vec<SecondPoint>,
    pub events: Vec<Event>,
}

/// What the run was asked to do, for the report's header.
pub struct RunShape {
    pub transaction_type: String,
    pub scaling_factor: i64,
    pub clients: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub rate_limit_tps: Option<f64>,
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
            series: result.aggregate.series,
            events,
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
