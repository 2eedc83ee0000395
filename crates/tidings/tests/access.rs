//! Access control of `tidings serve` (docs/SECURITY.md) as real clients meet it: the binary
//! with a JWT key from a flag, the environment or the TOML file; socket.io-client and
//! python-socketio scenarios (tests/clients/js/access.mjs, tests/clients/py/access.py) with
//! tokens minted here; and the HTTP API spoken over plain HTTP/1.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

/// The config file of the HS256 server: the key comes from `TIDINGS_JWT_SECRET`, the leeway
/// and the rules from here.
const ACCESS_TOML: &str = r#"
[access]
leeway_secs = 0

[[access.rules]]
identity = "carol"
subscribe = ["shared.>"]
"#;

fn orders(join: &str) -> Value {
    json!({ "publish": ["orders.*"], "subscribe": ["orders.*"], "join": [join] })
}

/// The named tokens the `hs` scenarios use.
fn hs_tokens() -> Value {
    let mut expired = claims("alice", orders("room.a"));
    expired["exp"] = json!(now() - 3600);
    let mut nbf = claims("alice", orders("room.a"));
    nbf["nbf"] = json!(now() + 3600);
    let mut nosub = claims("alice", orders("room.a"));
    nosub.as_object_mut().unwrap().remove("sub");
    json!({
        "alice": token(&claims("alice", orders("room.a"))),
        "bob": token(&claims("bob", orders("room.b"))),
        "admin": token(&claims("ops", json!({ "admin": true }))),
        "expired": token(&expired),
        "nbf": token(&nbf),
        "nosub": token(&nosub),
        "forged": hs256(&claims("alice", json!({ "admin": true })), "another-secret-0123456789abcdefghij"),
        "none": alg_none(&claims("alice", json!({ "admin": true }))),
    })
}

async fn hs_server() -> Serve {
    serve(ACCESS_TOML, &[], &[("TIDINGS_JWT_SECRET", SECRET)]).await
}

#[tokio::test]
async fn tokens_and_permissions_with_socket_io_client() {
    let server = hs_server().await;
    let tokens = hs_tokens().to_string();
    for transport in ["websocket", "polling"] {
        run_client(
            "js/access.mjs",
            &server.url,
            &[
                ("SCENARIO", "hs"),
                ("TOKENS", &tokens),
                ("TRANSPORT", transport),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn tokens_and_permissions_with_python_socketio() {
    let server = hs_server().await;
    let tokens = hs_tokens().to_string();
    for transport in ["websocket", "polling"] {
        run_client(
            "py/access.py",
            &server.url,
            &[
                ("TOKENS", &tokens),
                ("TRANSPORT", transport),
                ("JWT_SECRET", SECRET),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn a_token_expiring_while_connected_disconnects_with_a_reason() {
    let server = hs_server().await;
    for transport in ["websocket", "polling"] {
        run_client(
            "js/access.mjs",
            &server.url,
            &[
                ("SCENARIO", "expiry"),
                ("JWT_SECRET", SECRET),
                ("TRANSPORT", transport),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn a_public_key_pins_its_algorithm() {
    let key = testdata("rsa-public.pem");
    let server = serve("", &["--jwt-public-key", key.to_str().unwrap()], &[]).await;
    let alice = claims("alice", orders("room.a"));
    let admin = claims("ops", json!({ "admin": true }));
    let tokens = json!({
        "rs": rs256(&alice),
        "confusion": hs_with_public_key(&admin),
        "hs": token(&admin),
        "es": es256(&admin),
        "none": alg_none(&admin),
    })
    .to_string();
    run_client(
        "js/access.mjs",
        &server.url,
        &[
            ("SCENARIO", "keys"),
            ("TOKENS", &tokens),
            ("TRANSPORT", "websocket"),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_http_api_wants_a_token_and_owns_queues_per_identity() {
    let server = serve("", &["--jwt-secret", SECRET], &[]).await;
    let url = &server.url;
    let alice = token(&claims("alice", orders("room.a")));
    let admin = token(&claims("ops", json!({ "admin": true })));

    let answer = http(url, "GET", "/v1/topics", None, b"").await;
    assert_eq!((answer.status, answer.code()), (401, "unauthorized"));
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    let answer = http(url, "GET", "/v1/topics", Some("x.y.z"), b"").await;
    assert_eq!((answer.status, answer.code()), (401, "unauthorized"));
    assert_eq!(
        answer.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );

    // The server's counters describe every client: admin only.
    let answer = http(url, "GET", "/v1/stats", None, b"").await;
    assert_eq!((answer.status, answer.code()), (401, "unauthorized"));
    let answer = http(url, "GET", "/v1/stats", Some(&alice), b"").await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    let answer = http(url, "GET", "/v1/stats", Some(&admin), b"").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(answer.body["sessionsOpened"].is_u64(), "{:?}", answer.body);

    let publish = br#"{"event":"order","data":{"n":1}}"#;
    let answer = http(
        url,
        "POST",
        "/v1/topics/orders.a/messages",
        Some(&alice),
        publish,
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let answer = http(
        url,
        "POST",
        "/v1/topics/audit.a/messages",
        Some(&alice),
        publish,
    )
    .await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alice may not publish to \"audit.a\""),
        "{:?}",
        answer.body
    );
    let answer = http(
        url,
        "POST",
        "/v1/topics/audit.a/messages",
        Some(&admin),
        publish,
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let answer = http(url, "GET", "/v1/topics/audit.a/messages", Some(&alice), b"").await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    let answer = http(
        url,
        "GET",
        "/v1/topics/audit.a/dead-letters",
        Some(&alice),
        b"",
    )
    .await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    let answer = http(url, "GET", "/v1/topics", Some(&alice), b"").await;
    assert_eq!(answer.status, 200);
    let topics: Vec<&str> = answer.body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["orders.a"], "audit.a is outside alice's claim");
    let answer = http(url, "GET", "/v1/topics", Some(&admin), b"").await;
    assert_eq!(answer.body["topics"].as_array().unwrap().len(), 2);
    // Another identity's queue, named in the path: 403 for alice, 404 (it does not exist) for
    // the admin, who may look.
    let path = "/v1/topics/orders.a/subscriptions/id:bob";
    let answer = http(url, "DELETE", path, Some(&alice), b"").await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    let answer = http(url, "DELETE", path, Some(&admin), b"").await;
    assert_eq!((answer.status, answer.code()), (404, "not_found"));
    let path = "/v1/topics/orders.a/subscriptions/group:pickers";
    let answer = http(url, "DELETE", path, Some(&alice), b"").await;
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
}

#[tokio::test]
async fn invalid_keys_are_refused_at_start_up() {
    let private = testdata("rsa-private.pem");
    for (args, expected) in [
        (vec!["--jwt-secret", "short"], "at least 32 bytes"),
        (
            vec!["--jwt-public-key", private.to_str().unwrap()],
            "expected a public key",
        ),
        (
            vec!["--jwt-public-key", "/nonexistent/key.pem"],
            "cannot read the JWT public key",
        ),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--port", "0", "--store", "memory"])
            .args(&args)
            .output();
        let output = within(20, "tidings serve", output).await.unwrap();
        assert!(!output.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
