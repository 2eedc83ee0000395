//! Limits against abuse: connections in total and per IP address, the time allowed for HTTP
//! headers, events per second per connection, and what one client can make the server hold —
//! namespaces, rooms, pending acks, binary attachments. Each has a documented answer and a
//! counter in [`crate::ServerStats`]; docs/SECURITY.md lists them all with their defaults.
//!
//! Every resource a single client can grow has a finite default (issue 19: a server that is
//! safe only after reading the docs is not safe); `None` switches a limit off.
//!
//! The per-identity limits of the durable queues (publishes per second, subscriptions) live
//! in [`crate::QueueConfig`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Connection and traffic limits of a [`crate::Server`]. `None` means unlimited.
///
/// The defaults are generous — no ordinary application meets them — but finite, so that one
/// client cannot take the server's memory: docs/SECURITY.md gives what each one bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Open TCP connections in total. Past it, a new connection gets `503` with
    /// `{"error":{"code":"too_many_connections"}}` and is closed. Default unlimited.
    pub max_connections: Option<usize>,
    /// Open TCP connections per peer IP address (the TCP peer: behind a proxy, the proxy's).
    /// Same answer. Default 10,000 (a connection holds ~6 KiB idle, so ~60 MiB per address).
    pub max_connections_per_ip: Option<usize>,
    /// How long a client may take to send a request's headers before the connection is closed
    /// (slowloris). Default 10 s.
    pub header_timeout: Duration,
    /// How long a request's body (a long-polling POST, an HTTP API call) may take to arrive
    /// in full, counted from when the server starts reading it. Past it the request gets
    /// `408` and its connection is closed (a polling session too). Default 30 s.
    pub body_timeout: Duration,
    /// Socket.IO events per second per Engine.IO session, with a burst of the same size. An
    /// event past it is not handled: its ack, if it asked for one, is `{ok:false,
    /// error:{code:"rate_limited"}}`. Default 50,000 (one connection's packets are handled
    /// one after another, so this bounds the handler tasks one connection can start per
    /// second rather than its CPU; the benchmark's single broadcaster sends 40,000 a second).
    pub events_per_second: Option<u32>,
    /// Namespaces created on demand (by [`crate::Server::of_dynamic`]; `tidings serve` opens
    /// every namespace that way) that may exist at once. Past it, a CONNECT to a new one gets
    /// a `connect_error` `{code:"limit_exceeded"}` naming the limit. Such a namespace is
    /// removed when its last socket leaves. Default 10,000 (~1.6 KiB each: ~16 MiB).
    pub max_namespaces: Option<usize>,
    /// Namespaces one connection (Engine.IO session) may join at once, connecting ones
    /// included. Past it, a CONNECT gets a `connect_error` `{code:"limit_exceeded"}`.
    /// Default 20.
    pub max_namespaces_per_connection: Option<usize>,
    /// Rooms one socket may be in, its own room included. Past it, [`crate::Socket::join`]
    /// returns [`crate::JoinError::TooManyRooms`] and the built-in `join` answers
    /// `{ok:false,error:{code:"limit_exceeded"}}`. Default 1,000 (≤ ~0.5 MiB per socket with
    /// 256-byte names).
    pub max_rooms_per_socket: Option<usize>,
    /// Server→client acks one socket may owe at once (deliveries of durable topics and
    /// [`crate::Socket::send_with_ack`]). Past it an emit asking for an ack fails with
    /// [`crate::AckError::TooManyPending`]; a delivery waits and is redelivered later.
    /// Default 10,000 (~100 bytes each: ~1 MiB per socket).
    pub max_pending_acks_per_socket: Option<usize>,
    /// Binary attachments one Socket.IO packet may announce (at most
    /// [`tidings_proto::packet::MAX_ATTACHMENTS`], the codec's own cap). A packet announcing
    /// more closes the connection with `parse error` before any attachment is read. Default
    /// 10: a half-received packet then holds at most 10 × `max_payload` bytes.
    pub max_attachments: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            max_connections_per_ip: Some(10_000),
            header_timeout: Duration::from_secs(10),
            body_timeout: crate::engine::EngineConfig::default().body_timeout,
            events_per_second: Some(50_000),
            max_namespaces: Some(10_000),
            max_namespaces_per_connection: Some(20),
            max_rooms_per_socket: Some(1_000),
            max_pending_acks_per_socket: Some(10_000),
            max_attachments: Some(10),
        }
    }
}

