//! The [`Server`] handle: namespaces, the HTTP accept loop and shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::RwLock;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterLink;
use crate::config::ServerConfig;
use crate::engine::{Body, CloseReason, Engine, EngineHandler, Session, SessionHandler};
use crate::io::{Client, Namespace};
use crate::limits::{ConnectionLimiter, ConnectionPermit};
use crate::queue::{QueueConfig, Queues};
use crate::recovery::{MemorySessionLog, Recovery};
use tidings_core::cluster::Cluster;
use tidings_core::session_log::SessionLog;
use tidings_core::store::{Store, StoreError};

type Matcher = Box<dyn Fn(&str) -> bool + Send + Sync>;
type Setup = Box<dyn Fn(&Namespace) + Send + Sync>;

pub(crate) struct ServerInner {
    pub(crate) config: Arc<ServerConfig>,
    /// Every namespace: the static ones and those created on demand that have users. An
    /// on-demand namespace's user count goes from 0 to 1 or from 1 to 0 only under this
    /// map's write lock, and up from 1 under its read lock, so a namespace is removed exactly
    /// when nobody can still be joining it.
    namespaces: RwLock<HashMap<String, Namespace>>,
    /// On-demand namespaces in `namespaces` (changed under its write lock).
    on_demand: AtomicUsize,
    dynamic: RwLock<Vec<(Matcher, Setup)>>,
    engine: OnceLock<Engine>,
    shutdown: CancellationToken,
    socketio_protocol_errors: AtomicU64,
    /// Events refused by [`crate::Limits::events_per_second`].
    pub(crate) rate_limited_events: crate::metrics::Counter,
    /// Connects refused by the namespace limits.
    pub(crate) namespaces_refused: crate::metrics::Counter,
    /// Joins refused by [`crate::Limits::max_rooms_per_socket`].
    pub(crate) joins_refused: Arc<crate::metrics::Counter>,
    /// Broadcast counters, shared by every namespace.
    pub(crate) io_counters: Arc<crate::metrics::IoCounters>,
    connections: Arc<ConnectionLimiter>,
    queues: OnceLock<Arc<Queues>>,
    pub(crate) recovery: Option<Arc<Recovery>>,
    /// The other nodes, once [`Server::enable_cluster`] was called.
    pub(crate) cluster: Arc<ClusterLink>,
    /// Who watches every namespace's sockets (the Admin UI, [`Server::enable_admin_ui`]).
    pub(crate) observer: Arc<crate::io::SocketObserver>,
}

impl ServerInner {
    /// The namespace called `name` if it exists here (a broadcast from another node to a
    /// namespace nobody uses on this node creates nothing).
    pub(crate) fn existing_namespace(&self, name: &str) -> Option<Namespace> {
        self.namespaces.read().get(name).cloned()
    }

