//! `GET /metrics`, `/healthz` and `/readyz` of the real `tidings serve`: real clients
//! (tidings-client over WebSocket, a raw Engine.IO long-polling client that never reads)
//! make traffic, and the exposition is parsed by the Prometheus project's reference parser
//! (PyPI `prometheus-client`, tests/clients/py/parse_metrics.py) before any number is checked.
//! Also: `/v1/stats` and `/metrics` render one snapshot (they agree), the admin-only rule with
//! tokens, `--metrics off`, and readiness against a real redis-server that is stopped and
//! started again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::server::RedisServer;
use common::{claims, http, python, repo_root, spawn_serve, token, within};
use serde_json::{Value, json};
use tidings_client::{Client, ClientOptions, StartFrom, SubscribeOptions};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// One parsed exposition.
struct Scrape {
    families: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include `labels`; fails unless exactly one
    /// matches.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{name}{labels:?}: {} samples match; samples named {name}: {:?}",
            found.len(),
            self.samples
                .iter()
                .filter(|(n, _, _)| n == name)
                .collect::<Vec<_>>()
        );
        found[0]
    }

    /// Whether `name` is a sample of this scrape, or a family of it (a name with `_total`,
    /// `_bucket`, `_count` or `_sum` of a family without samples yet).
    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
            || self.families.contains_key(name)
            || ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|f| self.families.contains_key(f))
                })
    }

    fn kind(&self, family: &str) -> &str {
        self.families
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}"))
    }
}

/// Metrics only a server with `--redis` exposes.
const REDIS_ONLY: &[&str] = &[
    "tidings_store_round_trip_seconds",
    "tidings_store_round_trip_seconds_bucket",
    "tidings_cluster_round_trip_seconds",
    "tidings_cluster_round_trip_seconds_bucket",
    "tidings_cluster_errors_total",
    "tidings_cluster_node_messages_total",
];

/// Every metric name docs/OPERATIONS.md (its tables, alert rules and scrape examples) and the
/// Grafana dashboard (docs/grafana/tidings.json) use.
fn names_in_docs() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for file in ["docs/OPERATIONS.md", "docs/grafana/tidings.json"] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("tidings_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            // `tidings_durable_*_total` in prose is a pattern, not a name.
            if !name.ends_with('_') {
                names.insert(name.to_owned());
            }
            rest = &tail[end..];
        }
    }
    assert!(names.len() > 30, "found only {names:?}");
    // The dashboard is valid JSON with a query in every panel.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("docs/grafana/tidings.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{panel}");
        }
    }
    names
}

/// The alert rules, scrape config and probes of docs/OPERATIONS.md parse as YAML and have the
/// shape Prometheus and Kubernetes load (tests/clients/py/check_operations_yaml.py); the
/// metric names in them are checked against a scrape in `metrics_count_real_traffic`.
#[tokio::test]
async fn operations_yaml_loads() {
    let output = Command::new(python())
        .arg(repo_root().join("tests/clients/py/check_operations_yaml.py"))
        .arg(repo_root().join("docs/OPERATIONS.md"))
        .kill_on_drop(true)
        .output();
    let output = within(30, "check_operations_yaml.py", output)
        .await
        .unwrap();
    assert!(
        output.status.success() && output.stdout.starts_with(b"ok "),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // And the alert rules as Prometheus loads them (PromQL parsed, templates checked).
    let text = std::fs::read_to_string(repo_root().join("docs/OPERATIONS.md")).unwrap();
    let rules = text
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.starts_with("groups:"))
        .expect("the alert rules block");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidings-rules.yml");
    std::fs::write(&file, rules).unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()], "").await;
}

