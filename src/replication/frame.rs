//! Wire format of the replication port: frames and the typed messages
//! they carry. Pure logic, no I/O.
//!
//! Owns: the frame header, the incremental [`FrameDecoder`] that cuts a
//! byte stream into checked frames, and [`Message`] encode/decode. Called
//! by the WAL sender (primary) and WAL receiver / build client (standby)
//! loops, which do the socket I/O and feed received bytes in here.
//!
//! Invariants:
//! - nothing reaches [`Message::decode`] unless its magic, kind, flags,
//!   length and CRC32C checked out; a peer that fails any check is a
//!   protocol fault (disconnect with a log line, DESIGN.md section 3);
//! - the decoder holds at most one frame (`FRAME_HEADER_BYTES +
//!   FRAME_PAYLOAD_BYTES_MAX` bytes) and its memory grows only with bytes
//!   actually received, never with a length field's claim; a length above
//!   the maximum is refused as soon as the 12 header bytes are in;
//! - decoded values are validated (booleans are 0 or 1, names are
//!   [`name_is_valid`], LSN stages are ordered, lengths exact), so a message
//!   that decodes is one our own encoder could have produced.
//!
//! ```text
//! frame, little-endian (FORMAT_VERSION 3: version 2 added `receipt` to
//! WalData, version 3 the SyncRule frame and StandbyStatus.estimated_rto_ms)
//!  0    2    3    4            8            12
//!  +----+----+----+------------+------------+-----------...
//!  | TR |kind|flag| payload_len| crc32c     | payload
//!  +----+----+----+------------+------------+-----------...
//!  magic       2 bytes  'T' 'R' (0x54 0x52)
//!  kind        u8       MessageKind
//!  flags       u8       0 (reserved; anything else is refused)
//!  payload_len u32      <= FRAME_PAYLOAD_BYTES_MAX
//!  crc32c      u32      CRC32C of bytes [2, 8) ++ payload
//!                       (kind, flags, payload_len, payload)
//!
//! payloads (kind: fields in order; all integers little-endian;
//!           "rest" = up to the end of the payload, its length is
//!           payload_len minus the fixed fields; bool = u8 0 or 1)
//!   1 Hello          protocol_version u32 | system_id u64 | timeline u32 |
//!                    start_lsn u64 | purpose u8 (1 Stream, 2 Build, 3 Probe) |
//!                    name_len u8 | name (1..=64 bytes, see name_is_valid)
//!                    = 26 + name_len bytes                   standby -> primary
//!   2 Challenge      nonce [32] | system_id u64 | timeline u32 |
//!                    flushed u64                  = 52 bytes primary -> standby
//!   3 AuthResponse   mac [32] (HMAC-SHA256, see auth.rs)
//!                                                 = 32 bytes standby -> primary
//!   4 AuthOk         name_len u8 | primary_name | addr_len u8 | client_addr
//!                                                 = 2 + n + m  primary -> standby
//!                  client_addr: the primary's RESP address (READONLY replies name it)
//!   5 Refuse         code u8 (RefuseCode) | message_len u16 |
//!                    message (UTF-8, <= 1024 bytes) = 3 + n  either way
//!   6 PeerStatus     role u8 (PeerRole) | flushed u64 | history (rest: a
//!                    timeline history file, see timeline.rs)
//!                                      = 9 + n  answer to a Probe, then close
//!  16 WalData        start u64 | end_of_flushed u64 | receipt bool |
//!                    bytes (rest, <= WAL_DATA_BYTES_MAX); end_of_flushed =
//!                    the sender's durable end: the bytes may run past it
//!                    (shipped while the primary's own flush runs), the
//!                    standby applies nothing past it; receipt = a commit
//!                    waits for remote_receive or remote_write: answer this
//!                    frame with a status at once (else the status after the
//!                    flush answers it)
//!                                                 = 17 + n   primary -> standby
//!  17 StandbyStatus  received u64 | written u64 | flushed u64 | applied u64 |
//!                    time_us u64 | reply_requested bool | estimated_rto_ms u32
//!                    (received >= written >= flushed >= applied;
//!                    estimated_rto_ms: how long the standby's redo needs for
//!                    what it received and has not applied, see
//!                    replication::rto)
//!                                                 = 45 bytes standby -> primary
//!  18 Keepalive      flushed u64 | time_us u64 | reply_requested bool
//!                                                 = 17 bytes primary -> standby
//!  19 TimelineSwitch history (rest: the primary's timeline history file,
//!                    see timeline.rs; sent after AuthOk to a standby on
//!                    an older timeline, or after BuildStart on timeline > 1)
//!                                                 = n bytes  primary -> standby
//!  20 SyncRule       level u8 (synchronous_commit: 0 off, 1 local,
//!                    2 remote_receive, 3 remote_write, 4 on, 5 remote_apply) |
//!                    most_available_sync bool | timeout_ms u64 |
//!                    origin u8 (1 config_file, 2 config_set) |
//!                    origin_at_ms u64 | origin_node (name_len u8 | name) |
//!                    names (rest: synchronous_standby_names in canonical
//!                    form, UTF-8, <= NAMES_TEXT_BYTES_MAX, must parse)
//!                                   = 20 + n + m   primary -> standby
//!                  the primary's synchronous-commit rule, sent when a stream
//!                  starts and whenever it changes (see sync_rule_file.rs)
//!  32 BuildStart     system_id u64 | timeline u32 | redo_lsn u64 |
//!                    redo_prev u64 | segment_bytes u64 (power of two) |
//!                    page_count u32 (redo_prev <= redo_lsn)
//!                                                 = 40 bytes primary -> builder
//!  33 BuildPages     first_page u32 | pages (rest: n * 8192, n >= 1,
//!                    first_page + n <= 2^32)      = 4 + n*8192
//!  34 BuildWal       start u64 | bytes (rest, <= WAL_DATA_BYTES_MAX)
//!                                                 = 8 + n
//!  35 BuildEnd       end_lsn u64 | end_prev u64 (end_prev <= end_lsn)
//!                                                 = 16 bytes
//! ```
//!
//! `FORMAT_VERSION` is what `Hello.protocol_version` carries; the primary
//! refuses (`RefuseCode::Protocol`) a version it does not speak. Kinds are
//! grouped: 1..=15 handshake, 16..=31 streaming, 32..=47 build.

use super::sync_commit::{StandbyNames, SyncLevel, SyncRule, NAMES_TEXT_BYTES_MAX};
use super::sync_rule_file::{OriginKind, RuleOrigin};
use super::timeline::TimelineHistory;
use crate::ids::{Lsn, SystemId, TimelineId};
use crate::page::PAGE_BYTES;

