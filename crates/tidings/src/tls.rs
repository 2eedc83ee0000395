//! TLS of `tidings serve` (`--tls-cert` / `--tls-key`, `TIDINGS_TLS_…`, `[tls]`): the PEM
//! files are read and checked here, once, before the server starts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tidings_server::rustls::ServerConfig;
use tidings_server::tls::ReloadableCert;

use crate::config_file::TlsSection;

/// Serve https/wss. Unset: the `[tls]` section of `--config`, else plain http/ws.
#[derive(Debug, Default, Args)]
pub struct TlsArgs {
    /// PEM certificate chain (the server's certificate first) to serve https:// and wss://;
    /// needs --tls-key. Both files are read again on SIGHUP (renewal without a restart).
    #[arg(long, env = "TIDINGS_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, RSA or EC; not encrypted); needs
    /// --tls-cert.
    #[arg(long, env = "TIDINGS_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

/// The TLS settings in force.
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate being served: [`Tls::reload`] replaces it.
    pub served: Arc<ReloadableCert>,
    pub config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Paths only: never the key.
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TlsArgs {
    /// The certificate and key (flags and variables over the file), read and checked; `None`
    /// without either.
    pub fn load(&self, file: &TlsSection) -> anyhow::Result<Option<Tls>> {
        let cert = self.tls_cert.clone().or_else(|| file.cert.clone());
        let key = self.tls_key.clone().or_else(|| file.key.clone());
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => anyhow::bail!(
                "--tls-cert needs --tls-key (or TIDINGS_TLS_KEY, or [tls] key in the config file)"
            ),
            (None, Some(_)) => anyhow::bail!(
                "--tls-key needs --tls-cert (or TIDINGS_TLS_CERT, or [tls] cert in the config file)"
            ),
        };
        let cert_pem = read(&cert, "certificate")?;
        let key_pem = read(&key, "private key")?;
        let context = || {
            format!(
                "cannot use the TLS certificate {} with the key {}",
                cert.display(),
                key.display()
            )
        };
        let served = ReloadableCert::from_pem(&cert_pem, &key_pem).with_context(context)?;
        let config = served.server_config().with_context(context)?;
        Ok(Some(Tls {
            cert,
            key,
            served,
            config,
        }))
    }
}

impl Tls {
    /// Reads the certificate and key files again and serves them to new connections (open
    /// ones keep theirs). On an error the certificate in place stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let cert_pem = read(&self.cert, "certificate")?;
        let key_pem = read(&self.key, "private key")?;
        self.served
            .reload_from_pem(&cert_pem, &key_pem)
            .with_context(|| {
                format!(
                    "cannot use the TLS certificate {} with the key {}",
                    self.cert.display(),
                    self.key.display()
                )
            })
    }
}

/// Reloads the certificate on every `SIGHUP` (what certbot's and most renewal tools' deploy
/// hooks send), logging the outcome; runs until the process ends.
pub async fn reload_on_sighup(tls: Arc<Tls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(hup) => hup,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: the TLS certificate cannot be reloaded without a restart");
                return;
            }
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!(cert = %tls.cert.display(), "tls: certificate reloaded"),
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "tls: certificate reload failed; still serving the previous certificate"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the TLS {what} {}", path.display()))
}
