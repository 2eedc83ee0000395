// Helpers for the durable-queue scenarios (queue-*.mjs), on top of lib.mjs.
//
// The scenarios speak docs/PROTOCOL.md ("Durable topics") with the unmodified socket.io-client.
// Server settings a scenario depends on (ack timeout, requeue backoff, …) come from env
// variables `TIDINGS_*` that the Rust test sets from the QueueConfig it started the server with
// (crates/tidings-server/tests/queue_support); `setting()` reads them.

import { env } from "node:process";
import { inspect } from "node:util";
import { URL, WAIT_MS, check, checkEqual, client, emitAck, fail, must, open, poll } from "./lib.mjs";

/**
 * Watchdog of the queue scenarios: every wait in them is bounded, but their sum on a machine
 * under heavy load (many scenarios and servers at once) can pass lib.mjs's 20 s default.
 */
export const WATCHDOG_MS = 40000;

/** A numeric server setting from env `name`; fails the scenario if it is missing. */
export function setting(name) {
  const raw = env[name];
  const value = Number(raw);
  if (raw === undefined || raw === "" || !Number.isFinite(value)) {
    fail("setup", `env ${name} is required (the server's queue setting; the Rust test sets it), got ${raw}`);
  }
  return value;
}

/** A string server setting from env `name`; fails the scenario if it is missing. */
export function settingString(name) {
  const raw = env[name];
  if (!raw) fail("setup", `env ${name} is required (the server's queue setting; the Rust test sets it)`);
  return raw;
}

function show(value) {
  return inspect(value, { depth: 6, compact: true, breakLength: Infinity, maxArrayLength: 40 });
}

/**
 * Records every delivery of one event (`event(data, meta, ack)`) on the sockets it is attached
 * to, and answers each one by `policy`: `"ack"`, `"requeue"` (ack `{requeue:true}`), `"hold"`
 * (keep the ack callback, answer later or never), or a function `item => policy`.
 * Items: `{ data, meta, ack, at, socket, label, args }`, in arrival order.
 */
export class Deliveries {
  constructor(event, policy = "ack") {
    this.event = event;
    this.policy = policy;
    this.items = [];
    this.cursor = 0;
    this.waiters = [];
  }

  /** Listens on `socket` (attach before connecting, so nothing arrives unhandled). */
  attach(socket, label = socket.auth?.clientId ?? "anonymous") {
    socket.on(this.event, (...args) => {
      const ack = args[args.length - 1];
      if (typeof ack !== "function") {
        fail(`delivery of ${this.event} to ${label}`, `expected an ack id, actual args ${show(args)}`);
      }
      const [data, meta] = args;
      const item = { data, meta, ack, at: performance.now(), socket, label, args: args.slice(0, -1) };
      const policy = typeof this.policy === "function" ? this.policy(item) : this.policy;
      if (policy === "ack") ack();
      else if (policy === "requeue") ack({ requeue: true });
      else if (policy !== "hold") fail("Deliveries policy", `expected ack|requeue|hold, actual ${policy}`);
      item.policy = policy;
      this.items.push(item);
      for (const w of this.waiters.splice(0)) w();
    });
    return socket;
  }

  /** Resolves with the items once `pred(items)` holds; fails the check `name` after `ms`. */
  until(name, pred, ms = WAIT_MS) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        fail(name, `expected the condition on ${this.event} deliveries within ${ms} ms, actual ${this.describe()}`);
      }, ms);
      const test = () => {
        if (pred(this.items)) {
          clearTimeout(timer);
          resolve(this.items);
        } else {
          this.waiters.push(test);
        }
      };
      test();
    });
  }

  /** The next delivery not returned by `next` yet (in arrival order). */
  async next(name, ms = WAIT_MS) {
    const i = this.cursor;
    await this.until(name, (items) => items.length > i, ms);
    this.cursor = i + 1;
    return this.items[i];
  }

  /** Skips everything received so far (for `next`). */
  skipAll() {
    this.cursor = this.items.length;
  }

  describe() {
    return show(this.items.map((d) => ({ to: d.label, offset: d.meta?.offset, attempt: d.meta?.attempt, policy: d.policy })));
  }
}

