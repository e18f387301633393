//! Role and timeline changes of a running node (DESIGN.md section 4):
//! promote a standby, fence and demote a primary, point a standby at
//! another upstream, adopt a newer timeline, and give up on streaming
//! (needs build).
//!
//! Called from session commands (`REPL ...`), the WAL receiver and the
//! pending-mode prober; changes are serialised by `ReplContext::role_change` so two
//! operators cannot promote and demote one node at the same time. They
//! block for a few fsyncs (history and control file): rare operator
//! actions, not the commit path.
//!
//! Invariants:
//! - a promotion starts a timeline newer than any this node has seen, and
//!   its history file is durable before the control file names it; the
//!   switch LSN is the end of the WAL the standby received, so every
//!   acknowledged commit it had is on the new timeline;
//! - a node adopts a newer timeline only when its own timeline ended at or
//!   after the end of its WAL (nothing of ours is missing there);
//!   otherwise it needs a build and says from which LSN its WAL diverged;
//! - every change bumps `ReplContext::epoch`, so WAL senders end streams
//!   begun under the old role or timeline.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::context::{NeedsBuild, ReplContext};
use super::timeline::{self, Follow, Switch, TimelineHistory};
use crate::engine::control_file::Role;
use crate::engine::{EngineError, WriteBlock};
use crate::ids::{Lsn, TimelineId};

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("this node is already the primary")]
    AlreadyPrimary,
    #[error("this node is not a primary")]
    NotPrimary,
    #[error("this node is not a standby")]
    NotStandby,
    #[error("this node needs a build: {0}")]
    NeedsBuild(String),
    #[error("the WAL receiver did not stop in time; promotion abandoned")]
    ReceiverStuck,
    #[error("our WAL diverged from timeline {timeline} at LSN {at}: this node needs a build")]
    Diverged { timeline: TimelineId, at: Lsn },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot write {what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
}

/// What a promotion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub timeline: TimelineId,
    /// First LSN of the new timeline (end of the WAL the node received).
    pub switch_lsn: Lsn,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Standby (or pending primary) to primary. A standby stops its WAL
/// receiver, applies the rest of its WAL, starts a new timeline at the
/// WAL's end and takes writes. A pending primary (operator's decision,
/// DESIGN.md section 4) just starts taking writes on its own timeline.
pub fn promote(ctx: &ReplContext, reason: &str) -> Result<Promotion, RoleError> {
    let _change = ctx.role_change.lock();
    let engine = &ctx.engine;
    if let Some(nb) = ctx.needs_build() {
        return Err(RoleError::NeedsBuild(nb.reason));
    }
    if engine.role() == Role::Primary {
        return match engine.write_block() {
            Some(WriteBlock::Pending) => {
                begin_timeline_after_crash_locked(ctx)?;
                engine.set_write_block(None);
                tracing::warn!(
                    "pending primary promoted by the operator: taking writes on its own timeline"
                );
                Ok(Promotion {
                    timeline: engine.timeline(),
                    switch_lsn: engine.wal().inserted(),
                })
            }
            _ => Err(RoleError::AlreadyPrimary),
        };
    }
    let upstream = ctx.receiver.upstream();
    if !ctx.receiver.stop() {
        return Err(RoleError::ReceiverStuck);
    }
    let result = promote_stopped(ctx, reason);
    match &result {
        Ok(p) => {
            let _ = std::fs::remove_file(engine.data_dir().join(super::build::UPSTREAM_FILE));
            tracing::info!(timeline = %p.timeline, switch_lsn = %p.switch_lsn, reason, "promoted to primary");
        }
        Err(e) => {
            tracing::error!(error = %e, "promotion failed; streaming again");
            if let Some(up) = upstream {
                ctx.receiver.follow(up);
            }
        }
    }
    result
}

fn promote_stopped(ctx: &ReplContext, reason: &str) -> Result<Promotion, RoleError> {
    let engine = &ctx.engine;
    let replay = engine.replay_to_wal_end()?;
    let history = next_timeline(ctx, replay.wal_end, reason)?;
    let new = history.current();
    if replay.partial_group {
        tracing::warn!(at = %replay.wal_end, "the received WAL ends inside a transaction: it is aborted on the new timeline");
    }
    engine.become_primary(new, replay.partial_group)?;
    *ctx.history.lock() = history;
    ctx.bump_epoch();
    Ok(Promotion {
        timeline: new,
        switch_lsn: replay.wal_end,
    })
}

