//! The io_uring file layer: the only place in tandem with `unsafe` code.
//!
//! A [`Ring`] is one io_uring instance owned by one thread (it is `Send` but
//! not `Sync`: every call takes `&mut self`). Its helpers are synchronous:
//! they submit, wait for every completion they caused, and only then return,
//! so a buffer borrowed by a call is never touched by the kernel after the
//! call returns. That is the whole ownership story behind the `// SAFETY:`
//! comments below.
//!
//! The exception is [`DurableWriter`], the WAL flusher's queue of
//! `O_DSYNC` writes: it keeps several in flight and owns each buffer (an
//! [`AlignedBuf`], moved in at submission) until its completion is reaped,
//! in `wait` or, for writes still in flight, in `Drop`.
//!
//! Who uses it:
//! - the WAL flusher thread (`wal::flusher`): [`DurableWriter`], one
//!   O_DIRECT|O_DSYNC write per segment a group commit touches;
//! - the WAL segment preparer (`wal::segment`): zero-filling new segments;
//! - later the buffer pool: [`Ring::read_pages`] and [`Ring::write_batch`].
//!
//! Invariants:
//! - At most `entries` operations are in flight; a batch larger than the
//!   ring is run in rounds, and in a linked batch the fdatasyncs are only
//!   submitted in a round that also holds (or follows) every write, because
//!   the operations run in the order given and the syncs come last.
//! - Short reads and writes are resumed from where they stopped. In a linked
//!   chain a short write cancels the rest of the chain (`ECANCELED`); the
//!   cancelled operations are simply submitted again in the next round, so a
//!   sync never completes before every write before it has.
//! - An error comes back as an `io::Error` of the original kind whose inner
//!   error is an [`OpError`] naming the operation, fd and offset; use
//!   [`raw_os_error`] to get the errno (e.g. to tell `ENOSPC` apart).

pub mod net_runtime;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types, IoUring};

/// Default submission queue depth: enough for a group commit touching a few
/// segment files, or a batch of page reads, in one round.
pub const RING_ENTRIES_DEFAULT: u32 = 64;
/// One read or write operation moves at most this many bytes; larger buffers
/// are done in several rounds (the kernel caps a single I/O near 2 GiB).
const OP_BYTES_MAX: usize = 1 << 30;
/// Rounds in a row that make no progress (all cancelled, `EINTR`, `EAGAIN`)
/// before a call gives up with the last error.
const STALLED_ROUNDS_MAX: u32 = 64;
/// Retries of `io_uring_enter` after `EINTR`/`EAGAIN`/`EBUSY` while waiting
/// for the completions of one round.
const ENTER_RETRIES_MAX: u32 = 10_000;

/// Whether a failed `io_uring_enter` is worth repeating: interrupted, or
/// the kernel was short of resources for a moment.
fn enter_may_retry(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

/// Which operation failed, on which file, where.
#[derive(Debug)]
pub struct OpError {
    pub op: &'static str,
    pub fd: RawFd,
    pub offset: u64,
    pub source: io::Error,
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "io_uring {} on fd {} at offset {}: {}",
            self.op, self.fd, self.offset, self.source
        )
    }
}

impl std::error::Error for OpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn op_error(op: &'static str, fd: RawFd, offset: u64, source: io::Error) -> io::Error {
    io::Error::new(
        source.kind(),
        OpError {
            op,
            fd,
            offset,
            source,
        },
    )
}

/// The errno behind an error from this module (or a plain OS error).
pub fn raw_os_error(e: &io::Error) -> Option<i32> {
    if let Some(code) = e.raw_os_error() {
        return Some(code);
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<OpError>())
        .and_then(|op| op.source.raw_os_error())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Write,
    /// A write that completes only once its data is durable (RWF_DSYNC):
    /// write + fdatasync of that range in one operation.
    WriteDsync,
    Read,
    Fdatasync,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::WriteDsync => "write(RWF_DSYNC)",
            Kind::Read => "read",
            Kind::Fdatasync => "fdatasync",
        }
    }
}

/// One operation of a batch and how far it got. `ptr`/`len` describe a
/// buffer borrowed by the public method that built the op.
struct Op {
    kind: Kind,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    offset: u64,
    done_bytes: usize,
    finished: bool,
}

