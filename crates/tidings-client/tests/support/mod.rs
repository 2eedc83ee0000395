//! Shared by the client's integration tests: a real tidings server on 127.0.0.1, stoppable and
//! restartable on the same port (kept by the test meanwhile: [`Port`]), and client options with
//! fast reconnects.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tidings_client::{ClientOptions, ClientOptionsBuilder, ConnectionState};
use tidings_server::Server;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A port kept across a server's restart (shared with tidings-server's tests).
#[path = "../../../tidings-server/tests/support/port.rs"]
mod port;

pub use port::Port;

/// A server on a loopback port; shut down on drop.
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    serving: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the server down (closing every session) and waits until its listener is closed;
    /// returns its port, kept (refusing connections) for a new server ([`start_on`]).
    pub async fn stop(mut self) -> Port {
        // Bound before the listener closes: the port is never free for another process.
        let port = Port::bind(self.addr);
        self.server.shutdown();
        if let Some(serving) = self.serving.take() {
            within(serving).await.unwrap().unwrap();
        }
        port
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

pub async fn start(server: Server) -> TestServer {
    start_on(server, Port::ephemeral()).await
}

/// Serves `server` on `port` (e.g. the one a stopped server kept).
pub async fn start_on(server: Server, port: Port) -> TestServer {
    serve_on(server, port.listen()).await
}

/// Serves `server` on `listener` (from [`Port::listen`], so that it can be stopped and kept).
pub async fn serve_on(server: Server, listener: TcpListener) -> TestServer {
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    let serving = tokio::spawn(async move { s.serve(listener).await });
    TestServer {
        server,
        addr,
        serving: Some(serving),
    }
}

/// Options for a client of `url` that reconnects quickly.
pub fn options(url: &str) -> ClientOptionsBuilder {
    init_tracing();
    ClientOptions::builder(url)
        .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200))
        .connect_timeout(Duration::from_secs(5))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Awaits `fut`, failing the test after 10 s.
pub async fn within<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("timed out after 10 s")
}

/// Waits until the client's state satisfies `pred`.
pub async fn wait_state(
    watch: &mut watch::Receiver<ConnectionState>,
    pred: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    within(watch.wait_for(|s| pred(s))).await.unwrap().clone()
}
