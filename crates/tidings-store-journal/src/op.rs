//! The journal's records: one per change of the store, as the arguments of the [`Machine`]
//! call that made it. Replaying the records in order on the state they were made on gives the
//! same state, because every [`Machine`] operation is deterministic (the caller supplies the
//! clock and the new message ids, and both are in the record).
//!
//! Encoding and decoding of each operation sit side by side here, so they cannot drift apart.
//! A record is only written for a call that changed something: an idle claim, an ack of a
//! settled entry or a duplicate publish writes nothing.

use tidings_core::store::{
    ClaimOptions, MessageId, Millis, NewMessage, Offset, Overflow, QueueBound, Retention, Settle,
    StartFrom, SubscriptionName, Topic,
};
use tidings_store_memory::Machine;
use tidings_store_memory::codec::{DecodeError, Decoder, Encoder};

const APPEND: u8 = 1;
const SUBSCRIBE: u8 = 2;
const UNSUBSCRIBE: u8 = 3;
const SET_MEMBER: u8 = 4;
const CLAIM: u8 = 5;
const ACK: u8 = 6;
const REQUEUE: u8 = 7;
const RELEASE_IN_FLIGHT: u8 = 8;
const REQUEUE_DEAD: u8 = 9;
const ENFORCE_RETENTION: u8 = 10;
const SETTLE: u8 = 11;
/// An append of a message with binary attachments (format v2): as [`APPEND`], with the
/// attachments after `data`. A message without binary is still written as [`APPEND`].
const APPEND_BINARY: u8 = 12;
/// A dispatcher's turn, [`Store::settle_and_claim`](tidings_core::store::Store::settle_and_claim):
/// as [`SETTLE`] then [`CLAIM`] of one subscription, in one record (2026-12-06, still format
/// v2: see `format.rs`). Journals of before have the two records instead, which replay to
/// the same state.
const SETTLE_CLAIM: u8 = 13;

/// One change, borrowing its arguments.
#[derive(Debug)]
pub(crate) enum Op<'a> {
    Append {
        topic: &'a Topic,
        id: MessageId,
        msg: &'a NewMessage,
        dedup_window: Millis,
        bound: Option<QueueBound>,
    },
    Subscribe {
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        from: StartFrom,
    },
    Unsubscribe {
        topic: &'a Topic,
        sub: &'a SubscriptionName,
    },
    SetMember {
        topic: &'a Topic,
        group: &'a SubscriptionName,
        identity: &'a str,
        member: bool,
    },
    Claim {
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        opts: ClaimOptions,
    },
    Ack {
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
    },
    Requeue {
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        offset: Offset,
        not_before: Millis,
    },
    Settle {
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
    },
    SettleClaim {
        topic: &'a Topic,
        sub: &'a SubscriptionName,
        batch: &'a [Settle],
        opts: ClaimOptions,
    },
    ReleaseInFlight {
        now: Millis,
    },
    RequeueDead {
        topic: &'a Topic,
        id: MessageId,
        now: Millis,
    },
    EnforceRetention {
        topic: &'a Topic,
        retention: Retention,
        now: Millis,
        dedup_window: Millis,
    },
}

