//! The conformance suites of the tidings seams with several backends: every [`Store`] backend
//! and every [`SessionLog`](tidings_core::session_log::SessionLog) backend passes its suite.
//!
//! The [`Store`] suite has two parts:
//! - [`conformance`]: one `pub async fn` per behaviour of the trait's doc contracts, each
//!   taking a fresh store;
//! - [`model`]: a model-based property test: random sequences of operations applied to the
//!   backend and to a plain `BTreeMap` model, comparing every result and the whole visible state
//!   after each step.
//!
//! A backend's `tests/conformance.rs` is one macro call, which expands into one `#[test]` per
//! behaviour plus the model test:
//!
//! ```ignore
//! tidings_store_tests::store_conformance_tests!(tidings_store_memory::MemoryStore::new());
//! ```
//!
//! The expression is evaluated once per test (and once per model case). It may be the store
//! itself or any [`Harness`], e.g. a [`WithGuard`] that keeps a temporary directory alive
//! while the store uses it. An optional `model_cases = N` sets how many random sequences the
//! model test runs (default 64; the `PROPTEST_CASES` environment variable overrides both).
//!
//! The [`session_log`] suite (Connection State Recovery logs) is one `pub async fn` per
//! behaviour too, in three groups run by three macros, each taking a
//! [`LogBackend`](session_log::LogBackend) (something that opens logs on one storage):
//!
//! ```ignore
//! // Every log; a `Fn() -> impl SessionLog` is a backend.
//! tidings_store_tests::session_log_conformance_tests!(MemorySessionLog::new);
//! // A log whose content outlives the process, and one that several nodes share.
//! tidings_store_tests::session_log_restart_tests!(redis_backend());
//! tidings_store_tests::session_log_shared_tests!(redis_backend());
//! ```
//!
//! The tests run on a current-thread Tokio runtime ([`block_on`]), so the backend crate needs no
//! Tokio dev-dependency of its own.
#![forbid(unsafe_code)]
// This crate is test code: its functions are assertions, and a panic is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod conformance;
pub mod crash;
pub mod faulty;
pub mod model;
pub mod session_log;

use std::future::Future;

use tidings_core::store::Store;

/// Something that holds a store under test: the store itself, or a store with what must live
/// as long as it ([`WithGuard`]).
pub trait Harness {
    /// The store type.
    type Store: Store;
    /// The store under test.
    fn store(&self) -> &Self::Store;
}

impl<S: Store> Harness for S {
    type Store = S;
    fn store(&self) -> &S {
        self
    }
}

/// A store and a guard that must outlive it (a temporary directory, a server process).
/// Fields drop in order: the store first, then the guard.
#[derive(Debug)]
pub struct WithGuard<S, G> {
    /// The store under test.
    pub store: S,
    /// Dropped after the store.
    pub guard: G,
}

impl<S: Store, G> Harness for WithGuard<S, G> {
    type Store = S;
    fn store(&self) -> &S {
        &self.store
    }
}

/// Runs a future to completion on a new current-thread Tokio runtime with time enabled.
///
/// # Panics
///
/// If the runtime cannot be built (out of file descriptors), which fails the test.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime for a store test")
        .block_on(future)
}

