//! The [`Client`] handle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tidings_core::Sid;
use tidings_core::store::{Offset, Topic};
use tidings_proto::packet::{Packet, RESERVED_EVENTS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::connection::{Task, establish};
use crate::core::{ConnectionState, Core, Outgoing, PendingAck, SubKey, encode_frames};
use crate::error::{
    AckError, ConnectError, EmitError, HistoryError, PublishError, RequestError, SubscribeError,
};
use crate::event::{AckReply, EventStream};
use crate::options::ClientOptions;
use crate::queue::{
    self, GAP_EVENT, GapStream, HistoryMessage, Published, SubscribeOptions, Subscription,
};

/// A connection to a tidings (or any Socket.IO v5) server, over WebSocket.
///
/// `Client` is a cheap-clone handle: every clone talks to the same connection task, which owns
/// the WebSocket, answers the server's pings, and reconnects with backoff (sending the same
/// auth payload, then re-subscribing the live durable subscriptions) when the connection
/// drops. The connection closes when [`Client::disconnect`] is called or when the last handle
/// (including those held by [`EventStream`]s and [`Subscription`]s) is dropped.
///
/// Only the WebSocket transport is used (no HTTP long-polling): `ws://`, or `wss://` with
/// [`ClientOptionsBuilder::tls`](crate::ClientOptionsBuilder::tls).
///
/// ```no_run
/// use tidings_client::{Client, ClientOptions, SubscribeOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let options = ClientOptions::builder("http://127.0.0.1:3000")
///     .auth(serde_json::json!({ "clientId": "driver-7" }))
///     .build()?;
/// let client = Client::connect(options).await?;
///
/// // Plain Socket.IO events.
/// let mut news = client.on("news");
/// client.emit("hello", &"world").await?;
/// let reply = client
///     .emit_with_ack("join", &serde_json::json!({ "room": "lobby" }), std::time::Duration::from_secs(5))
///     .await?;
///
/// // Durable topics.
/// let published = client.publish("pickup", "order", &serde_json::json!({ "id": 1 })).await?;
/// let mut orders = client.subscribe(SubscribeOptions::new("pickup")).await?;
/// while let Some(delivery) = orders.recv().await {
///     println!("{} {}", delivery.meta.offset, delivery.data);
///     delivery.ack().await?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    core: Arc<Core>,
    close: CancellationToken,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        // The last handle is gone: the task says goodbye and ends.
        self.close.cancel();
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = &self.inner.core;
        f.debug_struct("Client")
            .field("url", &core.options.url)
            .field("namespace", &core.options.namespace)
            .field("state", &self.state())
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server and joins the namespace with the auth payload.
    ///
    /// One attempt, bounded by [`ClientOptions::connect_timeout`]; reconnecting applies only to
    /// a connection that was established. Spawns the connection task on the current Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Refused`] with the server's message when a connect middleware refuses
    /// the client (or the namespace does not exist); [`ConnectError::Io`],
    /// [`ConnectError::Handshake`], [`ConnectError::Timeout`] or [`ConnectError::Protocol`]
    /// when the server cannot be reached or does not speak Socket.IO v5 over WebSocket.
    pub async fn connect(options: ClientOptions) -> Result<Client, ConnectError> {
        let conn = establish(&options).await?;
        let (tx, rx) = mpsc::channel(options.command_capacity);
        tracing::info!(sid = %conn.sid, ns = %options.namespace, "connected");
        let core = Arc::new(Core::new(options, tx, ConnectionState::Connected));
        let close = CancellationToken::new();
        let mut task = Task::new(core.clone(), rx, close.clone());
        task.connected(&conn);
        tokio::spawn(task.run(conn));
        Ok(Client {
            inner: Arc::new(ClientInner { core, close }),
        })
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.core.options
    }

    /// The socket id the server gave this connection; `None` while reconnecting or closed. It
    /// changes with every reconnect.
    pub fn id(&self) -> Option<Sid> {
        *self.inner.core.sid.lock()
    }

    /// The connection's state now.
    pub fn state(&self) -> ConnectionState {
        self.inner.core.state.borrow().clone()
    }

    /// A watch of the connection's state, to wait for changes:
    /// `watch.wait_for(|s| *s == ConnectionState::Connected).await`.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.core.state.subscribe()
    }

    /// Leaves the namespace and closes the connection, after writing what was already queued.
    /// Waits until the client is closed. Every stream ends; later emits fail with
    /// [`EmitError::Closed`].
    pub async fn disconnect(&self) {
        self.inner.close.cancel();
        let mut state = self.watch_state();
        let _ = state
            .wait_for(|s| matches!(s, ConnectionState::Closed(_)))
            .await;
    }

    /// Listens to the server's `event`. Register before the event can arrive: events nobody
    /// listens to are dropped.
    pub fn on(&self, event: impl Into<String>) -> EventStream {
        let event = event.into();
        let (tx, rx) = mpsc::unbounded_channel();
        let id = {
            let mut routes = self.inner.core.routes.lock();
            let id = routes.next_id();
            routes
                .listeners
                .entry(event.clone())
                .or_default()
                .push((id, tx));
            id
        };
        EventStream::new(self.clone(), id, event, rx)
    }

    /// Emits `event` with one argument. Returns once the packet is queued for the connection
    /// (while reconnecting, it waits in the queue and goes out after the reconnect).
    ///
    /// # Errors
    ///
    /// [`EmitError::ReservedName`], [`EmitError::Serialize`], [`EmitError::TooLarge`],
    /// [`EmitError::Closed`].
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EmitError> {
        let value = serde_json::to_value(data)?;
        self.emit_args(event, vec![value], Vec::new()).await
    }

    /// Emits `event` with several arguments and binary attachments, referenced from `args` by
    /// [`crate::placeholder`]`(n)` for `attachments[n]`.
    ///
    /// # Errors
    ///
    /// As [`Client::emit`], plus [`EmitError::InvalidPlaceholders`].
    pub async fn emit_args(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Result<(), EmitError> {
        let frames = self.event_frames(event, args, attachments, None)?;
        self.inner
            .core
            .send(Outgoing {
                frames,
                epoch: None,
                ack: None,
            })
            .await
    }

    /// Emits `event` with one argument and waits up to `timeout` for the server's
    /// acknowledgement; returns its arguments.
    ///
    /// # Errors
    ///
    /// [`AckError::Timeout`], [`AckError::Disconnected`] when the connection dropped first,
    /// [`AckError::Emit`] when the emit could not be queued.
    pub async fn emit_with_ack<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        let value = serde_json::to_value(data).map_err(EmitError::from)?;
        let reply = self
            .emit_args_with_ack(event, vec![value], Vec::new(), timeout)
            .await?;
        Ok(reply.args)
    }

    /// Like [`Client::emit_with_ack`], with several arguments and binary attachments both ways.
    ///
    /// # Errors
    ///
    /// As [`Client::emit_with_ack`].
    pub async fn emit_args_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<AckReply, AckError> {
        self.request_ack(event, args, attachments, timeout, None)
            .await
    }

    async fn request_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        timeout: Duration,
        confirms: Option<(SubKey, u64)>,
    ) -> Result<AckReply, AckError> {
        let core = &self.inner.core;
        let id = core.next_ack_id();
        let frames = self.event_frames(event, args, attachments, Some(id))?;
        let (tx, rx) = oneshot::channel();
        let work = async {
            core.send(Outgoing {
                frames,
                epoch: None,
                ack: Some(PendingAck { id, tx, confirms }),
            })
            .await?;
            rx.await.map_err(|_| AckError::Disconnected)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(AckError::Timeout),
        }
    }

    fn event_frames(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        id: Option<u64>,
    ) -> Result<Vec<tidings_proto::engine::Frame>, EmitError> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(EmitError::ReservedName(event.to_owned()));
        }
        let core = &self.inner.core;
        let packet = Packet::event(&core.options.namespace, event, args, id, attachments.len());
        encode_frames(core, &packet, attachments)
    }

    /// Emits one built-in request and reads its `{ok, …}` acknowledgement.
    async fn request(
        &self,
        event: &str,
        payload: Value,
        confirms: Option<(SubKey, u64)>,
    ) -> Result<serde_json::Map<String, Value>, RequestError> {
        let timeout = self.inner.core.options.ack_timeout;
        let reply = self
            .request_ack(event, vec![payload], Vec::new(), timeout, confirms)
            .await?;
        queue::parse_reply(reply.args)
    }

    /// Publishes `data` to the durable `topic`, as `event`; returns once the server has
    /// stored it durably.
    ///
    /// # Errors
    ///
    /// [`PublishError::InvalidTopic`], [`PublishError::Server`] (e.g. `store_unavailable`:
    /// nothing was stored), [`PublishError::Timeout`] / [`PublishError::Disconnected`] (the
    /// message may or may not be stored: use [`Client::publish_with_key`] to retry safely).
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &str,
        data: &T,
    ) -> Result<Published, PublishError> {
        self.publish_inner(topic, event, data, None).await
    }

    /// Like [`Client::publish`], with an idempotency key: publishing again with the same key
    /// within the server's dedup window stores nothing new and returns the first message's id
    /// and offset with `duplicate: true`.
    ///
    /// # Errors
    ///
    /// As [`Client::publish`].
    pub async fn publish_with_key<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &str,
        data: &T,
        key: &str,
    ) -> Result<Published, PublishError> {
        self.publish_inner(topic, event, data, Some(key)).await
    }

    /// Like [`Client::publish`] (with an idempotency key when `key` is given), with binary
    /// parts: `data` references `attachments[n]` by [`crate::placeholder`]`(n)`, and
    /// subscribers receive them as binary (a Socket.IO BINARY_EVENT; [`Delivery::attachments`]
    /// here).
    ///
    /// # Errors
    ///
    /// As [`Client::publish`]; [`PublishError::Emit`] when `data`'s placeholders do not match
    /// `attachments`.
    ///
    /// [`Delivery::attachments`]: crate::Delivery::attachments
    pub async fn publish_binary(
        &self,
        topic: &str,
        event: &str,
        data: Value,
        attachments: Vec<Bytes>,
        key: Option<&str>,
    ) -> Result<Published, PublishError> {
        Topic::new(topic)?;
        let payload = queue::publish_payload(topic, event, data, key);
        let timeout = self.inner.core.options.ack_timeout;
        let reply = self
            .request_ack("publish", vec![payload], attachments, timeout, None)
            .await
            .map_err(RequestError::from)?;
        Ok(queue::parse_published(&queue::parse_reply(reply.args)?)?)
    }

    async fn publish_inner<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &str,
        data: &T,
        key: Option<&str>,
    ) -> Result<Published, PublishError> {
        Topic::new(topic)?;
        let data = serde_json::to_value(data).map_err(EmitError::from)?;
        let payload = queue::publish_payload(topic, event, data, key);
        let reply = self.request("publish", payload, None).await?;
        Ok(queue::parse_published(&reply)?)
    }

    /// Subscribes to a durable topic (as this client's identity, or as a member of a group).
    /// Needs a `clientId` in the auth payload. The returned [`Subscription`] yields the
    /// deliveries; each must be settled with [`crate::Delivery::ack`] or
    /// [`crate::Delivery::requeue`].
    ///
    /// # Errors
    ///
    /// [`SubscribeError::InvalidTopic`], [`SubscribeError::AlreadySubscribed`],
    /// [`SubscribeError::IdentityRequired`], [`SubscribeError::Server`],
    /// [`SubscribeError::Timeout`], [`SubscribeError::Disconnected`].
    pub async fn subscribe(
        &self,
        options: SubscribeOptions,
    ) -> Result<Subscription, SubscribeError> {
        let topic = Topic::new(&options.topic)?;
        let key = SubKey {
            topic: options.topic.clone(),
            group: options.group.clone(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // The route exists before the request goes out: deliveries may overtake the ack.
        let entry_id = self
            .inner
            .core
            .add_subscription(&key, tx)
            .ok_or(SubscribeError::AlreadySubscribed)?;
        // From here on, dropping the subscription removes the route, also on error.
        let subscription = Subscription::new(self.clone(), key.clone(), entry_id, topic, 0, rx);
        let payload =
            queue::subscribe_payload(&options.topic, options.group.as_deref(), options.from);
        let reply = self
            .request("subscribe", payload, Some((key, entry_id)))
            .await?;
        Ok(subscription.with_pending(queue::parse_subscribed(&reply)))
    }

    /// Ends a durable subscription on the server and stops routing its deliveries here (the
    /// [`Subscription`] stream, if any, ends after what it already holds).
    ///
    /// # Errors
    ///
    /// [`SubscribeError::InvalidTopic`], [`SubscribeError::Server`] (e.g. `not_found`),
    /// [`SubscribeError::Timeout`], [`SubscribeError::Disconnected`].
    pub async fn unsubscribe(
        &self,
        topic: &str,
        group: Option<&str>,
    ) -> Result<(), SubscribeError> {
        Topic::new(topic)?;
        let key = SubKey {
            topic: topic.to_owned(),
            group: group.map(str::to_owned),
        };
        self.inner.core.routes.lock().subscriptions.remove(&key);
        let payload = queue::unsubscribe_payload(topic, group);
        self.request("unsubscribe", payload, None).await?;
        Ok(())
    }

    /// The retained messages of `topic`, from offset `from` (default: the oldest retained) up
    /// to `limit` of them (default: the server's).
    ///
    /// # Errors
    ///
    /// [`HistoryError::InvalidTopic`], [`HistoryError::Server`], [`HistoryError::Timeout`],
    /// [`HistoryError::Disconnected`].
    pub async fn history(
        &self,
        topic: &str,
        from: Option<Offset>,
        limit: Option<usize>,
    ) -> Result<Vec<HistoryMessage>, HistoryError> {
        Topic::new(topic)?;
        let payload = queue::history_payload(topic, from, limit);
        let timeout = self.inner.core.options.ack_timeout;
        // Not `request`: the ack carries the messages' attachments.
        let reply = self
            .request_ack("history", vec![payload], Vec::new(), timeout, None)
            .await
            .map_err(RequestError::from)?;
        let map = queue::parse_reply(reply.args)?;
        Ok(queue::parse_history(&map, &reply.attachments)?)
    }

    /// Listens to `tidings:gap` notices: retention removed messages of a subscribed topic
    /// before they were settled. (They are also logged at `warn`.)
    pub fn gaps(&self) -> GapStream {
        GapStream::new(self.on(GAP_EVENT))
    }
}
