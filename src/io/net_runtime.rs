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

use std::sync::atomic::{AtomicBool, Ordering};

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// A compio runtime for the calling thread, with deferred task work when
/// the kernel has it.
pub fn network_runtime() -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor.single_issuer(true).defer_taskrun(true);
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
}
