//! The store operations as SQL over one connection. Each runs inside a transaction (the
//! writer's savepoint or the reader's read transaction) opened by its caller, so it sees and
//! leaves a consistent state.

use bytes::Bytes;
use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};
use tidings_core::store::{
    Appended, BoundedAppend, ClaimOptions, ClaimResult, Claimed, DeadLetter, Gap, MessageId,
    Millis, NewMessage, Offset, Overflow, QueueBound, Retention, StartFrom, StoreError,
    StoredMessage, SubscriptionInfo, SubscriptionName, Topic, TopicInfo,
};
use tracing::{debug, warn};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps an SQLite error: a damaged file or a value of the wrong type is `Corrupt`, everything
/// else (I/O, disk full, busy, a closed connection) is `Unavailable`.
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) =>
        {
            StoreError::Corrupt(format!("sqlite: {e}"))
        }
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::InvalidColumnType(..)
        | E::Utf8Error(..) => StoreError::Corrupt(format!("sqlite: unexpected value: {e}")),
        _ => StoreError::Unavailable(format!("sqlite: {e}")),
    }
}

/// A `u64` (offset, time, count) as an SQLite integer. Values past `i64::MAX` only come from
/// absurd requests (an offset or a time billions of years away); they saturate.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn id_bytes(id: MessageId) -> [u8; 16] {
    id.0.to_be_bytes()
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

/// Reads `id, event, data, published_at, attachments` starting at column `i`, with `offset`.
fn message_at(r: &Row<'_>, offset: Offset, i: usize) -> rusqlite::Result<StoredMessage> {
    let blob: Option<Vec<u8>> = r.get(i + 4)?;
    let attachments = match blob {
        None => Vec::new(),
        Some(blob) => decode_attachments(&blob).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                i + 4,
                rusqlite::types::Type::Blob,
                format!("a malformed attachments blob of {} bytes", blob.len()).into(),
            )
        })?,
    };
    Ok(StoredMessage {
        id: MessageId(u128::from_be_bytes(r.get(i)?)),
        offset,
        event: r.get(i + 1)?,
        data: r.get(i + 2)?,
        attachments,
        published_at: r.get(i + 3)?,
    })
}

