//! The `publish` built-in's text path (issue 22): a socket's publish is read with its `data`
//! left as the JSON text it arrived as, and answered by the socket's one driver task. Spoken
//! to at the protocol level (a raw WebSocket), so that the exact text sent is under the test's
//! control: odd but valid JSON comes back equal in meaning to a subscriber, what the decoder
//! refuses still closes the connection, a bad payload still gets `bad_request`, and many
//! publishes in flight on one connection are all answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod queue_support;
mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use queue_support::Profile;
use serde_json::{Value, json};
use tidings_proto::packet::{Packet, PacketKind};
use tokio_websockets::{ClientBuilder, Message};

type Ws =
    tokio_websockets::WebSocketStream<tokio_websockets::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// A raw Socket.IO client over WebSocket, joined to `/` with a `clientId`.
struct Raw {
    ws: Ws,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr, client_id: &str) -> Raw {
        let uri = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = ClientBuilder::from_uri(uri.parse().unwrap())
            .connect()
            .await
            .unwrap();
        let mut raw = Raw { ws };
        let open = raw.next().await.unwrap();
        assert!(open.starts_with("0{"), "open: {open}");
        raw.send(&format!(r#"40{{"clientId":"{client_id}"}}"#))
            .await;
        let reply = raw.next().await.unwrap();
        assert!(reply.starts_with("40{\"sid\":"), "connect reply: {reply}");
        raw
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// The next text message that is not a ping or the interop app's `welcome`; None once the
    /// server closed the connection.
    async fn next(&mut self) -> Option<String> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server went silent")?
                .ok()?;
            if msg.is_close() {
                return None;
            }
            let Some(text) = msg.as_text() else { continue };
            if text == "2" {
                self.send("3").await;
                continue;
            }
            if text.starts_with("42[\"welcome\"") {
                continue;
            }
            return Some(text.to_owned());
        }
    }

    /// The next Socket.IO packet.
    async fn packet(&mut self) -> Packet {
        let text = self.next().await.expect("connection closed");
        let packet = text.strip_prefix('4').expect("not a message");
        Packet::decode(packet).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The first argument of the ack of `id`.
    async fn ack(&mut self, id: u64) -> Value {
        let packet = self.packet().await;
        assert_eq!((packet.kind, packet.id), (PacketKind::Ack, Some(id)));
        first_arg(&packet)
    }
}

fn first_arg(packet: &Packet) -> Value {
    packet
        .data
        .as_ref()
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null)
}

/// `data` texts a client may send: whitespace, key order, floats and ints, escapes, unicode,
/// duplicate keys (the last counts), deep nesting, big numbers, every JSON kind.
fn odd_data() -> Vec<String> {
    vec![
        r#"{ "z" : 1 , "a" : [ 1 , 2.50 , -0.0 , 1e3 , 12345678901234567890 ] }"#.to_owned(),
        r#""\u00e9\n\"quoted\" \ud83d\ude00 \/""#.to_owned(),
        r#"{"k":1,"k":{"last":"wins"}}"#.to_owned(),
        format!("{}\"deep\"{}", "[".repeat(100), "]".repeat(100)),
        "-9223372036854775808".to_owned(),
        "1.7976931348623157e308".to_owned(),
        "null".to_owned(),
        "true".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        "\"\"".to_owned(),
        r#"{"_placeholder":false,"num":0}"#.to_owned(),
    ]
}

