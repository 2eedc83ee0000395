//! The connection task: the one owner of the WebSocket. It answers the server's pings, writes
//! the packets the handles queue, reads and routes what the server sends (events, deliveries,
//! acknowledgements, binary attachments), and reconnects with backoff when the connection drops.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tidings_core::Sid;
use tidings_core::store::StartFrom;
use tidings_proto::engine::{self, Frame, TextPacket};
use tidings_proto::packet::{Packet, PacketKind};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_websockets::{MaybeTlsStream, Message, WebSocketStream};
use tracing::{debug, info, trace, warn};

use crate::backoff::Backoff;
use crate::core::{CloseReason, ConnectionState, Core, Outgoing, PendingAck, SubKey};
use crate::error::{ConnectError, TransportError};
use crate::event::{AckHandle, AckReply, ServerEvent};
use crate::options::ClientOptions;
use crate::queue::{self, DeliveryMeta, GAP_EVENT, Unclaimed};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How many queued packets one write batch takes before it flushes.
const BATCH: usize = 64;

/// How long a closing client waits for its goodbye to be written.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// One established connection: the WebSocket after the Engine.IO handshake and the namespace
/// CONNECT reply.
pub(crate) struct Connection {
    ws: Ws,
    pub(crate) sid: Sid,
    /// The server pings every `pingInterval` and allows `pingTimeout` for the answer: a
    /// connection silent for longer than both is dead.
    liveness: Duration,
    pub(crate) max_payload: usize,
}

/// The Engine.IO handshake data (`0{…}`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Handshake {
    ping_interval: u64,
    ping_timeout: u64,
    #[serde(default)]
    max_payload: Option<usize>,
}

fn ws_error(e: tokio_websockets::Error) -> ConnectError {
    match e {
        tokio_websockets::Error::Io(e) => ConnectError::Io(e),
        e => ConnectError::Handshake(TransportError(e)),
    }
}

fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(bytes) => Message::text(bytes),
        Frame::Binary(bytes) => Message::binary(bytes),
    }
}

/// Connects: WebSocket upgrade, Engine.IO handshake, namespace CONNECT with the auth payload,
/// all within the connect timeout.
pub(crate) async fn establish(options: &ClientOptions) -> Result<Connection, ConnectError> {
    match tokio::time::timeout(options.connect_timeout, handshake(options)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(options.connect_timeout)),
    }
}

/// The next text message, skipping WebSocket control frames.
async fn next_text(ws: &mut Ws, during: &str) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(message)) => {
                if let Some(text) = message.as_text() {
                    return Ok(text.to_owned());
                }
                if message.is_close() || message.is_binary() {
                    return Err(ConnectError::Protocol(format!(
                        "unexpected {} during {during}",
                        if message.is_close() {
                            "close"
                        } else {
                            "binary message"
                        }
                    )));
                }
            }
            Some(Err(e)) => return Err(ws_error(e)),
            None => {
                return Err(ConnectError::Protocol(format!(
                    "connection closed during {during}"
                )));
            }
        }
    }
}

