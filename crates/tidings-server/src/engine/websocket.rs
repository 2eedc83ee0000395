//! The WebSocket transport (our own RFC 6455 framing, [`super::ws_io`], over a hyper upgrade),
//! both as a session's first transport and as the target of the polling→WebSocket upgrade.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tidings_proto::engine::{self, Frame, TextPacket};
use tidings_proto::ws::{CloseCode, Message};
use tokio::io::{ReadHalf, WriteHalf};

use super::http::{Body, EngineError};
use super::ws_io::{ReadError, WsReader, WsWriter};
use super::{
    CloseReason, Engine, EngineVersion, Handshake, Session, TransportKind, on_binary,
    on_text_packet,
};
use tidings_proto::eio3;

type Io = TokioIo<Upgraded>;
type Reader = WsReader<ReadHalf<Io>>;
type Writer = WsWriter<WriteHalf<Io>>;

/// The GUID of RFC 6455 §1.3, appended to the client's key to compute the accept header.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| {
                    s.split(',')
                        .any(|part| part.trim().eq_ignore_ascii_case(token))
                })
                .unwrap_or(false)
        })
    };
    has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade")
}

/// The 101 response for a valid WebSocket handshake request.
fn switching_protocols<B>(req: &Request<B>) -> Result<Response<Body>, EngineError> {
    if req.method() != http::Method::GET {
        return Err(EngineError::BadHandshakeMethod);
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(EngineError::BadRequest)?;
    if !version_ok {
        return Err(EngineError::BadRequest);
    }
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes());
    let accept = HeaderValue::from_str(&accept).map_err(|_| EngineError::BadRequest)?;

    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(res)
}

/// The two halves of the upgraded connection.
fn server(io: Upgraded, max_payload: usize) -> (Reader, Writer) {
    let (read, write) = tokio::io::split(TokioIo::new(io));
    (WsReader::new(read, max_payload), WsWriter::new(write))
}

/// A new session whose first transport is WebSocket.
pub(crate) fn open(
    engine: Engine,
    req: Request<Incoming>,
    handshake: Handshake,
    version: EngineVersion,
) -> Response<Body> {
    accept(req, move |upgraded| async move {
        match upgraded {
            Ok(io) => {
                let (reader, writer) = server(io, engine.config().max_payload);
                let session = engine.open_session(TransportKind::WebSocket, handshake, version);
                run(session, reader, writer).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    })
    .unwrap_or_else(|e| e.response())
}

/// Answers a WebSocket handshake with 101 and runs `then` on the upgraded connection in a task
/// of its own, which holds the request's [`ConnectionGuard`](super::ConnectionGuard) for the
/// connection's life. `Err`: the handshake is not acceptable.
fn accept<F, Fut>(mut req: Request<Incoming>, then: F) -> Result<Response<Body>, EngineError>
where
    F: FnOnce(hyper::Result<Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let res = switching_protocols(&req)?;
    let guard = super::take_guard(&mut req);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _guard = guard;
        then(on_upgrade.await).await;
    });
    Ok(res)
}

