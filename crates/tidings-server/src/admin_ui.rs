//! The Socket.IO Admin UI: the `/admin` namespace that the web app of `@socket.io/admin-ui`
//! 0.5 (hosted at <https://admin.socket.io>, or served from the npm package's `ui/dist`) talks
//! to, as the package's `instrument(io, options)` sets it up on a Node server.
//!
//! - **Login**: with [`AdminAuth::Basic`], a username and the bcrypt hash of the password; a
//!   user who logs in gets a session id (`session` event) that the app sends instead of the
//!   password when it reconnects. With [`AdminAuth::None`] anyone who reaches the server
//!   administers it (Node's `auth: false`); `tidings serve` warns at start.
//! - **What the app sees**: `config` (the features this server supports), `server_stats` every
//!   2 s (sessions, polling sessions, namespaces with their socket counts, and the connections,
//!   disconnections, packets and bytes since the last one as `aggregatedEvents`), and in
//!   development mode `all_sockets` on login, then
//!   `socket_connected`, `socket_disconnected`, `room_joined` and `room_left` as they happen.
//!   Events received and sent by sockets (`event_received` / `event_sent`) are not reported.
//! - **What the app does** (unless read-only): emit to a namespace or a room, make a
//!   namespace's or a room's sockets join or leave a room, disconnect them (closing their
//!   connection or not).
//!
//! Everything is addressed to the namespace as a broadcast, so in a cluster every node's
//! `server_stats` and socket events reach the app wherever its own socket is, and its commands
//! reach the sockets of every node — as with Node's adapter. Each node must enable the Admin UI.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::io::{BroadcastOperator, ConnectError, ConnectRequest, Socket, SocketEvent};
use crate::server::{Server, WeakServer};

/// How users of the Admin UI log in.
#[derive(Clone)]
pub enum AdminAuth {
    /// No login: whoever reaches the server administers it (Node's `auth: false`).
    None,
    /// A username and the bcrypt hash (`$2a$`/`$2b$`/`$2y$`) of the password, as Node's
    /// `auth: { type: "basic", username, password }`.
    Basic {
        /// The username.
        username: String,
        /// The bcrypt hash of the password (e.g. from `htpasswd -nbB` or `bcryptjs`).
        password_hash: String,
    },
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAuth::None => f.write_str("None"),
            // The hash is a secret too: not shown.
            AdminAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

/// The Admin UI's settings (Node's `instrument` options).
#[derive(Debug, Clone)]
pub struct AdminUiConfig {
    /// The namespace the app connects to; `/admin` by default (the app's default too).
    pub namespace: String,
    /// How users log in.
    pub auth: AdminAuth,
    /// Only look: the app's commands (emit, join, leave, disconnect) are not offered.
    pub read_only: bool,
    /// How this server is named in the app; the host name by default.
    pub server_id: Option<String>,
    /// Development mode: the list of sockets and their connections, disconnections and room
    /// changes as they happen (each one an event to the app: keep it off on busy servers).
    pub development: bool,
}

impl AdminUiConfig {
    /// `/admin`, not read-only, development mode, with `auth`.
    pub fn new(auth: AdminAuth) -> Self {
        AdminUiConfig {
            namespace: "/admin".to_owned(),
            auth,
            read_only: false,
            server_id: None,
            development: true,
        }
    }
}

/// The Admin UI cannot be enabled with these settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminUiError {
    /// The password hash is not a bcrypt hash.
    #[error("the admin password hash is not a bcrypt hash ($2a$/$2b$/$2y$…): {0}")]
    BadHash(String),
    /// The namespace name does not start with `/`.
    #[error("the admin namespace must start with '/': {0:?}")]
    BadNamespace(String),
    /// It is already enabled on this server.
    #[error("the Admin UI is already enabled on this server")]
    AlreadyEnabled,
}

/// Logged-in users' session ids, the most recent [`MAX_SESSIONS`]: a session id is a bearer
/// secret the app keeps instead of the password.
const MAX_SESSIONS: usize = 1000;

