//! Which encoding of Socket.IO packets a server speaks, and the one function that turns a
//! packet into the Engine.IO messages that carry it.
//!
//! | parser | a packet is | binary |
//! | --- | --- | --- |
//! | [`Parser::Default`] (`socket.io-parser`) | one text message, [`Packet::encode`] | one binary message per attachment after it |
//! | [`Parser::Msgpack`] (`socket.io-msgpack-parser`) | one binary message, [`crate::msgpack::encode`] | inside that message |
//!
//! Like Node's `parser` option it is a property of the server: every client must use the same
//! one (as must every node of a cluster, which pass broadcasts on encoded).
//!
//! ```
//! use tidings_proto::Bytes;
//! use tidings_proto::packet::{placeholder, Packet};
//! use tidings_proto::parser::Parser;
//!
//! let packet = Packet::event("/", "file", vec![placeholder(0)], None, 1);
//! let attachments = [Bytes::from_static(b"\x01")];
//! assert_eq!(Parser::Default.frames(&packet, &attachments).len(), 2);
//! let frames = Parser::Msgpack.frames(&packet, &attachments);
//! assert_eq!(frames.len(), 1);
//! assert!(frames[0].is_binary());
//! assert_eq!("msgpack".parse::<Parser>(), Ok(Parser::Msgpack));
//! ```

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::engine::Frame;
use crate::msgpack;
use crate::packet::Packet;

/// The packet encoding of a server; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Parser {
    /// `socket.io-parser`, what every Socket.IO client speaks unless told otherwise.
    #[default]
    Default,
    /// `socket.io-msgpack-parser` (npm), MessagePack in binary messages.
    Msgpack,
}

impl Parser {
    /// The Engine.IO messages carrying `packet` and its binary `attachments` (referenced by
    /// the placeholders in its data), in the order they must be sent.
    pub fn frames(self, packet: &Packet, attachments: &[Bytes]) -> Vec<Frame> {
        match self {
            Parser::Default => {
                let mut frames = Vec::with_capacity(1 + attachments.len());
                frames.push(packet.to_frame());
                frames.extend(attachments.iter().cloned().map(Frame::binary));
                frames
            }
            Parser::Msgpack => vec![self.frame(packet, attachments)],
        }
    }

    /// The one message carrying a packet without attachments (with the msgpack parser, any
    /// packet); for the default parser a packet with attachments needs [`Parser::frames`].
    pub fn frame(self, packet: &Packet, attachments: &[Bytes]) -> Frame {
        match self {
            Parser::Default => packet.to_frame(),
            Parser::Msgpack => Frame::binary(Bytes::from(msgpack::encode(packet, attachments))),
        }
    }

    /// The name used in configuration: `default` or `msgpack`.
    pub fn as_str(self) -> &'static str {
        match self {
            Parser::Default => "default",
            Parser::Msgpack => "msgpack",
        }
    }

    /// The npm package a client uses to speak this parser.
    pub fn npm_package(self) -> &'static str {
        match self {
            Parser::Default => "socket.io-parser",
            Parser::Msgpack => "socket.io-msgpack-parser",
        }
    }
}

impl fmt::Display for Parser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parser name other than `default` and `msgpack`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown parser {0:?}: expected \"default\" or \"msgpack\"")]
pub struct UnknownParser(pub String);

impl FromStr for Parser {
    type Err = UnknownParser;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(Parser::Default),
            "msgpack" => Ok(Parser::Msgpack),
            other => Err(UnknownParser(other.to_owned())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::packet::placeholder;

    #[test]
    fn default_frames_are_text_then_attachments() {
        let packet = Packet::event("/", "f", vec![placeholder(0)], None, 1);
        let frames = Parser::Default.frames(&packet, &[Bytes::from_static(b"x")]);
        assert_eq!(
            frames,
            vec![
                Frame::message(r#"51-["f",{"_placeholder":true,"num":0}]"#),
                Frame::binary(Bytes::from_static(b"x"))
            ]
        );
    }

    #[test]
    fn msgpack_frames_are_one_binary_message() {
        let packet = Packet::event("/", "f", vec![placeholder(0)], None, 1);
        let attachments = [Bytes::from_static(b"x")];
        let frames = Parser::Msgpack.frames(&packet, &attachments);
        assert_eq!(frames.len(), 1);
        let Frame::Binary(bytes) = &frames[0] else {
            panic!("not binary")
        };
        assert_eq!(
            msgpack::decode(bytes).unwrap(),
            (packet, attachments.to_vec())
        );
    }

    #[test]
    fn names() {
        for parser in [Parser::Default, Parser::Msgpack] {
            assert_eq!(parser.as_str().parse::<Parser>(), Ok(parser));
            assert_eq!(parser.to_string(), parser.as_str());
        }
        assert!("json".parse::<Parser>().is_err());
    }
}
