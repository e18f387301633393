//! `tandem-bench run`: drives transactions from many clients and measures them.
//!
//! Threads and tasks: `-j` OS threads, each running its own compio runtime
//! (io_uring) with one task per client connection, so a thread multiplexes its
//! clients without locks; the main thread only merges per-second measurements
//! (`stats.rs`) and prints progress. compio was chosen over blocking sockets
//! because `-c` may be much larger than the 2 cores here: blocking sockets would
//! need one OS thread per client and measure the scheduler as much as the server.
//! A blocking variant was not built, so that choice is not measured; as a check
//! of the tool's own cost, select-only at `-c 8 -j 2` against redis-server gave
//! about 125,000 tps where `redis-benchmark -t get -c 8 --threads 2` gave about
//! 100,000 rps on the same machine (2 cores), and a profile of the tool shows
//! mostly kernel time (TCP, io_uring waits), little in the tool's own code.
//!
//! Latency is measured from each transaction's *scheduled* start. Without `-R`
//! the schedule is "as soon as the previous transaction in the pipeline slot
//! finished", so it equals the send time. With `-R` every client follows its own
//! Poisson schedule (exponential gaps, mean `clients / rate`) like pgbench `-R`;
//! a transaction sent late because the server stalled is charged the wait, so
//! coordinated omission is not hidden. With `--pipeline N` up to N transactions
//! are in flight per connection.
//!
//! Faults: a connection error (or a reply timeout) drops the connection, records
//! a `connection_error` event, reconnects through `cluster.rs` (which finds the
//! primary with backoff) and retries every transaction that was in flight. A
//! `READONLY`-style error reply retries that transaction after the replies still in
//! flight are read and the client has reconnected to the primary, trying the
//! other hosts first; if it lands on the host that refused, it first waits a
//! backoff (10 ms, or `--reconnect-backoff-max-ms` if lower, doubling per such
//! reply in a row up to that flag). A transaction
//! is retried at most `max_tries - 1` times, then counted as failed; other error
//! replies fail it at once. Outcomes of retried transactions are counted apart.
//!
//! Pauses: every acknowledged transaction is also recorded with its host in the
//! thread's `AckGaps` (`pause.rs`); the main thread merges them into the windows
//! in which no client got an ack (`--pause-threshold-ms`).
//!
//! Read-your-writes (`--read-your-writes`, `ryw.rs`): every transaction is sent
//! with `LASTLSN` behind it (one more reply, not part of its outcome), and a
//! client reads each acknowledged transaction back on its standby before it
//! issues the next one. The transaction's latency is taken before the check;
//! the check's WAITLSN latency and outcome go to the thread's `RywStats`. With
//! `--pipeline N` the transactions behind one in the pipeline wait for its check,
//! and their latency includes it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use crossbeam_channel::{Receiver, Sender};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::cluster::{self, Target};
use crate::conn::{Conn, ConnError};
use crate::pause::{self, AckGaps, Pauses};
use crate::resp::Value;
use crate::ryw::{CheckOutcome, Probe, ReadBack, RywConfig, RywStats};
use crate::script::{self, Script};
use crate::stats::{Aggregate, Bucket, Event, EventKind, Msg, ThreadStats};

/// How long in-flight transactions may take to finish after a `-T` run ends.
const END_GRACE: Duration = Duration::from_secs(1);
/// Read-your-writes outcomes other than fresh reads whose detail is printed,
/// per thread; the rest are counted.
const RYW_PRINTED_MAX: u32 = 5;
/// Capacity of the worker-to-main channel; seconds and events are small and
/// the main thread drains it continuously.
const CHANNEL_CAPACITY: usize = 4096;

pub struct RunConfig {
    pub target: Target,
    pub script: Script,
    pub clients: usize,
    pub threads: usize,
    pub duration: Option<Duration>,
    pub transactions_per_client: Option<u64>,
    pub rate_tps: Option<f64>,
    pub pipeline: usize,
    pub scale: i64,
    pub max_tries: u32,
    pub reconnect_timeout: Duration,
    pub progress_s: Option<u64>,
    pub run_id: i64,
    /// Windows without any ack longer than this are reported as pauses.
    pub pause_threshold: Duration,
    /// Set with `--read-your-writes`.
    pub ryw: Option<RywConfig>,
}

