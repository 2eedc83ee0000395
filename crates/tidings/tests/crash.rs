//! `kill -9` durability of `tidings serve` with its default store, the journal (and its default
//! `--durability full`): the
//! real binary is SIGKILLed while publishers and a consumer are busy, restarted on the same data
//! directory, and must have kept every publish it confirmed and every ack it made durable.
//!
//! - `confirmed_publishes_survive_kill_9` (the soak): five kill/restart cycles on one data
//!   directory while 8 publishers, a 3-member group and an identity subscriber run, each kill at
//!   a random moment (after a random number of confirmations; the seed is printed and
//!   `TIDINGS_SOAK_SEED` replays it). After each restart the topic holds every confirmed
//!   publish at its confirmed offset, with no hole in the offsets; at the end the group and the
//!   identity (both subscribed `from: earliest` before the first crash) and a fresh subscriber
//!   after the last have each received every confirmed message, at least once. Duplicates (the
//!   redeliveries a crash causes) are counted and reported.
//! - `unacked_deliveries_are_redelivered_after_kill_9`: the server is killed while a consumer is
//!   acking a stream of deliveries; after the restart every message it had not acked comes back
//!   (with its attempt count kept), and no message whose ack was durable before the crash does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tidings_client::{
    Client, ClientOptions, MessageId, Offset, PublishError, StartFrom, SubscribeOptions,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

const TOPIC: &str = "crash.orders";
/// Concurrent publishers (one connection each).
const PUBLISHERS: usize = 8;
/// Confirmations to collect in each cycle before the kill: a random number in this range.
const PER_CYCLE: std::ops::Range<usize> = 50..600;
/// Members of the group subscription.
const GROUP_MEMBERS: usize = 3;
const GROUP: &str = "packers";
const CYCLES: usize = 5;
/// Redeliveries of messages in flight at the crash wait for their ack deadline.
const CONFIG: &str = "[queues]\nack_timeout_ms = 1000\n";

/// Fails the test when `fut` takes longer than `secs`.
async fn within<F: std::future::Future>(secs: u64, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {secs} s"))
}

struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    /// `tidings serve --port 0 --data-dir DIR --config FILE` (the default store: the journal).
    async fn start(dir: &Path) -> Serve {
        let config = dir.join("tidings.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .arg("serve")
            .args(["--port", "0", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within(20, "tidings serve reporting its address", lines.next_line())
            .await
            .unwrap()
            .expect("tidings serve exited before listening");
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        let url = url.split('/').take(3).collect::<Vec<_>>().join("/");
        Serve { child, url }
    }

    /// SIGKILL, and wait until the process is gone.
    async fn kill_9(mut self) {
        self.child.start_kill().unwrap();
        let status = within(10, "the killed server exiting", self.child.wait())
            .await
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "{status:?}");
        }
        #[cfg(not(unix))]
        let _ = status;
    }
}

/// A client that does not reconnect: after the kill its requests fail instead of waiting.
async fn client(url: &str, client_id: Option<&str>) -> Client {
    let mut options = ClientOptions::builder(url)
        .reconnect(false)
        .ack_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5));
    if let Some(id) = client_id {
        options = options.auth(json!({ "clientId": id }));
    }
    within(10, "connecting", Client::connect(options.build().unwrap()))
        .await
        .unwrap()
}

/// One GET of the `/v1` API.
async fn get_json(url: &str, path: &str) -> Value {
    let host = url.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = within(10, path, sender.send_request(req)).await.unwrap();
    assert_eq!(res.status(), 200, "GET {path}");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// The subscription `name` of `topic` as `GET /v1/topics/{topic}` shows it.
async fn subscription_info(url: &str, topic: &str, name: &str) -> Value {
    let info = get_json(url, &format!("/v1/topics/{topic}")).await;
    info["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no subscription {name} in {info}"))
        .clone()
}

/// Every retained message of the topic, by offset, read through `history` pages.
async fn stored(url: &str) -> Vec<(Offset, MessageId)> {
    let reader = client(url, None).await;
    let mut all = Vec::new();
    let mut from = 1;
    for _ in 0..1000 {
        let page = within(10, "history", reader.history(TOPIC, Some(from), Some(1000)))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        from = last.offset + 1;
        all.extend(page.iter().map(|m| (m.offset, m.id)));
    }
    reader.disconnect().await;
    all
}

