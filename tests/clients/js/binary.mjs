// Binary attachments: Buffers anywhere in the arguments of events and acks, in both directions,
// and through a broadcast to another client. Binary must come back as binary (Buffer or
// ArrayBuffer), never as a placeholder object, base64 text or an array of numbers.

import { randomBytes } from "node:crypto";
import {
  TRANSPORT,
  check,
  checkEqual,
  checkUpgraded,
  emitAck,
  emitAckArgs,
  must,
  mustConnect,
  once,
  run,
  uniq,
} from "./lib.mjs";

const isBinary = (v) => Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);

/** Copies `value`, turning every binary leaf into a Buffer; fails if `expected` has binary where `value` has not. */
function normalize(name, value, expected) {
  if (Buffer.isBuffer(expected)) {
    check(`${name}: binary stays binary`, isBinary(value), "a Buffer/ArrayBuffer", value);
    return Buffer.isBuffer(value) ? value : Buffer.from(ArrayBuffer.isView(value) ? value.buffer : value);
  }
  if (Array.isArray(expected) && Array.isArray(value)) {
    return value.map((v, i) => normalize(`${name}[${i}]`, v, expected[i]));
  }
  if (expected && typeof expected === "object" && value && typeof value === "object" && !isBinary(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(`${name}.${k}`, v, expected[k])]));
  }
  return value;
}

function checkBinaryEqual(name, actual, expected) {
  checkEqual(name, normalize(name, actual, expected), expected);
}

run(async () => {
  const { socket: a } = await mustConnect("connect a", "/");
  const { socket: b } = await mustConnect("connect b", "/");

  const small = Buffer.from([0, 1, 2, 127, 128, 254, 255]);
  const big = randomBytes(100 * 1024);
  const nested = {
    text: "mixed",
    list: [1, Buffer.from("first"), { deeper: [Buffer.from([9, 8, 7])] }],
    obj: { second: Buffer.from("second \u00e9", "utf8"), n: null },
  };

  // echo → echo-back
  for (const [label, args] of [
    ["one Buffer", [small]],
    ["an empty Buffer", [Buffer.alloc(0)]],
    ["a 100 KiB Buffer", [big]],
    ["two Buffers nested in arrays and objects", [nested]],
    ["binary and text arguments mixed", [small, "between", nested, 42]],
  ]) {
    const back = once(a, "echo-back");
    a.emit("echo", ...args);
    checkBinaryEqual(`echo ${label}`, await must(`echo-back for ${label}`, back), args);
  }

  // echo-ack: binary in the ack.
  checkBinaryEqual("echo-ack with binary", await must("echo-ack", emitAckArgs(a, "echo-ack", [nested, small])), [nested, small]);

  // Server → client event with binary data; the client acks with a Buffer.
  const ev = uniq("bin-request");
  const received = once(a, ev);
  const reply = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
  a.on(ev, (_data, ack) => ack(reply, { also: Buffer.from("x") }));
  const ans = await must("request-ack with a binary answer", emitAck(a, "request-ack", { event: ev, data: { payload: small }, timeoutMs: 2000 }));
  const [reqData] = await must("request-ack: event received", received);
  checkBinaryEqual("request-ack: data sent to the client", reqData, { payload: small });
  check("request-ack: ok", ans?.ok === true, "ok:true", ans);
  checkBinaryEqual("request-ack: reply holds the client's bytes", ans?.reply, [reply, { also: Buffer.from("x") }]);

  // Broadcast with binary data reaches another client as binary.
  const room = uniq("bin-room");
  for (const [label, s] of [["a", a], ["b", b]]) {
    const j = await must(`join (${label})`, emitAck(s, "join", { room }));
    check(`join (${label}): ok`, j?.ok === true, "ok:true", j);
  }
  const event = uniq("bin-news");
  const got = once(b, event);
  const data = { blob: big.subarray(0, 1024), parts: [Buffer.from("p1"), "p2"] };
  const br = await must("broadcast with binary", emitAck(a, "broadcast", { room, event, data }));
  checkEqual("broadcast with binary: ack", br, { ok: true, recipients: 1 });
  const bArgs = await must("broadcast with binary: b receives", got);
  checkBinaryEqual("broadcast with binary: b's data", bArgs, [{ blob: Buffer.from(big.subarray(0, 1024)), parts: [Buffer.from("p1"), "p2"] }]);

  await checkUpgraded("binary a", a);
  await checkUpgraded("binary b", b);
}, { checks: TRANSPORT === "upgrade" ? 34 : 32 });
