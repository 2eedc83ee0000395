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
}

impl ErrorCode {
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
        }
    }
}

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
    fn ack_shape_is_the_wire_contract() {
        let ack = ErrorBody::new(ErrorCode::BadRequest, "room must be a string").to_ack();
        assert_eq!(
            ack.to_string(),
            r#"{"ok":false,"error":{"code":"bad_request","message":"room must be a string"}}"#
        );
    }
}
