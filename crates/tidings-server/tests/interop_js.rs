//! The npm `socket.io-client` against the interop app, over WebSocket only, polling only, and
//! polling upgraded to WebSocket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

macro_rules! js_scenarios {
    ($($name:ident => $script:literal),* $(,)?) => {
        $(
            mod $name {
                use super::support;
                async fn run(transport: &str) {
                    let server = support::start(support::interop_app(support::interop_config().build().unwrap())).await;
                    support::run_js($script, &server.url(), transport).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn websocket() { run("websocket").await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn polling() { run("polling").await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn upgrade() { run("upgrade").await }
            }
        )*
    };
}

js_scenarios! {
    connect => "connect.mjs",
    events => "events.mjs",
    binary => "binary.mjs",
    rooms => "rooms.mjs",
    burst => "burst.mjs",
}

/// 1,000 clients in one room, 200 pipelined broadcasts (200,000 deliveries): every client
/// receives every event exactly once, in order, and nobody is disconnected. (socketioxide 0.18
/// silently dropped up to 7% of such a broadcast under load.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_member_room_broadcast_drops_nothing() {
    let config = support::interop_config().build().unwrap();
    let server = support::start(support::interop_app(config)).await;
    let script = support::repo_root().join("tests/clients/js/many.mjs");
    let envs = [
        ("TRANSPORT", "websocket"),
        ("MANY_CLIENTS", "1000"),
        ("MANY_EVENTS", "200"),
    ];
    support::run_script(&support::node(), script, &server.url(), &envs).await;
    let stats = server.server.stats();
    assert_eq!(stats.slow_client_disconnects, 0);
    assert_eq!(stats.protocol_errors, 0);
}