/// Version of this wire format, sent in `Hello.protocol_version`.
pub const FORMAT_VERSION: u32 = 3;
pub const MAGIC: [u8; 2] = *b"TR";
pub const FRAME_HEADER_BYTES: usize = 12;
/// Most WAL bytes one `WalData` or `BuildWal` carries. 4 MiB: a full WAL
/// flusher batch under load fits in one frame (the sender cuts larger
/// spans at record boundaries).
pub const WAL_DATA_BYTES_MAX: usize = 4 << 20;
/// Largest payload: a `WAL_DATA_BYTES_MAX` batch plus its 16 header bytes,
/// or 512 pages of a build chunk plus 4, with room to spare. Also bounds
/// what one connection can make the decoder hold.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = WAL_DATA_BYTES_MAX + 4096;
/// Longest standby or primary name (`Hello.name`, `AuthOk.primary_name`).
pub const NAME_BYTES_MAX: usize = 64;
/// Longest `Refuse.message`; [`Message::encode`] cuts longer ones.
pub const REFUSE_MESSAGE_BYTES_MAX: usize = 1024;
/// Most pages in one `BuildPages` frame.
pub const BUILD_PAGES_PER_FRAME_MAX: usize = (FRAME_PAYLOAD_BYTES_MAX - 4) / PAGE_BYTES;

const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(WAL_DATA_BYTES_MAX + 17 <= FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(BUILD_PAGES_PER_FRAME_MAX >= 64);
const _: () = assert!(REFUSE_MESSAGE_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(NAME_BYTES_MAX <= u8::MAX as usize);

/// Frame kinds; the numbers are the `kind` byte on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    Hello = 1,
    Challenge = 2,
    AuthResponse = 3,
    AuthOk = 4,
    Refuse = 5,
    PeerStatus = 6,
    WalData = 16,
    StandbyStatus = 17,
    Keepalive = 18,
    TimelineSwitch = 19,
    SyncRule = 20,
    BuildStart = 32,
    BuildPages = 33,
    BuildWal = 34,
    BuildEnd = 35,
}

impl MessageKind {
    pub fn from_u8(v: u8) -> Option<MessageKind> {
        Some(match v {
            1 => MessageKind::Hello,
            2 => MessageKind::Challenge,
            3 => MessageKind::AuthResponse,
            4 => MessageKind::AuthOk,
            5 => MessageKind::Refuse,
            6 => MessageKind::PeerStatus,
            16 => MessageKind::WalData,
            17 => MessageKind::StandbyStatus,
            18 => MessageKind::Keepalive,
            19 => MessageKind::TimelineSwitch,
            20 => MessageKind::SyncRule,
            32 => MessageKind::BuildStart,
            33 => MessageKind::BuildPages,
            34 => MessageKind::BuildWal,
            35 => MessageKind::BuildEnd,
            _ => return None,
        })
    }
}

/// What a standby's connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Purpose {
    /// Follow the WAL stream from `start_lsn`.
    Stream = 1,
    /// Receive a full build (pages, then WAL to consistency).
    Build = 2,
    /// Ask for the node's role, timeline and history (`PeerStatus`): a
    /// pending node asking its peers whether a newer timeline exists.
    Probe = 3,
}

impl Purpose {
    fn from_u8(v: u8) -> Option<Purpose> {
        match v {
            1 => Some(Purpose::Stream),
            2 => Some(Purpose::Build),
            3 => Some(Purpose::Probe),
            _ => None,
        }
    }
}

/// Why a peer ends the conversation. Sent in `Refuse`, then the sender
/// closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RefuseCode {
    SystemIdMismatch = 1,
    AuthFailed = 2,
    /// The requested start LSN is no longer retained (or the standby has
    /// diverged): it needs a build.
    NeedsBuild = 3,
    TimelineMismatch = 4,
    /// Bad frame, unexpected message, unsupported protocol version.
    Protocol = 5,
    ShuttingDown = 6,
    TooManyStandbys = 7,
    /// The node is pending or needs a build itself: it serves no WAL.
    NotReady = 8,
}

/// What a node is, as `PeerStatus` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PeerRole {
    Primary = 1,
    Standby = 2,
    /// Restarted primary waiting for a peer to confirm its role.
    Pending = 3,
    NeedsBuild = 4,
}

impl PeerRole {
    fn from_u8(v: u8) -> Option<PeerRole> {
        Some(match v {
            1 => PeerRole::Primary,
            2 => PeerRole::Standby,
            3 => PeerRole::Pending,
            4 => PeerRole::NeedsBuild,
            _ => return None,
        })
    }
}

impl RefuseCode {
    fn from_u8(v: u8) -> Option<RefuseCode> {
        Some(match v {
            1 => RefuseCode::SystemIdMismatch,
            2 => RefuseCode::AuthFailed,
            3 => RefuseCode::NeedsBuild,
            4 => RefuseCode::TimelineMismatch,
            5 => RefuseCode::Protocol,
            6 => RefuseCode::ShuttingDown,
            7 => RefuseCode::TooManyStandbys,
            8 => RefuseCode::NotReady,
            _ => return None,
        })
    }
}

/// A typed replication message. Which side sends which is in the module
/// doc; the connection state machines enforce it, not this codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Hello {
        protocol_version: u32,
        system_id: SystemId,
        timeline: TimelineId,
        start_lsn: Lsn,
        name: String,
        purpose: Purpose,
    },
    Challenge {
        nonce: [u8; 32],
        system_id: SystemId,
        timeline: TimelineId,
        flushed: Lsn,
    },
    AuthResponse {
        mac: [u8; 32],
    },
    AuthOk {
        primary_name: String,
        client_addr: String,
    },
    Refuse {
        code: RefuseCode,
        message: String,
    },
    /// Whole WAL records starting at `start`; those past `end_of_flushed`
    /// are not yet durable on the primary (the standby must not apply them).
    /// `receipt`: acknowledge receipt at once (a commit waits for it).
    WalData {
        start: Lsn,
        end_of_flushed: Lsn,
        receipt: bool,
        bytes: Vec<u8>,
    },
    StandbyStatus {
        received: Lsn,
        written: Lsn,
        flushed: Lsn,
        applied: Lsn,
        time_us: u64,
        reply_requested: bool,
        estimated_rto_ms: u32,
    },
    Keepalive {
        flushed: Lsn,
        time_us: u64,
        reply_requested: bool,
    },
    /// The primary's timeline history: the standby adopts it when its own
    /// timeline ended at or after the end of its WAL, else it needs a build.
    TimelineSwitch {
        history: TimelineHistory,
    },
    PeerStatus {
        role: PeerRole,
        flushed: Lsn,
        history: TimelineHistory,
    },
    /// The sender's synchronous-commit rule and where it came from.
    SyncRule {
        rule: SyncRule,
        origin: RuleOrigin,
    },
    BuildStart {
        system_id: SystemId,
        timeline: TimelineId,
        redo_lsn: Lsn,
        redo_prev: Lsn,
        segment_bytes: u64,
        page_count: u32,
    },
    /// `pages.len() / PAGE_BYTES` whole pages, numbered from `first_page`.
    BuildPages {
        first_page: u32,
        pages: Vec<u8>,
    },
    BuildWal {
        start: Lsn,
        bytes: Vec<u8>,
    },
    BuildEnd {
        end_lsn: Lsn,
        end_prev: Lsn,
    },
}

