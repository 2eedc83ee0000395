//! The messages of other nodes, routed by the server: a broadcast or a room operation is
//! applied to this node's sockets only (never forwarded, so a message is delivered once per
//! node), a request is answered, an answer goes back to the request waiting for it
//! ([`ClusterLink::answered`](crate::cluster::ClusterLink::answered)), a durable-topic change
//! wakes the delivery engine.

use tidings_core::Room;
use tidings_core::cluster::{ClusterMessage, RemoteSocket, Target, WireFrame};
use tidings_proto::engine::Frame;

use crate::cluster::Answer;
use crate::io::{BroadcastOperator, Namespace};
use crate::server::ServerInner;

/// The local operator addressing `target` in namespace `ns`.
fn local_operator(ns: Namespace, target: Target) -> BroadcastOperator {
    ns.all()
        .to_rooms(target.rooms.into_iter().map(Room::from))
        .except_rooms(target.except.into_iter().map(Room::from))
}

/// Handles one message of another node.
pub(crate) fn route(server: &ServerInner, message: ClusterMessage) {
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
        ClusterMessage::Disconnect { target, close } => {
            if let Some(ns) = namespace(&target) {
                let operator = local_operator(ns, target);
                if close {
                    operator.close_connections_local();
                } else {
                    operator.disconnect_local();
                }
            }
        }
        ClusterMessage::ServerSideEmit { namespace, args } => {
            if let Some(ns) = server.existing_namespace(&namespace) {
                ns.server_side_event(args);
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
            server.cluster.answered(request, Answer::Sockets(sockets));
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
            server.cluster.answered(request, Answer::Released(found));
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