/// Expands into one `#[test]` per behaviour of [`conformance`] plus `model_based` (the
/// [`model`] property test), each on a store made by evaluating the given expression.
///
/// ```ignore
/// tidings_store_tests::store_conformance_tests!(MemoryStore::new());
/// tidings_store_tests::store_conformance_tests!(temp_store(), model_cases = 24);
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!($make, model_cases = 64);
    };
    ($make:expr, model_cases = $cases:expr) => {
        $crate::__conformance_tests!(
            $make;
            append_assigns_offsets_per_topic,
            append_keeps_payloads_byte_for_byte,
            binary_attachments_are_kept,
            bounded_and_duplicate_appends_keep_attachments,
            duplicate_key_within_window_stores_nothing,
            duplicate_key_after_window_appends,
            retention_forgets_idempotency_keys,
            subscribe_start_positions,
            subscribe_invalid_offset_changes_nothing,
            resubscribe_keeps_state,
            claim_hands_out_new_messages_in_order,
            claim_redelivers_after_ack_deadline,
            claim_reports_the_next_due_time,
            claim_hands_out_due_entries_before_new,
            requeue_waits_until_not_before,
            ack_settles_once,
            settle_applies_a_batch_in_order,
            settle_and_claim_is_settle_then_claim,
            max_deliveries_dead_letters,
            dead_letters_do_not_count_against_max,
            max_deliveries_zero_dead_letters_new_messages,
            requeue_dead_requeues_every_subscription,
            dead_letter_outlives_retention,
            unsubscribe_removes_queue_and_dead_letters,
            group_and_identity_are_independent,
            group_memberships,
            release_in_flight_redelivers_at_once,
            history_from_and_limit,
            topic_info_counts,
            retention_by_count_reports_gaps,
            retention_by_age,
            retention_by_bytes,
            retention_trims_from_the_front,
            retention_of_everything,
            not_found_errors,
            topics_and_subscriptions,
            bounded_append_rejects_when_a_queue_is_full,
            bounded_append_drops_oldest,
            oldest_unsettled_is_right_when_reported,
        );
        #[test]
        fn model_based() {
            $crate::model::check(|| $make, $cases);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let harness = $make;
                $crate::block_on($crate::conformance::$name($crate::Harness::store(&harness)));
            }
        )*
    };
}

/// Expands into one `#[test]` per behaviour every [`SessionLog`] must have (the `pub async fn`s
/// at the top of [`session_log`]), each on a log opened by the [`LogBackend`] the expression
/// makes. The expression is evaluated once per test, outside the runtime; the log is opened
/// inside it.
///
/// ```ignore
/// tidings_store_tests::session_log_conformance_tests!(MemorySessionLog::new);
/// tidings_store_tests::session_log_conformance_tests!(temp_file_backend());
/// ```
///
/// [`SessionLog`]: tidings_core::session_log::SessionLog
/// [`LogBackend`]: session_log::LogBackend
#[macro_export]
macro_rules! session_log_conformance_tests {
    ($backend:expr) => {
        $crate::__session_log_tests!(
            $backend;
            offsets_grow_strictly,
            offsets_carry_the_wall_clock,
            concurrent_appends_are_all_replayed_in_order,
            append_keeps_every_field,
            since_returns_what_follows_the_offset,
            packets_appended_out_of_order_replay_in_offset_order,
            since_keeps_to_its_namespace,
            since_applies_rooms_and_exceptions,
            a_packet_for_several_rooms_is_replayed_once,
            reads_see_the_writes_before_them,
            a_session_is_taken_once,
            live_sessions_are_not_taken_while_their_process_lives,
            persist_replaces_the_record_of_its_pid,
            a_recovering_session_gets_exactly_what_it_missed,
            replays_are_complete_until_a_trim,
            trim_drops_what_is_older_than_the_window,
            trim_keeps_what_is_exactly_at_the_cut,
            trims_are_idempotent_and_appends_go_on,
            flush_answers_after_the_writes,
        );
    };
}

/// Expands into one `#[test]` per behaviour of [`session_log::restart`], for a backend whose
/// logs keep their content when closed and opened again (SQLite, Redis).
#[macro_export]
macro_rules! session_log_restart_tests {
    ($backend:expr) => {
        $crate::__session_log_backend_tests!(
            $backend; restart;
            flushed_writes_reach_the_storage,
            flushed_writes_survive_a_reopen,
            offsets_keep_growing_across_a_reopen,
            the_trim_survives_a_reopen,
        );
    };
}

/// Expands into one `#[test]` per behaviour of [`session_log::shared`], for a backend whose
/// logs several nodes use at once (Redis).
#[macro_export]
macro_rules! session_log_shared_tests {
    ($backend:expr) => {
        $crate::__session_log_backend_tests!(
            $backend; shared;
            nodes_never_hand_out_the_same_offset,
            a_session_is_taken_once_across_nodes,
            every_node_replays_every_nodes_packets,
            a_new_node_starts_above_the_logged_offsets,
            a_trim_by_one_node_holds_for_all,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __session_log_tests {
    ($backend:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let backend = $backend;
                $crate::block_on(async {
                    let log = $crate::session_log::LogBackend::open(&backend).await;
                    $crate::session_log::$name(&log).await;
                });
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __session_log_backend_tests {
    ($backend:expr; $group:ident; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let backend = $backend;
                $crate::block_on($crate::session_log::$group::$name(&backend));
            }
        )*
    };
}
