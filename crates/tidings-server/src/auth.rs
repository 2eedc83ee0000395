//! Verified identities and permissions: JSON Web Tokens checked with one pinned algorithm, and
//! the `tidings` claim (plus configured [`AccessRule`]s) deciding what a client may do.
//!
//! With an [`Authenticator`] in [`crate::ServerConfig::auth`]:
//!
//! - a client connects with `auth: {token}`; the token's `sub` becomes the socket's durable
//!   identity (a `clientId` in the payload is ignored, so nobody can claim another identity).
//!   A missing or bad token is refused with CONNECT_ERROR `{message, data:{code, message}}`,
//!   `code` being `unauthorized` or `token_expired`;
//! - the socket is disconnected when its token expires, after the event
//!   `tidings:disconnecting` `{code:"token_expired", message}`;
//! - the built-in events check the [`Permissions`]: `publish` (topic), `subscribe` and
//!   `history` (topic), `join` (room), `broadcast` (`publish` on the room; `admin` for a
//!   namespace-wide broadcast). A refusal is `{ok:false,error:{code:"forbidden",message}}`;
//! - the `/v1` HTTP API wants `Authorization: Bearer <token>` (401 without a valid one) and
//!   answers 403 for what the token does not allow; only `admin` sees or changes other
//!   identities' queues.
//!
//! Without an authenticator every client may do everything (development mode), as before.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tidings_core::store::SubscriptionName;
use tidings_core::{ErrorBody, ErrorCode};

use tidings_core::topic_matches;

/// The shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// The event a socket receives right before the server disconnects it for a reason of its
/// own (an expired token): `{code, message}`.
pub const DISCONNECTING_EVENT: &str = "tidings:disconnecting";

/// What a client may do, from the token's `tidings` claim and the matching [`AccessRule`]s.
///
/// Patterns are topic or room names with `*` for one dot-separated segment and `>` for the
/// rest (`orders.*`, `vendor.>`, `>` for everything). `admin` grants everything, including
/// other identities' queues through the HTTP API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Permissions {
    /// Topics the client may publish to, and rooms it may `broadcast` to.
    pub publish: Vec<String>,
    /// Topics the client may subscribe to and read the history of.
    pub subscribe: Vec<String>,
    /// Rooms the client may join.
    pub join: Vec<String>,
    /// Everything, and other identities' queues (HTTP API).
    pub admin: bool,
}

impl Permissions {
    /// Permissions granting `publish`, `subscribe` and `join` patterns, without admin.
    pub fn new(
        publish: impl IntoIterator<Item = impl Into<String>>,
        subscribe: impl IntoIterator<Item = impl Into<String>>,
        join: impl IntoIterator<Item = impl Into<String>>,
    ) -> Permissions {
        Permissions {
            publish: publish.into_iter().map(Into::into).collect(),
            subscribe: subscribe.into_iter().map(Into::into).collect(),
            join: join.into_iter().map(Into::into).collect(),
            admin: false,
        }
    }

    /// Every permission.
    pub fn admin() -> Permissions {
        Permissions {
            admin: true,
            ..Permissions::default()
        }
    }

    /// Whether `action` on `name` (a topic or a room) is allowed.
    pub fn allows(&self, action: Action, name: &str) -> bool {
        if self.admin {
            return true;
        }
        let patterns = match action {
            Action::Publish => &self.publish,
            Action::Subscribe => &self.subscribe,
            Action::Join => &self.join,
        };
        patterns.iter().any(|p| topic_matches(p, name))
    }

    fn extend(&mut self, other: &Permissions) {
        self.publish.extend(other.publish.iter().cloned());
        self.subscribe.extend(other.subscribe.iter().cloned());
        self.join.extend(other.join.iter().cloned());
        self.admin |= other.admin;
    }
}

/// Something a client may or may not do to a topic or room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Publish to a topic, or broadcast to a room.
    Publish,
    /// Subscribe to a topic or read its history.
    Subscribe,
    /// Join a room.
    Join,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish to",
            Action::Subscribe => "subscribe to",
            Action::Join => "join",
        }
    }
}

/// Permissions granted by configuration to every identity that matches `identity`, in
/// addition to its token's: `*` in `identity` matches any run of characters (`driver-*`,
/// `*` for everyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRule {
    /// The identity (`sub`) pattern.
    pub identity: String,
    /// What it grants.
    pub permissions: Permissions,
}

/// Whether `identity` matches a glob where `*` is any run of characters.
fn glob_matches(pattern: &str, identity: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = identity.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A verified client: its identity, when its token expires, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    identity: Arc<str>,
    expires_at: Option<SystemTime>,
    permissions: Permissions,
}

impl Principal {
    /// The token's `sub`: the durable identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The identity, shared.
    pub(crate) fn shared_identity(&self) -> Arc<str> {
        self.identity.clone()
    }

