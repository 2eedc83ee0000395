//! Serves exactly what the official Engine.IO v4 and Socket.IO v5 test suites expect
//! (`docs/engine.io-protocol/v4-test-suite` and `docs/socket.io-protocol/v5-test-suite` in the
//! socketio/socket.io repository). See docs/CONFORMANCE.md.
//!
//! - `/engine.io/`: a bare Engine.IO server that echoes every message (text as text, binary
//!   as binary) — the transport seam with an echo handler instead of Socket.IO.
//! - `/socket.io/`: namespaces `/` and `/custom`; on connect emits `auth` with the CONNECT
//!   payload; `message` → `message-back` with the same arguments; `message-with-ack` → ack
//!   with the same arguments.
//!
//! Run: `cargo run --release --example conformance` (listens on 127.0.0.1:3000; `PORT`
//! overrides).

use std::sync::Arc;
use std::time::Duration;

use tidings_proto::engine::Frame;
use tidings_server::engine::{
    CloseReason, Engine, EngineHandler, Inbound, Session, SessionHandler,
};
use tidings_server::{Server, ServerConfig, Socket};

struct Echo(Arc<Session>);

impl SessionHandler for Echo {
    fn on_message(&self, message: Inbound<'_>) {
        let frame = match message {
            Inbound::Text(text) => Frame::message(text),
            Inbound::Binary(data) => Frame::binary(data),
        };
        let _ = self.0.send(frame);
    }
    fn on_close(&self, _reason: CloseReason) {}
}

struct EchoEngine;

impl EngineHandler for EchoEngine {
    fn on_open(&self, session: &Arc<Session>) -> Arc<dyn SessionHandler> {
        Arc::new(Echo(session.clone()))
    }
}

fn suite_config(path: &str) -> ServerConfig {
    ServerConfig::builder()
        .path(path)
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .max_payload(1_000_000)
        .connect_timeout(Duration::from_millis(1000))
        .build()
        .unwrap_or_else(|e| panic!("conformance configuration: {e}"))
}

fn on_connect(socket: Socket) {
    let _ = socket.emit("auth", socket.auth());
    socket.on("message", |socket, event| async move {
        let (args, attachments, _) = event.into_parts();
        let _ = socket.emit_args("message-back", args, &attachments);
    });
    socket.on("message-with-ack", |_socket, event| async move {
        let (args, attachments, ack) = event.into_parts();
        if let Some(ack) = ack {
            let _ = ack.send_args(args, attachments);
        }
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);

    let server = Server::new(suite_config("/socket.io/"));
    server.of("/").on_connect(on_connect);
    server.of("/custom").on_connect(on_connect);

    let echo = Engine::new(
        suite_config("/engine.io/").engine_config(),
        Arc::new(EchoEngine),
    );

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("conformance server on http://127.0.0.1:{port} (/engine.io/ and /socket.io/)");
    server
        .serve_with(listener, move |server, req, addr| {
            let echo = echo.clone();
            async move {
                if echo.matches_path(req.uri().path()) {
                    echo.handle(req, addr).await
                } else {
                    server.handle(req, addr).await
                }
            }
        })
        .await
}
