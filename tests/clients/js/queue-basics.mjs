// Durable topics, the request side (docs/PROTOCOL.md "Durable topics"): identity rules,
// `bad_request` shapes (and that a refused request stores nothing), the publish ack and
// idempotency keys (one delivery for a duplicate), JSON fidelity of deliveries, `history`.
import { checkEqual, checkError, checkJson, check, connectRefused, emitAck, emitAckArgs, must, roundTrip, run, uniq } from "./lib.mjs";
import { Deliveries, checkMeta, connectAs, history, http, publish, range, subscribe, WATCHDOG_MS } from "./queue-lib.mjs";

run(async () => {
  // --- Identity: the clientId of the CONNECT auth payload.
  const anon = await connectAs("connect without clientId", undefined);
  const topic = uniq("basics");
  for (const [event, payload] of [
    ["subscribe", { topic }],
    ["subscribe", { topic, group: "drivers" }],
    ["unsubscribe", { topic }],
  ]) {
    const ack = await must(`${event} without identity`, emitAck(anon, event, payload));
    checkError(`${event} ${JSON.stringify(payload)} without identity`, ack, "identity_required");
  }
  const badIds = [7, "", "a\u0001b", "x".repeat(201), "é".repeat(101), { id: "x" }, true, ["a"]];
  for (const bad of badIds) {
    const err = await connectRefused(`clientId ${JSON.stringify(bad).slice(0, 20)}`, "/", { auth: { clientId: bad } });
    check(`clientId ${JSON.stringify(bad).slice(0, 20)}: connect_error message`, err?.message === "invalid clientId", '"invalid clientId"', err?.message);
  }
  // The limits are inclusive: 200 bytes (here 100 two-byte characters) is a valid clientId.
  const longId = await connectAs("clientId of 200 bytes", "é".repeat(100));
  await subscribe("subscribe with a 200-byte clientId", longId, { topic: uniq("long-id") }, { pending: 0 });

  // --- bad_request shapes: nothing is stored for a refused request.
  const me = await connectAs("connect with clientId", uniq("basics-client"));
  const refused = uniq("refused");
  const badTopics = [undefined, 123, "", "a..b", ".a", "a.", "bad topic", "x/y", "ü", "t".repeat(201), null, ["t"]];
  const cases = [];
  for (const t of badTopics) {
    for (const event of ["subscribe", "unsubscribe", "history"]) cases.push([event, { topic: t }, `topic ${JSON.stringify(t)}`]);
    cases.push(["publish", { topic: t, event: "e", data: 1 }, `topic ${JSON.stringify(t)}`]);
  }
  for (const from of ["latest", 0, -1, 1.5, "1", true, {}]) {
    cases.push(["subscribe", { topic: refused, from }, `from ${JSON.stringify(from)}`]);
  }
  for (const group of ["", 5, "g".repeat(257), {}]) {
    cases.push(["subscribe", { topic: refused, group }, `group ${JSON.stringify(group).slice(0, 12)}`]);
  }
  const reserved = ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];
  for (const event of [...reserved, undefined, "", 5, "e".repeat(257)]) {
    cases.push(["publish", { topic: refused, event, data: 1 }, `event ${JSON.stringify(event)?.slice(0, 12)}`]);
  }
  for (const key of ["", 5, "k".repeat(257)]) {
    cases.push(["publish", { topic: refused, event: "e", data: 1, key }, `key ${JSON.stringify(key).slice(0, 12)}`]);
  }
  for (const [from, limit] of [["x", undefined], [-1, undefined], [undefined, 0], [undefined, 1001], [undefined, "10"], [undefined, 2.5]]) {
    cases.push(["history", { topic: refused, from, limit }, `from ${from} limit ${limit}`]);
  }
  for (const [event, payload, label] of cases) {
    const ack = await must(`${event} ${label}`, emitAck(me, event, payload));
    checkError(`${event} ${label}`, ack, "bad_request");
  }
  // Payloads that are not objects.
  for (const event of ["subscribe", "unsubscribe", "publish", "history"]) {
    for (const args of [[], ["a string"], [[1, 2]], [null], [42]]) {
      const [ack] = await must(`${event} ${JSON.stringify(args)}`, emitAckArgs(me, event, args));
      checkError(`${event} with args ${JSON.stringify(args)}`, ack, "bad_request");
    }
  }
  // (Binary inside `data` is kept: queue-binary.mjs.)
  // Nothing above created the topic or stored a message.
  checkEqual("history of the refused topic", await history("history of the refused topic", me, { topic: refused }), []);
  const missing = await http("GET the refused topic", "GET", `/v1/topics/${refused}`);
  check("GET the refused topic: 404", missing.status === 404, "404", missing);
  check("GET the refused topic: not_found", missing.body?.error?.code === "not_found", '"not_found"', missing.body);

  // --- publish ack, idempotency keys, and what a subscriber receives.
  const t2 = uniq("publish");
  const ev = uniq("ev");
  const inbox = new Deliveries(ev, "ack");
  const subClient = await connectAs("subscriber connects", uniq("sub"), inbox);
  const subAck = await subscribe("subscribe", subClient, { topic: t2 }, { pending: 0 });
  checkJson("subscribe ack (exact)", subAck, { ok: true, topic: t2, group: null, pending: 0 });
  await subscribe("subscribe again (idempotent)", subClient, { topic: t2 }, { pending: 0 });
  const since = Date.now();
  const key = uniq("key");
  const first = await publish("publish with key", anon, t2, ev, { n: 1 }, { key, offset: 1, duplicate: false });
  const again = await publish("publish with the same key", anon, t2, ev, { n: "other" }, { key, offset: 1, id: first.id, duplicate: true });
  const fromOther = await publish("same key from another client", me, t2, ev, { n: "third" }, { key, offset: 1, id: first.id, duplicate: true });
  check("duplicates return the first id", again.id === first.id && fromOther.id === first.id, first.id, [again.id, fromOther.id]);
  // JSON fidelity: key order, ints vs floats, unicode, null, nesting, non-object data.
  const payloads = [
    { z: 1, a: [1, 2.5, -0.125, "é✓😀", null, true, false], m: { nested: { deep: [] } }, big: 9007199254740991 },
    "just a string",
    42,
    [1, "two", { three: 3 }],
    null,
  ];
  const acks = [];
  for (const [i, data] of payloads.entries()) {
    acks.push(await publish(`publish payload ${i}`, anon, t2, ev, data, { offset: i + 2 }));
  }
  const ids = new Set([first.id, ...acks.map((a) => a.id)]);
  check("message ids are distinct", ids.size === payloads.length + 1, String(payloads.length + 1), ids.size);
  // The last publish is the marker: deliveries come in offset order, so once it has arrived
  // (and a round trip later) a second delivery of the duplicate would have arrived before it.
  await inbox.until("all deliveries", (items) => items.some((d) => d.meta?.offset === payloads.length + 1));
  await roundTrip("subscriber round trip", subClient);
  checkEqual("one delivery per stored message, in offset order", inbox.items.map((d) => d.meta.offset), range(1, payloads.length + 1));
  checkEqual("the duplicate's data was not stored", inbox.items[0].data, { n: 1 });
  checkMeta("delivery 1", inbox.items[0].meta, { topic: t2, id: first.id, offset: 1, attempt: 1, publishedAfter: since });
  for (const [i, data] of payloads.entries()) {
    const d = inbox.items[i + 1];
    checkEqual(`delivery ${i + 2}: args are (data, meta)`, d.args.length, 2);
    checkJson(`delivery ${i + 2}: data (exact JSON)`, d.data, data);
    checkMeta(`delivery ${i + 2}`, d.meta, { topic: t2, id: acks[i].id, offset: i + 2, attempt: 1, publishedAfter: since });
  }
  // A message with no `data` field delivers null.
  {
    const ack = await must("publish without data", emitAck(anon, "publish", { topic: t2, event: ev }));
    check("publish without data: ok", ack?.ok === true && ack.offset === payloads.length + 2, `ok at offset ${payloads.length + 2}`, ack);
    const d = await inbox.until("delivery without data", (items) => items.length === payloads.length + 2).then((items) => items.at(-1));
    checkEqual("delivery without data: data is null", d.data, null);
  }

  // --- history {from, limit}: retained messages, oldest first, identity not needed.
  const h = uniq("history");
  const hAcks = [];
  for (const i of range(1, 5)) hAcks.push(await publish(`history publish ${i}`, anon, h, "h-event", { i }, { offset: i }));
  const all = await history("history all", anon, { topic: h });
  checkEqual("history all: offsets", all.map((m) => m.offset), range(1, 5));
  checkEqual("history all: ids", all.map((m) => m.id), hAcks.map((a) => a.id));
  checkEqual("history all: events", all.map((m) => m.event), Array(5).fill("h-event"));
  checkEqual("history all: data", all.map((m) => m.data), range(1, 5).map((i) => ({ i })));
  check(
    "history all: publishedAt ascending integers",
    all.every((m, i) => Number.isInteger(m.publishedAt) && (i === 0 || m.publishedAt >= all[i - 1].publishedAt)),
    "non-decreasing integers",
    all.map((m) => m.publishedAt),
  );
  checkEqual("history from 2 limit 2", (await history("history from 2 limit 2", anon, { topic: h, from: 2, limit: 2 })).map((m) => m.offset), [2, 3]);
  checkEqual("history from 5", (await history("history from 5", anon, { topic: h, from: 5 })).map((m) => m.offset), [5]);
  checkEqual("history from 6", await history("history from 6", anon, { topic: h, from: 6 }), []);
  checkEqual("history limit 1", (await history("history limit 1", anon, { topic: h, limit: 1 })).map((m) => m.offset), [1]);
  checkEqual("history limit 1000", (await history("history limit 1000", anon, { topic: h, limit: 1000 })).map((m) => m.offset), range(1, 5));
  checkEqual("history from 0", (await history("history from 0", anon, { topic: h, from: 0 })).map((m) => m.offset), range(1, 5));
  checkEqual("history of an unknown topic", await history("history unknown", anon, { topic: uniq("nobody") }), []);
}, { timeoutMs: WATCHDOG_MS, checks: 488 });
