//! Shared by the integration tests (`access.rs`, `hostile.rs`, `limits.rs`, `cluster.rs`,
//! `recovery.rs`, `redis.rs`, …): the real `tidings serve` on an ephemeral port, the npm / PyPI client scenarios, plain HTTP/1.1 calls and
//! tokens minted here with the test keys of `tidings-server/tests/testdata`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// What counts as a passed client scenario (shared with tidings-server's tests).
#[path = "../../../tidings-server/tests/support/scenario.rs"]
pub mod scenario;

/// A private redis-server on a unix socket (shared with tidings-store-redis's tests).
#[path = "../../../tidings-store-redis/tests/common/server.rs"]
pub mod server;

/// The HS256 secret of the servers these tests start.
pub const SECRET: &str = "tidings-test-secret-0123456789abcdef";

/// Fails the test when `fut` takes longer than `secs`.
pub async fn within<F: std::future::Future>(secs: u64, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {secs} s"))
}

pub struct Serve {
    pub child: Child,
    /// The origin, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Serve {
    /// `127.0.0.1:port`.
    pub fn host(&self) -> &str {
        self.url.strip_prefix("http://").unwrap()
    }
}

/// `tidings serve --port 0 --store memory [--config FILE] ARGS…`, waiting for its address.
pub async fn serve(config: &str, args: &[&str], envs: &[(&str, &str)]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidings"));
    command.args(["serve", "--port", "0", "--store", "memory"]);
    if !config.is_empty() {
        let file = dir.path().join("tidings.toml");
        std::fs::write(&file, config).unwrap();
        command.arg("--config").arg(file);
    }
    command
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("warn".into()),
        )
        .envs(envs.iter().copied());
    let (child, url) = spawn_serve(&mut command).await;
    Serve { child, url, dir }
}

/// Spawns `command` (a `tidings serve …` with its flags) and waits for its `listening on`
/// line: the child, killed on drop, and the origin it serves (`http://127.0.0.1:41234`).
pub async fn spawn_serve(command: &mut Command) -> (Child, String) {
    try_spawn_serve(command)
        .await
        .unwrap_or_else(|stderr| panic!("tidings serve exited before listening:\n{stderr}"))
}

/// [`spawn_serve`], or `Err` with what the process wrote to stderr when it exited before
/// listening (e.g. its port was taken). Its stderr goes to the test's all along, copied by a
/// thread of its own so that a busy test can never leave the server blocked on a full pipe.
pub async fn try_spawn_serve(command: &mut Command) -> Result<(Child, String), String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap().into_owned_fd().unwrap();
    let copier = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut pipe = std::fs::File::from(stderr);
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            let _ = std::io::stderr().write_all(&buf[..n]);
            if kept.len() < 64 * 1024 {
                kept.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    let first = within(20, "tidings serve reporting its address", lines.next_line())
        .await
        .unwrap();
    let Some(line) = first else {
        // It exited: its stderr ends now.
        let text = tokio::task::spawn_blocking(move || copier.join().unwrap_or_default());
        return Err(within(10, "tidings serve's stderr", text).await.unwrap());
    };
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    Ok((child, url.split('/').take(3).collect::<Vec<_>>().join("/")))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn testdata(file: &str) -> PathBuf {
    repo_root()
        .join("crates/tidings-server/tests/testdata")
        .join(file)
}

pub fn python() -> String {
    std::env::var("TIDINGS_PYTHON").unwrap_or_else(|_| {
        let venv = repo_root().join(".venv/bin/python");
        if venv.exists() {
            venv.to_string_lossy().into_owned()
        } else {
            "python3".to_owned()
        }
    })
}

pub fn node() -> String {
    std::env::var("TIDINGS_NODE").unwrap_or_else(|_| "node".to_owned())
}

/// The interpreter of a client scenario: python for `py/…`, node for `js/…`.
fn interpreter(script: &str) -> String {
    if script.ends_with(".py") {
        python()
    } else {
        node()
    }
}

/// `script` with the environment it runs with, for messages (tokens make long values: only
/// the start of each is shown).
fn described(script: &str, envs: &[(&str, &str)]) -> String {
    let shown: Vec<String> = envs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.chars().take(24).collect::<String>()))
        .collect();
    format!("{script} {shown:?}")
}