impl Op {
    fn write(fd: RawFd, offset: u64, buf: &[u8]) -> Op {
        Op {
            kind: Kind::Write,
            fd,
            // Never written through: the kernel only reads a write's buffer.
            ptr: buf.as_ptr().cast_mut(),
            len: buf.len(),
            offset,
            done_bytes: 0,
            finished: buf.is_empty(),
        }
    }

    fn read(fd: RawFd, offset: u64, buf: &mut [u8]) -> Op {
        Op {
            kind: Kind::Read,
            fd,
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            offset,
            done_bytes: 0,
            finished: buf.is_empty(),
        }
    }

    fn fdatasync(fd: RawFd) -> Op {
        Op {
            kind: Kind::Fdatasync,
            fd,
            ptr: std::ptr::null_mut(),
            len: 0,
            offset: 0,
            done_bytes: 0,
            finished: false,
        }
    }

    fn entry(&self, user_data: u64) -> squeue::Entry {
        let remaining = (self.len - self.done_bytes).min(OP_BYTES_MAX) as u32;
        let offset = self.offset + self.done_bytes as u64;
        let fd = types::Fd(self.fd);
        match self.kind {
            Kind::Write => {
                // SAFETY: pointer arithmetic stays inside the borrowed buffer:
                // done_bytes < len while the op is unfinished.
                let buf = unsafe { self.ptr.add(self.done_bytes) };
                opcode::Write::new(fd, buf, remaining)
                    .offset(offset)
                    .build()
            }
            Kind::Read => {
                // SAFETY: as above, done_bytes < len.
                let buf = unsafe { self.ptr.add(self.done_bytes) };
                opcode::Read::new(fd, buf, remaining).offset(offset).build()
            }
            Kind::WriteDsync => {
                // SAFETY: as for Write: the caller's buffer outlives the op.
                let buf = unsafe { self.ptr.add(self.done_bytes) };
                opcode::Write::new(fd, buf, remaining)
                    .offset(offset)
                    .rw_flags(libc::RWF_DSYNC)
                    .build()
            }
            Kind::Fdatasync => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        }
        .user_data(user_data)
    }

    /// Applies a completion. `Ok(true)` means progress was made; `Ok(false)`
    /// means the op must simply be submitted again.
    fn complete(&mut self, res: i32) -> io::Result<bool> {
        if res < 0 {
            let errno = -res;
            if errno == libc::ECANCELED || errno == libc::EINTR || errno == libc::EAGAIN {
                return Ok(false);
            }
            return Err(self.error(io::Error::from_raw_os_error(errno)));
        }
        match self.kind {
            Kind::Fdatasync => self.finished = true,
            Kind::Write | Kind::WriteDsync if res == 0 => {
                return Err(self.error(io::Error::from(io::ErrorKind::WriteZero)));
            }
            // End of file: a read stays short.
            Kind::Read if res == 0 => self.finished = true,
            Kind::Write | Kind::WriteDsync | Kind::Read => {
                self.done_bytes += res as usize;
                assert!(self.done_bytes <= self.len, "kernel moved more than asked");
                self.finished = self.done_bytes == self.len;
            }
        }
        Ok(true)
    }

    fn error(&self, source: io::Error) -> io::Error {
        op_error(
            self.kind.name(),
            self.fd,
            self.offset + self.done_bytes as u64,
            source,
        )
    }
}

/// One io_uring instance, used by one thread at a time.
pub struct Ring {
    uring: IoUring,
    entries: usize,
    /// Set when `io_uring_enter` failed in a way that may leave entries in
    /// the submission queue; the ring then refuses further work.
    broken: bool,
    /// Not `Sync`: the submission queue is single-producer.
    _not_sync: PhantomData<Cell<()>>,
}

impl Ring {
    pub fn new(entries: u32) -> io::Result<Ring> {
        let uring = IoUring::new(entries)?;
        let entries = uring.params().sq_entries() as usize;
        Ok(Ring {
            uring,
            entries,
            broken: false,
            _not_sync: PhantomData,
        })
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&mut self, fd: RawFd, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut ops = [Op::write(fd, offset, buf)];
        self.run(&mut ops, false)
    }

