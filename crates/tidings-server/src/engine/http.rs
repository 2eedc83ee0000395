//! The HTTP face of the engine: query parsing, CORS, the Engine.IO error bodies, and the
//! dispatch to the polling and WebSocket transports.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tidings_core::Sid;

use super::{CorsOrigins, EngineConfig};
use super::{Engine, EngineVersion, Handshake, TransportKind, polling, websocket};

/// The response body type of every engine response.
pub type Body = Full<Bytes>;

/// The Engine.IO error codes, as the reference server sends them in `{"code":…,"message":…}`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EngineError {
    UnknownTransport,
    UnknownSid,
    BadHandshakeMethod,
    BadRequest,
    Forbidden,
    UnsupportedProtocolVersion,
}

impl EngineError {
    fn code(self) -> u8 {
        match self {
            EngineError::UnknownTransport => 0,
            EngineError::UnknownSid => 1,
            EngineError::BadHandshakeMethod => 2,
            EngineError::BadRequest => 3,
            EngineError::Forbidden => 4,
            EngineError::UnsupportedProtocolVersion => 5,
        }
    }

    fn message(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "Transport unknown",
            EngineError::UnknownSid => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub(crate) fn response(self) -> Response<Body> {
        let status = match self {
            EngineError::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self.code(),
            self.message()
        );
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// The query parameters the engine reads.
#[derive(Debug, Default)]
pub(crate) struct Query<'a> {
    pub eio: Option<&'a str>,
    pub transport: Option<&'a str>,
    pub sid: Option<&'a str>,
    /// Engine.IO v3: `b64=1` asks for binary as base64 in polling responses.
    pub b64: bool,
}

impl<'a> Query<'a> {
    pub(crate) fn parse(query: &'a str) -> Query<'a> {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => q.eio = Some(value),
                "transport" => q.transport = Some(value),
                "sid" => q.sid = Some(value),
                "b64" => q.b64 = !value.is_empty() && value != "0" && value != "false",
                _ => {}
            }
        }
        q
    }
}

pub(crate) fn text_response(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

pub(crate) async fn handle(
    engine: &Engine,
    req: Request<Incoming>,
    remote_addr: SocketAddr,
) -> Response<Body> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let host = req.headers().get(header::HOST).cloned();
    let mut res = route(engine, req, remote_addr).await;
    apply_cors(engine, origin.as_ref(), host.as_ref(), &mut res);
    res
}

/// Whether a WebSocket upgrade with this `Origin` may proceed: always without
/// [`EngineConfig::ws_allowed_origins`]; else only without an `Origin` (not a browser)
/// or with one in the list.
fn websocket_origin_allowed(config: &EngineConfig, origin: Option<&HeaderValue>) -> bool {
    let Some(allowed) = &config.ws_allowed_origins else {
        return true;
    };
    match origin {
        None => true,
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a == o)),
    }
}

async fn route(engine: &Engine, req: Request<Incoming>, remote_addr: SocketAddr) -> Response<Body> {
    if req.method() == Method::OPTIONS {
        return preflight(engine, &req);
    }
    let query_string = req.uri().query().unwrap_or("").to_owned();
    let query = Query::parse(&query_string);
    let config = engine.config();
    let version = match query.eio {
        Some("4") => EngineVersion::V4,
        Some("3") if config.allow_eio3 => EngineVersion::V3,
        Some("3") => {
            if !engine
                .shared
                .refused_eio3
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::info!(
                    "refused a socket.io-client 2.x (Engine.IO v3) with 400 Unsupported protocol                      version: start the server with --allow-eio3 (TIDINGS_ALLOW_EIO3;                      ServerConfig::allow_eio3 in the library) to accept them. Logged once"
                );
            }
            return EngineError::UnsupportedProtocolVersion.response();
        }
        _ => return EngineError::UnsupportedProtocolVersion.response(),
    };
    let transport = match query.transport {
        Some("polling") if config.allow_polling => TransportKind::Polling,
        Some("websocket") if config.allow_websocket => TransportKind::WebSocket,
        _ => return EngineError::UnknownTransport.response(),
    };
    let is_ws_request = websocket::is_upgrade_request(&req);
    if transport == TransportKind::WebSocket && !is_ws_request {
        return EngineError::BadRequest.response();
    }
    if is_ws_request && !websocket_origin_allowed(config, req.headers().get(header::ORIGIN)) {
        // Cross-site WebSocket hijacking: browsers send the page's origin and enforce nothing.
        tracing::debug!(origin = ?req.headers().get(header::ORIGIN), "websocket upgrade from a disallowed origin");
        return EngineError::Forbidden.response();
    }

    match query.sid {
        None => {
            if transport == TransportKind::Polling && req.method() != Method::GET {
                return EngineError::BadHandshakeMethod.response();
            }
            let handshake = Handshake::new(remote_addr, req.headers(), query_string.clone());
            match transport {
                TransportKind::Polling => {
                    let session = engine.open_session(TransportKind::Polling, handshake, version);
                    polling::get(session, !query.b64).await
                }
                TransportKind::WebSocket => {
                    websocket::open(engine.clone(), req, handshake, version)
                }
            }
        }
        Some(sid) => {
            let Some(session) = sid.parse::<Sid>().ok().and_then(|sid| engine.session(sid)) else {
                return EngineError::UnknownSid.response();
            };
            match transport {
                TransportKind::Polling => match *req.method() {
                    Method::GET => polling::get(session, !query.b64).await,
                    Method::POST => polling::post(session, req).await,
                    _ => EngineError::BadRequest.response(),
                },
                TransportKind::WebSocket => websocket::upgrade(session, req),
            }
        }
    }
}

