//! RESP wire codec: an incremental request parser and reply writers.
//!
//! Owns the byte-level client protocol and nothing else: no sockets, no
//! commands. A session core owns one [`RequestParser`] per connection, feeds it
//! the bytes it receives and takes complete requests out of it; it writes
//! replies straight into its output `Vec<u8>` with the `write_*` functions,
//! which speak RESP2 or RESP3 depending on the connection's [`Protocol`].
//!
//! # Requests
//!
//! Two framings, chosen by the first byte of a request, as in Redis:
//!
//! ```text
//! multibulk:  *<count>\r\n  then <count> times  $<len>\r\n <len bytes> \r\n
//! inline:     any other first byte; one line up to \n (an optional \r before
//!             it is dropped), split on blanks with Redis's quoting rules:
//!             "double quoted with \n \r \t \b \a \\ \" \xHH escapes" and
//!             'single quoted with \' as the only escape'
//! ```
//!
//! `*0`, `*-1` and blank inline lines are empty requests and skipped, as in
//! Redis. Counts and lengths are decimal `i64` in Redis's strict form (see
//! [`parse_i64`]). Unlike Redis, the two bytes after a bulk payload and after a
//! length line must be `\r\n` ([`ProtocolError::ExpectedCrlf`]); Redis skips
//! them unchecked.
//!
//! # Invariants
//! - No allocation is sized by a length field before that field is checked
//!   against [`RequestLimits`]; the argument index grows by at most
//!   [`ARGS_RESERVE_MAX`] entries ahead of the arguments actually received.
//! - Bytes of one partial request held by the parser are bounded by
//!   `request_bytes_max` (multibulk) or `inline_bytes_max` (inline) plus one
//!   length line.
//! - A prefix of a valid request is never an error: the parser answers
//!   "need more bytes" (`Ok(None)`). Any input at all never panics.
//! - Arguments are handed out as ranges into the parser's own buffer: parsing
//!   a request allocates nothing once the buffer and the index are warm.
//!   Inline arguments with escapes are decoded in place (decoding only
//!   shrinks, so the write cursor never passes the read cursor).
//! - After a [`ProtocolError`] the parser is poisoned and repeats the error:
//!   the session replies with it and closes the connection, as Redis does.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use thiserror::Error;

/// Most argument index entries reserved ahead of the arguments that actually
/// arrived: a `*1000000` header alone must not allocate 24 MB (Redis caps its
/// own preallocation at 1024 for the same reason).
pub const ARGS_RESERVE_MAX: usize = 1024;

/// Longest `*<count>` / `$<len>` line, excluding the marker and the CRLF.
/// Any valid `i64` needs at most 20 bytes; a longer line is an error before
/// its CRLF arrives (Redis waits for 64 KiB).
pub const LENGTH_LINE_BYTES_MAX: usize = 32;

/// Limits on one request; `config.rs` owns the values, [`Default`] gives
/// Redis's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most arguments in one request (Redis: `INT_MAX`).
    pub args_max: usize,
    /// Longest multibulk argument (Redis: `proto-max-bulk-len`, 512 MiB).
    pub bulk_bytes_max: usize,
    /// Longest inline request line (Redis: `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub inline_bytes_max: usize,
    /// Most bytes of one multibulk request, headers included (Redis:
    /// `client-query-buffer-limit`, 1 GiB).
    pub request_bytes_max: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            args_max: 1024 * 1024,
            bulk_bytes_max: 512 * 1024 * 1024,
            inline_bytes_max: 64 * 1024,
            request_bytes_max: 1024 * 1024 * 1024,
        }
    }
}

/// A malformed or oversized request. Display is the error reply (without the
/// leading `-`) and uses Redis's wording where Redis has one, so variants
/// that Redis does not distinguish print alike; their fields are for logs.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid multibulk length")]
    TooManyArgs { count: usize, max: usize },
    #[error("Protocol error: too big mbulk count string")]
    MultibulkCountTooLong,
    #[error("Protocol error: expected '$', got '{}'", ByteDisplay(*got))]
    ExpectedDollar { got: u8 },
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: invalid bulk length")]
    BulkTooLong { len: usize, max: usize },
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooLong,
    #[error("Protocol error: expected CRLF, got '{}'", ByteDisplay(*got))]
    ExpectedCrlf { got: u8 },
    #[error("Protocol error: too big inline request")]
    InlineTooLong { max: usize },
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: request larger than {max} bytes")]
    RequestTooLarge { len: usize, max: usize },
}

/// A byte as it may appear inside a one-line error reply.
struct ByteDisplay(u8);

impl fmt::Display for ByteDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "{}", char::from(self.0))
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}

