//! The channels of Node Socket.IO's Redis adapter (`@socket.io/redis-adapter`) and emitter
//! (`@socket.io/redis-emitter`), read by a tidings node so that Node services reach its
//! clients.
//!
//! # The Node wire form (socket.io-redis-adapter 8, socket.io-redis-emitter 5)
//!
//! - Broadcasts go to `<key>#<nsp>#` — or `<key>#<nsp>#<room>#` when exactly one room is
//!   addressed — as MessagePack (notepack.io) `[uid, packet, opts]`: `packet` is
//!   `{type: 2, data: [event, ...args], nsp}` (binary arguments are MessagePack `bin`),
//!   `opts` is `{rooms: [...], except: [...], flags: {...}}`.
//! - Requests go to `<key>-request#<nsp>#` as JSON (or MessagePack when the first byte is not
//!   `{`): `{type: 2 | 3, opts: {rooms, except}, rooms: [...]}` makes the addressed sockets
//!   join / leave rooms, `{type: 4, opts, close}` disconnects them, `{type: 6, uid, data:
//!   [event, ...args]}` is `serverSideEmit`.
//! - Requests that want answers carry a `requestId` and the asking server's `uid`: `{type: 5,
//!   opts}` (`fetchSockets`), `{type: 0, rooms}` (`allSockets`), `{type: 1}` (`allRooms`),
//!   `{type: 6, data}` with a `requestId` (`serverSideEmit` with an acknowledgement), and, in
//!   MessagePack, `{type: 7, packet, opts}` (a broadcast with acknowledgements, Node's
//!   `io.timeout(ms).emit(..., callback)`). Answers go to `<key>-response#<nsp>#` (every
//!   server subscribes to it, and to `<key>-response#<nsp>#<uid>#`, which servers with
//!   `publishOnSpecificResponseChannel` use): JSON `{requestId, sockets | rooms}`, `{type: 6,
//!   requestId, data}`, `{type: 8, requestId, clientCount}` once per server and, in
//!   MessagePack, `{type: 9, requestId, packet}` per client acknowledgement.
//! - How many answers to wait for is `PUBSUB NUMSUB <key>-request#<nsp>#`: every server
//!   SUBSCRIBEs to the request channel of each namespace it has. So does a tidings node in a
//!   mixed cluster ([`crate::RedisClusterConfig::node_cluster`]), for the namespaces that
//!   exist on it, and it answers every request that arrives there ([`decode_counted`]);
//!   without `node_cluster` it only PSUBSCRIBEs, is not counted and answers nothing. Requests
//!   about one socket id (`{type: 2 | 3 | 4, sid, room}`, from adapters before 7) are ignored.
//!
//! Each message becomes the [`ClusterMessage`] a tidings node would have sent, so the server
//! handles it exactly as a broadcast or room operation of another tidings node: encoded once
//! for all its local recipients. A message that does not decode, is larger than the bound, or
//! addresses something tidings cannot do is counted ([`NodeCounters`]) and logged at `warn`
//! (the first time, then once per 1000), never a panic and never a stop of the subscriber.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value as Json};
use tidings_core::cluster::{ClusterMessage, RemoteSocket, Target, WireFrame};
use tidings_proto::packet::{Packet, RESERVED_EVENTS, check_namespace, placeholder};
use tidings_proto::parser::Parser;

/// Node's `RequestType` values that tidings acts on.
const SOCKETS: u64 = 0;
const ALL_ROOMS: u64 = 1;
const REMOTE_JOIN: u64 = 2;
const REMOTE_LEAVE: u64 = 3;
const REMOTE_DISCONNECT: u64 = 4;
const REMOTE_FETCH: u64 = 5;
const SERVER_SIDE_EMIT: u64 = 6;
const BROADCAST: u64 = 7;
const BROADCAST_CLIENT_COUNT: u64 = 8;
const BROADCAST_ACK: u64 = 9;

/// How long a Node broadcast with acknowledgements is waited for when its request does not
/// say (`opts.flags.timeout`), in ms: the adapter's `requestsTimeout` default.
const DEFAULT_ACK_TIMEOUT_MS: u64 = 5000;

/// The `origin` of a request of a Node server, as handed to the server: this prefix, then the
/// JSON `[nsp, requestId, type]` the answer needs. [`crate::RedisCluster`]'s `send_to` turns
/// an answer to such an origin into the adapter's response ([`answer`]).
pub const NODE_ORIGIN: &str = "node-adapter#";

/// The `node` of sockets a Node server reports in answer to a tidings node's fetch.
pub const NODE_SERVER: &str = "node-adapter";

/// Socket.IO packet types a broadcast may carry (EVENT, BINARY_EVENT).
const EVENT: u64 = 2;
const BINARY_EVENT: u64 = 5;

/// How deep a MessagePack value may nest: serde_json's own parse limit, so that whatever
/// arrives here could have come from a JSON client too.
const MAX_DEPTH: usize = 128;

/// The most binary arguments one broadcast may carry (the Socket.IO codec's cap).
const MAX_ATTACHMENTS: usize = tidings_proto::packet::MAX_ATTACHMENTS;

/// Why a message on the Node channels was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeMessageError {
    /// Larger than the configured bound.
    #[error("{0} bytes: over the {1}-byte bound")]
    TooLarge(usize, usize),
    /// Not MessagePack / JSON of the expected shape.
    #[error("malformed: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> NodeMessageError {
    NodeMessageError::Malformed(what.into())
}

/// What the Node channels brought, for logs and stats.
#[derive(Debug, Default)]
pub struct NodeCounters {
    /// Messages turned into broadcasts or room operations.
    pub(crate) accepted: AtomicU64,
    /// Messages refused: malformed or too large.
    pub(crate) refused: AtomicU64,
    /// Subscribed to the channels now.
    pub(crate) listening: AtomicBool,
}

impl NodeCounters {
    /// Counts a refusal; true when it should be logged at `warn` (the first, then every 1000th).
    pub(crate) fn refuse(&self) -> bool {
        let before = self.refused.fetch_add(1, Ordering::Relaxed);
        before % 1000 == 0
    }
}

/// The channel patterns (PSUBSCRIBE) for Node's `key`: broadcasts and requests of every
/// namespace. Glob characters in the key are escaped.
pub fn patterns(key: &str) -> [String; 2] {
    let key: String = key
        .chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    [format!("{key}#*"), format!("{key}-request#*")]
}

/// Decodes one message of a Node channel into what a tidings node would have sent (a join of
/// several rooms is one message per room). Empty for what is not for tidings: request types
/// that want an answer, or an unknown request type.
///
/// # Errors
///
/// [`NodeMessageError`] when the message is over `max_bytes`, does not decode, or has a shape
/// Node's adapter does not send.
pub fn decode(
    key: &str,
    channel: &[u8],
    payload: &[u8],
    max_bytes: usize,
    parser: Parser,
) -> Result<Vec<ClusterMessage>, NodeMessageError> {
    let channel = checked_channel(channel, payload, max_bytes)?;
    if let Some(nsp) = request_namespace(key, channel) {
        return decode_request(nsp?, payload, false);
    }
    if channel.starts_with(&format!("{key}#")) {
        return decode_broadcast(payload, parser);
    }
    Ok(Vec::new())
}

