//! Standby side: the WAL receiver and (serial) redo.
//!
//! Runs on the `wal-receiver` thread, one compio runtime. It connects to
//! the upstream named in `<data-dir>/upstream`, authenticates, and asks
//! for WAL from the end of its own WAL. Every `WalData` is checked record
//! by record against the chain, appended to the local WAL (the local
//! flusher makes it durable through io_uring), and acknowledged at each
//! stage with a `StandbyStatus` sent at once (received and written
//! together right after the append when the frame asks for a receipt or
//! let us apply something, flushed and applied together once the local
//! flush ends and the batch is redone), so synchronous commits on the
//! primary never wait for a timer. Complete
//! record groups are applied once they are durable here *and* below the
//! primary's flushed LSN that its frames carry (WAL may arrive before the
//! primary's own flush ends; what the primary could still lose is never
//! applied, so a reader here never sees it). A stream starts by reloading
//! the records durable here but not yet applied. Parallel redo is its own
//! issue; this applies serially.
//!
//! Errors: a refusal with `NeedsBuild` (or another cluster's system id)
//! stops the receiver and the node reports `needs_build`; other errors
//! reconnect with backoff.
//!
//! Timelines: an upstream on a newer timeline sends its history
//! (`TimelineSwitch`) before any WAL. If our timeline ended at or after
//! the end of our WAL we adopt the history (history file first, then the
//! control file) and stream on. If our WAL went past the switch but we
//! applied nothing past it (a tail shipped before its primary crashed),
//! we drop that tail (`Wal::truncate_to`) and follow; otherwise the node
//! needs a build, with the divergence LSN in INFO.
//!
//! Control ([`ReceiverControl`]): the thread lives as long as the node and
//! streams while an upstream is set. `follow` points it at another
//! upstream and `stop` (promotion) ends the stream and waits until the
//! receiver is out of it; both kick the running stream at once (no
//! polling).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::conn::{self, ConnError, FrameReader, FrameWriter};
use super::context::ReplContext;
use super::frame::{Message, Purpose, RefuseCode};
use super::sender::now_us;
use super::status::{LinkState, UpstreamStatus};
use super::wal_range;
use crate::ids::Lsn;
use crate::kick::{until_kicked, Kick};
use crate::wal::reader::OwnedRecordBytes;
use crate::wal::record::Record;
use crate::wal::FlushWait;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How long `ReceiverControl::stop` waits for the receiver to leave its
/// stream (it leaves at its next await point; this bounds a stuck disk).
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Where the WAL receiver streams from, and the switches that change it.
#[derive(Default)]
pub struct ReceiverControl {
    state: parking_lot::Mutex<RxState>,
    changed: parking_lot::Condvar,
    kick: Kick,
}

#[derive(Default)]
struct RxState {
    upstream: Option<String>,
    /// The receiver thread is inside a stream (or its backoff).
    running: bool,
}

impl ReceiverControl {
    /// Streams from `upstream` from now on (ends any current stream).
    pub fn follow(&self, upstream: String) {
        self.state.lock().upstream = Some(upstream);
        self.kick.kick();
        self.changed.notify_all();
    }

    /// Ends streaming and waits until the receiver has left its stream, so
    /// nothing appends to the WAL behind the caller. False if it did not
    /// leave within `STOP_WAIT`.
    pub fn stop(&self) -> bool {
        let mut st = self.state.lock();
        st.upstream = None;
        self.kick.kick();
        self.changed.notify_all();
        let deadline = Instant::now() + STOP_WAIT;
        while st.running {
            if self.changed.wait_until(&mut st, deadline).timed_out() {
                return !st.running;
            }
        }
        true
    }

    pub fn upstream(&self) -> Option<String> {
        self.state.lock().upstream.clone()
    }

