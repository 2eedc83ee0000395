//! Wire codecs for tidings: Engine.IO v4 framing and Socket.IO v5 packets.
//!
//! This crate is pure: bytes and strings in, packets out. It owns no sockets, spawns no tasks and
//! reads no clock, so every function here can be tested from byte literals and fuzzed.
//!
//! - [`engine`] — Engine.IO v4: the single-character packet types, WebSocket text frames, and the
//!   HTTP long-polling payload (packets joined by `0x1e`, binary as `b` + base64).
//! - [`packet`] — Socket.IO v5: `<kind>[<attachments>-][<nsp>,][<id>][<json>]`, validated the way
//!   the JavaScript `socket.io-parser` validates it, and encoded byte for byte as it encodes.
//! - [`eio3`] — Engine.IO v3's long-polling payloads, for `socket.io-client` 2.x.
//! - [`msgpack`] — the `socket.io-msgpack-parser` encoding of the same packets (one binary
//!   message of MessagePack per packet), and [`parser::Parser`], which of the two a server
//!   speaks.
//! - [`ws`] — RFC 6455 WebSocket framing, server side, which carries Engine.IO's WebSocket
//!   transport.
//!
//! The two layers nest: a Socket.IO packet travels as the data of an Engine.IO `message` (`4`).
//!
//! ```
//! use tidings_proto::engine::{self, TextPacket};
//! use tidings_proto::packet::{Packet, PacketKind};
//!
//! // A client emits `socket.emit("hello", 1, {"a": [true]})` with an ack on namespace /chat.
//! let wire = r#"42/chat,7["hello",1,{"a":[true]}]"#;
//! let TextPacket::Message(text) = engine::decode_text(wire)? else {
//!     panic!("expected an engine.io message");
//! };
//! let packet = Packet::decode(text)?;
//! assert_eq!(packet.kind, PacketKind::Event);
//! assert_eq!(packet.namespace, "/chat");
//! assert_eq!(packet.id, Some(7));
//!
//! // The server acknowledges with the same arguments.
//! let args = packet.data.as_ref().and_then(|d| d.as_array()).map(|a| a[1..].to_vec());
//! let ack = Packet::ack("/chat", 7, args.unwrap_or_default(), 0);
//! assert_eq!(ack.to_frame().as_text(), Some(r#"43/chat,7[1,{"a":[true]}]"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod date;
pub mod eio3;
pub mod engine;
pub mod msgpack;
pub mod packet;
pub mod parser;
pub mod ws;

pub use bytes::Bytes;