/// [`decode`] for a node that Node servers count (it SUBSCRIBEs to the request channels of
/// its namespaces): requests that want an answer become requests to this node, whose answers
/// the server sends to a [`NODE_ORIGIN`] origin; and answers of Node servers to this node's
/// requests (`uid`: its uid in the adapter's messages, [`uid`]) on the response channels
/// become the answers a tidings node would have sent.
///
/// # Errors
///
/// As [`decode`].
pub fn decode_counted(
    key: &str,
    uid: &str,
    channel: &[u8],
    payload: &[u8],
    max_bytes: usize,
    parser: Parser,
) -> Result<Vec<ClusterMessage>, NodeMessageError> {
    let is_response = channel.starts_with(format!("{key}-response#").as_bytes());
    if is_response && !contains(payload, uid.as_bytes()) {
        // Another server's answer (every server hears every answer): not even parsed.
        return Ok(Vec::new());
    }
    let channel = checked_channel(channel, payload, max_bytes)?;
    if let Some(nsp) = request_namespace(key, channel) {
        return decode_request(nsp?, payload, true);
    }
    if is_response {
        return decode_response(uid, payload);
    }
    decode(key, channel.as_bytes(), payload, max_bytes, parser)
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// The channels a counted node SUBSCRIBEs to for namespace `nsp`: the request channel, the
/// response channel and this node's own response channel (`uid`).
pub fn channels(key: &str, uid: &str, nsp: &str) -> [String; 3] {
    [
        format!("{key}-request#{nsp}#"),
        format!("{key}-response#{nsp}#"),
        format!("{key}-response#{nsp}#{uid}#"),
    ]
}

/// The origin of a Node server's request (see [`NODE_ORIGIN`]).
fn node_origin(nsp: &str, request_id: &Json, kind: u64) -> String {
    format!(
        "{NODE_ORIGIN}{}",
        serde_json::json!([nsp, request_id, kind])
    )
}

/// The channel and payload of this node's `answer` to the Node server's request of `origin`
/// (a [`NODE_ORIGIN`] origin); None when the origin is not one or the answer does not fit
/// the request (logged at `debug`).
pub fn answer(key: &str, origin: &str, answer: &ClusterMessage) -> Option<(String, Vec<u8>)> {
    let parsed: Json = serde_json::from_str(origin.strip_prefix(NODE_ORIGIN)?).ok()?;
    let (nsp, request_id, kind) = match parsed.as_array()?.as_slice() {
        [Json::String(nsp), id, kind] => (nsp.clone(), id.clone(), kind.as_u64()?),
        _ => return None,
    };
    let channel = format!("{key}-response#{nsp}#");
    let json = |body: Json| Some((channel.clone(), body.to_string().into_bytes()));
    match (kind, answer) {
        (REMOTE_FETCH, ClusterMessage::Sockets { sockets, .. }) => json(serde_json::json!({
            "requestId": request_id,
            "sockets": sockets.iter().map(|s| serde_json::json!({
                "id": s.sid,
                "handshake": s.handshake.clone().unwrap_or_else(|| Json::Object(Map::new())),
                "rooms": s.rooms,
                "data": s.data.clone().unwrap_or_else(|| Json::Object(Map::new())),
            })).collect::<Vec<_>>(),
        })),
        (SOCKETS, ClusterMessage::Sockets { sockets, .. }) => json(serde_json::json!({
            "requestId": request_id,
            "sockets": sockets.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(),
        })),
        (ALL_ROOMS, ClusterMessage::Rooms { rooms, .. }) => json(serde_json::json!({
            "requestId": request_id,
            "rooms": rooms,
        })),
        (SERVER_SIDE_EMIT, ClusterMessage::ServerSideAck { data, .. }) => json(serde_json::json!({
            "type": SERVER_SIDE_EMIT,
            "requestId": request_id,
            "data": data,
        })),
        (BROADCAST, ClusterMessage::BroadcastClientCount { count, .. }) => {
            json(serde_json::json!({
                "type": BROADCAST_CLIENT_COUNT,
                "requestId": request_id,
                "clientCount": count,
            }))
        }
        (BROADCAST, ClusterMessage::BroadcastAck { args, binaries, .. }) => {
            let binaries: Vec<&Bytes> = binaries
                .iter()
                .filter_map(|f| match f {
                    WireFrame::Binary(b) => Some(b),
                    WireFrame::Text(_) => None,
                })
                .collect();
            // Node hands the broadcaster the first argument of each client's ack.
            let first = args
                .first()
                .map_or(rmpv::Value::Nil, |a| to_msgpack(a, &binaries));
            let body = rmpv::Value::Map(vec![
                ("type".into(), rmpv::Value::from(BROADCAST_ACK)),
                ("requestId".into(), json_to_msgpack(&request_id)),
                ("packet".into(), first),
            ]);
            let mut payload = Vec::new();
            // Writing into a Vec cannot fail.
            let _ = rmpv::encode::write_value(&mut payload, &body);
            Some((channel, payload))
        }
        (kind, other) => {
            tracing::debug!(
                kind,
                ?other,
                "cluster: an answer that does not fit the Node request"
            );
            None
        }
    }
}

fn json_to_msgpack(value: &Json) -> rmpv::Value {
    to_msgpack(value, &[])
}

/// A Node server's answer on a response channel: this node's (`uid`) when its `requestId` is
/// `<uid>:<n>`, as the answer a tidings node sends; empty for other nodes' answers.
fn decode_response(uid: &str, payload: &[u8]) -> Result<Vec<ClusterMessage>, NodeMessageError> {
    let (response, binaries) = read_object_with_binaries(payload)?;
    let Some(request) = response
        .get("requestId")
        .and_then(Json::as_str)
        .and_then(|id| id.strip_prefix(uid)?.strip_prefix(':')?.parse::<u64>().ok())
    else {
        return Ok(Vec::new());
    };
    if let Some(Json::Array(sockets)) = response.get("sockets") {
        let sockets = sockets
            .iter()
            .map(|s| {
                let sid = s
                    .get("id")
                    .and_then(Json::as_str)
                    .ok_or_else(|| malformed("a fetched socket without an id"))?;
                Ok(RemoteSocket {
                    sid: sid.to_owned(),
                    node: NODE_SERVER.to_owned(),
                    rooms: string_list(s.get("rooms"), "a socket's rooms")?,
                    handshake: s.get("handshake").cloned(),
                    data: s.get("data").cloned(),
                })
            })
            .collect::<Result<Vec<_>, NodeMessageError>>()?;
        return Ok(vec![ClusterMessage::Sockets { request, sockets }]);
    }
    match response.get("type").and_then(Json::as_u64) {
        Some(BROADCAST_CLIENT_COUNT) => {
            let count = response
                .get("clientCount")
                .and_then(Json::as_u64)
                .ok_or_else(|| malformed("a client count that is not a count"))?;
            return Ok(vec![ClusterMessage::BroadcastClientCount {
                request,
                count,
            }]);
        }
        Some(BROADCAST_ACK) => {
            let packet = response.get("packet").cloned().unwrap_or(Json::Null);
            return Ok(vec![ClusterMessage::BroadcastAck {
                request,
                args: vec![packet],
                binaries: binaries.into_iter().map(WireFrame::Binary).collect(),
            }]);
        }
        _ => {}
    }
    if response.get("type").and_then(Json::as_u64) == Some(SERVER_SIDE_EMIT) {
        let data = response.get("data").cloned().unwrap_or(Json::Null);
        return Ok(vec![ClusterMessage::ServerSideAck { request, data }]);
    }
    if let Some(rooms) = response.get("rooms") {
        let rooms = string_list(Some(rooms), "rooms")?;
        return Ok(vec![ClusterMessage::Rooms { request, rooms }]);
    }
    Err(malformed("a response to this node of no known kind"))
}

/// A request or response object: JSON when it starts with `{`, else MessagePack.
fn read_object(payload: &[u8]) -> Result<Map<String, Json>, NodeMessageError> {
    read_object_with_binaries(payload).map(|(map, _)| map)
}

/// [`read_object`] with the binary values of MessagePack as placeholders and attachments.
fn read_object_with_binaries(
    payload: &[u8],
) -> Result<(Map<String, Json>, Vec<Bytes>), NodeMessageError> {
    let mut attachments = Vec::new();
    let value: Json = if payload.first() == Some(&b'{') {
        serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?
    } else {
        to_json(read_msgpack(payload)?, &mut attachments)?
    };
    match value {
        Json::Object(map) => Ok((map, attachments)),
        _ => Err(malformed("a request is not an object")),
    }
}

/// `[uid, {type, data, nsp}, {rooms, except, flags}]` → a broadcast.
fn decode_broadcast(
    payload: &[u8],
    parser: Parser,
) -> Result<Vec<ClusterMessage>, NodeMessageError> {
    let value = read_msgpack(payload)?;
    let rmpv::Value::Array(mut parts) = value else {
        return Err(malformed("a broadcast is not [uid, packet, opts]"));
    };
    if parts.len() != 3 {
        return Err(malformed("a broadcast is not [uid, packet, opts]"));
    }
    let opts = parts.pop().unwrap_or(rmpv::Value::Nil);
    let packet = parts.pop().unwrap_or(rmpv::Value::Nil);
    if from_tidings(parts.first().and_then(rmpv::Value::as_str)) {
        return Ok(Vec::new());
    }
    let packet = map_of(packet, "packet")?;
    require_event(&packet)?;
    if field(&packet, "id").is_some_and(|id| !id.is_nil()) {
        return Err(malformed("a broadcast with an ack id"));
    }
    let namespace = match field(&packet, "nsp") {
        None | Some(rmpv::Value::Nil) => "/".to_owned(),
        Some(nsp) => nsp
            .as_str()
            .ok_or_else(|| malformed("packet.nsp is not a string"))?
            .to_owned(),
    };
    check_namespace(&namespace).map_err(|e| malformed(format!("namespace: {e}")))?;
    let (event, data, attachments) = event_of(&packet)?;
    let (rooms, except) = rooms_of(&opts)?;
    // Encoded as this node's clients speak, as a tidings node's broadcast is.
    let packet = Packet::event(&namespace, &event, data, None, attachments.len());
    let frames = parser
        .frames(&packet, &attachments)
        .into_iter()
        .map(|frame| match frame {
            tidings_proto::engine::Frame::Text(text) => WireFrame::Text(text),
            tidings_proto::engine::Frame::Binary(bytes) => WireFrame::Binary(bytes),
        })
        .collect();
    Ok(vec![ClusterMessage::Broadcast {
        target: Target {
            namespace,
            rooms,
            except,
        },
        frames,
        offset: None,
    }])
}

/// A request: JSON when it starts with `{`, else MessagePack (as Node's adapter reads it).
/// With `answer`, the requests that want answers become requests to this node.
fn decode_request(
    nsp: &str,
    payload: &[u8],
    answer: bool,
) -> Result<Vec<ClusterMessage>, NodeMessageError> {
    check_namespace(nsp).map_err(|e| malformed(format!("namespace: {e}")))?;
    if answer && payload.first() != Some(&b'{') {
        // A broadcast with acknowledgements is MessagePack, with binary values: read
        // here, before its binaries would become placeholders without attachments.
        if let Some(message) = decode_broadcast_request(nsp, payload)? {
            return Ok(message);
        }
    }
    let request = read_object(payload)?;
    let kind = request
        .get("type")
        .and_then(Json::as_u64)
        .ok_or_else(|| malformed("a request without a numeric type"))?;
    if from_tidings(request.get("uid").and_then(Json::as_str)) {
        return Ok(Vec::new());
    }
    let target = |opts: &Json| -> Result<Target, NodeMessageError> {
        let (rooms, except) = json_rooms(opts)?;
        Ok(Target {
            namespace: nsp.to_owned(),
            rooms,
            except,
        })
    };
    Ok(match kind {
        REMOTE_JOIN | REMOTE_LEAVE | REMOTE_DISCONNECT => {
            // Without `opts` the request is about one socket id and wants an answer: Node's
            // `remoteJoin(id, room)`, left to Node servers.
            let Some(opts) = request.get("opts") else {
                return Ok(Vec::new());
            };
            let target = target(opts)?;
            if kind == REMOTE_DISCONNECT {
                let close = request.get("close").and_then(Json::as_bool) == Some(true);
                return Ok(vec![ClusterMessage::Disconnect { target, close }]);
            }
            let rooms = string_list(request.get("rooms"), "rooms")?;
            // One message per room: the server applies each as another node's join or leave.
            rooms
                .into_iter()
                .map(|room| {
                    if kind == REMOTE_JOIN {
                        ClusterMessage::Join {
                            target: target.clone(),
                            room,
                        }
                    } else {
                        ClusterMessage::Leave {
                            target: target.clone(),
                            room,
                        }
                    }
                })
                .collect()
        }
        SERVER_SIDE_EMIT => {
            let Some(Json::Array(args)) = request.get("data") else {
                return Err(malformed("serverSideEmit without data"));
            };
            match request.get("requestId") {
                None | Some(Json::Null) => vec![ClusterMessage::ServerSideEmit {
                    namespace: nsp.to_owned(),
                    args: args.clone(),
                }],
                Some(id) if answer => vec![ClusterMessage::ServerSideEmitWithAck {
                    request: 0,
                    origin: node_origin(nsp, id, SERVER_SIDE_EMIT),
                    namespace: nsp.to_owned(),
                    args: args.clone(),
                }],
                // Not counted by the asking server: its handlers run, no answer.
                Some(_) => vec![ClusterMessage::ServerSideEmit {
                    namespace: nsp.to_owned(),
                    args: args.clone(),
                }],
            }
        }
        REMOTE_FETCH | SOCKETS | ALL_ROOMS if answer => {
            let Some(id) = request.get("requestId").filter(|id| !id.is_null()) else {
                return Err(malformed("a request for an answer without a requestId"));
            };
            let origin = node_origin(nsp, id, kind);
            let target = if kind == REMOTE_FETCH {
                target(request.get("opts").unwrap_or(&Json::Null))?
            } else {
                Target {
                    namespace: nsp.to_owned(),
                    rooms: string_list(request.get("rooms"), "rooms")?,
                    except: Vec::new(),
                }
            };
            if kind == ALL_ROOMS {
                vec![ClusterMessage::FetchRooms {
                    request: 0,
                    origin,
                    namespace: nsp.to_owned(),
                }]
            } else {
                vec![ClusterMessage::FetchSockets {
                    request: 0,
                    origin,
                    target,
                }]
            }
        }
        other => {
            tracing::debug!(
                kind = other,
                nsp,
                "cluster: a Node request not for this node: ignored"
            );
            Vec::new()
        }
    })
}

/// `{uid, requestId, type: 7, packet, opts}` (MessagePack) → a broadcast with acks to this
/// node's sockets; None when the payload is another MessagePack request.
fn decode_broadcast_request(
    nsp: &str,
    payload: &[u8],
) -> Result<Option<Vec<ClusterMessage>>, NodeMessageError> {
    let request = map_of(read_msgpack(payload)?, "request")?;
    if field(&request, "type").and_then(rmpv::Value::as_u64) != Some(BROADCAST) {
        return Ok(None);
    }
    if from_tidings(field(&request, "uid").and_then(rmpv::Value::as_str)) {
        return Ok(Some(Vec::new()));
    }
    let id = match field(&request, "requestId") {
        Some(id) if !id.is_nil() => msgpack_scalar(id)?,
        _ => return Err(malformed("a broadcast with acks without a requestId")),
    };
    let packet = map_of(
        field(&request, "packet")
            .cloned()
            .unwrap_or(rmpv::Value::Nil),
        "packet",
    )?;
    require_event(&packet)?;
    let (event, data, attachments) = event_of(&packet)?;
    let opts = field(&request, "opts").cloned().unwrap_or(rmpv::Value::Nil);
    let (rooms, except) = rooms_of(&opts)?;
    let timeout_ms = match &opts {
        rmpv::Value::Map(opts) => field(opts, "flags")
            .and_then(|flags| match flags {
                rmpv::Value::Map(flags) => field(flags, "timeout"),
                _ => None,
            })
            .and_then(|t| t.as_u64().or_else(|| t.as_f64().map(|f| f.max(0.0) as u64))),
        _ => None,
    };
    Ok(Some(vec![ClusterMessage::BroadcastWithAck {
        request: 0,
        origin: node_origin(nsp, &id, BROADCAST),
        target: Target {
            namespace: nsp.to_owned(),
            rooms,
            except,
        },
        event,
        args: data,
        binaries: attachments.into_iter().map(WireFrame::Binary).collect(),
        timeout_ms: timeout_ms.unwrap_or(DEFAULT_ACK_TIMEOUT_MS),
    }]))
}

fn read_msgpack(payload: &[u8]) -> Result<rmpv::Value, NodeMessageError> {
    let mut rest = payload;
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|e| malformed(format!("MessagePack: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the MessagePack value",
            rest.len()
        )));
    }
    Ok(value)
}

