//! One error enum per operation family, so that callers match on what can happen to them.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tidings_core::ErrorCode;
use tidings_core::store::NameError;
use tidings_proto::packet::DecodeError;

/// The transport failed below Socket.IO: the WebSocket handshake or connection. Opaque, so
/// that the WebSocket library can change without changing this API; its `source` chain and
/// `Display` say what happened.
#[derive(Debug)]
pub struct TransportError(pub(crate) tokio_websockets::Error);

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// [`crate::Client::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server could not be reached (connection refused, unreachable, reset).
    #[error("cannot reach the server: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket upgrade failed (wrong path, a proxy in the way, …).
    #[error("websocket handshake failed: {0}")]
    Handshake(#[source] TransportError),
    /// The server refused to let the client join the namespace: a connect middleware said no
    /// (wrong credentials) or the namespace does not exist. `message` and `data` are what the
    /// server sent.
    #[error("the server refused the connection: {message}")]
    Refused {
        /// The server's reason, e.g. `unauthorized` or `Invalid namespace`.
        message: String,
        /// Details the server added, if any.
        data: Option<Value>,
    },
    /// No answer within [`crate::ClientOptions::connect_timeout`].
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
    /// The server answered something that is not Engine.IO v4 / Socket.IO v5.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// An emit (or an acknowledgement) could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The data could not be serialized to JSON.
    #[error("cannot serialize event data: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The event name is reserved by Socket.IO (`connect`, `disconnect`, …); the server would
    /// close the connection.
    #[error("event name {0:?} is reserved")]
    ReservedName(String),
    /// The binary placeholders in the arguments do not match the attachments (see
    /// [`crate::placeholder`]).
    #[error("placeholders do not match the attachments: {0}")]
    InvalidPlaceholders(DecodeError),
    /// One message of the packet exceeds the server's `maxPayload`; the server would close
    /// the connection.
    #[error("a message of {size} bytes exceeds the server's limit of {max} bytes")]
    TooLarge {
        /// The size of the largest message of the packet.
        size: usize,
        /// The server's `maxPayload`.
        max: usize,
    },
    /// The client is closed ([`crate::Client::disconnect`], the server removed it, or it gave
    /// up reconnecting).
    #[error("the client is closed")]
    Closed,
    /// An acknowledgement could not be sent: the connection the event arrived on is gone. The
    /// server has forgotten the ack id; for a durable delivery it redelivers the message.
    #[error("the connection the event arrived on is gone")]
    ConnectionLost,
    /// The event did not ask for an acknowledgement.
    #[error("the event did not ask for an acknowledgement")]
    NoAckRequested,
    /// The event was already acknowledged (through another listener's copy).
    #[error("the event was already acknowledged")]
    AlreadyAcknowledged,
}

/// Waiting for the server's acknowledgement of an emit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// No acknowledgement within the timeout. The event may still have been handled.
    #[error("acknowledgement timed out")]
    Timeout,
    /// The connection dropped (or the client closed) before the server acknowledged. The
    /// event may or may not have been handled.
    #[error("disconnected before the server acknowledged")]
    Disconnected,
    /// The emit itself failed.
    #[error(transparent)]
    Emit(#[from] EmitError),
}

