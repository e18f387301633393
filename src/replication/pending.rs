//! Pending mode: a primary restarted with known peers takes no writes
//! until a peer confirms that no newer timeline exists (as openGauss's
//! pending mode; DESIGN.md section 4 "never silently continues its own
//! timeline").
//!
//! The `peer-probe` thread asks every peer in `peers` (replication
//! addresses) for its role, flushed LSN and timeline history (`Probe` →
//! `PeerStatus`), round after round with backoff, until one of:
//! - a peer is on a newer timeline: if our WAL ends at or before where our
//!   timeline ended in its history, we become its standby (no build);
//!   else we need a build, and INFO shows the divergence LSN;
//! - no peer is on a newer timeline and at least one standby of ours
//!   answered on our own history: we are still the primary, writes open;
//! - an operator ran `tandemctl promote` (the node is no longer pending).
//!
//! While no peer answers the node stays pending: manual mode cannot tell
//! a dead cluster from a cut network; the etcd HA agent will.

use std::sync::Arc;
use std::time::Duration;

use super::conn::{self, ConnError};
use super::context::ReplContext;
use super::frame::{Message, PeerRole, Purpose};
use super::roles;
use super::timeline::{Follow, TimelineHistory};
use crate::engine::WriteBlock;
use crate::ids::Lsn;

const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
const ROUND_PAUSE_MIN: Duration = Duration::from_millis(100);
const ROUND_PAUSE_MAX: Duration = Duration::from_secs(2);

/// A peer's answer to a probe.
#[derive(Clone, Debug)]
pub struct PeerAnswer {
    pub addr: String,
    pub role: PeerRole,
    pub flushed: Lsn,
    pub history: TimelineHistory,
}

/// What one round of answers means for a pending node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No answer settles it: ask again.
    Wait,
    /// Still the primary of the newest timeline.
    Primary,
    /// Follow this peer (newer timeline, our WAL not past its switch).
    Follow(String),
    /// Our WAL went past the newer timeline's switch at this LSN.
    Diverged { at: Lsn, timeline: u32 },
}

/// Decides from the answers of one round (pure; see the module doc).
pub fn decide(ours: &TimelineHistory, our_end: Lsn, answers: &[PeerAnswer]) -> Verdict {
    let newest = answers
        .iter()
        .filter(|a| a.history.current() > ours.current())
        .max_by_key(|a| (a.history.current(), a.role == PeerRole::Primary, a.flushed));
    if let Some(a) = newest {
        return match roles::follow_decision(ours, our_end, &a.history) {
            Follow::Diverged { at } => Verdict::Diverged {
                at,
                timeline: a.history.current().0,
            },
            Follow::Same | Follow::Switch { .. } => Verdict::Follow(a.addr.clone()),
        };
    }
    for a in answers {
        if let Follow::Diverged { at } = roles::follow_decision(ours, our_end, &a.history) {
            return Verdict::Diverged {
                at,
                timeline: a.history.current().0,
            };
        }
    }
    let confirmed = answers
        .iter()
        .any(|a| a.role == PeerRole::Standby && a.history == *ours);
    if confirmed {
        Verdict::Primary
    } else {
        Verdict::Wait
    }
}

/// Starts the `peer-probe` thread (node start-up, pending primary).
pub fn start(ctx: Arc<ReplContext>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("peer-probe".into())
        .spawn(move || {
            let runtime = match crate::io::net_runtime::network_runtime() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "peer-probe runtime failed to start");
                    return;
                }
            };
            runtime.block_on(resolve(&ctx));
        })?;
    Ok(())
}

