//! What the handle and the connection task share: the options, the connection state, the
//! routes of incoming events and deliveries, and the command channel.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tidings_core::Sid;
use tidings_proto::engine::Frame;
use tidings_proto::packet::{Packet, validate_placeholders};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::EmitError;
use crate::event::{AckReply, ServerEvent};
use crate::options::ClientOptions;
use crate::queue::{Delivery, Unclaimed};

/// The most deliveries held for a subscription that does not exist yet; past it the oldest is
/// dropped (left unacknowledged).
pub(crate) const UNCLAIMED_CAP: usize = 1024;

/// Where the client's connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected to the namespace; emits go out at once.
    Connected,
    /// The connection dropped; the client is reconnecting with backoff. Emits wait (up to
    /// [`ClientOptions::command_capacity`] of them) and go out once reconnected.
    Reconnecting,
    /// The client is closed for good; see the reason.
    Closed(CloseReason),
}

/// Why a client closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`crate::Client::disconnect`] was called, or every handle was dropped.
    ClientDisconnect,
    /// The server removed the client from the namespace (`socket.disconnect()` on the server).
    /// As with `socket.io-client`, the client does not reconnect.
    ServerDisconnect,
    /// The connection dropped and reconnecting is off ([`ClientOptions::reconnect`]).
    ConnectionLost,
    /// A reconnect attempt was refused by the server (e.g. its middleware no longer accepts
    /// the auth payload). As with `socket.io-client`, the client stops there.
    ReconnectRefused {
        /// The server's reason.
        message: String,
    },
    /// [`ClientOptions::max_reconnect_attempts`] attempts in a row failed.
    ReconnectAttemptsExhausted,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientDisconnect => f.write_str("client disconnect"),
            CloseReason::ServerDisconnect => f.write_str("server disconnect"),
            CloseReason::ConnectionLost => f.write_str("connection lost"),
            CloseReason::ReconnectRefused { message } => {
                write!(f, "reconnect refused: {message}")
            }
            CloseReason::ReconnectAttemptsExhausted => f.write_str("reconnect attempts exhausted"),
        }
    }
}

/// A durable subscription's route: its topic and group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SubKey {
    pub(crate) topic: String,
    pub(crate) group: Option<String>,
}

pub(crate) struct SubEntry {
    /// Tells this entry from a later one for the same key.
    pub(crate) id: u64,
    pub(crate) tx: mpsc::UnboundedSender<Delivery>,
    /// The server acknowledged the subscribe: the entry is re-subscribed after a reconnect.
    /// (An unconfirmed entry still has its own subscribe request on the way.)
    pub(crate) confirmed: bool,
}

#[derive(Default)]
pub(crate) struct Routes {
    next_id: u64,
    pub(crate) listeners: HashMap<String, Vec<(u64, mpsc::UnboundedSender<ServerEvent>)>>,
    pub(crate) subscriptions: HashMap<SubKey, SubEntry>,
    /// Deliveries of the live connection that no subscription took yet, oldest first: a
    /// tidings server starts delivering an identity's queues as soon as it connects, before
    /// the application had the chance to call `subscribe`.
    pub(crate) unclaimed: VecDeque<Unclaimed>,
}

impl Routes {
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// A pending acknowledgement the connection task settles.
pub(crate) struct PendingAck {
    pub(crate) id: u64,
    pub(crate) tx: oneshot::Sender<AckReply>,
    /// A subscribe request: on `{ok:true}` the task confirms this route entry (key, entry id)
    /// before the caller hears of it, so that a reconnect in between still re-subscribes it.
    pub(crate) confirms: Option<(SubKey, u64)>,
}

/// One packet for the connection task to write: its frames, already encoded by the caller.
pub(crate) struct Outgoing {
    pub(crate) frames: Vec<Frame>,
    /// Write only on this connection (acknowledgements); dropped if it is gone.
    pub(crate) epoch: Option<u64>,
    pub(crate) ack: Option<PendingAck>,
}

pub(crate) struct Core {
    pub(crate) options: ClientOptions,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) sid: Mutex<Option<Sid>>,
    /// The epoch of the live connection; 0 while there is none.
    epoch: AtomicU64,
    /// The server's `maxPayload` from the last handshake.
    max_payload: AtomicUsize,
    next_ack_id: AtomicU64,
    pub(crate) routes: Mutex<Routes>,
    commands: mpsc::Sender<Outgoing>,
}

impl Core {
    pub(crate) fn new(
        options: ClientOptions,
        commands: mpsc::Sender<Outgoing>,
        state: ConnectionState,
    ) -> Core {
        Core {
            options,
            state: watch::Sender::new(state),
            sid: Mutex::new(None),
            epoch: AtomicU64::new(0),
            max_payload: AtomicUsize::new(usize::MAX),
            next_ack_id: AtomicU64::new(0),
            routes: Mutex::new(Routes::default()),
            commands,
        }
    }

