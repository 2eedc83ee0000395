// The two abuses of issue 19 against `tidings serve` in its default configuration, with the
// unmodified socket.io-client, while a well-behaved pair of clients keeps being served:
// - one connection (one Manager) connecting to many namespaces: the server creates at most
//   MAX_NAMESPACES_PER_CONNECTION, refuses the rest with a `connect_error` naming the limit,
//   and removes every one of them once the connection closes (`/v1/stats` `namespaces` back
//   where it was);
// - one socket joining many rooms: at most MAX_ROOMS (its own room included), the rest
//   answered `limit_exceeded` naming the limit.
// env (the library defaults, from crates/tidings/tests/limits.rs): MAX_NAMESPACES_PER_CONNECTION,
// MAX_ROOMS. Prints the cue REFUSED once both abuses were refused, with the connections open.
import { env } from "node:process";
import { Manager } from "socket.io-client";
import { URL, check, checkEqual, checkError, client, clientOptions, emitAck, fail, must, once, poll, run, track, uniq } from "./lib.mjs";

const MAX_NAMESPACES = Number(env.MAX_NAMESPACES_PER_CONNECTION);
const MAX_ROOMS = Number(env.MAX_ROOMS);
if (!MAX_NAMESPACES || !MAX_ROOMS) fail("setup", "MAX_NAMESPACES_PER_CONNECTION and MAX_ROOMS are required");
/** Namespaces the abuser asks for: far more than the limit. */
const ATTEMPTS = MAX_NAMESPACES * 10;

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
  return new Promise((resolve) => {
    socket.once("connect", () => resolve("connected"));
    socket.once("connect_error", (err) => resolve(err));
    socket.connect();
  });
}

/** The well-behaved pair: a broadcast from one reaches the other. */
async function bystanders() {
  const [a, b] = [await connect(client("/", {})), await connect(client("/", {}))];
  const room = uniq("bystanders");
  for (const s of [a, b]) checkEqual("bystander join", await must("bystander join", emitAck(s, "join", { room })), { ok: true });
  let n = 0;
  return async (name) => {
    n += 1;
    const got = once(b, "chat");
    const ack = await must(`${name}: bystander broadcast`, emitAck(a, "broadcast", { room, event: "chat", data: { n } }));
    checkEqual(`${name}: bystander ack`, ack, { ok: true, recipients: 1 });
    checkEqual(`${name}: bystander receives`, (await must(`${name}: bystander receives`, got))[0], { n });
  };
}

run(async () => {
  const stillServed = await bystanders();
  const before = (await stats()).namespaces;
  check("stats count namespaces", Number.isInteger(before) && before >= 1, "an integer ≥ 1", before);

  // Abuse 1: one connection, many namespaces.
  const manager = new Manager(URL, { ...clientOptions(), reconnection: false, autoConnect: false });
  const prefix = uniq("/abuse");
  const sockets = [];
  const outcomes = [];
  for (let i = 1; i <= ATTEMPTS; i++) {
    const socket = track(manager.socket(`${prefix}-${i}`));
    sockets.push(socket);
    outcomes.push(await attempt(socket));
  }
  const connected = outcomes.filter((o) => o === "connected").length;
  const refused = outcomes.filter((o) => o !== "connected");
  checkEqual("namespaces: the first ones up to the limit connect", connected, MAX_NAMESPACES);
  checkEqual("namespaces: every other one is refused", refused.length, ATTEMPTS - MAX_NAMESPACES);
  check("namespaces: the refusal names the limit", refused[0]?.message?.includes("max_namespaces_per_connection"), "a message naming max_namespaces_per_connection", refused[0]?.message);
  checkEqual("namespaces: connect_error data.code", refused[0]?.data?.code, "limit_exceeded");
  checkEqual("namespaces: the server holds only the admitted ones", (await stats()).namespaces, before + MAX_NAMESPACES);
  await stillServed("during the namespace abuse");

  // Abuse 2: one socket, many rooms (its own room counts).
  const joiner = await connect(client("/", {}));
  const joins = await Promise.all(
    Array.from({ length: MAX_ROOMS + 100 }, (_, i) => must(`join ${i}`, emitAck(joiner, "join", { room: `abuse-room-${i}` }))),
  );
  const joined = joins.filter((a) => a?.ok === true).length;
  const over = joins.filter((a) => a?.ok === false);
  checkEqual("rooms: joins up to the limit (the socket's own room counts)", joined, MAX_ROOMS - 1);
  checkEqual("rooms: every other join refused", over.length, 101);
  checkError("rooms: the refusal", over[0], "limit_exceeded");
  check("rooms: the refusal names the limit", over[0]?.error?.message?.includes("max_rooms_per_socket"), "a message naming max_rooms_per_socket", over[0]?.error?.message);
  checkEqual("rooms: leaving one makes room", await must("leave", emitAck(joiner, "leave", { room: "abuse-room-0" })), { ok: true });
  checkEqual("rooms: then one more join is accepted", await must("join again", emitAck(joiner, "join", { room: "abuse-room-new" })), { ok: true });
  await stillServed("during the room abuse");
  console.log("REFUSED");

  // Closing the abusing connection removes the namespaces it created.
  // (The manager closes its connection once its last socket has left.)
  for (const socket of sockets) socket.disconnect();
  joiner.disconnect();
  await poll("namespaces: back where they were once the abuser closed", async () => (await stats()).namespaces === before);
  await stillServed("after the abuses");
}, { timeoutMs: 60000, checks: 20 });
