//! Reading request bodies (long-polling POSTs, HTTP API calls) within both limits a hostile
//! client could otherwise stretch: `max_payload` bytes, and `Limits::body_timeout`
//! for the whole body to arrive. hyper's header timeout stops a client that trickles its
//! headers (slowloris); this stops one that sends headers at once and then trickles, or never
//! finishes, the body — each such request would otherwise hold a connection slot and a task
//! for as long as the client likes.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// It grew past the byte limit; nothing past the limit was buffered.
    TooLarge,
    /// It did not arrive in full within the time limit.
    TimedOut,
    /// The connection failed while it was being read.
    Io,
}

/// Reads a whole request body: at most `max` bytes, all of them within `timeout` of the call.
pub(crate) async fn read_body(
    body: Incoming,
    max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, BodyError> {
    match tokio::time::timeout(timeout, read_limited(body, max)).await {
        Ok(read) => read,
        Err(_elapsed) => Err(BodyError::TimedOut),
    }
}

async fn read_limited(mut body: Incoming, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Io)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}
