//! The README and docs/ as a newcomer follows them: every fenced `sh`, `js`, `python`, `rust`
//! and `toml` block of README.md and docs/*.md is taken from the Markdown itself (nothing is
//! copied here) and either run, or marked with the reason it cannot run on a test machine.
//!
//! A block says what to do with it in an HTML comment right above it (invisible on GitHub):
//!
//! ```text
//! <!-- docs-test
//! run: sh                      run it with bash -e in an empty directory, `tidings` on PATH
//! group: NAME                  blocks of a file with one group run in order, in one directory
//! ports: 3000 6379             each port in the text is replaced by a free one
//! serve: --store memory        a `tidings serve ARGS` runs first; TIDINGS_URL names it
//! expect: TEXT                 after the block, wait (≤ 30 s) until the output holds TEXT
//! cleanup: COMMAND             run when the group ends
//! -->
//! ```
//!
//! or `sample: NAME` (a client program this file runs, e.g. the chat samples against a
//! `--recovery` server), `config` (a `tidings serve` TOML file: `--print-config` accepts it),
//! `proxy: nginx|haproxy` (a load balancer's config for the nodes on ports 3001–3003: it runs
//! in front of three nodes on one Redis, with socket.io-client and python-socketio through it),
//! `same-as: PATH` (the block is that file of the repository, word for word) or
//! `skip: REASON`. Keys may also be separated by `;` on one line. Besides the port
//! substitution, one rewrite applies: `cargo run --release -p tidings --` is the binary under
//! test. Every process a block starts is killed with its process group when its group ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, node, python, repo_root, within};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// One fenced block and what its marker says.
#[derive(Debug, Clone)]
struct Block {
    file: String,
    line: usize,
    info: String,
    text: String,
    /// Marker keys in order (a key may repeat, e.g. `expect`).
    marker: Vec<(String, String)>,
}

