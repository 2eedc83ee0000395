//! The socketioxide peer: socketioxide 0.18 (crates.io) on hyper 1, doing what `tidings serve`
//! does in the room scenarios — the built-in `join` and `broadcast` events with tidings' ack
//! shape — with socketioxide's default configuration (as a user would run it).

use std::convert::Infallible;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use tokio::net::TcpListener;

/// Serves on 127.0.0.1:`port` until killed; prints `listening on http://ADDR/socket.io/` first.
pub async fn serve(port: u16) -> Result<()> {
    let (svc, io) = SocketIo::new_svc();
    // The handlers are registered in a connect *middleware*, which socketioxide awaits before it
    // sends the CONNECT reply. Its connect handlers are always spawned as tasks after the reply,
    // so a client that emits `join` as soon as it is connected (as the generator does) can
    // arrive before `socket.on("join")` exists and is silently ignored — a race an application
    // must avoid the same way; it is not what this benchmark measures.
    io.ns("/", (async |_: SocketRef| {}).with(register));
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

/// The built-in `join` and `broadcast` events, as `tidings serve` has them.
async fn register(socket: SocketRef) -> Result<(), Infallible> {
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
    Ok(())
}

fn bad_request() -> Value {
    json!({"ok": false, "error": {"code": "bad_request", "message": "bad payload"}})
}
