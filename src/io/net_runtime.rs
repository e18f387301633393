//! The compio runtime every network thread runs on (session cores, WAL
//! senders and receivers, builds, peer probes), set up for one thread that
//! both submits and reaps.
//!
//! Why these flags: a ring created with `IORING_SETUP_SINGLE_ISSUER |
//! IORING_SETUP_DEFER_TASKRUN` runs the kernel's completion work (the
//! `recv` that follows a socket wake-up) only when this thread asks for
//! completions, in one batch, instead of the moment the peer's softirq
//! wakes the socket. Measured on the 2-core machine with redis-benchmark
//! `-c 64` against one session core (sync off): GET 88-94k/s with the
//! default ring, 151-163k/s with these flags; `perf` showed 15 % of the
//! session core spinning in `lock_sock` under `io_run_task_work`, racing
//! the sender's softirq for the socket lock. See README "Design choices".
//!
//! Invariant: the runtime is created and driven by the same thread (compio
//! runtimes are thread-local anyway), which `SINGLE_ISSUER` requires.
//! Kernels older than 6.1 refuse the flags; the runtime then falls back to
//! a default ring and says so once in the log.
//!
//! Polling before sleeping ([`block_on_polling`]): a thread that runs out
//! of work keeps looking at its ring (yielding its core between looks) for
//! a while before it sleeps in `io_uring_enter`. On this VM an idle vCPU
//! halts, and waking a halted vCPU costs about 30 us (measured per hop,
//! README "Design choices"); a session core whose commit acknowledgement
//! or next request arrives within the poll skips that wake. Measured side
//! by side with the flusher polling too (2026-11-27, redis-benchmark SET
//! `-d 100`): `-c 1` p50 191 us -> 167-175 us, `-c 64` 86-89k -> 95k/s.
//! A task's poll counts as work ([`counted`]); a loop turn that polled no
//! task is idle time. The cost is CPU: a lightly loaded session core
//! looks busy (`session_poll_us = 0` turns it off).
//!
//! A look at the ring never waits ([`look_at_ring`]): asking the kernel
//! for a completion with a zero timeout armed a timer and slept on it at
//! every look. Measured side by side (2026-11-27, `perf/ab.sh`, 3 rounds):
//! redis-benchmark SET `-c 1` p50 159-167 us -> 135-143 us, `-c 64`
//! 91-106k -> 96-109k/s; replicated loads unchanged.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// A compio runtime for the calling thread, with deferred task work when
/// the kernel has it.
pub fn network_runtime() -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .single_issuer(true)
        .defer_taskrun(true)
        .taskrun_flag(true);
    match compio::runtime::Runtime::builder()
        .with_proactor(proactor)
        .build()
    {
        Ok(rt) => Ok(rt),
        Err(e) => {
            if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "io_uring DEFER_TASKRUN unavailable; network threads use a default ring");
            }
            compio::runtime::Runtime::new()
        }
    }
}

thread_local! {
    /// Polls of [`Counted`] tasks on this thread: the activity signal of
    /// [`block_on_polling`].
    static TASK_POLLS: Cell<u64> = const { Cell::new(0) };
}

/// A task whose polls count as work for [`block_on_polling`].
pub struct Counted<F>(Pin<Box<F>>);

/// Wraps a task so its polls count as work (see the module doc).
pub fn counted<F: Future>(task: F) -> Counted<F> {
    Counted(Box::pin(task))
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        TASK_POLLS.with(|n| n.set(n.get().wrapping_add(1)));
        self.0.as_mut().poll(cx)
    }
}

/// `rt.block_on(future)`, except that once no [`Counted`] task has run for
/// `poll_for`, the thread sleeps in `io_uring_enter`; until then it polls
/// its ring without blocking, yielding its core between looks. A zero
/// `poll_for` is plain `block_on`. Timers still fire: every look runs them.
pub fn block_on_polling<F: Future>(
    rt: &compio::runtime::Runtime,
    future: F,
    poll_for: Duration,
) -> F::Output {
    if poll_for.is_zero() {
        return rt.block_on(future);
    }
    rt.enter(|| {
        let waker = rt.waker();
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        let mut idle_since: Option<Instant> = None;
        let mut seen = TASK_POLLS.with(Cell::get);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                rt.run();
                return out;
            }
            let more_ready = rt.run();
            let polls = TASK_POLLS.with(Cell::get);
            if more_ready || polls != seen {
                idle_since = None;
            }
            seen = polls;
            if more_ready {
                look_at_ring(rt, &waker);
                continue;
            }
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() < poll_for {
                // SAFETY: sched_yield has no preconditions; it lets the
                // other runnable threads of this core (clients, the WAL
                // threads on a 1-core map) go first.
                unsafe { libc::sched_yield() };
                look_at_ring(rt, &waker);
            } else {
                idle_since = None;
                rt.poll();
            }
        }
    })
}

