//! Decoding of the Lua script's replies into the store's types. A reply that does not have the
//! expected shape is [`StoreError::Corrupt`]: the keys under the prefix were not written by
//! this version of the script.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use redis::Value;
use tidings_core::store::{Claimed, MessageId, StoreError, StoredMessage, SubscriptionName, Topic};

pub(crate) fn corrupt(what: &str, v: &Value) -> StoreError {
    let mut shown = format!("{v:?}");
    if shown.len() > 120 {
        let mut end = 120;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
    }
    StoreError::Corrupt(format!("unexpected reply from redis for {what}: {shown}"))
}

pub(crate) fn array<'v>(v: &'v Value, what: &str) -> Result<&'v [Value], StoreError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(corrupt(what, other)),
    }
}

/// The `i`th element of an array reply.
pub(crate) fn at<'v>(items: &'v [Value], i: usize, what: &str) -> Result<&'v Value, StoreError> {
    items
        .get(i)
        .ok_or_else(|| StoreError::Corrupt(format!("short reply from redis for {what}")))
}

pub(crate) fn string(v: &Value, what: &str) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| corrupt(what, v)),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(corrupt(what, other)),
    }
}

pub(crate) fn u64_of(v: &Value, what: &str) -> Result<u64, StoreError> {
    match v {
        Value::Int(i) => u64::try_from(*i).map_err(|_| corrupt(what, v)),
        _ => string(v, what)?.parse().map_err(|_| corrupt(what, v)),
    }
}

/// A sorted-set score as whole milliseconds: Redis keeps scores as doubles and writes large
/// ones in exponent form (`1.8446744073709552e+19`); those saturate.
pub(crate) fn score(v: &Value, what: &str) -> Result<u64, StoreError> {
    let text = string(v, what)?;
    match text.parse::<u64>() {
        Ok(ms) => Ok(ms),
        // `as` saturates: a score past u64::MAX is u64::MAX, a negative one 0.
        Err(_) => text
            .parse::<f64>()
            .map(|ms| ms as u64)
            .map_err(|_| corrupt(what, v)),
    }
}

pub(crate) fn flag(v: &Value, what: &str) -> Result<bool, StoreError> {
    Ok(u64_of(v, what)? != 0)
}

/// Message ids are stored as 32 lowercase hex digits.
pub(crate) fn id_to_hex(id: MessageId) -> String {
    format!("{:032x}", id.0)
}

pub(crate) fn id_from_hex(s: &str) -> Result<MessageId, StoreError> {
    u128::from_str_radix(s, 16)
        .map(MessageId)
        .map_err(|_| StoreError::Corrupt(format!("bad message id {s:?} in redis")))
}

pub(crate) fn topic(v: &Value) -> Result<Topic, StoreError> {
    let name = string(v, "topic name")?;
    Topic::new(&name).map_err(|e| StoreError::Corrupt(format!("bad topic name in redis: {e}")))
}

pub(crate) fn sub(v: &Value) -> Result<SubscriptionName, StoreError> {
    let key = string(v, "subscription key")?;
    SubscriptionName::from_key(&key)
        .map_err(|e| StoreError::Corrupt(format!("bad subscription key in redis: {e}")))
}

/// The settle flags of a batch of `n` entries: a string of `0` (not pending) and `1`.
pub(crate) fn flags(v: &Value, n: usize, what: &str) -> Result<Vec<bool>, StoreError> {
    let text = bytes_of(v, what)?;
    if text.len() != n {
        return Err(corrupt(what, v));
    }
    text.iter()
        .map(|b| match b {
            b'0' => Ok(false),
            b'1' => Ok(true),
            _ => Err(corrupt(what, v)),
        })
        .collect()
}

/// The bytes of a bulk string reply.
pub(crate) fn bytes_of<'v>(v: &'v Value, what: &str) -> Result<&'v [u8], StoreError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        other => Err(corrupt(what, other)),
    }
}

