//! The hand-off from a standby's WAL receiver to its redo dispatcher.
//!
//! The receiver only receives, writes, flushes and acknowledges WAL. Once
//! records are durable here and below the primary's flushed LSN (what the
//! primary could still lose is never applied), it raises the `safe` mark
//! and offers the records ([`Feed::offer`]). The dispatcher applies every
//! record that ends at or before `safe`: from the offered records when
//! they are queued, else read back from the segment files. So the
//! receiver never waits for redo: when redo falls behind by more than
//! `limits::REDO_FEED_BYTES_MAX` of queued records, the receiver stops
//! queueing and the dispatcher catches up from the files (the queue's
//! memory is bounded, the backlog is not).

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::config::limits::REDO_FEED_BYTES_MAX;
use crate::ids::Lsn;

/// Messages from the receiver (and role changes) to the dispatcher.
pub enum FeedMsg {
    /// Whole validated records in WAL order, the first at `start` linking
    /// back to `prev`, all ending at or before the `safe` mark (their size
    /// goes back to the queue budget when taken).
    Chunk {
        start: Lsn,
        prev: Lsn,
        bytes: Vec<u8>,
    },
    /// The `safe` mark moved (records were not queued).
    Safe,
    /// Apply everything up to the `safe` mark, wait until nothing is in
    /// flight, say so on `parked`, and touch nothing until `resume` is
    /// dropped ([`Feed::pause`]).
    Pause {
        parked: Sender<()>,
        resume: Receiver<()>,
    },
}

/// Redo is parked while this lives ([`Feed::pause`]); dropping it lets the
/// dispatcher go on.
pub struct Paused {
    _resume: Sender<()>,
}

/// Queued messages at most (each is small or counted in bytes).
const FEED_MESSAGES_MAX: usize = 4096;

pub struct Feed {
    tx: Sender<FeedMsg>,
    rx: Receiver<FeedMsg>,
    queued_bytes: AtomicU64,
    safe: AtomicU64,
}

impl Feed {
    pub fn new(safe: Lsn) -> Feed {
        let (tx, rx) = bounded(FEED_MESSAGES_MAX);
        Feed {
            tx,
            rx,
            queued_bytes: AtomicU64::new(0),
            safe: AtomicU64::new(safe.0),
        }
    }

    /// The end of the WAL redo may apply.
    pub fn safe(&self) -> Lsn {
        Lsn(self.safe.load(Ordering::Acquire))
    }

    /// Receiver: records `bytes` (from `start`, linking to `prev`; may be
    /// empty) became applicable and `safe` is the new mark (their end, or
    /// later). Never blocks.
    pub fn offer(&self, start: Lsn, prev: Lsn, bytes: Vec<u8>, safe: Lsn) {
        let old = self.safe.fetch_max(safe.0, Ordering::AcqRel);
        let size = bytes.len() as u64;
        let queued = self.queued_bytes.load(Ordering::Acquire);
        let msg = if size > 0 && queued + size <= REDO_FEED_BYTES_MAX {
            self.queued_bytes.fetch_add(size, Ordering::AcqRel);
            FeedMsg::Chunk { start, prev, bytes }
        } else if safe.0 > old {
            FeedMsg::Safe
        } else {
            return;
        };
        if let Err(TrySendError::Full(FeedMsg::Chunk { bytes, .. })) = self.tx.try_send(msg) {
            // The dispatcher is far behind: it reads these from the files.
            self.queued_bytes
                .fetch_sub(bytes.len() as u64, Ordering::AcqRel);
        }
    }

    /// Receiver or a role change: the `safe` mark moved with no records
    /// handed over.
    pub fn set_safe(&self, safe: Lsn) {
        self.offer(safe, Lsn::ZERO, Vec::new(), safe);
    }

    /// Receiver: the WAL was cut at `to` (a timeline switch dropped a
    /// tail this node never applied): nothing past it is safe any more.
    pub fn lower_safe(&self, to: Lsn) {
        self.safe.fetch_min(to.0, Ordering::AcqRel);
    }

    /// Blocks until the dispatcher applied everything up to the `safe`
    /// mark as it is now (or stopped on an error) and parked with nothing
    /// in flight; it stays parked while the result lives. A role change
    /// (promotion replay, a WAL cut) drives the pipeline itself meanwhile:
    /// only one thread may wait for the workers' answers, or one could
    /// take the answer the other waits for.
    pub fn pause(&self) -> Paused {
        let (parked_tx, parked_rx) = bounded(1);
        let (resume_tx, resume_rx) = bounded(0);
        if self
            .tx
            .send(FeedMsg::Pause {
                parked: parked_tx,
                resume: resume_rx,
            })
            .is_ok()
        {
            let _ = parked_rx.recv();
        }
        Paused { _resume: resume_tx }
    }

    /// Dispatcher: the channel, to wait on it together with the workers'
    /// answers; hand what it receives to [`Feed::received`].
    pub(crate) fn receiver(&self) -> &Receiver<FeedMsg> {
        &self.rx
    }

    /// Dispatcher: a message taken from [`Feed::receiver`].
    pub(crate) fn received(&self, msg: &FeedMsg) {
        self.taken(msg);
    }

    /// Dispatcher: a queued message, if any.
    pub(crate) fn try_next(&self) -> Option<FeedMsg> {
        let msg = self.rx.try_recv().ok()?;
        self.taken(&msg);
        Some(msg)
    }

    fn taken(&self, msg: &FeedMsg) {
        if let FeedMsg::Chunk { bytes, .. } = msg {
            self.queued_bytes
                .fetch_sub(bytes.len() as u64, Ordering::AcqRel);
        }
    }
}
