//! Primary side of the replication port: accepts peers, runs the
//! handshake, then streams WAL to a standby (or hands the connection to
//! the build sender).
//!
//! Runs on the `wal-sender` thread: one compio (io_uring) runtime, one
//! task per peer. A standby's stream: whole records from its start LSN up
//! to our flushed LSN, read from segment files in chunks of
//! `wal_range::CHUNK_BYTES`; then, on a primary, each batch as the flusher
//! takes it (`Wal::submitted_from`, woken by its `Kick`), so the standby's
//! fdatasync overlaps ours; every frame carries our flushed LSN (the
//! standby applies nothing past it) and a `Keepalive` tells it when our
//! flush catches up, or after a second of silence. A cascading standby
//! forwards only what it flushed, capped at its primary's flushed LSN.
//! A second task per standby reads its status frames, updates the standby
//! table and the synchronous-commit horizons. The stream also carries the
//! node's synchronous-commit rule (`SyncRule`), first and after every
//! change, so a standby promoted later applies the same rule.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::auth;
use super::build;
use super::conn::{self, ConnError, FrameReader, FrameWriter};
use super::context::ReplContext;
use super::frame::{
    Message, PeerRole, Purpose, RefuseCode, FORMAT_VERSION as PROTOCOL_VERSION, WAL_DATA_BYTES_MAX,
};
use super::status::{LinkState, StandbyEntry};
use super::timeline::Follow;
use super::wal_range;
use crate::engine::control_file::Role;
use crate::engine::WriteBlock;
use crate::ids::{Lsn, SegmentNo, TimelineId};

const KEEPALIVE_AFTER: Duration = Duration::from_secs(1);

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Binds the replication port and starts the `wal-sender` thread.
pub fn start(
    ctx: Arc<ReplContext>,
    addr: SocketAddr,
    core: Option<usize>,
) -> std::io::Result<SocketAddr> {
    let listener = crate::io::bind_listener(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    if ctx.secret.is_empty() {
        tracing::warn!(
            "cluster_secret is not set: any peer that knows the system id may replicate"
        );
    }
    std::thread::Builder::new().name("wal-sender".into()).spawn(move || {
        if let Some(core) = core {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
        }
        let runtime = match crate::io::net_runtime::network_runtime() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "replication runtime failed to start");
                return;
            }
        };
        runtime.block_on(async move {
            let listener = match compio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "replication listener failed");
                    return;
                }
            };
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                compio::runtime::spawn(async move {
                    if let Err(e) = serve_peer(ctx, stream, peer).await {
                        tracing::warn!(%peer, error = %e, "replication peer refused or disconnected");
                    }
                })
                .detach();
            }
        });
    })?;
    Ok(bound)
}

/// What the handshake established about a peer.
pub struct Peer {
    pub name: String,
    pub addr: SocketAddr,
    pub start: Lsn,
    /// The peer's timeline (for a standby: the one its WAL is on).
    pub timeline: TimelineId,
    pub purpose: Purpose,
}

async fn serve_peer(
    ctx: Arc<ReplContext>,
    stream: compio::net::TcpStream,
    addr: SocketAddr,
) -> Result<(), ConnError> {
    let (mut r, mut w) = conn::split(stream);
    let peer = handshake(&ctx, &mut r, &mut w, addr).await?;
    tracing::info!(name = %peer.name, %addr, purpose = ?peer.purpose, start = %peer.start, "replication peer authenticated");
    if peer.purpose == Purpose::Probe {
        return w.send(&peer_status(&ctx)).await;
    }
    if let Some(why) = not_ready(&ctx) {
        let msg = format!("this node serves no WAL now: {why}");
        w.refuse(RefuseCode::NotReady, msg.clone()).await;
        return Err(ConnError::Refused {
            code: RefuseCode::NotReady,
            message: msg,
        });
    }
    match peer.purpose {
        Purpose::Build => build::serve(&ctx, &peer, &mut w).await,
        Purpose::Stream => stream_wal(ctx, peer, r, w).await,
        Purpose::Probe => Ok(()),
    }
}

/// Why this node must not serve WAL or builds (pending, needs a build).
fn not_ready(ctx: &ReplContext) -> Option<String> {
    if let Some(nb) = ctx.needs_build() {
        return Some(nb.reason);
    }
    match ctx.engine.write_block() {
        Some(b @ (WriteBlock::Pending | WriteBlock::NeedsBuild | WriteBlock::NoTimelineYet)) => {
            Some(b.to_string())
        }
        _ => None,
    }
}

