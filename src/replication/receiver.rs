//! Standby side: the WAL receiver.
//!
//! Runs on the `wal-receiver` thread, one compio runtime. It connects to
//! the upstream named in `<data-dir>/upstream`, authenticates, and asks
//! for WAL from the end of its own WAL. Every `WalData` is checked record
//! by record against the chain, appended to the local WAL (the local
//! flusher makes it durable through io_uring), and acknowledged with a
//! `StandbyStatus` sent at once: received and written together right after
//! the append when the frame asks for a receipt, flushed once the local
//! flush ends, applied whenever redo moves the applied LSN (its kick), so
//! synchronous commits on the primary never wait for a timer.
//!
//! The receiver only receives, writes, flushes and acknowledges: redo runs
//! in the redo pipeline (`redo::pipeline`, on the `redo-dispatcher` thread
//! and its workers). Records become applicable once they are durable here
//! *and* below the primary's flushed LSN that its frames carry (WAL may
//! arrive before the primary's own flush ends; what the primary could
//! still lose is never applied, so a reader here never sees it): the
//! receiver then hands them over (`redo::feed`), never waiting for redo.
//!
//! Errors: a refusal with `NeedsBuild` (or another cluster's system id)
//! stops the receiver and the node reports `needs_build`; so does redo
//! stopping on an error (a fault of the data: a bad record, a page that
//! fails its checksum), with its reason, and the receiver stops streaming
//! instead of reconnecting. Other errors reconnect with backoff.
//!
//! Timelines: an upstream on a newer timeline sends its history
//! (`TimelineSwitch`) before any WAL. If our timeline ended at or after
//! the end of our WAL we adopt the history (history file first, then the
//! control file) and stream on. If our WAL went past the switch but we
//! applied nothing past it (a tail shipped before its primary crashed),
//! we drop that tail (`Engine::cut_wal`) and follow; otherwise the node
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
    // Our whole WAL is durable before we say where it ends.
    wal.wait_flushed(next)
        .await
        .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
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
        s.received = next;
        s.written = next;
        s.flushed = next;
        s.last_error = None;
    });
    // WAL of ours that the primary has made durable meanwhile becomes
    // applicable with the first WalData or Keepalive, never before: a
    // `TimelineSwitch` may come first and show our tail is not on the
    // primary's timeline (the handshake's flushed LSN is on its timeline).
    let mut redo_handoff = Handoff::default();
    // Our applied LSN at once: the primary counts us for `remote_apply`
    // only from this status on (redo may still be behind our WAL).
    status(&mut w, ctx, false).await?;
    let applied = ctx.engine.applied().clone();
    let mut applied_seen = applied.kick().generation();
    // Receiving and flushing overlap: WAL that arrives while a flush is in
    // flight is appended at once and made durable by the next flush (the
    // local flusher batches it), so a standby keeps up with a primary that
    // flushes more often than one fdatasync takes here.
    let mut written = next;
    let mut flushed_here = next;
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
        if flush.is_none() && written > flushed_here {
            flush = Some((written, Instant::now(), wal.wait_flushed(written)));
        }
        let redo_moved = applied.kick().changed(applied_seen);
        let event = {
            let mut redo_moved = std::pin::pin!(redo_moved);
            std::future::poll_fn(|cx| {
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
                if redo_moved.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Applied);
                }
                Poll::Pending
            })
            .await
        };
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
                        crate::failpoints::receiver_on_wal();
                        primary_flushed = primary_flushed.max(end_of_flushed);
                        if start != next {
                            return Err(ConnError::Unexpected {
                                expected: "WAL at our end",
                                got: format!("WAL at {start}, ours ends at {next}"),
                            });
                        }
                        let last = wal_range::validate_bytes(&bytes, start, prev).map_err(
                            |(lsn, e)| ConnError::Unexpected {
                                expected: "valid WAL records",
                                got: format!("bad record at {lsn}: {e}"),
                            },
                        )?;
                        let end = start.add(bytes.len() as u64);
                        ctx.upstream.update(|s| s.received = end);
                        if let Some(delay) = crate::failpoints::receiver_write_delay() {
                            // Only a frame that asks for a receipt gets one
                            // before the slow write: the tests that use this
                            // failpoint show remote_receive commits ask for it.
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
                        redo_handoff.push(start, prev, bytes);
                        (next, prev) = (end, last);
                        written = end;
                        // What this frame's flushed LSN made applicable.
                        redo_handoff.offer(ctx, flushed_here, primary_flushed);
                        if receipt {
                            status(&mut w, ctx, false).await?;
                        }
                    }
                    Message::Keepalive { flushed, .. } => {
                        primary_flushed = primary_flushed.max(flushed);
                        ctx.upstream
                            .update(|s| s.primary_flushed = s.primary_flushed.max(primary_flushed));
                        redo_handoff.offer(ctx, flushed_here, primary_flushed);
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
                            flushed_here = flushed_here.min(to);
                            redo_handoff.cut(to);
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
                flushed_here = flushed_here.max(target);
                ctx.upstream.update(|s| s.flushed = target);
                ctx.metrics
                    .standby_flush_us
                    .record(started.elapsed().as_micros() as u64);
                redo_handoff.offer(ctx, flushed_here, primary_flushed);
                status(&mut w, ctx, false).await?;
            }
            Event::Applied => {
                applied_seen = applied.kick().generation();
                if let Some(e) = ctx.engine.redo_fault() {
                    return Err(ConnError::Refused {
                        code: RefuseCode::NeedsBuild,
                        message: format!("redo failed: {e}"),
                    });
                }
                redo_handoff.applied(ctx, applied.lsn());
                status(&mut w, ctx, false).await?;
            }
        }
    }
}