// Setters, one per field, like `ServerConfigBuilder`'s.
impl Limits {
    /// See [`Limits::max_connections`].
    pub fn max_connections(mut self, n: Option<usize>) -> Self {
        self.max_connections = n;
        self
    }
    /// See [`Limits::max_connections_per_ip`].
    pub fn max_connections_per_ip(mut self, n: Option<usize>) -> Self {
        self.max_connections_per_ip = n;
        self
    }
    /// See [`Limits::header_timeout`].
    pub fn header_timeout(mut self, d: Duration) -> Self {
        self.header_timeout = d;
        self
    }
    /// See [`Limits::body_timeout`].
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.body_timeout = d;
        self
    }
    /// See [`Limits::events_per_second`].
    pub fn events_per_second(mut self, n: Option<u32>) -> Self {
        self.events_per_second = n;
        self
    }
    /// See [`Limits::max_namespaces`].
    pub fn max_namespaces(mut self, n: Option<usize>) -> Self {
        self.max_namespaces = n;
        self
    }
    /// See [`Limits::max_namespaces_per_connection`].
    pub fn max_namespaces_per_connection(mut self, n: Option<usize>) -> Self {
        self.max_namespaces_per_connection = n;
        self
    }
    /// See [`Limits::max_rooms_per_socket`].
    pub fn max_rooms_per_socket(mut self, n: Option<usize>) -> Self {
        self.max_rooms_per_socket = n;
        self
    }
    /// See [`Limits::max_pending_acks_per_socket`].
    pub fn max_pending_acks_per_socket(mut self, n: Option<usize>) -> Self {
        self.max_pending_acks_per_socket = n;
        self
    }
    /// See [`Limits::max_attachments`].
    pub fn max_attachments(mut self, n: Option<usize>) -> Self {
        self.max_attachments = n;
        self
    }
    /// Every limit of this struct that has a count switched off (the timeouts stay): what a
    /// benchmark or a trusted embedder may want.
    pub fn unbounded(self) -> Self {
        Limits {
            max_connections: None,
            max_connections_per_ip: None,
            events_per_second: None,
            max_namespaces: None,
            max_namespaces_per_connection: None,
            max_rooms_per_socket: None,
            max_pending_acks_per_socket: None,
            max_attachments: None,
            ..self
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_connections == Some(0) || self.max_connections_per_ip == Some(0) {
            return Err("connection limits must be at least 1".into());
        }
        if self.events_per_second == Some(0) {
            return Err("events per second must be at least 1".into());
        }
        let counts = [
            ("max namespaces", self.max_namespaces),
            (
                "max namespaces per connection",
                self.max_namespaces_per_connection,
            ),
            (
                "max pending acks per socket",
                self.max_pending_acks_per_socket,
            ),
            ("max attachments", self.max_attachments),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == Some(0)) {
            return Err(format!("{name} must be at least 1"));
        }
        // A socket is always in its own room.
        if self.max_rooms_per_socket.is_some_and(|n| n < 2) {
            return Err(
                "max rooms per socket must be at least 2 (a socket is in its own room)".into(),
            );
        }
        if self
            .max_attachments
            .is_some_and(|n| n > tidings_proto::packet::MAX_ATTACHMENTS)
        {
            return Err(format!(
                "max attachments must be at most {}",
                tidings_proto::packet::MAX_ATTACHMENTS
            ));
        }
        if self.header_timeout.is_zero() {
            return Err("the header timeout must be positive".into());
        }
        if self.body_timeout.is_zero() {
            return Err("the body timeout must be positive".into());
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens per second, holding at most `rate` (the burst).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// Takes one token; false when the bucket is empty.
    pub(crate) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket would be full now (nothing to remember about its owner).
    pub(crate) fn is_full(&self) -> bool {
        self.tokens + Instant::now().duration_since(self.last).as_secs_f64() * self.rate
            >= self.rate
    }
}

/// Token buckets per key (e.g. per identity), forgetting full ones when the map grows.
#[derive(Debug, Default)]
pub(crate) struct KeyedBuckets {
    buckets: Mutex<HashMap<Arc<str>, TokenBucket>>,
}

/// Past this many keys, full buckets are forgotten (a full bucket is the same as a new one).
const KEYED_PRUNE_AT: usize = 10_000;

impl KeyedBuckets {
    pub(crate) fn take(&self, key: &Arc<str>, rate: u32) -> bool {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= KEYED_PRUNE_AT && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.is_full());
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(rate))
            .take()
    }
}

