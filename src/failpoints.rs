//! Failpoints: faults a process cannot provoke from outside, for tests
//! (STYLE.md, "Failpoints"). Compiled in only with the `failpoints`
//! feature (`tools/test.sh` builds with it; a user's release build has
//! none of them: every `fail_point!` is empty then).
//!
//! Names are `module::function::what`; actions use the `fail` crate's
//! syntax (`return(300)`, `panic`, `off`, `2*return->off`, ...):
//! - `wal::flusher::before_write` `return(MS)`: every WAL batch waits MS
//!   between being offered to the WAL senders and being written, like a
//!   primary with a slow disk (a standby then holds WAL its primary loses
//!   in a crash);
//! - `replication::receiver::before_write` `return(MS)`: the WAL receiver
//!   acknowledges receipt (when asked), then waits MS before it writes,
//!   like a standby with a slow disk;
//! - `replication::receiver::on_wal` `panic`: a bug in the WAL receiver
//!   (the node must stop, not live on without it);
//! - `engine::data_file::sync` `return`: the data file's fdatasync fails
//!   with EIO;
//! - `redo::workers::apply` `return`: redo of the next record fails as a
//!   record that does not fit its page would;
//! - `redo::workers::share` `return(US)`: a worker takes US microseconds
//!   longer per record it applies, like a standby whose redo is slow.
//!
//! How a test sets them: the `FAILPOINTS` environment variable at start
//! (`name=actions;name=actions`), or at run time an HTTP request on the
//! node's `--metrics-listen` address: `PUT /failpoints/NAME` with the
//! actions as the body (`off` clears it). In a build without the feature
//! both are refused, with a log line and an HTTP 404.

/// Whether failpoints are compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Applies `FAILPOINTS` from the environment (at node start).
pub fn setup_from_env() {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return;
    };
    if !ENABLED {
        tracing::warn!(%spec, "FAILPOINTS is set but this build has no failpoints (feature `failpoints`)");
        return;
    }
    for item in spec.split(';').filter(|s| !s.trim().is_empty()) {
        match item.split_once('=') {
            Some((name, actions)) => match set(name.trim(), actions.trim()) {
                Ok(()) => tracing::warn!(name, actions, "failpoint set"),
                Err(e) => tracing::error!(name, actions, error = %e, "bad failpoint"),
            },
            None => tracing::error!(item, "FAILPOINTS entry is not name=actions"),
        }
    }
}

/// Sets (or with `off`, clears) failpoint `name`.
pub fn set(name: &str, actions: &str) -> Result<(), String> {
    if !ENABLED {
        return Err("this build has no failpoints (feature `failpoints`)".into());
    }
    if actions == "off" {
        fail::remove(name);
        return Ok(());
    }
    fail::cfg(name, actions)
}

/// `return(MS)` of a delay failpoint, as a duration.
#[allow(dead_code)]
fn millis(arg: Option<String>) -> Option<std::time::Duration> {
    arg.and_then(|a| a.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
}

/// `wal::flusher::before_write`: how long a batch waits before its write.
pub fn flusher_delay() -> Option<std::time::Duration> {
    fail::fail_point!("wal::flusher::before_write", millis);
    None
}

/// `replication::receiver::before_write`: how long the receiver waits
/// between its receipt and its write.
pub fn receiver_write_delay() -> Option<std::time::Duration> {
    fail::fail_point!("replication::receiver::before_write", millis);
    None
}

/// `replication::receiver::on_wal`: `panic` stands in for a bug.
pub fn receiver_on_wal() {
    fail::fail_point!("replication::receiver::on_wal");
}

/// `redo::workers::share`: how much longer a worker takes per record.
pub fn redo_record_delay() -> Option<std::time::Duration> {
    fail::fail_point!("redo::workers::share", |arg: Option<String>| arg
        .and_then(|a| a.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_micros));
    None
}

/// `redo::workers::apply`: true when the next record must fail.
pub fn redo_apply_fails() -> bool {
    fail::fail_point!("redo::workers::apply", |_| true);
    false
}