pub struct RunResult {
    pub aggregate: Aggregate,
    pub events: Vec<Event>,
    pub connect_time: Duration,
    pub elapsed: Duration,
    /// Set when a client gave up (the results are incomplete).
    pub aborted: Option<String>,
    /// Wall-clock time of the run's start, microseconds since the Unix epoch.
    pub start_unix_us: u64,
    pub pauses: Pauses,
    /// The host list that `pauses` index into.
    pub hosts: Vec<String>,
    /// Read-your-writes figures of all threads (all zero without it).
    pub ryw: RywStats,
}

/// Runs the benchmark; returns when every client finished.
pub fn run(cfg: RunConfig) -> anyhow::Result<RunResult> {
    let cfg = Arc::new(cfg);
    let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
    let connect_begin = Instant::now();
    let mut starts = Vec::new();
    let mut handles = Vec::new();
    for thread in 0..cfg.threads {
        let first = cfg.clients * thread / cfg.threads;
        let last = cfg.clients * (thread + 1) / cfg.threads;
        let (start_tx, start_rx) = crossbeam_channel::bounded(1);
        starts.push(start_tx);
        let (cfg, tx) = (Arc::clone(&cfg), tx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("bench-{thread}"))
            .spawn(move || worker(thread, first..last, cfg, tx, start_rx))
            .context("cannot start a worker thread")?;
        handles.push(handle);
    }
    drop(tx);

    let mut ready = 0;
    let mut setup_error = None;
    while ready < cfg.threads {
        match rx.recv() {
            Ok(Msg::Ready { result, .. }) => {
                ready += 1;
                if let Err(e) = result {
                    setup_error.get_or_insert(e);
                }
            }
            Ok(_) => {}
            Err(_) => {
                setup_error.get_or_insert("a worker thread died".to_string());
                break;
            }
        }
    }
    if let Some(e) = setup_error {
        drop(starts);
        join_all(handles);
        bail!("{e}");
    }
    let connect_time = connect_begin.elapsed();
    let start = Instant::now();
    let start_unix_us = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    for s in &starts {
        // A worker that already exited is noticed through its Done message.
        let _ = s.send(start);
    }
    let result = collect(&cfg, &rx, start, connect_time);
    join_all(handles);
    Ok(RunResult {
        start_unix_us,
        ..result
    })
}

fn join_all(handles: Vec<std::thread::JoinHandle<()>>) {
    for h in handles {
        if h.join().is_err() {
            eprintln!("tandem-bench: a worker thread panicked");
        }
    }
}

