//! Feeds arbitrary bytes to every decoder; a packet that decodes must survive a re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_proto::engine::{self, PayloadItem};
use tidings_proto::packet::Packet;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);

    if let Ok(packet) = Packet::decode(&input) {
        let encoded = packet.encode();
        assert_eq!(
            Packet::decode(&encoded).as_ref(),
            Ok(&packet),
            "{input:?} -> {encoded:?}"
        );
        let frame = packet.to_frame();
        assert_eq!(
            frame.as_text().and_then(|t| t.strip_prefix('4')),
            Some(encoded.as_str())
        );
    }

    if let Ok(text) = engine::decode_text(&input) {
        let frame = text.to_frame();
        assert_eq!(
            engine::decode_text(frame.as_text().unwrap_or_default()),
            Ok(text)
        );
    }

    for item in engine::decode_payload(&input) {
        // A Socket.IO packet inside a polling message goes through the same checks.
        if let Ok(PayloadItem::Text(engine::TextPacket::Message(message))) = item {
            if let Ok(packet) = Packet::decode(message) {
                assert_eq!(Packet::decode(&packet.encode()), Ok(packet));
            }
        }
    }
});
