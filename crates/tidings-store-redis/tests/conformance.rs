//! The store conformance suite and the model test against [`RedisStore`], each test (and each
//! model case) on a fresh key prefix of a private `redis-server` (or of `TIDINGS_REDIS_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

tidings_store_tests::store_conformance_tests!(common::conformance_store(), model_cases = 64);