/// This node's answer to a `Probe`.
pub fn peer_status(ctx: &ReplContext) -> Message {
    let engine = &ctx.engine;
    let role = if ctx.needs_build().is_some() {
        PeerRole::NeedsBuild
    } else if engine.role() == Role::Standby {
        PeerRole::Standby
    } else if engine.write_block() == Some(WriteBlock::Pending) {
        PeerRole::Pending
    } else {
        PeerRole::Primary
    };
    Message::PeerStatus {
        role,
        flushed: engine.wal().flushed(),
        history: ctx.history.lock().clone(),
    }
}

async fn handshake(
    ctx: &ReplContext,
    r: &mut FrameReader,
    w: &mut FrameWriter,
    addr: SocketAddr,
) -> Result<Peer, ConnError> {
    let hello = r.recv().await?;
    let Message::Hello {
        protocol_version,
        system_id,
        timeline,
        start_lsn,
        name,
        purpose,
    } = hello
    else {
        w.refuse(RefuseCode::Protocol, "expected Hello".into())
            .await;
        return Err(conn::unexpected("Hello", &hello));
    };
    let engine = &ctx.engine;
    if protocol_version != PROTOCOL_VERSION {
        let msg =
            format!("protocol version {protocol_version}, this node speaks {PROTOCOL_VERSION}");
        w.refuse(RefuseCode::Protocol, msg.clone()).await;
        return Err(ConnError::Refused {
            code: RefuseCode::Protocol,
            message: msg,
        });
    }
    if purpose != Purpose::Build && system_id != engine.system_id() {
        let msg = format!(
            "standby {name} at {addr} belongs to another cluster (system id {system_id}, ours {})",
            engine.system_id()
        );
        w.refuse(RefuseCode::SystemIdMismatch, msg.clone()).await;
        return Err(ConnError::Refused {
            code: RefuseCode::SystemIdMismatch,
            message: msg,
        });
    }
    if purpose == Purpose::Stream && timeline > engine.timeline() {
        let msg = format!(
            "standby {name} is on timeline {timeline}, newer than this node's {}: it must follow a node of its timeline",
            engine.timeline()
        );
        w.refuse(RefuseCode::TimelineMismatch, msg.clone()).await;
        return Err(ConnError::Refused {
            code: RefuseCode::TimelineMismatch,
            message: msg,
        });
    }
    let nonce = auth::new_nonce();
    w.send(&Message::Challenge {
        nonce,
        system_id: engine.system_id(),
        timeline: engine.timeline(),
        flushed: engine.wal().flushed(),
    })
    .await?;
    let reply = r.recv().await?;
    let Message::AuthResponse { mac } = reply else {
        w.refuse(RefuseCode::Protocol, "expected AuthResponse".into())
            .await;
        return Err(conn::unexpected("AuthResponse", &reply));
    };
    if !auth::verify(&ctx.secret, &nonce, engine.system_id(), &name, &mac) {
        let msg = format!("peer {name} at {addr} failed authentication (wrong cluster_secret)");
        w.refuse(
            RefuseCode::AuthFailed,
            "authentication failed: wrong cluster_secret".into(),
        )
        .await;
        return Err(ConnError::Refused {
            code: RefuseCode::AuthFailed,
            message: msg,
        });
    }
    // A standby serving a cascade names the root primary (as its own
    // upstream told it), so READONLY errors down the chain point at the
    // node that takes writes.
    let primary_addr = if ctx.engine.role() == Role::Standby {
        ctx.upstream
            .get()
            .map(|u| u.primary_client_addr)
            .filter(|a| !a.is_empty())
    } else {
        None
    };
    w.send(&Message::AuthOk {
        primary_name: ctx.name.clone(),
        client_addr: primary_addr.unwrap_or_else(|| ctx.client_addr.clone()),
    })
    .await?;
    Ok(Peer {
        name,
        addr,
        start: start_lsn,
        timeline,
        purpose,
    })
}