/// `channel` as text, once `payload` is known to fit in `max_bytes`.
fn checked_channel<'c>(
    channel: &'c [u8],
    payload: &[u8],
    max_bytes: usize,
) -> Result<&'c str, NodeMessageError> {
    if payload.len() > max_bytes {
        return Err(NodeMessageError::TooLarge(payload.len(), max_bytes));
    }
    std::str::from_utf8(channel).map_err(|_| malformed("channel is not UTF-8"))
}

/// The namespace of a request channel, `{key}-request#{nsp}#` (None: another channel).
fn request_namespace<'c>(key: &str, channel: &'c str) -> Option<Result<&'c str, NodeMessageError>> {
    let rest = channel.strip_prefix(&format!("{key}-request#"))?;
    Some(
        rest.strip_suffix('#')
            .ok_or_else(|| malformed(format!("request channel {channel}"))),
    )
}

/// A broadcast's packet must be an EVENT or a BINARY_EVENT.
fn require_event(packet: &[(rmpv::Value, rmpv::Value)]) -> Result<(), NodeMessageError> {
    let kind = field(packet, "type").and_then(rmpv::Value::as_u64);
    if kind != Some(EVENT) && kind != Some(BINARY_EVENT) {
        return Err(malformed(format!(
            "packet type {kind:?}: only events are broadcast"
        )));
    }
    Ok(())
}

