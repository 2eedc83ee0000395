//! The Engine.IO v4 transport: HTTP long-polling, WebSocket, the upgrade between them and the
//! heartbeat, behind one seam ([`EngineHandler`] / [`SessionHandler`]).
//!
//! Above this module nothing knows which transport carries a session: the Socket.IO layer sees
//! text and binary messages in and queues [`Frame`]s out. The conformance example plugs a plain
//! echo handler into the same seam to run the official Engine.IO suite.

pub mod body;
mod config;
mod http;
mod polling;
mod session;
mod websocket;
mod ws_io;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tidings_core::Sid;
use tidings_proto::engine::{Frame, PacketType};

pub use self::config::{CorsConfig, CorsOrigins, EngineConfig};
pub use self::http::Body;
use session::HeartbeatDue;
pub use session::{
    CloseReason, EngineVersion, Handshake, SendError, Session, Traffic, TransportKind,
};
use tidings_core::clock::millis;

/// Whatever the layer above attached to a request that must live as long as its connection
/// (a connection-limit permit): a WebSocket takes it along when its connection leaves hyper,
/// and drops it when the connection ends. Insert it into the request's extensions.
#[derive(Clone)]
pub struct ConnectionGuard(pub Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionGuard")
    }
}

/// The guard a request carries, for a WebSocket to hold once its connection has left hyper.
pub(crate) fn take_guard<B>(req: &mut hyper::Request<B>) -> Option<ConnectionGuard> {
    req.extensions_mut().remove::<ConnectionGuard>()
}

/// A message received from a client, in order.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// A text message (the Engine.IO `4` packet's data).
    Text(&'a str),
    /// A binary message.
    Binary(Bytes),
}

/// Creates the per-session handler of each new session: the seam between the transport and
/// what runs on top of it (the Socket.IO layer, or the conformance example's echo).
pub trait EngineHandler: Send + Sync + 'static {
    /// A session opened. Called before any message of it is delivered.
    fn on_open(&self, session: &Arc<Session>) -> Arc<dyn SessionHandler>;
}

/// Receives one session's messages, in the order the client sent them.
pub trait SessionHandler: Send + Sync + 'static {
    /// A message arrived. Runs on the transport's task: keep it short (spawn long work).
    fn on_message(&self, message: Inbound<'_>);
    /// The session closed. Called exactly once.
    fn on_close(&self, reason: CloseReason);
}

/// Counters of the transport, for logs, the CLI and tests.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Sessions opened since start.
    pub sessions_opened: AtomicU64,
    /// Sessions closed because the client read too slowly (outbound buffer full).
    pub slow_client_disconnects: AtomicU64,
    /// Sessions closed because the client sent something malformed or oversized.
    pub protocol_errors: AtomicU64,
    /// Requests whose body did not arrive within [`EngineConfig::body_timeout`] (polling
    /// POSTs and HTTP API calls).
    pub slow_requests: AtomicU64,
    /// Sessions closed, by reason: indexed by [`CloseReason::index`].
    pub closed: [AtomicU64; CloseReason::ALL.len()],
}

/// The transport's traffic and sessions at one moment ([`Engine::traffic`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficSnapshot {
    /// Engine.IO packets received (every type, text and binary) and their payload bytes.
    pub received: Traffic,
    /// Engine.IO packets handed to a transport to send and their payload bytes.
    pub sent: Traffic,
    /// Open sessions on long-polling.
    pub sessions_polling: usize,
    /// Open sessions on WebSocket.
    pub sessions_websocket: usize,
}

