// Connection State Recovery across a server restart (the recovery log in SQLite): the client
// reconnects by itself to the new server process on the same port and gets back its id, its
// rooms and the events emitted while it was away.
//
// The test harness (crates/tidings-server/tests/recovery.rs, or `tidings serve` for
// recovery_serve) restarts the server when asked on `/control` with `restart` {room, events}:
// it stops the server, starts a new one on the same data file and port, emits each of `events`
// as `news` to `room` before it accepts connections, then listens again.

import { check, checkEqual, connect, must, once, record, run, uniq } from "./lib.mjs";
import { broadcast, connectRaw, join, offsetOf, waitCount } from "./recovery-lib.mjs";

run(async () => {
  const room = uniq("restart");
  const { socket: a } = await must("connect a", connect("/", {
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    randomizationFactor: 0,
  }));
  a.expectDisconnect = true;
  const { socket: b } = await must("connect b", connect("/"));
  b.expectDisconnect = true;
  await join("a joins", a, room);
  const news = record(a, "news");
  await broadcast("event before the restart", b, room, "news", "before");
  await waitCount("event before the restart arrives", a, "news", news, 1);
  const id = a.id;

  const control = await connectRaw("connect control", "/control");
  control.expectDisconnect = true;
  const dropped = once(a, "disconnect", 10000);
  const back = once(a, "connect", 20000);
  const missed = ["r1", "r2", "r3"];
  control.emit("restart", { room, events: missed });
  const [reason] = await must("a loses its connection", dropped);
  check("a: disconnect reason", reason === "transport close", '"transport close"', reason);
  await must("a reconnects by itself", back);
  check("recovered after the restart", a.recovered === true, "true", a.recovered);
  check("same id after the restart", a.id === id, JSON.stringify(id), a.id);
  await waitCount("missed events arrive", a, "news", news, 1 + missed.length);
  checkEqual("missed events in order", news.map((args) => args[0]), ["before", ...missed]);
  const offsets = news.map(offsetOf);
  check("offsets keep growing across the restart", offsets.every((o, i) => i === 0 || o > offsets[i - 1]), "increasing", offsets);

  // The rooms came back: a live event from a client of the new server.
  const { socket: c } = await must("connect c to the new server", connect("/"));
  await broadcast("event after the restart", c, room, "news", "after");
  await waitCount("event after the restart arrives", a, "news", news, 2 + missed.length);
  checkEqual("event after the restart", news[news.length - 1][0], "after");
}, { timeoutMs: 40000, checks: 13 });
