//! Durable topics with the PyPI `python-socketio` client (tests/clients/py/queue_*.py) against
//! the interop app with queues on a real SQLite file, over WebSocket only and polling only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod queue_support;
mod support;

macro_rules! py_queue_scenarios {
    ($($name:ident => $script:literal, $profile:ident;)*) => {
        $(
            mod $name {
                use super::queue_support::{self, Profile};
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn websocket() {
                    queue_support::run_py($script, Profile::$profile, "websocket").await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn polling() {
                    queue_support::run_py($script, Profile::$profile, "polling").await
                }
            }
        )*
    };
}

py_queue_scenarios! {
    basics => "queue_basics.py", Long;
    catchup => "queue_catchup.py", Long;
    redelivery => "queue_redelivery.py", Redelivery;
    dead_letters => "queue_deadletters.py", DeadLetters;
    groups => "queue_groups.py", Long;
}
