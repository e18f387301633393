//! The `REPL` commands: role changes that `tandemctl switchover`,
//! `failover`, `promote` and `demote` drive over the client port.
//!
//! A session parks the request ([`ReplRequest`]) and runs it after its
//! batch: the role changes block on a few fsyncs (history and control
//! files), so they run on a blocking thread (`compio::runtime::
//! spawn_blocking`) instead of stalling every connection of the session
//! core.
//!
//! Replies: PROMOTE `+PROMOTED timeline=N switch_lsn=L`; FENCE and DEMOTE the WAL end
//! (integer); FOLLOW and UNFENCE `+OK`; WAITLSN the applied LSN, or
//! `-TIMEOUT applied <lsn>`. Failures are `-ERR <reason>` and change nothing.
//!
//! The wait for an applied LSN ([`wait_applied`]) is shared by `REPL
//! WAITLSN` (switchover's catch-up) and the client command `WAITLSN`
//! (read-your-writes, run by the session after its batch). It awaits the
//! future of the LSN that counts on this node's role, without polling:
//! redo's applied LSN on a standby ([`Applied::wait`]), the flushed WAL on
//! a primary ([`Wal::wait_flushed`]: its commits are in its pages as they
//! are made, and its readers wait for nothing but their durability). Neither future resolves when the role changes
//! under it, so the wait wakes every [`WAIT_LSN_ROLE_RECHECK`] to look at
//! the role again; the timeout is exact, not rounded to that period.
//!
//! [`Applied::wait`]: crate::redo::applied::Applied::wait
//! [`Wal::wait_flushed`]: crate::wal::Wal::wait_flushed

use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::command::{CommandError, ReplCommand};
use super::resp::{write_error, write_integer, write_simple};
use crate::engine::control_file::Role;
use crate::engine::Engine;
use crate::ids::Lsn;
use crate::node::Node;
use crate::replication::roles::{self, RoleError};
use crate::wal::WalError;

/// How often a wait for an applied LSN looks at the node's role again. Only
/// a promotion or a demotion during the wait needs it (the futures resolve
/// on progress by themselves); 100 ms bounds how late such a wait notices
/// that the other LSN now counts, and costs one wake-up per 100 ms per
/// waiting client.
pub const WAIT_LSN_ROLE_RECHECK: Duration = Duration::from_millis(100);

/// Why [`wait_applied`] ended without reaching its LSN.
#[derive(Debug, Error)]
pub enum WaitLsnError {
    /// The timeout ran out; `applied` is this node's applied LSN then.
    #[error("applied LSN {applied} has not reached {lsn} after {timeout_ms} ms")]
    Timeout {
        lsn: Lsn,
        applied: Lsn,
        timeout_ms: u64,
    },
    /// A primary's WAL stopped (shutdown) or is fenced after a failed
    /// write: its flushed LSN will not move again.
    #[error("the WAL will not flush further: {0}")]
    Wal(#[source] WalError),
}

impl WaitLsnError {
    /// The error reply (without the leading `-`).
    pub fn reply(&self) -> String {
        match self {
            WaitLsnError::Timeout { applied, .. } => {
                CommandError::WaitLsnTimeout { applied: applied.0 }.to_string()
            }
            WaitLsnError::Wal(WalError::ShutDown) => "ERR server is shutting down".to_string(),
            WaitLsnError::Wal(e) => format!("ERR {e}"),
        }
    }
}

/// The LSN that counts as applied on a node in `role`: redo's applied LSN
/// on a standby, the flushed WAL on a primary.
fn applied_lsn(engine: &Engine, role: Role) -> Lsn {
    match role {
        Role::Standby => engine.applied_lsn(),
        Role::Primary => engine.wal().flushed(),
    }
}

/// Waits until this node applied `lsn` (see the module doc); `timeout_ms`
/// 0 waits without limit. Returns the applied LSN, `>= lsn`.
pub async fn wait_applied(node: &Node, lsn: Lsn, timeout_ms: u64) -> Result<Lsn, WaitLsnError> {
    let engine = &node.engine;
    let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
    loop {
        let role = engine.role();
        let applied = applied_lsn(engine, role);
        if applied >= lsn {
            return Ok(applied);
        }
        let mut slice = WAIT_LSN_ROLE_RECHECK;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitLsnError::Timeout {
                    lsn,
                    applied,
                    timeout_ms,
                });
            }
            slice = slice.min(left);
        }
        // Either way the loop looks at the role and the LSN again: a
        // resolved wait returns above, a timed-out slice re-checks.
        match role {
            Role::Standby => {
                let _ = compio::time::timeout(slice, engine.applied().wait(lsn)).await;
            }
            Role::Primary => {
                let flushed = compio::time::timeout(slice, engine.wal().wait_flushed(lsn)).await;
                if let Ok(Err(e)) = flushed {
                    // A demotion in between: the standby's applied LSN counts now.
                    if engine.role() == Role::Primary {
                        return Err(WaitLsnError::Wal(e));
                    }
                }
            }
        }
    }
}

