//! Connection State Recovery with the real `socket.io-client` (tests/clients/js/recovery*.mjs)
//! against the interop app with recovery on: missed events in order, same id and rooms, fresh
//! and expired sessions, quiet clients, zombie eviction, and a server restart with the SQLite
//! recovery log. python-socketio (which does not implement recovery) still works with it on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::port::Port;
use tidings_core::session_log::SessionLog;
use tidings_server::{Parser, RecoveryConfig, Server, ServerConfig};
use tidings_store_sqlite::SqliteSessionLog;
use tokio::sync::mpsc;

/// The window of the scenarios that must never expire.
const LONG_WINDOW: Duration = Duration::from_secs(60);
/// The window of recovery-window.mjs.
const SHORT_WINDOW: Duration = Duration::from_millis(1500);

fn config(window: Duration, parser: Parser) -> ServerConfig {
    support::interop_config()
        .recovery(Some(
            RecoveryConfig::default().with_max_disconnection_duration(window),
        ))
        .parser(parser)
        .build()
        .unwrap()
}

/// The interop app, plus `/quiet` (emits nothing on connect; answers `room-sockets`) and
/// `/control` (`restart` requests go to `restarts`).
fn app(
    window: Duration,
    log: Option<Arc<dyn SessionLog>>,
    restarts: Option<mpsc::UnboundedSender<Value>>,
) -> Server {
    app_with(window, log, restarts, Parser::Default)
}

