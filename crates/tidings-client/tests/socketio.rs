//! The Socket.IO side of the client against a real tidings server on 127.0.0.1: connect and
//! auth, emits and acks both ways, binary attachments, the built-in rooms, reconnecting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use support::{Port, options, serve_on, start, wait_state, within};
use tidings_client::{
    AckError, Bytes, Client, CloseReason, ConnectError, ConnectionState, EmitError, placeholder,
};
use tidings_server::{
    ConnectError as RefuseConnect, DisconnectReason, Server, ServerConfig, Socket,
};
use tokio::sync::mpsc;

const SECOND: Duration = Duration::from_secs(1);

/// Handlers the tests share; `reports` hears what the server saw.
fn app(config: ServerConfig, reports: mpsc::UnboundedSender<(String, Value)>) -> Server {
    let server = Server::new(config);
    server
        .of("/")
        .on_connect(move |socket| on_connect(socket, reports.clone()));
    server
}

fn on_connect(socket: Socket, reports: mpsc::UnboundedSender<(String, Value)>) {
    let _ = reports.send((
        "connect".into(),
        json!({ "sid": socket.id().to_string(), "auth": socket.auth() }),
    ));
    let r = reports.clone();
    socket.on_data("order", move |_socket, order: Order, _ack| {
        let r = r.clone();
        async move {
            let _ = r.send(("order".into(), serde_json::to_value(order).unwrap()));
        }
    });
    socket.on("echo", |_socket, event| async move {
        let (args, attachments, ack) = event.into_parts();
        if let Some(ack) = ack {
            let _ = ack.send_args(args, attachments);
        }
    });
    socket.on("add", |_socket, mut event| async move {
        let ack = event.take_ack();
        let (a, b): (i64, i64) = event.parse().unwrap();
        if let Some(ack) = ack {
            let _ = ack.send(&(a + b));
        }
    });
    // Never acknowledges; tells the test it arrived.
    let r = reports.clone();
    socket.on("ignore", move |_socket, _event| {
        let r = r.clone();
        async move {
            let _ = r.send(("ignore".into(), Value::Null));
        }
    });
    socket.on("ask-me", move |socket, _event| async move {
        let reply = socket
            .emit_with_ack("question", &json!({ "q": "ready?" }), 5 * SECOND)
            .await;
        let answer = match reply {
            Ok(reply) => json!({ "args": reply.args }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let _ = socket.emit("answered", &answer);
    });
    let r = reports.clone();
    socket.on("bin-echo", move |socket, event| {
        let r = r.clone();
        async move {
            let (args, attachments, ack) = event.into_parts();
            let _ = r.send((
                "bin-echo".into(),
                json!({ "args": args, "sizes": attachments.iter().map(|a| a.len()).collect::<Vec<_>>() }),
            ));
            match ack {
                Some(ack) => {
                    let _ = ack.send_args(args, attachments);
                }
                None => {
                    let _ = socket.emit_args("bin-back", args, &attachments);
                }
            }
        }
    });
    socket.on(
        "kick-me",
        |socket, _event| async move { socket.disconnect() },
    );
    let r = reports.clone();
    socket.on_disconnect(move |_socket, reason| async move {
        let _ = r.send(("disconnect".into(), json!(reason.to_string())));
    });
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u32,
    items: Vec<String>,
    express: bool,
}

async fn next_report(rx: &mut mpsc::UnboundedReceiver<(String, Value)>, kind: &str) -> Value {
    loop {
        let (k, v) = within(rx.recv()).await.expect("server reports ended");
        if k == kind {
            return v;
        }
    }
}

#[tokio::test]
async fn connect_sends_auth_that_the_server_sees() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(
        options(&srv.url())
            .auth(json!({ "clientId": "driver-7" }))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let seen = next_report(&mut rx, "connect").await;
    assert_eq!(seen["auth"], json!({ "clientId": "driver-7" }));
    assert_eq!(client.id().unwrap().to_string(), seen["sid"]);
    assert_eq!(client.state(), ConnectionState::Connected);
    let shown = format!("{client:?} {:?}", client.options());
    assert!(!shown.contains("driver-7"), "{shown}");
}

#[tokio::test]
async fn emit_reaches_a_typed_handler() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    let order = Order {
        id: 42,
        items: vec!["tea".into(), "scone".into()],
        express: true,
    };
    client.emit("order", &order).await.unwrap();
    let seen: Order = serde_json::from_value(next_report(&mut rx, "order").await).unwrap();
    assert_eq!(seen, order);
}

#[tokio::test]
async fn emit_with_ack_round_trips_and_times_out() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();

    let reply = client
        .emit_with_ack("echo", &json!({ "x": [1, 2.5, "three"] }), 5 * SECOND)
        .await
        .unwrap();
    assert_eq!(reply, vec![json!({ "x": [1, 2.5, "three"] })]);

    let reply = client
        .emit_args_with_ack("add", vec![json!(2), json!(40)], vec![], 5 * SECOND)
        .await
        .unwrap();
    assert_eq!(reply.args, vec![json!(42)]);
    assert_eq!(reply.data::<i64>().unwrap(), 42);

    let started = tokio::time::Instant::now();
    let err = client
        .emit_with_ack("ignore", &1, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, AckError::Timeout), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Still usable afterwards, and acks are matched by id.
    let (a, b) = tokio::join!(
        client.emit_with_ack("echo", &"a", 5 * SECOND),
        client.emit_with_ack("echo", &"b", 5 * SECOND)
    );
    assert_eq!(
        (a.unwrap(), b.unwrap()),
        (vec![json!("a")], vec![json!("b")])
    );
}