/// Main-thread loop: merges seconds, prints progress, notes primary changes;
/// at the end merges the threads' ack gaps into pauses.
fn collect(
    cfg: &RunConfig,
    rx: &Receiver<Msg>,
    start: Instant,
    connect_time: Duration,
) -> RunResult {
    let mut aggregate = Aggregate::new(cfg.threads);
    let mut events = Vec::new();
    let mut primary: Option<String> = None;
    let mut done = 0;
    let mut aborted = None;
    let mut acks = Vec::with_capacity(cfg.threads);
    let mut ryw = RywStats::new();
    while done < cfg.threads {
        let Ok(msg) = rx.recv() else { break };
        match msg {
            Msg::Second { second, bucket, .. } => {
                for complete in aggregate.add(second, &bucket) {
                    print_progress(cfg, &mut aggregate, complete);
                }
            }
            Msg::Event(e) => push_event(&mut events, e),
            Msg::Primary { t_s, addr } => {
                if let Some(old) = primary.as_ref().filter(|old| **old != addr) {
                    let detail = format!("{old} -> {addr}");
                    push_event(
                        &mut events,
                        Event {
                            t_s,
                            kind: EventKind::PrimaryChange,
                            detail,
                        },
                    );
                }
                primary = Some(addr);
            }
            Msg::Done {
                error,
                gaps,
                ryw: thread_ryw,
            } => {
                done += 1;
                acks.push(*gaps);
                ryw.merge(&thread_ryw);
                if let Some(e) = error {
                    aborted.get_or_insert(e);
                }
            }
            Msg::Ready { .. } => {}
        }
    }
    let elapsed = start.elapsed();
    aggregate.flush();
    let pauses = pause::merge(&acks, duration_us(cfg.pause_threshold));
    RunResult {
        aggregate,
        events,
        connect_time,
        elapsed,
        aborted,
        start_unix_us: 0,
        pauses,
        hosts: cfg.target.hosts.clone(),
        ryw,
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Events kept in the report; more are counted in the last one's detail only
/// when a flood of connection errors would otherwise fill memory.
const EVENTS_MAX: usize = 10_000;

fn push_event(events: &mut Vec<Event>, e: Event) {
    if events.len() < EVENTS_MAX {
        events.push(e);
    }
}

fn print_progress(cfg: &RunConfig, aggregate: &mut Aggregate, second: u64) {
    let Some(every) = cfg.progress_s.filter(|p| *p > 0) else {
        return;
    };
    if !(second + 1).is_multiple_of(every) {
        return;
    }
    let (from, w) = aggregate.take_window(second + 1);
    let span = (second + 1 - from).max(1) as f64;
    let n = w.hist.len();
    let (avg, sd) = if n > 0 {
        (w.hist.mean() / 1000.0, w.hist.stdev() / 1000.0)
    } else {
        (0.0, 0.0)
    };
    eprintln!(
        "progress: {}.0 s, {:.1} tps, lat {avg:.3} ms stddev {sd:.3}, {} failed, {} retries",
        second + 1,
        n as f64 / span,
        w.failed,
        w.retries
    );
}

/// State shared by the tasks of one worker thread.
struct Shared {
    cfg: Arc<RunConfig>,
    start: Instant,
    end: Option<Instant>,
    stats: RefCell<ThreadStats>,
    /// Ack times and hosts of this thread's clients, for pause detection.
    gaps: RefCell<AckGaps>,
    tx: Sender<Msg>,
    /// First second the ticker has not sent yet.
    next_second: Cell<u64>,
    /// Failure messages printed so far (bounded by `FAILURES_PRINTED_MAX`).
    failures_printed: Cell<u32>,
    /// Read-your-writes checks of this thread's clients.
    ryw: RefCell<RywStats>,
    /// Read-your-writes problems printed so far (bounded by `RYW_PRINTED_MAX`).
    ryw_printed: Cell<u32>,
}

/// Failed transactions whose error is printed, per thread; the rest are counted.
const FAILURES_PRINTED_MAX: u32 = 5;

impl Shared {
    fn t_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn send(&self, msg: Msg) {
        // The main thread outlives the workers; a closed channel means it is gone.
        let _ = self.tx.send(msg);
    }
}

fn worker(
    thread: usize,
    client_ids: std::ops::Range<usize>,
    cfg: Arc<RunConfig>,
    tx: Sender<Msg>,
    start_rx: Receiver<Instant>,
) {
    let runtime = match compio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let result = Err(format!(
                "thread {thread}: cannot create an io_uring runtime: {e}"
            ));
            let _ = tx.send(Msg::Ready { result });
            return;
        }
    };
    let target = cfg.target.clone();
    let connected = runtime.block_on(async {
        let mut conns = Vec::new();
        for _ in client_ids.clone() {
            let (conn, index) = target.connect_primary(0).await.map_err(|e| e.to_string())?;
            conns.push((conn, index));
        }
        Ok::<_, String>(conns)
    });
    let conns = match connected {
        Ok(conns) => {
            let _ = tx.send(Msg::Ready { result: Ok(()) });
            conns
        }
        Err(e) => {
            let _ = tx.send(Msg::Ready { result: Err(e) });
            return;
        }
    };
    let Ok(start) = start_rx.recv() else {
        return;
    };
    for (conn, _) in &conns {
        let _ = tx.send(Msg::Primary {
            t_s: 0.0,
            addr: conn.addr().to_string(),
        });
    }
    let duration = cfg.duration;
    let threshold_us = duration_us(cfg.pause_threshold);
    let shared = Rc::new(Shared {
        end: duration.map(|d| start + d),
        cfg,
        start,
        stats: RefCell::new(ThreadStats::new(start, duration)),
        gaps: RefCell::new(AckGaps::new(threshold_us)),
        tx: tx.clone(),
        next_second: Cell::new(0),
        failures_printed: Cell::new(0),
        ryw: RefCell::new(RywStats::new()),
        ryw_printed: Cell::new(0),
    });
    let error = runtime.block_on(run_thread(Rc::clone(&shared), client_ids, conns));
    let gaps = Box::new(shared.gaps.replace(AckGaps::new(1)));
    let ryw = Box::new(shared.ryw.replace(RywStats::new()));
    let _ = tx.send(Msg::Done { error, gaps, ryw });
}

