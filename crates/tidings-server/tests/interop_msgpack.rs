//! `--parser msgpack`: the npm `socket.io-client` 4.8 with `socket.io-msgpack-parser` against
//! the interop app on a server configured with [`Parser::Msgpack`], over WebSocket only,
//! polling only, and polling upgraded to WebSocket. The scenarios are the ones the default
//! parser runs (`PARSER=msgpack` makes `lib.mjs` give every client the msgpack parser), plus
//! durable topics; and a client with the other parser gets a clear refusal both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod queue_support;
mod support;

use tidings_server::Parser;

fn msgpack_config() -> tidings_server::ServerConfig {
    support::interop_config()
        .parser(Parser::Msgpack)
        .build()
        .unwrap()
}

async fn run_msgpack(script: &str, transport: &str) {
    let server = support::start(support::interop_app(msgpack_config())).await;
    let path = support::repo_root().join("tests/clients/js").join(script);
    let envs = [("TRANSPORT", transport), ("PARSER", "msgpack")];
    support::run_script(&support::node(), path, &server.url(), &envs).await;
    let stats = server.server.stats();
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
}

macro_rules! msgpack_scenarios {
    ($($name:ident => $script:literal),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn websocket() { super::run_msgpack($script, "websocket").await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn polling() { super::run_msgpack($script, "polling").await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn upgrade() { super::run_msgpack($script, "upgrade").await }
            }
        )*
    };
}

msgpack_scenarios! {
    connect => "connect.mjs",
    events => "events.mjs",
    binary => "binary.mjs",
    rooms => "rooms.mjs",
    burst => "burst.mjs",
}

macro_rules! msgpack_queue_scenarios {
    ($($name:ident => $script:literal;)*) => {
        $(
            mod $name {
                use super::queue_support::{self, Profile};
                async fn run(transport: &str) {
                    let server = queue_support::start_with(Profile::Long, super::msgpack_config()).await;
                    let path = super::support::repo_root().join("tests/clients/js").join($script);
                    server
                        .run_with(&super::support::node(), path, transport, &[("PARSER", "msgpack")])
                        .await;
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

msgpack_queue_scenarios! {
    queue_basics => "queue-basics.mjs";
    queue_groups => "queue-groups.mjs";
}

/// A client with the other parser is refused with a `connect_error` that names both parsers
/// (in the client's own encoding, so that it can read it), its connection is closed, and the
/// server counts a protocol error; a client with the right parser on the same server works.
async fn mismatch(server_parser: Parser, transport: &str) {
    let config = support::interop_config()
        .parser(server_parser)
        .build()
        .unwrap();
    let server = support::start(support::interop_app(config)).await;
    let path = support::repo_root().join("tests/clients/js/parser-mismatch.mjs");
    let envs = [
        ("TRANSPORT", transport),
        ("SERVER_PARSER", server_parser.as_str()),
    ];
    support::run_script(&support::node(), path, &server.url(), &envs).await;
    assert!(server.server.stats().protocol_errors >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_client_refused_by_msgpack_server_websocket() {
    mismatch(Parser::Msgpack, "websocket").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_client_refused_by_msgpack_server_polling() {
    mismatch(Parser::Msgpack, "polling").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_client_refused_by_default_server_websocket() {
    mismatch(Parser::Default, "websocket").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msgpack_client_refused_by_default_server_polling() {
    mismatch(Parser::Default, "polling").await
}

async fn run_msgpack_py(script: &str, transport: &str) {
    let server = support::start(support::interop_app(msgpack_config())).await;
    let path = support::repo_root().join("tests/clients/py").join(script);
    let envs = [("TRANSPORT", transport), ("PARSER", "msgpack")];
    support::run_script(&support::python(), path, &server.url(), &envs).await;
    let stats = server.server.stats();
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
}

/// python-socketio's msgpack serializer (`socketio.Client(serializer="msgpack")`) speaks the
/// same encoding: the Python scenarios against the msgpack server.
macro_rules! msgpack_py_scenarios {
    ($($name:ident => $script:literal),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn websocket() { super::run_msgpack_py($script, "websocket").await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn polling() { super::run_msgpack_py($script, "polling").await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn upgrade() { super::run_msgpack_py($script, "upgrade").await }
            }
        )*
    };
}

msgpack_py_scenarios! {
    py_connect => "connect.py",
    py_events => "events.py",
    py_rooms => "rooms.py",
}

/// Durable topics with python-socketio's msgpack serializer.
mod py_queue_basics {
    use super::queue_support::{self, Profile};

    async fn run(transport: &str) {
        let server = queue_support::start_with(Profile::Long, super::msgpack_config()).await;
        let path = super::support::repo_root().join("tests/clients/py/queue_basics.py");
        server
            .run_with(
                &super::support::python(),
                path,
                transport,
                &[("PARSER", "msgpack")],
            )
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket() {
        run("websocket").await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling() {
        run("polling").await
    }
}
