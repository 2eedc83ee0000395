// Shared helpers for the socket.io-client scenarios.
//
// Conventions every scenario follows:
// - `TIDINGS_URL` (required) is the server origin, e.g. http://127.0.0.1:45123.
// - `TRANSPORT` is `websocket`, `polling` or `upgrade` (the default): see `clientOptions`.
// - `PARSER` is `default` (the default) or `msgpack`: every client made through `clientOptions`
//   then speaks socket.io-msgpack-parser (for a server started with `--parser msgpack`).
// - A global watchdog fails the script if it has not finished in time (`TIDINGS_TEST_TIMEOUT_MS`
//   overrides the per-script default).
// - Every assertion goes through `check*`, which counts it. A scenario declares how many checks
//   it runs at least (`run(main, { checks: N })`); `done()` fails unless that many ran, then
//   disconnects every client this module created, prints `ok: M checks (at least N declared)`
//   and exits 0. The Rust runners require that line. The first failed check prints
//   `FAIL <check>: expected …, actual …` to stderr and exits 1.
// - A scenario that stops with work pending fails: if the event loop empties (an await on
//   something with no timer that never settles) or the process exits 0 before `done()`.

import { AsyncLocalStorage } from "node:async_hooks";
import { createRequire } from "node:module";
import { io } from "socket.io-client";
import { isDeepStrictEqual, inspect } from "node:util";
import { basename } from "node:path";
import process, { argv, env, exit, stderr, stdout } from "node:process";

const SCRIPT = basename(argv[1] ?? "scenario");

export const URL = (env.TIDINGS_URL ?? "").replace(/\/+$/, "");
if (!URL) {
  stderr.write(`${SCRIPT}: FAIL setup: env TIDINGS_URL is required (e.g. http://127.0.0.1:3000)\n`);
  exit(1);
}

export const TRANSPORT = env.TRANSPORT || "upgrade";
if (!["websocket", "polling", "upgrade"].includes(TRANSPORT)) {
  stderr.write(`${SCRIPT}: FAIL setup: TRANSPORT must be websocket|polling|upgrade, got ${TRANSPORT}\n`);
  exit(1);
}

export const PARSER = env.PARSER || "default";
if (!["default", "msgpack"].includes(PARSER)) {
  stderr.write(`${SCRIPT}: FAIL setup: PARSER must be default|msgpack, got ${PARSER}\n`);
  exit(1);
}
/** The `parser` client option for `PARSER` (undefined: socket.io-client's own). */
export const parserOption =
  PARSER === "msgpack" ? createRequire(import.meta.url)("socket.io-msgpack-parser") : undefined;

/** Default bound for one awaited event or ack, in milliseconds. */
export const WAIT_MS = 5000;

let checks = 0;
/** The number of checks the scenario declares it runs at least (`run`'s `checks`). */
let declared = 0;
/** Set by `done()`: the scenario ran to its end. */
let finished = false;
const sockets = new Set();

// Node exits 0 when nothing is left to wait for, even while `main` still awaits a promise that
// nothing will settle (the watchdog is `unref()`'d): that is a failure, not a pass.
process.on("beforeExit", () => {
  if (!finished) {
    fail("pending work", "the event loop emptied before the scenario finished (an await without a timer never settled)");
  }
});
process.on("exit", (code) => {
  if (code === 0 && !finished) {
    stderr.write(`${SCRIPT} [${TRANSPORT}]: FAIL exit: the process exited 0 before the scenario finished\n`);
    process.exitCode = 1;
  }
});

function show(value) {
  return inspect(value, { depth: 8, compact: true, breakLength: Infinity, maxArrayLength: 20, maxStringLength: 200 });
}

/** Fails the scenario: prints the check and the mismatch to stderr, exits 1. */
export function fail(name, detail) {
  stderr.write(`${SCRIPT} [${TRANSPORT}]: FAIL ${name}: ${detail}\n`);
  exit(1);
}

/**
 * Set while `asOneCheck` runs its function: the checks made there still fail the scenario but
 * are not counted (async-context local, so checks of concurrent work still count).
 */
const uncounted = new AsyncLocalStorage();

function count() {
  if (!uncounted.getStore()) checks += 1;
}

/** Counts one check; fails with `expected`/`actual` unless `cond` holds. */
export function check(name, cond, expected, actual) {
  count();
  if (!cond) fail(name, `expected ${expected}, actual ${show(actual)}`);
}

/** Deep, strict structural equality (Buffers compare by bytes, key order ignored). */
export function checkEqual(name, actual, expected) {
  count();
  if (!isDeepStrictEqual(actual, expected)) {
    fail(name, `expected ${show(expected)}, actual ${show(actual)}`);
  }
}

/** Equality of the JSON text: also pins object key order and number formatting. */
export function checkJson(name, actual, expected) {
  count();
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(name, `expected JSON ${e}, actual JSON ${a}`);
}