async fn run_thread(
    shared: Rc<Shared>,
    client_ids: std::ops::Range<usize>,
    conns: Vec<(Conn, usize)>,
) -> Option<String> {
    let ticker = compio::runtime::spawn(tick(Rc::clone(&shared)));
    let mut tasks = Vec::new();
    for (id, (conn, index)) in client_ids.zip(conns) {
        let client = Client::new(Rc::clone(&shared), id, conn, index);
        tasks.push(compio::runtime::spawn(client.run()));
    }
    let mut error = None;
    for task in tasks {
        let outcome = match task.await {
            Ok(r) => r,
            Err(e) => Err(format!("client task ended abnormally: {e:?}")),
        };
        if let Err(e) = outcome {
            error.get_or_insert(e);
        }
    }
    // The ticker returns by itself only at a `-T` run's last second; what it
    // sent is in `next_second`.
    let _ = ticker.cancel().await;
    send_seconds(&shared, shared.next_second.get(), u64::MAX);
    error
}

/// Sends each finished second of this thread to the main thread, once per second,
/// including empty seconds so the main thread can close them. Runs until cancelled.
/// With `-T`, the last second is left to `run_thread`'s final send: transactions
/// that finish in the grace period after the end count into it (`ThreadStats`),
/// so it is complete only when every client is done (sent earlier, they were lost).
async fn tick(shared: Rc<Shared>) {
    let last_second = shared.cfg.duration.map(|d| d.as_secs().saturating_sub(1));
    loop {
        let next_second = shared.next_second.get();
        if last_second.is_some_and(|last| next_second >= last) {
            return;
        }
        compio::time::sleep_until(shared.start + Duration::from_secs(next_second + 1)).await;
        let mut now_second = shared.start.elapsed().as_secs();
        if let Some(last) = last_second {
            now_second = now_second.min(last);
        }
        shared
            .next_second
            .set(send_seconds(&shared, next_second, now_second));
    }
}

/// Sends seconds `[from, until)` (until = MAX: all recorded); returns the next one.
fn send_seconds(shared: &Shared, from: u64, until: u64) -> u64 {
    let taken = shared.stats.borrow_mut().take_before(until);
    let last = taken.last().map(|(s, _)| *s + 1).unwrap_or(from);
    let until = if until == u64::MAX {
        last.max(from)
    } else {
        until
    };
    let mut taken = taken.into_iter().peekable();
    for second in from..until {
        let bucket = match taken.peek() {
            Some((s, _)) if *s == second => taken.next().map(|(_, b)| b),
            _ => None,
        };
        let bucket = Box::new(bucket.unwrap_or_else(Bucket::new));
        shared.send(Msg::Second { second, bucket });
    }
    until
}