/// An event packet's `data`, `[event, ...args]`: the event name (not a reserved one), the
/// arguments as JSON with placeholders, and the binary parts they refer to.
fn event_of(
    packet: &[(rmpv::Value, rmpv::Value)],
) -> Result<(String, Vec<Json>, Vec<Bytes>), NodeMessageError> {
    let data = field(packet, "data").cloned().unwrap_or(rmpv::Value::Nil);
    let mut attachments = Vec::new();
    let Json::Array(mut data) = to_json(data, &mut attachments)? else {
        return Err(malformed("packet.data is not [event, ...args]"));
    };
    let event = match data.first() {
        Some(Json::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()) => name.clone(),
        Some(Json::String(name)) => return Err(malformed(format!("reserved event {name:?}"))),
        _ => return Err(malformed("the event name is not a string")),
    };
    data.remove(0);
    Ok((event, data, attachments))
}

fn map_of(
    value: rmpv::Value,
    what: &str,
) -> Result<Vec<(rmpv::Value, rmpv::Value)>, NodeMessageError> {
    match value {
        rmpv::Value::Map(entries) => Ok(entries),
        _ => Err(malformed(format!("{what} is not a map"))),
    }
}

fn field<'a>(map: &'a [(rmpv::Value, rmpv::Value)], name: &str) -> Option<&'a rmpv::Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// `opts.rooms` and `opts.except` of a broadcast (each missing = empty).
fn rooms_of(opts: &rmpv::Value) -> Result<(Vec<String>, Vec<String>), NodeMessageError> {
    let rmpv::Value::Map(opts) = opts else {
        return Err(malformed("opts is not a map"));
    };
    let list = |name: &str| -> Result<Vec<String>, NodeMessageError> {
        match field(opts, name) {
            None | Some(rmpv::Value::Nil) => Ok(Vec::new()),
            Some(rmpv::Value::Array(items)) => items
                .iter()
                .map(|item| room_name(&msgpack_scalar(item)?))
                .collect(),
            Some(_) => Err(malformed(format!("opts.{name} is not a list"))),
        }
    };
    Ok((list("rooms")?, list("except")?))
}

/// A room as Node names it: a string, or a number (`io.to(42)`), which is the room `"42"`.
fn room_name(value: &Json) -> Result<String, NodeMessageError> {
    match value {
        Json::String(s) => Ok(s.clone()),
        Json::Number(n) => Ok(n.to_string()),
        other => Err(malformed(format!("a room is {other}"))),
    }
}

fn msgpack_scalar(value: &rmpv::Value) -> Result<Json, NodeMessageError> {
    let mut none = Vec::new();
    to_json(value.clone(), &mut none)
}

/// `opts` of a request: `{rooms, except}`.
fn json_rooms(opts: &Json) -> Result<(Vec<String>, Vec<String>), NodeMessageError> {
    let Json::Object(opts) = opts else {
        return Err(malformed("request opts is not an object"));
    };
    Ok((
        string_list(opts.get("rooms"), "opts.rooms")?,
        string_list(opts.get("except"), "opts.except")?,
    ))
}

fn string_list(value: Option<&Json>, what: &str) -> Result<Vec<String>, NodeMessageError> {
    match value {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items.iter().map(room_name).collect(),
        Some(_) => Err(malformed(format!("{what} is not a list"))),
    }
}

/// A MessagePack value as the JSON a Socket.IO client receives: `bin` becomes a binary
/// attachment and its placeholder; what `JSON.stringify` cannot say (`undefined`, NaN and the
/// infinities, other extension types) becomes `null`, as Node's encoder makes it; map keys
/// that are not strings are written as JSON would write them.
fn to_json(value: rmpv::Value, attachments: &mut Vec<Bytes>) -> Result<Json, NodeMessageError> {
    Ok(match value {
        rmpv::Value::Nil => Json::Null,
        rmpv::Value::Boolean(b) => Json::Bool(b),
        rmpv::Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(s)) => Json::from(s),
            (None, None) => Json::Null,
        },
        rmpv::Value::F32(f) => {
            serde_json::Number::from_f64(f64::from(f)).map_or(Json::Null, Json::Number)
        }
        rmpv::Value::F64(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        rmpv::Value::String(s) => match s.into_str() {
            Some(s) => Json::String(s),
            None => return Err(malformed("a string is not UTF-8")),
        },
        rmpv::Value::Binary(bytes) => {
            if attachments.len() >= MAX_ATTACHMENTS {
                return Err(malformed(format!(
                    "more than {MAX_ATTACHMENTS} binary arguments"
                )));
            }
            attachments.push(Bytes::from(bytes));
            placeholder(attachments.len() - 1)
        }
        rmpv::Value::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|item| to_json(item, attachments))
                .collect::<Result<_, _>>()?,
        ),
        rmpv::Value::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                // JavaScript objects have string keys; scalars are written as JSON writes
                // them. A key that is itself a map or a list is refused: written as text, each
                // level would escape the one inside it again, doubling its length per level
                // (found by the `decode_node` fuzz target: 1.3 KB took over 2 GB).
                let key = match k {
                    rmpv::Value::Array(_)
                    | rmpv::Value::Map(_)
                    | rmpv::Value::Binary(_)
                    | rmpv::Value::Ext(..) => {
                        return Err(malformed("a map key that is not a string or a number"));
                    }
                    scalar => match to_json(scalar, &mut Vec::new())? {
                        Json::String(s) => s,
                        other => other.to_string(),
                    },
                };
                // A JavaScript object cannot hold a key twice; a value that replaced another
                // would leave the other's binary values as attachments nothing refers to.
                if map.contains_key(&key) {
                    return Err(malformed(format!("a map with the key {key:?} twice")));
                }
                map.insert(key, to_json(v, attachments)?);
            }
            Json::Object(map)
        }
        rmpv::Value::Ext(_, _) => Json::Null,
    })
}

/// The uid of a tidings node in the Node adapter's messages: `tidings-<node id>`. Messages with
/// such a uid are skipped by [`decode`]: tidings nodes hear each other on their own channel.
pub fn uid(node_id: &str) -> String {
    format!("{TIDINGS_UID_PREFIX}{node_id}")
}

const TIDINGS_UID_PREFIX: &str = "tidings-";

fn from_tidings(uid: Option<&str>) -> bool {
    uid.is_some_and(|u| u.starts_with(TIDINGS_UID_PREFIX))
}