async fn stream_wal(
    ctx: Arc<ReplContext>,
    peer: Peer,
    r: FrameReader,
    mut w: FrameWriter,
) -> Result<(), ConnError> {
    let wal = ctx.engine.wal().clone();
    let epoch = ctx.epoch();
    // A standby on an older timeline (or any standby, when this node has
    // switched timelines) gets our history first and adopts it, or finds
    // that its WAL diverged and needs a build.
    let history = ctx.history.lock().clone();
    if !history.switches().is_empty() {
        w.send(&Message::TimelineSwitch {
            history: history.clone(),
        })
        .await?;
    }
    if let Follow::Diverged { at } = history.can_follow(peer.timeline, peer.start) {
        // Not final here: a standby that never applied past `at` drops its
        // tail (shipped before its old primary made it durable) and comes
        // back; one that did needs a build. It decides from our history.
        let msg = format!(
            "standby {} on timeline {} with WAL to {} went past the start of our timeline {} at LSN {at}",
            peer.name, peer.timeline, peer.start, history.current()
        );
        w.refuse(RefuseCode::TimelineMismatch, msg.clone()).await;
        return Err(ConnError::Refused {
            code: RefuseCode::TimelineMismatch,
            message: msg,
        });
    }
    // A standby may hold WAL we shipped before our flush finished: wait for
    // it to be durable here before streaming on from there.
    if peer.start > wal.flushed() && peer.start <= wal.inserted() {
        let _ = compio::time::timeout(Duration::from_secs(5), wal.wait_flushed(peer.start)).await;
    }
    let flushed = wal.flushed();
    let segs = ctx
        .segments()
        .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
    let seg_bytes = segs.segment_bytes();
    let available = peer.start <= flushed
        && (peer.start == flushed
            || segs
                .existing(SegmentNo::of(peer.start, seg_bytes))
                .is_some());
    if !available {
        let msg = format!(
            "WAL from {} is no longer retained here (or is ahead of this node's {flushed}): the standby needs a build",
            peer.start
        );
        w.refuse(RefuseCode::NeedsBuild, msg.clone()).await;
        return Err(ConnError::Refused {
            code: RefuseCode::NeedsBuild,
            message: msg,
        });
    }
    let id = ctx.next_id();
    let now = Instant::now();
    ctx.standbys.remove_name(&peer.name);
    ctx.standbys.add(StandbyEntry {
        id,
        name: peer.name.clone(),
        addr: peer.addr.to_string(),
        state: LinkState::CatchingUp,
        sent: peer.start,
        received: peer.start,
        written: peer.start,
        flushed: peer.start,
        // Not known until its first status (it may still be redoing WAL
        // it holds): a `remote_apply` commit must not count it before.
        applied: Lsn::ZERO,
        estimated_rto_ms: 0,
        last_reply: now,
        connected_at: now,
    });
    let closed = Rc::new(std::cell::Cell::new(false));
    let in_flight: SentLog = Rc::new(std::cell::RefCell::new(VecDeque::new()));
    let reader = compio::runtime::spawn(read_status(
        ctx.clone(),
        id,
        r,
        closed.clone(),
        in_flight.clone(),
    ));
    let result = send_loop(&ctx, id, peer.start, epoch, &mut w, &closed, &in_flight).await;
    drop(reader);
    ctx.standbys
        .update(id, |e| e.state = LinkState::Disconnected);
    ctx.sync.recompute(&ctx.standbys);
    tracing::info!(name = %peer.name, "standby disconnected");
    result
}

