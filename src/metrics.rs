//! Prometheus text export on `--metrics-listen` (HTTP GET /metrics).
//!
//! Session-side figures (commits, commit latency, connections) are
//! prometheus-client metrics updated where they happen. Figures kept as
//! atomics by other subsystems (WAL flusher, buffer pool) are read at
//! scrape time and appended in the same text format, so the hot paths
//! carry no metrics dependency. Served by a plain thread on the
//! background core: it is not on the data path.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::Engine;
use crate::replication::context::ReplContext;

pub struct Metrics {
    registry: Registry,
    pub commits: Counter,
    pub commit_latency_seconds: Histogram,
    pub commands: Counter,
    pub connections: Gauge,
    pub connections_accepted: Counter,
    pub connections_rejected: Counter,
    pub errors_disk_full: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tandem");
        let m = Metrics {
            registry: Registry::default(),
            commits: Counter::default(),
            // 10 us .. ~1.3 s
            commit_latency_seconds: Histogram::new(exponential_buckets(10e-6, 2.0, 18)),
            commands: Counter::default(),
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
            connections_rejected: Counter::default(),
            errors_disk_full: Counter::default(),
        };
        registry.register("commits", "Committed write transactions", m.commits.clone());
        registry.register(
            "commit_latency_seconds",
            "From the start of a write to its durability under the session's commit mode",
            m.commit_latency_seconds.clone(),
        );
        registry.register("commands", "Commands executed", m.commands.clone());
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            m.connections_accepted.clone(),
        );
        registry.register(
            "connections_rejected",
            "Client connections refused by connections_max",
            m.connections_rejected.clone(),
        );
        registry.register(
            "errors_disk_full",
            "Writes refused for lack of disk space",
            m.errors_disk_full.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The whole exposition: registry metrics, then engine and WAL figures.
    pub fn render(&self, engine: &Engine, repl: Option<&ReplContext>) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        let pool = engine.pool_stats();
        counter(
            &mut out,
            "tandem_buffer_pool_hits_total",
            "Page lookups found in the pool",
            pool.hits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tandem_buffer_pool_misses_total",
            "Page lookups read from disk",
            pool.misses.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tandem_buffer_pool_evictions_total",
            "Pages evicted",
            pool.evictions.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tandem_page_writes_total",
            "Pages written to the data file",
            pool.writes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tandem_page_checksum_failures_total",
            "Pages that failed verification when read",
            pool.checksum_failures.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tandem_checkpoints_total",
            "Checkpoints completed",
            engine.checkpoints(),
        );
        let wal = engine.wal();
        gauge(
            &mut out,
            "tandem_wal_flushed_lsn",
            "Durable end of the WAL",
            wal.flushed().0,
        );
        gauge(
            &mut out,
            "tandem_wal_inserted_lsn",
            "End of the WAL handed to the flusher",
            wal.inserted().0,
        );
        wal.metrics().render_prometheus(&mut out);
        let redo = engine.redo_stats();
        counter(
            &mut out,
            "tandem_redo_bytes_total",
            "WAL bytes redo applied (crash recovery and a standby's streaming redo)",
            redo.bytes.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "tandem_redo_records_total",
            "Page records redo applied",
            redo.records.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "tandem_redo_rate_bytes_per_second",
            "Recent redo rate while redo had work",
            redo.rate_bytes_per_s.load(Ordering::Relaxed),
        );
        if let Some(repl) = repl {
            if engine.role() == crate::engine::control_file::Role::Standby {
                let received = repl.upstream.get().map_or(wal.flushed(), |u| u.received);
                gauge(
                    &mut out,
                    "tandem_redo_backlog_bytes",
                    "WAL received and not applied yet",
                    received.bytes_since(engine.applied_lsn()),
                );
                gauge(
                    &mut out,
                    "tandem_estimated_rto_milliseconds",
                    "How long redo needs for the WAL received and not applied",
                    crate::replication::receiver::estimated_rto_ms(repl),
                );
            }
            gauge(
                &mut out,
                "tandem_rto_throttle_microseconds",
                "Delay added to each write's reply to keep synchronous standbys within recovery_time_target",
                repl.throttle.delay_us(),
            );
            repl.metrics
                .render(&mut out, &repl.standbys.snapshot(), wal.flushed());
        }
        out.push_str("# EOF\n");
        out
    }
}

pub fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {v}\n"
    );
}

pub fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {v}\n"
    );
}

/// A histogram from cumulative-ready bucket counts: `bounds[i]` is the
/// upper bound of `counts[i]`; the last count is the +Inf bucket.
pub fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    counts: &[u64],
    sum: f64,
) {
    debug_assert_eq!(bounds.len() + 1, counts.len());
    let _ = write!(out, "# HELP {name} {help}.\n# TYPE {name} histogram\n");
    let mut acc = 0u64;
    for (b, c) in bounds.iter().zip(counts) {
        acc += c;
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
    }
    acc += counts.last().copied().unwrap_or(0);
    let _ = write!(
        out,
        "{name}_bucket{{le=\"+Inf\"}} {acc}\n{name}_sum {sum}\n{name}_count {acc}\n"
    );
}

/// `PUT /failpoints/NAME` with the actions as the body (test builds only,
/// see `crate::failpoints`).
fn set_failpoint(stream: &mut std::net::TcpStream, head: &[u8]) -> (&'static str, String) {
    let text = String::from_utf8_lossy(head).to_string();
    let Some((request, rest)) = text.split_once("\r\n\r\n") else {
        return ("400 Bad Request", "no end of headers\n".into());
    };
    let name = request
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/failpoints/"))
        .unwrap_or_default()
        .to_string();
    let length = request
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(1024);
    let mut body = rest.as_bytes().to_vec();
    while body.len() < length {
        let mut more = [0u8; 1024];
        match stream.read(&mut more) {
            Ok(0) | Err(_) => break,
            Ok(got) => body.extend_from_slice(&more[..got]),
        }
    }
    let actions = String::from_utf8_lossy(&body[..body.len().min(length)])
        .trim()
        .to_string();
    match crate::failpoints::set(&name, &actions) {
        Ok(()) => {
            tracing::warn!(%name, %actions, "failpoint set over HTTP");
            ("200 OK", format!("{name}={actions}\n"))
        }
        Err(e) => ("400 Bad Request", format!("{e}\n")),
    }
}

/// Serves GET /metrics until the process exits. Runs on its own thread.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    engine: Arc<Engine>,
    repl: Arc<ReplContext>,
) -> std::io::Result<SocketAddr> {
    let listener = crate::io::bind_listener(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &metrics, &engine, &repl);
            }
        })?;
    Ok(bound)
}

fn answer(
    mut stream: std::net::TcpStream,
    metrics: &Metrics,
    engine: &Engine,
    repl: &ReplContext,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut req = [0u8; 2048];
    let mut n = 0;
    while n < req.len() {
        let got = stream.read(&mut req[n..])?;
        if got == 0 {
            break;
        }
        n += got;
        if req[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = &req[..n];
    let (status, body) = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?")
    {
        ("200 OK", metrics.render(engine, Some(repl)))
    } else if head.starts_with(b"PUT /failpoints/") && crate::failpoints::ENABLED {
        set_failpoint(&mut stream, head)
    } else {
        ("404 Not Found", "only GET /metrics is served\n".to_string())
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes())
}