impl Block {
    fn get(&self, key: &str) -> Option<&str> {
        self.marker
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.marker
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

const KEYS: &[&str] = &[
    "run", "group", "ports", "serve", "expect", "cleanup", "sample", "config", "same-as", "skip",
    "proxy",
];
/// Blocks of these languages must say what the test does with them.
const CHECKED: &[&str] = &["sh", "js", "python", "rust", "toml"];

fn parse_marker(comment: &str, at: &str) -> Vec<(String, String)> {
    let body = comment
        .trim()
        .strip_prefix("<!--")
        .and_then(|c| c.strip_suffix("-->"))
        .unwrap()
        .trim()
        .strip_prefix("docs-test")
        .unwrap();
    let body = body.strip_prefix(':').unwrap_or(body);
    // `;` separates keys only where a known key follows: a skip reason may hold one.
    let mut pieces: Vec<String> = Vec::new();
    for line in body.lines() {
        let mut line_pieces: Vec<String> = Vec::new();
        for piece in line.split(';') {
            let starts_key = piece
                .split_once(':')
                .is_some_and(|(k, _)| KEYS.contains(&k.trim()))
                || KEYS.contains(&piece.trim());
            match line_pieces.last_mut() {
                Some(last) if !starts_key => {
                    last.push(';');
                    last.push_str(piece);
                }
                _ => line_pieces.push(piece.to_owned()),
            }
        }
        pieces.extend(line_pieces);
    }
    let mut keys = Vec::new();
    for piece in &pieces {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let (key, value) = piece.split_once(':').unwrap_or((piece, ""));
        let key = key.trim().to_owned();
        assert!(
            KEYS.contains(&key.as_str()),
            "{at}: unknown docs-test key {key:?}"
        );
        keys.push((key, value.trim().to_owned()));
    }
    keys
}

/// Every fenced block of `file` (relative to the repository), with its marker.
fn blocks_of(file: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let mut end = i + 1;
        while end < lines.len() && !lines[end].starts_with("```") {
            end += 1;
        }
        assert!(
            end < lines.len(),
            "{file}:{}: unclosed code block",
            start + 1
        );
        // The marker: the comment that ends on the line above the fence.
        let mut marker = Vec::new();
        if start > 0 && lines[start - 1].trim_end().ends_with("-->") {
            let mut first = start - 1;
            while !lines[first].trim_start().starts_with("<!--") {
                first -= 1;
            }
            let comment = lines[first..start].join("\n");
            if comment.trim_start().starts_with("<!-- docs-test") {
                marker = parse_marker(&comment, &format!("{file}:{}", first + 1));
            }
        }
        blocks.push(Block {
            file: file.to_owned(),
            line: start + 1,
            info: info.trim().to_owned(),
            text: lines[start + 1..end].join("\n") + "\n",
            marker,
        });
        i = end + 1;
    }
    blocks
}

fn all_blocks() -> Vec<Block> {
    let mut files = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(repo_root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files.iter().flat_map(|f| blocks_of(f)).collect()
}

#[test]
fn every_block_says_how_it_is_tested() {
    let blocks = all_blocks();
    let mut unmarked = Vec::new();
    for block in &blocks {
        if CHECKED.contains(&block.info.as_str()) && block.marker.is_empty() {
            unmarked.push(block.at());
        }
        if block.get("run").is_some() {
            assert_eq!(block.info, "sh", "{}: only sh blocks run", block.at());
        }
    }
    assert!(
        unmarked.is_empty(),
        "blocks without a <!-- docs-test … --> marker: {unmarked:?}"
    );
    // The markers are found at all (a parser that found none would pass the above).
    assert!(blocks.iter().filter(|b| b.get("run").is_some()).count() >= 3);
}

/// The text with the documented rewrites: ports, and `cargo run … --` as the binary.
fn rewrite(text: &str, ports: &BTreeMap<String, String>) -> String {
    let mut text = text.replace("cargo run --release -p tidings --", "tidings");
    for (from, to) in ports {
        text = replace_number(&text, from, to);
    }
    text
}

/// Replaces `from` where it stands as a whole number (3000 in :3000 and 3000/, not in 30000).
fn replace_number(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + from.len()..].chars().next();
        out.push_str(&rest[..at]);
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// The output of every process of a group, as it arrives.
#[derive(Clone)]
struct Output(Arc<tokio::sync::watch::Sender<String>>);

impl Default for Output {
    fn default() -> Output {
        Output(Arc::new(tokio::sync::watch::Sender::new(String::new())))
    }
}

impl Output {
    fn collect(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let output = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output.0.send_modify(|text| {
                    text.push_str(&line);
                    text.push('\n');
                });
            }
        });
    }

    fn text(&self) -> String {
        self.0.borrow().clone()
    }

    /// Waits (at most 30 s) until the output holds `needle`.
    async fn holds(&self, needle: &str) -> bool {
        let mut changes = self.0.subscribe();
        let found = changes.wait_for(|text| text.contains(needle));
        matches!(
            tokio::time::timeout(Duration::from_secs(30), found).await,
            Ok(Ok(_))
        )
    }

    /// Waits (at most 30 s) until `needle` occurs `times` times, or the test fails with `what`.
    async fn wait_for_count(&self, needle: &str, times: usize, what: &str) {
        let mut changes = self.0.subscribe();
        let found = changes.wait_for(|text| text.matches(needle).count() >= times);
        let found = tokio::time::timeout(Duration::from_secs(30), found).await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "{what}: {needle:?} not {times} times in the output within 30 s:\n{}",
            self.text()
        );
    }

    /// [`Output::holds`], or the test fails with `what`.
    async fn wait_for(&self, needle: &str, what: &str) {
        assert!(
            self.holds(needle).await,
            "{what}: {needle:?} not in the output within 30 s:\n{}",
            self.text()
        );
    }
}