async fn resolve(ctx: &ReplContext) {
    let mut pause = ROUND_PAUSE_MIN;
    loop {
        if ctx.engine.write_block() != Some(WriteBlock::Pending) {
            return; // promoted by an operator, or shut down
        }
        let mut answers = Vec::new();
        for addr in &ctx.peers {
            match compio::time::timeout(PROBE_TIMEOUT, probe(ctx, addr)).await {
                Ok(Ok(a)) => answers.push(a),
                Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "probe failed"),
                Err(_) => tracing::debug!(peer = %addr, "probe timed out"),
            }
        }
        let ours = ctx.history.lock().clone();
        let our_end = ctx.engine.wal().inserted();
        match decide(&ours, our_end, &answers) {
            Verdict::Wait => {
                tracing::info!(
                    answered = answers.len(),
                    peers = ctx.peers.len(),
                    "still pending: no peer confirms this node's role yet"
                );
                compio::time::sleep(pause).await;
                pause = (pause * 2).min(ROUND_PAUSE_MAX);
            }
            Verdict::Primary => {
                if let Err(e) = roles::begin_timeline_after_crash(ctx) {
                    tracing::error!(error = %e, "cannot start the post-crash timeline; staying pending");
                    compio::time::sleep(pause).await;
                    continue;
                }
                if ctx.engine.write_block() == Some(WriteBlock::Pending) {
                    ctx.engine.set_write_block(None);
                    tracing::info!("a peer confirmed this node is the primary of the newest timeline: taking writes");
                }
                return;
            }
            Verdict::Follow(addr) => {
                match roles::demote(ctx, &addr) {
                    Ok(end) => {
                        tracing::warn!(peer = %addr, wal_end = %end, "a peer is on a newer timeline that this node can follow: now its standby")
                    }
                    Err(e) => {
                        tracing::error!(peer = %addr, error = %e, "could not become a standby of the newer timeline")
                    }
                }
                return;
            }
            Verdict::Diverged { at, timeline } => {
                roles::mark_needs_build(
                    ctx,
                    format!("timeline {timeline} began at LSN {at}, before the end of this node's WAL ({our_end}): this node's WAL diverged there"),
                    Some(at),
                );
                return;
            }
        }
    }
}

/// Asks the node at `addr` (replication port) for its role and history.
pub async fn probe(ctx: &ReplContext, addr: &str) -> Result<PeerAnswer, ConnError> {
    let stream = compio::net::TcpStream::connect(addr).await?;
    let (mut r, mut w) = conn::split(stream);
    conn::handshake_as_standby(
        &mut r,
        &mut w,
        &ctx.secret,
        &ctx.name,
        Some((ctx.engine.system_id(), ctx.engine.timeline())),
        ctx.engine.wal().inserted(),
        Purpose::Probe,
    )
    .await?;
    match r.recv().await? {
        Message::PeerStatus {
            role,
            flushed,
            history,
        } => Ok(PeerAnswer {
            addr: addr.to_string(),
            role,
            flushed,
            history,
        }),
        other => Err(conn::unexpected("PeerStatus", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TimelineId;
    use crate::replication::timeline::Switch;

    fn promoted_at(lsn: u64) -> TimelineHistory {
        let mut h = TimelineHistory::new();
        h.append(Switch {
            timeline: TimelineId(2),
            parent: TimelineId(1),
            switch_lsn: Lsn(lsn),
            reason: "failover".into(),
            time_us: 1,
        });
        h
    }

    fn answer(role: PeerRole, history: TimelineHistory) -> PeerAnswer {
        PeerAnswer {
            addr: "127.0.0.1:1".into(),
            role,
            flushed: Lsn(0),
            history,
        }
    }

    #[test]
    fn no_answer_keeps_the_node_pending() {
        assert_eq!(
            decide(&TimelineHistory::new(), Lsn(100), &[]),
            Verdict::Wait
        );
    }

    #[test]
    fn a_standby_on_our_timeline_confirms() {
        let a = [answer(PeerRole::Standby, TimelineHistory::new())];
        assert_eq!(
            decide(&TimelineHistory::new(), Lsn(100), &a),
            Verdict::Primary
        );
    }

    #[test]
    fn a_pending_peer_alone_does_not_confirm() {
        let a = [answer(PeerRole::Pending, TimelineHistory::new())];
        assert_eq!(decide(&TimelineHistory::new(), Lsn(100), &a), Verdict::Wait);
    }

    #[test]
    fn a_newer_timeline_past_our_end_means_diverged_at_its_switch() {
        let a = [
            answer(PeerRole::Standby, TimelineHistory::new()),
            answer(PeerRole::Primary, promoted_at(80)),
        ];
        assert_eq!(
            decide(&TimelineHistory::new(), Lsn(100), &a),
            Verdict::Diverged {
                at: Lsn(80),
                timeline: 2
            }
        );
    }

    #[test]
    fn a_newer_timeline_that_began_at_our_end_is_followed() {
        let a = [answer(PeerRole::Primary, promoted_at(100))];
        assert_eq!(
            decide(&TimelineHistory::new(), Lsn(100), &a),
            Verdict::Follow("127.0.0.1:1".into())
        );
    }
}
