//! The tidings server library: a Socket.IO server (Engine.IO v4 + Socket.IO v5) that
//! unmodified `socket.io-client` and `python-socketio` clients use as they are.
//!
//! - [`Server`] holds namespaces ([`Server::of`], [`Server::of_dynamic`]) and serves HTTP.
//! - [`Namespace`] has connect middleware, a connect handler, rooms and broadcasts.
//! - [`Socket`] is one client in one namespace: event handlers, emits, acks, rooms, data.
//!
//! No silent drops: every emit either queues its frames for the recipient, in order, or
//! disconnects a recipient that cannot keep up (see [`ServerConfig::max_buffered_bytes`]).
#![forbid(unsafe_code)]

mod access;
pub mod admin_ui;
pub mod api;
pub mod auth;
mod cluster;
pub mod command;
pub mod config;
pub mod dashboard;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
mod inbound;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod queue;
pub mod recovery;
mod server;
pub mod tls;

pub use admin_ui::{AdminAuth, AdminUiConfig, AdminUiError};
pub use auth::{AccessRule, Action, AuthError, Authenticator, KeyError, Permissions, Principal};
pub use config::{
    ConfigError, CorsConfig, CorsOrigins, Parser, RecoveryConfig, ServerConfig, ServerConfigBuilder,
};
pub use io::{
    AckError, AckReply, AckSender, BroadcastAcks, BroadcastOperator, ConnectError, ConnectRequest,
    DisconnectReason, EmitError, Event, JoinError, Namespace, ServerSideAck, Socket, SocketData,
};
pub use limits::Limits;
pub use queue::{QueueConfig, Queues, RetentionRule};
pub use recovery::MemorySessionLog;
/// The rustls version of [`Server::serve_tls`] and [`tls::server_config_from_pem`].
pub use rustls;
pub use server::{Server, ServerStats};
pub use tidings_core::cluster::RemoteSocket;
pub use tidings_core::{ErrorBody, ErrorCode, Room, Sid};
