//! RESP2 wire format for the load tool: encoding commands and decoding replies.
//!
//! Owns the byte-level codec only; no I/O. `conn.rs` feeds it the bytes read from
//! a socket. Commands go out as arrays of bulk strings (`*N\r\n$len\r\narg\r\n...`).
//! Replies understood: simple string `+`, error `-`, integer `:`, bulk `$` (with
//! `$-1` as null), array `*` (with `*-1` as null array).
//!
//! Invariants: decoding never panics and never allocates from an unbounded length
//! field: bulk lengths are bounded by `BULK_LEN_MAX`, array lengths by
//! `ARRAY_LEN_MAX` (and preallocation by `ARRAY_PREALLOC_MAX`), nesting by
//! `DEPTH_MAX`, and a header line by `LINE_LEN_MAX`.

use std::fmt;

/// Largest bulk string accepted (Redis's default `proto-max-bulk-len`).
pub const BULK_LEN_MAX: usize = 512 * 1024 * 1024;
/// Largest array accepted; the tool never asks for more than a few thousand elements.
pub const ARRAY_LEN_MAX: usize = 1 << 24;
/// Elements reserved up front for an array, whatever its announced length.
const ARRAY_PREALLOC_MAX: usize = 1024;
/// Deepest nesting of arrays accepted (EXEC inside nothing, SCAN has depth 2).
pub const DEPTH_MAX: usize = 16;
/// Longest header or simple line (without CRLF) accepted.
pub const LINE_LEN_MAX: usize = 64 * 1024;

/// One decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Value>),
}

impl Value {
    /// The error text if this is an error reply.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Value::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        }
    }

    /// Bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// An integer from an integer reply or a string holding a decimal integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Simple(b) | Value::Bulk(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(b) => write!(f, "{}", String::from_utf8_lossy(b)),
            Value::Error(b) => write!(f, "(error) {}", String::from_utf8_lossy(b)),
            Value::Int(i) => write!(f, "(integer) {i}"),
            Value::Bulk(b) => write!(f, "\"{}\"", String::from_utf8_lossy(b)),
            Value::Null => write!(f, "(nil)"),
            Value::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// A reply the decoder refuses; the connection must be dropped after it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("unknown RESP type byte 0x{byte:02x}")]
    TypeUnknown { byte: u8 },
    #[error("malformed RESP length or integer")]
    NumberInvalid,
    #[error("RESP length {len} exceeds the limit {len_max}")]
    LengthTooLarge { len: i64, len_max: usize },
    #[error("RESP line longer than {LINE_LEN_MAX} bytes")]
    LineTooLong,
    #[error("RESP bulk string not terminated by CRLF")]
    BulkUnterminated,
    #[error("RESP arrays nested deeper than {DEPTH_MAX}")]
    TooDeep,
}

/// Appends one command, encoded as an array of bulk strings, to `out`.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        push_decimal(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends the decimal digits of `n`.
pub fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Decodes one reply from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a reply, otherwise the reply and
/// the number of bytes it used.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut pos = 0;
    match decode_at(buf, &mut pos, 0)? {
        Some(v) => Ok(Some((v, pos))),
        None => Ok(None),
    }
}

fn decode_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    if depth > DEPTH_MAX {
        return Err(ProtocolError::TooDeep);
    }
    let Some(&type_byte) = buf.get(*pos) else {
        return Ok(None);
    };
    let Some(line) = read_line(buf, *pos + 1)? else {
        return Ok(None);
    };
    let line_end = *pos + 1 + line.len() + 2;
    match type_byte {
        b'+' => {
            *pos = line_end;
            Ok(Some(Value::Simple(line.to_vec())))
        }
        b'-' => {
            *pos = line_end;
            Ok(Some(Value::Error(line.to_vec())))
        }
        b':' => {
            let n = parse_i64(line)?;
            *pos = line_end;
            Ok(Some(Value::Int(n)))
        }
        b'$' => decode_bulk(buf, pos, line, line_end),
        b'*' => decode_array(buf, pos, line, line_end, depth),
        byte => Err(ProtocolError::TypeUnknown { byte }),
    }
}