/// The claimed entries as the script writes them (`push_claimed` in `store.lua`), a flat
/// array: per entry a head `<offset>[-0] <attempt> <id> <published_at> <has bin: 0|1>
/// <event>`, its data, and its `bin` field when it has one — no array per entry (which costs
/// Redis and the reply parser more), and the data as the stream read gave it to the script.
pub(crate) fn claimed(items: &[Value]) -> Result<Vec<Claimed>, StoreError> {
    const WHAT: &str = "claimed entry";
    let mut out = Vec::new();
    let mut items = items.iter();
    while let Some(head_value) = items.next() {
        let bad = || corrupt(WHAT, head_value);
        let head = std::str::from_utf8(bytes_of(head_value, WHAT)?).map_err(|_| bad())?;
        let mut parts = head.splitn(6, ' ');
        let mut field = || parts.next().ok_or_else(bad);
        let offset_text = field()?;
        let offset: u64 = offset_text
            .strip_suffix("-0")
            .unwrap_or(offset_text)
            .parse()
            .map_err(|_| bad())?;
        let attempt: u32 = field()?.parse().map_err(|_| bad())?;
        let id = id_from_hex(field()?)?;
        let published_at: u64 = field()?.parse().map_err(|_| bad())?;
        let has_bin = match field()? {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        };
        let event = field()?.to_owned();
        let data = string(items.next().ok_or_else(bad)?, WHAT)?;
        let attachments = if has_bin {
            decode_bin(&string(items.next().ok_or_else(bad)?, WHAT)?)?
        } else {
            Vec::new()
        };
        out.push(Claimed {
            message: StoredMessage {
                offset,
                id,
                event,
                data,
                attachments,
                published_at,
            },
            attempt,
        });
    }
    Ok(out)
}

/// `{offset, id, event, data, published_at[, bin]}`.
pub(crate) fn message(v: &Value) -> Result<StoredMessage, StoreError> {
    const WHAT: &str = "message";
    let m = array(v, WHAT)?;
    let attachments = match m.get(5) {
        None | Some(Value::Nil) => Vec::new(),
        Some(bin) => decode_bin(&string(bin, WHAT)?)?,
    };
    Ok(StoredMessage {
        offset: u64_of(at(m, 0, WHAT)?, WHAT)?,
        id: id_from_hex(&string(at(m, 1, WHAT)?, WHAT)?)?,
        event: string(at(m, 2, WHAT)?, WHAT)?,
        data: string(at(m, 3, WHAT)?, WHAT)?,
        attachments,
        published_at: u64_of(at(m, 4, WHAT)?, WHAT)?,
    })
}

/// The stream field `bin` of a message with binary attachments (`''`, no field, without):
/// `<attachment bytes> <base64>,<base64>,…` — the byte count first, so that the Lua scripts
/// count retained bytes without decoding; base64 because script arguments are text here.
pub(crate) fn encode_bin(attachments: &[Bytes]) -> String {
    if attachments.is_empty() {
        return String::new();
    }
    let total: usize = attachments.iter().map(Bytes::len).sum();
    let parts: Vec<String> = attachments.iter().map(|a| BASE64.encode(a)).collect();
    format!("{total} {}", parts.join(","))
}

/// What [`encode_bin`] wrote.
pub(crate) fn decode_bin(s: &str) -> Result<Vec<Bytes>, StoreError> {
    let bad = || StoreError::Corrupt("bad binary attachments field in redis".to_owned());
    let (_, parts) = s.split_once(' ').ok_or_else(bad)?;
    parts
        .split(',')
        .map(|p| BASE64.decode(p).map(Bytes::from).map_err(|_| bad()))
        .collect()
}

/// A dead letter's record: `<attempts> <dead_at> <published_at> <id> <#event> <event><data>`,
/// or with attachments `… <#event>:<#data> <event><data><bin>`.
pub(crate) struct DeadRecord {
    pub attempts: u32,
    pub dead_at: u64,
    pub published_at: u64,
    pub id: MessageId,
    pub event: String,
    pub data: String,
    pub attachments: Vec<Bytes>,
}