pub(crate) struct EngineShared {
    pub(crate) config: EngineConfig,
    sessions: Mutex<HashMap<Sid, Arc<Session>>>,
    handler: Arc<dyn EngineHandler>,
    pub(crate) stats: EngineStats,
    /// The origin of the heartbeat's millisecond clock.
    epoch: tokio::time::Instant,
    /// Whether the heartbeat sweeper runs (it starts with the first session).
    sweeper_started: AtomicBool,
    /// The heartbeat deadlines (ping due, pong late) of every session, earliest first. An
    /// entry that no longer matches its session's state when it comes due is skipped.
    deadlines: Mutex<BinaryHeap<Reverse<(u64, Sid)>>>,
    /// Until when the sweeper sleeps; a deadline pushed before it wakes the sweeper.
    sweeper_until: AtomicU64,
    sweeper_wake: Arc<tokio::sync::Notify>,
    /// Browser origins whose CORS request was refused, each logged once.
    pub(crate) refused_origins: http::RefusedOrigins,
    /// What the closed sessions received and sent (see [`EngineShared::remove`]).
    closed_traffic: Mutex<(Traffic, Traffic)>,
    /// An Engine.IO v3 client was refused (logged once, with the option that accepts them).
    pub(crate) refused_eio3: AtomicBool,
}

impl EngineShared {
    /// Removes a closed session, folding its traffic into the totals of closed sessions under
    /// the map's lock, so that [`Engine::traffic`] (which sums under the same lock) counts it
    /// exactly once and its counters never go back.
    pub(crate) fn remove(&self, sid: Sid) {
        let mut sessions = self.sessions.lock();
        if let Some(session) = sessions.remove(&sid) {
            let sent = session.state.lock().sent;
            let mut closed = self.closed_traffic.lock();
            closed.0.add(session.received.read());
            closed.1.add(sent);
        }
    }

    fn get(&self, sid: Sid) -> Option<Arc<Session>> {
        self.sessions.lock().get(&sid).cloned()
    }

    /// Milliseconds since the engine started: the heartbeat's clock (tokio's, so a test with
    /// a paused clock controls it).
    pub(crate) fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    /// Schedules a heartbeat check of `sid` at `deadline` (milliseconds of [`Self::now_ms`]).
    pub(crate) fn schedule_heartbeat(&self, deadline: u64, sid: Sid) {
        self.deadlines.lock().push(Reverse((deadline, sid)));
        if deadline < self.sweeper_until.load(Ordering::Acquire) {
            self.sweeper_wake.notify_one();
        }
    }

    /// Engine.IO v3: the client's next ping is due within ping interval + ping timeout.
    pub(crate) fn await_client_ping(&self, session: &Session) {
        let deadline = self.now_ms().saturating_add(
            millis(self.config.ping_interval).saturating_add(millis(self.config.ping_timeout)),
        );
        session.heartbeat.ping_sent(deadline);
        self.schedule_heartbeat(deadline, session.sid());
    }

    pub(crate) fn count_slow_request(&self) {
        self.stats.slow_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_protocol_error(&self) {
        self.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// The Engine.IO server: owns the sessions and answers the HTTP requests under the configured
/// path. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<EngineShared>,
}

// Handles print a summary, not their internals (as `Server`, `Session` and `Queues` do).
impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sessions", &self.session_count())
            .finish()
    }
}

impl Engine {
    /// A new engine that hands each session to `handler`.
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Engine {
        Engine {
            shared: Arc::new(EngineShared {
                config,
                sessions: Mutex::new(HashMap::new()),
                handler,
                stats: EngineStats::default(),
                epoch: tokio::time::Instant::now(),
                sweeper_started: AtomicBool::new(false),
                deadlines: Mutex::new(BinaryHeap::new()),
                sweeper_until: AtomicU64::new(u64::MAX),
                sweeper_wake: Arc::new(tokio::sync::Notify::new()),
                refused_origins: http::RefusedOrigins::default(),
                closed_traffic: Mutex::new((Traffic::default(), Traffic::default())),
                refused_eio3: AtomicBool::new(false),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.shared.sessions.lock().len()
    }

    /// Traffic since start and open sessions by transport. Walks every session under the
    /// session map's lock (for a metrics scrape, not for a hot path): each session counts its
    /// own traffic, so that no counter shared by all sessions is written per packet.
    pub fn traffic(&self) -> TrafficSnapshot {
        let sessions = self.shared.sessions.lock();
        let (received, sent) = *self.shared.closed_traffic.lock();
        let mut t = TrafficSnapshot {
            received,
            sent,
            ..TrafficSnapshot::default()
        };
        for session in sessions.values() {
            t.received.add(session.received.read());
            let state = session.state.lock();
            t.sent.add(state.sent);
            match state.transport {
                TransportKind::Polling => t.sessions_polling += 1,
                TransportKind::WebSocket => t.sessions_websocket += 1,
            }
        }
        t
    }

    /// The transport counters.
    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }

    /// Closes every session with `reason` (used on shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        let sessions: Vec<_> = self.shared.sessions.lock().values().cloned().collect();
        for session in sessions {
            session.close(reason);
        }
    }

    /// Whether `path` is the engine's endpoint.
    pub fn matches_path(&self, path: &str) -> bool {
        let configured = self.shared.config.path.as_str();
        path == configured || path == configured.trim_end_matches('/')
    }

    /// Answers one HTTP request addressed to the engine's path.
    pub async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        remote_addr: SocketAddr,
    ) -> hyper::Response<Body> {
        http::handle(self, req, remote_addr).await
    }

