// The built-in events of `tidings serve` (no server code): join, leave, broadcast, bad_request.
// Runs against the real binary; env TIDINGS_PATH overrides the endpoint path (default /socket.io/).
import { env } from "node:process";
import { client, once, must, check, checkEqual, checkError, emitAck, record, run, uniq } from "./lib.mjs";

const path = env.TIDINGS_PATH || "/socket.io/";

async function connect(nsp = "/") {
  const socket = client(nsp, { path });
  const connected = once(socket, "connect");
  socket.connect();
  await must(`connect ${nsp}`, connected);
  return socket;
}

/** A built-in round trip: afterwards, everything emitted to `socket` earlier has arrived. */
async function sync(socket) {
  const ack = await must("sync", emitAck(socket, "leave", { room: "never-joined" }));
  checkEqual("sync ack", ack, { ok: true });
}

run(async () => {
  const room = uniq("room");
  const [a, b, c] = [await connect(), await connect(), await connect()];
  for (const [name, s] of [["a", a], ["b", b]]) {
    checkEqual(`${name} join`, await must(`${name} join`, emitAck(s, "join", { room })), { ok: true });
  }

  // Room broadcast with binary inside data: only b receives it, as binary; never the sender.
  const aNews = record(a, "news");
  const cNews = record(c, "news");
  const bGot = once(b, "news");
  const payload = { text: "hello", n: 1, blob: Buffer.from([1, 2, 3, 250]) };
  const ack = await must("broadcast to room", emitAck(a, "broadcast", { room, event: "news", data: payload }));
  checkEqual("broadcast ack", ack, { ok: true, recipients: 1 });
  const [data] = await must("b receives news", bGot);
  check("binary stays binary", Buffer.isBuffer(data.blob) || data.blob instanceof ArrayBuffer, "a Buffer", data.blob);
  checkEqual("news data", { ...data, blob: Buffer.from(data.blob) }, payload);
  await sync(a);
  await sync(c);
  checkEqual("sender does not receive its broadcast", aNews, []);
  checkEqual("non-member does not receive", cNews, []);

  // Namespace-wide broadcast: everyone but the sender.
  const bAll = once(b, "all-hands");
  const cAll = once(c, "all-hands");
  const aAll = record(a, "all-hands");
  const wide = await must("namespace broadcast", emitAck(a, "broadcast", { event: "all-hands", data: [1, "two"] }));
  checkEqual("namespace broadcast ack", wide, { ok: true, recipients: 2 });
  checkEqual("b all-hands", (await must("b all-hands", bAll))[0], [1, "two"]);
  checkEqual("c all-hands", (await must("c all-hands", cAll))[0], [1, "two"]);
  await sync(a);
  checkEqual("sender excluded from namespace broadcast", aAll, []);

  // Leave: b no longer receives room broadcasts.
  checkEqual("b leave", await must("b leave", emitAck(b, "leave", { room })), { ok: true });
  const afterLeave = await must("broadcast after leave", emitAck(a, "broadcast", { room, event: "news", data: null }));
  checkEqual("no recipients after leave", afterLeave, { ok: true, recipients: 0 });

  // Bad payload shapes.
  const bad = [
    ["join", {}], ["join", { room: 5 }], ["join", "lobby"], ["join", { room: "" }],
    ["leave", null], ["broadcast", { room }], ["broadcast", { event: 7 }],
    ["broadcast", { event: "disconnect", data: 1 }],
  ];
  for (const [event, body] of bad) {
    checkError(`${event} ${JSON.stringify(body)}`, await must(event, emitAck(a, event, body)), "bad_request");
  }

  // Every namespace has the built-ins.
  const other = await connect("/" + uniq("anywhere"));
  checkEqual("join on another namespace", await must("join other", emitAck(other, "join", { room })), { ok: true });
}, { checks: 41 });