    /// When the token stops being accepted (its `exp` plus the leeway).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The effective permissions (token claim and matching rules).
    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    /// Whether `action` on `name` is allowed.
    pub fn allows(&self, action: Action, name: &str) -> bool {
        self.permissions.allows(action, name)
    }

    /// Whether the principal may act on other identities' queues.
    pub fn is_admin(&self) -> bool {
        self.permissions.admin
    }

    /// `Ok` when `action` on `name` is allowed, else the `forbidden` error body.
    pub fn check(&self, action: Action, name: &str) -> Result<(), ErrorBody> {
        if self.allows(action, name) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "{} may not {} {name:?}",
                self.identity,
                action.as_str()
            )))
        }
    }
}

pub(crate) fn forbidden(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::Forbidden, message)
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented.
    #[error("a token is required")]
    Missing,
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// Anything else: bad signature, wrong algorithm, malformed, missing claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl AuthError {
    /// The wire code: `token_expired` or `unauthorized`.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired => ErrorCode::TokenExpired,
            _ => ErrorCode::Unauthorized,
        }
    }

    /// The error body `{code, message}`.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

/// The authenticator's key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token key: {0}")]
pub struct KeyError(String);

#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing `sub` is reported as such, not as malformed claims.
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    tidings: Option<Permissions>,
}

/// Verifies JSON Web Tokens with one key and one pinned algorithm (HS256 for a shared secret,
/// RS256 / ES256 / EdDSA for an RSA / P-256 / Ed25519 public key): a token whose header names
/// any other algorithm — `none`, or HS256 signed with the public key's bytes — is refused.
///
/// `exp` and `sub` are required; `exp` and `nbf` are checked with a leeway (default 60 s),
/// `aud` and `iss` only when configured.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    rules: Vec<AccessRule>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key (an HS256 secret).
        f.debug_struct("Authenticator")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("leeway_secs", &self.validation.leeway)
            .field("audience", &self.validation.aud)
            .field("issuer", &self.validation.iss)
            .field("rules", &self.rules)
            .finish()
    }
}

impl Authenticator {
    fn with_key(key: DecodingKey, algorithm: Algorithm) -> Authenticator {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Authenticator {
            key,
            algorithm,
            validation,
            rules: Vec::new(),
        }
    }

    /// Tokens signed with HS256 and this shared secret (at least
    /// [`MIN_HS256_SECRET_LEN`] bytes).
    pub fn hs256(secret: &[u8]) -> Result<Authenticator, KeyError> {
        if secret.len() < MIN_HS256_SECRET_LEN {
            return Err(KeyError(format!(
                "an HS256 secret must be at least {MIN_HS256_SECRET_LEN} bytes, got {}",
                secret.len()
            )));
        }
        Ok(Self::with_key(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// Tokens signed with the private half of this PEM public key (`-----BEGIN PUBLIC
    /// KEY-----`): RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Authenticator, KeyError> {
        let text = String::from_utf8_lossy(pem);
        if text.contains("PRIVATE KEY") {
            return Err(KeyError(
                "expected a public key, got a private key (keep it with the token issuer)".into(),
            ));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with_key(key, Algorithm::RS256));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::with_key(key, Algorithm::ES256));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(Self::with_key(key, Algorithm::EdDSA));
        }
        Err(KeyError(
            "not a PEM RSA, EC P-256 or Ed25519 public key".into(),
        ))
    }

    /// The pinned algorithm, e.g. `HS256`.
    pub fn algorithm(&self) -> String {
        format!("{:?}", self.algorithm)
    }

