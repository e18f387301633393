//! The client-facing side of a node: the RESP wire codec, the typed command
//! vocabulary and the glob matcher behind `SCAN MATCH` and `CONFIG GET`.
//!
//! Everything here is pure logic without I/O; the per-core session loops own
//! the sockets, feed bytes into [`resp::RequestParser`], turn each request
//! into a [`command::Command`] and write replies with the `resp::write_*`
//! functions.

pub mod command;
pub mod exec;
pub mod glob;
pub mod info;
pub mod listener;
pub mod repl_admin;
pub mod resp;
pub mod session;