/// Counts open connections in total and per IP; hands out a permit per admitted connection.
#[derive(Debug, Default)]
pub(crate) struct ConnectionLimiter {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub(crate) refused: crate::metrics::Counter,
    /// Woken whenever a connection closes (for the drain after a shutdown).
    closed: tokio::sync::Notify,
}

/// Held for the life of one admitted connection.
pub(crate) struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limiter.total.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self.limiter.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.limiter.closed.notify_waiters();
    }
}

impl ConnectionLimiter {
    /// Open TCP connections now (plain and TLS, WebSocket or HTTP).
    pub(crate) fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Waits until no admitted connection is open, at most until `deadline`; true if none is.
    pub(crate) async fn drained(&self, deadline: Instant) -> bool {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.total.load(Ordering::Acquire) == 0 {
                return true;
            }
            tokio::select! {
                _ = closed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return self.total.load(Ordering::Acquire) == 0;
                }
            }
        }
    }

    /// A permit for a new connection from `ip`, or the reason it is refused.
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: &Limits,
    ) -> Result<ConnectionPermit, &'static str> {
        let mut per_ip = self.per_ip.lock();
        let total = self.total.load(Ordering::Acquire);
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        let refused = if limits.max_connections.is_some_and(|max| total >= max) {
            Some("the server has too many connections")
        } else if limits.max_connections_per_ip.is_some_and(|max| mine >= max) {
            Some("too many connections from this address")
        } else {
            None
        };
        if let Some(why) = refused {
            let (n, warn) = self.refused.incr();
            if warn {
                tracing::warn!(%ip, total, from_ip = mine, refused = n, "connection refused: {why}");
            }
            return Err(why);
        }
        self.total.fetch_add(1, Ordering::AcqRel);
        per_ip.insert(ip, mine + 1);
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }
}

/// The answer to a refused connection: a complete HTTP/1.1 response, then close.
pub(crate) fn refusal(why: &str) -> Vec<u8> {
    let error = tidings_core::ErrorBody::new(tidings_core::ErrorCode::TooManyConnections, why);
    let body = serde_json::json!({ "error": error }).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_at_the_rate() {
        let mut b = TokenBucket::new(10);
        assert_eq!((0..20).filter(|_| b.take()).count(), 10);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!((0..20).filter(|_| b.take()).count(), 5);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.is_full());
    }

    #[test]
    fn permits_count_per_ip_and_in_total() {
        let limiter = Arc::new(ConnectionLimiter::default());
        let limits = Limits::default()
            .max_connections(Some(3))
            .max_connections_per_ip(Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limiter.admit(a, &limits).unwrap();
        let _p2 = limiter.admit(a, &limits).unwrap();
        assert!(limiter.admit(a, &limits).is_err());
        let _p3 = limiter.admit(b, &limits).unwrap();
        assert!(limiter.admit(b, &limits).is_err(), "total reached");
        drop(p1);
        assert!(limiter.admit(a, &limits).is_ok());
        assert_eq!(limiter.refused.get(), 2);
    }
}
