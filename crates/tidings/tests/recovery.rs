//! `tidings serve --recovery` with the SQLite session log, restarted like an operator does
//! (SIGTERM, then a new process on the same port and data directory), with the unmodified
//! `socket.io-client`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

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

    let mut script = Command::new(std::env::var("TIDINGS_NODE").unwrap_or_else(|_| "node".into()))
        .arg(repo_root().join("tests/clients/js/recovery-serve-restart.mjs"))
        .env("TIDINGS_URL", &origin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let cue = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the scenario did not ask for the restart within 30 s")
        .unwrap();
    assert_eq!(cue.as_deref(), Some("RESTART"), "the scenario ended early");

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

    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let status = tokio::time::timeout(Duration::from_secs(60), script.wait())
        .await
        .expect("recovery-serve-restart.mjs still running after 60 s")
        .unwrap();
    assert!(
        status.success(),
        "recovery-serve-restart.mjs failed; see its stderr above"
    );
}
