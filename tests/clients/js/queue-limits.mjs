// Queue depth and topic limits of `tidings serve` (docs/SECURITY.md) with the unmodified
// socket.io-client and the HTTP API, while well-behaved clients keep being served.
// env (the server's settings, from crates/tidings/tests/limits.rs):
//   MAX_QUEUE_DEPTH  [limits] max_queue_depth, overflow "reject" (the default);
//                    topics under "drop." use overflow "drop-oldest" with the same depth
//   MAX_TOPICS       [limits] max_topics; this scenario creates 3 topics before it fills them up
// - reject: a subscriber that never acks fills its queue — a burst of concurrent publishes
//   stores exactly the depth, never more; the next publish gets `queue_full`
//   (on the ack and HTTP 507) and nothing is stored — also not its idempotency key; once the
//   subscriber acks one message, publishing works again;
// - drop-oldest: publishes past the depth are stored, the subscriber gets `tidings:gap` for
//   exactly the oldest unsettled offsets it lost, `gaps` counts them, nobody else is told, and
//   the messages stay in the topic's history;
// - max topics: a publish, a subscribe or an HTTP publish that would create one topic too many
//   gets `limit_exceeded` (HTTP 403); existing topics stay usable.
import { env } from "node:process";
import { URL, WAIT_MS, check, checkEqual, checkError, client, emitAck, fail, must, once, run, uniq } from "./lib.mjs";
import { Deliveries, Notices, history, publish, range, subscribe, subscriptionOf, topicInfo, waitDrained, waitFor, WATCHDOG_MS } from "./queue-lib.mjs";

const DEPTH = Number(env.MAX_QUEUE_DEPTH);
const MAX_TOPICS = Number(env.MAX_TOPICS);
if (!(DEPTH >= 2) || !(MAX_TOPICS >= 4)) fail("setup", "MAX_QUEUE_DEPTH >= 2 and MAX_TOPICS >= 4 are required");

/** Connects with `auth`, listeners attached before the CONNECT. */
async function connect(auth, ...listeners) {
  const socket = client("/", { auth });
  for (const l of listeners) l.attach(socket, auth?.clientId);
  const up = once(socket, "connect");
  socket.connect();
  await must(`connect ${auth?.clientId ?? "anonymous"}`, up);
  return socket;
}

