// `tidings serve --recovery` restarted (SIGTERM, then a new process on the same port and data
// directory): a client that was connected recovers its id, its rooms and the events broadcast
// after the restart but before it reconnected — the session log is in SQLite.
//
// This script prints `RESTART` when the server should be restarted; the Rust test does it.
import { stdout } from "node:process";
import { check, checkEqual, client, must, once, record, run, uniq } from "./lib.mjs";
import { broadcast, connected, join, offsetOf, reconnect, waitCount } from "./recovery-lib.mjs";

run(async () => {
  const room = uniq("restart");
  const a = client("/", { transports: ["websocket"] });
  a.expectDisconnect = true;
  const aUp = connected(a);
  a.connect();
  await must("connect a", aUp);
  // b reconnects by itself once the new server listens: its `connect` says the server is back.
  const b = client("/", { transports: ["websocket"], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200, randomizationFactor: 0 });
  b.expectDisconnect = true;
  const bUp = connected(b);
  b.connect();
  await must("connect b", bUp);
  await join("a joins", a, room);
  const news = record(a, "news");
  await broadcast("event before the restart", b, room, "news", "before");
  await waitCount("event before the restart arrives", a, "news", news, 1);
  const id = a.id;

  const aGone = once(a, "disconnect", 20000);
  const bBack = once(b.io, "reconnect", 30000);
  stdout.write("RESTART\n");
  await must("the server stops: a loses its connection", aGone);
  await must("the new server accepts b again", bBack);

  const missed = ["r1", { n: 2 }];
  for (const [i, data] of missed.entries()) await broadcast(`missed ${i}`, b, room, "news", data);
  await reconnect("a reconnects to the new server", a);
  check("recovered after the restart", a.recovered === true, "true", a.recovered);
  check("same id after the restart", a.id === id, JSON.stringify(id), a.id);
  await waitCount("missed events arrive", a, "news", news, 1 + missed.length);
  checkEqual("missed events in order", news.map((args) => args[0]), ["before", ...missed]);
  const offsets = news.map(offsetOf);
  check("offsets keep growing across the restart", offsets.every((o, i) => i === 0 || o > offsets[i - 1]), "increasing", offsets);
  await broadcast("live after recovery", b, room, "news", "after");
  await waitCount("the room came back", a, "news", news, 2 + missed.length);
  a.disconnect();
  b.disconnect();
}, { timeoutMs: 60000, checks: 12 });
