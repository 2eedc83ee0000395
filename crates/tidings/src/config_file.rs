//! The optional TOML configuration file of `tidings serve` (`--config FILE`): delivery settings
//! and retention per topic pattern. Flags and `TIDINGS_…` variables configure the rest.
//!
//! ```toml
//! [queues]
//! ack_timeout_ms = 30000        # redeliver when not acknowledged in time
//! max_deliveries = 10           # then dead-letter
//! max_in_flight = 100           # unacknowledged deliveries per subscription
//! dedup_window_ms = 86400000    # how long idempotency keys are remembered
//!
//! [retention]                   # topics that match no rule
//! max_age_ms = 604800000
//! max_messages = 10000000
//! max_bytes = 10737418240
//!
//! [[retention.rules]]           # first match wins; `*` = one segment, `>` = the rest
//! pattern = "vendor.*"
//! max_age_ms = 86400000
//!
//! [redis]                       # several nodes on one Redis (docs/DEPLOY.md)
//! url = "redis://127.0.0.1:6379"
//! prefix = "tidings:"
//! node_adapter_key = "socket.io" # Node's @socket.io/redis-adapter / -emitter key, or "off"
//! node_cluster = false          # true: Node servers on that adapter get our broadcasts too
//!
//! [protocol]                    # what clients speak; flags win
//! parser = "msgpack"            # "default" or "msgpack" (socket.io-msgpack-parser)
//! allow_eio3 = true             # also socket.io-client 2.x (off by default)
//!
//! [recovery]                    # Connection State Recovery (off by default)
//! enabled = true
//! max_disconnection_ms = 120000
//!
//! [limits]                      # against abuse (docs/SECURITY.md); flags win
//! max_connections_per_ip = 100  # every count: a number, or "unlimited" to switch it off
//! max_events_per_second = 200
//! max_rooms_per_socket = 1000
//! max_queue_depth = 100000      # entries per subscription; then `overflow`
//! overflow = "reject"           # or "drop-oldest"
//! max_topics = "unlimited"
//! max_retained_bytes = "8GiB"   # messages the embedded store keeps in memory
//!
//! [[limits.queue_depth_rules]]  # first match wins; unset values come from [limits]
//! pattern = "telemetry.>"
//! max_queue_depth = 1000
//! overflow = "drop-oldest"
//!
//! [tls]                         # https/wss; flags win
//! cert = "/etc/tidings/cert.pem"
//! key = "/etc/tidings/key.pem"
//!
//! [access]                      # verified identities (docs/SECURITY.md)
//! jwt_public_key = "/etc/tidings/jwt.pem"   # or jwt_secret = "…" (HS256)
//! leeway_secs = 60
//! audience = "tidings"          # optional: required `aud`
//! issuer = "https://auth.example.com"       # optional: required `iss`
//!
//! [[access.rules]]              # added to the token's `tidings` claim; `*` = any characters
//! identity = "driver-*"
//! publish = ["pickup.>"]
//! subscribe = ["vendor.*"]
//! join = ["zone.*"]
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tidings_core::store::{Overflow, Retention};
use tidings_server::queue::QueueDepthRule;
use tidings_server::{AccessRule, Authenticator, Parser, Permissions, QueueConfig, RetentionRule};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    queues: QueuesSection,
    #[serde(default)]
    retention: RetentionSection,
    #[serde(default)]
    access: AccessSection,
    #[serde(default)]
    redis: RedisSection,
    #[serde(default)]
    recovery: RecoverySection,
    #[serde(default)]
    protocol: ProtocolSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    tls: TlsSection,
    #[serde(default)]
    admin_ui: AdminUiSection,
    #[serde(default)]
    metrics: MetricsSection,
}

/// `[admin_ui]`: the Socket.IO Admin UI; flags win.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUiSection {
    #[serde(default)]
    pub(crate) enabled: bool,
    pub(crate) username: Option<String>,
    pub(crate) password_hash: Option<String>,
    #[serde(default)]
    pub(crate) read_only: bool,
    /// `development` or `production`.
    pub(crate) mode: Option<String>,
    pub(crate) namespace: Option<String>,
}

