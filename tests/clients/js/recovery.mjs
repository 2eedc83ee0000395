// Connection State Recovery with socket.io-client's built-in support (a server started with
// recovery on and a long window): a dropped connection comes back with the same id, its rooms
// and every missed event in order; a fresh client is not recovered; a client that never got an
// event recovers too; a reconnect while the old connection still looks alive evicts it; a pid the
// server does not know gets a new session (the Rust test then checks the outcome counters).

import { check, checkEqual, client, connect, emitAck, must, once, record, roundTrip, run, uniq } from "./lib.mjs";
import { broadcast, connectRaw, dropConnection, join, offsetOf, reconnect, waitCount, waitGone } from "./recovery-lib.mjs";

async function fresh() {
  const { socket: a } = await must("fresh: connect", connect("/"));
  check("fresh: not recovered", a.recovered === false, "false", a.recovered);
  check("fresh: the CONNECT reply carried a pid", typeof a._pid === "string" && a._pid.length > 0, "a pid", a._pid);
  a.disconnect();
}

async function welcomeCarriesOffset() {
  const socket = client("/");
  const welcome = once(socket, "welcome");
  socket.connect();
  const args = await must("welcome: received", welcome);
  check("welcome: data and an offset", args.length === 2, "2 arguments", args);
  offsetOf(args);
  socket.disconnect();
}

async function missedEventsInOrder() {
  const room = uniq("news");
  const { socket: a } = await must("recover: connect a", connect("/"));
  const { socket: b } = await must("recover: connect b", connect("/"));
  await join("recover: a joins", a, room);
  await join("recover: b joins", b, room);
  const news = record(a, "news");
  const mine = record(a, "direct");
  await broadcast("recover: live event", b, room, "news", "live");
  await waitCount("recover: live event arrives", a, "news", news, 1);
  const id = a.id;

  await dropConnection("recover: drop a", a);
  await waitGone("recover: server saw a go", b, room, id);
  const missed = ["m1", "m2", { n: 3, nested: [1, 2] }, "m4", "m5"];
  for (const [i, data] of missed.entries()) {
    await broadcast(`recover: missed ${i}`, b, room, "news", data);
  }
  // To a's own room (its id): restored with the session.
  await broadcast("recover: missed direct", b, id, "direct", "to-you");
  // Binary survives the log.
  await broadcast("recover: missed binary", b, room, "news", { bin: Buffer.from([0, 1, 2, 255]) });

  await reconnect("recover: reconnect a", a);
  check("recover: recovered", a.recovered === true, "true", a.recovered);
  check("recover: same id", a.id === id, JSON.stringify(id), a.id);
  await waitCount("recover: missed events arrive", a, "news", news, 1 + missed.length + 1);
  checkEqual(
    "recover: every missed event, in order, once",
    news.map((args) => args[0]),
    ["live", ...missed, { bin: Buffer.from([0, 1, 2, 255]) }],
  );
  const offsets = news.map(offsetOf);
  check("recover: offsets increase", offsets.every((o, i) => i === 0 || o > offsets[i - 1]), "increasing", offsets);
  await waitCount("recover: direct event arrives", a, "direct", mine, 1);
  checkEqual("recover: the event to its own room", mine.map((args) => args[0]), ["to-you"]);

  // The rooms came back with the session.
  const rooms = await must("recover: my-rooms", emitAck(a, "my-rooms", {}));
  check("recover: still in the room", rooms?.rooms?.includes(room), `rooms with ${room}`, rooms);
  await broadcast("recover: live after recovery", b, room, "news", "after");
  await waitCount("recover: live event after recovery", a, "news", news, missed.length + 3);
  checkEqual("recover: live event after the replay", news[news.length - 1][0], "after");
  await roundTrip("recover: nothing else pending", a);
  check("recover: no duplicate", news.length === missed.length + 3, missed.length + 3, news.length);

  // Recovering again works: the pid stays, the offset moves on.
  await dropConnection("recover again: drop", a);
  await waitGone("recover again: server saw a go", b, room, id);
  await broadcast("recover again: missed", b, room, "news", "again");
  await reconnect("recover again: reconnect", a);
  check("recover again: recovered", a.recovered === true, "true", a.recovered);
  check("recover again: same id", a.id === id, JSON.stringify(id), a.id);
  await waitCount("recover again: missed event", a, "news", news, missed.length + 4);
  checkEqual("recover again: the missed event", news[news.length - 1][0], "again");
  a.disconnect();
  b.disconnect();
}

