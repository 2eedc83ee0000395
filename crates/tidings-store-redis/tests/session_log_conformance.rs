//! The session log conformance suite against [`RedisSessionLog`]: the behaviours of every log,
//! of a log that outlives its process and of a log several nodes share, each test on a fresh
//! key prefix of a private `redis-server` (or of `TIDINGS_REDIS_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;

use tidings_store_redis::{RedisConfig, RedisSessionLog, RedisStore};
use tidings_store_tests::WithGuard;
use tidings_store_tests::session_log::LogBackend;

/// A key prefix on a Redis: every log it opens is a node (or a restart) on that prefix.
struct Prefix {
    config: RedisConfig,
    _guard: WithGuard<RedisStore, common::Guard>,
}

fn prefix() -> Prefix {
    let guard = common::store_with(|_| {});
    Prefix {
        config: guard.store.config().clone(),
        _guard: guard,
    }
}

impl LogBackend for Prefix {
    type Log = RedisSessionLog;

    fn open(&self) -> impl Future<Output = RedisSessionLog> {
        let config = self.config.clone();
        async move { RedisSessionLog::connect(config).await.unwrap() }
    }
}

tidings_store_tests::session_log_conformance_tests!(prefix());
tidings_store_tests::session_log_restart_tests!(prefix());
tidings_store_tests::session_log_shared_tests!(prefix());