#[tokio::test]
async fn server_event_with_ack() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    let mut questions = client.on("question");
    let mut answered = client.on("answered");
    client.emit("ask-me", &()).await.unwrap();

    let question = within(questions.recv()).await.unwrap();
    assert_eq!(question.event, "question");
    assert_eq!(question.args, vec![json!({ "q": "ready?" })]);
    assert!(question.wants_ack());
    question.ack(&json!({ "ready": true })).await.unwrap();
    // One acknowledgement per event.
    assert!(matches!(
        question.ack(&1).await,
        Err(EmitError::AlreadyAcknowledged)
    ));

    let answer = within(answered.recv()).await.unwrap();
    assert_eq!(answer.args, vec![json!({ "args": [{ "ready": true }] })]);
    assert!(!answer.wants_ack());
    assert!(matches!(
        answer.ack(&1).await,
        Err(EmitError::NoAckRequested)
    ));
}

#[tokio::test]
async fn binary_attachments_both_ways() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    let mut back = client.on("bin-back");
    let photo = Bytes::from((0..=255u8).cycle().take(70_000).collect::<Vec<u8>>());
    let thumb = Bytes::from_static(&[0, 1, 2, 0xff]);
    let args = vec![
        json!({ "name": "photo.jpg", "file": placeholder(0) }),
        placeholder(1),
    ];

    client
        .emit_args("bin-echo", args.clone(), vec![photo.clone(), thumb.clone()])
        .await
        .unwrap();
    let seen = next_report(&mut rx, "bin-echo").await;
    assert_eq!(seen["sizes"], json!([70_000, 4]));
    assert_eq!(seen["args"], json!(args));

    let event = within(back.recv()).await.unwrap();
    assert_eq!(event.attachments.len(), 2);
    assert_eq!(event.binary(&event.args[0]["file"]), Some(&photo));
    assert_eq!(event.binary(&event.args[1]), Some(&thumb));
    assert_eq!(event.args[0]["name"], "photo.jpg");

    // A binary acknowledgement.
    let reply = client
        .emit_args_with_ack(
            "bin-echo",
            vec![placeholder(0)],
            vec![thumb.clone()],
            5 * SECOND,
        )
        .await
        .unwrap();
    assert_eq!(reply.attachments, vec![thumb.clone()]);
    assert_eq!(reply.binary(&reply.args[0]), Some(&thumb));

    // Placeholders must match the attachments.
    let err = client
        .emit_args("bin-echo", vec![placeholder(1)], vec![thumb])
        .await
        .unwrap_err();
    assert!(matches!(err, EmitError::InvalidPlaceholders(_)), "{err:?}");
}

