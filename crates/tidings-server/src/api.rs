//! The HTTP API of the durable topics, under `/v1` (served when queues are enabled).
//!
//! Errors are JSON `{"error":{"code","message"}}` with the status of the code: 400
//! `bad_request`, 401 `unauthorized` / `token_expired`, 403 `forbidden` / `limit_exceeded`, 404
//! `not_found`, 408 `request_timeout` (the body did not arrive within the body timeout), 413
//! `payload_too_large`, 429 `rate_limited`, 503 `store_unavailable`, 507
//! `queue_full`. The OpenAPI document is at `/v1/openapi.json`.
//!
//! With an [`Authenticator`] every route but the OpenAPI document wants `Authorization: Bearer
//! <token>`, and the token's permissions apply (see [`crate::auth`]): publishing needs
//! `publish` on the topic; reading a topic (info, history, dead letters) needs `subscribe`; a
//! non-admin sees and changes only its own identity's queue — other identities' and groups'
//! subscriptions are left out of listings, and deleting one or requeueing its dead letters is
//! 403.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tidings_core::store::{MessageId, SubscriptionName, Topic};
use tidings_core::{ErrorBody, ErrorCode};

use std::sync::atomic::Ordering;

use crate::auth::{Action, AuthError, Authenticator, Principal, forbidden};
use crate::command::{Builtin, DEFAULT_HISTORY, History, Publish, bad_request, messages};
use crate::engine::Body;
use crate::engine::body::{BodyError, read_body};
use crate::metrics::MetricsSnapshot;
use crate::queue::Queues;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// A JSON response outside the API's error contract (`/healthz`, `/readyz`).
pub(crate) fn plain_json(status: StatusCode, value: &Value) -> Response<Body> {
    json_response(status, value)
}

