//! The applied position: the end of the last record group redo applied
//! (with the LSN of that group's last record, where reading resumes), and
//! who waits for it to move.
//!
//! One owner writes it: the redo pipeline, after every worker finished a
//! batch, while it holds the redo gate ([`Applied::advance`], which
//! asserts that it only grows). Role changes set it where a node's redo
//! starts over ([`Applied::reset`]: crash recovery's end, a demoted
//! primary's WAL end, a standby's WAL cut at a timeline switch); nothing
//! else writes it. Readers: INFO and `tandemctl query`, the WAL
//! receiver's status (its kick asks for one), `WAITLSN` (its waiters),
//! checkpoints (the restartpoint of a standby).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;

use crate::ids::Lsn;
use crate::kick::Kick;
use crate::wal::waiters::Waiters;

pub struct Applied {
    /// `(end, last)`: the applied LSN and the LSN of the last record of
    /// the group that ends there.
    position: Mutex<(Lsn, Lsn)>,
    /// `position.0`, readable without the lock.
    end: AtomicU64,
    waiters: Waiters,
    kick: Kick,
}

impl Applied {
    pub fn new(end: Lsn, last: Lsn) -> Arc<Applied> {
        Arc::new(Applied {
            position: Mutex::new((end, last)),
            end: AtomicU64::new(end.0),
            waiters: Waiters::default(),
            kick: Kick::default(),
        })
    }

    pub fn position(&self) -> (Lsn, Lsn) {
        *self.position.lock()
    }

    pub fn lsn(&self) -> Lsn {
        Lsn(self.end.load(Ordering::Acquire))
    }

    /// Moves on after a batch (the pipeline only): it only grows.
    pub(crate) fn advance(&self, end: Lsn, last: Lsn) {
        {
            let mut pos = self.position.lock();
            assert!(
                end >= pos.0 && last < end,
                "applied LSN must grow: {} -> {end} (last record {last})",
                pos.0
            );
            *pos = (end, last);
            self.end.store(end.0, Ordering::Release);
        }
        self.waiters.wake_through(end);
        self.kick.kick();
    }

    /// Sets the position where a node's redo starts over (a role change
    /// or a WAL cut, see the module doc). May move it back.
    pub(crate) fn reset(&self, end: Lsn, last: Lsn) {
        *self.position.lock() = (end, last);
        self.end.store(end.0, Ordering::Release);
        self.waiters.wake_through(end);
        self.kick.kick();
    }

    /// Kicked whenever the position moves (or redo stops with an error).
    pub fn kick(&self) -> &Kick {
        &self.kick
    }

    /// Wakes every waiter to look again (redo stopped for good).
    pub(crate) fn wake_all(&self) {
        self.waiters.wake_all();
        self.kick.kick();
    }

    /// Resolves once the applied LSN is at least `lsn`.
    pub fn wait(self: &Arc<Self>, lsn: Lsn) -> AppliedWait {
        AppliedWait {
            applied: self.clone(),
            lsn,
            id: None,
        }
    }
}

/// Future of [`Applied::wait`]; resolves to the applied LSN.
pub struct AppliedWait {
    applied: Arc<Applied>,
    lsn: Lsn,
    id: Option<u64>,
}

impl Future for AppliedWait {
    type Output = Lsn;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Lsn> {
        let this = self.get_mut();
        let now = this.applied.lsn();
        if now >= this.lsn {
            return Poll::Ready(now);
        }
        let mut list = this.applied.waiters.lock();
        // Re-check under the lock: `advance` publishes before it wakes.
        let now = this.applied.lsn();
        if now >= this.lsn {
            if let Some(id) = this.id.take() {
                list.deregister(this.lsn, id);
            }
            return Poll::Ready(now);
        }
        list.register(this.lsn, &mut this.id, cx.waker());
        Poll::Pending
    }
}

impl Drop for AppliedWait {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.applied.waiters.lock().deregister(self.lsn, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_the_position_reaches_it() {
        let a = Applied::new(Lsn(100), Lsn(90));
        let rt = compio::runtime::Runtime::new().unwrap();
        assert_eq!(rt.block_on(a.wait(Lsn(50))), Lsn(100));
        let a2 = a.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            a2.advance(Lsn(300), Lsn(280));
        });
        assert_eq!(rt.block_on(a.wait(Lsn(250))), Lsn(300));
        t.join().unwrap();
        assert_eq!(a.position(), (Lsn(300), Lsn(280)));
    }

    #[test]
    #[should_panic(expected = "applied LSN must grow")]
    fn it_never_moves_back_by_advance() {
        let a = Applied::new(Lsn(100), Lsn(90));
        a.advance(Lsn(80), Lsn(70));
    }
}
