//! `join` `{room}` → `{ok:true}`: the socket joins a room. Needs `join` on the room. A socket
//! in `max_rooms_per_socket` rooms gets `{ok:false,error:{code:"limit_exceeded"}}`.

use serde_json::json;
use tidings_core::{ErrorBody, ErrorCode, Room};

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
        match socket.join(self.room) {
            Ok(()) => Ok(json!({ "ok": true })),
            Err(e) => Err(ErrorBody::new(ErrorCode::LimitExceeded, e.to_string())),
        }
    }
}
