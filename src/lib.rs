//! tandem: a replicated primary/standby storage node on io_uring.
//!
//! Which thread role runs which module (DESIGN.md section 1):
//! - session cores: [`server`] (RESP codec, sessions, command execution)
//!   calling into [`engine`] (B+tree, buffer pool) under the engine lock;
//! - WAL flusher: [`wal`] (group commit through io_uring, [`io`]);
//! - checkpointer (background core): [`engine::Engine::checkpoint`];
//! - start-up: [`engine::recovery`] redoes the WAL with [`redo`]'s
//!   pipeline (the opening thread dispatches, `redo-worker-N` apply);
//! - WAL sender / receiver: [`replication`] (frames, auth, sync commit);
//!   the receiver hands durable records to a standby's `redo-dispatcher`
//!   thread ([`redo::feed`]), which drives the pinned redo workers;
//! - `tandemctl` (another process): [`ctl`] (RESP client, node processes).
//!
//! Invariants, and where they are asserted:
//! - published LSNs only grow (`wal`), except a standby's WAL end when it
//!   drops a tail it never applied (`Wal::truncate_to`, at a timeline switch);
//! - a page is written only after the WAL is durable past its last
//!   commit (`engine::buffer_pool`), so `page_lsn <= flushed`;
//! - a transaction is one record group ending in a commit, appended whole
//!   or not at all (`engine::tx`); redo applies complete groups only and
//!   its applied LSN never passes the slowest worker (`redo::pipeline`);
//! - primary and redo apply records with the same function
//!   (`redo::apply`), so pages are byte-identical at the same LSN;
//! - no reply reports data that is not durable under the session's commit
//!   mode (`server::session`).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
pub mod ctl;
pub mod engine;
pub mod failpoints;
pub mod ids;
pub mod io;
pub mod kick;
pub mod metrics;
pub mod node;
pub mod page;
pub mod redo;
pub mod replication;
pub mod server;
pub mod wal;
