//! A minimal HTTP/1.1 client for the CLI's calls to the `/v1` API of a running server.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The scheme, host and port of a server URL like `http://127.0.0.1:3000`.
pub fn authority(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("the server URL must start with http://, got {url}"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    if host.is_empty() {
        bail!("the server URL has no host: {url}");
    }
    Ok(host.to_owned())
}

/// Sends one request and returns the status and the JSON body.
pub async fn call(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let host = authority(url)?;
    let stream = tokio::net::TcpStream::connect(&host)
        .await
        .with_context(|| {
            format!("cannot reach the tidings server at {url} (is `tidings serve` running?)")
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))?;
    let res = sender
        .send_request(req)
        .await
        .with_context(|| format!("{method} {path} failed"))?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await?.to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {path}: the server answered non-JSON"))?
    };
    Ok((status, value))
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