/// A primary that crashed starts taking writes on a new timeline that
/// begins at the end of its recovered WAL. Its standbys may hold WAL past
/// that end (shipped while its flush ran, never acknowledged to a
/// client): the history tells them exactly where to cut it. No-op after a
/// clean shutdown or when already done.
pub fn begin_timeline_after_crash(ctx: &ReplContext) -> Result<(), RoleError> {
    let _change = ctx.role_change.lock();
    begin_timeline_after_crash_locked(ctx)
}

fn begin_timeline_after_crash_locked(ctx: &ReplContext) -> Result<(), RoleError> {
    let engine = &ctx.engine;
    if !engine.crashed()
        || engine.role() != Role::Primary
        || ctx
            .resumed_after_crash
            .load(std::sync::atomic::Ordering::Acquire)
    {
        return Ok(());
    }
    let end = engine.wal().inserted();
    let history = next_timeline(ctx, end, "crash recovery")?;
    let new = history.current();
    engine.set_timeline(new)?;
    *ctx.history.lock() = history;
    ctx.resumed_after_crash
        .store(true, std::sync::atomic::Ordering::Release);
    ctx.bump_epoch();
    tracing::info!(timeline = %new, switch_lsn = %end, "after a crash: writes go to a new timeline");
    Ok(())
}

/// Our history plus a switch at `switch_lsn` to a timeline newer than any
/// this node has seen, made durable as its history file (before any
/// control file may name it). The caller installs it.
fn next_timeline(
    ctx: &ReplContext,
    switch_lsn: Lsn,
    reason: &str,
) -> Result<TimelineHistory, RoleError> {
    let old = ctx.engine.timeline();
    let mut history = ctx.history.lock().clone();
    history.append(Switch {
        timeline: TimelineId(highest_known_timeline(&ctx.wal_dir, old).0 + 1),
        parent: old,
        switch_lsn,
        reason: history_reason(reason),
        time_us: now_us(),
    });
    timeline::write(&ctx.wal_dir, &history).map_err(|source| RoleError::Io {
        what: "the timeline history file",
        source,
    })?;
    Ok(history)
}

/// `reason` (operator input) as a history file takes it: no control
/// characters, at most `REASON_BYTES_MAX` bytes, cut at a character.
fn history_reason(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > timeline::REASON_BYTES_MAX {
            break;
        }
        out.push(c);
    }
    out
}

/// The newest timeline named by a history file in `wal_dir`, or `ours`.
fn highest_known_timeline(wal_dir: &Path, ours: TimelineId) -> TimelineId {
    let mut best = ours;
    if let Ok(entries) = std::fs::read_dir(wal_dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".history")) else {
                continue;
            };
            if let Ok(t) = u32::from_str_radix(hex, 16) {
                best = best.max(TimelineId(t));
            }
        }
    }
    best
}

/// Primary stops taking writes (switchover); returns the end of its WAL,
/// flushed: every write it acknowledged or will acknowledge is below it.
pub fn fence(ctx: &ReplContext) -> Result<Lsn, RoleError> {
    let _change = ctx.role_change.lock();
    let engine = &ctx.engine;
    if engine.role() != Role::Primary {
        return Err(RoleError::NotPrimary);
    }
    match engine.write_block() {
        None | Some(WriteBlock::Switchover) => {}
        Some(other) => return Err(RoleError::NeedsBuild(other.to_string())),
    }
    engine.set_write_block(Some(WriteBlock::Switchover));
    let end = engine.wal().inserted();
    engine
        .wal()
        .wait_flushed_blocking(end)
        .map_err(EngineError::from)?;
    tracing::info!(wal_end = %end, "writes fenced for a switchover");
    Ok(end)
}

/// Lifts a switchover fence (a switchover that gave up).
pub fn unfence(ctx: &ReplContext) -> Result<(), RoleError> {
    let _change = ctx.role_change.lock();
    if ctx.engine.role() != Role::Primary {
        return Err(RoleError::NotPrimary);
    }
    if ctx.engine.write_block() == Some(WriteBlock::Switchover) {
        ctx.engine.set_write_block(None);
        tracing::info!("switchover fence lifted: taking writes again");
    }
    Ok(())
}