/// A WebSocket that takes over an existing polling session (the upgrade with probe).
pub(crate) fn upgrade(session: Arc<Session>, req: Request<Incoming>) -> Response<Body> {
    {
        let mut state = session.state.lock();
        // Only a polling session can upgrade, and only once: a second WebSocket for the same
        // session is accepted and closed at once (clients handle a close, but some crash on a
        // failed handshake), and the session carries on.
        if state.transport != TransportKind::Polling || state.upgrading {
            drop(state);
            return refuse_after_accept(req);
        }
        state.upgrading = true;
    }
    let upgrading = session.clone();
    let accepted = accept(req, move |upgraded| async move {
        let io = match upgraded {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(sid = %session.sid(), error = %e, "websocket upgrade failed");
                session.state.lock().upgrading = false;
                return;
            }
        };
        let (mut reader, mut writer) = server(io, session.config().max_payload);
        let timeout = session.config().upgrade_timeout;
        let probed = tokio::select! {
            _ = session.closed.cancelled() => false,
            r = tokio::time::timeout(timeout, probe(&session, &mut reader, &mut writer)) => matches!(r, Ok(true)),
        };
        if !probed {
            tracing::debug!(sid = %session.sid(), "upgrade did not complete");
            {
                let mut state = session.state.lock();
                state.upgrading = false;
                state.probed = false;
            }
            let _ = writer.close(CloseCode::NORMAL, "upgrade failed").await;
            return;
        }
        {
            let mut state = session.state.lock();
            state.upgrading = false;
            state.probed = false;
            state.transport = TransportKind::WebSocket;
        }
        // Releases a pending GET (it answers with a noop) and lets the writer take over.
        session.wake.notify_waiters();
        tracing::debug!(sid = %session.sid(), "upgraded to websocket");
        run(session, reader, writer).await;
    });
    accepted.unwrap_or_else(|e| {
        upgrading.state.lock().upgrading = false;
        e.response()
    })
}

/// The probe exchange: `2probe` → `3probe`, then `5` (upgrade). Returns true when the client
/// completed it.
async fn probe(session: &Arc<Session>, reader: &mut Reader, writer: &mut Writer) -> bool {
    loop {
        let msg = match reader.next().await {
            Ok(Some(msg)) => msg,
            _ => return false,
        };
        if let Message::Ping(data) = msg {
            if writer
                .write_batch(Some(data), &mut Vec::new())
                .await
                .is_err()
            {
                return false;
            }
            continue;
        }
        let Some(text) = msg.as_text() else {
            return false;
        };
        match engine::decode_text(text) {
            Ok(TextPacket::Ping("probe")) => {
                let mut answer = vec![Frame::from_static("3probe")];
                if writer.write_batch(None, &mut answer).await.is_err() {
                    return false;
                }
                // The client will not finish upgrading until its pending GET returns: answer
                // that GET at once with a noop (never queued, so it cannot reach the
                // WebSocket after the upgrade).
                session.state.lock().probed = true;
                session.wake.notify_waiters();
            }
            Ok(TextPacket::Upgrade) => return true,
            Ok(TextPacket::Noop) => {}
            _ => return false,
        }
    }
}