impl Op<'_> {
    /// Appends the record's payload to `buf`.
    pub(crate) fn encode(&self, buf: &mut Vec<u8>) {
        let mut e = Encoder::new(buf);
        match *self {
            Op::Append {
                topic,
                id,
                msg,
                dedup_window,
                bound,
            } => {
                let binary = !msg.attachments.is_empty();
                e.u8(if binary { APPEND_BINARY } else { APPEND });
                e.topic(topic);
                e.message_id(id);
                e.str(&msg.event);
                e.str(&msg.data);
                if binary {
                    e.attachments(&msg.attachments);
                }
                e.opt_str(msg.key.as_deref());
                e.u64(msg.published_at);
                e.u64(dedup_window);
                match bound {
                    None => e.u8(0),
                    Some(QueueBound {
                        max_depth,
                        overflow,
                    }) => {
                        e.u8(match overflow {
                            Overflow::Reject => 1,
                            Overflow::DropOldest => 2,
                        });
                        e.u64(max_depth);
                    }
                }
            }
            Op::Subscribe { topic, sub, from } => {
                e.u8(SUBSCRIBE);
                e.topic(topic);
                e.subscription(sub);
                match from {
                    StartFrom::New => e.u8(0),
                    StartFrom::Earliest => e.u8(1),
                    StartFrom::Offset(o) => {
                        e.u8(2);
                        e.u64(o);
                    }
                }
            }
            Op::Unsubscribe { topic, sub } => {
                e.u8(UNSUBSCRIBE);
                e.topic(topic);
                e.subscription(sub);
            }
            Op::SetMember {
                topic,
                group,
                identity,
                member,
            } => {
                e.u8(SET_MEMBER);
                e.topic(topic);
                e.subscription(group);
                e.str(identity);
                e.bool(member);
            }
            Op::Claim { topic, sub, opts } => {
                e.u8(CLAIM);
                e.topic(topic);
                e.subscription(sub);
                encode_claim_options(&mut e, opts);
            }
            Op::Ack { topic, sub, offset } => {
                e.u8(ACK);
                e.topic(topic);
                e.subscription(sub);
                e.u64(offset);
            }
            Op::Requeue {
                topic,
                sub,
                offset,
                not_before,
            } => {
                e.u8(REQUEUE);
                e.topic(topic);
                e.subscription(sub);
                e.u64(offset);
                e.u64(not_before);
            }
            Op::Settle { topic, sub, batch } => {
                e.u8(SETTLE);
                e.topic(topic);
                e.subscription(sub);
                encode_settles(&mut e, batch);
            }
            Op::SettleClaim {
                topic,
                sub,
                batch,
                opts,
            } => {
                e.u8(SETTLE_CLAIM);
                e.topic(topic);
                e.subscription(sub);
                encode_settles(&mut e, batch);
                encode_claim_options(&mut e, opts);
            }
            Op::ReleaseInFlight { now } => {
                e.u8(RELEASE_IN_FLIGHT);
                e.u64(now);
            }
            Op::RequeueDead { topic, id, now } => {
                e.u8(REQUEUE_DEAD);
                e.topic(topic);
                e.message_id(id);
                e.u64(now);
            }
            Op::EnforceRetention {
                topic,
                retention,
                now,
                dedup_window,
            } => {
                e.u8(ENFORCE_RETENTION);
                e.topic(topic);
                e.u64(retention.max_age);
                e.u64(retention.max_messages);
                e.u64(retention.max_bytes);
                e.u64(now);
                e.u64(dedup_window);
            }
        }
    }
}

fn encode_claim_options(e: &mut Encoder<'_>, opts: ClaimOptions) {
    e.u64(opts.now);
    e.u64(opts.max as u64);
    e.u64(opts.ack_timeout);
    e.u32(opts.max_deliveries);
}

fn decode_claim_options(d: &mut Decoder<'_>) -> Result<ClaimOptions, DecodeError> {
    Ok(ClaimOptions {
        now: d.u64()?,
        max: usize::try_from(d.u64()?).unwrap_or(usize::MAX),
        ack_timeout: d.u64()?,
        max_deliveries: d.u32()?,
    })
}

fn encode_settles(e: &mut Encoder<'_>, batch: &[Settle]) {
    e.count(batch.len());
    for s in batch {
        match *s {
            Settle::Ack(offset) => {
                e.u8(0);
                e.u64(offset);
            }
            Settle::Requeue { offset, not_before } => {
                e.u8(1);
                e.u64(offset);
                e.u64(not_before);
            }
        }
    }
}

fn decode_settles(d: &mut Decoder<'_>) -> Result<Vec<Settle>, DecodeError> {
    let mut batch = Vec::new();
    for _ in 0..d.count()? {
        batch.push(match d.u8()? {
            0 => Settle::Ack(d.u64()?),
            1 => Settle::Requeue {
                offset: d.u64()?,
                not_before: d.u64()?,
            },
            b => return Err(d.error(format!("a settlement of kind {b}"))),
        });
    }
    Ok(batch)
}

/// A record could not be replayed.
#[derive(Debug)]
pub(crate) enum ReplayError {
    /// The payload is not a record this version writes.
    Decode(DecodeError),
    /// The record decoded but the state refused it: the journal and the snapshot disagree.
    Refused(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Decode(e) => write!(f, "undecodable: {e}"),
            ReplayError::Refused(e) => write!(f, "refused by the state: {e}"),
        }
    }
}

