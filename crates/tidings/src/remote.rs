//! How the client commands (`publish`, `topics`, `listen`) reach a running server: its URL,
//! the token to present, and the roots to trust for `https://`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The server a client command talks to.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The server: `http://host:port`, or `https://host:port` for a server started with
    /// `--tls-cert`.
    #[arg(long, env = "TIDINGS_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// A token (JWT) for a server that verifies them (`--jwt-secret` / `--jwt-public-key`):
    /// sent as `Authorization: Bearer` to the HTTP API and as `{token}` when connecting.
    /// Prefer the variable on shared machines (a command line is visible to `ps`).
    #[arg(long, env = "TIDINGS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the certificate authorities to trust for `https://` (default: the
    /// system's roots).
    #[arg(long, env = "TIDINGS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// A parsed server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` (the port defaults to 80 or 443), for the TCP connection.
    pub address: String,
    /// The `Host` header: the URL's authority as written.
    pub host_header: String,
    /// The host name alone (IPv6 without brackets), checked against the certificate.
    pub host: String,
    pub tls: bool,
}

/// Parses `http://host[:port][/]` or `https://…`.
pub fn endpoint(url: &str) -> anyhow::Result<Endpoint> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        bail!("the server URL must start with http:// or https://, got {url}");
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.is_empty() {
        bail!("the server URL has no host: {url}");
    }
    // `[::1]:3000`, `[::1]`, `example.com:3000`, `example.com`.
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .with_context(|| format!("unclosed [ in the server URL: {url}"))?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => bail!("unexpected {after:?} after the host in {url}"),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("the server URL has no host: {url}");
    }
    let port: u16 = match port {
        Some(port) => port
            .parse()
            .with_context(|| format!("invalid port {port:?} in {url}"))?,
        None if tls => 443,
        None => 80,
    };
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Endpoint {
        address,
        host_header: authority.to_owned(),
        host: host.to_owned(),
        tls,
    })
}

impl RemoteArgs {
    /// The TLS configuration for an `https://` URL (None for `http://`).
    pub fn tls(&self) -> anyhow::Result<Option<Arc<ClientConfig>>> {
        if !endpoint(&self.url)?.tls {
            return Ok(None);
        }
        let roots = match &self.ca_file {
            Some(file) => roots_from_file(file)?,
            None => system_roots()?,
        };
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .context("TLS setup failed")?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Some(Arc::new(config)))
    }

    /// The server name to check the certificate against.
    pub fn server_name(&self) -> anyhow::Result<ServerName<'static>> {
        let endpoint = endpoint(&self.url)?;
        ServerName::try_from(endpoint.host.clone())
            .with_context(|| format!("{:?} is not a valid server name", endpoint.host))
    }
}

fn roots_from_file(file: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(file)
        .with_context(|| format!("cannot read the CA file {}", file.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("{}: malformed PEM", file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{}: not a usable CA certificate", file.display()))?;
    }
    if roots.is_empty() {
        bail!("{}: no certificate in the file", file.display());
    }
    Ok(roots)
}

fn system_roots() -> anyhow::Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        bail!("no system root certificates found{why}; name the CA with --ca-file");
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = endpoint("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            (e.address.as_str(), e.host.as_str(), e.tls),
            ("127.0.0.1:3000", "127.0.0.1", false)
        );
        let e = endpoint("https://example.com/").unwrap();
        assert_eq!(
            (e.address.as_str(), e.host_header.as_str(), e.tls),
            ("example.com:443", "example.com", true)
        );
        let e = endpoint("http://[::1]:8080").unwrap();
        assert_eq!((e.address.as_str(), e.host.as_str()), ("[::1]:8080", "::1"));
        assert_eq!(endpoint("http://[::1]").unwrap().address, "[::1]:80");
        for bad in [
            "ftp://x",
            "127.0.0.1:3000",
            "http://",
            "http://:80",
            "http://h:port",
            "http://[::1",
            "http://[::1]x",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }
}
