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

/// `--parser` and `--allow-eio3` (and their `[protocol]` keys, which the flags override) reach
/// the server's configuration; an unknown parser in the file is refused naming the key.
#[tokio::test]
async fn protocol_options_from_flags_and_the_config_file() {
    let print = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidings"));
        cmd.args(["serve", "--print-config", "--store", "memory"])
            .args(args);
        cmd.output()
    };
    let output = common::within(
        20,
        "--print-config",
        print(&["--parser", "msgpack", "--allow-eio3"]),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("parser: Msgpack") && text.contains("allow_eio3: true"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidings.toml");
    std::fs::write(
        &file,
        "[protocol]\nparser = \"msgpack\"\nallow_eio3 = true\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let output = common::within(20, "--print-config", print(&["--config", file]))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("parser: Msgpack") && text.contains("allow_eio3: true"),
        "{text}"
    );
    let output = common::within(
        20,
        "--print-config",
        print(&["--config", file, "--parser", "default"]),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("parser: Default"), "{text}");

    std::fs::write(
        dir.path().join("bad.toml"),
        "[protocol]\nparser = \"json\"\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    let output = common::within(
        20,
        "--print-config",
        print(&["--config", bad.to_str().unwrap()]),
    )
    .await
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("protocol.parser") && stderr.contains("msgpack"),
        "{stderr}"
    );
}

/// An Engine.IO polling handshake at `origin` (`http://host:port`): the server still serves.
async fn handshake_answers(origin: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = origin.trim_start_matches("http://");
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return false;
    };
    let request = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;
    matches!(read, Ok(Ok(_))) && answer.starts_with(b"HTTP/1.1 200") && {
        let text = String::from_utf8_lossy(&answer);
        text.contains(r#""sid":""#)
    }
}

/// `tidings serve` on port 0 with the memory store and JSON logs at `level`, both output
/// streams piped to the test.
fn serve_json_logs(level: &str) -> tokio::process::Child {
    use std::process::Stdio;
    Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args([
            "serve",
            "--port",
            "0",
            "--store",
            "memory",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", level)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// SIGTERM to `child`; it must exit with success within 10 s.
async fn terminates_cleanly(child: &mut tokio::process::Child, case: &str) {
    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success(), "{case}: kill");
    let status = common::within(10, case, child.wait()).await.unwrap();
    assert!(status.success(), "{case}: exited with {status}");
}

/// Logging and printing never stop the server or its shutdown (issue 21): with its output
/// read by a pipe that goes away (`tidings serve --log-format json 2>&1 | head -4`), it keeps
/// serving and logging, and a SIGTERM still stops it cleanly; with stdout closed before the
/// start-up line, it starts and stops the same.
#[tokio::test]
async fn closed_output_pipes_stop_neither_the_server_nor_its_shutdown() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let case = "stdout and stderr closed after start-up";
    // Debug logs every connection: the server writes to the closed stderr below.
    let mut child = serve_json_logs("debug");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = common::within(20, case, lines.next_line())
        .await
        .unwrap()
        .expect("tidings serve exited before listening");
    let origin: String = line
        .trim_start_matches("listening on ")
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");
    drop(lines);
    drop(child.stderr.take());
    for round in 0..3 {
        assert!(handshake_answers(&origin).await, "{case}: round {round}");
    }
    terminates_cleanly(&mut child, case).await;

    let case = "stdout closed before the start-up line";
    let mut child = serve_json_logs("info");
    drop(child.stdout.take());
    // Its address, from the JSON start-up log: `"addr":"127.0.0.1:PORT"`.
    let mut logs = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = common::within(20, case, async {
        while let Some(line) = logs.next_line().await.unwrap() {
            if let Some(rest) = line.split(r#""addr":""#).nth(1) {
                return rest.split('"').next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("tidings serve exited before logging its address");
    drop(logs);
    assert!(handshake_answers(&format!("http://{addr}")).await, "{case}");
    terminates_cleanly(&mut child, case).await;
}

/// clients/js's TypeScript types compile against a typed use of the helper, and misuse does not
/// (tests/clients/js/durable-helper-types.ts, with the `typescript` of tests/clients/js).
#[tokio::test]
async fn the_durable_topics_helper_types_check() {
    let js = common::repo_root().join("tests/clients/js");
    let tsc = js.join("node_modules/typescript/bin/tsc");
    assert!(
        tsc.exists(),
        "{} missing: run `npm ci` in tests/clients/js (scripts/test does)",
        tsc.display()
    );
    let output = Command::new(common::node())
        .arg(&tsc)
        .args(["-p", "tsconfig.types.json"])
        .current_dir(&js)
        .output();
    let output = common::within(120, "tsc", output).await.unwrap();
    assert!(
        output.status.success(),
        "tsc:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// clients/js, the typed helper for durable topics, with the real socket.io-client.
#[tokio::test]
async fn the_durable_topics_helper_with_socket_io_client() {
    let server = serve("", &[], &[]).await;
    for transport in ["websocket", "polling"] {
        run_client(
            "js/durable-helper.mjs",
            &server.url,
            &[("TRANSPORT", transport)],
        )
        .await;
    }
}

/// clients/py, the Python helper for durable topics, with python-socketio.
#[tokio::test]
async fn the_durable_topics_helper_with_python_socketio() {
    let server = serve("", &[], &[]).await;
    for transport in ["websocket", "polling"] {
        run_client(
            "py/durable_helper.py",
            &server.url,
            &[("TRANSPORT", transport)],
        )
        .await;
    }
}
