//! A minimal HTTP/1.1 client for the CLI's calls to the `/v1` API of a running server.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::remote::{RemoteArgs, endpoint, tls_failure};

/// Sends one request to the server of `remote` (over TLS for `https://`, with its token as
/// `Authorization: Bearer`) and returns the status and the JSON body.
pub async fn call(
    remote: &RemoteArgs,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let url = &remote.url;
    let endpoint = endpoint(url)?;
    let tls = remote.tls()?;
    let stream = tokio::net::TcpStream::connect(&endpoint.address)
        .await
        .with_context(|| {
            format!("cannot reach the tidings server at {url} (is `tidings serve` running?)")
        })?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &endpoint.host_header)
        .header("content-type", "application/json");
    if let Some(token) = &remote.token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::from(payload)))?;
    let (status, bytes) = match tls {
        None => send(stream, req).await,
        Some(config) => {
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(remote.server_name()?, stream)
                .await
                .map_err(anyhow::Error::new)
                .map_err(|e| match tls_failure(&e, url, remote.ca_file.as_deref()) {
                    Some(why) => anyhow::anyhow!(why),
                    None => e.context(format!("TLS handshake with {url} failed")),
                })?;
            send(stream, req).await
        }
    }
    .with_context(|| format!("{method} {path} failed"))?;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {path}: the server answered non-JSON"))?
    };
    Ok((status, value))
}

/// One request on a new HTTP/1.1 connection over `stream`.
async fn send<S>(stream: S, req: Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Turns an API error body into an error message.
pub fn api_error(status: u16, body: &Value) -> anyhow::Error {
    let code = body["error"]["code"].as_str().unwrap_or("unknown");
    let message = body["error"]["message"].as_str().unwrap_or("no message");
    anyhow::anyhow!("server answered {status} {code}: {message}")
}

/// Percent-encodes one path segment.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