fn allowed_origin(engine: &Engine, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
    let cors = &engine.config().cors;
    match &cors.origins {
        CorsOrigins::Disabled => None,
        CorsOrigins::Any => match (cors.credentials, origin) {
            // `*` is not allowed with credentials: reflect the request's origin instead.
            (true, Some(origin)) => Some(origin.clone()),
            _ => Some(HeaderValue::from_static("*")),
        },
        CorsOrigins::List(list) => {
            let origin = origin?;
            let text = origin.to_str().ok()?;
            list.iter()
                .any(|allowed| allowed == text)
                .then(|| origin.clone())
        }
    }
}

/// The browser origins refused by CORS so far, so that each is logged once: a page on another
/// origin fails in the browser with nothing but `xhr poll error`, and without a line in the
/// server's log nobody would know the fix is one flag. At most [`RefusedOrigins::MAX`] are
/// remembered (the `Origin` header is the client's to choose); later ones are not logged.
#[derive(Debug, Default)]
pub(crate) struct RefusedOrigins {
    seen: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl RefusedOrigins {
    const MAX: usize = 100;

    /// Logs, at `info` and once per origin, that a request from `origin` was refused.
    fn note(&self, origin: &str) {
        let mut seen = self.seen.lock();
        if seen.len() >= Self::MAX || !seen.insert(origin.to_owned()) {
            return;
        }
        let last = seen.len() == Self::MAX;
        drop(seen);
        tracing::info!(
            origin = %origin,
            "refused a cross-origin request from {origin}: a page there cannot use HTTP \
             long-polling (the browser reports `xhr poll error`) until the origin is allowed \
             with `--cors-origin {origin}` (TIDINGS_CORS_ORIGIN; CorsConfig in the library). \
             Logged once per origin{}",
            if last { "; no more origins will be logged" } else { "" }
        );
    }
}

/// Whether `origin` (`scheme://host[:port]`) is the origin of the request itself, whose `Host`
/// is `host`: browsers send `Origin` on same-origin POSTs too (a page served behind the same
/// proxy), and those need no CORS.
fn is_same_origin(origin: &str, host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

/// Notes a refused cross-origin request (see [`RefusedOrigins`]).
fn note_refused(engine: &Engine, origin: Option<&HeaderValue>, host: Option<&HeaderValue>) {
    let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
        return;
    };
    if !is_same_origin(origin, host) {
        engine.shared.refused_origins.note(origin);
    }
}

/// Adds the CORS headers to a response. A disallowed origin still gets its answer, only
/// without the allow header, so the browser refuses to hand it to the page.
fn apply_cors(
    engine: &Engine,
    origin: Option<&HeaderValue>,
    host: Option<&HeaderValue>,
    res: &mut Response<Body>,
) {
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let Some(allowed) = allowed_origin(engine, origin) else {
        note_refused(engine, origin, host);
        return;
    };
    let headers = res.headers_mut();
    if allowed != "*" {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    if engine.config().cors.credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

fn preflight(engine: &Engine, req: &Request<Incoming>) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    // A refused origin is noted by `apply_cors`, which sees this answer too.
    if allowed_origin(engine, req.headers().get(header::ORIGIN)).is_some() {
        let headers = res.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
        );
        if let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_query() {
        let q = Query::parse("EIO=4&transport=polling&t=abc&sid=xyz");
        assert_eq!(q.eio, Some("4"));
        assert_eq!(q.transport, Some("polling"));
        assert_eq!(q.sid, Some("xyz"));
        let q = Query::parse("");
        assert_eq!(q.eio, None);
    }

    #[test]
    fn same_origin() {
        let host = HeaderValue::from_static("127.0.0.1:3000");
        assert!(is_same_origin("http://127.0.0.1:3000", Some(&host)));
        assert!(is_same_origin("https://127.0.0.1:3000", Some(&host)));
        assert!(!is_same_origin("http://127.0.0.1:3001", Some(&host)));
        assert!(!is_same_origin("http://app.example", Some(&host)));
        assert!(!is_same_origin("null", Some(&host)));
        assert!(!is_same_origin("http://127.0.0.1:3000", None));
    }

    #[test]
    fn error_body_matches_reference() {
        let res = EngineError::UnknownSid.response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
}
