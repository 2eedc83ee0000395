use serde::Serialize;
use std::fmt;

/// The machine-readable code of a failed built-in request, as sent in
/// `{ok:false, error:{code, message}}`.
///
/// The text forms are part of the wire contract (docs/PROTOCOL.md); never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The payload does not have the shape the event requires.
    BadRequest,
    /// The request is understood but not allowed for this client.
    Forbidden,
    /// The request waited longer than its deadline.
    Timeout,
    /// Something failed inside the server; the request may be retried.
    Internal,
    /// The request needs a durable identity (`clientId` in the CONNECT auth payload).
    IdentityRequired,
    /// The durable store cannot be used right now; nothing was stored. Retry later.
    StoreUnavailable,
    /// The topic, subscription or message does not exist.
    NotFound,
    /// No valid token was presented (missing, bad signature, wrong algorithm, malformed).
    Unauthorized,
    /// The token's `exp` has passed; get a fresh one and reconnect.
    TokenExpired,
    /// Too many requests in a short time (events per connection, publishes per identity);
    /// nothing was done. Retry later, more slowly.
    RateLimited,
    /// A configured maximum was reached (e.g. subscriptions per identity, topics); nothing
    /// was done.
    LimitExceeded,
    /// A subscription of the topic holds its maximum queue depth and the overflow policy is
    /// `reject`: the publish was not stored. Retry once its consumers caught up.
    QueueFull,
    /// The request (an HTTP API body) is larger than the configured maximum; nothing was
    /// done.
    PayloadTooLarge,
    /// The request's body did not arrive within the body timeout; nothing was done and the
    /// connection is closed.
    RequestTimeout,
    /// (HTTP, 503) the server is over a connection limit; the connection is closed. Retry
    /// after `Retry-After`.
    TooManyConnections,
    /// The store holds its maximum of retained data (`max_retained_bytes`): the publish was
    /// not stored. Retry once consumers caught up or retention trimmed.
    StoreFull,
}

impl ErrorCode {
    /// Every code, in declaration order (clients map the wire text back with
    /// [`ErrorCode::from_wire`]).
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadRequest,
        ErrorCode::Forbidden,
        ErrorCode::Timeout,
        ErrorCode::Internal,
        ErrorCode::IdentityRequired,
        ErrorCode::StoreUnavailable,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::RateLimited,
        ErrorCode::LimitExceeded,
        ErrorCode::QueueFull,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyConnections,
        ErrorCode::StoreFull,
    ];

    /// The code whose wire text is `text`; None for a code this version does not know (a
    /// newer server's).
    pub fn from_wire(text: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// The wire text of the code, e.g. `bad_request`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::IdentityRequired => "identity_required",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::StoreFull => "store_full",
        }
    }
}

// Wire-text enums (`ErrorCode`, `Overflow`) display their `as_str`, each in its own impl.
impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The `error` object of a failed acknowledgement: `{code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// What kind of failure this is; clients branch on it.
    pub code: ErrorCode,
    /// A human-readable explanation; clients show or log it, never parse it.
    pub message: String,
}

impl ErrorBody {
    /// A new error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }

    /// The whole acknowledgement: `{"ok":false,"error":{"code":…,"message":…}}`.
    pub fn to_ack(&self) -> serde_json::Value {
        serde_json::json!({ "ok": false, "error": self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_wire_text() {
        let texts: std::collections::HashSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_wire("teapot"), None);
        assert_eq!(ErrorCode::PayloadTooLarge.as_str(), "payload_too_large");
        assert_eq!(ErrorCode::RequestTimeout.as_str(), "request_timeout");
        // A code missing from ALL cannot be parsed back by clients: this match fails to
        // compile for a new variant until it is listed here, and then the count must follow.
        let listed = |code: ErrorCode| match code {
            ErrorCode::BadRequest
            | ErrorCode::Forbidden
            | ErrorCode::Timeout
            | ErrorCode::Internal
            | ErrorCode::IdentityRequired
            | ErrorCode::StoreUnavailable
            | ErrorCode::NotFound
            | ErrorCode::Unauthorized
            | ErrorCode::TokenExpired
            | ErrorCode::RateLimited
            | ErrorCode::LimitExceeded
            | ErrorCode::QueueFull
            | ErrorCode::PayloadTooLarge
            | ErrorCode::RequestTimeout
            | ErrorCode::TooManyConnections
            | ErrorCode::StoreFull => 1,
        };
        assert_eq!(ErrorCode::ALL.into_iter().map(listed).sum::<usize>(), 16);
    }

    #[test]
    fn ack_shape_is_the_wire_contract() {
        let ack = ErrorBody::new(ErrorCode::BadRequest, "room must be a string").to_ack();
        assert_eq!(
            ack.to_string(),
            r#"{"ok":false,"error":{"code":"bad_request","message":"room must be a string"}}"#
        );
    }
}
