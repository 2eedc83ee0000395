// Durable subscriptions across reconnects (docs/PROTOCOL.md "Deliveries"):
// - offline catch-up: an identity that subscribed and went away gets its backlog on reconnect
//   (new socket id, same clientId, no re-subscribe), in offset order, then live messages;
// - an ack removes the message from the queue (a reconnect gets nothing old) while the topic
//   still retains it (`history`);
// - a delivery the client did not ack before disconnecting comes back on reconnect with
//   attempt 2 — well before the ack timeout, so it is the disconnect that released it.
import { check, checkEqual, roundTrip, run, uniq } from "./lib.mjs";
import {
  Deliveries, checkMeta, connectAs, history, publish, range, setting, subscribe, subscriptionOf, topicInfo,
  WATCHDOG_MS, waitDrained, waitGone,
} from "./queue-lib.mjs";

const ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS");

run(async () => {
  const topic = uniq("catchup");
  const event = uniq("order");
  const clientId = uniq("a");
  const subKey = `id:${clientId}`;
  const pub = await connectAs("publisher connects (no identity)", undefined);

  // A subscribes, then goes away.
  const a1 = await connectAs("a connects", clientId, new Deliveries(event, "ack"));
  await subscribe("a subscribes", a1, { topic }, { pending: 0 });
  const sid1 = a1.id;
  a1.disconnect();
  await waitGone("server saw a leave", pub, sid1);

  // Five messages while A is offline: they wait in A's queue.
  const since = Date.now();
  const acks = [];
  for (const i of range(1, 5)) acks.push(await publish(`offline publish ${i}`, pub, topic, event, { n: i }, { offset: i }));
  const offline = subscriptionOf("topic info while a is offline", await topicInfo("topic info while a is offline", topic), subKey);
  check("a's queue holds the 5 messages", offline.pending === 5 && offline.inFlight === 0, "pending 5, inFlight 0", offline);

  // A reconnects without subscribing: backlog first, in offset order.
  const inbox = new Deliveries(event, "ack");
  const a2 = await connectAs("a reconnects", clientId, inbox);
  check("a has a new socket id", a2.id !== sid1, `not ${sid1}`, a2.id);
  await inbox.until("catch-up delivers the backlog", (items) => items.length >= 5);
  checkEqual("backlog in offset order", inbox.items.map((d) => d.meta.offset), range(1, 5));
  for (const [i, d] of inbox.items.entries()) {
    checkEqual(`backlog ${i + 1}: data`, d.data, { n: i + 1 });
    checkMeta(`backlog ${i + 1}`, d.meta, { topic, id: acks[i].id, offset: i + 1, attempt: 1, publishedAfter: since });
  }
  // Then live.
  const live = await publish("live publish", pub, topic, event, { n: 6 }, { offset: 6 });
  const d6 = await inbox.until("live delivery", (items) => items.length >= 6).then((items) => items[5]);
  checkMeta("live delivery", d6.meta, { topic, id: live.id, offset: 6, attempt: 1 });
  checkEqual("live delivery: data", d6.data, { n: 6 });
  await roundTrip("a round trip", a2);
  checkEqual("a got each message once", inbox.items.map((d) => d.meta.offset), range(1, 6));

  // Removal on ack: every delivery was acked, so the queue drains; the topic keeps them.
  await waitDrained("a's queue drains after the acks", topic, subKey);
  const sid2 = a2.id;
  a2.disconnect();
  await waitGone("server saw a leave again", pub, sid2);
  const inbox3 = new Deliveries(event, "ack");
  const a3 = await connectAs("a reconnects after acking", clientId, inbox3);
  // Deliveries are in offset order with redeliveries first, so if anything old were still
  // queued it would arrive before this marker.
  const marker = await publish("marker publish", pub, topic, event, { marker: true }, { offset: 7 });
  const first = await inbox3.next("first delivery after reconnect");
  checkMeta("first delivery after reconnect is the marker", first.meta, { topic, id: marker.id, offset: 7, attempt: 1 });
  await roundTrip("a3 round trip", a3);
  checkEqual("nothing old after the acks", inbox3.items.map((d) => d.meta.offset), [7]);
  const retained = await history("history after the acks", pub, { topic });
  checkEqual("acked messages are still retained", retained.map((m) => m.offset), range(1, 7));
  checkEqual("retained ids", retained.map((m) => m.id), [...acks.map((a) => a.id), live.id, marker.id]);

  // Redelivery on disconnect: A receives, does not ack, disconnects, reconnects → attempt 2.
  await waitDrained("a's queue drains after the marker", topic, subKey);
  const sid3 = a3.id;
  a3.disconnect();
  await waitGone("server saw a3 leave", pub, sid3);
  const held = new Deliveries(event, "hold");
  const a4 = await connectAs("a connects and will not ack", clientId, held);
  const unacked = await publish("publish to be left unacked", pub, topic, event, { n: 8 }, { offset: 8 });
  const h1 = await held.next("delivery before the disconnect");
  checkMeta("delivery before the disconnect", h1.meta, { topic, id: unacked.id, offset: 8, attempt: 1 });
  const leftAt = performance.now();
  a4.disconnect();
  const again = new Deliveries(event, "ack");
  await connectAs("a reconnects after leaving a delivery unacked", clientId, again);
  const r = await again.next("redelivery after the disconnect");
  const elapsed = performance.now() - leftAt;
  checkMeta("redelivery after the disconnect", r.meta, { topic, id: unacked.id, offset: 8, attempt: 2 });
  checkEqual("redelivery after the disconnect: data", r.data, { n: 8 });
  check(
    "redelivered by the disconnect, not the ack timeout",
    elapsed < ACK_TIMEOUT_MS,
    `< ${ACK_TIMEOUT_MS} ms`,
    Math.round(elapsed),
  );
  await waitDrained("a's queue drains after the redelivery is acked", topic, subKey);
  checkEqual("exactly one redelivery", again.items.map((d) => [d.meta.offset, d.meta.attempt]), [[8, 2]]);
}, { timeoutMs: WATCHDOG_MS, checks: 115 });
