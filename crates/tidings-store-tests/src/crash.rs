//! A kill -9 test of a store, for every durable backend: every append the store confirmed is
//! there after the process is killed and the store reopened.
//!
//! A backend's test re-runs its own test binary as the child: an ignored test calls
//! [`child`] (it appends from several tasks at once, so commits are grouped, and prints
//! `confirmed <offset> <id>` for each append that returned `Ok`), and the real test calls
//! [`parent`], which starts that child with the environment variable naming the store's path,
//! kills it with SIGKILL after some confirmations, reads every line it printed, reopens the store
//! and looks for each confirmed message.
//!
//! ```ignore
//! const ENV: &str = "MY_STORE_CRASH_CHILD";
//! #[test]
//! #[ignore = "the child process of confirmed_appends_survive_sigkill, which runs it; not a test"]
//! fn crash_child_process_not_a_test() {
//!     tidings_store_tests::crash::child(ENV, |path| MyStore::open(path).unwrap());
//! }
//! #[test]
//! fn confirmed_appends_survive_sigkill() {
//!     tidings_store_tests::crash::parent(ENV, "store", |path| MyStore::open(path).unwrap());
//! }
//! ```

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidings_core::store::{MessageId, NewMessage, Store, Topic};

/// The topic the child appends to.
const TOPIC: &str = "crash";
const CHILD_TASKS: usize = 8;
const CHILD_APPENDS_PER_TASK: usize = 5_000;
const CHILD_DEADLINE: Duration = Duration::from_secs(30);

/// The child: appends until killed (bounded by count and time), printing each confirmation.
/// `env` names the variable that holds the store's path; without it, this panics (it is not a
/// test of its own).
///
/// # Panics
///
/// Without `env`, or when an append fails.
pub fn child<S: Store>(env: &str, open: impl FnOnce(&Path) -> S) {
    let Some(path) = std::env::var_os(env) else {
        panic!(
            "crash_child_process_not_a_test is the child process of \
             confirmed_appends_survive_sigkill, run by it with {env} set; not a test"
        );
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(open(Path::new(&path)));
    rt.block_on(async move {
        let topic = Topic::new(TOPIC).unwrap();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for task in 0..CHILD_TASKS {
            let (store, topic) = (store.clone(), topic.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..CHILD_APPENDS_PER_TASK {
                    if started.elapsed() > CHILD_DEADLINE {
                        return;
                    }
                    let attachments = child_attachments(task, i);
                    let data = if attachments.is_empty() {
                        format!("{{\"task\":{task},\"i\":{i}}}")
                    } else {
                        format!(
                            "{{\"task\":{task},\"i\":{i},\"b\":{{\"_placeholder\":true,\"num\":0}}}}"
                        )
                    };
                    let msg = NewMessage {
                        attachments,
                        event: "tick".to_owned(),
                        data,
                        key: None,
                        published_at: 0,
                    };
                    let r = store.append(&topic, msg, 0).await.unwrap();
                    // One println is one write of a whole line (stdout is locked per call).
                    println!("confirmed {} {}", r.offset, r.id);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

fn parse(line: &str) -> Option<(u64, MessageId)> {
    // libtest may print its own text before the first line of ours.
    let rest = &line[line.find("confirmed ")? + "confirmed ".len()..];
    let mut parts = rest.split_whitespace();
    let offset = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    Some((offset, id))
}

/// The parent: three rounds of start, kill after 40, 400 and 2,000 confirmations, reopen and
/// check. `file` is the name of the store's path inside each round's temporary directory.
///
/// # Panics
///
/// When a confirmed append is missing, or the child cannot be run.
pub fn parent<S: Store>(env: &str, file: &str, open: impl Fn(&Path) -> S) {
    let exe = std::env::current_exe().unwrap();
    for (round, kill_after) in [40usize, 400, 2000].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file);
        let mut child = Command::new(&exe)
            .args([
                "crash_child_process_not_a_test",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut confirmed = Vec::new();
        while confirmed.len() < kill_after {
            match lines.next() {
                Some(Ok(line)) => confirmed.extend(parse(&line)),
                _ => break,
            }
        }
        child.kill().unwrap();
        // What the child printed before it died was confirmed too.
        confirmed.extend(lines.map_while(Result::ok).filter_map(|l| parse(&l)));
        let status = child.wait().unwrap();
        assert!(
            confirmed.len() >= kill_after,
            "round {round}: the child stopped after {} confirmations ({status})",
            confirmed.len()
        );

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = open(&path);
            let topic = Topic::new(TOPIC).unwrap();
            let history = store.history(&topic, 1, usize::MAX).await.unwrap();
            let offsets: Vec<u64> = history.iter().map(|m| m.offset).collect();
            assert_eq!(offsets, (1..=history.len() as u64).collect::<Vec<_>>());
            // Every stored message has its binary attachment, byte for byte.
            for m in &history {
                // `{"task":T,"i":I…`: the child's data.
                let numbers: Vec<usize> = m
                    .data
                    .split([':', ',', '}'])
                    .filter_map(|part| part.parse().ok())
                    .take(2)
                    .collect();
                if let [task, i] = numbers[..] {
                    assert_eq!(
                        m.attachments,
                        child_attachments(task, i),
                        "round {round}: the attachments of offset {}",
                        m.offset
                    );
                }
            }
            for &(offset, id) in &confirmed {
                let stored = usize::try_from(offset - 1)
                    .ok()
                    .and_then(|i| history.get(i))
                    .map(|m| m.id);
                assert_eq!(
                    stored,
                    Some(id),
                    "round {round}: confirmed offset {offset} lost ({} confirmed, {} stored)",
                    confirmed.len(),
                    history.len()
                );
            }
            // The reopened store goes on after the last stored message.
            let next = NewMessage {
                attachments: Vec::new(),
                event: "tick".to_owned(),
                data: "{}".to_owned(),
                key: None,
                published_at: 0,
            };
            let r = store.append(&topic, next, 0).await.unwrap();
            assert_eq!(r.offset, history.len() as u64 + 1);
        });
    }
}

/// The child's appends: every other one carries one binary attachment (task and index in its
/// bytes, up to 2,000 of them), so that a kill tears binary records too.
fn child_attachments(task: usize, i: usize) -> Vec<bytes::Bytes> {
    if i % 2 == 0 {
        return Vec::new();
    }
    let len = (i * 37) % 2_000;
    vec![bytes::Bytes::from(
        (0..len)
            .map(|k| (task * 7 + i + k) as u8)
            .collect::<Vec<u8>>(),
    )]
}