fn decode_bulk(
    buf: &[u8],
    pos: &mut usize,
    line: &[u8],
    line_end: usize,
) -> Result<Option<Value>, ProtocolError> {
    let len = parse_i64(line)?;
    if len == -1 {
        *pos = line_end;
        return Ok(Some(Value::Null));
    }
    let len = bounded_len(len, BULK_LEN_MAX)?;
    let Some(end) = line_end.checked_add(len).and_then(|e| e.checked_add(2)) else {
        return Err(ProtocolError::LengthTooLarge {
            len: len as i64,
            len_max: BULK_LEN_MAX,
        });
    };
    if buf.len() < end {
        return Ok(None);
    }
    if &buf[end - 2..end] != b"\r\n" {
        return Err(ProtocolError::BulkUnterminated);
    }
    *pos = end;
    Ok(Some(Value::Bulk(buf[line_end..end - 2].to_vec())))
}

fn decode_array(
    buf: &[u8],
    pos: &mut usize,
    line: &[u8],
    line_end: usize,
    depth: usize,
) -> Result<Option<Value>, ProtocolError> {
    let len = parse_i64(line)?;
    if len == -1 {
        *pos = line_end;
        return Ok(Some(Value::Null));
    }
    let len = bounded_len(len, ARRAY_LEN_MAX)?;
    let mut items = Vec::with_capacity(len.min(ARRAY_PREALLOC_MAX));
    let mut cursor = line_end;
    for _ in 0..len {
        match decode_at(buf, &mut cursor, depth + 1)? {
            Some(v) => items.push(v),
            None => return Ok(None),
        }
    }
    *pos = cursor;
    Ok(Some(Value::Array(items)))
}

fn bounded_len(len: i64, len_max: usize) -> Result<usize, ProtocolError> {
    match usize::try_from(len) {
        Ok(n) if n <= len_max => Ok(n),
        _ => Err(ProtocolError::LengthTooLarge { len, len_max }),
    }
}

/// The bytes from `start` up to the next CRLF, or `None` if no CRLF arrived yet.
fn read_line(buf: &[u8], start: usize) -> Result<Option<&[u8]>, ProtocolError> {
    let rest = buf.get(start..).unwrap_or(&[]);
    let window = &rest[..rest.len().min(LINE_LEN_MAX + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(&rest[..i])),
        None if rest.len() >= LINE_LEN_MAX + 2 => Err(ProtocolError::LineTooLong),
        None => Ok(None),
    }
}

fn parse_i64(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(ProtocolError::NumberInvalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(bytes: &[u8]) -> Value {
        let (v, used) = decode(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        v
    }

    #[test]
    fn encodes_command() {
        let mut out = Vec::new();
        encode_command(&mut out, &["SET", "k", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn decodes_each_type() {
        assert_eq!(roundtrip(b"+OK\r\n"), Value::Simple(b"OK".to_vec()));
        assert_eq!(roundtrip(b"-ERR x\r\n"), Value::Error(b"ERR x".to_vec()));
        assert_eq!(roundtrip(b":-42\r\n"), Value::Int(-42));
        assert_eq!(roundtrip(b"$3\r\nabc\r\n"), Value::Bulk(b"abc".to_vec()));
        assert_eq!(roundtrip(b"$-1\r\n"), Value::Null);
        assert_eq!(roundtrip(b"*-1\r\n"), Value::Null);
        assert_eq!(
            roundtrip(b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n"),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::Bulk(b"x".to_vec())])
            ])
        );
    }

    #[test]
    fn truncation_at_every_offset_is_incomplete() {
        let full = b"*3\r\n$5\r\nhello\r\n:7\r\n*2\r\n+OK\r\n$-1\r\n";
        for cut in 0..full.len() {
            assert_eq!(decode(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(decode(full).unwrap().is_some());
    }

    #[test]
    fn rejects_bad_input_without_panic() {
        assert!(decode(b"?x\r\n").is_err());
        assert!(decode(b"$abc\r\n").is_err());
        assert!(decode(b"$-2\r\n").is_err());
        assert!(decode(b"$999999999999\r\n").is_err());
        assert!(decode(b"*99999999999\r\n").is_err());
        assert!(decode(b"$1\r\nabcd").is_err());
        let deep = "*1\r\n".repeat(DEPTH_MAX + 2);
        assert!(decode(deep.as_bytes()).is_err());
        let long = vec![b'+'; LINE_LEN_MAX + 10];
        assert!(decode(&long).is_err());
    }

    #[test]
    fn bit_flips_never_panic() {
        let full = b"*3\r\n$5\r\nhello\r\n:7\r\n*2\r\n+OK\r\n$-1\r\n".to_vec();
        for i in 0..full.len() {
            for bit in 0..8 {
                let mut b = full.clone();
                b[i] ^= 1 << bit;
                let _ = decode(&b);
            }
        }
    }
}