    /// Reads into `buf` from `offset`; returns the bytes read, fewer than
    /// `buf.len()` only at end of file.
    pub fn read_at(&mut self, fd: RawFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut ops = [Op::read(fd, offset, buf)];
        self.run(&mut ops, false)?;
        Ok(ops[0].done_bytes)
    }

    pub fn fdatasync(&mut self, fd: RawFd) -> io::Result<()> {
        let mut ops = [Op::fdatasync(fd)];
        self.run(&mut ops, false)
    }

    /// Writes every `(fd, offset, bytes)` and then fdatasyncs every fd in
    /// `sync`, all as one linked chain: one submission covers a whole group
    /// commit, and each sync runs only after every write before it succeeded.
    pub fn write_and_sync(
        &mut self,
        writes: &[(RawFd, u64, &[u8])],
        sync: &[RawFd],
    ) -> io::Result<()> {
        let mut ops: Vec<Op> = writes
            .iter()
            .map(|&(fd, offset, buf)| Op::write(fd, offset, buf))
            .chain(sync.iter().map(|&fd| Op::fdatasync(fd)))
            .collect();
        self.run(&mut ops, !sync.is_empty())
    }

    /// Writes `bytes` at `offset` durably in one operation (RWF_DSYNC:
    /// O_DSYNC semantics for this write only), so a single-file flush is one
    /// io_uring op instead of a linked write + fdatasync pair.
    pub fn write_dsync(&mut self, fd: RawFd, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut op = Op::write(fd, offset, buf);
        op.kind = Kind::WriteDsync;
        self.run(&mut [op], false)
    }

    /// Writes every `(fd, offset, bytes)`, unlinked (they may run in parallel).
    pub fn write_batch(&mut self, writes: &[(RawFd, u64, &[u8])]) -> io::Result<()> {
        let mut ops: Vec<Op> = writes
            .iter()
            .map(|&(fd, offset, buf)| Op::write(fd, offset, buf))
            .collect();
        self.run(&mut ops, false)
    }

    /// Reads every `(fd, buffer, offset)`; returns the bytes read into each,
    /// short only at end of file.
    pub fn read_batch(&mut self, reads: &mut [(RawFd, &mut [u8], u64)]) -> io::Result<Vec<usize>> {
        let mut ops: Vec<Op> = reads
            .iter_mut()
            .map(|(fd, buf, offset)| Op::read(*fd, *offset, buf))
            .collect();
        self.run(&mut ops, false)?;
        Ok(ops.iter().map(|op| op.done_bytes).collect())
    }

    /// Reads several pages of one file: `(buffer, offset)` each. Returns the
    /// bytes read into each (short only at end of file).
    pub fn read_pages(
        &mut self,
        fd: RawFd,
        pages: &mut [(&mut [u8], u64)],
    ) -> io::Result<Vec<usize>> {
        let mut ops: Vec<Op> = pages
            .iter_mut()
            .map(|(buf, offset)| Op::read(fd, *offset, buf))
            .collect();
        self.run(&mut ops, false)?;
        Ok(ops.iter().map(|op| op.done_bytes).collect())
    }

