//! One Engine.IO session: its outbound buffer, its transport state and its lifecycle.
//!
//! The outbound buffer is the single place where every frame for a session waits, whatever the
//! transport. Writers (a polling GET or the WebSocket writer task) drain it in order. It is
//! bounded in bytes: a push that would exceed [`EngineConfig::max_buffered_bytes`] does not skip
//! the frame, it closes the session with [`CloseReason::SlowClient`]. That is the whole
//! slow-consumer policy, and why a broadcast can never silently lose a message: each recipient
//! either has every frame queued in order or is disconnected with a reason.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tidings_core::Sid;
use tidings_proto::engine::Frame;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::EngineConfig;
use super::{EngineShared, SessionHandler};
use tidings_core::clock::millis;

/// Why a session ended. The text forms are the Engine.IO / Socket.IO disconnect reasons that
/// clients and handlers see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed the connection or sent a close packet.
    TransportClose,
    /// The connection failed (I/O error, aborted request, protocol violation by the transport).
    TransportError,
    /// The client did not answer a ping within the ping timeout.
    PingTimeout,
    /// The client sent something that is not a valid packet.
    ParseError,
    /// The client sent a message larger than `max_payload`.
    PayloadTooLarge,
    /// The client read too slowly: its outbound buffer exceeded `max_buffered_bytes`.
    SlowClient,
    /// The client did not connect to any namespace within the connect timeout.
    ConnectTimeout,
    /// The server application closed the session.
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
}

impl CloseReason {
    /// Every reason, in the order of [`CloseReason::index`].
    pub const ALL: [CloseReason; 9] = [
        CloseReason::TransportClose,
        CloseReason::TransportError,
        CloseReason::PingTimeout,
        CloseReason::ParseError,
        CloseReason::PayloadTooLarge,
        CloseReason::SlowClient,
        CloseReason::ConnectTimeout,
        CloseReason::ForcedClose,
        CloseReason::ServerShutdown,
    ];

    /// The position of the reason in [`CloseReason::ALL`] (the per-reason counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason as the clients' libraries name it (`transport close`, `ping timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::PayloadTooLarge => "payload too large",
            CloseReason::SlowClient => "slow client",
            CloseReason::ConnectTimeout => "connect timeout",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is closed (or closing); nothing more is sent on it.
    #[error("session closed")]
    Closed,
    /// The frame would have exceeded the outbound buffer: the session was closed as too slow.
    #[error("client too slow: outbound buffer full, session closed")]
    SlowClient,
}

/// Which transport currently carries the session's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket.
    WebSocket,
}

impl TransportKind {
    /// `polling` or `websocket`, as in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// The Engine.IO protocol revision a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineVersion {
    /// Engine.IO v3 (`socket.io-client` 2.x, with `allow_eio3`): the client pings, polling
    /// payloads are length-prefixed ([`tidings_proto::eio3`]), a binary message starts with
    /// the type byte `4`.
    V3,
    /// Engine.IO v4: the server pings, polling packets are joined by `0x1e`.
    V4,
}

/// What the client sent when it opened the session.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// The request headers of the first request.
    pub headers: http::HeaderMap,
    /// The raw query string of the first request.
    pub query: String,
    /// When the session was opened.
    pub issued: std::time::SystemTime,
}

impl Handshake {
    /// Copies what a session keeps of its first request.
    ///
    /// The header values are copied into allocations of their own: hyper's `HeaderValue`s are
    /// slices of the connection's read buffer, and keeping one alive would keep that whole
    /// buffer (8 KiB) alive for as long as the session lives — half of an idle connection's
    /// memory before this copy.
    pub(crate) fn new(
        remote_addr: SocketAddr,
        headers: &http::HeaderMap,
        query: String,
    ) -> Handshake {
        let mut owned = http::HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            // Both conversions copy; neither can fail on what was a valid name and value.
            let (Ok(name), Ok(mut copy)) = (
                http::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_bytes(value.as_bytes()),
            ) else {
                continue;
            };
            copy.set_sensitive(value.is_sensitive());
            owned.append(name, copy);
        }
        Handshake {
            remote_addr,
            headers: owned,
            query,
            issued: std::time::SystemTime::now(),
        }
    }
}

