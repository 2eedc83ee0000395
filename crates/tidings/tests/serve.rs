//! `tidings serve` as a user runs it: the real binary on an ephemeral port, configured by flags
//! and by `TIDINGS_…` variables, driven by the npm and PyPI clients using only built-in events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::{run_client, serve};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn builtin_events_with_socket_io_client_over_each_transport() {
    let server = serve("", &[], &[]).await;
    for transport in ["websocket", "polling", "upgrade"] {
        run_client("js/serve.mjs", &server.url, &[("TRANSPORT", transport)]).await;
    }
}

#[tokio::test]
async fn builtin_events_with_python_socketio() {
    let server = serve("", &[], &[]).await;
    for transport in ["websocket", "polling"] {
        run_client("py/serve.py", &server.url, &[("TRANSPORT", transport)]).await;
    }
}

/// `tidings serve` without `--port` (nor `--path`): what it prints once listening, or `Err`
/// with its stderr when it exits first.
async fn serve_configured_by_env(
    envs: &[(&str, &str)],
) -> Result<(tokio::process::Child, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--store", "memory"])
        .env_remove("TIDINGS_HOST")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = common::within(20, "tidings serve reporting its address", lines.next_line())
        .await
        .unwrap();
    match first {
        Some(line) => Ok((child, line)),
        None => {
            let mut stderr = String::new();
            let mut pipe = child.stderr.take().unwrap();
            common::within(
                10,
                "tidings serve's stderr",
                pipe.read_to_string(&mut stderr),
            )
            .await
            .unwrap();
            Err(stderr)
        }
    }
}

#[tokio::test]
async fn path_and_port_come_from_the_environment() {
    // TIDINGS_PORT names a port, so it must be a free one: picked by the kernel, then let go.
    // Another process may take it before tidings binds it; then try another (at most 5).
    for attempt in 1..=5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let envs = [("TIDINGS_PORT", port.as_str()), ("TIDINGS_PATH", "/rt/")];
        let (_child, line) = match serve_configured_by_env(&envs).await {
            Ok(started) => started,
            Err(stderr) if stderr.contains("in use") && attempt < 5 => {
                eprintln!("port {port} was taken before tidings bound it, trying another");
                continue;
            }
            Err(stderr) => panic!("tidings serve exited before listening:\n{stderr}"),
        };
        assert_eq!(line, format!("listening on http://127.0.0.1:{port}/rt/"));
        run_client(
            "js/serve.mjs",
            &format!("http://127.0.0.1:{port}"),
            &[("TRANSPORT", "websocket"), ("TIDINGS_PATH", "/rt/")],
        )
        .await;
        return;
    }
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
