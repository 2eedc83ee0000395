//! The whole [`Machine`] as bytes: what the journal store writes at a checkpoint and reads
//! back at open. The framing (magic, version, checksum) is the journal's; this is the body.
//!
//! Decoding checks the invariants the operations rely on (offsets in order, every pending
//! entry below its cursor and retained), so a body that decodes is a state the store can run.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tidings_core::store::{Offset, StoredMessage};

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::machine::{Dead, Entry, KeyRecord, Machine, SubState, TopicState};
use crate::ring::{MessageRing, SharedMessages};

/// A snapshot body could not be decoded.
pub type SnapshotError = DecodeError;

/// The encodings of a snapshot body this build reads. The journal's file header says which
/// one a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotFormat {
    /// Journal format v1: messages without binary attachments.
    V1,
    /// Journal formats v2 and v3 (what [`Machine::encode`] writes): every message followed by
    /// its attachments (a count, then each length-prefixed).
    V2,
}

fn encode_message(e: &mut Encoder<'_>, m: &StoredMessage) {
    e.message_id(m.id);
    e.u64(m.offset);
    e.str(&m.event);
    e.str(&m.data);
    e.attachments(&m.attachments);
    e.u64(m.published_at);
}

fn decode_message(
    d: &mut Decoder<'_>,
    format: SnapshotFormat,
) -> Result<StoredMessage, DecodeError> {
    Ok(StoredMessage {
        id: d.message_id()?,
        offset: d.u64()?,
        event: d.string()?,
        data: d.string()?,
        attachments: match format {
            SnapshotFormat::V1 => Vec::new(),
            SnapshotFormat::V2 => d.attachments()?,
        },
        published_at: d.u64()?,
    })
}

/// A [`Machine`]'s state as of one moment, to encode after the store's lock is released.
///
/// [`Machine::capture`] encodes what is small or changes in place (topics, subscriptions,
/// pending entries, dead letters, idempotency keys) at once and shares the retained messages,
/// which never change (see `ring`): the lock is held for time proportional to the former, not
/// to the retained data. [`Capture::encode`] then writes the bytes [`Machine::encode`] would
/// have written at that moment.
pub struct Capture {
    /// The encoding of everything but the retained messages.
    frame: Vec<u8>,
    /// Per topic, the position in `frame` where its messages go, and the messages.
    messages: Vec<(usize, SharedMessages)>,
}

impl Capture {
    /// Appends the captured state to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let mut write = |piece: &[u8]| -> Result<(), std::convert::Infallible> {
            buf.extend_from_slice(piece);
            Ok(())
        };
        // Infallible: the only error is the sink's.
        let Ok(()) = self.encode_to(usize::MAX, &mut write);
    }

    /// Encodes the captured state piece by piece: `sink` gets the bytes [`Capture::encode`]
    /// would write, in order, in pieces of about `piece_len` bytes (never more than
    /// `piece_len` plus one message), so that the whole encoding never has to be in memory.
    ///
    /// # Errors
    ///
    /// The first error of `sink`, after which nothing more is written.
    pub fn encode_to<E>(
        &self,
        piece_len: usize,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut buf = Vec::new();
        let mut done = 0;
        for (at, messages) in &self.messages {
            buf.extend_from_slice(&self.frame[done..*at]);
            done = *at;
            for m in messages.iter() {
                encode_message(&mut Encoder::new(&mut buf), m);
                if buf.len() >= piece_len {
                    sink(&buf)?;
                    buf.clear();
                }
            }
        }
        buf.extend_from_slice(&self.frame[done..]);
        if !buf.is_empty() {
            sink(&buf)?;
        }
        Ok(())
    }

    /// The retained messages the capture shares.
    pub fn messages(&self) -> usize {
        self.messages.iter().map(|(_, m)| m.len()).sum()
    }
}