/// One transaction on its way through a connection.
struct Tx {
    scheduled: Instant,
    seed: u64,
    tries: u32,
    /// With `--read-your-writes`: what the last rendering of it wrote.
    probe: Option<Probe>,
}

enum Outcome {
    Ok,
    Retry { error: String },
    Fail { error: String },
}

struct Client {
    shared: Rc<Shared>,
    conn: Option<Conn>,
    host_index: usize,
    vars: Vec<i64>,
    rng: SmallRng,
    issued: u64,
    next_scheduled: Instant,
    inflight: VecDeque<Tx>,
    retry: VecDeque<Tx>,
    /// A retryable error reply asked for a reconnect once the pipeline is drained.
    reconnect_wanted: bool,
    /// Set by that reconnect: the host that sent the retryable reply.
    readonly_host: Option<usize>,
    /// Wait before going back to that same host: doubles with each retryable
    /// reply in a row (up to the target's `backoff_max`), zero after an ack. A
    /// fenced primary (switchover in progress) still answers `ROLE` as master,
    /// so without it a client would burn all its tries in a few milliseconds.
    readonly_backoff: Duration,
    /// The host this client reconnected to, until its first ack there: a
    /// new primary is reported on that ack, not on the connect (a fenced
    /// old primary still accepts connections and answers `ROLE` as master
    /// during a switchover, so connects alone flip back and forth).
    unannounced: Option<String>,
    replies: Vec<Value>,
    encoded: Vec<u8>,
    /// With `--read-your-writes`: the standby connection read-backs go to.
    read_back: Option<ReadBack>,
    /// `LASTLSN`'s reply after the transaction `read_tx` read last.
    last_lsn: Option<u64>,
}

/// `LASTLSN`, RESP-encoded: sent behind every transaction with
/// `--read-your-writes`.
const LASTLSN_ENCODED: &[u8] = b"*1\r\n$7\r\nLASTLSN\r\n";

impl Client {
    fn new(shared: Rc<Shared>, id: usize, conn: Conn, host_index: usize) -> Client {
        let cfg = &shared.cfg;
        let mut vars = vec![0; cfg.script.var_count()];
        vars[script::VAR_SCALE] = cfg.scale;
        vars[script::VAR_CLIENT_ID] = id as i64;
        vars[script::VAR_RUN_ID] = cfg.run_id;
        let seed = (cfg.run_id as u64).rotate_left(20) ^ id as u64;
        let read_back = cfg.ryw.as_ref().map(|ryw| ReadBack::new(id, ryw));
        Client {
            next_scheduled: shared.start,
            shared,
            conn: Some(conn),
            host_index,
            vars,
            rng: SmallRng::seed_from_u64(seed),
            issued: 0,
            inflight: VecDeque::new(),
            retry: VecDeque::new(),
            reconnect_wanted: false,
            readonly_host: None,
            readonly_backoff: Duration::ZERO,
            unannounced: None,
            replies: Vec::new(),
            encoded: Vec::new(),
            read_back,
            last_lsn: None,
        }
    }

    async fn run(mut self) -> Result<(), String> {
        loop {
            if self.conn.is_none() && !self.reconnect().await? {
                return Ok(());
            }
            if !self.reconnect_wanted {
                self.fill_pipeline().await;
            }
            if self.inflight.is_empty() {
                if self.reconnect_wanted {
                    self.conn = None;
                    self.reconnect_wanted = false;
                    self.readonly_host = Some(self.host_index);
                    continue;
                }
                if self.retry.is_empty() && !self.may_issue() {
                    return Ok(());
                }
                continue;
            }
            if let Err(e) = self.flush().await {
                self.on_conn_error(e);
                continue;
            }
            match self.read_tx().await {
                Ok(outcome) => {
                    if let Some(probe) = self.finish_front(outcome) {
                        self.read_back(probe).await;
                    }
                }
                Err(_) if self.past_end_grace() => return Ok(()),
                Err(e) => self.on_conn_error(e),
            }
        }
    }