/// The `attachments` column (schema 2): NULL for a message without binary, else each
/// attachment as a little-endian u32 length and its bytes, in order.
fn encode_attachments(attachments: &[Bytes]) -> Option<Vec<u8>> {
    if attachments.is_empty() {
        return None;
    }
    let len: usize = attachments.iter().map(|a| 4 + a.len()).sum();
    let mut out = Vec::with_capacity(len);
    for a in attachments {
        out.extend_from_slice(&u32::try_from(a.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(a);
    }
    Some(out)
}

/// What [`encode_attachments`] wrote; None when the blob is not that.
fn decode_attachments(mut blob: &[u8]) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    while !blob.is_empty() {
        let (len, rest) = blob.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        out.push(Bytes::copy_from_slice(&rest[..len]));
        blob = &rest[len..];
    }
    Some(out)
}

fn parse_topic(name: &str) -> Result<Topic> {
    Topic::new(name).map_err(|e| corrupt(format!("stored topic name: {e}")))
}

fn parse_sub(key: &str) -> Result<SubscriptionName> {
    SubscriptionName::from_key(key).map_err(|e| corrupt(format!("stored subscription name: {e}")))
}

fn topic_not_found(topic: &Topic) -> StoreError {
    StoreError::NotFound(format!("topic {topic}"))
}

fn sub_not_found(topic: &Topic, sub: &SubscriptionName) -> StoreError {
    StoreError::NotFound(format!("subscription {sub} of topic {topic}"))
}

struct TopicRow {
    id: i64,
    head: Offset,
    first: Offset,
    retained_bytes: u64,
}

struct SubRow {
    id: i64,
    cursor: Offset,
    gaps: u64,
}

fn topic_row(c: &Connection, topic: &Topic) -> Result<Option<TopicRow>> {
    c.prepare_cached("SELECT id, head, first_seq, retained_bytes FROM topics WHERE name = ?1")
        .and_then(|mut s| {
            s.query_row([topic.as_str()], |r| {
                Ok(TopicRow {
                    id: r.get(0)?,
                    head: r.get(1)?,
                    first: r.get(2)?,
                    retained_bytes: r.get(3)?,
                })
            })
            .optional()
        })
        .map_err(db)
}

fn require_topic(c: &Connection, topic: &Topic) -> Result<TopicRow> {
    topic_row(c, topic)?.ok_or_else(|| topic_not_found(topic))
}

fn ensure_topic(c: &Connection, topic: &Topic) -> Result<TopicRow> {
    if let Some(t) = topic_row(c, topic)? {
        return Ok(t);
    }
    c.prepare_cached(
        "INSERT INTO topics (name, head, first_seq, retained_bytes) VALUES (?1, 0, 1, 0)",
    )
    .and_then(|mut s| s.execute([topic.as_str()]))
    .map_err(db)?;
    debug!(topic = %topic, "topic created");
    Ok(TopicRow {
        id: c.last_insert_rowid(),
        head: 0,
        first: 1,
        retained_bytes: 0,
    })
}

fn sub_row(c: &Connection, topic_id: i64, sub: &SubscriptionName) -> Result<Option<SubRow>> {
    c.prepare_cached("SELECT id, cursor, gaps FROM subscriptions WHERE topic = ?1 AND name = ?2")
        .and_then(|mut s| {
            s.query_row(params![topic_id, sub.key()], |r| {
                Ok(SubRow {
                    id: r.get(0)?,
                    cursor: r.get(1)?,
                    gaps: r.get(2)?,
                })
            })
            .optional()
        })
        .map_err(db)
}

fn require_sub(
    c: &Connection,
    topic: &Topic,
    sub: &SubscriptionName,
) -> Result<(TopicRow, SubRow)> {
    let t = require_topic(c, topic)?;
    let s = sub_row(c, t.id, sub)?.ok_or_else(|| sub_not_found(topic, sub))?;
    Ok((t, s))
}

fn sub_info(
    c: &Connection,
    name: SubscriptionName,
    s: &SubRow,
    head: Offset,
) -> Result<SubscriptionInfo> {
    let (entries, in_flight): (u64, u64) = c
        .prepare_cached("SELECT count(*), coalesce(sum(in_flight), 0) FROM pending WHERE sub = ?1")
        .and_then(|mut st| st.query_row([s.id], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(db)?;
    let dead: u64 = c
        .prepare_cached("SELECT count(*) FROM dead_letters WHERE sub = ?1")
        .and_then(|mut st| st.query_row([s.id], |r| r.get(0)))
        .map_err(db)?;
    let never_delivered = (head + 1)
        .checked_sub(s.cursor)
        .ok_or_else(|| corrupt(format!("cursor {} of {name} is past head {head}", s.cursor)))?;
    Ok(SubscriptionInfo {
        name,
        pending: entries + never_delivered,
        in_flight,
        dead,
        gaps: s.gaps,
        cursor: s.cursor,
    })
}

/// Where a new subscription's cursor starts, given the topic's head and first retained offset.
fn start_cursor(from: StartFrom, head: Offset, first: Offset) -> Result<Offset> {
    match from {
        StartFrom::New => Ok(head + 1),
        StartFrom::Earliest => Ok(first),
        StartFrom::Offset(o) if o > head.saturating_add(1) => Err(StoreError::Invalid(format!(
            "start offset {o} is beyond the head {head} of the topic"
        ))),
        StartFrom::Offset(o) => Ok(o.max(first)),
    }
}

/// The first append of `msg`'s idempotency key, if it is within the window.
fn duplicate(
    c: &Connection,
    topic_id: i64,
    msg: &NewMessage,
    dedup_window: Millis,
) -> Result<Option<Appended>> {
    let Some(key) = &msg.key else {
        return Ok(None);
    };
    let seen: Option<(Offset, [u8; 16], Millis)> = c
        .prepare_cached("SELECT seq, id, at FROM idempotency WHERE topic = ?1 AND key = ?2")
        .and_then(|mut s| {
            s.query_row(params![topic_id, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(db)?;
    Ok(seen
        .filter(|(_, _, at)| msg.published_at.saturating_sub(*at) <= dedup_window)
        .map(|(offset, id, _)| Appended {
            id: MessageId(u128::from_be_bytes(id)),
            offset,
            duplicate: true,
        }))
}

/// Every subscription of a topic with its queue depth (pending entries + never delivered).
fn depths(c: &Connection, t: &TopicRow) -> Result<Vec<(String, SubRow, u64)>> {
    let rows: Vec<(String, SubRow, u64)> = c
        .prepare_cached(
            "SELECT s.name, s.id, s.cursor, s.gaps,
                    (SELECT count(*) FROM pending p WHERE p.sub = s.id)
             FROM subscriptions s WHERE s.topic = ?1 ORDER BY s.name",
        )
        .and_then(|mut st| {
            st.query_map([t.id], |r| {
                Ok((
                    r.get(0)?,
                    SubRow {
                        id: r.get(1)?,
                        cursor: r.get(2)?,
                        gaps: r.get(3)?,
                    },
                    r.get(4)?,
                ))
            })?
            .collect()
        })
        .map_err(db)?;
    rows.into_iter()
        .map(|(name, s, entries)| {
            let never_delivered = (t.head + 1).checked_sub(s.cursor).ok_or_else(|| {
                corrupt(format!(
                    "cursor {} of {name} is past head {}",
                    s.cursor, t.head
                ))
            })?;
            Ok((name, s, entries + never_delivered))
        })
        .collect()
}

pub(crate) fn append_bounded(
    c: &Connection,
    topic: &Topic,
    msg: NewMessage,
    dedup_window: Millis,
    bound: QueueBound,
) -> Result<BoundedAppend> {
    if let Some(t) = topic_row(c, topic)? {
        if let Some(first) = duplicate(c, t.id, &msg, dedup_window)? {
            return Ok(BoundedAppend::Appended {
                appended: first,
                dropped: Vec::new(),
            });
        }
        if bound.overflow == Overflow::Reject {
            let full = depths(c, &t)?
                .into_iter()
                .find(|(_, _, depth)| *depth >= bound.max_depth);
            if let Some((name, _, depth)) = full {
                return Ok(BoundedAppend::Full {
                    subscription: parse_sub(&name)?,
                    depth,
                });
            }
        }
    }
    let appended = append(c, topic, msg, dedup_window)?;
    let mut dropped = Vec::new();
    if bound.overflow == Overflow::DropOldest && !appended.duplicate {
        let t = require_topic(c, topic)?;
        for (name, s, depth) in depths(c, &t)? {
            let Some(excess) = depth.checked_sub(bound.max_depth).filter(|e| *e > 0) else {
                continue;
            };
            // Pending entries are all below the cursor: they are the oldest.
            let lost: Vec<Offset> = c
                .prepare_cached("SELECT seq FROM pending WHERE sub = ?1 ORDER BY seq LIMIT ?2")
                .and_then(|mut st| {
                    st.query_map(params![s.id, int(excess)], |r| r.get(0))?
                        .collect()
                })
                .map_err(db)?;
            let mut ranges = Vec::new();
            for &offset in &lost {
                push_range(&mut ranges, offset, offset);
            }
            if let Some(&last) = lost.last() {
                c.prepare_cached("DELETE FROM pending WHERE sub = ?1 AND seq <= ?2")
                    .and_then(|mut st| st.execute(params![s.id, int(last)]))
                    .map_err(db)?;
            }
            let skipped = excess - lost.len() as u64;
            if skipped > 0 {
                push_range(&mut ranges, s.cursor, s.cursor + skipped - 1);
            }
            c.prepare_cached("UPDATE subscriptions SET cursor = ?2, gaps = ?3 WHERE id = ?1")
                .and_then(|mut st| {
                    st.execute(params![s.id, int(s.cursor + skipped), int(s.gaps + excess)])
                })
                .map_err(db)?;
            let name = parse_sub(&name)?;
            for (from, to) in ranges {
                debug!(topic = %topic, sub = %name, from, to, "queue full: dropped its oldest unsettled messages");
                dropped.push(Gap {
                    topic: topic.clone(),
                    subscription: name.clone(),
                    from,
                    to,
                });
            }
        }
        dropped.sort_by(|a, b| (&a.subscription, a.from).cmp(&(&b.subscription, b.from)));
    }
    Ok(BoundedAppend::Appended { appended, dropped })
}

pub(crate) fn append(
    c: &Connection,
    topic: &Topic,
    msg: NewMessage,
    dedup_window: Millis,
) -> Result<Appended> {
    let t = ensure_topic(c, topic)?;
    if let Some(first) = duplicate(c, t.id, &msg, dedup_window)? {
        return Ok(first);
    }
    let id = MessageId::new();
    let offset = t.head + 1;
    let size = msg.payload_len();
    c.prepare_cached(
        "INSERT INTO messages (topic, seq, id, event, data, size, published_at, attachments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            t.id,
            int(offset),
            id_bytes(id),
            msg.event,
            msg.data,
            int(size),
            int(msg.published_at),
            encode_attachments(&msg.attachments)
        ])
    })
    .map_err(db)?;
    c.prepare_cached(
        "UPDATE topics SET head = ?2, retained_bytes = retained_bytes + ?3 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![t.id, int(offset), int(size)]))
    .map_err(db)?;
    if let Some(key) = &msg.key {
        c.prepare_cached(
            "INSERT OR REPLACE INTO idempotency (topic, key, seq, id, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![t.id, key, int(offset), id_bytes(id), int(msg.published_at)])
        })
        .map_err(db)?;
    }
    Ok(Appended {
        id,
        offset,
        duplicate: false,
    })
}

pub(crate) fn subscribe(
    c: &Connection,
    topic: &Topic,
    sub: &SubscriptionName,
    from: StartFrom,
) -> Result<SubscriptionInfo> {
    let existing = topic_row(c, topic)?;
    if let Some(t) = &existing {
        if let Some(s) = sub_row(c, t.id, sub)? {
            return sub_info(c, sub.clone(), &s, t.head);
        }
    }
    let (head, first) = existing.as_ref().map_or((0, 1), |t| (t.head, t.first));
    let cursor = start_cursor(from, head, first)?;
    let t = match existing {
        Some(t) => t,
        None => ensure_topic(c, topic)?,
    };
    c.prepare_cached(
        "INSERT INTO subscriptions (topic, name, cursor, gaps) VALUES (?1, ?2, ?3, 0)",
    )
    .and_then(|mut s| s.execute(params![t.id, sub.key(), int(cursor)]))
    .map_err(db)?;
    debug!(topic = %topic, sub = %sub, cursor, "subscription created");
    Ok(SubscriptionInfo {
        name: sub.clone(),
        pending: head + 1 - cursor,
        in_flight: 0,
        dead: 0,
        gaps: 0,
        cursor,
    })
}

pub(crate) fn unsubscribe(c: &Connection, topic: &Topic, sub: &SubscriptionName) -> Result<bool> {
    let Some(t) = topic_row(c, topic)? else {
        return Ok(false);
    };
    let Some(s) = sub_row(c, t.id, sub)? else {
        return Ok(false);
    };
    for sql in [
        "DELETE FROM pending WHERE sub = ?1",
        "DELETE FROM dead_letters WHERE sub = ?1",
        "DELETE FROM members WHERE sub = ?1",
        "DELETE FROM subscriptions WHERE id = ?1",
    ] {
        c.prepare_cached(sql)
            .and_then(|mut st| st.execute([s.id]))
            .map_err(db)?;
    }
    debug!(topic = %topic, sub = %sub, "subscription removed");
    Ok(true)
}

pub(crate) fn subscriptions(c: &Connection) -> Result<Vec<(Topic, SubscriptionName)>> {
    let rows: Vec<(String, String)> = c
        .prepare_cached(
            "SELECT t.name, s.name FROM subscriptions s JOIN topics t ON t.id = s.topic",
        )
        .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(db)?;
    let mut out = rows
        .iter()
        .map(|(t, s)| Ok((parse_topic(t)?, parse_sub(s)?)))
        .collect::<Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

pub(crate) fn release_in_flight(c: &Connection, now: Millis) -> Result<u64> {
    let n = c
        .prepare_cached("UPDATE pending SET in_flight = 0, due_at = ?1 WHERE in_flight = 1")
        .and_then(|mut st| st.execute([int(now)]))
        .map_err(db)?;
    Ok(n as u64)
}

pub(crate) fn set_member(
    c: &Connection,
    topic: &Topic,
    group: &SubscriptionName,
    identity: &str,
    member: bool,
) -> Result<()> {
    let found = match group {
        SubscriptionName::Group(_) => match topic_row(c, topic)? {
            Some(t) => sub_row(c, t.id, group)?,
            None => None,
        },
        SubscriptionName::Identity(_) => None,
    };
    let Some(s) = found else {
        return Err(StoreError::NotFound(format!(
            "no group subscription {group} on {topic}"
        )));
    };
    let sql = if member {
        "INSERT OR IGNORE INTO members (sub, identity) VALUES (?1, ?2)"
    } else {
        "DELETE FROM members WHERE sub = ?1 AND identity = ?2"
    };
    c.prepare_cached(sql)
        .and_then(|mut st| st.execute(params![s.id, identity]))
        .map_err(db)?;
    Ok(())
}

pub(crate) fn members(c: &Connection) -> Result<Vec<(Topic, SubscriptionName, String)>> {
    let rows: Vec<(String, String, String)> = c
        .prepare_cached(
            "SELECT t.name, s.name, m.identity FROM members m \
             JOIN subscriptions s ON s.id = m.sub JOIN topics t ON t.id = s.topic",
        )
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(db)?;
    let mut out = rows
        .into_iter()
        .map(|(t, s, m)| Ok((parse_topic(&t)?, parse_sub(&s)?, m)))
        .collect::<Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

fn dead_letter(
    c: &Connection,
    sub_id: i64,
    message: &StoredMessage,
    attempts: u32,
    now: Millis,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO dead_letters
         (sub, seq, id, event, data, published_at, attempts, dead_at, attachments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            sub_id,
            int(message.offset),
            id_bytes(message.id),
            message.event,
            message.data,
            int(message.published_at),
            attempts,
            int(now),
            encode_attachments(&message.attachments)
        ])
    })
    .map_err(db)?;
    Ok(())
}

/// Up to this many due entries of a claim are fetched through the `pending_due` index and
/// sorted by offset; with more, an offset-ordered scan takes the first ones and stops.
const DUE_VIA_INDEX: usize = 256;

fn message_row(c: &Connection, topic_id: i64, offset: Offset) -> Result<Option<StoredMessage>> {
    c.prepare_cached(
        "SELECT id, event, data, published_at, attachments FROM messages
         WHERE topic = ?1 AND seq = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![topic_id, int(offset)], |r| message_at(r, offset, 0))
            .optional()
    })
    .map_err(db)
}

/// Hands out a due entry again, or moves it to the dead letters if it reached
/// `max_deliveries`.
fn hand_out_due(
    c: &Connection,
    sub_id: i64,
    message: StoredMessage,
    attempt: u32,
    opts: ClaimOptions,
    result: &mut ClaimResult,
) -> Result<()> {
    let offset = message.offset;
    if attempt >= opts.max_deliveries {
        dead_letter(c, sub_id, &message, attempt, opts.now)?;
        c.prepare_cached("DELETE FROM pending WHERE sub = ?1 AND seq = ?2")
            .and_then(|mut st| st.execute(params![sub_id, int(offset)]))
            .map_err(db)?;
        result.dead_lettered.push(offset);
        return Ok(());
    }
    let deadline = opts.now.saturating_add(opts.ack_timeout);
    c.prepare_cached(
        "UPDATE pending SET attempt = ?3, in_flight = 1, due_at = ?4 WHERE sub = ?1 AND seq = ?2",
    )
    .and_then(|mut st| st.execute(params![sub_id, int(offset), attempt + 1, int(deadline)]))
    .map_err(db)?;
    result.claimed.push(Claimed {
        message,
        attempt: attempt + 1,
    });
    Ok(())
}

/// The due entries of a claim when there are many: an offset-ordered scan, a chunk at a time
/// (each as big as what is still wanted: dead-lettered entries do not count). `seq > after`
/// keeps an entry just claimed with `ack_timeout == 0`, due again at once, from being handed
/// out twice.
fn claim_many_due(
    c: &Connection,
    t: &TopicRow,
    s: &SubRow,
    opts: ClaimOptions,
    result: &mut ClaimResult,
    missing: &dyn Fn(Offset) -> StoreError,
) -> Result<()> {
    let mut after: i64 = 0;
    while result.claimed.len() < opts.max {
        let want = opts.max - result.claimed.len();
        type DueRow = (Offset, u32, Option<StoredMessage>);
        let rows: Vec<DueRow> = c
            .prepare_cached(
                "SELECT p.seq, p.attempt, m.id, m.event, m.data, m.published_at, m.attachments
                 FROM pending p LEFT JOIN messages m ON m.topic = ?1 AND m.seq = p.seq
                 WHERE p.sub = ?2 AND p.due_at <= ?3 AND p.seq > ?4
                 ORDER BY p.seq LIMIT ?5",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![t.id, s.id, int(opts.now), after, limit(want)],
                    |r| {
                        let offset: Offset = r.get(0)?;
                        let present: Option<Vec<u8>> = r.get(2)?;
                        let message = match present {
                            Some(_) => Some(message_at(r, offset, 2)?),
                            None => None,
                        };
                        Ok((offset, r.get(1)?, message))
                    },
                )?
                .collect()
            })
            .map_err(db)?;
        let fetched = rows.len();
        for (offset, attempt, message) in rows {
            after = int(offset);
            let message = message.ok_or_else(|| missing(offset))?;
            hand_out_due(c, s.id, message, attempt, opts, result)?;
        }
        if fetched < want {
            break;
        }
    }
    Ok(())
}

