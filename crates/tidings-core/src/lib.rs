//! Shared types of tidings.
//!
//! This crate holds what every other tidings crate agrees on and nothing else: identifiers
//! ([`Sid`]), room names ([`Room`]), the error body that every built-in event acknowledges
//! with ([`ErrorBody`]) the durable [`store::Store`] seam and the Connection State Recovery [`session_log::SessionLog`] seam. Backends (the durable stores, the Redis cluster) depend on this crate,
//! never on the server crate, so that the server can depend on them.
#![forbid(unsafe_code)]

pub mod binary;
pub mod clock;
pub mod cluster;
mod error;
mod id;
pub mod metrics;
pub mod pattern;
mod room;
pub mod session_log;
pub mod store;

pub use error::{ErrorBody, ErrorCode};
pub use id::{Sid, SidParseError};
pub use pattern::topic_matches;
pub use room::Room;

/// The URL with its password replaced by `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(p) => format!("{scheme}://{authority}/{p}"),
        None => format!("{scheme}://{authority}"),
    }
}
