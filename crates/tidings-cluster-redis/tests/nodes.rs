//! Three in-process tidings servers joined by a real `redis-server` (a private one on a unix
//! socket, or `TIDINGS_REDIS_URL`), with real Rust clients: room broadcasts, remote room
//! operations and fetch-sockets reach every node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tidings_client::{Client, ClientOptions, EventStream};
use tidings_cluster_redis::{RedisCluster, RedisClusterConfig};
use tidings_core::cluster::Cluster;
use tidings_server::{Server, ServerConfig};

#[path = "../../tidings-store-redis/tests/common/server.rs"]
#[allow(dead_code)]
mod server;

const WAIT: Duration = Duration::from_secs(10);

/// The Redis of a test: `TIDINGS_REDIS_URL` when it is set (and not empty), else a private
/// redis-server on a unix socket, killed on drop.
struct Redis {
    url: String,
    _private: Option<server::RedisServer>,
}

fn redis() -> Redis {
    match std::env::var("TIDINGS_REDIS_URL") {
        Ok(url) if !url.is_empty() => Redis {
            url,
            _private: None,
        },
        _ => {
            let private = server::RedisServer::start();
            Redis {
                url: private.url(),
                _private: Some(private),
            }
        }
    }
}

struct Node {
    server: Server,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

/// A server with the built-in events on 127.0.0.1:0, in the cluster of `prefix`.
async fn node(redis: &str, prefix: &str) -> Node {
    let server = Server::new(
        ServerConfig::builder()
            .builtin_events(true)
            .build()
            .unwrap(),
    );
    let cluster = RedisCluster::connect(RedisClusterConfig::new(redis).prefix(prefix))
        .await
        .unwrap();
    assert!(server.enable_cluster(Arc::new(cluster)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    Node { server, url }
}

async fn cluster_of_three(redis: &Redis) -> Vec<Node> {
    let prefix = format!("t{}:", fastrand_suffix());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&redis.url, &prefix).await);
    }
    // Every node listens before the test starts: peers() counts subscriptions.
    let deadline = Instant::now() + WAIT;
    for n in &nodes {
        loop {
            let peers = n.server.cluster().unwrap().peers().await.unwrap();
            if peers == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nodes never saw each other ({peers} peers)"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    nodes
}

fn fastrand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn client(node: &Node) -> Client {
    Client::connect(ClientOptions::builder(&node.url).build().unwrap())
        .await
        .unwrap()
}

async fn join(c: &Client, room: &str) {
    let ack = c
        .emit_with_ack("join", &json!({ "room": room }), WAIT)
        .await
        .unwrap();
    assert_eq!(ack[0], json!({ "ok": true }));
}

async fn next(stream: &mut EventStream) -> serde_json::Value {
    tokio::time::timeout(WAIT, stream.recv())
        .await
        .expect("no event within 10 s")
        .unwrap()
        .args[0]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_broadcasts_reach_every_node_in_order() {
    let redis = redis();
    let nodes = cluster_of_three(&redis).await;
    let mut members = Vec::new();
    for n in &nodes {
        let c = client(n).await;
        let chat = c.on("chat");
        join(&c, "lobby").await;
        members.push((c, chat));
    }
    // A client in another room on every node must not get the room's broadcasts.
    let outsider = client(&nodes[2]).await;
    let mut outsider_chat = outsider.on("chat");
    join(&outsider, "elsewhere").await;

    const N: u64 = 200;
    for i in 0..N {
        let ack = members[0]
            .0
            .emit_with_ack(
                "broadcast",
                &json!({ "room": "lobby", "event": "chat", "data": { "i": i } }),
                WAIT,
            )
            .await
            .unwrap();
        assert_eq!(ack[0]["ok"], json!(true));
    }
    // Nodes 2 and 3 get every broadcast, in order.
    for (c, chat) in members.iter_mut().skip(1) {
        for i in 0..N {
            assert_eq!(next(chat).await, json!({ "i": i }), "client {:?}", c.id());
        }
    }
    // The sender does not get its own: a marker from node 2 to the lobby is the first thing
    // its stream holds. Its own broadcasts would have come first, either written to it before
    // their acks (node 1's local delivery) or published to Redis before the marker (node 1
    // hearing them back from the channel).
    let ack = members[1]
        .0
        .emit_with_ack(
            "broadcast",
            &json!({ "room": "lobby", "event": "chat", "data": "lobby marker" }),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], json!(true));
    assert_eq!(
        next(&mut members[0].1).await,
        json!("lobby marker"),
        "the sender received one of its own broadcasts"
    );
    assert_eq!(next(&mut members[2].1).await, json!("lobby marker"));
    // A marker broadcast to the outsider's room arrives first: nothing from lobby reached it.
    let ack = members[1]
        .0
        .emit_with_ack(
            "broadcast",
            &json!({ "room": "elsewhere", "event": "chat", "data": "marker" }),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ack[0]["ok"], json!(true));
    assert_eq!(next(&mut outsider_chat).await, json!("marker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_room_operations_and_fetch_sockets() {
    let redis = redis();
    let nodes = cluster_of_three(&redis).await;
    let a = client(&nodes[1]).await;
    let b = client(&nodes[2]).await;
    let mut a_news = a.on("news");
    let mut b_news = b.on("news");
    join(&a, "lobby").await;
    join(&b, "lobby").await;

    // Node 0 has no member of the room, yet sees both.
    let ns = nodes[0].server.of("/");
    let mut found = ns.to("lobby").fetch_sockets(WAIT).await;
    found.sort_by(|x, y| x.sid.cmp(&y.sid));
    let mut expected = vec![a.id().unwrap().to_string(), b.id().unwrap().to_string()];
    expected.sort();
    assert_eq!(
        found.iter().map(|s| s.sid.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(found.iter().all(|s| s.rooms.iter().any(|r| r == "lobby")));
    // Their handshakes travel with them.
    assert!(found.iter().all(|s| {
        s.handshake
            .as_ref()
            .is_some_and(|h| h["query"]["EIO"] == json!("4"))
    }));
    // Every node's rooms, each once: the lobby and each socket's own.
    let mut rooms = ns.all_rooms(WAIT).await;
    rooms.sort();
    let mut expected_rooms = expected.clone();
    expected_rooms.push("lobby".to_owned());
    expected_rooms.sort();
    assert_eq!(rooms, expected_rooms);

    // Node 0 makes the lobby join `vip`, then broadcasts to `vip`: both receive it.
    ns.to("lobby").join("vip");
    // Ordered after the join: same node, same channel.
    ns.to("vip").emit("news", "for vips").unwrap();
    assert_eq!(next(&mut a_news).await, json!("for vips"));
    assert_eq!(next(&mut b_news).await, json!("for vips"));

    // Node 0 makes `b` leave `vip` (addressed by its own room, its id).
    ns.to(b.id().unwrap().to_string().as_str()).leave("vip");
    ns.to("vip").emit("news", "second").unwrap();
    ns.to("lobby").emit("news", "third").unwrap();
    assert_eq!(next(&mut a_news).await, json!("second"));
    assert_eq!(next(&mut a_news).await, json!("third"));
    // b left vip: its next news is the lobby one.
    assert_eq!(next(&mut b_news).await, json!("third"));

    // Disconnect by room, from a node that holds neither socket.
    ns.to("vip").disconnect();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = ns.to("lobby").fetch_sockets(WAIT).await;
        if left.len() == 1 {
            assert_eq!(left[0].sid, b.id().unwrap().to_string());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a was not disconnected: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // b is still served.
    ns.to("lobby").emit("news", "after").unwrap();
    assert_eq!(next(&mut b_news).await, json!("after"));
}

/// A node listening to the Node adapter channels of `key` too, whose `/` and `/admin`
/// server-side events go to `events` as `(node, namespace, event, args)`.
async fn node_with_server_side_handler(
    redis: &str,
    prefix: &str,
    key: &str,
    name: &'static str,
    events: tokio::sync::mpsc::UnboundedSender<(&'static str, String, String, serde_json::Value)>,
) -> (Node, Arc<RedisCluster>) {
    let server = Server::new(ServerConfig::builder().build().unwrap());
    let config = RedisClusterConfig::new(redis)
        .prefix(prefix)
        .node_adapter(Some(key.to_owned()));
    let cluster = Arc::new(RedisCluster::connect(config).await.unwrap());
    assert!(server.enable_cluster(cluster.clone()));
    for nsp in ["/", "/admin"] {
        let events = events.clone();
        server.of(nsp).on_server_side_emit(move |event, args| {
            let _ = events.send((name, nsp.to_owned(), event.to_owned(), json!(args)));
        });
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    (Node { server, url }, cluster)
}

/// `Namespace::server_side_emit` reaches the other tidings nodes' handlers (not its own), and
/// the Node emitter's `serverSideEmit` reaches every node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_events_from_tidings_nodes_and_the_node_emitter() {
    let redis = redis();
    let suffix = fastrand_suffix();
    let prefix = format!("t{suffix}:");
    let key = format!("sio{suffix}");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (a, a_cluster) =
        node_with_server_side_handler(&redis.url, &prefix, &key, "a", tx.clone()).await;
    let (_b, b_cluster) =
        node_with_server_side_handler(&redis.url, &prefix, &key, "b", tx.clone()).await;
    // Both listen to each other and to the Node channels before anything is sent.
    let deadline = Instant::now() + WAIT;
    for cluster in [&a_cluster, &b_cluster] {
        while cluster.peers().await.unwrap() != 1 || !cluster.node_adapter_listening() {
            assert!(
                Instant::now() < deadline,
                "the nodes did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    a.server
        .of("/")
        .server_side_emit("from-a", vec![json!(1), json!({"x": "y"})]);
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        (
            "b",
            "/".to_owned(),
            "from-a".to_owned(),
            json!([1, {"x": "y"}])
        )
    );

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients/js/node-server-side-emit.mjs");
    let node = std::env::var("TIDINGS_NODE").unwrap_or_else(|_| "node".to_owned());
    let output = tokio::process::Command::new(node)
        .arg(script)
        .env("REDIS_URL", &redis.url)
        .env("NODE_KEY", &key)
        .output();
    let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort_by_key(|(node, nsp, event, _)| (*node, nsp.clone(), event.clone()));
    assert_eq!(
        got,
        [
            (
                "a",
                "/".to_owned(),
                "hello".to_owned(),
                json!([{"n": 1}, "two"])
            ),
            ("a", "/admin".to_owned(), "ping".to_owned(), json!([])),
            (
                "b",
                "/".to_owned(),
                "hello".to_owned(),
                json!([{"n": 1}, "two"])
            ),
            ("b", "/admin".to_owned(), "ping".to_owned(), json!([])),
        ]
    );
    // Nothing more: a node never gets its own server-side events.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
}

/// With `node_cluster`, a tidings node's room operations, broadcasts and server-side events
/// reach a Node Socket.IO server on `@socket.io/redis-adapter` and its client
/// (tests/clients/js/node-adapter-peer.mjs checks what arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tidings_node_in_a_node_cluster_reaches_node_servers() {
    use tokio::io::AsyncBufReadExt;

    let redis = redis();
    let suffix = fastrand_suffix();
    let key = format!("sio{suffix}");
    let server = Server::new(ServerConfig::builder().build().unwrap());
    let config = RedisClusterConfig::new(&redis.url)
        .prefix(format!("t{suffix}:"))
        .node_adapter(Some(key.clone()))
        .node_cluster(true);
    let cluster = Arc::new(RedisCluster::connect(config).await.unwrap());
    assert!(server.enable_cluster(cluster));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients/js/node-adapter-peer.mjs");
    let mut peer = tokio::process::Command::new(
        std::env::var("TIDINGS_NODE").unwrap_or_else(|_| "node".to_owned()),
    )
    .arg(script)
    .env("TIDINGS_URL", &url)
    .env("REDIS_URL", &redis.url)
    .env("NODE_KEY", &key)
    .stdout(std::process::Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let mut lines = tokio::io::BufReader::new(peer.stdout.take().unwrap()).lines();
    let mut wait_for = async |prefix: &str| loop {
        let line = tokio::time::timeout(WAIT * 3, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {prefix} from the Node peer"))
            .unwrap()
            .unwrap_or_else(|| panic!("the Node peer ended before {prefix}"));
        println!("node peer: {line}");
        if line.starts_with(prefix) {
            return line;
        }
    };
    wait_for("READY").await;

    let ns = server.of("/");
    ns.to("lobby").join("vip");
    ns.to("vip").emit("news", &json!({"n": 1})).unwrap();
    ns.server_side_emit("hello", vec![json!(1), json!("two")]);
    ns.to("lobby").leave("vip");
    ns.to("vip").emit("late", &json!(null)).unwrap();
    ns.all().emit("marker", &json!(null)).unwrap();
    ns.to("lobby").disconnect();
    wait_for("ok:").await;
    let status = tokio::time::timeout(WAIT, peer.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the Node peer failed: {status}");
}

/// A broadcast with acknowledgements on every node: each node asks its own clients and reports
/// how many, then their answers; the asking node collects them all before the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_with_acks_collect_the_clients_of_every_node() {
    let redis = redis();
    let nodes = cluster_of_three(&redis).await;
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let c = client(n).await;
        join(&c, "lobby").await;
        let mut questions = c.on("question");
        tasks.push(tokio::spawn(async move {
            let q = tokio::time::timeout(WAIT, questions.recv())
                .await
                .expect("no question")
                .unwrap();
            assert!(q.wants_ack());
            q.ack(&json!({ "node": i, "q": q.args[0] })).await.unwrap();
        }));
        clients.push(c);
    }
    // Someone not in the room, on node 2: not asked.
    let outsider = client(&nodes[2]).await;
    let mut outsider_questions = outsider.on("question");

    let started = Instant::now();
    let acks = nodes[0]
        .server
        .of("/")
        .to("lobby")
        .emit_with_ack_on_all_nodes("question", vec![json!(42)], &[], WAIT)
        .await
        .unwrap();
    assert!(acks.is_complete, "{acks:?}");
    assert!(started.elapsed() < WAIT / 2, "answered, not timed out");
    assert_eq!(acks.local.len(), 1);
    assert_eq!(
        Some(acks.local[0].0.to_string()),
        clients[0].id().map(|id| id.to_string())
    );
    let local = acks.local[0].1.as_ref().unwrap();
    assert_eq!(local.args, [json!({ "node": 0, "q": 42 })]);
    assert_eq!(acks.remote_asked, 2);
    let mut remote: Vec<_> = acks.remote.iter().map(|r| r.args[0].clone()).collect();
    remote.sort_by_key(|v| v["node"].as_u64());
    assert_eq!(
        remote,
        [json!({ "node": 1, "q": 42 }), json!({ "node": 2, "q": 42 })]
    );
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), outsider_questions.recv())
            .await
            .is_err(),
        "a socket outside the room was asked"
    );

    // A client that does not answer: the broadcast ends at its timeout, incomplete.
    let silent = client(&nodes[1]).await;
    join(&silent, "quiet").await;
    let _ignored = silent.on("question");
    let acks = nodes[0]
        .server
        .of("/")
        .to("quiet")
        .emit_with_ack_on_all_nodes("question", vec![json!(1)], &[], Duration::from_millis(500))
        .await
        .unwrap();
    assert!(!acks.is_complete);
    assert_eq!((acks.remote_asked, acks.remote.len()), (1, 0));
}

/// With `node_cluster`, requests that expect answers work both ways between a tidings node and
/// a Node Socket.IO server on `@socket.io/redis-adapter` (tests/clients/js/node-adapter-requests.mjs):
/// the tidings node's `fetch_sockets` gets the Node server's socket (rooms, handshake, data),
/// its `server_side_emit_with_ack` the Node handler's answer, and the Node server's
/// `serverSideEmitWithAck` this node's handler's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_answers_between_a_tidings_node_and_a_node_server() {
    use tokio::io::AsyncBufReadExt;

    let redis = redis();
    let suffix = fastrand_suffix();
    let key = format!("sio{suffix}");
    let server = Server::new(ServerConfig::builder().build().unwrap());
    server
        .of("/")
        .on_server_side_emit_with_ack(|event, args, ack| {
            if let (Some(ack), "ask") = (ack, event) {
                ack.send(json!({ "from": "tidings", "args": args }));
            }
        });
    let config = RedisClusterConfig::new(&redis.url)
        .prefix(format!("t{suffix}:"))
        .node_adapter(Some(key.clone()))
        .node_cluster(true);
    let cluster = Arc::new(RedisCluster::connect(config).await.unwrap());
    assert!(server.enable_cluster(cluster.clone()));

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients/js/node-adapter-requests.mjs");
    let mut peer = tokio::process::Command::new(
        std::env::var("TIDINGS_NODE").unwrap_or_else(|_| "node".to_owned()),
    )
    .arg(script)
    .env("TIDINGS_URL", "http://127.0.0.1:1")
    .env("REDIS_URL", &redis.url)
    .env("NODE_KEY", &key)
    .stdout(std::process::Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let mut lines = tokio::io::BufReader::new(peer.stdout.take().unwrap()).lines();
    let mut wait_for = async |prefix: &str| loop {
        let line = tokio::time::timeout(WAIT * 3, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {prefix} from the Node peer"))
            .unwrap()
            .unwrap_or_else(|| panic!("the Node peer ended before {prefix}"));
        println!("node peer: {line}");
        if line.starts_with(prefix) {
            return line;
        }
    };
    let ready = wait_for("READY").await;
    let node_sid = ready.trim_start_matches("READY ").to_owned();
    // The Node server is counted for `/` once its adapter subscribed: it printed READY after.
    assert_eq!(cluster.peers_for("/").await.unwrap(), 1);
    assert_eq!(cluster.peers().await.unwrap(), 0, "no other tidings node");

    let ns = server.of("/");
    let sockets = ns.all().fetch_sockets(WAIT).await;
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let theirs = &sockets[0];
    assert_eq!(theirs.sid, node_sid);
    assert_eq!(theirs.node, tidings_cluster_redis::node::NODE_SERVER);
    let mut rooms = theirs.rooms.clone();
    rooms.sort();
    let mut expected = vec!["lobby".to_owned(), node_sid.clone()];
    expected.sort();
    assert_eq!(rooms, expected);
    assert_eq!(theirs.data, Some(json!({ "user": "n1" })));
    let handshake = theirs.handshake.as_ref().unwrap();
    assert_eq!(handshake["query"]["EIO"], json!("4"));
    assert!(ns.to("elsewhere").fetch_sockets(WAIT).await.is_empty());
    // The Node server's rooms (allRooms): its socket's own and `lobby`.
    let mut rooms = ns.all_rooms(WAIT).await;
    rooms.sort();
    assert_eq!(rooms, expected);

    let started = Instant::now();
    let answers = ns
        .server_side_emit_with_ack("ping", vec![json!(3)], WAIT)
        .await;
    assert_eq!(answers, [json!({ "from": "node", "n": 3 })]);
    assert!(started.elapsed() < WAIT / 2, "answered, not timed out");

    // A broadcast with acks reaches the Node server's client, whose ack (binary included)
    // comes back through the adapter.
    let acks = ns
        .all()
        .emit_with_ack_on_all_nodes(
            "question",
            vec![json!(4), tidings_proto::packet::placeholder(0)],
            &[bytes::Bytes::from_static(&[1, 2, 3])],
            WAIT,
        )
        .await
        .unwrap();
    assert!(acks.is_complete, "{acks:?}");
    assert!(acks.local.is_empty());
    assert_eq!((acks.remote_asked, acks.remote.len()), (1, 1));
    let reply = &acks.remote[0];
    assert_eq!(
        reply.args,
        [
            json!({ "from": "node-client", "n": 4, "size": 3, "echo": { "_placeholder": true, "num": 0 } })
        ]
    );
    assert_eq!(reply.attachments, [bytes::Bytes::from_static(&[4])]);

    // A fetched Node socket, made to join a room by its id (the room every socket is in).
    ns.to(theirs.sid.as_str()).join("picked");
    ns.server_side_emit("done", Vec::new());
    wait_for("ok:").await;
    let status = tokio::time::timeout(WAIT, peer.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the Node peer failed: {status}");
}

/// A node with built-in events and the Admin UI (no login, development mode) named `id`.
async fn admin_node(redis: &str, prefix: &str, id: &str) -> Node {
    let server = Server::new(
        ServerConfig::builder()
            .builtin_events(true)
            .build()
            .unwrap(),
    );
    let cluster = RedisCluster::connect(RedisClusterConfig::new(redis).prefix(prefix))
        .await
        .unwrap();
    assert!(server.enable_cluster(Arc::new(cluster)));
    let mut admin = tidings_server::AdminUiConfig::new(tidings_server::AdminAuth::None);
    admin.server_id = Some(id.to_owned());
    server.enable_admin_ui(admin).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    Node { server, url }
}

/// The Admin UI across nodes: an app connected to node A sees node B's `server_stats` and
/// B's sockets as they connect, and its `join` command reaches a socket of B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_of_one_node_sees_and_commands_the_others() {
    let redis = redis();
    let prefix = format!("t{}:", fastrand_suffix());
    let a = admin_node(&redis.url, &prefix, "node-a").await;
    let b = admin_node(&redis.url, &prefix, "node-b").await;
    let deadline = Instant::now() + WAIT;
    for n in [&a, &b] {
        while n.server.cluster().unwrap().peers().await.unwrap() != 1 {
            assert!(Instant::now() < deadline, "the nodes never saw each other");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let app = Client::connect(
        ClientOptions::builder(&a.url)
            .namespace("/admin")
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let mut stats = app.on("server_stats");
    let mut connected = app.on("socket_connected");

    // Both nodes' statistics reach the app on A (each node sends its own every 2 s).
    let mut servers = std::collections::BTreeSet::new();
    while servers.len() < 2 {
        let event = tokio::time::timeout(WAIT, stats.recv())
            .await
            .expect("server_stats from both nodes within 10 s")
            .unwrap();
        servers.insert(event.args[0]["serverId"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        servers.into_iter().collect::<Vec<_>>(),
        ["node-a", "node-b"]
    );

    // A client of B: the app on A hears of it.
    let c = client(&b).await;
    let sid = c.id().unwrap().to_string();
    let seen = loop {
        let event = tokio::time::timeout(WAIT, connected.recv())
            .await
            .expect("socket_connected of B's client within 10 s")
            .unwrap();
        if event.args[0]["id"] == json!(sid) {
            break event.args[0].clone();
        }
    };
    assert_eq!(seen["nsp"], json!("/"));

    // The app's `join` (namespace, room, filter: the socket's own room) reaches B's socket.
    let mut news = c.on("news");
    app.emit_args(
        "join",
        vec![json!("/"), json!("vip"), json!(sid)],
        Vec::new(),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let members = a.server.of("/").to("vip").fetch_sockets(WAIT).await;
        if members.iter().any(|m| m.sid == sid) {
            break;
        }
        assert!(Instant::now() < deadline, "B's socket never joined vip");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.server.of("/").to("vip").emit("news", "for vip").unwrap();
    assert_eq!(next(&mut news).await, json!("for vip"));
}