impl Machine {
    /// Appends the whole state to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        self.capture().encode(buf);
    }

    /// The state as it is now, to encode later without this machine (see [`Capture`]).
    pub fn capture(&self) -> Capture {
        let mut frame = Vec::new();
        let mut messages = Vec::with_capacity(self.topics.len());
        Encoder::new(&mut frame).count(self.topics.len());
        for (topic, t) in &self.topics {
            let mut e = Encoder::new(&mut frame);
            e.topic(topic);
            e.u64(t.head);
            e.count(t.messages.len());
            messages.push((frame.len(), t.messages.share()));
            let mut e = Encoder::new(&mut frame);
            // Sorted, so that one state always gives the same bytes.
            let mut keys: Vec<_> = t.keys.iter().collect();
            keys.sort_unstable_by_key(|(key, _)| *key);
            e.count(keys.len());
            for (key, rec) in keys {
                e.str(key);
                e.message_id(rec.id);
                e.u64(rec.offset);
                e.u64(rec.at);
            }
            e.count(t.subs.len());
            for (name, s) in &t.subs {
                e.subscription(name);
                e.u64(s.cursor);
                e.u64(s.gaps);
                e.count(s.pending.len());
                for (&offset, entry) in &s.pending {
                    e.u64(offset);
                    e.u32(entry.attempt);
                    e.bool(entry.in_flight);
                    e.u64(entry.due);
                }
                e.count(s.dead.len());
                for dead in s.dead.values() {
                    encode_message(&mut e, &dead.message);
                    e.u32(dead.attempts);
                    e.u64(dead.dead_at);
                }
                e.count(s.members.len());
                for m in &s.members {
                    e.str(m);
                }
            }
        }
        Capture { frame, messages }
    }

    /// The state [`Machine::encode`] wrote.
    pub fn decode(input: &[u8]) -> Result<Machine, SnapshotError> {
        Machine::decode_format(input, SnapshotFormat::V2)
    }

    /// The state a body of `format` holds (an older journal's snapshot).
    pub fn decode_format(input: &[u8], format: SnapshotFormat) -> Result<Machine, SnapshotError> {
        let mut d = Decoder::new(input);
        let mut topics = BTreeMap::new();
        for _ in 0..d.count()? {
            let topic = d.topic()?;
            let head = d.u64()?;
            let count = d.count()? as u64;
            let first = (head + 1)
                .checked_sub(count)
                .ok_or_else(|| d.error(format!("{count} messages retained below head {head}")))?;
            let mut messages = MessageRing::default();
            let mut retained_bytes = 0;
            for expected in first..=head {
                let m = decode_message(&mut d, format)?;
                if m.offset != expected {
                    return Err(d.error(format!(
                        "message offset {} where {expected} was due",
                        m.offset
                    )));
                }
                retained_bytes += m.payload_len();
                messages.push_back(m);
            }
            let mut keys = HashMap::new();
            for _ in 0..d.count()? {
                let key = d.string()?;
                let rec = KeyRecord {
                    id: d.message_id()?,
                    offset: d.u64()?,
                    at: d.u64()?,
                };
                keys.insert(key, rec);
            }
            let mut subs = BTreeMap::new();
            for _ in 0..d.count()? {
                let name = d.subscription()?;
                let s = decode_sub(&mut d, first, head, format)?;
                subs.insert(name, s);
            }
            let state = TopicState {
                head,
                messages,
                retained_bytes,
                keys,
                subs,
            };
            if topics.insert(topic.clone(), state).is_some() {
                return Err(d.error(format!("topic {topic} twice")));
            }
        }
        d.finish()?;
        let mut machine = Machine {
            topics,
            footprint: 0,
        };
        machine.footprint = machine.count_footprint();
        Ok(machine)
    }
}

fn decode_sub(
    d: &mut Decoder<'_>,
    first: Offset,
    head: Offset,
    format: SnapshotFormat,
) -> Result<SubState, DecodeError> {
    let cursor = d.u64()?;
    if cursor > head + 1 {
        return Err(d.error(format!("cursor {cursor} beyond head {head}")));
    }
    let gaps = d.u64()?;
    let mut pending = BTreeMap::new();
    for _ in 0..d.count()? {
        let offset = d.u64()?;
        if offset < first || offset >= cursor {
            return Err(d.error(format!(
                "pending offset {offset} outside the retained, handed-out range {first}..{cursor}"
            )));
        }
        let entry = Entry {
            attempt: d.u32()?,
            in_flight: d.bool()?,
            due: d.u64()?,
        };
        pending.insert(offset, entry);
    }
    let mut dead = BTreeMap::new();
    for _ in 0..d.count()? {
        let message = decode_message(d, format)?;
        let entry = Dead {
            attempts: d.u32()?,
            dead_at: d.u64()?,
            message,
        };
        dead.insert(entry.message.offset, entry);
    }
    let mut members = BTreeSet::new();
    for _ in 0..d.count()? {
        members.insert(d.string()?);
    }
    Ok(SubState {
        cursor,
        gaps,
        pending,
        dead,
        members,
    })
}

#[cfg(test)]
mod tests {
    use tidings_core::store::{
        ClaimOptions, MessageId, NewMessage, StartFrom, SubscriptionName, Topic,
    };

    use super::*;

    fn msg(data: &str, key: Option<&str>) -> NewMessage {
        NewMessage {
            attachments: Vec::new(),
            event: "e".into(),
            data: data.into(),
            key: key.map(Into::into),
            published_at: 5,
        }
    }

