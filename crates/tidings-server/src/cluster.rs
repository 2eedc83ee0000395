//! The server's link to its [`Cluster`]: what this node sends to the others — broadcasts, room
//! operations, durable-topic wake-ups — and its requests to every other node (fetch sockets,
//! release a recovery session), gathered with one mechanism. It only sends: the messages of
//! other nodes are routed by the server (`inbound.rs`), which hands the answers to requests
//! back here ([`ClusterLink::answered`]).
//!
//! Enabled with [`crate::Server::enable_cluster`]. Without it nothing here runs and a broadcast
//! costs nothing more than on a single node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tidings_core::cluster::{Cluster, ClusterMessage, RemoteSocket, Target, WireFrame};
use tidings_proto::engine::Frame;
use tokio::sync::mpsc;

/// Another node's answer to a request of this node.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Its sockets of a fetch-sockets target.
    Sockets(Vec<RemoteSocket>),
    /// Whether it held (and released) the asked-for recovery session.
    Released(bool),
    /// Its handler's acknowledgement of a server-side event.
    ServerSideAck(serde_json::Value),
    /// Its rooms of a namespace.
    Rooms(Vec<String>),
    /// How many of its clients it asked to acknowledge a broadcast.
    ClientCount(u64),
    /// One of its clients' acknowledgement of a broadcast.
    Ack(crate::io::AckReply),
}

/// What the other nodes answered to a broadcast with acknowledgements.
#[derive(Debug, Default)]
pub(crate) struct RemoteAcks {
    /// The acknowledgements, in arrival order.
    pub(crate) replies: Vec<crate::io::AckReply>,
    /// How many clients the nodes that reported asked.
    pub(crate) asked: u64,
    /// Every node reported its count and every client asked answered, before the timeout.
    pub(crate) complete: bool,
}

/// The link between a server and its cluster; empty until a cluster is enabled.
#[derive(Default)]
pub(crate) struct ClusterLink {
    cluster: OnceLock<Arc<dyn Cluster>>,
    /// Requests waiting for the other nodes' answers, by request number.
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<Answer>>>,
    next_request: AtomicU64,
}

impl ClusterLink {
    pub(crate) fn get(&self) -> Option<&Arc<dyn Cluster>> {
        self.cluster.get()
    }

    /// Sets the cluster. False if one was already set.
    pub(crate) fn set(&self, cluster: Arc<dyn Cluster>) -> bool {
        self.cluster.set(cluster).is_ok()
    }

    /// Sends `message` to the other nodes, if there is a cluster.
    pub(crate) fn publish(&self, message: impl FnOnce() -> ClusterMessage) {
        if let Some(cluster) = self.get() {
            cluster.publish(message());
        }
    }

    /// Hands another node's answer to the request waiting for it (none: it timed out).
    pub(crate) fn answered(&self, request: u64, answer: Answer) {
        if let Some(tx) = self.pending.lock().get(&request) {
            let _ = tx.send(answer);
        }
    }

