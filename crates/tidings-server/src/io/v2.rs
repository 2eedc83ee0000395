//! What `socket.io-client` 2.x (the Socket.IO v4 protocol over Engine.IO v3, accepted with
//! `allow_eio3`) does differently, as Node's socket.io 4 handles it for `conn.protocol === 3`:
//!
//! - the default namespace is joined at once, without a CONNECT from the client;
//! - a CONNECT names its namespace with the client's query (`40/chat?token=x,`), and that query
//!   stands for the auth payload v2 clients cannot send; for the default namespace, the query
//!   of the handshake does (tidings' addition, so that `clientId` and `token` work: Node gives
//!   `{}` there);
//! - the CONNECT reply carries no data (`40`, `40/chat,`): no `sid`, no recovery `pid`;
//! - a refused CONNECT gets an ERROR packet whose data is the refusal's `data`, or else its
//!   message as a string: `44/chat,"unauthorized"`.

use serde_json::{Map, Value};
use tidings_proto::packet::{Packet, PacketKind};

/// Query parameters of the transport itself, not the application's.
const ENGINE_PARAMS: [&str; 6] = ["EIO", "transport", "t", "sid", "b64", "j"];

/// The query string `a=1&b=x%20y` as the auth object `{"a":"1","b":"x y"}`, without the
/// Engine.IO parameters. A parameter given twice keeps its last value.
pub(crate) fn query_auth(query: &str) -> Value {
    let mut auth = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key);
        if ENGINE_PARAMS.contains(&key.as_str()) {
            continue;
        }
        auth.insert(key, Value::String(decode(value)));
    }
    Value::Object(auth)
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space); a broken escape is kept
/// as written, and bytes that are not UTF-8 are replaced.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The ERROR packet refusing a CONNECT: `data` when there is some, else `message`.
pub(crate) fn connect_error(namespace: &str, message: &str, data: Option<Value>) -> Packet {
    Packet {
        kind: PacketKind::ConnectError,
        namespace: namespace.to_owned(),
        id: None,
        data: Some(data.unwrap_or_else(|| Value::String(message.to_owned()))),
        attachments: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_query_stands_for_auth() {
        assert_eq!(
            query_auth("EIO=3&transport=polling&t=NkX1&clientId=ops%2D1&token=a+b&b64=1&x"),
            json!({"clientId": "ops-1", "token": "a b", "x": ""})
        );
        assert_eq!(query_auth(""), json!({}));
        assert_eq!(query_auth("a=%zz&a=%C3%A9"), json!({"a": "é"}));
        assert_eq!(query_auth("a=%"), json!({"a": "%"}));
    }

    #[test]
    fn refusals_carry_data_or_the_message() {
        assert_eq!(
            connect_error("/chat", "unauthorized", None).encode(),
            r#"4/chat,"unauthorized""#
        );
        assert_eq!(
            connect_error("/", "x", Some(json!({"code": "c"}))).encode(),
            r#"4{"code":"c"}"#
        );
    }
}
