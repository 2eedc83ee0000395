//! TLS of `tidings serve` (`--tls-cert` / `--tls-key`, `TIDINGS_TLS_…`, `[tls]`) against the
//! real binary: a CA and a server certificate made here with rcgen; socket.io-client
//! (tests/clients/js/tls.mjs) over wss:// and https:// long-polling and python-socketio
//! (tests/clients/py/tls.py), both trusting the CA (certificates verified, not skipped);
//! tidings-client over wss and a SIGTERM while connected; the HTTP API over https; the CLI's
//! `publish`, `topics` and `listen` over https/wss with `--ca-file` and `--token`; plain HTTP and garbage on the TLS port; stalled and failed handshakes
//! under a connection limit; the certificate reloaded on SIGHUP; start-up errors and
//! `--print-config`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use tidings_client::{Client, ClientOptions, CloseReason, ConnectionState};
use tidings_server::rustls;
use tidings_server::rustls::pki_types::pem::PemObject;
use tidings_server::rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tidings test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf.signed_by(&key, &issuer).unwrap();

        let pki = Pki {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            dir,
        };
        std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
        std::fs::write(&pki.cert, cert.pem()).unwrap();
        std::fs::write(&pki.key, key.serialize_pem()).unwrap();
        pki
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// A TLS client configuration that trusts the test CA only.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Arc::new(config)
    }

    fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.client_config())
    }
}

async fn tls_server(pki: &Pki, config: &str, extra: &[&str]) -> Serve {
    let mut args: Vec<&str> = Vec::new();
    let tls = pki.args();
    if config.is_empty() {
        args.extend(tls.iter().map(String::as_str));
    }
    args.extend_from_slice(extra);
    let server = serve(config, &args, &[]).await;
    assert!(server.url.starts_with("https://"), "{}", server.url);
    server
}

fn host_of(server: &Serve) -> String {
    server.url.strip_prefix("https://").unwrap().to_owned()
}

/// A TLS connection to `host` (certificate checked against the test CA, name `127.0.0.1`).
async fn tls_connect(pki: &Pki, host: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(host).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    within(10, "tls handshake", pki.connector().connect(name, tcp))
        .await
        .unwrap()
}

/// One `connection: close` request over TLS; the whole answer as text.
async fn https_raw(pki: &Pki, host: &str, request: &[u8]) -> String {
    let mut stream = tls_connect(pki, host).await;
    stream.write_all(request).await.unwrap();
    read_all(&mut stream).await
}