    pub(crate) fn live_epoch(&self) -> Option<u64> {
        match self.epoch.load(Ordering::Acquire) {
            0 => None,
            epoch => Some(epoch),
        }
    }

    /// Called by the task when a connection is up.
    pub(crate) fn connected(&self, epoch: u64, sid: Sid, max_payload: usize) {
        *self.sid.lock() = Some(sid);
        self.max_payload.store(max_payload, Ordering::Release);
        self.epoch.store(epoch, Ordering::Release);
        self.state.send_replace(ConnectionState::Connected);
    }

    /// Called by the task when the connection is gone.
    pub(crate) fn disconnected(&self, state: ConnectionState) {
        self.epoch.store(0, Ordering::Release);
        *self.sid.lock() = None;
        // Their ack ids died with the connection; the server redelivers them.
        self.routes.lock().unclaimed.clear();
        self.state.send_replace(state);
    }

    /// Hands a delivery to the live subscription of its topic and group, or holds it until
    /// one claims it ([`Core::claim_unclaimed`]).
    pub(crate) fn route_delivery(self: &Arc<Self>, delivery: Unclaimed) {
        let mut routes = self.routes.lock();
        let key = delivery.meta.key();
        if let Some(entry) = routes.subscriptions.get(&key).filter(|e| !e.tx.is_closed()) {
            tracing::trace!(topic = %key.topic, offset = delivery.meta.offset, "delivery");
            if let Err(returned) = entry.tx.send(delivery.into_delivery(self.clone())) {
                returned.0.forget();
            }
            return;
        }
        tracing::debug!(topic = %key.topic, offset = delivery.meta.offset, "delivery held until a subscription claims it");
        routes.unclaimed.push_back(delivery);
        if routes.unclaimed.len() > UNCLAIMED_CAP {
            if let Some(dropped) = routes.unclaimed.pop_front() {
                tracing::debug!(topic = %dropped.meta.topic, offset = dropped.meta.offset, "unclaimed delivery dropped, left unacknowledged");
            }
        }
    }

    /// Inserts the route of a new subscription and hands it the deliveries held for it, in
    /// arrival order, under one lock so that none can overtake them. Returns the entry id, or
    /// `None` when a live subscription has the key already.
    pub(crate) fn add_subscription(
        self: &Arc<Self>,
        key: &SubKey,
        tx: mpsc::UnboundedSender<Delivery>,
    ) -> Option<u64> {
        let mut routes = self.routes.lock();
        if routes
            .subscriptions
            .get(key)
            .is_some_and(|e| !e.tx.is_closed())
        {
            return None;
        }
        let id = routes.next_id();
        let epoch = self.live_epoch();
        let held = std::mem::take(&mut routes.unclaimed);
        for delivery in held {
            if delivery.meta.key() == *key && Some(delivery.epoch) == epoch {
                if let Err(returned) = tx.send(delivery.into_delivery(self.clone())) {
                    returned.0.forget();
                }
            } else {
                routes.unclaimed.push_back(delivery);
            }
        }
        routes.subscriptions.insert(
            key.clone(),
            SubEntry {
                id,
                tx,
                confirmed: false,
            },
        );
        Some(id)
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        self.next_ack_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) async fn send(&self, outgoing: Outgoing) -> Result<(), EmitError> {
        self.commands
            .send(outgoing)
            .await
            .map_err(|_| EmitError::Closed)
    }

    pub(crate) fn remove_listener(&self, event: &str, id: u64) {
        let mut routes = self.routes.lock();
        if let Some(list) = routes.listeners.get_mut(event) {
            list.retain(|(other, _)| *other != id);
            if list.is_empty() {
                routes.listeners.remove(event);
            }
        }
    }

    /// Removes the route of `key` if it is still entry `id`.
    pub(crate) fn remove_subscription(&self, key: &SubKey, id: u64) {
        let mut routes = self.routes.lock();
        if routes.subscriptions.get(key).is_some_and(|e| e.id == id) {
            routes.subscriptions.remove(key);
        }
    }
}

/// The frames of `packet` followed by its attachments, checked against the placeholders and
/// the server's `maxPayload`.
pub(crate) fn encode_frames(
    core: &Core,
    packet: &Packet,
    attachments: Vec<Bytes>,
) -> Result<Vec<Frame>, EmitError> {
    if !attachments.is_empty() {
        if let Some(data) = &packet.data {
            validate_placeholders(data, attachments.len())
                .map_err(EmitError::InvalidPlaceholders)?;
        }
    }
    let mut frames = Vec::with_capacity(1 + attachments.len());
    frames.push(packet.to_frame());
    frames.extend(attachments.into_iter().map(Frame::binary));
    let max = core.max_payload.load(Ordering::Acquire);
    if let Some(size) = frames
        .iter()
        .map(Frame::len)
        .max()
        .filter(|&size| size > max)
    {
        return Err(EmitError::TooLarge { size, max });
    }
    Ok(frames)
}
