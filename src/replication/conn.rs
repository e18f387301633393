//! A replication connection: typed messages over framed, checksummed TCP
//! (compio, io_uring), and the handshake both sides run.
//!
//! Handshake (DESIGN.md section 3):
//! ```text
//! standby                                   primary
//!   Hello{version, system_id, tli, start, name, purpose}  ->
//!                      <-  Challenge{nonce, system_id, tli, flushed}
//!   AuthResponse{HMAC(secret, nonce|system_id|name)}      ->
//!                      <-  AuthOk{primary_name} | Refuse{code, message}
//! ```
//! The secret never crosses the wire. Any frame error, unexpected message
//! or refusal ends the connection with a log line on both sides.

use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;

use super::auth;
use super::frame::{FrameDecoder, FrameError, Message, Purpose, RefuseCode, FORMAT_VERSION};
use crate::ids::{Lsn, SystemId, TimelineId};

/// Bytes read from the socket at a time.
const READ_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("bad frame from peer: {0}")]
    Frame(#[from] FrameError),
    #[error("peer refused: {code:?}: {message}")]
    Refused { code: RefuseCode, message: String },
    #[error("unexpected message from peer: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

/// Receiving side of a connection.
pub struct FrameReader {
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    at: usize,
}

impl FrameReader {
    pub fn new(stream: TcpStream) -> FrameReader {
        FrameReader {
            stream,
            decoder: FrameDecoder::new(),
            buf: Vec::new(),
            at: 0,
        }
    }

    /// The next message; a `Refuse` from the peer becomes `Err(Refused)`.
    pub async fn recv(&mut self) -> Result<Message, ConnError> {
        loop {
            while self.at < self.buf.len() {
                let (used, frame) = self.decoder.feed(&self.buf[self.at..])?;
                self.at += used;
                if let Some(frame) = frame {
                    return match frame.into_message()? {
                        Message::Refuse { code, message } => {
                            Err(ConnError::Refused { code, message })
                        }
                        m => Ok(m),
                    };
                }
            }
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            buf.reserve(READ_BYTES);
            let compio::BufResult(res, buf) = self.stream.read(buf).await;
            self.buf = buf;
            self.at = 0;
            if res? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }
}

/// Sending side of a connection.
pub struct FrameWriter {
    stream: TcpStream,
    out: Vec<u8>,
}

impl FrameWriter {
    pub fn new(stream: TcpStream) -> FrameWriter {
        FrameWriter {
            stream,
            out: Vec::new(),
        }
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), ConnError> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        m.encode(&mut out);
        let compio::BufResult(res, out) = self.stream.write_all(out).await;
        self.out = out;
        res?;
        Ok(())
    }

    /// Sends a refusal and gives up on the connection.
    pub async fn refuse(&mut self, code: RefuseCode, message: String) {
        let _ = self.send(&Message::Refuse { code, message }).await;
    }
}

/// Splits a stream into its reading and writing halves.
pub fn split(stream: TcpStream) -> (FrameReader, FrameWriter) {
    let (r, w) = stream.into_split();
    (FrameReader::new(r), FrameWriter::new(w))
}

pub fn unexpected(expected: &'static str, got: &Message) -> ConnError {
    ConnError::Unexpected {
        expected,
        got: format!("{:?}", got.kind()),
    }
}

/// What a standby (or a build client) learns from a successful handshake.
pub struct Upstream {
    pub system_id: SystemId,
    pub timeline: TimelineId,
    pub primary_name: String,
    pub client_addr: String,
    /// The upstream's flushed LSN when it answered (its durable end).
    pub flushed: Lsn,
}

/// The standby's half of the handshake: Hello, answer the challenge with
/// the HMAC of the secret, expect AuthOk. With `ours` set (streaming), an
/// upstream of another cluster is refused before any secret-derived byte
/// is sent.
pub async fn handshake_as_standby(
    r: &mut FrameReader,
    w: &mut FrameWriter,
    secret: &[u8],
    name: &str,
    ours: Option<(SystemId, TimelineId)>,
    start_lsn: Lsn,
    purpose: Purpose,
) -> Result<Upstream, ConnError> {
    let (system_id, timeline) = ours.unwrap_or((SystemId(0), TimelineId(0)));
    w.send(&Message::Hello {
        protocol_version: FORMAT_VERSION,
        system_id,
        timeline,
        start_lsn,
        name: name.to_string(),
        purpose,
    })
    .await?;
    let challenge = r.recv().await?;
    let Message::Challenge {
        nonce,
        system_id: theirs,
        timeline: their_tli,
        flushed,
        ..
    } = challenge
    else {
        return Err(unexpected("Challenge", &challenge));
    };
    if let Some((ours, _)) = ours {
        if theirs != ours {
            let message =
                format!("upstream belongs to another cluster (system id {theirs}, ours {ours})");
            return Err(ConnError::Refused {
                code: RefuseCode::SystemIdMismatch,
                message,
            });
        }
    }
    w.send(&Message::AuthResponse {
        mac: auth::respond(secret, &nonce, theirs, name),
    })
    .await?;
    let ok = r.recv().await?;
    let Message::AuthOk {
        primary_name,
        client_addr,
    } = ok
    else {
        return Err(unexpected("AuthOk", &ok));
    };
    Ok(Upstream {
        system_id: theirs,
        timeline: their_tli,
        primary_name,
        client_addr,
        flushed,
    })
}