/// Parses a decimal `i64` exactly like Redis's `string2ll`: an optional `-`,
/// no `+`, no blanks, no leading zeros (only `0` itself), no `-0`, in range.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'1'..=b'9', ..] if digits.len() <= 19 => {}
        _ => return None,
    }
    // 19 digits fit in u64 without overflow.
    let mut magnitude: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude * 10 + u64::from(byte - b'0');
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Formats `value` in decimal into `scratch`, returning the digits. Twenty
/// bytes hold `i64::MIN`.
pub fn format_i64(value: i64, scratch: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = value.unsigned_abs();
    let mut start = scratch.len();
    loop {
        start -= 1;
        scratch[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        start -= 1;
        scratch[start] = b'-';
    }
    &scratch[start..]
}

/// The arguments of one request (command name first), borrowed from the
/// parser's buffer or from an [`OwnedArgs`]. Cheap to copy and to slice.
#[derive(Clone, Copy, Default)]
pub struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<&'a [u8]> {
        let range = self.ranges.get(index)?;
        self.buf.get(range.clone())
    }

    /// The arguments from `index` on (empty past the end).
    pub fn skip(&self, index: usize) -> Args<'a> {
        Args {
            buf: self.buf,
            ranges: self.ranges.get(index..).unwrap_or(&[]),
        }
    }

    pub fn iter(&self) -> ArgsIter<'a> {
        ArgsIter {
            args: *self,
            index: 0,
        }
    }

    /// Consecutive pairs `(args[0], args[1]), (args[2], args[3]), ...`; an odd
    /// last argument is left out.
    pub fn pairs(&self) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let buf = self.buf;
        self.ranges.chunks_exact(2).map(move |pair| {
            let at = |i: usize| pair.get(i).and_then(|r| buf.get(r.clone())).unwrap_or(&[]);
            (at(0), at(1))
        })
    }

    pub fn to_vec(&self) -> Vec<Vec<u8>> {
        self.iter().map(<[u8]>::to_vec).collect()
    }

    /// A copy that outlives the parser's buffer, e.g. to queue under MULTI.
    pub fn to_owned_args(&self) -> OwnedArgs {
        OwnedArgs::from_args(self.iter())
    }
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

impl PartialEq for Args<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Args<'_> {}

impl<'a> IntoIterator for Args<'a> {
    type Item = &'a [u8];
    type IntoIter = ArgsIter<'a>;