    /// Creates a session, registers it, hands it to the handler and starts its heartbeat.
    /// The open packet is queued as the session's first frame.
    fn open_session(
        &self,
        transport: TransportKind,
        handshake: Handshake,
        version: EngineVersion,
    ) -> Arc<Session> {
        let session = Session::new(transport, handshake, self.shared.clone(), version);
        self.shared
            .sessions
            .lock()
            .insert(session.sid(), session.clone());
        self.shared
            .stats
            .sessions_opened
            .fetch_add(1, Ordering::Relaxed);

        let config = &self.shared.config;
        let upgrades: &[&str] = if transport == TransportKind::Polling && config.allow_websocket {
            &["websocket"]
        } else {
            &[]
        };
        let open = serde_json::json!({
            "sid": session.sid().to_string(),
            "upgrades": upgrades,
            "pingInterval": millis(config.ping_interval),
            "pingTimeout": millis(config.ping_timeout),
            "maxPayload": config.max_payload,
        });
        // A fresh session has an empty buffer, far below any valid max_buffered_bytes.
        let _ = session.send(Frame::text(PacketType::Open, &open.to_string()));

        let handler = self.shared.handler.on_open(&session);
        session.set_handler(handler);
        tracing::debug!(sid = %session.sid(), transport = transport.as_str(), "session opened");
        if !self.shared.sweeper_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(heartbeat_sweeper(Arc::downgrade(&self.shared)));
        }
        match version {
            EngineVersion::V4 => self
                .shared
                .schedule_heartbeat(session.heartbeat.next_ping(), session.sid()),
            // In v3 the client pings: the session waits for a ping, at most interval +
            // timeout, from now and after each one (as Node's engine.io does for v3).
            EngineVersion::V3 => self.shared.await_client_ping(&session),
        }
        session
    }

    fn session(&self, sid: Sid) -> Option<Arc<Session>> {
        self.shared.get(sid)
    }
}