pub(crate) fn dead_record(s: &str) -> Result<DeadRecord, StoreError> {
    let bad = || StoreError::Corrupt("bad dead letter record in redis".to_owned());
    let mut parts = s.splitn(6, ' ');
    let mut next = || parts.next().ok_or_else(bad);
    let attempts = next()?.parse().map_err(|_| bad())?;
    let dead_at = next()?.parse().map_err(|_| bad())?;
    let published_at = next()?.parse().map_err(|_| bad())?;
    let id = id_from_hex(next()?)?;
    let lens = next()?;
    let (event_len, data_len) = match lens.split_once(':') {
        None => (lens.parse().map_err(|_| bad())?, None),
        Some((e, d)) => (
            e.parse::<usize>().map_err(|_| bad())?,
            Some(d.parse::<usize>().map_err(|_| bad())?),
        ),
    };
    let rest = next()?;
    let event = rest.get(..event_len).ok_or_else(bad)?;
    let (data, attachments) = match data_len {
        None => (rest.get(event_len..).ok_or_else(bad)?, Vec::new()),
        Some(n) => {
            let end = event_len.checked_add(n).ok_or_else(bad)?;
            let data = rest.get(event_len..end).ok_or_else(bad)?;
            (data, decode_bin(rest.get(end..).ok_or_else(bad)?)?)
        }
    };
    Ok(DeadRecord {
        attempts,
        dead_at,
        published_at,
        id,
        event: event.to_owned(),
        data: data.to_owned(),
        attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_records_split_event_from_data() {
        let r = dead_record("2 20 42 000000000000000000000000000000ff 5 év t{\"a\": 1}").unwrap();
        assert_eq!((r.attempts, r.dead_at, r.published_at), (2, 20, 42));
        assert_eq!(r.id, MessageId(255));
        assert_eq!((r.event.as_str(), r.data.as_str()), ("év t", "{\"a\": 1}"));
        assert!(dead_record("2 20 42 ff 9 short").is_err());
        assert!(dead_record("2 20").is_err());
    }

    #[test]
    fn attachments_round_trip_through_the_bin_field_and_dead_records() {
        let attachments = vec![
            Bytes::from_static(&[0, 255, 1]),
            Bytes::new(),
            Bytes::from_static(b"x"),
        ];
        let bin = encode_bin(&attachments);
        assert_eq!(bin, "4 AP8B,,eA==");
        assert_eq!(decode_bin(&bin).unwrap(), attachments);
        assert_eq!(decode_bin("0 ").unwrap(), vec![Bytes::new()]);
        assert_eq!(encode_bin(&[]), "");
        let r = dead_record(&format!(
            "2 20 42 000000000000000000000000000000ff 1:3 e[1]{bin}"
        ))
        .unwrap();
        assert_eq!((r.event.as_str(), r.data.as_str()), ("e", "[1]"));
        assert_eq!(r.attachments, attachments);
        assert!(dead_record("2 20 42 000000000000000000000000000000ff 1:9 e[1]").is_err());
        assert!(decode_bin("3 !!").is_err());
    }

    #[test]
    fn claimed_entries_are_a_head_the_data_and_maybe_the_attachments() {
        let id = "000000000000000000000000000000ff";
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let bin = encode_bin(&[Bytes::from_static(&[0, 255, 1])]);
        let items = [
            bulk(&format!("7-0 1 {id} 42 0 év t")),
            bulk("{\"a\": 1}"),
            bulk(&format!("8 2 {id} 43 1 e")),
            bulk("[1]"),
            bulk(&bin),
        ];
        let c = claimed(&items).unwrap();
        assert_eq!(c.len(), 2);
        let m = &c[0].message;
        assert_eq!((m.offset, c[0].attempt, m.published_at), (7, 1, 42));
        assert_eq!(m.id, MessageId(255));
        assert_eq!((m.event.as_str(), m.data.as_str()), ("év t", "{\"a\": 1}"));
        assert!(m.attachments.is_empty());
        let m = &c[1].message;
        assert_eq!((m.offset, c[1].attempt, m.event.as_str()), (8, 2, "e"));
        assert_eq!(m.attachments, vec![Bytes::from_static(&[0, 255, 1])]);
        assert!(claimed(&[]).unwrap().is_empty());
        for bad in [
            vec![bulk(&format!("1 1 {id} 5 0 e"))],
            vec![bulk(&format!("1 1 {id} 5 1 e")), bulk("[1]")],
            vec![bulk(&format!("1 x {id} 5 0 e")), bulk("[1]")],
            vec![bulk(&format!("1 1 {id} 5 2 e")), bulk("[1]")],
            vec![bulk("1 1"), bulk("[1]")],
        ] {
            assert!(claimed(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_are_a_string_of_digits() {
        let v = Value::BulkString(b"101".to_vec());
        assert_eq!(flags(&v, 3, "t").unwrap(), [true, false, true]);
        assert!(flags(&v, 2, "t").is_err());
        assert!(flags(&Value::BulkString(b"1x".to_vec()), 2, "t").is_err());
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id = MessageId::new();
        assert_eq!(id_from_hex(&id_to_hex(id)).unwrap(), id);
        assert!(id_from_hex("zz").is_err());
    }
}
