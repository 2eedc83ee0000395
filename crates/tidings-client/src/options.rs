//! Client configuration with documented defaults, validated once by
//! [`ClientOptionsBuilder::build`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use serde_json::{Map, Value};
use tidings_proto::packet::check_namespace;

/// The options of a [`crate::Client`].
///
/// Build them with [`ClientOptions::builder`]; every field but the URL has a default.
///
/// `Debug` never prints the auth payload: it may hold a token.
///
/// ```
/// use std::time::Duration;
/// use tidings_client::ClientOptions;
///
/// let options = ClientOptions::builder("http://127.0.0.1:3000")
///     .auth(serde_json::json!({ "clientId": "driver-7", "token": "s3cret" }))
///     .reconnect_delay(Duration::from_millis(500), Duration::from_secs(10))
///     .build()?;
/// assert_eq!(options.namespace, "/");
/// assert!(!format!("{options:?}").contains("s3cret"));
/// # Ok::<(), tidings_client::OptionsError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The server, e.g. `http://127.0.0.1:3000` (`ws://` works too; `https://` / `wss://` with
    /// [`ClientOptionsBuilder::tls`]). A path in the URL, as in
    /// `http://host:3000/chat`, names the namespace unless [`ClientOptionsBuilder::namespace`]
    /// sets one, as with `socket.io-client`.
    pub url: String,
    /// The HTTP path of the Engine.IO endpoint. Default `/socket.io/`.
    pub path: String,
    /// The Socket.IO namespace to join. Default `/`.
    pub namespace: String,
    /// The CONNECT auth payload, a JSON object (e.g. `{"clientId":"driver-7"}`; durable
    /// subscriptions need a `clientId`). Sent again on every reconnect. Default `{}`.
    pub auth: Value,
    /// Reconnect when the connection drops. Default true.
    pub reconnect: bool,
    /// The delay before the first reconnect attempt; it doubles per failed attempt. Default 1 s.
    pub reconnect_delay_min: Duration,
    /// The longest delay between reconnect attempts. Default 5 s.
    pub reconnect_delay_max: Duration,
    /// Randomization of each delay: a factor of 0.5 picks it within ±50 %, so that clients
    /// dropped together do not come back together. Between 0 and 1. Default 0.5.
    pub reconnect_jitter: f64,
    /// Give up after this many failed reconnect attempts in a row. Default `None`: never.
    pub max_reconnect_attempts: Option<u32>,
    /// How long the durable-topic requests (`publish`, `subscribe`, `unsubscribe`, `history`)
    /// wait for the server's acknowledgement. Default 30 s.
    pub ack_timeout: Duration,
    /// How long one connection attempt may take: TCP, the WebSocket upgrade, the Engine.IO
    /// handshake and the namespace CONNECT reply. Default 20 s.
    pub connect_timeout: Duration,
    /// Outgoing packets that may wait for the connection task (and, while reconnecting, for
    /// the next connection) before an emit waits for room. Default 1024.
    pub command_capacity: usize,
    /// The TLS settings (the roots to trust) for an `https://` / `wss://` URL. Default none.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The WebSocket address derived from `url` and `path`.
    pub(crate) uri: Uri,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &self.url)
            .field("path", &self.path)
            .field("namespace", &self.namespace)
            .field("auth", &Redacted(&self.auth))
            .field("reconnect", &self.reconnect)
            .field("reconnect_delay_min", &self.reconnect_delay_min)
            .field("reconnect_delay_max", &self.reconnect_delay_max)
            .field("reconnect_jitter", &self.reconnect_jitter)
            .field("max_reconnect_attempts", &self.max_reconnect_attempts)
            .field("ack_timeout", &self.ack_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_capacity", &self.command_capacity)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Shows that an auth payload is set, and its keys, never its values.
struct Redacted<'a>(&'a Value);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Value::Object(map) if map.is_empty() => f.write_str("{}"),
            Value::Object(map) => {
                let mut set = f.debug_map();
                for key in map.keys() {
                    set.entry(key, &format_args!("<redacted>"));
                }
                set.finish()
            }
            _ => f.write_str("<redacted>"),
        }
    }
}

impl ClientOptions {
    /// A builder for a client of the server at `url`, starting from the defaults.
    pub fn builder(url: impl Into<String>) -> ClientOptionsBuilder {
        ClientOptionsBuilder {
            url: url.into(),
            path: "/socket.io/".to_owned(),
            namespace: None,
            auth: Value::Object(Map::new()),
            reconnect: true,
            reconnect_delay_min: Duration::from_secs(1),
            reconnect_delay_max: Duration::from_secs(5),
            reconnect_jitter: 0.5,
            max_reconnect_attempts: None,
            ack_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(20),
            command_capacity: 1024,
            tls: None,
        }
    }

    /// The WebSocket URL the client connects to, e.g.
    /// `ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket`.
    pub fn websocket_url(&self) -> String {
        self.uri.to_string()
    }
}

