//! The server's side of the [`Cluster`] seam: what it sends when a broadcast or a room operation
//! is made here, and what it does with the messages of other nodes.
//!
//! Enabled with [`crate::Server::enable_cluster`]. Without it nothing here runs and a broadcast
//! costs nothing more than on a single node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tidings_core::Room;
use tidings_core::cluster::{Cluster, ClusterMessage, RemoteSocket, Target, WireFrame};
use tidings_proto::engine::Frame;
use tokio::sync::mpsc;

use crate::io::{BroadcastOperator, Namespace};
use crate::server::ServerInner;

/// The link between a server and its cluster; empty until a cluster is enabled.
#[derive(Default)]
pub(crate) struct ClusterLink {
    cluster: OnceLock<Arc<dyn Cluster>>,
    /// Fetch-sockets requests waiting for the other nodes' answers.
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<Vec<RemoteSocket>>>>,
    /// Release-session requests waiting for the other nodes' answers.
    releases: Mutex<HashMap<u64, mpsc::UnboundedSender<bool>>>,
    next_request: AtomicU64,
}

impl ClusterLink {
    pub(crate) fn get(&self) -> Option<&Arc<dyn Cluster>> {
        self.cluster.get()
    }

    /// Sets the cluster and starts receiving the other nodes' messages. False if one was
    /// already set.
    pub(crate) fn enable(&self, cluster: Arc<dyn Cluster>, server: Weak<ServerInner>) -> bool {
        if self.cluster.set(cluster.clone()).is_err() {
            return false;
        }
        cluster.start(Arc::new(move |message| {
            if let Some(server) = server.upgrade() {
                on_message(&server, message);
            }
        }));
        true
    }

    /// Sends `message` to the other nodes, if there is a cluster.
    pub(crate) fn publish(&self, message: impl FnOnce() -> ClusterMessage) {
        if let Some(cluster) = self.get() {
            cluster.publish(message());
        }
    }

    /// The sockets of `target` on every other node, answered within `timeout` (a node that
    /// does not answer in time is left out).
    pub(crate) async fn fetch_remote(
        &self,
        target: Target,
        timeout: Duration,
    ) -> Vec<RemoteSocket> {
        let Some(cluster) = self.get() else {
            return Vec::new();
        };
        let expected = match cluster.peers().await {
            Ok(0) => return Vec::new(),
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot count the other nodes");
                return Vec::new();
            }
        };
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.lock().insert(request, tx);
        cluster.publish(ClusterMessage::FetchSockets {
            request,
            origin: cluster.node_id().to_owned(),
            target,
        });
        let mut sockets = Vec::new();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for _ in 0..expected {
            tokio::select! {
                answer = rx.recv() => match answer {
                    Some(answer) => sockets.extend(answer),
                    None => break,
                },
                _ = &mut deadline => {
                    tracing::warn!(request, expected, "cluster: not every node answered in time");
                    break;
                }
            }
        }
        self.pending.lock().remove(&request);
        sockets
    }
}

impl ClusterLink {
    /// Asks the other nodes to release the recovery session `pid` if one of them still holds
    /// its socket (its node did not notice yet that the connection is gone): that node closes
    /// the socket and writes the session to the shared log. True once a node says it did;
    /// false when none holds it, there is no other node, or none answers within `timeout`.
    pub(crate) async fn release_remote_session(&self, pid: &str, timeout: Duration) -> bool {
        let Some(cluster) = self.get() else {
            return false;
        };
        let expected = match cluster.peers().await {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: cannot count the other nodes");
                return false;
            }
        };
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.releases.lock().insert(request, tx);
        cluster.publish(ClusterMessage::ReleaseSession {
            request,
            origin: cluster.node_id().to_owned(),
            pid: pid.to_owned(),
        });
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut found = false;
        for _ in 0..expected {
            tokio::select! {
                answer = rx.recv() => match answer {
                    Some(true) => {
                        found = true;
                        break;
                    }
                    Some(false) => {}
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        self.releases.lock().remove(&request);
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

/// The local operator addressing `target` in namespace `ns`.
fn local_operator(ns: Namespace, target: Target) -> BroadcastOperator {
    ns.all()
        .to_rooms(target.rooms.into_iter().map(Room::from))
        .except_rooms(target.except.into_iter().map(Room::from))
}

/// Handles one message of another node.
fn on_message(server: &ServerInner, message: ClusterMessage) {
    let namespace = |target: &Target| server.existing_namespace(&target.namespace);
    match message {
        ClusterMessage::Broadcast {
            target,
            frames,
            offset,
        } => {
            let Some(ns) = namespace(&target) else { return };
            let frames: Vec<Frame> = frames
                .into_iter()
                .map(|f| match f {
                    WireFrame::Text(b) => Frame::Text(b),
                    WireFrame::Binary(b) => Frame::Binary(b),
                })
                .collect();
            local_operator(ns, target).deliver_local(&frames, offset);
        }
        ClusterMessage::Join { target, room } => {
            if let Some(ns) = namespace(&target) {
                local_operator(ns, target).join_local(&Room::from(room));
            }
        }
        ClusterMessage::Leave { target, room } => {
            if let Some(ns) = namespace(&target) {
                local_operator(ns, target).leave_local(&Room::from(room));
            }
        }
        ClusterMessage::Disconnect { target } => {
            if let Some(ns) = namespace(&target) {
                local_operator(ns, target).disconnect_local();
            }
        }
        ClusterMessage::FetchSockets {
            request,
            origin,
            target,
        } => {
            let Some(cluster) = server.cluster.get() else {
                return;
            };
            let sockets = match namespace(&target) {
                Some(ns) => local_operator(ns, target)
                    .sockets()
                    .iter()
                    .map(|s| RemoteSocket {
                        sid: s.id().to_string(),
                        node: cluster.node_id().to_owned(),
                        rooms: s.rooms().iter().map(|r| r.as_str().to_owned()).collect(),
                    })
                    .collect(),
                None => Vec::new(),
            };
            cluster.send_to(&origin, ClusterMessage::Sockets { request, sockets });
        }
        ClusterMessage::Sockets { request, sockets } => {
            if let Some(tx) = server.cluster.pending.lock().get(&request) {
                let _ = tx.send(sockets);
            }
        }
        ClusterMessage::ReleaseSession {
            request,
            origin,
            pid,
        } => {
            let Some(cluster) = server.cluster.get().cloned() else {
                return;
            };
            let Some(recovery) = server.recovery.clone() else {
                cluster.send_to(
                    &origin,
                    ClusterMessage::SessionReleased {
                        request,
                        found: false,
                    },
                );
                return;
            };
            tokio::spawn(async move {
                let found = recovery.release_live(&pid).await;
                cluster.send_to(&origin, ClusterMessage::SessionReleased { request, found });
            });
        }
        ClusterMessage::SessionReleased { request, found } => {
            if let Some(tx) = server.cluster.releases.lock().get(&request) {
                let _ = tx.send(found);
            }
        }
        ClusterMessage::Published { topic } => {
            if let Some(queues) = server.queues() {
                queues.wake_topic_by_name(&topic);
            }
        }
        ClusterMessage::Subscribed {
            topic,
            key,
            identity,
            subscribed,
        } => {
            if let Some(queues) = server.queues() {
                queues.on_remote_subscription(&topic, &key, &identity, subscribed);
            }
        }
        other => tracing::debug!(?other, "cluster: message not handled by this version"),
    }
}
