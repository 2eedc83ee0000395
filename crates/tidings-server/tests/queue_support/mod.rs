//! Shared by the durable-queue client tests (`queues_js.rs`, `queues_py.rs`): the interop app
//! with queues enabled on a real SQLite file in a temporary directory, short server timeouts per
//! scenario, and runners that hand those settings to the client scripts as `TIDINGS_*` env.
//!
//! Uses the interop support module (`crate::support`) read-only.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;
use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, DeadLetter, Gap, MessageId, Millis,
    NewMessage, Offset, QueueBound, Retention, StartFrom, Store, StoreFuture, StoredMessage,
    SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};
use tidings_server::{QueueConfig, Queues, RetentionRule};
use tidings_store_journal::{JournalConfig, JournalStore};

use crate::support::{self, TestServer};

/// Topics starting with this prefix get [`GAP_MAX_MESSAGES`] retention in every scenario.
pub const GAP_TOPIC_PREFIX: &str = "gap.";
/// The retention rule's pattern for [`GAP_TOPIC_PREFIX`].
const GAP_PATTERN: &str = "gap.*";
/// Messages retained on `gap.*` topics.
pub const GAP_MAX_MESSAGES: u64 = 3;

/// The server settings a scenario needs. Every profile has fast retention passes and a short
/// requeue backoff; only `Redelivery` has a short ack timeout, because in the others a
/// redelivery within the scripts' waits (at most 5 s each) must prove a disconnect, a kill or a
/// requeue — never the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Ack timeout 20 s, max deliveries 10, requeue backoff 50 ms.
    Long,
    /// Ack timeout 400 ms and a requeue backoff of 1 s (longer, so that a requeued message
    /// coming back cannot be the timeout path).
    Redelivery,
    /// Max deliveries 2, requeue backoff 50 ms, ack timeout 20 s.
    DeadLetters,
    /// Ack timeout 300 ms, and a store whose `claim` answers 450 ms after it took effect (a
    /// slow fsync, simulated by [`SlowClaims`]): the server is still handing a claimed message
    /// to the client when the store's ack deadline for it passes.
    SlowClaims,
}

/// How late [`Profile::SlowClaims`]' store answers a claim.
pub const SLOW_CLAIM: Duration = Duration::from_millis(450);

impl Profile {
    pub fn config(self) -> QueueConfig {
        let mut c = QueueConfig::default();
        c.ack_timeout = Duration::from_secs(20);
        c.max_deliveries = 10;
        c.requeue_backoff = Duration::from_millis(50);
        c.requeue_backoff_max = Duration::from_secs(1);
        c.retention_interval = Duration::from_millis(100);
        c.retention_rules = vec![RetentionRule {
            pattern: GAP_PATTERN.to_owned(),
            retention: Retention {
                max_messages: GAP_MAX_MESSAGES,
                ..Retention::default()
            },
        }];
        match self {
            Profile::Long => {}
            Profile::Redelivery => {
                c.ack_timeout = Duration::from_millis(400);
                c.requeue_backoff = Duration::from_secs(1);
                c.requeue_backoff_max = Duration::from_secs(2);
            }
            Profile::DeadLetters => c.max_deliveries = 2,
            Profile::SlowClaims => c.ack_timeout = Duration::from_millis(300),
        }
        c
    }
}

/// The interop app with durable queues on SQLite; the directory goes when this is dropped
/// (after the server, which is shut down first).
pub struct QueueServer {
    pub test: TestServer,
    pub queues: Arc<Queues>,
    pub config: QueueConfig,
    /// Claims the store has been asked for so far.
    claims: Arc<AtomicU64>,
    _dir: TempDir,
}

impl QueueServer {
    pub fn url(&self) -> String {
        self.test.url()
    }

    /// The claims the delivery engine made so far.
    pub fn claims(&self) -> u64 {
        self.claims.load(Ordering::Relaxed)
    }

    /// The settings the scripts read (`setting("TIDINGS_…")` in JS, `setting(…)` in Python).
    pub fn envs(&self, transport: &str) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            ("TRANSPORT".into(), transport.into()),
            (
                "TIDINGS_ACK_TIMEOUT_MS".into(),
                c.ack_timeout.as_millis().to_string(),
            ),
            (
                "TIDINGS_REQUEUE_BACKOFF_MS".into(),
                c.requeue_backoff.as_millis().to_string(),
            ),
            (
                "TIDINGS_MAX_DELIVERIES".into(),
                c.max_deliveries.to_string(),
            ),
            ("TIDINGS_GAP_TOPIC_PREFIX".into(), GAP_TOPIC_PREFIX.into()),
            (
                "TIDINGS_GAP_MAX_MESSAGES".into(),
                GAP_MAX_MESSAGES.to_string(),
            ),
        ]
    }

    /// Runs a client script against this server and checks the server stayed healthy.
    pub async fn run(&self, program: &str, script: std::path::PathBuf, transport: &str) {
        self.run_with(program, script, transport, &[]).await;
    }

    /// [`QueueServer::run`] with more environment for the script (e.g. `PARSER`).
    pub async fn run_with(
        &self,
        program: &str,
        script: std::path::PathBuf,
        transport: &str,
        extra: &[(&str, &str)],
    ) {
        let mut envs = self.envs(transport);
        envs.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        support::run_script(program, script, &self.url(), &envs).await;
        let stats = self.test.server.stats();
        assert_eq!(stats.protocol_errors, 0, "protocol errors: {stats:?}");
        assert_eq!(stats.slow_client_disconnects, 0, "slow clients: {stats:?}");
    }
}