/// What this node's message is for Node servers on the adapter's `key` (a mixed cluster):
/// `(channel, payload)` pairs, none for what Node servers have no use for (durable-topic
/// wake-ups, tidings' own requests and answers). A broadcast is the adapter's MessagePack
/// `[uid, packet, opts]` (its Connection State Recovery offset left out: Node servers keep
/// their own); room operations and server-side events are its JSON requests.
pub fn encode(key: &str, uid: &str, message: &ClusterMessage) -> Vec<(String, Vec<u8>)> {
    let request_channel = |nsp: &str| format!("{key}-request#{nsp}#");
    let opts =
        |target: &Target| serde_json::json!({ "rooms": target.rooms, "except": target.except });
    let request =
        |nsp: &str, body: Json| vec![(request_channel(nsp), body.to_string().into_bytes())];
    match message {
        ClusterMessage::Broadcast {
            target,
            frames,
            offset,
        } => match broadcast_packet(target, frames, offset.is_some()) {
            Some(packet) => {
                let rooms = target.rooms.iter().map(|r| rmpv::Value::from(r.as_str()));
                let except = target.except.iter().map(|r| rmpv::Value::from(r.as_str()));
                let message = rmpv::Value::Array(vec![
                    rmpv::Value::from(uid),
                    packet,
                    rmpv::Value::Map(vec![
                        ("rooms".into(), rmpv::Value::Array(rooms.collect())),
                        ("except".into(), rmpv::Value::Array(except.collect())),
                        ("flags".into(), rmpv::Value::Map(Vec::new())),
                    ]),
                ]);
                let mut payload = Vec::new();
                // Writing into a Vec cannot fail.
                let _ = rmpv::encode::write_value(&mut payload, &message);
                let channel = match target.rooms.as_slice() {
                    [room] => format!("{key}#{}#{room}#", target.namespace),
                    _ => format!("{key}#{}#", target.namespace),
                };
                vec![(channel, payload)]
            }
            None => Vec::new(),
        },
        ClusterMessage::Join { target, room } => request(
            &target.namespace,
            serde_json::json!({ "uid": uid, "type": REMOTE_JOIN, "opts": opts(target), "rooms": [room] }),
        ),
        ClusterMessage::Leave { target, room } => request(
            &target.namespace,
            serde_json::json!({ "uid": uid, "type": REMOTE_LEAVE, "opts": opts(target), "rooms": [room] }),
        ),
        ClusterMessage::Disconnect { target, close } => request(
            &target.namespace,
            serde_json::json!({ "uid": uid, "type": REMOTE_DISCONNECT, "opts": opts(target), "close": close }),
        ),
        ClusterMessage::ServerSideEmit { namespace, args } => request(
            namespace,
            serde_json::json!({ "uid": uid, "type": SERVER_SIDE_EMIT, "data": args }),
        ),
        // Requests of this node: Node servers answer on the response channel with this
        // `requestId`, which [`decode_counted`] matches.
        ClusterMessage::FetchSockets {
            request: n, target, ..
        } => request(
            &target.namespace,
            serde_json::json!({ "uid": uid, "requestId": format!("{uid}:{n}"), "type": REMOTE_FETCH, "opts": opts(target) }),
        ),
        ClusterMessage::FetchRooms {
            request: n,
            namespace,
            ..
        } => request(
            namespace,
            serde_json::json!({ "uid": uid, "requestId": format!("{uid}:{n}"), "type": ALL_ROOMS }),
        ),
        ClusterMessage::ServerSideEmitWithAck {
            request: n,
            namespace,
            args,
            ..
        } => request(
            namespace,
            serde_json::json!({ "uid": uid, "requestId": format!("{uid}:{n}"), "type": SERVER_SIDE_EMIT, "data": args }),
        ),
        ClusterMessage::BroadcastWithAck {
            request: n,
            target,
            event,
            args,
            binaries,
            timeout_ms,
            ..
        } => {
            let binaries: Vec<&Bytes> = binaries
                .iter()
                .filter_map(|f| match f {
                    WireFrame::Binary(b) => Some(b),
                    WireFrame::Text(_) => None,
                })
                .collect();
            let data = std::iter::once(rmpv::Value::from(event.as_str()))
                .chain(args.iter().map(|a| to_msgpack(a, &binaries)))
                .collect();
            let list = |names: &[String]| {
                rmpv::Value::Array(
                    names
                        .iter()
                        .map(|r| rmpv::Value::from(r.as_str()))
                        .collect(),
                )
            };
            let body = rmpv::Value::Map(vec![
                ("uid".into(), rmpv::Value::from(uid)),
                ("requestId".into(), rmpv::Value::from(format!("{uid}:{n}"))),
                ("type".into(), rmpv::Value::from(BROADCAST)),
                (
                    "packet".into(),
                    rmpv::Value::Map(vec![
                        ("type".into(), rmpv::Value::from(EVENT)),
                        ("data".into(), rmpv::Value::Array(data)),
                        ("nsp".into(), rmpv::Value::from(target.namespace.as_str())),
                    ]),
                ),
                (
                    "opts".into(),
                    rmpv::Value::Map(vec![
                        ("rooms".into(), list(&target.rooms)),
                        ("except".into(), list(&target.except)),
                        (
                            "flags".into(),
                            rmpv::Value::Map(vec![(
                                "timeout".into(),
                                rmpv::Value::from(*timeout_ms),
                            )]),
                        ),
                    ]),
                ),
            ]);
            let mut payload = Vec::new();
            // Writing into a Vec cannot fail.
            let _ = rmpv::encode::write_value(&mut payload, &body);
            vec![(request_channel(&target.namespace), payload)]
        }
        _ => Vec::new(),
    }
}

/// The adapter's `{type: 2, data, nsp}` of a broadcast's frames, in either parser's encoding:
/// the packet decoded, its placeholders replaced by its attachments. None (logged at `debug`)
/// for frames that are not an encoded event.
fn broadcast_packet(
    target: &Target,
    frames: &[WireFrame],
    has_offset: bool,
) -> Option<rmpv::Value> {
    let decoded = match frames.split_first()? {
        (WireFrame::Text(text), rest) => {
            let text = std::str::from_utf8(text).ok()?.strip_prefix('4')?;
            let attachments = rest
                .iter()
                .filter_map(|f| match f {
                    WireFrame::Binary(b) => Some(b.clone()),
                    WireFrame::Text(_) => None,
                })
                .collect();
            Packet::decode(text)
                .map(|packet| (packet, attachments))
                .map_err(|e| e.to_string())
        }
        // The msgpack parser: one binary message holds the packet and its binaries.
        (WireFrame::Binary(message), _) => {
            tidings_proto::msgpack::decode(message).map_err(|e| e.to_string())
        }
    };
    let (packet, attachments) = match decoded {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::debug!(error = %e, "a broadcast that does not decode is not sent to Node servers");
            return None;
        }
    };
    let Some(Json::Array(mut data)) = packet.data else {
        return None;
    };
    if has_offset {
        // The recovery offset tidings appends for its own clients.
        data.pop();
    }
    let binaries: Vec<&Bytes> = attachments.iter().collect();
    let data = data.iter().map(|v| to_msgpack(v, &binaries)).collect();
    Some(rmpv::Value::Map(vec![
        ("type".into(), rmpv::Value::from(EVENT)),
        ("data".into(), rmpv::Value::Array(data)),
        ("nsp".into(), rmpv::Value::from(target.namespace.as_str())),
    ]))
}

/// A JSON value as MessagePack, placeholders replaced by their attachment (`bin`).
fn to_msgpack(value: &Json, attachments: &[&Bytes]) -> rmpv::Value {
    match value {
        Json::Null => rmpv::Value::Nil,
        Json::Bool(b) => rmpv::Value::Boolean(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => rmpv::Value::from(u),
            (None, Some(i), _) => rmpv::Value::from(i),
            (None, None, Some(f)) => rmpv::Value::F64(f),
            _ => rmpv::Value::Nil,
        },
        Json::String(s) => rmpv::Value::from(s.as_str()),
        Json::Array(items) => {
            rmpv::Value::Array(items.iter().map(|v| to_msgpack(v, attachments)).collect())
        }
        Json::Object(map) => {
            let num = map.get("num").and_then(Json::as_u64);
            if map.len() == 2 && map.get("_placeholder") == Some(&Json::Bool(true)) {
                if let Some(bytes) = num.and_then(|n| attachments.get(usize::try_from(n).ok()?)) {
                    return rmpv::Value::Binary(bytes.to_vec());
                }
            }
            rmpv::Value::Map(
                map.iter()
                    .map(|(k, v)| (rmpv::Value::from(k.as_str()), to_msgpack(v, attachments)))
                    .collect(),
            )
        }
    }
}

