//! Redo: applying WAL to pages, for crash recovery, a standby's streaming
//! redo, the replay before a promotion and a build's first start.
//!
//! - [`apply`]: one record onto one page. The primary runs the same
//!   function on its own changes, so a standby or a recovered node that
//!   applies the same records holds byte-identical pages (DESIGN.md
//!   section 3).
//! - [`assembler`]: record groups (transactions) from a record stream;
//!   [`dispatcher`]: groups into batches of per-worker shares, page `n` to
//!   worker `n % N`; both pure.
//! - [`workers`]: the worker threads, pinned, one buffer-pool shard each;
//!   [`pipeline`]: the coordinator ([`pipeline::Redo`]) and the
//!   `redo-dispatcher` thread of a standby; [`feed`]: the WAL receiver's
//!   hand-off to it; [`applied`]: the applied position, its one owner and
//!   its waiters.
//!
//! Thread roles: crash recovery runs on the thread that opens the engine
//! (as worker 0) with workers 1..N; a standby's streaming redo on the
//! `redo-dispatcher` thread (worker 0) with the same workers.
pub mod applied;
pub mod apply;
pub mod assembler;
pub mod bench;
pub mod dispatcher;
pub mod feed;
pub mod gate;
pub mod pipeline;
pub mod workers;

pub use apply::{apply, needs_redo, ApplyError};
pub use workers::RedoError;
