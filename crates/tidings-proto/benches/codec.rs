//! Codec throughput: Socket.IO packet decode/encode and the long-polling payload encoder.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use tidings_proto::Bytes;
use tidings_proto::engine::{self, Frame};
use tidings_proto::packet::{Packet, placeholder};

fn small_event() -> String {
    Packet::event(
        "/",
        "chat",
        vec![json!("hello"), json!({"room": "lobby", "n": 1})],
        Some(3),
        0,
    )
    .encode()
}

fn kilobyte_event() -> String {
    let items: Vec<Value> = (0..24)
        .map(|i| json!({"id": i, "user": format!("user-{i}"), "text": "lorem ipsum dolor"}))
        .collect();
    let encoded = Packet::event("/feed", "batch", vec![Value::Array(items)], None, 0).encode();
    assert!((900..1300).contains(&encoded.len()), "{}", encoded.len());
    encoded
}

fn binary_event() -> String {
    let args = vec![
        json!("file.bin"),
        placeholder(0),
        json!({"thumb": placeholder(1)}),
    ];
    Packet::event("/", "upload", args, Some(1), 2).encode()
}

fn packets(c: &mut Criterion) {
    let cases = [
        ("small", small_event()),
        ("1kb", kilobyte_event()),
        ("binary", binary_event()),
    ];
    let mut group = c.benchmark_group("packet");
    for (name, encoded) in &cases {
        let packet = Packet::decode(encoded).unwrap_or_else(|e| panic!("{name}: {e}"));
        group.throughput(Throughput::Bytes(encoded.len() as u64));
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| Packet::decode(black_box(encoded)))
        });
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| black_box(&packet).encode())
        });
        group.bench_function(format!("to_frame/{name}"), |b| {
            b.iter(|| black_box(&packet).to_frame())
        });
    }
    group.finish();
}

fn payload(c: &mut Criterion) {
    let small = small_event();
    let frames: Vec<Frame> = (0..16)
        .map(|i| {
            if i % 4 == 3 {
                Frame::binary(Bytes::from(vec![i as u8; 256]))
            } else {
                Frame::message(&small)
            }
        })
        .collect();
    let mut body = Vec::new();
    engine::encode_payload(&frames, &mut body);
    let text = String::from_utf8(body.clone()).unwrap_or_default();

    let mut group = c.benchmark_group("payload");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("encode/16_frames", |b| {
        let mut out = Vec::with_capacity(body.len());
        b.iter(|| {
            out.clear();
            engine::encode_payload(black_box(&frames), &mut out);
            out.len()
        })
    });
    group.bench_function("decode/16_frames", |b| {
        b.iter(|| {
            engine::decode_payload(black_box(&text))
                .filter(Result::is_ok)
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, packets, payload);
criterion_main!(benches);
