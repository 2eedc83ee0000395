//! The conformance suite of the tidings [`Store`] seam: every backend passes it.
//!
//! It has two parts:
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
//! The tests run on a current-thread Tokio runtime ([`block_on`]), so the backend crate needs no
//! Tokio dev-dependency of its own.
#![forbid(unsafe_code)]
// This crate is test code: its functions are assertions, and a panic is how they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod conformance;
pub mod faulty;
pub mod model;

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
            duplicate_key_within_window_stores_nothing,
            duplicate_key_after_window_appends,
            retention_forgets_idempotency_keys,
            subscribe_start_positions,
            subscribe_invalid_offset_changes_nothing,
            resubscribe_keeps_state,
            claim_hands_out_new_messages_in_order,
            claim_redelivers_after_ack_deadline,
            claim_hands_out_due_entries_before_new,
            requeue_waits_until_not_before,
            ack_settles_once,
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
