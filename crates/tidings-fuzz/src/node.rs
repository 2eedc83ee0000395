//! The Node Socket.IO Redis adapter's and emitter's messages, as `tidings-cluster-redis` reads
//! them (`node.rs`): broadcasts, requests and answers.

use tidings_cluster_redis::node;
use tidings_core::cluster::{ClusterMessage, RemoteSocket};
use tidings_proto::parser::Parser;

const KEY: &str = "socket.io";
const UID: &str = "tidings-me";

/// The first byte picks the channel and the mode (a node counted by Node servers or not); the
/// rest is the message. A message decodes the same way twice; what a tidings node would send
/// back — the Node form of a decoded broadcast or room operation, re-read — decodes to the
/// same message; a Node request that wants an answer gets one on its namespace's response
/// channel with its `requestId`.
///
/// # Panics
///
/// When a property breaks.
pub fn decode_node(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let channel = match selector % 4 {
        0 => "socket.io#/#",
        1 => "socket.io#/chat#room#",
        2 => "socket.io-request#/#",
        _ => "socket.io-response#/#",
    };
    let counted = selector & 4 != 0;
    let parser = if selector & 8 != 0 {
        Parser::Msgpack
    } else {
        Parser::Default
    };
    let decode = |channel: &str, payload: &[u8]| {
        if counted {
            node::decode_counted(KEY, UID, channel.as_bytes(), payload, 1 << 16, parser)
        } else {
            node::decode(KEY, channel.as_bytes(), payload, 1 << 16, parser)
        }
    };
    let Ok(messages) = decode(channel, payload) else {
        return;
    };
    assert_eq!(decode(channel, payload), Ok(messages.clone()), "{data:x?}");
    for message in &messages {
        check_reencoded(message, parser, data);
        check_answer(message, data);
    }
}

/// A broadcast or room operation in the Node form, as another (non-tidings) server would send
/// it, reads back as itself.
fn check_reencoded(message: &ClusterMessage, parser: Parser, data: &[u8]) {
    if !matches!(
        message,
        ClusterMessage::Broadcast { .. }
            | ClusterMessage::Join { .. }
            | ClusterMessage::Leave { .. }
            | ClusterMessage::Disconnect { .. }
            | ClusterMessage::ServerSideEmit { .. }
    ) {
        return;
    }
    for (channel, payload) in node::encode(KEY, "node-server", message) {
        let again = node::decode(KEY, channel.as_bytes(), &payload, usize::MAX, parser);
        assert_eq!(again, Ok(vec![message.clone()]), "{data:x?}");
    }
}

/// A Node server's request gets an answer on the response channel of its namespace.
fn check_answer(message: &ClusterMessage, data: &[u8]) {
    let (origin, answer) = match message {
        ClusterMessage::FetchSockets { origin, .. } => (
            origin,
            ClusterMessage::Sockets {
                request: 0,
                sockets: vec![RemoteSocket {
                    sid: "s".into(),
                    node: "n".into(),
                    rooms: vec!["s".into()],
                    handshake: None,
                    data: None,
                }],
            },
        ),
        ClusterMessage::FetchRooms { origin, .. } => (
            origin,
            ClusterMessage::Rooms {
                request: 0,
                rooms: vec!["r".into()],
            },
        ),
        ClusterMessage::ServerSideEmitWithAck { origin, .. } => (
            origin,
            ClusterMessage::ServerSideAck {
                request: 0,
                data: serde_json::Value::Null,
            },
        ),
        ClusterMessage::BroadcastWithAck { origin, .. } => (
            origin,
            ClusterMessage::BroadcastClientCount {
                request: 0,
                count: 1,
            },
        ),
        _ => return,
    };
    let Some((channel, payload)) = node::answer(KEY, origin, &answer) else {
        panic!("no answer to {message:?} ({data:x?})");
    };
    assert!(
        channel.starts_with("socket.io-response#/") && channel.ends_with('#'),
        "{channel} ({data:x?})"
    );
    let body: serde_json::Value =
        serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("{e} ({data:x?})"));
    assert!(body.get("requestId").is_some(), "{body} ({data:x?})");
}
