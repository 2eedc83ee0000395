//! Connection State Recovery (socket.io's `connectionStateRecovery`), wire-compatible with
//! `socket.io-client`, on the [`SessionLog`] seam of `tidings-core`.
//!
//! When [`crate::ServerConfig::recovery`] is set:
//!
//! - the CONNECT reply carries a private session id: `40{"sid":"…","pid":"…"}`;
//! - every EVENT the server emits without an ack id (broadcasts and direct emits) gets an
//!   offset (a decimal string) as its last argument, and is appended to the log once, with
//!   the rooms it was addressed to;
//! - a live socket is written to the log when its CONNECT is answered and again when its rooms
//!   change ([`SessionLog::persist_live`], batched by the log: a connect never waits for it), so
//!   a crash of the process or the death of a node does not lose it; a socket that ends for
//!   good (the client or the server disconnected it) is forgotten;
//! - a socket that loses its connection (transport close or error, ping timeout, forced close,
//!   server shutdown) is persisted: sid, rooms, and the last offset queued to it;
//! - a CONNECT with `{"pid","offset"}` takes that record, replays the packets of its rooms
//!   after the offset **before** the CONNECT reply, and keeps the sid and the rooms:
//!   [`crate::Socket::is_recovered`] is true, and so is `socket.recovered` on the client.
//!
//! Beyond the reference implementation: the log is a backend (in memory here,
//! `tidings-store-sqlite` across restarts, Redis across nodes); a client that received no
//! event, or none within the window, still recovers (the server kept the session's position);
//! a reconnect while the old connection still looks alive evicts the old socket instead of
//! failing; and sessions survive `kill -9`, a power loss (the SQLite log's last second aside)
//! and a node's death (Redis). Every attempt's outcome is counted (recovered, expired, unknown, in
//! `ServerStats`) and logged at `debug`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use tidings_core::Room;
use tidings_core::clock::millis;
use tidings_core::session_log::{
    LogFuture, LoggedPacket, Offset, OffsetClock, Replay, SessionLog, SessionRecord, now_millis,
};
use tidings_core::store::Millis;
use tidings_proto::engine::Frame;
use tidings_proto::msgpack;
use tidings_proto::parser::Parser;

use crate::cluster::ClusterLink;
use crate::config::RecoveryConfig;
use crate::engine::CloseReason;
use crate::io::{DisconnectReason, EmitError, Socket, event_frames, is_reserved_event};
use crate::metrics::Counter;

/// How long a recovering client waits for another node to release its old socket.
const REMOTE_RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The [`SessionLog`] kept in the server's memory: lost when the process stops. The default
/// when recovery is enabled with [`crate::Server::new`].
#[derive(Debug)]
pub struct MemorySessionLog {
    clock: OffsetClock,
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    packets: VecDeque<LoggedPacket>,
    sessions: HashMap<String, SessionRecord>,
    trimmed_through: Offset,
}

impl Default for MemorySessionLog {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySessionLog {
    /// An empty log.
    pub fn new() -> Self {
        MemorySessionLog {
            clock: OffsetClock::new(0),
            state: Mutex::new(MemoryState::default()),
        }
    }
}

impl SessionLog for MemorySessionLog {
    fn next_offset(&self) -> Offset {
        self.clock.next()
    }

    fn head(&self) -> Offset {
        self.clock.head()
    }

    fn append(&self, packet: LoggedPacket) {
        let mut state = self.state.lock();
        // Offsets are drawn before the append, so two threads may append out of order; keep
        // the deque sorted (almost always a push at the back).
        let at = state
            .packets
            .iter()
            .rposition(|p| p.offset < packet.offset)
            .map_or(0, |i| i + 1);
        state.packets.insert(at, packet);
    }

    fn persist_session(&self, session: SessionRecord) {
        self.state
            .lock()
            .sessions
            .insert(session.pid.clone(), session);
    }

    // Live records are not kept: they would die with the process anyway.

    fn forget_session(&self, pid: &str) {
        self.state.lock().sessions.remove(pid);
    }