/// Lets the request through when it may read the server's counters: anybody without an
/// authenticator, an admin token's bearer with one (`/metrics`, like `/v1/stats`). Otherwise
/// the API's 401 / 403 answer.
pub(crate) fn admin_only(
    auth: Option<&Authenticator>,
    req: &Request<Incoming>,
) -> Result<(), Box<Response<Body>>> {
    match caller(auth, req)? {
        Caller::Verified(p) if !p.is_admin() => Err(Box::new(error_response(&forbidden(format!(
            "{} may not read the server's metrics (admin only)",
            p.identity()
        ))))),
        _ => Ok(()),
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(value.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// An error as the API answers it: `{"error":{"code","message"}}` with the code's status.
pub(crate) fn error_response(e: &ErrorBody) -> Response<Body> {
    let status = match e.code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Unauthorized | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
        ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::LimitExceeded => StatusCode::FORBIDDEN,
        ErrorCode::QueueFull | ErrorCode::StoreFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_response(status, &json!({ "error": e }))
}

fn not_found(what: &str) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, what)
}

/// Decodes one `%XX`-escaped path segment.
fn percent_decode(segment: &str) -> Result<String, ErrorBody> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .ok_or_else(|| bad_request("bad %-escape in path"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad_request("bad %-escape in path"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad_request("path is not UTF-8"))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn parse_u64(query: &str, name: &str, default: u64) -> Result<u64, ErrorBody> {
    match query_param(query, name) {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| bad_request(format!("`{name}` must be a non-negative integer"))),
    }
}

fn topic_of(segment: &str) -> Result<Topic, ErrorBody> {
    crate::command::fields::topic_name(&percent_decode(segment)?)
}

/// Reads a JSON body of at most `max` bytes.
async fn json_body(body: Incoming, limits: &BodyLimits<'_>) -> Result<Value, Response<Body>> {
    let max = limits.max_bytes;
    let buf = match read_body(body, max, limits.timeout).await {
        Ok(buf) => buf,
        Err(BodyError::TooLarge) => {
            let e = ErrorBody::new(ErrorCode::PayloadTooLarge, format!("body over {max} bytes"));
            return Err(error_response(&e));
        }
        Err(BodyError::TimedOut) => {
            limits.timed_out.fetch_add(1, Ordering::Relaxed);
            let ms = limits.timeout.as_millis();
            tracing::debug!(
                timeout_ms = ms,
                "API request body not received within the body timeout"
            );
            let e = ErrorBody::new(
                ErrorCode::RequestTimeout,
                format!("the request body did not arrive within {ms} ms"),
            );
            let mut res = error_response(&e);
            // The rest of the body may still come: do not read it, close the connection.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(res);
        }
        Err(BodyError::Io) => {
            return Err(error_response(&bad_request(
                "could not read the request body",
            )));
        }
    };
    serde_json::from_slice(&buf)
        .map_err(|e| error_response(&bad_request(format!("invalid JSON: {e}"))))
}

/// The limits on an API request's body: [`crate::ServerConfig::max_payload`] bytes, within
/// [`crate::Limits::body_timeout`]; a request past the timeout is counted in `timed_out`.
pub struct BodyLimits<'a> {
    /// Most bytes a body may have (413 `payload_too_large` past it).
    pub max_bytes: usize,
    /// How long the whole body may take to arrive (408 `request_timeout` past it).
    pub timeout: std::time::Duration,
    /// Counts the requests refused for the timeout.
    pub timed_out: &'a std::sync::atomic::AtomicU64,
    /// Most binary parts (`{"_binary": …}`) one published message may hold, as Socket.IO's
    /// `max_attachments` bounds a packet's (403 `limit_exceeded` past it); None: unlimited.
    pub max_attachments: Option<usize>,
}

/// Who calls the API: anyone (no authenticator) or a verified principal.
enum Caller {
    Open,
    Verified(Principal),
}

impl Caller {
    fn check(&self, action: Action, topic: &Topic) -> Result<(), ErrorBody> {
        match self {
            Caller::Open => Ok(()),
            Caller::Verified(p) => p.check(action, topic.as_str()),
        }
    }

    /// `Ok` when the caller holds what the built-in `command` requires.
    fn check_access(&self, command: &impl Builtin) -> Result<(), ErrorBody> {
        match self {
            Caller::Open => Ok(()),
            Caller::Verified(p) => command.required_access().check(p),
        }
    }

    fn allows(&self, action: Action, topic: &Topic) -> bool {
        self.check(action, topic).is_ok()
    }

    /// Whether the caller may see and change the queue `sub`: its own identity's, or any as
    /// an admin.
    fn owns(&self, sub: &SubscriptionName) -> bool {
        match self {
            Caller::Open => true,
            Caller::Verified(p) => {
                p.is_admin() || matches!(sub, SubscriptionName::Identity(id) if id == p.identity())
            }
        }
    }

    fn check_owner(&self, sub: &SubscriptionName, what: &str) -> Result<(), ErrorBody> {
        match self {
            Caller::Verified(p) if !self.owns(sub) => Err(forbidden(format!(
                "{} may not {what} {sub} (only its own queue; admin for others)",
                p.identity()
            ))),
            _ => Ok(()),
        }
    }
}

/// The caller of `req`: 401 without a valid bearer token when an authenticator is set.
fn caller(
    auth: Option<&Authenticator>,
    req: &Request<Incoming>,
) -> Result<Caller, Box<Response<Body>>> {
    let Some(auth) = auth else {
        return Ok(Caller::Open);
    };
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let verified = match token {
        Some(token) if !token.is_empty() => auth.verify(token),
        _ => Err(AuthError::Missing),
    };
    verified.map(Caller::Verified).map_err(|e| {
        tracing::debug!(code = %e.code(), reason = %e, "api request unauthorized");
        let mut res = error_response(&e.body());
        let challenge = match e {
            AuthError::Missing => "Bearer",
            _ => "Bearer error=\"invalid_token\"",
        };
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        Box::new(res)
    })
}

/// Answers a request under `/v1`. `auth`: the server's authenticator, if any (see the module
/// documentation).
pub async fn handle(
    queues: &Queues,
    req: Request<Incoming>,
    body_limits: BodyLimits<'_>,
    auth: Option<&Authenticator>,
    server_stats: &(dyn Fn() -> MetricsSnapshot + Sync),
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path
        .trim_start_matches("/v1")
        .trim_matches('/')
        .split('/')
        .collect();
    let caller = if method == Method::GET && segments.as_slice() == ["openapi.json"] {
        Caller::Open
    } else {
        match caller(auth, &req) {
            Ok(caller) => caller,
            Err(res) => return *res,
        }
    };
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["openapi.json"]) => {
            let mut res = Response::new(Full::new(Bytes::from_static(OPENAPI.as_bytes())));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return res;
        }
        (&Method::GET, ["stats"]) => stats(&caller, server_stats()),
        (&Method::GET, ["topics"]) => list_topics(queues, &caller, &query).await,
        (&Method::GET, ["topics", topic]) => topic_info(queues, &caller, topic).await,
        (&Method::POST, ["topics", topic, "messages"]) => {
            let topic = match topic_of(topic) {
                Ok(t) => t,
                Err(e) => return error_response(&e),
            };
            let body = match json_body(req.into_body(), &body_limits).await {
                Ok(body) => body,
                Err(res) => return res,
            };
            let identity = match &caller {
                Caller::Verified(p) => Some(p.identity()),
                Caller::Open => None,
            };
            let max_attachments = body_limits.max_attachments;
            match Publish::from_body(topic, body).and_then(|publish| {
                if let Some(max) = max_attachments.filter(|&max| publish.attachments.len() > max) {
                    return Err(ErrorBody::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "{} binary parts in `data`: more than max_attachments ({max})",
                            publish.attachments.len()
                        ),
                    ));
                }
                caller.check_access(&publish)?;
                Ok(publish)
            }) {
                Ok(publish) => publish_message(queues, publish, identity).await,
                Err(e) => Err(e),
            }
        }
        (&Method::GET, ["topics", topic, "messages"]) => {
            history(queues, &caller, topic, &query).await
        }
        (&Method::GET, ["topics", topic, "dead-letters"]) => {
            dead_letters(queues, &caller, topic).await
        }
        (&Method::POST, ["topics", topic, "dead-letters", id, "requeue"]) => {
            requeue_dead(queues, &caller, topic, id).await
        }
        (&Method::DELETE, ["topics", topic, "subscriptions", name]) => {
            delete_subscription(queues, &caller, topic, name).await
        }
        _ => Err(not_found(&format!("no route {method} {path}"))),
    };
    match result {
        Ok((status, value)) => json_response(status, &value),
        Err(e) => error_response(&e),
    }
}

