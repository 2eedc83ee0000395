// Per-connection and per-identity limits of `tidings serve` (docs/SECURITY.md) with the
// unmodified socket.io-client, while a well-behaved pair of clients keeps being served.
// env (the server's settings, from crates/tidings/tests/limits.rs): EVENTS_PER_SECOND,
// PUBLISHES_PER_SECOND, MAX_SUBSCRIPTIONS.
import { env } from "node:process";
import { WAIT_MS, check, checkEqual, checkError, client, emitAck, fail, must, once, run, uniq } from "./lib.mjs";

const EVENTS = Number(env.EVENTS_PER_SECOND);
const PUBLISHES = Number(env.PUBLISHES_PER_SECOND);
const MAX_SUBS = Number(env.MAX_SUBSCRIPTIONS);
if (!EVENTS || !PUBLISHES || !MAX_SUBS) fail("setup", "EVENTS_PER_SECOND, PUBLISHES_PER_SECOND and MAX_SUBSCRIPTIONS are required");

async function connect(auth) {
  const socket = client("/", { auth });
  const up = once(socket, "connect");
  socket.connect();
  await must("connect", up);
  return socket;
}

/** The well-behaved pair: a broadcast from one reaches the other. */
async function bystanders() {
  const [a, b] = [await connect({}), await connect({})];
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

/** Resolves after `ms`: only to let a token bucket refill, which is the behaviour under test. */
const refill = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

run(async () => {
  const stillServed = await bystanders();

  // Events per second per connection: a burst of 3× the limit, all with acks.
  const flooder = await connect({});
  const burst = await Promise.all(
    Array.from({ length: EVENTS * 3 }, (_, i) => must(`burst ${i}`, emitAck(flooder, "leave", { room: "nowhere" }))),
  );
  const ok = burst.filter((a) => a?.ok === true).length;
  const limited = burst.filter((a) => a?.ok === false && a.error?.code === "rate_limited");
  check("burst: at most the limit (plus refill) handled", ok >= EVENTS && ok < EVENTS * 2, `${EVENTS}..${EVENTS * 2}`, ok);
  checkEqual("burst: every other event refused with rate_limited", ok + limited.length, EVENTS * 3);
  checkError("rate_limited ack", limited[0], "rate_limited");
  await stillServed("after an event flood");
  await refill(1100);
  checkEqual("after a second the flooder is served again", await must("flooder again", emitAck(flooder, "leave", { room: "nowhere" })), { ok: true });

  // Publishes per second per identity: two connections of one identity share the budget.
  const identity = uniq("pub");
  const [p1, p2] = [await connect({ clientId: identity }), await connect({ clientId: identity })];
  const topic = uniq("limits.pub");
  const pubs = await Promise.all(
    Array.from({ length: PUBLISHES * 2 }, (_, i) =>
      must(`publish ${i}`, emitAck(i % 2 ? p2 : p1, "publish", { topic, event: "e", data: i })),
    ),
  );
  const stored = pubs.filter((a) => a?.ok === true);
  const refused = pubs.filter((a) => a?.error?.code === "rate_limited");
  check("publishes: the identity's budget is shared by its connections", stored.length >= PUBLISHES && stored.length < PUBLISHES * 2, `${PUBLISHES}..${PUBLISHES * 2 - 1}`, stored.length);
  checkEqual("publishes: the rest refused with rate_limited", stored.length + refused.length, PUBLISHES * 2);
  checkError("publish rate_limited ack", refused[0], "rate_limited");
  const other = await connect({ clientId: uniq("other") });
  const otherAck = await must("another identity publishes", emitAck(other, "publish", { topic, event: "e", data: "x" }));
  check("another identity is not held back", otherAck?.ok === true, "ok", otherAck);
  const history = await must("history", emitAck(other, "history", { topic }));
  checkEqual("nothing refused was stored", history.messages.length, stored.length + 1);
  await stillServed("after a publish flood");

  // Subscriptions per identity.
  const subscriber = await connect({ clientId: uniq("sub") });
  const topics = Array.from({ length: MAX_SUBS + 1 }, () => uniq("limits.sub"));
  for (const t of topics.slice(0, MAX_SUBS)) {
    check(`subscribe ${t}`, (await must("subscribe", emitAck(subscriber, "subscribe", { topic: t })))?.ok === true, "ok", t);
  }
  checkError("one subscription too many", await must("subscribe over", emitAck(subscriber, "subscribe", { topic: topics[MAX_SUBS] })), "limit_exceeded");
  const again = await must("re-subscribe", emitAck(subscriber, "subscribe", { topic: topics[0] }));
  check("re-subscribing an existing one is fine", again?.ok === true, "ok", again);
  checkEqual("unsubscribe", await must("unsubscribe", emitAck(subscriber, "unsubscribe", { topic: topics[0] })), { ok: true });
  const now = await must("subscribe after unsubscribe", emitAck(subscriber, "subscribe", { topic: topics[MAX_SUBS] }));
  check("room again after an unsubscribe", now?.ok === true, "ok", now);
  await stillServed("after the subscription limit");
}, { timeoutMs: 40000, checks: 29 });
