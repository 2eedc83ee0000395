//! `tidings serve`: the server with the built-in events, configured by flags and `TIDINGS_…`
//! environment variables.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config_file::ByteSize;
use anyhow::Context;
use clap::{Args, ValueEnum};
use tidings_cluster_redis::{RedisCluster, RedisClusterConfig};
use tidings_core::session_log::SessionLog;
use tidings_core::store::Store;
use tidings_server::metrics::MetricsConfig;
use tidings_server::{CorsConfig, CorsOrigins, Parser, RecoveryConfig, Server, ServerConfig};
use tidings_store_journal::{JournalConfig, JournalStore};
use tidings_store_redis::{RedisConfig, RedisSessionLog, RedisStore, redact_url};
use tidings_store_sqlite::{SqliteConfig, SqliteSessionLog, SqliteStore};

use crate::config_file::{ConfigFile, KeyOverride};

/// Where durable topics are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A journal in `--data-dir`/journal (the default): the state in memory, every change
    /// appended to disk with group commit. Durable across restarts, crashes and power loss.
    Journal,
    /// The SQLite file `--data-dir`/tidings.sqlite3 of tidings before the journal. Chosen by
    /// itself when the data directory holds one and no journal.
    Sqlite,
    /// In memory: lost when the server stops. For tests and demos.
    Memory,
    /// Redis at `--redis URL` (what `--redis` selects): shared by every node on that Redis.
    Redis,
}

/// When a publish counts as durable (journal and SQLite stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync before confirming: survives power loss (the default).
    Full,
    /// Confirm once written to the OS: survives a crash of tidings, not of the machine; faster.
    Os,
}

impl From<DurabilityArg> for tidings_core::store::Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Full => tidings_core::store::Durability::Full,
            DurabilityArg::Os => tidings_core::store::Durability::Os,
        }
    }
}

/// The Socket.IO packet encoding clients speak (Node's `parser` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParserArg {
    /// socket.io-parser: what every client speaks unless given another parser.
    Default,
    /// socket.io-msgpack-parser (npm): MessagePack, every packet one binary message.
    Msgpack,
}

impl From<ParserArg> for Parser {
    fn from(arg: ParserArg) -> Self {
        match arg {
            ParserArg::Default => Parser::Default,
            ParserArg::Msgpack => Parser::Msgpack,
        }
    }
}

