//! Goal: the test proxy (`tests/common/proxy.rs`) forwards bytes both
//! ways, cuts open connections and closes new ones in `Drop` mode,
//! forwards again in `Forward` mode, and stops listening when dropped.
//! Method: an echo server on loopback behind a `Proxy`, plain std::net
//! clients; every read has a timeout, so a proxy that hangs fails the test.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::proxy::{Mode, Proxy};

/// An echo server on a loopback port (threads end with the test binary).
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 1024];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn echo(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    got
}

/// The peer closed `s`: a read ends (EOF or reset) instead of timing out.
fn assert_closed(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: read {n} bytes from a cut connection"),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{what}: still open after 5 s"
        ),
    }
}

#[test]
fn proxy_forwards_cuts_and_forwards_again() {
    let target = echo_server();
    let proxy = Proxy::start(target);
    assert_ne!(proxy.addr(), target);
    let mut a = connect(proxy.addr());
    assert_eq!(echo(&mut a, b"hello"), b"hello");
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(echo(&mut a, &big), big);

    proxy.set_mode(Mode::Drop);
    assert_closed(&mut a, "open connection after Drop");
    let mut b = connect(proxy.addr());
    assert_closed(&mut b, "new connection in Drop mode");

    proxy.set_mode(Mode::Forward);
    let mut c = connect(proxy.addr());
    assert_eq!(echo(&mut c, b"again"), b"again");

    let addr = proxy.addr();
    drop(proxy);
    assert_closed(&mut c, "connection after the proxy was dropped");
    assert!(
        TcpStream::connect(addr).is_err(),
        "a dropped proxy still listens"
    );
}