async fn send_loop(
    ctx: &ReplContext,
    id: u64,
    start: Lsn,
    epoch: u64,
    w: &mut FrameWriter,
    closed: &std::cell::Cell<bool>,
    in_flight: &SentLog,
) -> Result<(), ConnError> {
    let wal = ctx.engine.wal().clone();
    let segs = ctx
        .segments()
        .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
    let mut sent = start;
    // The primary's flushed LSN as last told to the standby.
    let mut told = Lsn::ZERO;
    // The generation of the synchronous-commit rule last shipped (the
    // standby applies it when promoted; see `sync_rule_file`).
    let mut rule_shipped: Option<u64> = None;
    // A primary ships batches as its flusher takes them, before they are
    // durable here (a cascading standby forwards only what it flushed).
    let unflushed = (ctx.engine.role() == Role::Primary).then(|| wal.read_unflushed());
    loop {
        if closed.get() {
            return Err(ConnError::Closed);
        }
        if ctx.epoch() != epoch {
            // Our role or timeline changed: the standby reconnects and
            // learns the new timeline in the handshake.
            return Err(ConnError::Io(std::io::Error::other(
                "this node's role or timeline changed: ending the stream",
            )));
        }
        if let Some(limit) = ctx.wal_sender_timeout {
            let silent = ctx
                .standbys
                .snapshot()
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.last_reply.elapsed());
            if silent.is_some_and(|d| d > limit) {
                return Err(timed_out(limit));
            }
        }
        let rule_generation = ctx.sync.rule_generation();
        if rule_shipped != Some(rule_generation) {
            let m = Message::SyncRule {
                rule: ctx.sync.rule(),
                origin: ctx.sync.origin(),
            };
            send_within(ctx, w, &m).await?;
            rule_shipped = Some(rule_generation);
            continue;
        }
        // Read before looking at the batches, so a batch taken after the
        // look wakes the wait below.
        let kicked = wal.submitted_kick().generation();
        let flushed = wal.flushed();
        let safe = safe_flushed(ctx);
        // The flusher's recent batches first, flushed or not: a sender
        // woken a little late (its core was busy) finds the batch it missed
        // there. Reading it from the segment file instead costs a disk read
        // (the flusher writes O_DIRECT, so the page cache holds nothing)
        // on this thread: 150-200 us of every commit at 64 clients `on`.
        let in_memory = unflushed
            .as_ref()
            .and_then(|_| wal.submitted_from(sent))
            .and_then(|mut bytes| {
                let n =
                    wal_range::whole_records_prefix(&bytes[..bytes.len().min(WAL_DATA_BYTES_MAX)]);
                bytes.truncate(n);
                (n > 0).then_some(bytes)
            });
        let bytes = if in_memory.is_some() {
            in_memory
        } else if sent < flushed {
            // Behind the kept batches: whole records from the segment files.
            let bytes = wal_range::read_records(&segs, sent, flushed)
                .map_err(|e| ConnError::Io(std::io::Error::other(e.to_string())))?;
            if bytes.is_empty() {
                return Err(ConnError::Io(std::io::Error::other(format!(
                    "no whole record at {sent}"
                ))));
            }
            Some(bytes)
        } else {
            None
        };
        if let Some(bytes) = bytes {
            let next = sent.add(bytes.len() as u64);
            let receipt = ctx.sync.receipts_wanted();
            send_within(
                ctx,
                w,
                &Message::WalData {
                    start: sent,
                    end_of_flushed: safe,
                    receipt,
                    bytes,
                },
            )
            .await?;
            sent = next;
            told = safe;
            {
                let mut log = in_flight.borrow_mut();
                if log.len() < SENT_LOG_MAX {
                    log.push_back(SentBatch {
                        end: sent,
                        at: Instant::now(),
                        // A frame that asked for no receipt learns of it
                        // with the flush: that is not a receipt time.
                        received: !receipt,
                        flushed: false,
                    });
                }
            }
            let state = if sent >= wal.flushed() {
                LinkState::Streaming
            } else {
                LinkState::CatchingUp
            };
            ctx.standbys.update(id, |e| {
                e.sent = sent;
                e.state = state;
            });
            continue;
        }
        if told < safe {
            // Our flush caught up with what we shipped: the standby may
            // apply up to here.
            let m = Message::Keepalive {
                flushed: safe,
                time_us: now_us(),
                reply_requested: false,
            };
            send_within(ctx, w, &m).await?;
            told = safe;
            continue;
        }
        // Nothing left to send (also right after connecting): caught up.
        ctx.standbys.update(id, |e| e.state = LinkState::Streaming);
        // Keepalives ask for a reply often enough that a live standby never
        // looks silent to the timeout.
        let keepalive_after = ctx
            .wal_sender_timeout
            .map_or(KEEPALIVE_AFTER, |t| (t / 3).min(KEEPALIVE_AFTER));
        let flush = wal.wait_flushed(told.add(1));
        let batch = wal.submitted_kick().changed(kicked);
        let rule = ctx.sync.rule_changed(rule_generation);
        let woke = compio::time::timeout(keepalive_after, async {
            let mut flush = std::pin::pin!(flush);
            let mut batch = std::pin::pin!(batch);
            let mut rule = std::pin::pin!(rule);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = flush.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                if rule.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
                if unflushed.is_some() && batch.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            })
            .await
        })
        .await;
        match woke {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ConnError::Io(std::io::Error::other(e.to_string()))),
            Err(_) => {
                let keepalive = Message::Keepalive {
                    flushed: safe_flushed(ctx),
                    time_us: now_us(),
                    reply_requested: true,
                };
                send_within(ctx, w, &keepalive).await?
            }
        }
    }
}