/// Reads until the peer closes (or the connection fails): what arrived, as text.
async fn read_all<S: AsyncReadExt + Unpin>(stream: &mut S) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    within(10, "answer and close", async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

const GET_TOPICS: &[u8] = b"GET /v1/topics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";

/// An HTTP/1.1 client on one kept-alive TLS connection.
struct Https {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Https {
    async fn connect(pki: &Pki, host: &str) -> Https {
        let stream = tls_connect(pki, host).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Https { sender }
    }

    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let res = within(10, path, self.sender.send_request(req))
            .await
            .unwrap();
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn socket_io_client_over_wss_and_https_polling() {
    let pki = Pki::new();
    // The certificate and key from the environment this time.
    let server = serve(
        "",
        &[],
        &[
            ("TIDINGS_TLS_CERT", pki.cert.to_str().unwrap()),
            ("TIDINGS_TLS_KEY", pki.key.to_str().unwrap()),
        ],
    )
    .await;
    assert!(server.url.starts_with("https://"), "{}", server.url);
    for transport in ["websocket", "polling", "upgrade"] {
        run_client(
            "js/tls.mjs",
            &server.url,
            &[
                ("TRANSPORT", transport),
                ("TIDINGS_CA", pki.ca.to_str().unwrap()),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn python_socketio_over_https_and_wss() {
    let pki = Pki::new();
    let server = tls_server(&pki, "", &[]).await;
    for transport in ["polling", "websocket"] {
        run_client(
            "py/tls.py",
            &server.url,
            &[
                ("TRANSPORT", transport),
                ("TIDINGS_CA", pki.ca.to_str().unwrap()),
            ],
        )
        .await;
    }
}

async fn rust_client(pki: &Pki, url: &str) -> Client {
    let options = ClientOptions::builder(url)
        .tls(pki.client_config())
        .reconnect(false)
        .build()
        .unwrap();
    within(10, "connect over wss", Client::connect(options))
        .await
        .unwrap()
}

#[tokio::test]
async fn rust_client_over_wss_and_graceful_shutdown() {
    let pki = Pki::new();
    let mut server = tls_server(&pki, "", &[]).await;
    let (a, b) = (
        rust_client(&pki, &server.url).await,
        rust_client(&pki, &server.url).await,
    );
    assert!(a.options().websocket_url().starts_with("wss://"));
    let ack = Duration::from_secs(5);
    for c in [&a, &b] {
        let reply = c.emit_with_ack("join", &json!({ "room": "r" }), ack).await;
        assert_eq!(reply.unwrap(), [json!({ "ok": true })]);
    }
    let mut news = b.on("news");
    let reply = a
        .emit_with_ack(
            "broadcast",
            &json!({ "room": "r", "event": "news", "data": { "over": "wss" } }),
            ack,
        )
        .await;
    assert_eq!(reply.unwrap(), [json!({ "ok": true, "recipients": 1 })]);
    let got = within(5, "news over wss", news.recv()).await.unwrap();
    assert_eq!(got.args, [json!({ "over": "wss" })]);

    // SIGTERM: the TLS connections are closed the same way, and the process exits 0.
    let mut state = a.watch_state();
    let pid = server.child.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let closed = within(
        10,
        "client closed by the shutdown",
        state.wait_for(|s| *s != ConnectionState::Connected),
    )
    .await
    .unwrap()
    .clone();
    assert_eq!(
        closed,
        ConnectionState::Closed(CloseReason::ConnectionLost),
        "the client (reconnect off) must be closed by the server going away"
    );
    let status = within(15, "tidings serve exit", server.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn http_api_over_https() {
    let pki = Pki::new();
    // The certificate and key from the config file's [tls] section.
    let config = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        pki.cert.display().to_string(),
        pki.key.display().to_string()
    );
    let server = tls_server(&pki, &config, &[]).await;
    let mut api = Https::connect(&pki, &host_of(&server)).await;
    let (status, body) = api
        .call(
            "POST",
            "/v1/topics/orders/messages",
            Some(json!({ "event": "order", "data": { "n": 1 } })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["offset"], json!(1), "{body}");
    let (status, body) = api.call("GET", "/v1/topics/orders/messages", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"][0]["data"], json!({ "n": 1 }), "{body}");
    // The Engine.IO endpoint on the same kept-alive connection.
    let (status, _) = api
        .call("GET", "/socket.io/?EIO=4&transport=polling", None)
        .await;
    assert_eq!(status, 200);
}

/// Runs a client command of the CLI (`publish`, `topics`, `listen`) with `envs`.
async fn cli(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .env_remove("TIDINGS_URL")
        .env_remove("TIDINGS_TOKEN")
        .env_remove("TIDINGS_CA_FILE")
        .env_remove("TIDINGS_CLIENT_ID")
        .env("RUST_LOG", "error")
        .envs(envs.iter().copied())
        .kill_on_drop(true)
        .output();
    within(20, "tidings client command", output).await.unwrap()
}

fn out(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_commands_over_https_with_a_token() {
    let pki = Pki::new();
    let server = tls_server(&pki, "", &["--jwt-secret", SECRET]).await;
    let url = server.url.clone();
    let ca = path(&pki.ca).to_owned();
    let alice = token(&claims(
        "alice",
        json!({ "publish": ["orders"], "subscribe": ["orders"] }),
    ));

    let publish = ["publish", "orders", "order", r#"{"n":1}"#, "--url", &url];
    let output = cli(
        &[&publish[..], &["--ca-file", &ca, "--token", &alice]].concat(),
        &[],
    )
    .await;
    let (stdout, stderr) = out(&output);
    assert!(output.status.success(), "{stderr}");
    let answer: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["offset"], json!(1), "{stdout}");

    // The same from the environment.
    let output = cli(
        &publish,
        &[("TIDINGS_CA_FILE", &ca), ("TIDINGS_TOKEN", &alice)],
    )
    .await;
    assert!(output.status.success(), "{}", out(&output).1);

    // No token: the server's 401, said plainly.
    let output = cli(&[&publish[..], &["--ca-file", &ca]].concat(), &[]).await;
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("401 unauthorized"), "{stderr}");

    // A token without the permission: 403.
    let bob = token(&claims("bob", json!({ "publish": ["other"] })));
    let output = cli(
        &[&publish[..], &["--ca-file", &ca, "--token", &bob]].concat(),
        &[],
    )
    .await;
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("403 forbidden"), "{stderr}");

    // Without --ca-file the system's roots do not know the test CA: the certificate is
    // refused, and nothing is sent.
    let output = cli(&[&publish[..], &["--token", &alice]].concat(), &[]).await;
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("TLS handshake") || stderr.contains("no system root certificates"),
        "{stderr}"
    );

    // A CA file that holds no certificate.
    let empty = pki.file("empty.pem", "");
    let output = cli(
        &[
            &publish[..],
            &["--ca-file", path(&empty), "--token", &alice],
        ]
        .concat(),
        &[],
    )
    .await;
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("no certificate in the file"), "{stderr}");

    let output = cli(
        &[
            "topics",
            "--json",
            "--url",
            &url,
            "--ca-file",
            &ca,
            "--token",
            &alice,
        ],
        &[],
    )
    .await;
    let (stdout, stderr) = out(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains(r#""orders""#), "{stdout}");

    // `listen` over wss with the token: the identity is the token's, both messages arrive.
    let output = cli(
        &[
            "listen",
            "orders",
            "--from",
            "earliest",
            "--count",
            "2",
            "--url",
            &url,
            "--ca-file",
            &ca,
            "--token",
            &alice,
        ],
        &[],
    )
    .await;
    let (stdout, stderr) = out(&output);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["data"], json!({ "n": 1 }), "{stdout}");
    assert_eq!(lines[1]["offset"], json!(2), "{stdout}");
    assert!(stderr.contains("as the token's subject"), "{stderr}");

    // A forged token is refused at connect.
    let forged = hs256(&claims("alice", Value::Null), "not-the-secret");
    let output = cli(
        &[
            "listen",
            "orders",
            "--count",
            "1",
            "--url",
            &url,
            "--ca-file",
            &ca,
            "--token",
            &forged,
        ],
        &[],
    )
    .await;
    let (_, stderr) = out(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("refused the connection: invalid token"),
        "{stderr}"
    );
    assert!(!stderr.contains("is `tidings serve` running"), "{stderr}");
}

/// The certificate the server presents to a client that trusts `pki`'s CA (DER).
async fn presented_cert(pki: &Pki, host: &str) -> Vec<u8> {
    let stream = tls_connect(pki, host).await;
    let (_, conn) = stream.get_ref();
    conn.peer_certificates().unwrap()[0].to_vec()
}

/// The DER of the first certificate in a PEM file.
fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn the_certificate_is_reloaded_on_sighup() {
    let old = Pki::new();
    let new = Pki::new();
    // The server reads its files from `old`'s paths; the renewal overwrites them.
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"));
    command
        .args([
            "serve",
            "--port",
            "0",
            "--store",
            "memory",
            "--log-format",
            "json",
        ])
        .args(old.args())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within(20, "listening line", stdout.next_line())
        .await
        .unwrap()
        .expect("tidings serve exited before listening");
    let host = line
        .strip_prefix("listening on https://")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let pid = child.id().unwrap().to_string();
    let hangup = || async {
        let status = tokio::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    };
    // Reads the server's log until a line with `needle`.
    async fn wait_for_log(
        log: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
        needle: &str,
    ) -> String {
        within(10, needle, async {
            loop {
                let line = log.next_line().await.unwrap().expect("the server exited");
                if line.contains(needle) {
                    return line;
                }
            }
        })
        .await
    }

    assert_eq!(presented_cert(&old, &host).await, der_of(&old.cert));
    // A connection opened before the renewal, kept alive across it.
    let mut before = Https::connect(&old, &host).await;
    assert_eq!(before.call("GET", "/v1/topics", None).await.0, 200);

    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    hangup().await;
    wait_for_log(&mut log, "certificate reloaded").await;
    assert_eq!(presented_cert(&new, &host).await, der_of(&new.cert));
    // A client that trusts only the old CA now refuses the server.
    let tcp = TcpStream::connect(&host).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let refused = within(10, "handshake", old.connector().connect(name, tcp)).await;
    assert!(refused.is_err(), "the old CA still verifies the server");
    // The connection from before goes on with the certificate it started with.
    assert_eq!(before.call("GET", "/v1/topics", None).await.0, 200);

    // A renewal caught half-way (a key that is not the certificate's): refused, logged, and
    // the certificate in place stays.
    let other = Pki::new();
    std::fs::copy(&other.key, &old.key).unwrap();
    hangup().await;
    let line = wait_for_log(&mut log, "certificate reload failed").await;
    assert!(line.contains("does not match the certificate"), "{line}");
    assert!(
        !line.contains("PRIVATE KEY"),
        "key material in the log: {line}"
    );
    assert_eq!(presented_cert(&new, &host).await, der_of(&new.cert));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server exited on a failed reload"
    );
}

#[tokio::test]
async fn plain_http_and_garbage_on_the_tls_port_are_refused_while_others_keep_working() {
    let pki = Pki::new();
    let mut server = tls_server(&pki, "", &[]).await;
    let host = host_of(&server);
    let mut bystander = Https::connect(&pki, &host).await;
    assert_eq!(bystander.call("GET", "/v1/topics", None).await.0, 200);

    // Plain HTTP: a plain-text 400 that says what to do, then the connection is closed.
    let mut plain = TcpStream::connect(&host).await.unwrap();
    plain.write_all(GET_TOPICS).await.unwrap();
    let answer = read_all(&mut plain).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains(r#""code":"bad_request""#), "{answer}");
    assert!(answer.contains("use https://"), "{answer}");

    // Bytes that are neither HTTP nor TLS, and a TLS record that is not a valid ClientHello:
    // closed.
    for garbage in [
        &b"\x00\x01\x02\x03 not tls"[..],
        b"\x16\x03\x01\x00\x04\x01\x02\x03\x04",
    ] {
        let mut stream = TcpStream::connect(&host).await.unwrap();
        stream.write_all(garbage).await.unwrap();
        let answer = read_all(&mut stream).await;
        assert!(!answer.starts_with("HTTP"), "{garbage:?}: {answer}");
    }

    // A client that does not trust the certificate fails its handshake; nothing else does.
    let untrusted = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let tcp = TcpStream::connect(&host).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let refused = within(
        10,
        "untrusted handshake",
        TlsConnector::from(Arc::new(untrusted)).connect(name, tcp),
    )
    .await;
    assert!(refused.is_err());

    assert_eq!(bystander.call("GET", "/v1/topics", None).await.0, 200);
    let fresh = https_raw(&pki, &host, GET_TOPICS).await;
    assert!(fresh.starts_with("HTTP/1.1 200"), "{fresh}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
}

/// Polls (bounded: 100 tries, 20 ms apart) until a new TLS connection is served again: the
/// slot is released just after the closed connection's socket.
async fn until_served_again(pki: &Pki, host: &str) {
    for _ in 0..100 {
        if https_raw(pki, host, GET_TOPICS)
            .await
            .starts_with("HTTP/1.1 200")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no connection served again within 2 s of one closing");
}

#[tokio::test]
async fn stalled_and_failed_handshakes_do_not_keep_their_connection_slot() {
    let pki = Pki::new();
    let mut server = tls_server(
        &pki,
        "",
        &["--max-connections", "1", "--header-timeout-ms", "3000"],
    )
    .await;
    let host = host_of(&server);

    // A connection that never starts its handshake holds the only slot: another gets the
    // usual 503 too_many_connections, over TLS.
    let mut silent = TcpStream::connect(&host).await.unwrap();
    let refused = https_raw(&pki, &host, GET_TOPICS).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.contains(r#""code":"too_many_connections""#),
        "{refused}"
    );
    // Until the handshake timeout closes it.
    let started = tokio::time::Instant::now();
    assert_eq!(read_all(&mut silent).await, "");
    assert!(started.elapsed() >= Duration::from_millis(2000));
    until_served_again(&pki, &host).await;

    // Half a ClientHello, then nothing: closed at the timeout too.
    let mut half = TcpStream::connect(&host).await.unwrap();
    half.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01")
        .await
        .unwrap();
    assert_eq!(read_all(&mut half).await, "");
    until_served_again(&pki, &host).await;

    // A failed handshake (no shared trust) is closed at once and frees the slot.
    let untrusted = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let tcp = TcpStream::connect(&host).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let failed = TlsConnector::from(Arc::new(untrusted))
        .connect(name, tcp)
        .await;
    assert!(failed.is_err());
    until_served_again(&pki, &host).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited"
    );
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--port", "0", "--store", "memory"])
        .args(args)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn refused_with(args: &[&str], message: &str) {
    let output = run(args, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} started");
    assert!(
        stderr.contains(message),
        "{args:?}: expected {message:?} in:\n{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening on"),
        "{args:?}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn start_up_errors_are_clear() {
    let pki = Pki::new();
    let (cert, key) = (path(&pki.cert), path(&pki.key));
    refused_with(&["--tls-cert", cert], "--tls-cert needs --tls-key");
    refused_with(&["--tls-key", key], "--tls-key needs --tls-cert");
    let missing = pki.dir.path().join("missing.pem");
    refused_with(
        &["--tls-cert", path(&missing), "--tls-key", key],
        "cannot read the TLS certificate",
    );
    refused_with(
        &["--tls-cert", cert, "--tls-key", path(&missing)],
        "cannot read the TLS private key",
    );
    // The files swapped.
    refused_with(
        &["--tls-cert", key, "--tls-key", cert],
        "no certificate found",
    );
    refused_with(
        &["--tls-cert", cert, "--tls-key", cert],
        "no private key found",
    );
    let broken = pki.file(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    refused_with(
        &["--tls-cert", path(&broken), "--tls-key", key],
        "invalid certificate",
    );
    let garbage_key = pki.file(
        "garbage-key.pem",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    refused_with(
        &["--tls-cert", cert, "--tls-key", path(&garbage_key)],
        "invalid private key",
    );
    let other = pki.file(
        "other-key.pem",
        &KeyPair::generate().unwrap().serialize_pem(),
    );
    refused_with(
        &["--tls-cert", cert, "--tls-key", path(&other)],
        "the private key does not match the certificate",
    );
    // Half in the file, half in a flag: still needs both.
    let config = pki.file("half.toml", &format!("[tls]\ncert = {cert:?}\n"));
    refused_with(&["--config", path(&config)], "--tls-cert needs --tls-key");
    let config = pki.file("typo.toml", &format!("[tls]\ncertificate = {cert:?}\n"));
    refused_with(&["--config", path(&config)], "invalid config file");
}

#[test]
fn print_config_shows_tls_without_key_material() {
    let pki = Pki::new();
    let (cert, key) = (path(&pki.cert), path(&pki.key));
    let off = run(&["--print-config"], &[]);
    assert!(off.status.success());
    assert!(String::from_utf8_lossy(&off.stdout).contains("tls: off"));

    let config = pki.file("tls.toml", &format!("[tls]\ncert = {cert:?}\n"));
    let on = run(
        &["--print-config", "--config", path(&config)],
        &[("TIDINGS_TLS_KEY", key)],
    );
    let stdout = String::from_utf8_lossy(&on.stdout);
    assert!(
        on.status.success(),
        "{}",
        String::from_utf8_lossy(&on.stderr)
    );
    assert!(
        stdout.contains(&format!("tls: on (cert {cert}, key {key})")),
        "{stdout}"
    );
    let key_pem = std::fs::read_to_string(&pki.key).unwrap();
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");
    for chunk in body.as_bytes().chunks(16) {
        assert!(
            !stdout.contains(std::str::from_utf8(chunk).unwrap()),
            "{stdout}"
        );
    }
}
