//! Shared types of tidings.
//!
//! This crate holds what every other tidings crate agrees on and nothing else: identifiers
//! ([`Sid`]), room names ([`Room`]), the error body that every built-in event acknowledges
//! with ([`ErrorBody`]) the durable [`store::Store`] seam and the Connection State Recovery [`session_log::SessionLog`] seam. Backends (the durable stores, the Redis cluster) depend on this crate,
//! never on the server crate, so that the server can depend on them.
#![forbid(unsafe_code)]

pub mod cluster;
mod error;
mod id;
mod room;
pub mod session_log;
pub mod store;

pub use error::{ErrorBody, ErrorCode};
pub use id::{Sid, SidParseError};
pub use room::Room;
