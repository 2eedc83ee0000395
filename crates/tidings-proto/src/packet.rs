//! Socket.IO v5 packets: `<kind>[<attachments>-][<nsp>,][<id>][<json>]`.
//!
//! A packet is the data of one Engine.IO `message`. Decoding validates the payload shape per kind
//! the way the JavaScript `socket.io-parser` does (`isPayloadValid`), so a packet accepted here is
//! one the reference server would accept; encoding matches its `Encoder` byte for byte (JSON via
//! `serde_json` with `preserve_order`, so keys keep their order and integers stay integers).
//!
//! One deliberate difference from JavaScript: a float is written in Rust's shortest round-trip
//! form and keeps its float-ness (`1.0` stays `1.0`, `1e21` is `1e+21`, `2.5e15` is
//! `2500000000000000.0`), where `JSON.stringify` writes `1` and `2500000000000000`. The values
//! are equal for every JSON parser; keeping `1.0` lets Python clients keep their `float`, and it
//! makes `decode(encode(p)) == p` hold exactly.
//!
//! Binary packets (`BinaryEvent`, `BinaryAck`) carry `N-` and their JSON holds `N` placeholders
//! `{"_placeholder":true,"num":i}`; the `N` binary messages that follow the packet replace them.
//!
//! ```
//! use serde_json::json;
//! use tidings_proto::packet::{placeholder, Packet, PacketKind};
//!
//! let packet = Packet::event("/", "message-back", vec![placeholder(0)], None, 1);
//! assert_eq!(packet.kind, PacketKind::BinaryEvent);
//! assert_eq!(packet.encode(), r#"51-["message-back",{"_placeholder":true,"num":0}]"#);
//!
//! let decoded = Packet::decode(r#"2/custom,12["x",{"b":1,"a":2}]"#)?;
//! assert_eq!(decoded.namespace, "/custom");
//! assert_eq!(decoded.id, Some(12));
//! assert_eq!(decoded.data, Some(json!(["x", {"b": 1, "a": 2}])));
//! assert_eq!(decoded.encode(), r#"2/custom,12["x",{"b":1,"a":2}]"#);
//! # Ok::<(), tidings_proto::packet::DecodeError>(())
//! ```

use bytes::Bytes;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::engine::{Frame, PacketType};

/// The most binary attachments one packet may announce; more is [`DecodeError::TooManyAttachments`].
pub const MAX_ATTACHMENTS: usize = 1000;

/// Event names that a peer may not emit, as in `socket.io-parser`: they have a meaning of their
/// own to the client, the server or the Node.js `EventEmitter`.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The namespace a packet belongs to when none is written on the wire.
pub const DEFAULT_NAMESPACE: &str = "/";

/// The kind of a Socket.IO packet; on the wire, the digits `0` to `6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// `0`: join a namespace (client) or confirm the join with `{"sid":..}` (server).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event `[name, ...args]`.
    Event,
    /// `3`: the acknowledgement of an event that carried an id.
    Ack,
    /// `4`: the server refuses a namespace join.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketKind {
    /// Whether packets of this kind announce binary attachments (`BinaryEvent`, `BinaryAck`).
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }

    /// The kind's wire digit, `'0'` to `'6'`.
    pub fn as_char(self) -> char {
        char::from(self.as_byte())
    }

    /// The kind's wire digit as an ASCII byte, `b'0'` to `b'6'`.
    pub const fn as_byte(self) -> u8 {
        match self {
            Self::Connect => b'0',
            Self::Disconnect => b'1',
            Self::Event => b'2',
            Self::Ack => b'3',
            Self::ConnectError => b'4',
            Self::BinaryEvent => b'5',
            Self::BinaryAck => b'6',
        }
    }

    /// The kind whose wire digit is `byte`, if any.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }
}

/// One Socket.IO packet.
///
/// Decoded packets always satisfy the rules of [`Packet::decode`]. Packets built by hand should
/// too: [`Packet::encode`] writes whatever it is given, and a namespace that does not start with
/// `/` or that contains `,` cannot be decoded back (see [`check_namespace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// What the packet does.
    pub kind: PacketKind,
    /// The namespace, `/` when absent on the wire.
    pub namespace: String,
    /// The ack id: set on an event that expects an ack, and on that ack.
    pub id: Option<u64>,
    /// JSON payload; binary attachments appear as `{"_placeholder":true,"num":N}`.
    pub data: Option<Value>,
    /// Number of binary attachments that follow (binary kinds only, else 0).
    pub attachments: usize,
}

impl Packet {
    /// Decodes one Socket.IO packet: the text after the Engine.IO `4`.
    ///
    /// The payload shape is validated per kind like `socket.io-parser`'s `isPayloadValid`:
    /// - `Connect`: data absent or an object;
    /// - `Disconnect`: no data;
    /// - `ConnectError`: a string or an object;
    /// - `Event`, `BinaryEvent`: a non-empty array whose first element is a number or a string
    ///   not in [`RESERVED_EVENTS`];
    /// - `Ack`: an id is required, and the data is absent or an array: `3123` acknowledges with
    ///   no arguments, which Node's `socket.io-parser` accepts (it checks the payload only when
    ///   there is one) and its server hands to the ack callback as no arguments;
    /// - `BinaryAck`: an id and an array (its placeholders must match the attachments).
    ///
    /// Binary kinds require `N-` with `1 <= N <=` [`MAX_ATTACHMENTS`], and their placeholders must
    /// number exactly `0..N` (see [`validate_placeholders`]); other kinds must not carry `N-`.
    /// The namespace starts with `/` and ends at `,` (or at the end of the input, which older
    /// python-socketio versions send for `1/nsp`). The id is decimal digits that fit a `u64`.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the first rule broken; e.g. `abc`, `2{}`, `2abc["a"]`, `2["a"]x`.
    pub fn decode(input: &str) -> Result<Packet, DecodeError> {
        let (header, rest) = Header::split(input)?;
        let Header {
            kind,
            attachments,
            namespace,
            id,
        } = header;
        let data = if rest.is_empty() {
            None
        } else {
            Some(serde_json::from_str::<Value>(rest).map_err(|_| DecodeError::InvalidJson)?)
        };

        validate_payload(kind, id, data.as_ref())?;
        if let (true, Some(data)) = (kind.is_binary(), &data) {
            validate_placeholders(data, attachments)?;
        }
        Ok(Packet {
            kind,
            namespace: namespace.to_owned(),
            id,
            data,
            attachments,
        })
    }