pub(crate) fn claim(
    c: &Connection,
    topic: &Topic,
    sub: &SubscriptionName,
    opts: ClaimOptions,
) -> Result<ClaimResult> {
    let (t, s) = require_sub(c, topic, sub)?;
    let deadline = opts.now.saturating_add(opts.ack_timeout);
    let mut result = ClaimResult::default();
    let missing = |offset: Offset| {
        corrupt(format!(
            "offset {offset} of topic {topic} is pending for {sub} but not retained"
        ))
    };

    if opts.max > 0 {
        // The due entries, found through the `pending_due` index (a claim finding nothing
        // due, the usual case, costs one index probe however many entries are in flight).
        let due: Vec<(Offset, u32)> = c
            .prepare_cached(
                "SELECT seq, attempt FROM pending INDEXED BY pending_due
                 WHERE sub = ?1 AND due_at <= ?2 LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![s.id, int(opts.now), limit(DUE_VIA_INDEX + 1)],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
            })
            .map_err(db)?;
        if due.len() <= DUE_VIA_INDEX {
            let mut due = due;
            due.sort_unstable();
            for (offset, attempt) in due {
                if result.claimed.len() >= opts.max {
                    break;
                }
                let message = message_row(c, t.id, offset)?.ok_or_else(|| missing(offset))?;
                hand_out_due(c, s.id, message, attempt, opts, &mut result)?;
            }
        } else {
            claim_many_due(c, &t, &s, opts, &mut result, &missing)?;
        }
    }

    let mut cursor = s.cursor;
    while result.claimed.len() < opts.max && cursor <= t.head {
        let want = (opts.max - result.claimed.len())
            .min(usize::try_from(t.head + 1 - cursor).unwrap_or(usize::MAX));
        let rows: Vec<StoredMessage> = c
            .prepare_cached(
                "SELECT seq, id, event, data, published_at, attachments FROM messages
                 WHERE topic = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(params![t.id, int(cursor), limit(want)], |r| {
                    message_at(r, r.get(0)?, 1)
                })?
                .collect()
            })
            .map_err(db)?;
        if rows.is_empty() {
            return Err(missing(cursor));
        }
        for message in rows {
            if message.offset != cursor {
                return Err(missing(cursor));
            }
            cursor += 1;
            if opts.max_deliveries == 0 {
                dead_letter(c, s.id, &message, 0, opts.now)?;
                result.dead_lettered.push(message.offset);
                continue;
            }
            c.prepare_cached(
                "INSERT INTO pending (sub, seq, attempt, in_flight, due_at) VALUES (?1, ?2, 1, 1, ?3)",
            )
            .and_then(|mut st| st.execute(params![s.id, int(message.offset), int(deadline)]))
            .map_err(db)?;
            result.claimed.push(Claimed {
                message,
                attempt: 1,
            });
        }
    }
    if cursor != s.cursor {
        c.prepare_cached("UPDATE subscriptions SET cursor = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![s.id, int(cursor)]))
            .map_err(db)?;
    }
    if !result.dead_lettered.is_empty() {
        warn!(topic = %topic, sub = %sub, offsets = ?result.dead_lettered, "dead-lettered");
    }
    // One probe of the `pending_due` index (sub, due_at).
    let next_due: Option<i64> = c
        .prepare_cached("SELECT MIN(due_at) FROM pending WHERE sub = ?1")
        .and_then(|mut st| st.query_row([s.id], |r| r.get(0)))
        .map_err(db)?;
    result.next_due = next_due.map(|due| u64::try_from(due).unwrap_or(0));
    Ok(result)
}