/** Records every `event` with one argument (e.g. `tidings:gap`); `until` as in Deliveries. */
export class Notices {
  constructor(event) {
    this.event = event;
    this.items = [];
    this.waiters = [];
  }

  attach(socket) {
    socket.on(this.event, (...args) => {
      this.items.push(args);
      for (const w of this.waiters.splice(0)) w();
    });
    return socket;
  }

  until(name, pred, ms = WAIT_MS) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        fail(name, `expected the condition on ${this.event} within ${ms} ms, actual ${show(this.items)}`);
      }, ms);
      const test = () => {
        if (pred(this.items)) {
          clearTimeout(timer);
          resolve(this.items);
        } else {
          this.waiters.push(test);
        }
      };
      test();
    });
  }
}

/**
 * Connects a client as `clientId` (none when undefined) with `listeners` (Deliveries or Notices)
 * attached before the CONNECT, and waits for the interop app's `welcome`. Returns the socket.
 */
export async function connectAs(name, clientId, ...listeners) {
  const socket = client("/", clientId === undefined ? {} : { auth: { clientId } });
  for (const l of listeners) l.attach(socket, clientId);
  const { socket: s } = await must(name, open(socket));
  return s;
}

/** `subscribe` with `payload`; checks the ack `{ok:true, topic, group, pending}` and returns it. */
export async function subscribe(name, socket, payload, { pending } = {}) {
  const ack = await must(name, emitAck(socket, "subscribe", payload));
  check(`${name}: ok`, ack?.ok === true, "ok:true", ack);
  checkEqual(`${name}: ack keys`, Object.keys(ack).sort(), ["group", "ok", "pending", "topic"]);
  check(`${name}: topic`, ack.topic === payload.topic, JSON.stringify(payload.topic), ack.topic);
  check(`${name}: group`, ack.group === (payload.group ?? null), JSON.stringify(payload.group ?? null), ack.group);
  check(`${name}: pending is a count`, Number.isInteger(ack.pending) && ack.pending >= 0, "an integer >= 0", ack.pending);
  if (pending !== undefined) check(`${name}: pending`, ack.pending === pending, String(pending), ack.pending);
  return ack;
}

/**
 * `publish` and check the ack `{ok:true, id, offset, duplicate}`; `expect` may pin
 * `offset`, `duplicate` (default false) and `id`. Returns the ack.
 */
export async function publish(name, socket, topic, event, data, { key, ...expect } = {}) {
  const payload = { topic, event, data };
  if (key !== undefined) payload.key = key;
  const ack = await must(name, emitAck(socket, "publish", payload));
  check(`${name}: ok`, ack?.ok === true, "ok:true", ack);
  checkEqual(`${name}: ack keys`, Object.keys(ack).sort(), ["duplicate", "id", "offset", "ok"]);
  check(`${name}: id is a non-empty string`, typeof ack.id === "string" && ack.id.length > 0, "a non-empty string", ack.id);
  check(`${name}: offset >= 1`, Number.isInteger(ack.offset) && ack.offset >= 1, "an integer >= 1", ack.offset);
  const duplicate = expect.duplicate ?? false;
  check(`${name}: duplicate`, ack.duplicate === duplicate, String(duplicate), ack.duplicate);
  if (expect.offset !== undefined) check(`${name}: offset`, ack.offset === expect.offset, String(expect.offset), ack.offset);
  if (expect.id !== undefined) check(`${name}: id`, ack.id === expect.id, JSON.stringify(expect.id), ack.id);
  return ack;
}

/** `history` and check `{ok:true, messages}`; returns the messages. */
export async function history(name, socket, payload) {
  const ack = await must(name, emitAck(socket, "history", payload));
  check(`${name}: ok`, ack?.ok === true && Array.isArray(ack.messages), "{ok:true, messages:[…]}", ack);
  for (const m of ack.messages) {
    checkEqual(`${name}: message keys`, Object.keys(m).sort(), ["data", "event", "id", "offset", "publishedAt"]);
  }
  return ack.messages;
}