impl std::fmt::Debug for AdminUiSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUiSection")
            .field("enabled", &self.enabled)
            .field("username", &self.username)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("read_only", &self.read_only)
            .field("mode", &self.mode)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// `[metrics]`: what `GET /metrics` exposes (docs/OPERATIONS.md); the flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    enabled: Option<bool>,
    topics: Option<Vec<String>>,
    top_topics: Option<usize>,
}

/// `[tls]`: PEM files for https/wss; `--tls-cert` / `--tls-key` win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSection {
    url: Option<String>,
    prefix: Option<String>,
    node_adapter_key: Option<String>,
    #[serde(default)]
    node_cluster: bool,
}

impl std::fmt::Debug for RedisSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSection")
            .field("url", &self.url.as_deref().map(tidings_core::redact_url))
            .field("prefix", &self.prefix)
            .field("node_adapter_key", &self.node_adapter_key)
            .field("node_cluster", &self.node_cluster)
            .finish()
    }
}

/// `[protocol]`: what clients speak; `--parser` wins.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolSection {
    parser: Option<String>,
    #[serde(default)]
    allow_eio3: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverySection {
    #[serde(default)]
    enabled: bool,
    max_disconnection_ms: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessSection {
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    leeway_secs: Option<u64>,
    audience: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    rules: Vec<AccessRuleSection>,
}

impl std::fmt::Debug for AccessSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessSection")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_public_key", &self.jwt_public_key)
            .field("leeway_secs", &self.leeway_secs)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("rules", &self.rules)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessRuleSection {
    identity: String,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    join: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// A count limit as a flag, a variable or the TOML file gives it: a number, or `unlimited`
/// (also `off`) to switch the limit off. Unset, the library's finite default applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit<T>(pub Option<T>);

impl<T: std::str::FromStr> std::str::FromStr for Limit<T> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "unlimited" | "off" => Ok(Limit(None)),
            n => n
                .parse()
                .map(|n| Limit(Some(n)))
                .map_err(|_| format!("expected a number or \"unlimited\", got {s:?}")),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Limit<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            Count(T),
            Word(String),
        }
        match Raw::<T>::deserialize(d)? {
            Raw::Count(n) => Ok(Limit(Some(n))),
            Raw::Word(w) if w == "unlimited" || w == "off" => Ok(Limit(None)),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected a number or \"unlimited\", got {w:?}"
            ))),
        }
    }
}

/// A size in bytes, as a flag, a variable or the TOML file gives it: `1000000`, `512MiB`,
/// `8GiB`, `2G` (powers of 1000 for `k`/`M`/`G`/`T`, of 1024 for `KiB`/`MiB`/`GiB`/`TiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "m" | "mb" => 1000_u64.pow(2),
            "g" | "gb" => 1000_u64.pow(3),
            "t" | "tb" => 1000_u64.pow(4),
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(bad_size(s)),
        };
        let n: u64 = digits.parse().map_err(|_| bad_size(s))?;
        n.checked_mul(unit_size)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is more bytes than this server can count"))
    }
}

