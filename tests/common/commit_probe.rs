//! Making a synchronous commit's wait observable: standbys stopped with
//! SIGSTOP (connected but silent, so nothing they confirm moves) until the
//! kernel reports them stopped, and raw RESP connections whose reply may
//! not come, read with a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{wait_until, NodeProc};

/// SIGSTOP, then waits until `/proc/PID/stat` says the process is stopped
/// (a signal is delivered asynchronously: a write sent before that could
/// still be confirmed by it).
pub fn stop(n: &NodeProc) {
    n.signal("STOP");
    let stat = format!("/proc/{}/stat", n.pid());
    wait_until(Duration::from_secs(10), "the process to stop", || {
        std::fs::read_to_string(&stat)
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_owned))
            })
            .is_some_and(|state| state == "T" || state == "t")
    });
}

pub fn cont(n: &NodeProc) {
    n.signal("CONT");
}

/// A RESP connection read with deadlines.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).unwrap(),
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(req.as_bytes()).unwrap();
    }

    /// One reply: `+OK`, `-ERR ...`, `:5` as they are; a bulk string as
    /// its value (`(nil)` for a null). `None` if it did not come within
    /// `within`.
    pub fn reply_within(&mut self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(reply) = self.take_reply() {
                return Some(reply);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the node closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Sends `args` and returns the reply (panics after 20 s).
    pub fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply_within(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no reply to {args:?} within 20 s"))
    }

    fn take_reply(&mut self) -> Option<String> {
        let line_end = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
        let (reply, used) = if let Some(len) = line.strip_prefix('$') {
            match len.parse::<i64>() {
                Ok(n) if n < 0 => ("(nil)".to_string(), line_end + 2),
                Ok(n) => {
                    let start = line_end + 2;
                    let end = start + n as usize;
                    if self.buf.len() < end + 2 {
                        return None;
                    }
                    (
                        String::from_utf8_lossy(&self.buf[start..end]).into_owned(),
                        end + 2,
                    )
                }
                Err(_) => panic!("bad bulk length {line:?}"),
            }
        } else {
            (line, line_end + 2)
        };
        self.buf.drain(..used);
        Some(reply)
    }
}

/// `CONFIG SET name value` on `n`; panics on an error reply.
pub fn config_set(n: &NodeProc, name: &str, value: &str) {
    let mut raw = Raw::connect(&n.addr());
    let reply = raw.call(&["CONFIG", "SET", name, value]);
    assert_eq!(reply, "+OK", "CONFIG SET {name} {value:?}");
}

/// `CONFIG GET name` on `n`.
pub fn config_get(n: &NodeProc, name: &str) -> String {
    let mut c = n.client();
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(&mut c)
        .unwrap();
    assert_eq!(v.len(), 2, "CONFIG GET {name}: {v:?}");
    v[1].clone()
}

/// The error a commit gets when its standbys did not confirm it in time.
pub const NOT_CONFIRMED: &str = "-ERR committed locally, not confirmed by standbys";

/// With `stopped` stopped, the rule in force on primary `p` cannot hold:
/// checks that a commit waits, that `synchronous_commit_timeout_ms` ends
/// the wait with its error, and that a waiting commit completes as soon as
/// the standbys run again. `prelude` runs first on the writing connection
/// (e.g. `CLIENT SYNC remote_write`). Leaves the timeout at 0 and every
/// standby running.
pub fn assert_commit_waits(p: &NodeProc, stopped: &[&NodeProc], prelude: &[&[&str]], case: &str) {
    for s in stopped {
        stop(s);
    }
    config_set(p, "synchronous_commit_timeout_ms", "300");
    let mut raw = Raw::connect(&p.addr());
    for cmd in prelude {
        assert_eq!(raw.call(cmd), "+OK", "{case}: {cmd:?}");
    }
    let t = Instant::now();
    let reply = raw.call(&["SET", &format!("{case}:timed"), "v"]);
    let took = t.elapsed();
    assert!(
        reply.starts_with(NOT_CONFIRMED),
        "{case}: a commit the rule cannot confirm got {reply:?} after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(280),
        "{case}: the timeout error came after only {took:?}"
    );
    config_set(p, "synchronous_commit_timeout_ms", "0");
    raw.send(&["SET", &format!("{case}:waits"), "v"]);
    let early = raw.reply_within(Duration::from_millis(600));
    assert_eq!(
        early, None,
        "{case}: a commit was acknowledged while the rule could not hold"
    );
    for s in stopped {
        cont(s);
    }
    let reply = raw.reply_within(Duration::from_secs(20));
    assert_eq!(
        reply.as_deref(),
        Some("+OK"),
        "{case}: the waiting commit did not complete once the standbys ran again"
    );
}

/// With `stopped` stopped, the rule still holds (or asks for no standby):
/// a commit completes. Resumes them after.
pub fn assert_commit_completes(
    p: &NodeProc,
    stopped: &[&NodeProc],
    prelude: &[&[&str]],
    case: &str,
) {
    for s in stopped {
        stop(s);
    }
    let mut raw = Raw::connect(&p.addr());
    for cmd in prelude {
        assert_eq!(raw.call(cmd), "+OK", "{case}: {cmd:?}");
    }
    raw.send(&["SET", &format!("{case}:completes"), "v"]);
    let reply = raw.reply_within(Duration::from_secs(10));
    for s in stopped {
        cont(s);
    }
    assert_eq!(
        reply.as_deref(),
        Some("+OK"),
        "{case}: the commit should not wait for the stopped standbys"
    );
}
