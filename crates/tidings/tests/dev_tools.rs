//! The development tools of the binary, as docs/SECURITY.md shows them: `tidings dev-cert`
//! (a CA and a server certificate that the CLI, socket.io-client in Node and python-socketio
//! all accept, verified — Python also with Python 3.13's strict X.509 checks), `tidings token`
//! (a token the server accepts, with the permissions asked for), and what the CLI says about a
//! certificate it refuses: a CA certificate served as the server's own (what `openssl req
//! -x509` makes by default) is named as such, and a TLS error never asks whether `tidings
//! serve` is running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;

/// Runs the binary with `args`, without the caller's `TIDINGS_…` settings.
async fn tidings(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidings"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TIDINGS_") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(args)
        .env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .envs(envs.iter().copied())
        .kill_on_drop(true)
        .output();
    within(20, "tidings command", output).await.unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The port of `https://127.0.0.1:PORT`.
fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap()
}

/// `tidings dev-cert --dir DIR`: (ca.pem, cert.pem, key.pem).
async fn dev_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let output = tidings(&["dev-cert", "--dir", s(dir)], &[]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("tidings serve --tls-cert"), "{stdout}");
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

async fn publish(url: &str, extra: &[&str]) -> Output {
    let args = [
        &["publish", "orders", "order", r#"{"n":1}"#, "--url", url],
        extra,
    ]
    .concat();
    tidings(&args, &[]).await
}

#[tokio::test]
async fn dev_cert_is_trusted_by_the_cli_node_and_python() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let (ca, cert, key) = dev_cert(&dir).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");
    }

    // Again: nothing is replaced without --force.
    let before = std::fs::read(&cert).unwrap();
    let output = tidings(&["dev-cert", "--dir", s(&dir)], &[]).await;
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("exists (--force replaces it)"),
        "{}",
        text(&output).1
    );
    assert_eq!(std::fs::read(&cert).unwrap(), before);

    let server = serve("", &["--tls-cert", s(&cert), "--tls-key", s(&key)], &[]).await;
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let localhost = format!("https://localhost:{}", port_of(&server.url));

    // The CLI (rustls), by address and by name.
    for url in [server.url.as_str(), localhost.as_str()] {
        let output = publish(url, &["--ca-file", s(&ca)]).await;
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{url}: {stderr}");
        assert!(stdout.contains(r#""offset""#), "{stdout}");
    }
    // Without the CA the certificate is refused: the CA really is what is trusted.
    let output = publish(&server.url, &[]).await;
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("TLS handshake"),
        "{}",
        text(&output).1
    );

    // socket.io-client in Node and python-socketio, over every transport, verifying.
    let ca = s(&ca);
    for transport in ["websocket", "polling"] {
        run_client(
            "js/tls.mjs",
            &server.url,
            &[("TRANSPORT", transport), ("TIDINGS_CA", ca)],
        )
        .await;
        run_client(
            "py/tls.py",
            &server.url,
            &[
                ("TRANSPORT", transport),
                ("TIDINGS_CA", ca),
                ("TIDINGS_X509_STRICT", "1"),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn a_refused_certificate_is_explained() {
    // What `openssl req -x509` makes by default: one self-signed certificate with CA:TRUE.
    let tmp = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let self_signed = params.self_signed(&key).unwrap();
    let (cert, key_file) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, self_signed.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let server = serve(
        "",
        &["--tls-cert", s(&cert), "--tls-key", s(&key_file)],
        &[],
    )
    .await;
    let url = server.url.as_str();

    let listen = |url: String, ca: PathBuf| async move {
        let args = ["listen", "orders", "--count", "1", "--url", &url];
        tidings(&[&args[..], &["--ca-file", s(&ca)]].concat(), &[]).await
    };
    for output in [
        publish(url, &["--ca-file", s(&cert)]).await,
        tidings(&["topics", "--url", url, "--ca-file", s(&cert)], &[]).await,
        listen(url.to_owned(), cert.clone()).await,
    ] {
        let (_, stderr) = text(&output);
        assert!(!output.status.success());
        assert!(
            stderr.contains("the server's certificate is a CA certificate"),
            "{stderr}"
        );
        assert!(stderr.contains("tidings dev-cert"), "{stderr}");
        assert!(
            stderr.contains("basicConstraints=critical,CA:FALSE"),
            "{stderr}"
        );
        assert!(!stderr.contains("tidings serve` running"), "{stderr}");
    }

    // A server certificate of one CA, the client trusting another: not signed by it.
    let (_, good_cert, good_key) = dev_cert(&tmp.path().join("served")).await;
    let (other_ca, _, _) = dev_cert(&tmp.path().join("other")).await;
    let good = serve(
        "",
        &["--tls-cert", s(&good_cert), "--tls-key", s(&good_key)],
        &[],
    )
    .await;
    for output in [
        publish(&good.url, &["--ca-file", s(&other_ca)]).await,
        listen(good.url.clone(), other_ca.clone()).await,
    ] {
        let (_, stderr) = text(&output);
        assert!(!output.status.success());
        assert!(
            stderr.contains("not signed by a certificate authority in the CA file"),
            "{stderr}"
        );
        assert!(!stderr.contains("tidings serve` running"), "{stderr}");
    }

    // http:// to the TLS port: the server's answer, and no "is it running?".
    let plain = good.url.replace("https://", "http://");
    let output = listen(plain, other_ca).await;
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("use https://"), "{stderr}");
    assert!(!stderr.contains("tidings serve` running"), "{stderr}");
}

#[tokio::test]
async fn a_minted_token_is_accepted_with_its_permissions() {
    let server = serve("", &["--jwt-secret", SECRET], &[]).await;
    let url = server.url.as_str();
    let output = tidings(
        &[
            "token",
            "alice",
            "--publish",
            "orders",
            "--subscribe",
            "orders",
            "--expires-in",
            "10m",
        ],
        &[("TIDINGS_JWT_SECRET", SECRET)],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let alice = stdout.trim().to_owned();
    assert_eq!(alice.split('.').count(), 3, "{stdout}");

    let output = publish(url, &["--token", &alice]).await;
    assert!(output.status.success(), "{}", text(&output).1);
    let output = tidings(
        &[
            "publish", "other", "x", "{}", "--url", url, "--token", &alice,
        ],
        &[],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("403 forbidden"),
        "{}",
        text(&output).1
    );
    let output = tidings(
        &[
            "listen", "orders", "--from", "earliest", "--count", "1", "--url", url, "--token",
            &alice,
        ],
        &[],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["data"]["n"], 1, "{stdout}");

    // The server's config file: its secret and audience.
    let config = format!("[access]\njwt_secret = \"{SECRET}\"\naudience = \"tidings-dev\"\n");
    let server = serve(&config, &[], &[]).await;
    let file = server.dir.path().join("tidings.toml");
    let output = tidings(
        &["token", "bob", "--publish", "orders", "--config", s(&file)],
        &[],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    let output = publish(&server.url, &["--token", stdout.trim()]).await;
    assert!(output.status.success(), "{}", text(&output).1);
    // The first token has no audience: this server refuses it.
    let output = publish(&server.url, &["--token", &alice]).await;
    assert!(!output.status.success());
    assert!(text(&output).1.contains("401"), "{}", text(&output).1);
}