    /// Encodes the packet exactly as the JavaScript `socket.io-parser` does:
    /// `<kind>[<attachments>-][<nsp>,][<id>][<json>]`, the namespace written only when it is not
    /// `/`, the attachment count only for binary kinds. (Floats are the one textual difference;
    /// see the [module docs](self).)
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(self.estimated_len());
        self.write_to(&mut bytes);
        // serde_json writes UTF-8 and the header is ASCII plus the namespace, so this never
        // takes the lossy branch; it only spares us `unsafe`.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// Appends the encoded packet to `out`; see [`Packet::encode`].
    pub fn encode_into(&self, out: &mut String) {
        out.push_str(&self.encode());
    }

    /// The Engine.IO frame carrying this packet: `Frame::message(&self.encode())` without the
    /// extra copy.
    pub fn to_frame(&self) -> Frame {
        let mut bytes = Vec::with_capacity(1 + self.estimated_len());
        bytes.push(PacketType::Message.as_byte());
        self.write_to(&mut bytes);
        Frame::Text(Bytes::from(bytes))
    }

    /// The Engine.IO frame of an `Ack` of event `id` in `namespace` with one argument that is
    /// already JSON text: `3[<nsp>,]<id>[<arg>]`, the frame of
    /// `Packet::ack(namespace, id, vec![arg], 0)` without building or serializing a
    /// [`Value`] (a server answering many events with small JSON it writes itself).
    ///
    /// `arg` must be one JSON value; it is written as is.
    ///
    /// ```
    /// use serde_json::json;
    /// use tidings_proto::packet::Packet;
    ///
    /// let frame = Packet::json_ack_frame("/chat", 7, r#"{"ok":true}"#);
    /// assert_eq!(frame, Packet::ack("/chat", 7, vec![json!({"ok": true})], 0).to_frame());
    /// ```
    pub fn json_ack_frame(namespace: &str, id: u64, arg: &str) -> Frame {
        let mut bytes = Vec::with_capacity(1 + 1 + namespace.len() + 1 + 20 + 2 + arg.len());
        bytes.push(PacketType::Message.as_byte());
        bytes.push(PacketKind::Ack.as_byte());
        if !namespace.is_empty() && namespace != DEFAULT_NAMESPACE {
            bytes.extend_from_slice(namespace.as_bytes());
            bytes.push(b',');
        }
        push_decimal(&mut bytes, id);
        bytes.push(b'[');
        bytes.extend_from_slice(arg.as_bytes());
        bytes.push(b']');
        Frame::Text(Bytes::from(bytes))
    }

    /// Appends `<kind>[<attachments>-][<nsp>,][<id>][<json>]` to `out`.
    fn write_to(&self, out: &mut Vec<u8>) {
        out.push(self.kind.as_byte());
        if self.kind.is_binary() {
            push_decimal(out, self.attachments as u64);
            out.push(b'-');
        }
        if !self.namespace.is_empty() && self.namespace != DEFAULT_NAMESPACE {
            out.extend_from_slice(self.namespace.as_bytes());
            out.push(b',');
        }
        if let Some(id) = self.id {
            push_decimal(out, id);
        }
        if let Some(data) = &self.data {
            // About twice as fast as `Value`'s `Display`. Writing a `Value` into a `Vec` cannot
            // fail (its map keys are strings, and a `Vec` takes every write).
            let _ = serde_json::to_writer(&mut *out, data);
        }
    }

    /// A `Connect` packet: a client joining `namespace` with optional auth data, or the server's
    /// confirmation with `{"sid":..}`.
    pub fn connect(namespace: &str, data: Option<Value>) -> Packet {
        Packet::new(PacketKind::Connect, namespace, None, data, 0)
    }

    /// A `ConnectError` packet with data `{"message":message}`, plus `"data":data` when given.
    pub fn connect_error(namespace: &str, message: &str, data: Option<Value>) -> Packet {
        let mut object = Map::new();
        object.insert("message".to_owned(), Value::String(message.to_owned()));
        if let Some(data) = data {
            object.insert("data".to_owned(), data);
        }
        Packet::new(
            PacketKind::ConnectError,
            namespace,
            None,
            Some(Value::Object(object)),
            0,
        )
    }

    /// A `Disconnect` packet for `namespace`.
    pub fn disconnect(namespace: &str) -> Packet {
        Packet::new(PacketKind::Disconnect, namespace, None, None, 0)
    }