/// Primary (fenced, see [`fence`]) to standby of `upstream` (a
/// replication address). Its WAL ends where the new primary's timeline
/// began, so it follows without a build.
pub fn demote(ctx: &ReplContext, upstream: &str) -> Result<Lsn, RoleError> {
    let _change = ctx.role_change.lock();
    let engine = &ctx.engine;
    if engine.role() != Role::Primary {
        return Err(RoleError::NotPrimary);
    }
    engine.set_write_block(Some(WriteBlock::Switchover));
    let end = engine.become_standby()?;
    write_upstream(engine.data_dir(), upstream)?;
    ctx.bump_epoch();
    ctx.receiver.follow(upstream.to_string());
    tracing::info!(%upstream, wal_end = %end, "demoted to standby");
    Ok(end)
}

/// Standby: stream from `upstream` from now on.
pub fn follow(ctx: &ReplContext, upstream: &str) -> Result<(), RoleError> {
    let _change = ctx.role_change.lock();
    if ctx.engine.role() != Role::Standby {
        return Err(RoleError::NotStandby);
    }
    if let Some(nb) = ctx.needs_build() {
        return Err(RoleError::NeedsBuild(nb.reason));
    }
    write_upstream(ctx.engine.data_dir(), upstream)?;
    ctx.receiver.follow(upstream.to_string());
    tracing::info!(%upstream, "following a new upstream");
    Ok(())
}

/// Makes `<data-dir>/upstream` say `upstream`, durably (a restart
/// streams from there).
pub fn write_upstream(dir: &Path, upstream: &str) -> Result<(), RoleError> {
    let io = |source| RoleError::Io {
        what: "the upstream file",
        source,
    };
    let tmp = dir.join(format!("{}.tmp", super::build::UPSTREAM_FILE));
    std::fs::write(&tmp, format!("{upstream}\n")).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, dir.join(super::build::UPSTREAM_FILE)).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// What a node on history `ours` with WAL up to `our_end` must do to
/// follow a node on history `theirs`.
pub fn follow_decision(ours: &TimelineHistory, our_end: Lsn, theirs: &TimelineHistory) -> Follow {
    if ours == theirs {
        return Follow::Same;
    }
    // Histories that disagree on a switch they share: the WAL after the
    // earlier of the two switch points may differ.
    if let Some(at) = ours.divergence(theirs) {
        if at < our_end || theirs.current() <= ours.current() {
            return Follow::Diverged {
                at: at.min(our_end),
            };
        }
    }
    if theirs.current() < ours.current() {
        // An older timeline: not ours to follow (the caller waits).
        return Follow::Same;
    }
    theirs.can_follow(ours.current(), our_end)
}

/// Standby with WAL up to `our_end`, told the upstream's history: adopts
/// it when it can follow, else marks the node as needing a build.
///
/// A standby whose WAL went past the new timeline's start but which never
/// applied past it (the bytes were shipped before the old primary made
/// them durable, and the standby applies only what its primary had made
/// durable) drops that tail and follows: returns the new end of its WAL
/// and the LSN of its last record.
pub fn adopt_timeline(
    ctx: &ReplContext,
    theirs: TimelineHistory,
    our_end: Lsn,
) -> Result<Option<(Lsn, Lsn)>, RoleError> {
    let _change = ctx.role_change.lock();
    let ours = ctx.history.lock().clone();
    let mut decision = follow_decision(&ours, our_end, &theirs);
    let mut truncated = None;
    if let Follow::Diverged { at } = decision {
        // Redo applies what it was handed first, so the applied LSN below
        // is final: nothing handed over is applied after the cut.
        drop(ctx.engine.redo_feed().pause());
        if let Some(prev) = unapplied_boundary(ctx, at, our_end) {
            ctx.engine.cut_wal(at, prev)?;
            truncated = Some((at, prev));
            decision = follow_decision(&ours, at, &theirs);
        }
    }
    match decision {
        Follow::Same => Ok(truncated),
        Follow::Switch { to, at } => {
            timeline::write(&ctx.wal_dir, &theirs).map_err(|source| RoleError::Io {
                what: "the timeline history file",
                source,
            })?;
            ctx.engine.set_timeline(to)?;
            *ctx.history.lock() = theirs;
            // Our whole WAL is part of the new timeline: commits still
            // waiting here for standbys (we were a primary) are durable on
            // the new primary.
            ctx.sync.confirm_through(our_end);
            ctx.bump_epoch();
            tracing::info!(timeline = %to, switch_lsn = %at, "following the upstream onto a new timeline");
            Ok(truncated)
        }
        Follow::Diverged { at } => {
            let timeline = theirs.current();
            let reason = format!(
                "WAL up to {our_end} went past the start of timeline {timeline}; diverged at LSN {at}"
            );
            mark_needs_build(ctx, reason, Some(at));
            Err(RoleError::Diverged { timeline, at })
        }
    }
}