/// The base64 of `bytes` (for logs of refused messages: the first bytes only).
pub(crate) fn preview(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len().min(48)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as M;

    fn msgpack(value: &M) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    fn s(text: &str) -> M {
        M::from(text)
    }

    /// What `@socket.io/redis-emitter` publishes for `emitter.of(nsp).to(rooms).except(except)
    /// .emit(...data)`.
    fn emitter_broadcast(nsp: &str, data: Vec<M>, rooms: &[&str], except: &[&str]) -> Vec<u8> {
        let list = |names: &[&str]| M::Array(names.iter().map(|n| s(n)).collect());
        msgpack(&M::Array(vec![
            s("emitter"),
            M::Map(vec![
                (s("type"), M::from(2)),
                (s("data"), M::Array(data)),
                (s("nsp"), s(nsp)),
            ]),
            M::Map(vec![
                (s("rooms"), list(rooms)),
                (s("flags"), M::Map(Vec::new())),
                (s("except"), list(except)),
            ]),
        ]))
    }

    fn decode_one(channel: &str, payload: &[u8]) -> ClusterMessage {
        let mut messages = decode(
            "socket.io",
            channel.as_bytes(),
            payload,
            1 << 20,
            Parser::Default,
        )
        .unwrap();
        assert_eq!(messages.len(), 1, "{messages:?}");
        messages.remove(0)
    }

    fn text(frame: &WireFrame) -> &str {
        match frame {
            WireFrame::Text(t) => std::str::from_utf8(t).unwrap(),
            WireFrame::Binary(_) => panic!("a binary frame"),
        }
    }

    #[test]
    fn an_emitter_broadcast_becomes_the_broadcast_a_tidings_node_would_send() {
        let payload = emitter_broadcast(
            "/chat",
            vec![
                s("news"),
                M::from(1),
                M::Map(vec![(s("ok"), M::from(true))]),
            ],
            &["lobby", "hall"],
            &["muted"],
        );
        let ClusterMessage::Broadcast {
            target,
            frames,
            offset,
        } = decode_one("socket.io#/chat#", &payload)
        else {
            panic!("not a broadcast");
        };
        assert_eq!(target.namespace, "/chat");
        assert_eq!(target.rooms, ["lobby", "hall"]);
        assert_eq!(target.except, ["muted"]);
        assert_eq!(offset, None);
        assert_eq!(frames.len(), 1);
        assert_eq!(text(&frames[0]), r#"42/chat,["news",1,{"ok":true}]"#);
    }

    #[test]
    fn binary_arguments_become_attachments() {
        let payload = emitter_broadcast(
            "/",
            vec![
                s("file"),
                M::Binary(vec![0, 1, 255]),
                M::Array(vec![M::Binary(Vec::new())]),
            ],
            &["only"],
            &[],
        );
        let ClusterMessage::Broadcast { frames, target, .. } =
            decode_one("socket.io#/#only#", &payload)
        else {
            panic!("not a broadcast");
        };
        assert_eq!(target.rooms, ["only"]);
        assert_eq!(
            text(&frames[0]),
            r#"452-["file",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1}]]"#
        );
        assert_eq!(
            frames[1],
            WireFrame::Binary(Bytes::from_static(&[0, 1, 255]))
        );
        assert_eq!(frames[2], WireFrame::Binary(Bytes::new()));
    }

    #[test]
    fn what_json_cannot_say_becomes_null_and_numeric_rooms_are_names() {
        let payload = msgpack(&M::Array(vec![
            s("abc123"),
            M::Map(vec![
                (s("type"), M::from(2)),
                (
                    s("data"),
                    M::Array(vec![
                        s("e"),
                        M::Ext(0, vec![0]),
                        M::F64(f64::NAN),
                        M::from(-3),
                    ]),
                ),
            ]),
            M::Map(vec![(s("rooms"), M::Array(vec![M::from(42)]))]),
        ]));
        let ClusterMessage::Broadcast { frames, target, .. } = decode_one("socket.io#/#", &payload)
        else {
            panic!("not a broadcast");
        };
        // No nsp in the packet: the main namespace, as Node's adapter assumes.
        assert_eq!(target.namespace, "/");
        assert_eq!(target.rooms, ["42"]);
        assert_eq!(text(&frames[0]), r#"42["e",null,null,-3]"#);
    }

    #[test]
    fn emitter_requests_become_room_operations_and_server_side_events() {
        let join = br#"{"type":2,"opts":{"rooms":["a"],"except":["b"]},"rooms":["r1","r2"]}"#;
        let messages = decode(
            "socket.io",
            b"socket.io-request#/chat#",
            join,
            1 << 20,
            Parser::Default,
        )
        .unwrap();
        let target = Target {
            namespace: "/chat".into(),
            rooms: vec!["a".into()],
            except: vec!["b".into()],
        };
        assert_eq!(
            messages,
            [
                ClusterMessage::Join {
                    target: target.clone(),
                    room: "r1".into()
                },
                ClusterMessage::Join {
                    target: target.clone(),
                    room: "r2".into()
                },
            ]
        );
        let leave = br#"{"type":3,"opts":{"rooms":["a"],"except":["b"]},"rooms":["r1"]}"#;
        assert_eq!(
            decode_one("socket.io-request#/chat#", leave),
            ClusterMessage::Leave {
                target: target.clone(),
                room: "r1".into()
            }
        );
        let disconnect = br#"{"type":4,"opts":{"rooms":["a"],"except":["b"]},"close":true}"#;
        assert_eq!(
            decode_one("socket.io-request#/chat#", disconnect),
            ClusterMessage::Disconnect {
                target,
                close: true
            }
        );
        let emit = br#"{"uid":"emitter","type":6,"data":["hello",{"n":1}]}"#;
        assert_eq!(
            decode_one("socket.io-request#/#", emit),
            ClusterMessage::ServerSideEmit {
                namespace: "/".into(),
                args: vec!["hello".into(), serde_json::json!({"n": 1})],
            }
        );
        // MessagePack requests too (the adapter's parser option).
        let packed = msgpack(&M::Map(vec![
            (s("type"), M::from(6)),
            (s("data"), M::Array(vec![s("ping")])),
        ]));
        assert!(matches!(
            decode_one("socket.io-request#/#", &packed),
            ClusterMessage::ServerSideEmit { .. }
        ));
    }

    /// A node that Node servers do not count (no `node_cluster`: it only PSUBSCRIBEs) must not
    /// answer: an answer the asker does not expect would end its wait before a counted server
    /// answered.
    #[test]
    fn requests_that_want_an_answer_are_left_to_node_servers() {
        for request in [
            &br#"{"type":0,"requestId":"x","rooms":[]}"#[..],
            br#"{"type":5,"requestId":"x","opts":{"rooms":[],"except":[]}}"#,
            br#"{"type":2,"requestId":"x","sid":"abc","room":"r"}"#,
            br#"{"type":99}"#,
        ] {
            let decoded = decode(
                "socket.io",
                b"socket.io-request#/#",
                request,
                1 << 20,
                Parser::Default,
            );
            assert_eq!(
                decoded,
                Ok(Vec::new()),
                "{}",
                String::from_utf8_lossy(request)
            );
        }
        // Other keys' channels are not ours.
        let other = emitter_broadcast("/", vec![s("e")], &[], &[]);
        assert_eq!(
            decode("socket.io", b"other#/#", &other, 1 << 20, Parser::Default),
            Ok(Vec::new())
        );
    }

    #[test]
    fn malformed_and_oversized_messages_are_errors() {
        let ok = emitter_broadcast("/", vec![s("e")], &[], &[]);
        assert!(matches!(
            decode(
                "socket.io",
                b"socket.io#/#",
                &ok,
                ok.len() - 1,
                Parser::Default
            ),
            Err(NodeMessageError::TooLarge(..))
        ));
        // 10,000 nested fixarrays of one element, around a nil.
        let mut deep = vec![0x91; 10_000];
        deep.push(0xc0);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("garbage", vec![0xc1, 0xff, 0x00]),
            ("deep", deep),
            ("not an array", msgpack(&s("hi"))),
            ("trailing bytes", [ok.clone(), vec![0]].concat()),
            (
                "reserved event",
                emitter_broadcast("/", vec![s("disconnect")], &[], &[]),
            ),
            (
                "no event name",
                emitter_broadcast("/", vec![M::from(1)], &[], &[]),
            ),
            (
                "bad namespace",
                emitter_broadcast("chat", vec![s("e")], &[], &[]),
            ),
            (
                "not an event",
                msgpack(&M::Array(vec![
                    s("u"),
                    M::Map(vec![(s("type"), M::from(1)), (s("nsp"), s("/"))]),
                    M::Map(Vec::new()),
                ])),
            ),
            (
                "a room that is a map",
                msgpack(&M::Array(vec![
                    s("u"),
                    M::Map(vec![
                        (s("type"), M::from(2)),
                        (s("data"), M::Array(vec![s("e")])),
                    ]),
                    M::Map(vec![(s("rooms"), M::Array(vec![M::Map(Vec::new())]))]),
                ])),
            ),
        ];
        for (what, payload) in cases {
            let decoded = decode(
                "socket.io",
                b"socket.io#/#",
                &payload,
                1 << 20,
                Parser::Default,
            );
            assert!(decoded.is_err(), "{what}: {decoded:?}");
        }
        // A key twice (here once as a number, once as a string): refused.
        let twice = msgpack(&M::Array(vec![
            s("u"),
            M::Map(vec![
                (s("type"), M::from(2)),
                (
                    s("data"),
                    M::Array(vec![
                        s("e"),
                        M::Map(vec![(M::from(45), M::Binary(vec![1])), (s("45"), M::Nil)]),
                    ]),
                ),
            ]),
            M::Map(Vec::new()),
        ]));
        assert!(matches!(
            decode(
                "socket.io",
                b"socket.io#/#",
                &twice,
                1 << 20,
                Parser::Default
            ),
            Err(NodeMessageError::Malformed(_))
        ));
        // Map keys that are maps, nested: refused, not written out as ever longer text.
        let mut nested = M::from("\"");
        for _ in 0..100 {
            nested = M::Map(vec![(nested, M::Nil)]);
        }
        let keyed = msgpack(&M::Array(vec![
            s("u"),
            M::Map(vec![
                (s("type"), M::from(2)),
                (s("data"), M::Array(vec![s("e"), nested])),
            ]),
            M::Map(Vec::new()),
        ]));
        assert!(matches!(
            decode(
                "socket.io",
                b"socket.io#/#",
                &keyed,
                1 << 20,
                Parser::Default
            ),
            Err(NodeMessageError::Malformed(_))
        ));
        for request in [
            &b"{"[..],
            b"[1]",
            br#"{"type":"2"}"#,
            br#"{"type":6,"data":"x"}"#,
        ] {
            let decoded = decode(
                "socket.io",
                b"socket.io-request#/#",
                request,
                1 << 20,
                Parser::Default,
            );
            assert!(
                decoded.is_err(),
                "{}: {decoded:?}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn this_nodes_messages_in_the_node_form_decode_back_and_tidings_skips_its_own() {
        let target = Target {
            namespace: "/chat".into(),
            rooms: vec!["lobby".into()],
            except: vec!["sender-sid".into()],
        };
        let broadcast = ClusterMessage::Broadcast {
            target: target.clone(),
            frames: vec![
                WireFrame::Text(Bytes::from_static(
                    br#"451-/chat,["x",{"_placeholder":true,"num":0},{"n":1.5},"offset-7"]"#,
                )),
                WireFrame::Binary(Bytes::from_static(&[9, 9])),
            ],
            offset: Some(7),
        };
        let sent = encode("socket.io", "node-x", &broadcast);
        assert_eq!(sent.len(), 1);
        // One room: the adapter's room channel.
        assert_eq!(sent[0].0, "socket.io#/chat#lobby#");
        // As a Node server reads it: the binary is back in place, the offset left out.
        let ClusterMessage::Broadcast {
            frames,
            target: back,
            offset,
        } = decode_one(&sent[0].0, &sent[0].1)
        else {
            panic!("not a broadcast");
        };
        assert_eq!((back, offset), (target.clone(), None));
        assert_eq!(
            text(&frames[0]),
            r#"451-/chat,["x",{"_placeholder":true,"num":0},{"n":1.5}]"#
        );
        assert_eq!(frames[1], WireFrame::Binary(Bytes::from_static(&[9, 9])));

        let ops = [
            ClusterMessage::Join {
                target: target.clone(),
                room: "vip".into(),
            },
            ClusterMessage::Leave {
                target: target.clone(),
                room: "vip".into(),
            },
            ClusterMessage::Disconnect {
                target: target.clone(),
                close: true,
            },
            ClusterMessage::ServerSideEmit {
                namespace: "/chat".into(),
                args: vec!["hello".into()],
            },
        ];
        for op in &ops {
            let sent = encode("socket.io", "node-x", op);
            assert_eq!(sent.len(), 1, "{op:?}");
            assert_eq!(sent[0].0, "socket.io-request#/chat#");
            assert_eq!(&decode_one(&sent[0].0, &sent[0].1), op);
        }
        // What a tidings node sent in the Node form is skipped: it came on tidings' channel too.
        for op in ops.iter().chain([&broadcast]) {
            for (channel, payload) in encode("socket.io", &uid("n1"), op) {
                let decoded = decode(
                    "socket.io",
                    channel.as_bytes(),
                    &payload,
                    1 << 20,
                    Parser::Default,
                );
                assert_eq!(decoded, Ok(Vec::new()), "{op:?}");
            }
        }
        // A node on the msgpack parser passes its broadcasts on in that encoding: the same
        // Node form, and back in the msgpack parser's form.
        let packet = Packet::event("/chat", "x", vec![placeholder(0)], None, 1);
        let binaries = [Bytes::from_static(&[9, 9])];
        let msgpack = ClusterMessage::Broadcast {
            target: target.clone(),
            frames: Parser::Msgpack
                .frames(&packet, &binaries)
                .into_iter()
                .map(|f| match f {
                    tidings_proto::engine::Frame::Binary(b) => WireFrame::Binary(b),
                    tidings_proto::engine::Frame::Text(t) => WireFrame::Text(t),
                })
                .collect(),
            offset: None,
        };
        let sent = encode("socket.io", "node-x", &msgpack);
        let back = decode(
            "socket.io",
            sent[0].0.as_bytes(),
            &sent[0].1,
            1 << 20,
            Parser::Msgpack,
        );
        assert_eq!(back, Ok(vec![msgpack]));

        // Durable-topic wake-ups are tidings' own.
        let wake = ClusterMessage::Published { topic: "t".into() };
        assert!(encode("socket.io", "node-x", &wake).is_empty());
    }

    fn counted(channel: &str, payload: &[u8]) -> Result<Vec<ClusterMessage>, NodeMessageError> {
        decode_counted(
            "socket.io",
            "tidings-me",
            channel.as_bytes(),
            payload,
            1 << 20,
            Parser::Default,
        )
    }

    fn origin_of(message: &ClusterMessage) -> &str {
        match message {
            ClusterMessage::FetchSockets { origin, .. }
            | ClusterMessage::FetchRooms { origin, .. }
            | ClusterMessage::ServerSideEmitWithAck { origin, .. }
            | ClusterMessage::BroadcastWithAck { origin, .. } => origin,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn socket(sid: &str) -> RemoteSocket {
        RemoteSocket {
            sid: sid.into(),
            node: "n".into(),
            rooms: vec![sid.into(), "lobby".into()],
            handshake: Some(serde_json::json!({"query": {"EIO": "4"}})),
            data: None,
        }
    }

    #[test]
    fn a_counted_node_answers_fetch_sockets_in_the_adapters_form() {
        let request = br#"{"uid":"abc","requestId":"r1","type":5,"opts":{"rooms":["lobby"],"except":["muted"]}}"#;
        let messages = counted("socket.io-request#/chat#", request).unwrap();
        let [ClusterMessage::FetchSockets { target, origin, .. }] = messages.as_slice() else {
            panic!("{messages:?}");
        };
        assert_eq!(target.namespace, "/chat");
        assert_eq!(
            (target.rooms.as_slice(), target.except.as_slice()),
            (&["lobby".to_owned()][..], &["muted".to_owned()][..])
        );
        let reply = ClusterMessage::Sockets {
            request: 0,
            sockets: vec![socket("s1")],
        };
        let (channel, payload) = answer("socket.io", origin, &reply).unwrap();
        assert_eq!(channel, "socket.io-response#/chat#");
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"requestId":"r1","sockets":[{"id":"s1","handshake":{"query":{"EIO":"4"}},"rooms":["s1","lobby"],"data":{}}]}"#
        );
        // The older `allSockets` request: ids only.
        let messages = counted(
            "socket.io-request#/#",
            br#"{"uid":"abc","requestId":7,"type":0,"rooms":["lobby"]}"#,
        )
        .unwrap();
        let (_, payload) = answer("socket.io", origin_of(&messages[0]), &reply).unwrap();
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"requestId":7,"sockets":["s1"]}"#
        );
        // allRooms.
        let messages = counted(
            "socket.io-request#/#",
            br#"{"uid":"abc","requestId":"r2","type":1}"#,
        )
        .unwrap();
        assert!(matches!(messages[0], ClusterMessage::FetchRooms { .. }));
        let rooms = ClusterMessage::Rooms {
            request: 0,
            rooms: vec!["lobby".into()],
        };
        let (_, payload) = answer("socket.io", origin_of(&messages[0]), &rooms).unwrap();
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"requestId":"r2","rooms":["lobby"]}"#
        );
        // An answer that does not fit the request, or an origin that is not a Node one.
        assert_eq!(answer("socket.io", origin_of(&messages[0]), &reply), None);
        assert_eq!(answer("socket.io", "node-1", &rooms), None);
    }

    #[test]
    fn server_side_events_with_an_ack_are_answered_once_counted() {
        let request = br#"{"uid":"abc","requestId":"r3","type":6,"data":["ping",1]}"#;
        // Not counted: the handlers run, nothing is answered.
        assert_eq!(
            decode(
                "socket.io",
                b"socket.io-request#/#",
                request,
                1 << 20,
                Parser::Default
            ),
            Ok(vec![ClusterMessage::ServerSideEmit {
                namespace: "/".into(),
                args: vec!["ping".into(), 1.into()],
            }])
        );
        let messages = counted("socket.io-request#/#", request).unwrap();
        let [
            ClusterMessage::ServerSideEmitWithAck {
                args,
                origin,
                namespace,
                ..
            },
        ] = messages.as_slice()
        else {
            panic!("{messages:?}");
        };
        assert_eq!((namespace.as_str(), args.len()), ("/", 2));
        let ack = ClusterMessage::ServerSideAck {
            request: 0,
            data: serde_json::json!({"pong": true}),
        };
        let (channel, payload) = answer("socket.io", origin, &ack).unwrap();
        assert_eq!(channel, "socket.io-response#/#");
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"type":6,"requestId":"r3","data":{"pong":true}}"#
        );
    }

    #[test]
    fn a_broadcast_with_acks_gets_a_count_then_each_ack() {
        let request = msgpack(&M::Map(vec![
            (s("uid"), s("abc")),
            (s("requestId"), s("r4")),
            (s("type"), M::from(7)),
            (
                s("packet"),
                M::Map(vec![
                    (s("type"), M::from(2)),
                    (s("data"), M::Array(vec![s("q"), M::Binary(vec![1, 2])])),
                    (s("nsp"), s("/")),
                ]),
            ),
            (
                s("opts"),
                M::Map(vec![
                    (s("rooms"), M::Array(vec![s("lobby")])),
                    (s("except"), M::Array(Vec::new())),
                    (s("flags"), M::Map(vec![(s("timeout"), M::from(1500))])),
                ]),
            ),
        ]));
        let messages = counted("socket.io-request#/#", &request).unwrap();
        let [
            ClusterMessage::BroadcastWithAck {
                origin,
                target,
                event,
                args,
                binaries,
                timeout_ms,
                ..
            },
        ] = messages.as_slice()
        else {
            panic!("{messages:?}");
        };
        assert_eq!((event.as_str(), *timeout_ms), ("q", 1500));
        assert_eq!(target.rooms, ["lobby"]);
        assert_eq!(args, &[placeholder(0)]);
        assert_eq!(binaries, &[WireFrame::Binary(Bytes::from_static(&[1, 2]))]);
        let count = ClusterMessage::BroadcastClientCount {
            request: 0,
            count: 2,
        };
        let (channel, payload) = answer("socket.io", origin, &count).unwrap();
        assert_eq!(channel, "socket.io-response#/#");
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"type":8,"requestId":"r4","clientCount":2}"#
        );
        let ack = ClusterMessage::BroadcastAck {
            request: 0,
            args: vec![placeholder(0), "ignored".into()],
            binaries: vec![WireFrame::Binary(Bytes::from_static(&[9]))],
        };
        let (_, payload) = answer("socket.io", origin, &ack).unwrap();
        // MessagePack, the first argument only, its binary in place.
        assert_eq!(
            read_msgpack(&payload).unwrap(),
            M::Map(vec![
                (s("type"), M::from(9)),
                (s("requestId"), s("r4")),
                (s("packet"), M::Binary(vec![9])),
            ])
        );
        // Not counted: a broadcast with acks is left to the counted servers.
        assert_eq!(
            decode(
                "socket.io",
                b"socket.io-request#/#",
                &request,
                1 << 20,
                Parser::Default
            ),
            Ok(Vec::new())
        );
    }

    #[test]
    fn node_servers_answers_to_this_nodes_requests_become_tidings_answers() {
        let fetch = ClusterMessage::FetchSockets {
            request: 12,
            origin: "me".into(),
            target: Target {
                namespace: "/".into(),
                rooms: Vec::new(),
                except: Vec::new(),
            },
        };
        let sent = encode("socket.io", "tidings-me", &fetch);
        assert_eq!(sent[0].0, "socket.io-request#/#");
        assert_eq!(
            String::from_utf8(sent[0].1.clone()).unwrap(),
            r#"{"uid":"tidings-me","requestId":"tidings-me:12","type":5,"opts":{"rooms":[],"except":[]}}"#
        );
        let response = br#"{"requestId":"tidings-me:12","sockets":[{"id":"n1","handshake":{"auth":{}},"rooms":["n1"],"data":{"user":1}}]}"#;
        assert_eq!(
            counted("socket.io-response#/#", response),
            Ok(vec![ClusterMessage::Sockets {
                request: 12,
                sockets: vec![RemoteSocket {
                    sid: "n1".into(),
                    node: NODE_SERVER.into(),
                    rooms: vec!["n1".into()],
                    handshake: Some(serde_json::json!({"auth": {}})),
                    data: Some(serde_json::json!({"user": 1})),
                }],
            }])
        );
        let rooms = ClusterMessage::FetchRooms {
            request: 14,
            origin: "me".into(),
            namespace: "/".into(),
        };
        assert_eq!(
            String::from_utf8(encode("socket.io", "tidings-me", &rooms)[0].1.clone()).unwrap(),
            r#"{"uid":"tidings-me","requestId":"tidings-me:14","type":1}"#
        );
        assert_eq!(
            counted(
                "socket.io-response#/#",
                br#"{"requestId":"tidings-me:14","rooms":["a","b"]}"#
            ),
            Ok(vec![ClusterMessage::Rooms {
                request: 14,
                rooms: vec!["a".into(), "b".into()],
            }])
        );
        let ack = br#"{"type":6,"requestId":"tidings-me:13","data":[1]}"#;
        assert_eq!(
            counted("socket.io-response#/#tidings-me#", ack),
            Ok(vec![ClusterMessage::ServerSideAck {
                request: 13,
                data: serde_json::json!([1]),
            }])
        );
        // Answers to other servers' requests are not ours.
        for other in [
            &br#"{"requestId":"abc","sockets":[]}"#[..],
            br#"{"requestId":"tidings-other:12","sockets":[]}"#,
            br#"{"requestId":"tidings-me:x","sockets":[]}"#,
            br#"{"type":8,"requestId":"zz","clientCount":1}"#,
        ] {
            assert_eq!(counted("socket.io-response#/#", other), Ok(Vec::new()));
        }
    }

    #[test]
    fn malformed_requests_and_answers_are_errors_and_unknown_types_are_ignored() {
        for (channel, payload) in [
            (
                "socket.io-request#/#",
                &br#"{"type":5,"uid":"a","opts":{}}"#[..],
            ),
            (
                "socket.io-request#/#",
                br#"{"type":5,"requestId":"r","opts":{"rooms":[{}]}}"#,
            ),
            (
                "socket.io-request#/#",
                &[0x81, 0xa4, b't', b'y', b'p', b'e', 0x07][..],
            ),
            ("socket.io-request#/#", b"\xc1"),
            (
                "socket.io-response#/#",
                br#"{"requestId":"tidings-me:1","sockets":[{"rooms":[]}]}"#,
            ),
            ("socket.io-response#/#", br#"{"requestId":"tidings-me:1"}"#),
            ("socket.io-response#/#", br#"{"requestId":"tidings-me:1""#),
        ] {
            let decoded = counted(channel, payload);
            assert!(
                decoded.is_err(),
                "{channel} {}: {decoded:?}",
                String::from_utf8_lossy(payload)
            );
        }
        // Other servers' answers are skipped unread, however large or broken.
        let theirs = [&b"{"[..], &[b'x'; 200]].concat();
        assert_eq!(
            decode_counted(
                "socket.io",
                "tidings-me",
                b"socket.io-response#/#",
                &theirs,
                99,
                Parser::Default
            ),
            Ok(Vec::new())
        );
        let big = vec![b' '; 100];
        assert!(matches!(
            decode_counted(
                "socket.io",
                "tidings-me",
                b"socket.io-request#/#",
                &big,
                99,
                Parser::Default
            ),
            Err(NodeMessageError::TooLarge(100, 99))
        ));
        for unknown in [
            &br#"{"type":99,"requestId":"r"}"#[..],
            br#"{"type":2,"requestId":"r","sid":"s","room":"x"}"#,
        ] {
            assert_eq!(counted("socket.io-request#/#", unknown), Ok(Vec::new()));
        }
        // Requests of tidings nodes in the Node form are heard on tidings' own channel.
        assert_eq!(
            counted(
                "socket.io-request#/#",
                br#"{"uid":"tidings-x","requestId":"tidings-x:1","type":5,"opts":{}}"#
            ),
            Ok(Vec::new())
        );
    }

    #[test]
    fn glob_characters_of_the_key_are_escaped() {
        assert_eq!(
            patterns("socket.io"),
            ["socket.io#*", "socket.io-request#*"]
        );
        assert_eq!(patterns("a*b[c]"), [r"a\*b\[c\]#*", r"a\*b\[c\]-request#*"]);
    }
}