/// A frame that passed every header and checksum check. Its payload is
/// not yet interpreted: see [`Message::decode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: MessageKind,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn into_message(self) -> Result<Message, FrameError> {
        Message::decode(self.kind, &self.payload)
    }
}

/// Why bytes from a peer are not a valid frame or message. Every variant
/// is a protocol fault: the caller logs it and disconnects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {found:02x?}, expected \"TR\"")]
    BadMagic { found: [u8; 2] },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("unknown flags {flags:#04x} on a {kind:?} frame")]
    UnknownFlags { kind: MessageKind, flags: u8 },
    #[error("frame payload of {len} bytes exceeds the maximum {max}")]
    TooLong { len: u32, max: u32 },
    #[error("{kind:?} frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        kind: MessageKind,
        stored: u32,
        computed: u32,
    },
    #[error("{kind:?} payload of {len} bytes is malformed (needs {needed})")]
    BadLength {
        kind: MessageKind,
        len: usize,
        needed: usize,
    },
    #[error("{kind:?} field {field}: {reason}")]
    BadField {
        kind: MessageKind,
        field: &'static str,
        reason: &'static str,
    },
    #[error(
        "standby status out of order: received {received} >= written {written} >= \
         flushed {flushed} >= applied {applied} does not hold"
    )]
    StatusOrder {
        received: Lsn,
        written: Lsn,
        flushed: Lsn,
        applied: Lsn,
    },
}

/// The `level` byte of a `SyncRule` frame: the index in `SyncLevel::ALL`.
fn level_code(level: SyncLevel) -> u8 {
    SyncLevel::ALL
        .iter()
        .position(|&l| l == level)
        .map_or(1, |i| i as u8)
}

/// A standby or primary name: 1..=64 bytes of `[A-Za-z0-9_.-]`. Narrow on
/// purpose: names appear unquoted in INFO lines and in
/// `synchronous_standby_names`. The config loader checks `--name` with it.
/// A `host:port` address as AuthOk carries it: 1..=64 bytes of
/// `[A-Za-z0-9_.:-[]]`.
pub fn addr_is_valid(addr: &str) -> bool {
    !addr.is_empty()
        && addr.len() <= NAME_BYTES_MAX
        && addr
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-[]".contains(&b))
}

pub fn name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