/// On a standby that applied nothing at or past `at` (< `our_end`): the
/// LSN of the record that ends exactly at `at` in its WAL, if one does
/// (then `at` is a record boundary and the tail after it can go).
fn unapplied_boundary(ctx: &ReplContext, at: Lsn, our_end: Lsn) -> Option<Lsn> {
    let engine = &ctx.engine;
    if engine.role() != Role::Standby || at >= our_end {
        return None;
    }
    let (applied, applied_prev) = engine.applied_position();
    if applied > at {
        return None;
    }
    if applied == at {
        return Some(applied_prev);
    }
    let mut reader = crate::wal::reader::WalReader::open(
        &ctx.wal_dir,
        engine.wal().config().segment_bytes,
        engine.timeline(),
        applied,
        applied_prev,
    )
    .ok()?;
    while let Ok(Some((lsn, rec))) = reader.next() {
        let end = lsn.add(rec.bytes().len() as u64);
        if end == at {
            return Some(lsn);
        }
        if end > at {
            return None;
        }
    }
    None
}

/// The node cannot stream on: record why (INFO, `tandemctl query`), refuse
/// writes if it is a primary, and stop the receiver if it is a standby.
pub fn mark_needs_build(ctx: &ReplContext, reason: String, divergence: Option<Lsn>) {
    tracing::error!(%reason, divergence = ?divergence, "this node needs a build");
    *ctx.needs_build.lock() = Some(NeedsBuild { reason, divergence });
    if ctx.engine.role() == Role::Primary {
        ctx.engine.set_write_block(Some(WriteBlock::NeedsBuild));
    }
    ctx.bump_epoch();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(switches: &[(u32, u64)]) -> TimelineHistory {
        let mut h = TimelineHistory::new();
        let mut parent = 1;
        for &(t, lsn) in switches {
            h.append(Switch {
                timeline: TimelineId(t),
                parent: TimelineId(parent),
                switch_lsn: Lsn(lsn),
                reason: "promote".into(),
                time_us: 1,
            });
            parent = t;
        }
        h
    }

    #[test]
    fn a_long_multibyte_reason_is_cut_to_the_history_limit() {
        let r = history_reason(&"é\n".repeat(300));
        assert!(r.len() <= timeline::REASON_BYTES_MAX);
        assert_eq!(r, "é".repeat(timeline::REASON_BYTES_MAX / 2));
    }

    #[test]
    fn an_old_primary_that_stopped_at_the_switch_follows() {
        let theirs = history(&[(2, 1000)]);
        let d = follow_decision(&TimelineHistory::new(), Lsn(1000), &theirs);
        assert_eq!(
            d,
            Follow::Switch {
                to: TimelineId(2),
                at: Lsn(1000)
            }
        );
    }

    #[test]
    fn an_old_primary_past_the_switch_diverged_there() {
        let theirs = history(&[(2, 1000)]);
        let d = follow_decision(&TimelineHistory::new(), Lsn(1500), &theirs);
        assert_eq!(d, Follow::Diverged { at: Lsn(1000) });
    }

    #[test]
    fn two_promotions_to_the_same_timeline_number_diverge() {
        let ours = history(&[(2, 1000)]);
        let theirs = history(&[(2, 2000)]);
        let d = follow_decision(&ours, Lsn(1200), &theirs);
        assert_eq!(d, Follow::Diverged { at: Lsn(1000) });
    }

    #[test]
    fn an_older_upstream_is_not_followed_and_not_a_divergence() {
        let ours = history(&[(2, 1000)]);
        let d = follow_decision(&ours, Lsn(1200), &TimelineHistory::new());
        assert_eq!(d, Follow::Same);
    }

    #[test]
    fn a_standby_two_timelines_behind_follows_when_it_stopped_early() {
        let ours = history(&[(2, 1000)]);
        let theirs = history(&[(2, 1000), (3, 3000)]);
        let d = follow_decision(&ours, Lsn(2500), &theirs);
        assert_eq!(
            d,
            Follow::Switch {
                to: TimelineId(3),
                at: Lsn(3000)
            }
        );
    }
}