async function quietClient() {
  // /quiet emits nothing on connect: the client never sees an offset and reconnects with only
  // its pid. socket.io itself cannot recover such a client.
  const room = uniq("quiet");
  const a = await connectRaw("quiet: connect a", "/quiet");
  const b = await connectRaw("quiet: connect b", "/quiet");
  await join("quiet: a joins", a, room);
  const id = a.id;
  const news = record(a, "news");
  await dropConnection("quiet: drop a", a);
  await waitGone("quiet: server saw a go", b, room, id);
  await broadcast("quiet: missed 1", b, room, "news", "q1");
  await broadcast("quiet: missed 2", b, room, "news", "q2");
  await reconnect("quiet: reconnect a", a);
  check("quiet: recovered", a.recovered === true, "true", a.recovered);
  check("quiet: same id", a.id === id, JSON.stringify(id), a.id);
  await waitCount("quiet: missed events", a, "news", news, 2);
  checkEqual("quiet: missed events in order", news.map((args) => args[0]), ["q1", "q2"]);
  a.disconnect();
  b.disconnect();
}

async function zombie() {
  // The old connection is still open when the client comes back with its pid (a half-open
  // TCP connection looks like this to the server): the old one is evicted.
  const room = uniq("zombie");
  const { socket: old } = await must("zombie: connect", connect("/"));
  const { socket: b } = await must("zombie: connect b", connect("/"));
  await join("zombie: join", old, room);
  const id = old.id;
  old.expectDisconnect = true;
  const evicted = once(old, "disconnect");
  const heir = client("/");
  heir._pid = old._pid;
  heir._lastOffset = old._lastOffset;
  const news = record(heir, "news");
  const oldNews = record(old, "news");
  await reconnect("zombie: heir connects with the pid", heir);
  check("zombie: recovered", heir.recovered === true, "true", heir.recovered);
  check("zombie: same id", heir.id === id, JSON.stringify(id), heir.id);
  const [reason] = await must("zombie: old connection closed", evicted);
  check("zombie: old one told by the server", reason === "io server disconnect", '"io server disconnect"', reason);
  const members = await must("zombie: room-sockets", emitAck(b, "room-sockets", { room }));
  checkEqual("zombie: the room holds the heir once", members?.sids, [id]);
  await broadcast("zombie: event after takeover", b, room, "news", "z1");
  await waitCount("zombie: heir gets it", heir, "news", news, 1);
  checkEqual("zombie: heir's event", news.map((args) => args[0]), ["z1"]);
  check("zombie: old one got nothing", oldNews.length === 0, "0 events", oldNews);
  heir.disconnect();
  b.disconnect();
}

async function unknownSession() {
  const a = await connectRaw("unknown: connect a", "/");
  const id = a.id;
  await dropConnection("unknown: drop a", a);
  a._pid = "no-such-session"; // what a client of another server, or a forged one, would send
  await reconnect("unknown: reconnect with a pid nobody knows", a);
  check("unknown: not recovered", a.recovered === false, "false", a.recovered);
  check("unknown: a new id", a.id !== id, `not ${id}`, a.id);
  a.disconnect();
}

run(async () => {
  await fresh();
  await welcomeCarriesOffset();
  await missedEventsInOrder();
  await quietClient();
  await zombie();
  await unknownSession();
}, { timeoutMs: 30000, checks: 55 });
