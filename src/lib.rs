//! tandem: a replicated primary/standby storage node on io_uring.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod ids;
pub mod io;
pub mod page;
pub mod wal;
