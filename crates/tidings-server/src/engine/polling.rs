//! HTTP long-polling: a GET waits for frames, a POST carries the client's packets.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tidings_proto::eio3::{self, Payload};
use tidings_proto::engine::{self, Frame, PayloadItem};

use super::body::{BodyError, read_body};
use super::http::{Body, EngineError, text_response};
use super::session::State;
use super::{CloseReason, EngineVersion, Session, TransportKind, on_binary, on_text_packet};

/// The most packets one polling response carries. python-engineio drops the connection when a
/// response holds more than 16 packets; the rest wait for the next GET.
pub(crate) const MAX_PACKETS_PER_POLL: usize = 16;

const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";

/// Closes the session if a pending GET is abandoned (hyper drops the handler future when the
/// client goes away), so a vanished client is noticed without waiting for the ping timeout.
struct PendingGet {
    session: Arc<Session>,
    armed: bool,
}

impl Drop for PendingGet {
    fn drop(&mut self) {
        self.session.state.lock().get_pending = false;
        if self.armed {
            tracing::debug!(sid = %self.session.sid(), "polling request aborted by the client");
            self.session.close(CloseReason::TransportClose);
        }
    }
}

/// A long-polling GET: answers with up to [`MAX_PACKETS_PER_POLL`] queued frames as soon as
/// there are any, with the close packet when the session closes, or with a noop when the
/// session moved to WebSocket.
///
/// An Engine.IO v3 session gets a v3 payload ([`eio3::encode_payload`]): binary when
/// `supports_binary` (no `b64=1`) and a frame is binary, else length-prefixed text.
pub(crate) async fn get(session: Arc<Session>, supports_binary: bool) -> Response<Body> {
    if session.state.lock().probed && !wait_for_upgrade(&session).await {
        // Still polling after the grace period: a noop keeps the client polling until it
        // has finished the upgrade.
        return payload_response(&session, &[Frame::from_static("6")], supports_binary);
    }
    if let Err(e) = begin(&session, |state| &mut state.get_pending) {
        return e.response();
    }
    let mut guard = PendingGet {
        session: session.clone(),
        armed: true,
    };
    let mut frames = Vec::new();
    loop {
        let woken = session.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let mut state = session.state.lock();
            Session::take_frames(&mut state, Some(MAX_PACKETS_PER_POLL), &mut frames);
            // A closing session still delivers what was queued before the close, then the
            // close packet itself when it fits in this response.
            // A client that closed the session itself gets a noop (as from the reference
            // server); a session the server closed ends with the close packet.
            let close = match Session::close_reason(&state) {
                Some(CloseReason::TransportClose) => Some(Frame::from_static("6")),
                Some(_) => Some(Frame::from_static("1")),
                None => None,
            };
            if let Some(close) = close {
                if !Session::has_frames(&state) && frames.len() < MAX_PACKETS_PER_POLL {
                    frames.push(close);
                }
            }
            if !frames.is_empty() {
                break;
            }
            // The WebSocket probed or took over: release this GET with a noop.
            if state.probed || state.transport != TransportKind::Polling {
                frames.push(Frame::from_static("6"));
                break;
            }
        }
        woken.await;
    }
    guard.armed = false;
    drop(guard);
    payload_response(&session, &frames, supports_binary)
}

/// The response carrying `frames`, in the session's Engine.IO version's payload encoding.
fn payload_response(session: &Session, frames: &[Frame], supports_binary: bool) -> Response<Body> {
    let mut body = Vec::new();
    if session.version() == EngineVersion::V3 {
        return match eio3::encode_payload(frames, supports_binary, &mut body) {
            Payload::Text => text_response(StatusCode::OK, body, TEXT_PLAIN),
            Payload::Binary => text_response(StatusCode::OK, body, "application/octet-stream"),
        };
    }
    engine::encode_payload(frames, &mut body);
    text_response(StatusCode::OK, body, TEXT_PLAIN)
}

