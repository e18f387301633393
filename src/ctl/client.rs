//! A minimal blocking RESP client ([`Conn`]) and the parsing of `INFO`
//! text ([`parse_info`], [`standbys`]): all `tandemctl` needs to talk to a
//! node.
//!
//! Invariants: a reply is read only after its length is checked against
//! [`REPLY_BYTES_MAX`]; every read has a timeout, so no command hangs on a
//! node that stopped answering.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::CtlError;

/// Largest bulk reply accepted (INFO, digest): 64 MiB.
pub const REPLY_BYTES_MAX: u64 = 64 << 20;
/// How long a reply may take (a digest of a large node reads every page).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// INFO text as section -> key -> value.
pub type Info = BTreeMap<String, BTreeMap<String, String>>;

/// One connection to a node's client port.
pub struct Conn {
    host: String,
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Conn {
    /// Connects to `host` (HOST:PORT) and authenticates if `password`.
    pub fn open(host: &str, password: Option<&str>) -> Result<Conn, CtlError> {
        let stream = TcpStream::connect(host).map_err(|source| CtlError::Connect {
            host: host.to_string(),
            source,
        })?;
        Conn::with_stream(host, stream, password)
    }

    /// Like [`Conn::open`], giving up on the connect after `timeout`.
    pub fn open_timeout(
        host: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Conn, CtlError> {
        let connect_err = |source| CtlError::Connect {
            host: host.to_string(),
            source,
        };
        let addr = host
            .to_socket_addrs()
            .map_err(connect_err)?
            .next()
            .ok_or_else(|| {
                connect_err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the name has no address",
                ))
            })?;
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(connect_err)?;
        Conn::with_stream(host, stream, password)
    }

    fn with_stream(
        host: &str,
        stream: TcpStream,
        password: Option<&str>,
    ) -> Result<Conn, CtlError> {
        let io_err = |source| CtlError::Io {
            host: host.to_string(),
            source,
        };
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(io_err)?;
        let reader = BufReader::new(stream.try_clone().map_err(io_err)?);
        let mut conn = Conn {
            host: host.to_string(),
            reader,
            stream,
        };
        if let Some(p) = password {
            conn.call(&["AUTH", p])?;
        }
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn io_err(&self, source: std::io::Error) -> CtlError {
        CtlError::Io {
            host: self.host.clone(),
            source,
        }
    }

    /// Sets how long a reply may take.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), CtlError> {
        self.stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| self.io_err(e))
    }

    /// Sends a command without reading its reply.
    pub fn send(&mut self, args: &[&str]) -> Result<(), CtlError> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream
            .write_all(req.as_bytes())
            .map_err(|e| self.io_err(e))
    }

    /// Reads one reply line (without CRLF); `None` when the node closed
    /// the connection.
    pub fn read_line(&mut self) -> Result<Option<String>, CtlError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| self.io_err(e))?;
        Ok((n > 0).then(|| line.trim_end().to_string()))
    }

    /// Sends a command; returns a simple, integer or bulk reply as text (a
    /// nil bulk as the empty string). An error reply is [`CtlError::Refused`].
    pub fn call(&mut self, args: &[&str]) -> Result<String, CtlError> {
        self.send(args)?;
        let line = self.read_line()?.ok_or_else(|| CtlError::Protocol {
            host: self.host.clone(),
            reply: "(connection closed)".into(),
        })?;
        let (kind, rest) = match line.char_indices().nth(1) {
            Some((i, _)) => line.split_at(i),
            None => (line.as_str(), ""),
        };
        match kind {
            "+" | ":" => Ok(rest.to_string()),
            "-" => Err(CtlError::Refused {
                host: self.host.clone(),
                command: args.first().copied().unwrap_or_default().to_string(),
                message: rest.to_string(),
            }),
            "$" if rest == "-1" => Ok(String::new()),
            "$" => {
                let len: u64 = rest.parse().map_err(|_| CtlError::Protocol {
                    host: self.host.clone(),
                    reply: line.clone(),
                })?;
                if len > REPLY_BYTES_MAX {
                    return Err(CtlError::ReplyTooLarge {
                        host: self.host.clone(),
                        len,
                        max: REPLY_BYTES_MAX,
                    });
                }
                // Bounded above, so the cast and the allocation are safe.
                let mut buf = vec![0u8; len as usize + 2];
                self.reader
                    .read_exact(&mut buf)
                    .map_err(|e| self.io_err(e))?;
                buf.truncate(len as usize);
                Ok(String::from_utf8_lossy(&buf).into_owned())
            }
            _ => Err(CtlError::Protocol {
                host: self.host.clone(),
                reply: line.clone(),
            }),
        }
    }

    /// `INFO <sections...>`, parsed.
    pub fn info(&mut self, sections: &[&str]) -> Result<Info, CtlError> {
        let mut args = vec!["INFO"];
        args.extend_from_slice(sections);
        Ok(parse_info(&self.call(&args)?))
    }
}

/// Whether a node answers `PING` on `host` within `timeout` (`+PONG`, or
/// `-NOAUTH` from a node with a password: it is up either way).
pub fn ping(host: &str, timeout: Duration) -> bool {
    let Ok(mut conn) = Conn::open_timeout(host, None, timeout) else {
        return false;
    };
    if conn.set_timeout(timeout).is_err() {
        return false;
    }
    match conn.call(&["PING"]) {
        Ok(reply) => reply == "PONG",
        Err(CtlError::Refused { message, .. }) => message.starts_with("NOAUTH"),
        Err(_) => false,
    }
}

/// INFO text as section -> key -> value (section names in lower case;
/// lines before any `# Section` header go to `info`).
pub fn parse_info(text: &str) -> Info {
    let mut out = Info::new();
    let mut section = String::from("info");
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("# ") {
            section = name.to_ascii_lowercase();
        } else if let Some((k, v)) = line.split_once(':') {
            out.entry(section.clone())
                .or_default()
                .insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// The `standbyN:name=a,state=b,...` lines of a primary's replication
/// section as objects, in N order.
pub fn standbys(repl: &BTreeMap<String, String>) -> Vec<BTreeMap<String, String>> {
    let mut list: Vec<(usize, BTreeMap<String, String>)> = repl
        .iter()
        .filter_map(|(k, v)| {
            let n: usize = k.strip_prefix("standby")?.parse().ok()?;
            let fields = v
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(a, b)| (a.to_string(), b.to_string()));
            Some((n, fields.collect()))
        })
        .collect();
    list.sort_by_key(|(n, _)| *n);
    list.into_iter().map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_sections_and_standby_lines() {
        let text = "# Server\r\nprocess_id:42\r\n\r\n# Replication\r\nrole:primary\r\n\
                    standby10:name=b,state=catchup\r\nstandby2:name=a,state=streaming\r\n";
        let info = parse_info(text);
        assert_eq!(info["server"]["process_id"], "42");
        assert_eq!(info["replication"]["role"], "primary");
        let list = standbys(&info["replication"]);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["name"], "a");
        assert_eq!(list[1]["state"], "catchup");
    }
}