type ApiResult = Result<(StatusCode, Value), ErrorBody>;

/// `GET /v1/stats`: the server's and the delivery engine's counters, for operators (admin
/// only when tokens are verified: the counters describe every client).
fn stats(caller: &Caller, snapshot: MetricsSnapshot) -> ApiResult {
    if let Caller::Verified(p) = caller {
        if !p.is_admin() {
            return Err(forbidden(format!(
                "{} may not read the server's counters (admin only)",
                p.identity()
            )));
        }
    }
    Ok((StatusCode::OK, snapshot.stats_json()))
}

/// The most topics one page of `GET /v1/topics?limit=` holds.
pub const MAX_TOPICS_PAGE: u64 = 1000;

/// `GET /v1/topics[?limit=&after=&prefix=]`: the topics the caller may read, by name. With
/// `limit`, one page of at most that many (up to [`MAX_TOPICS_PAGE`]) after the name
/// `after`, with `next`, the `after` of the next page (null on the last), and `total`, how
/// many names match before paging: only the page's topics are asked for their state, so a
/// page costs the same with 10 or 100,000 topics but for listing their names. `prefix`
/// keeps the names starting with it. Without `limit`, every topic (`{"topics"}` only).
async fn list_topics(queues: &Queues, caller: &Caller, query: &str) -> ApiResult {
    let limit = match query_param(query, "limit") {
        None | Some("") => None,
        Some(_) => match parse_u64(query, "limit", 0)? {
            n @ 1..=MAX_TOPICS_PAGE => Some(n as usize),
            _ => {
                return Err(bad_request(format!(
                    "`limit` must be between 1 and {MAX_TOPICS_PAGE}"
                )));
            }
        },
    };
    let after = percent_decode(query_param(query, "after").unwrap_or(""))?;
    let prefix = percent_decode(query_param(query, "prefix").unwrap_or(""))?;
    let store = queues.store();
    let mut names: Vec<Topic> = store
        .topics()
        .await?
        .into_iter()
        .filter(|t| t.as_str().starts_with(prefix.as_str()))
        .filter(|t| caller.allows(Action::Subscribe, t))
        .collect();
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    let total = names.len();
    let start = if after.is_empty() {
        0
    } else {
        names.partition_point(|t| t.as_str() <= after.as_str())
    };
    let end = limit.map_or(total, |n| total.min(start.saturating_add(n)));
    let mut topics = Vec::with_capacity(end - start);
    for topic in &names[start..end] {
        if let Some(info) = store.topic_info(topic).await? {
            topics.push(topic_json(queues, caller, info).await);
        }
    }
    if limit.is_none() {
        // Unpaged: the answer this route always gave.
        return Ok((StatusCode::OK, json!({ "topics": topics })));
    }
    let next = match names[..end].last() {
        Some(last) if end < total => json!(last.as_str()),
        _ => Value::Null,
    };
    Ok((
        StatusCode::OK,
        json!({ "topics": topics, "next": next, "total": total }),
    ))
}

