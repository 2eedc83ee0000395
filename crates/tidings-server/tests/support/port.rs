//! A loopback port a test keeps for a server that it stops and starts again on the same
//! address. Picking a free port by binding and dropping a listener, or binding the old
//! address again after the server closed it, leaves a window in which another process can
//! take the port. Here every socket on the port has `SO_REUSEPORT` (allowed only to sockets of
//! the same user that all set it), so the next one is bound before the previous one closes and
//! the port is never free. While no server runs, the port is bound but not listening:
//! connecting is refused, as when a real server is gone.
//!
//! Shared by the tests of tidings-server and tidings-client (the latter includes this file
//! with `#[path]`).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// A bound, not listening, loopback port.
#[derive(Debug)]
pub struct Port {
    socket: TcpSocket,
    addr: SocketAddr,
}

impl Port {
    /// A free port chosen by the kernel.
    pub fn ephemeral() -> Port {
        Port::bind("127.0.0.1:0".parse().unwrap())
    }

    /// `addr` again, while the listener of a running server may still hold it (its listener
    /// must come from [`Port::listen`]).
    pub fn bind(addr: SocketAddr) -> Port {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.set_reuseport(true).unwrap();
        socket
            .bind(addr)
            .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
        let addr = socket.local_addr().unwrap();
        Port { socket, addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts listening: the listener of the next server.
    pub fn listen(self) -> TcpListener {
        self.socket.listen(1024).unwrap()
    }
}
