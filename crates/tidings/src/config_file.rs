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
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tidings_core::store::Retention;
use tidings_server::{QueueConfig, RetentionRule};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    queues: QueuesSection,
    #[serde(default)]
    retention: RetentionSection,
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
            let valid = rule.pattern.split('.').all(|seg| {
                !seg.is_empty()
                    && (seg == "*" || seg == ">" || tidings_core::store::Topic::new(seg).is_ok())
            });
            anyhow::ensure!(valid, "invalid retention pattern {:?}", rule.pattern);
            config.retention_rules.push(RetentionRule {
                pattern: rule.pattern.clone(),
                retention: rule.limits.over(config.retention),
            });
        }
        Ok(config)
    }
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
}