/// The topic holds every confirmed publish at its confirmed offset, and its offsets run from 1
/// to the head without a hole.
fn assert_every_confirmed_is_stored(
    stored: &[(Offset, MessageId)],
    confirmed: &[(MessageId, Offset)],
) {
    for (i, (offset, _)) in stored.iter().enumerate() {
        assert_eq!(
            *offset,
            i as u64 + 1,
            "hole in the stored offsets before {offset}"
        );
    }
    let max_confirmed = confirmed.iter().map(|c| c.1).max().unwrap_or(0);
    assert!(
        stored.len() as u64 >= max_confirmed,
        "confirmed offset {max_confirmed} but only {} messages stored",
        stored.len()
    );
    let mut offsets = HashSet::new();
    for (id, offset) in confirmed {
        assert!(offsets.insert(*offset), "offset {offset} confirmed twice");
        assert_eq!(
            stored[*offset as usize - 1].1,
            *id,
            "offset {offset}: the stored message is not the confirmed one"
        );
    }
}

/// Publishes until the server is killed; every confirmation goes into `confirmed`.
async fn publish_until_killed(
    publisher: Client,
    p: usize,
    confirmed: Arc<Mutex<Vec<(MessageId, Offset)>>>,
    count: watch::Sender<usize>,
) -> PublishError {
    // Bounded: at the measured rate this is minutes of publishing.
    for i in 0..100_000 {
        match publisher
            .publish(TOPIC, "order", &json!({ "p": p, "i": i }))
            .await
        {
            Ok(done) => {
                assert!(!done.duplicate);
                confirmed.lock().unwrap().push((done.id, done.offset));
                count.send_modify(|n| *n += 1);
            }
            Err(e) => return e,
        }
    }
    panic!("publisher {p} was never interrupted by the kill");
}

/// What one subscription (the identity, or the group across its members) received.
#[derive(Default)]
struct Received {
    offsets: HashMap<MessageId, Offset>,
    /// Deliveries of a message already received (redeliveries after a crash).
    duplicates: usize,
}

type Shared = Arc<Mutex<Received>>;

/// Receives and acks until the connection dies, recording every delivery.
async fn consume_until_killed(consumer: Client, group: Option<&str>, received: Shared) {
    let mut options = SubscribeOptions::new(TOPIC).from(StartFrom::Earliest);
    if let Some(group) = group {
        options = options.group(group);
    }
    let mut orders = consumer.subscribe(options).await.unwrap();
    while let Some(d) = orders.recv().await {
        record(&received, &d.meta.id, d.meta.offset);
        // After the kill the ack fails: the message will be redelivered.
        let _ = d.ack().await;
    }
}

fn record(received: &Mutex<Received>, id: &MessageId, offset: Offset) {
    let mut r = received.lock().unwrap();
    if let Some(before) = r.offsets.insert(*id, offset) {
        assert_eq!(before, offset, "message {id} delivered with two offsets");
        r.duplicates += 1;
    }
}

