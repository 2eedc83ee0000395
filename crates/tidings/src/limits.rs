//! The limits of `tidings serve` (docs/SECURITY.md): flags and `TIDINGS_…` variables over the
//! `[limits]` section of the TOML file over the library defaults.

use std::time::Duration;

use clap::Args;
use tidings_core::store::Overflow;
use tidings_server::{Limits, QueueConfig, ServerConfigBuilder};

use crate::config_file::ByteSize;
use crate::config_file::{Limit, LimitsSection};
use crate::memory_budget::default_max_retained_bytes;

/// The flag, else the file, else `default`.
fn pick<T: Copy>(flag: Option<Limit<T>>, file: Option<Limit<T>>, default: Option<T>) -> Option<T> {
    flag.or(file).map_or(default, |limit| limit.0)
}

/// Limits against abuse. Unset: the `[limits]` section of `--config`, else the default. Every
/// count takes a number or `unlimited`.
#[derive(Debug, Default, Args)]
pub struct LimitArgs {
    /// Open TCP connections in total; past it new ones get 503 (default: unlimited).
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS", value_name = "N|unlimited")]
    max_connections: Option<Limit<usize>>,
    /// Open TCP connections per client IP address; past it new ones get 503 (default 10000).
    #[arg(
        long,
        env = "TIDINGS_MAX_CONNECTIONS_PER_IP",
        value_name = "N|unlimited"
    )]
    max_connections_per_ip: Option<Limit<usize>>,
    /// Milliseconds a client may take to send a request's headers (default 10000).
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT_MS")]
    header_timeout_ms: Option<u64>,
    /// Milliseconds a request body (polling POST, HTTP API call) may take to arrive in full;
    /// past it the request gets 408 and its connection is closed (default 30000).
    #[arg(long, env = "TIDINGS_BODY_TIMEOUT_MS")]
    body_timeout_ms: Option<u64>,
    /// Milliseconds a new session may take to join a namespace (default 45000).
    #[arg(long, env = "TIDINGS_CONNECT_TIMEOUT_MS")]
    connect_timeout_ms: Option<u64>,
    /// Socket.IO events per second per connection; past it an event's ack is `rate_limited`
    /// (default 50000).
    #[arg(
        long,
        env = "TIDINGS_MAX_EVENTS_PER_SECOND",
        value_name = "N|unlimited"
    )]
    max_events_per_second: Option<Limit<u32>>,
    /// Publishes per second per identity; past it a publish is `rate_limited` (default 1000).
    #[arg(
        long,
        env = "TIDINGS_MAX_PUBLISHES_PER_SECOND",
        value_name = "N|unlimited"
    )]
    max_publishes_per_second: Option<Limit<u32>>,
    /// Subscriptions per identity; past it a subscribe is `limit_exceeded` (default 10000).
    #[arg(
        long,
        env = "TIDINGS_MAX_SUBSCRIPTIONS_PER_IDENTITY",
        value_name = "N|unlimited"
    )]
    max_subscriptions_per_identity: Option<Limit<usize>>,
    /// Origin allowed to open a WebSocket from a browser (repeatable; comma-separated in the
    /// environment). Unset: any. Browser upgrades from other origins get 403.
    #[arg(
        long = "ws-allowed-origin",
        env = "TIDINGS_WS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    ws_allowed_origins: Vec<String>,
    /// Entries (pending, in flight or not yet delivered) one subscription's queue may hold;
    /// past it a publish to its topic meets `--overflow` (default: no check; retention bounds
    /// every topic, so every queue).
    #[arg(long, env = "TIDINGS_MAX_QUEUE_DEPTH", value_name = "N|unlimited")]
    max_queue_depth: Option<Limit<u64>>,
    /// What a publish does when a subscription's queue is full: `reject` (refused with
    /// `queue_full`, nothing stored; the default) or `drop-oldest` (stored; the subscription
    /// loses its oldest unsettled entries, announced with `tidings:gap`).
    #[arg(long, env = "TIDINGS_OVERFLOW", value_name = "reject|drop-oldest")]
    overflow: Option<Overflow>,
    /// Topics in all; a publish or subscribe that would create one more is `limit_exceeded`
    /// (default 100000).
    #[arg(long, env = "TIDINGS_MAX_TOPICS", value_name = "N|unlimited")]
    max_topics: Option<Limit<u64>>,
    /// Namespaces created on demand that may exist at once; a CONNECT to one more gets a
    /// `connect_error` `limit_exceeded` (default 10000).
    #[arg(long, env = "TIDINGS_MAX_NAMESPACES", value_name = "N|unlimited")]
    max_namespaces: Option<Limit<usize>>,
    /// Namespaces one connection may join; one more gets a `connect_error` `limit_exceeded`
    /// (default 20).
    #[arg(
        long,
        env = "TIDINGS_MAX_NAMESPACES_PER_CONNECTION",
        value_name = "N|unlimited"
    )]
    max_namespaces_per_connection: Option<Limit<usize>>,
    /// Rooms one socket may be in, its own included; one more `join` is `limit_exceeded`
    /// (default 1000).
    #[arg(long, env = "TIDINGS_MAX_ROOMS_PER_SOCKET", value_name = "N|unlimited")]
    max_rooms_per_socket: Option<Limit<usize>>,
    /// Acknowledgements one socket may owe the server (deliveries awaiting their ack); past
    /// it deliveries wait (default 10000).
    #[arg(
        long,
        env = "TIDINGS_MAX_PENDING_ACKS_PER_SOCKET",
        value_name = "N|unlimited"
    )]
    max_pending_acks_per_socket: Option<Limit<usize>>,
    /// Binary attachments one Socket.IO packet may announce; more closes the connection with
    /// `parse error` (default 10; at most 1000).
    #[arg(long, env = "TIDINGS_MAX_ATTACHMENTS", value_name = "N|unlimited")]
    max_attachments: Option<Limit<usize>>,
    /// Memory the journal and memory stores may fill with retained messages and dead letters
    /// (each counted as payload + event name + 160 bytes, + 48 per binary attachment), e.g. `8GiB`; past it a publish is
    /// `store_full` (default: half of the machine's or container's memory).
    #[arg(
        long,
        env = "TIDINGS_MAX_RETAINED_BYTES",
        value_name = "SIZE|unlimited"
    )]
    max_retained_bytes: Option<Limit<ByteSize>>,
}