    fn into_iter(self) -> ArgsIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Args`].
#[derive(Clone, Debug)]
pub struct ArgsIter<'a> {
    args: Args<'a>,
    index: usize,
}

impl<'a> Iterator for ArgsIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let arg = self.args.get(self.index)?;
        self.index += 1;
        Some(arg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.args.len().saturating_sub(self.index);
        (left, Some(left))
    }
}

impl ExactSizeIterator for ArgsIter<'_> {}

/// Owned request arguments in one buffer: for queued MULTI commands and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedArgs {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl OwnedArgs {
    pub fn from_args<I>(args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut owned = Self::default();
        for arg in args {
            let start = owned.buf.len();
            owned.buf.extend_from_slice(arg.as_ref());
            owned.ranges.push(start..owned.buf.len());
        }
        owned
    }

    pub fn as_args(&self) -> Args<'_> {
        Args {
            buf: &self.buf,
            ranges: &self.ranges,
        }
    }
}

/// Where the parser stands inside the current request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the first byte of a request.
    Start,
    /// Multibulk header read; `remaining` `$<len>` lines still to come.
    Header { remaining: usize },
    /// `$<len>` line read; `len` payload bytes and a CRLF come next.
    Payload { remaining: usize, len: usize },
}

/// Incremental request parser for one connection.
///
/// Usage: [`feed`](Self::feed) received bytes, then call
/// [`next_request`](Self::next_request) until it returns `Ok(None)` (reply
/// to pipelined requests in between, flush when it returns `None`).
#[derive(Debug)]
pub struct RequestParser {
    limits: RequestLimits,
    buf: Vec<u8>,
    /// First byte of the request being parsed; bytes before it are consumed.
    start: usize,
    /// First byte not yet parsed; `start <= pos <= buf.len()`.
    pos: usize,
    state: State,
    /// Argument ranges of the request being parsed, absolute in `buf`.
    args: Vec<Range<usize>>,
    failed: Option<ProtocolError>,
}

impl RequestParser {
    pub fn new(limits: RequestLimits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            start: 0,
            pos: 0,
            state: State::Start,
            args: Vec::new(),
            failed: None,
        }
    }

    pub fn limits(&self) -> &RequestLimits {
        &self.limits
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.reclaim_consumed();
        self.buf.extend_from_slice(bytes);
    }

    /// Lends the buffer for a zero-copy read that appends to it (e.g. compio
    /// reading into a `Vec`'s spare capacity). Bytes already in it must stay
    /// as they are; give it back with [`restore_buffer`](Self::restore_buffer).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.reclaim_consumed();
        std::mem::take(&mut self.buf)
    }

    /// Returns the buffer lent by [`take_buffer`](Self::take_buffer), with
    /// newly read bytes appended.
    pub fn restore_buffer(&mut self, buf: Vec<u8>) {
        assert!(self.buf.is_empty(), "restore_buffer without take_buffer");
        assert!(buf.len() >= self.pos, "restored buffer lost parsed bytes");
        self.buf = buf;
    }

    /// Bytes received but not yet returned as part of a request.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len() - self.unreturned_start()
    }

    /// First byte not yet returned in a request.
    fn unreturned_start(&self) -> usize {
        match self.state {
            State::Start => self.pos,
            State::Header { .. } | State::Payload { .. } => self.start,
        }
    }

    /// The next complete request, `Ok(None)` if more bytes are needed.
    /// Never returns an empty request.
    pub fn next_request(&mut self) -> Result<Option<Args<'_>>, ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match self.parse() {
            Ok(true) => Ok(Some(Args {
                buf: &self.buf,
                ranges: &self.args,
            })),
            Ok(false) => {
                self.compact();
                Ok(None)
            }
            Err(error) => {
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Drops everything before the current request; O(partial request).
    fn compact(&mut self) {
        let consumed = self.start;
        if consumed == 0 {
            return;
        }
        self.buf.drain(..consumed);
        for range in &mut self.args {
            range.start -= consumed;
            range.end -= consumed;
        }
        self.pos -= consumed;
        self.start = 0;
    }

    /// Cheap reset when every byte has been consumed.
    fn reclaim_consumed(&mut self) {
        if self.state == State::Start && self.pos == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.pos = 0;
        }
    }

    /// Advances the state machine; `Ok(true)` when `self.args` holds a
    /// complete request.
    fn parse(&mut self) -> Result<bool, ProtocolError> {
        loop {
            match self.state {
                State::Start => {
                    self.args.clear();
                    self.start = self.pos;
                    match self.buf.get(self.pos) {
                        None => return Ok(false),
                        Some(b'*') => {
                            if !self.parse_multibulk_count()? {
                                return Ok(false);
                            }
                        }
                        Some(_) => {
                            if !self.parse_inline()? {
                                return Ok(false);
                            }
                            if !self.args.is_empty() {
                                return Ok(true);
                            }
                        }
                    }
                }
                State::Header { remaining: 0 } => {
                    self.state = State::Start;
                    return Ok(true);
                }
                State::Header { remaining } => {
                    if !self.parse_bulk_length(remaining)? {
                        return Ok(false);
                    }
                }
                State::Payload { remaining, len } => {
                    let end = self.pos + len;
                    let Some(crlf) = self.buf.get(end..end + 2) else {
                        return Ok(false);
                    };
                    expect_crlf(crlf)?;
                    self.args.push(self.pos..end);
                    self.pos = end + 2;
                    self.state = State::Header {
                        remaining: remaining - 1,
                    };
                }
            }
        }
    }

    /// Reads `*<count>\r\n` at `pos`; `Ok(false)` if incomplete.
    fn parse_multibulk_count(&mut self) -> Result<bool, ProtocolError> {
        let Some((count, next)) = self.length_line(ProtocolError::MultibulkCountTooLong)? else {
            return Ok(false);
        };
        let count = count.ok_or(ProtocolError::InvalidMultibulkLength)?;
        self.pos = next;
        if count <= 0 {
            return Ok(true); // empty request, skipped like Redis
        }
        let count = usize::try_from(count).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
        if count > self.limits.args_max {
            return Err(ProtocolError::TooManyArgs {
                count,
                max: self.limits.args_max,
            });
        }
        self.args.reserve(count.min(ARGS_RESERVE_MAX));
        self.state = State::Header { remaining: count };
        Ok(true)
    }

    /// Reads `$<len>\r\n` at `pos`; `Ok(false)` if incomplete.
    fn parse_bulk_length(&mut self, remaining: usize) -> Result<bool, ProtocolError> {
        match self.buf.get(self.pos) {
            None => return Ok(false),
            Some(b'$') => {}
            Some(&got) => return Err(ProtocolError::ExpectedDollar { got }),
        }
        let Some((len, next)) = self.length_line(ProtocolError::BulkCountTooLong)? else {
            return Ok(false);
        };
        let len = len
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(ProtocolError::InvalidBulkLength)?;
        if len > self.limits.bulk_bytes_max {
            return Err(ProtocolError::BulkTooLong {
                len,
                max: self.limits.bulk_bytes_max,
            });
        }
        let request_len = (next - self.start).saturating_add(len).saturating_add(2);
        if request_len > self.limits.request_bytes_max {
            return Err(ProtocolError::RequestTooLarge {
                len: request_len,
                max: self.limits.request_bytes_max,
            });
        }
        self.pos = next;
        self.state = State::Payload { remaining, len };
        Ok(true)
    }

    /// Reads the number after the marker byte at `pos` up to its CRLF.
    /// `Ok(None)` if incomplete; `Ok(Some((None, _)))` if not a number.
    fn length_line(
        &self,
        too_long: ProtocolError,
    ) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
        let from = self.pos + 1;
        let rest = self.buf.get(from..).unwrap_or(&[]);
        let window = &rest[..rest.len().min(LENGTH_LINE_BYTES_MAX + 1)];
        let Some(cr) = window.iter().position(|&b| b == b'\r') else {
            if window.len() > LENGTH_LINE_BYTES_MAX {
                return Err(too_long);
            }
            return Ok(None);
        };
        let Some(crlf) = rest.get(cr..cr + 2) else {
            return Ok(None);
        };
        expect_crlf(crlf)?;
        Ok(Some((parse_i64(&window[..cr]), from + cr + 2)))
    }

    /// Reads one inline line at `pos` into `args` (empty for a blank line);
    /// `Ok(false)` if its newline has not arrived.
    fn parse_inline(&mut self) -> Result<bool, ProtocolError> {
        let max = self.limits.inline_bytes_max;
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let window = &rest[..rest.len().min(max.saturating_add(1))];
        let Some(newline) = window.iter().position(|&b| b == b'\n') else {
            if window.len() > max {
                return Err(ProtocolError::InlineTooLong { max });
            }
            return Ok(false);
        };
        let mut end = self.pos + newline;
        if end > self.pos && self.buf.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        let line = self.pos..end;
        self.pos += newline + 1;
        split_inline(&mut self.buf, line, &mut self.args, self.limits.args_max)?;
        Ok(true)
    }
}

fn expect_crlf(two: &[u8]) -> Result<(), ProtocolError> {
    match two {
        [b'\r', b'\n'] => Ok(()),
        [b'\r', got] | [got, _] => Err(ProtocolError::ExpectedCrlf { got: *got }),
        _ => Err(ProtocolError::ExpectedCrlf { got: 0 }),
    }
}

/// C `isspace`, which Redis's `sdssplitargs` uses between arguments.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// Splits `buf[line]` into arguments like Redis's `sdssplitargs`, decoding
/// quotes and escapes in place, and appends their ranges to `args`.
///
/// Like the C original, a NUL byte ends the line (it reads a C string).
fn split_inline(
    buf: &mut [u8],
    line: Range<usize>,
    args: &mut Vec<Range<usize>>,
    args_max: usize,
) -> Result<(), ProtocolError> {
    let end = line.end.min(buf.len());
    // Byte at `i` of the line, 0 past its end, as the C code sees it.
    let at = |buf: &[u8], i: usize| {
        if i < end {
            buf.get(i).copied().unwrap_or(0)
        } else {
            0
        }
    };
    let mut read = line.start;
    let mut write = line.start;
    loop {
        while at(buf, read) != 0 && is_space(at(buf, read)) {
            read += 1;
        }
        if at(buf, read) == 0 {
            return Ok(());
        }
        let arg_start = write;
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let byte = at(buf, read);
            let mut out = None;
            let mut done = false;
            if in_double {
                let next = at(buf, read + 1);
                let hex = (next == b'x')
                    .then(|| {
                        Some(hex_value(at(buf, read + 2))? * 16 + hex_value(at(buf, read + 3))?)
                    })
                    .flatten();
                match byte {
                    0 => return Err(ProtocolError::UnbalancedQuotes),
                    b'\\' if hex.is_some() => {
                        out = hex;
                        read += 3;
                    }
                    b'\\' if next != 0 => {
                        out = Some(match next {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        read += 1;
                    }
                    b'"' => {
                        // The closing quote must be followed by a blank or the end.
                        if next != 0 && !is_space(next) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        done = true;
                    }
                    other => out = Some(other),
                }
            } else if in_single {
                let next = at(buf, read + 1);
                match byte {
                    0 => return Err(ProtocolError::UnbalancedQuotes),
                    b'\\' if next == b'\'' => {
                        out = Some(b'\'');
                        read += 1;
                    }
                    b'\'' => {
                        if next != 0 && !is_space(next) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        done = true;
                    }
                    other => out = Some(other),
                }
            } else {
                match byte {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    other => out = Some(other),
                }
            }
            if let Some(decoded) = out {
                // write <= read: every decoded byte consumed at least one byte.
                debug_assert!(write <= read);
                if let Some(slot) = buf.get_mut(write) {
                    *slot = decoded;
                }
                write += 1;
            }
            if at(buf, read) != 0 {
                read += 1;
            }
            if done {
                break;
            }
        }
        if args.len() >= args_max {
            return Err(ProtocolError::TooManyArgs {
                count: args.len() + 1,
                max: args_max,
            });
        }
        args.push(arg_start..write);
    }
}

/// Protocol version of a connection, switched by `HELLO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// `2` or `3`, as in `HELLO`'s `proto` field.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }

