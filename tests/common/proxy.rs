//! A TCP proxy for tests: sits between two nodes (or a client and a node)
//! on a free loopback port and forwards bytes both ways, or cuts the link.
//!
//! `Mode::Forward` pipes each accepted connection to the target;
//! `Mode::Drop` closes every open connection at once and accepts-then-
//! closes new ones (a partition that resets, not one that blackholes).
//! Threads: one accept loop, two pumps per connection; dropping the
//! `Proxy` closes everything and joins them all.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::free_port;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Drop,
}

/// One forwarded connection: both ends (to cut them) and its two pumps.
struct Link {
    client: TcpStream,
    upstream: TcpStream,
    pumps: [JoinHandle<()>; 2],
}

impl Link {
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

struct State {
    mode: Mode,
    links: Vec<Link>,
}

pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = (0..100)
            .find_map(|_| TcpListener::bind(("127.0.0.1", free_port())).ok())
            .expect("a free loopback port for the proxy");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Forward,
            links: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, target, state, stop))
        };
        Proxy {
            addr,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// The proxy's own address: point the client here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode; `Drop` also closes every open connection.
    pub fn set_mode(&self, mode: Mode) {
        let mut s = self.state.lock().unwrap();
        s.mode = mode;
        if mode == Mode::Drop {
            s.links.iter().for_each(Link::cut);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set_mode(Mode::Drop);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let links = std::mem::take(&mut self.state.lock().unwrap().links);
        for link in links {
            link.cut();
            for p in link.pumps {
                let _ = p.join();
            }
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => continue,
        };
        let _ = client.set_nonblocking(false);
        if state.lock().unwrap().mode == Mode::Drop {
            continue; // `client` closes here.
        }
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let mut s = state.lock().unwrap();
        // The mode may have changed while connecting: check under the lock
        // `set_mode` takes, so no link escapes a cut.
        if s.mode == Mode::Drop || stop.load(Ordering::SeqCst) {
            continue;
        }
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        ) else {
            continue;
        };
        // Forget finished links so a long test does not pile them up.
        s.links
            .retain(|l| !l.pumps.iter().all(JoinHandle::is_finished));
        s.links.push(Link {
            client: c3,
            upstream: u3,
            pumps: [
                std::thread::spawn(move || pump(client, u2)),
                std::thread::spawn(move || pump(upstream, c2)),
            ],
        });
    }
}

/// Copies `from` to `to` until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