fn bad_size(s: &str) -> String {
    format!("expected a size such as 1000000, 512MiB or 8GiB, got {s:?}")
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whole units as they are given (`8GiB`); other sizes of a MiB or more rounded to a
        // tenth of the largest unit, for a log line (`11.8GiB`).
        let n = self.0;
        let unit = |shift: u32| n as f64 / f64::from(1u32 << shift);
        match (n.trailing_zeros(), n) {
            (30.., _) => write!(f, "{}GiB", n >> 30),
            (20.., _) if n < 1 << 30 => write!(f, "{}MiB", n >> 20),
            (_, 0x4000_0000..) => write!(f, "{:.1}GiB", unit(30)),
            (_, 0x10_0000..) => write!(f, "{:.1}MiB", unit(20)),
            _ => write!(f, "{n} bytes"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `[limits]` of the TOML file: the same settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub(crate) max_connections: Option<Limit<usize>>,
    pub(crate) max_connections_per_ip: Option<Limit<usize>>,
    pub(crate) header_timeout_ms: Option<u64>,
    pub(crate) body_timeout_ms: Option<u64>,
    pub(crate) connect_timeout_ms: Option<u64>,
    pub(crate) max_events_per_second: Option<Limit<u32>>,
    pub(crate) max_publishes_per_second: Option<Limit<u32>>,
    pub(crate) max_subscriptions_per_identity: Option<Limit<usize>>,
    pub(crate) ws_allowed_origins: Option<Vec<String>>,
    pub(crate) max_queue_depth: Option<Limit<u64>>,
    pub(crate) overflow: Option<Overflow>,
    pub(crate) max_topics: Option<Limit<u64>>,
    pub(crate) max_namespaces: Option<Limit<usize>>,
    pub(crate) max_namespaces_per_connection: Option<Limit<usize>>,
    pub(crate) max_rooms_per_socket: Option<Limit<usize>>,
    pub(crate) max_pending_acks_per_socket: Option<Limit<usize>>,
    pub(crate) max_attachments: Option<Limit<usize>>,
    pub(crate) max_retained_bytes: Option<Limit<ByteSize>>,
    #[serde(default)]
    queue_depth_rules: Vec<QueueDepthRuleSection>,
}

/// `[[limits.queue_depth_rules]]`: the depth bound of the topics a pattern matches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueDepthRuleSection {
    pattern: String,
    max_queue_depth: Option<u64>,
    overflow: Option<Overflow>,
}

impl LimitsSection {
    /// `[[limits.queue_depth_rules]]`, validated; a value a rule does not set is `max` /
    /// `overflow` (the effective `[limits]` settings, flags applied).
    pub fn queue_depth_rules(
        &self,
        max: Option<u64>,
        overflow: Overflow,
    ) -> anyhow::Result<Vec<QueueDepthRule>> {
        self.queue_depth_rules
            .iter()
            .map(|rule| {
                anyhow::ensure!(
                    valid_pattern(&rule.pattern),
                    "invalid queue depth pattern {:?}",
                    rule.pattern
                );
                anyhow::ensure!(
                    rule.max_queue_depth != Some(0),
                    "limits.queue_depth_rules: max_queue_depth must be at least 1"
                );
                Ok(QueueDepthRule {
                    pattern: rule.pattern.clone(),
                    max_queue_depth: rule.max_queue_depth.or(max),
                    overflow: rule.overflow.unwrap_or(overflow),
                })
            })
            .collect()
    }
}

/// Where the token key comes from: a flag or variable wins over the file.
#[derive(Debug, Default)]
pub struct KeyOverride<'a> {
    pub jwt_secret: Option<&'a str>,
    pub jwt_public_key: Option<&'a Path>,
}

/// The `[access]` settings a token minted for this server must match (no `Debug`: it holds
/// the secret).
#[derive(Default, Clone, Copy)]
pub struct TokenSettings<'a> {
    pub jwt_secret: Option<&'a str>,
    pub jwt_public_key: Option<&'a Path>,
    pub audience: Option<&'a str>,
    pub issuer: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueuesSection {
    ack_timeout_ms: Option<u64>,
    max_deliveries: Option<u32>,
    max_in_flight: Option<usize>,
    dedup_window_ms: Option<u64>,
    retention_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    max_age_ms: Option<u64>,
    max_messages: Option<u64>,
    max_bytes: Option<u64>,
}

