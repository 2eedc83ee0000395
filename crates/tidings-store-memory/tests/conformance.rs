//! The store conformance suite and the model test against [`MemoryStore`].

tidings_store_tests::store_conformance_tests!(
    tidings_store_memory::MemoryStore::new(),
    model_cases = 256
);