/// The seed of the kill moments: `TIDINGS_SOAK_SEED`, or a new one (printed either way).
fn soak_seed() -> u64 {
    let seed = std::env::var("TIDINGS_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("kill moments from TIDINGS_SOAK_SEED={seed}");
    seed
}

fn missing(confirmed: &[(MessageId, Offset)], received: &Received) -> Vec<Offset> {
    let mut missing: Vec<Offset> = confirmed
        .iter()
        .filter(|(id, _)| !received.offsets.contains_key(id))
        .map(|c| c.1)
        .collect();
    missing.sort_unstable();
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirmed_publishes_survive_kill_9() {
    let started = Instant::now();
    let mut rng = fastrand::Rng::with_seed(soak_seed());
    let dir = tempfile::tempdir().unwrap();
    let confirmed: Arc<Mutex<Vec<(MessageId, Offset)>>> = Arc::default();
    // What the identity "auditor" and the group received, over every cycle.
    let auditor = Shared::default();
    let group = Shared::default();
    let mut interrupted_publishes = 0;

    for cycle in 0..CYCLES {
        let server = Serve::start(dir.path()).await;
        // Whatever the previous crashes interrupted, what was confirmed is there.
        let so_far = confirmed.lock().unwrap().clone();
        assert_every_confirmed_is_stored(&stored(&server.url).await, &so_far);

        // The durable consumers: subscribed from earliest before the first crash, resumed
        // after each restart under the same identities.
        let mut consuming = vec![tokio::spawn(consume_until_killed(
            client(&server.url, Some("auditor")).await,
            None,
            auditor.clone(),
        ))];
        for m in 0..GROUP_MEMBERS {
            let member = client(&server.url, Some(&format!("packer-{m}"))).await;
            consuming.push(tokio::spawn(consume_until_killed(
                member,
                Some(GROUP),
                group.clone(),
            )));
        }

        let (count, mut counted) = watch::channel(0);
        let mut publishers = Vec::new();
        for p in 0..PUBLISHERS {
            let publisher = client(&server.url, None).await;
            publishers.push(tokio::spawn(publish_until_killed(
                publisher,
                p,
                confirmed.clone(),
                count.clone(),
            )));
        }
        let kill_after = rng.usize(PER_CYCLE);
        within(
            15,
            "collecting confirmations",
            counted.wait_for(|n| *n >= kill_after),
        )
        .await
        .unwrap();
        // Publishers are still publishing, consumers consuming: kill -9 now.
        server.kill_9().await;

        for publisher in publishers {
            let error = within(15, "a publisher noticing the kill", publisher)
                .await
                .unwrap();
            match error {
                PublishError::Disconnected => interrupted_publishes += 1,
                PublishError::Emit(_) => {}
                other => panic!("cycle {cycle}: unexpected publish error {other:?}"),
            }
        }
        for consumer in consuming {
            within(15, "a consumer noticing the kill", consumer)
                .await
                .unwrap();
        }
    }
    // Publishes were in flight at the kills (those are neither confirmed nor checked).
    assert!(interrupted_publishes > 0, "no kill hit a publish in flight");

    let server = Serve::start(dir.path()).await;
    let confirmed = confirmed.lock().unwrap().clone();
    assert!(confirmed.len() >= CYCLES * PER_CYCLE.start);
    let stored = stored(&server.url).await;
    assert_every_confirmed_is_stored(&stored, &confirmed);

    // The identity and the group get the rest: at least once, every confirmed message.
    let before_drain = (
        missing(&confirmed, &auditor.lock().unwrap()).len(),
        missing(&confirmed, &group.lock().unwrap()).len(),
    );
    let mut resumed = Vec::new();
    let mut clients = vec![client(&server.url, Some("auditor")).await];
    let mut options = vec![SubscribeOptions::new(TOPIC)];
    for m in 0..GROUP_MEMBERS {
        clients.push(client(&server.url, Some(&format!("packer-{m}"))).await);
        options.push(SubscribeOptions::new(TOPIC).group(GROUP));
    }
    for (i, (c, o)) in clients.iter().zip(options).enumerate() {
        let received = if i == 0 {
            auditor.clone()
        } else {
            group.clone()
        };
        let mut orders = c.subscribe(o).await.unwrap();
        resumed.push(tokio::spawn(async move {
            while let Some(d) = orders.recv().await {
                record(&received, &d.meta.id, d.meta.offset);
                d.ack().await.unwrap();
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        poll.tick().await;
        let left = (
            missing(&confirmed, &auditor.lock().unwrap()),
            missing(&confirmed, &group.lock().unwrap()),
        );
        if left.0.is_empty() && left.1.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never received after the last restart: auditor {:?}, group {:?}",
            left.0,
            left.1
        );
    }
    for c in clients {
        c.disconnect().await;
    }
    for r in resumed {
        within(10, "a consumer ending", r).await.unwrap();
    }

    // And nothing either received is unknown to the topic.
    for received in [&auditor, &group] {
        for (id, offset) in &received.lock().unwrap().offsets {
            assert_eq!(
                stored[*offset as usize - 1].1,
                *id,
                "delivered {id} at {offset}"
            );
        }
    }

    // A subscriber that arrives after the crashes, from earliest, gets all of it.
    let late = client(&server.url, Some("late")).await;
    let mut replay = late
        .subscribe(SubscribeOptions::new(TOPIC).from(StartFrom::Earliest))
        .await
        .unwrap();
    assert_eq!(replay.pending(), stored.len() as u64);
    let mut replayed = BTreeMap::new();
    while replayed.len() < stored.len() {
        let d = within(20, "the late subscriber's replay", replay.recv())
            .await
            .unwrap();
        replayed.insert(d.meta.offset, d.meta.id);
        d.ack().await.unwrap();
    }
    let expected: BTreeMap<Offset, MessageId> = stored.iter().copied().collect();
    assert_eq!(replayed, expected);

    server.kill_9().await;
    eprintln!(
        "soak: {} confirmed publishes over {CYCLES} kill -9 cycles, {} stored; after the last \
         restart the auditor still lacked {} and the group {}; duplicates (redeliveries): \
         auditor {}, group {}; {:?}",
        confirmed.len(),
        stored.len(),
        before_drain.0,
        before_drain.1,
        auditor.lock().unwrap().duplicates,
        group.lock().unwrap().duplicates,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unacked_deliveries_are_redelivered_after_kill_9() {
    const TOTAL: usize = 300;
    const DURABLY_ACKED: usize = 100;
    const ACKED_BEFORE_KILL: usize = 150;
    let topic = TOPIC;
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path()).await;

    let publisher = client(&server.url, None).await;
    let mut confirmed = Vec::new();
    for i in 0..TOTAL {
        let done = publisher
            .publish(topic, "order", &json!({ "i": i }))
            .await
            .unwrap();
        confirmed.push((done.id, done.offset));
    }

    let consumer = client(&server.url, Some("worker")).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new(topic).from(StartFrom::Earliest))
        .await
        .unwrap();
    assert_eq!(orders.pending(), TOTAL as u64);
    // Ids whose ack was sent, and the attempt each message was last delivered with.
    let mut acked = HashSet::new();
    let mut seen_before: HashMap<MessageId, u32> = HashMap::new();
    let mut durable = HashSet::new();
    while acked.len() < ACKED_BEFORE_KILL {
        let d = within(10, "a delivery", orders.recv()).await.unwrap();
        seen_before.insert(d.meta.id, d.meta.attempt);
        let id = d.meta.id;
        d.ack().await.unwrap();
        acked.insert(id);
        if acked.len() == DURABLY_ACKED {
            // Wait until the server's store counts these acks. The journal writes them to the
            // OS with its next batch (microseconds later, long before the kill below, which
            // waits for 50 more deliveries): from here they survive a kill -9.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let sub = subscription_info(&server.url, topic, "id:worker").await;
                if sub["pending"] == (TOTAL - DURABLY_ACKED) as u64 {
                    break;
                }
                assert!(Instant::now() < deadline, "acks never settled: {sub}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            durable = acked.clone();
        }
    }
    // Mid-stream: deliveries are arriving and the last acks are on their way.
    server.kill_9().await;
    // What had arrived but was not acked yet: it must come back with a higher attempt.
    let mut unacked_arrived = 0;
    while let Some(d) = within(10, "the subscription ending", orders.recv()).await {
        seen_before.insert(d.meta.id, d.meta.attempt);
        unacked_arrived += 1;
    }
    assert!(unacked_arrived > 0, "the kill did not happen mid-stream");
    consumer.disconnect().await;

    let server = Serve::start(dir.path()).await;
    let restarted = Instant::now();
    let consumer = client(&server.url, Some("worker")).await;
    let mut orders = consumer
        .subscribe(SubscribeOptions::new(topic))
        .await
        .unwrap();
    let must_come: HashSet<MessageId> = confirmed
        .iter()
        .map(|c| c.0)
        .filter(|id| !acked.contains(id))
        .collect();
    assert!(must_come.len() >= TOTAL - ACKED_BEFORE_KILL);
    let mut after: HashMap<MessageId, u32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    // Until every unacked message came back and the server has nothing left for "worker".
    loop {
        tokio::select! {
            d = orders.recv() => {
                let d = d.expect("the subscription ended");
                after.entry(d.meta.id).or_insert(d.meta.attempt);
                d.ack().await.unwrap();
            }
            _ = poll.tick() => {
                if must_come.iter().all(|id| after.contains_key(id)) {
                    let sub = subscription_info(&server.url, topic, "id:worker").await;
                    if sub["pending"] == 0 {
                        assert_eq!((&sub["inFlight"], &sub["dead"]), (&json!(0), &json!(0)));
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "not redelivered after the restart: {} of {}",
                    must_come.iter().filter(|id| !after.contains_key(id)).count(),
                    must_come.len()
                );
            }
        }
    }
    eprintln!(
        "{unacked_arrived} delivered-but-unacked at the kill; after the restart {} messages \
         were redelivered ({} had to be) within {:?}",
        after.len(),
        must_come.len(),
        restarted.elapsed()
    );
    for id in &durable {
        assert!(
            !after.contains_key(id),
            "{id} was durably acked but redelivered"
        );
    }
    for (id, attempt) in &after {
        if let Some(before) = seen_before.get(id) {
            assert!(
                attempt > before,
                "{id} delivered with attempt {before} before the crash, {attempt} after"
            );
        }
    }
    server.kill_9().await;
}
