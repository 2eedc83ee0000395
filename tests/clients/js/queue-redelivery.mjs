// Redelivery (docs/PROTOCOL.md "Deliveries"), with a short ack timeout and a requeue backoff
// longer than it (the Rust test configures both and passes them in env):
// - no ack within the ack timeout → the same message again, attempt 2, no earlier than the
//   timeout; a late ack of the first delivery is ignored;
// - ack {requeue:true} → the same message again, attempt 2, no earlier than the backoff — which
//   is longer than the ack timeout, so it cannot have been the timeout path;
// - a settled message is not delivered again (the store's queue drains).
import { check, checkEqual, fail, roundTrip, run, uniq } from "./lib.mjs";
import { Deliveries, checkMeta, connectAs, publish, setting, subscribe, waitDrained, WATCHDOG_MS } from "./queue-lib.mjs";

const ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS");
const BACKOFF_MS = setting("TIDINGS_REQUEUE_BACKOFF_MS");
// Timers on both sides round to the millisecond; the client measures from its own receipt.
const SLACK_MS = 25;

run(async () => {
  if (!(BACKOFF_MS > ACK_TIMEOUT_MS + 200)) {
    fail("setup", `expected TIDINGS_REQUEUE_BACKOFF_MS > TIDINGS_ACK_TIMEOUT_MS + 200, actual ${BACKOFF_MS} / ${ACK_TIMEOUT_MS}`);
  }
  const topic = uniq("redelivery");
  const event = uniq("job");
  const clientId = uniq("worker");
  // Offset 1: hold the first delivery (no ack), ack the second.
  // Offset 2: requeue the first delivery, ack the second.
  const inbox = new Deliveries(event, ({ meta }) => {
    if (meta.attempt > 1) return "ack";
    return meta.offset === 1 ? "hold" : "requeue";
  });
  const worker = await connectAs("worker connects", clientId, inbox);
  const pub = await connectAs("publisher connects", undefined);
  await subscribe("worker subscribes", worker, { topic }, { pending: 0 });

  // Ack timeout. Measured from before the publish: the server's timer starts when it emits,
  // which is after the publish but may be well before this client reads the delivery (a busy
  // machine can hand both deliveries to the client in one read).
  const sent = performance.now();
  const m1 = await publish("publish m1", pub, topic, event, { job: 1 }, { offset: 1 });
  const d1 = await inbox.next("m1 first delivery");
  checkMeta("m1 first delivery", d1.meta, { topic, id: m1.id, offset: 1, attempt: 1 });
  const d2 = await inbox.next("m1 redelivery after the ack timeout", ACK_TIMEOUT_MS + 5000);
  checkMeta("m1 redelivery after the ack timeout", d2.meta, { topic, id: m1.id, offset: 1, attempt: 2 });
  checkEqual("m1 redelivery: data", d2.data, { job: 1 });
  const waited = d2.at - sent;
  check("m1 redelivered no earlier than the ack timeout", waited >= ACK_TIMEOUT_MS - SLACK_MS, `>= ${ACK_TIMEOUT_MS} ms`, Math.round(waited));
  // The late ack of the first delivery is ignored (the connection stays up; no error).
  d1.ack();
  await roundTrip("round trip after the late ack", worker);
  await waitDrained("m1 settled", topic, `id:${clientId}`);

  // Requeue with backoff.
  const m2 = await publish("publish m2", pub, topic, event, { job: 2 }, { offset: 2 });
  const d3 = await inbox.next("m2 first delivery");
  checkMeta("m2 first delivery", d3.meta, { topic, id: m2.id, offset: 2, attempt: 1 });
  const d4 = await inbox.next("m2 redelivery after requeue", BACKOFF_MS + 5000);
  checkMeta("m2 redelivery after requeue", d4.meta, { topic, id: m2.id, offset: 2, attempt: 2 });
  checkEqual("m2 redelivery: data", d4.data, { job: 2 });
  const backedOff = d4.at - d3.at;
  check("m2 redelivered no earlier than the requeue backoff", backedOff >= BACKOFF_MS - SLACK_MS, `>= ${BACKOFF_MS} ms`, Math.round(backedOff));
  await waitDrained("m2 settled", topic, `id:${clientId}`);
  await roundTrip("final round trip", worker);
  checkEqual(
    "deliveries (offset, attempt)",
    inbox.items.map((d) => [d.meta.offset, d.meta.attempt]),
    [[1, 1], [1, 2], [2, 1], [2, 2]],
  );
}, { timeoutMs: WATCHDOG_MS, checks: 39 });