#[tokio::test]
async fn builtin_join_and_broadcast_between_two_clients() {
    let srv = start(Server::new(
        ServerConfig::builder()
            .builtin_events(true)
            .build()
            .unwrap(),
    ))
    .await;
    let alice = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    let bob = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    let mut bob_news = bob.on("news");
    let mut alice_news = alice.on("news");

    let joined = bob
        .emit_with_ack("join", &json!({ "room": "lobby" }), 5 * SECOND)
        .await
        .unwrap();
    assert_eq!(joined, vec![json!({ "ok": true })]);

    let sent = alice
        .emit_with_ack(
            "broadcast",
            &json!({ "room": "lobby", "event": "news", "data": { "headline": "hello" } }),
            5 * SECOND,
        )
        .await
        .unwrap();
    assert_eq!(sent, vec![json!({ "ok": true, "recipients": 1 })]);
    let news = within(bob_news.recv()).await.unwrap();
    assert_eq!(news.args, vec![json!({ "headline": "hello" })]);

    // Binary inside the broadcast data stays binary.
    let blob = Bytes::from_static(b"\x00binary\xff");
    let reply = alice
        .emit_args_with_ack(
            "broadcast",
            vec![json!({ "room": "lobby", "event": "news", "data": { "blob": placeholder(0) } })],
            vec![blob.clone()],
            5 * SECOND,
        )
        .await
        .unwrap();
    assert_eq!(reply.args, vec![json!({ "ok": true, "recipients": 1 })]);
    let news = within(bob_news.recv()).await.unwrap();
    assert_eq!(news.binary(&news.args[0]["blob"]), Some(&blob));

    // A bad payload is refused with the error contract.
    let refused = bob
        .emit_with_ack("join", &json!({ "room": 7 }), 5 * SECOND)
        .await
        .unwrap();
    assert_eq!(refused[0]["ok"], false);
    assert_eq!(refused[0]["error"]["code"], "bad_request");

    // The sender is not among the recipients: after a round trip on alice's connection,
    // anything the server emitted to her before has arrived.
    let left = alice
        .emit_with_ack("leave", &json!({ "room": "elsewhere" }), 5 * SECOND)
        .await
        .unwrap();
    assert_eq!(left, vec![json!({ "ok": true })]);
    assert!(alice_news.try_recv_for_test().is_none());
}

/// `EventStream` has no `try_recv`; poll it once.
trait TryRecv {
    fn try_recv_for_test(&mut self) -> Option<tidings_client::ServerEvent>;
}

impl TryRecv for tidings_client::EventStream {
    fn try_recv_for_test(&mut self) -> Option<tidings_client::ServerEvent> {
        use futures_util::FutureExt;
        self.recv().now_or_never().flatten()
    }
}

