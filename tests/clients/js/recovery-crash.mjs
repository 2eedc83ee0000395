// `tidings serve --recovery` killed with SIGKILL (no shutdown, nothing flushed on the way out)
// while a client is connected and quiet, then restarted on the same port and data directory.
//
// TIDINGS_CRASH_EXPECT=recovered (the default): the client comes back within the window and is
// recovered — same id, its room without joining again, and the events broadcast to the room
// after the restart but before it reconnected, in order, with growing offsets.
// TIDINGS_CRASH_EXPECT=expired: the client comes back after the window
// (TIDINGS_RECOVERY_WINDOW_MS) and gets a fresh session: a new id and none of the old rooms.
//
// This script prints `CRASH` when the server should be killed and restarted; the Rust test
// does it. The waits here are the durations under test (a quiet client, the window), not
// stand-ins for events.
import { env, stdout } from "node:process";
import { check, checkEqual, client, fail, must, once, record, run, uniq, URL } from "./lib.mjs";
import { broadcast, connected, join, offsetOf, reconnect, waitCount, windowMs } from "./recovery-lib.mjs";

const EXPECT = env.TIDINGS_CRASH_EXPECT || "recovered";
const QUIET_MS = 3000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The restarted server's counters (GET /v1/stats). */
async function stats() {
  const res = await fetch(`${URL}/v1/stats`);
  if (res.status !== 200) fail("stats", `GET /v1/stats: ${res.status}`);
  return res.json();
}

run(async () => {
  const room = uniq("crash");
  // a: the client under test; it reconnects when told, so that events can be sent first.
  const a = client("/");
  a.expectDisconnect = true;
  const aUp = connected(a);
  a.connect();
  await must("connect a", aUp);
  // b reconnects by itself once the new server listens: its `reconnect` says the server is back.
  const b = client("/", { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200, randomizationFactor: 0 });
  b.expectDisconnect = true;
  const bUp = connected(b);
  b.connect();
  await must("connect b", bUp);
  await join("a joins", a, room);
  const news = record(a, "news");
  await broadcast("event before the crash", b, room, "news", "before");
  await waitCount("event before the crash arrives", a, "news", news, 1);
  const id = a.id;
  // Quiet: no event, no join, nothing written because of this client for a while.
  await sleep(QUIET_MS);

  const aGone = once(a, "disconnect", 20000);
  const bBack = once(b.io, "reconnect", 30000);
  stdout.write("CRASH\n");
  await must("the server dies: a loses its connection", aGone);
  await must("the restarted server accepts b again", bBack);

  if (EXPECT === "expired") {
    await sleep(windowMs() + 1500);
    await broadcast("sent to the old room", b, room, "news", "stale");
    await reconnect("a reconnects after the window", a);
    check("not recovered after the window", a.recovered === false, "false", a.recovered);
    check("a new id after the window", a.id !== id, `not ${id}`, a.id);
    await broadcast("sent to the old room again", b, room, "news", "not-in-room");
    // A broadcast to a's own room after it: once that arrives, so would have the one before.
    await broadcast("sent to a itself", b, a.id, "news", "sync");
    await waitCount("a has seen what the server sent", a, "news", news, 2);
    checkEqual("no stale room, nothing replayed", news.map((args) => args[0]), ["before", "sync"]);
    // b recovered; a's session was found too old (expired) or already trimmed (unknown).
    const s = await stats();
    check("a's failed recovery is counted", s.recoveryExpired + s.recoveryUnknown >= 1, ">= 1", s);
    a.disconnect();
    b.disconnect();
    return;
  }

  const missed = ["m1", { n: 2 }, "m3"];
  for (const [i, data] of missed.entries()) await broadcast(`missed ${i}`, b, room, "news", data);
  await reconnect("a reconnects to the restarted server", a);
  check("recovered after kill -9", a.recovered === true, "true", a.recovered);
  check("same id after kill -9", a.id === id, JSON.stringify(id), a.id);
  await waitCount("missed events arrive", a, "news", news, 1 + missed.length);
  checkEqual("missed events in order", news.map((args) => args[0]), ["before", ...missed]);
  const offsets = news.map(offsetOf);
  check("offsets keep growing across the crash", offsets.every((o, i) => i === 0 || o > offsets[i - 1]), "increasing", offsets);
  await broadcast("live after recovery", b, room, "news", "after");
  await waitCount("the room works without joining again", a, "news", news, 2 + missed.length);
  const s = await stats();
  check("recoveries counted (a and b)", s.recoveryRecovered === 2 && s.recoveryExpired === 0 && s.recoveryUnknown === 0, "2 recovered, 0 others", s);
  a.disconnect();
  b.disconnect();
}, { timeoutMs: 60000, checks: EXPECT === "expired" ? 9 : 11 });