#[derive(Default)]
struct Sessions {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Sessions {
    fn add(&mut self, id: String) {
        if self.order.len() >= MAX_SESSIONS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id.clone());
        self.order.push_back(id);
    }
}

/// The features the app shows buttons for.
fn features(config: &AdminUiConfig) -> Vec<&'static str> {
    let mut out = if config.read_only {
        Vec::new()
    } else {
        vec![
            "EMIT",
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT",
        ]
    };
    out.push("AGGREGATED_EVENTS");
    if config.development {
        out.push("ALL_EVENTS");
    }
    out
}

/// Owned by the admin namespace's handlers; holds the server weakly (no cycle).
struct AdminUi {
    server: WeakServer,
    config: AdminUiConfig,
    sessions: Mutex<Sessions>,
    started: Instant,
    server_id: String,
    hostname: String,
}

impl Server {
    /// Serves the Socket.IO Admin UI protocol on `config.namespace` (see [`crate::admin_ui`]).
    ///
    /// # Errors
    ///
    /// [`AdminUiError`] for a password hash that is not bcrypt, a namespace name without `/`,
    /// or a second call.
    pub fn enable_admin_ui(&self, config: AdminUiConfig) -> Result<(), AdminUiError> {
        if !config.namespace.starts_with('/') {
            return Err(AdminUiError::BadNamespace(config.namespace));
        }
        if let AdminAuth::Basic { password_hash, .. } = &config.auth {
            password_hash
                .parse::<bcrypt::HashParts>()
                .map_err(|e| AdminUiError::BadHash(e.to_string()))?;
        }
        let hostname = hostname();
        let ns = self.of(&config.namespace);
        ns.set_no_builtins();
        let admin = Arc::new(AdminUi {
            server: self.downgrade(),
            server_id: config.server_id.clone().unwrap_or_else(|| hostname.clone()),
            hostname,
            config,
            sessions: Mutex::default(),
            started: Instant::now(),
        });
        if admin.config.development {
            let watcher = Arc::downgrade(&admin);
            let observe = Arc::new(move |event: SocketEvent<'_>| {
                if let Some(admin) = watcher.upgrade() {
                    admin.observed(event);
                }
            });
            if !self.observer().set(observe) {
                return Err(AdminUiError::AlreadyEnabled);
            }
        }
        // A login with credentials, or with an admin token when the server verifies tokens
        // (then the namespace takes no token of its own: the app cannot send one).
        if matches!(admin.config.auth, AdminAuth::Basic { .. }) || self.config().auth.is_some() {
            ns.set_own_login();
            let login = admin.clone();
            ns.use_middleware(move |req: ConnectRequest| {
                let login = login.clone();
                async move { login.log_in(&req.auth).await }
            });
        }
        tokio::spawn(stats_loop(Arc::downgrade(&admin), self.shutdown_token()));
        ns.on_connect(move |socket| admin.connected(socket));
        Ok(())
    }
}

impl AdminUi {
    /// Everything addressed to the app: the admin namespace, on every node.
    fn to_app(&self) -> Option<BroadcastOperator> {
        let server = self.server.upgrade()?;
        Some(server.existing_namespace(&self.config.namespace)?.all())
    }

    /// The middleware of [`AdminAuth::Basic`]: a known session id, or the right username and
    /// password (checked off the runtime's threads: bcrypt is slow on purpose).
    async fn log_in(&self, auth: &Value) -> Result<(), ConnectError> {
        if let Some(id) = auth.get("sessionId").and_then(Value::as_str) {
            if self.sessions.lock().ids.contains(id) {
                return Ok(());
            }
        }
        let AdminAuth::Basic {
            username,
            password_hash,
        } = &self.config.auth
        else {
            return Ok(());
        };
        let given_user = auth.get("username").and_then(Value::as_str);
        let password = auth
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if given_user == Some(username.as_str()) {
            let hash = password_hash.clone();
            let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(false);
            if matches {
                return Ok(());
            }
        }
        tracing::warn!(
            user = given_user.unwrap_or(""),
            "admin UI: invalid credentials"
        );
        Err(ConnectError::new("invalid credentials"))
    }