pub(crate) struct State {
    queue: VecDeque<Frame>,
    queued_bytes: usize,
    pub(crate) transport: TransportKind,
    /// A WebSocket is probing this polling session.
    pub(crate) upgrading: bool,
    /// The probing WebSocket answered `3probe`: polling GETs now get a noop so the client can
    /// pause polling and finish the upgrade.
    pub(crate) probed: bool,
    /// A polling GET is waiting for frames.
    pub(crate) get_pending: bool,
    /// A polling POST is being processed.
    pub(crate) post_pending: bool,
    /// A WebSocket ping's data, for the writer to answer with a pong.
    pub(crate) ws_pong: Option<bytes::Bytes>,
    /// The WebSocket close code a framing error calls for (RFC 6455: 1007 for text that is
    /// not UTF-8), when it is not the one the close reason maps to.
    pub(crate) ws_close_code: Option<tidings_proto::ws::CloseCode>,
    /// Set once, when the session starts closing.
    close_reason: Option<CloseReason>,
    /// Packets and their payload bytes taken by a writer, counted under this lock (which
    /// `take_frames` holds anyway): no shared counter is written per batch.
    pub(crate) sent: Traffic,
}

/// Packets and payload bytes one way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Engine.IO packets.
    pub packets: u64,
    /// Their payload bytes.
    pub bytes: u64,
}

impl Traffic {
    pub(crate) fn add(&mut self, o: Traffic) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

/// What one session received: written only by the tasks reading that session (its cache line,
/// not a counter every session shares), read when metrics are collected.
#[derive(Debug, Default)]
pub(crate) struct Received {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl Received {
    pub(crate) fn count(&self, bytes: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> Traffic {
        Traffic {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// One session's heartbeat state, read by the engine's sweeper when one of the session's
/// deadlines comes due (one task for all sessions: a task and two timers per session cost
/// ~1 KiB and a wake-up per timer).
///
/// Times are milliseconds since the engine's start ([`EngineShared::now_ms`]).
#[derive(Debug)]
pub(crate) struct Heartbeat {
    /// When the next ping is due, while no pong is awaited.
    next_ping: AtomicU64,
    /// When an awaited pong is late; 0 while none is awaited.
    pong_deadline: AtomicU64,
}

/// What the sweeper has to do for a session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatDue {
    Nothing,
    Ping,
    Timeout,
}

impl Heartbeat {
    fn new(first_ping: u64) -> Heartbeat {
        Heartbeat {
            next_ping: AtomicU64::new(first_ping),
            pong_deadline: AtomicU64::new(0),
        }
    }

    pub(crate) fn due(&self, now: u64) -> HeartbeatDue {
        match self.pong_deadline.load(Ordering::Acquire) {
            0 if now >= self.next_ping.load(Ordering::Acquire) => HeartbeatDue::Ping,
            0 => HeartbeatDue::Nothing,
            deadline if now >= deadline => HeartbeatDue::Timeout,
            _ => HeartbeatDue::Nothing,
        }
    }

    /// A ping is about to be sent: a pong is awaited until `deadline` (at least 1 ms, since 0
    /// means none is awaited).
    pub(crate) fn ping_sent(&self, deadline: u64) {
        self.pong_deadline.store(deadline.max(1), Ordering::Release);
    }

    /// A pong arrived at `now`: returns when the next ping is due. A pong that came without
    /// a ping is ignored (None), so it cannot answer the next one.
    pub(crate) fn pong_received(&self, now: u64, interval: u64) -> Option<u64> {
        if self.pong_deadline.swap(0, Ordering::AcqRel) == 0 {
            return None;
        }
        let next = now.saturating_add(interval);
        self.next_ping.store(next, Ordering::Release);
        Some(next)
    }

    /// When the next ping is (or was) due.
    pub(crate) fn next_ping(&self) -> u64 {
        self.next_ping.load(Ordering::Acquire)
    }
}

/// An Engine.IO session. Cheap to share (`Arc`); every method is safe to call from any task.
pub struct Session {
    sid: Sid,
    version: EngineVersion,
    handshake: Arc<Handshake>,
    pub(crate) state: Mutex<State>,
    /// Wakes whichever writer waits for frames or for a state change.
    pub(crate) wake: Notify,
    /// When the next ping is due and whether a pong is awaited (driven by the engine's
    /// heartbeat sweeper).
    pub(crate) heartbeat: Heartbeat,
    /// Cancelled when the session closes; every task of the session selects on it.
    pub(crate) closed: CancellationToken,
    /// The Socket.IO layer of this session, taken out when the session closes: the handler
    /// holds the session too, and the cycle must not outlive the connection (it kept every
    /// closed connection's session, client and sockets alive before).
    handler: parking_lot::Mutex<Option<Arc<dyn SessionHandler>>>,
    pub(crate) shared: Arc<EngineShared>,
    /// Packets received (see [`Received`]).
    pub(crate) received: Received,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        transport: TransportKind,
        handshake: Handshake,
        shared: Arc<EngineShared>,
        version: EngineVersion,
    ) -> Arc<Session> {
        Arc::new(Session {
            sid: Sid::new(),
            version,
            handshake: Arc::new(handshake),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_bytes: 0,
                transport,
                upgrading: false,
                probed: false,
                get_pending: false,
                post_pending: false,
                ws_pong: None,
                ws_close_code: None,
                close_reason: None,
                sent: Traffic::default(),
            }),
            received: Received::default(),
            wake: Notify::new(),
            heartbeat: Heartbeat::new(shared.now_ms() + millis(shared.config.ping_interval)),
            closed: CancellationToken::new(),
            handler: parking_lot::Mutex::new(None),
            shared,
        })
    }

