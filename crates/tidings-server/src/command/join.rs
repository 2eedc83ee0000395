//! `join` `{room}` → `{ok:true}`: the socket joins a room. Needs `join` on the room.

use serde_json::json;
use tidings_core::{ErrorBody, Room};

use super::{Access, Answer, Builtin, Family, Input, fields};
use crate::auth::Action;
use crate::io::Socket;

/// A parsed `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// The room to join.
    pub room: Room,
}

impl Builtin for Join {
    const NAME: &'static str = "join";
    const FAMILY: Family = Family::Rooms;

    fn parse(input: Input<'_>) -> Result<Self, ErrorBody> {
        fields::require_object(&input.payload, "{room}")?;
        Ok(Join {
            room: fields::room(&input.payload)?,
        })
    }

    fn required_access(&self) -> Access {
        Access::To(Action::Join, self.room.as_str().to_owned())
    }
}

impl Join {
    pub(crate) fn apply(self, socket: &Socket) -> Answer {
        socket.join(self.room);
        Ok(json!({ "ok": true }))
    }
}
