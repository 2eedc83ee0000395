//! `leave` `{room}` → `{ok:true}`: the socket leaves a room. Needs nothing: leaving only
//! undoes a join that was allowed.

use serde_json::json;
use tidings_core::{ErrorBody, Room};

use super::{Access, Answer, Builtin, Family, Input, fields};
use crate::io::Socket;

/// A parsed `leave`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    /// The room to leave.
    pub room: Room,
}

impl Builtin for Leave {
    const NAME: &'static str = "leave";
    const FAMILY: Family = Family::Rooms;

    fn parse(input: Input<'_>) -> Result<Self, ErrorBody> {
        fields::require_object(&input.payload, "{room}")?;
        Ok(Leave {
            room: fields::room(&input.payload)?,
        })
    }

    fn required_access(&self) -> Access {
        Access::Any
    }
}

impl Leave {
    pub(crate) fn apply(self, socket: &Socket) -> Answer {
        socket.leave(self.room);
        Ok(json!({ "ok": true }))
    }
}
