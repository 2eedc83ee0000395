//! `broadcast` `{room?, event, data}` → `{ok:true, recipients:N}` (`cluster:true` too in a
//! cluster): every socket in `room`
//! (the whole namespace without one) except the sender receives `event` with the single
//! argument `data`; binary inside `data` stays binary. Needs `publish` on the room; a
//! namespace-wide broadcast needs admin.
//!
//! `recipients` counts the sockets of this node that the event was queued for. In a cluster
//! the event also goes to every other node, which delivers it to its own sockets; those are
//! not counted, and the answer says so with `cluster: true`. Counting them would make every
//! broadcast wait for an answer from every node (a round trip through Redis, and a node that
//! is slow or gone would hold up the ack), for a number that is stale when it arrives.

use bytes::Bytes;
use serde_json::{Value, json};
use tidings_core::{ErrorBody, ErrorCode, Room};

use super::{Access, Answer, Builtin, Family, Input, fields};
use crate::auth::Action;
use crate::io::{Socket, extract_attachments};

/// A parsed `broadcast`.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    /// The room; None: the whole namespace.
    pub room: Option<Room>,
    /// The event the recipients get.
    pub event: String,
    /// Its one argument, with placeholders for the binary parts.
    pub data: Value,
    /// The binary parts of `data`, renumbered from 0.
    pub attachments: Vec<Bytes>,
}

impl Builtin for Broadcast {
    const NAME: &'static str = "broadcast";
    const FAMILY: Family = Family::Rooms;

    fn parse(input: Input<'_>) -> Result<Self, ErrorBody> {
        let mut payload = input.payload;
        fields::require_object(&payload, "{room?, event, data}")?;
        let room = fields::optional_name(&payload, "room")?.map(Room::from);
        let event = fields::event_name(&payload)?;
        let mut data = fields::take_data(&mut payload);
        let attachments = extract_attachments(&mut data, &input.attachments);
        Ok(Broadcast {
            room,
            event,
            data,
            attachments,
        })
    }

    fn required_access(&self) -> Access {
        match &self.room {
            Some(room) => Access::To(Action::Publish, room.as_str().to_owned()),
            None => Access::Admin("broadcast to the whole namespace"),
        }
    }
}

impl Broadcast {
    pub(crate) fn apply(self, socket: &Socket) -> Answer {
        let targets = match self.room {
            Some(room) => socket.to(room),
            None => socket.broadcast(),
        };
        let recipients = targets
            .emit_args(&self.event, vec![self.data], &self.attachments)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        if socket.namespace().cluster_link().get().is_some() {
            Ok(json!({ "ok": true, "recipients": recipients, "cluster": true }))
        } else {
            Ok(json!({ "ok": true, "recipients": recipients }))
        }
    }
}
