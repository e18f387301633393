//! The operator's tool (`tandemctl`, DESIGN.md section 5) as a library, so
//! the binary stays a thin dispatcher and tests can reach the same code.
//!
//! - [`client`]: a small blocking RESP client and the parsing of `INFO`
//!   text; every command that talks to a node goes through it.
//! - [`query`]: `query` and `digest`, what a node says about itself.
//! - [`process`]: starting and stopping node processes on this machine.
//! - [`cluster`]: a local cluster (a primary and standbys) in one directory.
//! - [`roles`]: switchover, failover, promote and demote.
//!
//! Errors are one [`CtlError`] enum; nothing here panics on what a user
//! typed or a node answered. The binary prints the error and exits 1.

pub mod client;
pub mod cluster;
pub mod process;
pub mod query;
pub mod roles;

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::config::ConfigError;

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
    #[error(transparent)]
    Config {
        #[from]
        source: ConfigError,
    },
    #[error("{}: {source}", path.display())]
    File { path: PathBuf, source: io::Error },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("a node already answers on {client}")]
    AlreadyAnswering { client: String },
    #[error("{} is in use by a running node{pid}", dir.display())]
    DataDirInUse { dir: PathBuf, pid: String },
    #[error("the node exited ({status}) while starting; last lines of {}:\n{tail}", log.display())]
    Exited {
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "the node (pid {pid}) did not answer PING on {client} within {secs} s; \
         it still runs, see {}", log.display()
    )]
    NotReady {
        client: String,
        secs: u64,
        pid: u32,
        log: PathBuf,
    },
    #[error("{host} reports no process_id in INFO server")]
    NoPid { host: String },
    #[error(
        "{host} is not an address of this machine: an immediate stop signals the node's process"
    )]
    NotLocal { host: String },
    #[error("pid {pid} is not a tandem process: not signalling it")]
    NotTandem { pid: u32 },
    #[error("cannot signal pid {pid}: {source}")]
    Signal { pid: u32, source: io::Error },
    #[error("pid {pid} still runs after {secs} s")]
    StillRunning { pid: u32, secs: u64 },
    #[error("--standbys {standbys}: at most {max}")]
    TooManyStandbys { standbys: usize, max: usize },
    #[error("--base-port {base}: the ports up to {base} + 200 + {standbys} do not fit")]
    PortRange { base: u16, standbys: usize },
    #[error("cannot find free loopback ports: {source}")]
    FreePort { source: io::Error },
    #[error("invalid {key} {value:?}: {reason}")]
    InvalidSetting {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{} holds a running cluster ({nodes}): run `tandemctl cluster down --dir {}` first", dir.display(), dir.display())]
    ClusterRunning { dir: PathBuf, nodes: String },
    #[error("no cluster in {}: it has no cluster.json", dir.display())]
    NoCluster { dir: PathBuf },
    #[error("{} is not empty and has no cluster.json: remove it or pick another directory", dir.display())]
    DirNotEmpty { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    ClusterFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the config: {source}")]
    Toml { source: toml::ser::Error },
    #[error("tandem build of {name} failed ({status}):\n{output}")]
    BuildFailed {
        name: String,
        status: ExitStatus,
        output: String,
    },
    #[error("{primary} does not list {names} as streaming after {secs} s")]
    NotStreaming {
        primary: String,
        names: String,
        secs: u64,
    },
    #[error("still running: {names}")]
    NotAllStopped { names: String },
}
