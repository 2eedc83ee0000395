//! The PyPI `python-socketio` client against the interop app, over WebSocket, polling, and polling upgraded to WebSocket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

macro_rules! py_scenarios {
    ($($name:ident => $script:literal),* $(,)?) => {
        $(
            mod $name {
                use super::support;
                async fn run(transport: &str) {
                    let server = support::start(support::interop_app(support::interop_config().build().unwrap())).await;
                    support::run_py($script, &server.url(), transport).await;
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

py_scenarios! {
    connect => "connect.py",
    events => "events.py",
    rooms => "rooms.py",
    burst => "burst.py",
}
