// Connection State Recovery and its window (a server started with a short
// maxDisconnectionDuration, TIDINGS_RECOVERY_WINDOW_MS): a client that comes back too late gets
// a new session; a client whose last event is older than the window (its offset is no longer in
// the log) but that comes back in time still recovers (socket.io cannot: it needs the offset in
// its packet buffer).
//
// The waits here are the durations under test (the window), not stand-ins for events.

import { check, checkEqual, connect, must, record, roundTrip, run, uniq } from "./lib.mjs";
import { broadcast, dropConnection, join, reconnect, waitCount, waitGone, windowMs } from "./recovery-lib.mjs";

const WINDOW = windowMs();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function expired() {
  const room = uniq("expired");
  const { socket: a } = await must("expired: connect a", connect("/"));
  const { socket: b } = await must("expired: connect b", connect("/"));
  await join("expired: a joins", a, room);
  const id = a.id;
  await dropConnection("expired: drop a", a);
  await waitGone("expired: server saw a go", b, room, id);
  await broadcast("expired: missed", b, room, "news", "too-late");
  const news = record(a, "news");
  await sleep(WINDOW * 2 + 200);
  await reconnect("expired: reconnect a", a);
  check("expired: not recovered", a.recovered === false, "false", a.recovered);
  check("expired: a new id", a.id !== id, `not ${id}`, a.id);
  await broadcast("expired: after", b, room, "news", "not-in-room");
  await roundTrip("expired: a has seen what the server sent", a);
  checkEqual("expired: no replay, no old rooms", news, []);
  a.disconnect();
  b.disconnect();
}

async function quietLongerThanTheWindow() {
  const room = uniq("old-offset");
  const { socket: a } = await must("old offset: connect a", connect("/"));
  const { socket: b } = await must("old offset: connect b", connect("/"));
  await join("old offset: a joins", a, room);
  const news = record(a, "news");
  await broadcast("old offset: the last event before a quiet spell", b, room, "news", "old");
  await waitCount("old offset: event arrives", a, "news", news, 1);
  const id = a.id;
  // Connected and quiet for longer than the window: that event leaves the log.
  await sleep(WINDOW * 2 + 200);
  await dropConnection("old offset: drop a", a);
  await waitGone("old offset: server saw a go", b, room, id);
  await broadcast("old offset: missed", b, room, "news", "missed");
  await reconnect("old offset: reconnect a", a);
  check("old offset: recovered", a.recovered === true, "true", a.recovered);
  check("old offset: same id", a.id === id, JSON.stringify(id), a.id);
  await waitCount("old offset: missed event", a, "news", news, 2);
  checkEqual("old offset: events", news.map((args) => args[0]), ["old", "missed"]);
  a.disconnect();
  b.disconnect();
}

run(async () => {
  await expired();
  await quietLongerThanTheWindow();
}, { timeoutMs: 30000 + WINDOW * 6, checks: 15 });