    /// The namespace called `name` for a client joining it: a static one, or a dynamic one
    /// created on first use by the first pattern that matches it (unless
    /// [`crate::Limits::max_namespaces`] of those exist). The lease keeps an on-demand
    /// namespace alive; when the last lease is dropped, the namespace is removed.
    pub(crate) fn namespace_for(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<NamespaceLease, NamespaceRefused> {
        if let Some(ns) = self.namespaces.read().get(name) {
            return Ok(self.lease(ns.clone()));
        }
        let dynamic = self.dynamic.read();
        let (_, setup) = dynamic
            .iter()
            .find(|(matches, _)| matches(name))
            .ok_or(NamespaceRefused::Invalid)?;
        let mut namespaces = self.namespaces.write();
        if let Some(ns) = namespaces.get(name) {
            return Ok(self.lease(ns.clone()));
        }
        if let Some(max) = self.config.limits.max_namespaces {
            if self.on_demand.load(Ordering::Acquire) >= max {
                let (refused, warn) = self.namespaces_refused.incr();
                if warn {
                    tracing::warn!(
                        ns = name,
                        max,
                        refused,
                        "new namespace over max_namespaces refused (logged once per 1000)"
                    );
                }
                return Err(NamespaceRefused::TooMany(max));
            }
        }
        let ns = Namespace::new(
            name,
            self.recovery.clone(),
            self.cluster.clone(),
            self.observer.clone(),
            self.io_counters.clone(),
            self.config.parser,
            true,
        );
        setup(&ns);
        namespaces.insert(name.to_owned(), ns.clone());
        if let Some(cluster) = self.cluster.get() {
            cluster.namespace_opened(name);
        }
        self.on_demand.fetch_add(1, Ordering::AcqRel);
        Ok(self.lease(ns))
    }

    /// Counts one more user of `ns` (called with the namespace map locked).
    fn lease(self: &Arc<Self>, ns: Namespace) -> NamespaceLease {
        if ns.inner.on_demand {
            ns.inner.users.fetch_add(1, Ordering::AcqRel);
        }
        NamespaceLease {
            server: Arc::downgrade(self),
            ns,
        }
    }

    /// One user of `ns` left; the last one of an on-demand namespace removes it, with its
    /// rooms, middlewares and handlers (as socket.io's `cleanupEmptyChildNamespaces`).
    fn release(&self, ns: &Namespace) {
        if !ns.inner.on_demand {
            return;
        }
        let users = &ns.inner.users;
        let mut current = users.load(Ordering::Acquire);
        while current > 1 {
            match users.compare_exchange_weak(
                current,
                current - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
        let mut namespaces = self.namespaces.write();
        if users.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let name = ns.name();
        let same = namespaces
            .get(name)
            .is_some_and(|mapped| Arc::ptr_eq(&mapped.inner, &ns.inner));
        if same {
            namespaces.remove(name);
            self.on_demand.fetch_sub(1, Ordering::AcqRel);
            if let Some(cluster) = self.cluster.get() {
                cluster.namespace_closed(name);
            }
            tracing::debug!(ns = name, "last socket left: on-demand namespace removed");
        }
    }

    pub(crate) fn queues(&self) -> Option<&Arc<Queues>> {
        self.queues.get()
    }

    pub(crate) fn count_protocol_error(&self) {
        self.socketio_protocol_errors
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a client may not join a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NamespaceRefused {
    /// No static namespace of that name and no dynamic pattern that matches it.
    Invalid,
    /// [`crate::Limits::max_namespaces`] on-demand namespaces exist.
    TooMany(usize),
}

/// One client's use of a namespace (joining or joined). Dropping it may remove an on-demand
/// namespace: see [`ServerInner::namespace_for`].
pub(crate) struct NamespaceLease {
    server: Weak<ServerInner>,
    ns: Namespace,
}

impl NamespaceLease {
    pub(crate) fn namespace(&self) -> &Namespace {
        &self.ns
    }
}

impl Drop for NamespaceLease {
    fn drop(&mut self) {
        if let Some(server) = self.server.upgrade() {
            server.release(&self.ns);
        }
    }
}

struct SocketIoHandler(Weak<ServerInner>);

/// Used only when the server was dropped while a request was in flight: a session with no
/// one above it, closed at once.
struct Orphan;

impl SessionHandler for Orphan {
    fn on_message(&self, _: crate::engine::Inbound<'_>) {}
    fn on_close(&self, _: CloseReason) {}
}

impl EngineHandler for SocketIoHandler {
    fn on_open(&self, session: &Arc<Session>) -> Arc<dyn SessionHandler> {
        match self.0.upgrade() {
            Some(server) => Client::new(session, server),
            None => Arc::new(Orphan),
        }
    }
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerStats {
    /// Open Engine.IO sessions.
    pub sessions: usize,
    /// Sessions opened since start.
    pub sessions_opened: u64,
    /// Sessions closed because the client read too slowly.
    pub slow_client_disconnects: u64,
    /// Sessions closed for malformed or oversized input.
    pub protocol_errors: u64,
    /// Connections refused by [`crate::Limits::max_connections`] or
    /// [`crate::Limits::max_connections_per_ip`].
    pub connections_refused: u64,
    /// Events refused by [`crate::Limits::events_per_second`].
    pub rate_limited_events: u64,
    /// Requests whose body did not arrive within [`crate::Limits::body_timeout`].
    pub slow_requests: u64,
    /// Namespaces that exist now: the static ones and the on-demand ones with sockets.
    pub namespaces: usize,
    /// Connects refused by [`crate::Limits::max_namespaces`] or
    /// [`crate::Limits::max_namespaces_per_connection`].
    pub namespaces_refused: u64,
    /// Joins refused by [`crate::Limits::max_rooms_per_socket`].
    pub joins_refused: u64,
    /// Connection State Recovery: CONNECTs that recovered their session (0 when recovery is
    /// off).
    pub recovery_recovered: u64,
    /// CONNECTs whose session was found but too old (disconnected longer than the window
    /// ago, or missed packets already trimmed): they got a new session.
    pub recovery_expired: u64,
    /// CONNECTs whose session was not found (never known, already recovered, lost, another
    /// namespace) or whose lookup failed: they got a new session.
    pub recovery_unknown: u64,
}

/// A Socket.IO server. Cheap to clone; all clones are the same server.
///
/// ```no_run
/// use tidings_server::{Server, ServerConfig};
///
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::new(ServerConfig::default());
/// server.of("/").on_connect(|socket| {
///     socket.on("ping", |socket, _event| async move {
///         let _ = socket.emit("pong", "hello");
///     });
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// server.serve(listener).await
/// # }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<ServerInner>,
}

/// A [`Server`] that does not keep it alive: for what the server owns and that must reach it
/// (a cycle of strong references would keep a dropped server's sockets and store open).
#[derive(Clone)]
pub(crate) struct WeakServer(std::sync::Weak<ServerInner>);

impl WeakServer {
    pub(crate) fn upgrade(&self) -> Option<Server> {
        self.0.upgrade().map(|inner| Server { inner })
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with the given configuration and the default namespace `/`.
    ///
    /// With [`ServerConfig::recovery`] set, the recovery log is kept in memory
    /// ([`MemorySessionLog`]); use [`Server::with_session_log`] for another backend.
    pub fn new(config: ServerConfig) -> Server {
        Self::with_session_log(config, Arc::new(MemorySessionLog::new()))
    }

    /// A server whose Connection State Recovery keeps its log in `log` (e.g.
    /// `tidings_store_sqlite::SqliteSessionLog`, so that sessions survive a restart). The log
    /// is unused unless [`ServerConfig::recovery`] is set.
    pub fn with_session_log(config: ServerConfig, log: Arc<dyn SessionLog>) -> Server {
        let recovery = config
            .recovery
            .clone()
            .map(|r| Arc::new(Recovery::new(log, r, config.parser)));
        let config = Arc::new(config);
        let inner = Arc::new(ServerInner {
            config: config.clone(),
            namespaces: RwLock::new(HashMap::new()),
            dynamic: RwLock::new(Vec::new()),
            engine: OnceLock::new(),
            shutdown: CancellationToken::new(),
            socketio_protocol_errors: AtomicU64::new(0),
            rate_limited_events: crate::metrics::Counter::default(),
            namespaces_refused: crate::metrics::Counter::default(),
            joins_refused: Arc::default(),
            io_counters: Arc::default(),
            on_demand: AtomicUsize::new(0),
            connections: Arc::new(ConnectionLimiter::default()),
            queues: OnceLock::new(),
            recovery,
            cluster: Arc::new(ClusterLink::default()),
            observer: Arc::default(),
        });
        if let Some(recovery) = &inner.recovery {
            recovery.spawn_trimmer(inner.shutdown.clone());
        }
        let engine = Engine::new(
            inner.config.engine_config(),
            Arc::new(SocketIoHandler(Arc::downgrade(&inner))),
        );
        let _ = inner.engine.set(engine);
        let server = Server { inner };
        server.of("/");
        server
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn downgrade(&self) -> WeakServer {
        WeakServer(Arc::downgrade(&self.inner))
    }

    /// The watcher of every namespace's sockets (set once, by the Admin UI).
    pub(crate) fn observer(&self) -> &crate::io::SocketObserver {
        &self.inner.observer
    }

    /// Cancelled when the server shuts down.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Every namespace that exists now: the static ones and the on-demand ones in use.
    pub fn namespaces(&self) -> Vec<Namespace> {
        let mut list: Vec<Namespace> = self.inner.namespaces.read().values().cloned().collect();
        list.sort_by(|a, b| a.name().cmp(b.name()));
        list
    }

    /// The namespace `name` if it exists now (unlike [`Server::of`], creates nothing).
    pub fn existing_namespace(&self, name: &str) -> Option<Namespace> {
        self.inner.existing_namespace(name)
    }

    /// The namespace `name` (created if it does not exist yet).
    pub fn of(&self, name: &str) -> Namespace {
        let name = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{name}")
        };
        let mut namespaces = self.inner.namespaces.write();
        if let Some(ns) = namespaces.get(&name) {
            return ns.clone();
        }
        let ns = Namespace::new(
            &name,
            self.inner.recovery.clone(),
            self.inner.cluster.clone(),
            self.inner.observer.clone(),
            self.inner.io_counters.clone(),
            self.inner.config.parser,
            false,
        );
        namespaces.insert(name.clone(), ns.clone());
        if let Some(cluster) = self.inner.cluster.get() {
            cluster.namespace_opened(&name);
        }
        ns
    }

    /// Accepts namespaces whose name matches `matches` (e.g. `/tenant-*`): each is created on
    /// first use and handed to `setup`, which installs its middleware and connect handler.
    /// It is removed, with its rooms and handlers, when its last socket leaves (socket.io's
    /// `cleanupEmptyChildNamespaces`), and set up afresh when used again. At most
    /// [`crate::Limits::max_namespaces`] such namespaces exist at once.
    pub fn of_dynamic<M, S>(&self, matches: M, setup: S)
    where
        M: Fn(&str) -> bool + Send + Sync + 'static,
        S: Fn(&Namespace) + Send + Sync + 'static,
    {
        self.inner
            .dynamic
            .write()
            .push((Box::new(matches), Box::new(setup)));
    }

    /// The namespace `name` if it exists (static, or dynamic and in use: an on-demand
    /// namespace is removed when its last socket leaves).
    pub fn namespace(&self, name: &str) -> Option<Namespace> {
        self.inner.namespaces.read().get(name).cloned()
    }

    fn engine(&self) -> &Engine {
        // Set in `new`, before the handle is returned; never empty afterwards.
        self.inner
            .engine
            .get()
            .unwrap_or_else(|| unreachable!("engine is set in Server::new"))
    }

    /// Turns on durable topics on every namespace: the built-in events `subscribe`,
    /// `unsubscribe`, `publish` and `history`, and deliveries to connected identities. Loads the
    /// store's subscriptions first. Calling it twice keeps the first store.
    pub async fn enable_queues(
        &self,
        store: Arc<dyn Store>,
        config: QueueConfig,
    ) -> Result<Arc<Queues>, StoreError> {
        if let Some(queues) = self.inner.queues.get() {
            return Ok(queues.clone());
        }
        let queues = Queues::start(store, config, self.inner.cluster.clone()).await?;
        Ok(self.inner.queues.get_or_init(|| queues).clone())
    }

    /// Joins this server to a cluster of nodes (e.g. `tidings_cluster_redis::RedisCluster`):
    /// from now on every broadcast and room operation made here also reaches the sockets of
    /// the other nodes, and theirs reach ours. Call it before serving; a second call is
    /// ignored and returns false.
    pub fn enable_cluster(&self, cluster: Arc<dyn Cluster>) -> bool {
        if !self.inner.cluster.set(cluster.clone()) {
            return false;
        }
        let server = Arc::downgrade(&self.inner);
        cluster.start(Arc::new(move |message| {
            if let Some(server) = server.upgrade() {
                crate::inbound::route(&server, message);
            }
        }));
        // Under the map's lock, so that no namespace is opened or closed twice meanwhile.
        let namespaces = self.inner.namespaces.read();
        for name in namespaces.keys() {
            cluster.namespace_opened(name);
        }
        true
    }

    /// The cluster, when [`Server::enable_cluster`] was called.
    pub fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.inner.cluster.get()
    }

    /// The Connection State Recovery log, when [`ServerConfig::recovery`] is set.
    pub fn session_log(&self) -> Option<&Arc<dyn SessionLog>> {
        self.inner.recovery.as_ref().map(|r| &r.log)
    }

    /// The delivery engine, when [`Server::enable_queues`] was called.
    pub fn queues(&self) -> Option<&Arc<Queues>> {
        self.inner.queues.get()
    }

    /// The server's counters.
    pub fn stats(&self) -> ServerStats {
        let engine = self.engine();
        let stats = engine.stats();
        let recovery = self.inner.recovery.as_deref();
        ServerStats {
            sessions: engine.session_count(),
            sessions_opened: stats.sessions_opened.load(Ordering::Relaxed),
            slow_client_disconnects: stats.slow_client_disconnects.load(Ordering::Relaxed),
            protocol_errors: stats.protocol_errors.load(Ordering::Relaxed)
                + self.inner.socketio_protocol_errors.load(Ordering::Relaxed),
            connections_refused: self.inner.connections.refused.get(),
            rate_limited_events: self.inner.rate_limited_events.get(),
            slow_requests: stats.slow_requests.load(Ordering::Relaxed),
            namespaces: self.inner.namespaces.read().len(),
            namespaces_refused: self.inner.namespaces_refused.get(),
            joins_refused: self.inner.joins_refused.get(),
            recovery_recovered: recovery.map_or(0, |r| r.outcomes.recovered.get()),
            recovery_expired: recovery.map_or(0, |r| r.outcomes.expired.get()),
            recovery_unknown: recovery.map_or(0, |r| r.outcomes.unknown.get()),
        }
    }

    /// Every counter, gauge and histogram of the server, read now: what `/v1/stats` and
    /// `GET /metrics` render (see [`crate::metrics`]). With queues, the store is asked about
    /// the selected topics ([`crate::metrics::MetricsConfig`]) and for readiness.
    pub async fn metrics(&self) -> crate::metrics::MetricsSnapshot {
        let mut snapshot = self.counters();
        if let Some(queues) = self.inner.queues.get() {
            if let Some(q) = snapshot.queues.as_mut() {
                q.topics = queues.topic_metrics(&self.inner.config.metrics).await;
            }
        }
        snapshot.unready = self.readiness().await.err();
        snapshot
    }

    /// The counters of [`Server::metrics`] without asking the store (no per-topic gauges, no
    /// readiness): what `/v1/stats` renders.
    pub fn counters(&self) -> crate::metrics::MetricsSnapshot {
        let engine = self.engine();
        let stats = engine.stats();
        let traffic = engine.traffic();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let io = &self.inner.io_counters;
        crate::metrics::MetricsSnapshot {
            server: self.stats(),
            transport: crate::metrics::TransportMetrics {
                connections: self.inner.connections.open(),
                sessions_polling: traffic.sessions_polling,
                sessions_websocket: traffic.sessions_websocket,
                closed: CloseReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), load(&stats.closed[r.index()])))
                    .collect(),
                packets_in: traffic.received.packets,
                bytes_in: traffic.received.bytes,
                packets_out: traffic.sent.packets,
                bytes_out: traffic.sent.bytes,
            },
            broadcasts: load(&io.broadcasts),
            broadcast_deliveries: load(&io.broadcast_deliveries),
            queues: self.inner.queues.get().map(|q| q.counters()),
            cluster: self.inner.cluster.get().map(|c| c.metrics()),
            // Connection State Recovery outcomes (`tidings_recovery_total{outcome}`); empty
            // when recovery is off.
            recovery: match self.inner.recovery.as_deref() {
                Some(r) => vec![
                    ("recovered", r.outcomes.recovered.get()),
                    ("expired", r.outcomes.expired.get()),
                    ("unknown", r.outcomes.unknown.get()),
                ],
                None => Vec::new(),
            },
            unready: None,
        }
    }

    /// Whether this server can do its work: `Ok` when the store (with queues) and the cluster
    /// backend (in a cluster) answer within 2 s, else why not. What `GET /readyz` answers.
    pub async fn readiness(&self) -> Result<(), String> {
        const WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
        if self.inner.shutdown.is_cancelled() {
            return Err("shutting down".to_owned());
        }
        if let Some(queues) = self.inner.queues.get() {
            match tokio::time::timeout(WITHIN, queues.store().ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("store: {e}")),
                Err(_) => return Err("store: no answer within 2 s".to_owned()),
            }
        }
        if let Some(cluster) = self.inner.cluster.get() {
            match tokio::time::timeout(WITHIN, cluster.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("cluster: {e}")),
                Err(_) => return Err("cluster: no answer within 2 s".to_owned()),
            }
        }
        Ok(())
    }

    /// `GET /healthz`, `GET /readyz` and `GET /metrics`; None for other requests.
    async fn operations_route(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        if req.method() != hyper::Method::GET {
            return None;
        }
        match req.uri().path() {
            // The process serves: nothing else is asked (a liveness probe must not fail
            // because a dependency is down, or the orchestrator restarts a healthy process).
            "/healthz" => Some(crate::api::plain_json(
                http::StatusCode::OK,
                &serde_json::json!({ "status": "ok" }),
            )),
            "/readyz" => Some(match self.readiness().await {
                Ok(()) => crate::api::plain_json(
                    http::StatusCode::OK,
                    &serde_json::json!({ "status": "ready" }),
                ),
                Err(reason) => crate::api::plain_json(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "status": "unavailable", "reason": reason }),
                ),
            }),
            "/metrics" if self.inner.config.metrics.enabled => {
                if let Err(res) = crate::api::admin_only(self.inner.config.auth.as_deref(), req) {
                    return Some(*res);
                }
                let text = self.metrics().await.encode_prometheus();
                let mut res = Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(crate::metrics::PROMETHEUS_CONTENT_TYPE),
                );
                Some(res)
            }
            _ => None,
        }
    }

    /// Answers one HTTP request: the Engine.IO endpoint at the configured path, `/healthz`,
    /// `/readyz`, `/metrics`, the `/v1` API and the dashboard (`/dashboard`) with queues, 404
    /// elsewhere. Use it to embed the
    /// server in your own hyper service.
    pub async fn handle(&self, req: Request<Incoming>, remote_addr: SocketAddr) -> Response<Body> {
        let engine = self.engine();
        if engine.matches_path(req.uri().path()) {
            return engine.handle(req, remote_addr).await;
        }
        if let Some(res) = self.operations_route(&req).await {
            return res;
        }
        if let Some(queues) = self.inner.queues.get() {
            let path = req.uri().path();
            if crate::dashboard::matches(path) {
                return crate::dashboard::serve(req.method(), path);
            }
            if path == "/v1" || path.starts_with("/v1/") {
                let config = &self.inner.config;
                return crate::api::handle(
                    queues,
                    req,
                    crate::api::BodyLimits {
                        max_bytes: config.max_payload,
                        timeout: config.limits.body_timeout,
                        timed_out: &engine.stats().slow_requests,
                        max_attachments: config.limits.max_attachments,
                    },
                    config.auth.as_deref(),
                    // Read only for GET /v1/stats: the snapshot walks every session.
                    &|| self.counters(),
                )
                .await;
            }
        }
        // Outside the Socket.IO path and /v1: the API's error shape, as docs/PROTOCOL.md says.
        let e = tidings_core::ErrorBody::new(
            tidings_core::ErrorCode::NotFound,
            format!("no route {} {}", req.method(), req.uri().path()),
        );
        crate::api::error_response(&e)
    }

    /// Serves connections from `listener` until [`Server::shutdown`] is called.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_with(listener, |server, req, addr| async move {
            server.handle(req, addr).await
        })
        .await
    }

    /// Like [`Server::serve`], with a custom request handler (for example one that adds HTTP
    /// routes and calls [`Server::handle`] for the rest).
    pub async fn serve_with<F, Fut>(&self, listener: TcpListener, handler: F) -> std::io::Result<()>
    where
        F: Fn(Server, Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
    {
        self.accept_loop(listener, None, handler).await
    }

    /// Like [`Server::serve`], over TLS (`https://`, `wss://`) with `tls`, e.g. from
    /// [`crate::tls::server_config_from_pem`]. The limits, upgrades and shutdown are the
    /// same; the handshake must be done within [`crate::Limits::header_timeout`].
    pub async fn serve_tls(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        self.serve_tls_with(listener, tls, |server, req, addr| async move {
            server.handle(req, addr).await
        })
        .await
    }

    /// [`Server::serve_with`] over TLS: see [`Server::serve_tls`].
    pub async fn serve_tls_with<F, Fut>(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        handler: F,
    ) -> std::io::Result<()>
    where
        F: Fn(Server, Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
    {
        self.accept_loop(listener, Some(TlsAcceptor::from(tls)), handler)
            .await
    }

    async fn accept_loop<F, Fut>(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        handler: F,
    ) -> std::io::Result<()>
    where
        F: Fn(Server, Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
    {
        let shutdown = self.inner.shutdown.clone();
        loop {
            let (stream, addr) = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors or a connection reset before accept: keep
                        // serving the clients we have, and try again shortly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let limits = &self.inner.config.limits;
            let permit = match self.inner.connections.admit(addr.ip(), limits) {
                Ok(permit) => permit,
                Err(why) => {
                    tokio::spawn(refuse(stream, tls.clone(), why));
                    continue;
                }
            };
            let header_timeout = limits.header_timeout;
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let handler = handler.clone();
            let shutdown = shutdown.clone();
            // Travels with each request, so that a WebSocket holds it after the upgrade, when
            // this connection task is over.
            let permit = Arc::new(permit);
            let tls = tls.clone();
            tokio::spawn(async move {
                let conn = Connection {
                    server,
                    handler,
                    addr,
                    permit,
                    header_timeout,
                    shutdown,
                };
                let Some(acceptor) = tls else {
                    return conn.serve(stream).await;
                };
                let deadline = tokio::time::Instant::now() + header_timeout;
                let accepted = tokio::select! {
                    accepted = crate::tls::accept(&acceptor, stream, addr, deadline) => accepted,
                    _ = conn.shutdown.cancelled() => None,
                };
                if let Some(stream) = accepted {
                    conn.serve(stream).await;
                }
            });
        }
    }

    /// After [`Server::shutdown`]: waits until every connection served by [`Server::serve`]
    /// has closed — WebSockets have written their close frame (`1001 server shutting down`),
    /// pending long-polls have been answered — and the recovery log has written the sessions
    /// the shutdown closed, at most `timeout`. Returns whether all of that happened.
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let drained = self.inner.connections.drained(deadline).await;
        // The shutdown persisted every closed session by queueing it to the log's writer (a
        // thread, for SQLite). A process that returned now could exit before that write, and
        // the clients would reconnect to a new session instead of recovering theirs.
        let Some(log) = self.session_log() else {
            return drained;
        };
        match tokio::time::timeout_at(deadline, log.flush()).await {
            Ok(Ok(())) => drained,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "recovery log unavailable at shutdown: sessions not persisted");
                false
            }
            Err(_) => {
                tracing::warn!(
                    "the recovery log was still writing the closed sessions at the shutdown deadline"
                );
                false
            }
        }
    }

    /// Stops accepting connections and closes every session with the reason `server shutting
    /// down`, after writing what was already queued for it.
    pub fn shutdown(&self) {
        tracing::info!("shutting down");
        self.inner.shutdown.cancel();
        if let Some(queues) = self.inner.queues.get() {
            queues.shutdown();
        }
        self.engine().close_all(CloseReason::ServerShutdown);
    }
}

/// One admitted connection, served by hyper once its transport is ready. (Built field by
/// field in the accept loop and taken apart the same way in `serve`: the two lists match by
/// construction.)
struct Connection<F> {
    server: Server,
    handler: F,
    addr: SocketAddr,
    permit: Arc<ConnectionPermit>,
    header_timeout: std::time::Duration,
    shutdown: CancellationToken,
}

impl<F, Fut> Connection<F>
where
    F: Fn(Server, Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            server,
            handler,
            addr,
            permit,
            header_timeout,
            shutdown,
        } = self;
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut()
                .insert(crate::engine::ConnectionGuard(permit.clone()));
            let server = server.clone();
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(server, req, addr).await) }
        });
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "http connection ended with an error");
                }
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Answers a connection over the limits with `503` and closes it (bounded: 1 s, the TLS
/// handshake included).
async fn refuse(stream: TcpStream, tls: Option<TlsAcceptor>, why: &'static str) {
    let answer = crate::limits::refusal(why);
    let Some(acceptor) = tls else {
        return crate::engine::answer_and_close(stream, answer).await;
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    if let Ok(Ok(stream)) = tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        let _ = tokio::time::timeout_at(deadline, crate::engine::answer_and_close(stream, answer))
            .await;
    }
}
