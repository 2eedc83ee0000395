// Retention gaps (docs/PROTOCOL.md "Retention and gaps"). The Rust test configures a retention
// rule of TIDINGS_GAP_MAX_MESSAGES messages for topics starting with TIDINGS_GAP_TOPIC_PREFIX,
// enforced every ~100 ms, and an ack timeout far longer than any wait here.
// - A connected subscriber that does not ack: retention removes its unsettled oldest messages
//   and it receives `tidings:gap` {topic, from, to} covering exactly those offsets (possibly in
//   several notices, when a retention pass ran between publishes); other clients get none;
// - the retained messages are delivered; `gaps` in GET /v1/topics/{t} counts the lost ones;
// - retention removing *settled* messages is silent.
import { asOneCheck, check, checkEqual, fail, roundTrip, run, uniq } from "./lib.mjs";
import {
  Deliveries, Notices, connectAs, history, publish, range, setting, settingString, subscribe, subscriptionOf,
  WATCHDOG_MS, topicInfo, waitDrained, waitFor,
} from "./queue-lib.mjs";

const MAX = setting("TIDINGS_GAP_MAX_MESSAGES");
const PREFIX = settingString("TIDINGS_GAP_TOPIC_PREFIX");

/** The offsets covered by gap notices. */
function covered(notices) {
  return notices.flatMap(([g]) => (Number.isInteger(g?.from) && Number.isInteger(g?.to) && g.from <= g.to ? range(g.from, g.to) : []));
}

run(async () => {
  const topic = `${PREFIX}${uniq("t")}`;
  const event = uniq("reading");
  const clientId = uniq("slow");
  const subKey = `id:${clientId}`;
  const lost = range(1, 2);
  const total = MAX + lost.length;
  let holding = true;
  const inbox = new Deliveries(event, () => (holding ? "hold" : "ack"));
  const gaps = new Notices("tidings:gap");
  const otherGaps = new Notices("tidings:gap");
  const slow = await connectAs("subscriber connects", clientId, inbox, gaps);
  const pub = await connectAs("publisher connects", undefined, otherGaps);
  await subscribe("subscriber subscribes", slow, { topic }, { pending: 0 });

  const acks = [];
  for (const n of range(1, total)) acks.push(await publish(`publish ${n}`, pub, topic, event, { n }, { offset: n }));
  await gaps.until("gap notices cover the lost offsets", (items) => covered(items).length >= lost.length);
  // Any deliveries the subscriber got are held; the retained ones must all arrive.
  await inbox.until("retained messages delivered", (items) => range(lost.length + 1, total).every((o) => items.some((d) => d.meta.offset === o)));
  await roundTrip("subscriber round trip", slow);
  // One notice may cover both lost offsets, or one each: one check for however many.
  await asOneCheck("gap notices are well formed", () => {
    for (const [i, [g]] of gaps.items.entries()) {
      checkEqual(`gap notice ${i + 1} keys`, Object.keys(g ?? {}).sort(), ["from", "to", "topic"]);
      check(`gap notice ${i + 1}: topic`, g.topic === topic, JSON.stringify(topic), g.topic);
      check(`gap notice ${i + 1}: from <= to`, g.from <= g.to, "from <= to", g);
    }
  });
  checkEqual("gap notices cover exactly the removed unsettled offsets, once each", covered(gaps.items).sort((a, b) => a - b), lost);
  const offsets = inbox.items.map((d) => d.meta.offset);
  checkEqual("no delivery twice", new Set(offsets).size, offsets.length);
  check("deliveries are within the published offsets", offsets.every((o) => o >= 1 && o <= total), `1..${total}`, offsets);
  check("every delivery is a first attempt", inbox.items.every((d) => d.meta.attempt === 1), "attempt 1", inbox.describe());
  await roundTrip("publisher round trip", pub);
  checkEqual("a client without the subscription gets no gap notice", otherGaps.items, []);

  const info = await topicInfo("topic info after the gap", topic);
  checkEqual("topic retains the newest messages", { head: info.head, first: info.first, retained: info.retained }, { head: total, first: lost.length + 1, retained: MAX });
  checkEqual("gaps counts the lost messages", subscriptionOf("topic info after the gap", info, subKey).gaps, lost.length);
  checkEqual("history after the gap", (await history("history after the gap", pub, { topic })).map((m) => m.offset), range(lost.length + 1, total));

  // Settle everything (late acks of removed messages are harmless), then make retention
  // remove a settled message: no notice.
  holding = false;
  for (const d of inbox.items) d.ack();
  await waitDrained("queue drains after the late acks", topic, subKey);
  const next = await publish(`publish ${total + 1}`, pub, topic, event, { n: total + 1 }, { offset: total + 1 });
  const d = await inbox.until("the next message is delivered", (items) => items.some((x) => x.meta.offset === total + 1))
    .then((items) => items.find((x) => x.meta.offset === total + 1));
  checkEqual("the next message", [d.meta.id, d.meta.offset, d.meta.attempt], [next.id, total + 1, 1]);
  await waitFor("retention removes the settled oldest message", async () => {
    const messages = await history("history after the next publish", pub, { topic });
    return messages[0]?.offset === lost.length + 2;
  });
  await roundTrip("subscriber round trip after settled removal", slow);
  checkEqual("no notice for settled messages", covered(gaps.items).sort((a, b) => a - b), lost);
  const after = subscriptionOf("topic info at the end", await topicInfo("topic info at the end", topic), subKey);
  checkEqual("gaps unchanged by settled removal", after.gaps, lost.length);
  if (gaps.items.length > lost.length) fail("gap notices", `expected at most ${lost.length} notices, actual ${gaps.items.length}`);
}, { timeoutMs: WATCHDOG_MS, checks: 67 });