/** POST /v1/topics/{topic}/messages; resolves with {status, body}. */
async function httpPublish(name, topic, payload) {
  const res = await must(name, fetch(`${URL}/v1/topics/${encodeURIComponent(topic)}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(payload),
    signal: AbortSignal.timeout(WAIT_MS),
  }));
  return { status: res.status, body: await must(`${name}: body`, res.json()) };
}

/** The offsets covered by `tidings:gap` notices. */
function covered(notices) {
  return notices.flatMap(([g]) => (Number.isInteger(g?.from) && Number.isInteger(g?.to) && g.from <= g.to ? range(g.from, g.to) : []));
}

/**
 * A well-behaved subscriber that acks everything, on a topic of its own: each call publishes one
 * message and waits until it is delivered.
 */
async function wellBehaved() {
  const topic = uniq("calm");
  const inbox = new Deliveries("calm", "ack");
  const socket = await connect({ clientId: uniq("calm") }, inbox);
  await subscribe("calm subscribes", socket, { topic }, { pending: 0 });
  let n = 0;
  return async (name) => {
    n += 1;
    await publish(`${name}: calm publish`, socket, topic, "calm", { n }, { offset: n });
    await inbox.until(`${name}: calm delivery`, (items) => items.some((d) => d.meta.offset === n));
  };
}

run(async () => {
  const stillServed = await wellBehaved(); // topic 1
  const publisher = await connect({ clientId: uniq("publisher") });
  const otherGaps = new Notices("tidings:gap");
  otherGaps.attach(publisher);

  // Reject (topic 2).
  {
    const topic = uniq("reject");
    const inbox = new Deliveries("job", "hold");
    const clientId = uniq("stuck");
    const stuck = await connect({ clientId }, inbox);
    await subscribe("stuck subscribes", stuck, { topic }, { pending: 0 });
    // A burst of concurrent publishes: the bound is checked atomically with each append, so
    // exactly DEPTH are stored and the rest refused — never one more.
    const burst = await Promise.all(
      range(1, DEPTH * 3).map((n) => must(`burst ${n}`, emitAck(publisher, "publish", { topic, event: "job", data: { n } }))),
    );
    const accepted = burst.filter((a) => a?.ok === true);
    checkEqual("burst: exactly the depth stored", accepted.map((a) => a.offset).sort((a, b) => a - b), range(1, DEPTH));
    for (const a of burst.filter((a) => a?.ok !== true)) checkError("burst: the rest refused", a, "queue_full");
    await inbox.until("the stuck subscriber holds every delivery", (items) => items.length === DEPTH);
    const refused = await must("publish over the depth", emitAck(publisher, "publish", { topic, event: "job", data: {}, key: "late" }));
    checkError("publish over the depth", refused, "queue_full");
    check("the message does not name the subscription", !refused.error.message.includes(clientId), "no identity", refused.error.message);
    const viaHttp = await httpPublish("HTTP publish over the depth", topic, { event: "job", data: {} });
    checkEqual("HTTP publish over the depth: status", viaHttp.status, 507);
    checkEqual("HTTP publish over the depth: code", viaHttp.body?.error?.code, "queue_full");
    checkEqual("nothing refused was stored", (await history("history while full", publisher, { topic })).map((m) => m.offset), range(1, DEPTH));
    await stillServed("while a queue is full");

    inbox.items[0].ack();
    await waitFor("the ack settles one entry", async () => subscriptionOf("info", await topicInfo("info", topic), `id:${clientId}`).pending === DEPTH - 1);
    await publish("publish after an ack", publisher, topic, "job", { n: "late" }, { key: "late", offset: DEPTH + 1, duplicate: false });
    checkError("full again", await must("publish when full again", emitAck(publisher, "publish", { topic, event: "job", data: {} })), "queue_full");
    const info = subscriptionOf("info after reject", await topicInfo("info after reject", topic), `id:${clientId}`);
    checkEqual("reject loses nothing", { pending: info.pending, gaps: info.gaps }, { pending: DEPTH, gaps: 0 });
    stuck.disconnect();
  }

  // Drop-oldest (topic 3).
  {
    const topic = `drop.${uniq("t")}`;
    const inbox = new Deliveries("reading", "hold");
    const gaps = new Notices("tidings:gap");
    const clientId = uniq("lagging");
    const lagging = await connect({ clientId }, inbox, gaps);
    await subscribe("lagging subscribes", lagging, { topic }, { pending: 0 });
    const extra = 2;
    for (const n of range(1, DEPTH + extra)) await publish(`drop publish ${n}`, publisher, topic, "reading", { n }, { offset: n });
    await gaps.until("gap notices for the dropped offsets", (items) => covered(items).length >= extra);
    for (const [i, [g]] of gaps.items.entries()) {
      checkEqual(`gap notice ${i + 1} keys`, Object.keys(g ?? {}).sort(), ["from", "to", "topic"]);
      checkEqual(`gap notice ${i + 1} topic`, g.topic, topic);
    }
    checkEqual("the oldest unsettled offsets were dropped, each announced once", covered(gaps.items).sort((a, b) => a - b), range(1, extra));
    await inbox.until("the newest are delivered", (items) => range(extra + 1, DEPTH + extra).every((o) => items.some((d) => d.meta.offset === o)));
    const info = subscriptionOf("info after drop", await topicInfo("info after drop", topic), `id:${clientId}`);
    checkEqual("gaps counts the dropped; the queue holds the depth", { pending: info.pending, gaps: info.gaps }, { pending: DEPTH, gaps: extra });
    checkEqual("the messages stay in the topic", (await history("history after drop", publisher, { topic })).map((m) => m.offset), range(1, DEPTH + extra));
    // Acking everything, the dropped ones included, is harmless.
    for (const d of inbox.items) d.ack();
    await waitDrained("the lagging subscriber caught up", topic, `id:${clientId}`);
    checkEqual("a client without the subscription gets no gap notice", otherGaps.items, []);
    await stillServed("after drop-oldest");
  }

  // Max topics: 3 exist; one more may be created, then none.
  {
    const subscriber = await connect({ clientId: uniq("many") });
    const created = uniq("fourth");
    for (let n = 4; n < MAX_TOPICS; n++) await publish(`topic ${n}`, publisher, uniq("filler"), "e", {});
    await subscribe("subscribe creates the last topic", subscriber, { topic: created });
    const over = uniq("over");
    checkError("publish creating a topic too many", await must("publish over", emitAck(publisher, "publish", { topic: over, event: "e", data: {} })), "limit_exceeded");
    checkError("subscribe creating a topic too many", await must("subscribe over", emitAck(subscriber, "subscribe", { topic: over })), "limit_exceeded");
    const viaHttp = await httpPublish("HTTP publish creating a topic too many", over, { event: "e", data: {} });
    checkEqual("HTTP: status", viaHttp.status, 403);
    checkEqual("HTTP: code", viaHttp.body?.error?.code, "limit_exceeded");
    const topics = await must("list topics", fetch(`${URL}/v1/topics`, { signal: AbortSignal.timeout(WAIT_MS) }).then((r) => r.json()));
    checkEqual("no topic was created past the limit", topics.topics.length, MAX_TOPICS);
    await publish("existing topics stay usable", publisher, created, "e", { ok: true }, { offset: 1 });
    await stillServed("after the topic limit");
  }
}, { timeoutMs: WATCHDOG_MS, checks: 146 });
