//! TLS for `https://` and `wss://`: [`crate::Server::serve_tls`] with a rustls
//! [`ServerConfig`](rustls::ServerConfig), which [`server_config_from_pem`] makes from a PEM
//! certificate chain and private key (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`).
//!
//! Every accepted connection must finish its handshake within [`crate::Limits::header_timeout`]
//! (it holds a connection slot meanwhile); a handshake that fails or stalls closes the
//! connection and is logged at `debug`. A plain-HTTP request sent to a TLS port gets
//! `400` with `{"error":{"code":"bad_request",…}}` in plain text, so `curl http://…` says what
//! is wrong, and is closed.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The first byte of a TLS record that carries a handshake message (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a certificate and key cannot be used. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate PEM holds no `CERTIFICATE` section.
    #[error("no certificate found (expected a PEM file with -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// The certificate PEM or one of its certificates is malformed.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The key PEM holds no unencrypted private key.
    #[error(
        "no private key found (expected a PEM file with -----BEGIN PRIVATE KEY-----, RSA \
         PRIVATE KEY or EC PRIVATE KEY; encrypted keys are not supported)"
    )]
    NoPrivateKey,
    /// The key PEM is malformed, or the key is of a kind that cannot sign.
    #[error("invalid private key: {0}")]
    InvalidPrivateKey(String),
    /// The private key is not the one of the (first) certificate.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// Any other refusal by rustls.
    #[error("tls configuration: {0}")]
    Config(String),
}

/// A rustls server configuration for [`crate::Server::serve_tls`] from a PEM certificate chain
/// (the server's certificate first, then intermediates) and a PEM private key (PKCS#8, PKCS#1
/// RSA or SEC1 EC; not encrypted). Checks that the key belongs to the certificate.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tidings_server::{Server, ServerConfig, tls};
///
/// let tls = tls::server_config_from_pem(
///     &std::fs::read("cert.pem")?,
///     &std::fs::read("key.pem")?,
/// )?;
/// let server = Server::new(ServerConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3443").await?;
/// server.serve_tls(listener, tls).await?;
/// # Ok(())
/// # }
/// ```
pub fn server_config_from_pem(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let key = certified_key_from_pem(cert_chain_pem, key_pem)?;
    config_with_resolver(Arc::new(SingleCertAndKey::from(key)))
}

/// A certificate that can be replaced while the server runs (`tidings serve` reloads its files
/// on `SIGHUP`): new handshakes use the certificate in place at the time, connections already
/// open keep the one they started with.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tidings_server::{Server, ServerConfig, tls};
///
/// let cert = tls::ReloadableCert::from_pem(&std::fs::read("cert.pem")?, &std::fs::read("key.pem")?)?;
/// let server = Server::new(ServerConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3443").await?;
/// let config = cert.server_config()?;
/// let serving = server.clone();
/// tokio::spawn(async move { serving.serve_tls(listener, config).await });
/// // Later, after the files were renewed:
/// cert.reload_from_pem(&std::fs::read("cert.pem")?, &std::fs::read("key.pem")?)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct ReloadableCert {
    current: parking_lot::RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Checks the certificate chain and key as [`server_config_from_pem`] does.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>, TlsError> {
        let key = certified_key_from_pem(cert_chain_pem, key_pem)?;
        Ok(Arc::new(ReloadableCert {
            current: parking_lot::RwLock::new(Arc::new(key)),
        }))
    }

    /// Replaces the certificate for the handshakes from now on. On an error (a file caught
    /// half-written, a key that does not match) the certificate in place stays.
    pub fn reload_from_pem(&self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let key = certified_key_from_pem(cert_chain_pem, key_pem)?;
        *self.current.write() = Arc::new(key);
        Ok(())
    }

    /// A server configuration that always presents the certificate in place.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        config_with_resolver(self.clone())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // The server speaks HTTP/1.1 only (WebSocket upgrades need it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Parses and checks a PEM chain and key: the chain is not empty, the key loads and is the
/// first certificate's.
fn certified_key_from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::InvalidCertificate(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoPrivateKey),
        Err(e) => return Err(TlsError::InvalidPrivateKey(pem_error(&e))),
    };
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch
        }
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::InconsistentKeys(_) => TlsError::InvalidCertificate(e.to_string()),
        // The key provider's only refusal: a key it cannot parse or sign with.
        rustls::Error::General(_) => TlsError::InvalidPrivateKey(e.to_string()),
        other => TlsError::Config(other.to_string()),
    })
}

/// What a PEM error says, without the bytes it quotes (they may be key material).
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64 in a PEM section".into(),
        pem::Error::NoItemsFound => "nothing found".into(),
        _ => "malformed PEM".into(),
    }
}

/// The TLS handshake of an accepted connection, done by `deadline`. `None` when the peer
/// closed, stalled, spoke plain HTTP (answered with 400) or failed the handshake: each is
/// logged at `debug`, and the connection is dropped.
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    deadline: Instant,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Err(_) => {
            tracing::debug!(peer = %addr, "tls handshake timed out (nothing sent)");
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!(peer = %addr, error = %e, "tls handshake failed");
            return None;
        }
        Ok(Ok(0)) => {
            tracing::debug!(peer = %addr, "connection closed before the tls handshake");
            return None;
        }
        Ok(Ok(_)) if first[0] != TLS_HANDSHAKE_RECORD => {
            tracing::debug!(peer = %addr, "plain http on the tls port");
            if first[0].is_ascii_uppercase() {
                crate::engine::answer_and_close(stream, plain_http_answer()).await;
            }
            return None;
        }
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(peer = %addr, error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %addr, "tls handshake timed out");
            None
        }
    }
}

/// The answer to a plain-HTTP request on a TLS port.
fn plain_http_answer() -> Vec<u8> {
    let body = serde_json::json!({ "error": {
        "code": "bad_request",
        "message": "this port speaks TLS: use https:// or wss://",
    }})
    .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_certificate_and_key() {
        assert!(matches!(
            server_config_from_pem(b"", b""),
            Err(TlsError::NoCertificate)
        ));
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            server_config_from_pem(cert, b"not a key"),
            Err(TlsError::NoPrivateKey)
        ));
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            server_config_from_pem(broken, b""),
            Err(TlsError::InvalidCertificate(_))
        ));
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            server_config_from_pem(cert, key),
            Err(TlsError::InvalidPrivateKey(_))
        ));
    }
}
