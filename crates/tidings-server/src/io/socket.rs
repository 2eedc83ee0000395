//! A socket: one client's connection to one namespace.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidings_core::{ErrorBody, ErrorCode, Room, Sid};
use tidings_proto::packet::Packet;
use tokio::sync::oneshot;

use tidings_core::session_log::{Offset, SessionRecord, now_millis};
use tidings_proto::engine::Frame;

use super::event::{AckError, AckReply, AckSender, EmitError, Event, event_frames};
use super::namespace::{BoxFuture, BroadcastOperator, Namespace};
use super::pending::Pending;
use crate::engine::{CloseReason, Handshake, SendError, Session};
use crate::recovery;

/// An emitted event's acknowledgement, not yet answered (see [`Socket::send_with_ack`]).
#[derive(Debug)]
pub struct PendingAck {
    socket: Socket,
    id: u64,
    rx: oneshot::Receiver<AckReply>,
}

impl PendingAck {
    /// Waits up to `timeout` for the client's answer.
    pub async fn wait(self, timeout: Duration) -> Result<AckReply, AckError> {
        match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.socket.forget_ack(self.id);
                Err(AckError::Timeout)
            }
        }
    }
}

impl PendingAck {
    /// The ack id and the receiver of the answer, for a caller that waits for many answers
    /// itself (the delivery engine: one task per queue, not one per delivery). The receiver
    /// fails when the socket disconnects; the caller that stops waiting forgets the id
    /// ([`Socket::forget_ack`]), as [`PendingAck::wait`] does on its timeout.
    pub(crate) fn into_parts(self) -> (u64, oneshot::Receiver<AckReply>) {
        (self.id, self.rx)
    }
}

/// Joining a room failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The socket is in [`crate::Limits::max_rooms_per_socket`] rooms (its own included):
    /// it did not join.
    #[error("the socket is in its maximum of {max} rooms (max_rooms_per_socket): leave one first")]
    TooManyRooms {
        /// The limit.
        max: usize,
    },
}

/// The limits a socket enforces itself (from [`crate::Limits`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketLimits {
    pub(crate) max_rooms: Option<usize>,
    pub(crate) max_pending_acks: Option<usize>,
    /// The server's count of refused joins.
    pub(crate) joins_refused: Arc<crate::metrics::Counter>,
}

/// What a new socket is given besides its identity: how to unregister it, where it starts
/// with respect to recovery, and its limits.
pub(crate) struct SocketSetup {
    /// Called once when the socket leaves, to unregister it from its client.
    pub(crate) on_leave: Box<dyn FnOnce() + Send>,
    pub(crate) state: RecoveryState,
    pub(crate) limits: SocketLimits,
}

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The client left the namespace (`socket.disconnect()` on the client).
    ClientNamespaceDisconnect,
    /// The server removed the socket ([`Socket::disconnect`]).
    ServerNamespaceDisconnect,
    /// The client's whole session ended.
    Transport(CloseReason),
    /// The client recovered this socket's session on a new connection (Connection State
    /// Recovery) while this one still looked alive; this one was closed.
    Replaced,
}