    fn may_issue(&self) -> bool {
        let cfg = &self.shared.cfg;
        if cfg
            .transactions_per_client
            .is_some_and(|t| self.issued >= t)
        {
            return false;
        }
        self.shared.end.is_none_or(|end| Instant::now() < end)
    }

    fn past_end_grace(&self) -> bool {
        self.shared
            .end
            .is_some_and(|end| Instant::now() >= end + END_GRACE)
    }

    /// Queues transactions until the pipeline is full or the schedule says wait.
    async fn fill_pipeline(&mut self) {
        while self.inflight.len() < self.shared.cfg.pipeline {
            let tx = match self.retry.pop_front() {
                Some(tx) if self.may_issue_retry() => tx,
                Some(_) => {
                    // The run is over: drop outstanding retries uncounted.
                    self.retry.clear();
                    continue;
                }
                None => match self.next_tx().await {
                    Some(tx) => tx,
                    None => break,
                },
            };
            self.send_tx(tx);
        }
    }

    fn may_issue_retry(&self) -> bool {
        self.shared.end.is_none_or(|end| Instant::now() < end)
    }

    /// The next new transaction, waiting for its scheduled time if the pipeline is
    /// empty; `None` if nothing may be issued now.
    async fn next_tx(&mut self) -> Option<Tx> {
        if !self.may_issue() {
            return None;
        }
        let cfg = &self.shared.cfg;
        let scheduled = match cfg.rate_tps {
            None => Instant::now(),
            Some(rate) => {
                let scheduled = self.next_scheduled;
                if let Some(end) = self.shared.end.filter(|end| scheduled >= *end) {
                    // Nothing more is scheduled inside the run: wait for its end.
                    compio::time::sleep_until(end).await;
                    return None;
                }
                if scheduled > Instant::now() {
                    if !self.inflight.is_empty() {
                        return None;
                    }
                    compio::time::sleep_until(scheduled).await;
                }
                let per_client = rate / cfg.clients as f64;
                let u: f64 = self.rng.random();
                let gap_s = -(1.0 - u).ln() / per_client;
                let gap = Duration::try_from_secs_f64(gap_s.min(3600.0)).unwrap_or(Duration::ZERO);
                self.next_scheduled = scheduled + gap;
                scheduled
            }
        };
        self.issued += 1;
        Some(Tx {
            scheduled,
            seed: self.rng.random(),
            tries: 0,
            probe: None,
        })
    }

    fn send_tx(&mut self, mut tx: Tx) {
        self.vars[script::VAR_SEQ] += 1;
        self.encoded.clear();
        let rendered = self
            .shared
            .cfg
            .script
            .render(&mut self.vars, tx.seed, &mut self.encoded);
        if let Err(e) = rendered {
            self.report_failure(&tx, &e.to_string());
            return;
        }
        if let Some(ryw) = &self.shared.cfg.ryw {
            tx.probe = Probe::from_encoded(&self.encoded, ryw.read_back_command);
            self.encoded.extend_from_slice(LASTLSN_ENCODED);
        }
        if let Some(conn) = self.conn.as_mut() {
            conn.queue_encoded(&self.encoded);
        }
        self.inflight.push_back(tx);
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        match self.conn.as_mut() {
            Some(conn) => conn.flush().await,
            None => Ok(()),
        }
    }

