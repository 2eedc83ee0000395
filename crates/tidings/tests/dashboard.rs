//! The durable-topics dashboard (`GET /dashboard`) of `tidings serve`, in Chromium
//! (tests/clients/js/dashboard.mjs, npm `playwright-core`): with tokens, the page asks for an
//! admin token and says so when the API answers 401 / 403; signed in, it shows a topic with
//! its figures, a subscription's detail and its dead letter, requeues it and publishes — and
//! the server's state is checked through the HTTP API, by the script and here. Without tokens
//! it is open, and pages through 10,000 topics. Also the API's topic paging on its own.
//!
//! Needs `chromium` (scripts/test installs it with apt-get and sets `TIDINGS_CHROMIUM`) and
//! the npm packages of tests/clients/js. Screenshots go to `target/test-artifacts/dashboard/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tidings_client::{Client, ClientOptions, SubscribeOptions};

use common::{Scenario, claims, http, repo_root, serve, token, within};

fn chromium() -> String {
    std::env::var("TIDINGS_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

fn screenshots(what: &str) -> std::path::PathBuf {
    repo_root()
        .join("target/test-artifacts/dashboard")
        .join(what)
}

/// `GET path` with `bearer`, which must answer 200: its JSON body.
async fn get_ok(url: &str, path: &str, bearer: Option<&str>) -> Value {
    let answer = http(url, "GET", path, bearer, b"").await;
    assert_eq!(answer.status, 200, "GET {path}: {:?}", answer.body);
    answer.body
}

/// The subscription `name` of `topic`, read with `bearer`.
async fn subscription(url: &str, topic: &str, name: &str, bearer: &str) -> Value {
    let info = get_ok(url, &format!("/v1/topics/{topic}"), Some(bearer)).await;
    info["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no subscription {name}: {info}"))
        .clone()
}

/// The page and its assets are served to anyone (they hold no data) with a policy that
/// allows nothing but themselves; other paths under /dashboard are 404.
async fn check_assets(url: &str) {
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let answer = http(url, "GET", path, None, b"").await;
        assert_eq!(answer.status, 200, "{path}");
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff");
    }
    let missing = http(url, "GET", "/dashboard/nothing.js", None, b"").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"));
}

