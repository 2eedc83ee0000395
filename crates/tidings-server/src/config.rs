//! Server configuration with documented defaults, validated once by [`ServerConfigBuilder::build`].

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::engine::EngineConfig;
pub use crate::engine::{CorsConfig, CorsOrigins};
use crate::limits::Limits;
pub use tidings_proto::parser::Parser;

/// The configuration of a [`crate::Server`].
///
/// Build it with [`ServerConfig::builder`]; every field has a default that suits production.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The HTTP path clients connect to. Default `/socket.io/`.
    pub path: String,
    /// How often the server pings each session. Default 25 s.
    pub ping_interval: Duration,
    /// How long a ping may wait for its pong before the session is closed. Default 20 s.
    pub ping_timeout: Duration,
    /// Largest accepted message (WebSocket) or polling request body, in bytes. Default 1 MB.
    pub max_payload: usize,
    /// How long a new session may take to connect to a namespace. Default 45 s.
    pub connect_timeout: Duration,
    /// How long a polling→WebSocket upgrade may take. Default 10 s.
    pub upgrade_timeout: Duration,
    /// Bytes that may wait in one session's outbound buffer before the session is judged too
    /// slow and disconnected with the reason `slow client`. Default 16 MiB.
    ///
    /// This is the slow-consumer policy: a message is never skipped; a client that cannot keep
    /// up is disconnected (counted and logged) and everything queued before stays in order.
    pub max_buffered_bytes: usize,
    /// Accept the HTTP long-polling transport. Default true.
    pub allow_polling: bool,
    /// Accept the WebSocket transport. Default true.
    pub allow_websocket: bool,
    /// CORS for browser polling. Default disabled.
    pub cors: CorsConfig,
    /// Handle the built-in events `join`, `leave` and `broadcast` on every namespace (what
    /// `tidings serve` offers to clients with no server code). Default false for the library.
    pub builtin_events: bool,
    /// Verified identities and permissions (JSON Web Tokens; see [`crate::auth`]). Default
    /// `None`: development mode, every client may do everything.
    pub auth: Option<Arc<Authenticator>>,
    /// Connection State Recovery (socket.io's `connectionStateRecovery`). Default `None`: off,
    /// as in socket.io, and nothing is logged.
    pub recovery: Option<RecoveryConfig>,
    /// Connection and traffic limits (docs/SECURITY.md). Default: see [`Limits`].
    pub limits: Limits,
    /// Origins (`https://app.example.com`) allowed to open a WebSocket from a browser. A
    /// browser upgrade with another `Origin` gets 403; requests without `Origin` (non-browser
    /// clients) are not affected. Default `None`: any origin.
    pub ws_allowed_origins: Option<Vec<String>>,
    /// What `GET /metrics` exposes (on by default). See [`crate::metrics`].
    pub metrics: crate::metrics::MetricsConfig,
    /// The packet encoding every client of this server speaks (Node's `parser` option):
    /// [`Parser::Default`] (`socket.io-parser`) or [`Parser::Msgpack`]
    /// (`socket.io-msgpack-parser`). Default [`Parser::Default`]. A packet in the other
    /// encoding closes its connection (logged at info, with a hint).
    pub parser: Parser,
    /// Accept `socket.io-client` 2.x (Engine.IO v3 and the Socket.IO v4 protocol), like Node's
    /// `allowEIO3`. Default false: such a client gets 400 `Unsupported protocol version`.
    pub allow_eio3: bool,
}

/// Connection State Recovery: a client that lost its connection gets back its socket id, its
/// rooms and every event it missed, if it reconnects within
/// [`max_disconnection_duration`](Self::max_disconnection_duration). See
/// [`crate::recovery`] and docs/PROTOCOL.md.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryConfig {
    /// How long a disconnected session (and each recoverable packet) is kept. Default 2 min.
    pub max_disconnection_duration: Duration,
    /// Whether a recovered client skips the namespace's connect middlewares, as in socket.io.
    /// Default true.
    pub skip_middlewares: bool,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
        }
    }
}