    fn take_session<'a>(&'a self, pid: &'a str) -> LogFuture<'a, Option<SessionRecord>> {
        let taken = self.state.lock().sessions.remove(pid);
        Box::pin(async move { Ok(taken) })
    }

    fn since<'a>(
        &'a self,
        namespace: &'a str,
        after: Offset,
        rooms: &'a [Room],
    ) -> LogFuture<'a, Replay> {
        let state = self.state.lock();
        let start = state.packets.partition_point(|p| p.offset <= after);
        let packets = state
            .packets
            .range(start..)
            .filter(|p| p.namespace == namespace && p.is_for(rooms))
            .cloned()
            .collect();
        let replay = Replay {
            packets,
            complete: state.trimmed_through <= after,
        };
        Box::pin(async move { Ok(replay) })
    }

    fn trim(&self, older_than: Millis) -> LogFuture<'_, ()> {
        let mut state = self.state.lock();
        while state
            .packets
            .front()
            .is_some_and(|p| p.emitted_at < older_than)
        {
            if let Some(p) = state.packets.pop_front() {
                state.trimmed_through = state.trimmed_through.max(p.offset);
            }
        }
        state
            .sessions
            .retain(|_, s| s.disconnected_at >= older_than);
        Box::pin(async { Ok(()) })
    }

    fn flush(&self) -> LogFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// What a reconnecting client claimed in its CONNECT payload.
#[derive(Debug)]
pub(crate) struct Claim {
    pid: String,
    /// `None`: no offset (the client received no event with one); `Some(None)`: something
    /// that is not one of our offsets.
    offset: Option<Option<Offset>>,
}

/// A session that will be recovered: the record and the packets to replay.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) record: SessionRecord,
    pub(crate) start: Offset,
    pub(crate) replay: Vec<LoggedPacket>,
}

/// The recovery state of a server: the log, the settings and the live sockets by pid (for
/// zombie eviction).
pub(crate) struct Recovery {
    pub(crate) log: Arc<dyn SessionLog>,
    pub(crate) config: RecoveryConfig,
    /// The server's packet encoding: packets are logged as they were sent.
    parser: Parser,
    live: Mutex<HashMap<Arc<str>, Socket>>,
    /// The outcomes of recovery attempts (CONNECTs with a pid), in `ServerStats`.
    pub(crate) outcomes: Outcomes,
}

/// What became of the CONNECTs that claimed a session (a `pid`), counted since start.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    /// Recovered: same sid, rooms, missed packets.
    pub(crate) recovered: Counter,
    /// The session was found but is too old: disconnected longer than the window ago, or
    /// packets it may have missed are already trimmed.
    pub(crate) expired: Counter,
    /// No such session (never known, already recovered, trimmed, lost in a crash before it
    /// was written, another namespace) or the log did not answer.
    pub(crate) unknown: Counter,
}

/// How a claim ended (see [`Outcomes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Recovered,
    Expired,
    Unknown,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a socket that left for `reason` may be recovered (socket.io's
/// `RECOVERABLE_DISCONNECT_REASONS`).
pub(crate) fn is_recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::Transport(
            CloseReason::TransportClose
                | CloseReason::TransportError
                | CloseReason::PingTimeout
                | CloseReason::ForcedClose
                | CloseReason::ServerShutdown
        )
    )
}

impl Recovery {
    pub(crate) fn new(
        log: Arc<dyn SessionLog>,
        config: RecoveryConfig,
        parser: Parser,
    ) -> Recovery {
        Recovery {
            log,
            config,
            parser,
            live: Mutex::new(HashMap::new()),
            outcomes: Outcomes::default(),
        }
    }

    /// Takes `pid` and `offset` out of a CONNECT auth payload. They are the protocol's, not
    /// the application's: handlers and middlewares never see them.
    pub(crate) fn claim(auth: &mut Value) -> Option<Claim> {
        let map = auth.as_object_mut()?;
        let pid = map.shift_remove("pid");
        let offset = map.shift_remove("offset");
        let pid = match pid? {
            Value::String(pid) if !pid.is_empty() && pid.len() <= 64 => pid,
            _ => return None,
        };
        let offset = offset.map(|o| o.as_str().and_then(|s| s.parse::<Offset>().ok()));
        Some(Claim { pid, offset })
    }

