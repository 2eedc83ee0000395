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

/// What went wrong when `error` (or one of its causes) is a TLS failure, with what to do
/// about it; None for other errors (then "is the server running?" may be the right question).
/// `ca_file` is where the roots came from (None: the system's).
pub fn tls_failure(error: &anyhow::Error, url: &str, ca_file: Option<&Path>) -> Option<String> {
    let rustls_error = error.chain().find_map(|e| {
        e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        })
    })?;
    Some(explain_tls(rustls_error, url, ca_file))
}

fn explain_tls(error: &rustls::Error, url: &str, ca_file: Option<&Path>) -> String {
    use rustls::CertificateError as C;
    const MAKE_ONE: &str = "`tidings dev-cert` writes a development CA (ca.pem, for --ca-file) \
                            and a server certificate it signed (docs/SECURITY.md#tls)";
    let roots = match ca_file {
        Some(file) => format!("the CA file {}", file.display()),
        None => "the system's root certificates (name the CA with --ca-file)".to_owned(),
    };
    let why = match error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            // webpki's error, which rustls passes on as `Other`.
            C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
                "the server's certificate is a CA certificate (basic constraints CA:TRUE, what \
                 `openssl req -x509` makes unless told otherwise), and a CA certificate cannot \
                 be a server's own certificate. Either serve a certificate signed by a CA and \
                 trust the CA: {MAKE_ONE}; or add `-addext basicConstraints=critical,CA:FALSE` \
                 to `openssl req -x509` and trust that certificate itself"
            ),
            C::UnknownIssuer => format!(
                "the server's certificate is not signed by a certificate authority in {roots}"
            ),
            // A CA of the issuer's name is there, with another key: not the one that signed.
            C::BadSignature | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                format!(
                    "the server's certificate is not signed by a certificate authority in {roots} \
                 (one there has the name of its issuer but another key)"
                )
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for the host of {url} ({cert}): connect \
                 with a name the certificate lists, or make one for this name (`tidings \
                 dev-cert --name HOST`)"
            ),
            C::Expired | C::ExpiredContext { .. } => {
                format!("the server's certificate has expired ({cert})")
            }
            C::NotValidYet | C::NotValidYetContext { .. } => format!(
                "the server's certificate is not valid yet ({cert}); check this machine's clock"
            ),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => format!(
                "the server's certificate is not meant for a TLS server ({cert}: its extended \
                 key usage lacks serverAuth); {MAKE_ONE}"
            ),
            other => format!("the server's certificate was refused: {other}; {MAKE_ONE}"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => format!(
            "the server does not answer in TLS ({error}): if it was started without --tls-cert, \
             use an http:// URL"
        ),
        other => format!("{other}"),
    };
    format!("TLS handshake with {url} failed: {why}")
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
