// socket.io-client 2.x (npm `socket.io-client-v2`, an alias of socket.io-client@2) against a
// server started with `allow_eio3` (`--allow-eio3`): Engine.IO v3 and the Socket.IO v4
// protocol. Over `TRANSPORT` (websocket, polling, upgrade): the implicit CONNECT to `/`, the
// query standing for the auth payload, events and acks both ways, binary both ways, a
// namespace refused with an ERROR packet (`error` event) and one admitted with a query token,
// rooms and broadcasts, and (with `DURABLE=1`, a server with queues) durable topics.

import { createRequire } from "node:module";
import { env } from "node:process";
import { TRANSPORT, URL, WAIT_MS, check, checkEqual, fail, must, once, poll, run, uniq } from "./lib.mjs";

const io = createRequire(import.meta.url)("socket.io-client-v2");
const opened = [];

function transportOptions() {
  switch (TRANSPORT) {
    case "websocket":
      return { transports: ["websocket"] };
    case "polling":
      return { transports: ["polling"], upgrade: false };
    default:
      return { transports: ["polling", "websocket"] };
  }
}

/** A v2 socket on `nsp` with `query`; resolves once `connect` fired and its `welcome` came. */
async function connectV2(name, nsp, query) {
  const socket = io(URL + nsp, { ...transportOptions(), forceNew: true, reconnection: false, autoConnect: false, query });
  opened.push(socket);
  socket.on("disconnect", (reason) => {
    if (!socket.expectDisconnect) fail(`${name}: connection`, `expected to stay connected, actual disconnect: ${reason}`);
  });
  const welcome = once(socket, "welcome");
  const up = once(socket, "connect");
  socket.open();
  await must(`${name}: connect`, up);
  const [data] = await must(`${name}: welcome`, welcome);
  return { socket, welcome: data };
}

/** `socket.emit(event, ...args, ack)`, resolving with the ack's arguments (bounded). */
function emitAck(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for ${event} within ${WAIT_MS} ms`)), WAIT_MS);
    socket.emit(event, ...args, (...reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

const bytes = (value) => Buffer.isBuffer(value) ? value : Buffer.from(value instanceof ArrayBuffer ? value : value.buffer);

async function checkUpgrade(socket) {
  if (TRANSPORT !== "upgrade") return;
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") await must("upgrade", once(engine, "upgrade"));
  check("upgraded to websocket", engine.transport.name === "websocket", "websocket", engine.transport.name);
}

run(async () => {
  const clientId = uniq("v2-a");
  const { socket: a, welcome } = await connectV2("a", "/", { clientId });
  check("the default namespace is joined without a CONNECT", welcome?.nsp === "/", "/", welcome?.nsp);
  checkEqual("the handshake query stands for the auth payload", welcome?.auth, { clientId });
  await checkUpgrade(a);

  // Events and acks, client → server.
  const back = once(a, "echo-back");
  a.emit("echo", "hi", { n: 1, list: [true, null] });
  checkEqual("echo", await must("echo-back", back), ["hi", { n: 1, list: [true, null] }]);
  checkEqual("echo-ack", await must("echo-ack", emitAck(a, "echo-ack", "x", 2)), ["x", 2]);

  // Binary both ways.
  const blob = Buffer.from([0, 1, 2, 253, 254, 255]);
  const binBack = once(a, "echo-back");
  a.emit("echo", { file: blob, name: "f" });
  const [echoed] = await must("binary echo-back", binBack);
  checkEqual("binary stays binary", [bytes(echoed.file), echoed.name], [blob, "f"]);
  const [ackBin] = await must("binary echo-ack", emitAck(a, "echo-ack", blob));
  checkEqual("binary in an ack", bytes(ackBin), blob);

  // Server → client with an ack (request-ack makes the server ask `ask` and report the reply).
  const ask = uniq("ask");
  a.once(ask, (data, ack) => ack({ got: data }, Buffer.from("r")));
  const [answer] = await must("request-ack", emitAck(a, "request-ack", { event: ask, data: { q: 1 }, timeoutMs: 3000 }));
  check("request-ack: ok", answer?.ok === true, "ok:true", answer);
  checkEqual("request-ack: the client's reply", [answer?.reply?.[0], bytes(answer?.reply?.[1])], [{ got: { q: 1 } }, Buffer.from("r")]);

  // Rooms and broadcasts (the built-in events), binary included.
  const { socket: b } = await connectV2("b", "/", { clientId: uniq("v2-b") });
  const room = uniq("room");
  checkEqual("join", await must("join", emitAck(b, "join", { room })), [{ ok: true }]);
  const news = once(b, "news");
  const [sent] = await must("broadcast", emitAck(a, "broadcast", { room, event: "news", data: { x: 1, bin: blob } }));
  check("broadcast: ok", sent?.ok === true && sent?.recipients === 1, "ok, 1 recipient", sent);
  const [got] = await must("news", news);
  checkEqual("broadcast received with binary", [got.x, bytes(got.bin)], [1, blob]);

  // Namespaces: refused with an ERROR packet carrying the middleware's data; admitted with
  // the token in the query.
  const refused = io(URL + "/secure", { ...transportOptions(), forceNew: true, reconnection: false, autoConnect: false });
  opened.push(refused);
  refused.expectDisconnect = true;
  refused.on("connect", () => fail("/secure without token", "expected a refusal, actual: connected"));
  const error = once(refused, "error");
  refused.open();
  const [refusal] = await must("/secure refused", error);
  checkEqual("/secure refusal data", refusal, { reason: "bad token" });
  const { welcome: secure } = await connectV2("/secure with token", "/secure", { token: "let-me-in" });
  checkEqual("/secure: the query is the auth", secure?.auth, { token: "let-me-in" });
  check("/secure: namespace", secure?.nsp === "/secure", "/secure", secure?.nsp);

  if (env.DURABLE === "1") {
    const topic = uniq("v2-topic");
    const [sub] = await must("subscribe", emitAck(a, "subscribe", { topic }));
    check("subscribe: ok", sub?.ok === true, "ok:true", sub);
    const delivery = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no delivery")), WAIT_MS);
      a.once("parcel", (data, meta, ack) => {
        clearTimeout(timer);
        ack({ ok: true });
        resolve([data, meta]);
      });
    });
    const [pub] = await must("publish", emitAck(b, "publish", { topic, event: "parcel", data: { id: "P-1" } }));
    check("publish: ok", pub?.ok === true && pub?.duplicate === false, "ok:true", pub);
    const [data, meta] = await must("delivery", delivery);
    checkEqual("delivery data", data, { id: "P-1" });
    check("delivery meta", meta?.topic === topic && meta?.attempt === 1 && meta?.offset === pub.offset, "topic, attempt 1, offset", meta);
    // The ack settled it: the queue empties (settlement is applied by the dispatcher's next
    // turn, so the count is polled, not read once).
    await poll("settled by the ack", async () => {
      const [again] = await emitAck(a, "subscribe", { topic });
      return again?.pending === 0;
    });
  }

  for (const socket of opened) {
    socket.expectDisconnect = true;
    socket.close();
  }
}, { checks: 18 });