/// Many publishes in flight on one connection: every one answered once, with its own offset;
/// a subscriber receives each `data` equal in meaning to the text sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_in_flight_are_all_answered_with_their_data_intact() {
    const N: u64 = 300;
    let server = queue_support::start(Profile::Long).await;
    let addr = server.test.addr;
    let mut subscriber = Raw::connect(addr, "text-sub").await;
    subscriber
        .send(r#"421["subscribe",{"topic":"text.t","from":"earliest"}]"#)
        .await;
    let subscribed = subscriber.ack(1).await;
    assert_eq!(subscribed["ok"], json!(true), "{subscribed}");

    let mut publisher = Raw::connect(addr, "text-pub").await;
    let data = odd_data();
    let mut sent = HashMap::new();
    for id in 1..=N {
        let text = &data[(id as usize) % data.len()];
        // Python's json.dumps writes `", "` and `": "`: the separators of the odd ones here.
        publisher
            .send(&format!(
                r#"42{id}["publish", {{"topic": "text.t", "event": "m", "data": {text}}}]"#
            ))
            .await;
        sent.insert(id, serde_json::from_str::<Value>(text).unwrap());
    }
    let mut by_offset = HashMap::new();
    let mut answered = BTreeSet::new();
    for _ in 1..=N {
        let packet = publisher.packet().await;
        assert_eq!(packet.kind, PacketKind::Ack, "{packet:?}");
        let id = packet.id.unwrap();
        assert!(answered.insert(id), "ack {id} twice");
        let answer = first_arg(&packet);
        assert_eq!(answer["ok"], json!(true), "{answer}");
        assert_eq!(answer["duplicate"], json!(false), "{answer}");
        let keys: Vec<&str> = answer
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["ok", "id", "offset", "duplicate"]);
        let offset = answer["offset"].as_u64().unwrap();
        assert!(
            by_offset.insert(offset, id).is_none(),
            "offset {offset} twice"
        );
    }
    assert_eq!(answered, (1..=N).collect());
    assert_eq!(
        by_offset.keys().copied().collect::<BTreeSet<_>>(),
        (1..=N).collect()
    );

    for expected_offset in 1..=N {
        let packet = subscriber.packet().await;
        assert_eq!(packet.kind, PacketKind::Event, "{packet:?}");
        let args = packet.data.as_ref().and_then(Value::as_array).unwrap();
        assert_eq!(args[0], json!("m"));
        let offset = args[2]["offset"].as_u64().unwrap();
        assert_eq!(offset, expected_offset, "deliveries in offset order");
        let publish = by_offset[&offset];
        assert_eq!(args[1], sent[&publish], "data of publish {publish}");
        subscriber
            .send(&format!("43{}[]", packet.id.unwrap()))
            .await;
    }
}

/// A `bad_request` is still a `bad_request`; a packet the decoder refuses still closes the
/// connection; an escaped event name still reaches the built-in (through the decoder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_publishes_get_the_decoders_answers() {
    let server = queue_support::start(Profile::Long).await;
    let addr = server.test.addr;
    let mut client = Raw::connect(addr, "text-bad").await;
    let refusals = [
        r#"["publish",{"topic":5,"event":"e","data":1}]"#,
        r#"["publish",{"topic":"text.bad","data":1}]"#,
        r#"["publish",{"topic":"text.bad","event":"disconnect"}]"#,
        r#"["publish",{"topic":"text.bad","event":"e","key":""}]"#,
        r#"["publish","text.bad"]"#,
        r#"["publish"]"#,
    ];
    for (i, args) in refusals.iter().enumerate() {
        let id = i as u64 + 1;
        client.send(&format!("42{id}{args}")).await;
        let answer = client.ack(id).await;
        assert_eq!(answer["ok"], json!(false), "{args}: {answer}");
        assert_eq!(
            answer["error"]["code"],
            json!("bad_request"),
            "{args}: {answer}"
        );
    }
    // An escaped name is the same event.
    client
        .send(r#"4250["pub\u006cish",{"topic":"text.bad","event":"e","data":[1]}]"#)
        .await;
    let answer = client.ack(50).await;
    assert_eq!(answer["ok"], json!(true), "{answer}");
    assert_eq!(answer["offset"], json!(1), "{answer}");

    // What serde_json refuses in a value closes the connection, as for any event.
    for data in ["1e999", r#""\ud800""#, "[1,]"] {
        let mut bad = Raw::connect(addr, "text-worse").await;
        bad.send(&format!(
            r#"4260["publish",{{"topic":"text.bad","event":"e","data":{data}}}]"#
        ))
        .await;
        assert_eq!(bad.next().await, None, "{data}: not closed");
    }
    // Nothing of those was stored: the one good publish is all there is.
    client.send(r#"4251["history",{"topic":"text.bad"}]"#).await;
    let history = client.ack(51).await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["data"], json!([1]));
}