/// Runs a client scenario (`js/…` with node, `py/…` with python) against `url`; fails the test
/// with the script's output unless it passes within 90 s (exit 0 and its summary line with at
/// least the checks it declares: [`scenario`]). Returns its stdout.
pub async fn run_client(script: &str, url: &str, envs: &[(&str, &str)]) -> String {
    let output = Command::new(interpreter(script))
        .arg(repo_root().join("tests/clients").join(script))
        .env("TIDINGS_URL", url)
        .envs(envs.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = within(90, script, output).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    scenario::assert_passed(
        &described(script, envs),
        output.status,
        &stdout,
        &String::from_utf8_lossy(&output.stderr),
    );
    stdout
}

/// A client scenario running alongside the test, which follows its cues on stdout (a line
/// such as `KILL` asks the test to act) and then requires it to pass like [`run_client`].
/// Its stderr goes to the test's; it is killed on drop.
pub struct Scenario {
    what: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far.
    stdout: String,
}

impl Scenario {
    /// Starts `script` (`js/…` or `py/…`) with `TIDINGS_URL=url` and `envs`.
    pub fn start(script: &str, url: &str, envs: &[(&str, &str)]) -> Scenario {
        let mut child = Command::new(interpreter(script))
            .arg(repo_root().join("tests/clients").join(script))
            .env("TIDINGS_URL", url)
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {script}: {e}"));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Scenario {
            what: described(script, envs),
            child,
            lines,
            stdout: String::new(),
        }
    }

    /// Waits for the scenario to print the line `cue`; fails if it ends first or takes longer
    /// than `secs`.
    pub async fn cue(&mut self, cue: &str, secs: u64) {
        let what = format!("{}: the cue {cue}", self.what);
        let found = within(secs, &what, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.stdout.push_str(&line);
                self.stdout.push('\n');
                if line == cue {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            found,
            "{what}: the scenario ended first; stdout:\n{}",
            self.stdout
        );
    }

    /// Waits (at most `secs`) for the scenario to end and fails the test unless it passed.
    pub async fn passes(mut self, secs: u64) {
        let what = self.what.clone();
        let status = within(secs, &what, async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.stdout.push_str(&line);
                self.stdout.push('\n');
            }
            self.child.wait().await.unwrap()
        })
        .await;
        scenario::assert_passed(&what, status, &self.stdout, "(inherited: see above)");
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for an hour for `sub` with the `tidings` claim `perms` (none if null).
pub fn claims(sub: &str, perms: Value) -> Value {
    let mut c = json!({ "sub": sub, "exp": now() + 3600, "iat": now() });
    if !perms.is_null() {
        c["tidings"] = perms;
    }
    c
}

/// An HS256 token with `secret`.
pub fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An HS256 token with the servers' [`SECRET`].
pub fn token(claims: &Value) -> String {
    hs256(claims, SECRET)
}

/// An RS256 token signed with the test RSA key.
pub fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(testdata("rsa-private.pem")).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// An ES256 token signed with the test P-256 key.
pub fn es256(claims: &Value) -> String {
    let pem = std::fs::read(testdata("ec-private.pem")).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// An unsigned token (`alg: none`, empty signature), as an attacker writes it by hand.
pub fn alg_none(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// The HS/RS confusion attack: HS256 "signed" with the bytes of the server's RSA public key.
pub fn hs_with_public_key(claims: &Value) -> String {
    let public = std::fs::read_to_string(testdata("rsa-public.pem")).unwrap();
    hs256(claims, &public)
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// One request to the server, with an optional bearer token and a raw body.
pub async fn http(
    url: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> Answer {
    let host = url.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-type", "application/json");
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    let res = within(10, path, sender.send_request(req)).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// Two well-behaved Rust clients (tidings-client, WebSocket) in one room, connected for the
/// whole of a test: [`Bystanders::still_served`] proves that the server still serves them.
pub struct Bystanders {
    a: tidings_client::Client,
    b: tidings_client::Client,
    inbox: tidings_client::EventStream,
    room: String,
    n: u64,
}

impl Bystanders {
    /// Connects both with `auth` (e.g. `{token}`; `{}` without a verifier) and joins a room.
    pub async fn connect(url: &str, auth: Value) -> Bystanders {
        let connect = |auth: Value| async move {
            let options = tidings_client::ClientOptions::builder(url)
                .auth(auth)
                .reconnect(false)
                .build()
                .unwrap();
            within(
                10,
                "bystander connect",
                tidings_client::Client::connect(options),
            )
            .await
            .unwrap()
        };
        let a = connect(auth.clone()).await;
        let b = connect(auth).await;
        let room = "bystanders".to_owned();
        for c in [&a, &b] {
            let ack = within(
                10,
                "bystander join",
                c.emit_with_ack("join", &json!({ "room": room }), Duration::from_secs(10)),
            )
            .await
            .unwrap();
            assert_eq!(ack, [json!({ "ok": true })]);
        }
        let inbox = b.on("chat");
        Bystanders {
            a,
            b,
            inbox,
            room,
            n: 0,
        }
    }

    /// One broadcast from a to b, acknowledged and received in order.
    pub async fn still_served(&mut self, case: &str) {
        self.n += 1;
        let ack = within(
            10,
            case,
            self.a.emit_with_ack(
                "broadcast",
                &json!({ "room": self.room, "event": "chat", "data": { "n": self.n } }),
                Duration::from_secs(10),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{case}: the bystander's broadcast failed: {e}"));
        assert_eq!(ack, [json!({ "ok": true, "recipients": 1 })], "{case}");
        let got = within(10, case, self.inbox.recv())
            .await
            .unwrap_or_else(|| panic!("{case}: the bystander's connection closed"));
        assert_eq!(
            got.args,
            [json!({ "n": self.n })],
            "{case}: bystander got the wrong message"
        );
        for c in [&self.a, &self.b] {
            assert_eq!(
                c.state(),
                tidings_client::ConnectionState::Connected,
                "{case}: a bystander is not connected"
            );
        }
    }
}

/// A port picked by the kernel, then let go for a process of the test to bind (another process
/// could take it meanwhile: that process then fails with the port in its error).
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
