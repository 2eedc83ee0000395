// Dead letters (docs/PROTOCOL.md "Deliveries"), with maxDeliveries from env (the Rust test uses
// 2) and an ack timeout far longer than any wait here:
// - ack {requeue:true} → redelivered (attempt 2) after the backoff — before the ack timeout
//   could explain it;
// - after maxDeliveries the message is no longer delivered and
//   `GET /v1/topics/{t}/dead-letters` lists it; later messages still flow;
// - `POST /v1/topics/{t}/dead-letters/{id}/requeue` brings it back as a fresh delivery.
import { check, checkEqual, fail, roundTrip, run, uniq } from "./lib.mjs";
import {
  Deliveries, checkMeta, connectAs, http, publish, range, setting, subscribe, subscriptionOf, topicInfo,
  WATCHDOG_MS, waitDrained, waitFor,
} from "./queue-lib.mjs";

const MAX_DELIVERIES = setting("TIDINGS_MAX_DELIVERIES");
const ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS");

run(async () => {
  if (MAX_DELIVERIES < 2) fail("setup", `expected TIDINGS_MAX_DELIVERIES >= 2, actual ${MAX_DELIVERIES}`);
  const topic = uniq("dead");
  const event = uniq("task");
  const clientId = uniq("picky");
  const subKey = `id:${clientId}`;
  let released = false;
  // The poison message is requeued every time until released; everything else is acked.
  const inbox = new Deliveries(event, ({ data }) => (data?.poison && !released ? "requeue" : "ack"));
  const worker = await connectAs("worker connects", clientId, inbox);
  const pub = await connectAs("publisher connects", undefined);
  await subscribe("worker subscribes", worker, { topic }, { pending: 0 });

  const poison = await publish("publish the poison message", pub, topic, event, { poison: true }, { offset: 1 });
  const started = performance.now();
  for (const attempt of range(1, MAX_DELIVERIES)) {
    const d = await inbox.next(`poison delivery ${attempt}`);
    checkMeta(`poison delivery ${attempt}`, d.meta, { topic, id: poison.id, offset: 1, attempt });
  }
  const elapsed = performance.now() - started;
  check("requeued deliveries came from the requeue, not the ack timeout", elapsed < ACK_TIMEOUT_MS, `< ${ACK_TIMEOUT_MS} ms`, Math.round(elapsed));

  // No event announces a dead-lettering: poll the API (bounded) until it lists the message.
  const path = `/v1/topics/${topic}/dead-letters`;
  const dead = await waitFor("dead letters list the poison message", async () => {
    const { status, body } = await http("GET dead letters", "GET", path);
    check("GET dead letters: 200", status === 200 && Array.isArray(body?.deadLetters), "200 {deadLetters:[…]}", { status, body });
    return body.deadLetters.length > 0 ? body.deadLetters : false;
  });
  checkEqual("one dead letter", dead.length, 1);
  const [dl] = dead;
  checkEqual(
    "dead letter fields",
    { id: dl.id, offset: dl.offset, event: dl.event, data: dl.data, subscription: dl.subscription, attempts: dl.attempts },
    { id: poison.id, offset: 1, event, data: { poison: true }, subscription: subKey, attempts: MAX_DELIVERIES },
  );
  check("dead letter deadAt", Number.isInteger(dl.deadAt) && dl.deadAt <= Date.now() + 1000, "an integer (ms)", dl.deadAt);
  const info = subscriptionOf("topic info after dead-lettering", await topicInfo("topic info after dead-lettering", topic), subKey);
  check("subscription counts the dead letter", info.dead === 1 && info.pending === 0, "dead 1, pending 0", info);

  // Later messages still flow, and the poison message is not delivered again.
  const next = await publish("publish after dead-lettering", pub, topic, event, { ok: 1 }, { offset: 2 });
  const d = await inbox.next("delivery after dead-lettering");
  checkMeta("delivery after dead-lettering", d.meta, { topic, id: next.id, offset: 2, attempt: 1 });
  await roundTrip("round trip after dead-lettering", worker);
  checkEqual("poison message delivered exactly maxDeliveries times", inbox.items.filter((x) => x.meta.offset === 1).length, MAX_DELIVERIES);

  // Requeue through the API: unknown and malformed ids first.
  const unknown = await http("requeue an unknown id", "POST", `${path}/AAAAAAAAAAAAAAAAAAAAAA/requeue`);
  check("requeue an unknown id: 404 not_found", unknown.status === 404 && unknown.body?.error?.code === "not_found", "404 not_found", unknown);
  const malformed = await http("requeue a malformed id", "POST", `${path}/not-an-id!/requeue`);
  check("requeue a malformed id: 400 bad_request", malformed.status === 400 && malformed.body?.error?.code === "bad_request", "400 bad_request", malformed);
  released = true;
  const requeued = await http("requeue the poison message", "POST", `${path}/${poison.id}/requeue`);
  check("requeue the poison message: 200", requeued.status === 200, "200", requeued);
  checkEqual("requeue answer", requeued.body, { requeued: true });
  const back = await inbox.next("the requeued dead letter comes back");
  checkMeta("the requeued dead letter comes back", back.meta, { topic, id: poison.id, offset: 1, attempt: 1 });
  checkEqual("the requeued dead letter: data", back.data, { poison: true });
  const after = await http("GET dead letters after the requeue", "GET", path);
  checkEqual("no dead letters after the requeue", after.body, { deadLetters: [] });
  const again = await http("requeue the same id twice", "POST", `${path}/${poison.id}/requeue`);
  check("requeue the same id twice: 404", again.status === 404, "404", again);
  await waitDrained("queue drains after acking the requeued message", topic, subKey);
  await roundTrip("final round trip", worker);
  checkEqual(
    "deliveries (offset, attempt)",
    inbox.items.map((x) => [x.meta.offset, x.meta.attempt]),
    [...range(1, MAX_DELIVERIES).map((a) => [1, a]), [2, 1], [1, 1]],
  );
}, { timeoutMs: WATCHDOG_MS, checks: 50 });