/// WAL written here that redo may not apply yet (not durable here, or
/// past the primary's flushed LSN), and when earlier parts were handed to
/// redo (for the apply-latency histogram).
#[derive(Default)]
struct Handoff {
    pending: std::collections::VecDeque<Written>,
    offered: std::collections::VecDeque<(Lsn, Instant)>,
}

/// One received frame's records, of which `bytes[..handed]` went to redo.
struct Written {
    start: Lsn,
    bytes: Vec<u8>,
    handed: usize,
    /// LSN of the record before `start + handed`.
    prev: Lsn,
}

impl Handoff {
    fn push(&mut self, start: Lsn, prev: Lsn, bytes: Vec<u8>) {
        self.pending.push_back(Written {
            start,
            bytes,
            handed: 0,
            prev,
        });
    }

    /// Hands redo every written record that ends at or before both our
    /// durable end and the primary's (a record boundary: both are).
    fn offer(&mut self, ctx: &ReplContext, flushed_here: Lsn, primary_flushed: Lsn) {
        let safe = flushed_here.min(primary_flushed);
        let feed = ctx.engine.redo_feed();
        let mut handed_any = false;
        while let Some(w) = self.pending.front_mut() {
            let from = w.start.add(w.handed as u64);
            if from >= safe {
                break;
            }
            let end = w.start.add(w.bytes.len() as u64);
            let (piece, piece_prev) = if end <= safe {
                let Some(w) = self.pending.pop_front() else {
                    break;
                };
                let mut bytes = w.bytes;
                if w.handed > 0 {
                    bytes.drain(..w.handed);
                }
                (bytes, w.prev)
            } else {
                // Up to the last record boundary at or before `safe`.
                let mut off = w.handed;
                let mut last = w.prev;
                while off < w.bytes.len() {
                    let len = crate::redo::assembler::head_at(&w.bytes, off).len;
                    if w.start.add((off + len) as u64) > safe {
                        break;
                    }
                    last = w.start.add(off as u64);
                    off += len;
                }
                if off == w.handed {
                    break;
                }
                let piece = w.bytes[w.handed..off].to_vec();
                let piece_prev = w.prev;
                w.handed = off;
                w.prev = last;
                (piece, piece_prev)
            };
            let piece_end = from.add(piece.len() as u64);
            if self.offered.len() < OFFERED_MAX {
                self.offered.push_back((piece_end, Instant::now()));
            }
            feed.offer(from, piece_prev, piece, safe);
            handed_any = true;
        }
        if !handed_any {
            feed.set_safe(safe);
        }
    }

    /// The WAL was cut at `to`: forgets what lies past it.
    fn cut(&mut self, to: Lsn) {
        while let Some(w) = self.pending.back_mut() {
            if w.start >= to {
                self.pending.pop_back();
                continue;
            }
            let keep = to.bytes_since(w.start) as usize;
            if keep < w.bytes.len() {
                w.bytes.truncate(keep);
            }
            break;
        }
    }

    /// Redo applied up to `applied`: times the hand-offs it covers.
    fn applied(&mut self, ctx: &ReplContext, applied: Lsn) {
        while let Some(&(end, at)) = self.offered.front() {
            if end > applied {
                break;
            }
            ctx.metrics
                .standby_apply_us
                .record(at.elapsed().as_micros() as u64);
            self.offered.pop_front();
        }
    }
}

/// Hand-offs remembered for the apply-latency histogram.
const OFFERED_MAX: usize = 1024;

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

enum Event {
    Message(FrameReader, Result<Message, ConnError>),
    Flushed(Result<(), crate::wal::WalError>),
    /// Redo moved the applied LSN (or stopped).
    Applied,
}

/// This standby's estimated recovery time (`replication::rto`).
pub fn estimated_rto_ms(ctx: &ReplContext) -> u64 {
    let received = ctx.upstream.get().map_or(Lsn::ZERO, |s| s.received);
    let backlog = received.bytes_since(ctx.engine.applied_lsn());
    let rate = ctx
        .engine
        .redo_stats()
        .rate_bytes_per_s
        .load(std::sync::atomic::Ordering::Relaxed);
    super::rto::estimate_ms(backlog, rate)
}

async fn status(
    w: &mut FrameWriter,
    ctx: &ReplContext,
    reply_requested: bool,
) -> Result<(), ConnError> {
    let Some(s) = ctx.upstream.get() else {
        return Ok(());
    };
    let applied = ctx.engine.applied_lsn();
    w.send(&Message::StandbyStatus {
        received: s.received,
        written: s.written,
        flushed: s.flushed,
        applied,
        estimated_rto_ms: estimated_rto_ms(ctx).min(u32::MAX as u64) as u32,
        time_us: now_us(),
        reply_requested,
    })
    .await
}