/** Checks an ack of the form {ok:false, error:{code, message}} with a non-empty message. */
export function checkError(name, ack, code) {
  check(`${name}: ok is false`, ack && ack.ok === false, "ok:false", ack);
  check(`${name}: error.code`, ack?.error?.code === code, JSON.stringify(code), ack?.error);
  check(
    `${name}: error.message is a non-empty string`,
    typeof ack?.error?.message === "string" && ack.error.message.length > 0,
    "a non-empty string",
    ack?.error?.message,
  );
}

/** Starts the global watchdog: the script fails if it is still running after `ms`. */
export function watchdog(defaultMs = 20000) {
  const ms = Number(env.TIDINGS_TEST_TIMEOUT_MS) || defaultMs;
  const timer = setTimeout(() => {
    fail("watchdog", `scenario still running after ${ms} ms (a wait above never completed)`);
  }, ms);
  timer.unref();
}

/** Socket.IO client options for the transport under test. */
export function clientOptions(transport = TRANSPORT) {
  const parser = parserOption ? { parser: parserOption } : {};
  switch (transport) {
    case "websocket":
      return { transports: ["websocket"], ...parser };
    case "polling":
      return { transports: ["polling"], upgrade: false, ...parser };
    default:
      return { transports: ["polling", "websocket"], ...parser };
  }
}

/**
 * Resolves with the argument array of the next `event` on `emitter`, rejects after `ms`.
 * Register it before the action that triggers the event.
 */
export function once(emitter, event, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${ms} ms waiting for event ${JSON.stringify(event)}`));
    }, ms);
    const listener = (...args) => {
      clearTimeout(timer);
      resolve(args);
    };
    emitter.once(event, listener);
  });
}

/** Awaits `promise`, failing the named check (rather than throwing) if it rejects. */
export async function must(name, promise) {
  try {
    return await promise;
  } catch (err) {
    fail(name, `expected success, actual error: ${err?.message ?? err}`);
  }
}

/** Emits with an ack and resolves with the first ack argument; rejects after `ms`. */
export function emitAck(socket, event, payload, ms = WAIT_MS) {
  return socket.timeout(ms).emitWithAck(event, payload);
}

/** Emits `args` with an ack and resolves with *all* ack arguments; rejects after `ms`. */
export function emitAckArgs(socket, event, args, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    socket.timeout(ms).emit(event, ...args, (err, ...reply) => (err ? reject(err) : resolve(reply)));
  });
}

/**
 * Creates a client for `nsp` on its own Engine.IO connection (forceNew) without connecting it.
 * The caller attaches listeners first, then calls `socket.connect()`.
 */
export function client(nsp = "/", { auth, transport, ...extra } = {}) {
  const opts = { ...clientOptions(transport), forceNew: true, reconnection: false, autoConnect: false, ...extra };
  if (auth !== undefined) opts.auth = auth;
  return track(io(URL + nsp, opts));
}

/**
 * Registers a socket for cleanup in `done()` and fails the scenario at once if the socket is
 * disconnected by anything but the client itself (set `socket.expectDisconnect = true` first
 * when a server-side disconnect is the point of the check).
 */
export function track(socket) {
  if (!sockets.has(socket)) {
    sockets.add(socket);
    socket.on("disconnect", (reason) => {
      if (reason !== "io client disconnect" && !socket.expectDisconnect) {
        fail("connection", `expected ${socket.nsp} to stay connected, actual disconnect: ${reason}`);
      }
    });
  }
  return socket;
}

/**
 * Connects a client to `nsp` and waits for both `connect` and the server's `welcome`.
 * Resolves with `{ socket, welcome }`; rejects on `connect_error` or timeout.
 */
export function connect(nsp = "/", opts = {}, ms = WAIT_MS) {
  return open(client(nsp, opts), ms);
}

/**
 * Opens a not-yet-connected `socket` (e.g. `manager.socket("/custom")`, created with
 * `autoConnect: false`) and waits for `connect` and `welcome`. Resolves with `{ socket, welcome }`.
 */
export async function open(socket, ms = WAIT_MS) {
  track(socket);
  const welcome = once(socket, "welcome", ms);
  welcome.catch(() => {}); // awaited below; only a connect failure leaves it unobserved
  const connected = new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`connect_error on ${socket.nsp}: ${err.message}`)));
  });
  socket.connect();
  let timer;
  await Promise.race([
    connected,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`connect to ${socket.nsp} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
  const [w] = await welcome;
  return { socket, welcome: w };
}

/** Connects and fails the named check if it does not succeed. */
export function mustConnect(name, nsp = "/", opts = {}, ms = WAIT_MS) {
  return must(name, connect(nsp, opts, ms));
}