/// The options are invalid; the message says which one and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client options: {0}")]
pub struct OptionsError(String);

/// Builder for [`ClientOptions`]; [`build`](Self::build) validates. `Debug` hides the auth
/// payload.
#[derive(Clone)]
pub struct ClientOptionsBuilder {
    url: String,
    path: String,
    namespace: Option<String>,
    auth: Value,
    reconnect: bool,
    reconnect_delay_min: Duration,
    reconnect_delay_max: Duration,
    reconnect_jitter: f64,
    max_reconnect_attempts: Option<u32>,
    ack_timeout: Duration,
    connect_timeout: Duration,
    command_capacity: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for ClientOptionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptionsBuilder")
            .field("url", &self.url)
            .field("path", &self.path)
            .field("namespace", &self.namespace)
            .field("auth", &Redacted(&self.auth))
            .finish_non_exhaustive()
    }
}

impl ClientOptionsBuilder {
    /// Connects over TLS (`https://` / `wss://` URLs) with this rustls configuration: the roots
    /// it trusts decide which certificates are accepted. For example, a private CA:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tidings_client::{ClientOptions, rustls};
    ///
    /// # fn ca_der() -> rustls::pki_types::CertificateDer<'static> { unimplemented!() }
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(ca_der())?;
    /// let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
    ///     rustls::crypto::ring::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()?
    /// .with_root_certificates(roots)
    /// .with_no_client_auth();
    /// let options = ClientOptions::builder("https://127.0.0.1:3443")
    ///     .tls(Arc::new(tls))
    ///     .build()?;
    /// assert!(options.websocket_url().starts_with("wss://"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// See [`ClientOptions::path`].
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
    /// See [`ClientOptions::namespace`].
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }
    /// See [`ClientOptions::auth`].
    pub fn auth(mut self, auth: Value) -> Self {
        self.auth = auth;
        self
    }
    /// See [`ClientOptions::reconnect`].
    pub fn reconnect(mut self, yes: bool) -> Self {
        self.reconnect = yes;
        self
    }
    /// See [`ClientOptions::reconnect_delay_min`] and [`ClientOptions::reconnect_delay_max`].
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_delay_min = min;
        self.reconnect_delay_max = max;
        self
    }
    /// See [`ClientOptions::reconnect_jitter`].
    pub fn reconnect_jitter(mut self, factor: f64) -> Self {
        self.reconnect_jitter = factor;
        self
    }
    /// See [`ClientOptions::max_reconnect_attempts`].
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_reconnect_attempts = attempts;
        self
    }
    /// See [`ClientOptions::ack_timeout`].
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }
    /// See [`ClientOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// See [`ClientOptions::command_capacity`].
    pub fn command_capacity(mut self, capacity: usize) -> Self {
        self.command_capacity = capacity;
        self
    }

    /// Validates and returns the options.
    ///
    /// # Errors
    ///
    /// [`OptionsError`] for a URL that is not `http://`, `ws://`, `https://` or `wss://` with a
    /// host, `https://` / `wss://` without [`tls`](Self::tls) (or `tls` with a plain URL), a path that does not start with `/`, an invalid namespace, an auth
    /// payload that is not an object, a zero timeout or delay, a maximum delay below the
    /// minimum, a jitter outside 0..=1 or a zero command capacity.
    pub fn build(self) -> Result<ClientOptions, OptionsError> {
        let err = |message: String| Err(OptionsError(message));
        let url: Uri = match self.url.parse() {
            Ok(url) => url,
            Err(e) => return err(format!("url {:?}: {e}", self.url)),
        };
        let secure = match url.scheme_str() {
            Some("http" | "ws") => false,
            Some("https" | "wss") => true,
            _ => {
                return err(format!(
                    "url {:?}: expected http://, ws://, https:// or wss://",
                    self.url
                ));
            }
        };
        match (secure, self.tls.is_some()) {
            (true, false) => {
                return err(format!(
                    "url {:?}: https/wss needs ClientOptionsBuilder::tls (the roots to trust)",
                    self.url
                ));
            }
            (false, true) => {
                return err(format!(
                    "url {:?}: TLS settings given for a plain http/ws URL; use https:// or wss://",
                    self.url
                ));
            }
            _ => {}
        }
        let Some(authority) = url.authority().cloned() else {
            return err(format!("url {:?}: no host", self.url));
        };
        let namespace = match self.namespace {
            Some(namespace) => namespace,
            None => match url.path() {
                "" | "/" => "/".to_owned(),
                path => path.to_owned(),
            },
        };
        if check_namespace(&namespace).is_err() {
            return err(format!(
                "namespace {namespace:?} must start with '/' and contain no ','"
            ));
        }
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            return err(format!(
                "path {:?} must start with '/' and hold no query",
                self.path
            ));
        }
        if !self.auth.is_object() {
            return err("auth must be a JSON object".to_owned());
        }
        if self.reconnect_delay_min.is_zero() || self.reconnect_delay_max < self.reconnect_delay_min
        {
            return err("reconnect delays need 0 < min <= max".to_owned());
        }
        if !(0.0..=1.0).contains(&self.reconnect_jitter) {
            return err(format!(
                "reconnect jitter {} must be between 0 and 1",
                self.reconnect_jitter
            ));
        }
        if self.ack_timeout.is_zero() || self.connect_timeout.is_zero() {
            return err("ack and connect timeouts must be positive".to_owned());
        }
        if self.command_capacity == 0 {
            return err("command capacity must be positive".to_owned());
        }
        let uri = websocket_uri(authority, &self.path, secure)
            .map_err(|e| OptionsError(format!("url {:?}: {e}", self.url)))?;
        Ok(ClientOptions {
            url: self.url,
            path: self.path,
            namespace,
            auth: self.auth,
            reconnect: self.reconnect,
            reconnect_delay_min: self.reconnect_delay_min,
            reconnect_delay_max: self.reconnect_delay_max,
            reconnect_jitter: self.reconnect_jitter,
            max_reconnect_attempts: self.max_reconnect_attempts,
            ack_timeout: self.ack_timeout,
            connect_timeout: self.connect_timeout,
            command_capacity: self.command_capacity,
            tls: self.tls,
            uri,
        })
    }
}

