//! One RESP connection on the current thread's compio runtime.
//!
//! Owns the socket, the outgoing buffer (commands queued with `queue` go out in one
//! write on `flush`, which is how pipelining and MULTI/EXEC batches are sent) and
//! the incoming buffer the `resp` decoder reads from. Every wait has a deadline so a
//! silent server cannot hang a client: `connect` and each read are bounded.
//!
//! Called by `cluster.rs` (finding the primary), `run.rs` (one per client task),
//! `init.rs` and `check.rs`. Not `Send`: it lives on the runtime thread that made it.

use std::io;
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;

use crate::resp::{self, ProtocolError, Value};

/// Bytes asked of the kernel per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection became unusable. Every variant means: drop it, reconnect.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("I/O error with {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("no reply from {addr} before the deadline")]
    ReadTimeout { addr: String },
    #[error("bad reply from {addr}: {source}")]
    Protocol { addr: String, source: ProtocolError },
}

pub struct Conn {
    addr: String,
    stream: TcpStream,
    /// Commands queued but not yet written.
    out: Vec<u8>,
    /// Bytes read but not yet decoded start at `in_pos`.
    input: Vec<u8>,
    in_pos: usize,
    /// Buffer handed to the kernel for each read (owned-buffer I/O).
    chunk: Vec<u8>,
}

impl Conn {
    /// Connects to `addr` ("host:port"), bounded by `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Conn, ConnError> {
        let connecting = TcpStream::connect(addr.to_string());
        let stream = match compio::time::timeout(timeout, connecting).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(ConnError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => {
                return Err(ConnError::ConnectTimeout {
                    addr: addr.to_string(),
                    timeout,
                })
            }
        };
        // Latency, not bandwidth, is measured: never let Nagle hold a command back.
        stream.set_nodelay(true).map_err(|source| ConnError::Io {
            addr: addr.to_string(),
            source,
        })?;
        Ok(Conn {
            addr: addr.to_string(),
            stream,
            out: Vec::with_capacity(4096),
            input: Vec::with_capacity(READ_CHUNK_BYTES),
            in_pos: 0,
            chunk: Vec::with_capacity(READ_CHUNK_BYTES),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Queues one command; nothing is sent before `flush`.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.out, args);
    }

    /// Queues bytes that are already RESP-encoded commands.
    pub fn queue_encoded(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let BufResult(res, mut out) = self.stream.write_all(out).await;
        out.clear();
        self.out = out;
        res.map_err(|source| ConnError::Io {
            addr: self.addr.clone(),
            source,
        })
    }

    /// Reads the next reply, waiting at most until `deadline`.
    pub async fn read_reply(&mut self, deadline: Instant) -> Result<Value, ConnError> {
        loop {
            let pending = &self.input[self.in_pos..];
            match resp::decode(pending) {
                Ok(Some((value, used))) => {
                    self.in_pos += used;
                    if self.in_pos == self.input.len() {
                        self.input.clear();
                        self.in_pos = 0;
                    }
                    return Ok(value);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(ConnError::Protocol {
                        addr: self.addr.clone(),
                        source,
                    })
                }
            }
            self.fill(deadline).await?;
        }
    }

    /// Sends one command and reads its reply.
    pub async fn call<A: AsRef<[u8]>>(
        &mut self,
        args: &[A],
        timeout: Duration,
    ) -> Result<Value, ConnError> {
        self.queue(args);
        self.flush().await?;
        self.read_reply(Instant::now() + timeout).await
    }

    async fn fill(&mut self, deadline: Instant) -> Result<(), ConnError> {
        if self.in_pos > 0 {
            self.input.drain(..self.in_pos);
            self.in_pos = 0;
        }
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.clear();
        let wait = deadline.saturating_duration_since(Instant::now());
        let read = self.stream.read(chunk);
        let BufResult(res, chunk) = match compio::time::timeout(wait, read).await {
            Ok(r) => r,
            Err(_) => {
                self.chunk = Vec::with_capacity(READ_CHUNK_BYTES);
                return Err(ConnError::ReadTimeout {
                    addr: self.addr.clone(),
                });
            }
        };
        let n = res.map_err(|source| ConnError::Io {
            addr: self.addr.clone(),
            source,
        })?;
        if n == 0 {
            self.chunk = chunk;
            return Err(ConnError::Closed {
                addr: self.addr.clone(),
            });
        }
        self.input
            .extend_from_slice(chunk.get(..n).unwrap_or(&chunk[..]));
        self.chunk = chunk;
        Ok(())
    }
}
