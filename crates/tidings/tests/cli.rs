//! `tidings publish`, `tidings listen` and `tidings topics` as a user runs them: the real binary
//! against a real `tidings serve` (memory store) on an ephemeral port, with their exit codes,
//! stdout and stderr checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_tidings");

struct Serve {
    _child: Child,
    url: String,
}

async fn serve() -> Serve {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--store", "memory"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("tidings serve did not report its address within 20 s")
        .unwrap()
        .expect("tidings serve exited before listening");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    Serve {
        _child: child,
        url: url.split('/').take(3).collect::<Vec<_>>().join("/"),
    }
}

/// Runs `tidings ARGS…` to completion (at most 20 s).
async fn tidings(args: &[&str]) -> Output {
    let output = Command::new(BIN)
        .args(args)
        // Not inherited from the developer's shell.
        .env_remove("TIDINGS_URL")
        .env_remove("TIDINGS_CLIENT_ID")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .unwrap_or_else(|_| panic!("tidings {args:?} did not finish within 20 s"))
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `tidings publish …`, which must succeed; returns its JSON answer.
async fn publish(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["publish"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", url]);
    let output = tidings(&all).await;
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    let out = stdout(&output);
    assert_eq!(out.lines().count(), 1, "one line expected: {out}");
    serde_json::from_str(&out).unwrap()
}

/// A loopback port nothing listens on, with the socket that holds it: bound but not listening,
/// so connecting is refused, and no other process can start listening there while it lives
/// (a listener bound and dropped would leave the port free for anyone).
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

#[tokio::test]
async fn publish_prints_id_offset_duplicate() {
    let srv = serve().await;
    let first = publish(&srv.url, &["pickup", "order", r#"{"parcel":"P-1"}"#]).await;
    let fields: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["id", "offset", "duplicate"]);
    assert_eq!(
        (&first["offset"], &first["duplicate"]),
        (&json!(1), &json!(false))
    );
    assert_eq!(first["id"].as_str().unwrap().len(), 22, "{first}");

    let keyed = publish(&srv.url, &["pickup", "order", "2", "--key", "k-2"]).await;
    assert_eq!(
        (&keyed["offset"], &keyed["duplicate"]),
        (&json!(2), &json!(false))
    );
    let again = publish(&srv.url, &["pickup", "order", "2", "--key", "k-2"]).await;
    assert_eq!(
        again,
        json!({ "id": keyed["id"], "offset": 2, "duplicate": true })
    );

    // What was published is what the API shows.
    let out = tidings(&["topics", "--json", "--url", &srv.url]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let topics: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(topics["topics"][0]["topic"], "pickup");
    assert_eq!(topics["topics"][0]["head"], 2);
}

#[tokio::test]
async fn publish_refuses_invalid_json_data() {
    let srv = serve().await;
    let output = tidings(&[
        "publish",
        "pickup",
        "order",
        "{parcel: P-1}",
        "--url",
        &srv.url,
    ])
    .await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("the data is not valid JSON: {parcel: P-1}"),
        "{err}"
    );
    assert!(stdout(&output).is_empty());
    // A bare word is not JSON either (the help says to quote it).
    let output = tidings(&["publish", "pickup", "order", "hello", "--url", &srv.url]).await;
    assert!(!output.status.success());
    // Nothing reached the server.
    let out = tidings(&["topics", "--json", "--url", &srv.url]).await;
    assert_eq!(stdout(&out).trim(), r#"{"topics":[]}"#);
}

#[tokio::test]
async fn publish_reports_server_refusals() {
    let srv = serve().await;
    let output = tidings(&["publish", "no..topic", "order", "1", "--url", &srv.url]).await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("server answered 400 bad_request"), "{err}");
}

#[tokio::test]
async fn commands_without_a_server_cannot_reach_it() {
    let (_held, port) = closed_port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["publish", "pickup", "order", "1", "--url", &url],
        vec!["topics", "--url", &url],
        vec!["listen", "pickup", "--count", "1", "--url", &url],
    ] {
        let started = Instant::now();
        let output = tidings(&args).await;
        assert!(!output.status.success(), "{args:?}");
        let err = stderr(&output);
        assert!(err.contains("cannot reach"), "{args:?}: {err}");
        assert!(
            err.contains("is `tidings serve` running?"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(&url), "{args:?} should name the URL: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} took too long"
        );
    }
}

/// `tidings listen … --count N` as JSON lines.
async fn listen(url: &str, client_id: &str, count: u64, from: Option<&str>) -> Vec<Value> {
    let count = count.to_string();
    let mut args = vec![
        "listen",
        "pickup",
        "--count",
        &count,
        "--client-id",
        client_id,
    ];
    if let Some(from) = from {
        args.extend_from_slice(&["--from", from]);
    }
    args.extend_from_slice(&["--url", url]);
    let output = tidings(&args).await;
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn listen_prints_deliveries_and_acks_them() {
    let srv = serve().await;
    let mut published = Vec::new();
    for n in 1..=3 {
        published.push(publish(&srv.url, &["pickup", "order", &format!(r#"{{"n":{n}}}"#)]).await);
    }

    let mut lines = listen(&srv.url, "cli-listener", 3, Some("earliest")).await;
    assert_eq!(lines.len(), 3);
    // Offset order is checked by `listen_prints_in_offset_order`.
    lines.sort_by_key(|l| l["offset"].as_u64());
    for (n, (line, published)) in lines.iter().zip(&published).enumerate() {
        assert_eq!(line["event"], "order");
        assert_eq!(line["data"], json!({ "n": n + 1 }));
        assert_eq!(line["topic"], "pickup");
        assert_eq!(line["id"], published["id"]);
        assert_eq!(line["offset"], published["offset"]);
        assert_eq!(line["attempt"], 1);
        assert_eq!(line["group"], Value::Null);
        assert!(line["publishedAt"].as_u64().unwrap() > 0);
    }

    // The second run resumes the durable subscription: the first three were acked, so the
    // next delivery is the message published after them.
    let fourth = publish(&srv.url, &["pickup", "order", r#"{"n":4}"#]).await;
    let lines = listen(&srv.url, "cli-listener", 1, Some("earliest")).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["id"], fourth["id"],
        "old messages came back: {lines:?}"
    );
    assert_eq!(lines[0]["attempt"], 1);
}

/// Binary parts go in and come out as `{"_binary": base64}`: `tidings publish` sends them
/// through the HTTP API, the server keeps them as binary, and `tidings listen` (a Socket.IO
/// subscriber receiving a BINARY_EVENT) prints them in the same form.
#[tokio::test]
async fn binary_parts_round_trip_as_base64() {
    let srv = serve().await;
    let data = r#"{"scan":{"_binary":"AP8BAg=="},"pages":[{"_binary":""},2]}"#;
    publish(&srv.url, &["pickup", "scan", data]).await;
    let lines = listen(&srv.url, "cli-binary", 1, Some("earliest")).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"], "scan");
    assert_eq!(
        lines[0]["data"],
        serde_json::from_str::<Value>(data).unwrap()
    );
}

#[tokio::test]
async fn listen_prints_in_offset_order() {
    let srv = serve().await;
    for n in 1..=5 {
        publish(&srv.url, &["pickup", "order", &n.to_string()]).await;
    }
    let lines = listen(&srv.url, "in-order", 5, Some("earliest")).await;
    let offsets: Vec<&Value> = lines.iter().map(|l| &l["offset"]).collect();
    assert_eq!(
        offsets,
        [&json!(1), &json!(2), &json!(3), &json!(4), &json!(5)]
    );
}

/// The row of `subscription` in `tidings topics`' table, split into columns.
fn row(table: &str, subscription: &str) -> Option<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|cols| cols.get(3).map(String::as_str) == Some(subscription))
}

#[tokio::test]
async fn topics_shows_pending_counts() {
    let srv = serve().await;
    let empty = tidings(&["topics", "--url", &srv.url]).await;
    assert!(empty.status.success());
    assert!(
        stdout(&empty).contains("(no topics yet)"),
        "{}",
        stdout(&empty)
    );

    // "tallies" reads two of five; "late" subscribes at the head; "other" has no subscription.
    let lines = listen(&srv.url, "late", 0, None).await;
    assert!(lines.is_empty());
    for n in 1..=5 {
        publish(&srv.url, &["pickup", "order", &n.to_string()]).await;
    }
    publish(&srv.url, &["other", "order", "1"]).await;
    assert_eq!(
        listen(&srv.url, "tallies", 2, Some("earliest")).await.len(),
        2
    );

    // The acks are settled by the server just after `listen` exits: look until they are.
    let deadline = Instant::now() + Duration::from_secs(10);
    let table = loop {
        let output = tidings(&["topics", "--url", &srv.url]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        let table = stdout(&output);
        // Two acked, the three others handed back when it disconnected.
        let settled = ["pickup", "5", "5", "id:tallies", "3", "0", "0", "0"];
        if row(&table, "id:tallies").is_some_and(|r| r == settled) {
            break table;
        }
        assert!(
            Instant::now() < deadline,
            "id:tallies never settled:\n{table}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "TOPIC",
            "HEAD",
            "RETAINED",
            "SUBSCRIPTION",
            "PENDING",
            "IN FLIGHT",
            "DEAD",
            "GAPS"
        ]
    );
    // TOPIC HEAD RETAINED SUBSCRIPTION PENDING IN-FLIGHT DEAD GAPS
    assert_eq!(
        row(&table, "id:late").unwrap(),
        ["pickup", "5", "5", "id:late", "5", "0", "0", "0"]
    );
    let other: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("other"))
        .unwrap_or_else(|| panic!("no row for topic other:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(other, ["other", "1", "1", "-", "-", "-", "-", "-"]);
    assert_eq!(table.lines().count(), 4, "{table}");
}

/// `tidings topics` asks for pages of 1,000 (so the server never builds one answer with every
/// topic): all 1,003 topics of three prefixes come back across two pages; `--prefix` and
/// `--limit` narrow it, and a limited listing names the `--after` that continues it.
#[tokio::test]
async fn topics_are_listed_page_by_page() {
    let srv = serve().await;
    let mut names = Vec::new();
    for (prefix, n) in [("a.", 1001), ("b.", 1), ("c.", 1)] {
        for i in 0..n {
            names.push(format!("{prefix}{i:04}"));
        }
    }
    for name in &names {
        let answer = common::http(
            &srv.url,
            "POST",
            &format!("/v1/topics/{name}/messages"),
            None,
            br#"{"event":"e","data":1}"#,
        )
        .await;
        assert_eq!(answer.status, 201, "{name}: {:?}", answer.body);
    }
    names.sort();
    let listed = |out: &Output| -> Vec<String> {
        assert!(out.status.success(), "{}", stderr(out));
        let v: Value = serde_json::from_str(&stdout(out)).unwrap();
        v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap().to_owned())
            .collect()
    };

    let all = tidings(&["topics", "--json", "--url", &srv.url]).await;
    assert_eq!(listed(&all), names, "every topic, in name order, once");

    let b_and_c = tidings(&["topics", "--json", "--prefix", "b.", "--url", &srv.url]).await;
    assert_eq!(listed(&b_and_c), ["b.0000"]);

    let first = tidings(&["topics", "--json", "--limit", "2", "--url", &srv.url]).await;
    assert_eq!(listed(&first), ["a.0000", "a.0001"]);
    let v: Value = serde_json::from_str(&stdout(&first)).unwrap();
    assert_eq!(v["next"], "a.0001");
    assert_eq!(v["total"], 1003);

    // The table says how to go on, and `--after` does.
    let table = tidings(&["topics", "--limit", "2", "--url", &srv.url]).await;
    assert!(table.status.success(), "{}", stderr(&table));
    assert!(
        stdout(&table).contains("(2 of 1003 topics shown; the next ones: --after a.0001)"),
        "{}",
        stdout(&table)
    );
    let rest = tidings(&["topics", "--json", "--after", "a.0999", "--url", &srv.url]).await;
    assert_eq!(listed(&rest), ["a.1000", "b.0000", "c.0000"]);
}