async fn handshake(options: &ClientOptions) -> Result<Connection, ConnectError> {
    let connector = options
        .tls
        .clone()
        .map(|tls| tokio_websockets::Connector::Rustls(tokio_rustls::TlsConnector::from(tls)));
    let mut builder = tokio_websockets::ClientBuilder::from_uri(options.uri.clone());
    if let Some(connector) = &connector {
        builder = builder.connector(connector);
    }
    let (mut ws, _response) = builder.connect().await.map_err(ws_error)?;

    let open = next_text(&mut ws, "the engine.io handshake").await?;
    let handshake: Handshake = match engine::decode_text(&open) {
        Ok(TextPacket::Open(data)) => serde_json::from_str(data)
            .map_err(|e| ConnectError::Protocol(format!("bad engine.io handshake: {e}")))?,
        _ => {
            return Err(ConnectError::Protocol(
                "expected the engine.io handshake".into(),
            ));
        }
    };

    let namespace = options.namespace.as_str();
    let connect = Packet::connect(namespace, Some(options.auth.clone()));
    ws.send(to_message(connect.to_frame()))
        .await
        .map_err(ws_error)?;

    loop {
        let text = next_text(&mut ws, "the namespace connect").await?;
        match engine::decode_text(&text) {
            Ok(TextPacket::Ping(_)) => {
                ws.send(Message::text("3")).await.map_err(ws_error)?;
            }
            Ok(TextPacket::Message(data)) => {
                let packet = Packet::decode(data)
                    .map_err(|e| ConnectError::Protocol(format!("bad packet: {e}")))?;
                if packet.namespace != namespace {
                    continue;
                }
                match packet.kind {
                    PacketKind::Connect => {
                        let sid = packet
                            .data
                            .as_ref()
                            .and_then(|d| d.get("sid"))
                            .and_then(Value::as_str)
                            .and_then(|s| s.parse::<Sid>().ok())
                            .ok_or_else(|| {
                                ConnectError::Protocol("connect reply without a valid sid".into())
                            })?;
                        let liveness =
                            Duration::from_millis(handshake.ping_interval + handshake.ping_timeout);
                        return Ok(Connection {
                            ws,
                            sid,
                            liveness,
                            max_payload: handshake.max_payload.unwrap_or(usize::MAX),
                        });
                    }
                    PacketKind::ConnectError => {
                        let data = packet.data.unwrap_or(Value::Null);
                        let (message, details) = match data {
                            Value::String(message) => (message, None),
                            Value::Object(mut map) => {
                                let message = map
                                    .remove("message")
                                    .and_then(|m| m.as_str().map(str::to_owned))
                                    .unwrap_or_default();
                                (message, map.remove("data"))
                            }
                            _ => (String::new(), None),
                        };
                        return Err(ConnectError::Refused {
                            message,
                            data: details,
                        });
                    }
                    // Nothing else is sent before the reply (no connection state recovery).
                    _ => trace!("packet before the connect reply ignored"),
                }
            }
            Ok(TextPacket::Close) => {
                return Err(ConnectError::Protocol(
                    "the server closed the session during connect".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(ConnectError::Protocol(format!("bad engine.io packet: {e}"))),
        }
    }
}

/// How a connection ended.
enum End {
    /// For good.
    Closed(CloseReason),
    /// Dropped; reconnect.
    Lost(String),
}

/// A binary packet waiting for its attachments.
struct Partial {
    packet: Packet,
    attachments: Vec<Bytes>,
}

enum Pending {
    User(PendingAck),
    /// A re-subscribe the task sent itself after a reconnect.
    Resubscribe(SubKey),
}

pub(crate) struct Task {
    core: Arc<Core>,
    commands: mpsc::Receiver<Outgoing>,
    close: CancellationToken,
    pending: HashMap<u64, Pending>,
    /// The pending map is swept of abandoned waiters when it grows past this.
    sweep_at: usize,
    partial: Option<Partial>,
    epoch: u64,
    backoff: Backoff,
    /// Re-subscribes that failed for a reason that may pass, and when to try them again.
    retry: Vec<SubKey>,
    retry_at: Option<Instant>,
}

impl Task {
    pub(crate) fn new(
        core: Arc<Core>,
        commands: mpsc::Receiver<Outgoing>,
        close: CancellationToken,
    ) -> Task {
        let options = &core.options;
        let backoff = Backoff {
            min: options.reconnect_delay_min,
            max: options.reconnect_delay_max,
            jitter: options.reconnect_jitter,
        };
        Task {
            core,
            commands,
            close,
            pending: HashMap::new(),
            sweep_at: 64,
            partial: None,
            epoch: 0,
            backoff,
            retry: Vec::new(),
            retry_at: None,
        }
    }

    /// Publishes a new connection to the handles.
    pub(crate) fn connected(&mut self, conn: &Connection) {
        self.epoch += 1;
        self.core.connected(self.epoch, conn.sid, conn.max_payload);
    }

    /// Runs until the client closes.
    pub(crate) async fn run(mut self, mut conn: Connection) {
        loop {
            let end = self.serve(&mut conn).await;
            self.pending.clear();
            self.partial = None;
            self.retry.clear();
            self.retry_at = None;
            let reason = match end {
                End::Closed(CloseReason::ClientDisconnect) => CloseReason::ClientDisconnect,
                End::Closed(reason) => {
                    // The server removed us from the namespace; nothing else runs on this
                    // connection, so close it as socket.io-client does.
                    let _ = tokio::time::timeout(GOODBYE_GRACE, conn.ws.close()).await;
                    reason
                }
                End::Lost(why) if self.core.options.reconnect => {
                    warn!(reason = %why, "connection lost, reconnecting");
                    self.core.disconnected(ConnectionState::Reconnecting);
                    match self.reconnect().await {
                        Ok(next) => {
                            conn = next;
                            self.connected(&conn);
                            info!(sid = %conn.sid, "reconnected");
                            if let Err(why) = self.resubscribe_all(&mut conn).await {
                                // Lost again at once: go round the loop through `serve`, which
                                // notices the broken connection.
                                debug!(reason = %why, "re-subscribing failed");
                            }
                            continue;
                        }
                        Err(reason) => reason,
                    }
                }
                End::Lost(why) => {
                    warn!(reason = %why, "connection lost, not reconnecting");
                    CloseReason::ConnectionLost
                }
            };
            self.finish(reason);
            return;
        }
    }

    /// Closes for good: fails what waits, ends every stream, refuses further emits.
    fn finish(&mut self, reason: CloseReason) {
        info!(reason = %reason, "client closed");
        self.commands.close();
        while self.commands.try_recv().is_ok() {}
        {
            let mut routes = self.core.routes.lock();
            routes.listeners.clear();
            routes.subscriptions.clear();
        }
        self.core.disconnected(ConnectionState::Closed(reason));
    }

    async fn reconnect(&mut self) -> Result<Connection, CloseReason> {
        let mut attempt: u32 = 0;
        loop {
            if self
                .core
                .options
                .max_reconnect_attempts
                .is_some_and(|max| attempt >= max)
            {
                return Err(CloseReason::ReconnectAttemptsExhausted);
            }
            let delay = self.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            debug!(attempt, ?delay, "reconnecting");
            tokio::select! {
                () = self.close.cancelled() => return Err(CloseReason::ClientDisconnect),
                () = tokio::time::sleep(delay) => {}
            }
            let result = tokio::select! {
                () = self.close.cancelled() => return Err(CloseReason::ClientDisconnect),
                result = establish(&self.core.options) => result,
            };
            match result {
                Ok(conn) => return Ok(conn),
                Err(ConnectError::Refused { message, .. }) => {
                    warn!(reason = %message, "reconnect refused by the server");
                    return Err(CloseReason::ReconnectRefused { message });
                }
                Err(e) => debug!(attempt, error = %e, "reconnect attempt failed"),
            }
        }
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, conn: &mut Connection) -> End {
        let mut deadline = Instant::now() + conn.liveness;
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                biased;
                () = self.close.cancelled() => {
                    self.goodbye(conn).await;
                    return End::Closed(CloseReason::ClientDisconnect);
                }
                message = conn.ws.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => return End::Lost(format!("websocket error: {e}")),
                        None => return End::Lost("connection closed".into()),
                    };
                    deadline = Instant::now() + conn.liveness;
                    if let Some(end) = self.on_message(conn, message).await {
                        return end;
                    }
                }
                command = self.commands.recv() => {
                    // The core keeps a sender, so the channel only ends through `finish`.
                    let Some(command) = command else {
                        return End::Closed(CloseReason::ClientDisconnect);
                    };
                    if let Err(e) = self.write_batch(conn, command).await {
                        return End::Lost(format!("write failed: {e}"));
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    return End::Lost("ping timeout".into());
                }
                () = sleep_until_some(retry_at), if retry_at.is_some() => {
                    self.retry_at = None;
                    let keys = std::mem::take(&mut self.retry);
                    for key in keys {
                        if let Err(e) = self.send_resubscribe(conn, key).await {
                            return End::Lost(format!("write failed: {e}"));
                        }
                    }
                    if let Err(e) = conn.ws.flush().await {
                        return End::Lost(format!("write failed: {e}"));
                    }
                }
            }
        }
    }

    /// Writes what was queued before the close, then leaves the namespace and closes the
    /// WebSocket, within a short grace period.
    async fn goodbye(&mut self, conn: &mut Connection) {
        let commands = &mut self.commands;
        let pending = &mut self.pending;
        let epoch = self.epoch;
        let namespace = self.core.options.namespace.clone();
        let flush = async {
            while let Ok(command) = commands.try_recv() {
                feed(conn, pending, epoch, command).await?;
            }
            let leave = Packet::disconnect(&namespace).to_frame();
            conn.ws.feed(to_message(leave)).await?;
            conn.ws.flush().await?;
            conn.ws.close().await
        };
        match tokio::time::timeout(GOODBYE_GRACE, flush).await {
            Ok(Ok(())) => debug!("left the namespace"),
            Ok(Err(e)) => debug!(error = %e, "could not say goodbye"),
            Err(_) => debug!("goodbye timed out"),
        }
    }

    async fn write_batch(
        &mut self,
        conn: &mut Connection,
        first: Outgoing,
    ) -> Result<(), tokio_websockets::Error> {
        feed(conn, &mut self.pending, self.epoch, first).await?;
        for _ in 1..BATCH {
            match self.commands.try_recv() {
                Ok(command) => feed(conn, &mut self.pending, self.epoch, command).await?,
                Err(_) => break,
            }
        }
        if self.pending.len() >= self.sweep_at {
            // Waiters that timed out leave their entries behind until the reply comes, which
            // may be never.
            self.pending.retain(|_, p| match p {
                Pending::User(p) => !p.tx.is_closed(),
                Pending::Resubscribe(_) => true,
            });
            self.sweep_at = (self.pending.len() * 2).max(64);
        }
        conn.ws.flush().await
    }

    async fn on_message(&mut self, conn: &mut Connection, message: Message) -> Option<End> {
        if let Some(text) = message.as_text() {
            return match engine::decode_text(text) {
                Ok(TextPacket::Ping(_)) => match conn.ws.send(Message::text("3")).await {
                    Ok(()) => None,
                    Err(e) => Some(End::Lost(format!("write failed: {e}"))),
                },
                Ok(TextPacket::Message(data)) => self.on_packet(data),
                Ok(TextPacket::Close) => Some(End::Lost("the server closed the session".into())),
                Ok(_) => None,
                Err(e) => Some(End::Lost(format!("bad engine.io packet: {e}"))),
            };
        }
        if message.is_binary() {
            let data = Bytes::from(message.into_payload());
            return self.on_binary(data);
        }
        if message.is_close() {
            return Some(End::Lost("the server closed the websocket".into()));
        }
        None
    }

    fn on_packet(&mut self, text: &str) -> Option<End> {
        if self.partial.is_some() {
            return Some(End::Lost(
                "text packet while binary attachments were expected".into(),
            ));
        }
        let packet = match Packet::decode(text) {
            Ok(packet) => packet,
            Err(e) => return Some(End::Lost(format!("bad socket.io packet: {e}"))),
        };
        if packet.kind.is_binary() {
            self.partial = Some(Partial {
                packet,
                attachments: Vec::new(),
            });
            return None;
        }
        self.dispatch(packet, Vec::new())
    }

    fn on_binary(&mut self, data: Bytes) -> Option<End> {
        let Some(partial) = self.partial.as_mut() else {
            return Some(End::Lost("binary message without a binary packet".into()));
        };
        partial.attachments.push(data);
        if partial.attachments.len() < partial.packet.attachments {
            return None;
        }
        let Partial {
            packet,
            attachments,
        } = self.partial.take()?;
        self.dispatch(packet, attachments)
    }

    fn dispatch(&mut self, packet: Packet, attachments: Vec<Bytes>) -> Option<End> {
        if packet.namespace != self.core.options.namespace {
            trace!(ns = %packet.namespace, "packet for another namespace ignored");
            return None;
        }
        match packet.kind {
            PacketKind::Event | PacketKind::BinaryEvent => self.on_event(packet, attachments),
            PacketKind::Ack | PacketKind::BinaryAck => self.on_ack(packet, attachments),
            PacketKind::Disconnect => {
                info!("the server removed this client from the namespace");
                return Some(End::Closed(CloseReason::ServerDisconnect));
            }
            PacketKind::Connect => debug!("connect packet while connected ignored"),
            PacketKind::ConnectError => warn!("connect error while connected ignored"),
        }
        None
    }

    fn on_ack(&mut self, packet: Packet, attachments: Vec<Bytes>) {
        let Some(id) = packet.id else { return };
        let args = match packet.data {
            Some(Value::Array(args)) => args,
            _ => Vec::new(),
        };
        match self.pending.remove(&id) {
            Some(Pending::User(pending)) => {
                if let Some((key, entry)) = &pending.confirms {
                    let ok = args.first().and_then(|a| a.get("ok")) == Some(&Value::Bool(true));
                    if ok {
                        if let Some(e) = self.core.routes.lock().subscriptions.get_mut(key) {
                            if e.id == *entry {
                                e.confirmed = true;
                            }
                        }
                    }
                }
                let _ = pending.tx.send(AckReply { args, attachments });
            }
            Some(Pending::Resubscribe(key)) => self.on_resubscribed(key, args),
            None => debug!(id, "acknowledgement for an unknown id ignored"),
        }
    }

    fn on_resubscribed(&mut self, key: SubKey, args: Vec<Value>) {
        match queue::parse_reply(args) {
            Ok(reply) => {
                let pending = queue::parse_subscribed(&reply);
                debug!(topic = %key.topic, group = ?key.group, pending, "re-subscribed");
            }
            Err(crate::error::RequestError::Server { code, message }) => {
                use tidings_core::ErrorCode;
                // Passing refusals are retried (a rate limit too: it was reported as
                // `internal`, and retried, before the client knew every code).
                if matches!(
                    code,
                    ErrorCode::StoreUnavailable
                        | ErrorCode::Timeout
                        | ErrorCode::Internal
                        | ErrorCode::RateLimited
                ) {
                    warn!(topic = %key.topic, code = %code, reason = %message, "re-subscribe failed, retrying");
                    self.retry.push(key);
                    let delay = self.backoff.delay(0).max(self.backoff.max / 2);
                    self.retry_at.get_or_insert(Instant::now() + delay);
                } else {
                    warn!(topic = %key.topic, code = %code, reason = %message, "re-subscribe refused; the subscription ends");
                    self.core.routes.lock().subscriptions.remove(&key);
                }
            }
            Err(e) => {
                warn!(topic = %key.topic, error = ?e, "unexpected re-subscribe acknowledgement")
            }
        }
    }

    fn on_event(&mut self, packet: Packet, attachments: Vec<Bytes>) {
        let Some(Value::Array(mut items)) = packet.data else {
            return;
        };
        if items.is_empty() {
            return;
        }
        // The decoder guarantees a string or number name.
        let name = match items.remove(0) {
            Value::String(name) => name,
            other => other.to_string(),
        };
        // A durable delivery: `(data, meta)` with an ack id, binary inside `data` as
        // attachments. It goes to its subscription (or waits for one), never to the plain
        // event listeners.
        if let (Some(id), 2) = (packet.id, items.len()) {
            if let Some(meta) = items.get(1).and_then(DeliveryMeta::from_value) {
                let data = items.into_iter().next().unwrap_or(Value::Null);
                self.core.route_delivery(Unclaimed {
                    event: name,
                    data,
                    attachments,
                    meta,
                    epoch: self.epoch,
                    id,
                });
                return;
            }
        }
        if name == GAP_EVENT {
            if let Some(gap) = items.first().and_then(queue::Gap::from_value) {
                warn!(topic = %gap.topic, from = gap.from, to = gap.to, "retention removed unsettled messages");
            }
        }
        let listeners: Vec<_> = self
            .core
            .routes
            .lock()
            .listeners
            .get(&name)
            .map(|list| list.iter().map(|(_, tx)| tx.clone()).collect())
            .unwrap_or_default();
        if listeners.is_empty() {
            trace!(event = %name, "no listener for event");
            return;
        }
        let event = ServerEvent {
            event: name,
            args: items,
            attachments,
            ack: packet
                .id
                .map(|id| Arc::new(AckHandle::new(self.core.clone(), self.epoch, id))),
        };
        for tx in listeners {
            let _ = tx.send(event.clone());
        }
    }

    /// After a reconnect: subscribes again to every confirmed, live subscription, with topic
    /// and group only, so that the server resumes each where it was.
    async fn resubscribe_all(
        &mut self,
        conn: &mut Connection,
    ) -> Result<(), tokio_websockets::Error> {
        let keys: Vec<SubKey> = self
            .core
            .routes
            .lock()
            .subscriptions
            .iter()
            .filter(|(_, e)| e.confirmed && !e.tx.is_closed())
            .map(|(key, _)| key.clone())
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        for key in keys {
            self.send_resubscribe(conn, key).await?;
        }
        conn.ws.flush().await
    }

    async fn send_resubscribe(
        &mut self,
        conn: &mut Connection,
        key: SubKey,
    ) -> Result<(), tokio_websockets::Error> {
        let live = self
            .core
            .routes
            .lock()
            .subscriptions
            .get(&key)
            .is_some_and(|e| !e.tx.is_closed());
        if !live {
            return Ok(());
        }
        let id = self.core.next_ack_id();
        let payload = queue::subscribe_payload(&key.topic, key.group.as_deref(), None::<StartFrom>);
        let packet = Packet::event(
            &self.core.options.namespace,
            "subscribe",
            vec![payload],
            Some(id),
            0,
        );
        debug!(topic = %key.topic, group = ?key.group, "re-subscribing");
        self.pending.insert(id, Pending::Resubscribe(key));
        conn.ws.feed(to_message(packet.to_frame())).await
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Feeds one queued packet to the WebSocket (without flushing) and registers its ack.
async fn feed(
    conn: &mut Connection,
    pending: &mut HashMap<u64, Pending>,
    epoch: u64,
    command: Outgoing,
) -> Result<(), tokio_websockets::Error> {
    if command.epoch.is_some_and(|e| e != epoch) {
        debug!("acknowledgement for a previous connection dropped");
        return Ok(());
    }
    if let Some(ack) = command.ack {
        // A caller that gave up already still gets its packet sent, but nothing waits.
        if !ack.tx.is_closed() {
            pending.insert(ack.id, Pending::User(ack));
        }
    }
    for frame in command.frames {
        conn.ws.feed(to_message(frame)).await?;
    }
    Ok(())
}