    /// Runs `ops` to completion in rounds of at most `entries` operations.
    /// With `linked`, each round is one IO_LINK chain in the given order.
    fn run(&mut self, ops: &mut [Op], linked: bool) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "io_uring ring is broken by an earlier enter failure",
            ));
        }
        let mut stalled_rounds = 0u32;
        loop {
            let round: Vec<usize> = (0..ops.len())
                .filter(|&i| !ops[i].finished)
                .take(self.entries)
                .collect();
            if round.is_empty() {
                return Ok(());
            }
            let progressed = self.run_round(ops, &round, linked)?;
            if progressed {
                stalled_rounds = 0;
            } else {
                stalled_rounds += 1;
                if stalled_rounds >= STALLED_ROUNDS_MAX {
                    let op = &ops[round[0]];
                    return Err(op.error(io::Error::other("no progress after repeated retries")));
                }
            }
        }
    }

    /// Submits the ops named by `round`, waits for all their completions,
    /// and returns whether any made progress, or the first hard error.
    fn run_round(&mut self, ops: &mut [Op], round: &[usize], linked: bool) -> io::Result<bool> {
        debug_assert!(round.len() <= self.entries);
        {
            let mut sq = self.uring.submission();
            for (n, &i) in round.iter().enumerate() {
                let mut entry = ops[i].entry(i as u64);
                if linked && n + 1 < round.len() {
                    entry = entry.flags(squeue::Flags::IO_LINK);
                }
                // SAFETY: the entry points into a buffer borrowed by the
                // public method that built `ops` for the whole call; this
                // function does not return (or aborts the process, see
                // `wait_for`) before the kernel has posted a completion for
                // every entry pushed here, so the kernel never touches the
                // buffer after the borrow ends. The queue has room: a round
                // holds at most `entries` ops and the previous round drained.
                let pushed = unsafe { sq.push(&entry) };
                assert!(pushed.is_ok(), "submission queue full in an empty ring");
            }
            sq.sync();
        }
        self.wait_for(round.len())?;
        let mut progressed = false;
        let mut first_error = None;
        let completions: Vec<(u64, i32)> = self
            .uring
            .completion()
            .map(|cqe| (cqe.user_data(), cqe.result()))
            .collect();
        assert_eq!(
            completions.len(),
            round.len(),
            "completions do not match the round"
        );
        for (user_data, res) in completions {
            let op = ops
                .get_mut(user_data as usize)
                .unwrap_or_else(|| panic!("completion for unknown op {user_data}"));
            match op.complete(res) {
                Ok(p) => progressed |= p,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(progressed),
        }
    }

    /// Submits what is queued and waits until `want` completions are in the
    /// completion queue (which holds nothing else: every round drains it).
    fn wait_for(&mut self, want: usize) -> io::Result<()> {
        let mut retries = 0u32;
        loop {
            let ready = self.uring.completion().len();
            if ready >= want {
                return Ok(());
            }
            match self.uring.submit_and_wait(want - ready) {
                Ok(_) => {}
                Err(e) if enter_may_retry(&e) && retries < ENTER_RETRIES_MAX => {
                    retries += 1;
                }
                Err(e) => {
                    let unsubmitted = self.uring.submission().len();
                    let in_flight = want - unsubmitted;
                    if in_flight > self.uring.completion().len() {
                        // Buffers borrowed by the caller are still owned by
                        // the kernel; returning would let them be freed
                        // under a running I/O. This is not recoverable.
                        eprintln!(
                            "io_uring_enter failed with {in_flight} operations in flight: {e}"
                        );
                        std::process::abort();
                    }
                    self.broken = true;
                    return Err(op_error("io_uring_enter", -1, 0, e));
                }
            }
        }
    }
}

/// Alignment of O_DIRECT buffers, file offsets and lengths: the device's
/// physical block (4 KiB here; its logical block is 512 B), so a direct
/// write never makes the device read-modify-write a block.
pub const DIRECT_ALIGN: usize = 4096;