    /// Receiver thread: waits for an upstream; returns it with the kick
    /// generation it is valid for, marked running.
    fn next(&self) -> (String, u64) {
        let mut st = self.state.lock();
        loop {
            if let Some(up) = st.upstream.clone() {
                st.running = true;
                return (up, self.kick.generation());
            }
            self.changed.wait(&mut st);
        }
    }

    fn left(&self) {
        self.state.lock().running = false;
        self.changed.notify_all();
    }
}

/// Starts the `wal-receiver` thread; it streams whenever
/// `ctx.receiver` has an upstream.
pub fn start(ctx: Arc<ReplContext>, core: Option<usize>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("wal-receiver".into())
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
            let runtime = match crate::io::net_runtime::network_runtime() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "receiver runtime failed to start");
                    return;
                }
            };
            loop {
                let (upstream, generation) = ctx.receiver.next();
                let applied = ctx.engine.applied_lsn();
                ctx.upstream.set(UpstreamStatus {
                    upstream: upstream.clone(),
                    primary_client_addr: String::new(),
                    state: LinkState::Connecting,
                    received: applied,
                    written: applied,
                    flushed: applied,
                    applied,
                    primary_flushed: applied,
                    last_error: None,
                });
                runtime.block_on(until_kicked(
                    &ctx.receiver.kick,
                    generation,
                    receive_forever(&ctx, &upstream),
                ));
                ctx.receiver.left();
            }
        })?;
    Ok(())
}

