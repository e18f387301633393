//! A cross-thread "something changed" signal for async tasks.
//!
//! A [`Kick`] holds a generation number. Any thread may [`Kick::kick`] it
//! (the generation grows by one and every waiting task is woken); a task
//! on any runtime awaits [`Kick::changed`] to learn that the generation
//! moved past the one it started with. The WAL receiver uses it to drop
//! its stream at once when an operator promotes the node or points it at
//! another upstream; the WAL wakes its senders with one when the flusher
//! takes a batch (no polling either way).
//!
//! Invariant: the generation only grows, and a waiter registered before a
//! kick is always woken by it (both happen under one lock).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

#[derive(Default)]
pub struct Kick {
    state: Mutex<KickState>,
}

#[derive(Default)]
struct KickState {
    generation: u64,
    wakers: Vec<Waker>,
}

impl Kick {
    pub fn generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// Moves the generation on and wakes every waiter.
    pub fn kick(&self) {
        let wakers = {
            let mut st = self.state.lock();
            st.generation += 1;
            std::mem::take(&mut st.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Ready once the generation differs from `since`.
    pub fn changed(&self, since: u64) -> Changed<'_> {
        Changed { kick: self, since }
    }
}

pub struct Changed<'a> {
    kick: &'a Kick,
    since: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.kick.state.lock();
        if st.generation != self.since {
            return Poll::Ready(());
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Runs `f` until it finishes (`Some`) or `kick` moves past `since`
/// (`None`; `f` is dropped, cancelling whatever it was waiting for).
pub async fn until_kicked<F: Future>(kick: &Kick, since: u64, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut changed = std::pin::pin!(kick.changed(since));
    std::future::poll_fn(|cx| {
        if changed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        f.as_mut().poll(cx).map(Some)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_kick_from_another_thread_ends_the_wait() {
        let kick = Arc::new(Kick::default());
        let since = kick.generation();
        let k2 = kick.clone();
        let t = std::thread::spawn(move || k2.kick());
        let rt = compio::runtime::Runtime::new().unwrap();
        let out = rt.block_on(until_kicked(&kick, since, std::future::pending::<()>()));
        t.join().unwrap();
        assert_eq!(out, None);
        assert_eq!(kick.generation(), since + 1);
    }

    #[test]
    fn a_finished_future_wins_without_a_kick() {
        let kick = Kick::default();
        let rt = compio::runtime::Runtime::new().unwrap();
        let out = rt.block_on(until_kicked(&kick, kick.generation(), async { 7 }));
        assert_eq!(out, Some(7));
    }
}