    /// Reads the replies of the oldest in-flight transaction and classifies them.
    async fn read_tx(&mut self) -> Result<Outcome, ConnError> {
        let cfg = &self.shared.cfg;
        let mut deadline = Instant::now() + cfg.target.io_timeout;
        if let Some(end) = self.shared.end {
            deadline = deadline.min((end + END_GRACE).max(Instant::now()));
        }
        self.replies.clear();
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Outcome::Retry {
                error: "not connected".to_string(),
            });
        };
        for _ in 0..cfg.script.command_count {
            let reply = conn.read_reply(deadline).await?;
            self.replies.push(reply);
        }
        self.last_lsn = None;
        if cfg.ryw.is_some() {
            let reply = conn.read_reply(deadline).await?;
            self.last_lsn = reply.as_int().and_then(|lsn| u64::try_from(lsn).ok());
        }
        Ok(classify(&self.replies))
    }

    /// Counts the oldest in-flight transaction's outcome; with
    /// `--read-your-writes` returns what an acknowledged one wrote.
    fn finish_front(&mut self, outcome: Outcome) -> Option<Probe> {
        let mut tx = self.inflight.pop_front()?;
        let now = Instant::now();
        match outcome {
            Outcome::Ok => {
                self.readonly_backoff = Duration::ZERO;
                if let Some(addr) = self.unannounced.take() {
                    self.shared.send(Msg::Primary {
                        t_s: self.shared.t_s(),
                        addr,
                    });
                }
                let latency_us = now.saturating_duration_since(tx.scheduled).as_micros();
                let latency_us = u64::try_from(latency_us).unwrap_or(u64::MAX);
                self.shared
                    .stats
                    .borrow_mut()
                    .record_ok(now, latency_us, tx.tries > 0);
                let since_start = now.saturating_duration_since(self.shared.start);
                let host = u16::try_from(self.host_index).unwrap_or(u16::MAX);
                self.shared
                    .gaps
                    .borrow_mut()
                    .record(duration_us(since_start), host);
                return tx.probe;
            }
            Outcome::Fail { error } => self.report_failure(&tx, &error),
            Outcome::Retry { error } => {
                self.reconnect_wanted = true;
                let target = &self.shared.cfg.target;
                self.readonly_backoff = (self.readonly_backoff * 2)
                    .max(cluster::BACKOFF_MIN.min(target.backoff_max))
                    .min(target.backoff_max);
                tx.tries += 1;
                if tx.tries >= self.shared.cfg.max_tries {
                    self.report_failure(&tx, &error);
                } else {
                    self.shared.stats.borrow_mut().record_retry(now);
                    self.retry.push_back(tx);
                }
            }
        }
        None
    }

    /// Reads what an acknowledged transaction wrote back on this client's
    /// standby (`ryw.rs`) and counts the outcome. Skipped after the run's
    /// grace period (the standby may be gone with the cluster).
    async fn read_back(&mut self, probe: Probe) {
        if self.past_end_grace() {
            return;
        }
        let shared = Rc::clone(&self.shared);
        let (Some(cfg), Some(read_back)) = (shared.cfg.ryw.as_ref(), self.read_back.as_mut())
        else {
            return;
        };
        let outcome = match self.last_lsn.take() {
            Some(lsn) => read_back.check(cfg, &shared.cfg.target, &probe, lsn).await,
            None => CheckOutcome::Error {
                standby: String::new(),
                detail: "LASTLSN on the primary did not reply an LSN".to_string(),
            },
        };
        shared.ryw.borrow_mut().record(&outcome);
        let detail = match &outcome {
            CheckOutcome::Fresh { .. } => return,
            CheckOutcome::Stale {
                standby,
                applied,
                got,
                ..
            } => format!(
                "stale read on {standby}: GET {} after WAITLSN replied {applied} returned {}, \
                 the transaction wrote {:?}",
                String::from_utf8_lossy(&probe.key),
                got.as_ref().map_or("(nil)".to_string(), |v| format!(
                    "{:?}",
                    String::from_utf8_lossy(v)
                )),
                String::from_utf8_lossy(&probe.value)
            ),
            CheckOutcome::Timeout { standby, reply } => format!("WAITLSN on {standby}: {reply}"),
            CheckOutcome::Error { standby, detail } => {
                format!("read-back on {standby} failed: {detail}")
            }
        };
        let printed = shared.ryw_printed.get();
        if printed < RYW_PRINTED_MAX {
            shared.ryw_printed.set(printed.saturating_add(1));
            eprintln!("tandem-bench: read-your-writes: {detail}");
        }
    }

    fn report_failure(&self, tx: &Tx, error: &str) {
        let now = Instant::now();
        self.shared
            .stats
            .borrow_mut()
            .record_failed(now, tx.tries > 0);
        let printed = self.shared.failures_printed.get();
        if printed < FAILURES_PRINTED_MAX {
            self.shared.failures_printed.set(printed + 1);
            eprintln!("tandem-bench: transaction failed: {error}");
        }
    }

    /// Drops the connection and moves everything in flight to the retry queue.
    fn on_conn_error(&mut self, e: ConnError) {
        self.conn = None;
        self.reconnect_wanted = false;
        let detail = e.to_string();
        self.shared.send(Msg::Event(Event {
            t_s: self.shared.t_s(),
            kind: EventKind::ConnectionError,
            detail: detail.clone(),
        }));
        let now = Instant::now();
        // Retries keep their original order, ahead of transactions retried earlier.
        let mut moved: VecDeque<Tx> = self.inflight.drain(..).collect();
        moved.extend(self.retry.drain(..));
        for mut tx in moved {
            tx.tries += 1;
            if tx.tries >= self.shared.cfg.max_tries {
                self.report_failure(&tx, &detail);
            } else {
                self.shared.stats.borrow_mut().record_retry(now);
                self.retry.push_back(tx);
            }
        }
    }

    /// Sleeps `readonly_backoff`, but not past the end of the run.
    async fn wait_readonly_backoff(&self) {
        let mut until = Instant::now() + self.readonly_backoff;
        if let Some(end) = self.shared.end {
            until = until.min(end);
        }
        compio::time::sleep_until(until).await;
    }

    /// Finds the primary again. `Ok(false)`: the run ended while waiting.
    async fn reconnect(&mut self) -> Result<bool, String> {
        let cfg = &self.shared.cfg;
        let mut deadline = Instant::now() + cfg.reconnect_timeout;
        if let Some(end) = self.shared.end {
            deadline = deadline.min(end);
        }
        let target = &cfg.target;
        // After a retryable reply, look at the other hosts first.
        let readonly_host = self.readonly_host.take();
        let start = readonly_host.map_or(self.host_index, |h| h + 1);
        match target.connect_primary_retrying(start, deadline).await {
            Ok((conn, index)) => {
                if readonly_host == Some(index) {
                    self.wait_readonly_backoff().await;
                }
                self.host_index = index;
                self.unannounced = Some(conn.addr().to_string());
                self.conn = Some(conn);
                Ok(true)
            }
            Err(_) if self.shared.end.is_some_and(|end| Instant::now() >= end) => Ok(false),
            Err(e) => Err(format!("client gave up reconnecting: {e}")),
        }
    }
}

