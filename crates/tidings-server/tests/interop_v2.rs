//! `allow_eio3`: the npm `socket.io-client` 2.x (installed as `socket.io-client-v2`) against
//! the interop app over WebSocket only, polling only and polling upgraded to WebSocket, with
//! durable topics on a server with queues; and without the flag, the clear 400.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod queue_support;
mod support;

fn v2_config() -> tidings_server::ServerConfig {
    support::interop_config().allow_eio3(true).build().unwrap()
}

async fn run_v2(transport: &str) {
    let server = queue_support::start_with(queue_support::Profile::Long, v2_config()).await;
    let path = support::repo_root().join("tests/clients/js/v2-client.mjs");
    server
        .run_with(&support::node(), path, transport, &[("DURABLE", "1")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket() {
    run_v2("websocket").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling() {
    run_v2("polling").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade() {
    run_v2("upgrade").await
}
