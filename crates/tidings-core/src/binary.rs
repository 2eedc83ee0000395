//! Binary data of durable messages in JSON-only places (the HTTP API, the CLI): each binary
//! part is the object `{"_binary":"<standard base64 with padding>"}` where Socket.IO puts a
//! placeholder `{"_placeholder":true,"num":N}` and sends the bytes as attachment N.
//!
//! A stored message keeps the Socket.IO form (JSON text with placeholders + attachments, see
//! [`crate::store::NewMessage`]); [`inline`] turns it into the JSON form for an answer and
//! [`extract`] turns a request's JSON form back into placeholders + attachments. Both walk the
//! value depth-first in document order, the order Socket.IO numbers placeholders in, so
//! `extract(inline(v, a)) == (v, a)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Map, Value};

/// The key of the JSON form of a binary part.
pub const BINARY_KEY: &str = "_binary";

/// Why a request's JSON form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryError {
    /// A `{"_binary": …}` whose value is not a base64 string.
    #[error("`_binary` must be a standard base64 string (with padding)")]
    InvalidBase64,
    /// A `{"_placeholder": true, …}` object: in JSON the binary parts are `{"_binary": …}`.
    #[error(
        "`_placeholder` objects are Socket.IO's binary placeholders; send `{{\"_binary\": \"<base64>\"}}` instead"
    )]
    Placeholder,
}

/// Whether `map` is a Socket.IO placeholder (`_placeholder: true` with a numeric `num`).
fn placeholder_num(map: &Map<String, Value>) -> Option<usize> {
    if map.get("_placeholder").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    map.get("num")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

/// `data` with every placeholder replaced by `{"_binary": base64 of its attachment}`. A
/// placeholder whose attachment is missing (never stored so) is left as it is.
pub fn inline(data: &Value, attachments: &[Bytes]) -> Value {
    if attachments.is_empty() {
        return data.clone();
    }
    match data {
        Value::Object(map) => {
            if let Some(bytes) = placeholder_num(map).and_then(|n| attachments.get(n)) {
                let mut out = Map::new();
                out.insert(BINARY_KEY.to_owned(), Value::from(BASE64.encode(bytes)));
                return Value::Object(out);
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline(v, attachments)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(v, attachments)).collect()),
        other => other.clone(),
    }
}

/// Replaces every `{"_binary": "<base64>"}` object (exactly that one key) inside `value` by
/// a placeholder numbered depth-first from 0, and returns the decoded bytes in that order.
///
/// # Errors
///
/// [`BinaryError::InvalidBase64`] for a `_binary` that is not a base64 string;
/// [`BinaryError::Placeholder`] for a Socket.IO placeholder, which would refer to nothing.
pub fn extract(value: &mut Value) -> Result<Vec<Bytes>, BinaryError> {
    let mut out = Vec::new();
    extract_into(value, &mut out)?;
    Ok(out)
}

fn extract_into(value: &mut Value, out: &mut Vec<Bytes>) -> Result<(), BinaryError> {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(b64) = map.get(BINARY_KEY) {
                    let bytes = b64
                        .as_str()
                        .and_then(|s| BASE64.decode(s).ok())
                        .ok_or(BinaryError::InvalidBase64)?;
                    *value = placeholder(out.len());
                    out.push(Bytes::from(bytes));
                    return Ok(());
                }
            }
            if map.get("_placeholder").and_then(Value::as_bool) == Some(true) {
                return Err(BinaryError::Placeholder);
            }
            for v in map.values_mut() {
                extract_into(v, out)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|v| extract_into(v, out)),
        _ => Ok(()),
    }
}

/// Takes the attachments that placeholders inside `value` reference out of `attachments` (a
/// packet's), renumbering the placeholders depth-first from 0 in `value`: `value` with the
/// returned attachments stands on its own. A placeholder whose attachment is missing is left
/// as it is.
pub fn take_referenced(value: &mut Value, attachments: &[Bytes]) -> Vec<Bytes> {
    let mut out = Vec::new();
    renumber(value, attachments, &mut out);
    out
}

fn renumber(value: &mut Value, attachments: &[Bytes], out: &mut Vec<Bytes>) {
    match value {
        Value::Object(map) => {
            if let Some(bytes) = placeholder_num(map).and_then(|n| attachments.get(n)) {
                map.insert("num".to_owned(), Value::from(out.len()));
                out.push(bytes.clone());
                return;
            }
            map.values_mut().for_each(|v| renumber(v, attachments, out));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| renumber(v, attachments, out)),
        _ => {}
    }
}

/// The Socket.IO placeholder of attachment `num`.
pub fn placeholder(num: usize) -> Value {
    let mut map = Map::new();
    map.insert("_placeholder".to_owned(), Value::Bool(true));
    map.insert("num".to_owned(), Value::from(num));
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extract_and_inline_round_trip() {
        let mut value = json!({
            "a": {"_binary": "AQID"},
            "list": [1, {"_binary": ""}, {"deep": {"_binary": "/w=="}}],
            "text": "x",
        });
        let original = value.clone();
        let attachments = extract(&mut value).unwrap();
        assert_eq!(
            attachments,
            vec![
                Bytes::from_static(&[1, 2, 3]),
                Bytes::new(),
                Bytes::from_static(&[255])
            ]
        );
        assert_eq!(
            value.to_string(),
            r#"{"a":{"_placeholder":true,"num":0},"list":[1,{"_placeholder":true,"num":1},{"deep":{"_placeholder":true,"num":2}}],"text":"x"}"#
        );
        assert_eq!(inline(&value, &attachments), original);
    }

    #[test]
    fn take_referenced_renumbers_from_zero() {
        let all = [
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c"),
        ];
        let mut second = serde_json::json!([{"_placeholder": true, "num": 2}, {"x": {"_placeholder": true, "num": 1}}]);
        let taken = take_referenced(&mut second, &all);
        assert_eq!(taken, [all[2].clone(), all[1].clone()]);
        assert_eq!(
            second.to_string(),
            r#"[{"_placeholder":true,"num":0},{"x":{"_placeholder":true,"num":1}}]"#
        );
    }

    #[test]
    fn bad_forms_are_refused() {
        for bad in [json!({"_binary": 5}), json!([{"_binary": "!!"}])] {
            assert_eq!(extract(&mut bad.clone()), Err(BinaryError::InvalidBase64));
        }
        let mut ph = json!({"x": {"_placeholder": true, "num": 0}});
        assert_eq!(extract(&mut ph), Err(BinaryError::Placeholder));
        // An object with more keys than `_binary` is plain JSON.
        let mut plain = json!({"_binary": "AQID", "other": 1});
        assert_eq!(extract(&mut plain), Ok(vec![]));
    }
}