    /// The protocol for a `HELLO` version number, `None` if unsupported.
    pub fn from_version(version: i64) -> Option<Self> {
        match version {
            2 => Some(Protocol::Resp2),
            3 => Some(Protocol::Resp3),
            _ => None,
        }
    }
}

fn write_line(out: &mut Vec<u8>, marker: u8, text: &[u8]) {
    out.push(marker);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn write_length(out: &mut Vec<u8>, marker: u8, len: usize) {
    let mut scratch = [0u8; 20];
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    write_line(out, marker, format_i64(len, &mut scratch));
}

/// Writes a one-line string with CR and LF replaced by blanks (as Redis does
/// for error replies), so a message can never break the framing.
fn write_one_line(out: &mut Vec<u8>, marker: u8, text: &str) {
    out.push(marker);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `+text\r\n`.
pub fn write_simple(out: &mut Vec<u8>, text: &str) {
    write_one_line(out, b'+', text);
}

/// `-message\r\n`; `message` starts with its code (`ERR ...`, `WRONGTYPE ...`).
pub fn write_error(out: &mut Vec<u8>, message: &str) {
    write_one_line(out, b'-', message);
}

/// `:value\r\n`.
pub fn write_integer(out: &mut Vec<u8>, value: i64) {
    let mut scratch = [0u8; 20];
    write_line(out, b':', format_i64(value, &mut scratch));
}

/// `$len\r\nbytes\r\n`.
pub fn write_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    write_length(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// A missing value: RESP2 null bulk `$-1`, RESP3 `_`.
pub fn write_null(out: &mut Vec<u8>, protocol: Protocol) {
    match protocol {
        Protocol::Resp2 => out.extend_from_slice(b"$-1\r\n"),
        Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
    }
}

/// A missing array (e.g. EXEC after a failed WATCH): RESP2 `*-1`, RESP3 `_`.
pub fn write_null_array(out: &mut Vec<u8>, protocol: Protocol) {
    match protocol {
        Protocol::Resp2 => out.extend_from_slice(b"*-1\r\n"),
        Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
    }
}

/// `*len`; `len` elements follow.
pub fn write_array_header(out: &mut Vec<u8>, len: usize) {
    write_length(out, b'*', len);
}

/// RESP3 `%len`, RESP2 a flat array `*2len`; `len` key/value pairs follow.
pub fn write_map_header(out: &mut Vec<u8>, protocol: Protocol, len: usize) {
    match protocol {
        Protocol::Resp2 => write_length(out, b'*', len.saturating_mul(2)),
        Protocol::Resp3 => write_length(out, b'%', len),
    }
}

/// RESP3 `~len`, RESP2 `*len`; `len` elements follow.
pub fn write_set_header(out: &mut Vec<u8>, protocol: Protocol, len: usize) {
    match protocol {
        Protocol::Resp2 => write_length(out, b'*', len),
        Protocol::Resp3 => write_length(out, b'~', len),
    }
}

/// RESP3 `,value`, RESP2 a bulk string. `inf`, `-inf` and `nan` as in Redis.
pub fn write_double(out: &mut Vec<u8>, protocol: Protocol, value: f64) {
    let text = if value.is_nan() {
        "nan".to_owned()
    } else if value == f64::INFINITY {
        "inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-inf".to_owned()
    } else if value != 0.0 && !(1e-4..1e16).contains(&value.abs()) {
        format!("{value:e}")
    } else {
        format!("{value}")
    };
    match protocol {
        Protocol::Resp2 => write_bulk(out, text.as_bytes()),
        Protocol::Resp3 => write_line(out, b',', text.as_bytes()),
    }
}

/// RESP3 `#t` / `#f`, RESP2 `:1` / `:0`.
pub fn write_bool(out: &mut Vec<u8>, protocol: Protocol, value: bool) {
    match (protocol, value) {
        (Protocol::Resp2, true) => out.extend_from_slice(b":1\r\n"),
        (Protocol::Resp2, false) => out.extend_from_slice(b":0\r\n"),
        (Protocol::Resp3, true) => out.extend_from_slice(b"#t\r\n"),
        (Protocol::Resp3, false) => out.extend_from_slice(b"#f\r\n"),
    }
}

/// RESP3 verbatim string `=len\r\nfmt:text\r\n` (Redis answers INFO and
/// CLIENT INFO with format `txt`), RESP2 a bulk string of `text`.
pub fn write_verbatim(out: &mut Vec<u8>, protocol: Protocol, format: &[u8; 3], text: &[u8]) {
    match protocol {
        Protocol::Resp2 => write_bulk(out, text),
        Protocol::Resp3 => {
            write_length(out, b'=', text.len().saturating_add(4));
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// A request as clients send it: an array of bulk strings.
pub fn write_request<I>(out: &mut Vec<u8>, args: I)
where
    I: IntoIterator,
    I::IntoIter: ExactSizeIterator,
    I::Item: AsRef<[u8]>,
{
    let args = args.into_iter();
    write_array_header(out, args.len());
    for arg in args {
        write_bulk(out, arg.as_ref());
    }
}

/// A reply as a value, for replies built ahead of writing (INFO, ROLE,
/// COMMAND) and for tests; the hot path calls the `write_*` functions.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Simple(Cow<'static, str>),
    Error(Cow<'static, str>),
    Integer(i64),
    Bulk(Vec<u8>),
    Null,
    NullArray,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Double(f64),
    Bool(bool),
    Verbatim { format: [u8; 3], text: Vec<u8> },
}

impl Reply {
    /// Bulk string from anything byte-like.
    pub fn bulk(bytes: impl AsRef<[u8]>) -> Self {
        Reply::Bulk(bytes.as_ref().to_vec())
    }

    pub fn write(&self, out: &mut Vec<u8>, protocol: Protocol) {
        match self {
            Reply::Simple(text) => write_simple(out, text),
            Reply::Error(message) => write_error(out, message),
            Reply::Integer(value) => write_integer(out, *value),
            Reply::Bulk(bytes) => write_bulk(out, bytes),
            Reply::Null => write_null(out, protocol),
            Reply::NullArray => write_null_array(out, protocol),
            Reply::Array(items) => {
                write_array_header(out, items.len());
                items.iter().for_each(|item| item.write(out, protocol));
            }
            Reply::Map(pairs) => {
                write_map_header(out, protocol, pairs.len());
                for (key, value) in pairs {
                    key.write(out, protocol);
                    value.write(out, protocol);
                }
            }
            Reply::Set(items) => {
                write_set_header(out, protocol, items.len());
                items.iter().for_each(|item| item.write(out, protocol));
            }
            Reply::Double(value) => write_double(out, protocol, *value),
            Reply::Bool(value) => write_bool(out, protocol, *value),
            Reply::Verbatim { format, text } => write_verbatim(out, protocol, format, text),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn small_limits() -> RequestLimits {
        RequestLimits {
            args_max: 8,
            bulk_bytes_max: 64,
            inline_bytes_max: 64,
            request_bytes_max: 256,
        }
    }

    /// Every request in `input`, fed at once, until `None` or an error.
    fn parse_all(limits: RequestLimits, input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = RequestParser::new(limits);
        parser.feed(input);
        let mut requests = Vec::new();
        while let Some(args) = parser.next_request()? {
            requests.push(args.to_vec());
        }
        Ok(requests)
    }

    fn one(input: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let mut requests = parse_all(RequestLimits::default(), input)?;
        assert_eq!(requests.len(), 1, "{requests:?}");
        Ok(requests.remove(0))
    }

    fn strings(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn error_of(input: &[u8]) -> String {
        parse_all(RequestLimits::default(), input)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parse_i64_is_string2ll() {
        for (text, value) in [
            ("0", Some(0)),
            ("1", Some(1)),
            ("-1", Some(-1)),
            ("123", Some(123)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("99999999999999999999", None),
            ("", None),
            ("-", None),
            ("-0", None),
            ("00", None),
            ("01", None),
            ("+1", None),
            (" 1", None),
            ("1 ", None),
            ("1a", None),
            ("0x10", None),
        ] {
            assert_eq!(parse_i64(text.as_bytes()), value, "{text:?}");
        }
    }

    #[test]
    fn multibulk_and_pipelining() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
        let requests = parse_all(RequestLimits::default(), input).unwrap();
        assert_eq!(
            requests,
            vec![strings(&["SET", "k", ""]), strings(&["PING"])]
        );
    }

    #[test]
    fn binary_payload_is_opaque() {
        let args = one(b"*2\r\n$3\r\nGET\r\n$4\r\n\r\n\0*\r\n").unwrap();
        assert_eq!(args, vec![b"GET".to_vec(), b"\r\n\0*".to_vec()]);
    }

    #[test]
    fn empty_requests_are_skipped() {
        let requests = parse_all(
            RequestLimits::default(),
            b"*0\r\n*-1\r\n\r\n\n  \r\nPING\r\n",
        );
        assert_eq!(requests.unwrap(), vec![strings(&["PING"])]);
    }

    #[test]
    fn inline_splitting_follows_sdssplitargs() {
        for (line, expected) in [
            (&b"PING\r\n"[..], vec!["PING"]),
            (b"PING\n", vec!["PING"]),
            (b"  set  a   b \t\r\n", vec!["set", "a", "b"]),
            (b"set \"a b\" 'c d'\r\n", vec!["set", "a b", "c d"]),
            (b"x \"\\x41\\n\\\"\\q\"\n", vec!["x", "A\n\"q"]),
            (b"x 'it\\'s' \"\"\n", vec!["x", "it's", ""]),
            (b"x foo\"bar baz\"\n", vec!["x", "foobar baz"]),
            (b"x \"\\x4\"\n", vec!["x", "x4"]),
            (b"a\0b c\n", vec!["a"]),
        ] {
            let expected: Vec<Vec<u8>> = expected.iter().map(|a| a.as_bytes().to_vec()).collect();
            assert_eq!(
                one(line).unwrap(),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn errors_use_redis_wording() {
        for (input, message) in [
            (&b"*x\r\n"[..], "Protocol error: invalid multibulk length"),
            (
                b"*3000000000\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$01\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\nx", "Protocol error: expected '$', got 'x'"),
            (b"*1\r\n\x01", "Protocol error: expected '$', got '\\x01'"),
            (b"set \"a\n", "Protocol error: unbalanced quotes in request"),
            (
                b"set \"a\"b\n",
                "Protocol error: unbalanced quotes in request",
            ),
            (b"set 'a\n", "Protocol error: unbalanced quotes in request"),
            (
                b"set 'a'b\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ] {
            assert_eq!(
                error_of(input),
                message,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_count = [b"*".as_slice(), &[b'1'; 40]].concat();
        assert_eq!(
            error_of(&long_count),
            "Protocol error: too big mbulk count string"
        );
        let long_bulk = [b"*1\r\n$".as_slice(), &[b'1'; 40]].concat();
        assert_eq!(
            error_of(&long_bulk),
            "Protocol error: too big bulk count string"
        );
        let long_inline = vec![b'a'; 64 * 1024 + 1];
        assert_eq!(
            error_of(&long_inline),
            "Protocol error: too big inline request"
        );
        assert_eq!(
            parse_all(RequestLimits::default(), b"*1\r\n$1\r\nab\r\n"),
            Err(ProtocolError::ExpectedCrlf { got: b'b' })
        );
    }

    #[test]
    fn limits_are_checked_before_payload_arrives() {
        let limits = small_limits();
        assert_eq!(
            parse_all(limits, b"*9\r\n"),
            Err(ProtocolError::TooManyArgs { count: 9, max: 8 })
        );
        assert_eq!(
            parse_all(limits, b"*1\r\n$65\r\n"),
            Err(ProtocolError::BulkTooLong { len: 65, max: 64 })
        );
        let mut big = b"*5\r\n".to_vec();
        for _ in 0..4 {
            big.extend_from_slice(b"$60\r\n");
            big.extend_from_slice(&[b'v'; 60]);
            big.extend_from_slice(b"\r\n");
        }
        big.extend_from_slice(b"$60\r\n");
        assert!(matches!(
            parse_all(limits, &big),
            Err(ProtocolError::RequestTooLarge { .. })
        ));
        let inline_args = b"a b c d e f g h i\n";
        assert_eq!(
            parse_all(limits, inline_args),
            Err(ProtocolError::TooManyArgs { count: 9, max: 8 })
        );
        let huge_count = b"*1000000\r\n";
        let mut parser = RequestParser::new(RequestLimits::default());
        parser.feed(huge_count);
        assert_eq!(parser.next_request(), Ok(None));
        assert!(parser.args.capacity() <= ARGS_RESERVE_MAX);
    }

    #[test]
    fn errors_are_sticky() {
        let mut parser = RequestParser::new(RequestLimits::default());
        parser.feed(b"*1\r\nx");
        let first = parser.next_request().unwrap_err();
        parser.feed(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(parser.next_request().unwrap_err(), first);
    }

    #[test]
    fn byte_at_a_time_and_compaction() {
        let input = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\nPING\r\n*1\r\n$4\r\nQUIT\r\n";
        let mut parser = RequestParser::new(RequestLimits::default());
        let mut requests = Vec::new();
        for &byte in input {
            parser.feed(&[byte]);
            while let Some(args) = parser.next_request().unwrap() {
                requests.push(args.to_vec());
            }
        }
        assert_eq!(
            requests,
            vec![
                strings(&["ECHO", "hello"]),
                strings(&["PING"]),
                strings(&["QUIT"])
            ]
        );
        assert_eq!(parser.pending_bytes(), 0);
        parser.feed(b"PING\r\nPI");
        assert_eq!(parser.pending_bytes(), 8);
        assert_eq!(parser.next_request().unwrap().unwrap().len(), 1);
        assert_eq!(parser.pending_bytes(), 2);
        parser.feed(b"NG\r\n");
        assert_eq!(parser.next_request().unwrap().unwrap().len(), 1);
        assert_eq!(parser.pending_bytes(), 0);
        parser.feed(b"PI");
        assert_eq!(parser.next_request(), Ok(None));
        assert_eq!(parser.buf, b"PI");
    }

    #[test]
    fn take_and_restore_buffer() {
        let mut parser = RequestParser::new(RequestLimits::default());
        parser.feed(b"*1\r\n$4\r\nPI");
        assert_eq!(parser.next_request(), Ok(None));
        let mut buf = parser.take_buffer();
        buf.extend_from_slice(b"NG\r\n");
        parser.restore_buffer(buf);
        assert_eq!(
            parser.next_request().unwrap().unwrap().to_vec(),
            strings(&["PING"])
        );
    }

    #[test]
    fn args_views() {
        let owned = OwnedArgs::from_args(["MSET", "a", "1", "b", "2"]);
        let args = owned.as_args();
        assert_eq!(args.len(), 5);
        assert_eq!(args.get(5), None);
        let pairs: Vec<_> = args.skip(1).pairs().collect();
        assert_eq!(pairs, vec![(&b"a"[..], &b"1"[..]), (b"b", b"2")]);
        assert!(args.skip(9).is_empty());
        assert_eq!(format!("{:?}", args.skip(3)), r#"["b", "2"]"#);
        assert_eq!(args.to_owned_args(), owned);
    }

    fn written(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out);
        out
    }

    #[test]
    fn writers_by_protocol() {
        use Protocol::{Resp2, Resp3};
        assert_eq!(written(|o| write_simple(o, "OK")), b"+OK\r\n");
        assert_eq!(written(|o| write_error(o, "ERR a\r\nb")), b"-ERR a  b\r\n");
        assert_eq!(
            written(|o| write_integer(o, i64::MIN)),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(written(|o| write_integer(o, 0)), b":0\r\n");
        assert_eq!(written(|o| write_bulk(o, b"")), b"$0\r\n\r\n");
        assert_eq!(written(|o| write_null(o, Resp2)), b"$-1\r\n");
        assert_eq!(written(|o| write_null(o, Resp3)), b"_\r\n");
        assert_eq!(written(|o| write_null_array(o, Resp2)), b"*-1\r\n");
        assert_eq!(written(|o| write_map_header(o, Resp2, 2)), b"*4\r\n");
        assert_eq!(written(|o| write_map_header(o, Resp3, 2)), b"%2\r\n");
        assert_eq!(written(|o| write_set_header(o, Resp3, 2)), b"~2\r\n");
        assert_eq!(written(|o| write_double(o, Resp3, 1.5)), b",1.5\r\n");
        assert_eq!(
            written(|o| write_double(o, Resp3, f64::NEG_INFINITY)),
            b",-inf\r\n"
        );
        assert_eq!(
            written(|o| write_double(o, Resp2, 1e300)),
            b"$5\r\n1e300\r\n"
        );
        assert_eq!(written(|o| write_bool(o, Resp2, true)), b":1\r\n");
        assert_eq!(written(|o| write_bool(o, Resp3, false)), b"#f\r\n");
        assert_eq!(
            written(|o| write_verbatim(o, Resp3, b"txt", b"a")),
            b"=5\r\ntxt:a\r\n"
        );
        assert_eq!(
            written(|o| write_verbatim(o, Resp2, b"txt", b"a")),
            b"$1\r\na\r\n"
        );
        let map = Reply::Map(vec![(Reply::bulk("k"), Reply::Array(vec![Reply::Null]))]);
        assert_eq!(
            written(|o| map.write(o, Resp2)),
            b"*2\r\n$1\r\nk\r\n*1\r\n$-1\r\n"
        );
        assert_eq!(
            written(|o| map.write(o, Resp3)),
            b"%1\r\n$1\r\nk\r\n*1\r\n_\r\n"
        );
    }

    /// An inline line that `sdssplitargs` splits back into `args`.
    fn quote_inline(args: &[Vec<u8>]) -> Vec<u8> {
        let mut line = Vec::new();
        for arg in args {
            line.extend_from_slice(b" \"");
            for byte in arg {
                line.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
            }
            line.extend_from_slice(b"\" ");
        }
        line.extend_from_slice(b"\r\n");
        line
    }

    fn arb_args() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 1..6)
    }

    proptest! {
        #[test]
        fn format_i64_round_trips(value in any::<i64>()) {
            let mut scratch = [0u8; 20];
            let text = format_i64(value, &mut scratch);
            let expected = value.to_string();
            prop_assert_eq!(text, expected.as_bytes());
            prop_assert_eq!(parse_i64(text), Some(value));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            input in prop::collection::vec(any::<u8>(), 0..300),
            chunk in 1usize..50,
        ) {
            let mut parser = RequestParser::new(small_limits());
            for piece in input.chunks(chunk) {
                parser.feed(piece);
                while let Ok(Some(args)) = parser.next_request() {
                    prop_assert!(!args.is_empty());
                }
            }
        }

        #[test]
        fn protocol_shaped_bytes_never_panic(
            pieces in prop::collection::vec(
                prop_oneof![
                    Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                    Just(b"\"".to_vec()), Just(b"'".to_vec()), Just(b"\\x".to_vec()),
                    Just(b" ".to_vec()), (0i64..100).prop_map(|n| n.to_string().into_bytes()),
                    Just(b"-1".to_vec()), Just(b"a".to_vec()),
                ],
                0..60,
            ),
        ) {
            let input = pieces.concat();
            let _ = parse_all(small_limits(), &input);
        }

        #[test]
        fn multibulk_round_trips_in_any_chunking(
            requests in prop::collection::vec(arb_args(), 1..4),
            chunk in 1usize..40,
        ) {
            let mut input = Vec::new();
            for args in &requests {
                write_request(&mut input, args);
            }
            let mut parser = RequestParser::new(RequestLimits::default());
            let mut parsed = Vec::new();
            for piece in input.chunks(chunk) {
                parser.feed(piece);
                while let Some(args) = parser.next_request().unwrap() {
                    parsed.push(args.to_vec());
                }
            }
            prop_assert_eq!(parsed, requests);
            prop_assert_eq!(parser.pending_bytes(), 0);
        }

        #[test]
        fn inline_round_trips(args in arb_args()) {
            prop_assert_eq!(one(&quote_inline(&args)).unwrap(), args);
        }

        #[test]
        fn truncation_is_never_an_error(args in arb_args(), inline in any::<bool>()) {
            let mut input = Vec::new();
            if inline {
                input = quote_inline(&args);
            } else {
                write_request(&mut input, &args);
            }
            for cut in 0..input.len() {
                let mut parser = RequestParser::new(RequestLimits::default());
                parser.feed(&input[..cut]);
                prop_assert_eq!(parser.next_request(), Ok(None), "cut at {}", cut);
            }
        }

        #[test]
        fn bit_flips_never_panic(args in arb_args(), flip in any::<prop::sample::Index>()) {
            let mut input = Vec::new();
            write_request(&mut input, &args);
            let bit = flip.index(input.len() * 8);
            input[bit / 8] ^= 1 << (bit % 8);
            let _ = parse_all(small_limits(), &input);
        }
    }
}
