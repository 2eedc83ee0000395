//! [`FaultyStore`](tidings_store_tests::faulty::FaultyStore) with no fault switched on must be
//! transparent: the whole conformance suite and the model test pass through it, so that a fault
//! test against it measures the fault and nothing else.

tidings_store_tests::store_conformance_tests!(
    tidings_store_tests::faulty::FaultyStore::new(tidings_store_memory::MemoryStore::new()),
    model_cases = 32
);
