// Helpers for the Connection State Recovery scenarios (recovery*.mjs): a server started with
// recovery on (socket.io's `connectionStateRecovery`). See docs/PROTOCOL.md.

import { check, client, emitAck, fail, must, once, track, WAIT_MS } from "./lib.mjs";

/** The recovery window the server was started with (TIDINGS_RECOVERY_WINDOW_MS). */
export function windowMs() {
  const ms = Number(process.env.TIDINGS_RECOVERY_WINDOW_MS);
  if (!ms) fail("setup", "env TIDINGS_RECOVERY_WINDOW_MS is required");
  return ms;
}

/** Resolves when `socket` is connected (no `welcome` needed: works on /quiet). */
export function connected(socket, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connect on ${socket.nsp} within ${ms} ms`)), ms);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error on ${socket.nsp}: ${err.message}`));
    });
  });
}

/** Creates, connects and tracks a client; resolves with it once connected. */
export async function connectRaw(name, nsp, opts = {}) {
  const socket = client(nsp, opts);
  const up = connected(socket);
  socket.connect();
  await must(name, up);
  return socket;
}

/** Reconnects `socket` (its Socket.IO object keeps pid and offset) and waits for `connect`. */
export async function reconnect(name, socket) {
  const up = connected(socket);
  socket.connect();
  await must(name, up);
}

/**
 * Drops the connection of `socket` the way a network failure does (the Engine.IO transport
 * closes; the client sees `transport close`), and waits for its `disconnect`.
 */
export async function dropConnection(name, socket) {
  socket.expectDisconnect = true;
  const gone = once(socket, "disconnect");
  socket.io.engine.close();
  const [reason] = await must(name, gone);
  // engine.close() on the client: "forced close" to the client, "transport close" to the server.
  check(`${name}: reason`, reason === "forced close", '"forced close"', reason);
}

/**
 * Waits until the server no longer lists `sid` in `room` (asked through `observer`, a client
 * of the same namespace with a `room-sockets` handler). The server noticing a closed
 * connection cannot be observed otherwise; bounded: 100 polls, 20 ms apart.
 */
export async function waitGone(name, observer, room, sid) {
  for (let i = 0; i < 100; i++) {
    const reply = await must(name, emitAck(observer, "room-sockets", { room }));
    if (!reply?.sids?.includes(sid)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  fail(name, `expected ${sid} to leave ${room}, actual: still there after 100 polls`);
}

/** Broadcasts `event` with `data` to `room` through the built-in `broadcast`; checks the ack. */
export async function broadcast(name, sender, room, event, data) {
  const ack = await must(name, emitAck(sender, "broadcast", { room, event, data }));
  check(`${name}: ack`, ack?.ok === true, "ok:true", ack);
  return ack;
}

/** Joins `room` through the built-in `join`. */
export async function join(name, socket, room) {
  const ack = await must(name, emitAck(socket, "join", { room }));
  check(`${name}: ack`, ack?.ok === true, "ok:true", ack);
}

/** The offset of a received event: its last argument, a decimal string. */
export function offsetOf(args) {
  const last = args[args.length - 1];
  check("offset is a decimal string", typeof last === "string" && /^[0-9]+$/.test(last), "a decimal string", last);
  return BigInt(last);
}

/** Waits until `list` (filled by `record`) has `n` entries, or fails after `ms`. */
export async function waitCount(name, socket, event, list, n, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (list.length < n) {
    const left = deadline - Date.now();
    if (left <= 0) fail(name, `expected ${n} ${event} events, actual ${list.length}`);
    await once(socket, event, left).catch(() => {});
  }
}

export { track };
