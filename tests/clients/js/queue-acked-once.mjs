// A delivery the client acks at once is delivered once (docs/PROTOCOL.md "Deliveries": an ack
// settles it; only "no ack within ackTimeout" redelivers). Meant for a server whose store is
// slow to answer claims (the Rust test's SlowClaims profile): the store's ack deadline for a
// claimed message may pass before the server has even sent it, and the server must still not
// hand it out a second time while it waits for that delivery's ack.
import { checkEqual, roundTrip, run, uniq } from "./lib.mjs";
import { Deliveries, checkMeta, connectAs, publish, subscribe, waitDrained, WATCHDOG_MS } from "./queue-lib.mjs";

run(async () => {
  const topic = uniq("once");
  const event = uniq("job");
  const clientId = uniq("quick");
  const inbox = new Deliveries(event, "ack");
  const worker = await connectAs("worker connects", clientId, inbox);
  const pub = await connectAs("publisher connects", undefined);
  await subscribe("worker subscribes", worker, { topic }, { pending: 0 });
  const n = 3;
  const acks = [];
  for (let i = 1; i <= n; i++) {
    acks.push(await publish(`publish ${i}`, pub, topic, event, { i }, { offset: i }));
    const d = await inbox.until(`delivery ${i}`, (items) => items.some((x) => x.meta.offset === i))
      .then((items) => items.find((x) => x.meta.offset === i));
    checkMeta(`delivery ${i}`, d.meta, { topic, id: acks[i - 1].id, offset: i, attempt: 1 });
    await waitDrained(`message ${i} settled by the ack`, topic, `id:${clientId}`);
  }
  // The dispatcher hands out in order: anything it claimed before the marker arrives first.
  const marker = await publish("marker", pub, topic, event, { marker: true }, { offset: n + 1 });
  await inbox.until("marker delivery", (items) => items.some((x) => x.meta.id === marker.id));
  await roundTrip("round trip", worker);
  const before = inbox.items.slice(0, inbox.items.findIndex((x) => x.meta.id === marker.id));
  checkEqual(
    "each acked message delivered once (offset, attempt)",
    before.map((d) => [d.meta.offset, d.meta.attempt]),
    Array.from({ length: n }, (_, i) => [i + 1, 1]),
  );
}, { timeoutMs: WATCHDOG_MS, checks: 44 });
