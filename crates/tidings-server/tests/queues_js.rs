//! Durable topics with the npm `socket.io-client` (tests/clients/js/queue-*.mjs) against the
//! interop app with queues on a real SQLite file. Each scenario runs over WebSocket only and
//! over polling only; the server settings each one needs come from its [`Profile`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod queue_support;
mod support;

macro_rules! js_queue_scenarios {
    ($($name:ident => $script:literal, $profile:ident;)*) => {
        $(
            mod $name {
                use super::queue_support::{self, Profile};
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn websocket() {
                    queue_support::run_js($script, Profile::$profile, "websocket").await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn polling() {
                    queue_support::run_js($script, Profile::$profile, "polling").await
                }
            }
        )*
    };
}

js_queue_scenarios! {
    basics => "queue-basics.mjs", Long;
    catchup => "queue-catchup.mjs", Long;
    redelivery => "queue-redelivery.mjs", Redelivery;
    dead_letters => "queue-deadletters.mjs", DeadLetters;
    groups => "queue-groups.mjs", Long;
    gap => "queue-gap.mjs", Long;
}

/// Regression test of a server bug fixed when these tests came (dadc85a "fix(queue): never
/// deliver an entry twice at once"): the store's ack deadline of a claimed message ran from
/// *before* the claim (`ClaimOptions::now`), the server's own ack timer from when it sends the
/// delivery. When the claim answered late (slow fsync, busy writer) the deadline had passed by
/// the time the message was sent, the dispatcher's next claim handed the same message out again
/// (attempt 2) while the first delivery was in flight, and the stale delivery's settle/requeue
/// then acted on the shared entry: clients saw an acked message delivered again. Now the
/// dispatcher never resends an entry it still awaits, and the store's deadline is a looser
/// backstop (the dispatcher's `store_deadline`). The store here answers claims late on
/// purpose ([`queue_support::Profile::SlowClaims`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_once_with_slow_claims() {
    queue_support::run_js(
        "queue-acked-once.mjs",
        queue_support::Profile::SlowClaims,
        "websocket",
    )
    .await
}