/// Runs `promtool ARGS` (Prometheus's own checker, from Debian's `prometheus` package, which
/// scripts/test installs) with `stdin`; fails the test with its output unless it succeeds.
async fn promtool(args: &[&str], stdin: &str) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package (scripts/test does)"
            )
        });
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = within(30, "promtool", child.wait_with_output())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Parses `text` with the reference parser (a parse error fails the test).
async fn parse(text: &str) -> Scrape {
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/clients/py/parse_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let output = within(30, "parse_metrics.py", child.wait_with_output())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: Value = serde_json::from_slice(&output.stdout).unwrap();
    let families = v["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap().to_owned()))
        .collect();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            (
                s[0].as_str().unwrap().to_owned(),
                labels,
                s[2].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    Scrape { families, samples }
}

/// `GET /metrics` (with `bearer`), checked to be 200 in the text format, and parsed.
async fn scrape(url: &str, bearer: Option<&str>) -> Scrape {
    let answer = http(url, "GET", "/metrics", bearer, b"").await;
    assert_eq!(answer.status, 200, "GET /metrics: {:?}", answer.body);
    let kind = answer.headers["content-type"].to_str().unwrap();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let Value::String(text) = answer.body else {
        panic!("GET /metrics answered JSON: {:?}", answer.body)
    };
    // Prometheus's own linter: names, suffixes, HELP and TYPE lines.
    promtool(&["check", "metrics"], &text).await;
    parse(&text).await
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

async fn client(url: &str, id: &str) -> Client {
    let options = ClientOptions::builder(url)
        .auth(json!({ "clientId": id }))
        .build()
        .unwrap();
    within(10, "connect", Client::connect(options))
        .await
        .unwrap()
}

/// Waits (bounded: 10 s, every 20 ms) until `GET path` satisfies `ok`; returns its body.
async fn until(url: &str, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = http(url, "GET", path, None, b"").await;
        if answer.status == 200 && ok(&answer.body) {
            return answer.body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 10 s; last answer {} {:?}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw Engine.IO long-polling session that joins `room` and then never polls again: its
/// outbound buffer only grows.
async fn silent_polling_member(url: &str, room: &str) {
    let open = http(url, "GET", "/socket.io/?EIO=4&transport=polling", None, b"").await;
    let Value::String(open) = open.body else {
        panic!("handshake: {:?}", open.body)
    };
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no sid in {open}"))
        .to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    for packet in [
        "40".to_owned(),
        format!("421[\"join\",{{\"room\":\"{room}\"}}]"),
    ] {
        let answer = http(url, "POST", &path, None, packet.as_bytes()).await;
        assert_eq!(answer.status, 200, "POST {packet}: {:?}", answer.body);
    }
}

/// Real traffic — durable publishes, deliveries, acks, requeues up to a dead letter, a held
/// delivery, a slow client, a refused subscription — and the numbers `/metrics` shows.
#[tokio::test]
async fn metrics_count_real_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidings.toml");
    std::fs::write(&config, "[queues]\nmax_deliveries = 2\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .args([
            "--max-payload",
            "1000",
            "--max-buffered-bytes",
            "2000",
            "--max-subscriptions-per-identity",
            "1",
            "--metrics-topic",
            "orders.*",
        ])
        .env("RUST_LOG", "error");
    let (_child, url) = spawn_serve(&mut command).await;
    let topic = "orders.eu";

    // Durable: a worker acks two messages, requeues the poison one until it is dead-lettered
    // (max_deliveries = 2), and holds the last one without answering.
    let worker = client(&url, "worker").await;
    let publisher = client(&url, "publisher").await;
    let mut sub = within(
        10,
        "subscribe",
        worker.subscribe(SubscribeOptions::new(topic).from(StartFrom::Earliest)),
    )
    .await
    .unwrap();
    for data in [json!({"n": 1}), json!({"poison": true}), json!({"n": 2})] {
        within(10, "publish", publisher.publish(topic, "task", &data))
            .await
            .unwrap();
    }
    let mut poison_deliveries = 0;
    let mut acked = 0;
    while acked < 2 || poison_deliveries < 2 {
        let d = within(10, "a delivery", sub.recv()).await.unwrap();
        if d.data.get("poison").is_some() {
            poison_deliveries += 1;
            d.requeue().await.unwrap();
        } else {
            acked += 1;
            d.ack().await.unwrap();
        }
    }
    until(
        &url,
        &format!("/v1/topics/{topic}"),
        "the dead letter",
        |b| b["subscriptions"][0]["dead"] == 1 && b["subscriptions"][0]["pending"] == 0,
    )
    .await;
    within(
        10,
        "publish",
        publisher.publish(topic, "task", &json!({"held": true})),
    )
    .await
    .unwrap();
    let held = within(10, "the held delivery", sub.recv()).await.unwrap();
    let held_published_at = held.meta.published_at;

    // A subscription over max_subscriptions_per_identity (1) is refused.
    let greedy = client(&url, "greedy").await;
    within(
        10,
        "first subscribe",
        greedy.subscribe(SubscribeOptions::new("other.a")),
    )
    .await
    .unwrap();
    let refused = within(
        10,
        "second subscribe",
        greedy.subscribe(SubscribeOptions::new("other.b")),
    )
    .await;
    assert!(refused.is_err(), "the second subscription was accepted");

    // A slow client: joins a room over long-polling and never reads; two 900-byte broadcasts
    // fit its 2000-byte buffer, the third does not.
    silent_polling_member(&url, "slow").await;
    let stats = http(&url, "GET", "/v1/stats", None, b"").await.body;
    assert_eq!(
        (&stats["sessionsPolling"], &stats["sessionsWebsocket"]),
        (&json!(1), &json!(3))
    );
    let big = "x".repeat(900);
    for _ in 0..3 {
        within(
            10,
            "broadcast",
            publisher.emit_with_ack(
                "broadcast",
                &json!({ "room": "slow", "event": "news", "data": big }),
                Duration::from_secs(5),
            ),
        )
        .await
        .unwrap();
    }
    until(&url, "/v1/stats", "the slow client disconnect", |b| {
        b["slowClientDisconnects"] == 1 && b["sessions"] == 3
    })
    .await;

    let before = now_ms();
    let m = scrape(&url, None).await;
    let after = now_ms();
    let t = [("topic", topic)];
    let s = [("topic", topic), ("subscription", "id:worker")];
    assert_eq!(m.kind("tidings_topic_published"), "counter");
    assert_eq!(m.kind("tidings_publish_confirm_seconds"), "histogram");
    assert_eq!(m.kind("tidings_subscription_lag_seconds"), "gauge");
    assert_eq!(m.get("tidings_up", &[]), 1.0);
    // Publishes: 4 to the topic; deliveries: n1, n2, poison twice, held.
    assert_eq!(m.get("tidings_topic_published_total", &t), 4.0);
    assert_eq!(m.get("tidings_topic_delivered_total", &t), 5.0);
    assert_eq!(m.get("tidings_topic_acked_total", &t), 2.0);
    assert_eq!(m.get("tidings_topic_requeued_total", &t), 2.0);
    assert_eq!(m.get("tidings_topic_dead_lettered_total", &t), 1.0);
    assert_eq!(m.get("tidings_durable_published_total", &[]), 4.0);
    assert_eq!(m.get("tidings_durable_dead_lettered_total", &[]), 1.0);
    assert_eq!(m.get("tidings_topic_retained", &t), 4.0);
    assert_eq!(m.get("tidings_topic_dead", &t), 1.0);
    assert_eq!(m.get("tidings_subscription_dead", &s), 1.0);
    assert_eq!(m.get("tidings_subscription_pending", &s), 1.0);
    assert_eq!(m.get("tidings_subscription_in_flight", &s), 1.0);
    assert_eq!(m.get("tidings_subscription_gaps", &s), 0.0);
    // Consumer lag: the held message is the oldest unsettled entry.
    let lag = m.get("tidings_subscription_lag_seconds", &s);
    let low = before.saturating_sub(held_published_at) as f64 / 1000.0;
    let high = after.saturating_sub(held_published_at) as f64 / 1000.0;
    assert!(
        lag >= low && lag <= high,
        "lag {lag} not in [{low}, {high}]"
    );
    assert_eq!(m.get("tidings_topic_lag_seconds", &t), lag);
    // The other topics were not selected (no pattern, not among the top 10 by activity
    // either: nothing was published there), so they have no series of their own.
    assert!(
        !m.samples
            .iter()
            .any(|(_, l, _)| l.get("topic").is_some_and(|t| t.starts_with("other."))),
        "other.* got per-topic series"
    );
    // Latency histograms: one observation per publish; the journal committed and fsynced.
    assert_eq!(m.get("tidings_publish_confirm_seconds_count", &[]), 4.0);
    assert_eq!(
        m.get("tidings_publish_confirm_seconds_bucket", &[("le", "+Inf")]),
        4.0
    );
    assert!(m.get("tidings_store_commit_seconds_count", &[]) >= 1.0);
    assert!(m.get("tidings_store_fsync_seconds_count", &[]) >= 1.0);
    assert_eq!(m.get("tidings_store_errors_total", &[]), 0.0);
    // Sessions: three WebSocket clients; the polling one was closed as a slow client.
    assert_eq!(
        m.get("tidings_sessions", &[("transport", "websocket")]),
        3.0
    );
    assert_eq!(m.get("tidings_sessions", &[("transport", "polling")]), 0.0);
    assert_eq!(m.get("tidings_sessions_opened_total", &[]), 4.0);
    // Three WebSockets stay open; HTTP connections of this test that closed a moment ago may
    // still be counted (the server sees their end asynchronously).
    let connections = m.get("tidings_connections", &[]);
    assert!(connections >= 3.0, "connections {connections}");
    assert_eq!(m.get("tidings_slow_client_disconnects_total", &[]), 1.0);
    assert_eq!(
        m.get(
            "tidings_sessions_closed_total",
            &[("reason", "slow client")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "tidings_sessions_closed_total",
            &[("reason", "transport close")]
        ),
        0.0
    );
    assert_eq!(
        m.get("tidings_refused_total", &[("what", "subscription")]),
        1.0
    );
    assert_eq!(
        m.get("tidings_refused_total", &[("what", "connection")]),
        0.0
    );
    // Broadcasts: three to the room; the third did not fit, so two were queued.
    assert_eq!(m.get("tidings_broadcasts_total", &[]), 3.0);
    assert_eq!(m.get("tidings_broadcast_deliveries_total", &[]), 2.0);
    let bytes_out = m.get("tidings_bytes_total", &[("direction", "out")]);
    let bytes_in = m.get("tidings_bytes_total", &[("direction", "in")]);
    assert!(bytes_in >= 3.0 * 900.0, "bytes in {bytes_in}");
    assert!(bytes_out > 0.0 && m.get("tidings_packets_total", &[("direction", "out")]) > 0.0);

    // Every metric the docs, the alert rules and the dashboard name is one the server
    // exposes (the Redis-only ones: in `readyz_follows_redis`).
    for name in names_in_docs() {
        assert!(
            m.has(&name) || REDIS_ONLY.contains(&name.as_str()),
            "docs name {name}, which /metrics does not expose"
        );
    }

    // One snapshot: /v1/stats renders the same values (nothing happened in between).
    let stats = http(&url, "GET", "/v1/stats", None, b"").await.body;
    let m = scrape(&url, None).await;
    for (field, name, labels) in [
        ("sessionsOpened", "tidings_sessions_opened_total", vec![]),
        (
            "slowClientDisconnects",
            "tidings_slow_client_disconnects_total",
            vec![],
        ),
        (
            "subscriptionsRefused",
            "tidings_refused_total",
            vec![("what", "subscription")],
        ),
        ("published", "tidings_durable_published_total", vec![]),
        ("delivered", "tidings_durable_delivered_total", vec![]),
        ("acked", "tidings_durable_acked_total", vec![]),
        ("requeued", "tidings_durable_requeued_total", vec![]),
        (
            "deadLettered",
            "tidings_durable_dead_lettered_total",
            vec![],
        ),
        ("storeClaims", "tidings_store_claims_total", vec![]),
        ("broadcasts", "tidings_broadcasts_total", vec![]),
        (
            "broadcastDeliveries",
            "tidings_broadcast_deliveries_total",
            vec![],
        ),
        ("bytesIn", "tidings_bytes_total", vec![("direction", "in")]),
        (
            "sessionsWebsocket",
            "tidings_sessions",
            vec![("transport", "websocket")],
        ),
    ] {
        assert_eq!(
            stats[field].as_f64(),
            Some(m.get(name, &labels)),
            "/v1/stats {field} vs /metrics {name}"
        );
    }

    // A client that leaves is counted by its reason; the gauge follows, and the traffic of
    // closed sessions stays counted (a counter never goes back).
    let traffic_before = [
        m.get("tidings_packets_total", &[("direction", "in")]),
        m.get("tidings_packets_total", &[("direction", "out")]),
        m.get("tidings_bytes_total", &[("direction", "in")]),
        m.get("tidings_bytes_total", &[("direction", "out")]),
    ];
    within(10, "disconnect", greedy.disconnect()).await;
    until(&url, "/v1/stats", "the disconnect", |b| b["sessions"] == 2).await;
    let m = scrape(&url, None).await;
    assert_eq!(
        m.get(
            "tidings_sessions_closed_total",
            &[("reason", "transport close")]
        ),
        1.0
    );
    assert_eq!(
        m.get("tidings_sessions", &[("transport", "websocket")]),
        2.0
    );
    let traffic_after = [
        m.get("tidings_packets_total", &[("direction", "in")]),
        m.get("tidings_packets_total", &[("direction", "out")]),
        m.get("tidings_bytes_total", &[("direction", "in")]),
        m.get("tidings_bytes_total", &[("direction", "out")]),
    ];
    for (before, after) in traffic_before.iter().zip(&traffic_after) {
        assert!(
            after >= before,
            "traffic went back: {traffic_before:?} → {traffic_after:?}"
        );
    }
    drop(held);
}

/// Without patterns, only the `--metrics-top-topics` busiest topics get series of their own;
/// the unlabelled totals still count every topic.
#[tokio::test]
async fn top_topics_bound_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args([
            "serve",
            "--port",
            "0",
            "--store",
            "memory",
            "--metrics-top-topics",
            "2",
        ])
        .arg("--data-dir")
        .arg(dir.path());
    let (_child, url) = spawn_serve(&mut command).await;
    for (topic, n) in [("t.a", 3), ("t.b", 2), ("t.c", 1)] {
        for i in 0..n {
            let body = json!({ "event": "e", "data": { "i": i } }).to_string();
            let path = format!("/v1/topics/{topic}/messages");
            let answer = http(&url, "POST", &path, None, body.as_bytes()).await;
            assert_eq!(answer.status, 201, "{:?}", answer.body);
        }
    }
    let m = scrape(&url, None).await;
    assert_eq!(
        m.get("tidings_topic_published_total", &[("topic", "t.a")]),
        3.0
    );
    assert_eq!(
        m.get("tidings_topic_published_total", &[("topic", "t.b")]),
        2.0
    );
    assert!(
        !m.samples
            .iter()
            .any(|(_, l, _)| l.get("topic").is_some_and(|t| t == "t.c")),
        "t.c is not among the 2 busiest but has series"
    );
    assert_eq!(m.get("tidings_durable_published_total", &[]), 6.0);
    assert_eq!(m.get("tidings_publish_confirm_seconds_count", &[]), 6.0);
}

/// With tokens, `/metrics` is for admins (as `/v1/stats`); `/healthz` and `/readyz` are open;
/// `--metrics off` removes `/metrics` and keeps `/v1/stats`.
#[tokio::test]
async fn metrics_auth_health_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args([
            "serve",
            "--port",
            "0",
            "--store",
            "memory",
            "--jwt-secret",
            common::SECRET,
        ])
        .arg("--data-dir")
        .arg(dir.path());
    let (_child, url) = spawn_serve(&mut command).await;
    let admin = token(&claims("ops", json!({ "admin": true })));
    let alice = token(&claims(
        "alice",
        json!({ "publish": [">"], "subscribe": [">"] }),
    ));
    let anonymous = http(&url, "GET", "/metrics", None, b"").await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    let user = http(&url, "GET", "/metrics", Some(&alice), b"").await;
    assert_eq!((user.status, user.code()), (403, "forbidden"));
    let m = scrape(&url, Some(&admin)).await;
    assert_eq!(m.get("tidings_up", &[]), 1.0);
    for path in ["/healthz", "/readyz"] {
        let answer = http(&url, "GET", path, None, b"").await;
        assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    }
    assert_eq!(
        http(&url, "GET", "/readyz", None, b"").await.body,
        json!({"status": "ready"})
    );

    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args([
            "serve",
            "--port",
            "0",
            "--store",
            "memory",
            "--metrics",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("off"));
    let (_off, url) = spawn_serve(&mut command).await;
    let answer = http(&url, "GET", "/metrics", None, b"").await;
    assert_eq!((answer.status, answer.code()), (404, "not_found"));
    let stats = http(&url, "GET", "/v1/stats", None, b"").await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.body["sessions"], 0);
}

/// In Redis mode `/readyz` asks Redis: 503 with the reason while the real redis-server is
/// down (the liveness probe stays 200), ready again once it is back; the store's round trips
/// and errors are in `/metrics`.
#[tokio::test]
async fn readyz_follows_redis() {
    let mut redis = RedisServer::start();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command.args(["serve", "--port", "0", "--redis", &redis.url()]);
    let (_child, url) = spawn_serve(&mut command).await;
    let publisher = client(&url, "publisher").await;
    within(
        10,
        "publish",
        publisher.publish("jobs", "task", &json!({"n": 1})),
    )
    .await
    .unwrap();
    assert_eq!(http(&url, "GET", "/readyz", None, b"").await.status, 200);
    let m = scrape(&url, None).await;
    assert_eq!(m.get("tidings_up", &[]), 1.0);
    assert!(m.get("tidings_store_round_trip_seconds_count", &[]) >= 1.0);
    assert!(m.get("tidings_cluster_round_trip_seconds_count", &[]) >= 0.0);
    assert_eq!(
        m.get("tidings_topic_published_total", &[("topic", "jobs")]),
        1.0
    );
    for name in REDIS_ONLY {
        assert!(m.has(name), "{name} not exposed in Redis mode");
    }

    redis.kill();
    let down = within(
        20,
        "/readyz with redis down",
        http(&url, "GET", "/readyz", None, b""),
    )
    .await;
    assert_eq!(down.status, 503, "{:?}", down.body);
    assert_eq!(down.body["status"], "unavailable");
    let reason = down.body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("store: ") || reason.starts_with("cluster: "),
        "{reason}"
    );
    assert_eq!(http(&url, "GET", "/healthz", None, b"").await.status, 200);
    let m = within(30, "/metrics with redis down", scrape(&url, None)).await;
    assert_eq!(m.get("tidings_up", &[]), 0.0);
    assert!(m.get("tidings_store_errors_total", &[]) >= 1.0);

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = http(&url, "GET", "/readyz", None, b"").await;
        if answer.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 20 s after redis came back: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