/// How long a GET that arrives after the probe waits for the upgrade to complete.
const UPGRADE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// A GET that arrives while a WebSocket probe is in flight may have been sent just after the
/// client's `5` (upgrade): wait briefly for the upgrade, so it is answered as a request on an
/// upgraded session (400) rather than with a noop. Returns true when the upgrade completed.
async fn wait_for_upgrade(session: &Arc<Session>) -> bool {
    let deadline = tokio::time::sleep(UPGRADE_GRACE);
    tokio::pin!(deadline);
    loop {
        let woken = session.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let state = session.state.lock();
            if state.transport != TransportKind::Polling {
                return true;
            }
            if !state.probed || Session::close_reason(&state).is_some() {
                return false;
            }
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = &mut deadline => return false,
        }
    }
}

/// Releases the POST slot when the request ends, however it ends.
struct PendingPost(Arc<Session>);

impl Drop for PendingPost {
    fn drop(&mut self) {
        self.0.state.lock().post_pending = false;
    }
}

/// Marks a GET or a POST (`pending` picks its flag) as under way on `session`. A request on a
/// session that no longer polls is a 400; two of a kind at once mean a broken client: the
/// session is closed (a waiting GET gets the close packet) and this request is a 400.
fn begin(session: &Arc<Session>, pending: fn(&mut State) -> &mut bool) -> Result<(), EngineError> {
    let mut state = session.state.lock();
    if state.transport != TransportKind::Polling {
        return Err(EngineError::BadRequest);
    }
    let flag = pending(&mut state);
    if *flag {
        drop(state);
        session.close(CloseReason::TransportError);
        return Err(EngineError::BadRequest);
    }
    *flag = true;
    Ok(())
}

/// A polling POST: decodes the payload and hands each packet to the session, in order.
pub(crate) async fn post(session: Arc<Session>, req: Request<Incoming>) -> Response<Body> {
    if let Err(e) = begin(&session, |state| &mut state.post_pending) {
        return e.response();
    }
    let _slot = PendingPost(session.clone());
    let max = session.config().max_payload;
    let timeout = session.config().body_timeout;
    let body = match read_body(req.into_body(), max, timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            tracing::debug!(sid = %session.sid(), max, "polling body over max payload, closing");
            session.shared.count_protocol_error();
            session.close(CloseReason::PayloadTooLarge);
            return text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload too large",
                TEXT_PLAIN,
            );
        }
        Err(BodyError::TimedOut) => {
            tracing::debug!(
                sid = %session.sid(),
                timeout_ms = timeout.as_millis(),
                "polling body not received within the body timeout, closing"
            );
            session.shared.count_slow_request();
            session.close(CloseReason::TransportError);
            let mut res = text_response(StatusCode::REQUEST_TIMEOUT, "request timeout", TEXT_PLAIN);
            // The rest of the body may still come: do not read it, close the connection.
            res.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return res;
        }
        Err(BodyError::Io) => {
            session.close(CloseReason::TransportError);
            return EngineError::BadRequest.response();
        }
    };
    if session.version() == EngineVersion::V3 {
        let Ok(items) = eio3::decode_payload(&body) else {
            return reject_payload(&session);
        };
        for item in items {
            let keep_going = match item {
                PayloadItem::Text(packet) => on_text_packet(&session, packet),
                PayloadItem::Binary(data) => on_binary(&session, Bytes::from(data)),
            };
            if !keep_going {
                break;
            }
        }
        return text_response(StatusCode::OK, "ok", "text/html");
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return reject_payload(&session);
    };
    for item in engine::decode_payload(text) {
        let keep_going = match item {
            Ok(PayloadItem::Text(packet)) => on_text_packet(&session, packet),
            Ok(PayloadItem::Binary(data)) => on_binary(&session, Bytes::from(data)),
            Err(_) => return reject_payload(&session),
        };
        if !keep_going {
            break;
        }
    }
    text_response(StatusCode::OK, "ok", "text/html")
}

fn reject_payload(session: &Arc<Session>) -> Response<Body> {
    tracing::debug!(sid = %session.sid(), "malformed polling payload, closing");
    session.shared.count_protocol_error();
    session.close(CloseReason::ParseError);
    EngineError::BadRequest.response()
}