impl From<DecodeError> for ReplayError {
    fn from(e: DecodeError) -> Self {
        ReplayError::Decode(e)
    }
}

/// Decodes one record's payload and applies it to `m`, as the call that wrote it did.
pub(crate) fn replay(payload: &[u8], m: &mut Machine) -> Result<(), ReplayError> {
    let mut d = Decoder::new(payload);
    let refused = |e: tidings_core::store::StoreError| ReplayError::Refused(e.to_string());
    match d.u8()? {
        kind @ (APPEND | APPEND_BINARY) => {
            let topic = d.topic()?;
            let id = d.message_id()?;
            let event = d.string()?;
            let data = d.string()?;
            let attachments = if kind == APPEND_BINARY {
                d.attachments()?
            } else {
                Vec::new()
            };
            let msg = NewMessage {
                event,
                data,
                attachments,
                key: d.opt_string()?,
                published_at: d.u64()?,
            };
            let dedup_window = d.u64()?;
            let overflow = match d.u8()? {
                0 => None,
                1 => Some(Overflow::Reject),
                2 => Some(Overflow::DropOldest),
                b => return Err(d.error(format!("an overflow policy of {b}")).into()),
            };
            match overflow {
                None => {
                    m.append(&topic, id, msg, dedup_window);
                }
                Some(overflow) => {
                    let bound = QueueBound {
                        max_depth: d.u64()?,
                        overflow,
                    };
                    m.append_bounded(&topic, id, msg, dedup_window, bound);
                }
            }
        }
        SUBSCRIBE => {
            let topic = d.topic()?;
            let sub = d.subscription()?;
            let from = match d.u8()? {
                0 => StartFrom::New,
                1 => StartFrom::Earliest,
                2 => StartFrom::Offset(d.u64()?),
                b => return Err(d.error(format!("a start position of {b}")).into()),
            };
            m.subscribe(&topic, &sub, from).map_err(refused)?;
        }
        UNSUBSCRIBE => {
            let topic = d.topic()?;
            let sub = d.subscription()?;
            m.unsubscribe(&topic, &sub);
        }
        SET_MEMBER => {
            let topic = d.topic()?;
            let group = d.subscription()?;
            let identity = d.string()?;
            let member = d.bool()?;
            m.set_member(&topic, &group, &identity, member)
                .map_err(refused)?;
        }
        CLAIM => {
            let topic = d.topic()?;
            let sub = d.subscription()?;
            let opts = decode_claim_options(&mut d)?;
            m.claim(&topic, &sub, opts).map_err(refused)?;
        }
        ACK => {
            let topic = d.topic()?;
            let sub = d.subscription()?;
            m.ack(&topic, &sub, d.u64()?).map_err(refused)?;
        }
        REQUEUE => {
            let topic = d.topic()?;
            let sub = d.subscription()?;
            let offset = d.u64()?;
            m.requeue(&topic, &sub, offset, d.u64()?).map_err(refused)?;
        }
        SETTLE => {
            let topic = d.topic()?;
            let sub = d.subscription()?;
            let batch = decode_settles(&mut d)?;
            m.settle(&topic, &sub, &batch).map_err(refused)?;
        }
        SETTLE_CLAIM => {
            let topic = d.topic()?;
            let sub = d.subscription()?;
            let batch = decode_settles(&mut d)?;
            let opts = decode_claim_options(&mut d)?;
            m.settle(&topic, &sub, &batch).map_err(refused)?;
            m.claim(&topic, &sub, opts).map_err(refused)?;
        }
        RELEASE_IN_FLIGHT => {
            m.release_in_flight(d.u64()?);
        }
        REQUEUE_DEAD => {
            let topic = d.topic()?;
            let id = d.message_id()?;
            m.requeue_dead(&topic, id, d.u64()?).map_err(refused)?;
        }
        ENFORCE_RETENTION => {
            let topic = d.topic()?;
            let retention = Retention {
                max_age: d.u64()?,
                max_messages: d.u64()?,
                max_bytes: d.u64()?,
            };
            let now = d.u64()?;
            m.enforce_retention(&topic, retention, now, d.u64()?)
                .map_err(refused)?;
        }
        tag => return Err(d.error(format!("a record of unknown kind {tag}")).into()),
    }
    d.finish()?;
    Ok(())
}
