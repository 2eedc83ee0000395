//! The limits of `tidings serve` (docs/SECURITY.md): flags and `TIDINGS_…` variables over the
//! `[limits]` section of the TOML file over the library defaults.

use std::time::Duration;

use clap::Args;
use tidings_core::store::Overflow;
use tidings_server::{Limits, QueueConfig, ServerConfigBuilder};

use crate::config_file::LimitsSection;

/// Limits against abuse. Unset: the `[limits]` section of `--config`, else the default.
#[derive(Debug, Default, Args)]
pub struct LimitArgs {
    /// Open TCP connections in total; past it new ones get 503 (default: unlimited).
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Open TCP connections per client IP address; past it new ones get 503 (default:
    /// unlimited).
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
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
    /// (default: unlimited).
    #[arg(long, env = "TIDINGS_MAX_EVENTS_PER_SECOND")]
    max_events_per_second: Option<u32>,
    /// Publishes per second per identity; past it a publish is `rate_limited` (default:
    /// unlimited).
    #[arg(long, env = "TIDINGS_MAX_PUBLISHES_PER_SECOND")]
    max_publishes_per_second: Option<u32>,
    /// Subscriptions per identity; past it a subscribe is `limit_exceeded` (default 10000).
    #[arg(long, env = "TIDINGS_MAX_SUBSCRIPTIONS_PER_IDENTITY")]
    max_subscriptions_per_identity: Option<usize>,
    /// Origin allowed to open a WebSocket from a browser (repeatable; comma-separated in the
    /// environment). Unset: any. Browser upgrades from other origins get 403.
    #[arg(
        long = "ws-allowed-origin",
        env = "TIDINGS_WS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    ws_allowed_origins: Vec<String>,
    /// Entries (pending, in flight or not yet delivered) one subscription's queue may hold;
    /// past it a publish to its topic meets `--overflow` (default: unbounded).
    #[arg(long, env = "TIDINGS_MAX_QUEUE_DEPTH")]
    max_queue_depth: Option<u64>,
    /// What a publish does when a subscription's queue is full: `reject` (refused with
    /// `queue_full`, nothing stored; the default) or `drop-oldest` (stored; the subscription
    /// loses its oldest unsettled entries, announced with `tidings:gap`).
    #[arg(long, env = "TIDINGS_OVERFLOW", value_name = "reject|drop-oldest")]
    overflow: Option<Overflow>,
    /// Topics in all; a publish or subscribe that would create one more is `limit_exceeded`
    /// (default: unlimited).
    #[arg(long, env = "TIDINGS_MAX_TOPICS")]
    max_topics: Option<u64>,
}

impl LimitArgs {
    /// Applies the server-side limits to `builder`.
    pub fn server(
        &self,
        file: &LimitsSection,
        builder: ServerConfigBuilder,
    ) -> ServerConfigBuilder {
        let mut limits = Limits::default()
            .max_connections(self.max_connections.or(file.max_connections))
            .max_connections_per_ip(self.max_connections_per_ip.or(file.max_connections_per_ip))
            .events_per_second(self.max_events_per_second.or(file.max_events_per_second));
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
        if let Some(n) = self
            .max_publishes_per_second
            .or(file.max_publishes_per_second)
        {
            anyhow::ensure!(n > 0, "max publishes per second must be at least 1");
            config.max_publishes_per_second = Some(n);
        }
        if let Some(n) = self
            .max_subscriptions_per_identity
            .or(file.max_subscriptions_per_identity)
        {
            anyhow::ensure!(n > 0, "max subscriptions per identity must be at least 1");
            config.max_subscriptions_per_identity = Some(n);
        }
        let max_queue_depth = self.max_queue_depth.or(file.max_queue_depth);
        anyhow::ensure!(
            max_queue_depth != Some(0),
            "max queue depth must be at least 1"
        );
        config.max_queue_depth = max_queue_depth;
        config.overflow = self.overflow.or(file.overflow).unwrap_or_default();
        config.queue_depth_rules = file.queue_depth_rules(max_queue_depth, config.overflow)?;
        if let Some(n) = self.max_topics.or(file.max_topics) {
            anyhow::ensure!(n > 0, "max topics must be at least 1");
            config.max_topics = Some(n);
        }
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
            max_connections: Some(9),
            ..LimitArgs::default()
        };
        let config = args.server(&file, ServerConfig::builder()).build().unwrap();
        assert_eq!(config.limits.max_connections, Some(9));
        assert_eq!(config.limits.events_per_second, Some(7));
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
            max_queue_depth: Some(9),
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
            max_topics: Some(0),
            ..LimitArgs::default()
        };
        assert!(zero.queues(&file, &mut QueueConfig::default()).is_err());
    }
}
