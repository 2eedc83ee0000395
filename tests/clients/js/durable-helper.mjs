// clients/js (the typed helper for durable topics) against `tidings serve`, with the real
// socket.io-client: publish answers {id, offset, duplicate}; a handler that resolves acks, one
// that throws requeues (the same message comes back with attempt 2); deliveries of one
// subscription arrive in offset order, one at a time; a group shares its messages, each to one
// member; refusals are TidingsError with the server's code; unsubscribe stops deliveries.
import { Tidings, TidingsError, ErrorCodes } from "../../../clients/js/index.mjs";
import { URL, client, once, must, check, checkEqual, run, uniq } from "./lib.mjs";

async function connected(clientId) {
  const socket = client("/", { auth: { clientId } });
  const tidings = new Tidings(socket, { timeoutMs: 5000 });
  const up = once(socket, "connect");
  socket.connect();
  await must(`${clientId} connects`, up);
  return tidings;
}

/** A promise and its resolve function. */
function later() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

function within(ms, promise, what) {
  const timer = new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref());
  return Promise.race([promise, timer]);
}

async function pending(topic) {
  const res = await fetch(`${URL}/v1/topics/${topic}`);
  const body = await res.json();
  return body.subscriptions.map((s) => s.pending);
}

run(async () => {
  const topic = uniq("orders");
  const publisher = await connected(uniq("vendor"));
  const worker = await connected(uniq("worker"));

  // publish: {id, offset, duplicate}; the same key again: the first id, duplicate.
  const first = await publisher.publish(topic, "order", { n: 1 });
  checkEqual("first offset", [first.offset, first.duplicate, typeof first.id], [1, false, "string"]);
  const keyed = await publisher.publish(topic, "order", { n: 2 }, { key: "k2" });
  const again = await publisher.publish(topic, "order", { n: 2 }, { key: "k2" });
  checkEqual("idempotency key", [again.id, again.offset, again.duplicate], [keyed.id, 2, true]);
  await publisher.publish(topic, "order", { n: 3 });

  // Subscribe from the earliest: n=2 fails once (requeued), everything else acks.
  const seen = [];
  let active = 0;
  let overlapped = false;
  const allDone = later();
  const errors = [];
  const sub = await worker.subscribe(
    topic,
    async (data, meta) => {
      active += 1;
      if (active > 1) overlapped = true;
      seen.push([data.n, meta.offset, meta.attempt, meta.topic]);
      await new Promise((r) => setTimeout(r, 10));
      active -= 1;
      if (data.n === 2 && meta.attempt === 1) throw new Error("not now");
      if (seen.length === 4) allDone.resolve();
    },
    { from: "earliest", onError: (e, meta) => errors.push([e.message, meta.offset]) },
  );
  checkEqual("subscription", [sub.topic, sub.group, sub.pending], [topic, null, 3]);
  await must("every delivery handled (one requeued, back after its backoff)", within(15000, allDone.promise, "deliveries"));
  checkEqual(
    "deliveries: in order, n=2 requeued and redelivered",
    seen,
    [[1, 1, 1, topic], [2, 2, 1, topic], [3, 3, 1, topic], [2, 2, 2, topic]],
  );
  check("one delivery at a time", !overlapped, "no overlap", overlapped);
  checkEqual("onError saw the failure", errors, [["not now", 2]]);
  checkEqual("everything settled", await pending(topic), [0]);

  // A group of two: each message to exactly one member.
  const groupTopic = uniq("pickup");
  const group = uniq("drivers");
  const members = [await connected(uniq("driver")), await connected(uniq("driver"))];
  const taken = [];
  const fourTaken = later();
  for (const [i, m] of members.entries()) {
    await m.subscribe(groupTopic, (data, meta) => {
      taken.push([data.n, i, meta.group]);
      if (taken.length === 4) fourTaken.resolve();
    }, { group });
  }
  for (let n = 1; n <= 4; n++) await publisher.publish(groupTopic, "order", { n });
  await must("the group takes every order", within(10000, fourTaken.promise, "group"));
  checkEqual("each order taken once", taken.map(([n]) => n).sort(), [1, 2, 3, 4]);
  check("in the group", taken.every(([, , g]) => g === group), `group ${group}`, taken);

  // Refusals: TidingsError with the server's code.
  try {
    await publisher.publish("", "order", {});
    check("a bad topic is refused", false, "a TidingsError", "published");
  } catch (e) {
    check("a bad topic is refused", e instanceof TidingsError && e.code === "bad_request" && e.request === "publish", "TidingsError bad_request", { name: e?.name, code: e?.code });
  }
  try {
    await publisher.subscribe(uniq("t"), () => {}, { from: "sometime" });
    check("a bad `from` is refused", false, "a TidingsError", "subscribed");
  } catch (e) {
    check("a bad `from` is refused", e instanceof TidingsError && e.code === "bad_request", "TidingsError bad_request", e?.code);
  }
  check("every code is listed", ErrorCodes.includes("queue_full") && ErrorCodes.includes("timeout"), "queue_full, timeout", ErrorCodes);

  // unsubscribe: the subscription is gone on the server.
  await sub.unsubscribe();
  checkEqual("no subscription after unsubscribe", await pending(topic), []);
}, { timeoutMs: 40000, checks: 13 });
