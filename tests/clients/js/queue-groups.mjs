// Competing consumers and shared identities (docs/PROTOCOL.md "Deliveries"), with an ack
// timeout far longer than any wait here:
// - a group of 3 members (different clientIds): each message goes to exactly one member;
// - a member that holds unacked deliveries and is killed (its engine closed, no goodbye)
//   gives them back: they reach the other members (attempt 2), nothing is lost or doubled;
// - several sockets of one identity share its subscription: each message to one of them.
import { WAIT_MS, asOneCheck, check, checkEqual, fail, roundTrip, run, uniq } from "./lib.mjs";
import { Deliveries, checkMeta, connectAs, publish, range, setting, subscribe, waitDrained, WATCHDOG_MS } from "./queue-lib.mjs";

const ACK_TIMEOUT_MS = setting("TIDINGS_ACK_TIMEOUT_MS");

run(async () => {
  // Redeliveries within this scenario's waits must come from the kill, not the ack timeout.
  if (ACK_TIMEOUT_MS < 2 * WAIT_MS) fail("setup", `expected TIDINGS_ACK_TIMEOUT_MS >= ${2 * WAIT_MS}, actual ${ACK_TIMEOUT_MS}`);
  const topic = uniq("pickup");
  const group = "drivers";
  const event = "pickup";
  const ids = [uniq("driver-1"), uniq("driver-2"), uniq("driver-3")];
  const [victimId] = ids;
  let victimHolds = false;
  const inbox = new Deliveries(event, ({ label }) => (label === victimId && victimHolds ? "hold" : "ack"));
  const members = [];
  for (const id of ids) members.push(await connectAs(`member ${id} connects`, id, inbox));
  const pub = await connectAs("publisher connects", undefined);
  for (const [i, m] of members.entries()) {
    await subscribe(`member ${i + 1} joins ${group}`, m, { topic, group }, { pending: 0 });
  }

  // 30 messages: each to exactly one member.
  const since = Date.now();
  const published = [];
  for (const n of range(1, 30)) published.push(await publish(`publish ${n}`, pub, topic, event, { n }, { offset: n }));
  await inbox.until("30 deliveries", (items) => items.length >= 30);
  for (const m of members) await roundTrip("member round trip", m);
  checkEqual("30 deliveries, no more", inbox.items.length, 30);
  checkEqual("each message once (union = all 30)", inbox.items.map((d) => d.meta.offset).sort((a, b) => a - b), range(1, 30));
  for (const d of inbox.items) {
    checkMeta(`group delivery ${d.meta.offset}`, d.meta, { topic, id: published[d.meta.offset - 1].id, offset: d.meta.offset, attempt: 1, group, publishedAfter: since });
    checkEqual(`group delivery ${d.meta.offset}: data`, d.data, { n: d.meta.offset });
  }
  const share = ids.map((id) => inbox.items.filter((d) => d.label === id).length);
  check("the group spreads the messages over its members", share.every((n) => n > 0), "every member > 0", share);

  // The victim stops acking; publish until it holds at least two deliveries (bounded).
  victimHolds = true;
  const phase2 = [];
  // How many batches that takes is the server's choice: one check for however many.
  await asOneCheck("publishes until the victim holds two", async () => {
    for (let batch = 0; batch < 5; batch++) {
      for (let i = 0; i < 3; i++) {
        const n = 31 + phase2.length;
        phase2.push(await publish(`publish ${n}`, pub, topic, event, { n }, { offset: n }));
      }
      const total = 30 + phase2.length;
      await inbox.until(`deliveries up to ${total}`, (items) => items.length >= total);
      if (inbox.items.filter((d) => d.policy === "hold").length >= 2) break;
    }
  });
  const held = inbox.items.filter((d) => d.policy === "hold");
  check("the victim holds unacked deliveries", held.length >= 2, ">= 2", held.length);
  const heldOffsets = held.map((d) => d.meta.offset).sort((a, b) => a - b);

  // Kill the victim: close its Engine.IO connection without a Socket.IO goodbye.
  const victim = members[0];
  victim.expectDisconnect = true;
  victim.io.engine.close();
  const redelivered = (items) => items.filter((d) => d.meta.attempt === 2);
  await inbox.until("the victim's unacked messages reach the others", (items) => redelivered(items).length >= held.length);
  for (const m of members.slice(1)) await roundTrip("survivor round trip", m);
  const again = redelivered(inbox.items);
  checkEqual("redelivered exactly the held messages", again.map((d) => d.meta.offset).sort((a, b) => a - b), heldOffsets);
  await asOneCheck("each redelivery", () => {
    for (const d of again) {
      check(`redelivery ${d.meta.offset} went to a survivor`, d.label !== victimId, "not the victim", d.label);
      checkMeta(`redelivery ${d.meta.offset}`, d.meta, { topic, id: phase2[d.meta.offset - 31].id, offset: d.meta.offset, attempt: 2, group });
    }
  });
  const settled = inbox.items.filter((d) => d.policy === "ack").map((d) => d.meta.offset).sort((a, b) => a - b);
  checkEqual("every message acked exactly once", settled, range(1, 30 + phase2.length));
  await waitDrained("the group's queue drains", topic, `group:${group}`);

  // Several sockets of one identity share its subscription.
  const shared = uniq("shared");
  const t9 = uniq("shared-topic");
  const sharedInbox = new Deliveries("share", "ack");
  const s1 = await connectAs("shared identity, socket 1", shared, sharedInbox);
  const s2 = await connectAs("shared identity, socket 2", shared, sharedInbox);
  await subscribe("socket 1 subscribes", s1, { topic: t9 }, { pending: 0 });
  await subscribe("socket 2 subscribes (same identity: same subscription)", s2, { topic: t9 }, { pending: 0 });
  for (const n of range(1, 10)) await publish(`shared publish ${n}`, pub, t9, "share", { n }, { offset: n });
  await sharedInbox.until("10 shared deliveries", (items) => items.length >= 10);
  await roundTrip("socket 1 round trip", s1);
  await roundTrip("socket 2 round trip", s2);
  checkEqual("each message to one socket of the identity", sharedInbox.items.map((d) => d.meta.offset).sort((a, b) => a - b), range(1, 10));
  for (const d of sharedInbox.items) checkMeta(`shared delivery ${d.meta.offset}`, d.meta, { topic: t9, id: d.meta.id, offset: d.meta.offset, attempt: 1 });
  const bySocket = [s1, s2].map((s) => sharedInbox.items.filter((d) => d.socket === s).length);
  check("both sockets of the identity receive deliveries", bySocket.every((n) => n > 0), "both > 0", bySocket);
}, { timeoutMs: WATCHDOG_MS, checks: 438 });
