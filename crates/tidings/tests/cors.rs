//! A browser page on another origin, against `tidings serve` on its default settings: its
//! long-polling requests get their answers without the CORS allow header (the browser then
//! reports only `xhr poll error`), and the server says why in its log — once per origin, at
//! `info`, naming `--cors-origin`. Same-origin requests (a page behind the same proxy) and
//! allowed origins are not logged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::within;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// A polling handshake as a browser's XHR sends it; the answer's head, lowercased.
async fn poll_from(host: &str, origin: &str, method: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "{method} /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nhost: {host}\r\norigin: \
         {origin}\r\naccess-control-request-method: GET\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within(10, "polling answer", stream.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    answer.split("\r\n\r\n").next().unwrap().to_owned()
}

/// Runs `tidings serve` with `args`, sends `requests` (origin, method), stops the server with
/// SIGTERM and returns each answer's head and the server's whole log.
async fn serve_and_log(args: &[&str], requests: &[(&str, &str)]) -> (Vec<String>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--port", "0", "--store", "memory"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within(20, "listening line", stdout.next_line())
        .await
        .unwrap()
        .expect("tidings serve exited before listening");
    let host = line
        .strip_prefix("listening on http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        BufReader::new(stderr)
            .read_to_string(&mut text)
            .await
            .unwrap();
        text
    });
    let mut heads = Vec::new();
    for (origin, method) in requests {
        let origin = origin.replace("{self}", &format!("http://{host}"));
        heads.push(poll_from(&host, &origin, method).await);
    }
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    within(20, "the server exits", child.wait()).await.unwrap();
    // The log ends when the process has exited: every line is in.
    (heads, within(10, "the log", log).await.unwrap())
}

fn refusals<'a>(log: &'a str, origin: &str) -> Vec<&'a str> {
    let needle = format!("refused a cross-origin request from {origin}:");
    log.lines().filter(|l| l.contains(&needle)).collect()
}

#[tokio::test]
async fn a_refused_origin_is_logged_once_with_the_flag_that_allows_it() {
    let requests = [
        ("http://app.example", "GET"),
        ("http://app.example", "GET"),
        ("http://app.example", "OPTIONS"),
        ("http://other.example:8080", "GET"),
        // The page and the server on one origin: no CORS needed, nothing to log.
        ("{self}", "GET"),
    ];
    let (heads, log) = serve_and_log(&[], &requests).await;
    for head in &heads[..4] {
        assert!(
            !head.contains("access-control-allow-origin"),
            "refused, yet allowed: {head}"
        );
    }
    let lines = refusals(&log, "http://app.example");
    assert_eq!(lines.len(), 1, "once per origin:\n{log}");
    assert!(lines[0].contains("INFO"), "{}", lines[0]);
    assert!(
        lines[0].contains("--cors-origin http://app.example"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("xhr poll error"), "{}", lines[0]);
    assert_eq!(
        refusals(&log, "http://other.example:8080").len(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("refused a cross-origin request").count(),
        2,
        "the same-origin request is not logged:\n{log}"
    );

    // Allowed with the flag: the allow header, and nothing logged.
    let (heads, log) = serve_and_log(
        &["--cors-origin", "http://app.example"],
        &[("http://app.example", "GET")],
    )
    .await;
    assert!(
        heads[0].contains("access-control-allow-origin: http://app.example"),
        "{}",
        heads[0]
    );
    assert!(!log.contains("refused a cross-origin request"), "{log}");
}