impl Message {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Hello { .. } => MessageKind::Hello,
            Message::Challenge { .. } => MessageKind::Challenge,
            Message::AuthResponse { .. } => MessageKind::AuthResponse,
            Message::AuthOk { .. } => MessageKind::AuthOk,
            Message::Refuse { .. } => MessageKind::Refuse,
            Message::WalData { .. } => MessageKind::WalData,
            Message::StandbyStatus { .. } => MessageKind::StandbyStatus,
            Message::Keepalive { .. } => MessageKind::Keepalive,
            Message::TimelineSwitch { .. } => MessageKind::TimelineSwitch,
            Message::SyncRule { .. } => MessageKind::SyncRule,
            Message::PeerStatus { .. } => MessageKind::PeerStatus,
            Message::BuildStart { .. } => MessageKind::BuildStart,
            Message::BuildPages { .. } => MessageKind::BuildPages,
            Message::BuildWal { .. } => MessageKind::BuildWal,
            Message::BuildEnd { .. } => MessageKind::BuildEnd,
        }
    }

    /// Appends the whole frame (header and payload) to `out`.
    ///
    /// Panics on values our own code must never produce: an invalid name,
    /// WAL or page data above the frame limit, pages not a whole number of
    /// pages, out-of-order status stages. A too long `Refuse` message is cut
    /// at a character boundary instead (it is only prose).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(self.kind() as u8);
        out.push(0); // flags
        out.extend_from_slice(&[0; 8]); // payload_len and crc, patched below
        self.encode_payload(out);
        let payload_len = out.len() - start - FRAME_HEADER_BYTES;
        assert!(
            payload_len <= FRAME_PAYLOAD_BYTES_MAX,
            "{:?} payload of {payload_len} bytes exceeds the frame maximum",
            self.kind()
        );
        out[start + 4..start + 8].copy_from_slice(&(payload_len as u32).to_le_bytes());
        let crc = frame_crc(
            &out[start + 2..start + 8],
            &out[start + FRAME_HEADER_BYTES..],
        );
        out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Hello {
                protocol_version,
                system_id,
                timeline,
                start_lsn,
                name,
                purpose,
            } => {
                out.extend_from_slice(&protocol_version.to_le_bytes());
                out.extend_from_slice(&system_id.0.to_le_bytes());
                out.extend_from_slice(&timeline.0.to_le_bytes());
                out.extend_from_slice(&start_lsn.0.to_le_bytes());
                out.push(*purpose as u8);
                put_name(out, name);
            }
            Message::Challenge {
                nonce,
                system_id,
                timeline,
                flushed,
            } => {
                out.extend_from_slice(nonce);
                out.extend_from_slice(&system_id.0.to_le_bytes());
                out.extend_from_slice(&timeline.0.to_le_bytes());
                out.extend_from_slice(&flushed.0.to_le_bytes());
            }
            Message::AuthResponse { mac } => out.extend_from_slice(mac),
            Message::AuthOk {
                primary_name,
                client_addr,
            } => {
                put_name(out, primary_name);
                assert!(
                    addr_is_valid(client_addr),
                    "invalid address {client_addr:?} reached the encoder"
                );
                out.push(client_addr.len() as u8);
                out.extend_from_slice(client_addr.as_bytes());
            }
            Message::Refuse { code, message } => {
                let message = cut_at_char_boundary(message, REFUSE_MESSAGE_BYTES_MAX);
                out.push(*code as u8);
                out.extend_from_slice(&(message.len() as u16).to_le_bytes());
                out.extend_from_slice(message.as_bytes());
            }
            Message::WalData {
                start,
                end_of_flushed,
                receipt,
                bytes,
            } => {
                assert!(bytes.len() <= WAL_DATA_BYTES_MAX, "WalData batch too large");
                assert!(
                    start.0.checked_add(bytes.len() as u64).is_some(),
                    "WalData runs past the last LSN"
                );
                out.extend_from_slice(&start.0.to_le_bytes());
                out.extend_from_slice(&end_of_flushed.0.to_le_bytes());
                out.push(u8::from(*receipt));
                out.extend_from_slice(bytes);
            }
            Message::StandbyStatus {
                received,
                written,
                flushed,
                applied,
                time_us,
                reply_requested,
                estimated_rto_ms,
            } => {
                assert!(
                    received >= written && written >= flushed && flushed >= applied,
                    "standby LSN stages out of order"
                );
                for lsn in [received, written, flushed, applied] {
                    out.extend_from_slice(&lsn.0.to_le_bytes());
                }
                out.extend_from_slice(&time_us.to_le_bytes());
                out.push(u8::from(*reply_requested));
                out.extend_from_slice(&estimated_rto_ms.to_le_bytes());
            }
            Message::Keepalive {
                flushed,
                time_us,
                reply_requested,
            } => {
                out.extend_from_slice(&flushed.0.to_le_bytes());
                out.extend_from_slice(&time_us.to_le_bytes());
                out.push(u8::from(*reply_requested));
            }
            Message::TimelineSwitch { history } => out.extend_from_slice(&history.encode()),
            Message::SyncRule { rule, origin } => {
                out.push(level_code(rule.level));
                out.push(u8::from(rule.most_available_sync));
                out.extend_from_slice(&rule.timeout_ms.to_le_bytes());
                out.push(match origin.kind {
                    OriginKind::ConfigFile => 1,
                    OriginKind::ConfigSet => 2,
                });
                out.extend_from_slice(&origin.at_ms.to_le_bytes());
                put_name(out, &origin.node);
                let names = rule.names.to_string();
                assert!(
                    names.len() <= NAMES_TEXT_BYTES_MAX,
                    "names longer than parse allows"
                );
                out.extend_from_slice(names.as_bytes());
            }
            Message::PeerStatus {
                role,
                flushed,
                history,
            } => {
                out.push(*role as u8);
                out.extend_from_slice(&flushed.0.to_le_bytes());
                out.extend_from_slice(&history.encode());
            }
            Message::BuildStart {
                system_id,
                timeline,
                redo_lsn,
                redo_prev,
                segment_bytes,
                page_count,
            } => {
                assert!(redo_prev <= redo_lsn, "BuildStart redo_prev after redo_lsn");
                assert!(
                    segment_bytes.is_power_of_two(),
                    "segment size not a power of two"
                );
                out.extend_from_slice(&system_id.0.to_le_bytes());
                out.extend_from_slice(&timeline.0.to_le_bytes());
                out.extend_from_slice(&redo_lsn.0.to_le_bytes());
                out.extend_from_slice(&redo_prev.0.to_le_bytes());
                out.extend_from_slice(&segment_bytes.to_le_bytes());
                out.extend_from_slice(&page_count.to_le_bytes());
            }
            Message::BuildPages { first_page, pages } => {
                let n = pages.len() / PAGE_BYTES;
                assert!(
                    !pages.is_empty() && pages.len().is_multiple_of(PAGE_BYTES),
                    "BuildPages carries whole pages"
                );
                assert!(n <= BUILD_PAGES_PER_FRAME_MAX, "BuildPages chunk too large");
                assert!(
                    u64::from(*first_page) + n as u64 <= 1 << 32,
                    "BuildPages past the last page number"
                );
                out.extend_from_slice(&first_page.to_le_bytes());
                out.extend_from_slice(pages);
            }
            Message::BuildWal { start, bytes } => {
                assert!(
                    bytes.len() <= WAL_DATA_BYTES_MAX,
                    "BuildWal batch too large"
                );
                assert!(
                    start.0.checked_add(bytes.len() as u64).is_some(),
                    "BuildWal past the end of the LSN space"
                );
                out.extend_from_slice(&start.0.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Message::BuildEnd { end_lsn, end_prev } => {
                assert!(end_prev <= end_lsn, "BuildEnd end_prev after end_lsn");
                out.extend_from_slice(&end_lsn.0.to_le_bytes());
                out.extend_from_slice(&end_prev.0.to_le_bytes());
            }
        }
    }

    /// Decodes and validates the payload of a checked frame of `kind`.
    pub fn decode(kind: MessageKind, payload: &[u8]) -> Result<Message, FrameError> {
        let mut r = Reader { kind, buf: payload };
        let message = match kind {
            MessageKind::Hello => {
                let protocol_version = r.u32()?;
                let system_id = SystemId(r.u64()?);
                let timeline = TimelineId(r.u32()?);
                let start_lsn = Lsn(r.u64()?);
                let purpose =
                    Purpose::from_u8(r.u8()?).ok_or(r.bad("purpose", "unknown purpose"))?;
                let name = r.name("name")?;
                Message::Hello {
                    protocol_version,
                    system_id,
                    timeline,
                    start_lsn,
                    name,
                    purpose,
                }
            }
            MessageKind::Challenge => Message::Challenge {
                nonce: r.array()?,
                system_id: SystemId(r.u64()?),
                timeline: TimelineId(r.u32()?),
                flushed: Lsn(r.u64()?),
            },
            MessageKind::AuthResponse => Message::AuthResponse { mac: r.array()? },
            MessageKind::AuthOk => Message::AuthOk {
                primary_name: r.name("primary_name")?,
                client_addr: {
                    let len = usize::from(r.u8()?);
                    let bytes = r.bytes(len)?;
                    match std::str::from_utf8(bytes) {
                        Ok(a) if addr_is_valid(a) => a.to_owned(),
                        _ => return Err(r.bad("client_addr", "not a host:port address")),
                    }
                },
            },
            MessageKind::Refuse => {
                let code = RefuseCode::from_u8(r.u8()?).ok_or(r.bad("code", "unknown code"))?;
                let len = usize::from(r.u16()?);
                if len > REFUSE_MESSAGE_BYTES_MAX {
                    return Err(r.bad("message", "longer than REFUSE_MESSAGE_BYTES_MAX"));
                }
                let bytes = r.bytes(len)?;
                let message = std::str::from_utf8(bytes)
                    .map_err(|_| r.bad("message", "not UTF-8"))?
                    .to_owned();
                Message::Refuse { code, message }
            }
            MessageKind::WalData => {
                let start = Lsn(r.u64()?);
                let end_of_flushed = Lsn(r.u64()?);
                let receipt = r.bool("receipt")?;
                let bytes = r.wal_rest(start)?;
                Message::WalData {
                    start,
                    end_of_flushed,
                    receipt,
                    bytes,
                }
            }
            MessageKind::StandbyStatus => {
                let received = Lsn(r.u64()?);
                let written = Lsn(r.u64()?);
                let flushed = Lsn(r.u64()?);
                let applied = Lsn(r.u64()?);
                let time_us = r.u64()?;
                let reply_requested = r.bool("reply_requested")?;
                let estimated_rto_ms = r.u32()?;
                r.finish()?;
                if !(received >= written && written >= flushed && flushed >= applied) {
                    return Err(FrameError::StatusOrder {
                        received,
                        written,
                        flushed,
                        applied,
                    });
                }
                Message::StandbyStatus {
                    received,
                    written,
                    flushed,
                    applied,
                    time_us,
                    reply_requested,
                    estimated_rto_ms,
                }
            }
            MessageKind::Keepalive => Message::Keepalive {
                flushed: Lsn(r.u64()?),
                time_us: r.u64()?,
                reply_requested: r.bool("reply_requested")?,
            },
            MessageKind::TimelineSwitch => Message::TimelineSwitch {
                history: r.history()?,
            },
            MessageKind::SyncRule => {
                let level = SyncLevel::ALL
                    .get(usize::from(r.u8()?))
                    .copied()
                    .ok_or(r.bad("level", "not a synchronous_commit level"))?;
                let most_available_sync = r.bool("most_available_sync")?;
                let timeout_ms = r.u64()?;
                let kind = match r.u8()? {
                    1 => OriginKind::ConfigFile,
                    2 => OriginKind::ConfigSet,
                    _ => return Err(r.bad("origin", "unknown origin")),
                };
                let at_ms = r.u64()?;
                let node = r.name("origin_node")?;
                let text = r.rest();
                if text.len() > NAMES_TEXT_BYTES_MAX {
                    return Err(r.bad("names", "longer than NAMES_TEXT_BYTES_MAX"));
                }
                let names = std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| StandbyNames::parse(t).ok())
                    .ok_or(r.bad("names", "not a valid synchronous_standby_names"))?;
                Message::SyncRule {
                    rule: SyncRule {
                        level,
                        names,
                        most_available_sync,
                        timeout_ms,
                    },
                    origin: RuleOrigin { kind, node, at_ms },
                }
            }
            MessageKind::PeerStatus => Message::PeerStatus {
                role: PeerRole::from_u8(r.u8()?).ok_or(r.bad("role", "unknown role"))?,
                flushed: Lsn(r.u64()?),
                history: r.history()?,
            },
            MessageKind::BuildStart => {
                let system_id = SystemId(r.u64()?);
                let timeline = TimelineId(r.u32()?);
                let redo_lsn = Lsn(r.u64()?);
                let redo_prev = Lsn(r.u64()?);
                let segment_bytes = r.u64()?;
                let page_count = r.u32()?;
                if redo_prev > redo_lsn {
                    return Err(r.bad("redo_prev", "after redo_lsn"));
                }
                if !segment_bytes.is_power_of_two() {
                    return Err(r.bad("segment_bytes", "not a power of two"));
                }
                Message::BuildStart {
                    system_id,
                    timeline,
                    redo_lsn,
                    redo_prev,
                    segment_bytes,
                    page_count,
                }
            }
            MessageKind::BuildPages => {
                let first_page = r.u32()?;
                let pages = r.rest();
                if pages.is_empty() || !pages.len().is_multiple_of(PAGE_BYTES) {
                    return Err(r.bad("pages", "not a whole number of pages"));
                }
                let n = (pages.len() / PAGE_BYTES) as u64;
                if u64::from(first_page) + n > 1 << 32 {
                    return Err(r.bad("first_page", "pages run past the last page number"));
                }
                Message::BuildPages {
                    first_page,
                    pages: pages.to_vec(),
                }
            }
            MessageKind::BuildWal => {
                let start = Lsn(r.u64()?);
                let bytes = r.wal_rest(start)?;
                Message::BuildWal { start, bytes }
            }
            MessageKind::BuildEnd => {
                let end_lsn = Lsn(r.u64()?);
                let end_prev = Lsn(r.u64()?);
                if end_prev > end_lsn {
                    return Err(r.bad("end_prev", "after end_lsn"));
                }
                Message::BuildEnd { end_lsn, end_prev }
            }
        };
        r.finish()?;
        Ok(message)
    }
}