/// Options of `tidings serve`. Every flag can also be set by the environment variable shown.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TIDINGS_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free port; the chosen address is logged and printed).
    #[arg(long, env = "TIDINGS_PORT", default_value_t = 3000)]
    port: u16,
    /// HTTP path of the Socket.IO endpoint.
    #[arg(long, env = "TIDINGS_PATH", default_value = "/socket.io/")]
    path: String,
    /// Origin allowed to use the polling transport from a browser (repeatable; `*` for any).
    /// In the environment, separate several with commas.
    #[arg(
        long = "cors-origin",
        env = "TIDINGS_CORS_ORIGIN",
        value_delimiter = ','
    )]
    cors_origin: Vec<String>,
    /// Allow credentials (cookies) on CORS requests.
    #[arg(long, env = "TIDINGS_CORS_CREDENTIALS")]
    cors_credentials: bool,
    /// Largest accepted message or polling body, in bytes.
    #[arg(long, env = "TIDINGS_MAX_PAYLOAD", default_value_t = 1_000_000)]
    max_payload: usize,
    /// Bytes that may wait for one slow client before it is disconnected.
    #[arg(long, env = "TIDINGS_MAX_BUFFERED_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_buffered_bytes: usize,
    /// Where durable topics are kept [default: journal; sqlite when --data-dir holds the SQLite
    /// store of an earlier tidings and no journal; redis with --redis].
    #[arg(long, value_enum, env = "TIDINGS_STORE")]
    store: Option<StoreKind>,
    /// Directory of the embedded store and the recovery log (created if missing).
    #[arg(long, env = "TIDINGS_DATA_DIR", default_value = "./tidings-data")]
    data_dir: PathBuf,
    /// When a publish counts as durable with the embedded store.
    #[arg(long, value_enum, env = "TIDINGS_DURABILITY", default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
    /// Verify clients with HS256 JSON Web Tokens signed with this shared secret (at least 32
    /// bytes). Clients connect with `auth: {token}`; the API wants `Authorization: Bearer`.
    #[arg(
        long,
        env = "TIDINGS_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    jwt_secret: Option<String>,
    /// Verify clients with JSON Web Tokens signed by the private half of this PEM public key
    /// (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA).
    #[arg(long, env = "TIDINGS_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// Run as one node of several on this Redis (`redis://[user:password@]host:port[/db]`):
    /// durable topics in Redis Streams, room broadcasts and remote room operations over Redis
    /// pub/sub, the recovery log in Redis. See docs/DEPLOY.md and docs/REDIS.md.
    #[arg(long, env = "TIDINGS_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Prefix of every Redis key and channel: nodes that work together use the same one.
    #[arg(long, env = "TIDINGS_REDIS_PREFIX")]
    redis_prefix: Option<String>,
    /// With --redis: the key (channel prefix) of Node Socket.IO's Redis adapter and emitter
    /// whose broadcasts and room operations reach this node's clients (default `socket.io`,
    /// theirs), or `off`. See docs/DEPLOY.md, "Node services and clusters".
    #[arg(long, env = "TIDINGS_NODE_ADAPTER_KEY", value_name = "KEY|off")]
    node_adapter_key: Option<String>,
    /// With --redis: also send this node's broadcasts in the Node adapter's form, so that Node
    /// Socket.IO servers on `@socket.io/redis-adapter` (same Redis, same key) deliver them to
    /// their clients: one cluster of Node and tidings nodes, in which the adapter's requests
    /// (fetchSockets, serverCount, broadcasts with acks) count and get answers from this node.
    /// Off by default (a second publish per broadcast).
    #[arg(long, env = "TIDINGS_NODE_CLUSTER")]
    node_cluster: bool,
    /// Connection State Recovery (socket.io-client's `connectionStateRecovery`): a client that
    /// reconnects within the window gets back its id, its rooms and every event it missed.
    /// Kept in the store: it survives restarts (SQLite) and node changes (Redis).
    #[arg(long, env = "TIDINGS_RECOVERY")]
    recovery: bool,
    /// The packet encoding every client speaks [default: default, or `[protocol] parser`]:
    /// `msgpack` for clients built with socket.io-msgpack-parser. A client speaking the other
    /// one is refused (logged at info, with a hint).
    #[arg(long, value_enum, env = "TIDINGS_PARSER")]
    parser: Option<ParserArg>,
    /// Also accept socket.io-client 2.x (Engine.IO v3), like Node's `allowEIO3` [default:
    /// off, or `[protocol] allow_eio3`]. Off, such a client gets 400 `Unsupported protocol
    /// version`.
    #[arg(long, env = "TIDINGS_ALLOW_EIO3")]
    allow_eio3: bool,
    /// How long a disconnected session stays recoverable, in milliseconds.
    #[arg(long, env = "TIDINGS_RECOVERY_WINDOW_MS")]
    recovery_window_ms: Option<u64>,
    /// `GET /metrics` (Prometheus text format; admin token required when tokens are
    /// configured): `on` (default) or `off`. See docs/OPERATIONS.md.
    #[arg(long, value_enum, env = "TIDINGS_METRICS")]
    metrics: Option<OnOff>,
    /// Topic pattern whose topics get per-topic metrics series (repeatable; `orders.*`,
    /// `billing.>`). Besides these, the `--metrics-top-topics` most active topics get them.
    #[arg(
        long = "metrics-topic",
        env = "TIDINGS_METRICS_TOPICS",
        value_delimiter = ','
    )]
    metrics_topics: Vec<String>,
    /// How many of the most active topics get per-topic metrics series (default 10).
    #[arg(long, env = "TIDINGS_METRICS_TOP_TOPICS")]
    metrics_top_topics: Option<usize>,
    /// TOML file with delivery settings and per-topic retention (see docs/CONFIGURATION.md).
    #[arg(long, env = "TIDINGS_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    limits: crate::limits::LimitArgs,
    #[command(flatten)]
    admin: crate::admin_ui::AdminArgs,
    #[command(flatten)]
    tls: crate::tls::TlsArgs,
}

/// The Redis settings, when `--redis` (or `[redis] url`) is set.
fn redis_config(args: &ServeArgs, file: &ConfigFile) -> anyhow::Result<Option<RedisConfig>> {
    let url = args.redis.clone().or_else(|| file.redis_url());
    let Some(url) = url else {
        anyhow::ensure!(
            args.store != Some(StoreKind::Redis),
            "--store redis needs --redis URL (or TIDINGS_REDIS, or [redis] url in the config file)"
        );
        return Ok(None);
    };
    let mut config = RedisConfig {
        url,
        ..RedisConfig::default()
    };
    if let Some(prefix) = args.redis_prefix.clone().or_else(|| file.redis_prefix()) {
        config.prefix = prefix;
    }
    Ok(Some(config))
}

