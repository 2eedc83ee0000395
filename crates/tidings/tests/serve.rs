//! `tidings serve` as a user runs it: the real binary on an ephemeral port, configured by flags
//! and by `TIDINGS_…` variables, driven by the npm and PyPI clients using only built-in events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{run_client, serve, try_spawn_serve};
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
        // Neither --port nor --path.
        let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
        command
            .args(["serve", "--store", "memory"])
            .env_remove("TIDINGS_HOST")
            .envs([("TIDINGS_PORT", port.as_str()), ("TIDINGS_PATH", "/rt/")]);
        let (_child, origin) = match try_spawn_serve(&mut command).await {
            Ok(started) => started,
            Err(stderr) if stderr.contains("in use") && attempt < 5 => {
                eprintln!("port {port} was taken before tidings bound it, trying another");
                continue;
            }
            Err(stderr) => panic!("tidings serve exited before listening:\n{stderr}"),
        };
        assert_eq!(origin, format!("http://127.0.0.1:{port}"));
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