impl RecoveryConfig {
    /// The defaults with another recovery window.
    pub fn with_max_disconnection_duration(mut self, d: Duration) -> Self {
        self.max_disconnection_duration = d;
        self
    }

    /// The defaults, running (`false`) or skipping (`true`) middlewares on recovery.
    pub fn with_skip_middlewares(mut self, yes: bool) -> Self {
        self.skip_middlewares = yes;
        self
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        let engine = EngineConfig::default();
        ServerConfig {
            path: engine.path,
            ping_interval: engine.ping_interval,
            ping_timeout: engine.ping_timeout,
            max_payload: engine.max_payload,
            connect_timeout: Duration::from_secs(45),
            upgrade_timeout: engine.upgrade_timeout,
            max_buffered_bytes: engine.max_buffered_bytes,
            allow_polling: engine.allow_polling,
            allow_websocket: engine.allow_websocket,
            cors: engine.cors,
            builtin_events: false,
            auth: None,
            recovery: None,
            limits: Limits::default(),
            ws_allowed_origins: engine.ws_allowed_origins,
            metrics: crate::metrics::MetricsConfig::default(),
            parser: Parser::Default,
            allow_eio3: false,
        }
    }
}

impl ServerConfig {
    /// The part of this configuration the transport ([`crate::engine`]) uses.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            path: self.path.clone(),
            ping_interval: self.ping_interval,
            ping_timeout: self.ping_timeout,
            max_payload: self.max_payload,
            upgrade_timeout: self.upgrade_timeout,
            max_buffered_bytes: self.max_buffered_bytes,
            allow_polling: self.allow_polling,
            allow_websocket: self.allow_websocket,
            cors: self.cors.clone(),
            ws_allowed_origins: self.ws_allowed_origins.clone(),
            body_timeout: self.limits.body_timeout,
            allow_eio3: self.allow_eio3,
        }
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ServerConfigBuilder {
        ServerConfigBuilder {
            config: ServerConfig::default(),
        }
    }
}

/// A configuration value is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// Builder for [`ServerConfig`]; [`build`](Self::build) validates.
#[derive(Debug, Clone)]
pub struct ServerConfigBuilder {
    config: ServerConfig,
}