    /// An event `[event, ...args]`, of kind `BinaryEvent` when `attachments > 0` (the args then
    /// hold that many [`placeholder`]s).
    pub fn event(
        namespace: &str,
        event: &str,
        args: Vec<Value>,
        id: Option<u64>,
        attachments: usize,
    ) -> Packet {
        let mut data = Vec::with_capacity(1 + args.len());
        data.push(Value::String(event.to_owned()));
        data.extend(args);
        let kind = if attachments > 0 {
            PacketKind::BinaryEvent
        } else {
            PacketKind::Event
        };
        Packet::new(kind, namespace, id, Some(Value::Array(data)), attachments)
    }

    /// The acknowledgement `args` of the event with ack id `id`, of kind `BinaryAck` when
    /// `attachments > 0`.
    pub fn ack(namespace: &str, id: u64, args: Vec<Value>, attachments: usize) -> Packet {
        let kind = if attachments > 0 {
            PacketKind::BinaryAck
        } else {
            PacketKind::Ack
        };
        Packet::new(
            kind,
            namespace,
            Some(id),
            Some(Value::Array(args)),
            attachments,
        )
    }

    /// For an event, its name: the first element of the data when it is a string.
    pub fn event_name(&self) -> Option<&str> {
        match (self.kind, &self.data) {
            (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(items))) => {
                items.first().and_then(Value::as_str)
            }
            _ => None,
        }
    }

    fn new(
        kind: PacketKind,
        namespace: &str,
        id: Option<u64>,
        data: Option<Value>,
        attachments: usize,
    ) -> Packet {
        Packet {
            kind,
            namespace: namespace.to_owned(),
            id,
            data,
            attachments,
        }
    }

    /// A cheap guess at the encoded length, to size the output buffer once in the common case.
    fn estimated_len(&self) -> usize {
        // Kind, attachments, namespace, comma, id, and room for a small JSON payload.
        1 + 5 + self.namespace.len() + 1 + 20 + if self.data.is_some() { 64 } else { 0 }
    }
}

/// What comes before a packet's JSON: `<kind>[<attachments>-][<nsp>,][<id>]`.
struct Header<'a> {
    kind: PacketKind,
    attachments: usize,
    namespace: &'a str,
    id: Option<u64>,
}

impl<'a> Header<'a> {
    /// The header of `input` and the JSON text after it, checked as [`Packet::decode`]
    /// documents (everything but the JSON).
    fn split(input: &'a str) -> Result<(Header<'a>, &'a str), DecodeError> {
        let bytes = input.as_bytes();
        let first = *bytes.first().ok_or(DecodeError::Empty)?;
        let kind = PacketKind::from_byte(first).ok_or(DecodeError::UnknownKind)?;
        let mut pos = 1;

        let digits_end = scan_digits(bytes, pos);
        let attachments_marked = digits_end > pos && bytes.get(digits_end) == Some(&b'-');
        let attachments = if kind.is_binary() {
            if !attachments_marked {
                return Err(DecodeError::InvalidAttachments);
            }
            // More digits than usize holds is certainly more than the cap.
            let count = parse_decimal(bytes.get(pos..digits_end).unwrap_or_default())
                .ok_or(DecodeError::TooManyAttachments)?;
            let count = usize::try_from(count).map_err(|_| DecodeError::TooManyAttachments)?;
            if count == 0 {
                return Err(DecodeError::InvalidAttachments);
            }
            if count > MAX_ATTACHMENTS {
                return Err(DecodeError::TooManyAttachments);
            }
            pos = digits_end + 1;
            count
        } else {
            // `21-["a"]` would otherwise fail later as JSON; say what is actually wrong.
            if attachments_marked {
                return Err(DecodeError::InvalidAttachments);
            }
            0
        };

        let namespace = if bytes.get(pos) == Some(&b'/') {
            let end = bytes
                .get(pos..)
                .and_then(|rest| rest.iter().position(|&b| b == b','))
                .map_or(bytes.len(), |offset| pos + offset);
            // `pos` and `end` sit on ASCII bytes (or the end), so both are char boundaries.
            let namespace = input.get(pos..end).ok_or(DecodeError::InvalidNamespace)?;
            pos = (end + 1).min(bytes.len());
            namespace
        } else {
            DEFAULT_NAMESPACE
        };

        let digits_end = scan_digits(bytes, pos);
        let id = if digits_end > pos {
            let digits = bytes.get(pos..digits_end).unwrap_or_default();
            pos = digits_end;
            Some(parse_decimal(digits).ok_or(DecodeError::InvalidId)?)
        } else {
            None
        };

        let rest = input.get(pos..).unwrap_or_default();
        Ok((
            Header {
                kind,
                attachments,
                namespace,
                id,
            },
            rest,
        ))
    }
}

/// An `Event` packet (`2`, without attachments) read only down to its event name, its
/// arguments left as JSON text: for a server that stores or relays an argument as it arrived
/// instead of decoding it into a [`Value`] and writing it again.
///
/// [`EventHead::peek`] reads the header and the name (a plain string: no escapes); what it
/// does not take (another kind of packet, an odd name, bad input) is for [`Packet::decode`],
/// which also gives the errors. [`EventHead::args`] then checks the whole JSON exactly as
/// [`Packet::decode`] does, so a packet is accepted on this path exactly when it would be
/// decoded.
///
/// ```
/// use tidings_proto::packet::EventHead;
///
/// let head = EventHead::peek(r#"2/chat,7["publish",{"data":[1, 2.5]}]"#);
/// let head = head.ok_or("a text EVENT is peeked")?;
/// assert_eq!((head.namespace, head.id, head.name), ("/chat", Some(7), "publish"));
/// let args = head.args()?;
/// assert_eq!(args[0].get(), r#"{"data":[1, 2.5]}"#);
/// let too_big = EventHead::peek(r#"2["publish",1e999]"#).ok_or("peeked")?;
/// assert!(too_big.args().is_err());
/// assert!(EventHead::peek(r#"51-["publish",{"_placeholder":true,"num":0}]"#).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHead<'a> {
    /// The namespace, `/` when absent on the wire.
    pub namespace: &'a str,
    /// The ack id, when the sender wants an ack.
    pub id: Option<u64>,
    /// The event name.
    pub name: &'a str,
    /// The JSON text: the array of the name and the arguments.
    json: &'a str,
}

