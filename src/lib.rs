//! tandem: a replicated primary/standby storage node on io_uring.

pub mod server;