/**
 * Checks a delivery's `meta` is exactly `{topic, id, offset, group?, attempt, publishedAt}` with
 * the expected values; `publishedAt` an integer (ms since the epoch) no earlier than
 * `publishedAfter` − 1 s and no later than now + 1 s (same machine, so only rounding slack).
 */
export function checkMeta(name, meta, { topic, id, offset, attempt, group, publishedAfter }) {
  const keys = ["attempt", "id", "offset", "publishedAt", "topic"];
  if (group !== undefined) keys.push("group");
  checkEqual(`${name}: meta keys`, Object.keys(meta ?? {}).sort(), keys.sort());
  const { publishedAt, ...rest } = meta;
  const expected = { topic, id, offset, attempt };
  if (group !== undefined) expected.group = group;
  checkEqual(`${name}: meta`, rest, expected);
  const lo = (publishedAfter ?? Date.now() - 3_600_000) - 1000;
  check(
    `${name}: meta.publishedAt`,
    Number.isInteger(publishedAt) && publishedAt >= lo && publishedAt <= Date.now() + 1000,
    `an integer in [${lo}, now + 1 s]`,
    publishedAt,
  );
}

/** One HTTP request to the server's /v1 API; resolves with `{status, body}` (body parsed JSON). */
export async function http(name, method, path) {
  const res = await must(name, fetch(URL + path, { method, signal: AbortSignal.timeout(WAIT_MS) }));
  const text = await must(`${name}: body`, res.text());
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    fail(name, `expected a JSON body, actual ${JSON.stringify(text.slice(0, 200))}`);
  }
  return { status: res.status, body };
}

/** GET /v1/topics/{topic}; checks 200 and returns the topic info. */
export async function topicInfo(name, topic) {
  const { status, body } = await http(name, "GET", `/v1/topics/${encodeURIComponent(topic)}`);
  check(`${name}: status`, status === 200, "200", { status, body });
  return body;
}

/** The subscription `key` (`id:<clientId>` or `group:<name>`) of a topic info. */
export function subscriptionOf(name, info, key) {
  const sub = info?.subscriptions?.find((s) => s.name === key);
  check(`${name}: subscription ${key} listed`, sub !== undefined, `a subscription named ${key}`, info?.subscriptions);
  return sub;
}

/**
 * Polls `probe` (async, returns a truthy value when the awaited server state is reached) at
 * most `tries` times, `everyMs` apart (lib.mjs `poll`: one check however many probes). Only for
 * server state no event announces (a store commit, a dead-lettering).
 */
export function waitFor(name, probe, { tries = 150, everyMs = 20 } = {}) {
  return poll(name, probe, { tries, everyMs });
}

/** Waits until the server has its subscription `key` on `topic` fully settled (nothing pending). */
export function waitDrained(name, topic, key) {
  return waitFor(name, async () => {
    const info = await topicInfo(name, topic);
    const sub = subscriptionOf(name, info, key);
    return sub.pending === 0 && sub.inFlight === 0 ? sub : false;
  });
}

/**
 * Waits until the server has closed the socket `sid` (it left its own room). A client cannot
 * await the server's view of its own goodbye, so `observer` polls the interop app's
 * `room-sockets`, bounded in count. Needed before publishing to an identity that just went
 * offline: a delivery to the closing socket would come back as attempt 2.
 */
export function waitGone(name, observer, sid) {
  return waitFor(name, async () => {
    const ack = await must(name, emitAck(observer, "room-sockets", { room: sid }));
    check(`${name}: room-sockets ok`, ack?.ok === true, "ok:true", ack);
    return !ack.sids.includes(sid);
  });
}

/** Each element of `values` once, sorted numerically. */
export function sortedNumbers(values) {
  return [...values].sort((a, b) => a - b);
}

/** 1..n */
export function range(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