impl<'a> EventHead<'a> {
    /// The head of `input` when it is an `Event` packet whose JSON starts with a plain string
    /// (no escapes or control characters) that is not a [`RESERVED_EVENTS`] name; None for
    /// anything else.
    pub fn peek(input: &'a str) -> Option<EventHead<'a>> {
        let (header, json) = Header::split(input).ok()?;
        if header.kind != PacketKind::Event {
            return None;
        }
        let after_bracket = json.strip_prefix('[')?;
        let quoted = after_bracket
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .strip_prefix('"')?;
        let end = quoted
            .bytes()
            .position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
        if quoted.as_bytes().get(end) != Some(&b'"') {
            return None;
        }
        let name = quoted.get(..end)?;
        if RESERVED_EVENTS.contains(&name) {
            return None;
        }
        Some(EventHead {
            namespace: header.namespace,
            id: header.id,
            name,
            json,
        })
    }

    /// The arguments after the name, each as the JSON text it arrived as.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidJson`] when [`Packet::decode`] would refuse the JSON: its syntax,
    /// and what `serde_json` refuses in a [`Value`] (a number out of range, a lone surrogate
    /// escape, nesting deeper than 128).
    pub fn args(&self) -> Result<Vec<&'a RawValue>, DecodeError> {
        // `RawValue` only skips over values, more leniently than `Value` reads them: the
        // first pass reads every value as `Value` does, keeping nothing.
        serde_json::from_str::<AnyJson>(self.json).map_err(|_| DecodeError::InvalidJson)?;
        let mut args = serde_json::from_str::<Vec<&'a RawValue>>(self.json)
            .map_err(|_| DecodeError::InvalidJson)?;
        if args.is_empty() {
            return Err(DecodeError::InvalidPayload);
        }
        args.remove(0);
        Ok(args)
    }
}

/// Any JSON value, read as serde_json reads a [`Value`] (the same checks, the same depth
/// limit) but kept nowhere: strings are only borrowed or unescaped into serde_json's scratch.
struct AnyJson;

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AnyJson, D::Error> {
        deserializer.deserialize_any(AnyJson)
    }
}

