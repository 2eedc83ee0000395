//! The async Rust client of tidings: Socket.IO v5 events, acknowledgements and binary
//! attachments, plus the durable topics of a tidings server (publish, subscribe, ack/requeue).
//!
//! The model is the `async-nats` one: [`ClientOptions`] (a builder with documented defaults)
//! → [`Client::connect`] → a cheap-clone [`Client`] handle that sends commands to one
//! connection task. The task owns the WebSocket, answers the server's pings, encodes and
//! decodes packets (binary attachments included), settles pending acknowledgements, and
//! reconnects with jittered exponential backoff when the connection drops — sending the same
//! auth payload again, then re-subscribing the live durable subscriptions so that the server
//! resumes them.
//!
//! Transport: WebSocket only (Engine.IO v4 without HTTP long-polling), plain `ws://` (no TLS
//! yet). Any Socket.IO v5 server that accepts WebSocket-only clients works for the event API;
//! the durable-topic API needs a tidings server.
//!
//! - Events: [`Client::emit`], [`Client::emit_args`], [`Client::emit_with_ack`],
//!   [`Client::emit_args_with_ack`], [`Client::on`] → [`EventStream`] of [`ServerEvent`]s
//!   (acknowledge with [`ServerEvent::ack`]).
//! - Durable topics: [`Client::publish`], [`Client::publish_with_key`], [`Client::subscribe`]
//!   → [`Subscription`] of [`Delivery`]s ([`Delivery::ack`], [`Delivery::requeue`]),
//!   [`Client::unsubscribe`], [`Client::history`], [`Client::gaps`]. The wire contract is
//!   described in [`queue`].
//! - Lifecycle: [`Client::state`], [`Client::watch_state`], [`Client::id`],
//!   [`Client::disconnect`].
//!
//! Every operation family has its own error enum: [`ConnectError`], [`EmitError`],
//! [`AckError`], [`PublishError`], [`SubscribeError`], [`HistoryError`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tidings_client::{Client, ClientOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect(ClientOptions::builder("http://127.0.0.1:3000").build()?).await?;
//! let mut chat = client.on("chat");
//! client.emit_with_ack("join", &serde_json::json!({ "room": "lobby" }), Duration::from_secs(5)).await?;
//! while let Some(event) = chat.recv().await {
//!     println!("{}: {:?}", event.event, event.args);
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod backoff;
mod client;
mod connection;
mod core;
mod error;
mod event;
mod options;
pub mod queue;

pub use bytes::Bytes;
pub use client::Client;
pub use core::{CloseReason, ConnectionState};
pub use error::{
    AckError, ConnectError, EmitError, HistoryError, PublishError, SubscribeError, TransportError,
};
pub use event::{AckReply, EventStream, ServerEvent};
pub use options::{ClientOptions, ClientOptionsBuilder, OptionsError};
pub use queue::{
    Delivery, DeliveryMeta, Gap, GapStream, HistoryMessage, Published, SubscribeOptions,
    Subscription,
};
/// The rustls version of [`ClientOptionsBuilder::tls`].
pub use rustls;
pub use tidings_core::store::{MessageId, Millis, NameError, Offset, StartFrom, Topic};
pub use tidings_core::{ErrorCode, Sid};
pub use tidings_proto::packet::placeholder;
