//! The cross-node seam: how several tidings nodes share room broadcasts and remote operations.
//!
//! A node hands every broadcast it makes — already encoded, once — to its [`Cluster`], which
//! delivers it to every other node; each node then delivers it to its own sockets in the
//! addressed rooms. Room operations (`join` / `leave` / `disconnect` by room) travel the same
//! way, and "which sockets are in this room across all nodes" is a request that every other
//! node answers. The durable topics do not travel here: they live in a shared
//! [`crate::store::Store`]; only a wake-up hint ([`ClusterMessage::Published`]) and
//! subscription changes ([`ClusterMessage::Subscribed`]) do.
//!
//! Guarantees a backend must give: messages from one node reach every other node in the order
//! they were published, a node never receives its own messages, and a failure is logged and
//! counted, never a panic. Broadcasts are as volatile across nodes as they are on one node: a
//! node that is cut off from the cluster misses them (durable topics are the tool for what
//! must arrive).
//!
//! The wire form ([`ClusterMessage::encode`] / [`ClusterMessage::decode`]) is JSON with binary
//! frames in base64; a broadcast is encoded once however many nodes receive it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A future returned by a [`Cluster`] method.
pub type ClusterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ClusterError>> + Send + 'a>>;

/// A cluster operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The backend cannot be reached right now.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// A message from another node could not be decoded.
    #[error("malformed cluster message: {0}")]
    Malformed(String),
}

/// Which sockets of a namespace an operation addresses: those in any of `rooms` (every socket
/// of the namespace when empty) and in none of `except`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The namespace, e.g. `/` or `/chat`.
    pub namespace: String,
    /// Rooms addressed; empty = the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms whose members are left out.
    pub except: Vec<String>,
}

/// One encoded Engine.IO frame of a broadcast, as it goes on the wire.
///
/// In JSON a text frame is a string and a binary frame is `{"b": "<base64>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireFrame {
    /// A text packet including its Engine.IO type digit, e.g. `42["news",1]`.
    Text(Bytes),
    /// A binary attachment's bytes.
    Binary(Bytes),
}

impl Serialize for WireFrame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // Text frames are encoded Socket.IO packets, UTF-8 by construction; anything else
            // would not survive JSON and goes as U+FFFD.
            WireFrame::Text(text) => serializer.serialize_str(&String::from_utf8_lossy(text)),
            WireFrame::Binary(bytes) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("b", &BASE64.encode(bytes))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for WireFrame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WireFrameVisitor)
    }
}

struct WireFrameVisitor;