impl<'de> Visitor<'de> for AnyJson {
    type Value = AnyJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_i64<E>(self, _: i64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_u64<E>(self, _: u64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_f64<E>(self, _: f64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_str<E>(self, _: &str) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_unit<E>(self) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyJson, A::Error> {
        while seq.next_element::<AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyJson, A::Error> {
        while map.next_key::<AnyJson>()?.is_some() {
            map.next_value::<AnyJson>()?;
        }
        Ok(AnyJson)
    }
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `value % 10` is below 10, so the cast is lossless.
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// The end of the run of ASCII digits starting at `start` (`start` itself when there is none).
fn scan_digits(bytes: &[u8], start: usize) -> usize {
    bytes.get(start..).map_or(start, |rest| {
        start + rest.iter().take_while(|b| b.is_ascii_digit()).count()
    })
}

/// Parses ASCII digits as a `u64`, `None` on overflow (or no digits).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        value
            .checked_mul(10)?
            .checked_add(u64::from(digit.wrapping_sub(b'0')))
    })
}

/// The payload rules of [`Packet::decode`], shared by [`crate::msgpack::decode`].
pub(crate) fn validate_payload(
    kind: PacketKind,
    id: Option<u64>,
    data: Option<&Value>,
) -> Result<(), DecodeError> {
    let valid = match kind {
        PacketKind::Connect => matches!(data, None | Some(Value::Object(_))),
        PacketKind::Disconnect => data.is_none(),
        PacketKind::ConnectError => matches!(data, Some(Value::String(_) | Value::Object(_))),
        PacketKind::Event | PacketKind::BinaryEvent => match data {
            Some(Value::Array(items)) => match items.first() {
                Some(Value::Number(_)) => true,
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                _ => false,
            },
            _ => false,
        },
        PacketKind::Ack | PacketKind::BinaryAck => {
            if id.is_none() {
                return Err(DecodeError::MissingId);
            }
            match data {
                Some(Value::Array(_)) => true,
                // `3123`: an ack without arguments, as Node's parser accepts it. A binary ack
                // announces attachments, so it needs the array that places them.
                None => kind == PacketKind::Ack,
                Some(_) => false,
            }
        }
    };
    if valid {
        Ok(())
    } else {
        Err(DecodeError::InvalidPayload)
    }
}

/// Checks that the placeholders in `value` match `attachments` binary messages exactly.
///
/// Every object whose `"_placeholder"` is `true` is a placeholder (its other members are not
/// searched); its `"num"` must be an integer below `attachments`, each number used once, and the
/// number of placeholders must equal `attachments`. [`Packet::decode`] runs this on binary kinds.
///
/// # Errors
///
/// [`DecodeError::InvalidPlaceholder`], [`DecodeError::DuplicatePlaceholder`],
/// [`DecodeError::PlaceholderCount`], or [`DecodeError::TooManyAttachments`] when `attachments`
/// exceeds [`MAX_ATTACHMENTS`].
pub fn validate_placeholders(value: &Value, attachments: usize) -> Result<(), DecodeError> {
    if attachments > MAX_ATTACHMENTS {
        return Err(DecodeError::TooManyAttachments);
    }
    let mut seen = vec![false; attachments];
    let mut count = 0;
    visit_placeholders(value, &mut seen, &mut count)?;
    // Each counted placeholder took a distinct slot below `attachments`, so equal counts mean
    // every slot is taken.
    if count == attachments {
        Ok(())
    } else {
        Err(DecodeError::PlaceholderCount)
    }
}

fn visit_placeholders(
    value: &Value,
    seen: &mut [bool],
    count: &mut usize,
) -> Result<(), DecodeError> {
    match value {
        Value::Array(items) => {
            for item in items {
                visit_placeholders(item, seen, count)?;
            }
        }
        Value::Object(object) => {
            if object.get("_placeholder") == Some(&Value::Bool(true)) {
                let slot = object
                    .get("num")
                    .and_then(Value::as_u64)
                    .and_then(|num| usize::try_from(num).ok())
                    .and_then(|num| seen.get_mut(num))
                    .ok_or(DecodeError::InvalidPlaceholder)?;
                if *slot {
                    return Err(DecodeError::DuplicatePlaceholder);
                }
                *slot = true;
                *count += 1;
            } else {
                for item in object.values() {
                    visit_placeholders(item, seen, count)?;
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
    Ok(())
}

/// Builds the placeholder `{"_placeholder":true,"num":num}` (keys in exactly that order).
pub fn placeholder(num: usize) -> Value {
    let mut object = Map::with_capacity(2);
    object.insert("_placeholder".to_owned(), Value::Bool(true));
    object.insert("num".to_owned(), Value::from(num));
    Value::Object(object)
}

/// Checks that `namespace` can travel in a packet: it starts with `/` and contains no `,` (the
/// comma ends the namespace on the wire).
///
/// # Errors
///
/// [`DecodeError::InvalidNamespace`] otherwise.
pub fn check_namespace(namespace: &str) -> Result<(), DecodeError> {
    if namespace.starts_with('/') && !namespace.contains(',') {
        Ok(())
    } else {
        Err(DecodeError::InvalidNamespace)
    }
}

/// Why a Socket.IO packet could not be decoded.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// The packet was empty.
    #[error("empty packet")]
    Empty,
    /// The first character was not a packet kind digit `0`-`6`.
    #[error("unknown packet kind")]
    UnknownKind,
    /// A binary kind without a valid `N-` count (N at least 1), or another kind with one.
    #[error("invalid attachment count")]
    InvalidAttachments,
    /// More than [`MAX_ATTACHMENTS`] attachments.
    #[error("too many attachments")]
    TooManyAttachments,
    /// The namespace does not start with `/` or contains `,`.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// The ack id does not fit a `u64`.
    #[error("invalid ack id")]
    InvalidId,
    /// An `Ack` or `BinaryAck` without an id.
    #[error("ack without an id")]
    MissingId,
    /// The data after the header is not valid JSON (or has trailing garbage).
    #[error("invalid json payload")]
    InvalidJson,
    /// The data does not have the shape this packet kind requires.
    #[error("invalid payload for this packet kind")]
    InvalidPayload,
    /// A placeholder whose `num` is not an integer below the attachment count.
    #[error("invalid binary placeholder")]
    InvalidPlaceholder,
    /// Two placeholders with the same `num`.
    #[error("duplicate binary placeholder")]
    DuplicatePlaceholder,
    /// The number of placeholders differs from the attachment count.
    #[error("placeholder count does not match attachments")]
    PlaceholderCount,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(input: &str) -> Result<Packet, DecodeError> {
        Packet::decode(input)
    }

    #[test]
    fn kind_digits_round_trip() {
        let all = [
            PacketKind::Connect,
            PacketKind::Disconnect,
            PacketKind::Event,
            PacketKind::Ack,
            PacketKind::ConnectError,
            PacketKind::BinaryEvent,
            PacketKind::BinaryAck,
        ];
        for (digit, kind) in ('0'..='6').zip(all) {
            assert_eq!(kind.as_char(), digit);
            assert_eq!(PacketKind::from_byte(digit as u8), Some(kind));
            assert_eq!(kind.is_binary(), digit >= '5');
        }
        assert_eq!(PacketKind::from_byte(b'7'), None);
    }

    #[test]
    fn encodes_like_the_js_parser() {
        let cases = [
            (
                Packet::event("/", "message-back", vec![placeholder(0)], None, 1),
                r#"51-["message-back",{"_placeholder":true,"num":0}]"#,
            ),
            (
                Packet::connect("/custom", Some(json!({"sid": "x"}))),
                r#"0/custom,{"sid":"x"}"#,
            ),
            (
                Packet::connect("/", Some(json!({"sid": "x"}))),
                r#"0{"sid":"x"}"#,
            ),
            (Packet::connect("/", None), "0"),
            (
                Packet::connect_error("/random", "Invalid namespace", None),
                r#"4/random,{"message":"Invalid namespace"}"#,
            ),
            (
                Packet::connect_error("/", "m", Some(json!({"a": 1}))),
                r#"4{"message":"m","data":{"a":1}}"#,
            ),
            (
                Packet::ack("/", 1, vec![json!(1), json!("a")], 0),
                r#"31[1,"a"]"#,
            ),
            (
                Packet::ack("/custom", 12, vec![json!("x")], 0),
                r#"3/custom,12["x"]"#,
            ),
            (Packet::ack("/", 0, vec![], 0), "30[]"),
            (
                Packet::ack("/", u64::MAX, vec![], 0),
                "318446744073709551615[]",
            ),
            (Packet::ack("/", 1_000_000, vec![], 0), "31000000[]"),
            (
                Packet::ack("/a", 3, vec![placeholder(1), placeholder(0)], 2),
                r#"62-/a,3[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]"#,
            ),
            (
                Packet::event("/", "a", vec![json!(1)], None, 0),
                r#"2["a",1]"#,
            ),
            (Packet::event("/", "a", vec![], Some(7), 0), r#"27["a"]"#),
            (Packet::disconnect("/"), "1"),
            (Packet::disconnect("/custom"), "1/custom,"),
            (
                Packet::event(
                    "/",
                    "auth",
                    vec![json!({"z": 1, "a": 2, "m": [1, 2.5, -3]})],
                    None,
                    0,
                ),
                r#"2["auth",{"z":1,"a":2,"m":[1,2.5,-3]}]"#,
            ),
            (
                Packet::event("/", "s", vec![json!("q\"uote\\ \n\u{1} é €😀 </")], None, 0),
                r#"2["s","q\"uote\\ \n\u0001 é €😀 </"]"#,
            ),
        ];
        for (packet, expected) in cases {
            assert_eq!(packet.encode(), expected);
            assert_eq!(decode(expected).as_ref(), Ok(&packet), "{expected}");
            let frame = packet.to_frame();
            assert_eq!(frame.as_text(), Some(format!("4{expected}").as_str()));
            assert_eq!(frame, Frame::message(expected));
        }
    }

    #[test]
    fn encode_into_appends() {
        let mut out = String::from("4");
        Packet::disconnect("/x").encode_into(&mut out);
        assert_eq!(out, "41/x,");
    }

    #[test]
    fn integers_and_key_order_survive() {
        let input = r#"2["e",1,-1,18446744073709551615,1.0,1.5,{"b":1,"a":{"d":1,"c":2}}]"#;
        let packet = decode(input).unwrap();
        assert_eq!(packet.encode(), input);
        let data = packet.data.unwrap();
        assert_eq!(data[1], json!(1));
        assert!(data[1].is_u64());
        let keys: Vec<_> = data[6].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn placeholder_key_order() {
        assert_eq!(
            placeholder(3).to_string(),
            r#"{"_placeholder":true,"num":3}"#
        );
    }

    #[test]
    fn decodes_headers() {
        assert_eq!(
            decode(r#"2/custom,12["x"]"#),
            Ok(Packet {
                kind: PacketKind::Event,
                namespace: "/custom".to_owned(),
                id: Some(12),
                data: Some(json!(["x"])),
                attachments: 0,
            })
        );
        assert_eq!(decode("0"), Ok(Packet::connect("/", None)));
        assert_eq!(decode("0{}"), Ok(Packet::connect("/", Some(json!({})))));
        assert_eq!(
            decode("0/admin,{}"),
            Ok(Packet::connect("/admin", Some(json!({}))))
        );
        assert_eq!(decode("0/admin,"), Ok(Packet::connect("/admin", None)));
        // No comma after the namespace: the rest of the input is the namespace.
        assert_eq!(decode("1/chat"), Ok(Packet::disconnect("/chat")));
        assert_eq!(decode("1/chat,"), Ok(Packet::disconnect("/chat")));
        assert_eq!(decode("1/"), Ok(Packet::disconnect("/")));
        assert_eq!(
            decode(r#"2/,["a"]"#),
            Ok(Packet::event("/", "a", vec![], None, 0))
        );
        assert_eq!(
            decode(r#"2/ü €,["a"]"#),
            Ok(Packet::event("/ü €", "a", vec![], None, 0))
        );
        assert_eq!(decode("4\"nope\"").map(|p| p.data), Ok(Some(json!("nope"))));
        assert_eq!(
            decode(r#"2 [ "a" ] "#),
            Ok(Packet::event("/", "a", vec![], None, 0))
        );
        // Leading zeros are digits like any other.
        assert_eq!(decode(r#"2007["a"]"#).map(|p| p.id), Ok(Some(7)));
        assert_eq!(
            decode(r#"218446744073709551615["a"]"#).map(|p| p.id),
            Ok(Some(u64::MAX))
        );
        // A number is a valid event name.
        assert_eq!(decode("2[1.5]").map(|p| p.data), Ok(Some(json!([1.5]))));
        assert_eq!(decode("2[3]").map(|p| p.event_name().is_none()), Ok(true));
    }

    #[test]
    fn decodes_an_ack_without_arguments() {
        // Node's socket.io-parser validates the payload only when there is one, so `3123` is
        // an ack with no arguments (issue 18, part 5).
        for (input, namespace, id) in [("3123", "/", 123), ("3/custom,7", "/custom", 7)] {
            let packet = decode(input).unwrap();
            assert_eq!(
                (
                    packet.kind,
                    packet.namespace.as_str(),
                    packet.id,
                    &packet.data
                ),
                (PacketKind::Ack, namespace, Some(id), &None),
                "{input}"
            );
            assert_eq!(packet.encode(), input);
        }
        assert_eq!(decode("3"), Err(DecodeError::MissingId));
        assert_eq!(decode("3/custom,"), Err(DecodeError::MissingId));
    }

    #[test]
    fn decodes_binary_packets() {
        let input = r#"451-["message-back",{"_placeholder":true,"num":0}]"#;
        assert_eq!(input.as_bytes()[0], b'4', "the engine.io prefix");
        let packet = decode(&input[1..]).unwrap();
        assert_eq!(
            packet,
            Packet::event("/", "message-back", vec![placeholder(0)], None, 1)
        );
        assert_eq!(packet.event_name(), Some("message-back"));

        let nested =
            r#"52-/n,9["e",{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]"#;
        let packet = decode(nested).unwrap();
        assert_eq!(packet.kind, PacketKind::BinaryEvent);
        assert_eq!(
            (packet.attachments, packet.id, packet.namespace.as_str()),
            (2, Some(9), "/n")
        );
        assert_eq!(packet.encode(), nested);

        let ack = r#"61-5[{"_placeholder":true,"num":0}]"#;
        assert_eq!(
            decode(ack),
            Ok(Packet::ack("/", 5, vec![placeholder(0)], 1))
        );
    }

    #[test]
    fn rejects_invalid_packets() {
        use DecodeError::*;
        let cases: &[(&str, DecodeError)] = &[
            ("", Empty),
            ("abc", UnknownKind),
            ("7", UnknownKind),
            ("-1", UnknownKind),
            ("2{}", InvalidPayload),
            (r#"2abc["a"]"#, InvalidJson),
            ("2[]", InvalidPayload),
            ("2", InvalidPayload),
            ("2[null]", InvalidPayload),
            ("2[[\"a\"]]", InvalidPayload),
            ("2\"a\"", InvalidPayload),
            ("0[]", InvalidPayload),
            ("0\"a\"", InvalidPayload),
            ("0null", InvalidPayload),
            ("1{}", InvalidPayload),
            ("1/custom,{}", InvalidPayload),
            ("3[]", MissingId),
            ("3/a,[]", MissingId),
            ("61-5", InvalidPayload),
            ("31{}", InvalidPayload),
            ("4", InvalidPayload),
            ("4[]", InvalidPayload),
            ("41", InvalidPayload),
            (r#"5["a"]"#, InvalidAttachments),
            (r#"6["a"]"#, InvalidAttachments),
            (r#"5-["a"]"#, InvalidAttachments),
            (r#"50-["a"]"#, InvalidAttachments),
            (r#"51["a"]"#, InvalidAttachments),
            (r#"51-["a"]"#, PlaceholderCount),
            (r#"5/a,1-["a"]"#, InvalidAttachments),
            ("51-", InvalidPayload),
            ("61-[]", MissingId),
            (r#"21-["a"]"#, InvalidAttachments),
            (r#"01-{}"#, InvalidAttachments),
            (r#"51001-["a"]"#, TooManyAttachments),
            (r#"599999999999999999999999-["a"]"#, TooManyAttachments),
            (r#"299999999999999999999["a"]"#, InvalidId),
            (r#"218446744073709551616["a"]"#, InvalidId),
            (r#"2["a"]x"#, InvalidJson),
            (r#"2["a"]["b"]"#, InvalidJson),
            (r#"2["a""#, InvalidJson),
            ("2 ", InvalidJson),
            ("2/nsp[\"a\"]", InvalidPayload),
        ];
        for &(input, expected) in cases {
            assert_eq!(decode(input), Err(expected), "{input:?}");
        }
        for reserved in RESERVED_EVENTS {
            let input = format!(r#"2["{reserved}",1]"#);
            assert_eq!(decode(&input), Err(InvalidPayload), "{input}");
            let input = format!(r#"51-["{reserved}",{{"_placeholder":true,"num":0}}]"#);
            assert_eq!(decode(&input), Err(InvalidPayload), "{input}");
        }
    }

    #[test]
    fn rejects_bad_placeholders_in_binary_packets() {
        use DecodeError::*;
        let cases: &[(&str, DecodeError)] = &[
            (
                r#"51-["a",{"_placeholder":true,"num":1}]"#,
                InvalidPlaceholder,
            ),
            (
                r#"51-["a",{"_placeholder":true,"num":-1}]"#,
                InvalidPlaceholder,
            ),
            (
                r#"51-["a",{"_placeholder":true,"num":0.0}]"#,
                InvalidPlaceholder,
            ),
            (
                r#"51-["a",{"_placeholder":true,"num":"0"}]"#,
                InvalidPlaceholder,
            ),
            (r#"51-["a",{"_placeholder":true}]"#, InvalidPlaceholder),
            (
                r#"52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#,
                DuplicatePlaceholder,
            ),
            (
                r#"52-["a",{"_placeholder":true,"num":1}]"#,
                PlaceholderCount,
            ),
            (
                r#"51-["a",{"_placeholder":false,"num":0}]"#,
                PlaceholderCount,
            ),
        ];
        for &(input, expected) in cases {
            assert_eq!(decode(input), Err(expected), "{input:?}");
        }
        // Non-binary kinds treat placeholder-shaped objects as plain data, as the JS parser does.
        assert!(decode(r#"2["a",{"_placeholder":true,"num":5}]"#).is_ok());
    }

    #[test]
    fn validate_placeholders_rules() {
        use DecodeError::*;
        let two = json!([placeholder(1), {"x": [placeholder(0)]}]);
        assert_eq!(validate_placeholders(&two, 2), Ok(()));
        assert_eq!(validate_placeholders(&two, 3), Err(PlaceholderCount));
        assert_eq!(validate_placeholders(&two, 1), Err(InvalidPlaceholder));
        assert_eq!(validate_placeholders(&json!(["a"]), 0), Ok(()));
        assert_eq!(
            validate_placeholders(&json!([placeholder(0)]), 0),
            Err(InvalidPlaceholder)
        );
        assert_eq!(
            validate_placeholders(&json!([]), MAX_ATTACHMENTS + 1),
            Err(TooManyAttachments)
        );
        let many: Vec<Value> = (0..MAX_ATTACHMENTS).map(placeholder).collect();
        assert_eq!(
            validate_placeholders(&Value::Array(many), MAX_ATTACHMENTS),
            Ok(())
        );
        // A placeholder's other members are not searched.
        let inner = json!({"_placeholder": true, "num": 0, "x": placeholder(0)});
        assert_eq!(validate_placeholders(&inner, 1), Ok(()));
    }

    #[test]
    fn max_attachments_is_accepted() {
        let args: Vec<Value> = (0..MAX_ATTACHMENTS).map(placeholder).collect();
        let packet = Packet::event("/", "bulk", args, None, MAX_ATTACHMENTS);
        assert!(packet.encode().starts_with("51000-[\"bulk\","));
        assert_eq!(decode(&packet.encode()), Ok(packet));
    }

    #[test]
    fn check_namespace_rules() {
        assert_eq!(check_namespace("/"), Ok(()));
        assert_eq!(check_namespace("/a/b c"), Ok(()));
        assert_eq!(check_namespace(""), Err(DecodeError::InvalidNamespace));
        assert_eq!(check_namespace("a"), Err(DecodeError::InvalidNamespace));
        assert_eq!(check_namespace("/a,b"), Err(DecodeError::InvalidNamespace));
    }

    #[test]
    fn event_name_only_for_events() {
        assert_eq!(
            Packet::event("/", "x", vec![], None, 0).event_name(),
            Some("x")
        );
        assert_eq!(Packet::ack("/", 1, vec![json!("x")], 0).event_name(), None);
        assert_eq!(Packet::connect("/", None).event_name(), None);
    }

    #[test]
    fn empty_namespace_is_written_as_default() {
        let mut packet = Packet::disconnect("/");
        packet.namespace = String::new();
        assert_eq!(packet.encode(), "1");
    }

    #[test]
    fn error_messages_are_lowercase() {
        use DecodeError::*;
        for error in [
            Empty,
            UnknownKind,
            InvalidAttachments,
            TooManyAttachments,
            InvalidNamespace,
            InvalidId,
            MissingId,
            InvalidJson,
            InvalidPayload,
            InvalidPlaceholder,
            DuplicatePlaceholder,
            PlaceholderCount,
        ] {
            let message = error.to_string();
            assert!(
                message.chars().next().is_some_and(char::is_lowercase),
                "{message}"
            );
            assert!(!message.ends_with('.'));
        }
    }

    /// The text path accepts exactly what `decode` accepts, and its arguments are the
    /// decoded ones, as text.
    #[test]
    fn event_heads_accept_what_decode_accepts() {
        let deep = format!(r#"2["publish",{}{}]"#, "[".repeat(200), "]".repeat(200));
        let inputs = [
            r#"2["publish",{"topic":"t","data":"x"}]"#,
            r#"2/chat,12["publish",{"data":{"b":1,"a":[1.0,-0,1e5,"\u00e9\n"]}}]"#,
            r#"2[ "publish" , {"data": [ 1 , 2 ] } ]"#,
            r#"2["publish"]"#,
            r#"2["publish",1e999]"#,
            r#"2["publish","\ud800"]"#,
            r#"2["publish",{"a":1,}]"#,
            r#"2["publish",{"a":1}]x"#,
            r#"2["publish",{"a":1}"#,
            "2[\"publish\",\"a\u{1}b\"]",
            r#"2["pub\u006cish",1]"#,
            r#"2["disconnect",1]"#,
            r#"2[7,1]"#,
            r#"2{"publish":1}"#,
            r#"2/chat,["publish",1]"#,
            r#"21-["publish",1]"#,
            r#"3["publish",1]"#,
            deep.as_str(),
        ];
        for input in inputs {
            let decoded = decode(input);
            let Some(head) = EventHead::peek(input) else {
                // Anything not taken is left to `decode`; the plain cases must be taken.
                assert!(
                    !input.starts_with(r#"2["publish","#) && !input.starts_with("2/chat,12"),
                    "{input}"
                );
                continue;
            };
            match (head.args(), decoded) {
                (Ok(args), Ok(packet)) => {
                    assert_eq!(head.namespace, packet.namespace, "{input}");
                    assert_eq!(head.id, packet.id, "{input}");
                    assert_eq!(Some(head.name), packet.event_name(), "{input}");
                    let values: Vec<Value> = args
                        .iter()
                        .map(|a| serde_json::from_str(a.get()).unwrap())
                        .collect();
                    let data = packet.data.unwrap();
                    assert_eq!(values.as_slice(), &data.as_array().unwrap()[1..], "{input}");
                }
                (Err(_), Err(_)) => {}
                (text, decoded) => panic!("{input}: text path {text:?}, decode {decoded:?}"),
            }
        }
    }

    #[test]
    fn a_json_ack_frame_is_the_encoded_ack() {
        for (namespace, id, arg) in [("/", 0, "null"), ("/a", u64::MAX, r#"{"k":[1,"x"]}"#)] {
            let value: Value = serde_json::from_str(arg).unwrap();
            assert_eq!(
                Packet::json_ack_frame(namespace, id, arg),
                Packet::ack(namespace, id, vec![value], 0).to_frame()
            );
        }
    }
}