/// The end of the WAL a standby of ours may apply: our flushed LSN on a
/// primary; on a cascading standby also no further than what the primary
/// had made durable (as its stream told us).
fn safe_flushed(ctx: &ReplContext) -> Lsn {
    let flushed = ctx.engine.wal().flushed();
    match ctx.engine.role() {
        Role::Primary => flushed,
        Role::Standby => ctx
            .upstream
            .get()
            .map_or(flushed, |u| flushed.min(u.primary_flushed)),
    }
}

fn timed_out(limit: Duration) -> ConnError {
    ConnError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "standby silent for more than {} ms (wal_sender_timeout_ms)",
            limit.as_millis()
        ),
    ))
}

/// Sends, giving up after `wal_sender_timeout` when the standby does not
/// take the bytes (a hung peer fills the socket buffers).
async fn send_within(ctx: &ReplContext, w: &mut FrameWriter, m: &Message) -> Result<(), ConnError> {
    match ctx.wal_sender_timeout {
        None => w.send(m).await,
        Some(limit) => match compio::time::timeout(limit, w.send(m)).await {
            Ok(r) => r,
            Err(_) => Err(timed_out(limit)),
        },
    }
}

/// Batches sent and not yet applied by the standby, oldest first, to time
/// the acknowledgement stages.
type SentLog = Rc<std::cell::RefCell<VecDeque<SentBatch>>>;
const SENT_LOG_MAX: usize = 4096;

struct SentBatch {
    end: Lsn,
    at: Instant,
    received: bool,
    flushed: bool,
}

fn time_acks(ctx: &ReplContext, log: &SentLog, received: Lsn, flushed: Lsn, applied: Lsn) {
    let mut log = log.borrow_mut();
    let m = &ctx.metrics;
    for b in log.iter_mut() {
        let us = b.at.elapsed().as_micros() as u64;
        if !b.received && received >= b.end {
            b.received = true;
            m.ack_received_us.record(us);
        }
        if !b.flushed && flushed >= b.end {
            b.flushed = true;
            m.ack_flushed_us.record(us);
        }
    }
    while log.front().is_some_and(|b| applied >= b.end) {
        if let Some(b) = log.pop_front() {
            m.ack_applied_us.record(b.at.elapsed().as_micros() as u64);
        }
    }
}

/// Feeds the worst estimated recovery time among the standbys that count
/// for synchronous commit to the commit throttle (`replication::rto`).
fn update_throttle(ctx: &ReplContext) {
    if ctx.throttle.target_ms() == 0 {
        return;
    }
    let standbys = ctx.standbys.snapshot();
    let positions: Vec<_> = standbys.iter().map(StandbyEntry::position).collect();
    let states = super::sync_commit::sync_states(&ctx.sync.names(), &positions);
    let worst = standbys
        .iter()
        .zip(states)
        .filter(|(e, st)| {
            e.state != LinkState::Disconnected
                && matches!(
                    st,
                    super::sync_commit::SyncState::Sync | super::sync_commit::SyncState::Quorum
                )
        })
        .map(|(e, _)| e.estimated_rto_ms)
        .max()
        .unwrap_or(0);
    ctx.throttle.update(worst);
}

async fn read_status(
    ctx: Arc<ReplContext>,
    id: u64,
    mut r: FrameReader,
    closed: Rc<std::cell::Cell<bool>>,
    in_flight: SentLog,
) {
    loop {
        match r.recv().await {
            Ok(Message::StandbyStatus {
                received,
                written,
                flushed,
                applied,
                estimated_rto_ms,
                ..
            }) => {
                time_acks(&ctx, &in_flight, received, flushed, applied);
                ctx.standbys.update(id, |e| {
                    e.received = e.received.max(received);
                    e.written = e.written.max(written);
                    e.flushed = e.flushed.max(flushed);
                    e.applied = e.applied.max(applied);
                    e.estimated_rto_ms = u64::from(estimated_rto_ms);
                    e.last_reply = Instant::now();
                });
                ctx.sync.recompute(&ctx.standbys);
                update_throttle(&ctx);
            }
            Ok(other) => {
                tracing::warn!(kind = ?other.kind(), "unexpected message from standby; disconnecting");
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "standby status stream ended");
                break;
            }
        }
    }
    closed.set(true);
}
