//! Replication: WAL shipping from a primary to standbys over our own
//! framed protocol on the replication port (DESIGN.md section 3).
//!
//! The modules here are pure logic (no sockets, no files, no clocks), so
//! they can be tested without a kernel and driven by a seeded simulator;
//! the WAL sender / receiver loops that do the I/O call into them.
//! - [`frame`]: wire format, frames and typed messages, incremental decoder;
//! - [`auth`]: challenge-response with the shared `cluster_secret`;
//! - [`sync_commit`]: `synchronous_commit` / `synchronous_standby_names`
//!   rules and the commit horizon they give;
//! - [`timeline`]: timeline history (switches, which timeline wrote an
//!   LSN, whether a standby can follow a switch) and its history files;
//! - [`rto`]: a standby's estimated recovery time and the primary's
//!   commit throttle for `recovery_time_target`.
//!
//! The I/O side, on its own threads with compio runtimes:
//! - [`sender`]: primary side of the replication port (handshake, WAL
//!   stream, status), [`build`]: full builds (both sides),
//!   [`receiver`]: standby side (WAL receiver and serial redo);
//! - [`conn`]: typed messages over framed TCP; [`wal_range`]: WAL bytes
//!   cut at record boundaries and checked against the chain;
//! - [`context`], [`status`], [`sync_wait`]: shared state, the standby
//!   table and upstream status, the synchronous-commit rule in force and
//!   commit waits per synchronous level; [`sync_rule_file`]: where a rule
//!   came from, and the file that keeps one set at run time.
//!
//! Invariants owned here: a frame reaches message decoding only after its
//! CRC32C checked out, and a decoded message satisfies every invariant the
//! encoder asserts (standby stages ordered, WAL only up to the primary's
//! flushed LSN); a commit horizon never passes a standby it counts.

pub mod auth;
pub mod build;
pub mod conn;
pub mod context;
pub mod frame;
pub mod metrics;
pub mod pending;
pub mod receiver;
pub mod roles;
pub mod rto;
pub mod sender;
pub mod status;
pub mod sync_commit;
pub mod sync_rule_file;
pub mod sync_wait;
pub mod timeline;
pub mod wal_range;