/// An owned `REPL` request (it outlives the request buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplRequest {
    Promote { reason: String },
    Fence,
    Unfence,
    Demote { upstream: String },
    Follow { upstream: String },
    WaitLsn { lsn: u64, timeout_ms: u64 },
}

impl ReplRequest {
    /// Validates arguments (addresses must be HOST:PORT).
    pub fn from_command(c: ReplCommand<'_>) -> Result<ReplRequest, String> {
        let addr = |b: &[u8]| -> Result<String, String> {
            let s = std::str::from_utf8(b).map_err(|_| "ERR address is not UTF-8".to_string())?;
            match s.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(s.to_string())
                }
                _ => Err(format!("ERR {s:?} is not a HOST:PORT replication address")),
            }
        };
        Ok(match c {
            ReplCommand::Promote { reason } => ReplRequest::Promote {
                reason: reason
                    .map(|r| String::from_utf8_lossy(r).into_owned())
                    .unwrap_or_else(|| "promote".into()),
            },
            ReplCommand::Fence => ReplRequest::Fence,
            ReplCommand::Unfence => ReplRequest::Unfence,
            ReplCommand::Demote { upstream } => ReplRequest::Demote {
                upstream: addr(upstream)?,
            },
            ReplCommand::Follow { upstream } => ReplRequest::Follow {
                upstream: addr(upstream)?,
            },
            ReplCommand::WaitLsn { lsn, timeout_ms } => ReplRequest::WaitLsn { lsn, timeout_ms },
        })
    }
}

fn err(out: &mut Vec<u8>, e: impl std::fmt::Display) {
    write_error(out, &format!("ERR {e}"));
}

async fn blocking<T: Send + 'static>(
    node: &Arc<Node>,
    f: impl FnOnce(&crate::replication::context::ReplContext) -> Result<T, RoleError> + Send + 'static,
) -> Result<T, String> {
    let repl = node.repl.clone();
    match compio::runtime::spawn_blocking(move || f(&repl)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("the role change panicked; see the node's log".into()),
    }
}

/// Runs `request` and writes its one reply.
pub async fn run(node: &Arc<Node>, request: ReplRequest, out: &mut Vec<u8>) {
    match request {
        ReplRequest::Promote { reason } => {
            match blocking(node, move |r| roles::promote(r, &reason)).await {
                Ok(p) => write_simple(
                    out,
                    &format!(
                        "PROMOTED timeline={} switch_lsn={}",
                        p.timeline, p.switch_lsn
                    ),
                ),
                Err(e) => err(out, e),
            }
        }
        ReplRequest::Fence => match blocking(node, roles::fence).await {
            Ok(end) => write_integer(out, end.0 as i64),
            Err(e) => err(out, e),
        },
        ReplRequest::Unfence => match blocking(node, roles::unfence).await {
            Ok(()) => write_simple(out, "OK"),
            Err(e) => err(out, e),
        },
        ReplRequest::Demote { upstream } => {
            match blocking(node, move |r| roles::demote(r, &upstream)).await {
                Ok(end) => write_integer(out, end.0 as i64),
                Err(e) => err(out, e),
            }
        }
        ReplRequest::Follow { upstream } => {
            match blocking(node, move |r| roles::follow(r, &upstream)).await {
                Ok(()) => write_simple(out, "OK"),
                Err(e) => err(out, e),
            }
        }
        ReplRequest::WaitLsn { lsn, timeout_ms } => {
            match wait_applied(node, Lsn(lsn), timeout_ms).await {
                Ok(applied) => write_integer(out, lsn_reply(applied)),
                Err(e) => write_error(out, &e.reply()),
            }
        }
    }
}

/// An LSN as a RESP integer (LSNs stay far below `i64::MAX`; clamped, never
/// wrapped to a negative).
pub fn lsn_reply(lsn: Lsn) -> i64 {
    i64::try_from(lsn.0).unwrap_or(i64::MAX)
}
