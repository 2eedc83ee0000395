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
async fn serve(data: &Path, port: u16) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args([
            "serve",
            "--recovery",
            "--port",
            &port.to_string(),
            "--data-dir",
        ])
        .arg(data);
    common::spawn_serve(&mut command).await
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
