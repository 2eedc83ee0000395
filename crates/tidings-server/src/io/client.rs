//! The Socket.IO side of one Engine.IO session: decodes packets, reassembles binary ones,
//! connects namespaces and routes events and acks to sockets.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tidings_proto::msgpack;
use tidings_proto::packet::{self, EventHead, Packet, PacketKind};
use tidings_proto::parser::Parser;

use super::event::{AckReply, AckSender, Event};
use super::namespace::{ConnectRequest, Namespace};
use super::socket::{DisconnectReason, RecoveryState, Socket, SocketLimits, SocketSetup};
use super::v2;
use crate::command::{self, Builtin, Command, Family};
use crate::engine::{CloseReason, EngineVersion, Handshake, Inbound, Session, SessionHandler};
use crate::recovery::{self, Recovery, Restored};
use crate::server::{NamespaceLease, NamespaceRefused, ServerInner};
use tidings_core::Sid;
use tidings_core::session_log::{LoggedPacket, SessionRecord};

/// A binary packet waiting for its attachments.
struct PartialPacket {
    packet: Packet,
    attachments: Vec<Bytes>,
}

pub(crate) struct Client {
    me: Weak<Client>,
    session: Arc<Session>,
    handshake: Arc<Handshake>,
    server: Arc<ServerInner>,
    sockets: Mutex<HashMap<Arc<str>, Socket>>,
    /// Namespaces whose connect middleware is still running.
    connecting: Mutex<HashSet<String>>,
    partial: Mutex<Option<PartialPacket>>,
    /// Held while a message is dispatched and while a socket is established, so that a
    /// socket's connect handler has registered its event handlers before any of its events
    /// is dispatched, even when a middleware made the connect asynchronous.
    dispatch_lock: Mutex<()>,
    /// [`crate::Limits::events_per_second`], when set.
    events: Option<Mutex<crate::limits::TokenBucket>>,
    /// The connect-timeout task, aborted when the first namespace is joined (as Node's
    /// socket.io clears its timer) so that an idle connection does not keep a task alive.
    connect_timer: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Client {
    pub(crate) fn new(session: &Arc<Session>, server: Arc<ServerInner>) -> Arc<Client> {
        let events = server
            .config
            .limits
            .events_per_second
            .map(|rate| Mutex::new(crate::limits::TokenBucket::new(rate)));
        let client = Arc::new_cyclic(|me| Client {
            me: me.clone(),
            session: session.clone(),
            handshake: session.shared_handshake(),
            server,
            sockets: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashSet::new()),
            partial: Mutex::new(None),
            dispatch_lock: Mutex::new(()),
            events,
            connect_timer: Mutex::new(None),
        });
        // A session that never joins a namespace is closed after the connect timeout.
        let weak = Arc::downgrade(&client);
        let timeout = client.server.config.connect_timeout;
        let closed = session.closed.clone();
        let timer = tokio::spawn(async move {
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = tokio::time::sleep(timeout) => {
                    if let Some(client) = weak.upgrade() {
                        let idle = client.sockets.lock().is_empty() && client.connecting.lock().is_empty();
                        if idle {
                            tracing::debug!(sid = %client.session.sid(), "no namespace joined in time, closing");
                            client.session.close(CloseReason::ConnectTimeout);
                        }
                    }
                }
            }
        });
        *client.connect_timer.lock() = Some(timer.abort_handle());
        if client.is_v2() {
            // socket.io-client 2.x never sends a CONNECT for the default namespace.
            let auth = v2::query_auth(&client.handshake.query);
            let _dispatching = client.dispatch_lock.lock();
            client.connect(Packet::connect("/", Some(auth)));
        }
        client
    }

    fn parser(&self) -> Parser {
        self.server.config.parser
    }

    /// A `socket.io-client` 2.x connection (Engine.IO v3): see [`super::v2`].
    fn is_v2(&self) -> bool {
        self.session.version() == EngineVersion::V3
    }

    /// The packet refusing a CONNECT to `namespace`, in the client's protocol.
    fn connect_error(&self, namespace: &str, message: &str, data: Option<Value>) -> Packet {
        if self.is_v2() {
            v2::connect_error(namespace, message, data)
        } else {
            Packet::connect_error(namespace, message, data)
        }
    }

    /// Closes the connection over a packet it should not have sent: counted, and logged at
    /// info (a client built with the wrong parser shows up in the log without debug logging).
    fn protocol_error(&self, what: &str) {
        self.close_undecodable(what, None);
    }

    fn close_undecodable(&self, what: &str, hint: Option<&str>) {
        let parser = self.parser().npm_package();
        let sid = self.session.sid();
        match hint {
            Some(hint) => tracing::info!(
                sid = %sid,
                parser,
                what,
                hint,
                "invalid socket.io packet, closing the connection"
            ),
            None => tracing::info!(
                sid = %sid,
                parser,
                what,
                "invalid socket.io packet, closing the connection"
            ),
        }
        self.server.count_protocol_error();
        self.session.close(CloseReason::ParseError);
    }

    /// A packet in the other parser's encoding, logged at info with a hint and counted. A
    /// CONNECT is refused with a CONNECT_ERROR in the client's own encoding, so that the client
    /// sees why (`connect_error`, after which socket.io-client gives the connection up) instead
    /// of reconnecting in a loop; the connection stays, as after any refused CONNECT, until the
    /// client closes it or the connect timeout does (closing at once would race the refusal
    /// over polling: the next GET would find no session). Any other packet closes it.
    fn wrong_parser(&self, theirs: Parser, connect: Option<&Packet>) {
        let hint = match self.parser() {
            Parser::Msgpack => {
                "this looks like the default socket.io-parser; this server speaks socket.io-msgpack-parser (--parser msgpack): give the client parser: require(\"socket.io-msgpack-parser\")"
            }
            _ => {
                "this looks like socket.io-msgpack-parser; this server speaks the default socket.io-parser: start it with --parser msgpack, or drop the client's parser option"
            }
        };
        if let Some(connect) = connect {
            let message = format!(
                "parser mismatch: this server speaks {}, this client {}",
                self.parser().npm_package(),
                theirs.npm_package()
            );
            let reply = Packet::connect_error(&connect.namespace, &message, None);
            tracing::info!(sid = %self.session.sid(), ns = %connect.namespace, parser = self.parser().npm_package(), hint, "connect in the other parser's encoding refused");
            self.server.count_protocol_error();
            let _ = self.session.send(theirs.frame(&reply, &[]));
            return;
        }
        self.close_undecodable("packet in the other parser's encoding", Some(hint));
    }

    fn on_text(&self, text: &str) {
        if self.parser() == Parser::Msgpack {
            // The msgpack parser sends every packet as binary.
            let packet = Packet::decode(text).ok();
            let connect = packet.filter(|p| p.kind == PacketKind::Connect);
            return self.wrong_parser(Parser::Default, connect.as_ref());
        }
        if self.partial.lock().is_some() {
            return self.protocol_error("text packet while binary attachments were expected");
        }
        if self.publish_as_text(text) {
            return;
        }
        let packet = match Packet::decode(text) {
            Ok(packet) => packet,
            Err(e) => return self.protocol_error(&e.to_string()),
        };
        if packet.kind.is_binary() && packet.attachments > 0 {
            // Refused before any attachment is read: a half-received packet holds at most
            // max_attachments × max_payload bytes.
            if let Some(max) = self.server.config.limits.max_attachments {
                if packet.attachments > max {
                    return self.protocol_error(
                        "more binary attachments than max_attachments in one packet",
                    );
                }
            }
            if let Some(data) = &packet.data {
                if packet::validate_placeholders(data, packet.attachments).is_err() {
                    return self.protocol_error("placeholders do not match the attachment count");
                }
            }
            *self.partial.lock() = Some(PartialPacket {
                packet,
                attachments: Vec::new(),
            });
            return;
        }
        self.dispatch(packet, Vec::new());
    }

    /// A whole packet in the msgpack parser's encoding.
    fn on_msgpack(&self, data: &Bytes) {
        let (packet, attachments) = match msgpack::decode(data) {
            Ok(decoded) => decoded,
            Err(e) => return self.protocol_error(&e.to_string()),
        };
        if let Some(max) = self.server.config.limits.max_attachments {
            if attachments.len() > max {
                return self
                    .protocol_error("more binary attachments than max_attachments in one packet");
            }
        }
        self.dispatch(packet, attachments);
    }

    fn on_binary(&self, data: Bytes) {
        if self.parser() == Parser::Msgpack {
            return self.on_msgpack(&data);
        }
        let complete = {
            let mut partial = self.partial.lock();
            let Some(p) = partial.as_mut() else {
                drop(partial);
                if msgpack::looks_like_msgpack(&data) {
                    let packet = msgpack::decode(&data).ok().map(|(packet, _)| packet);
                    let connect = packet.filter(|p| p.kind == PacketKind::Connect);
                    return self.wrong_parser(Parser::Msgpack, connect.as_ref());
                }
                return self.protocol_error("binary message without a binary packet");
            };
            p.attachments.push(data);
            if p.attachments.len() == p.packet.attachments {
                partial.take()
            } else {
                None
            }
        };
        if let Some(PartialPacket {
            packet,
            attachments,
        }) = complete
        {
            self.dispatch(packet, attachments);
        }
    }

    fn dispatch(&self, packet: Packet, attachments: Vec<Bytes>) {
        match packet.kind {
            PacketKind::Connect => self.connect(packet),
            PacketKind::Disconnect => {
                let socket = self.sockets.lock().get(packet.namespace.as_str()).cloned();
                if let Some(socket) = socket {
                    socket.close(DisconnectReason::ClientNamespaceDisconnect);
                }
            }
            PacketKind::Event | PacketKind::BinaryEvent => {
                let Some(socket) = self.socket(&packet.namespace) else {
                    tracing::debug!(sid = %self.session.sid(), ns = %packet.namespace, "event for a namespace not joined, ignored");
                    return;
                };
                self.on_event(socket, packet, attachments);
            }
            PacketKind::Ack | PacketKind::BinaryAck => {
                let (Some(socket), Some(id)) = (self.socket(&packet.namespace), packet.id) else {
                    return;
                };
                let args = match packet.data {
                    Some(Value::Array(args)) => args,
                    _ => Vec::new(),
                };
                socket.settle_ack(id, AckReply { args, attachments });
            }
            // Only servers send CONNECT_ERROR.
            PacketKind::ConnectError => self.protocol_error("connect error from a client"),
        }
    }

    fn socket(&self, namespace: &str) -> Option<Socket> {
        self.sockets.lock().get(namespace).cloned()
    }

    fn on_event(&self, socket: Socket, packet: Packet, attachments: Vec<Bytes>) {
        let mut args = match packet.data {
            Some(Value::Array(args)) => args,
            _ => return self.protocol_error("event without arguments"),
        };
        // The decoder guarantees a first element that is a string or a number.
        let name = match args.remove(0) {
            Value::String(name) => name,
            other => other.to_string(),
        };
        let ack = packet.id.map(|id| {
            AckSender::new(
                self.session.clone(),
                socket.namespace().inner.name.clone(),
                id,
                self.parser(),
            )
        });
        let event = Event {
            name,
            args,
            attachments,
            ack,
        };
        if self.over_rate_limit(&socket, &event.name) {
            refuse_over_rate_limit(event.ack);
            return;
        }
        let builtins = socket.namespace().builtins();
        match Command::family_of(&event.name).filter(|_| builtins) {
            Some(Family::Queues) if self.server.queues().is_some() => {
                return command::run(socket, event, self.server.queues().cloned());
            }
            Some(Family::Rooms) if self.server.config.builtin_events => {
                return command::run(socket, event, None);
            }
            _ => {}
        }
        match socket.handler(&event.name) {
            Some(handler) => {
                tokio::spawn(handler(socket, event));
            }
            None => {
                tracing::trace!(sid = %socket.id(), event = %event.name, "no handler for event")
            }
        }
    }

    /// The `publish` built-in's fast path: a text EVENT `publish` for the durable queues is
    /// read with its arguments left as JSON text ([`EventHead`]), and its `data` stored as it
    /// arrived, never decoded into a `Value` nor written again (they were ~12 % of the
    /// server's CPU per publish). False when the packet is not one (anything else, or a
    /// `publish` that goes to an application handler): the caller decodes it.
    ///
    /// Same outcome as the decoded path: the JSON is checked as [`Packet::decode`] checks
    /// it (a refusal closes the connection), then the rate limit, then the built-in.
    fn publish_as_text(&self, text: &str) -> bool {
        let Some(head) = EventHead::peek(text) else {
            return false;
        };
        if head.name != command::Publish::NAME {
            return false;
        }
        let Some(queues) = self.server.queues() else {
            return false;
        };
        let Some(socket) = self.socket(head.namespace) else {
            return false;
        };
        if !socket.namespace().builtins() {
            return false;
        }
        let args = match head.args() {
            Ok(args) => args,
            Err(e) => {
                self.protocol_error(&e.to_string());
                return true;
            }
        };
        let ack = head.id.map(|id| {
            AckSender::new(
                self.session.clone(),
                socket.namespace().inner.name.clone(),
                id,
                self.parser(),
            )
        });
        if self.over_rate_limit(&socket, head.name) {
            refuse_over_rate_limit(ack);
            return true;
        }
        command::run_publish_json(socket, args.first().copied(), ack, queues.clone());
        true
    }

    /// Whether an event of `socket` goes over [`crate::Limits::events_per_second`] (counted
    /// and logged here).
    fn over_rate_limit(&self, socket: &Socket, event: &str) -> bool {
        let Some(bucket) = &self.events else {
            return false;
        };
        if bucket.lock().take() {
            return false;
        }
        let (refused, warn) = self.server.rate_limited_events.incr();
        if warn {
            tracing::warn!(sid = %socket.id(), event, refused, "event over the rate limit refused (logged once per 1000)");
        } else {
            tracing::debug!(sid = %socket.id(), event, refused, "event over the rate limit refused");
        }
        true
    }

    /// Refuses a CONNECT with a `connect_error` `{message, data:{code:"limit_exceeded",
    /// message}}`.
    fn refuse_over_limit(&self, name: &str, message: String) {
        let (refused, warn) = self.server.namespaces_refused.incr();
        if warn {
            tracing::warn!(sid = %self.session.sid(), ns = name, refused, "{message} (logged once per 1000)");
        } else {
            tracing::debug!(sid = %self.session.sid(), ns = name, "{message}");
        }
        let body = tidings_core::ErrorBody::new(tidings_core::ErrorCode::LimitExceeded, &message);
        let data = serde_json::to_value(&body).ok();
        let reply = self.connect_error(name, &message, data);
        let _ = self.session.send(self.parser().frame(&reply, &[]));
    }

    fn connect(&self, packet: Packet) {
        let (name, data) = match packet.namespace.split_once('?') {
            // A v2 client's query, in place of the auth payload it cannot send.
            Some((name, query)) if self.is_v2() => (name.to_owned(), Some(v2::query_auth(query))),
            _ => (packet.namespace, packet.data),
        };
        let joined = self.sockets.lock().contains_key(name.as_str());
        if joined || self.connecting.lock().contains(&name) {
            tracing::debug!(sid = %self.session.sid(), ns = %name, "duplicate connect ignored");
            return;
        }
        if let Some(max) = self.server.config.limits.max_namespaces_per_connection {
            let in_use = self.sockets.lock().len() + self.connecting.lock().len();
            if in_use >= max {
                return self.refuse_over_limit(
                    &name,
                    format!(
                        "too many namespaces on this connection: at most {max} (max_namespaces_per_connection)"
                    ),
                );
            }
        }
        let lease = match self.server.namespace_for(&name) {
            Ok(lease) => lease,
            Err(NamespaceRefused::Invalid) => {
                let reply = self.connect_error(&name, "Invalid namespace", None);
                let _ = self.session.send(self.parser().frame(&reply, &[]));
                return;
            }
            Err(NamespaceRefused::TooMany(max)) => {
                return self.refuse_over_limit(
                    &name,
                    format!("too many namespaces on this server: at most {max} (max_namespaces)"),
                );
            }
        };
        let ns = lease.namespace().clone();
        // Dispatch is serial per client (the dispatch lock), so nobody inserted it meanwhile.
        self.connecting.lock().insert(name.clone());
        let mut auth = data.unwrap_or_else(|| Value::Object(Default::default()));
        // Connection State Recovery: `pid`/`offset` are the protocol's, taken out of the auth
        // payload before anything of the application sees it.
        let claim = ns.recovery().and_then(|_| Recovery::claim(&mut auth));
        // A namespace with a login of its own (the Admin UI's) takes no token: its middleware
        // decides, and its sockets have no identity.
        let authenticator = self
            .server
            .config
            .auth
            .as_deref()
            .filter(|_| !ns.own_login());
        let admission = match crate::access::admit(authenticator, &auth) {
            Ok(admission) => admission,
            Err(e) => {
                self.connecting.lock().remove(&name);
                let reply = self.connect_error(&name, &e.message, e.data);
                let _ = self.session.send(self.parser().frame(&reply, &[]));
                return;
            }
        };
        let middlewares = ns.middlewares();
        let Some(me) = self.me.upgrade() else { return };
        if middlewares.is_empty() && claim.is_none() {
            me.establish(lease, auth, admission);
            return;
        }
        let request = ConnectRequest {
            namespace: name.clone(),
            auth: auth.clone(),
            handshake: self.handshake.clone(),
        };
        tokio::spawn(async move {
            let restored = match (claim, ns.recovery()) {
                (Some(claim), Some(recovery)) => {
                    recovery.restore(&name, claim, ns.cluster_link()).await
                }
                _ => None,
            };
            let skip_middlewares =
                restored.is_some() && ns.recovery().is_some_and(|r| r.config.skip_middlewares);
            let middlewares = if skip_middlewares {
                Vec::new()
            } else {
                middlewares
            };
            for middleware in middlewares {
                if let Err(e) = middleware(request.clone()).await {
                    me.connecting.lock().remove(&name);
                    tracing::debug!(sid = %me.session.sid(), ns = %name, reason = %e.message, "connect refused");
                    let reply = me.connect_error(&name, &e.message, e.data);
                    let _ = me.session.send(me.parser().frame(&reply, &[]));
                    return;
                }
            }
            match restored {
                Some(restored) => {
                    me.establish_recovered(lease, auth, admission, restored)
                        .await
                }
                None => {
                    let _dispatching = me.dispatch_lock.lock();
                    me.establish(lease, auth, admission);
                }
            }
        });
    }

    /// Establishes a recovered socket: registers it (same sid, same rooms) while holding its
    /// live packets, reads the log again, then replays, replies and releases what was held.
    async fn establish_recovered(
        self: Arc<Self>,
        lease: NamespaceLease,
        auth: Value,
        admission: crate::access::Admitted,
        restored: Restored,
    ) {
        let ns = lease.namespace().clone();
        let Some(recovery) = ns.recovery().cloned() else {
            return;
        };
        let record = restored.record;
        let socket = {
            let _dispatching = self.dispatch_lock.lock();
            self.register(lease, auth, admission, Some(&record))
        };
        // Packets appended between the first read and the registration are in this one; later
        // ones are held by the socket. Duplicates go by offset.
        let mut packets = restored.replay;
        packets.extend(
            recovery
                .catch_up(ns.name(), restored.start, &record.rooms)
                .await,
        );
        let packets = recovery::dedup(packets);
        let _dispatching = self.dispatch_lock.lock();
        self.finish(&ns, socket, &packets);
    }

    /// Creates the socket, queues the CONNECT reply, then runs the connect handler.
    fn establish(&self, lease: NamespaceLease, auth: Value, admission: crate::access::Admitted) {
        let ns = lease.namespace().clone();
        let socket = self.register(lease, auth, admission, None);
        self.finish(&ns, socket, &[]);
    }

    /// Creates the socket and registers it with the client and the namespace. The socket
    /// holds the lease until it leaves.
    fn register(
        &self,
        lease: NamespaceLease,
        auth: Value,
        admission: crate::access::Admitted,
        restored: Option<&SessionRecord>,
    ) -> Socket {
        let ns = lease.namespace().clone();
        let ns = &ns;
        let name: Arc<str> = ns.inner.name.clone();
        let weak = self.me.clone();
        let leave_name = name.clone();
        let on_leave = Box::new(move || {
            if let Some(client) = weak.upgrade() {
                client.sockets.lock().remove(&leave_name);
            }
            // Last: the namespace may go with it.
            drop(lease);
        });
        let limits = &self.server.config.limits;
        let socket_limits = SocketLimits {
            max_rooms: limits.max_rooms_per_socket,
            max_pending_acks: limits.max_pending_acks_per_socket,
            joins_refused: self.server.joins_refused.clone(),
        };
        let state = match (ns.recovery(), restored) {
            (None, _) => RecoveryState::default(),
            (Some(recovery), None) => RecoveryState {
                pid: Some(Arc::from(Sid::new().to_string())),
                restored: None,
                base_offset: recovery.log.head(),
                last_offset: 0,
            },
            (Some(_), Some(record)) => RecoveryState {
                pid: Some(Arc::from(record.pid.as_str())),
                restored: Some((record.sid, record.rooms.clone())),
                base_offset: record.base_offset,
                last_offset: record.last_offset,
            },
        };
        let socket = Socket::new(
            ns.clone(),
            self.session.clone(),
            self.handshake.clone(),
            auth,
            admission.identity,
            SocketSetup {
                on_leave,
                state,
                limits: socket_limits,
            },
        );
        crate::access::attach(&socket, admission.principal);
        self.sockets.lock().insert(name.clone(), socket.clone());
        self.connecting.lock().remove(&*name);
        if let Some(timer) = self.connect_timer.lock().take() {
            timer.abort();
        }
        ns.add_socket(&socket);
        if let (Some(recovery), Some(pid)) = (ns.recovery(), socket.pid()) {
            recovery.register_live(pid.clone(), &socket);
            // Durable while it lives (a crash does not lose it); queued, never waited for.
            socket.persist_live();
        }
        socket
    }

    /// Replays `replay` (a recovered session's missed packets), queues the CONNECT reply,
    /// sends what the socket held meanwhile, then runs the connect handler.
    fn finish(&self, ns: &Namespace, socket: Socket, replay: &[LoggedPacket]) {
        let name = ns.name();
        let mut replayed = HashSet::with_capacity(replay.len());
        for packet in replay {
            let Some(frames) = recovery::packet_frames(self.parser(), packet) else {
                tracing::warn!(ns = %name, offset = packet.offset, "corrupt packet in the recovery log, skipped");
                continue;
            };
            if self.session.send_all(&frames).is_err() {
                break;
            }
            socket.note_offset(packet.offset);
            replayed.insert(packet.offset);
        }
        let mut data = serde_json::Map::new();
        data.insert("sid".to_owned(), Value::String(socket.id().to_string()));
        if let Some(pid) = socket.pid() {
            data.insert("pid".to_owned(), Value::String(pid.to_string()));
        }
        // A v2 client expects a CONNECT reply without data.
        let data = (!self.is_v2()).then_some(Value::Object(data));
        let reply = Packet::connect(name, data);
        if self.session.send(self.parser().frame(&reply, &[])).is_err()
            || self.session.is_closed()
            || socket.release_held(&replayed).is_err()
        {
            // The session ended while the middleware ran.
            socket.close(DisconnectReason::Transport(CloseReason::TransportClose));
            return;
        }
        if socket.is_recovered() {
            tracing::debug!(sid = %socket.id(), ns = %name, replayed = replayed.len(), "socket recovered");
        }
        tracing::debug!(sid = %socket.id(), ns = %name, "socket connected");
        if let Some(queues) = self.server.queues() {
            queues.on_socket_connected(&socket);
        }
        ns.observer()
            .notify(crate::io::SocketEvent::Connected(&socket));
        if let Some(handler) = ns.connect_handler() {
            handler(socket);
        }
    }
}

/// Answers an event refused by the rate limit.
fn refuse_over_rate_limit(ack: Option<AckSender>) {
    if let Some(ack) = ack {
        let _ = ack.send_error(tidings_core::ErrorBody::new(
            tidings_core::ErrorCode::RateLimited,
            "too many events: slow down",
        ));
    }
}

impl SessionHandler for Client {
    fn on_message(&self, message: Inbound<'_>) {
        let _dispatching = self.dispatch_lock.lock();
        match message {
            Inbound::Text(text) => self.on_text(text),
            Inbound::Binary(data) => self.on_binary(data),
        }
    }

    fn on_close(&self, reason: CloseReason) {
        let sockets: Vec<Socket> = self.sockets.lock().values().cloned().collect();
        for socket in sockets {
            socket.close(DisconnectReason::Transport(reason));
        }
    }
}