fn frame_crc(kind_flags_len: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(kind_flags_len), payload)
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    assert!(
        name_is_valid(name),
        "invalid node name {name:?} reached the encoder"
    );
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn cut_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checked little-endian cursor over one payload. Every read is bounds
/// checked; running short is `BadLength` for the payload's kind.
struct Reader<'a> {
    kind: MessageKind,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bad(&self, field: &'static str, reason: &'static str) -> FrameError {
        FrameError::BadField {
            kind: self.kind,
            field,
            reason,
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(FrameError::BadLength {
                kind: self.kind,
                len: self.buf.len(),
                needed: N,
            })?;
        self.buf = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        self.array().map(u64::from_le_bytes)
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad(field, "boolean not 0 or 1")),
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::BadLength {
                kind: self.kind,
                len: self.buf.len(),
                needed: n,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// The rest of the payload as a timeline history (checksummed, linear).
    fn history(&mut self) -> Result<TimelineHistory, FrameError> {
        let bytes = self.rest();
        TimelineHistory::decode(bytes)
            .map_err(|_| self.bad("history", "not a valid timeline history"))
    }

    fn name(&mut self, field: &'static str) -> Result<String, FrameError> {
        let len = usize::from(self.u8()?);
        let bytes = self.bytes(len)?;
        match std::str::from_utf8(bytes) {
            Ok(name) if name_is_valid(name) => Ok(name.to_owned()),
            _ => Err(self.bad(field, "not 1..=64 bytes of [A-Za-z0-9_.-]")),
        }
    }

    /// The rest of the payload as WAL bytes starting at `start`.
    fn wal_rest(&mut self, start: Lsn) -> Result<Vec<u8>, FrameError> {
        let bytes = self.rest();
        if bytes.len() > WAL_DATA_BYTES_MAX {
            return Err(self.bad("bytes", "more than WAL_DATA_BYTES_MAX"));
        }
        if start.0.checked_add(bytes.len() as u64).is_none() {
            return Err(self.bad("start", "WAL runs past the end of the LSN space"));
        }
        Ok(bytes.to_vec())
    }

    fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.bad("payload", "trailing bytes"))
        }
    }
}