    pub(crate) fn register_live(&self, pid: Arc<str>, socket: &Socket) {
        self.live.lock().insert(pid, socket.clone());
    }

    /// Forgets a live socket, unless its pid already belongs to a newer one.
    pub(crate) fn unregister_live(&self, pid: &str, socket: &Socket) {
        let mut live = self.live.lock();
        if live.get(pid).is_some_and(|s| s.id() == socket.id()) {
            live.remove(pid);
        }
    }

    /// Closes the live socket of `pid`, if it is here, and writes its session to the log for
    /// the node its client reconnected to. True if it was here.
    pub(crate) async fn release_live(&self, pid: &str) -> bool {
        let Some(old) = self.live.lock().remove(pid) else {
            // Not live: if it closed a moment ago, its record is queued; make sure it is in
            // the log before the asking node looks again.
            if let Err(e) = self.log.flush().await {
                tracing::warn!(error = %e, "recovery log unavailable");
            }
            return false;
        };
        tracing::debug!(sid = %old.id(), "releasing a socket whose client recovered on another node");
        let Some(record) = old.evict_for_recovery() else {
            return false;
        };
        self.log.persist_session(record);
        if let Err(e) = self.log.flush().await {
            tracing::warn!(error = %e, "recovery log unavailable: the released session is lost");
            return false;
        }
        true
    }

    /// Finds the session of `claim` in namespace `ns` and what to replay, or `None`: then the
    /// client gets a new session. `cluster`: where to look when the session is neither live
    /// here nor in the log (its socket may still be connected to another node).
    pub(crate) async fn restore(
        &self,
        ns: &str,
        claim: Claim,
        cluster: &ClusterLink,
    ) -> Option<Restored> {
        let (outcome, restored) = self.find(ns, claim, cluster).await;
        let counter = match outcome {
            Outcome::Recovered => &self.outcomes.recovered,
            Outcome::Expired => &self.outcomes.expired,
            Outcome::Unknown => &self.outcomes.unknown,
        };
        let (total, _) = counter.incr();
        match &restored {
            Some(r) => {
                tracing::debug!(sid = %r.record.sid, ns, outcome = "recovered", total, "recovery attempt")
            }
            None => {
                tracing::debug!(ns, outcome = ?outcome, total, "recovery attempt failed, new session")
            }
        }
        restored
    }