#[tokio::test]
async fn reconnects_with_backoff_and_sends_auth_again() {
    // No jitter: the delay before reconnect attempt k (from 0) is exactly MIN * 2^k, capped at
    // MAX: 100, 200, 400, 400, … ms.
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_millis(400);
    // What an attempt may take beyond its delay (scheduling, the refused handshake). Below MAX,
    // so that a delay that kept doubling past the cap (800 ms) shows.
    const SLACK: Duration = Duration::from_millis(350);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let first = start(app(ServerConfig::default(), tx.clone())).await;
    let client = Client::connect(
        options(&first.url())
            .reconnect_delay(MIN, MAX)
            .reconnect_jitter(0.0)
            .auth(json!({ "clientId": "driver-7", "token": "t0k3n" }))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let seen = next_report(&mut rx, "connect").await;
    assert_eq!(seen["auth"]["clientId"], "driver-7");
    let first_sid = client.id().unwrap();
    let mut state = client.watch_state();

    // The server goes away: the client notices and starts reconnecting.
    let port = first.stop().await;
    wait_state(&mut state, |s| *s == ConnectionState::Reconnecting).await;
    assert_eq!(client.id(), None);
    // Emits made meanwhile wait for the next connection.
    let queued = tokio::spawn({
        let client = client.clone();
        async move { client.emit_with_ack("echo", &"queued", 10 * SECOND).await }
    });
    // Each attempt is one TCP connection: accept five and close each at once (a failed
    // handshake), noting when each came.
    let listener = port.listen();
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let (connection, _) = within(listener.accept()).await.unwrap();
        attempts.push(std::time::Instant::now());
        drop(connection);
    }
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    // The delays before attempts 1 to 4 (the first one's start is not observable here).
    let delays = [2 * MIN, 4 * MIN, MAX, MAX];
    for (k, (gap, delay)) in gaps.iter().zip(delays).enumerate() {
        assert!(
            *gap >= delay && *gap < delay + SLACK,
            "attempt {} came {gap:?} after the one before, expected {delay:?} (+ up to \
             {SLACK:?}); every gap: {gaps:?}",
            k + 1
        );
    }
    assert_eq!(client.state(), ConnectionState::Reconnecting);

    // A new server on the same port: the client is back, with the same auth.
    let second = serve_on(app(ServerConfig::default(), tx), listener).await;
    wait_state(&mut state, |s| *s == ConnectionState::Connected).await;
    let seen = next_report(&mut rx, "connect").await;
    assert_eq!(
        seen["auth"],
        json!({ "clientId": "driver-7", "token": "t0k3n" })
    );
    let second_sid = client.id().unwrap();
    assert_ne!(second_sid, first_sid);
    assert_eq!(second_sid.to_string(), seen["sid"]);

    assert_eq!(
        within(queued).await.unwrap().unwrap(),
        vec![json!("queued")]
    );
    let reply = client
        .emit_with_ack("echo", &"after", 5 * SECOND)
        .await
        .unwrap();
    assert_eq!(reply, vec![json!("after")]);
    drop(second);
}

#[tokio::test]
async fn pending_acks_fail_when_the_connection_drops() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).reconnect(false).build().unwrap())
        .await
        .unwrap();
    let mut events = client.on("anything");
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.emit_with_ack("ignore", &1, 30 * SECOND).await }
    });
    // The server has the emit (and will never acknowledge it) before it goes away.
    next_report(&mut rx, "ignore").await;
    srv.stop().await;
    let err = within(waiting).await.unwrap().unwrap_err();
    assert!(matches!(err, AckError::Disconnected), "{err:?}");
    let mut state = client.watch_state();
    let closed = wait_state(&mut state, |s| matches!(s, ConnectionState::Closed(_))).await;
    assert_eq!(closed, ConnectionState::Closed(CloseReason::ConnectionLost));
    assert!(within(events.recv()).await.is_none(), "streams end");
    assert!(matches!(client.emit("x", &1).await, Err(EmitError::Closed)));
}

