//! The transport's configuration: what the Engine.IO layer needs and nothing above it. A
//! `Server` derives it from its `ServerConfig`
//! (`ServerConfig::engine_config`); a program that runs the engine alone (the
//! conformance example) builds one itself.

use std::time::Duration;

/// Which origins may use the server from a browser (CORS, for HTTP long-polling).
///
/// CORS only matters to browsers using the polling transport; WebSocket upgrades and
/// non-browser clients are not affected. Disabled by default: no CORS headers are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers (the default).
    #[default]
    Disabled,
    /// Any origin (`*`; with credentials, the request's origin is reflected instead).
    Any,
    /// Only these exact origins, e.g. `https://app.example.com`.
    List(Vec<String>),
}

/// CORS settings for the polling transport.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsConfig {
    /// Allowed origins.
    pub origins: CorsOrigins,
    /// Send `Access-Control-Allow-Credentials: true` (cookies, auth headers).
    pub credentials: bool,
}

/// The configuration of an [`Engine`](super::Engine), with the defaults that
/// `ServerConfig` starts from too.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// The HTTP path clients connect to. Default `/socket.io/`.
    pub path: String,
    /// How often the server pings each session. Default 25 s.
    pub ping_interval: Duration,
    /// How long a ping may wait for its pong before the session is closed. Default 20 s.
    pub ping_timeout: Duration,
    /// Largest accepted message (WebSocket) or polling request body, in bytes. Default 1 MB.
    pub max_payload: usize,
    /// How long a polling→WebSocket upgrade may take. Default 10 s.
    pub upgrade_timeout: Duration,
    /// Bytes that may wait in one session's outbound buffer before the session is closed as
    /// a slow client. Default 16 MiB.
    pub max_buffered_bytes: usize,
    /// Accept the HTTP long-polling transport. Default true.
    pub allow_polling: bool,
    /// Accept the WebSocket transport. Default true.
    pub allow_websocket: bool,
    /// CORS for browser polling. Default disabled.
    pub cors: CorsConfig,
    /// Origins allowed to open a WebSocket from a browser. Default `None`: any origin.
    pub ws_allowed_origins: Option<Vec<String>>,
    /// How long a polling POST body may take to arrive. Default 30 s.
    pub body_timeout: Duration,
    /// Accept Engine.IO v3 clients (`socket.io-client` 2.x), like Node's `allowEIO3`. Default
    /// false: `EIO=3` gets 400 `Unsupported protocol version`.
    pub allow_eio3: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_secs(10),
            max_buffered_bytes: 16 * 1024 * 1024,
            allow_polling: true,
            allow_websocket: true,
            cors: CorsConfig::default(),
            ws_allowed_origins: None,
            body_timeout: Duration::from_secs(30),
            allow_eio3: false,
        }
    }
}