    async fn find(
        &self,
        ns: &str,
        claim: Claim,
        cluster: &ClusterLink,
    ) -> (Outcome, Option<Restored>) {
        // A socket with this pid still connected: its connection is a zombie (the client
        // would not reconnect if it were alive). Evict it and take over its state.
        let live = self.live.lock().remove(claim.pid.as_str());
        let record = match live {
            Some(old) if old.namespace().name() == ns => {
                tracing::debug!(sid = %old.id(), ns, "evicting the old connection of a recovering socket");
                old.evict_for_recovery()
            }
            Some(old) => {
                // Another namespace cannot hold this pid; leave it alone.
                self.live.lock().insert(claim.pid.clone().into(), old);
                None
            }
            None => match self.log.take_session(&claim.pid).await {
                Ok(None) if cluster.get().is_some() => {
                    // Either a node still holds the socket and now wrote its session, or
                    // the socket closed while we asked: every node flushed before answering.
                    let released = cluster
                        .release_remote_session(&claim.pid, REMOTE_RELEASE_TIMEOUT)
                        .await;
                    if released {
                        self.log.take_session(&claim.pid).await.ok().flatten()
                    } else {
                        // Nobody holds it: a dead node's live session, taken once that node
                        // is known to be dead (a bounded wait, the log's).
                        self.log
                            .take_session_after_release(&claim.pid)
                            .await
                            .ok()
                            .flatten()
                    }
                }
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(ns, error = %e, "recovery log unavailable, new session");
                    None
                }
            },
        };
        let Some(record) = record else {
            return (Outcome::Unknown, None);
        };
        if record.namespace != ns {
            return (Outcome::Unknown, None);
        }
        let window = millis(self.config.max_disconnection_duration);
        if now_millis().saturating_sub(record.disconnected_at) > window {
            tracing::debug!(sid = %record.sid, ns, "session expired, new session");
            return (Outcome::Expired, None);
        }
        let start = match claim.offset {
            // No event with an offset reached the client: everything since the session began.
            None => record.base_offset,
            // One of ours, from this session: exactly what the client saw.
            Some(Some(o)) if o >= record.base_offset && o <= record.last_offset => o,
            // Not one of our offsets (an application string in last position, or one from an
            // older session): trust what the server queued.
            Some(_) => record.last_offset.max(record.base_offset),
        };
        let replay = match self.log.since(ns, start, &record.rooms).await {
            Ok(replay) => replay,
            Err(e) => {
                tracing::warn!(ns, error = %e, "recovery log unavailable, new session");
                return (Outcome::Unknown, None);
            }
        };
        // Packets after `start` were trimmed. They matter only if some were queued to this
        // socket: anything emitted after it disconnected is younger than the window.
        if !replay.complete && record.last_offset > start {
            tracing::debug!(sid = %record.sid, ns, "missed packets already trimmed, new session");
            return (Outcome::Expired, None);
        }
        let restored = Restored {
            record,
            start,
            replay: replay.packets,
        };
        (Outcome::Recovered, Some(restored))
    }

    /// Encodes a recoverable event with a new offset as its last argument and appends it to
    /// the log (once, whatever the number of recipients).
    pub(crate) fn log_event(
        &self,
        namespace: &str,
        event: &str,
        mut args: Vec<Value>,
        attachments: &[Bytes],
        rooms: &[Room],
        except: Vec<Room>,
    ) -> Result<(Vec<Frame>, Offset), EmitError> {
        if is_reserved_event(event) {
            return Err(EmitError::ReservedName(event.to_owned()));
        }
        let offset = self.log.next_offset();
        args.push(Value::String(offset.to_string()));
        let frames = event_frames(self.parser, namespace, event, args, attachments, None)?;
        let (packet, attachments) = match frames.first() {
            // Without the Engine.IO type digit.
            Some(Frame::Text(text)) => (text.slice(1..), attachments.to_vec()),
            // The msgpack parser's packet holds its attachments.
            Some(Frame::Binary(packet)) => (packet.clone(), Vec::new()),
            None => return Ok((frames, offset)),
        };
        self.log.append(LoggedPacket {
            offset,
            namespace: namespace.to_owned(),
            rooms: rooms.to_vec(),
            except,
            packet,
            attachments,
            emitted_at: now_millis(),
        });
        Ok((frames, offset))
    }

    /// Packets of `ns` for `rooms` after `after`, if the log answers.
    pub(crate) async fn catch_up(
        &self,
        ns: &str,
        after: Offset,
        rooms: &[Room],
    ) -> Vec<LoggedPacket> {
        match self.log.since(ns, after, rooms).await {
            Ok(replay) => replay.packets,
            Err(e) => {
                tracing::warn!(ns, error = %e, "recovery log unavailable during catch-up");
                Vec::new()
            }
        }
    }

    /// Trims the log every so often until `stop` is cancelled.
    pub(crate) fn spawn_trimmer(self: &Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: the recovery log is trimmed only on reconnects");
            return;
        };
        let window = self.config.max_disconnection_duration;
        let every = (window / 2).clamp(Duration::from_millis(50), Duration::from_secs(60));
        let me = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(me) = me.upgrade() else { return };
                let window = millis(window);
                let older_than = now_millis().saturating_sub(window);
                if let Err(e) = me.log.trim(older_than).await {
                    tracing::warn!(error = %e, "cannot trim the recovery log");
                }
            }
        });
    }
}

