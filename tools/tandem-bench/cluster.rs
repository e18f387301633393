//! Where the load goes: the host list and finding its primary.
//!
//! Owns `Target` (hosts, password, timeouts) and `connect_primary`, which walks the
//! hosts starting at the last primary, authenticates and asks `ROLE`; the first node
//! whose reply starts with `master` wins. With a single host (`-h/-p`) the role is
//! not required: any node that answers is used, so Redis replicas and servers
//! without `ROLE` still work for read-only mixes. `connect_any` skips the role
//! check (the standbys `run --read-your-writes` reads on).
//!
//! `connect_primary_retrying` is the bounded retry loop used mid-run after a
//! connection error or a `READONLY` reply: exponential backoff from `BACKOFF_MIN`
//! to `Target::backoff_max` (`BACKOFF_MAX` unless `run --reconnect-backoff-max-ms`
//! lowers it), giving up at a deadline. Called from `run.rs`, `init.rs`,
//! `check.rs` on the current thread's compio runtime.

use std::time::{Duration, Instant};

use crate::conn::{Conn, ConnError};
use crate::resp::Value;

/// First pause after a failed round over all hosts; doubles up to `BACKOFF_MAX`.
/// 10 ms keeps the gap after a quick restart short without spinning on a dead host.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct Target {
    pub hosts: Vec<String>,
    /// True when the user gave `--hosts`: then only a node whose role is `master`
    /// is accepted.
    pub require_primary: bool,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    /// Longest pause between rounds over the hosts while looking for a primary.
    /// A failover benchmark lowers it so the tool's backoff does not add to the
    /// measured outage.
    pub backoff_max: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Conn(#[from] ConnError),
    #[error("AUTH failed on {addr}: {text}")]
    Auth { addr: String, text: String },
    #[error("{addr} is not a primary (ROLE: {role})")]
    NotPrimary { addr: String, role: String },
    #[error("no primary found among {hosts}; last error: {last}")]
    NoPrimary { hosts: String, last: String },
}

impl Target {
    /// Connects to one host, authenticates and checks its role.
    pub async fn connect_host(&self, addr: &str) -> Result<Conn, ClusterError> {
        let mut conn = self.connect_any(addr).await?;
        if self.require_primary {
            let reply = conn.call(&["ROLE"], self.io_timeout).await?;
            if !is_primary(&reply) {
                return Err(ClusterError::NotPrimary {
                    addr: addr.to_string(),
                    role: reply.to_string(),
                });
            }
        }
        Ok(conn)
    }

    /// Connects to one host and authenticates, whatever its role (the
    /// standbys of `run --read-your-writes`).
    pub async fn connect_any(&self, addr: &str) -> Result<Conn, ClusterError> {
        let mut conn = Conn::connect(addr, self.connect_timeout).await?;
        if let Some(password) = &self.password {
            let reply = conn
                .call(&["AUTH", password.as_str()], self.io_timeout)
                .await?;
            if let Some(text) = reply.error_text() {
                return Err(ClusterError::Auth {
                    addr: addr.to_string(),
                    text,
                });
            }
        }
        Ok(conn)
    }

    /// One round over all hosts, starting at `start`; returns the connection and
    /// the index of the host it went to.
    pub async fn connect_primary(&self, start: usize) -> Result<(Conn, usize), ClusterError> {
        let mut last = None;
        let count = self.hosts.len();
        for i in 0..count {
            let index = (start + i) % count;
            let Some(addr) = self.hosts.get(index) else {
                continue;
            };
            match self.connect_host(addr).await {
                Ok(conn) => return Ok((conn, index)),
                Err(e @ ClusterError::Auth { .. }) if count == 1 => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) if count == 1 => Err(e),
            last => Err(ClusterError::NoPrimary {
                hosts: self.hosts.join(","),
                last: last.map(|e| e.to_string()).unwrap_or_default(),
            }),
        }
    }

    /// Rounds over the hosts with backoff until one is a usable primary or
    /// `deadline` passes.
    pub async fn connect_primary_retrying(
        &self,
        start: usize,
        deadline: Instant,
    ) -> Result<(Conn, usize), ClusterError> {
        let mut backoff = BACKOFF_MIN.min(self.backoff_max);
        loop {
            let err = match self.connect_primary(start).await {
                Ok(found) => return Ok(found),
                Err(e) => e,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(err);
            }
            let pause = backoff.min(deadline.saturating_duration_since(now));
            compio::time::sleep(pause).await;
            backoff = (backoff * 2).min(self.backoff_max);
        }
    }
}

/// True if a `ROLE` reply names a primary (`master` in Redis's shape).
pub fn is_primary(reply: &Value) -> bool {
    match reply {
        Value::Array(items) => items
            .first()
            .and_then(Value::as_bytes)
            .is_some_and(|role| role.eq_ignore_ascii_case(b"master")),
        _ => false,
    }
}

/// True for error replies after which the transaction should go to another node
/// or wait: the node is a standby, is loading, or has lost its primary.
pub fn is_retryable_error(text: &[u8]) -> bool {
    ["READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN"]
        .iter()
        .any(|prefix| text.starts_with(prefix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_master_is_primary() {
        let reply = Value::Array(vec![Value::Bulk(b"master".to_vec()), Value::Int(0)]);
        assert!(is_primary(&reply));
        let reply = Value::Array(vec![Value::Bulk(b"slave".to_vec())]);
        assert!(!is_primary(&reply));
        assert!(!is_primary(&Value::Error(b"ERR unknown".to_vec())));
    }

    #[test]
    fn readonly_is_retryable() {
        assert!(is_retryable_error(
            b"READONLY You can't write against a read only replica."
        ));
        assert!(!is_retryable_error(b"ERR value is not an integer"));
    }
}