/// With tokens: the page wants an admin token (401 without one, 403 with a user's, both said
/// on the page); signed in, it shows `orders` with its subscription `id:slow` and a dead
/// letter, requeues it (the message is pending again), publishes (the message is stored and
/// shows in the live tail). Desktop and phone screenshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_requeues_a_dead_letter_and_publishes() {
    let server = serve(
        "[queues]\nmax_deliveries = 1\nack_timeout_ms = 300\n",
        &["--jwt-secret", common::SECRET],
        &[],
    )
    .await;
    let url = &server.url;
    check_assets(url).await;
    let admin = token(&claims("ops", json!({ "admin": true })));
    let alice = token(&claims(
        "alice",
        json!({ "publish": [">"], "subscribe": [">"] }),
    ));
    // Without a token the API refuses, with a user's token the counters are refused.
    let anonymous = http(url, "GET", "/v1/topics", None, b"").await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    let user = http(url, "GET", "/v1/stats", Some(&alice), b"").await;
    assert_eq!((user.status, user.code()), (403, "forbidden"));

    // A dead letter: `slow` takes the delivery and never settles it (one delivery allowed).
    let slow_token = token(&claims("slow", json!({ "subscribe": ["orders"] })));
    let options = ClientOptions::builder(url.as_str())
        .auth(json!({ "token": slow_token }))
        .build()
        .unwrap();
    let slow = within(10, "connecting", Client::connect(options))
        .await
        .unwrap();
    let mut orders = slow
        .subscribe(SubscribeOptions::new("orders"))
        .await
        .unwrap();
    let published = http(
        url,
        "POST",
        "/v1/topics/orders/messages",
        Some(&admin),
        json!({ "event": "order", "data": { "parcel": "P-1" } })
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(published.status, 201, "{:?}", published.body);
    let dead_id = published.body["id"].as_str().unwrap().to_owned();
    let held = within(10, "the delivery", orders.recv()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = get_ok(url, "/v1/topics/orders/dead-letters", Some(&admin)).await;
        if dead["deadLetters"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Gone, so that the requeued message stays pending for the page to see.
    drop(held);
    drop(orders);
    within(10, "disconnecting", slow.disconnect()).await;
    let sub = subscription(url, "orders", "id:slow", &admin).await;
    assert_eq!(
        (&sub["pending"], &sub["dead"]),
        (&json!(0), &json!(1)),
        "{sub}"
    );

    let shots = screenshots("signed-in");
    Scenario::start(
        "js/dashboard.mjs",
        url,
        &[
            ("MODE", "token"),
            ("ADMIN_TOKEN", admin.as_str()),
            ("USER_TOKEN", alice.as_str()),
            ("TOPIC", "orders"),
            ("SUB", "id:slow"),
            ("DEAD_ID", dead_id.as_str()),
            ("TIDINGS_CHROMIUM", chromium().as_str()),
            ("SCREENSHOTS", shots.to_str().unwrap()),
        ],
    )
    .passes(150)
    .await;

    // What the page did, seen through the API: the dead letter is back in its queue …
    let dead = get_ok(url, "/v1/topics/orders/dead-letters", Some(&admin)).await;
    assert_eq!(dead, json!({ "deadLetters": [] }));
    // (pending: the requeued message and the one the form published after it.)
    let sub = subscription(url, "orders", "id:slow", &admin).await;
    assert_eq!(
        (&sub["pending"], &sub["inFlight"], &sub["dead"]),
        (&json!(2), &json!(0), &json!(0)),
        "{sub}"
    );
    // … and the form's message is stored after it.
    let history = get_ok(url, "/v1/topics/orders/messages?from=2", Some(&admin)).await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(
        (&messages[0]["event"], &messages[0]["data"]),
        (&json!("note"), &json!({ "from": "the dashboard", "n": 7 }))
    );
    for shot in [
        "1-no-token",
        "2-not-admin",
        "3-topics",
        "4-subscription",
        "5-dead-letter",
        "6-requeued",
        "7-published",
        "8-phone-topics",
        "9-phone-topic",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}

/// One HTTP/1.1 connection for many requests (the `http` helper opens one per request).
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(url: &str) -> Conn {
        let host = url.strip_prefix("http://").unwrap().to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn { sender, host }
    }

    async fn call(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        within(10, "keep-alive connection ready", self.sender.ready())
            .await
            .unwrap();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let res = within(10, path, self.sender.send_request(req))
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

const TOPICS: usize = 10_000;

fn topic_name(i: usize) -> String {
    format!("t.{i:05}")
}

/// Without tokens (development mode): 10,000 topics, created through the API on four
/// keep-alive connections; the API pages them (`limit`, `after`, `prefix`, `next`,
/// `total`); the page opens without a sign-in and pages through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_pages_10000_topics_without_tokens() {
    // Unlimited topics: under `max_topics` each new topic lists the store's topics (O(n) per
    // creation), which would make the seeding, not the dashboard, the slow part.
    let server = serve(
        "",
        &[
            "--max-publishes-per-second",
            "unlimited",
            "--max-topics",
            "unlimited",
        ],
        &[],
    )
    .await;
    let url = server.url.clone();
    check_assets(&url).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for part in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&url).await;
            for i in (part..TOPICS).step_by(4) {
                let path = format!("/v1/topics/{}/messages", topic_name(i));
                let (status, body) = conn
                    .call("POST", &path, json!({ "event": "seed", "data": i }))
                    .await;
                assert_eq!(status, 201, "{path}: {body}");
            }
        }));
    }
    for task in tasks {
        within(240, "creating 10,000 topics", task).await.unwrap();
    }
    eprintln!("10,000 topics created in {:?}", started.elapsed());

    // Every topic once, in name order, over ten pages of 1,000.
    let mut conn = Conn::open(&url).await;
    let mut seen = Vec::new();
    let mut after = String::new();
    for page in 0.. {
        assert!(page <= 10, "more pages than topics / 1000");
        let (status, body) = conn
            .call(
                "GET",
                &format!("/v1/topics?limit=1000&after={after}"),
                Value::Null,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"], TOPICS);
        let topics = body["topics"].as_array().unwrap();
        assert!(topics.len() <= 1000);
        seen.extend(
            topics
                .iter()
                .map(|t| t["topic"].as_str().unwrap().to_owned()),
        );
        match body["next"].as_str() {
            Some(next) => {
                assert_eq!(next, seen.last().unwrap());
                after = next.to_owned();
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..TOPICS).map(topic_name).collect();
    assert_eq!(seen, expected);

    // A dashboard page: 50 topics with their state, quickly, wherever it starts.
    let started = Instant::now();
    let (status, body) = conn
        .call("GET", "/v1/topics?limit=50&after=t.04999", Value::Null)
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    let names: Vec<&str> = body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 50);
    assert_eq!((names[0], names[49]), ("t.05000", "t.05049"));
    assert_eq!(body["next"], "t.05049");
    assert_eq!(body["topics"][0]["head"], 1);
    eprintln!("one page of 50 of 10,000 topics in {took:?}");
    assert!(took < Duration::from_secs(2), "a page took {took:?}");

    // A prefix narrows the names (and `total`); the last page has no `next`.
    let (_, body) = conn
        .call("GET", "/v1/topics?limit=50&prefix=t.0999", Value::Null)
        .await;
    assert_eq!(body["total"], 10);
    assert_eq!(body["topics"].as_array().unwrap().len(), 10);
    assert_eq!(body["next"], Value::Null);
    // Without `limit`: every match, in the answer this route always gave.
    let (_, body) = conn
        .call("GET", "/v1/topics?prefix=t.0999", Value::Null)
        .await;
    assert_eq!(body.as_object().unwrap().len(), 1, "only `topics`");
    assert_eq!(body["topics"].as_array().unwrap().len(), 10);
    // Out of bounds: 400 with the API's error.
    for bad in ["limit=0", "limit=1001", "limit=x", "after=%zz"] {
        let (status, body) = conn
            .call("GET", &format!("/v1/topics?{bad}"), Value::Null)
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{bad}: {body}"
        );
    }

    let shots = screenshots("open");
    Scenario::start(
        "js/dashboard.mjs",
        &url,
        &[
            ("MODE", "open"),
            ("TOPICS", "10000"),
            ("TIDINGS_CHROMIUM", chromium().as_str()),
            ("SCREENSHOTS", shots.to_str().unwrap()),
        ],
    )
    .passes(120)
    .await;
    for shot in ["1-topics", "2-page-2", "3-filtered", "4-phone"] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}