impl DisconnectReason {
    /// The reason as socket.io names it (`client namespace disconnect`, `ping timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::Transport(reason) => reason.as_str(),
            DisconnectReason::Replaced => "replaced by a recovered connection",
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

type EventHandler = Arc<dyn Fn(Socket, Event) -> BoxFuture<()> + Send + Sync>;
type DisconnectHandler = Box<dyn FnOnce(Socket, DisconnectReason) -> BoxFuture<()> + Send>;

pub(crate) struct SocketInner {
    id: Sid,
    ns: Namespace,
    session: Arc<Session>,
    handshake: Arc<Handshake>,
    auth: Value,
    identity: Option<Arc<str>>,
    handlers: RwLock<HashMap<String, EventHandler>>,
    disconnect_handlers: Mutex<Vec<DisconnectHandler>>,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckReply>>>,
    rooms: Mutex<HashSet<Room>>,
    data: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    connected: AtomicBool,
    /// Called once when the socket leaves, to unregister it from its client.
    on_leave: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Connection State Recovery: the private session id (None when recovery is off).
    pid: Option<Arc<str>>,
    recovered: bool,
    /// The log position when the session began.
    base_offset: Offset,
    /// The last offset queued to the session.
    last_offset: AtomicU64,
    /// True while a recovering socket waits for its replay: live packets are held here, in
    /// order, and sent after the replay and the CONNECT reply.
    holding: AtomicBool,
    held: Mutex<Vec<(Option<Offset>, Vec<Frame>)>>,
    limits: SocketLimits,
    /// The built-ins waiting for the store, driven by one task ([`super::pending`]).
    pending: Pending,
}

/// How a socket starts with respect to Connection State Recovery.
#[derive(Debug, Default)]
pub(crate) struct RecoveryState {
    /// Recovery is on: the private session id.
    pub(crate) pid: Option<Arc<str>>,
    /// A recovered session: its sid and rooms.
    pub(crate) restored: Option<(Sid, Vec<Room>)>,
    pub(crate) base_offset: Offset,
    pub(crate) last_offset: Offset,
}

/// The JSON data of a socket that other nodes see when they fetch it: Node's `socket.data`
/// in `fetchSockets()` (a Node server's, or a tidings node's
/// [`BroadcastOperator::fetch_sockets`]). Store it with `socket.set_data(SocketData(json))`;
/// without it other nodes see `{}`, Node's default.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketData(pub Value);

/// One client's connection to one namespace. Cheap to clone; all clones are the same socket.
#[derive(Clone)]
pub struct Socket {
    inner: Arc<SocketInner>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("ns", &self.inner.ns.name())
            .finish_non_exhaustive()
    }
}

impl Socket {
    pub(crate) fn new(
        ns: Namespace,
        session: Arc<Session>,
        handshake: Arc<Handshake>,
        auth: Value,
        identity: Option<Arc<str>>,
        setup: SocketSetup,
    ) -> Socket {
        let SocketSetup {
            on_leave,
            state,
            limits,
        } = setup;
        let recovered = state.restored.is_some();
        let (id, restored_rooms) = state.restored.unwrap_or_else(|| (Sid::new(), Vec::new()));
        let mut rooms: HashSet<Room> = restored_rooms.into_iter().collect();
        rooms.insert(Room::from(id.to_string()));
        Socket {
            inner: Arc::new(SocketInner {
                id,
                ns,
                session,
                handshake,
                auth,
                identity,
                handlers: RwLock::new(HashMap::new()),
                disconnect_handlers: Mutex::new(Vec::new()),
                acks: Mutex::new(HashMap::new()),
                rooms: Mutex::new(rooms),
                data: Mutex::new(HashMap::new()),
                connected: AtomicBool::new(true),
                on_leave: Mutex::new(Some(on_leave)),
                pid: state.pid,
                recovered,
                base_offset: state.base_offset,
                last_offset: AtomicU64::new(state.last_offset),
                holding: AtomicBool::new(recovered),
                held: Mutex::new(Vec::new()),
                limits,
                pending: Pending::default(),
            }),
        }
    }

    /// The socket id (random, 128 bits), which is also the name of a room that holds only
    /// this socket.
    pub fn id(&self) -> Sid {
        self.inner.id
    }

