//! A deliberately thin Socket.IO-over-WebSocket client for the load generator.
//!
//! `tidings-client` is the right client for applications (reconnect, resume, a task per
//! connection behind a handle), but a load generator holding 10,000–20,000 connections wants
//! one task per socket, no reconnect and no per-message decode beyond what a figure needs. So
//! the hot path here only looks at the first bytes of a frame (`2` ping, `42` event, `43` ack),
//! and the full `tidings_proto` codec is used where correctness matters more than cost: the
//! handshake, the packets we emit and the acks whose content we check.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tidings_proto::engine::{self, TextPacket};
use tidings_proto::packet::{Packet, PacketKind};
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

/// One WebSocket: Socket.IO (namespace `/`) or bare.
pub type Ws = WebSocketStream<TcpStream>;

/// How long any single handshake step may take before the connection counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens a TCP connection from `src` (a 127.0.0.x address, so that many clients do not exhaust
/// one address's ephemeral ports) and upgrades it to a WebSocket at `path`.
pub async fn open_ws(addr: SocketAddr, path: &str, src: Option<IpAddr>) -> Result<Ws> {
    let socket = TcpSocket::new_v4().context("socket")?;
    if let Some(ip) = src {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("bind {ip}"))?;
    }
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| anyhow!("tcp connect timed out"))?
        .context("tcp connect")?;
    stream.set_nodelay(true).context("nodelay")?;
    let uri = format!("ws://{addr}{path}");
    let (ws, _) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        ClientBuilder::new()
            .uri(&uri)
            .context("uri")?
            .connect_on(stream),
    )
    .await
    .map_err(|_| anyhow!("websocket upgrade timed out"))?
    .context("websocket upgrade")?;
    Ok(ws)
}

/// Connects to a Socket.IO server's namespace `/` over WebSocket only (`EIO=4`), with an
/// optional CONNECT auth payload, and returns once the CONNECT reply arrived.
pub async fn connect(
    addr: SocketAddr,
    path: &str,
    src: Option<IpAddr>,
    auth: Option<&Value>,
) -> Result<Ws> {
    let mut ws = open_ws(addr, &format!("{path}?EIO=4&transport=websocket"), src).await?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        bail!("expected an engine.io open packet, got {open:.60}");
    }
    let connect = Packet::connect("/", auth.cloned());
    ws.send(Message::text(format!("4{}", connect.encode())))
        .await
        .context("send CONNECT")?;
    loop {
        let text = next_text(&mut ws).await?;
        match text.as_bytes() {
            [b'4', b'0', ..] => return Ok(ws),
            [b'4', b'4', ..] => bail!("connect refused: {text:.200}"),
            // Anything else before the reply (a server may emit on connect) is skipped.
            _ => {}
        }
    }
}

/// The next text frame, answering Engine.IO pings on the way; an error at close or timeout.
pub async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        let msg = tokio::time::timeout(HANDSHAKE_TIMEOUT, ws.next())
            .await
            .map_err(|_| anyhow!("no frame within {HANDSHAKE_TIMEOUT:?}"))?
            .ok_or_else(|| anyhow!("connection closed"))?
            .context("websocket read")?;
        let Some(text) = msg.as_text() else {
            if msg.is_close() {
                bail!("connection closed by the server");
            }
            continue;
        };
        if text == "2" {
            ws.send(Message::text("3")).await.context("send pong")?;
            continue;
        }
        return Ok(text.to_owned());
    }
}

/// The encoded Engine.IO message of `emit(event, data)` with ack id `id`.
pub fn event_frame(event: &str, data: Value, id: Option<u64>) -> String {
    format!("4{}", Packet::event("/", event, vec![data], id, 0).encode())
}

/// Emits `event(data)` with ack id `id` and waits for that ack, skipping any other frames;
/// returns the ack's first argument.
pub async fn call(ws: &mut Ws, id: u64, event: &str, data: Value) -> Result<Value> {
    ws.send(Message::text(event_frame(event, data, Some(id))))
        .await
        .with_context(|| format!("send {event}"))?;
    loop {
        let text = next_text(ws).await?;
        if !text.starts_with("43") {
            continue;
        }
        let TextPacket::Message(inner) = engine::decode_text(&text).map_err(|e| anyhow!("{e}"))?
        else {
            continue;
        };
        let packet = Packet::decode(inner).map_err(|e| anyhow!("bad ack: {e}"))?;
        if packet.kind == PacketKind::Ack && packet.id == Some(id) {
            let first = match packet.data {
                Some(Value::Array(mut items)) if !items.is_empty() => items.swap_remove(0),
                _ => Value::Null,
            };
            return Ok(first);
        }
    }
}

/// Like [`call`], but fails unless the answer is tidings' `{ok:true,…}` (the peers' built-ins
/// in this crate answer the same shape).
pub async fn call_ok(ws: &mut Ws, id: u64, event: &str, data: Value) -> Result<Value> {
    let answer = call(ws, id, event, data).await?;
    if answer.get("ok") == Some(&Value::Bool(true)) {
        Ok(answer)
    } else {
        bail!("{event} refused: {answer}")
    }
}

/// The ack id of an event frame `42<id>[…]` on namespace `/`, if it has one.
pub fn event_ack_id(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("42")?;
    let end = rest.find('[')?;
    rest[..end].parse().ok()
}

/// The ack id of an ack frame `43<id>[…]`.
pub fn ack_id(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("43")?;
    let end = rest.find('[')?;
    rest[..end].parse().ok()
}

/// The unsigned integer following `key` (e.g. `"t":`) in `text`: how the generator reads the
/// send timestamp, step number and offset out of a frame without parsing the JSON.
pub fn find_u64(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
    text[start..start + digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_numbers_from_frames() {
        assert_eq!(event_ack_id(r#"4212["m",{"t":5}]"#), Some(12));
        assert_eq!(event_ack_id(r#"42["m",{"t":5}]"#), None);
        assert_eq!(ack_id(r#"437[{"ok":true}]"#), Some(7));
        assert_eq!(
            find_u64(r#"42["m",{"s":3,"t":12345,"p":"x"}]"#, r#""t":"#),
            Some(12345)
        );
        assert_eq!(find_u64(r#"{"offset":99}"#, r#""offset":"#), Some(99));
        assert_eq!(find_u64("{}", r#""t":"#), None);
    }

    #[test]
    fn encodes_events_like_socket_io() {
        let frame = event_frame("join", serde_json::json!({"room": "r"}), Some(3));
        assert_eq!(frame, r#"423["join",{"room":"r"}]"#);
    }
}