    /// Clock skew tolerated on `exp` and `nbf` (whole seconds). Default 60 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Accept only tokens whose `aud` contains `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation
            .required_spec_claims
            .insert("aud".to_owned());
        self
    }

    /// Accept only tokens whose `iss` is `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// Permissions granted by configuration, added to every matching token's.
    pub fn rules(mut self, rules: Vec<AccessRule>) -> Self {
        self.rules = rules;
        self
    }

    /// Verifies `token` and returns who presented it and what it may do.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.check_algorithm(token)?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| self.explain(e.kind()))?;
        let claims = data.claims;
        let Some(sub) = claims.sub else {
            return Err(AuthError::Invalid("missing claim `sub`".into()));
        };
        if SubscriptionName::identity(&sub).is_err() {
            return Err(AuthError::Invalid(
                "`sub` must be 1 to 200 bytes without control characters".into(),
            ));
        }
        let mut permissions = claims.tidings.unwrap_or_default();
        for rule in &self.rules {
            if glob_matches(&rule.identity, &sub) {
                permissions.extend(&rule.permissions);
            }
        }
        let expires_at = claims.exp.map(|exp| {
            UNIX_EPOCH + Duration::from_secs(exp.saturating_add(self.validation.leeway))
        });
        Ok(Principal {
            identity: Arc::from(sub),
            expires_at,
            permissions,
        })
    }

    /// Refuses a token whose header names another algorithm than the pinned one, with a
    /// message that says so: `jsonwebtoken` cannot even parse a header with `alg: none` and
    /// would only report it as malformed.
    fn check_algorithm(&self, token: &str) -> Result<(), AuthError> {
        let header = token.split('.').next().unwrap_or("");
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')) else {
            return Ok(()); // `decode` explains what is malformed
        };
        let alg = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
        match alg {
            Some(alg) if alg != format!("{:?}", self.algorithm) => {
                Err(AuthError::Invalid(format!(
                    "algorithm {:?} not accepted (this server accepts {:?} only)",
                    alg.chars().take(16).collect::<String>(),
                    self.algorithm
                )))
            }
            _ => Ok(()),
        }
    }

    fn explain(&self, kind: &ErrorKind) -> AuthError {
        let why = match kind {
            ErrorKind::ExpiredSignature => return AuthError::Expired,
            ErrorKind::ImmatureSignature => return AuthError::NotYetValid,
            ErrorKind::InvalidSignature => "signature does not match".to_owned(),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => format!(
                "algorithm not accepted (this server accepts {:?} only)",
                self.algorithm
            ),
            ErrorKind::MissingRequiredClaim(claim) => format!("missing claim `{claim}`"),
            ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim `{claim}`"),
            ErrorKind::InvalidAudience => "wrong audience".to_owned(),
            ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
            ErrorKind::Json(_) => "malformed header or claims".to_owned(),
            _ => "malformed token".to_owned(),
        };
        AuthError::Invalid(why)
    }
}

/// The longest accepted `clientId`, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = tidings_core::store::MAX_SUBSCRIBER_LEN;

/// The durable identity named by the CONNECT auth payload's `clientId`, if any (without an
/// [`Authenticator`]). A `clientId` that is present but not a usable name is an error: a
/// client that believes it has an identity must not silently run without one.
///
/// # Errors
///
/// `bad_request` for a `clientId` that is not a string of 1 to [`MAX_CLIENT_ID_LEN`] bytes
/// without control characters.
pub fn identity_from_auth(auth: &Value) -> Result<Option<Arc<str>>, ErrorBody> {
    match auth.get("clientId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if SubscriptionName::identity(id).is_ok() => {
            Ok(Some(Arc::from(id.as_str())))
        }
        Some(_) => Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "clientId must be a string of 1 to {MAX_CLIENT_ID_LEN} bytes without control characters"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob_matches("*", "anyone"));
        assert!(glob_matches("driver-*", "driver-7"));
        assert!(glob_matches("driver-*", "driver-"));
        assert!(!glob_matches("driver-*", "drive-7"));
        assert!(glob_matches("*-admin", "ops-admin"));
        assert!(glob_matches("a*b*c", "a-b-c"));
        assert!(!glob_matches("a*b*c", "a-c-b"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exactly"));
        assert!(!glob_matches("ab*ba", "aba"));
    }

    #[test]
    fn permissions() {
        let p = Permissions::new(["orders.*"], ["vendor.>"], ["room.1"]);
        assert!(p.allows(Action::Publish, "orders.new"));
        assert!(!p.allows(Action::Publish, "orders.new.x"));
        assert!(!p.allows(Action::Subscribe, "orders.new"));
        assert!(p.allows(Action::Subscribe, "vendor.a.b"));
        assert!(p.allows(Action::Join, "room.1"));
        assert!(!p.allows(Action::Join, "room.2"));
        assert!(Permissions::admin().allows(Action::Join, "anything"));
    }

    #[test]
    fn short_secrets_and_private_keys_are_refused() {
        assert!(Authenticator::hs256(b"short").is_err());
        assert!(Authenticator::from_public_key_pem(b"-----BEGIN PRIVATE KEY-----").is_err());
        assert!(Authenticator::from_public_key_pem(b"garbage").is_err());
    }

    #[test]
    fn alg_none_is_refused_as_a_wrong_algorithm() {
        let a = Authenticator::hs256(b"0123456789abcdef0123456789abcdef-secret").unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"a","exp":99999999999}"#);
        let e = a.verify(&format!("{header}.{claims}.")).unwrap_err();
        assert!(
            e.to_string().contains("algorithm \"none\" not accepted"),
            "{e}"
        );
        assert_eq!(e.code(), ErrorCode::Unauthorized);
    }

    #[test]
    fn debug_hides_the_secret() {
        let a = Authenticator::hs256(b"0123456789abcdef0123456789abcdef-secret").unwrap();
        assert!(!format!("{a:?}").contains("secret"));
    }

    #[test]
    fn client_ids() {
        assert_eq!(identity_from_auth(&json!({})).unwrap(), None);
        assert_eq!(
            identity_from_auth(&json!({"clientId": "d-7"}))
                .unwrap()
                .as_deref(),
            Some("d-7")
        );
        assert!(identity_from_auth(&json!({"clientId": 7})).is_err());
        assert!(identity_from_auth(&json!({"clientId": ""})).is_err());
    }
}