    /// The namespace the socket belongs to.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.ns
    }

    /// The CONNECT auth payload (`{}` when the client sent none).
    pub fn auth(&self) -> &Value {
        &self.inner.auth
    }

    /// The durable identity of the client, if it has one: the `clientId` of the CONNECT auth
    /// payload (see [`crate::queue`]). Durable subscriptions belong to identities, never to
    /// socket ids.
    pub fn identity(&self) -> Option<&str> {
        self.inner.identity.as_deref()
    }

    /// The first HTTP request of the client's session.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// Whether this socket recovered the session of a lost connection (Connection State
    /// Recovery): same id, same rooms, and the missed events were replayed to it before its
    /// connect handler ran. The client sees `socket.recovered === true`.
    pub fn is_recovered(&self) -> bool {
        self.inner.recovered
    }

    pub(crate) fn pid(&self) -> Option<&Arc<str>> {
        self.inner.pid.as_ref()
    }

    /// Queues frames for the client, or holds them while a recovering socket waits for its
    /// replay. `offset`: the recovery log offset the frames carry.
    pub(crate) fn deliver(
        &self,
        frames: &[Frame],
        offset: Option<Offset>,
    ) -> Result<(), SendError> {
        if self.inner.holding.load(Ordering::Acquire) {
            let mut held = self.inner.held.lock();
            // Re-checked under the lock: `release_held` clears it while holding the lock.
            if self.inner.holding.load(Ordering::Acquire) {
                held.push((offset, frames.to_vec()));
                return Ok(());
            }
        }
        self.inner.session.send_all(frames)?;
        if let Some(offset) = offset {
            self.inner.last_offset.fetch_max(offset, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Records that a replayed packet was queued.
    pub(crate) fn note_offset(&self, offset: Offset) {
        self.inner.last_offset.fetch_max(offset, Ordering::AcqRel);
    }

    /// Sends what was held during the replay (except what the replay already carried) and
    /// stops holding.
    pub(crate) fn release_held(&self, replayed: &HashSet<Offset>) -> Result<(), SendError> {
        let mut held = self.inner.held.lock();
        let mut result = Ok(());
        for (offset, frames) in held.drain(..) {
            if offset.is_some_and(|o| replayed.contains(&o)) || result.is_err() {
                continue;
            }
            result = self.inner.session.send_all(&frames);
            if let (Ok(()), Some(o)) = (&result, offset) {
                self.inner.last_offset.fetch_max(o, Ordering::AcqRel);
            }
        }
        self.inner.holding.store(false, Ordering::Release);
        result
    }

    fn session_record(&self, pid: &str, rooms: Vec<Room>) -> SessionRecord {
        SessionRecord {
            pid: pid.to_owned(),
            sid: self.id(),
            namespace: self.inner.ns.name().to_owned(),
            rooms,
            base_offset: self.inner.base_offset,
            last_offset: self.inner.last_offset.load(Ordering::Acquire),
            disconnected_at: now_millis(),
        }
    }

    /// Closes this socket because its client recovered it on another connection, and hands
    /// over its session. The old connection gets a DISCONNECT for the namespace, so a client
    /// that is in fact still there does not reconnect and fight over the session.
    pub(crate) fn evict_for_recovery(&self) -> Option<SessionRecord> {
        let pid = self.inner.pid.clone()?;
        let _ = self.inner.session.send(
            self.inner
                .ns
                .inner
                .parser
                .frame(&Packet::disconnect(self.inner.ns.name()), &[]),
        );
        let rooms = self.close_inner(DisconnectReason::Replaced)?;
        Some(self.session_record(&pid, rooms))
    }

    /// Whether the socket is still connected.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Registers the handler of `event`. Each event runs its handler in a task of its own, so
    /// a slow handler does not hold up the socket's other events (as with async handlers in
    /// Node); events of one socket are dispatched in the order they arrived.
    pub fn on<F, Fut>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(Socket, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .handlers
            .write()
            .insert(event.into(), Arc::new(move |s, e| Box::pin(handler(s, e))));
    }

    /// Registers a handler that receives the event's first argument deserialized as `T`, and
    /// its ack responder when the client asked for one. A payload that does not deserialize is
    /// answered with `{ok:false,error:{code:"bad_request",…}}` when an ack was requested, and
    /// does not reach the handler.
    pub fn on_data<T, F, Fut>(&self, event: impl Into<String>, handler: F)
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Socket, T, Option<AckSender>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.on(event, move |socket, mut event| {
            let handler = handler.clone();
            async move {
                let ack = event.take_ack();
                match event.data::<T>() {
                    Ok(data) => handler(socket, data, ack).await,
                    Err(e) => {
                        tracing::debug!(sid = %socket.id(), event = event.name(), error = %e, "bad event payload");
                        if let Some(ack) = ack {
                            let _ = ack.send_error(ErrorBody::new(ErrorCode::BadRequest, e.to_string()));
                        }
                    }
                }
            }
        });
    }

    /// Registers a handler that runs once when the socket disconnects.
    pub fn on_disconnect<F, Fut>(&self, handler: F)
    where
        F: FnOnce(Socket, DisconnectReason) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .disconnect_handlers
            .lock()
            .push(Box::new(move |s, r| Box::pin(handler(s, r))));
    }

    pub(crate) fn handler(&self, event: &str) -> Option<EventHandler> {
        self.inner.handlers.read().get(event).cloned()
    }

    /// Emits `event` with one argument to this socket.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), EmitError> {
        self.emit_args(event, vec![serde_json::to_value(data)?], &[])
    }

    /// Emits `event` with several arguments and binary attachments (referenced from `args` by
    /// [`tidings_proto::packet::placeholder`]).
    pub fn emit_args(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: &[Bytes],
    ) -> Result<(), EmitError> {
        if let Some(recovery) = self.inner.ns.recovery() {
            let own = [Room::from(self.id().to_string())];
            let (frames, offset) = recovery.log_event(
                self.inner.ns.name(),
                event,
                args,
                attachments,
                &own,
                Vec::new(),
            )?;
            self.deliver(&frames, Some(offset))?;
            return Ok(());
        }
        let frames = event_frames(
            self.inner.ns.inner.parser,
            self.inner.ns.name(),
            event,
            args,
            attachments,
            None,
        )?;
        self.inner.session.send_all(&frames)?;
        Ok(())
    }

    /// Emits `event` with one argument and waits up to `timeout` for the client's ack.
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<AckReply, AckError> {
        let args = vec![serde_json::to_value(data).map_err(EmitError::from)?];
        self.emit_args_with_ack(event, args, &[], timeout).await
    }

    /// Like [`Socket::emit_with_ack`], with several arguments and binary attachments.
    pub async fn emit_args_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: &[Bytes],
        timeout: Duration,
    ) -> Result<AckReply, AckError> {
        self.send_with_ack(event, args, attachments)?
            .wait(timeout)
            .await
    }

    /// Queues an event that asks for an ack, now, and returns the wait for the answer. Emits
    /// made one after another this way reach the client in that order, whenever their answers
    /// are awaited.
    pub fn send_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: &[Bytes],
    ) -> Result<PendingAck, AckError> {
        let id = self.inner.ns.next_ack_id();
        let frames = event_frames(
            self.inner.ns.inner.parser,
            self.inner.ns.name(),
            event,
            args,
            attachments,
            Some(id),
        )?;
        self.send_frames_with_ack(id, &frames)
    }

    /// [`Socket::send_with_ack`] of an event whose arguments are JSON text already:
    /// `write_args` appends them to the packet after the event name (`42<id>["event",<args>]`,
    /// about `args_len` bytes), so it must write JSON values separated by commas. The packet is
    /// written in one buffer: no `Value` of the arguments (the delivery engine's stored data
    /// would be parsed only to be written back). `None` when the socket speaks the msgpack
    /// parser: the caller uses [`Socket::send_with_ack`].
    pub(crate) fn send_text_with_ack(
        &self,
        event: &str,
        args_len: usize,
        write_args: impl FnOnce(&mut Vec<u8>),
    ) -> Option<Result<PendingAck, AckError>> {
        let ns = &self.inner.ns;
        if ns.inner.parser != tidings_proto::parser::Parser::Default {
            return None;
        }
        if super::event::is_reserved_event(event) {
            return Some(Err(AckError::ReservedName(event.to_owned())));
        }
        let id = ns.next_ack_id();
        let name = ns.name();
        let mut text = Vec::with_capacity(name.len() + event.len() + args_len + 32);
        text.extend_from_slice(b"42");
        if !name.is_empty() && name != "/" {
            text.extend_from_slice(name.as_bytes());
            text.push(b',');
        }
        // Writing into a `Vec` cannot fail.
        let _ = std::io::Write::write_fmt(&mut text, format_args!("{id}"));
        text.push(b'[');
        let _ = serde_json::to_writer(&mut text, event);
        text.push(b',');
        write_args(&mut text);
        text.push(b']');
        let frame = Frame::Text(Bytes::from(text));
        Some(self.send_frames_with_ack(id, &[frame]))
    }

    /// Registers the ack `id` and queues the packet's `frames`; forgets the ack if they cannot
    /// be queued.
    fn send_frames_with_ack(&self, id: u64, frames: &[Frame]) -> Result<PendingAck, AckError> {
        let rx = self.register_ack(id)?;
        if let Err(e) = self.inner.session.send_all(frames) {
            self.forget_ack(id);
            return Err(AckError::Send(e));
        }
        Ok(PendingAck {
            socket: self.clone(),
            id,
            rx,
        })
    }

    /// Registers a pending ack: `Disconnected` when the socket is already gone,
    /// `TooManyPending` when it owes [`crate::Limits::max_pending_acks_per_socket`].
    pub(crate) fn register_ack(&self, id: u64) -> Result<oneshot::Receiver<AckReply>, AckError> {
        let (tx, rx) = oneshot::channel();
        let mut acks = self.inner.acks.lock();
        if !self.is_connected() {
            return Err(AckError::Disconnected);
        }
        if let Some(max) = self.inner.limits.max_pending_acks {
            if acks.len() >= max {
                return Err(AckError::TooManyPending(max));
            }
        }
        acks.insert(id, tx);
        Ok(rx)
    }

    /// How many acknowledgements the socket owes.
    pub fn pending_acks(&self) -> usize {
        self.inner.acks.lock().len()
    }

    /// Forgets a pending ack; true if it was still pending.
    pub(crate) fn forget_ack(&self, id: u64) -> bool {
        self.inner.acks.lock().remove(&id).is_some()
    }

    /// Settles a pending ack with the client's answer. An id this socket never issued (or
    /// already settled) is ignored.
    pub(crate) fn settle_ack(&self, id: u64, reply: AckReply) {
        match self.inner.acks.lock().remove(&id) {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(sid = %self.id(), id, "ack for an unknown id ignored"),
        }
    }

    /// Joins `room`. Joining a room the socket is in, or joining after the socket
    /// disconnected, does nothing. Fails when the socket is in
    /// [`crate::Limits::max_rooms_per_socket`] rooms (its own room counts).
    pub fn join(&self, room: impl Into<Room>) -> Result<(), JoinError> {
        let room = room.into();
        let mut rooms = self.inner.rooms.lock();
        if !self.is_connected() || rooms.contains(&room) {
            return Ok(());
        }
        if let Some(max) = self.inner.limits.max_rooms {
            if rooms.len() >= max {
                let (refused, warn) = self.inner.limits.joins_refused.incr();
                if warn {
                    tracing::warn!(sid = %self.id(), max, refused, "join over max_rooms_per_socket refused (logged once per 1000)");
                }
                return Err(JoinError::TooManyRooms { max });
            }
        }
        rooms.insert(room.clone());
        self.record_live(&rooms);
        // Still under the rooms lock: a concurrent close cannot miss this membership.
        self.inner.ns.join(self.id(), room);
        Ok(())
    }

    /// Leaves `room`.
    pub fn leave(&self, room: impl Into<Room>) {
        let room = room.into();
        let mut rooms = self.inner.rooms.lock();
        if rooms.remove(&room) {
            self.record_live(&rooms);
            drop(rooms);
            self.inner.ns.leave(self.id(), &room);
        }
    }

    /// Connection State Recovery: writes the record of this live socket (its rooms as of
    /// now) to the log, so that a crash of the process does not lose the session. Never
    /// waits: the log batches it. Called with the rooms lock held (`rooms` is its content):
    /// so it is ordered before the record [`Socket::close`] writes, which takes that lock
    /// first, and a closed socket is never written back as live.
    fn record_live(&self, rooms: &HashSet<Room>) {
        if let (Some(pid), Some(recovery)) = (&self.inner.pid, self.inner.ns.recovery()) {
            recovery
                .log
                .persist_live(self.session_record(pid, rooms.iter().cloned().collect()));
        }
    }

    /// Writes the record of this socket to the log as live, unless it already closed (see
    /// [`Socket::record_live`]). Called when the CONNECT is answered.
    pub(crate) fn persist_live(&self) {
        let rooms = self.inner.rooms.lock();
        if self.is_connected() {
            self.record_live(&rooms);
        }
    }

    /// The rooms the socket is in (including the room of its own id).
    pub fn rooms(&self) -> Vec<Room> {
        self.inner.rooms.lock().iter().cloned().collect()
    }

    /// Addresses the sockets in `room`, except this one.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.ns.clone())
            .excluding(self.id())
            .to(room)
    }

    /// Addresses every socket of the namespace except this one.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.inner.ns.clone()).excluding(self.id())
    }

    /// Stores a value of type `T` on the socket, replacing any previous one.
    pub fn set_data<T: Any + Send + Sync>(&self, value: T) {
        self.inner
            .data
            .lock()
            .insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T` stored on the socket.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let value = self.inner.data.lock().get(&TypeId::of::<T>()).cloned()?;
        value.downcast::<T>().ok()
    }

    /// What other nodes see of the socket's handshake, in the form of Node's
    /// `socket.handshake`: `headers`, `query`, `address` (a proxy's `x-forwarded-for` first),
    /// `time`, `issued`, `url`, `secure`, `xdomain` and `auth` (its `token`, if any, redacted:
    /// it travels through Redis to every node).
    pub(crate) fn node_handshake(&self) -> Value {
        let handshake = self.handshake();
        let headers: serde_json::Map<String, Value> = handshake
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), Value::from(v.to_str().ok()?))))
            .collect();
        let query: serde_json::Map<String, Value> = handshake
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k.to_owned(), Value::from(v))
            })
            .collect();
        let address = ["cf-connecting-ip", "x-forwarded-for"]
            .iter()
            .find_map(|h| handshake.headers.get(*h)?.to_str().ok().map(str::to_owned))
            .unwrap_or_else(|| handshake.remote_addr.ip().to_string());
        let issued_ms = handshake
            .issued
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let issued_ms = i64::try_from(issued_ms).unwrap_or(i64::MAX);
        let mut auth = self.auth().clone();
        if let Some(token) = auth.get_mut("token") {
            *token = Value::from("<redacted>");
        }
        serde_json::json!({
            "headers": headers,
            "time": tidings_proto::date::iso8601(issued_ms).unwrap_or_default(),
            "address": address,
            "xdomain": handshake.headers.contains_key(http::header::ORIGIN),
            "secure": false,
            "issued": issued_ms,
            "url": format!("/socket.io/?{}", handshake.query),
            "query": query,
            "auth": auth,
        })
    }

    /// The socket as a fetch-sockets answer of node `node`.
    pub(crate) fn remote(&self, node: &str) -> tidings_core::cluster::RemoteSocket {
        tidings_core::cluster::RemoteSocket {
            sid: self.id().to_string(),
            node: node.to_owned(),
            rooms: self.rooms().iter().map(|r| r.as_str().to_owned()).collect(),
            handshake: Some(self.node_handshake()),
            data: Some(self.node_data()),
        }
    }

    /// The socket's [`SocketData`], or `{}`.
    pub(crate) fn node_data(&self) -> Value {
        self.data::<SocketData>()
            .map_or_else(|| Value::Object(Default::default()), |d| d.0.clone())
    }

    /// Disconnects the socket from its namespace: the client receives a DISCONNECT packet and
    /// sees the reason `io server disconnect`.
    pub fn disconnect(&self) {
        self.disconnect_with(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// The transport that carries the socket's connection now.
    pub fn transport(&self) -> crate::engine::TransportKind {
        self.inner.session.transport()
    }

    /// The id of the socket's Engine.IO session (its connection; shared by the sockets of
    /// every namespace it joined).
    pub fn session_id(&self) -> Sid {
        self.inner.session.sid()
    }

    /// Disconnects the socket and closes its whole connection, every namespace of it (Node's
    /// `socket.disconnect(true)`): the client sees `io server disconnect` here and the
    /// connection close elsewhere.
    pub fn disconnect_connection(&self) {
        self.disconnect();
        self.inner
            .session
            .close(crate::engine::CloseReason::ForcedClose);
    }

    /// Runs `work` (a built-in waiting for the store) among the socket's pending work: one
    /// task per socket polls all of it ([`super::pending`]); after the socket left, in a task
    /// of its own.
    pub(crate) fn run_pending(&self, work: BoxFuture<()>) {
        self.inner.pending.run(work);
    }

    /// Removes the socket, telling the client when the server decided it.
    pub(crate) fn disconnect_with(&self, reason: DisconnectReason) {
        if reason == DisconnectReason::ServerNamespaceDisconnect {
            let _ = self.inner.session.send(
                self.inner
                    .ns
                    .inner
                    .parser
                    .frame(&Packet::disconnect(self.inner.ns.name()), &[]),
            );
        }
        self.close(reason);
    }

    /// Unregisters the socket everywhere, fails its pending acks and runs its disconnect
    /// handlers. Idempotent.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        let Some(rooms) = self.close_inner(reason) else {
            return;
        };
        if let (Some(pid), Some(recovery)) = (&self.inner.pid, self.inner.ns.recovery()) {
            if recovery::is_recoverable(reason) {
                recovery
                    .log
                    .persist_session(self.session_record(pid, rooms));
            } else {
                // Its live record must not outlive it: a crash would make it recoverable.
                recovery.log.forget_session(pid);
            }
            // Only now: a node asking for this pid either finds it live or, after a flush of
            // the log, finds the record.
            recovery.unregister_live(pid, self);
        }
    }

    /// [`Socket::close`] without persisting the session; the rooms it was in, or None when it
    /// was already closed.
    fn close_inner(&self, reason: DisconnectReason) -> Option<Vec<Room>> {
        let rooms: Vec<Room> = {
            let mut rooms = self.inner.rooms.lock();
            if !self.inner.connected.swap(false, Ordering::AcqRel) {
                return None;
            }
            rooms.drain().collect()
        };
        self.inner.ns.remove_socket(self.id(), &rooms);
        self.inner.pending.close();
        // Dropping the senders fails every pending emit_with_ack with `Disconnected`.
        self.inner.acks.lock().clear();
        if let Some(on_leave) = self.inner.on_leave.lock().take() {
            on_leave();
        }
        tracing::debug!(sid = %self.id(), ns = self.inner.ns.name(), reason = %reason, "socket disconnected");
        let handlers: Vec<_> = self.inner.disconnect_handlers.lock().drain(..).collect();
        for handler in handlers {
            tokio::spawn(handler(self.clone(), reason));
        }
        Some(rooms)
    }
}
