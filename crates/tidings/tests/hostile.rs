//! The hostile-input matrix (docs/SECURITY.md): the real `tidings serve` with a JWT verifier and
//! limits, attacked by raw WebSocket and HTTP clients written here — malformed Engine.IO and
//! Socket.IO packets, invalid JSON, wrong types in built-in events, unknown namespaces,
//! oversized payloads over both transports, attachment count mismatches, ack ids never issued,
//! floods, slowloris, forged / expired / wrong-algorithm tokens, cross-identity access. Each case
//! asserts the documented answer AND that two well-behaved clients (tidings-client) connected
//! the whole time still send and receive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MAX_PAYLOAD: usize = 10_000;

/// What the server did next on a raw WebSocket.
#[derive(Debug)]
enum Next {
    Text(String),
    Binary,
    Closed(Option<u16>),
}

/// The server of every matrix test, its bystanders and an honest token.
struct Matrix {
    server: Serve,
    bystanders: Bystanders,
    alice: String,
}

impl Matrix {
    async fn start() -> Matrix {
        let server = serve(
            "[limits]\nheader_timeout_ms = 500\nmax_events_per_second = 100\n",
            &["--max-payload", &MAX_PAYLOAD.to_string()],
            &[("TIDINGS_JWT_SECRET", SECRET)],
        )
        .await;
        let by = token(&claims(
            "bystander",
            json!({ "join": ["bystanders"], "publish": ["bystanders"] }),
        ));
        let bystanders = Bystanders::connect(&server.url, json!({ "token": by })).await;
        let alice = token(&claims(
            "alice",
            json!({ "publish": ["orders.*", "room.a"], "subscribe": ["orders.*"], "join": ["room.a"] }),
        ));
        Matrix {
            server,
            bystanders,
            alice,
        }
    }

    /// Ends a case: the bystanders must still be served.
    async fn done(&mut self, case: &str) {
        self.bystanders.still_served(case).await;
    }

    /// Ends the matrix, once the test has closed its own connections: the server's count of
    /// Engine.IO sessions comes back to the bystanders' two (every hostile session closed, none
    /// leaked), polled through the admin API since the server notices closes asynchronously.
    async fn finish(mut self) {
        let admin = token(&claims("ops", json!({ "admin": true })));
        let mut last = Value::Null;
        for _ in 0..100 {
            let answer = http(&self.server.url, "GET", "/v1/stats", Some(&admin), b"").await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            if answer.body["sessions"] == json!(2) {
                self.bystanders.still_served("at the end").await;
                return;
            }
            last = answer.body;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("sessions still open 2 s after the matrix (the bystanders hold 2): {last}");
    }

    /// A raw WebSocket, opened at the Engine.IO level (the `0` packet read).
    async fn ws(&self) -> Ws {
        let uri = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            self.server.host()
        );
        let (mut ws, _) = within(
            10,
            "ws connect",
            ClientBuilder::new().uri(&uri).unwrap().connect(),
        )
        .await
        .unwrap();
        match next(&mut ws).await {
            Next::Text(open) if open.starts_with("0{") => {}
            other => panic!("expected the open packet, got {other:?}"),
        }
        ws
    }

