//! Shared by the integration tests: the interop app (the behaviour the JS and Python client
//! scripts in `tests/clients/` expect), a server on 127.0.0.1:0, and script runners.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod port;
pub mod scenario;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tidings_server::io::extract_attachments;
use tidings_server::{ConnectError, Server, ServerConfig, Socket};

/// A server running on an ephemeral loopback port; shut down on drop.
pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}

pub async fn start(server: Server) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    TestServer { server, addr }
}

pub fn interop_config() -> tidings_server::ServerConfigBuilder {
    ServerConfig::builder().builtin_events(true)
}

/// The interop app described in tests/clients/README.md.
pub fn interop_app(config: ServerConfig) -> Server {
    install_interop_app(Server::new(config))
}

/// Installs the interop app's namespaces on `server` (e.g. one made with
/// `Server::with_session_log`).
pub fn install_interop_app(server: Server) -> Server {
    server.of("/").on_connect(on_connect);
    server.of("/custom").on_connect(on_connect);
    server
        .of("/secure")
        .use_middleware(|req| async move {
            if req.auth.get("token").and_then(Value::as_str) == Some("let-me-in") {
                Ok(())
            } else {
                Err(ConnectError::new("unauthorized").with_data(json!({ "reason": "bad token" })))
            }
        })
        .on_connect(on_connect);
    server.of_dynamic(
        |name| {
            name.strip_prefix("/dyn-").is_some_and(|rest| {
                !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        },
        |ns| {
            ns.on_connect(on_connect);
        },
    );
    server
}

fn timeout_of(payload: &Value) -> Duration {
    Duration::from_millis(
        payload
            .get("timeoutMs")
            .and_then(Value::as_u64)
            .unwrap_or(1000),
    )
}

fn sorted_strings(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v
}

fn on_connect(socket: Socket) {
    let welcome = json!({
        "sid": socket.id().to_string(),
        "nsp": socket.namespace().name(),
        "auth": socket.auth(),
    });
    socket.emit("welcome", &welcome).unwrap();

    socket.on("echo", |socket, event| async move {
        let (args, attachments, _) = event.into_parts();
        let _ = socket.emit_args("echo-back", args, &attachments);
    });
    socket.on("echo-ack", |_socket, event| async move {
        let (args, attachments, ack) = event.into_parts();
        if let Some(ack) = ack {
            let _ = ack.send_args(args, attachments);
        }
    });
    socket.on("request-ack", |socket, mut event| async move {
        let Some(ack) = event.take_ack() else { return };
        let payload: Value = event.data().unwrap_or(Value::Null);
        let name = payload.get("event").and_then(Value::as_str).unwrap_or("request").to_owned();
        let mut data = payload.get("data").cloned().unwrap_or(Value::Null);
        let attachments = extract_attachments(&mut data, event.attachments());
        match socket.emit_args_with_ack(&name, vec![data], &attachments, timeout_of(&payload)).await {
            Ok(reply) => {
                let _ = ack.send_args(vec![json!({ "ok": true, "reply": reply.args })], reply.attachments);
            }
            Err(e) => {
                let _ = ack.send(&json!({ "ok": false, "error": { "code": "timeout", "message": e.to_string() } }));
            }
        }
    });
    socket.on("room-ack", |socket, mut event| async move {
        let Some(ack) = event.take_ack() else { return };
        let payload: Value = event.data().unwrap_or(Value::Null);
        let room = payload.get("room").and_then(Value::as_str).unwrap_or("").to_owned();
        let name = payload.get("event").and_then(Value::as_str).unwrap_or("request").to_owned();
        let data = payload.get("data").cloned().unwrap_or(Value::Null);
        let results = socket
            .namespace()
            .to(room)
            .emit_with_ack(&name, &data, timeout_of(&payload))
            .await
            .unwrap_or_default();
        let all_ok = results.iter().all(|(_, r)| r.is_ok());
        let replies: Vec<Value> = results
            .into_iter()
            .filter_map(|(_, r)| r.ok())
            .map(|reply| reply.args.into_iter().next().unwrap_or(Value::Null))
            .collect();
        let answer = if all_ok {
            json!({ "ok": true, "replies": replies })
        } else {
            json!({ "ok": false, "error": { "code": "timeout", "message": "not every socket acknowledged in time" }, "replies": replies })
        };
        let _ = ack.send(&answer);
    });
    socket.on("emit-except", |socket, mut event| async move {
        let ack = event.take_ack();
        let payload: Value = event.data().unwrap_or(Value::Null);
        let strings = |key: &str| -> Vec<String> {
            payload
                .get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let name = payload
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("message")
            .to_owned();
        let mut data = payload.get("data").cloned().unwrap_or(Value::Null);
        let attachments = extract_attachments(&mut data, event.attachments());
        let _ = socket
            .namespace()
            .all()
            .to_rooms(strings("rooms"))
            .except_rooms(strings("except"))
            .emit_args(&name, vec![data], &attachments);
        if let Some(ack) = ack {
            let _ = ack.send(&json!({ "ok": true }));
        }
    });
    socket.on("burst", |socket, mut event| async move {
        let ack = event.take_ack();
        let payload: Value = event.data().unwrap_or(Value::Null);
        let n = payload
            .get("n")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(10_000);
        let name = payload
            .get("event")
            .and_then(Value::as_str)
            .unwrap_or("burst-item")
            .to_owned();
        for i in 0..n {
            if socket.emit(&name, &json!({ "i": i })).is_err() {
                return;
            }
        }
        if let Some(ack) = ack {
            let _ = ack.send(&json!({ "ok": true }));
        }
    });
    socket.on("disconnect-me", |socket, _event| async move {
        socket.disconnect();
    });
    socket.on("my-rooms", |socket, mut event| async move {
        if let Some(ack) = event.take_ack() {
            let rooms = sorted_strings(socket.rooms().iter().map(|r| r.to_string()));
            let _ = ack.send(&json!({ "ok": true, "rooms": rooms }));
        }
    });
    socket.on("room-sockets", |socket, mut event| async move {
        let Some(ack) = event.take_ack() else { return };
        let payload: Value = event.data().unwrap_or(Value::Null);
        let room = payload
            .get("room")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let sids = sorted_strings(
            socket
                .namespace()
                .sockets_in(room)
                .iter()
                .map(|s| s.to_string()),
        );
        let _ = ack.send(&json!({ "ok": true, "sids": sids }));
    });
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs a client script to completion (bounded) and panics with its output unless it passed:
/// exit 0 and its summary line with at least the checks it declares ([`scenario`]).
pub async fn run_script(program: &str, script: PathBuf, url: &str, envs: &[(&str, &str)]) {
    assert!(
        script.exists(),
        "missing client script {}",
        script.display()
    );
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(&script)
        .env("TIDINGS_URL", url)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {program}: {e} (run scripts/test to install the client dependencies)")
    });
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within 90 s", script.display()))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let what = format!("{} {envs:?}", script.file_name().unwrap().to_string_lossy());
    scenario::assert_passed(&what, output.status, &stdout, &stderr);
}

pub fn node() -> String {
    std::env::var("TIDINGS_NODE").unwrap_or_else(|_| "node".to_owned())
}

pub fn python() -> String {
    if let Ok(p) = std::env::var("TIDINGS_PYTHON") {
        return p;
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        venv.to_string_lossy().into_owned()
    } else {
        "python3".to_owned()
    }
}

pub async fn run_js(name: &str, url: &str, transport: &str) {
    let script = repo_root().join("tests/clients/js").join(name);
    run_script(&node(), script, url, &[("TRANSPORT", transport)]).await;
}

pub async fn run_py(name: &str, url: &str, transport: &str) {
    let script = repo_root().join("tests/clients/py").join(name);
    run_script(&python(), script, url, &[("TRANSPORT", transport)]).await;
}