async fn receive_forever(ctx: &ReplContext, upstream: &str) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let result = stream_once(ctx, upstream, &mut backoff).await;
        let (state, stop) = match &result {
            Err(ConnError::Refused {
                code: RefuseCode::NeedsBuild | RefuseCode::SystemIdMismatch,
                ..
            }) => (LinkState::NeedsBuild, true),
            _ => (LinkState::Connecting, false),
        };
        if let Err(e) = &result {
            tracing::warn!(%upstream, error = %e, "WAL receiver disconnected");
            ctx.upstream.update(|s| {
                s.state = state;
                s.last_error = Some(e.to_string());
            });
        }
        if stop {
            tracing::error!(%upstream, "this standby needs a build (tandem build --from ... --data-dir ...)");
            if ctx.needs_build().is_none() {
                let reason = result
                    .as_ref()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                super::roles::mark_needs_build(ctx, reason, None);
            }
            std::future::pending::<()>().await;
        }
        if matches!(result, Err(ConnError::Io(_))) && !ctx.peers.is_empty() {
            if let Some(newer) = find_newer_primary(ctx, upstream).await {
                tracing::warn!(%upstream, primary = %newer, "upstream lost; a peer is the primary of a newer timeline: following it");
                if let Err(e) = super::roles::write_upstream(ctx.engine.data_dir(), &newer) {
                    tracing::error!(error = %e, "cannot record the new upstream");
                }
                ctx.receiver.follow(newer);
                return;
            }
        }
        compio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn stream_once(
    ctx: &ReplContext,
    upstream: &str,
    backoff: &mut Duration,
) -> Result<(), ConnError> {
    let engine = &ctx.engine;
    let wal = engine.wal().clone();
    let stream = compio::net::TcpStream::connect(upstream).await?;
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = conn::split(stream);
    let (mut next, mut prev) = wal.insert_position();
    // Records durable here but not applied yet (the last stream may have
    // ended before the primary said they were durable there).
    wal.wait_flushed(next)
        .await
        .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
    let mut durable = load_unapplied(ctx, next)?;
    let up = conn::handshake_as_standby(
        &mut r,
        &mut w,
        &ctx.secret,
        &ctx.name,
        Some((engine.system_id(), engine.timeline())),
        next,
        Purpose::Stream,
    )
    .await
    .map_err(|e| match e {
        ConnError::Refused { code, message } => ConnError::Refused {
            code,
            message: format!("{upstream}: {message}"),
        },
        other => other,
    })?;
    let (primary_name, client_addr) = (up.primary_name, up.client_addr);
    let mut primary_flushed = up.flushed;
    tracing::info!(%upstream, primary = %primary_name, start = %next, "streaming WAL");
    *backoff = BACKOFF_MIN;
    ctx.upstream.update(|s| {
        s.state = LinkState::Streaming;
        s.primary_client_addr = client_addr;
        s.primary_flushed = primary_flushed;
        // Our whole WAL is durable here (waited for above).
        s.received = next;
        s.written = next;
        s.flushed = next;
        s.last_error = None;
    });
    // Our applied LSN at once: the primary counts us for `remote_apply`
    // only from this status on (we may still be redoing WAL we hold).
    status(&mut w, ctx, false).await?;
    // Receiving and flushing overlap: WAL that arrives while a flush is in
    // flight is appended at once and made durable by the next flush (the
    // local flusher batches it), so a standby keeps up with a primary that
    // flushes more often than one fdatasync takes here.
    let mut group: Vec<(Lsn, OwnedRecordBytes)> = Vec::new();
    let mut unflushed: Vec<(Lsn, OwnedRecordBytes)> = Vec::new();
    let mut written = next;
    type Recv = Pin<Box<dyn Future<Output = (FrameReader, Result<Message, ConnError>)>>>;
    let mut reader = Some(r);
    let mut recv: Option<Recv> = None;
    let mut flush: Option<(Lsn, Instant, FlushWait)> = None;
    loop {
        if let Some(mut r) = reader.take() {
            recv = Some(Box::pin(async move {
                let m = r.recv().await;
                (r, m)
            }));
        }
        if flush.is_none() && written > ctx.upstream.get().map_or(written, |s| s.flushed) {
            flush = Some((written, Instant::now(), wal.wait_flushed(written)));
        }
        let event = std::future::poll_fn(|cx| {
            if let Some(f) = recv.as_mut() {
                if let Poll::Ready((r, m)) = f.as_mut().poll(cx) {
                    return Poll::Ready(Event::Message(r, m));
                }
            }
            if let Some((_, _, f)) = flush.as_mut() {
                if let Poll::Ready(x) = Pin::new(f).poll(cx) {
                    return Poll::Ready(Event::Flushed(x));
                }
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Message(r, m) => {
                recv = None;
                reader = Some(r);
                match m? {
                    Message::WalData {
                        start,
                        bytes,
                        end_of_flushed,
                        receipt,
                    } => {
                        test_panic();
                        primary_flushed = primary_flushed.max(end_of_flushed);
                        if start != next {
                            return Err(ConnError::Unexpected {
                                expected: "WAL at our end",
                                got: format!("WAL at {start}, ours ends at {next}"),
                            });
                        }
                        let (records, last) = wal_range::validate_chain(&bytes, start, prev)
                            .map_err(|(lsn, e)| ConnError::Unexpected {
                                expected: "valid WAL records",
                                got: format!("bad record at {lsn}: {e}"),
                            })?;
                        let end = start.add(bytes.len() as u64);
                        ctx.upstream.update(|s| s.received = end);
                        if let Some(delay) = test_write_delay() {
                            // Only a frame that asks for a receipt gets one
                            // before the slow write: the tests that use this
                            // knob show remote_receive commits ask for it.
                            if receipt {
                                status(&mut w, ctx, false).await?;
                            }
                            compio::time::sleep(delay).await;
                        }
                        // Append first: it wakes our flusher, so the local
                        // fdatasync runs while the acknowledgement travels
                        // (one status for received and written).
                        let t = Instant::now();
                        wal.append(&bytes, last)
                            .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
                        ctx.upstream.update(|s| s.written = end);
                        ctx.metrics
                            .standby_write_us
                            .record(t.elapsed().as_micros() as u64);
                        (next, prev) = (end, last);
                        written = end;
                        unflushed.extend(records);
                        // One status for received, written and whatever
                        // this frame's flushed LSN let us apply, when the
                        // primary asked for a receipt or we applied
                        // something (remote_apply waits for that); else
                        // the status after our flush answers this frame.
                        let applied = apply_ready(ctx, &mut group, &mut durable, primary_flushed)?;
                        if receipt || applied {
                            status(&mut w, ctx, false).await?;
                        }
                    }
                    Message::Keepalive { flushed, .. } => {
                        primary_flushed = primary_flushed.max(flushed);
                        apply_ready(ctx, &mut group, &mut durable, primary_flushed)?;
                        status(&mut w, ctx, false).await?;
                    }
                    Message::SyncRule { rule, origin } => {
                        // The primary's rule: ours from now on, applied
                        // when this node is promoted (`sync_rule_file`).
                        ctx.sync
                            .set_rule(rule, origin, &ctx.standbys)
                            .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
                    }
                    Message::TimelineSwitch { history } => {
                        let truncated =
                            super::roles::adopt_timeline(ctx, history, next).map_err(|e| {
                                ConnError::Refused {
                                    code: RefuseCode::NeedsBuild,
                                    message: format!("{upstream}: {e}"),
                                }
                            })?;
                        if let Some((to, to_prev)) = truncated {
                            (next, prev) = (to, to_prev);
                            written = to;
                            durable = load_unapplied(ctx, next)?;
                            group.clear();
                            ctx.upstream.update(|s| {
                                s.received = to;
                                s.written = to;
                                s.flushed = to;
                            });
                        }
                    }
                    other => {
                        return Err(conn::unexpected(
                            "WalData, Keepalive, SyncRule or TimelineSwitch",
                            &other,
                        ))
                    }
                }
            }
            Event::Flushed(result) => {
                let Some((target, started, _)) = flush.take() else {
                    continue;
                };
                result.map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
                ctx.upstream.update(|s| s.flushed = target);
                ctx.metrics
                    .standby_flush_us
                    .record(started.elapsed().as_micros() as u64);
                let n = unflushed.partition_point(|(lsn, _)| *lsn < target);
                durable.extend(unflushed.drain(..n));
                // Applying before the status costs the flushed ack a few
                // microseconds (serial redo of one batch) and saves a
                // second status frame per batch on both nodes' CPUs.
                apply_ready(ctx, &mut group, &mut durable, primary_flushed)?;
                status(&mut w, ctx, false).await?;
            }
        }
    }
}

/// After losing `upstream`: a peer that is the primary of a timeline
/// newer than ours (a failover happened), if any answers.
async fn find_newer_primary(ctx: &ReplContext, upstream: &str) -> Option<String> {
    let ours = ctx.engine.timeline();
    for addr in ctx.peers.iter().filter(|a| a.as_str() != upstream) {
        let probe = compio::time::timeout(BACKOFF_MAX, super::pending::probe(ctx, addr)).await;
        if let Ok(Ok(a)) = probe {
            if a.role == super::frame::PeerRole::Primary && a.history.current() > ours {
                return Some(addr.clone());
            }
        }
    }
    None
}

/// Applies the durable records the primary has made durable too (below
/// `primary_flushed`: the primary may still lose what lies past it). The
/// caller reports the applied LSN in its next status. True when a group
/// was applied (or aborted): the applied LSN moved.
fn apply_ready(
    ctx: &ReplContext,
    group: &mut Vec<(Lsn, OwnedRecordBytes)>,
    durable: &mut Vec<(Lsn, OwnedRecordBytes)>,
    primary_flushed: Lsn,
) -> Result<bool, ConnError> {
    let n = durable.partition_point(|(lsn, _)| *lsn < primary_flushed);
    if n == 0 {
        return Ok(false);
    }
    let records: Vec<_> = durable.drain(..n).collect();
    let t = Instant::now();
    let applied = apply(ctx, group, records)?;
    ctx.metrics
        .standby_apply_us
        .record(t.elapsed().as_micros() as u64);
    ctx.upstream
        .update(|s| s.primary_flushed = s.primary_flushed.max(primary_flushed));
    Ok(applied)
}

/// The records of the local WAL from the applied position to `end` (all
/// durable: the caller waited for them).
fn load_unapplied(ctx: &ReplContext, end: Lsn) -> Result<Vec<(Lsn, OwnedRecordBytes)>, ConnError> {
    let engine = &ctx.engine;
    let (from, from_prev) = engine.applied_position();
    let mut out = Vec::new();
    if from >= end {
        return Ok(out);
    }
    let io = |e: crate::wal::WalError| ConnError::Io(std::io::Error::other(e.to_string()));
    let mut reader = crate::wal::reader::WalReader::open(
        &ctx.wal_dir,
        engine.wal().config().segment_bytes,
        engine.timeline(),
        from,
        from_prev,
    )
    .map_err(io)?;
    while let Some((lsn, rec)) = reader.next().map_err(io)? {
        if lsn >= end {
            break;
        }
        out.push((lsn, rec));
    }
    Ok(out)
}

enum Event {
    Message(FrameReader, Result<Message, ConnError>),
    Flushed(Result<(), crate::wal::WalError>),
}

/// Applies every complete group among `records` (with the pending partial
/// group carried over from earlier chunks). True when any group ended.
fn apply(
    ctx: &ReplContext,
    group: &mut Vec<(Lsn, OwnedRecordBytes)>,
    records: Vec<(Lsn, OwnedRecordBytes)>,
) -> Result<bool, ConnError> {
    let mut ended = false;
    for (lsn, rec) in records {
        let record = rec.record();
        let (is_commit, is_abort) = (
            matches!(record, Record::Commit { .. }),
            matches!(record, Record::Abort),
        );
        let len = rec.bytes().len() as u64;
        if is_abort {
            // Ends the group without applying it (see wal::record).
            group.clear();
            let end = lsn.add(len);
            ctx.engine
                .apply_group(&[], end, lsn)
                .map_err(|e| ConnError::Io(std::io::Error::other(format!("redo failed: {e}"))))?;
            ctx.upstream.update(|s| s.applied = end);
            ended = true;
            continue;
        }
        group.push((lsn, rec));
        if is_commit {
            let end = lsn.add(len);
            ctx.engine
                .apply_group(group, end, lsn)
                .map_err(|e| ConnError::Io(std::io::Error::other(format!("redo failed: {e}"))))?;
            group.clear();
            ctx.upstream.update(|s| s.applied = end);
            ended = true;
        }
    }
    Ok(ended)
}

/// Test knob (a fault a process cannot provoke from outside): with
/// `TANDEM_TEST_STANDBY_WRITE_DELAY_MS` set, the receiver waits that long
/// between acknowledging receipt and writing, like a standby with a slow
/// disk. Tests use it to show `remote_receive` does not wait for what
/// `on` waits for.
fn test_write_delay() -> Option<Duration> {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("TANDEM_TEST_STANDBY_WRITE_DELAY_MS")
            .ok()?
            .parse()
            .ok()
            .map(Duration::from_millis)
    })
}

/// Test knob: with `TANDEM_TEST_RECEIVER_PANIC=1` the receiver panics on
/// the first WAL it receives, standing in for a bug, so a test can show
/// that a panicking role thread stops the node (`node::abort_on_panic`)
/// instead of leaving a standby that serves reads and replicates nothing.
fn test_panic() {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var("TANDEM_TEST_RECEIVER_PANIC").is_ok_and(|v| v == "1")) {
        panic!("TANDEM_TEST_RECEIVER_PANIC: simulated bug in the WAL receiver");
    }
}

async fn status(
    w: &mut FrameWriter,
    ctx: &ReplContext,
    reply_requested: bool,
) -> Result<(), ConnError> {
    let Some(s) = ctx.upstream.get() else {
        return Ok(());
    };
    w.send(&Message::StandbyStatus {
        received: s.received,
        written: s.written,
        flushed: s.flushed,
        applied: s.applied,
        time_us: now_us(),
        reply_requested,
    })
    .await
}