    fn connected(self: &Arc<Self>, socket: Socket) {
        let logs_in = matches!(self.config.auth, AdminAuth::Basic { .. })
            || self
                .server
                .upgrade()
                .is_some_and(|s| s.config().auth.is_some());
        if logs_in {
            let known = socket
                .auth()
                .get("sessionId")
                .and_then(Value::as_str)
                .is_some_and(|id| self.sessions.lock().ids.contains(id));
            if !known {
                // Logged in with the password: a session id for the app's reconnections.
                let id = random_id();
                self.sessions.lock().add(id.clone());
                let _ = socket.emit("session", &id);
            }
        }
        if !self.config.read_only {
            self.register_commands(&socket);
        }
        let _ = socket.emit(
            "config",
            &json!({ "supportedFeatures": features(&self.config) }),
        );
        if self.config.development {
            let admin = self.clone();
            tokio::spawn(async move {
                let sockets = admin.all_sockets().await;
                let _ = socket.emit("all_sockets", &sockets);
            });
        }
    }

    /// The sockets of every namespace on every node.
    async fn all_sockets(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let Some(server) = self.server.upgrade() else {
            return out;
        };
        for ns in server.namespaces() {
            let local: Vec<Socket> = ns.sockets();
            let mut seen: HashSet<String> = HashSet::new();
            for socket in &local {
                seen.insert(socket.id().to_string());
                out.push(serialize(socket));
            }
            for remote in ns.all().fetch_sockets(Duration::from_secs(2)).await {
                if seen.insert(remote.sid.clone()) {
                    out.push(json!({
                        "id": remote.sid,
                        "clientId": "",
                        "transport": "",
                        "nsp": ns.name(),
                        "data": {},
                        "handshake": {},
                        "rooms": remote.rooms,
                    }));
                }
            }
        }
        out
    }

    fn register_commands(&self, socket: &Socket) {
        let server = self.server.clone();
        let target = move |nsp: &Value, filter: &Value| -> Option<BroadcastOperator> {
            let ns = server.upgrade()?.existing_namespace(nsp.as_str()?)?;
            Some(match filter.as_str() {
                Some(room) if !room.is_empty() => ns.to(room),
                _ => ns.all(),
            })
        };
        let t = target.clone();
        socket.on("emit", move |_, event| {
            let args = event.args().to_vec();
            let op = args
                .first()
                .and_then(|nsp| t(nsp, args.get(1).unwrap_or(&Value::Null)));
            async move {
                let (Some(op), Some(name)) = (op, args.get(2).and_then(Value::as_str)) else {
                    return;
                };
                if let Err(e) = op.emit_args(name, args[3..].to_vec(), &[]) {
                    tracing::debug!(error = %e, "admin UI: emit refused");
                }
            }
        });
        let t = target.clone();
        socket.on("join", move |_, event| {
            let args = event.args();
            if let (Some(op), Some(room)) = (
                args.first()
                    .and_then(|nsp| t(nsp, args.get(2).unwrap_or(&Value::Null))),
                args.get(1).and_then(Value::as_str),
            ) {
                op.join(room);
            }
            async {}
        });
        let t = target.clone();
        socket.on("leave", move |_, event| {
            let args = event.args();
            if let (Some(op), Some(room)) = (
                args.first()
                    .and_then(|nsp| t(nsp, args.get(2).unwrap_or(&Value::Null))),
                args.get(1).and_then(Value::as_str),
            ) {
                op.leave(room);
            }
            async {}
        });
        socket.on("_disconnect", move |_, event| {
            let args = event.args();
            if let Some(op) = args
                .first()
                .and_then(|nsp| target(nsp, args.get(2).unwrap_or(&Value::Null)))
            {
                if args.get(1).and_then(Value::as_bool) == Some(true) {
                    op.disconnect_connections();
                } else {
                    op.disconnect();
                }
            }
            async {}
        });
    }