/// A publish to a durable topic failed. Unless it is [`PublishError::Server`] with a code
/// that says otherwise, the message may or may not be stored: publish again with the same
/// idempotency key ([`crate::Client::publish_with_key`]) to be sure without duplicates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The topic name is not valid (checked before sending).
    #[error(transparent)]
    InvalidTopic(#[from] NameError),
    /// The server refused: `code` is what clients branch on (`store_unavailable` means nothing
    /// was stored and a retry may succeed), `message` is for people.
    #[error("the server refused the publish ({code}): {message}")]
    Server {
        /// The machine-readable code. A code this client does not know is reported as
        /// [`ErrorCode::Internal`], with the code's text at the start of `message`.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// No acknowledgement within [`crate::ClientOptions::ack_timeout`].
    #[error("publish timed out")]
    Timeout,
    /// The connection dropped before the server acknowledged.
    #[error("disconnected before the server acknowledged the publish")]
    Disconnected,
    /// The request could not be sent.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The server's acknowledgement does not have the shape of the contract.
    #[error("unexpected acknowledgement: {0}")]
    Protocol(String),
}

/// Subscribing to (or unsubscribing from) a durable topic failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The topic name is not valid (checked before sending).
    #[error(transparent)]
    InvalidTopic(#[from] NameError),
    /// This client already has a live [`crate::Subscription`] for this topic and group.
    #[error("already subscribed to this topic and group")]
    AlreadySubscribed,
    /// Durable subscriptions need an identity: connect with `{"clientId": …}` in the auth
    /// payload.
    #[error("the server requires an identity (`clientId` in the auth payload): {message}")]
    IdentityRequired {
        /// The server's explanation.
        message: String,
    },
    /// The server refused for another reason.
    #[error("the server refused ({code}): {message}")]
    Server {
        /// The machine-readable code (unknown codes as for [`PublishError::Server`]).
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// No acknowledgement within [`crate::ClientOptions::ack_timeout`].
    #[error("subscribe timed out")]
    Timeout,
    /// The connection dropped before the server acknowledged.
    #[error("disconnected before the server acknowledged")]
    Disconnected,
    /// The request could not be sent.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The server's acknowledgement does not have the shape of the contract.
    #[error("unexpected acknowledgement: {0}")]
    Protocol(String),
}

/// Reading a durable topic's history failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The topic name is not valid (checked before sending).
    #[error(transparent)]
    InvalidTopic(#[from] NameError),
    /// The server refused.
    #[error("the server refused ({code}): {message}")]
    Server {
        /// The machine-readable code (unknown codes as for [`PublishError::Server`]).
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// No acknowledgement within [`crate::ClientOptions::ack_timeout`].
    #[error("history request timed out")]
    Timeout,
    /// The connection dropped before the server acknowledged.
    #[error("disconnected before the server acknowledged")]
    Disconnected,
    /// The request could not be sent.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The server's acknowledgement does not have the shape of the contract.
    #[error("unexpected acknowledgement: {0}")]
    Protocol(String),
}

/// What can go wrong with any built-in request; converted into the family's own enum.
#[derive(Debug)]
pub(crate) enum RequestError {
    Server { code: ErrorCode, message: String },
    Timeout,
    Disconnected,
    Emit(EmitError),
    Protocol(String),
}

impl From<AckError> for RequestError {
    fn from(e: AckError) -> Self {
        match e {
            AckError::Timeout => RequestError::Timeout,
            AckError::Disconnected => RequestError::Disconnected,
            AckError::Emit(e) => RequestError::Emit(e),
        }
    }
}

impl From<EmitError> for RequestError {
    fn from(e: EmitError) -> Self {
        RequestError::Emit(e)
    }
}

impl From<RequestError> for PublishError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Server { code, message } => PublishError::Server { code, message },
            RequestError::Timeout => PublishError::Timeout,
            RequestError::Disconnected => PublishError::Disconnected,
            RequestError::Emit(e) => PublishError::Emit(e),
            RequestError::Protocol(m) => PublishError::Protocol(m),
        }
    }
}

impl From<RequestError> for SubscribeError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Server {
                code: ErrorCode::IdentityRequired,
                message,
            } => SubscribeError::IdentityRequired { message },
            RequestError::Server { code, message } => SubscribeError::Server { code, message },
            RequestError::Timeout => SubscribeError::Timeout,
            RequestError::Disconnected => SubscribeError::Disconnected,
            RequestError::Emit(e) => SubscribeError::Emit(e),
            RequestError::Protocol(m) => SubscribeError::Protocol(m),
        }
    }
}

impl From<RequestError> for HistoryError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Server { code, message } => HistoryError::Server { code, message },
            RequestError::Timeout => HistoryError::Timeout,
            RequestError::Disconnected => HistoryError::Disconnected,
            RequestError::Emit(e) => HistoryError::Emit(e),
            RequestError::Protocol(m) => HistoryError::Protocol(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_required_is_its_own_variant() {
        let e = SubscribeError::from(RequestError::Server {
            code: ErrorCode::IdentityRequired,
            message: "connect with a clientId".into(),
        });
        assert!(matches!(e, SubscribeError::IdentityRequired { .. }));
        let e = SubscribeError::from(RequestError::Server {
            code: ErrorCode::Forbidden,
            message: "no".into(),
        });
        assert!(matches!(
            e,
            SubscribeError::Server {
                code: ErrorCode::Forbidden,
                ..
            }
        ));
    }

    #[test]
    fn messages_are_lowercase() {
        let messages = [
            ConnectError::Timeout(Duration::from_secs(1)).to_string(),
            EmitError::Closed.to_string(),
            EmitError::ConnectionLost.to_string(),
            AckError::Timeout.to_string(),
            AckError::Disconnected.to_string(),
            PublishError::Timeout.to_string(),
            SubscribeError::AlreadySubscribed.to_string(),
            HistoryError::Disconnected.to_string(),
        ];
        for message in messages {
            assert!(message.starts_with(char::is_lowercase), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
    }
}
