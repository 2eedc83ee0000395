//! Namespaces: their sockets, their rooms, their middleware and connect handler, and the
//! broadcast operator that addresses sockets by room.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::Value;
use tidings_core::cluster::{ClusterMessage, RemoteSocket, Target};
use tidings_core::{Room, Sid};
use tidings_proto::engine::Frame;
use tidings_proto::parser::Parser;

use super::event::{AckError, AckReply, EmitError, event_frames};
use super::socket::{DisconnectReason, Socket};
use crate::cluster::{ClusterLink, wire_frames};
use crate::engine::Handshake;
use crate::recovery::Recovery;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a connect middleware refused a client: sent to it as CONNECT_ERROR
/// `{"message": …, "data": …}` (socket.io-client: `connect_error` with `err.message`,
/// `err.data`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The message the client sees.
    pub message: String,
    /// Optional details for the client.
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Adds details for the client.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// What a connect middleware sees of a connecting client.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The namespace being joined.
    pub namespace: String,
    /// The CONNECT packet's auth payload (`{}` when the client sent none).
    pub auth: Value,
    /// The first HTTP request of the client's session.
    pub handshake: Arc<Handshake>,
}

type Middleware = Arc<dyn Fn(ConnectRequest) -> BoxFuture<Result<(), ConnectError>> + Send + Sync>;
type ConnectHandler = Arc<dyn Fn(Socket) + Send + Sync>;
type ServerSideHandler = Arc<dyn Fn(&str, Vec<Value>, Option<ServerSideAck>) + Send + Sync>;

/// The acknowledgement callback of a server-side event another node sent with
/// [`Namespace::server_side_emit_with_ack`] (or Node's `serverSideEmitWithAck`): call
/// [`ServerSideAck::send`] once with the value to answer. Dropped without a call, the asking
/// node counts this node as not answering (it waits until its timeout), as Node's does.
pub struct ServerSideAck {
    reply: Box<dyn FnOnce(Value) + Send>,
}

impl std::fmt::Debug for ServerSideAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSideAck").finish_non_exhaustive()
    }
}

impl ServerSideAck {
    pub(crate) fn new(reply: impl FnOnce(Value) + Send + 'static) -> Self {
        ServerSideAck {
            reply: Box::new(reply),
        }
    }

    /// Answers the asking node with `data` (Node: the one argument of the callback).
    pub fn send(self, data: Value) {
        (self.reply)(data);
    }
}

/// What happens to sockets, for whoever watches every namespace (the Admin UI).
#[derive(Debug)]
pub(crate) enum SocketEvent<'a> {
    /// A socket connected (its CONNECT is answered).
    Connected(&'a Socket),
    /// A socket joined a room.
    Joined {
        ns: &'a str,
        room: &'a Room,
        sid: Sid,
    },
    /// A socket left a room.
    Left {
        ns: &'a str,
        room: &'a Room,
        sid: Sid,
    },
}

/// The one watcher of every namespace's sockets, set at most once (the Admin UI); costs a
/// load of an empty `OnceLock` per event when unset.
#[derive(Default)]
pub(crate) struct SocketObserver(OnceLock<ObserverFn>);