fn app_with(
    window: Duration,
    log: Option<Arc<dyn SessionLog>>,
    restarts: Option<mpsc::UnboundedSender<Value>>,
    parser: Parser,
) -> Server {
    let server = match log {
        Some(log) => Server::with_session_log(config(window, parser), log),
        None => Server::new(config(window, parser)),
    };
    let server = support::install_interop_app(server);
    server.of("/quiet").on_connect(|socket| {
        socket.on("room-sockets", |socket, mut event| async move {
            let Some(ack) = event.take_ack() else { return };
            let room = event
                .data::<Value>()
                .ok()
                .and_then(|p| p.get("room").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            let mut sids: Vec<String> = socket
                .namespace()
                .sockets_in(room)
                .iter()
                .map(|s| s.to_string())
                .collect();
            sids.sort();
            let _ = ack.send(&json!({ "ok": true, "sids": sids }));
        });
    });
    if let Some(restarts) = restarts {
        server.of("/control").on_connect(move |socket| {
            let restarts = restarts.clone();
            socket.on("restart", move |_socket, event| {
                let restarts = restarts.clone();
                async move {
                    let _ = restarts.send(event.data::<Value>().unwrap_or(Value::Null));
                }
            });
        });
    }
    server
}

fn envs(transport: &str, window: Duration) -> Vec<(String, String)> {
    vec![
        ("TRANSPORT".into(), transport.into()),
        (
            "TIDINGS_RECOVERY_WINDOW_MS".into(),
            window.as_millis().to_string(),
        ),
    ]
}

async fn run_js(script: &str, transport: &str, window: Duration) -> tidings_server::ServerStats {
    run_js_with(script, transport, window, Parser::Default).await
}

async fn run_js_with(
    script: &str,
    transport: &str,
    window: Duration,
    parser: Parser,
) -> tidings_server::ServerStats {
    let test = support::start(app_with(window, None, None, parser)).await;
    let mut envs = envs(transport, window);
    envs.push(("PARSER".into(), parser.as_str().into()));
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let path = support::repo_root().join("tests/clients/js").join(script);
    support::run_script(&support::node(), path, &test.url(), &envs).await;
    let stats = test.server.stats();
    assert_eq!(stats.protocol_errors, 0, "protocol errors: {stats:?}");
    stats
}

/// recovery.mjs recovers sessions (missed events twice, a quiet client, a zombie's heir) and
/// claims one unknown pid; nothing in it is too old.
fn assert_recovery_outcomes(stats: &tidings_server::ServerStats) {
    assert!(stats.recovery_recovered >= 4, "recovered: {stats:?}");
    assert_eq!(stats.recovery_unknown, 1, "the unknown pid: {stats:?}");
    assert_eq!(stats.recovery_expired, 0, "expired: {stats:?}");
}

mod recovery_js {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket() {
        assert_recovery_outcomes(&run_js("recovery.mjs", "websocket", LONG_WINDOW).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling() {
        assert_recovery_outcomes(&run_js("recovery.mjs", "polling", LONG_WINDOW).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upgrade() {
        assert_recovery_outcomes(&run_js("recovery.mjs", "upgrade", LONG_WINDOW).await);
    }
}

/// Recovery with `--parser msgpack`: the log keeps each packet's MessagePack (binary inside)
/// and replays it as it was sent.
mod recovery_js_msgpack {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket() {
        assert_recovery_outcomes(
            &run_js_with("recovery.mjs", "websocket", LONG_WINDOW, Parser::Msgpack).await,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling() {
        assert_recovery_outcomes(
            &run_js_with("recovery.mjs", "polling", LONG_WINDOW, Parser::Msgpack).await,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_expiry_and_old_offsets() {
    let stats = run_js("recovery-window.mjs", "websocket", SHORT_WINDOW).await;
    // Clients that came back too late: found expired, or already trimmed (unknown).
    assert!(
        stats.recovery_expired + stats.recovery_unknown >= 1,
        "failed recoveries counted: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_connects_with_recovery_on() {
    let test = support::start(app(LONG_WINDOW, None, None)).await;
    for transport in ["websocket", "polling"] {
        support::run_py("recovery_smoke.py", &test.url(), transport).await;
    }
}

/// One server process of the restart test: its server, its serve task, its log and address.
struct Running {
    server: Server,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    log: Arc<SqliteSessionLog>,
    addr: SocketAddr,
}

async fn start_on(
    port: Port,
    path: &Path,
    restarts: &mpsc::UnboundedSender<Value>,
    before_listening: Option<&Value>,
) -> Running {
    let log = Arc::new(SqliteSessionLog::open(path).unwrap());
    let server = app(LONG_WINDOW, Some(log.clone()), Some(restarts.clone()));
    if let Some(request) = before_listening {
        let room = request["room"].as_str().unwrap().to_owned();
        for event in request["events"].as_array().unwrap() {
            server
                .of("/")
                .to(room.as_str())
                .emit("news", event)
                .unwrap();
        }
    }
    let addr = port.addr();
    let listener = port.listen();
    let s = server.clone();
    let serve = tokio::spawn(async move { s.serve(listener).await });
    Running {
        server,
        serve,
        log,
        addr,
    }
}

/// Stops the server; returns its port, kept for the next one.
async fn stop(running: Running) -> Port {
    // Bound before the listener closes: the port is never free for another process.
    let port = Port::bind(running.addr);
    running.server.shutdown();
    running.serve.await.unwrap().unwrap();
    // Everything the shutdown persisted (every socket's session) is in the file.
    running.log.flush().await.unwrap();
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_the_sqlite_log() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("recovery.sqlite3");
    let (tx, mut restarts) = mpsc::unbounded_channel();
    let port = Port::ephemeral();
    let addr = port.addr();
    let mut running = Some(start_on(port, &path, &tx, None).await);
    let envs = envs("websocket", LONG_WINDOW);
    let script = support::repo_root().join("tests/clients/js/recovery-restart.mjs");
    let url = format!("http://{addr}");
    let client = tokio::spawn(async move {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        support::run_script(&support::node(), script, &url, &envs).await
    });
    tokio::pin!(client);
    loop {
        tokio::select! {
            finished = &mut client => {
                finished.unwrap();
                break;
            }
            Some(request) = restarts.recv() => {
                let old = running.take().expect("a running server");
                let port = stop(old).await;
                running = Some(start_on(port, &path, &tx, Some(&request)).await);
            }
        }
    }
    if let Some(last) = running.take() {
        stop(last).await;
    }
}