/// The environment of a block: `tidings` first on PATH, no `TIDINGS_…` of the caller's.
fn command(program: &str, dir: &Path) -> Command {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tidings"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("TIDINGS_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("PATH", path)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// The process groups a test started (each child leads its own: what it starts in the
/// background belongs to it), killed with SIGKILL when this is dropped — at the end of the test
/// or when it fails half-way. A child that exited has no id any more, so the ids are taken at
/// spawn.
#[derive(Default)]
struct Groups {
    leaders: Vec<u32>,
    children: Vec<Child>,
}

impl Groups {
    fn add(&mut self, child: Child) {
        self.leaders.extend(child.id());
        self.children.push(child);
    }
}

impl Drop for Groups {
    fn drop(&mut self) {
        for pid in &self.leaders {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs one group of `run` blocks (a file's blocks of one group, or one block).
async fn run_group(blocks: &[&Block]) {
    let dir = tempfile::tempdir().unwrap();
    let output = Output::default();
    let mut ports = BTreeMap::new();
    for block in blocks {
        for port in block.get("ports").unwrap_or("").split_whitespace() {
            ports
                .entry(port.to_owned())
                .or_insert_with(|| free_port().to_string());
        }
    }
    let mut groups = Groups::default();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut cleanups = Vec::new();
    let mut failure = None;
    for block in blocks {
        let at = block.at();
        if let Some(args) = block.get("serve") {
            let mut serve = command(env!("CARGO_BIN_EXE_tidings"), dir.path());
            serve
                .args(["serve", "--port", "0"])
                .args(args.split_whitespace());
            // Its log goes to the test's stderr (spawn_serve copies it).
            let (child, url) = common::spawn_serve(&mut serve).await;
            groups.add(child);
            env.push(("TIDINGS_URL".into(), url));
        }
        if let Some(cleanup) = block.get("cleanup") {
            cleanups.push(rewrite(cleanup, &ports));
        }
        let script = rewrite(&block.text, &ports);
        let mut bash = command("bash", dir.path());
        bash.args(["-e", "-o", "pipefail", "-c", &script])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = bash.spawn().unwrap();
        output.collect(child.stdout.take().unwrap());
        output.collect(child.stderr.take().unwrap());
        let leader = child.id();
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
        groups.leaders.extend(leader);
        groups.children.push(child);
        match status {
            Ok(Ok(status)) if status.success() => {}
            other => {
                failure = Some(format!("{at}: the block ended with {other:?}"));
                break;
            }
        }
        for expect in block.all("expect") {
            let expect = rewrite(expect, &ports);
            if !output.holds(&expect).await {
                failure = Some(format!("{at}: {expect:?} not in the output within 30 s"));
                break;
            }
        }
        if failure.is_some() {
            break;
        }
    }
    for cleanup in cleanups {
        let mut clean = command("bash", dir.path());
        clean.args(["-c", &cleanup]);
        let _ = within(20, "cleanup", clean.output()).await;
    }
    drop(groups);
    if let Some(failure) = failure {
        panic!("{failure}\nports: {ports:?}\noutput:\n{}", output.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_blocks_run_as_written() {
    let blocks = all_blocks();
    // Groups in the order of the docs: (file, group) → blocks.
    let mut groups: Vec<(String, Vec<&Block>)> = Vec::new();
    for block in blocks.iter().filter(|b| b.get("run").is_some()) {
        let key = match block.get("group") {
            Some(group) => format!("{}#{group}", block.file),
            None => block.at(),
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(block),
            None => groups.push((key, vec![block])),
        }
    }
    for (key, members) in &groups {
        eprintln!("docs test: running {key}");
        within(180, key, run_group(members)).await;
    }
}

#[tokio::test]
async fn config_blocks_are_accepted() {
    let blocks = all_blocks();
    let configs: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.get("config").is_some())
        .collect();
    assert!(!configs.is_empty());
    for block in configs {
        // The files a config names under /etc/tidings are made here: a development
        // certificate and a JWT public key.
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        let made = command(env!("CARGO_BIN_EXE_tidings"), dir.path())
            .args(["dev-cert", "--dir", etc.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        assert!(made.status.success());
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(etc.join("jwt.pem"), key.public_key_pem()).unwrap();
        let text = block
            .text
            .replace("/etc/tidings/", &format!("{}/", etc.display()));
        let file = dir.path().join("tidings.toml");
        std::fs::write(&file, text).unwrap();
        let output = command(env!("CARGO_BIN_EXE_tidings"), dir.path())
            .args([
                "serve",
                "--print-config",
                "--config",
                file.to_str().unwrap(),
            ])
            .output();
        let output = within(20, "--print-config", output).await.unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            block.at(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn rust_blocks_are_the_files_they_name() {
    for block in all_blocks() {
        let Some(path) = block.get("same-as") else {
            continue;
        };
        let file = std::fs::read_to_string(repo_root().join(path)).unwrap();
        // The file may start with its own `//!` header; the rest is the block.
        let body: Vec<&str> = file
            .lines()
            .skip_while(|l| l.starts_with("//!"))
            .skip_while(|l| l.is_empty())
            .collect();
        assert_eq!(
            block.text.trim_end(),
            body.join("\n").trim_end(),
            "{}: the block is not {path}",
            block.at()
        );
    }
}

fn sample(name: &str) -> Block {
    let mut found = all_blocks()
        .into_iter()
        .filter(|b| b.get("sample") == Some(name));
    let block = found.next().unwrap_or_else(|| panic!("no sample {name}"));
    assert!(found.next().is_none(), "two samples named {name}");
    block
}

/// Starts a sample program with `args`, its output collected.
fn start_sample(program: &str, script: &Path, args: &[&str], dir: &Path) -> (Child, Output) {
    let output = Output::default();
    let child = start_into(program, script, args, dir, &output);
    (child, output)
}

/// Starts a program with `args`, its output collected into `output`.
fn start_into(program: &str, script: &Path, args: &[&str], dir: &Path, output: &Output) -> Child {
    let mut child = command(program, dir)
        .arg(script)
        .args(args)
        .spawn()
        .unwrap();
    output.collect(child.stdout.take().unwrap());
    output.collect(child.stderr.take().unwrap());
    child
}

/// The README's chat samples (chat.mjs in Node, chat.py in Python) talk to each other through
/// a server, on its default settings and with `--recovery` (which adds an offset argument to
/// every event: chat.py failed on it), and again after the server restarted: both reconnect
/// and join the room again, and chat.mjs still runs one interval (it started one more on every
/// reconnect, doubling its sends; counted by wrapping `setInterval` before the sample runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_samples_talk_to_each_other() {
    let js = sample("chat.mjs");
    let py = sample("chat.py");
    // Beside tests/clients/js's node_modules, where `import "socket.io-client"` finds it.
    let dir = tempfile::Builder::new()
        .prefix(".docs-test-")
        .tempdir_in(repo_root().join("tests/clients/js"))
        .unwrap();
    let counter = dir.path().join("count-intervals.mjs");
    std::fs::write(
        &counter,
        "const setInterval = globalThis.setInterval;\n\
         globalThis.setInterval = (...args) => {\n\
         \x20 process.stderr.write(\"docs-test: setInterval\\n\");\n\
         \x20 return setInterval(...args);\n\
         };\n",
    )
    .unwrap();
    let import = format!("--import={}", counter.display());
    for flags in [&[][..], &["--recovery"][..]] {
        let mut server = common::serve("", flags, &[]).await;
        let at = |text: &str| text.replace("http://127.0.0.1:3000", &server.url);
        let (mjs, pyf) = (dir.path().join("chat.mjs"), dir.path().join("chat.py"));
        std::fs::write(&mjs, at(&js.text)).unwrap();
        std::fs::write(&pyf, at(&py.text)).unwrap();
        let mut groups = Groups::default();
        let alice_out = Output::default();
        let alice = command(&node(), dir.path())
            .arg(&import)
            .arg(&mjs)
            .arg("alice")
            .spawn()
            .unwrap();
        let mut alice = alice;
        alice_out.collect(alice.stdout.take().unwrap());
        alice_out.collect(alice.stderr.take().unwrap());
        groups.add(alice);
        let (carol, carol_out) = start_sample(&python(), &pyf, &["carol"], dir.path());
        groups.add(carol);
        let case = format!("{flags:?}");
        alice_out
            .wait_for("carol: hi", &format!("{case}: alice hears carol"))
            .await;
        carol_out
            .wait_for("alice: hello at", &format!("{case}: carol hears alice"))
            .await;

        // The server restarts on the same port; both samples reconnect by themselves.
        let port = server.url.rsplit(':').next().unwrap().to_owned();
        server.child.kill().await.unwrap();
        let heard = (
            alice_out.text().matches("carol: hi").count(),
            carol_out.text().matches("alice: hello at").count(),
        );
        let mut again = Command::new(env!("CARGO_BIN_EXE_tidings"));
        again
            .args(["serve", "--store", "memory", "--port", &port])
            .args(flags);
        let (_restarted, _) = common::spawn_serve(&mut again).await;
        alice_out
            .wait_for_count(
                "carol: hi",
                heard.0 + 1,
                &format!("{case}: alice hears carol after the restart"),
            )
            .await;
        carol_out
            .wait_for_count(
                "alice: hello at",
                heard.1 + 1,
                &format!("{case}: carol hears alice after the restart"),
            )
            .await;
        assert_eq!(
            alice_out.text().matches("docs-test: setInterval").count(),
            1,
            "{case}: chat.mjs started another interval on reconnecting"
        );
        for (name, out) in [("alice", &alice_out), ("carol", &carol_out)] {
            let text = out.text();
            assert!(!text.contains("Error"), "{case}: {name} failed:\n{text}");
        }
        drop(groups);
    }
}

/// A load balancer from docs/DEPLOY.md, started on `port` in front of `nodes` (ports
/// 3001–3003 of the config): the config is the Markdown block, with its ports replaced.
async fn start_proxy(kind: &str, block: &Block, port: u16, nodes: &[u16], dir: &Path) -> Child {
    let mut ports = BTreeMap::new();
    ports.insert("80".to_owned(), port.to_string());
    for (i, node) in nodes.iter().enumerate() {
        ports.insert(format!("300{}", i + 1), node.to_string());
    }
    let config = rewrite(&block.text, &ports);
    let missing = |name: &str| {
        format!("{name} not found: scripts/test installs it (apt-get install haproxy nginx)")
    };
    let mut command = match kind {
        "nginx" => {
            let nginx = ["/usr/sbin/nginx", "nginx"]
                .into_iter()
                .find(|p| which(p))
                .unwrap_or_else(|| panic!("{}", missing("nginx")));
            // The block is what goes in nginx's `http {}` (a file of conf.d/); around it, a
            // main file that keeps every file nginx writes in `dir`.
            std::fs::write(dir.join("site.conf"), config).unwrap();
            let d = dir.display();
            let main = format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 include {d}/site.conf;\n}}\n"
            );
            std::fs::write(dir.join("nginx.conf"), main).unwrap();
            let mut command = command(nginx, dir);
            command.args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")]);
            command
        }
        "haproxy" => {
            let haproxy = ["/usr/sbin/haproxy", "haproxy"]
                .into_iter()
                .find(|p| which(p))
                .unwrap_or_else(|| panic!("{}", missing("haproxy")));
            std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
            let mut command = command(haproxy, dir);
            // -db: in the foreground; -W not needed.
            command.args(["-db", "-f", &dir.join("haproxy.cfg").display().to_string()]);
            command
        }
        other => panic!("{}: unknown proxy {other}", block.at()),
    };
    let mut child = command.spawn().unwrap();
    // Its complaints (a config it refuses) go to the test's output.
    let out = Output::default();
    out.collect(child.stdout.take().unwrap());
    out.collect(child.stderr.take().unwrap());
    // Neither prints when it listens: wait until the port accepts connections (or it exits).
    let ready = async {
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{kind} exited ({status}) on the docs' config:\n{}",
                    out.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(20, &format!("{kind} listening"), ready).await;
    child
}

fn which(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| Path::new(dir).join(program).exists())
}

/// `sessionsOpened` of the node at `url` (GET /v1/stats).
async fn sessions_opened(url: &str) -> u64 {
    let answer = common::http(url, "GET", "/v1/stats", None, b"").await;
    answer.body["sessionsOpened"].as_u64().unwrap()
}

/// DEPLOY.md's nginx and HAProxy configs in front of three nodes on one Redis, with
/// socket.io-client over long-polling, WebSocket and the upgrade between them, and
/// python-socketio over both transports: a balancer that is not sticky, has no WebSocket
/// upgrade or times out a waiting long-poll fails them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_proxies_balance_three_nodes() {
    let proxies: Vec<Block> = blocks_of("docs/DEPLOY.md")
        .into_iter()
        .filter(|b| b.get("proxy").is_some())
        .collect();
    let kinds: Vec<&str> = proxies.iter().map(|b| b.get("proxy").unwrap()).collect();
    assert_eq!(kinds, ["nginx", "haproxy"]);
    let redis = common::server::RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    // Three nodes on ports of their own (the configs name them).
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let mut serve = Command::new(env!("CARGO_BIN_EXE_tidings"));
        serve
            .args(["serve", "--port", &port.to_string()])
            .args(["--redis", &redis.url()])
            .env("RUST_LOG", "warn");
        let (child, url) = common::spawn_serve(&mut serve).await;
        nodes.push(child);
        ports.push(port);
        urls.push(url);
    }
    for block in &proxies {
        let kind = block.get("proxy").unwrap();
        let proxy_dir = dir.path().join(kind);
        std::fs::create_dir_all(&proxy_dir).unwrap();
        let port = free_port();
        let before: Vec<u64> =
            futures_util::future::join_all(urls.iter().map(|u| sessions_opened(u))).await;
        let mut proxy = Groups::default();
        proxy.add(start_proxy(kind, block, port, &ports, &proxy_dir).await);
        let url = format!("http://127.0.0.1:{port}");
        for transport in ["polling", "websocket", "upgrade"] {
            eprintln!("docs test: {kind}, socket.io-client over {transport}");
            common::run_client("js/proxy.mjs", &url, &[("TRANSPORT", transport)]).await;
        }
        for transport in ["polling", "websocket"] {
            eprintln!("docs test: {kind}, python-socketio over {transport}");
            common::run_client("py/proxy.py", &url, &[("TRANSPORT", transport)]).await;
        }
        let after: Vec<u64> =
            futures_util::future::join_all(urls.iter().map(|u| sessions_opened(u))).await;
        let used = before.iter().zip(&after).filter(|(b, a)| a > b).count();
        if kind == "haproxy" {
            // Round robin: the sessions were spread, so the cookie is what kept them together.
            assert!(
                used >= 2,
                "{kind}: sessions on {used} node(s): {before:?} → {after:?}"
            );
        } else {
            // ip_hash: every test client has the same address, so one node has them all.
            assert!(
                used >= 1,
                "{kind}: no session reached a node: {before:?} → {after:?}"
            );
        }
        drop(proxy);
    }
}

/// Copies `files` (repository paths) into `dir`, keeping their paths.
fn copy_tree(dir: &Path, files: &[&str]) {
    for file in files {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(file), to).unwrap();
    }
}

/// The Node parcels demo of examples/parcels, as its README runs it: two drivers, vendor-a
/// online, vendor-b placing its orders and going offline, then back. Every order is taken by
/// exactly one driver and every notice reaches its vendor, vendor-b's after it came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_parcels_demo_delivers_every_order_once() {
    // Beside tests/clients/js's node_modules (socket.io-client), with the helper it imports at
    // the same relative path.
    let dir = tempfile::Builder::new()
        .prefix(".docs-test-")
        .tempdir_in(repo_root().join("tests/clients/js"))
        .unwrap();
    copy_tree(
        dir.path(),
        &[
            "examples/parcels/driver.mjs",
            "examples/parcels/vendor.mjs",
            "clients/js/index.mjs",
        ],
    );
    let demo = dir.path().join("examples/parcels");
    let script = |name: &str| demo.join(name);
    let server = common::serve("", &[], &[]).await;
    let url = server.url.as_str();
    let mut groups = Groups::default();
    // Both drivers write to one output: the orders they took, together.
    let drivers = Output::default();
    for n in ["1", "2"] {
        let args = [n, "--drive-ms", "50", "--url", url];
        let child = start_into(&node(), &script("driver.mjs"), &args, &demo, &drivers);
        groups.add(child);
    }
    drivers
        .wait_for_count("on shift", 2, "both drivers on shift")
        .await;
    let (vendor_a, a_out) = start_sample(
        &node(),
        &script("vendor.mjs"),
        &["a", "--orders", "3", "--url", url],
        &demo,
    );
    groups.add(vendor_a);
    let offline = command(&node(), &demo)
        .arg(script("vendor.mjs"))
        .args(["b", "--orders", "3", "--go-offline", "--url", url])
        .output();
    let offline = within(30, "vendor b places its orders", offline)
        .await
        .unwrap();
    let placed = String::from_utf8_lossy(&offline.stdout).into_owned();
    assert!(offline.status.success(), "{placed}");
    assert_eq!(placed.matches("published order").count(), 3, "{placed}");

    drivers
        .wait_for_count("delivered  ->", 6, "the drivers deliver all six orders")
        .await;
    let mut taken: Vec<String> = drivers
        .text()
        .lines()
        .filter_map(|l| l.split("took order ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().to_owned())
        .collect();
    taken.sort();
    let times = taken.len();
    taken.dedup();
    assert_eq!(
        (times, taken.len()),
        (6, 6),
        "each order taken once: {taken:?}"
    );
    a_out
        .wait_for_count("notice: ", 6, "vendor a's six notices, live")
        .await;

    // vendor b comes back: its six notices waited for it.
    let (vendor_b, b_out) =
        start_sample(&node(), &script("vendor.mjs"), &["b", "--url", url], &demo);
    groups.add(vendor_b);
    b_out
        .wait_for_count("notice: ", 6, "vendor b catches up on six notices")
        .await;
    drop(groups);
}
