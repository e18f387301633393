//! The operator's tool (`tandemctl`, DESIGN.md section 5) as a library, so
//! the binary stays a thin dispatcher and tests can reach the same code.
//!
//! - [`client`]: a small blocking RESP client and the parsing of `INFO`
//!   text; every command that talks to a node goes through it.
//! - [`query`]: `query` and `digest`, what a node says about itself.
//! - [`process`]: starting and stopping node processes on this machine.
//! - [`roles`]: switchover, failover, promote and demote.
//!
//! Errors are one [`CtlError`] enum; nothing here panics on what a user
//! typed or a node answered. The binary prints the error and exits 1.

pub mod client;
pub mod process;
pub mod query;
pub mod roles;

use std::io;

/// Everything a ctl command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot connect to {host}: {source}")]
    Connect { host: String, source: io::Error },
    #[error("{host}: {source}")]
    Io { host: String, source: io::Error },
    #[error("{host}: {command} answered: {message}")]
    Refused {
        host: String,
        command: String,
        message: String,
    },
    #[error("{host}: unexpected reply {reply:?}")]
    Protocol { host: String, reply: String },
    #[error("{host}: reply of {len} bytes is larger than {max} bytes")]
    ReplyTooLarge { host: String, len: u64, max: u64 },
    #[error("{host}: the node sent no {section} section")]
    NoSection { host: String, section: &'static str },
    #[error("{host}: digest failed: {reason}")]
    Digest { host: String, reason: String },
    #[error("{host} refused to stop: {reply}")]
    StopRefused { host: String, reply: String },
    #[error("{host} closed the connection but still accepts new ones after {secs} s")]
    StillAccepting { host: String, secs: u64 },
    #[error("cannot encode JSON: {source}")]
    Json { source: serde_json::Error },
}
