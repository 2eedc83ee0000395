//! The socketioxide peer: socketioxide 0.18 (crates.io) on hyper 1, doing what `tidings serve`
//! does in the room scenarios — the built-in `join` and `broadcast` events with tidings' ack
//! shape — with socketioxide's default configuration (as a user would run it).

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use tokio::net::TcpListener;

/// Serves on 127.0.0.1:`port` until killed; prints `listening on http://ADDR/socket.io/` first.
pub async fn serve(port: u16) -> Result<()> {
    let (svc, io) = SocketIo::new_svc();
    io.ns("/", async |socket: SocketRef| {
        socket.on(
            "join",
            async |socket: SocketRef, Data::<Value>(data), ack: AckSender| match data
                .get("room")
                .and_then(Value::as_str)
            {
                Some(room) => {
                    socket.join(room.to_owned());
                    let _ = ack.send(&json!({"ok": true}));
                }
                None => {
                    let _ = ack.send(&bad_request());
                }
            },
        );
        socket.on(
            "broadcast",
            async |socket: SocketRef, Data::<Value>(data), ack: AckSender| {
                let (Some(event), Some(payload)) =
                    (data.get("event").and_then(Value::as_str), data.get("data"))
                else {
                    let _ = ack.send(&bad_request());
                    return;
                };
                let result = match data.get("room").and_then(Value::as_str) {
                    Some(room) => socket.to(room.to_owned()).emit(event, payload).await,
                    None => socket.broadcast().emit(event, payload).await,
                };
                // A broadcast error means some recipients were skipped (a full socket buffer):
                // exactly what the completeness figure catches, so it is not hidden here.
                let _ = ack.send(&json!({"ok": result.is_ok()}));
            },
        );
    });
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .context("bind")?;
    println!("listening on http://{}/socket.io/", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

fn bad_request() -> Value {
    json!({"ok": false, "error": {"code": "bad_request", "message": "bad payload"}})
}
