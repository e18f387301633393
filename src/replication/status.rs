//! What a node knows about its replication peers, shared between the
//! replication tasks (writers) and sessions, INFO, ROLE and metrics
//! (readers).
//!
//! On a primary: one [`StandbyEntry`] per connected (or recently
//! connected) standby, updated by its WAL sender from the standby's status
//! frames. On a standby: one [`UpstreamStatus`], updated by the WAL
//! receiver. LSN order is asserted where it advances (STYLE.md habit 2):
//! `received >= written >= flushed >= applied`.

use std::time::Instant;

use parking_lot::Mutex;

use crate::ids::Lsn;

/// Connection state of a WAL sender (primary side) or receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    /// Sending or receiving a base build.
    Building,
    /// Sending WAL from segment files, behind the primary's flushed LSN.
    CatchingUp,
    Streaming,
    /// The standby fell past WAL retention, or diverged: it needs a build.
    NeedsBuild,
    Disconnected,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Building => "building",
            LinkState::CatchingUp => "catchup",
            LinkState::Streaming => "streaming",
            LinkState::NeedsBuild => "needs_build",
            LinkState::Disconnected => "disconnected",
        }
    }
}

/// A standby as its primary sees it.
#[derive(Clone, Debug)]
pub struct StandbyEntry {
    pub id: u64,
    pub name: String,
    pub addr: String,
    pub state: LinkState,
    pub sent: Lsn,
    pub received: Lsn,
    pub written: Lsn,
    pub flushed: Lsn,
    pub applied: Lsn,
    /// The standby's estimated recovery time from its last status.
    pub estimated_rto_ms: u64,
    pub last_reply: Instant,
    pub connected_at: Instant,
}

impl StandbyEntry {
    /// The positions synchronous commit counts (connected: streaming or
    /// catching up).
    pub fn position(&self) -> super::sync_commit::StandbyPosition {
        super::sync_commit::StandbyPosition {
            name: self.name.clone(),
            received: self.received,
            written: self.written,
            flushed: self.flushed,
            applied: self.applied,
            connected: matches!(self.state, LinkState::Streaming | LinkState::CatchingUp),
        }
    }
}

/// The standby table of a primary.
#[derive(Default)]
pub struct Standbys {
    entries: Mutex<Vec<StandbyEntry>>,
}

impl Standbys {
    pub fn add(&self, entry: StandbyEntry) {
        self.entries.lock().push(entry);
    }

    /// Forgets earlier connections of a standby that connects again.
    pub fn remove_name(&self, name: &str) {
        self.entries.lock().retain(|e| e.name != name);
    }

    pub fn remove(&self, id: u64) {
        self.entries.lock().retain(|e| e.id != id);
    }

    /// Runs `f` on the entry `id`, if present.
    pub fn update(&self, id: u64, f: impl FnOnce(&mut StandbyEntry)) {
        if let Some(e) = self.entries.lock().iter_mut().find(|e| e.id == id) {
            f(e);
            debug_assert!(
                e.received >= e.written && e.written >= e.flushed && e.flushed >= e.applied
            );
        }
    }

    pub fn snapshot(&self) -> Vec<StandbyEntry> {
        self.entries.lock().clone()
    }
}

/// A standby's view of its upstream. Its applied LSN is redo's
/// (`Engine::applied_lsn`), which has one owner.
#[derive(Clone, Debug)]
pub struct UpstreamStatus {
    pub upstream: String,
    pub primary_client_addr: String,
    pub state: LinkState,
    pub received: Lsn,
    pub written: Lsn,
    pub flushed: Lsn,
    /// The primary's durable end as its stream last said: nothing past it
    /// is applied here (it may still be lost with the primary).
    pub primary_flushed: Lsn,
    pub last_error: Option<String>,
}

#[derive(Default)]
pub struct Upstream {
    status: Mutex<Option<UpstreamStatus>>,
}

impl Upstream {
    pub fn set(&self, s: UpstreamStatus) {
        *self.status.lock() = Some(s);
    }

    pub fn update(&self, f: impl FnOnce(&mut UpstreamStatus)) {
        if let Some(s) = self.status.lock().as_mut() {
            f(s);
            debug_assert!(s.received >= s.written && s.written >= s.flushed);
        }
    }

    pub fn get(&self) -> Option<UpstreamStatus> {
        self.status.lock().clone()
    }
}