/// Submits what is queued and reaps what has completed, never waiting.
///
/// `poll_with(Some(ZERO))` alone asks the kernel for one completion with a
/// zero timeout; when none is there, `io_cqring_wait` arms an hrtimer and
/// schedules out until it fires. On this VM that cost 27 % of a busy
/// session core (`perf`: `_raw_spin_unlock_irqrestore` under
/// `io_cqring_wait`). Marking the runtime as woken first makes compio's
/// driver submit with `min_complete = 0` (its `need_wait` is false): no
/// timer, no sleep. Completions the kernel still holds as deferred task
/// work are not lost: the ring has `IORING_SETUP_TASKRUN_FLAG`, so the
/// kernel flags them in the SQ ring, and the driver then adds
/// `IORING_ENTER_GETEVENTS`, which runs that work, still without waiting.
/// (Read off compio-driver 0.12's `Driver::poll`/`submit_auto`; a compio
/// upgrade must keep both, and
/// `a_polling_runtime_sees_socket_completions_while_it_polls` guards the
/// second.)
fn look_at_ring(rt: &compio::runtime::Runtime, waker: &std::task::Waker) {
    waker.wake_by_ref();
    rt.poll_with(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_runs_a_task_and_a_cross_thread_wake() {
        let rt = network_runtime().expect("runtime");
        let (tx, rx) = crossbeam_channel::bounded::<u32>(1);
        let got = rt.block_on(async move {
            let handle = compio::runtime::spawn_blocking(move || {
                tx.send(7).unwrap();
                11
            });
            let from_pool = handle.await.unwrap_or(0);
            from_pool + rx.recv().unwrap()
        });
        assert_eq!(got, 18);
    }

    #[test]
    fn a_polling_runtime_runs_tasks_timers_and_cross_thread_wakes() {
        let rt = network_runtime().expect("runtime");
        let (tx, rx) = crossbeam_channel::bounded::<u32>(1);
        let got = block_on_polling(
            &rt,
            async move {
                // A task woken from another thread, after the poll window
                // has run out (so the runtime sleeps and must be woken).
                let from_thread = compio::runtime::spawn(counted(async move {
                    compio::runtime::spawn_blocking(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        tx.send(5).unwrap();
                    })
                    .await
                    .unwrap();
                    rx.recv().unwrap()
                }));
                compio::time::sleep(Duration::from_millis(5)).await;
                from_thread.await.unwrap_or(0) + 1
            },
            Duration::from_micros(300),
        );
        assert_eq!(got, 6);
    }
    #[test]
    fn a_polling_runtime_sees_socket_completions_while_it_polls() {
        use compio::io::{AsyncReadExt, AsyncWriteExt};
        use std::io::{Read, Write};

        // A poll window far longer than the test may take: the runtime
        // must see the accept, recv and send completions while it polls
        // (deferred task work flagged in the SQ ring), not only once the
        // window ends and it sleeps in io_uring_enter.
        const WINDOW: Duration = Duration::from_secs(30);
        let rt = network_runtime().expect("runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_listener.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            // Not synchronisation: the pause only makes the bytes arrive
            // after the runtime has armed its recv, so the recv completes
            // through deferred task work rather than inline at submission
            // (the case the poll could miss).
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(b"ping").expect("write");
            let mut back = [0u8; 4];
            s.read_exact(&mut back).expect("read");
            back
        });
        let started = Instant::now();
        let echoed = block_on_polling(
            &rt,
            async move {
                let listener = compio::net::TcpListener::from_std(std_listener).expect("listener");
                let (mut stream, _) = listener.accept().await.expect("accept");
                let compio::BufResult(res, buf) = stream.read_exact(vec![0u8; 4]).await;
                res.expect("recv");
                let compio::BufResult(res, _) = stream.write_all(buf.clone()).await;
                res.expect("send");
                buf
            },
            WINDOW,
        );
        let elapsed = started.elapsed();
        assert_eq!(echoed, b"ping");
        assert_eq!(&client.join().expect("client"), b"ping");
        assert!(
            elapsed < WINDOW / 3,
            "the echo took {elapsed:?}: completions were only seen after the poll window"
        );
    }
}