    /// Sends the request `ask(request number, this node's id)` to every other node and hands
    /// their answers to `take` until every node answered, `take` returns true (enough), or
    /// `timeout` passed (a node that does not answer in time is left out).
    ///
    /// With `namespace`, the nodes that answer requests about it are counted
    /// ([`Cluster::peers_for`]: Node servers too), else every other tidings node.
    async fn gather(
        &self,
        what: &'static str,
        namespace: Option<&str>,
        ask: impl FnOnce(u64, String) -> ClusterMessage,
        timeout: Duration,
        mut take: impl FnMut(Answer) -> bool,
    ) {
        let Some(cluster) = self.get() else { return };
        let counted = match namespace {
            Some(ns) => cluster.peers_for(ns).await,
            None => cluster.peers().await,
        };
        let expected = match counted {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, what, "cluster: cannot count the other nodes");
                return;
            }
        };
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.lock().insert(request, tx);
        cluster.publish(ask(request, cluster.node_id().to_owned()));
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for _ in 0..expected {
            tokio::select! {
                answer = rx.recv() => match answer {
                    Some(answer) => {
                        if take(answer) {
                            break;
                        }
                    }
                    None => break,
                },
                _ = &mut deadline => {
                    tracing::warn!(request, expected, what, "cluster: not every node answered in time");
                    break;
                }
            }
        }
        self.pending.lock().remove(&request);
    }

    /// The sockets of `target` on every other node, answered within `timeout`.
    pub(crate) async fn fetch_remote(
        &self,
        target: Target,
        timeout: Duration,
    ) -> Vec<RemoteSocket> {
        let mut sockets = Vec::new();
        let namespace = target.namespace.clone();
        let ask = |request, origin| ClusterMessage::FetchSockets {
            request,
            origin,
            target,
        };
        self.gather("fetch sockets", Some(&namespace), ask, timeout, |answer| {
            if let Answer::Sockets(theirs) = answer {
                sockets.extend(theirs);
            }
            false
        })
        .await;
        sockets
    }

    /// Sends a server-side event with an acknowledgement to `namespace` on every other node
    /// and collects the values their handlers acknowledge with, within `timeout`.
    pub(crate) async fn server_side_emit_with_ack(
        &self,
        namespace: &str,
        args: Vec<serde_json::Value>,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let mut answers = Vec::new();
        let ask = |request, origin| ClusterMessage::ServerSideEmitWithAck {
            request,
            origin,
            namespace: namespace.to_owned(),
            args,
        };
        self.gather(
            "server-side emit",
            Some(namespace),
            ask,
            timeout,
            |answer| {
                if let Answer::ServerSideAck(value) = answer {
                    answers.push(value);
                }
                false
            },
        )
        .await;
        answers
    }

    /// The rooms of `namespace` on every other node, answered within `timeout`.
    pub(crate) async fn fetch_rooms(&self, namespace: &str, timeout: Duration) -> Vec<String> {
        let mut rooms = Vec::new();
        let ask = |request, origin| ClusterMessage::FetchRooms {
            request,
            origin,
            namespace: namespace.to_owned(),
        };
        self.gather("fetch rooms", Some(namespace), ask, timeout, |answer| {
            if let Answer::Rooms(theirs) = answer {
                rooms.extend(theirs);
            }
            false
        })
        .await;
        rooms
    }

    /// Sends a broadcast with acknowledgements to every other node and collects what their
    /// clients answer: done when every node reported how many clients it asked and that many
    /// acknowledgements arrived, or when `timeout` passed.
    pub(crate) async fn broadcast_with_ack(
        &self,
        target: Target,
        event: &str,
        args: Vec<serde_json::Value>,
        binaries: &[bytes::Bytes],
        timeout: Duration,
    ) -> RemoteAcks {
        let mut acks = RemoteAcks {
            complete: true,
            ..RemoteAcks::default()
        };
        let Some(cluster) = self.get() else {
            return acks;
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let nodes = tokio::select! {
            counted = cluster.peers_for(&target.namespace) => match counted {
                Ok(0) => return acks,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: cannot count the other nodes for a broadcast with acks");
                    acks.complete = false;
                    return acks;
                }
            },
            _ = &mut deadline => {
                acks.complete = false;
                return acks;
            }
        };
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.lock().insert(request, tx);
        cluster.publish(ClusterMessage::BroadcastWithAck {
            request,
            origin: cluster.node_id().to_owned(),
            target,
            event: event.to_owned(),
            args,
            binaries: binaries.iter().cloned().map(WireFrame::Binary).collect(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        let mut reported = 0;
        while reported < nodes || (acks.replies.len() as u64) < acks.asked {
            tokio::select! {
                answer = rx.recv() => match answer {
                    Some(Answer::ClientCount(n)) => {
                        reported += 1;
                        acks.asked += n;
                    }
                    Some(Answer::Ack(reply)) => acks.replies.push(reply),
                    Some(_) => {}
                    None => break,
                },
                _ = &mut deadline => {
                    acks.complete = false;
                    break;
                }
            }
        }
        self.pending.lock().remove(&request);
        acks
    }

    /// Asks the other nodes to release the recovery session `pid` if one of them still holds
    /// its socket (its node did not notice yet that the connection is gone): that node closes
    /// the socket and writes the session to the shared log. True once a node says it did;
    /// false when none holds it, there is no other node, or none answers within `timeout`.
    pub(crate) async fn release_remote_session(&self, pid: &str, timeout: Duration) -> bool {
        let mut found = false;
        let ask = |request, origin| ClusterMessage::ReleaseSession {
            request,
            origin,
            pid: pid.to_owned(),
        };
        self.gather("release session", None, ask, timeout, |answer| {
            found = matches!(answer, Answer::Released(true));
            found
        })
        .await;
        found
    }
}

/// The wire form of a broadcast's frames.
pub(crate) fn wire_frames(frames: &[Frame]) -> Vec<WireFrame> {
    frames
        .iter()
        .map(|f| match f {
            Frame::Text(b) => WireFrame::Text(b.clone()),
            Frame::Binary(b) => WireFrame::Binary(b.clone()),
        })
        .collect()
}
