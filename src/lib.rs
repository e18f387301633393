//! tandem: a replicated primary/standby storage node on io_uring.
//!
//! Thread roles so far: `io` is used by any thread that owns a `Ring` (the
//! only `unsafe` code); `wal` runs the `wal-flusher` (group commit) and
//! `wal-prepare` (segment files ahead) threads, and is called by engine and
//! session threads (`append`, `wait_flushed`) and the checkpointer
//! (`recycle_before`).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod ids;
pub mod io;
pub mod page;
pub mod wal;