/// Cuts a byte stream into checked frames, one at a time.
///
/// The caller hands it whatever the socket delivered and loops:
///
/// ```ignore
/// let mut input = &received[..];
/// while !input.is_empty() {
///     let (used, frame) = decoder.feed(input)?; // error: log and disconnect
///     input = &input[used..];
///     if let Some(frame) = frame { handle(frame.into_message()?) }
/// }
/// ```
///
/// `feed` takes only the bytes of the frame in progress, so the decoder
/// never holds more than one frame. After an error the stream is out of
/// step; the decoder keeps returning that error.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    header: [u8; FRAME_HEADER_BYTES],
    header_filled: usize,
    /// Set once the header is complete and checked.
    pending: Option<PendingFrame>,
    failed: Option<FrameError>,
}

#[derive(Debug)]
struct PendingFrame {
    kind: MessageKind,
    payload_len: usize,
    crc: u32,
    /// Grows with the bytes received, never reserved from `payload_len`.
    payload: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Takes bytes from the front of `input`: returns how many it used and,
    /// when they completed a frame, the frame. With a non-empty `input` it
    /// uses at least one byte unless it fails.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.feed_inner(input);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// Bytes of the frame in progress held so far.
    pub fn buffered_bytes(&self) -> usize {
        self.header_filled + self.pending.as_ref().map_or(0, |p| p.payload.len())
    }

    fn feed_inner(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        let mut used = 0;
        let mut pending = match self.pending.take() {
            Some(pending) => pending,
            None => {
                let take = (FRAME_HEADER_BYTES - self.header_filled).min(input.len());
                self.header[self.header_filled..self.header_filled + take]
                    .copy_from_slice(&input[..take]);
                self.header_filled += take;
                used = take;
                if self.header_filled < FRAME_HEADER_BYTES {
                    return Ok((used, None));
                }
                check_header(&self.header)?
            }
        };
        let take = (pending.payload_len - pending.payload.len()).min(input.len() - used);
        pending.payload.extend_from_slice(&input[used..used + take]);
        used += take;
        if pending.payload.len() < pending.payload_len {
            self.pending = Some(pending);
            return Ok((used, None));
        }
        let computed = frame_crc(&self.header[2..8], &pending.payload);
        if computed != pending.crc {
            return Err(FrameError::Checksum {
                kind: pending.kind,
                stored: pending.crc,
                computed,
            });
        }
        self.header_filled = 0;
        let frame = Frame {
            kind: pending.kind,
            payload: pending.payload,
        };
        Ok((used, Some(frame)))
    }
}

