//! Who a socket is: the admission of a CONNECT (a verified token's principal, or a
//! `clientId`), the principal kept on the socket, and the disconnect when its token expires.
//! The token and permission logic itself is [`crate::auth`], which knows nothing of sockets.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tidings_core::ErrorBody;
use tokio_util::sync::CancellationToken;

use crate::auth::{
    Action, AuthError, Authenticator, DISCONNECTING_EVENT, Principal, identity_from_auth,
};
use crate::io::{ConnectError, Socket};

/// Who a connecting client is: its durable identity, and its principal when verified.
pub(crate) struct Admitted {
    pub(crate) identity: Option<Arc<str>>,
    pub(crate) principal: Option<Arc<Principal>>,
}

/// Decides who the CONNECT auth payload names: with an authenticator, the verified token's
/// `sub` (a `clientId` is ignored); without, the `clientId` (see
/// [`identity_from_auth`]).
pub(crate) fn admit(
    authenticator: Option<&Authenticator>,
    auth: &Value,
) -> Result<Admitted, ConnectError> {
    let Some(authenticator) = authenticator else {
        return Ok(Admitted {
            identity: identity_from_auth(auth)
                .map_err(|e| ConnectError::new("invalid clientId").with_data(json!(e)))?,
            principal: None,
        });
    };
    let verified = match auth.get("token") {
        Some(Value::String(token)) => authenticator.verify(token),
        None | Some(Value::Null) => Err(AuthError::Missing),
        Some(_) => Err(AuthError::Invalid("`token` must be a string".into())),
    };
    match verified {
        Ok(principal) => Ok(Admitted {
            identity: Some(principal.shared_identity()),
            principal: Some(Arc::new(principal)),
        }),
        Err(e) => Err(ConnectError::new(e.to_string()).with_data(json!(e.body()))),
    }
}

/// The verified principal stored on a socket. A private type, so no other code can put one
/// there.
struct Verified(Arc<Principal>);

impl Socket {
    /// The verified principal of the socket (None without an [`Authenticator`]).
    pub fn principal(&self) -> Option<Arc<Principal>> {
        self.data::<Verified>().map(|v| v.0.clone())
    }

    /// `Ok` when the socket may do `action` on `name`: always without an authenticator, else
    /// as its principal's permissions say (`forbidden` otherwise).
    pub fn check_access(&self, action: Action, name: &str) -> Result<(), ErrorBody> {
        match self.principal() {
            Some(principal) => principal.check(action, name),
            None => Ok(()),
        }
    }
}

/// Stores the principal on a new socket and disconnects the socket when its token expires.
pub(crate) fn attach(socket: &Socket, principal: Option<Arc<Principal>>) {
    let Some(principal) = principal else { return };
    let expires_at = principal.expires_at();
    socket.set_data(Verified(principal));
    let Some(expires_at) = expires_at else { return };
    let left = expires_at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let gone = CancellationToken::new();
    let cancel = gone.clone();
    socket.on_disconnect(move |_, _| async move { cancel.cancel() });
    let socket = socket.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = gone.cancelled() => {}
            _ = tokio::time::sleep(left) => {
                tracing::debug!(sid = %socket.id(), ns = socket.namespace().name(), "token expired, disconnecting");
                let notice = AuthError::Expired.body();
                let _ = socket.emit(DISCONNECTING_EVENT, &notice);
                socket.disconnect();
            }
        }
    });
}
