//! Starting and stopping node processes on this machine (`tandemctl stop`).
//!
//! Invariants: a stop returns success only once the node no longer accepts
//! connections; every wait is bounded.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::client::Conn;
use super::CtlError;

/// How long a clean stop may take before we give up waiting.
pub const STOP_WAIT_DEFAULT: Duration = Duration::from_secs(60);

/// Clean shutdown of the node at `host` (SHUTDOWN: in-flight commits
/// finish, checkpoint, exit 0); returns once it stops accepting
/// connections, or fails after `wait`.
pub fn stop(host: &str, password: Option<&str>, wait: Duration) -> Result<(), CtlError> {
    let mut conn = Conn::open(host, password)?;
    conn.send(&["SHUTDOWN"])?;
    // The node closes the connection when it stops; a reply means it did not.
    if let Ok(Some(line)) = conn.read_line() {
        return Err(CtlError::StopRefused {
            host: host.to_string(),
            reply: line,
        });
    }
    let deadline = Instant::now() + wait;
    while TcpStream::connect(host).is_ok() {
        if Instant::now() > deadline {
            return Err(CtlError::StillAccepting {
                host: host.to_string(),
                secs: wait.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