fn check_header(h: &[u8; FRAME_HEADER_BYTES]) -> Result<PendingFrame, FrameError> {
    let [m0, m1, kind, flags, l0, l1, l2, l3, c0, c1, c2, c3] = *h;
    if [m0, m1] != MAGIC {
        return Err(FrameError::BadMagic { found: [m0, m1] });
    }
    let kind = MessageKind::from_u8(kind).ok_or(FrameError::UnknownKind { kind })?;
    if flags != 0 {
        return Err(FrameError::UnknownFlags { kind, flags });
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    if len as usize > FRAME_PAYLOAD_BYTES_MAX {
        return Err(FrameError::TooLong {
            len,
            max: FRAME_PAYLOAD_BYTES_MAX as u32,
        });
    }
    Ok(PendingFrame {
        kind,
        payload_len: len as usize,
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
        payload: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_lsn() -> impl Strategy<Value = Lsn> {
        prop_oneof![Just(Lsn(0)), any::<u64>().prop_map(Lsn)]
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,64}"
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    /// A linear history of up to three switches.
    fn arb_history() -> impl Strategy<Value = TimelineHistory> {
        proptest::collection::vec((1u32..5, 0u64..1 << 20), 0..3).prop_map(|steps| {
            let mut h = TimelineHistory::new();
            let (mut tli, mut lsn) = (1u32, 0u64);
            for (dt, dl) in steps {
                let next = tli + dt;
                lsn += dl;
                h.append(crate::replication::timeline::Switch {
                    timeline: TimelineId(next),
                    parent: TimelineId(tli),
                    switch_lsn: Lsn(lsn),
                    reason: "promote".into(),
                    time_us: 1,
                });
                tli = next;
            }
            h
        })
    }

    fn arb_refuse_code() -> impl Strategy<Value = RefuseCode> {
        (1u8..=8).prop_map(|c| RefuseCode::from_u8(c).unwrap())
    }

    /// Four ordered LSNs, largest first.
    fn arb_stages() -> impl Strategy<Value = [Lsn; 4]> {
        proptest::array::uniform4(any::<u64>()).prop_map(|mut a| {
            a.sort_unstable_by(|x, y| y.cmp(x));
            a.map(Lsn)
        })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<u32>(),
                any::<u64>(),
                any::<u32>(),
                arb_lsn(),
                arb_name(),
                any::<bool>()
            )
                .prop_map(|(v, s, t, l, name, b)| Message::Hello {
                    protocol_version: v,
                    system_id: SystemId(s),
                    timeline: TimelineId(t),
                    start_lsn: l,
                    name,
                    purpose: if b { Purpose::Build } else { Purpose::Stream },
                }),
            (any::<[u8; 32]>(), any::<u64>(), any::<u32>(), arb_lsn()).prop_map(
                |(nonce, s, t, f)| Message::Challenge {
                    nonce,
                    system_id: SystemId(s),
                    timeline: TimelineId(t),
                    flushed: f,
                }
            ),
            any::<[u8; 32]>().prop_map(|mac| Message::AuthResponse { mac }),
            arb_name().prop_map(|primary_name| Message::AuthOk {
                primary_name,
                client_addr: "127.0.0.1:6380".into()
            }),
            (arb_refuse_code(), ".{0,100}")
                .prop_map(|(code, message)| Message::Refuse { code, message }),
            (any::<u32>(), arb_bytes(600), any::<u32>(), any::<bool>()).prop_map(
                |(start, bytes, slack, receipt)| {
                    let start = Lsn(u64::from(start));
                    let end_of_flushed = Lsn(start.0 + bytes.len() as u64 + u64::from(slack));
                    Message::WalData {
                        start,
                        end_of_flushed,
                        receipt,
                        bytes,
                    }
                }
            ),
            (arb_stages(), any::<u64>(), any::<bool>(), any::<u32>()).prop_map(
                |(s, time_us, r, rto)| Message::StandbyStatus {
                    received: s[0],
                    written: s[1],
                    flushed: s[2],
                    applied: s[3],
                    time_us,
                    reply_requested: r,
                    estimated_rto_ms: rto,
                }
            ),
            (arb_lsn(), any::<u64>(), any::<bool>()).prop_map(|(flushed, time_us, r)| {
                Message::Keepalive {
                    flushed,
                    time_us,
                    reply_requested: r,
                }
            }),
            arb_history().prop_map(|history| Message::TimelineSwitch { history }),
            (
                0..SyncLevel::ALL.len(),
                prop::sample::select(vec![
                    "",
                    "*",
                    "a",
                    "FIRST 2 (a, b-1, *)",
                    "ANY 1 (x.y, \"q r\")",
                    "s1, s2",
                ]),
                any::<bool>(),
                any::<u64>(),
                any::<bool>(),
                any::<u64>(),
                arb_name()
            )
                .prop_map(|(level, names, mas, timeout_ms, set, at_ms, node)| {
                    Message::SyncRule {
                        rule: SyncRule {
                            level: SyncLevel::ALL[level],
                            names: StandbyNames::parse(names).unwrap(),
                            most_available_sync: mas,
                            timeout_ms,
                        },
                        origin: RuleOrigin {
                            kind: if set {
                                OriginKind::ConfigSet
                            } else {
                                OriginKind::ConfigFile
                            },
                            node,
                            at_ms,
                        },
                    }
                }),
            (1u8..=4, arb_lsn(), arb_history()).prop_map(|(r, flushed, history)| {
                Message::PeerStatus {
                    role: PeerRole::from_u8(r).unwrap(),
                    flushed,
                    history,
                }
            }),
            (
                any::<u64>(),
                any::<u32>(),
                arb_stages(),
                0u32..64,
                any::<u32>()
            )
                .prop_map(|(s, t, l, shift, page_count)| Message::BuildStart {
                    system_id: SystemId(s),
                    timeline: TimelineId(t),
                    redo_lsn: l[0],
                    redo_prev: l[1],
                    segment_bytes: 1 << shift,
                    page_count,
                }),
            (0u32..1_000_000, 1usize..3, any::<u8>()).prop_map(|(first_page, n, fill)| {
                Message::BuildPages {
                    first_page,
                    pages: (0..n * PAGE_BYTES).map(|i| fill ^ (i as u8)).collect(),
                }
            }),
            (any::<u32>(), arb_bytes(600)).prop_map(|(start, bytes)| Message::BuildWal {
                start: Lsn(u64::from(start)),
                bytes
            }),
            arb_stages().prop_map(|l| Message::BuildEnd {
                end_lsn: l[0],
                end_prev: l[3],
            }),
        ]
    }

    fn encoded(m: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    /// Feeds `bytes` in chunks of the given sizes (cycled); collects frames.
    fn feed_chunked(
        dec: &mut FrameDecoder,
        bytes: &[u8],
        chunks: &[usize],
    ) -> Result<Vec<Frame>, FrameError> {
        let mut frames = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < bytes.len() {
            let size = chunks
                .get(i % chunks.len().max(1))
                .copied()
                .unwrap_or(7)
                .max(1);
            i += 1;
            let end = (at + size).min(bytes.len());
            let mut input = &bytes[at..end];
            while !input.is_empty() {
                let (used, frame) = dec.feed(input)?;
                assert!(used > 0 || frame.is_some(), "no progress");
                input = &input[used..];
                frames.extend(frame);
            }
            assert!(dec.buffered_bytes() <= FRAME_HEADER_BYTES + FRAME_PAYLOAD_BYTES_MAX);
            at = end;
        }
        Ok(frames)
    }

    proptest! {
        #[test]
        fn round_trip_through_chunked_decoder(
            messages in proptest::collection::vec(arb_message(), 1..5),
            chunks in proptest::collection::vec(1usize..300, 1..8),
        ) {
            let mut bytes = Vec::new();
            for m in &messages {
                m.encode(&mut bytes);
            }
            let mut dec = FrameDecoder::new();
            let frames = feed_chunked(&mut dec, &bytes, &chunks).unwrap();
            prop_assert_eq!(dec.buffered_bytes(), 0);
            let decoded: Vec<Message> =
                frames.into_iter().map(|f| f.into_message().unwrap()).collect();
            prop_assert_eq!(decoded, messages);
        }

        #[test]
        fn truncation_needs_more_never_decodes(m in arb_message()) {
            let bytes = encoded(&m);
            for cut in 0..bytes.len() {
                let mut dec = FrameDecoder::new();
                let frames = feed_chunked(&mut dec, &bytes[..cut], &[cut.max(1)]).unwrap();
                prop_assert!(frames.is_empty());
                prop_assert_eq!(dec.buffered_bytes(), cut);
            }
        }

        #[test]
        fn single_bit_flip_is_detected(
            m in arb_message(),
            bit in any::<prop::sample::Index>(),
            chunks in proptest::collection::vec(1usize..64, 1..4),
        ) {
            let mut bytes = encoded(&m);
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let mut dec = FrameDecoder::new();
            // Either an error, or (a grown length) still waiting for bytes;
            // never a frame that decodes to any message.
            match feed_chunked(&mut dec, &bytes, &chunks) {
                Err(_) => {}
                Ok(frames) => {
                    for f in frames {
                        prop_assert!(f.into_message().is_err());
                    }
                }
            }
        }

        #[test]
        fn garbage_never_panics_and_stays_bounded(
            bytes in prop_oneof![
                arb_bytes(2000),
                // Past the magic and kind checks, so length and CRC are hit.
                (any::<prop::sample::Index>(), any::<u16>(), arb_bytes(2000)).prop_map(
                    |(kind, len, rest)| {
                        let kinds = [1u8, 2, 3, 4, 5, 16, 17, 18, 19, 32, 33, 34, 35];
                        let mut h = header(kinds[kind.index(kinds.len())], 0, u32::from(len));
                        h.extend_from_slice(&rest);
                        h
                    }
                ),
            ],
            chunks in proptest::collection::vec(1usize..100, 1..4),
        ) {
            let mut dec = FrameDecoder::new();
            if let Ok(frames) = feed_chunked(&mut dec, &bytes, &chunks) {
                for f in frames {
                    let _ = f.into_message();
                }
            }
            prop_assert!(dec.buffered_bytes() <= bytes.len());
        }

        #[test]
        fn garbage_payload_never_panics(kind in any::<u8>(), payload in arb_bytes(300)) {
            if let Some(kind) = MessageKind::from_u8(kind) {
                let _ = Message::decode(kind, &payload);
            }
        }

        #[test]
        fn decoded_message_reencodes_identically(kind in any::<u8>(), payload in arb_bytes(80)) {
            // Whatever decodes is canonical: encoding it gives back the payload.
            if let Some(kind) = MessageKind::from_u8(kind) {
                if let Ok(m) = Message::decode(kind, &payload) {
                    let bytes = encoded(&m);
                    prop_assert_eq!(&bytes[FRAME_HEADER_BYTES..], &payload[..]);
                }
            }
        }
    }

    fn header(kind: u8, flags: u8, len: u32) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&[kind, flags]);
        h.extend_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&[0; 4]);
        h
    }

    #[test]
    fn header_errors_arrive_with_the_header() {
        let cases = [
            (
                b"XR\x01\x00\0\0\0\0\0\0\0\0".to_vec(),
                FrameError::BadMagic { found: *b"XR" },
            ),
            (header(99, 0, 0), FrameError::UnknownKind { kind: 99 }),
            (
                header(1, 4, 0),
                FrameError::UnknownFlags {
                    kind: MessageKind::Hello,
                    flags: 4,
                },
            ),
            (
                header(16, 0, u32::MAX),
                FrameError::TooLong {
                    len: u32::MAX,
                    max: FRAME_PAYLOAD_BYTES_MAX as u32,
                },
            ),
        ];
        for (bytes, expected) in cases {
            let mut dec = FrameDecoder::new();
            assert_eq!(dec.feed(&bytes).unwrap_err(), expected);
            // Sticky: the stream is out of step.
            assert_eq!(dec.feed(b"TR").unwrap_err(), expected);
        }
    }

    #[test]
    fn a_claimed_length_allocates_nothing_up_front() {
        let mut dec = FrameDecoder::new();
        let (used, frame) = dec
            .feed(&header(16, 0, FRAME_PAYLOAD_BYTES_MAX as u32))
            .unwrap();
        assert_eq!((used, frame), (FRAME_HEADER_BYTES, None));
        let cap = dec.pending.as_ref().map(|p| p.payload.capacity());
        assert_eq!(cap, Some(0));
        dec.feed(&[0; 100]).unwrap();
        assert!(dec.pending.as_ref().unwrap().payload.capacity() < 4096);
    }

    #[test]
    fn feed_stops_at_the_frame_boundary() {
        let a = encoded(&Message::AuthResponse { mac: [7; 32] });
        let b = encoded(&Message::AuthOk {
            primary_name: "p1".into(),
            client_addr: "127.0.0.1:1".into(),
        });
        let both = [a.clone(), b.clone()].concat();
        let mut dec = FrameDecoder::new();
        let (used, frame) = dec.feed(&both).unwrap();
        assert_eq!(used, a.len());
        assert_eq!(
            frame.unwrap().into_message().unwrap(),
            Message::AuthResponse { mac: [7; 32] }
        );
        let (used, frame) = dec.feed(&both[a.len()..]).unwrap();
        assert_eq!(used, b.len());
        assert!(frame.is_some());
    }

    #[test]
    fn status_out_of_order_is_a_protocol_error() {
        let mut payload = Vec::new();
        for l in [10u64, 20, 5, 1, 0] {
            payload.extend_from_slice(&l.to_le_bytes());
        }
        payload.push(0);
        payload.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(
            Message::decode(MessageKind::StandbyStatus, &payload).unwrap_err(),
            FrameError::StatusOrder {
                received: Lsn(10),
                written: Lsn(20),
                flushed: Lsn(5),
                applied: Lsn(1),
            }
        );
    }

    #[test]
    fn wal_may_run_past_the_senders_flushed_lsn() {
        // Shipped while the primary's own flush runs: the standby keeps it
        // but applies nothing past end_of_flushed.
        let mut payload = Vec::new();
        payload.extend_from_slice(&100u64.to_le_bytes());
        payload.extend_from_slice(&102u64.to_le_bytes());
        payload.push(1);
        payload.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            Message::decode(MessageKind::WalData, &payload),
            Ok(Message::WalData {
                start: Lsn(100),
                end_of_flushed: Lsn(102),
                receipt: true,
                bytes: vec![1, 2, 3, 4],
            })
        );
        // The receipt flag is a strict boolean, like every other.
        payload[16] = 2;
        assert!(matches!(
            Message::decode(MessageKind::WalData, &payload),
            Err(FrameError::BadField {
                field: "receipt",
                ..
            })
        ));
    }

    #[test]
    fn invalid_names_and_trailing_bytes_are_refused() {
        let mut payload = vec![3];
        payload.extend_from_slice(b"a b");
        assert!(matches!(
            Message::decode(MessageKind::AuthOk, &payload),
            Err(FrameError::BadField { .. })
        ));
        assert!(Message::decode(MessageKind::AuthOk, &[0]).is_err());
        let mut payload = vec![2];
        payload.extend_from_slice(b"ab\x03h:1!");
        assert!(matches!(
            Message::decode(MessageKind::AuthOk, &payload),
            Err(FrameError::BadField {
                field: "payload",
                ..
            })
        ));
    }

    #[test]
    fn long_refuse_message_is_cut_at_a_char_boundary() {
        let m = Message::Refuse {
            code: RefuseCode::Protocol,
            message: "é".repeat(REFUSE_MESSAGE_BYTES_MAX),
        };
        let bytes = encoded(&m);
        let mut dec = FrameDecoder::new();
        let (_, frame) = dec.feed(&bytes).unwrap();
        let Message::Refuse { message, .. } = frame.unwrap().into_message().unwrap() else {
            panic!("not a Refuse");
        };
        assert_eq!(message.len(), REFUSE_MESSAGE_BYTES_MAX);
    }

    #[test]
    fn largest_frames_fit() {
        let m = Message::WalData {
            start: Lsn(0),
            end_of_flushed: Lsn(WAL_DATA_BYTES_MAX as u64),
            receipt: false,
            bytes: vec![0; WAL_DATA_BYTES_MAX],
        };
        let bytes = encoded(&m);
        let mut dec = FrameDecoder::new();
        assert!(dec.feed(&bytes).unwrap().1.is_some());
        let m = Message::BuildPages {
            first_page: u32::MAX - 63,
            pages: vec![0; 64 * PAGE_BYTES],
        };
        let bytes = encoded(&m);
        let (_, frame) = dec.feed(&bytes).unwrap();
        assert_eq!(frame.unwrap().into_message().unwrap(), m);
    }
}