/// Reads the client's messages until the session closes; a writer task drains the outbound
/// buffer meanwhile.
async fn run(session: Arc<Session>, mut reader: Reader, writer: Writer) {
    let writer = tokio::spawn(write_loop(session.clone(), writer));
    loop {
        let msg = tokio::select! {
            _ = session.closed.cancelled() => break,
            msg = reader.next() => msg,
        };
        let keep_going = match msg {
            Ok(None) => {
                session.close(CloseReason::TransportClose);
                false
            }
            Err(ReadError::Ws(e)) => {
                tracing::debug!(sid = %session.sid(), error = %e, "websocket protocol error, closing");
                session.shared.count_protocol_error();
                session.state.lock().ws_close_code = Some(e.close_code());
                session.close(match e {
                    tidings_proto::ws::WsError::TooBig { .. } => CloseReason::PayloadTooLarge,
                    _ => CloseReason::ParseError,
                });
                false
            }
            Err(e) => {
                tracing::debug!(sid = %session.sid(), error = %e, "websocket error");
                session.close(CloseReason::TransportError);
                false
            }
            Ok(Some(Message::Text(bytes))) => match std::str::from_utf8(&bytes) {
                Ok(text) => match engine::decode_text(text) {
                    Ok(packet) => on_text_packet(&session, packet),
                    Err(_) => {
                        tracing::debug!(sid = %session.sid(), "malformed engine packet, closing");
                        session.shared.count_protocol_error();
                        session.close(CloseReason::ParseError);
                        false
                    }
                },
                // The decoder checked it, so this is never taken; if it were, the session must
                // still end properly (its writer waits for the close).
                Err(_) => {
                    session.close(CloseReason::ParseError);
                    false
                }
            },
            Ok(Some(Message::Binary(bytes))) => match session.version() {
                EngineVersion::V4 => on_binary(&session, bytes),
                // v3: the type byte `4` (message) first.
                EngineVersion::V3 if bytes.first() == Some(&eio3::BINARY_MESSAGE_TYPE) => {
                    on_binary(&session, bytes.slice(1..))
                }
                EngineVersion::V3 => {
                    tracing::debug!(sid = %session.sid(), "v3 binary message without its type byte, closing");
                    session.shared.count_protocol_error();
                    session.close(CloseReason::ParseError);
                    false
                }
            },
            Ok(Some(Message::Close(_))) => {
                session.close(CloseReason::TransportClose);
                false
            }
            Ok(Some(Message::Ping(data))) => {
                // Answered by the writer; a newer ping replaces an unanswered one (§5.5.3).
                session.state.lock().ws_pong = Some(data);
                session.wake.notify_waiters();
                true
            }
            Ok(Some(Message::Pong(_))) => true,
        };
        if !keep_going {
            break;
        }
    }
    // The writer sends what was queued and a close frame. Keep reading meanwhile so the
    // client's closing handshake is consumed; then drop both halves, which closes the TCP
    // connection even if the client never answers.
    let drain = async {
        while let Ok(Some(msg)) = reader.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    let mut writer = writer;
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// How long a closing connection may take to finish the WebSocket closing handshake (and to
/// write what was queued before the close) before it is dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Accepts a WebSocket handshake only to close the connection at once.
fn refuse_after_accept(req: Request<Incoming>) -> Response<Body> {
    accept(req, |upgraded| async move {
        let Ok(io) = upgraded else { return };
        let (mut reader, mut writer) = server(io, 125);
        let closing = async {
            let _ = writer
                .close(CloseCode::POLICY_VIOLATION, "session already upgraded")
                .await;
            // Wait for the client's close frame (or anything that ends the read).
            while let Ok(Some(msg)) = reader.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
    })
    .unwrap_or_else(|e| e.response())
}

/// Engine.IO v3 frames a binary message with its type byte (`4`) first.
fn prefix_binary_v3(frames: &mut [Frame]) {
    for frame in frames {
        if let Frame::Binary(data) = frame {
            let mut prefixed = Vec::with_capacity(1 + data.len());
            prefixed.push(eio3::BINARY_MESSAGE_TYPE);
            prefixed.extend_from_slice(data);
            *frame = Frame::Binary(Bytes::from(prefixed));
        }
    }
}

/// Writes queued frames in order, batching everything available into one write. When the
/// session closes it writes what was queued before the close, then a close frame.
async fn write_loop(session: Arc<Session>, mut writer: Writer) {
    let mut frames = Vec::new();
    loop {
        let woken = session.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (pong, close_reason, close_code) = {
            let mut state = session.state.lock();
            Session::take_frames(&mut state, None, &mut frames);
            if session.version() == EngineVersion::V3 {
                prefix_binary_v3(&mut frames);
            }
            (
                state.ws_pong.take(),
                Session::close_reason(&state),
                state.ws_close_code,
            )
        };
        if (!frames.is_empty() || pong.is_some())
            && writer.write_batch(pong, &mut frames).await.is_err()
        {
            session.close(CloseReason::TransportError);
            return;
        }
        if frames.capacity() > 64 {
            // A burst grew the batch vector: do not keep it for an idle connection.
            frames = Vec::new();
        }
        if let Some(reason) = close_reason {
            let code = close_code.unwrap_or(match reason {
                CloseReason::PayloadTooLarge => CloseCode::MESSAGE_TOO_BIG,
                CloseReason::ServerShutdown => CloseCode::GOING_AWAY,
                CloseReason::ParseError => CloseCode::PROTOCOL_ERROR,
                _ => CloseCode::NORMAL,
            });
            let _ = writer.close(code, reason.as_str()).await;
            return;
        }
        woken.await;
    }
}