pub(crate) type ObserverFn = Arc<dyn Fn(SocketEvent<'_>) + Send + Sync>;

impl SocketObserver {
    pub(crate) fn set(&self, f: ObserverFn) -> bool {
        self.0.set(f).is_ok()
    }

    pub(crate) fn notify(&self, event: SocketEvent<'_>) {
        if let Some(f) = self.0.get() {
            f(event);
        }
    }
}

pub(crate) struct NamespaceInner {
    pub(crate) name: Arc<str>,
    pub(crate) sockets: RwLock<HashMap<Sid, Socket>>,
    rooms: RwLock<HashMap<Room, HashSet<Sid>>>,
    middlewares: RwLock<Vec<Middleware>>,
    connect_handler: RwLock<Option<ConnectHandler>>,
    /// Events other nodes' servers send to this one ([`Namespace::on_server_side_emit`]).
    server_side_handler: RwLock<Option<ServerSideHandler>>,
    /// Ack ids are drawn per namespace, so a broadcast with ack uses one id for every
    /// recipient and is still encoded once.
    next_ack_id: AtomicU64,
    /// Connection State Recovery, when enabled on the server.
    recovery: Option<Arc<Recovery>>,
    /// The other nodes (empty on a single node).
    cluster: Arc<ClusterLink>,
    /// The server's watcher of sockets (the Admin UI), shared by every namespace.
    observer: Arc<SocketObserver>,
    /// Its middleware logs clients in (the Admin UI's namespace): no token is required.
    own_login: std::sync::atomic::AtomicBool,
    /// The built-in events (rooms, durable topics) are not served here: its own handlers
    /// take every event (the Admin UI's `join`, `leave`, `emit` mean something else).
    no_builtins: std::sync::atomic::AtomicBool,
    /// The server's broadcast counters.
    counters: Arc<crate::metrics::IoCounters>,
    /// The server's packet encoding: broadcasts are encoded once, in it.
    pub(crate) parser: Parser,
    /// Created on demand (a dynamic namespace): removed from the server when its last user
    /// leaves. Static namespaces (`Server::of`) stay.
    pub(crate) on_demand: bool,
    /// Sockets and connecting clients of an on-demand namespace; changed from 0 or to 0 only
    /// under the server's namespace map lock (see `ServerInner::namespace_for`).
    pub(crate) users: AtomicUsize,
}

/// A namespace (`/`, `/chat`, …). Cheap to clone.
#[derive(Clone)]
pub struct Namespace {
    pub(crate) inner: Arc<NamespaceInner>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &&*self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        recovery: Option<Arc<Recovery>>,
        cluster: Arc<ClusterLink>,
        observer: Arc<SocketObserver>,
        counters: Arc<crate::metrics::IoCounters>,
        parser: Parser,
        on_demand: bool,
    ) -> Namespace {
        Namespace {
            inner: Arc::new(NamespaceInner {
                name: Arc::from(name),
                sockets: RwLock::new(HashMap::new()),
                rooms: RwLock::new(HashMap::new()),
                middlewares: RwLock::new(Vec::new()),
                connect_handler: RwLock::new(None),
                server_side_handler: RwLock::new(None),
                next_ack_id: AtomicU64::new(0),
                recovery,
                cluster,
                observer,
                own_login: std::sync::atomic::AtomicBool::new(false),
                no_builtins: std::sync::atomic::AtomicBool::new(false),
                counters,
                parser,
                on_demand,
                users: AtomicUsize::new(0),
            }),
        }
    }

    /// The namespace's name, e.g. `/chat`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Adds a connect middleware. Middlewares run in order for every connecting client and see
    /// its auth payload; the first `Err` refuses the client with a CONNECT_ERROR.
    pub fn use_middleware<F, Fut>(&self, middleware: F) -> &Self
    where
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.inner
            .middlewares
            .write()
            .push(Arc::new(move |req| Box::pin(middleware(req))));
        self
    }

    /// Sets the handler that runs for each connected socket, right after the CONNECT reply was
    /// queued (so nothing it emits can overtake the reply) and before any event of the socket
    /// is dispatched (so the handlers it registers see every event). It is synchronous for
    /// that reason: register the socket's handlers here and spawn longer work.
    pub fn on_connect<F>(&self, handler: F) -> &Self
    where
        F: Fn(Socket) + Send + Sync + 'static,
    {
        *self.inner.connect_handler.write() = Some(Arc::new(handler));
        self
    }

    /// Sets the handler of the events other nodes send to this namespace's server side — a
    /// tidings node's [`Namespace::server_side_emit`], Node's `io.serverSideEmit(event, ...args)`
    /// (the Redis adapter and emitter) — with the event name and its arguments. Without a
    /// handler such events are dropped (logged at `debug`).
    /// Events sent with an acknowledgement reach this handler too; their callback is dropped
    /// (see [`Namespace::on_server_side_emit_with_ack`] to answer them).
    pub fn on_server_side_emit<F>(&self, handler: F) -> &Self
    where
        F: Fn(&str, Vec<Value>) + Send + Sync + 'static,
    {
        *self.inner.server_side_handler.write() = Some(Arc::new(move |event: &str, args, _ack| {
            handler(event, args)
        }));
        self
    }

    /// Like [`Namespace::on_server_side_emit`], with the acknowledgement callback of events
    /// sent with one ([`Namespace::server_side_emit_with_ack`], Node's
    /// `io.serverSideEmitWithAck` or `serverSideEmit(..., callback)`); `None` for the others.
    /// Replaces the handler set by either method.
    pub fn on_server_side_emit_with_ack<F>(&self, handler: F) -> &Self
    where
        F: Fn(&str, Vec<Value>, Option<ServerSideAck>) + Send + Sync + 'static,
    {
        *self.inner.server_side_handler.write() = Some(Arc::new(handler));
        self
    }

    /// The rooms of this namespace that have sockets on any node (Node's `adapter.allRooms()`),
    /// each once: this node's, then the others' as they answer within `timeout` (a node that
    /// does not answer in time is left out, and logged). Every socket's own room (its id) is
    /// among them, as in Node.
    pub async fn all_rooms(&self, timeout: Duration) -> Vec<String> {
        let mut rooms: Vec<String> = self.rooms().iter().map(|r| r.as_str().to_owned()).collect();
        rooms.extend(self.inner.cluster.fetch_rooms(self.name(), timeout).await);
        let mut seen = HashSet::new();
        rooms.retain(|r| seen.insert(r.clone()));
        rooms
    }

    /// Sends `event` with `args` to the server side of this namespace on every other node and
    /// collects the value each one acknowledges with ([`ServerSideAck::send`], or Node's
    /// callback), until every node answered or `timeout` passed (those that did not are left
    /// out, and logged). Empty on a single node.
    pub async fn server_side_emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Vec<Value> {
        let args = std::iter::once(Value::from(event)).chain(args).collect();
        self.inner
            .cluster
            .server_side_emit_with_ack(self.name(), args, timeout)
            .await
    }

    /// Sends `event` with `args` to the server side of this namespace on every other node
    /// (their [`Namespace::on_server_side_emit`] handlers, or Node servers' `io.on(event)`),
    /// not to clients. No acknowledgement; nothing happens on a single node.
    pub fn server_side_emit(&self, event: &str, args: Vec<Value>) {
        self.inner
            .cluster
            .publish(|| ClusterMessage::ServerSideEmit {
                namespace: self.name().to_owned(),
                args: std::iter::once(Value::from(event)).chain(args).collect(),
            });
    }

    /// Hands another node's server-side event (`[event, ...args]`) to the handler.
    pub(crate) fn server_side_event(&self, args: Vec<Value>, ack: Option<ServerSideAck>) {
        let mut args = args;
        let handler = self.inner.server_side_handler.read().clone();
        let event = match args.first() {
            Some(Value::String(_)) => match args.remove(0) {
                Value::String(event) => event,
                _ => return,
            },
            _ => {
                tracing::debug!(namespace = %self.name(), "server-side event without a name: dropped");
                return;
            }
        };
        match handler {
            Some(handler) => handler(&event, args, ack),
            None => {
                tracing::debug!(namespace = %self.name(), event, "server-side event without a handler: dropped")
            }
        }
    }

    pub(crate) fn middlewares(&self) -> Vec<Middleware> {
        self.inner.middlewares.read().clone()
    }

    pub(crate) fn connect_handler(&self) -> Option<ConnectHandler> {
        self.inner.connect_handler.read().clone()
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        self.inner.next_ack_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn recovery(&self) -> Option<&Arc<Recovery>> {
        self.inner.recovery.as_ref()
    }

    /// The server's cluster link (empty on a single node).
    pub(crate) fn cluster_link(&self) -> &ClusterLink {
        &self.inner.cluster
    }

    /// Registers a socket in the namespace and in its rooms (its own, plus those of a
    /// recovered session).
    pub(crate) fn add_socket(&self, socket: &Socket) {
        self.inner
            .sockets
            .write()
            .insert(socket.id(), socket.clone());
        for room in socket.rooms() {
            self.join(socket.id(), room);
        }
    }

    pub(crate) fn remove_socket(&self, sid: Sid, rooms: &[Room]) {
        self.inner.sockets.write().remove(&sid);
        let mut index = self.inner.rooms.write();
        for room in rooms {
            if let Some(members) = index.get_mut(room) {
                members.remove(&sid);
                if members.is_empty() {
                    index.remove(room);
                }
            }
        }
    }

    pub(crate) fn join(&self, sid: Sid, room: Room) {
        let added = self
            .inner
            .rooms
            .write()
            .entry(room.clone())
            .or_default()
            .insert(sid);
        if added {
            let ns = self.name();
            self.inner.observer.notify(SocketEvent::Joined {
                ns,
                room: &room,
                sid,
            });
        }
    }

    pub(crate) fn leave(&self, sid: Sid, room: &Room) {
        let removed = {
            let mut index = self.inner.rooms.write();
            let Some(members) = index.get_mut(room) else {
                return;
            };
            let removed = members.remove(&sid);
            if members.is_empty() {
                index.remove(room);
            }
            removed
        };
        if removed {
            let ns = self.name();
            self.inner
                .observer
                .notify(SocketEvent::Left { ns, room, sid });
        }
    }

    pub(crate) fn own_login(&self) -> bool {
        self.inner.own_login.load(Ordering::Acquire)
    }

    pub(crate) fn builtins(&self) -> bool {
        !self.inner.no_builtins.load(Ordering::Acquire)
    }

    pub(crate) fn set_no_builtins(&self) {
        self.inner.no_builtins.store(true, Ordering::Release);
    }

    pub(crate) fn set_own_login(&self) {
        self.inner.own_login.store(true, Ordering::Release);
    }

    pub(crate) fn observer(&self) -> &SocketObserver {
        &self.inner.observer
    }

    /// The connected socket with this id.
    pub fn socket(&self, sid: Sid) -> Option<Socket> {
        self.inner.sockets.read().get(&sid).cloned()
    }

    /// Every connected socket of the namespace.
    pub fn sockets(&self) -> Vec<Socket> {
        self.inner.sockets.read().values().cloned().collect()
    }

    /// The ids of the sockets in `room`.
    pub fn sockets_in(&self, room: impl Into<Room>) -> Vec<Sid> {
        let room = room.into();
        self.inner
            .rooms
            .read()
            .get(&room)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The names of the rooms that have members.
    pub fn rooms(&self) -> Vec<Room> {
        self.inner.rooms.read().keys().cloned().collect()
    }

    /// Addresses the sockets in `room` (add more with [`BroadcastOperator::to`]).
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).to(room)
    }

    /// Addresses every socket of the namespace except those in `room`.
    pub fn except(&self, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone()).except(room)
    }

    /// Addresses every socket of the namespace.
    pub fn all(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.clone())
    }

    /// Emits to every socket of the namespace; returns how many sockets it was queued for.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<usize, EmitError> {
        self.all().emit(event, data)
    }
}

