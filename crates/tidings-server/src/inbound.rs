//! The messages of other nodes, routed by the server: a broadcast or a room operation is
//! applied to this node's sockets only (never forwarded, so a message is delivered once per
//! node), a request is answered, an answer goes back to the request waiting for it
//! ([`ClusterLink::answered`](crate::cluster::ClusterLink::answered)), a durable-topic change
//! wakes the delivery engine.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tidings_core::Room;
use tidings_core::cluster::{ClusterMessage, Target, WireFrame};
use tidings_proto::engine::Frame;

use crate::cluster::Answer;
use crate::io::{AckReply, BroadcastOperator, Namespace, ServerSideAck};
use crate::server::ServerInner;

/// The longest another node may have this node wait for its clients' acknowledgements of a
/// broadcast (Node's `io.timeout(ms)`); longer is waited this long.
const MAX_BROADCAST_ACK_WAIT: Duration = Duration::from_secs(600);

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
                ns.server_side_event(args, None);
            }
        }
        ClusterMessage::ServerSideEmitWithAck {
            request,
            origin,
            namespace,
            args,
        } => {
            let (Some(cluster), Some(ns)) = (
                server.cluster.get().cloned(),
                server.existing_namespace(&namespace),
            ) else {
                return;
            };
            let ack = ServerSideAck::new(move |data| {
                cluster.send_to(&origin, ClusterMessage::ServerSideAck { request, data });
            });
            ns.server_side_event(args, Some(ack));
        }
        ClusterMessage::ServerSideAck { request, data } => {
            server
                .cluster
                .answered(request, Answer::ServerSideAck(data));
        }
        ClusterMessage::BroadcastWithAck {
            request,
            origin,
            target,
            event,
            args,
            binaries,
            timeout_ms,
        } => {
            let Some(cluster) = server.cluster.get().cloned() else {
                return;
            };
            let attachments: Vec<Bytes> = binaries
                .into_iter()
                .filter_map(|f| match f {
                    WireFrame::Binary(b) => Some(b),
                    WireFrame::Text(_) => None,
                })
                .collect();
            let asked = namespace(&target).and_then(|ns| {
                local_operator(ns, target)
                    .ask_local(&event, args, &attachments)
                    .map_err(|e| {
                        tracing::debug!(error = %e, event, "cluster: a broadcast with acks not sent")
                    })
                    .ok()
            });
            let (id, asked) = asked.unwrap_or((0, Vec::new()));
            // Exactly one count per node, also 0: the asking node waits for every node's.
            cluster.send_to(
                &origin,
                ClusterMessage::BroadcastClientCount {
                    request,
                    count: asked.len() as u64,
                },
            );
            if asked.is_empty() {
                return;
            }
            let wait = Duration::from_millis(timeout_ms).min(MAX_BROADCAST_ACK_WAIT);
            tokio::spawn(async move {
                let mut waiting: FuturesUnordered<_> = asked
                    .into_iter()
                    .map(|(socket, rx)| async move {
                        let answer = tokio::time::timeout(wait, rx).await;
                        (socket, answer)
                    })
                    .collect();
                while let Some((socket, answer)) = waiting.next().await {
                    match answer {
                        Ok(Ok(reply)) => cluster.send_to(
                            &origin,
                            ClusterMessage::BroadcastAck {
                                request,
                                args: reply.args,
                                binaries: reply
                                    .attachments
                                    .into_iter()
                                    .map(WireFrame::Binary)
                                    .collect(),
                            },
                        ),
                        // Disconnected before it answered: nothing to send.
                        Ok(Err(_)) => {}
                        Err(_) => {
                            socket.forget_ack(id);
                        }
                    }
                }
            });
        }
        ClusterMessage::Rooms { request, rooms } => {
            server.cluster.answered(request, Answer::Rooms(rooms));
        }
        ClusterMessage::BroadcastClientCount { request, count } => {
            server.cluster.answered(request, Answer::ClientCount(count));
        }
        ClusterMessage::BroadcastAck {
            request,
            args,
            binaries,
        } => {
            let attachments = binaries
                .into_iter()
                .filter_map(|f| match f {
                    WireFrame::Binary(b) => Some(b),
                    WireFrame::Text(_) => None,
                })
                .collect();
            server
                .cluster
                .answered(request, Answer::Ack(AckReply { args, attachments }));
        }
        ClusterMessage::FetchRooms {
            request,
            origin,
            namespace,
        } => {
            let Some(cluster) = server.cluster.get() else {
                return;
            };
            let rooms = server
                .existing_namespace(&namespace)
                .map(|ns| ns.rooms().iter().map(|r| r.as_str().to_owned()).collect())
                .unwrap_or_default();
            cluster.send_to(&origin, ClusterMessage::Rooms { request, rooms });
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
                    .map(|s| s.remote(cluster.node_id()))
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
