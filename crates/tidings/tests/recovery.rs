//! `tidings serve --recovery` with the SQLite session log, restarted like an operator does
//! (SIGTERM, then a new process on the same port and data directory), with the unmodified
//! `socket.io-client`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::Scenario;
use tokio::process::{Child, Command};

/// Starts `tidings serve --recovery` on `port` (0: a free one) and returns it with its origin.
/// The port of a restart was free a moment ago, but the kernel may have handed it to a
/// connection of another test meanwhile (an outgoing connection's port cannot be listened on):
/// such a start is made again, at most 50 times 100 ms apart, until that connection is gone.
async fn serve(data: &Path, port: u16) -> (Child, String) {
    serve_with(data, port, &[]).await
}

/// [`serve`] with more flags.
async fn serve_with(data: &Path, port: u16, extra: &[&str]) -> (Child, String) {
    for _ in 0..50 {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
        command
            .args([
                "serve",
                "--recovery",
                "--port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(data)
            .args(extra)
            .kill_on_drop(true);
        match common::try_spawn_serve(&mut command).await {
            Ok(started) => return started,
            Err(stderr) if port != 0 && stderr.contains("in use") => {
                eprintln!("port {port} is in use, starting again: {stderr}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(stderr) => panic!("tidings serve exited before listening:\n{stderr}"),
        }
    }
    panic!("port {port} still in use after 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_recovers_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let (server, origin) = serve(data.path(), 0).await;
    let port: u16 = origin.rsplit(':').next().unwrap().parse().unwrap();

    let mut scenario = Scenario::start("js/recovery-serve-restart.mjs", &origin, &[]);
    scenario.cue("RESTART", 30).await;

    // SIGTERM: the graceful shutdown closes the sessions, which keeps them recoverable.
    let pid = server.id().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let mut server = server;
    let exit = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .expect("tidings serve did not stop within 20 s of SIGTERM")
        .unwrap();
    assert!(
        exit.success(),
        "tidings serve exited with {exit} on SIGTERM"
    );
    let (_server, _) = serve(data.path(), port).await;

    scenario.passes(60).await;
}

/// `tidings serve --recovery` killed with SIGKILL while a quiet client is connected, then
/// restarted on the same port and data directory; the scenario says what it expects.
async fn kill_9_and_restart(transport: &str, expect: &str, window_ms: u64) {
    kill_9_and_restart_with("js/recovery-crash.mjs", transport, expect, window_ms).await;
}

async fn kill_9_and_restart_with(script: &str, transport: &str, expect: &str, window_ms: u64) {
    let data = tempfile::tempdir().unwrap();
    let window = window_ms.to_string();
    let flags = ["--recovery-window-ms", window.as_str()];
    let (server, origin) = serve_with(data.path(), 0, &flags).await;
    let port: u16 = origin.rsplit(':').next().unwrap().parse().unwrap();
    let envs = [
        ("TRANSPORT", transport),
        ("TIDINGS_CRASH_EXPECT", expect),
        ("TIDINGS_RECOVERY_WINDOW_MS", window.as_str()),
    ];
    let mut scenario = Scenario::start(script, &origin, &envs);
    scenario.cue("CRASH", 30).await;
    let mut server = server;
    server.start_kill().unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("tidings serve did not die within 10 s of SIGKILL")
        .unwrap();
    assert!(!exit.success(), "SIGKILL: {exit}");
    let (_server, _) = serve_with(data.path(), port, &flags).await;
    scenario.passes(60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_websocket_client_recovers_after_kill_9() {
    kill_9_and_restart("websocket", "recovered", 120_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_polling_client_recovers_after_kill_9() {
    kill_9_and_restart("polling", "recovered", 120_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_back_after_the_window_gets_a_fresh_session_after_kill_9() {
    kill_9_and_restart("websocket", "expired", 1_500).await;
}

/// python-socketio has no recovery: after a kill -9 it reconnects by itself as a new session,
/// with no stale room (docs/PROTOCOL.md says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_reconnects_as_a_new_session_after_kill_9() {
    for transport in ["websocket", "polling"] {
        kill_9_and_restart_with("py/recovery_crash.py", transport, "new", 120_000).await;
    }
}