pub(crate) fn ack(
    c: &Connection,
    topic: &Topic,
    sub: &SubscriptionName,
    offset: Offset,
) -> Result<bool> {
    let (_, s) = require_sub(c, topic, sub)?;
    let n = c
        .prepare_cached("DELETE FROM pending WHERE sub = ?1 AND seq = ?2")
        .and_then(|mut st| st.execute(params![s.id, int(offset)]))
        .map_err(db)?;
    Ok(n > 0)
}

pub(crate) fn requeue(
    c: &Connection,
    topic: &Topic,
    sub: &SubscriptionName,
    offset: Offset,
    not_before: Millis,
) -> Result<bool> {
    let (_, s) = require_sub(c, topic, sub)?;
    let n = c
        .prepare_cached("UPDATE pending SET in_flight = 0, due_at = ?3 WHERE sub = ?1 AND seq = ?2")
        .and_then(|mut st| st.execute(params![s.id, int(offset), int(not_before)]))
        .map_err(db)?;
    Ok(n > 0)
}

pub(crate) fn dead_letters(c: &Connection, topic: &Topic) -> Result<Vec<DeadLetter>> {
    let t = require_topic(c, topic)?;
    let rows: Vec<(String, StoredMessage, u32, Millis)> = c
        .prepare_cached(
            "SELECT s.name, d.seq, d.id, d.event, d.data, d.published_at, d.attachments,
                    d.attempts, d.dead_at
             FROM dead_letters d JOIN subscriptions s ON s.id = d.sub WHERE s.topic = ?1",
        )
        .and_then(|mut st| {
            st.query_map([t.id], |r| {
                Ok((
                    r.get(0)?,
                    message_at(r, r.get(1)?, 2)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })?
            .collect()
        })
        .map_err(db)?;
    let mut out = rows
        .into_iter()
        .map(|(name, message, attempts, dead_at)| {
            Ok(DeadLetter {
                message,
                subscription: parse_sub(&name)?,
                attempts,
                dead_at,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    DeadLetter::sort(&mut out);
    Ok(out)
}

pub(crate) fn requeue_dead(
    c: &Connection,
    topic: &Topic,
    id: MessageId,
    now: Millis,
) -> Result<bool> {
    let t = require_topic(c, topic)?;
    let found: Vec<(i64, Offset)> = c
        .prepare_cached(
            "SELECT d.sub, d.seq FROM dead_letters d JOIN subscriptions s ON s.id = d.sub
             WHERE d.id = ?2 AND s.topic = ?1",
        )
        .and_then(|mut st| {
            st.query_map(params![t.id, id_bytes(id)], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(db)?;
    let mut requeued = false;
    // A dead letter whose message retention removed stays listed but cannot be requeued.
    for (sub_id, offset) in found.into_iter().filter(|&(_, o)| o >= t.first) {
        c.prepare_cached("DELETE FROM dead_letters WHERE sub = ?1 AND seq = ?2")
            .and_then(|mut st| st.execute(params![sub_id, int(offset)]))
            .map_err(db)?;
        c.prepare_cached(
            "INSERT INTO pending (sub, seq, attempt, in_flight, due_at) VALUES (?1, ?2, 0, 0, ?3)",
        )
        .and_then(|mut st| st.execute(params![sub_id, int(offset), int(now)]))
        .map_err(db)?;
        requeued = true;
    }
    Ok(requeued)
}

pub(crate) fn history(
    c: &Connection,
    topic: &Topic,
    from: Offset,
    max: usize,
) -> Result<Vec<StoredMessage>> {
    let Some(t) = topic_row(c, topic)? else {
        return Ok(Vec::new());
    };
    c.prepare_cached(
        "SELECT seq, id, event, data, published_at, attachments FROM messages
         WHERE topic = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
    )
    .and_then(|mut st| {
        st.query_map(params![t.id, int(from), limit(max)], |r| {
            message_at(r, r.get(0)?, 1)
        })?
        .collect()
    })
    .map_err(db)
}

/// [`tidings_core::store::Store::oldest_unsettled`]: per subscription, its lowest pending
/// offset, else its cursor when at or below the head; that message's publish time. One query.
pub(crate) fn oldest_unsettled(
    c: &Connection,
    topic: &Topic,
) -> Result<Vec<(SubscriptionName, Millis)>> {
    let Some(t) = topic_row(c, topic)? else {
        return Ok(Vec::new());
    };
    let rows: Vec<(String, Option<i64>, i64)> = c
        .prepare_cached(
            "SELECT s.name, (SELECT MIN(p.seq) FROM pending p WHERE p.sub = s.id), s.cursor \
             FROM subscriptions s WHERE s.topic = ?1",
        )
        .and_then(|mut st| {
            st.query_map([t.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for (name, min_pending, cursor) in rows {
        let cursor = Offset::try_from(cursor)
            .map_err(|_| corrupt(format!("topic {topic}: negative cursor")))?;
        let offset = match min_pending {
            Some(o) => Offset::try_from(o)
                .map_err(|_| corrupt(format!("topic {topic}: negative offset")))?,
            None if cursor <= t.head => cursor.max(t.first),
            None => continue,
        };
        let at: Option<i64> = c
            .prepare_cached("SELECT published_at FROM messages WHERE topic = ?1 AND seq = ?2")
            .and_then(|mut st| {
                st.query_row(params![t.id, offset as i64], |r| r.get(0))
                    .optional()
            })
            .map_err(db)?;
        if let Some(at) = at {
            let at = Millis::try_from(at)
                .map_err(|_| corrupt(format!("topic {topic}: negative publish time")))?;
            out.push((parse_sub(&name)?, at));
        }
    }
    Ok(out)
}

pub(crate) fn topic_info(c: &Connection, topic: &Topic) -> Result<Option<TopicInfo>> {
    let Some(t) = topic_row(c, topic)? else {
        return Ok(None);
    };
    let subs: Vec<(String, SubRow)> = c
        .prepare_cached("SELECT name, id, cursor, gaps FROM subscriptions WHERE topic = ?1")
        .and_then(|mut st| {
            st.query_map([t.id], |r| {
                Ok((
                    r.get(0)?,
                    SubRow {
                        id: r.get(1)?,
                        cursor: r.get(2)?,
                        gaps: r.get(3)?,
                    },
                ))
            })?
            .collect()
        })
        .map_err(db)?;
    let mut subscriptions = subs
        .iter()
        .map(|(name, s)| sub_info(c, parse_sub(name)?, s, t.head))
        .collect::<Result<Vec<_>>>()?;
    subscriptions.sort_by(|a, b| a.name.cmp(&b.name));
    let retained = (t.head + 1).checked_sub(t.first).ok_or_else(|| {
        corrupt(format!(
            "topic {topic}: first {} past head {}",
            t.first, t.head
        ))
    })?;
    Ok(Some(TopicInfo {
        topic: topic.clone(),
        head: t.head,
        first: t.first,
        retained,
        retained_bytes: t.retained_bytes,
        subscriptions,
    }))
}

pub(crate) fn topics(c: &Connection) -> Result<Vec<Topic>> {
    let names: Vec<String> = c
        .prepare_cached("SELECT name FROM topics ORDER BY name")
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(db)?;
    names.iter().map(|n| parse_topic(n)).collect()
}

/// Adds `from..=to` to ascending, non-overlapping ranges, merging with the last if adjacent.
fn push_range(ranges: &mut Vec<(Offset, Offset)>, from: Offset, to: Offset) {
    match ranges.last_mut() {
        Some(last) if last.1 + 1 == from => last.1 = to,
        _ => ranges.push((from, to)),
    }
}

pub(crate) fn enforce_retention(
    c: &Connection,
    topic: &Topic,
    retention: Retention,
    now: Millis,
    dedup_window: Millis,
) -> Result<Vec<Gap>> {
    let t = require_topic(c, topic)?;
    let mut first = t.first;
    let mut count = t.head + 1 - t.first;
    let mut bytes = t.retained_bytes;
    // Trim from the front while the oldest message must go.
    'scan: while count > 0 {
        let rows: Vec<(Offset, u64, Millis)> = c
            .prepare_cached(
                "SELECT seq, size, published_at FROM messages
                 WHERE topic = ?1 AND seq >= ?2 ORDER BY seq LIMIT 256",
            )
            .and_then(|mut st| {
                st.query_map(params![t.id, int(first)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(db)?;
        if rows.is_empty() {
            return Err(corrupt(format!(
                "topic {topic}: offset {first} is not retained"
            )));
        }
        for (offset, size, published_at) in rows {
            if offset != first {
                return Err(corrupt(format!(
                    "topic {topic}: offset {first} is not retained"
                )));
            }
            let too_many = count > retention.max_messages;
            let too_big = bytes > retention.max_bytes;
            let too_old = now.saturating_sub(published_at) > retention.max_age;
            if !(too_many || too_big || too_old) {
                break 'scan;
            }
            first += 1;
            count -= 1;
            bytes = bytes.saturating_sub(size);
        }
    }

    let mut gaps = Vec::new();
    if first > t.first {
        c.prepare_cached("DELETE FROM messages WHERE topic = ?1 AND seq < ?2")
            .and_then(|mut st| st.execute(params![t.id, int(first)]))
            .map_err(db)?;
        c.prepare_cached("UPDATE topics SET first_seq = ?2, retained_bytes = ?3 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![t.id, int(first), int(bytes)]))
            .map_err(db)?;
        debug!(topic = %topic, removed = first - t.first, "retention removed messages");

        let subs: Vec<(String, SubRow)> = c
            .prepare_cached("SELECT name, id, cursor, gaps FROM subscriptions WHERE topic = ?1")
            .and_then(|mut st| {
                st.query_map([t.id], |r| {
                    Ok((
                        r.get(0)?,
                        SubRow {
                            id: r.get(1)?,
                            cursor: r.get(2)?,
                            gaps: r.get(3)?,
                        },
                    ))
                })?
                .collect()
            })
            .map_err(db)?;
        for (name, s) in subs {
            let lost: Vec<Offset> = c
                .prepare_cached("SELECT seq FROM pending WHERE sub = ?1 AND seq < ?2 ORDER BY seq")
                .and_then(|mut st| {
                    st.query_map(params![s.id, int(first)], |r| r.get(0))?
                        .collect()
                })
                .map_err(db)?;
            let mut ranges = Vec::new();
            for offset in lost {
                push_range(&mut ranges, offset, offset);
            }
            let cursor = s.cursor.max(first);
            if s.cursor < first {
                push_range(&mut ranges, s.cursor, first - 1);
            }
            if ranges.is_empty() {
                continue;
            }
            let lost_count: u64 = ranges.iter().map(|(from, to)| to - from + 1).sum();
            c.prepare_cached("DELETE FROM pending WHERE sub = ?1 AND seq < ?2")
                .and_then(|mut st| st.execute(params![s.id, int(first)]))
                .map_err(db)?;
            c.prepare_cached("UPDATE subscriptions SET cursor = ?2, gaps = ?3 WHERE id = ?1")
                .and_then(|mut st| st.execute(params![s.id, int(cursor), int(s.gaps + lost_count)]))
                .map_err(db)?;
            let name = parse_sub(&name)?;
            for (from, to) in ranges {
                warn!(topic = %topic, sub = %name, from, to, "retention removed unsettled messages");
                gaps.push(Gap {
                    topic: topic.clone(),
                    subscription: name.clone(),
                    from,
                    to,
                });
            }
        }
        gaps.sort_by(|a, b| (&a.subscription, a.from).cmp(&(&b.subscription, b.from)));
    }

    if let Some(expired_before) = now.checked_sub(dedup_window) {
        c.prepare_cached("DELETE FROM idempotency WHERE topic = ?1 AND at < ?2")
            .and_then(|mut st| st.execute(params![t.id, int(expired_before)]))
            .map_err(db)?;
    }
    Ok(gaps)
}
