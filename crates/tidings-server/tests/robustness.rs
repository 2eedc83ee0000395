//! Hostile and broken clients, spoken to at the protocol level: each gets its documented answer
//! (a close, a status code) while a well-behaved client connected at the same time keeps being
//! served. And the slow-client policy: disconnect with a reason, never skip a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tidings_server::engine::CloseReason;
use tidings_server::{DisconnectReason, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_websockets::{ClientBuilder, Message};

type Ws =
    tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// A raw Engine.IO/Socket.IO client over WebSocket, connected to namespace `/`.
struct RawClient {
    ws: Ws,
}

impl RawClient {
    async fn connect(addr: std::net::SocketAddr) -> RawClient {
        let uri = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = ClientBuilder::from_uri(uri.parse().unwrap())
            .connect()
            .await
            .unwrap();
        let mut client = RawClient { ws };
        let open = client.next_text().await.unwrap();
        assert!(open.starts_with("0{\"sid\":"), "open packet: {open}");
        client.send_text("40").await;
        let reply = client.next_text().await.unwrap();
        assert!(reply.starts_with("40{\"sid\":"), "connect reply: {reply}");
        client
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next text message that is not a ping (answered) or a `welcome` event; None once
    /// the server closed the connection.
    async fn next_text(&mut self) -> Option<String> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server went silent")?;
            let msg = msg.ok()?;
            if msg.is_close() {
                return None;
            }
            let Some(text) = msg.as_text() else { continue };
            if text == "2" {
                self.send_text("3").await;
                continue;
            }
            if text.starts_with("42[\"welcome\"") {
                continue;
            }
            return Some(text.to_owned());
        }
    }

    /// Waits for the server to close the connection; returns the close code when one came.
    async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server did not close")
            {
                None | Some(Err(_)) => return None,
                Some(Ok(msg)) => {
                    if let Some((code, _)) = msg.as_close() {
                        return Some(code.into());
                    }
                }
            }
        }
    }

    /// Proves the connection still works: an echo round trip.
    async fn assert_served(&mut self, marker: &str) {
        self.send_text(&format!(r#"42["echo","{marker}"]"#)).await;
        assert_eq!(
            self.next_text().await.as_deref(),
            Some(format!(r#"42["echo-back","{marker}"]"#).as_str())
        );
    }
}

async fn interop(max_payload: usize) -> support::TestServer {
    let config = support::interop_config()
        .max_payload(max_payload)
        .build()
        .unwrap();
    support::start(support::interop_app(config)).await
}

#[tokio::test]
async fn malformed_packets_close_only_their_own_connection() {
    let server = interop(100_000).await;
    let mut good = RawClient::connect(server.addr).await;
    let cases: &[&[&str]] = &[
        &["abc"],                                           // unknown engine packet type
        &["4abc"],                                          // unknown socket.io packet type
        &["42{}"],                                          // event payload is not an array
        &["42abc[\"a\"]"],                                  // garbage where the ack id goes
        &["42[\"a\""],                                      // truncated JSON
        &["42[]"],                                          // event without a name
        &["42[\"disconnect\"]"],                            // reserved event name
        &["451-[\"a\",{\"_placeholder\":true,\"num\":3}]"], // placeholder beyond the attachments
        &["451-[\"a\",{\"_placeholder\":true,\"num\":0}]", "42[\"b\"]"], // text where binary was due
        &["2"], // the client may not ping in v4
        &["0"], // nor open
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut bad = RawClient::connect(server.addr).await;
        for text in *case {
            bad.send_text(text).await;
        }
        bad.closed().await;
        good.assert_served(&format!("after case {i}")).await;
    }
    // A binary frame with no binary packet announced.
    let mut bad = RawClient::connect(server.addr).await;
    bad.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    bad.closed().await;
    good.assert_served("after stray binary").await;
    assert!(server.server.stats().protocol_errors > cases.len() as u64);
}

/// Node's parser accepts an ACK without an argument list (`43123`) and calls the ack callback
/// with no arguments; so does tidings (issue 18, part 5). Before, it closed the connection.
#[tokio::test]
async fn an_ack_without_arguments_settles_the_ack() {
    let server = interop(100_000).await;
    let mut client = RawClient::connect(server.addr).await;
    // Ask the server to emit `ask` with an ack id and to report the reply it gets.
    client
        .send_text(r#"427["request-ack",{"event":"ask","timeoutMs":5000}]"#)
        .await;
    let ask = client.next_text().await.expect("the server's question");
    let id = ask
        .strip_prefix("42")
        .and_then(|rest| rest.strip_suffix(r#"["ask",null]"#))
        .unwrap_or_else(|| panic!("unexpected packet {ask}"));
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "{ask}"
    );
    client.send_text(&format!("43{id}")).await;
    assert_eq!(
        client.next_text().await.as_deref(),
        Some(r#"437[{"ok":true,"reply":[]}]"#)
    );
    client.assert_served("after the bare ack").await;
    assert_eq!(server.server.stats().protocol_errors, 0);
}

/// A raw WebSocket with its Engine.IO open packet read, and no namespace joined.
async fn raw_ws(addr: std::net::SocketAddr) -> RawClient {
    let uri = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (ws, _) = ClientBuilder::from_uri(uri.parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut client = RawClient { ws };
    let open = client.next_text().await.unwrap();
    assert!(open.starts_with("0{\"sid\":"), "open packet: {open}");
    client
}

impl RawClient {
    async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next binary message, decoded as a msgpack packet (pings answered).
    async fn next_msgpack(&mut self) -> tidings_proto::packet::Packet {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server went silent")
                .expect("connection closed")
                .unwrap();
            if msg.as_text() == Some("2") {
                self.send_text("3").await;
                continue;
            }
            assert!(msg.is_binary(), "expected a binary message, got {msg:?}");
            let bytes = tidings_proto::Bytes::copy_from_slice(&msg.into_payload());
            return tidings_proto::msgpack::decode(&bytes).unwrap().0;
        }
    }
}

fn msgpack_server_config() -> ServerConfig {
    support::interop_config()
        .parser(tidings_server::Parser::Msgpack)
        .build()
        .unwrap()
}

/// `--parser msgpack`: a CONNECT in the default encoding gets a CONNECT_ERROR the client can
/// read (text) naming both parsers; any other text packet closes the connection. Binary that
/// is no msgpack packet closes it too. Each is counted.
#[tokio::test]
async fn msgpack_server_refuses_the_default_parser() {
    use tidings_proto::msgpack;
    use tidings_proto::packet::{Packet, PacketKind};
    let server = support::start(support::interop_app(msgpack_server_config())).await;

    let mut json = raw_ws(server.addr).await;
    json.send_text("40").await;
    assert_eq!(
        json.next_text().await.as_deref(),
        Some(
            r#"44{"message":"parser mismatch: this server speaks socket.io-msgpack-parser, this client socket.io-parser"}"#
        )
    );
    json.send_text(r#"42["echo","x"]"#).await;
    json.closed().await;

    let mut good = raw_ws(server.addr).await;
    good.send_binary(msgpack::encode(&Packet::connect("/", None), &[]))
        .await;
    let reply = good.next_msgpack().await;
    assert_eq!(reply.kind, PacketKind::Connect);
    assert!(reply.data.as_ref().unwrap()["sid"].is_string(), "{reply:?}");
    // The welcome event, then an echo round trip with binary inside.
    assert_eq!(good.next_msgpack().await.event_name(), Some("welcome"));
    let echo = Packet::event(
        "/",
        "echo",
        vec![tidings_proto::packet::placeholder(0)],
        None,
        1,
    );
    good.send_binary(msgpack::encode(
        &echo,
        &[tidings_proto::Bytes::from_static(b"\x00\xff")],
    ))
    .await;
    let back = good.next_msgpack().await;
    assert_eq!(back.event_name(), Some("echo-back"));
    assert_eq!(back.attachments, 1);

    for garbage in [vec![1u8, 2, 3], b"\x82\xa4type\x09\xa3nsp\xa1/".to_vec()] {
        let mut bad = raw_ws(server.addr).await;
        bad.send_binary(garbage).await;
        bad.closed().await;
    }
    assert_eq!(server.server.stats().protocol_errors, 4);
}

/// The default parser: a msgpack CONNECT gets a msgpack CONNECT_ERROR naming both parsers,
/// and another msgpack packet closes the connection.
#[tokio::test]
async fn default_server_refuses_msgpack() {
    use tidings_proto::msgpack;
    use tidings_proto::packet::{Packet, PacketKind};
    let server = interop(100_000).await;
    let mut client = raw_ws(server.addr).await;
    client
        .send_binary(msgpack::encode(&Packet::connect("/", None), &[]))
        .await;
    let reply = client.next_msgpack().await;
    assert_eq!(reply.kind, PacketKind::ConnectError);
    assert_eq!(
        reply.data.unwrap()["message"],
        "parser mismatch: this server speaks socket.io-parser, this client socket.io-msgpack-parser"
    );
    let event = Packet::event("/", "echo", vec![], None, 0);
    client.send_binary(msgpack::encode(&event, &[])).await;
    client.closed().await;
    assert_eq!(server.server.stats().protocol_errors, 2);
}

#[tokio::test]
async fn oversized_websocket_message_is_closed_with_1009() {
    let server = interop(1_000).await;
    let mut good = RawClient::connect(server.addr).await;
    let mut bad = RawClient::connect(server.addr).await;
    let big = format!(r#"42["echo","{}"]"#, "x".repeat(2_000));
    bad.send_text(&big).await;
    assert_eq!(bad.closed().await, Some(1009));
    good.assert_served("still here").await;
}

/// Sends one raw HTTP/1.1 request and returns the status code and body.
async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn oversized_polling_body_gets_413_and_closes_that_session() {
    let server = interop(1_000).await;
    let mut good = RawClient::connect(server.addr).await;
    let (status, body) = http(
        server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let open: Value = serde_json::from_str(body.trim_start_matches('0')).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, _) = http(
        server.addr,
        "POST",
        &path,
        format!("4{}", "x".repeat(2_000)).as_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    // The session is gone: its sid is unknown now.
    let (status, body) = http(server.addr, "GET", &path, b"").await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    good.assert_served("after 413").await;
}

#[tokio::test]
async fn bad_handshakes_get_engine_errors() {
    let server = interop(100_000).await;
    let cases = [
        (
            "/socket.io/?EIO=3&transport=polling",
            r#"{"code":5,"message":"Unsupported protocol version"}"#,
        ),
        (
            "/socket.io/?EIO=4&transport=carrier-pigeon",
            r#"{"code":0,"message":"Transport unknown"}"#,
        ),
        (
            "/socket.io/?EIO=4&transport=polling&sid=nope",
            r#"{"code":1,"message":"Session ID unknown"}"#,
        ),
    ];
    for (path, expected) in cases {
        let (status, body) = http(server.addr, "GET", path, b"").await;
        assert_eq!((status, body.as_str()), (400, expected), "{path}");
    }
    let (status, body) = http(
        server.addr,
        "POST",
        "/socket.io/?EIO=4&transport=polling",
        b"40",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"code":2,"message":"Bad handshake method"}"#)
    );
}

/// One raw HTTP/1.1 request; the status and the raw body bytes.
async fn http_bytes(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response[split + 4..].to_vec())
}

/// Without `allow_eio3`, an Engine.IO v3 client gets the same 400 on both transports.
#[tokio::test]
async fn eio3_is_refused_without_the_flag() {
    let server = interop(100_000).await;
    let expected = r#"{"code":5,"message":"Unsupported protocol version"}"#;
    let (status, body) = http(
        server.addr,
        "GET",
        "/socket.io/?EIO=3&transport=polling",
        b"",
    )
    .await;
    assert_eq!((status, body.as_str()), (400, expected));
    let uri = format!("ws://{}/socket.io/?EIO=3&transport=websocket", server.addr);
    let refused = ClientBuilder::from_uri(uri.parse().unwrap())
        .connect()
        .await;
    assert!(refused.is_err(), "a v3 WebSocket was accepted");
}

/// Engine.IO v3 long-polling at the byte level, as a browser's socket.io-client 2.x speaks it
/// (binary payloads; the Node client asks for base64 and is tested in interop_v2.rs): the
/// length-prefixed handshake with the implicit CONNECT to `/`, a client ping answered with a
/// pong, a binary event in a binary payload echoed back in one.
#[tokio::test]
async fn eio3_polling_payloads() {
    let config = support::interop_config().allow_eio3(true).build().unwrap();
    let server = support::start(support::interop_app(config)).await;
    let (status, body) = http_bytes(
        server.addr,
        "GET",
        "/socket.io/?EIO=3&transport=polling&clientId=raw",
        "text/plain",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    // `<len>:0{…}2:40<len>:42["welcome",…]`: the open packet, the CONNECT reply without data.
    let (len, rest) = text.split_once(':').unwrap();
    let open_len: usize = len.parse().unwrap();
    let (open, rest) = rest.split_at(open_len);
    assert!(open.starts_with("0{\"sid\":\""), "{text}");
    assert!(rest.starts_with("2:40"), "{text}");
    assert!(rest.contains(r#"42["welcome",{"sid":"#), "{text}");
    assert!(rest.contains(r#""auth":{"clientId":"raw"}"#), "{text}");
    let sid: Value = serde_json::from_str(&open[1..]).unwrap();
    let path = format!(
        "/socket.io/?EIO=3&transport=polling&sid={}",
        sid["sid"].as_str().unwrap()
    );

    // The client pings; the server answers.
    let (status, _) = http_bytes(server.addr, "POST", &path, "text/plain", b"1:2").await;
    assert_eq!(status, 200);
    let (_, body) = http_bytes(server.addr, "GET", &path, "text/plain", b"").await;
    assert_eq!(body, b"1:3");

    // A binary event as a binary payload: the header as text, the attachment as binary.
    let header = br#"451-["echo",{"_placeholder":true,"num":0}]"#;
    let mut post = vec![0u8];
    post.extend(header.len().to_string().bytes().map(|d| d - b'0'));
    post.push(255);
    post.extend_from_slice(header);
    post.extend_from_slice(&[1, 3, 255, 4, 0xbe, 0xef]);
    let (status, _) = http_bytes(
        server.addr,
        "POST",
        &path,
        "application/octet-stream",
        &post,
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = http_bytes(server.addr, "GET", &path, "text/plain", b"").await;
    let echo = br#"451-["echo-back",{"_placeholder":true,"num":0}]"#;
    let mut expected = vec![0u8];
    expected.extend(echo.len().to_string().bytes().map(|d| d - b'0'));
    expected.push(255);
    expected.extend_from_slice(echo);
    expected.extend_from_slice(&[1, 3, 255, 4, 0xbe, 0xef]);
    assert_eq!(body, expected);
    // With b64=1 the same comes as text.
    let (status, _) = http_bytes(
        server.addr,
        "POST",
        &path,
        "application/octet-stream",
        &post,
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = http_bytes(
        server.addr,
        "GET",
        &format!("{path}&b64=1"),
        "text/plain",
        b"",
    )
    .await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("6:b4vu8="), "{text}");
    assert_eq!(server.server.stats().protocol_errors, 0);
}

/// In Engine.IO v3 the client pings: the server sends no ping, and closes a session whose
/// client stays silent for ping interval + ping timeout.
#[tokio::test]
async fn eio3_silent_client_times_out() {
    let config = support::interop_config()
        .allow_eio3(true)
        .ping_interval(Duration::from_millis(200))
        .ping_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let server = support::start(support::interop_app(config)).await;
    let uri = format!("ws://{}/socket.io/?EIO=3&transport=websocket", server.addr);
    let (mut ws, _) = ClientBuilder::from_uri(uri.parse().unwrap())
        .connect()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut texts = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no close");
        match msg {
            Some(Ok(msg)) if msg.is_close() => break,
            Some(Ok(msg)) => texts.extend(msg.as_text().map(str::to_owned)),
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    assert!(
        texts.iter().all(|t| t != "2"),
        "the server pinged: {texts:?}"
    );
    assert!(
        texts.first().is_some_and(|t| t.starts_with("0{")),
        "{texts:?}"
    );
    assert_eq!(texts.get(1).map(String::as_str), Some("40"));
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
}

/// A member that stops reading is disconnected with the reason `slow client` once its buffer
/// is full; every other member receives every message of the broadcast, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_client_is_disconnected_never_skipped() {
    const MESSAGES: usize = 3_000;
    let config = ServerConfig::builder()
        .max_payload(64 * 1024)
        .max_buffered_bytes(256 * 1024)
        .builtin_events(true)
        .build()
        .unwrap();
    let server = Server::new(config);
    let (tx, mut disconnects) = tokio::sync::mpsc::unbounded_channel();
    server.of("/").on_connect(move |socket| {
        let tx = tx.clone();
        socket.on_disconnect(move |socket, reason| async move {
            let _ = tx.send((socket.id(), reason));
        });
    });
    let running = support::start(server.clone()).await;

    let mut slow = RawClient::connect(running.addr).await;
    let mut fast = RawClient::connect(running.addr).await;
    for client in [&mut slow, &mut fast] {
        client.send_text(r#"420["join",{"room":"crowd"}]"#).await;
        assert_eq!(
            client.next_text().await.as_deref(),
            Some(r#"430[{"ok":true}]"#)
        );
    }
    // From here on `slow` reads nothing: the kernel buffers fill, then its outbound buffer.
    let padding = "p".repeat(8 * 1024);
    // The fast member reports its progress; the broadcaster never runs more than WINDOW
    // messages (128 KiB, half its buffer) ahead of it, so on a loaded machine the fast member
    // stays within its budget while the slow one, reading nothing, overflows.
    const WINDOW: usize = 16;
    let (progress, mut received) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut next = 0usize;
        while next < MESSAGES {
            let text = fast
                .next_text()
                .await
                .expect("fast client was disconnected");
            let expected = format!(r#"42["tick",{{"i":{next},"pad":"#);
            assert!(
                text.starts_with(&expected),
                "message {next} out of order or missing: {}",
                &text[..40.min(text.len())]
            );
            next += 1;
            let _ = progress.send(next);
        }
        next
    });
    for i in 0..MESSAGES {
        if i >= WINDOW {
            tokio::time::timeout(WAIT, received.wait_for(|n| i - n < WINDOW))
                .await
                .expect("the fast member stopped reading")
                .expect("the fast member's reader ended");
        }
        server
            .of("/")
            .to("crowd")
            .emit("tick", &json!({ "i": i, "pad": padding }))
            .unwrap();
        if i % 64 == 0 {
            // Let the writers run between bursts, as real publishers do.
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(reader.await.unwrap(), MESSAGES);
    let (_, reason) = tokio::time::timeout(WAIT, disconnects.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, DisconnectReason::Transport(CloseReason::SlowClient));
    assert_eq!(server.stats().slow_client_disconnects, 1);
    drop(slow);
}

#[tokio::test]
async fn heartbeat_closes_a_silent_client_and_keeps_the_ones_that_answer() {
    let config = support::interop_config()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let server = support::start(support::interop_app(config)).await;
    let mut answering = RawClient::connect(server.addr).await;
    let uri = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let (mut silent, _) = ClientBuilder::from_uri(uri.parse().unwrap())
        .connect()
        .await
        .unwrap();

    // The answering client goes through three ping rounds: it is never closed.
    let mut rounds = 0;
    while rounds < 3 {
        let msg = tokio::time::timeout(WAIT, answering.ws.next())
            .await
            .expect("no ping came")
            .expect("the answering client was closed")
            .unwrap();
        if msg.as_text() == Some("2") {
            answering.send_text("3").await;
            rounds += 1;
        }
    }

    // The silent one got exactly one ping, then the close.
    let mut pings = 0;
    loop {
        match tokio::time::timeout(WAIT, silent.next())
            .await
            .expect("the silent client was not closed")
        {
            None | Some(Err(_)) => break,
            Some(Ok(msg)) if msg.is_close() => break,
            Some(Ok(msg)) => pings += usize::from(msg.as_text() == Some("2")),
        }
    }
    assert_eq!(pings, 1, "one ping, then the ping timeout");
    answering.assert_served("after three rounds").await;
}
