// One row of the table of default limits (crates/tidings/tests/limits.rs): `tidings serve` runs
// with the limit CASE set to LIMIT (a small number), and this scenario pushes past it with the
// unmodified socket.io-client and checks the answer docs/SECURITY.md gives for it.
// env: CASE (namespaces | namespaces_per_connection | rooms | events | publishes | topics |
// queue_depth | retained_bytes | subscriptions | pending_acks | attachments), LIMIT.
import { env } from "node:process";
import { Manager } from "socket.io-client";
import { URL, check, checkEqual, checkError, client, clientOptions, emitAck, fail, must, once, poll, run, track, uniq } from "./lib.mjs";

const CASE = env.CASE;
const LIMIT = Number(env.LIMIT);
if (!CASE || !LIMIT) fail("setup", "CASE and LIMIT are required");

async function stats() {
  const res = await fetch(`${URL}/v1/stats`);
  if (res.status !== 200) fail("stats", `GET /v1/stats answered ${res.status}`);
  return res.json();
}

async function connect(socket) {
  track(socket);
  const up = once(socket, "connect");
  socket.connect();
  await must(`connect ${socket.nsp}`, up);
  return socket;
}

/** Connects `socket`; resolves with "connected" or the connect_error. */
function attempt(socket) {
  track(socket);
  return must(
    `connect ${socket.nsp}`,
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to the connect to ${socket.nsp}`)), 5000);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve("connected");
      });
      socket.once("connect_error", (err) => {
        clearTimeout(timer);
        resolve(err);
      });
      socket.connect();
    }),
  );
}

function checkConnectRefused(name, err, limit) {
  check(`${name}: refused`, err !== "connected", "a connect_error", err);
  checkEqual(`${name}: data.code`, err?.data?.code, "limit_exceeded");
  check(`${name}: the message names the limit`, err?.message?.includes(`(${limit})`), `a message naming ${limit}`, err?.message);
}

const cases = {
  // On-demand namespaces in existence, over several connections.
  async namespaces() {
    const prefix = uniq("/ns");
    for (let i = 0; i < LIMIT; i++) checkEqual(`namespace ${i}`, await attempt(client(`${prefix}-${i}`)), "connected");
    checkConnectRefused("one namespace too many", await attempt(client(`${prefix}-over`)), "max_namespaces");
    checkEqual("an existing one is still joined", await attempt(client(`${prefix}-0`)), "connected");
  },
  // Namespaces of one connection.
  async namespaces_per_connection() {
    const manager = new Manager(URL, { ...clientOptions(), reconnection: false, autoConnect: false });
    const prefix = uniq("/mine");
    for (let i = 0; i < LIMIT; i++) checkEqual(`namespace ${i}`, await attempt(manager.socket(`${prefix}-${i}`)), "connected");
    checkConnectRefused("one namespace too many", await attempt(manager.socket(`${prefix}-over`)), "max_namespaces_per_connection");
    checkEqual("another connection may", await attempt(client(`${prefix}-over`)), "connected");
  },
  // Rooms per socket, its own room included.
  async rooms() {
    const socket = await connect(client("/", {}));
    for (let i = 0; i < LIMIT - 1; i++) checkEqual(`join ${i}`, await must("join", emitAck(socket, "join", { room: `r${i}` })), { ok: true });
    const over = await must("join over", emitAck(socket, "join", { room: "over" }));
    checkError("one room too many", over, "limit_exceeded");
    check("the message names the limit", over?.error?.message?.includes("max_rooms_per_socket"), "max_rooms_per_socket", over?.error?.message);
  },
  // Events per second per connection (burst = the limit).
  async events() {
    const socket = await connect(client("/", {}));
    const acks = await Promise.all(Array.from({ length: LIMIT * 3 }, () => must("leave", emitAck(socket, "leave", { room: "x" }))));
    const limited = acks.filter((a) => a?.error?.code === "rate_limited");
    check("some events refused", limited.length >= LIMIT, `≥ ${LIMIT}`, limited.length);
    checkError("the refusal", limited[0], "rate_limited");
  },
  // Publishes per second per identity.
  async publishes() {
    const socket = await connect(client("/", { auth: { clientId: uniq("pub") } }));
    const topic = uniq("table.pub");
    const acks = await Promise.all(Array.from({ length: LIMIT * 3 }, (_, i) => must("publish", emitAck(socket, "publish", { topic, event: "e", data: i }))));
    const limited = acks.filter((a) => a?.error?.code === "rate_limited");
    check("some publishes refused", limited.length >= LIMIT, `≥ ${LIMIT}`, limited.length);
    checkError("the refusal", limited[0], "rate_limited");
  },
  // Topics in all.
  async topics() {
    const socket = await connect(client("/", { auth: { clientId: uniq("topics") } }));
    for (let i = 0; i < LIMIT; i++) check(`topic ${i}`, (await must("publish", emitAck(socket, "publish", { topic: uniq("table.t"), event: "e", data: i })))?.ok === true, "ok", i);
    const over = await must("publish over", emitAck(socket, "publish", { topic: uniq("table.t"), event: "e", data: 0 }));
    checkError("one topic too many", over, "limit_exceeded");
  },
  // Queue depth per subscription, with the default overflow (reject): LIMIT publishes are
  // stored for the offline subscription, the next is refused with queue_full.
  async queue_depth() {
    const id = uniq("depth");
    const topic = uniq("table.depth");
    const subscriber = await connect(client("/", { auth: { clientId: id } }));
    checkEqual("subscribe", (await must("subscribe", emitAck(subscriber, "subscribe", { topic })))?.ok, true);
    subscriber.disconnect();
    const publisher = await connect(client("/", {}));
    for (let i = 0; i < LIMIT; i++) check(`publish ${i} stored`, (await must("publish", emitAck(publisher, "publish", { topic, event: "e", data: i })))?.ok === true, "ok", i);
    checkError("a publish to a full queue", await must("publish over", emitAck(publisher, "publish", { topic, event: "e", data: "over" })), "queue_full");
  },
  // The store's memory for retained messages, LIMIT bytes: each message counts its payload
  // (the JSON text), its event name and 160 bytes (docs/SECURITY.md). As many as fit are
  // stored; the next is refused with store_full, and so is every later one.
  async retained_bytes() {
    const topic = uniq("table.bytes");
    const data = "x".repeat(100); // 102 bytes of JSON text
    const fit = Math.floor(LIMIT / (1 + 102 + 160));
    check("the limit holds at least one message", fit >= 1, true, fit);
    const publisher = await connect(client("/", {}));
    for (let i = 0; i < fit; i++) check(`publish ${i} stored`, (await must("publish", emitAck(publisher, "publish", { topic, event: "e", data })))?.ok === true, "ok", i);
    for (const attempt of ["the first", "a second"]) {
      checkError(`${attempt} publish past the limit`, await must("publish over", emitAck(publisher, "publish", { topic, event: "e", data })), "store_full");
    }
    const { retained } = await (await fetch(`${URL}/v1/topics/${topic}`)).json();
    checkEqual("the topic holds what fit", retained, fit);
  },
  // Subscriptions per identity.
  async subscriptions() {
    const socket = await connect(client("/", { auth: { clientId: uniq("subs") } }));
    for (let i = 0; i < LIMIT; i++) checkEqual(`subscribe ${i}`, (await must("subscribe", emitAck(socket, "subscribe", { topic: uniq("table.s") })))?.ok, true);
    checkError("one subscription too many", await must("subscribe over", emitAck(socket, "subscribe", { topic: uniq("table.s") })), "limit_exceeded");
  },
  // Acks one socket may owe: with LIMIT deliveries unanswered, the next waits until one is
  // answered, then arrives.
  async pending_acks() {
    const id = uniq("acks");
    const consumer = await connect(client("/", { auth: { clientId: id } }));
    const topics = Array.from({ length: LIMIT + 1 }, () => uniq("table.acks"));
    for (const topic of topics) checkEqual(`subscribe ${topic}`, (await must("subscribe", emitAck(consumer, "subscribe", { topic })))?.ok, true);
    const received = [];
    let arrived = null;
    consumer.on("e", (data, meta, ack) => {
      received.push({ data, meta, ack });
      if (received.length === LIMIT) arrived?.();
    });
    const owed = new Promise((resolve) => (arrived = resolve));
    const publisher = await connect(client("/", {}));
    for (const topic of topics) checkEqual(`publish to ${topic}`, (await must("publish", emitAck(publisher, "publish", { topic, event: "e", data: topic })))?.ok, true);
    await must("LIMIT deliveries arrive", Promise.race([owed, new Promise((_, reject) => setTimeout(() => reject(new Error("not within 10 s")), 10000))]));
    await poll("a delivery is deferred", async () => (await stats()).deliveriesDeferred >= 1);
    checkEqual("only LIMIT deliveries are owed", received.length, LIMIT);
    const next = new Promise((resolve) => {
      consumer.once("e", () => resolve());
    });
    received[0].ack({});
    await must("the deferred delivery arrives once one is answered", Promise.race([next, new Promise((_, reject) => setTimeout(() => reject(new Error("not within 10 s")), 10000))]));
    checkEqual("then LIMIT + 1 received", received.length, LIMIT + 1);
    for (const r of received) r.ack({});
  },
  // Binary attachments per packet: LIMIT pass, LIMIT + 1 close the connection.
  async attachments() {
    const socket = await connect(client("/", {}));
    const blobs = (n) => Array.from({ length: n }, (_, i) => Buffer.from([i]));
    checkEqual("LIMIT attachments pass", await must("within", emitAck(socket, "leave", { room: "x", blobs: blobs(LIMIT) })), { ok: true });
    socket.expectDisconnect = true;
    const gone = once(socket, "disconnect");
    socket.emit("leave", { room: "x", blobs: blobs(LIMIT + 1) });
    const [reason] = await must("the connection is closed", gone);
    check("closed by the server", reason !== "io client disconnect", "a server-side close", reason);
  },
};

const scenario = cases[CASE];
if (!scenario) fail("setup", `unknown CASE ${CASE}`);
run(scenario, { timeoutMs: 30000, checks: 1 });