/// Looks at `done` until it holds or `budget` has passed, yielding the core
/// between looks (the other runnable threads of this core go first). The
/// spin of every poll-before-sleeping loop outside the network runtime.
pub fn poll_until(budget: std::time::Duration, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() && started.elapsed() < budget {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// A heap buffer whose start is `DIRECT_ALIGN`-aligned and whose length is
/// a multiple of it, for O_DIRECT writes. Safe code: a `Vec` over-allocated
/// by one block, used from its first aligned byte on.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes, rounded up to `DIRECT_ALIGN`.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let len = len.next_multiple_of(DIRECT_ALIGN);
        let raw = vec![0u8; len + DIRECT_ALIGN];
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        assert!(start < DIRECT_ALIGN, "no aligned start in the allocation");
        AlignedBuf { raw, start, len }
    }

    /// Makes the buffer `len` bytes long (rounded up to `DIRECT_ALIGN`),
    /// all zeros, reusing the allocation when it is large enough.
    pub fn reset(&mut self, len: usize) {
        let len = len.next_multiple_of(DIRECT_ALIGN);
        if self.start + len > self.raw.len() {
            *self = AlignedBuf::zeroed(len);
            return;
        }
        self.len = len;
        self.as_mut_slice().fill(0);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// One write of a [`DurableWriter`] between submission and completion.
struct InFlightWrite {
    fd: RawFd,
    offset: u64,
    buf: AlignedBuf,
    done_bytes: usize,
    token: u64,
    retries: u32,
}

/// Writes to files opened `O_DSYNC` (and usually `O_DIRECT`) with several
/// in flight at once on its own io_uring: the WAL flusher's device queue.
///
/// Unlike [`Ring`] it is asynchronous: [`submit`](Self::submit) takes the
/// buffer by value and returns at once; [`wait`](Self::wait) returns each
/// buffer with its write's outcome. Short writes and `EINTR`/`EAGAIN` are
/// resubmitted here, so a completion reported `Ok` means every byte was
/// written (and, with `O_DSYNC`, is durable). The order in which writes
/// land is the kernel's: callers must not have two writes of one block in
/// flight (the WAL flusher's `InFlight` holds them apart).
pub struct DurableWriter {
    uring: IoUring,
    /// Slot `i` is user_data `i`; `None` when free.
    slots: Vec<Option<InFlightWrite>>,
    in_flight: usize,
}

impl DurableWriter {
    /// A queue for up to `depth` writes in flight.
    pub fn new(depth: usize) -> io::Result<DurableWriter> {
        assert!(depth > 0);
        let uring = IoUring::new((depth as u32).next_power_of_two())?;
        Ok(DurableWriter {
            uring,
            slots: (0..depth).map(|_| None).collect(),
            in_flight: 0,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Queues a write of all of `buf` at `offset` of `fd`, answered by
    /// `token` in [`wait`](Self::wait). The caller keeps `fd` open until
    /// then. Panics when `depth` writes are already in flight.
    pub fn submit(
        &mut self,
        fd: RawFd,
        offset: u64,
        buf: AlignedBuf,
        token: u64,
    ) -> io::Result<()> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| panic!("DurableWriter: more than {} writes", self.slots.len()));
        self.slots[slot] = Some(InFlightWrite {
            fd,
            offset,
            buf,
            done_bytes: 0,
            token,
            retries: 0,
        });
        self.in_flight += 1;
        self.push(slot);
        self.uring.submit().map(|_| ())
    }

    fn push(&mut self, slot: usize) {
        let Some(w) = self.slots[slot].as_ref() else {
            panic!("push of a free slot");
        };
        let rest = &w.buf.as_slice()[w.done_bytes..];
        let entry = opcode::Write::new(types::Fd(w.fd), rest.as_ptr(), rest.len() as u32)
            .offset(w.offset + w.done_bytes as u64)
            .build()
            .user_data(slot as u64);
        // SAFETY: the buffer is owned by `self.slots[slot]` and stays there
        // (heap memory that does not move with the Vec) until the
        // completion for `slot` is reaped in `wait`; `Drop` reaps every
        // outstanding completion (or aborts) before the buffers are freed.
        // The queue has room: at most `depth` entries are ever queued.
        let pushed = unsafe { self.uring.submission().push(&entry) };
        assert!(pushed.is_ok(), "DurableWriter: submission queue full");
    }

    /// Like [`wait`](Self::wait), but first looks at the completion queue
    /// for up to `budget`, yielding the core between looks, and only then
    /// sleeps in `io_uring_enter`. Each yield is a syscall, whose return
    /// runs the task work that posts our completions. Why a caller would
    /// want this is the caller's business (see `wal::flusher`).
    pub fn wait_polling(
        &mut self,
        budget: std::time::Duration,
    ) -> Vec<(u64, io::Result<()>, AlignedBuf)> {
        poll_until(budget, || !self.uring.completion().is_empty());
        self.wait()
    }

    /// Waits for at least one write to finish (none may be in flight is a
    /// bug) and returns `(token, outcome, buffer)` for each that did.
    pub fn wait(&mut self) -> Vec<(u64, io::Result<()>, AlignedBuf)> {
        assert!(
            self.in_flight > 0,
            "DurableWriter::wait with nothing in flight"
        );
        let mut out = Vec::new();
        while out.is_empty() {
            if let Err(e) = self.enter(1) {
                // Nothing reaped: fail every write, but keep their buffers
                // alive until the kernel is done with them (in Drop).
                return self.fail_all(e);
            }
            let completions: Vec<(u64, i32)> = self
                .uring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (slot, res) in completions {
                let slot = slot as usize;
                if let Some(done) = self.complete(slot, res) {
                    out.push(done);
                }
            }
        }
        out
    }

    /// Applies one completion; `Some` when the write is over.
    fn complete(&mut self, slot: usize, res: i32) -> Option<(u64, io::Result<()>, AlignedBuf)> {
        let w = self.slots.get_mut(slot).and_then(Option::as_mut);
        let w = w.unwrap_or_else(|| panic!("completion for free slot {slot}"));
        let retry = match res {
            r if r < 0 && matches!(-r, libc::EINTR | libc::EAGAIN) => true,
            r if r < 0 => false,
            0 => false,
            n => {
                w.done_bytes += n as usize;
                assert!(w.done_bytes <= w.buf.len(), "kernel wrote more than asked");
                w.done_bytes < w.buf.len()
            }
        };
        if retry && w.retries < STALLED_ROUNDS_MAX {
            w.retries += 1;
            // Queued only: the next `enter` (this `wait` loop's, or the
            // next `submit`) hands it to the kernel.
            self.push(slot);
            return None;
        }
        let w = self.slots[slot].take()?;
        self.in_flight -= 1;
        let outcome = if res < 0 {
            Err(op_error(
                "write(O_DSYNC)",
                w.fd,
                w.offset + w.done_bytes as u64,
                io::Error::from_raw_os_error(-res),
            ))
        } else if w.done_bytes < w.buf.len() {
            Err(op_error(
                "write(O_DSYNC)",
                w.fd,
                w.offset + w.done_bytes as u64,
                io::Error::from(io::ErrorKind::WriteZero),
            ))
        } else {
            Ok(())
        };
        Some((w.token, outcome, w.buf))
    }

    fn enter(&mut self, want: usize) -> io::Result<()> {
        let mut retries = 0u32;
        loop {
            if self.uring.completion().len() >= want {
                return Ok(());
            }
            match self.uring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if enter_may_retry(&e) && retries < ENTER_RETRIES_MAX => {
                    retries += 1;
                }
                Err(e) => return Err(op_error("io_uring_enter", -1, 0, e)),
            }
        }
    }

    /// After `io_uring_enter` failed: reports every write failed. Their
    /// buffers stay in their slots (the kernel may still own them) and are
    /// released by `Drop`; the caller gets empty buffers back.
    fn fail_all(&mut self, e: io::Error) -> Vec<(u64, io::Result<()>, AlignedBuf)> {
        let kind = e.kind();
        let text = e.to_string();
        self.slots
            .iter()
            .flatten()
            .map(|w| {
                (
                    w.token,
                    Err(io::Error::new(kind, text.clone())),
                    AlignedBuf::zeroed(0),
                )
            })
            .collect()
    }
}

impl Drop for DurableWriter {
    fn drop(&mut self) {
        // The kernel may still read buffers of writes in flight: reap them
        // all before the slots (and buffers) are freed.
        while self.slots.iter().any(Option::is_some) {
            if self.enter(1).is_err() {
                eprintln!("DurableWriter dropped with writes in flight and a failing ring");
                std::process::abort();
            }
            let completions: Vec<u64> = self.uring.completion().map(|c| c.user_data()).collect();
            for slot in completions {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = None;
                }
            }
        }
    }
}

/// Allocates disk space for `[0, len)` of `fd` (fallocate mode 0): a full
/// disk shows up here, not when the space is written later. Returns the
/// errno, 0 on success.
pub fn fallocate(fd: RawFd, len: i64) -> i32 {
    // SAFETY: fallocate takes no buffers; `fd` is an open file the caller owns.
    let rc = unsafe { libc::fallocate(fd, 0, 0, len) };
    if rc == 0 {
        0
    } else {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }
}

/// Takes an exclusive, non-blocking `flock` on `fd`; false if another
/// process holds it. Released when the file is closed (process exit).
pub fn try_lock_exclusive(fd: RawFd) -> bool {
    // SAFETY: flock takes no buffers; `fd` is an open file the caller owns.
    unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Sends signal `sig` to the single process `pid` (kill(2)); `tandemctl`
/// uses it to stop a node immediately. Refuses pid 0 and pids that do not
/// fit a `pid_t`, which kill(2) would take as process groups.
pub fn signal_process(pid: u32, sig: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes no buffers; `pid` is positive, so one process.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How long [`bind_listener`] retries an address still held.
const BIND_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// Binds a TCP listener, retrying for a few seconds while the address is
/// in use. A node killed with SIGKILL can hold its listening sockets a
/// little after its process is reaped: accepts still queued on its
/// io_uring keep them open until the kernel tears the ring down
/// asynchronously. A restart on the same port then waits for that instead
/// of failing; a port that stays taken (another process) still fails,
/// with the kernel's error.
pub fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let deadline = std::time::Instant::now() + BIND_RETRY_FOR;
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::os::fd::AsRawFd;

    fn temp_file(dir: &tempfile::TempDir, name: &str) -> std::fs::File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join(name))
            .unwrap()
    }

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "a");
        let mut ring = Ring::new(8).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        ring.write_all_at(f.as_raw_fd(), &data, 100).unwrap();
        ring.fdatasync(f.as_raw_fd()).unwrap();
        let mut back = vec![0u8; 20_000];
        assert_eq!(ring.read_at(f.as_raw_fd(), &mut back, 100).unwrap(), 20_000);
        assert_eq!(back, data);
    }

    #[test]
    fn read_is_short_at_end_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "a");
        let mut ring = Ring::new(8).unwrap();
        ring.write_all_at(f.as_raw_fd(), &[7u8; 1000], 0).unwrap();
        let mut back = vec![0u8; 4096];
        assert_eq!(ring.read_at(f.as_raw_fd(), &mut back, 500).unwrap(), 500);
        assert!(back[..500].iter().all(|&b| b == 7));
        assert_eq!(ring.read_at(f.as_raw_fd(), &mut back, 5000).unwrap(), 0);
    }

    #[test]
    fn write_and_sync_spans_files_and_more_ops_than_the_ring_holds() {
        let dir = tempfile::tempdir().unwrap();
        let a = temp_file(&dir, "a");
        let b = temp_file(&dir, "b");
        let mut ring = Ring::new(4).unwrap();
        let chunks: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 3000]).collect();
        let writes: Vec<(RawFd, u64, &[u8])> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let fd = if i % 2 == 0 {
                    a.as_raw_fd()
                } else {
                    b.as_raw_fd()
                };
                (fd, (i / 2 * 3000) as u64, c.as_slice())
            })
            .collect();
        ring.write_and_sync(&writes, &[a.as_raw_fd(), b.as_raw_fd()])
            .unwrap();
        for (i, c) in chunks.iter().enumerate() {
            let fd = if i % 2 == 0 {
                a.as_raw_fd()
            } else {
                b.as_raw_fd()
            };
            let mut back = vec![0u8; 3000];
            ring.read_at(fd, &mut back, (i / 2 * 3000) as u64).unwrap();
            assert_eq!(&back, c);
        }
    }

    #[test]
    fn batches_of_pages() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "pages");
        let fd = f.as_raw_fd();
        let mut ring = Ring::new(2).unwrap();
        let pages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i + 1; 8192]).collect();
        let writes: Vec<(RawFd, u64, &[u8])> = pages
            .iter()
            .enumerate()
            .map(|(i, p)| (fd, (i * 8192) as u64, p.as_slice()))
            .collect();
        ring.write_batch(&writes).unwrap();
        let mut bufs = vec![vec![0u8; 8192]; 6];
        let mut reads: Vec<(&mut [u8], u64)> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| (b.as_mut_slice(), (i * 8192) as u64))
            .collect();
        let lens = ring.read_pages(fd, &mut reads).unwrap();
        assert_eq!(lens, vec![8192, 8192, 8192, 8192, 8192, 0]);
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(&bufs[i], p);
        }
    }

    #[test]
    fn durable_writer_keeps_several_in_flight_and_reports_each() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "w");
        let fd = f.as_raw_fd();
        let mut w = DurableWriter::new(3).unwrap();
        for i in 0..3u8 {
            let mut buf = AlignedBuf::zeroed(100);
            assert_eq!(buf.len(), DIRECT_ALIGN);
            buf.as_mut_slice().fill(i + 1);
            w.submit(
                fd,
                u64::from(i) * DIRECT_ALIGN as u64,
                buf,
                u64::from(i) + 10,
            )
            .unwrap();
        }
        let mut tokens = Vec::new();
        while w.in_flight() > 0 {
            for (token, outcome, buf) in w.wait() {
                outcome.unwrap();
                assert_eq!(buf.len(), DIRECT_ALIGN);
                tokens.push(token);
            }
        }
        tokens.sort();
        assert_eq!(tokens, vec![10, 11, 12]);
        let mut back = vec![0u8; 3 * DIRECT_ALIGN];
        ring_read(fd, &mut back);
        for i in 0..3 {
            assert!(back[i * DIRECT_ALIGN..(i + 1) * DIRECT_ALIGN]
                .iter()
                .all(|&b| b == i as u8 + 1));
        }
        // A failed write comes back as an error naming the operation.
        w.submit(-1, 0, AlignedBuf::zeroed(1), 7).unwrap();
        let done = w.wait();
        let (token, outcome, _) = &done[0];
        assert_eq!(*token, 7);
        let err = outcome.as_ref().unwrap_err();
        assert_eq!(raw_os_error(err), Some(libc::EBADF));
        assert!(err.to_string().contains("O_DSYNC"), "{err}");
    }

    #[test]
    fn polling_wait_reports_what_the_sleeping_wait_reports() {
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "p");
        let fd = f.as_raw_fd();
        let mut w = DurableWriter::new(2).unwrap();
        // A budget far beyond one write: polling finds the completions; a
        // zero budget goes straight to the sleeping wait.
        for budget in [std::time::Duration::from_secs(1), std::time::Duration::ZERO] {
            for i in 0..2u8 {
                let mut buf = AlignedBuf::zeroed(DIRECT_ALIGN);
                buf.as_mut_slice().fill(0xA0 + i);
                let offset = u64::from(i) * DIRECT_ALIGN as u64;
                w.submit(fd, offset, buf, u64::from(i)).unwrap();
            }
            let mut tokens = Vec::new();
            while w.in_flight() > 0 {
                for (token, outcome, _) in w.wait_polling(budget) {
                    outcome.unwrap();
                    tokens.push(token);
                }
            }
            tokens.sort();
            assert_eq!(tokens, vec![0, 1], "budget {budget:?}");
        }
        let mut back = vec![0u8; 2 * DIRECT_ALIGN];
        ring_read(fd, &mut back);
        assert!(back[..DIRECT_ALIGN].iter().all(|&b| b == 0xA0));
        assert!(back[DIRECT_ALIGN..].iter().all(|&b| b == 0xA1));
        // An error found by polling is the error, not a lost completion.
        w.submit(-1, 0, AlignedBuf::zeroed(1), 9).unwrap();
        let done = w.wait_polling(std::time::Duration::from_secs(1));
        assert_eq!(done[0].0, 9);
        assert_eq!(
            raw_os_error(done[0].1.as_ref().unwrap_err()),
            Some(libc::EBADF)
        );
    }

    fn ring_read(fd: RawFd, buf: &mut [u8]) {
        let mut ring = Ring::new(4).unwrap();
        assert_eq!(ring.read_at(fd, buf, 0).unwrap(), buf.len());
    }

    #[test]
    fn errors_name_the_operation_and_keep_the_errno() {
        let mut ring = Ring::new(4).unwrap();
        let err = ring.write_all_at(-1, b"x", 42).unwrap_err();
        assert_eq!(raw_os_error(&err), Some(libc::EBADF));
        let text = err.to_string();
        assert!(text.contains("write") && text.contains("42"), "{text}");
        let err = ring.fdatasync(-1).unwrap_err();
        assert!(err.to_string().contains("fdatasync"), "{err}");
        // The ring stays usable after an operation error.
        let dir = tempfile::tempdir().unwrap();
        let f = temp_file(&dir, "a");
        ring.write_all_at(f.as_raw_fd(), b"ok", 0).unwrap();
    }
}