impl Limits {
    fn over(&self, base: Retention) -> Retention {
        Retention {
            max_age: self.max_age_ms.unwrap_or(base.max_age),
            max_messages: self.max_messages.unwrap_or(base.max_messages),
            max_bytes: self.max_bytes.unwrap_or(base.max_bytes),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    #[serde(flatten)]
    default: Limits,
    #[serde(default)]
    rules: Vec<RuleSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSection {
    pattern: String,
    #[serde(flatten)]
    limits: Limits,
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// `[redis] url`.
    pub fn redis_url(&self) -> Option<String> {
        self.redis.url.clone()
    }

    /// `[redis] prefix`.
    pub fn redis_prefix(&self) -> Option<String> {
        self.redis.prefix.clone()
    }

    /// `[redis] node_cluster`: send broadcasts in the Node adapter's form too.
    pub fn node_cluster(&self) -> bool {
        self.redis.node_cluster
    }

    /// `[redis] node_adapter_key`: Node Socket.IO's Redis adapter key, or `"off"`.
    pub fn node_adapter_key(&self) -> Option<String> {
        self.redis.node_adapter_key.clone()
    }

    /// `[limits]`.
    pub fn limits(&self) -> &LimitsSection {
        &self.limits
    }

    /// `[tls]`.
    pub fn tls(&self) -> &TlsSection {
        &self.tls
    }

    /// `[protocol] parser`, validated.
    pub fn parser(&self) -> anyhow::Result<Option<Parser>> {
        self.protocol
            .parser
            .as_deref()
            .map(|name| name.parse().context("protocol.parser"))
            .transpose()
    }

    /// `[protocol] allow_eio3`.
    pub fn allow_eio3(&self) -> bool {
        self.protocol.allow_eio3
    }

    /// `[recovery] enabled`.
    /// Applies `[metrics]` over the defaults in `m`.
    pub fn apply_metrics(&self, m: &mut tidings_server::metrics::MetricsConfig) {
        let s = &self.metrics;
        if let Some(enabled) = s.enabled {
            m.enabled = enabled;
        }
        if let Some(topics) = &s.topics {
            m.topics = topics.clone();
        }
        if let Some(n) = s.top_topics {
            m.top_topics = n;
        }
    }

    pub fn recovery_enabled(&self) -> bool {
        self.recovery.enabled
    }

    /// `[admin_ui]`.
    pub fn admin_ui(&self) -> &AdminUiSection {
        &self.admin_ui
    }

    /// `[recovery] max_disconnection_ms`.
    pub fn recovery_window_ms(&self) -> Option<u64> {
        self.recovery.max_disconnection_ms
    }

    /// `[access]`: what `tidings token` signs with and puts in its claims (secret or public
    /// key, audience, issuer).
    pub fn token_settings(&self) -> TokenSettings<'_> {
        let a = &self.access;
        TokenSettings {
            jwt_secret: a.jwt_secret.as_deref(),
            jwt_public_key: a.jwt_public_key.as_deref(),
            audience: a.audience.as_deref(),
            issuer: a.issuer.as_deref(),
        }
    }

    /// The authenticator, when a key is configured (flags and variables in `keys` win over the
    /// file's `[access]` keys); None is development mode.
    pub fn authenticator(&self, keys: &KeyOverride<'_>) -> anyhow::Result<Option<Authenticator>> {
        let a = &self.access;
        let (secret, public_key) = if keys.jwt_secret.is_some() || keys.jwt_public_key.is_some() {
            (keys.jwt_secret, keys.jwt_public_key)
        } else {
            (a.jwt_secret.as_deref(), a.jwt_public_key.as_deref())
        };
        let authenticator = match (secret, public_key) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set either a JWT secret (HS256) or a JWT public key, not both")
            }
            (Some(secret), None) => Authenticator::hs256(secret.as_bytes())?,
            (None, Some(path)) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("cannot read the JWT public key {}", path.display())
                })?;
                Authenticator::from_public_key_pem(&pem)
                    .with_context(|| format!("invalid JWT public key {}", path.display()))?
            }
            (None, None) => {
                anyhow::ensure!(
                    a.rules.is_empty()
                        && a.audience.is_none()
                        && a.issuer.is_none()
                        && a.leeway_secs.is_none(),
                    "[access] settings need a JWT secret or public key"
                );
                return Ok(None);
            }
        };
        let mut authenticator = authenticator;
        if let Some(secs) = a.leeway_secs {
            authenticator = authenticator.leeway(Duration::from_secs(secs));
        }
        if let Some(audience) = &a.audience {
            authenticator = authenticator.audience(audience);
        }
        if let Some(issuer) = &a.issuer {
            authenticator = authenticator.issuer(issuer);
        }
        let mut rules = Vec::new();
        for rule in &a.rules {
            anyhow::ensure!(
                !rule.identity.is_empty(),
                "access.rules: identity must not be empty"
            );
            for pattern in rule.publish.iter().chain(&rule.subscribe).chain(&rule.join) {
                anyhow::ensure!(
                    valid_pattern(pattern),
                    "access.rules: invalid pattern {pattern:?}"
                );
            }
            let mut permissions = Permissions::new(&rule.publish, &rule.subscribe, &rule.join);
            permissions.admin = rule.admin;
            rules.push(AccessRule {
                identity: rule.identity.clone(),
                permissions,
            });
        }
        Ok(Some(authenticator.rules(rules)))
    }

    /// The delivery settings: defaults overridden by the file.
    pub fn queue_config(&self) -> anyhow::Result<QueueConfig> {
        let mut config = QueueConfig::default();
        let q = &self.queues;
        if let Some(ms) = q.ack_timeout_ms {
            anyhow::ensure!(ms > 0, "queues.ack_timeout_ms must be positive");
            config.ack_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = q.max_deliveries {
            anyhow::ensure!(n > 0, "queues.max_deliveries must be at least 1");
            config.max_deliveries = n;
        }
        if let Some(n) = q.max_in_flight {
            anyhow::ensure!(n > 0, "queues.max_in_flight must be at least 1");
            config.max_in_flight = n;
        }
        if let Some(ms) = q.dedup_window_ms {
            config.dedup_window = Duration::from_millis(ms);
        }
        if let Some(ms) = q.retention_interval_ms {
            anyhow::ensure!(ms > 0, "queues.retention_interval_ms must be positive");
            config.retention_interval = Duration::from_millis(ms);
        }
        config.retention = self.retention.default.over(config.retention);
        for rule in &self.retention.rules {
            anyhow::ensure!(
                valid_pattern(&rule.pattern),
                "invalid retention pattern {:?}",
                rule.pattern
            );
            config.retention_rules.push(RetentionRule {
                pattern: rule.pattern.clone(),
                retention: rule.limits.over(config.retention),
            });
        }
        Ok(config)
    }
}

