//! `tidings serve` as a user runs it: the real binary on an ephemeral port, configured by flags
//! and by `TIDINGS_…` variables, driven by the npm and PyPI clients using only built-in events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Serve {
    child: Child,
    url: String,
}

/// Starts `tidings serve --port 0 …` and waits for its `listening on` line.
async fn serve(args: &[&str], envs: &[(&str, &str)]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .arg("serve")
        .args(["--port", "0", "--store", "memory"])
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("tidings serve did not report its address within 20 s")
        .unwrap()
        .expect("tidings serve exited before listening");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    // The origin, without the endpoint path.
    let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
    Serve { child, url: origin }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn python() -> String {
    std::env::var("TIDINGS_PYTHON").unwrap_or_else(|_| {
        let venv = repo_root().join(".venv/bin/python");
        if venv.exists() {
            venv.to_string_lossy().into_owned()
        } else {
            "python3".to_owned()
        }
    })
}

async fn run(program: &str, script: &str, url: &str, envs: &[(&str, &str)]) {
    let output = Command::new(program)
        .arg(repo_root().join("tests/clients").join(script))
        .env("TIDINGS_URL", url)
        .envs(envs.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("client timed out")
        .unwrap();
    assert!(
        output.status.success(),
        "{script} {envs:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn builtin_events_with_socket_io_client_over_each_transport() {
    let server = serve(&[], &[]).await;
    for transport in ["websocket", "polling", "upgrade"] {
        run(
            "node",
            "js/serve.mjs",
            &server.url,
            &[("TRANSPORT", transport)],
        )
        .await;
    }
    drop(server.child);
}

#[tokio::test]
async fn builtin_events_with_python_socketio() {
    let server = serve(&[], &[]).await;
    for transport in ["websocket", "polling"] {
        run(
            &python(),
            "py/serve.py",
            &server.url,
            &[("TRANSPORT", transport)],
        )
        .await;
    }
}

#[tokio::test]
async fn path_and_port_come_from_the_environment() {
    let server = serve(&[], &[("TIDINGS_PATH", "/rt/")]).await;
    run(
        "node",
        "js/serve.mjs",
        &server.url,
        &[("TRANSPORT", "websocket"), ("TIDINGS_PATH", "/rt/")],
    )
    .await;
}

#[tokio::test]
async fn invalid_configuration_is_refused_with_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--port", "0", "--path", "no-slash"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("path must start with '/'"),
        "stderr: {stderr}"
    );
}