/// The frames of a logged packet, as they were first sent; None for a corrupt entry, or one
/// logged in another parser's encoding (a log kept across a restart that changed `--parser`).
pub(crate) fn packet_frames(parser: Parser, packet: &LoggedPacket) -> Option<Vec<Frame>> {
    if msgpack::looks_like_msgpack(&packet.packet) != (parser == Parser::Msgpack) {
        return None;
    }
    if parser == Parser::Msgpack {
        return Some(vec![Frame::binary(packet.packet.clone())]);
    }
    let text = std::str::from_utf8(&packet.packet).ok()?;
    let mut frames = Vec::with_capacity(1 + packet.attachments.len());
    frames.push(Frame::message(text));
    frames.extend(packet.attachments.iter().cloned().map(Frame::binary));
    Some(frames)
}

/// The packets sorted by offset, each once.
pub(crate) fn dedup(packets: Vec<LoggedPacket>) -> Vec<LoggedPacket> {
    let mut by_offset = BTreeMap::new();
    for p in packets {
        by_offset.entry(p.offset).or_insert(p);
    }
    by_offset.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn packet(offset: Offset, rooms: &[&str], emitted_at: Millis) -> LoggedPacket {
        LoggedPacket {
            offset,
            namespace: "/".into(),
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            except: Vec::new(),
            packet: Bytes::from(format!("2[\"e\",\"{offset}\"]")),
            attachments: Vec::new(),
            emitted_at,
        }
    }

    #[tokio::test]
    async fn memory_log_replays_in_offset_order_and_reports_trims() {
        let log = MemorySessionLog::new();
        log.append(packet(2, &["a"], 10));
        log.append(packet(1, &["a"], 10));
        log.append(packet(3, &["b"], 20));
        log.append(packet(4, &[], 30));
        let rooms = [Room::from("a")];
        let replay = log.since("/", 0, &rooms).await.unwrap();
        let offsets: Vec<_> = replay.packets.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, vec![1, 2, 4]);
        assert!(replay.complete);
        assert!(
            log.since("/other", 0, &rooms)
                .await
                .unwrap()
                .packets
                .is_empty()
        );
        log.trim(15).await.unwrap();
        let replay = log.since("/", 1, &rooms).await.unwrap();
        assert!(!replay.complete);
        assert_eq!(replay.packets.len(), 1);
        assert!(log.since("/", 2, &rooms).await.unwrap().complete);
    }

    #[tokio::test]
    async fn sessions_are_taken_once_and_expire_by_trim() {
        let log = MemorySessionLog::new();
        let record = SessionRecord {
            pid: "p".into(),
            sid: tidings_core::Sid::new(),
            namespace: "/".into(),
            rooms: vec![Room::from("a")],
            base_offset: 1,
            last_offset: 0,
            disconnected_at: 100,
        };
        log.persist_session(record.clone());
        assert_eq!(log.take_session("p").await.unwrap(), Some(record.clone()));
        assert_eq!(log.take_session("p").await.unwrap(), None);
        log.persist_session(record);
        log.trim(101).await.unwrap();
        assert_eq!(log.take_session("p").await.unwrap(), None);
    }

    #[test]
    fn claims_are_taken_out_of_the_auth_payload() {
        let mut auth = json!({"pid": "abc", "offset": "42", "token": "t"});
        let claim = Recovery::claim(&mut auth).unwrap();
        assert_eq!(claim.pid, "abc");
        assert_eq!(claim.offset, Some(Some(42)));
        assert_eq!(auth, json!({"token": "t"}));
        let mut auth = json!({"pid": "abc"});
        assert_eq!(Recovery::claim(&mut auth).unwrap().offset, None);
        let mut auth = json!({"pid": "abc", "offset": "Q83M1D_"});
        assert_eq!(Recovery::claim(&mut auth).unwrap().offset, Some(None));
        assert!(Recovery::claim(&mut json!({"token": "t"})).is_none());
        assert!(Recovery::claim(&mut json!({"pid": 7})).is_none());
    }
}