impl<'de> Visitor<'de> for WireFrameVisitor {
    type Value = WireFrame;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"a text frame (a string) or a binary frame ({"b": base64})"#)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<WireFrame, E> {
        Ok(WireFrame::Text(Bytes::copy_from_slice(text.as_bytes())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<WireFrame, E> {
        Ok(WireFrame::Text(Bytes::from(text)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireFrame, A::Error> {
        let mut encoded: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "b" {
                // A field of a newer version: ignored, like unknown fields of messages.
                map.next_value::<IgnoredAny>()?;
            } else if encoded.is_some() {
                return Err(de::Error::duplicate_field("b"));
            } else {
                encoded = Some(map.next_value()?);
            }
        }
        let encoded = encoded.ok_or_else(|| de::Error::missing_field("b"))?;
        BASE64
            .decode(encoded.as_bytes())
            .map(|bytes| WireFrame::Binary(Bytes::from(bytes)))
            .map_err(|e| de::Error::custom(format_args!("binary frame: {e}")))
    }
}

/// A socket on some node, as reported by a fetch-sockets request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSocket {
    /// The socket id.
    pub sid: String,
    /// The node that holds it.
    pub node: String,
    /// Its rooms.
    pub rooms: Vec<String>,
    /// Its handshake as Node's `socket.handshake` reads (`headers`, `query`, `address`, `time`,
    /// `issued`, `url`, `secure`, `xdomain`, `auth`), when the answering node sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<serde_json::Value>,
    /// Its application data (Node's `socket.data`), when the answering node has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// What nodes tell each other.
///
/// On the wire (see [`ClusterMessage::encode`]) a message is a JSON object: `"t"` names the
/// variant in snake case (`"fetch_sockets"`), the variant's fields follow under their own
/// names, and the frames of a broadcast are [`WireFrame`]s. Nodes of different versions share
/// a cluster during an upgrade: a change to this form is a protocol change (the golden test
/// `the_wire_form_is_pinned` says which bytes every variant has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClusterMessage {
    /// Deliver these frames to the local sockets of `target`.
    Broadcast {
        /// Who receives it.
        target: Target,
        /// The encoded packet: one text frame, then its binary attachments.
        frames: Vec<WireFrame>,
        /// The Connection State Recovery offset the packet carries, if any (left out of the
        /// JSON when there is none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// Make the local sockets of `target` join `room`.
    Join {
        /// Whose sockets.
        target: Target,
        /// The room to join.
        room: String,
    },
    /// Make the local sockets of `target` leave `room`.
    Leave {
        /// Whose sockets.
        target: Target,
        /// The room to leave.
        room: String,
    },
    /// Disconnect the local sockets of `target` from their namespace.
    Disconnect {
        /// Whose sockets.
        target: Target,
        /// Close each socket's whole connection (every namespace), as Node's
        /// `disconnectSockets(true)` does; left out of the JSON when false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        close: bool,
    },
    /// Report the local sockets of `target` to node `origin` with [`ClusterMessage::Sockets`].
    FetchSockets {
        /// Matches the answers to the request.
        request: u64,
        /// The asking node.
        origin: String,
        /// Whose sockets.
        target: Target,
    },
    /// The answer to [`ClusterMessage::FetchSockets`].
    Sockets {
        /// The request answered.
        request: u64,
        /// The answering node's sockets.
        sockets: Vec<RemoteSocket>,
    },
    /// Connection State Recovery: a client reconnected to node `origin` with the private
    /// session id `pid` of a socket that may still be connected here (its node has not noticed
    /// the connection is gone). The node holding it closes it, writes its session to the
    /// shared recovery log and answers [`ClusterMessage::SessionReleased`].
    ReleaseSession {
        /// Matches the answers to the request.
        request: u64,
        /// The asking node.
        origin: String,
        /// The private session id (a secret: nodes trust each other).
        pid: String,
    },
    /// The answer to [`ClusterMessage::ReleaseSession`].
    SessionReleased {
        /// The request answered.
        request: u64,
        /// Whether this node held the session (and has written it to the log).
        found: bool,
    },
    /// An event for the server itself, not for clients (Node's `serverSideEmit`): handed to
    /// the namespace's [`on_server_side_emit`] handlers of every other node.
    ///
    /// [`on_server_side_emit`]: https://docs.rs/tidings-server/latest/tidings_server/struct.Namespace.html#method.on_server_side_emit
    ServerSideEmit {
        /// The namespace.
        namespace: String,
        /// The event name and its arguments, as Node's `serverSideEmit(event, ...args)` sends
        /// them: JSON (no binary).
        args: Vec<serde_json::Value>,
    },
    /// [`ClusterMessage::ServerSideEmit`] with an acknowledgement (Node's
    /// `serverSideEmitWithAck`): the handler of `namespace` on every other node is given a
    /// callback, whose one value goes back to `origin` as [`ClusterMessage::ServerSideAck`].
    ServerSideEmitWithAck {
        /// Matches the answers to the request.
        request: u64,
        /// The asking node.
        origin: String,
        /// The namespace.
        namespace: String,
        /// The event name and its arguments (JSON).
        args: Vec<serde_json::Value>,
    },
    /// One node's answer to [`ClusterMessage::ServerSideEmitWithAck`].
    ServerSideAck {
        /// The request answered.
        request: u64,
        /// The value the handler acknowledged with.
        data: serde_json::Value,
    },
    /// A broadcast whose recipients are each asked to acknowledge (Node's
    /// `io.timeout(ms).emit(event, ..., callback)`): every other node sends the event to its
    /// sockets of `target` with an ack id of its own, answers `origin` with
    /// [`ClusterMessage::BroadcastClientCount`] once, then with one
    /// [`ClusterMessage::BroadcastAck`] per client that acknowledges within `timeout_ms`.
    BroadcastWithAck {
        /// Matches the answers to the request.
        request: u64,
        /// The asking node.
        origin: String,
        /// Who receives it.
        target: Target,
        /// The event name.
        event: String,
        /// Its arguments; binary values are placeholders for `binaries`.
        args: Vec<serde_json::Value>,
        /// The binary attachments (only [`WireFrame::Binary`]), left out of the JSON when none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        binaries: Vec<WireFrame>,
        /// How long the recipients' acknowledgements are awaited.
        timeout_ms: u64,
    },
    /// How many of its sockets a node asked to acknowledge a [`ClusterMessage::BroadcastWithAck`].
    BroadcastClientCount {
        /// The request answered.
        request: u64,
        /// Sockets asked.
        count: u64,
    },
    /// One client's acknowledgement of a [`ClusterMessage::BroadcastWithAck`].
    BroadcastAck {
        /// The request answered.
        request: u64,
        /// The client's acknowledgement arguments; binary values are placeholders.
        args: Vec<serde_json::Value>,
        /// Their binary attachments (only [`WireFrame::Binary`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        binaries: Vec<WireFrame>,
    },
    /// Report the rooms of `namespace` that have sockets on this node to `origin` with
    /// [`ClusterMessage::Rooms`] (Node's `adapter.allRooms()`).
    FetchRooms {
        /// Matches the answers to the request.
        request: u64,
        /// The asking node.
        origin: String,
        /// The namespace.
        namespace: String,
    },
    /// The answer to [`ClusterMessage::FetchRooms`].
    Rooms {
        /// The request answered.
        request: u64,
        /// The answering node's rooms.
        rooms: Vec<String>,
    },
    /// A message was appended to durable `topic`: dispatchers of its subscriptions should
    /// look for work now rather than at their next poll.
    Published {
        /// The topic.
        topic: String,
    },
    /// `identity` subscribed to (`subscribed = true`) or left (`false`) the queue `key`
    /// (`id:<name>` or `group:<name>`) of `topic`; other nodes update their routing.
    Subscribed {
        /// The topic.
        topic: String,
        /// The subscription key.
        key: String,
        /// The identity.
        identity: String,
        /// Joined (true) or left (false).
        subscribed: bool,
    },
}

/// A message and the node that sent it, as carried between nodes: `{"from": "<node>", "t": …}`.
/// `F` and `M` are borrowed to encode and owned to decode.
#[derive(Serialize, Deserialize)]
struct Envelope<F, M> {
    /// The sending node.
    from: F,
    #[serde(flatten)]
    message: M,
}

impl ClusterMessage {
    /// Encodes the message sent by node `from`.
    pub fn encode(&self, from: &str) -> Vec<u8> {
        let envelope = Envelope {
            from,
            message: self,
        };
        // Serializing plain strings, numbers and vectors cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Decodes a message; returns it with the id of the node that sent it.
    pub fn decode(bytes: &[u8]) -> Result<(String, ClusterMessage), ClusterError> {
        let envelope: Envelope<String, ClusterMessage> =
            serde_json::from_slice(bytes).map_err(|e| ClusterError::Malformed(e.to_string()))?;
        Ok((envelope.from, envelope.message))
    }
}

/// Receives the messages of other nodes, in the order each node sent them.
pub type ClusterHandler = Arc<dyn Fn(ClusterMessage) + Send + Sync>;

/// The cross-node bus. See the module docs for what a backend guarantees.
pub trait Cluster: Send + Sync + 'static {
    /// This node's id, unique in the cluster.
    fn node_id(&self) -> &str;

    /// Sends `message` to every other node. Never blocks: the backend queues it and sends
    /// queued messages in order; a failure is logged and counted by the backend.
    fn publish(&self, message: ClusterMessage);

    /// Sends `message` to node `node` only (answers to requests).
    fn send_to(&self, node: &str, message: ClusterMessage);

    /// Starts delivering other nodes' messages to `handler` (called once, at start-up).
    fn start(&self, handler: ClusterHandler);

    /// How many other nodes are listening now: the number of answers a request can expect.
    fn peers(&self) -> ClusterFuture<'_, usize>;

    /// How many other nodes answer a request about `namespace` (fetch sockets, server-side
    /// events with an acknowledgement): [`Cluster::peers`] by default; a backend that also
    /// reaches Node servers adds those that have the namespace.
    fn peers_for(&self, namespace: &str) -> ClusterFuture<'_, usize> {
        let _ = namespace;
        self.peers()
    }

    /// The server created namespace `name` (called for those that exist when the cluster is
    /// enabled too). A backend that must listen per namespace, as Node's Redis adapter does,
    /// starts here. Must not block: it is called under the server's namespace lock.
    fn namespace_opened(&self, name: &str) {
        let _ = name;
    }

    /// The server removed namespace `name` (an on-demand one whose last socket left).
    fn namespace_closed(&self, name: &str) {
        let _ = name;
    }

    /// Answers when the bus can carry messages (readiness: `GET /readyz`). The default asks
    /// for [`Cluster::peers`], a round trip to the backend.
    fn ping(&self) -> ClusterFuture<'_, ()> {
        Box::pin(async move { self.peers().await.map(|_| ()) })
    }

    /// What the backend measures about itself (round trips, errors). The default: nothing.
    fn metrics(&self) -> crate::metrics::BackendMetrics {
        crate::metrics::BackendMetrics::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_target() -> Target {
        Target {
            namespace: "/chat".into(),
            rooms: vec!["lobby".into()],
            except: vec!["muted".into()],
        }
    }

    #[test]
    fn messages_round_trip() {
        let target = chat_target();
        let cases = vec![
            ClusterMessage::Broadcast {
                target: target.clone(),
                frames: vec![
                    WireFrame::Text(Bytes::from_static(
                        br#"451-/chat,["x",{"_placeholder":true,"num":0}]"#,
                    )),
                    WireFrame::Binary(Bytes::from_static(&[0, 255, 7])),
                ],
                offset: Some(42),
            },
            ClusterMessage::Join {
                target: target.clone(),
                room: "r".into(),
            },
            ClusterMessage::Leave {
                target: target.clone(),
                room: "r".into(),
            },
            ClusterMessage::Disconnect {
                target: target.clone(),
                close: false,
            },
            ClusterMessage::Disconnect {
                target: target.clone(),
                close: true,
            },
            ClusterMessage::ServerSideEmit {
                namespace: "/chat".into(),
                args: vec!["hello".into(), serde_json::json!({"n": 1})],
            },
            ClusterMessage::FetchSockets {
                request: 9,
                origin: "n1".into(),
                target,
            },
            ClusterMessage::Sockets {
                request: 9,
                sockets: vec![RemoteSocket {
                    sid: "abc".into(),
                    node: "n2".into(),
                    rooms: vec!["abc".into(), "lobby".into()],
                    handshake: None,
                    data: None,
                }],
            },
            ClusterMessage::ReleaseSession {
                request: 9,
                origin: "n2".into(),
                pid: "p".into(),
            },
            ClusterMessage::SessionReleased {
                request: 9,
                found: true,
            },
            ClusterMessage::Published {
                topic: "pickup".into(),
            },
            ClusterMessage::Subscribed {
                topic: "pickup".into(),
                key: "group:drivers".into(),
                identity: "d-1".into(),
                subscribed: true,
            },
            ClusterMessage::Sockets {
                request: 3,
                sockets: vec![RemoteSocket {
                    sid: "abc".into(),
                    node: "n2".into(),
                    rooms: vec!["abc".into()],
                    handshake: Some(serde_json::json!({"query": {"a": "1"}})),
                    data: Some(serde_json::json!({"user": 7})),
                }],
            },
            ClusterMessage::ServerSideEmitWithAck {
                request: 4,
                origin: "n1".into(),
                namespace: "/".into(),
                args: vec!["ping".into()],
            },
            ClusterMessage::ServerSideAck {
                request: 4,
                data: serde_json::json!({"pong": true}),
            },
            ClusterMessage::BroadcastWithAck {
                request: 5,
                origin: "n1".into(),
                target: chat_target(),
                event: "q".into(),
                args: vec![serde_json::json!({"_placeholder": true, "num": 0})],
                binaries: vec![WireFrame::Binary(Bytes::from_static(&[1, 2]))],
                timeout_ms: 1000,
            },
            ClusterMessage::BroadcastClientCount {
                request: 5,
                count: 2,
            },
            ClusterMessage::BroadcastAck {
                request: 5,
                args: vec!["yes".into()],
                binaries: Vec::new(),
            },
            ClusterMessage::FetchRooms {
                request: 6,
                origin: "n1".into(),
                namespace: "/".into(),
            },
            ClusterMessage::Rooms {
                request: 6,
                rooms: vec!["lobby".into()],
            },
        ];
        for message in cases {
            let bytes = message.encode("node-a");
            let (from, back) = ClusterMessage::decode(&bytes).unwrap();
            assert_eq!(from, "node-a");
            assert_eq!(back, message);
        }
    }

    // The values repeat those of `messages_round_trip` on purpose: what round-trips is also
    // what is pinned.
    /// The exact bytes of every variant, pinned: nodes of different versions share a cluster
    /// during a rolling upgrade, so a change here must be a deliberate protocol change.
    #[test]
    fn the_wire_form_is_pinned() {
        let target = chat_target();
        const TARGET: &str =
            r#""target":{"namespace":"/chat","rooms":["lobby"],"except":["muted"]}"#;
        let cases: Vec<(ClusterMessage, String)> = vec![
            (
                ClusterMessage::Broadcast {
                    target: target.clone(),
                    frames: vec![
                        WireFrame::Text(Bytes::from_static(
                            br#"451-/chat,["x",{"_placeholder":true,"num":0},"42"]"#,
                        )),
                        WireFrame::Binary(Bytes::from_static(&[0, 255, 7])),
                        WireFrame::Binary(Bytes::new()),
                    ],
                    offset: Some(42),
                },
                format!(
                    r#"{{"from":"node-a","t":"broadcast",{TARGET},"frames":["451-/chat,[\"x\",{{\"_placeholder\":true,\"num\":0}},\"42\"]",{{"b":"AP8H"}},{{"b":""}}],"offset":42}}"#
                ),
            ),
            (
                ClusterMessage::Broadcast {
                    target: Target {
                        namespace: "/".into(),
                        rooms: Vec::new(),
                        except: Vec::new(),
                    },
                    frames: vec![WireFrame::Text(Bytes::from_static("42[\"é\"]".as_bytes()))],
                    offset: None,
                },
                r#"{"from":"node-a","t":"broadcast","target":{"namespace":"/","rooms":[],"except":[]},"frames":["42[\"é\"]"]}"#.to_owned(),
            ),
            (
                ClusterMessage::Join {
                    target: target.clone(),
                    room: "r".into(),
                },
                format!(r#"{{"from":"node-a","t":"join",{TARGET},"room":"r"}}"#),
            ),
            (
                ClusterMessage::Leave {
                    target: target.clone(),
                    room: "r".into(),
                },
                format!(r#"{{"from":"node-a","t":"leave",{TARGET},"room":"r"}}"#),
            ),
            (
                ClusterMessage::Disconnect {
                    target: target.clone(),
                    close: false,
                },
                format!(r#"{{"from":"node-a","t":"disconnect",{TARGET}}}"#),
            ),
            (
                ClusterMessage::Disconnect {
                    target: target.clone(),
                    close: true,
                },
                format!(r#"{{"from":"node-a","t":"disconnect",{TARGET},"close":true}}"#),
            ),
            (
                ClusterMessage::ServerSideEmit {
                    namespace: "/".into(),
                    args: vec!["hello".into(), 1.into()],
                },
                r#"{"from":"node-a","t":"server_side_emit","namespace":"/","args":["hello",1]}"#
                    .to_owned(),
            ),
            (
                ClusterMessage::FetchSockets {
                    request: u64::MAX,
                    origin: "n1".into(),
                    target,
                },
                format!(
                    r#"{{"from":"node-a","t":"fetch_sockets","request":18446744073709551615,"origin":"n1",{TARGET}}}"#
                ),
            ),
            (
                ClusterMessage::Sockets {
                    request: 9,
                    sockets: vec![RemoteSocket {
                        sid: "abc".into(),
                        node: "n2".into(),
                        rooms: vec!["abc".into(), "lobby".into()],
                        handshake: None,
                        data: None,
                    }],
                },
                r#"{"from":"node-a","t":"sockets","request":9,"sockets":[{"sid":"abc","node":"n2","rooms":["abc","lobby"]}]}"#.to_owned(),
            ),
            (
                ClusterMessage::ReleaseSession {
                    request: 9,
                    origin: "n2".into(),
                    pid: "p".into(),
                },
                r#"{"from":"node-a","t":"release_session","request":9,"origin":"n2","pid":"p"}"#
                    .to_owned(),
            ),
            (
                ClusterMessage::SessionReleased {
                    request: 9,
                    found: true,
                },
                r#"{"from":"node-a","t":"session_released","request":9,"found":true}"#.to_owned(),
            ),
            (
                ClusterMessage::Published {
                    topic: "pickup".into(),
                },
                r#"{"from":"node-a","t":"published","topic":"pickup"}"#.to_owned(),
            ),
            (
                ClusterMessage::Subscribed {
                    topic: "pickup".into(),
                    key: "group:drivers".into(),
                    identity: "d-1".into(),
                    subscribed: false,
                },
                r#"{"from":"node-a","t":"subscribed","topic":"pickup","key":"group:drivers","identity":"d-1","subscribed":false}"#.to_owned(),
            ),
            (
                ClusterMessage::Sockets {
                    request: 1,
                    sockets: vec![RemoteSocket {
                        sid: "s".into(),
                        node: "n".into(),
                        rooms: Vec::new(),
                        handshake: Some(serde_json::json!({"query": {}})),
                        data: Some(serde_json::json!({})),
                    }],
                },
                r#"{"from":"node-a","t":"sockets","request":1,"sockets":[{"sid":"s","node":"n","rooms":[],"handshake":{"query":{}},"data":{}}]}"#.to_owned(),
            ),
            (
                ClusterMessage::ServerSideEmitWithAck {
                    request: 2,
                    origin: "n1".into(),
                    namespace: "/".into(),
                    args: vec!["ping".into()],
                },
                r#"{"from":"node-a","t":"server_side_emit_with_ack","request":2,"origin":"n1","namespace":"/","args":["ping"]}"#.to_owned(),
            ),
            (
                ClusterMessage::ServerSideAck {
                    request: 2,
                    data: serde_json::Value::Null,
                },
                r#"{"from":"node-a","t":"server_side_ack","request":2,"data":null}"#.to_owned(),
            ),
            (
                ClusterMessage::BroadcastWithAck {
                    request: 3,
                    origin: "n1".into(),
                    target: chat_target(),
                    event: "q".into(),
                    args: vec![1.into()],
                    binaries: vec![WireFrame::Binary(Bytes::from_static(&[0, 255, 7]))],
                    timeout_ms: 500,
                },
                format!(
                    r#"{{"from":"node-a","t":"broadcast_with_ack","request":3,"origin":"n1",{TARGET},"event":"q","args":[1],"binaries":[{{"b":"AP8H"}}],"timeout_ms":500}}"#
                ),
            ),
            (
                ClusterMessage::BroadcastClientCount {
                    request: 3,
                    count: 0,
                },
                r#"{"from":"node-a","t":"broadcast_client_count","request":3,"count":0}"#.to_owned(),
            ),
            (
                ClusterMessage::BroadcastAck {
                    request: 3,
                    args: vec!["ok".into()],
                    binaries: Vec::new(),
                },
                r#"{"from":"node-a","t":"broadcast_ack","request":3,"args":["ok"]}"#.to_owned(),
            ),
            (
                ClusterMessage::FetchRooms {
                    request: 4,
                    origin: "n1".into(),
                    namespace: "/".into(),
                },
                r#"{"from":"node-a","t":"fetch_rooms","request":4,"origin":"n1","namespace":"/"}"#.to_owned(),
            ),
            (
                ClusterMessage::Rooms {
                    request: 4,
                    rooms: vec!["r".into()],
                },
                r#"{"from":"node-a","t":"rooms","request":4,"rooms":["r"]}"#.to_owned(),
            ),
        ];
        for (message, golden) in cases {
            assert_eq!(String::from_utf8(message.encode("node-a")).unwrap(), golden);
            let (from, back) = ClusterMessage::decode(golden.as_bytes()).unwrap();
            assert_eq!((from.as_str(), back), ("node-a", message));
        }
    }

    /// What older or newer nodes may send: fields in another order, fields this version does
    /// not know, no `offset`, and text that is not UTF-8 (sent as U+FFFD).
    #[test]
    fn decoding_is_lenient_where_the_wire_form_allows() {
        let reordered = br#"{"frames":["42[1]",{"b":"AQ==","x":0}],"t":"broadcast","new":[1],"target":{"except":[],"rooms":["a"],"namespace":"/"},"from":"n9"}"#;
        let (from, message) = ClusterMessage::decode(reordered).unwrap();
        assert_eq!(from, "n9");
        assert_eq!(
            message,
            ClusterMessage::Broadcast {
                target: Target {
                    namespace: "/".into(),
                    rooms: vec!["a".into()],
                    except: Vec::new(),
                },
                frames: vec![
                    WireFrame::Text(Bytes::from_static(b"42[1]")),
                    WireFrame::Binary(Bytes::from_static(&[1])),
                ],
                offset: None,
            }
        );
        let not_utf8 = ClusterMessage::Broadcast {
            target: Target::default(),
            frames: vec![WireFrame::Text(Bytes::from_static(b"42[\"\xff\"]"))],
            offset: Some(0),
        };
        assert_eq!(
            String::from_utf8(not_utf8.encode("n")).unwrap(),
            "{\"from\":\"n\",\"t\":\"broadcast\",\"target\":{\"namespace\":\"\",\"rooms\":[],\"except\":[]},\"frames\":[\"42[\\\"\u{fffd}\\\"]\"],\"offset\":0}"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [&b""[..], b"{", b"{\"from\":\"a\",\"t\":\"nope\"}", b"[1]"] {
            assert!(ClusterMessage::decode(bad).is_err());
        }
        let bad_base64 = br#"{"from":"a","t":"broadcast","target":{"namespace":"/","rooms":[],"except":[]},"frames":[{"b":"%%%"}]}"#;
        assert!(ClusterMessage::decode(bad_base64).is_err());
        for frame in [
            "1",
            "null",
            "{}",
            r#"{"x":"AQ=="}"#,
            r#"{"b":"AQ==","b":"AQ=="}"#,
        ] {
            let bad = format!(
                r#"{{"from":"a","t":"broadcast","target":{{"namespace":"/","rooms":[],"except":[]}},"frames":[{frame}]}}"#
            );
            assert!(ClusterMessage::decode(bad.as_bytes()).is_err(), "{frame}");
        }
    }
}