fn websocket_uri(authority: Authority, path: &str, secure: bool) -> Result<Uri, http::Error> {
    let path_and_query: PathAndQuery = format!("{path}?EIO=4&transport=websocket").parse()?;
    Uri::builder()
        .scheme(Scheme::try_from(if secure { "wss" } else { "ws" })?)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults() {
        let options = ClientOptions::builder("http://127.0.0.1:3000")
            .build()
            .unwrap();
        assert_eq!(options.path, "/socket.io/");
        assert_eq!(options.namespace, "/");
        assert_eq!(options.auth, json!({}));
        assert!(options.reconnect);
        assert_eq!(options.reconnect_delay_min, Duration::from_secs(1));
        assert_eq!(options.reconnect_delay_max, Duration::from_secs(5));
        assert_eq!(options.ack_timeout, Duration::from_secs(30));
        assert_eq!(
            options.websocket_url(),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn url_path_names_the_namespace() {
        let options = ClientOptions::builder("ws://localhost:4000/chat")
            .path("/rt")
            .build()
            .unwrap();
        assert_eq!(options.namespace, "/chat");
        assert_eq!(
            options.websocket_url(),
            "ws://localhost:4000/rt?EIO=4&transport=websocket"
        );
        let options = ClientOptions::builder("http://localhost:4000/chat")
            .namespace("/admin")
            .build()
            .unwrap();
        assert_eq!(options.namespace, "/admin");
    }

    #[test]
    fn tls_urls() {
        let tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        );
        for url in ["https://localhost:4000", "wss://localhost:4000"] {
            let options = ClientOptions::builder(url)
                .tls(tls.clone())
                .build()
                .unwrap();
            assert_eq!(
                options.websocket_url(),
                "wss://localhost:4000/socket.io/?EIO=4&transport=websocket"
            );
            assert!(format!("{options:?}").contains("tls: true"));
        }
        let plain = ClientOptions::builder("http://localhost:4000").tls(tls);
        assert!(plain.build().is_err());
    }

    #[test]
    fn rejects_nonsense() {
        let bad = [
            ClientOptions::builder("not a url"),
            ClientOptions::builder("https://example.com"),
            ClientOptions::builder("ftp://example.com"),
            ClientOptions::builder("/relative"),
            ClientOptions::builder("http://h").path("socket.io"),
            ClientOptions::builder("http://h").namespace("chat"),
            ClientOptions::builder("http://h").namespace("/a,b"),
            ClientOptions::builder("http://h").auth(json!("token")),
            ClientOptions::builder("http://h").reconnect_delay(Duration::ZERO, Duration::ZERO),
            ClientOptions::builder("http://h")
                .reconnect_delay(Duration::from_secs(2), Duration::from_secs(1)),
            ClientOptions::builder("http://h").reconnect_jitter(1.5),
            ClientOptions::builder("http://h").ack_timeout(Duration::ZERO),
            ClientOptions::builder("http://h").command_capacity(0),
        ];
        for builder in bad {
            let shown = format!("{builder:?}");
            let error = builder.build().unwrap_err().to_string();
            assert!(
                error.starts_with("invalid client options: "),
                "{shown}: {error}"
            );
        }
    }

    #[test]
    fn debug_hides_the_auth_payload() {
        let builder = ClientOptions::builder("http://h")
            .auth(json!({ "clientId": "driver-7", "token": "s3cret" }));
        assert!(!format!("{builder:?}").contains("s3cret"));
        let options = builder.build().unwrap();
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("driver-7"), "{shown}");
        assert!(shown.contains("\"token\": <redacted>"), "{shown}");
    }
}
