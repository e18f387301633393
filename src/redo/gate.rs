//! The redo gate: keeps readers out while redo changes pages, so a reader
//! on a hot standby sees the data as of a transaction boundary.
//!
//! Every transaction (a read on a standby is one) holds the gate as a
//! reader for its length ([`Gate::reader`]); redo closes it
//! ([`Gate::close`]) before its workers apply a run of batches and opens it
//! ([`Gate::open`]) once they all finished (a batch boundary, a group
//! boundary). Close and open are separate calls, not a guard, because the
//! redo dispatcher keeps the gate closed across several batches and
//! decides when to let readers in (`redo::pipeline`, "Readers").
//!
//! Closing waits for the readers inside and stops new ones from entering
//! (redo is not starved by a stream of readers); a reader waits while the
//! gate is closed or closing. Lock order: the gate comes before the
//! engine's state lock and the buffer-pool shards.

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
struct State {
    readers: u32,
    /// Redo holds the gate closed.
    closed: bool,
    /// Redo waits for the readers inside to leave.
    closing: bool,
}

#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

/// A reader inside the gate; leaves on drop.
pub struct Reader<'a>(&'a Gate);

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.readers -= 1;
        if st.readers == 0 && st.closing {
            self.0.changed.notify_all();
        }
    }
}

impl Gate {
    /// Enters as a reader (waits while redo holds the gate closed).
    pub fn reader(&self) -> Reader<'_> {
        let mut st = self.state.lock();
        while st.closed || st.closing {
            self.changed.wait(&mut st);
        }
        st.readers += 1;
        Reader(self)
    }

    /// Redo: waits until no reader is inside and keeps new ones out.
    pub fn close(&self) {
        let mut st = self.state.lock();
        assert!(!st.closed && !st.closing, "the redo gate is closed twice");
        st.closing = true;
        while st.readers > 0 {
            self.changed.wait(&mut st);
        }
        st.closing = false;
        st.closed = true;
    }

    /// Redo: lets readers in again.
    pub fn open(&self) {
        let mut st = self.state.lock();
        assert!(st.closed, "the redo gate is opened while open");
        st.closed = false;
        self.changed.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn closing_waits_for_readers_and_keeps_new_ones_out() {
        let gate = Arc::new(Gate::default());
        let reader = gate.reader();
        let closed = Arc::new(AtomicBool::new(false));
        let (g, c) = (gate.clone(), closed.clone());
        let redo = std::thread::spawn(move || {
            g.close();
            c.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !closed.load(Ordering::SeqCst),
            "closed with a reader inside"
        );
        drop(reader);
        redo.join().unwrap();
        assert!(gate.is_closed());
        let (g, entered) = (gate.clone(), Arc::new(AtomicBool::new(false)));
        let e = entered.clone();
        let late = std::thread::spawn(move || {
            let _r = g.reader();
            e.store(true, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !entered.load(Ordering::SeqCst),
            "a reader entered a closed gate"
        );
        gate.open();
        late.join().unwrap();
        assert!(entered.load(Ordering::SeqCst));
    }
}