/// A topic or room pattern: dot-separated non-empty segments, `*` or `>` allowed.
fn valid_pattern(pattern: &str) -> bool {
    pattern.split('.').all(|seg| {
        !seg.is_empty()
            && (seg == "*" || seg == ">" || tidings_core::store::Topic::new(seg).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let file: ConfigFile = toml::from_str(
            r#"
            [queues]
            ack_timeout_ms = 5000
            max_deliveries = 3
            [retention]
            max_messages = 1000
            [[retention.rules]]
            pattern = "vendor.*"
            max_age_ms = 60000
            "#,
        )
        .unwrap();
        let c = file.queue_config().unwrap();
        assert_eq!(c.ack_timeout, Duration::from_secs(5));
        assert_eq!(c.max_deliveries, 3);
        assert_eq!(c.retention.max_messages, 1000);
        let vendor = c.retention_for(&tidings_core::store::Topic::new("vendor.s1").unwrap());
        assert_eq!((vendor.max_age, vendor.max_messages), (60000, 1000));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        assert!(toml::from_str::<ConfigFile>("[queues]\nack_timeout = 5").is_err());
        let zero: ConfigFile = toml::from_str("[queues]\nmax_deliveries = 0").unwrap();
        assert!(zero.queue_config().is_err());
        let bad: ConfigFile = toml::from_str("[[retention.rules]]\npattern = \"a..b\"").unwrap();
        assert!(bad.queue_config().is_err());
    }

    #[test]
    fn queue_depth_and_topic_limits() {
        let file: ConfigFile = toml::from_str(
            r#"
            [limits]
            max_queue_depth = 500
            max_topics = 7
            [[limits.queue_depth_rules]]
            pattern = "telemetry.>"
            max_queue_depth = 10
            overflow = "drop-oldest"
            [[limits.queue_depth_rules]]
            pattern = "orders.*"
            "#,
        )
        .unwrap();
        let l = file.limits();
        assert_eq!(
            (l.max_queue_depth, l.overflow, l.max_topics),
            (Some(Limit(Some(500))), None, Some(Limit(Some(7))))
        );
        let rules = l.queue_depth_rules(Some(500), Overflow::Reject).unwrap();
        assert_eq!(
            (rules[0].max_queue_depth, rules[0].overflow),
            (Some(10), Overflow::DropOldest)
        );
        assert_eq!(
            (rules[1].max_queue_depth, rules[1].overflow),
            (Some(500), Overflow::Reject)
        );
        assert!(
            toml::from_str::<ConfigFile>(
                "[limits]
overflow = \"drop-newest\""
            )
            .is_err()
        );
        let bad: ConfigFile = toml::from_str(
            "[[limits.queue_depth_rules]]
pattern = \"a..b\"",
        )
        .unwrap();
        assert!(
            bad.limits()
                .queue_depth_rules(None, Overflow::Reject)
                .is_err()
        );
        let zero: ConfigFile = toml::from_str(
            "[[limits.queue_depth_rules]]
pattern = \"a\"
max_queue_depth = 0",
        )
        .unwrap();
        assert!(
            zero.limits()
                .queue_depth_rules(None, Overflow::Reject)
                .is_err()
        );
    }

    #[test]
    fn protocol_section() {
        let file: ConfigFile = toml::from_str("[protocol]\nparser = \"msgpack\"").unwrap();
        assert_eq!(file.parser().unwrap(), Some(Parser::Msgpack));
        assert_eq!(ConfigFile::default().parser().unwrap(), None);
        assert!(!file.allow_eio3() && !ConfigFile::default().allow_eio3());
        let eio3: ConfigFile = toml::from_str("[protocol]\nallow_eio3 = true").unwrap();
        assert!(eio3.allow_eio3());
        let bad: ConfigFile = toml::from_str("[protocol]\nparser = \"json\"").unwrap();
        let e = format!("{:#}", bad.parser().unwrap_err());
        assert!(
            e.contains("protocol.parser") && e.contains("msgpack"),
            "{e}"
        );
        assert!(toml::from_str::<ConfigFile>("[protocol]\nparsers = \"x\"").is_err());
    }

    #[test]
    fn access_section() {
        let none = KeyOverride::default();
        let file: ConfigFile = toml::from_str(
            r#"
            [access]
            jwt_secret = "0123456789abcdef0123456789abcdef"
            leeway_secs = 5
            [[access.rules]]
            identity = "driver-*"
            publish = ["pickup.>"]
            "#,
        )
        .unwrap();
        let auth = file.authenticator(&none).unwrap().unwrap();
        assert_eq!(auth.algorithm(), "HS256");
        assert!(!format!("{file:?}").contains("0123456789abcdef"));
        // A flag wins over the file; both kinds of key at once is an error.
        let flag = KeyOverride {
            jwt_secret: Some("another-secret-of-at-least-32-bytes!"),
            jwt_public_key: None,
        };
        assert!(file.authenticator(&flag).is_ok());
        let both: ConfigFile =
            toml::from_str("[access]\njwt_secret = \"x\"\njwt_public_key = \"k.pem\"").unwrap();
        assert!(both.authenticator(&none).is_err());
        let short: ConfigFile = toml::from_str("[access]\njwt_secret = \"short\"").unwrap();
        assert!(short.authenticator(&none).is_err());
        let keyless: ConfigFile =
            toml::from_str("[[access.rules]]\nidentity = \"*\"\nadmin = true").unwrap();
        assert!(keyless.authenticator(&none).is_err());
        assert!(toml::from_str::<ConfigFile>("[access]\njwt = \"x\"").is_err());
        let bad: ConfigFile = toml::from_str(
            "[access]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n[[access.rules]]\nidentity = \"a\"\njoin = [\"a..b\"]",
        )
        .unwrap();
        assert!(bad.authenticator(&none).is_err());
        assert!(
            ConfigFile::default()
                .authenticator(&none)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        let ok = |s: &str| s.parse::<ByteSize>().unwrap().0;
        assert_eq!(ok("1000000"), 1_000_000);
        assert_eq!(ok("512MiB"), 512 << 20);
        assert_eq!(ok("8 GiB"), 8 << 30);
        assert_eq!(ok("2G"), 2_000_000_000);
        assert_eq!(ok("64kb"), 64_000);
        for bad in ["", "MiB", "12 parsecs", "-5", "1.5GiB", "99999999999TiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_display_in_the_largest_whole_unit() {
        assert_eq!(ByteSize(8 << 30).to_string(), "8GiB");
        assert_eq!(ByteSize(3 << 20).to_string(), "3MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 bytes");
        assert_eq!(ByteSize(12_662_476_800).to_string(), "11.8GiB");
        assert_eq!(ByteSize((3 << 20) + 1).to_string(), "3.0MiB");
        assert_eq!(ByteSize(5 << 30).to_string(), "5GiB");
        assert_eq!(ByteSize(2048 << 20).to_string(), "2GiB");
    }
}