    /// Development mode: a socket event, told to the app.
    fn observed(self: &Arc<Self>, event: SocketEvent<'_>) {
        let now = Value::String(iso8601(SystemTime::now()));
        let Some(all) = self.to_app() else { return };
        let _ = match event {
            SocketEvent::Connected(socket) => {
                let admin = self.clone();
                socket.on_disconnect(move |socket, reason| async move {
                    let args = vec![
                        json!(socket.namespace().name()),
                        json!(socket.id().to_string()),
                        json!(reason.as_str()),
                        Value::String(iso8601(SystemTime::now())),
                    ];
                    if let Some(app) = admin.to_app() {
                        let _ = app.emit_args("socket_disconnected", args, &[]);
                    }
                });
                all.emit_args("socket_connected", vec![serialize(socket), now], &[])
            }
            SocketEvent::Joined { ns, room, sid } => all.emit_args(
                "room_joined",
                vec![json!(ns), json!(room.as_str()), json!(sid.to_string()), now],
                &[],
            ),
            SocketEvent::Left { ns, room, sid } => all.emit_args(
                "room_left",
                vec![json!(ns), json!(room.as_str()), json!(sid.to_string()), now],
                &[],
            ),
        };
    }

    fn stats(&self, server: &Server, aggregated: Vec<Value>) -> Value {
        let stats = server.stats();
        let namespaces = server.namespaces();
        let mut polling = HashSet::new();
        let namespaces: Vec<Value> = namespaces
            .iter()
            .map(|ns| {
                let sockets = ns.sockets();
                for s in &sockets {
                    if s.transport() == crate::engine::TransportKind::Polling {
                        polling.insert(s.session_id());
                    }
                }
                json!({ "name": ns.name(), "socketsCount": sockets.len() })
            })
            .collect();
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": stats.sessions,
            "pollingClientsCount": polling.len(),
            "aggregatedEvents": aggregated,
            "namespaces": namespaces,
        })
    }
}

/// What the app charts, as Node's admin UI counts it: connections opened, closed (by reason),
/// packets and bytes in and out — here the change of the server's counters since the last
/// `server_stats`, stamped with this second.
#[derive(Default)]
struct Totals {
    opened: u64,
    closed: Vec<(&'static str, u64)>,
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
}

impl Totals {
    fn of(server: &Server) -> Totals {
        let counters = server.counters();
        let t = counters.transport;
        Totals {
            opened: counters.server.sessions_opened,
            closed: t.closed,
            packets_in: t.packets_in,
            bytes_in: t.bytes_in,
            packets_out: t.packets_out,
            bytes_out: t.bytes_out,
        }
    }

    /// The app's `aggregatedEvents` from `before` to `self`.
    fn since(&self, before: &Totals, at: SystemTime) -> Vec<Value> {
        let second = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() * 1000);
        let event = |kind: &str, sub: Option<&str>, count: u64| {
            (count > 0).then(|| {
                let mut e = json!({ "timestamp": second, "type": kind, "count": count });
                if let Some(sub) = sub {
                    e["subType"] = json!(sub);
                }
                e
            })
        };
        let closed = self.closed.iter().filter_map(|(reason, n)| {
            let was = before
                .closed
                .iter()
                .find(|(r, _)| r == reason)
                .map_or(0, |(_, n)| *n);
            event("rawDisconnection", Some(reason), n.saturating_sub(was))
        });
        [
            event(
                "rawConnection",
                None,
                self.opened.saturating_sub(before.opened),
            ),
            event(
                "packetsIn",
                None,
                self.packets_in.saturating_sub(before.packets_in),
            ),
            event(
                "bytesIn",
                None,
                self.bytes_in.saturating_sub(before.bytes_in),
            ),
            event(
                "packetsOut",
                None,
                self.packets_out.saturating_sub(before.packets_out),
            ),
            event(
                "bytesOut",
                None,
                self.bytes_out.saturating_sub(before.bytes_out),
            ),
        ]
        .into_iter()
        .flatten()
        .chain(closed)
        .collect()
    }
}

