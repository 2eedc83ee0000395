//! The library quick start from the README: a `/chat` namespace with an auth middleware, a
//! typed event handler with an ack, and a server-to-client emit with ack.
//!
//! Run: `cargo run --example chat -p tidings-server`, then connect a socket.io client to
//! `http://127.0.0.1:3000/chat` with `auth: {token: "secret"}`.
//!
//! Everything below this comment is the README's library example, word for word (a test in
//! crates/tidings/tests/docs.rs compares them).

use serde::Deserialize;
use std::time::Duration;
use tidings_server::{ConnectError, Server, ServerConfig};

#[derive(Deserialize)]
struct Chat {
    room: String,
    text: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logs on stderr; without a subscriber, `tracing` (the library's logs too) prints nothing.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let server = Server::new(ServerConfig::default());
    let chat = server.of("/chat");
    chat.use_middleware(|req| async move {
        match req.auth.get("token").and_then(|t| t.as_str()) {
            Some("secret") => Ok(()),
            _ => Err(ConnectError::new("unauthorized")),
        }
    });
    chat.on_connect(|socket| {
        // A first room never meets max_rooms_per_socket; a join in a handler would answer
        // the client with the error.
        if let Err(e) = socket.join("lobby") {
            tracing::warn!(error = %e, "could not join the lobby");
        }
        socket.on_data("chat", |socket, msg: Chat, ack| async move {
            // to everyone in the room except the sender; encoded once for all of them
            let n = socket
                .to(msg.room.as_str())
                .emit("chat", &msg.text)
                .unwrap_or(0);
            if let Some(ack) = ack {
                let _ = ack.send(&serde_json::json!({ "ok": true, "recipients": n }));
            }
        });
        socket.on("ping-me", |socket, _event| async move {
            let reply = socket
                .emit_with_ack("ping", "are you there?", Duration::from_secs(5))
                .await;
            tracing::info!(?reply, "client answered");
        });
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!("listening on http://127.0.0.1:3000, namespace /chat");
    server.serve(listener).await
}
