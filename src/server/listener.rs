//! Session cores: one thread per core in the core map, each with its own
//! compio (io_uring) runtime and its own `SO_REUSEPORT` listener on the
//! client port, so the kernel spreads connections over the cores and no
//! acceptor hands sockets across threads.
//!
//! Why compio: it is maintained (tokio-uring has had no maintainer since
//! 2025 and pins io-uring 0.6), runs one runtime per thread (our
//! thread-per-core model), and its completion-based TCP is io_uring
//! underneath. See README "Design choices" for the measurement.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::node::{Node, NodeError};

/// Binds every session core's listener (so a busy port fails start-up
/// here, with a clear error) and starts the session threads.
pub fn start(node: &Arc<Node>) -> Result<(), NodeError> {
    let addr = node.config.listen;
    for (i, &core) in node.config.core_map.sessions.iter().enumerate() {
        let std_listener = bind_reuseport(addr).map_err(|source| NodeError::Listen {
            addr: addr.to_string(),
            source,
        })?;
        let node = node.clone();
        let name = format!("session-{i}");
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                if let Err(e) = run_core(node, std_listener) {
                    tracing::error!(error = %e, "session core stopped");
                }
            })
            .map_err(|source| NodeError::Thread { name, source })?;
    }
    Ok(())
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn run_core(node: Arc<Node>, std_listener: std::net::TcpListener) -> std::io::Result<()> {
    let runtime = crate::io::net_runtime::network_runtime()?;
    let poll_for = std::time::Duration::from_micros(node.config.session_poll_us);
    let accept_loop = async move {
        let listener = compio::net::TcpListener::from_std(std_listener)?;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let open = node.connections.fetch_add(1, Ordering::AcqRel) + 1;
            let guard = ConnectionGuard(node.clone());
            if open > node.config.connections_max {
                node.metrics.connections_rejected.inc();
                compio::runtime::spawn(super::session::refuse(stream, guard)).detach();
                continue;
            }
            node.metrics.connections_accepted.inc();
            node.metrics.connections.inc();
            let _ = stream.set_nodelay(true);
            let node = node.clone();
            compio::runtime::spawn(crate::io::net_runtime::counted(async move {
                let result = super::session::serve(stream, node.clone()).await;
                node.metrics.connections.dec();
                drop(guard);
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection closed with an error");
                }
            }))
            .detach();
        }
    };
    // Polls before sleeping: see io::net_runtime, "Polling before sleeping".
    crate::io::net_runtime::block_on_polling(&runtime, accept_loop, poll_for)
}

/// Counts a connection as open until dropped.
pub struct ConnectionGuard(Arc<Node>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
