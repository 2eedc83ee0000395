// Binary data in durable messages with socket.io-client against `tidings serve`
// (crates/tidings/tests/durable_binary.rs runs it; docs/PROTOCOL.md "Binary data").
//
// PHASE=publish  publishes messages 1–3 of `expected()` to TIDINGS_TOPIC with Buffers inside
//                `data` (nested, several, an empty one, one of 70 kB), checks the acks, and
//                that a publish announcing more than max_attachments (10) binary parts, or
//                with an attachment over max_payload, closes the connection with nothing
//                stored.
// PHASE=receive  connects as TIDINGS_CLIENT, subscribes from the earliest message and receives
//                messages 1–TIDINGS_COUNT byte for byte as Buffers. MODE=requeue-once answers
//                each first delivery with {requeue:true} and checks the redelivery is the same
//                bytes; MODE=hold receives them all, prints HELD and never acks (the test then
//                kills the server); MODE=ack acks each. MIN_ATTEMPT: the least attempt expected.
import { env } from "node:process";
import { check, checkEqual, client, emitAck, fail, must, once, run, WAIT_MS } from "./lib.mjs";

const TOPIC = env.TIDINGS_TOPIC;
const EVENT = "file";

/** `len` bytes of pattern `seed`: (seed × 31 + i × 7) mod 256, the tests' shared pattern. */
export function pattern(seed, len) {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (seed * 31 + i * 7) % 256;
  return b;
}

/** The data of message `n` as subscribers must see it (4 is published over HTTP by the test). */
export function expected(n) {
  switch (n) {
    case 1:
      return { n: 1, file: pattern(1, 256), nested: { list: [pattern(2, 10), "text", { deep: Buffer.alloc(0) }] } };
    case 2:
      return pattern(4, 70_000);
    case 3:
      return [1, pattern(5, 3), null, { x: [pattern(6, 1), pattern(7, 2)] }];
    case 4:
      return { http: true, b: pattern(8, 300) };
    default:
      return fail("expected", `no message ${n}`);
  }
}

const isBinary = (v) => Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);

/** `value` with every binary leaf as a Buffer; fails where `expected` has binary and `value` not. */
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

async function connect(name, auth, transport) {
  const socket = client("/", { auth, transport });
  const connected = once(socket, "connect");
  socket.connect();
  await must(`${name}: connect`, connected);
  return socket;
}

async function publishPhase() {
  const pub = await connect("publisher");
  for (const n of [1, 2, 3]) {
    const ack = await must(`publish ${n}`, emitAck(pub, "publish", { topic: TOPIC, event: EVENT, data: expected(n) }));
    check(`publish ${n}: ok`, ack?.ok === true && ack.offset === n && ack.duplicate === false, `{ok:true, offset:${n}}`, ack);
  }
  // More binary parts than max_attachments: the server closes the connection when the packet
  // header announces them (docs/SECURITY.md), before reading any; nothing is stored.
  // Over WebSocket: with `upgrade`, a refusal while the upgrade is in flight is sometimes not
  // seen by the client within the wait (an engine matter, not a durable-topics one).
  const greedy = await connect("greedy publisher", undefined, "websocket");
  greedy.expectDisconnect = true;
  const closed = once(greedy, "disconnect");
  const parts = Array.from({ length: 11 }, (_, i) => pattern(i, 4));
  greedy.emit("publish", { topic: TOPIC, event: EVENT, data: parts }, () => fail("11 attachments", "expected no ack"));
  const [reason] = await must("11 attachments: disconnected", closed);
  check("11 attachments: closed by the server", reason === "transport close" || reason === "io server disconnect", "transport close", reason);
  // One attachment over max_payload (1,000,000 bytes by default): a WebSocket message that
  // large closes the connection (1009, docs/SECURITY.md); nothing is stored.
  const big = await connect("oversized publisher", undefined, "websocket");
  big.expectDisconnect = true;
  const bigClosed = once(big, "disconnect");
  big.emit("publish", { topic: TOPIC, event: EVENT, data: { b: Buffer.alloc(1_000_001, 1) } }, () => fail("oversized", "expected no ack"));
  const [bigReason] = await must("oversized attachment: disconnected", bigClosed);
  check("oversized attachment: closed by the server", bigReason === "transport close" || bigReason === "transport error", "transport close", bigReason);
  const history = await must("history", emitAck(pub, "history", { topic: TOPIC }));
  check("history: 3 messages, nothing of the refused publish", history?.messages?.length === 3, "3", history);
  // The history ack carries the messages' binary as binary (a BINARY_ACK).
  for (const n of [1, 2, 3]) {
    const what = `history of ${n}`;
    checkEqual(`${what}: data byte for byte`, normalize(what, history.messages[n - 1].data, expected(n)), expected(n));
  }
  pub.disconnect();
}

async function receivePhase() {
  const count = Number(env.TIDINGS_COUNT);
  const mode = env.MODE;
  const minAttempt = Number(env.MIN_ATTEMPT ?? 1);
  const id = env.TIDINGS_CLIENT;
  const got = new Map(); // offset -> [data, meta][]
  let waiters = [];
  const socket = client("/", { auth: { clientId: id } });
  socket.on(EVENT, (data, meta, ack) => {
    if (typeof ack !== "function") fail(`delivery to ${id}`, "expected an ack callback");
    const seen = got.get(meta.offset) ?? [];
    seen.push([data, meta]);
    got.set(meta.offset, seen);
    if (mode === "requeue-once" && seen.length === 1) ack({ requeue: true });
    else if (mode !== "hold") ack();
    for (const w of waiters.splice(0)) w();
  });
  const connected = once(socket, "connect");
  socket.connect();
  await must(`${id}: connect`, connected);
  const sub = await must("subscribe", emitAck(socket, "subscribe", { topic: TOPIC, from: "earliest" }));
  check("subscribe: ok", sub?.ok === true, "ok:true", sub);
  const wanted = mode === "requeue-once" ? 2 : 1;
  await must(
    `${id}: ${count} messages, each ${wanted}×`,
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`got ${[...got].map(([o, d]) => `${o}×${d.length}`)}`)), 4 * WAIT_MS);
      const test = () => {
        let all = true;
        for (let n = 1; n <= count; n++) all &&= (got.get(n)?.length ?? 0) >= wanted;
        if (all) {
          clearTimeout(timer);
          resolve();
        } else waiters.push(test);
      };
      test();
    }),
  );
  for (let n = 1; n <= count; n++) {
    for (const [i, [data, meta]] of got.get(n).entries()) {
      const what = `${id}: message ${n} delivery ${i + 1}`;
      checkEqual(`${what}: data byte for byte`, normalize(what, data, expected(n)), expected(n));
      check(`${id}: message ${n} delivery ${i + 1}: attempt`, meta.attempt >= minAttempt + i, `>= ${minAttempt + i}`, meta);
    }
  }
  if (mode === "hold") {
    socket.expectDisconnect = true;
    console.log("HELD");
    // The test kills the server now: wait for the disconnect (bounded by the watchdog).
    await must("disconnected by the kill", once(socket, "disconnect", 30_000));
  } else {
    socket.disconnect();
  }
}

const publishing = env.PHASE === "publish";
run(publishing ? publishPhase : receivePhase, { timeoutMs: 60_000, checks: publishing ? 16 : 9 });
