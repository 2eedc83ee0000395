//! The physical-limit reference: a WebSocket broadcast server with no Socket.IO framing.
//!
//! Same transport crate as tidings (tokio-websockets), one unbounded queue and one writer task
//! per connection that batches whatever is queued into one flush — the least a broadcast server
//! can do. Its whole protocol, text frames only:
//! - `j<room>` joins `room`; answered `j`.
//! - `b<room>\n<payload>` sends `<payload>` unchanged to every member of `room` but the sender.
//!
//! Nothing is dropped (queues are unbounded): this is the ceiling, not a production design.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::RwLock;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_websockets::{Message, ServerBuilder};

type Rooms = RwLock<HashMap<String, Vec<(u64, UnboundedSender<Message>)>>>;

/// Serves on 127.0.0.1:`port` until killed; prints `listening on http://ADDR/` first.
pub async fn serve(port: u16) -> Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .context("bind")?;
    println!("listening on http://{}/", listener.local_addr()?);
    let rooms: Arc<Rooms> = Arc::default();
    let next_id = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE at the fd limit: wait instead of spinning on accept.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let rooms = rooms.clone();
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = connection(stream, id, &rooms).await {
                eprintln!("connection {id}: {e:#}");
            }
            // Leave every room.
            let mut map = rooms.write();
            for members in map.values_mut() {
                members.retain(|(m, _)| *m != id);
            }
        });
    }
}

async fn connection(stream: TcpStream, id: u64, rooms: &Rooms) -> Result<()> {
    stream.set_nodelay(true)?;
    let (_, ws) = ServerBuilder::new().accept(stream).await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.feed(msg).await.is_err() {
                return;
            }
            while let Ok(msg) = rx.try_recv() {
                if sink.feed(msg).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        if msg.is_close() {
            break;
        }
        let payload = Bytes::from(msg.into_payload());
        match payload.first() {
            Some(b'j') => {
                let room = String::from_utf8_lossy(&payload[1..]).into_owned();
                rooms
                    .write()
                    .entry(room)
                    .or_default()
                    .push((id, tx.clone()));
                let _ = tx.send(Message::text("j"));
            }
            Some(b'b') => {
                let Some(nl) = payload.iter().position(|&b| b == b'\n') else {
                    continue;
                };
                let room = std::str::from_utf8(&payload[1..nl]).unwrap_or_default();
                let body = payload.slice(nl + 1..);
                let map = rooms.read();
                if let Some(members) = map.get(room) {
                    for (member, member_tx) in members {
                        if *member != id {
                            let _ = member_tx.send(Message::text(body.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    drop(tx);
    writer.abort();
    Ok(())
}