    /// The session id (the Engine.IO `sid`).
    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The Engine.IO protocol revision the client speaks.
    pub fn version(&self) -> EngineVersion {
        self.version
    }

    /// What the client sent when it opened the session.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The handshake, shared (the Socket.IO client and its sockets keep it without a copy).
    pub(crate) fn shared_handshake(&self) -> Arc<Handshake> {
        self.handshake.clone()
    }

    /// The transport that currently carries the session.
    pub fn transport(&self) -> TransportKind {
        self.state.lock().transport
    }

    /// Whether the session has closed (or started closing).
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub(crate) fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Queues one frame.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all(std::slice::from_ref(&frame))
    }

    /// Queues several frames atomically and in order: no other frame can come between them.
    /// A Socket.IO binary packet relies on this (its attachments must follow its header).
    pub fn send_all(&self, frames: &[Frame]) -> Result<(), SendError> {
        let size: usize = frames.iter().map(Frame::len).sum();
        {
            let mut state = self.state.lock();
            if state.close_reason.is_some() {
                return Err(SendError::Closed);
            }
            if state.queued_bytes + size > self.shared.config.max_buffered_bytes {
                drop(state);
                self.shared
                    .stats
                    .slow_client_disconnects
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    sid = %self.sid,
                    limit = self.shared.config.max_buffered_bytes,
                    "client too slow: outbound buffer full, disconnecting"
                );
                self.close(CloseReason::SlowClient);
                return Err(SendError::SlowClient);
            }
            state.queue.extend(frames.iter().cloned());
            state.queued_bytes += size;
        }
        self.wake.notify_waiters();
        Ok(())
    }

    /// Takes up to `max` frames from the front of the buffer (all of them when `max` is None),
    /// counting them as sent.
    pub(crate) fn take_frames(state: &mut State, max: Option<usize>, out: &mut Vec<Frame>) {
        let n = max.map_or(state.queue.len(), |m| m.min(state.queue.len()));
        if n == 0 {
            return;
        }
        let mut bytes = 0;
        for frame in state.queue.drain(..n) {
            bytes += frame.len();
            out.push(frame);
        }
        state.queued_bytes -= bytes;
        state.sent.add(Traffic {
            packets: n as u64,
            bytes: bytes as u64,
        });
    }

    pub(crate) fn has_frames(state: &State) -> bool {
        !state.queue.is_empty()
    }

    pub(crate) fn close_reason(state: &State) -> Option<CloseReason> {
        state.close_reason
    }

    /// Closes the session. Frames already queued are still written (the WebSocket writer and a
    /// pending polling GET drain them before the close); nothing queued after this is accepted.
    /// The session handler's `on_close` runs exactly once, whoever calls this first.
    pub fn close(&self, reason: CloseReason) {
        {
            let mut state = self.state.lock();
            if state.close_reason.is_some() {
                return;
            }
            state.close_reason = Some(reason);
        }
        self.shared.stats.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(sid = %self.sid, reason = %reason, "session closed");
        self.closed.cancel();
        self.wake.notify_waiters();
        self.shared.remove(self.sid);
        let handler = self.handler.lock().take();
        if let Some(handler) = handler {
            handler.on_close(reason);
        }
    }

    /// Sets the session's handler (once, when it opens). A session closed meanwhile drops it:
    /// either `close` takes it, or the check after setting it does.
    pub(crate) fn set_handler(&self, handler: Arc<dyn SessionHandler>) {
        *self.handler.lock() = Some(handler);
        if self.is_closed() {
            self.handler.lock().take();
        }
    }

    /// The session's handler, until the session closes.
    pub(crate) fn handler(&self) -> Option<Arc<dyn SessionHandler>> {
        self.handler.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_reason_has_its_own_counter() {
        for (i, reason) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
        let names: std::collections::HashSet<_> =
            CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), CloseReason::ALL.len());
    }
}