/// `server_stats` to the app every 2 s, from every node, until the server shuts down or is
/// dropped.
async fn stats_loop(
    admin: std::sync::Weak<AdminUi>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut before: Option<Totals> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let Some(admin) = admin.upgrade() else { return };
        let Some(server) = admin.server.upgrade() else {
            return;
        };
        let now = Totals::of(&server);
        let aggregated = before
            .as_ref()
            .map_or_else(Vec::new, |b| now.since(b, SystemTime::now()));
        before = Some(now);
        let stats = admin.stats(&server, aggregated);
        if let Some(app) = admin.to_app() {
            let _ = app.emit("server_stats", &stats);
        }
    }
}

/// A socket as the app lists it.
fn serialize(socket: &Socket) -> Value {
    let session = socket.session_id().to_string();
    let mut handshake = socket.node_handshake();
    if let Some(map) = handshake.as_object_mut() {
        // What the Admin UI has always shown: no auth, the query string as the url.
        map.remove("auth");
        let url = map.get("url").and_then(Value::as_str).unwrap_or_default();
        let url = url.strip_prefix("/socket.io/").unwrap_or(url).to_owned();
        map.insert("url".into(), Value::from(url));
    }
    json!({
        "id": socket.id().to_string(),
        "clientId": &session[..session.len().min(12)],
        "transport": socket.transport().as_str(),
        "nsp": socket.namespace().name(),
        "data": socket.node_data(),
        "handshake": handshake,
        "rooms": socket.rooms().iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>(),
    })
}

fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: still unique enough for a session id of this process.
        bytes = (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()) as u64)
            .to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "tidings".to_owned())
}

/// `2026-12-06T10:00:00.000Z`: what JSON makes of a JavaScript `Date`.
fn iso8601(at: SystemTime) -> String {
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    tidings_proto::date::iso8601(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_offers_no_command() {
        let mut config = AdminUiConfig::new(AdminAuth::None);
        assert!(features(&config).contains(&"MJOIN"));
        config.read_only = true;
        config.development = false;
        assert_eq!(features(&config), ["AGGREGATED_EVENTS"]);
    }

    #[test]
    fn aggregated_events_are_what_changed_since_the_last_stats() {
        let before = Totals {
            opened: 3,
            closed: vec![("transport close", 1), ("ping timeout", 0)],
            packets_in: 10,
            bytes_in: 100,
            packets_out: 20,
            bytes_out: 200,
        };
        let now = Totals {
            opened: 5,
            closed: vec![("transport close", 1), ("ping timeout", 2)],
            packets_in: 10,
            bytes_in: 100,
            packets_out: 25,
            bytes_out: 260,
        };
        let at = UNIX_EPOCH + Duration::from_millis(1_796_464_800_123);
        let events = now.since(&before, at);
        let second = 1_796_464_800_000_u64;
        assert_eq!(
            events,
            [
                json!({"timestamp": second, "type": "rawConnection", "count": 2}),
                json!({"timestamp": second, "type": "packetsOut", "count": 5}),
                json!({"timestamp": second, "type": "bytesOut", "count": 60}),
                json!({"timestamp": second, "type": "rawDisconnection", "subType": "ping timeout", "count": 2}),
            ]
        );
    }

    #[test]
    fn sessions_are_bounded() {
        let mut sessions = Sessions::default();
        for i in 0..MAX_SESSIONS + 5 {
            sessions.add(i.to_string());
        }
        assert_eq!(sessions.ids.len(), MAX_SESSIONS);
        assert!(!sessions.ids.contains("0"));
        assert!(sessions.ids.contains(&(MAX_SESSIONS + 4).to_string()));
    }
}