/// A topic's state as the API shows it: [`TopicInfo`](tidings_core::store::TopicInfo) with
/// the subscriptions the caller owns, each with `lagMs`, the age of its oldest unsettled
/// message (0 when it has none; null when the store does not tell).
async fn topic_json(
    queues: &Queues,
    caller: &Caller,
    mut info: tidings_core::store::TopicInfo,
) -> Value {
    info.subscriptions.retain(|s| caller.owns(&s.name));
    // Lag is a figure for reading, not a reason to fail the answer: a store error leaves it
    // null (the counters above came from the store a moment ago).
    let oldest = queues
        .store()
        .oldest_unsettled(&info.topic)
        .await
        .ok()
        .flatten();
    let now = tidings_core::clock::now_millis();
    let mut value = json!(info);
    if let Some(subs) = value["subscriptions"].as_array_mut() {
        for (sub, info) in subs.iter_mut().zip(&info.subscriptions) {
            sub["lagMs"] = match &oldest {
                None => Value::Null,
                Some(oldest) => json!(
                    oldest
                        .iter()
                        .find(|(name, _)| *name == info.name)
                        .map_or(0, |(_, at)| now.saturating_sub(*at))
                ),
            };
        }
    }
    value
}

async fn topic_info(queues: &Queues, caller: &Caller, topic: &str) -> ApiResult {
    let topic = topic_of(topic)?;
    caller.check(Action::Subscribe, &topic)?;
    match queues.store().topic_info(&topic).await? {
        Some(info) => Ok((StatusCode::OK, topic_json(queues, caller, info).await)),
        None => Err(not_found(&format!("no topic {topic}"))),
    }
}

async fn publish_message(queues: &Queues, publish: Publish, identity: Option<&str>) -> ApiResult {
    let mut answer = publish.apply(queues, identity).await?.to_value();
    if let Some(map) = answer.as_object_mut() {
        map.shift_remove("ok");
    }
    Ok((StatusCode::CREATED, answer))
}

async fn history(queues: &Queues, caller: &Caller, topic: &str, query: &str) -> ApiResult {
    let topic = topic_of(topic)?;
    caller.check(Action::Subscribe, &topic)?;
    let from = parse_u64(query, "from", 1)?;
    let limit = parse_u64(query, "limit", DEFAULT_HISTORY as u64)?;
    let messages = messages(queues, &History::new(topic, from, limit)?).await?;
    Ok((StatusCode::OK, json!({ "messages": messages })))
}

async fn dead_letters(queues: &Queues, caller: &Caller, topic: &str) -> ApiResult {
    let topic = topic_of(topic)?;
    caller.check(Action::Subscribe, &topic)?;
    let dead = queues.store().dead_letters(&topic).await?;
    let dead: Vec<Value> = dead
        .into_iter()
        .filter(|d| caller.owns(&d.subscription))
        .map(|d| {
            let mut v = json!(d);
            v["data"] = crate::command::message_data(&d.message.data, &d.message.attachments);
            v
        })
        .collect();
    Ok((StatusCode::OK, json!({ "deadLetters": dead })))
}

async fn requeue_dead(queues: &Queues, caller: &Caller, topic: &str, id: &str) -> ApiResult {
    let topic = topic_of(topic)?;
    let id: MessageId = id.parse().map_err(|_| bad_request("invalid message id"))?;
    caller.check(Action::Subscribe, &topic)?;
    if !matches!(caller, Caller::Open) {
        // A dead letter belongs to one subscription; requeueing acts on every subscription's.
        let dead = queues.store().dead_letters(&topic).await?;
        for d in dead.iter().filter(|d| d.message.id == id) {
            caller.check_owner(&d.subscription, "requeue the dead letters of")?;
        }
    }
    let requeued = queues
        .store()
        .requeue_dead(&topic, id, tidings_core::clock::now_millis())
        .await?;
    if !requeued {
        return Err(not_found(&format!("no dead letter {id} in {topic}")));
    }
    queues.wake_topic(&topic);
    Ok((StatusCode::OK, json!({ "requeued": true })))
}

async fn delete_subscription(
    queues: &Queues,
    caller: &Caller,
    topic: &str,
    name: &str,
) -> ApiResult {
    let topic = topic_of(topic)?;
    let sub = SubscriptionName::from_key(&percent_decode(name)?)
        .map_err(|e| bad_request(e.to_string()))?;
    caller.check_owner(&sub, "delete")?;
    queues.forget(&topic, &sub);
    let removed = queues.store().unsubscribe(&topic, &sub).await?;
    if !removed {
        return Err(not_found(&format!("no subscription {sub} on {topic}")));
    }
    Ok((StatusCode::OK, json!({ "deleted": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_path_segments() {
        assert_eq!(percent_decode("id%3Adriver-7").unwrap(), "id:driver-7");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
    }

    #[test]
    fn openapi_is_json() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