/**
 * Connects a client expected to be refused: resolves with the `connect_error` Error
 * (its `.message` and `.data`), fails the check if it connects instead.
 */
export async function connectRefused(name, nsp, opts = {}, ms = WAIT_MS) {
  const socket = client(nsp, opts);
  const outcome = new Promise((resolve) => {
    socket.once("connect", () => resolve({ connected: true }));
    socket.once("connect_error", (err) => resolve({ err }));
  });
  socket.connect();
  let timer;
  const res = await must(
    name,
    Promise.race([
      outcome,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no connect_error within ${ms} ms`)), ms);
      }),
    ]).finally(() => clearTimeout(timer)),
  );
  if (res.connected) fail(name, "expected connect_error, actual: connected");
  socket.disconnect();
  return res.err;
}

/**
 * In `upgrade` mode, checks that the engine of `socket` upgraded to WebSocket (awaiting the
 * engine's `upgrade` event if it has not happened yet). A no-op for the other transports.
 */
export async function checkUpgraded(name, socket) {
  if (TRANSPORT !== "upgrade") return;
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") {
    await must(`${name}: engine upgrade event`, once(engine, "upgrade", WAIT_MS));
  }
  check(`${name}: engine transport after upgrade`, engine.transport.name === "websocket", '"websocket"', engine.transport.name);
}

/**
 * Runs `fn` (sync or async) and resolves with its result, counting it as the one check `name`:
 * the checks it makes still fail the scenario but are not counted. For checks whose number
 * depends on timing or on choices the server makes (polls, loops over deliveries that may
 * number more or fewer), so that the count a scenario declares stays exact.
 */
export async function asOneCheck(name, fn) {
  const result = await uncounted.run(true, fn);
  count();
  return result;
}

/**
 * Polls `probe` (async; returns a truthy value once the awaited server state is reached) at
 * most `tries` times, `everyMs` apart, and resolves with that value; fails `name` with the last
 * value if it never holds. Only for server state no event announces. One check (`asOneCheck`),
 * however many probes it took.
 */
export function poll(name, probe, { tries = 150, everyMs = 20 } = {}) {
  return asOneCheck(name, async () => {
    let last;
    for (let attempt = 0; attempt < tries; attempt++) {
      last = await probe();
      if (last) return last;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    fail(name, `expected the server state within ${tries} polls ${everyMs} ms apart, actual ${show(last)}`);
  });
}

/**
 * Collects every event `socket` receives, in order, as `[event, ...args]` (but the server's
 * `welcome`). Proof of absence as with `record`.
 */
export function recordAll(socket) {
  const got = [];
  socket.onAny((event, ...args) => {
    if (event !== "welcome") got.push([event, ...args]);
  });
  return got;
}

/**
 * Collects every `event` received by `socket` (each entry is the argument array). Proof of
 * absence: after a later `roundTrip` on the same connection, anything the server emitted
 * earlier has arrived, so an empty list then means "not sent".
 */
export function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => got.push(args));
  return got;
}

/** One ack round trip (the server acks `echo-ack` with its own args). */
export async function roundTrip(name, socket) {
  const reply = await must(name, emitAckArgs(socket, "echo-ack", ["sync"]));
  checkEqual(name, reply, ["sync"]);
}

/**
 * Fails unless the declared number of checks ran; else disconnects every client, prints the
 * result line and exits 0 once the clients' connections have closed (so the server sees them
 * go, e.g. the final long-polling POST is sent), or after a short grace period.
 */
export function done() {
  if (!(declared > 0)) fail("checks", "the scenario declares no number of checks (run(main, { checks: N }))");
  if (checks < declared) {
    fail("checks", `expected at least ${declared} checks (declared), actual ${checks}: the scenario ended early`);
  }
  finished = true;
  for (const s of sockets) s.disconnect();
  stdout.write(`ok: ${checks} checks (at least ${declared} declared)\n`);
  process.exitCode = 0;
  setTimeout(() => exit(0), 3000).unref();
}

/** A room (or event) name unique to this run, so that runs sharing one server cannot interfere. */
export function uniq(name) {
  return `${name}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * Runs a scenario that runs at least `checks` checks: starts the watchdog, awaits `main`, then
 * `done()`. An exception or an unhandled rejection fails the script instead of leaving it
 * hanging.
 */
export function run(main, { timeoutMs = 20000, checks: atLeast } = {}) {
  if (!Number.isInteger(atLeast) || atLeast < 1) {
    fail("setup", `run(main, { checks: N }) must declare the number of checks (N >= 1), got ${atLeast}`);
  }
  declared = atLeast;
  watchdog(timeoutMs);
  process.on("unhandledRejection", (err) => fail("unhandled rejection", err?.stack ?? String(err)));
  main().then(done, (err) => fail("uncaught error", err?.stack ?? String(err)));
}
