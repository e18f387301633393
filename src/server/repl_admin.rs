//! The `REPL` commands: role changes that `tandemctl switchover`,
//! `failover`, `promote` and `demote` drive over the client port.
//!
//! A session parks the request ([`ReplRequest`]) and runs it after its
//! batch: the role changes block on a few fsyncs (history and control
//! files), so they run on a blocking thread (`compio::runtime::
//! spawn_blocking`) instead of stalling every connection of the session
//! core. `REPL WAITLSN` polls the applied LSN once a millisecond: an
//! operator's wait during a switchover, not a commit path.
//!
//! Replies: PROMOTE `+PROMOTED timeline=N switch_lsn=L`; FENCE and DEMOTE the WAL end
//! (integer); FOLLOW and UNFENCE `+OK`; WAITLSN the applied LSN, or
//! `-TIMEOUT ...`. Failures are `-ERR <reason>` and change nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::command::ReplCommand;
use super::resp::{write_error, write_integer, write_simple};
use crate::engine::control_file::Role;
use crate::node::Node;
use crate::replication::roles::{self, RoleError};

/// Poll interval of `REPL WAITLSN`.
const WAIT_LSN_POLL: Duration = Duration::from_millis(1);

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
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                let engine = &node.engine;
                let applied = match engine.role() {
                    Role::Standby => engine.applied_lsn(),
                    Role::Primary => engine.wal().flushed(),
                };
                if applied.0 >= lsn {
                    write_integer(out, applied.0 as i64);
                    break;
                }
                if Instant::now() >= deadline {
                    write_error(
                        out,
                        &format!("TIMEOUT applied LSN {applied} has not reached {lsn} after {timeout_ms} ms"),
                    );
                    break;
                }
                compio::time::sleep(WAIT_LSN_POLL).await;
            }
        }
    }
}