    /// A raw WebSocket connected to `/` as alice.
    async fn alice_ws(&self) -> Ws {
        let mut ws = self.ws().await;
        send(&mut ws, &format!("40{}", json!({ "token": self.alice }))).await;
        match next(&mut ws).await {
            Next::Text(reply) if reply.starts_with("40{") => {}
            other => panic!("expected the CONNECT reply, got {other:?}"),
        }
        ws
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.unwrap();
}

/// The next text, binary or close from the server (pings answered), within 10 s.
async fn next(ws: &mut Ws) -> Next {
    for _ in 0..100 {
        let msg = match within(10, "next ws message", ws.next()).await {
            None | Some(Err(_)) => return Next::Closed(None),
            Some(Ok(msg)) => msg,
        };
        if let Some((code, _)) = msg.as_close() {
            return Next::Closed(Some(u16::from(code)));
        }
        if let Some(text) = msg.as_text() {
            if text == "2" {
                let _ = ws.send(Message::text("3".to_owned())).await;
                continue;
            }
            return Next::Text(text.to_owned());
        }
        if msg.is_binary() {
            return Next::Binary;
        }
    }
    panic!("no text, binary or close in 100 messages")
}

/// The connection must be closed by the server (close frame or EOF); returns the close code.
async fn closed(ws: &mut Ws, case: &str) -> Option<u16> {
    for _ in 0..20 {
        match next(ws).await {
            Next::Closed(code) => return code,
            Next::Text(_) | Next::Binary => continue,
        }
    }
    panic!("{case}: the server did not close the connection")
}

/// Emits `event` with `payload` and ack id `id` on `/`; returns the ack's first argument.
async fn ask(ws: &mut Ws, id: u64, event: &str, payload: &Value) -> Value {
    send(ws, &format!("42{id}{}", json!([event, payload]))).await;
    let prefix = format!("43{id}");
    for _ in 0..20 {
        if let Next::Text(text) = next(ws).await {
            if let Some(rest) = text.strip_prefix(&prefix) {
                let args: Vec<Value> = serde_json::from_str(rest).unwrap();
                return args.into_iter().next().unwrap_or(Value::Null);
            }
        } else {
            panic!("closed while waiting for the ack of {event}");
        }
    }
    panic!("no ack for {event}")
}

fn assert_code(case: &str, ack: &Value, code: &str) {
    assert_eq!(ack["ok"], false, "{case}: {ack}");
    assert_eq!(ack["error"]["code"], code, "{case}: {ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{case}: {ack}"
    );
}

/// Sends a raw HTTP/1.1 request on a new connection and reads until the server closes.
async fn raw_http(host: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(host).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    within(10, "raw http answer", stream.read_to_end(&mut answer))
        .await
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn body_of(answer: &str) -> &str {
    answer.split("\r\n\r\n").nth(1).unwrap_or("")
}

/// A polling handshake: the session id.
async fn polling_sid(host: &str) -> String {
    let answer = raw_http(
        host,
        b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    body_of(&answer)
        .split(r#""sid":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {answer}"))
        .to_owned()
}

async fn polling_post(host: &str, sid: &str, body: &[u8]) -> String {
    let mut request = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    raw_http(host, &request).await
}

/// The polling session is gone: a GET is answered at once with the close packet or 400.
async fn polling_closed(host: &str, sid: &str, case: &str) {
    let answer = raw_http(
        host,
        format!("GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400") || body_of(&answer).ends_with('1'),
        "{case}: session still open: {answer}"
    );
}

#[tokio::test]
async fn malformed_packets_over_websocket() {
    let mut m = Matrix::start().await;

    // Each of these closes the connection (`parse error`), and only that one.
    for (case, packets) in [
        ("engine.io: not a packet", vec!["abc"]),
        ("engine.io: unknown packet type", vec!["9"]),
        ("socket.io: unknown packet type", vec!["4abc"]),
        ("socket.io: event payload not an array", vec!["42{}"]),
        (
            "socket.io: garbage before the payload",
            vec!["42abc[\"x\"]"],
        ),
        ("socket.io: invalid JSON", vec!["42[\"join\",{"]),
        ("socket.io: event name not a string", vec!["42[{}]"]),
        (
            "engine.io: client ping on the main transport (v4)",
            vec!["2"],
        ),
        (
            "attachments: placeholder beyond the announced count",
            vec![r#"451-["x",{"_placeholder":true,"num":5}]"#],
        ),
        (
            "attachments: text where a binary attachment was announced",
            vec![r#"451-["x",{"_placeholder":true,"num":0}]"#, "42[\"x\"]"],
        ),
        ("socket.io: CONNECT_ERROR from a client", vec!["44{}"]),
        ("socket.io: ACK without an id", vec!["43[\"no id\"]"]),
    ] {
        let mut ws = m.alice_ws().await;
        for p in packets {
            send(&mut ws, p).await;
        }
        closed(&mut ws, case).await;
        m.done(case).await;
    }

    let case = "attachments: binary frame nobody announced";
    let mut ws = m.alice_ws().await;
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    closed(&mut ws, case).await;
    m.done(case).await;

    let case = "websocket: message over maxPayload closes with 1009";
    let mut ws = m.alice_ws().await;
    let big = format!("42[\"join\",{{\"room\":\"{}\"}}]", "r".repeat(MAX_PAYLOAD));
    send(&mut ws, &big).await;
    assert_eq!(closed(&mut ws, case).await, Some(1009), "{case}");
    m.done(case).await;

    // Ignored, and the connection stays usable.
    let case = "ack id never issued";
    let mut ws = m.alice_ws().await;
    send(&mut ws, "4399[\"forged\"]").await;
    assert_eq!(
        ask(&mut ws, 1, "join", &json!({ "room": "room.a" })).await,
        json!({ "ok": true })
    );
    m.done(case).await;

    let case = "event for a namespace the client did not join";
    send(&mut ws, "42/elsewhere,[\"join\",{\"room\":\"room.a\"}]").await;
    assert_eq!(
        ask(&mut ws, 2, "join", &json!({ "room": "room.a" })).await,
        json!({ "ok": true })
    );
    m.done(case).await;

    let case = "namespace connect without a token";
    send(&mut ws, "40/other,{}").await;
    match next(&mut ws).await {
        Next::Text(t) => {
            assert!(t.starts_with("44/other,"), "{case}: {t}");
            assert!(t.contains(r#""code":"unauthorized""#), "{case}: {t}");
        }
        other => panic!("{case}: {other:?}"),
    }
    m.done(case).await;

    let case = "flood of events without acks";
    for _ in 0..500 {
        send(&mut ws, "42[\"leave\",{\"room\":\"x\"}]").await;
    }
    m.done(case).await;

    let case = "flood of events with acks: rate_limited";
    for id in 100..400u64 {
        send(&mut ws, &format!("42{id}[\"leave\",{{\"room\":\"x\"}}]")).await;
    }
    let mut limited = 0;
    for _ in 0..300 {
        match next(&mut ws).await {
            Next::Text(t) if t.contains(r#""code":"rate_limited""#) => limited += 1,
            Next::Text(_) => {}
            other => panic!("{case}: {other:?}"),
        }
    }
    assert!(limited >= 100, "{case}: only {limited} of 300 rate limited");
    m.done(case).await;

    drop(ws);
    m.finish().await;
}

#[tokio::test]
async fn wrong_payloads_and_access_in_built_in_events() {
    let mut m = Matrix::start().await;
    let mut ws = m.alice_ws().await;
    let mut id = 0;
    for (case, event, payload, code) in [
        (
            "join: room not a string",
            "join",
            json!({ "room": 5 }),
            "bad_request",
        ),
        (
            "join: payload not an object",
            "join",
            json!("room.a"),
            "bad_request",
        ),
        (
            // The shape is checked before the permissions (parse, then authorize): a room no
            // client could ever join is a bad request, inside the claim or not.
            "join: a 300-byte room outside the claim",
            "join",
            json!({ "room": "r".repeat(300) }),
            "bad_request",
        ),
        (
            "publish: a 5 KB idempotency key",
            "publish",
            json!({ "topic": "orders.x", "event": "e", "key": "k".repeat(5_000) }),
            "bad_request",
        ),
        (
            "publish: an empty idempotency key",
            "publish",
            json!({ "topic": "orders.x", "event": "e", "key": "" }),
            "bad_request",
        ),
        (
            "broadcast: reserved event name",
            "broadcast",
            json!({ "room": "room.a", "event": "connect", "data": 1 }),
            "bad_request",
        ),
        (
            "broadcast: event missing",
            "broadcast",
            json!({ "room": "room.a" }),
            "bad_request",
        ),
        (
            "publish: invalid topic",
            "publish",
            json!({ "topic": "orders.x y", "event": "e" }),
            "bad_request",
        ),
        (
            "publish: event not a string",
            "publish",
            json!({ "topic": "orders.x", "event": [] }),
            "bad_request",
        ),
        (
            "subscribe: bad from",
            "subscribe",
            json!({ "topic": "orders.x", "from": "yesterday" }),
            "bad_request",
        ),
        (
            "history: limit too large",
            "history",
            json!({ "topic": "orders.x", "limit": 5000 }),
            "bad_request",
        ),
        (
            "publish outside the token's claim",
            "publish",
            json!({ "topic": "audit.x", "event": "e" }),
            "forbidden",
        ),
        (
            "subscribe to another's topic",
            "subscribe",
            json!({ "topic": "audit.x" }),
            "forbidden",
        ),
        (
            "history of another's topic",
            "history",
            json!({ "topic": "audit.x" }),
            "forbidden",
        ),
        (
            "join another's room",
            "join",
            json!({ "room": "bystanders" }),
            "forbidden",
        ),
        (
            "broadcast into another's room",
            "broadcast",
            json!({ "room": "bystanders", "event": "chat", "data": { "n": -1 } }),
            "forbidden",
        ),
        (
            "broadcast to the whole namespace",
            "broadcast",
            json!({ "event": "chat", "data": { "n": -1 } }),
            "forbidden",
        ),
    ] {
        id += 1;
        let ack = ask(&mut ws, id, event, &payload).await;
        assert_code(case, &ack, code);
        m.done(case).await;
    }

    // Binary is kept in durable messages, and checked like any publish: not on a topic the
    // token may not publish to.
    let case = "publish with a binary attachment to a forbidden topic";
    send(&mut ws, r#"451-99["publish",{"topic":"secret.x","event":"e","data":{"_placeholder":true,"num":0}}]"#).await;
    ws.send(Message::binary(vec![0u8, 1])).await.unwrap();
    loop {
        match next(&mut ws).await {
            Next::Text(t) if t.starts_with("4399") => {
                assert!(t.contains(r#""code":"forbidden""#), "{case}: {t}");
                break;
            }
            Next::Text(_) => {}
            other => panic!("{case}: {other:?}"),
        }
    }
    m.done(case).await;

    // Tokens refused at connect, each with its code.
    for (case, auth, code, says) in [
        ("no token", json!({}), "unauthorized", "a token is required"),
        (
            "a clientId claiming an identity",
            json!({ "clientId": "alice" }),
            "unauthorized",
            "a token is required",
        ),
        (
            "forged signature",
            json!({ "token": hs256(&claims("alice", json!({"admin": true})), "not-the-secret-0123456789abcdefghij") }),
            "unauthorized",
            "signature",
        ),
        (
            "expired token",
            json!({ "token": token(&json!({ "sub": "alice", "exp": now() - 3600 })) }),
            "token_expired",
            "expired",
        ),
        (
            "token not valid yet",
            json!({ "token": token(&json!({ "sub": "alice", "exp": now() + 7200, "nbf": now() + 3600 })) }),
            "unauthorized",
            "not valid yet",
        ),
        (
            "alg none",
            json!({ "token": alg_none(&claims("alice", json!({"admin": true}))) }),
            "unauthorized",
            "\"none\" not accepted",
        ),
        (
            "RS256 token on an HS256 server",
            json!({ "token": rs256(&claims("alice", json!({"admin": true}))) }),
            "unauthorized",
            "\"RS256\" not accepted",
        ),
        (
            "token not a string",
            json!({ "token": { "sub": "alice" } }),
            "unauthorized",
            "must be a string",
        ),
    ] {
        let mut raw = m.ws().await;
        send(&mut raw, &format!("40{auth}")).await;
        match next(&mut raw).await {
            Next::Text(t) => {
                let body: Value = serde_json::from_str(
                    t.strip_prefix("44")
                        .unwrap_or_else(|| panic!("{case}: {t}")),
                )
                .unwrap();
                assert_eq!(body["data"]["code"], code, "{case}: {t}");
                assert!(
                    body["message"].as_str().unwrap().contains(says),
                    "{case}: {t}"
                );
            }
            other => panic!("{case}: {other:?}"),
        }
        m.done(case).await;
    }
    drop(ws);
    m.finish().await;
}

#[tokio::test]
async fn hostile_http_and_polling() {
    let mut m = Matrix::start().await;
    let host = m.server.host().to_owned();
    let url = m.server.url.clone();

    let case = "polling body over maxPayload: 413";
    let sid = polling_sid(&host).await;
    let answer = polling_post(&host, &sid, "4".repeat(MAX_PAYLOAD + 10).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{case}: {answer}");
    polling_closed(&host, &sid, case).await;
    m.done(case).await;

    let case = "polling: invalid payload closes the session";
    let sid = polling_sid(&host).await;
    let _ = polling_post(&host, &sid, b"abc").await;
    polling_closed(&host, &sid, case).await;
    m.done(case).await;

    let case = "polling: unknown sid";
    let answer = polling_post(&host, "AAAAAAAAAAAAAAAAAAAAAA", b"40").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{case}: {answer}");
    assert!(
        body_of(&answer).contains("Session ID unknown"),
        "{case}: {answer}"
    );
    m.done(case).await;

    let case = "engine.io: unsupported protocol version";
    let answer = raw_http(
        &host,
        b"GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{case}: {answer}");
    assert!(
        body_of(&answer).contains("Unsupported protocol version"),
        "{case}: {answer}"
    );
    m.done(case).await;

    let case = "engine.io: unknown transport";
    let answer = raw_http(&host, b"GET /socket.io/?EIO=4&transport=carrier-pigeon HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{case}: {answer}");
    m.done(case).await;

    let case = "slowloris: headers never finished";
    let mut stream = TcpStream::connect(&host).await.unwrap();
    stream
        .write_all(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    within(5, case, stream.read_to_end(&mut sink)).await.ok();
    m.done(case).await;

    let case = "HTTP API without a token: 401";
    let answer = http(&url, "GET", "/v1/topics", None, b"").await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "unauthorized"),
        "{case}"
    );
    m.done(case).await;

    let case = "HTTP API with an expired token: 401 token_expired";
    let expired = token(&json!({ "sub": "alice", "exp": now() - 3600 }));
    let answer = http(&url, "GET", "/v1/topics", Some(&expired), b"").await;
    assert_eq!(
        (answer.status, answer.code()),
        (401, "token_expired"),
        "{case}"
    );
    m.done(case).await;

    let alice = m.alice.clone();
    let case = "HTTP API: another identity's queue: 403";
    let answer = http(
        &url,
        "DELETE",
        "/v1/topics/orders.x/subscriptions/id:bystander",
        Some(&alice),
        b"",
    )
    .await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"), "{case}");
    m.done(case).await;

    let case = "HTTP API: history outside the claim: 403";
    let answer = http(
        &url,
        "GET",
        "/v1/topics/audit.x/messages",
        Some(&alice),
        b"",
    )
    .await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"), "{case}");
    m.done(case).await;

    let case = "HTTP API: invalid JSON body: 400";
    let answer = http(
        &url,
        "POST",
        "/v1/topics/orders.x/messages",
        Some(&alice),
        b"{\"event\":",
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "bad_request"),
        "{case}"
    );
    m.done(case).await;

    let case = "HTTP API: body over maxPayload: 413";
    let big = format!(
        "{{\"event\":\"e\",\"data\":\"{}\"}}",
        "x".repeat(MAX_PAYLOAD)
    );
    let answer = http(
        &url,
        "POST",
        "/v1/topics/orders.x/messages",
        Some(&alice),
        big.as_bytes(),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (413, "payload_too_large"),
        "{case}"
    );
    m.done(case).await;

    let case = "HTTP API: unknown route: 404";
    let answer = http(&url, "PUT", "/v1/nothing/here", Some(&alice), b"").await;
    assert_eq!((answer.status, answer.code()), (404, "not_found"), "{case}");
    m.done(case).await;

    let case = "HTTP API: bad percent-escape: 400";
    let answer = http(&url, "GET", "/v1/topics/%zz", Some(&alice), b"").await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "bad_request"),
        "{case}"
    );
    m.done(case).await;

    let case = "a hundred half-open connections";
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(&host).await.unwrap());
    }
    m.done(case).await;
    drop(idle);

    m.finish().await;
}

/// A WebSocket opened by hand on a TCP stream, to send frames no client library would send.
async fn raw_ws(host: &str) -> TcpStream {
    let mut stream = TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: {host}\r\n\
         upgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The response head, byte by byte so that no frame after it is read.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = within(10, "101 response", stream.read_u8()).await.unwrap();
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade answer: {head}");
    stream
}

/// A client frame: `first` is the first header byte (FIN, RSV bits, opcode) as sent; the
/// payload is masked when `mask` is given.
fn ws_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const MASK: Option<[u8; 4]> = Some([0x12, 0x34, 0x56, 0x78]);

/// The server's frames (opcode, payload) until it ends the connection.
async fn server_frames(stream: &mut TcpStream, case: &str) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    within(10, case, stream.read_to_end(&mut bytes))
        .await
        .unwrap();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 2 {
        let (len, header) = match rest[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => panic!("{case}: unexpected 64-bit frame from the server"),
            len => (usize::from(len), 2),
        };
        assert_eq!(rest[1] & 0x80, 0, "{case}: the server masked a frame");
        frames.push((rest[0] & 0x0F, rest[header..header + len].to_vec()));
        rest = &rest[header + len..];
    }
    assert!(rest.is_empty(), "{case}: a truncated frame from the server");
    frames
}

/// The close code of the server's close frame.
fn close_code(frames: &[(u8, Vec<u8>)], case: &str) -> u16 {
    let (_, body) = frames
        .iter()
        .find(|(opcode, _)| *opcode == 0x8)
        .unwrap_or_else(|| panic!("{case}: no close frame in {frames:?}"));
    u16::from_be_bytes([body[0], body[1]])
}

#[tokio::test]
async fn hostile_websocket_framing() {
    let mut m = Matrix::start().await;
    let host = m.server.host().to_owned();

    // Each is refused with its RFC 6455 close code, and only that connection is closed.
    let big = vec![b'x'; MAX_PAYLOAD / 2 + 1];
    let mut gigabyte_header = vec![0x82, 0x80 | 127];
    gigabyte_header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    gigabyte_header.extend_from_slice(&[1, 2, 3, 4]);
    for (case, bytes, code) in [
        (
            "websocket: unmasked client frame: 1002",
            ws_frame(0x81, b"40", None),
            1002,
        ),
        (
            "websocket: reserved bit set without an extension: 1002",
            ws_frame(0x80 | 0x40 | 0x1, b"40", MASK),
            1002,
        ),
        (
            "websocket: unknown opcode: 1002",
            ws_frame(0x83, b"40", MASK),
            1002,
        ),
        (
            "websocket: continuation with nothing to continue: 1002",
            ws_frame(0x80, b"40", MASK),
            1002,
        ),
        (
            "websocket: control frame over 125 bytes: 1002",
            ws_frame(0x89, &[0; 126], MASK),
            1002,
        ),
        (
            "websocket: text that is not UTF-8: 1007",
            ws_frame(0x81, &[0x34, 0xff, 0xfe], MASK),
            1007,
        ),
        (
            "websocket: a close reason that is not UTF-8: 1007",
            ws_frame(0x88, &[0x03, 0xe8, 0xff], MASK),
            1007,
        ),
        (
            "websocket: fragments adding up to over maxPayload: 1009",
            [ws_frame(0x01, &big, MASK), ws_frame(0x80, &big, MASK)].concat(),
            1009,
        ),
        (
            "websocket: a frame header announcing 1 GiB: 1009 before any payload",
            gigabyte_header,
            1009,
        ),
    ] {
        let mut ws = raw_ws(&host).await;
        ws.write_all(&bytes).await.unwrap();
        let frames = server_frames(&mut ws, case).await;
        assert!(
            frames
                .first()
                .is_some_and(|(op, body)| *op == 0x1 && body.starts_with(b"0{")),
            "{case}: the open packet first: {frames:?}"
        );
        assert_eq!(close_code(&frames, case), code, "{case}");
        m.done(case).await;
    }

    let case = "websocket: a ping is answered with a pong, then the client is served";
    let mut ws = raw_ws(&host).await;
    let mut bytes = ws_frame(0x89, b"are you there", MASK);
    // A fragmented CONNECT with the ping between its fragments is still one message.
    let connect = format!("40{}", json!({ "token": m.alice }));
    let (first, second) = connect.as_bytes().split_at(5);
    bytes.extend(ws_frame(0x01, first, MASK));
    bytes.extend(ws_frame(0x89, b"again", MASK));
    bytes.extend(ws_frame(0x80, second, MASK));
    bytes.extend(ws_frame(0x88, &1000u16.to_be_bytes(), MASK));
    ws.write_all(&bytes).await.unwrap();
    let frames = server_frames(&mut ws, case).await;
    let pongs: Vec<&[u8]> = frames
        .iter()
        .filter(|(op, _)| *op == 0xA)
        .map(|(_, body)| &body[..])
        .collect();
    // A newer ping may replace one not answered yet (RFC 6455 §5.5.3): the last is answered.
    assert_eq!(pongs.last(), Some(&&b"again"[..]), "{case}: {frames:?}");
    assert!(
        frames
            .iter()
            .any(|(op, body)| *op == 0x1 && body.starts_with(b"40{")),
        "{case}: the CONNECT reply: {frames:?}"
    );
    assert_eq!(close_code(&frames, case), 1000, "{case}");
    m.done(case).await;

    m.finish().await;
}