impl LimitArgs {
    /// The embedded stores' bound on retained data (flag, else file, else half the memory),
    /// and whether it was set explicitly.
    pub fn max_retained_bytes(&self, file: &LimitsSection) -> (Option<u64>, bool) {
        let set = self.max_retained_bytes.or(file.max_retained_bytes);
        let bytes = set.map_or(Some(default_max_retained_bytes()), |limit| {
            limit.0.map(|size| size.0)
        });
        (bytes, set.is_some())
    }

    /// Applies the server-side limits to `builder`.
    pub fn server(
        &self,
        file: &LimitsSection,
        builder: ServerConfigBuilder,
    ) -> ServerConfigBuilder {
        let d = Limits::default();
        let mut limits = Limits::default()
            .max_connections(pick(
                self.max_connections,
                file.max_connections,
                d.max_connections,
            ))
            .max_connections_per_ip(pick(
                self.max_connections_per_ip,
                file.max_connections_per_ip,
                d.max_connections_per_ip,
            ))
            .events_per_second(pick(
                self.max_events_per_second,
                file.max_events_per_second,
                d.events_per_second,
            ))
            .max_namespaces(pick(
                self.max_namespaces,
                file.max_namespaces,
                d.max_namespaces,
            ))
            .max_namespaces_per_connection(pick(
                self.max_namespaces_per_connection,
                file.max_namespaces_per_connection,
                d.max_namespaces_per_connection,
            ))
            .max_rooms_per_socket(pick(
                self.max_rooms_per_socket,
                file.max_rooms_per_socket,
                d.max_rooms_per_socket,
            ))
            .max_pending_acks_per_socket(pick(
                self.max_pending_acks_per_socket,
                file.max_pending_acks_per_socket,
                d.max_pending_acks_per_socket,
            ))
            .max_attachments(pick(
                self.max_attachments,
                file.max_attachments,
                d.max_attachments,
            ));
        if let Some(ms) = self.header_timeout_ms.or(file.header_timeout_ms) {
            limits = limits.header_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = self.body_timeout_ms.or(file.body_timeout_ms) {
            limits = limits.body_timeout(Duration::from_millis(ms));
        }
        let origins = if self.ws_allowed_origins.is_empty() {
            file.ws_allowed_origins.clone()
        } else {
            Some(self.ws_allowed_origins.clone())
        };
        let mut builder = builder.limits(limits).ws_allowed_origins(origins);
        if let Some(ms) = self.connect_timeout_ms.or(file.connect_timeout_ms) {
            builder = builder.connect_timeout(Duration::from_millis(ms));
        }
        builder
    }

    /// Applies the per-identity queue limits to `config`.
    pub fn queues(&self, file: &LimitsSection, config: &mut QueueConfig) -> anyhow::Result<()> {
        config.max_publishes_per_second = pick(
            self.max_publishes_per_second,
            file.max_publishes_per_second,
            config.max_publishes_per_second,
        );
        anyhow::ensure!(
            config.max_publishes_per_second != Some(0),
            "max publishes per second must be at least 1"
        );
        config.max_subscriptions_per_identity = pick(
            self.max_subscriptions_per_identity,
            file.max_subscriptions_per_identity,
            config.max_subscriptions_per_identity,
        );
        anyhow::ensure!(
            config.max_subscriptions_per_identity != Some(0),
            "max subscriptions per identity must be at least 1"
        );
        let max_queue_depth = pick(
            self.max_queue_depth,
            file.max_queue_depth,
            config.max_queue_depth,
        );
        anyhow::ensure!(
            max_queue_depth != Some(0),
            "max queue depth must be at least 1"
        );
        config.max_queue_depth = max_queue_depth;
        config.overflow = self.overflow.or(file.overflow).unwrap_or(config.overflow);
        config.queue_depth_rules = file.queue_depth_rules(max_queue_depth, config.overflow)?;
        config.max_topics = pick(self.max_topics, file.max_topics, config.max_topics);
        anyhow::ensure!(
            config.max_topics != Some(0),
            "max topics must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_server::ServerConfig;

    #[test]
    fn flags_win_over_the_file() {
        let file: LimitsSection =
            toml::from_str("max_connections = 5\nmax_events_per_second = 7").unwrap();
        let args = LimitArgs {
            max_connections: Some(Limit(Some(9))),
            max_rooms_per_socket: "unlimited".parse().ok(),
            ..LimitArgs::default()
        };
        let config = args.server(&file, ServerConfig::builder()).build().unwrap();
        assert_eq!(config.limits.max_connections, Some(9));
        assert_eq!(config.limits.events_per_second, Some(7));
        assert_eq!(config.limits.max_rooms_per_socket, None, "switched off");
        assert_eq!(
            config.limits.max_namespaces,
            Limits::default().max_namespaces,
            "unset: the finite default"
        );
        let off: LimitsSection =
            toml::from_str("max_connections_per_ip = \"unlimited\"\nmax_attachments = 3").unwrap();
        let config = LimitArgs::default()
            .server(&off, ServerConfig::builder())
            .build()
            .unwrap();
        assert_eq!(config.limits.max_connections_per_ip, None);
        assert_eq!(config.limits.max_attachments, Some(3));
        assert!(toml::from_str::<LimitsSection>("max_topics = \"lots\"").is_err());
        assert!("lots".parse::<Limit<usize>>().is_err());
        assert!(toml::from_str::<LimitsSection>("max_conections = 5").is_err());
        let zero: LimitsSection = toml::from_str("max_connections_per_ip = 0").unwrap();
        let built = LimitArgs::default()
            .server(&zero, ServerConfig::builder())
            .build();
        assert!(built.is_err());
    }

    #[test]
    fn queue_depth_flags_win_over_the_file() {
        let file: LimitsSection = toml::from_str(
            "max_queue_depth = 5\noverflow = \"drop-oldest\"\nmax_topics = 3\n[[queue_depth_rules]]\npattern = \"t.>\"",
        )
        .unwrap();
        let args = LimitArgs {
            max_queue_depth: Some(Limit(Some(9))),
            ..LimitArgs::default()
        };
        let mut config = QueueConfig::default();
        args.queues(&file, &mut config).unwrap();
        assert_eq!(config.max_queue_depth, Some(9));
        assert_eq!(config.overflow, Overflow::DropOldest);
        assert_eq!(config.max_topics, Some(3));
        let rule = &config.queue_depth_rules[0];
        assert_eq!(
            (rule.max_queue_depth, rule.overflow),
            (Some(9), Overflow::DropOldest)
        );
        let zero = LimitArgs {
            max_topics: Some(Limit(Some(0))),
            ..LimitArgs::default()
        };
        assert!(zero.queues(&file, &mut QueueConfig::default()).is_err());
    }
}