    #[test]
    fn a_state_round_trips_byte_for_byte() {
        let mut m = Machine::default();
        let t = Topic::new("a.b").unwrap();
        let g = SubscriptionName::group("g").unwrap();
        let i = SubscriptionName::identity("me").unwrap();
        m.subscribe(&t, &g, StartFrom::New).unwrap();
        m.set_member(&t, &g, "me", true).unwrap();
        for n in 0..5 {
            m.append(
                &t,
                MessageId(n),
                msg(&format!("{{\"n\":{n}}}"), Some(&format!("k{n}"))),
                60_000,
            );
        }
        m.subscribe(&t, &i, StartFrom::Earliest).unwrap();
        let opts = ClaimOptions {
            now: 10,
            max: 3,
            ack_timeout: 100,
            max_deliveries: 2,
        };
        m.claim(&t, &g, opts).unwrap();
        m.ack(&t, &g, 2).unwrap();
        m.requeue(&t, &g, 3, 50).unwrap();
        m.claim(
            &t,
            &i,
            ClaimOptions {
                max_deliveries: 0,
                ..opts
            },
        )
        .unwrap();

        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        let back = Machine::decode(&bytes).unwrap();
        let mut again = Vec::new();
        back.encode(&mut again);
        assert_eq!(bytes, again);
        assert_eq!(back.topic_info(&t), m.topic_info(&t));
        assert_eq!(back.dead_letters(&t).unwrap(), m.dead_letters(&t).unwrap());
        assert_eq!(back.members(), m.members());
    }

    /// What a checkpoint encodes after releasing the lock is the state of the moment it
    /// captured, whatever the machine did meanwhile (appends into the shared chunk, retention
    /// removing from it, claims and acks).
    #[test]
    fn a_capture_encodes_the_state_of_its_moment() {
        let mut m = Machine::default();
        let t = Topic::new("t").unwrap();
        let u = Topic::new("u").unwrap();
        let g = SubscriptionName::group("g").unwrap();
        m.subscribe(&t, &g, StartFrom::Earliest).unwrap();
        for n in 0..150 {
            m.append(&t, MessageId(n), msg(&n.to_string(), None), 60_000);
            m.append(
                &u,
                MessageId(1_000 + n),
                msg("{}", Some(&n.to_string())),
                60_000,
            );
        }
        let opts = ClaimOptions {
            now: 10,
            max: 20,
            ack_timeout: 100,
            max_deliveries: 5,
        };
        m.claim(&t, &g, opts).unwrap();
        let mut before = Vec::new();
        m.encode(&mut before);

        let capture = m.capture();
        assert_eq!(capture.messages(), 300);
        for n in 150..300 {
            m.append(&t, MessageId(n), msg(&n.to_string(), None), 60_000);
        }
        m.ack(&t, &g, 1).unwrap();
        let retention = tidings_core::store::Retention {
            max_messages: 40,
            max_bytes: u64::MAX,
            max_age: u64::MAX,
        };
        m.enforce_retention(&t, retention, 20, 60_000).unwrap();
        let mut after = Vec::new();
        capture.encode(&mut after);
        assert_eq!(after, before);
        assert_eq!(m.topic_info(&t).unwrap().retained, 40);
    }

    /// The pieces of `encode_to`, whatever their size, add up to the bytes of `encode`.
    #[test]
    fn a_capture_encoded_in_pieces_is_the_same_bytes() {
        let mut m = Machine::default();
        let t = Topic::new("t").unwrap();
        m.subscribe(
            &t,
            &SubscriptionName::group("g").unwrap(),
            StartFrom::Earliest,
        )
        .unwrap();
        for n in 0..200 {
            m.append(&t, MessageId(n), msg(&"x".repeat(n as usize), None), 60_000);
        }
        m.append(
            &Topic::new("u").unwrap(),
            MessageId(999),
            msg("{}", None),
            0,
        );
        let capture = m.capture();
        let mut whole = Vec::new();
        capture.encode(&mut whole);
        for piece_len in [1, 100, 4096, usize::MAX] {
            let mut pieces: Vec<Vec<u8>> = Vec::new();
            let mut sink = |p: &[u8]| -> Result<(), ()> {
                pieces.push(p.to_vec());
                Ok(())
            };
            capture.encode_to(piece_len, &mut sink).unwrap();
            assert_eq!(pieces.concat(), whole, "pieces of {piece_len}");
            if piece_len == 4096 {
                assert!(pieces.len() > 4, "{} pieces", pieces.len());
                assert!(pieces.iter().all(|p| p.len() < 4096 + 400));
            }
        }
    }

    #[test]
    fn every_truncation_of_a_state_is_an_error() {
        let mut m = Machine::default();
        let t = Topic::new("t").unwrap();
        m.subscribe(
            &t,
            &SubscriptionName::identity("x").unwrap(),
            StartFrom::New,
        )
        .unwrap();
        m.append(&t, MessageId(1), msg("{}", None), 0);
        let mut bytes = Vec::new();
        m.encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(Machine::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
