//! The npm `socket.io-client` against the interop app, over WebSocket only, polling only, and
//! polling upgraded to WebSocket.
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

/// 200 clients in one room, 200 broadcasts: every client receives every event, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_no_drops() {
    let server = support::start(support::interop_app(
        support::interop_config().build().unwrap(),
    ))
    .await;
    support::run_js("many.mjs", &server.url(), "websocket").await;
    assert_eq!(server.server.stats().slow_client_disconnects, 0);
}
