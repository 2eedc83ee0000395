//! Events the server emits to the client ([`ServerEvent`], received through an
//! [`EventStream`]) and acknowledgements in both directions.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidings_proto::packet::Packet;
use tokio::sync::mpsc;

use crate::Client;
use crate::core::{Core, Outgoing, encode_frames};
use crate::error::EmitError;

/// The arguments of an acknowledgement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AckReply {
    /// The JSON arguments; binary values appear as placeholders (see [`AckReply::binary`]).
    pub args: Vec<Value>,
    /// The binary attachments, indexed by the placeholders' `num`.
    pub attachments: Vec<Bytes>,
}

impl AckReply {
    /// The first argument deserialized as `T` (a missing argument deserializes from `null`).
    ///
    /// # Errors
    ///
    /// When the argument does not deserialize as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.args.first().unwrap_or(&Value::Null))
    }

    /// The bytes a placeholder value refers to.
    pub fn binary(&self, value: &Value) -> Option<&Bytes> {
        resolve_placeholder(value, &self.attachments)
    }
}

pub(crate) fn resolve_placeholder<'a>(
    value: &Value,
    attachments: &'a [Bytes],
) -> Option<&'a Bytes> {
    if value.get("_placeholder").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let num = value.get("num").and_then(Value::as_u64)?;
    attachments.get(usize::try_from(num).ok()?)
}

/// The right to acknowledge one server event, on the connection it arrived on.
pub(crate) struct AckHandle {
    core: Arc<Core>,
    /// The connection the event arrived on. Ack ids belong to it: sent on a later connection,
    /// the id would settle some other pending ack of the server.
    epoch: u64,
    id: u64,
    used: AtomicBool,
}

impl fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckHandle")
            .field("id", &self.id)
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl AckHandle {
    pub(crate) fn new(core: Arc<Core>, epoch: u64, id: u64) -> Self {
        AckHandle {
            core,
            epoch,
            id,
            used: AtomicBool::new(false),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Queues the ACK packet, once.
    pub(crate) async fn send(
        &self,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Result<(), EmitError> {
        let packet = Packet::ack(
            &self.core.options.namespace,
            self.id,
            args,
            attachments.len(),
        );
        let frames = encode_frames(&self.core, &packet, attachments)?;
        if self.used.swap(true, Ordering::AcqRel) {
            return Err(EmitError::AlreadyAcknowledged);
        }
        if self.core.live_epoch() != Some(self.epoch) {
            return Err(EmitError::ConnectionLost);
        }
        self.core
            .send(Outgoing {
                frames,
                epoch: Some(self.epoch),
                ack: None,
            })
            .await
    }
}

/// An event the server emitted to this client, as an [`EventStream`] yields it.
///
/// When several streams listen to the same event, each gets a copy; the copies share one
/// acknowledgement, which the first [`ServerEvent::ack`] sends.
#[derive(Clone)]
pub struct ServerEvent {
    /// The event name.
    pub event: String,
    /// The arguments after the event name. Binary values appear as placeholders
    /// `{"_placeholder":true,"num":N}`; resolve them with [`ServerEvent::binary`].
    pub args: Vec<Value>,
    /// The binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
    pub(crate) ack: Option<Arc<AckHandle>>,
}

impl fmt::Debug for ServerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEvent")
            .field("event", &self.event)
            .field("args", &self.args)
            .field("attachments", &self.attachments.len())
            .field("wants_ack", &self.wants_ack())
            .finish()
    }
}

impl ServerEvent {
    /// The first argument deserialized as `T` (a missing argument deserializes from `null`).
    ///
    /// # Errors
    ///
    /// When the argument does not deserialize as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.args.first().unwrap_or(&Value::Null))
    }

    /// The bytes a placeholder value refers to, if `value` is a placeholder of this event.
    pub fn binary(&self, value: &Value) -> Option<&Bytes> {
        resolve_placeholder(value, &self.attachments)
    }

    /// Whether the server asked for an acknowledgement.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Acknowledges with one argument.
    ///
    /// # Errors
    ///
    /// [`EmitError::NoAckRequested`], [`EmitError::AlreadyAcknowledged`],
    /// [`EmitError::ConnectionLost`] when the connection the event came on is gone (the server
    /// has given up on this ack), [`EmitError::Closed`], or a serialization error.
    pub async fn ack<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), EmitError> {
        let value = serde_json::to_value(data)?;
        self.ack_args(vec![value], Vec::new()).await
    }

    /// Acknowledges with several arguments and binary attachments (referenced from `args` by
    /// [`crate::placeholder`]). No arguments is a plain "done".
    ///
    /// # Errors
    ///
    /// As [`ServerEvent::ack`], plus [`EmitError::InvalidPlaceholders`] and
    /// [`EmitError::TooLarge`].
    pub async fn ack_args(
        &self,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Result<(), EmitError> {
        match &self.ack {
            Some(handle) => handle.send(args, attachments).await,
            None => Err(EmitError::NoAckRequested),
        }
    }
}

/// The events of one name, as the server emits them: a [`Stream`] of [`ServerEvent`]s from
/// [`Client::on`]. Also readable without `StreamExt` through [`EventStream::recv`].
///
/// Events are buffered without bound until read (the connection task never waits for a slow
/// reader, so that it keeps answering the server's pings). The stream ends when the client
/// closes. Dropping it stops the listening; events nobody listens to are dropped, and if they
/// asked for an acknowledgement none is sent.
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<ServerEvent>,
    // Keeps the connection alive while someone listens.
    client: Client,
    id: u64,
    event: String,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(
        client: Client,
        id: u64,
        event: String,
        rx: mpsc::UnboundedReceiver<ServerEvent>,
    ) -> Self {
        EventStream {
            rx,
            client,
            id,
            event,
        }
    }

    /// The next event; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<ServerEvent> {
        self.rx.recv().await
    }

    /// The event name this stream listens to.
    pub fn event(&self) -> &str {
        &self.event
    }
}

impl Stream for EventStream {
    type Item = ServerEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ServerEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.client.core().remove_listener(&self.event, self.id);
    }
}