/// Pings every session `ping_interval` after its handshake or its last pong, and closes a
/// session whose pong does not come within `ping_timeout` of the ping: an unresponsive client
/// is gone `ping_interval + ping_timeout` after the handshake (the official Engine.IO suite
/// checks this to the millisecond).
///
/// One task and one timer for all the engine's sessions, over a heap of their deadlines: a
/// task with two timers per session cost about 1 KiB of memory per idle connection and two
/// timer wake-ups per round trip. Ends with the engine (at its next deadline, or at once if
/// none is pending — the sweeper holds only a weak reference).
async fn heartbeat_sweeper(weak: Weak<EngineShared>) {
    /// How long the sweeper sleeps when no deadline is pending, before it checks again.
    const IDLE: Duration = Duration::from_secs(1);
    let Some(wake) = weak.upgrade().map(|shared| shared.sweeper_wake.clone()) else {
        return;
    };
    let mut due = Vec::new();
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let now = shared.now_ms();
        let next = {
            let mut deadlines = shared.deadlines.lock();
            while let Some(Reverse((deadline, sid))) = deadlines.peek().copied() {
                if deadline > now {
                    break;
                }
                deadlines.pop();
                due.push(sid);
            }
            let next = deadlines.peek().map_or(u64::MAX, |Reverse((d, _))| *d);
            shared.sweeper_until.store(next, Ordering::Release);
            next
        };
        let timeout = millis(shared.config.ping_timeout);
        for sid in due.drain(..) {
            let Some(session) = shared.get(sid) else {
                continue;
            };
            match session.heartbeat.due(now) {
                HeartbeatDue::Nothing => {}
                HeartbeatDue::Timeout => {
                    tracing::debug!(sid = %sid, "ping timeout");
                    session.close(CloseReason::PingTimeout);
                }
                HeartbeatDue::Ping => {
                    // The pong is due `ping_timeout` after the ping was due, not after this
                    // (possibly late) wake-up. Awaited before the ping is sent, so that a fast
                    // pong is not missed. A session whose buffer is full is closed by `send`.
                    let deadline = session.heartbeat.next_ping().saturating_add(timeout);
                    session.heartbeat.ping_sent(deadline);
                    shared.schedule_heartbeat(deadline, sid);
                    let _ = session.send(Frame::from_static("2"));
                }
            }
        }
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let sleep = if next == u64::MAX {
            IDLE
        } else {
            Duration::from_millis(next.saturating_sub(shared.now_ms()))
        };
        // Not held while sleeping, so that the engine can be dropped.
        drop(shared);
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Dispatches one decoded text packet that arrived on the session's main transport.
/// Returns false when the packet ended the session.
pub(crate) fn on_text_packet(
    session: &Arc<Session>,
    packet: tidings_proto::engine::TextPacket<'_>,
) -> bool {
    use tidings_proto::engine::TextPacket;
    let payload = match packet {
        TextPacket::Message(text) => text.len(),
        _ => 0,
    };
    session.received.count(payload);
    match packet {
        TextPacket::Message(text) => {
            if let Some(handler) = session.handler() {
                handler.on_message(Inbound::Text(text));
            }
            !session.is_closed()
        }
        // v3: the client pings, the server answers and waits for the next one.
        TextPacket::Ping(data) if session.version() == EngineVersion::V3 => {
            session.shared.await_client_ping(session);
            let _ = session.send(Frame::text(PacketType::Pong, data));
            true
        }
        TextPacket::Pong(_) if session.version() == EngineVersion::V3 => true,
        TextPacket::Pong(_) => {
            let shared = &session.shared;
            if let Some(next_ping) = session
                .heartbeat
                .pong_received(shared.now_ms(), millis(shared.config.ping_interval))
            {
                shared.schedule_heartbeat(next_ping, session.sid());
            }
            true
        }
        TextPacket::Close => {
            session.close(CloseReason::TransportClose);
            false
        }
        // In v4 the server pings; a ping from the client on the main transport is a protocol
        // error. So is an open packet, or an upgrade outside of the upgrade handshake.
        TextPacket::Ping(_) | TextPacket::Open(_) | TextPacket::Upgrade => {
            session.shared.count_protocol_error();
            tracing::debug!(sid = %session.sid(), "unexpected engine packet, closing");
            session.close(CloseReason::ParseError);
            false
        }
        TextPacket::Noop => true,
        // The packet enum is non-exhaustive upstream: anything new is not ours to accept.
        #[allow(unreachable_patterns)]
        _ => {
            session.close(CloseReason::ParseError);
            false
        }
    }
}

/// Dispatches one binary message.
pub(crate) fn on_binary(session: &Arc<Session>, data: Bytes) -> bool {
    session.received.count(data.len());
    if let Some(handler) = session.handler() {
        handler.on_message(Inbound::Binary(data));
    }
    !session.is_closed()
}

/// Writes `answer` and closes the connection (bounded: 1 s).
pub(crate) async fn answer_and_close<S>(mut stream: S, answer: Vec<u8>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Read what the client sent until it closes, so that closing with unread input does not
    // reset the connection before the answer arrives.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
