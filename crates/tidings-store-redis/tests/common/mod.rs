//! Redis servers for the tests: a private `redis-server` on a unix socket ([`RedisServer`],
//! killed when the last store using it is dropped), or the one at `TIDINGS_REDIS_URL`. Every store
//! gets a random key prefix, so tests share a server without seeing each other.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex, Weak};

use tidings_store_redis::{RedisConfig, RedisStore};
use tidings_store_tests::WithGuard;

mod server;

pub use server::{RedisServer, have_redis_server};

/// What keeps a test's Redis usable: the shared private server, or, with `TIDINGS_REDIS_URL`,
/// the prefix to delete when the test ends.
#[derive(Debug)]
pub enum Guard {
    /// A private server, shared by the tests running at the same time.
    Private(Arc<RedisServer>),
    /// An external server: the test's keys are deleted on drop.
    External { url: String, prefix: String },
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::External { url, prefix } = self {
            let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
            else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
    }
}

static SHARED: Mutex<Weak<RedisServer>> = Mutex::new(Weak::new());

/// The private server shared by the stores alive now, started if there is none.
fn shared_server() -> Arc<RedisServer> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = shared.upgrade() {
        return server;
    }
    assert!(
        have_redis_server(),
        "the redis store tests need a Redis: set TIDINGS_REDIS_URL=redis://… or put \
         redis-server on PATH (apt-get install redis-server, or scripts/redis-test-server)"
    );
    let server = Arc::new(RedisServer::start());
    *shared = Arc::downgrade(&server);
    server
}

/// A random key prefix.
pub fn random_prefix() -> String {
    format!("tidings-test:{:016x}:", fastrand::u64(..))
}

/// A store on a fresh prefix, configured with `tune`.
pub fn store_with(tune: impl FnOnce(&mut RedisConfig)) -> WithGuard<RedisStore, Guard> {
    let prefix = random_prefix();
    let (url, guard) = match std::env::var("TIDINGS_REDIS_URL") {
        Ok(url) if !url.is_empty() => (
            url.clone(),
            Guard::External {
                url,
                prefix: prefix.clone(),
            },
        ),
        _ => {
            let server = shared_server();
            (server.url(), Guard::Private(server))
        }
    };
    let mut config = RedisConfig {
        url,
        prefix,
        ..RedisConfig::default()
    };
    tune(&mut config);
    let store = RedisStore::open(config).expect("valid redis config");
    WithGuard { store, guard }
}

/// A store on a fresh prefix (default configuration), with that prefix and a connection of
/// its own to the same Redis: for tests that look at, or write, the keys behind the store.
pub fn store_and_direct_connection() -> (WithGuard<RedisStore, Guard>, String, redis::Connection) {
    let h = store_with(|_| {});
    let prefix = h.store.config().prefix.clone();
    let conn = redis::Client::open(h.store.config().url.as_str())
        .and_then(|client| client.get_connection())
        .expect("a connection to the test Redis");
    (h, prefix, conn)
}

/// A store for the conformance suite: a single server process, so `release_in_flight`
/// releases (see the crate docs on shared stores).
pub fn conformance_store() -> WithGuard<RedisStore, Guard> {
    store_with(|c| c.is_shared = false)
}