/// Decides a transaction's outcome from its replies.
fn classify(replies: &[Value]) -> Outcome {
    let mut fail = None;
    for reply in replies {
        let nested = match reply {
            Value::Array(items) => items.as_slice(),
            other => std::slice::from_ref(other),
        };
        for v in nested {
            if let Value::Error(text) = v {
                let error = String::from_utf8_lossy(text).into_owned();
                if cluster::is_retryable_error(text) {
                    return Outcome::Retry { error };
                }
                fail.get_or_insert(error);
            }
        }
    }
    match fail {
        Some(error) => Outcome::Fail { error },
        None => Outcome::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_outcomes() {
        let ok = vec![
            Value::Simple(b"OK".to_vec()),
            Value::Array(vec![Value::Int(1)]),
        ];
        assert!(matches!(classify(&ok), Outcome::Ok));
        let ro = vec![Value::Error(b"READONLY replica".to_vec())];
        let mut lastlsn = Vec::new();
        crate::resp::encode_command(&mut lastlsn, &["LASTLSN"]);
        assert_eq!(LASTLSN_ENCODED, &lastlsn[..]);
        assert!(matches!(classify(&ro), Outcome::Retry { .. }));
        let bad = vec![Value::Array(vec![Value::Error(
            b"ERR not an integer".to_vec(),
        )])];
        assert!(matches!(classify(&bad), Outcome::Fail { .. }));
    }
}