// One setter per field, each documented where the field is: a duplicate finder pairs them by
// shape; a macro would save lines and lose the docs' links.
impl ServerConfigBuilder {
    /// See [`ServerConfig::path`].
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }
    /// See [`ServerConfig::ping_interval`].
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.config.ping_interval = d;
        self
    }
    /// See [`ServerConfig::ping_timeout`].
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.config.ping_timeout = d;
        self
    }
    /// See [`ServerConfig::max_payload`].
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }
    /// See [`ServerConfig::connect_timeout`].
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }
    /// See [`ServerConfig::upgrade_timeout`].
    pub fn upgrade_timeout(mut self, d: Duration) -> Self {
        self.config.upgrade_timeout = d;
        self
    }
    /// See [`ServerConfig::max_buffered_bytes`].
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.config.max_buffered_bytes = bytes;
        self
    }
    /// See [`ServerConfig::allow_polling`].
    pub fn allow_polling(mut self, yes: bool) -> Self {
        self.config.allow_polling = yes;
        self
    }
    /// See [`ServerConfig::allow_websocket`].
    pub fn allow_websocket(mut self, yes: bool) -> Self {
        self.config.allow_websocket = yes;
        self
    }
    /// See [`ServerConfig::cors`].
    pub fn cors(mut self, cors: CorsConfig) -> Self {
        self.config.cors = cors;
        self
    }
    /// See [`ServerConfig::auth`].
    pub fn auth(mut self, authenticator: Authenticator) -> Self {
        self.config.auth = Some(Arc::new(authenticator));
        self
    }
    /// See [`ServerConfig::builtin_events`].
    pub fn builtin_events(mut self, yes: bool) -> Self {
        self.config.builtin_events = yes;
        self
    }

    /// See [`ServerConfig::recovery`].
    pub fn recovery(mut self, recovery: Option<RecoveryConfig>) -> Self {
        self.config.recovery = recovery;
        self
    }

    /// See [`ServerConfig::limits`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// See [`ServerConfig::metrics`].
    pub fn metrics(mut self, metrics: crate::metrics::MetricsConfig) -> Self {
        self.config.metrics = metrics;
        self
    }

    /// See [`ServerConfig::ws_allowed_origins`].
    pub fn ws_allowed_origins(mut self, origins: Option<Vec<String>>) -> Self {
        self.config.ws_allowed_origins = origins;
        self
    }

    /// See [`ServerConfig::allow_eio3`].
    pub fn allow_eio3(mut self, yes: bool) -> Self {
        self.config.allow_eio3 = yes;
        self
    }
    /// See [`ServerConfig::parser`].
    pub fn parser(mut self, parser: Parser) -> Self {
        self.config.parser = parser;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<ServerConfig, ConfigError> {
        let c = self.config;
        if !c.path.starts_with('/') {
            return Err(ConfigError(format!(
                "path must start with '/', got {:?}",
                c.path
            )));
        }
        if c.ping_interval.is_zero() || c.ping_timeout.is_zero() {
            return Err(ConfigError(
                "ping interval and ping timeout must be positive".into(),
            ));
        }
        if c.max_payload < 64 {
            return Err(ConfigError(format!(
                "max payload must be at least 64 bytes, got {}",
                c.max_payload
            )));
        }
        if c.max_buffered_bytes < c.max_payload {
            return Err(ConfigError(
                "max buffered bytes must be at least max payload, or one large message could never be sent".into(),
            ));
        }
        c.limits.validate().map_err(ConfigError)?;
        if c.connect_timeout.is_zero() {
            return Err(ConfigError("the connect timeout must be positive".into()));
        }
        if !c.allow_polling && !c.allow_websocket {
            return Err(ConfigError("at least one transport must be allowed".into()));
        }
        if let Some(r) = &c.recovery {
            if r.max_disconnection_duration.is_zero() {
                return Err(ConfigError(
                    "the recovery window (max disconnection duration) must be positive".into(),
                ));
            }
        }
        for pattern in &c.metrics.topics {
            let probe = pattern.replace(['*', '>'], "x");
            if tidings_core::store::Topic::new(&probe).is_err() {
                return Err(ConfigError(format!(
                    "metrics topic pattern {pattern:?} is not a topic pattern (segments of [A-Za-z0-9_:-] or `*`, `>` last)"
                )));
            }
        }
        if let CorsOrigins::List(list) = &c.cors.origins {
            if list.iter().any(|o| o.is_empty()) {
                return Err(ConfigError("a CORS origin must not be empty".into()));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(ServerConfig::builder().build().is_ok());
    }

    #[test]
    fn rejects_nonsense() {
        assert!(ServerConfig::builder().path("socket.io").build().is_err());
        assert!(
            ServerConfig::builder()
                .ping_interval(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(
            ServerConfig::builder()
                .max_buffered_bytes(10)
                .build()
                .is_err()
        );
        assert!(
            ServerConfig::builder()
                .allow_polling(false)
                .allow_websocket(false)
                .build()
                .is_err()
        );
        let metrics = |topics: &[&str]| crate::metrics::MetricsConfig {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..crate::metrics::MetricsConfig::default()
        };
        for bad in ["a b", "", "a..b"] {
            let built = ServerConfig::builder().metrics(metrics(&[bad])).build();
            assert!(built.is_err(), "metrics topic pattern {bad:?} accepted");
        }
        for good in ["orders.*", "billing.>", "pickup"] {
            let built = ServerConfig::builder().metrics(metrics(&[good])).build();
            assert!(built.is_ok(), "{good}");
        }
    }
}