/// The memory the store may fill with messages (`--max-retained-bytes`): the journal and memory
/// stores keep every retained message in memory; SQLite and Redis keep them on disk (Redis
/// has its own `maxmemory`), so for them the bound is None and setting it is a warning.
fn retained_bound(args: &ServeArgs, file: &ConfigFile, kind: StoreKind) -> Option<u64> {
    let (bound, explicit) = args.limits.max_retained_bytes(file.limits());
    match kind {
        StoreKind::Journal | StoreKind::Memory => {
            match bound {
                Some(bytes) if !explicit => tracing::info!(
                    max = %ByteSize(bytes),
                    "retained messages may fill half of this machine's memory \
                     (--max-retained-bytes to change it)"
                ),
                Some(bytes) => tracing::info!(max = %ByteSize(bytes), "max retained bytes"),
                None => tracing::warn!(
                    "--max-retained-bytes unlimited: publishers can fill this process's memory"
                ),
            }
            bound
        }
        StoreKind::Sqlite | StoreKind::Redis => {
            if explicit {
                tracing::warn!(
                    "--max-retained-bytes applies to the journal and memory stores only: ignored"
                );
            }
            None
        }
    }
}

/// The SQLite store file of tidings before the journal, in the data directory.
const SQLITE_FILE: &str = "tidings.sqlite3";
/// The journal's directory, in the data directory.
const JOURNAL_DIR: &str = "journal";

/// The store `tidings serve` uses: `--store` when given; else Redis with `--redis`; else the
/// journal, unless the data directory holds the SQLite store of an earlier tidings (and no
/// journal), whose queues then keep being served from it.
fn store_kind(args: &ServeArgs, redis: bool) -> StoreKind {
    if let Some(kind) = args.store {
        return kind;
    }
    if redis {
        return StoreKind::Redis;
    }
    let sqlite = args.data_dir.join(SQLITE_FILE);
    if sqlite.exists() && !args.data_dir.join(JOURNAL_DIR).exists() {
        tracing::warn!(
            path = %sqlite.display(),
            "found the SQLite store of an earlier tidings and no journal: serving it (--store sqlite). \
             The journal store is the default now and several times faster; to move, drain its \
             queues and start with --store journal (docs/CONFIGURATION.md)"
        );
        return StoreKind::Sqlite;
    }
    StoreKind::Journal
}

fn open_store(
    args: &ServeArgs,
    kind: StoreKind,
    redis: Option<&RedisConfig>,
    max_retained_bytes: Option<u64>,
) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(redis) = redis {
        anyhow::ensure!(
            kind == StoreKind::Redis,
            "--redis keeps durable topics in Redis: drop --store {}",
            format!("{kind:?}").to_lowercase()
        );
        let store = RedisStore::open(redis.clone()).context("invalid Redis settings")?;
        tracing::info!(url = %redact_url(&redis.url), prefix = %redis.prefix, "store: redis");
        return Ok(Arc::new(store));
    }
    Ok(match kind {
        StoreKind::Redis => anyhow::bail!("--store redis needs --redis URL"),
        StoreKind::Memory => {
            tracing::warn!("--store memory: durable topics are lost when the server stops");
            Arc::new(
                tidings_store_memory::MemoryStore::new().max_retained_bytes(max_retained_bytes),
            )
        }
        StoreKind::Journal => {
            let dir = args.data_dir.join(JOURNAL_DIR);
            let durability = args.durability.into();
            let store = JournalStore::open(
                &dir,
                JournalConfig {
                    durability,
                    max_retained_bytes,
                    ..Default::default()
                },
            )
            .with_context(|| format!("cannot open the store at {}", dir.display()))?;
            tracing::info!(path = %dir.display(), durability = ?args.durability, "store opened: journal");
            Arc::new(store)
        }
        StoreKind::Sqlite => {
            let path = args.data_dir.join(SQLITE_FILE);
            let durability = args.durability.into();
            let store = SqliteStore::open(
                &path,
                SqliteConfig {
                    durability,
                    ..Default::default()
                },
            )
            .with_context(|| format!("cannot open the store at {}", path.display()))?;
            tracing::info!(path = %path.display(), durability = ?args.durability, "store opened: sqlite");
            Arc::new(store)
        }
    })
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Defaults < `[metrics]` in the TOML file < flags and environment.
fn metrics_config(args: &ServeArgs, file: &ConfigFile) -> MetricsConfig {
    let mut m = MetricsConfig::default();
    file.apply_metrics(&mut m);
    if let Some(on) = args.metrics {
        m.enabled = on == OnOff::On;
    }
    if !args.metrics_topics.is_empty() {
        m.topics = args.metrics_topics.clone();
    }
    if let Some(n) = args.metrics_top_topics {
        m.top_topics = n;
    }
    m
}

