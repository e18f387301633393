//! Replication: WAL shipping from a primary to standbys over our own
//! framed protocol on the replication port (DESIGN.md section 3).
//!
//! The modules here are pure logic (no sockets, no files, no clocks), so
//! they can be tested without a kernel and driven by a seeded simulator;
//! the WAL sender / receiver loops that do the I/O call into them.
//! - [`frame`]: wire format, frames and typed messages, incremental decoder;
//! - [`auth`]: challenge-response with the shared `cluster_secret`;
//! - [`sync_commit`]: `synchronous_commit` / `synchronous_standby_names`
//!   rules and the commit horizon they give.
//!
//! Invariants owned here: a frame reaches message decoding only after its
//! CRC32C checked out, and a decoded message satisfies every invariant the
//! encoder asserts (standby stages ordered, WAL only up to the primary's
//! flushed LSN); a commit horizon never passes a standby it counts.

pub mod auth;
pub mod frame;
pub mod sync_commit;
