//! Commit waiters: tasks and threads parked until the flushed LSN covers
//! their commit.
//!
//! Async waiters (session tasks on compio runtimes, other threads) register
//! a `Waker` keyed by `(lsn, id)`; blocking waiters sleep on a condvar. The
//! flusher publishes the flushed LSN *before* it takes this module's lock to
//! wake, and waiters re-check the LSN under the lock before they park, so no
//! wake-up is lost. There is no timer anywhere: a waiter is woken by the
//! flush that covers it, by the fence, or by shutdown.
//!
//! Bounded: one entry per pending future (futures remove their entry when
//! dropped), so the map never outgrows the number of live sessions.

use std::collections::BTreeMap;
use std::task::Waker;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::ids::Lsn;

#[derive(Default)]
pub(crate) struct WaitList {
    next_id: u64,
    wakers: BTreeMap<(Lsn, u64), Waker>,
}

impl WaitList {
    /// Registers (or refreshes) the waker of the future `id` waiting for `lsn`.
    pub(crate) fn register(&mut self, lsn: Lsn, id: &mut Option<u64>, waker: &Waker) {
        let key_id = *id.get_or_insert_with(|| {
            self.next_id += 1;
            self.next_id
        });
        match self.wakers.get_mut(&(lsn, key_id)) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => w.clone_from(waker),
            None => {
                self.wakers.insert((lsn, key_id), waker.clone());
            }
        }
    }

    pub(crate) fn deregister(&mut self, lsn: Lsn, id: u64) {
        self.wakers.remove(&(lsn, id));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.wakers.len()
    }
}

#[derive(Default)]
pub(crate) struct Waiters {
    list: Mutex<WaitList>,
    blocking: Condvar,
}

impl Waiters {
    pub(crate) fn lock(&self) -> MutexGuard<'_, WaitList> {
        self.list.lock()
    }

    /// Wakes every waiter for an LSN `<= flushed` (and all blocking ones, to
    /// re-check). Call after publishing `flushed`.
    pub(crate) fn wake_through(&self, flushed: Lsn) {
        let ready = {
            let mut list = self.list.lock();
            let later = list.wakers.split_off(&(flushed, u64::MAX));
            let ready = std::mem::replace(&mut list.wakers, later);
            self.blocking.notify_all();
            ready
        };
        for waker in ready.into_values() {
            waker.wake();
        }
    }

    /// Wakes everyone (fence, shutdown). Call after publishing the reason.
    pub(crate) fn wake_all(&self) {
        let all = {
            let mut list = self.list.lock();
            self.blocking.notify_all();
            std::mem::take(&mut list.wakers)
        };
        for waker in all.into_values() {
            waker.wake();
        }
    }

    /// Blocks until `check` (called under the lock) returns `Some`.
    pub(crate) fn wait_blocking<R>(&self, mut check: impl FnMut() -> Option<R>) -> R {
        let mut list = self.list.lock();
        loop {
            if let Some(r) = check() {
                return r;
            }
            self.blocking.wait(&mut list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_only_covered_waiters() {
        let waiters = Waiters::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut ids = [None, None, None];
        for (i, lsn) in [10u64, 20, 30].into_iter().enumerate() {
            waiters.lock().register(Lsn(lsn), &mut ids[i], &waker);
        }
        // Re-registering does not add an entry.
        waiters.lock().register(Lsn(10), &mut ids[0], &waker);
        assert_eq!(waiters.lock().len(), 3);
        waiters.wake_through(Lsn(20));
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert_eq!(waiters.lock().len(), 1);
        waiters.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        assert_eq!(waiters.lock().len(), 0);
    }
}