fn config(args: &ServeArgs, file: &ConfigFile) -> anyhow::Result<ServerConfig> {
    let origins = if args.cors_origin.is_empty() {
        CorsOrigins::Disabled
    } else if args.cors_origin.iter().any(|o| o == "*") {
        CorsOrigins::Any
    } else {
        CorsOrigins::List(args.cors_origin.clone())
    };
    let keys = KeyOverride {
        jwt_secret: args.jwt_secret.as_deref(),
        jwt_public_key: args.jwt_public_key.as_deref(),
    };
    let mut builder = ServerConfig::builder();
    match file.authenticator(&keys)? {
        Some(authenticator) => {
            tracing::info!(
                algorithm = %authenticator.algorithm(),
                "clients must present a JSON Web Token; permissions from its `tidings` claim"
            );
            builder = builder.auth(authenticator);
        }
        None => tracing::warn!(
            "NO AUTHENTICATION: every client may use every topic, room and queue, and claim any \
             identity. Development mode only: set --jwt-secret or --jwt-public-key (docs/SECURITY.md)"
        ),
    }
    let recovery = if args.recovery || file.recovery_enabled() {
        let mut recovery = RecoveryConfig::default();
        if let Some(ms) = args
            .recovery_window_ms
            .or_else(|| file.recovery_window_ms())
        {
            recovery = recovery.with_max_disconnection_duration(Duration::from_millis(ms));
        }
        Some(recovery)
    } else {
        None
    };
    let parser = match args.parser {
        Some(parser) => parser.into(),
        None => file.parser()?.unwrap_or_default(),
    };
    if parser != Parser::Default {
        tracing::info!(parser = %parser, "clients must speak {}", parser.npm_package());
    }
    let allow_eio3 = args.allow_eio3 || file.allow_eio3();
    if allow_eio3 {
        tracing::info!("socket.io-client 2.x (Engine.IO v3) accepted");
    }
    args.limits
        .server(file.limits(), builder)
        .parser(parser)
        .allow_eio3(allow_eio3)
        .recovery(recovery)
        .path(args.path.clone())
        .max_payload(args.max_payload)
        .max_buffered_bytes(args.max_buffered_bytes)
        .cors(CorsConfig {
            origins,
            credentials: args.cors_credentials,
        })
        .builtin_events(true)
        .metrics(metrics_config(args, file))
        .build()
        .context("invalid server configuration")
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let config = config(&args, &file)?;
    let mut queue_config = file.queue_config()?;
    args.limits.queues(file.limits(), &mut queue_config)?;
    let redis = redis_config(&args, &file)?;
    let tls = args.tls.load(file.tls())?;
    let store_kind = store_kind(&args, redis.is_some());
    let max_retained_bytes = retained_bound(&args, &file, store_kind);
    if args.print_config {
        let tls_line = match &tls {
            Some(tls) => format!(
                "tls: on (cert {}, key {})",
                tls.cert.display(),
                tls.key.display()
            ),
            None => "tls: off".to_owned(),
        };
        let printed = match &redis {
            Some(redis) => {
                format!("{tls_line}\n{config:#?}\nstore: redis {redis:#?}\n{queue_config:#?}")
            }
            None => format!(
                "{tls_line}\n{config:#?}\nstore: {:?} (data dir {}, durability {:?}, max_retained_bytes: {:?})\n{queue_config:#?}",
                store_kind,
                args.data_dir.display(),
                args.durability,
                max_retained_bytes,
            ),
        };
        writeln!(std::io::stdout(), "{printed}").context("cannot print the configuration")?;
        return Ok(());
    }
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("invalid listen address {}:{}", args.host, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let store = open_store(&args, store_kind, redis.as_ref(), max_retained_bytes)?;
    let server = match (&config.recovery, &redis) {
        (None, _) => Server::new(config),
        (Some(_), Some(redis)) => {
            let log = RedisSessionLog::connect(redis.clone())
                .await
                .with_context(|| {
                    format!(
                        "cannot reach Redis at {} for the recovery log",
                        redact_url(&redis.url)
                    )
                })?;
            tracing::info!("connection state recovery: on, sessions kept in Redis");
            Server::with_session_log(config, Arc::new(log) as Arc<dyn SessionLog>)
        }
        (Some(_), None) if matches!(store_kind, StoreKind::Journal | StoreKind::Sqlite) => {
            let path = args.data_dir.join("recovery.sqlite3");
            let log = SqliteSessionLog::open(&path)
                .with_context(|| format!("cannot open the recovery log at {}", path.display()))?;
            tracing::info!(path = %path.display(), "connection state recovery: on, sessions kept in SQLite");
            Server::with_session_log(config, Arc::new(log) as Arc<dyn SessionLog>)
        }
        (Some(_), None) => {
            tracing::info!("connection state recovery: on, sessions kept in memory");
            Server::new(config)
        }
    };
    if let Some(redis) = &redis {
        let node_adapter = match args
            .node_adapter_key
            .clone()
            .or_else(|| file.node_adapter_key())
            .as_deref()
        {
            Some("off") => None,
            Some(key) => Some(key.to_owned()),
            None => Some("socket.io".to_owned()),
        };
        let node_cluster = args.node_cluster || file.node_cluster();
        anyhow::ensure!(
            !node_cluster || node_adapter.is_some(),
            "--node-cluster needs the Node adapter's channels: drop --node-adapter-key off"
        );
        let cluster = RedisCluster::connect(
            RedisClusterConfig::new(redis.url.clone())
                .prefix(redis.prefix.clone())
                .node_adapter(node_adapter.clone())
                .node_cluster(node_cluster)
                .parser(server.config().parser)
                .node_max_message(args.max_payload),
        )
        .await
        .with_context(|| format!("cannot reach Redis at {}", redact_url(&redis.url)))?;
        tracing::info!(node = %tidings_core::cluster::Cluster::node_id(&cluster), "cluster: on, over Redis pub/sub");
        match &node_adapter {
            Some(key) if node_cluster => tracing::info!(
                key = %key,
                "cluster: one cluster with Node Socket.IO servers on @socket.io/redis-adapter: broadcasts both ways, their requests answered"
            ),
            Some(key) => tracing::info!(
                key = %key,
                "cluster: Node Socket.IO's Redis adapter and emitter reach this node's clients"
            ),
            None => tracing::info!(
                "cluster: Node Socket.IO's Redis adapter channels are not read (--node-adapter-key off)"
            ),
        }
        server.enable_cluster(Arc::new(cluster));
    }
    if let Some(admin) = args
        .admin
        .config(file.admin_ui(), server.config().auth.is_some())?
    {
        let namespace = admin.namespace.clone();
        server
            .enable_admin_ui(admin)
            .context("invalid Admin UI settings")?;
        tracing::info!(namespace = %namespace, "admin UI: on (docs/OPERATIONS.md)");
    }
    // Every namespace is open: clients need no server code to use the built-in events.
    server.of_dynamic(|_| true, |_| {});
    server
        .enable_queues(store, queue_config)
        .await
        .context("cannot load the durable subscriptions from the store")?;

    tracing::info!(addr = %local, path = %args.path, "tidings listening");
    let scheme = match &tls {
        Some(tls) => {
            tracing::info!(cert = %tls.cert.display(), "tls: on (https, wss)");
            "https"
        }
        None => "http",
    };
    // A machine-readable line for scripts and tests that start the server on port 0. Nobody
    // reading it (stdout closed) is no reason to stop serving: `println!` would panic.
    if let Err(e) = writeln!(
        std::io::stdout(),
        "listening on {scheme}://{local}{}",
        args.path
    ) {
        tracing::debug!(error = %e, "could not print the listening line");
    }

    let stopper = server.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.shutdown();
    });
    match tls {
        Some(tls) => {
            let config = tls.config.clone();
            tokio::spawn(crate::tls::reload_on_sighup(Arc::new(tls)));
            server.serve_tls(listener, config).await
        }
        None => server.serve(listener).await,
    }
    .context("server failed")?;
    // Let every client read its close (with the reason), and the recovery log write the
    // sessions that closed, before the process goes.
    if !server.drain(Duration::from_secs(5)).await {
        tracing::warn!(
            "the shutdown did not finish within 5 s: connections still open, or closed sessions not yet in the recovery log"
        );
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