/// Starts the interop app with queues on a fresh journal store (the default of `tidings serve`,
/// full durability: every publish ack waits for the fsync, as in production).
pub async fn start(profile: Profile) -> QueueServer {
    start_with(profile, support::interop_config().build().unwrap()).await
}

/// [`start`] with another server configuration (e.g. another parser).
pub async fn start_with(
    profile: Profile,
    server_config: tidings_server::ServerConfig,
) -> QueueServer {
    let dir = tempfile::tempdir().unwrap();
    let journal: Arc<dyn Store> = Arc::new(
        JournalStore::open(&dir.path().join("journal"), JournalConfig::default()).unwrap(),
    );
    let claims = Arc::new(AtomicU64::new(0));
    let store = Arc::new(SlowClaims {
        inner: journal,
        delay: match profile {
            Profile::SlowClaims => SLOW_CLAIM,
            _ => Duration::ZERO,
        },
        claims: claims.clone(),
    });
    let config = profile.config();
    let server = support::interop_app(server_config);
    let queues = server.enable_queues(store, config.clone()).await.unwrap();
    let test = support::start(server).await;
    QueueServer {
        test,
        queues,
        config,
        claims,
        _dir: dir,
    }
}

pub async fn run_js(script: &str, profile: Profile, transport: &str) {
    let server = start(profile).await;
    let path = support::repo_root().join("tests/clients/js").join(script);
    server.run(&support::node(), path, transport).await;
}

pub async fn run_py(script: &str, profile: Profile, transport: &str) {
    let server = start(profile).await;
    let path = support::repo_root().join("tests/clients/py").join(script);
    server.run(&support::python(), path, transport).await;
}

/// A store that counts the claims made, and answers every `claim` `delay` after the claim took
/// effect (as a store with a slow fsync, or a busy writer, would); everything else is the
/// inner store's.
pub struct SlowClaims {
    pub inner: Arc<dyn Store>,
    pub delay: Duration,
    pub claims: Arc<AtomicU64>,
}

impl Store for SlowClaims {
    fn append<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Appended> {
        self.inner.append(topic, msg, dedup_window)
    }

    fn append_bounded<'a>(
        &'a self,
        topic: &'a Topic,
        msg: NewMessage,
        dedup_window: Millis,
        bound: QueueBound,
    ) -> StoreFuture<'a, BoundedAppend> {
        self.inner.append_bounded(topic, msg, dedup_window, bound)
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    ) -> StoreFuture<'a, SubscriptionInfo> {
        self.inner.subscribe(topic, sub, from)
    }

    fn unsubscribe<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    ) -> StoreFuture<'a, bool> {
        self.inner.unsubscribe(topic, sub)
    }

    fn subscriptions(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName)>> {
        self.inner.subscriptions()
    }

    fn set_member<'a>(
        &'a self,
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    ) -> StoreFuture<'a, ()> {
        self.inner.set_member(topic, group, identity, member)
    }

    fn members(&self) -> StoreFuture<'_, Vec<(Topic, SubscriptionName, String)>> {
        self.inner.members()
    }

    fn claim<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    ) -> StoreFuture<'a, ClaimResult> {
        Box::pin(async move {
            self.claims.fetch_add(1, Ordering::Relaxed);
            let result = self.inner.claim(topic, sub, opts).await;
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            result
        })
    }

    fn ack<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    ) -> StoreFuture<'a, bool> {
        self.inner.ack(topic, sub, offset)
    }

    fn requeue<'a>(
        &'a self,
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    ) -> StoreFuture<'a, bool> {
        self.inner.requeue(topic, sub, offset, not_before)
    }

    fn release_in_flight(&self, now: Millis) -> StoreFuture<'_, u64> {
        self.inner.release_in_flight(now)
    }

    fn dead_letters<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Vec<DeadLetter>> {
        self.inner.dead_letters(topic)
    }

    fn requeue_dead<'a>(
        &'a self,
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    ) -> StoreFuture<'a, bool> {
        self.inner.requeue_dead(topic, id, now)
    }

    fn history<'a>(
        &'a self,
        topic: &'a Topic,
        from: Offset,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        self.inner.history(topic, from, limit)
    }

    fn topic_info<'a>(&'a self, topic: &'a Topic) -> StoreFuture<'a, Option<TopicInfo>> {
        self.inner.topic_info(topic)
    }

    fn topics(&self) -> StoreFuture<'_, Vec<Topic>> {
        self.inner.topics()
    }

    fn enforce_retention<'a>(
        &'a self,
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    ) -> StoreFuture<'a, Vec<Gap>> {
        self.inner
            .enforce_retention(topic, retention, now, dedup_window)
    }
}