/// What a broadcast with acknowledgements on every node collected
/// ([`BroadcastOperator::emit_with_ack_on_all_nodes`]).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct BroadcastAcks {
    /// This node's sockets: each one's answer, or why there is none.
    pub local: Vec<(Sid, Result<AckReply, AckError>)>,
    /// The other nodes' clients' answers, in arrival order (no socket ids: Node's adapter
    /// sends none).
    pub remote: Vec<AckReply>,
    /// How many clients the other nodes asked (those that reported in time).
    pub remote_asked: u64,
    /// Every other node reported and every client it asked answered before the timeout.
    pub is_complete: bool,
}

/// A socket asked to acknowledge, and where its answer arrives.
pub(crate) type AskedSocket = (Socket, tokio::sync::oneshot::Receiver<AckReply>);

/// Selects sockets of a namespace by room — `to` (union), `except` (minus), and optionally not
/// the sender — then emits to them, encoding the packet once.
#[derive(Clone)]
pub struct BroadcastOperator {
    ns: Namespace,
    rooms: Vec<Room>,
    except: Vec<Room>,
    exclude: Option<Sid>,
}

impl std::fmt::Debug for BroadcastOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BroadcastOperator")
            .field("ns", &self.ns.name())
            .field("rooms", &self.rooms)
            .field("except", &self.except)
            .field("exclude", &self.exclude)
            .finish()
    }
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Namespace) -> Self {
        BroadcastOperator {
            ns,
            rooms: Vec::new(),
            except: Vec::new(),
            exclude: None,
        }
    }

    pub(crate) fn excluding(mut self, sid: Sid) -> Self {
        self.exclude = Some(sid);
        self
    }

    // Builder methods in pairs (one room, many rooms) for `to` and `except`: alike by design.
    /// Also addresses the sockets in `room`.
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Also addresses the sockets in each of `rooms`.
    pub fn to_rooms<R: Into<Room>>(mut self, rooms: impl IntoIterator<Item = R>) -> Self {
        self.rooms.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// Leaves out the sockets in `room`.
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.except.push(room.into());
        self
    }

    /// Leaves out the sockets in each of `rooms`.
    pub fn except_rooms<R: Into<Room>>(mut self, rooms: impl IntoIterator<Item = R>) -> Self {
        self.except.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// The addressed sockets.
    pub fn sockets(&self) -> Vec<Socket> {
        let ids: Vec<Sid> = {
            let index = self.ns.inner.rooms.read();
            let excluded: HashSet<Sid> = self
                .except
                .iter()
                .filter_map(|room| index.get(room))
                .flat_map(|members| members.iter().copied())
                .chain(self.exclude)
                .collect();
            if self.rooms.is_empty() {
                drop(index);
                let sockets = self.ns.inner.sockets.read();
                return sockets
                    .iter()
                    .filter(|(sid, _)| !excluded.contains(sid))
                    .map(|(_, s)| s.clone())
                    .collect();
            }
            let mut seen = HashSet::new();
            self.rooms
                .iter()
                .filter_map(|room| index.get(room))
                .flat_map(|members| members.iter().copied())
                .filter(|sid| !excluded.contains(sid) && seen.insert(*sid))
                .collect()
        };
        let sockets = self.ns.inner.sockets.read();
        ids.iter()
            .filter_map(|sid| sockets.get(sid).cloned())
            .collect()
    }

    // The same one-argument convenience as `Socket::emit`, on the other receiver (as in
    // socket.io, `io.to(room).emit` and `socket.emit`); both end in their own `emit_args`.
    /// Emits `event` with one argument; returns how many sockets it was queued for.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<usize, EmitError> {
        self.emit_args(event, vec![serde_json::to_value(data)?], &[])
    }

    /// Emits `event` with several arguments and binary attachments. The packet is encoded once
    /// and the same frames are queued for every recipient. A recipient that cannot take them
    /// (closed, or too slow) is disconnected, never skipped silently; it is not counted.
    pub fn emit_args(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: &[Bytes],
    ) -> Result<usize, EmitError> {
        if let Some(recovery) = self.ns.recovery() {
            // Logged once, before the recipients are resolved: a socket recovering now either
            // is among them or finds the packet in the log.
            let mut except = self.except.clone();
            except.extend(self.exclude.map(|sid| Room::from(sid.to_string())));
            let (frames, offset) = recovery.log_event(
                self.ns.name(),
                event,
                args,
                attachments,
                &self.rooms,
                except,
            )?;
            self.publish_to_cluster(&frames, Some(offset));
            return Ok(self.deliver_local(&frames, Some(offset)));
        }
        let frames = event_frames(
            self.ns.inner.parser,
            self.ns.name(),
            event,
            args,
            attachments,
            None,
        )?;
        self.publish_to_cluster(&frames, None);
        Ok(self.deliver_local(&frames, None))
    }

    /// Queues already encoded frames for the addressed sockets of this node; returns how
    /// many took them.
    pub(crate) fn deliver_local(&self, frames: &[Frame], offset: Option<u64>) -> usize {
        let delivered = self
            .sockets()
            .iter()
            .filter(|s| s.deliver(frames, offset).is_ok())
            .count();
        self.ns.inner.counters.broadcast(delivered);
        delivered
    }

    /// Who this operator addresses, as the other nodes see it: the sender is left out through
    /// its own room (a socket's id).
    fn target(&self) -> Target {
        Target {
            namespace: self.ns.name().to_owned(),
            rooms: self.rooms.iter().map(|r| r.as_str().to_owned()).collect(),
            except: self
                .except
                .iter()
                .map(|r| r.as_str().to_owned())
                .chain(self.exclude.map(|sid| sid.to_string()))
                .collect(),
        }
    }

    /// Hands a broadcast to the other nodes, encoded as it is for the local sockets.
    fn publish_to_cluster(&self, frames: &[Frame], offset: Option<u64>) {
        self.ns.inner.cluster.publish(|| ClusterMessage::Broadcast {
            target: self.target(),
            frames: wire_frames(frames),
            offset,
        });
    }

    /// The addressed sockets on every node: this node's, then the others' as they answer
    /// within `timeout` (a node that does not answer in time is left out, and logged).
    pub async fn fetch_sockets(&self, timeout: Duration) -> Vec<RemoteSocket> {
        let node = self
            .ns
            .inner
            .cluster
            .get()
            .map_or_else(String::new, |c| c.node_id().to_owned());
        let mut sockets: Vec<RemoteSocket> =
            self.sockets().iter().map(|s| s.remote(&node)).collect();
        sockets.extend(
            self.ns
                .inner
                .cluster
                .fetch_remote(self.target(), timeout)
                .await,
        );
        sockets
    }

    /// Emits `event` with one argument to every addressed socket, each asked to acknowledge,
    /// and collects the answers until all came or `timeout` passed.
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<Vec<(Sid, Result<AckReply, AckError>)>, EmitError> {
        let args = vec![serde_json::to_value(data)?];
        let id = self.ns.next_ack_id();
        let frames = event_frames(
            self.ns.inner.parser,
            self.ns.name(),
            event,
            args,
            &[],
            Some(id),
        )?;
        let mut waiting = FuturesUnordered::new();
        let mut results = Vec::new();
        let mut asked = Vec::new();
        for socket in self.sockets() {
            let sid = socket.id();
            match socket.register_ack(id) {
                Ok(rx) => {
                    if let Err(e) = socket.deliver(&frames, None) {
                        socket.forget_ack(id);
                        results.push((sid, Err(AckError::Send(e))));
                        continue;
                    }
                    waiting
                        .push(async move { (sid, rx.await.map_err(|_| AckError::Disconnected)) });
                    asked.push(socket);
                }
                Err(e) => results.push((sid, Err(e))),
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut answered = HashSet::new();
        loop {
            tokio::select! {
                next = waiting.next() => match next {
                    Some((sid, result)) => {
                        answered.insert(sid);
                        results.push((sid, result));
                    }
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        // Whoever did not answer in time timed out; forget their pending ack.
        for socket in asked {
            if !answered.contains(&socket.id()) {
                socket.forget_ack(id);
                results.push((socket.id(), Err(AckError::Timeout)));
            }
        }
        Ok(results)
    }

    /// Emits `event` with `args` (and binary `attachments`) to the addressed sockets of every
    /// node, each asked to acknowledge — Node's `io.timeout(ms).emitWithAck(...)` — and
    /// collects the answers until every socket answered or `timeout` passed. Other nodes,
    /// tidings or Node servers in a mixed cluster, report how many of their clients they
    /// asked, then each acknowledgement (a Node server passes on only the first argument of
    /// each, as Node's own broadcast does).
    pub async fn emit_with_ack_on_all_nodes(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: &[Bytes],
        timeout: Duration,
    ) -> Result<BroadcastAcks, EmitError> {
        let (id, asked) = self.ask_local(event, args.clone(), attachments)?;
        let local = async {
            let mut waiting: FuturesUnordered<_> = asked
                .into_iter()
                .map(|(socket, rx)| async move {
                    let answer = match tokio::time::timeout(timeout, rx).await {
                        Ok(Ok(reply)) => Ok(reply),
                        Ok(Err(_)) => Err(AckError::Disconnected),
                        Err(_) => {
                            socket.forget_ack(id);
                            Err(AckError::Timeout)
                        }
                    };
                    (socket.id(), answer)
                })
                .collect();
            let mut results = Vec::new();
            while let Some(result) = waiting.next().await {
                results.push(result);
            }
            results
        };
        let remote = self.ns.inner.cluster.broadcast_with_ack(
            self.target(),
            event,
            args,
            attachments,
            timeout,
        );
        let (local, remote) = tokio::join!(local, remote);
        Ok(BroadcastAcks {
            local,
            remote: remote.replies,
            remote_asked: remote.asked,
            is_complete: remote.complete,
        })
    }

    /// Sends `event` to the addressed sockets of this node, each asked to acknowledge with one
    /// ack id; returns their answers' receivers. Another node's broadcast with
    /// acknowledgements (`inbound.rs`). The caller forgets the pending acks it stops waiting for.
    pub(crate) fn ask_local(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: &[Bytes],
    ) -> Result<(u64, Vec<AskedSocket>), EmitError> {
        let id = self.ns.next_ack_id();
        let frames = event_frames(
            self.ns.inner.parser,
            self.ns.name(),
            event,
            args,
            attachments,
            Some(id),
        )?;
        let mut asked = Vec::new();
        for socket in self.sockets() {
            let Ok(rx) = socket.register_ack(id) else {
                continue;
            };
            if socket.deliver(&frames, None).is_err() {
                socket.forget_ack(id);
                continue;
            }
            asked.push((socket, rx));
        }
        self.ns.inner.counters.broadcast(asked.len());
        Ok((id, asked))
    }

    /// Makes every addressed socket join `room` (on every node).
    pub fn join(&self, room: impl Into<Room>) {
        let room = room.into();
        self.join_local(&room);
        self.ns.inner.cluster.publish(|| ClusterMessage::Join {
            target: self.target(),
            room: room.as_str().to_owned(),
        });
    }

    pub(crate) fn join_local(&self, room: &Room) {
        for socket in self.sockets() {
            if let Err(e) = socket.join(room.clone()) {
                tracing::debug!(sid = %socket.id(), room = %room, error = %e, "socket not made to join");
            }
        }
    }

    /// Makes every addressed socket leave `room` (on every node).
    pub fn leave(&self, room: impl Into<Room>) {
        let room = room.into();
        self.leave_local(&room);
        self.ns.inner.cluster.publish(|| ClusterMessage::Leave {
            target: self.target(),
            room: room.as_str().to_owned(),
        });
    }

    pub(crate) fn leave_local(&self, room: &Room) {
        for socket in self.sockets() {
            socket.leave(room.clone());
        }
    }

    /// Disconnects every addressed socket from the namespace (on every node).
    pub fn disconnect(&self) {
        self.disconnect_local();
        self.ns
            .inner
            .cluster
            .publish(|| ClusterMessage::Disconnect {
                target: self.target(),
                close: false,
            });
    }

    pub(crate) fn disconnect_local(&self) {
        for socket in self.sockets() {
            socket.disconnect_with(DisconnectReason::ServerNamespaceDisconnect);
        }
    }

    /// Closes the whole connection (every namespace) of each addressed socket, on every node
    /// (Node's `disconnectSockets(true)`).
    pub fn disconnect_connections(&self) {
        self.close_connections_local();
        self.ns
            .inner
            .cluster
            .publish(|| ClusterMessage::Disconnect {
                target: self.target(),
                close: true,
            });
    }

    /// Closes the whole connection (every namespace) of each addressed socket of this node,
    /// as Node's `disconnectSockets(true)` does.
    pub(crate) fn close_connections_local(&self) {
        for socket in self.sockets() {
            socket.disconnect_connection();
        }
    }
}
