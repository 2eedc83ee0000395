//! The `--config` file of `tidings serve`.
//!
//! `crates/tidings` is a binary crate, so its parser is compiled here from its own source file:
//! the binary stays as it is, and this target fuzzes exactly the code it runs. That file only
//! uses its dependencies (`anyhow`, `serde`, `toml`, `tidings-core`, `tidings-server`), which
//! this crate has too.

use std::fmt::Write as _;
use std::time::Duration;

use tidings_core::store::{Retention, Topic};
use tidings_server::QueueConfig;

#[allow(dead_code, unreachable_pub)]
#[path = "../../tidings/src/config_file.rs"]
mod config_file;

use config_file::ConfigFile;

/// Loads the input as the TOML config file, as `tidings serve --config` does. When the file is
/// valid, its effective delivery settings, written back as a config file with every value
/// explicit, must load to the same settings, and looking up a topic's retention must work.
///
/// # Panics
///
/// When a property breaks.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<ConfigFile>(text) else {
        return;
    };
    let Ok(config) = file.queue_config() else {
        return;
    };
    assert!(config.ack_timeout > Duration::ZERO);
    assert!(config.max_deliveries >= 1);
    assert!(config.max_in_flight >= 1);
    assert!(config.retention_interval > Duration::ZERO);

    let written = write_back(&config);
    let again = match toml::from_str::<ConfigFile>(&written).map(|f| f.queue_config()) {
        Ok(Ok(again)) => again,
        Ok(Err(e)) => panic!("{text:?} -> {written:?} is refused: {e}"),
        Err(e) => panic!("{text:?} -> {written:?} does not parse: {e}"),
    };
    assert_eq!(
        format!("{again:?}"),
        format!("{config:?}"),
        "{text:?} -> {written:?}"
    );

    for rule in &config.retention_rules {
        // A topic the pattern matches: one segment for `*`, two for `>`.
        let name = rule.pattern.replace('*', "x").replace('>', "y.z");
        if let Ok(topic) = Topic::new(&name) {
            let _ = config.retention_for(&topic);
        }
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

fn limits(out: &mut String, r: &Retention) {
    let _ = writeln!(out, "max_age_ms = {}", r.max_age);
    let _ = writeln!(out, "max_messages = {}", r.max_messages);
    let _ = writeln!(out, "max_bytes = {}", r.max_bytes);
}

/// The config file that sets every value of `config` the file can set.
fn write_back(config: &QueueConfig) -> String {
    let mut out = String::from("[queues]\n");
    let _ = writeln!(out, "ack_timeout_ms = {}", millis(config.ack_timeout));
    let _ = writeln!(out, "max_deliveries = {}", config.max_deliveries);
    let _ = writeln!(out, "max_in_flight = {}", config.max_in_flight);
    let _ = writeln!(out, "dedup_window_ms = {}", millis(config.dedup_window));
    let _ = writeln!(
        out,
        "retention_interval_ms = {}",
        millis(config.retention_interval)
    );
    out.push_str("[retention]\n");
    limits(&mut out, &config.retention);
    for rule in &config.retention_rules {
        out.push_str("[[retention.rules]]\n");
        let _ = writeln!(
            out,
            "pattern = {}",
            toml::Value::String(rule.pattern.clone())
        );
        limits(&mut out, &rule.retention);
    }
    out
}