#[tokio::test]
async fn middleware_refusal_is_a_connect_error_with_the_servers_message() {
    let server = Server::new(ServerConfig::default());
    server.of("/").use_middleware(|req| async move {
        if req.auth.get("token").and_then(Value::as_str) == Some("let-me-in") {
            Ok(())
        } else {
            Err(RefuseConnect::new("unauthorized").with_data(json!({ "reason": "bad token" })))
        }
    });
    let srv = start(server).await;

    let err = Client::connect(
        options(&srv.url())
            .auth(json!({ "token": "wrong" }))
            .build()
            .unwrap(),
    )
    .await
    .unwrap_err();
    match err {
        ConnectError::Refused { message, data } => {
            assert_eq!(message, "unauthorized");
            assert_eq!(data, Some(json!({ "reason": "bad token" })));
        }
        other => panic!("{other:?}"),
    }

    let client = Client::connect(
        options(&srv.url())
            .auth(json!({ "token": "let-me-in" }))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(client.id().is_some());
}

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let srv = start(Server::new(ServerConfig::default())).await;
    let err = Client::connect(options(&srv.url()).namespace("/nowhere").build().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Refused { message, .. } if message == "Invalid namespace"),
        "{err:?}"
    );
}

#[tokio::test]
async fn nothing_listening_is_an_io_error() {
    // Bound, so that no other process can listen there, but not listening.
    let port = Port::ephemeral();
    let addr = port.addr();
    let err = Client::connect(options(&format!("http://{addr}")).build().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn wrong_path_is_a_handshake_error() {
    let srv = start(Server::new(ServerConfig::default())).await;
    let err = Client::connect(options(&srv.url()).path("/elsewhere/").build().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Handshake(_)), "{err:?}");
}

#[tokio::test]
async fn server_namespace_disconnect_closes_without_reconnecting() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    let mut state = client.watch_state();
    client.emit("kick-me", &()).await.unwrap();
    let closed = wait_state(&mut state, |s| matches!(s, ConnectionState::Closed(_))).await;
    assert_eq!(
        closed,
        ConnectionState::Closed(CloseReason::ServerDisconnect)
    );
    assert!(matches!(client.emit("x", &1).await, Err(EmitError::Closed)));
}

#[tokio::test]
async fn client_disconnect_flushes_then_leaves() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    next_report(&mut rx, "connect").await;
    let order = Order {
        id: 1,
        items: vec![],
        express: false,
    };
    client.emit("order", &order).await.unwrap();
    client.disconnect().await;
    assert_eq!(
        client.state(),
        ConnectionState::Closed(CloseReason::ClientDisconnect)
    );
    assert_eq!(
        next_report(&mut rx, "order").await,
        serde_json::to_value(&order).unwrap()
    );
    assert_eq!(
        next_report(&mut rx, "disconnect").await,
        json!(DisconnectReason::ClientNamespaceDisconnect.to_string())
    );
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let srv = start(app(ServerConfig::default(), tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    next_report(&mut rx, "connect").await;
    drop(client);
    assert_eq!(
        next_report(&mut rx, "disconnect").await,
        json!("client namespace disconnect")
    );
}

#[tokio::test]
async fn answers_pings_and_stays_connected() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = ServerConfig::builder()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let srv = start(app(config, tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    next_report(&mut rx, "connect").await;
    let sid = client.id();
    // Ten ping intervals: a client that did not answer would be gone after two.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(client.state(), ConnectionState::Connected);
    assert_eq!(client.id(), sid);
    let reply = client.emit_with_ack("echo", &1, 5 * SECOND).await.unwrap();
    assert_eq!(reply, vec![json!(1)]);
    assert!(rx.try_recv().is_err(), "no disconnect or reconnect");
}

#[tokio::test]
async fn refuses_what_the_server_would_close_the_connection_for() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let config = ServerConfig::builder().max_payload(1000).build().unwrap();
    let srv = start(app(config, tx)).await;
    let client = Client::connect(options(&srv.url()).build().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        client.emit("disconnect", &1).await,
        Err(EmitError::ReservedName(_))
    ));
    let err = client.emit("big", &"x".repeat(2000)).await.unwrap_err();
    assert!(
        matches!(err, EmitError::TooLarge { max: 1000, .. }),
        "{err:?}"
    );
    // Nothing was sent: the connection is intact.
    let reply = client
        .emit_with_ack("echo", &"ok", 5 * SECOND)
        .await
        .unwrap();
    assert_eq!(reply, vec![json!("ok")]);
}
