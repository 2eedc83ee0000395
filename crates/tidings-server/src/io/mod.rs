//! The Socket.IO v5 layer: namespaces, sockets, rooms, events, acks and broadcasts, on top of
//! the Engine.IO sessions of [`crate::engine`].

mod client;
mod event;
mod namespace;
mod pending;
mod socket;
mod v2;

pub(crate) use client::Client;
pub use event::{AckError, AckReply, AckSender, EmitError, Event, extract_attachments};
pub(crate) use event::{event_frames, is_reserved_event};
pub use namespace::{
    BroadcastAcks, BroadcastOperator, ConnectError, ConnectRequest, Namespace, ServerSideAck,
};
pub(crate) use namespace::{SocketEvent, SocketObserver};
pub use socket::{DisconnectReason, JoinError, PendingAck, Socket, SocketData};
