// Connection State Recovery across nodes: two `tidings serve --redis … --recovery` nodes share
// the recovery log in Redis. socket.io-client recovers on whichever node its reconnect lands:
//
// 1. A connection to node 0 drops; events are broadcast on node 1 meanwhile; the client's
//    reconnect goes to node 1 (as a load balancer may send it: here by pointing the client's
//    Manager at node 1) → `recovered`, the same id, every missed event in order.
// 2. A reconnect lands on node 1 while node 0 still holds the old connection (node 0 has not
//    noticed it is gone): node 1 has node 0 release the session → recovered, and node 0 closes
//    the old socket. The second connection carries the first one's pid and offset, which is
//    what socket.io-client sends when it reconnects.
//
// env TIDINGS_URLS: the two nodes' origins.
import { env } from "node:process";
import { io } from "socket.io-client";
import { check, checkEqual, fail, must, once, record, run, track, uniq } from "./lib.mjs";
import { broadcast, dropConnection, join, offsetOf, reconnect, waitCount } from "./recovery-lib.mjs";

const urls = (env.TIDINGS_URLS ?? "").split(",").filter(Boolean);
if (urls.length !== 2) fail("setup", `env TIDINGS_URLS needs 2 origins, got ${JSON.stringify(urls)}`);

function socketTo(url) {
  return track(io(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false }));
}

async function open(name, socket) {
  const up = once(socket, "connect");
  socket.connect();
  await must(name, up);
  return socket;
}

async function dropAndMove() {
  const room = uniq("moving");
  const a = await open("move: connect a to node 0", socketTo(urls[0]));
  const b = await open("move: connect b to node 1", socketTo(urls[1]));
  await join("move: a joins", a, room);
  const news = record(a, "news");
  await broadcast("move: live event from node 1", b, room, "news", "live");
  await waitCount("move: live event arrives", a, "news", news, 1);
  const id = a.id;

  await dropConnection("move: drop a", a);
  const missed = ["m1", { n: 2 }, "m3"];
  for (const [i, data] of missed.entries()) await broadcast(`move: missed ${i}`, b, room, "news", data);

  a.io.uri = urls[1]; // the reconnect lands on the other node
  await reconnect("move: reconnect a to node 1", a);
  check("move: recovered", a.recovered === true, "true", a.recovered);
  check("move: same id", a.id === id, JSON.stringify(id), a.id);
  await waitCount("move: missed events arrive", a, "news", news, 1 + missed.length);
  checkEqual("move: every missed event, in order", news.map((args) => args[0]), ["live", ...missed]);
  const offsets = news.map(offsetOf);
  check("move: offsets increase", offsets.every((o, i) => i === 0 || o > offsets[i - 1]), "increasing", offsets);

  // The room came back on node 1: a live broadcast from node 1 reaches it.
  await broadcast("move: live after recovery", b, room, "news", "after");
  await waitCount("move: live event after recovery", a, "news", news, missed.length + 2);
  checkEqual("move: the live event", news[news.length - 1][0], "after");
  a.disconnect();
  b.disconnect();
}

async function zombieOnAnotherNode() {
  const room = uniq("zombie");
  const old = await open("zombie: connect to node 0", socketTo(urls[0]));
  old.expectDisconnect = true;
  const b = await open("zombie: connect b to node 1", socketTo(urls[1]));
  await join("zombie: old joins", old, room);
  const oldNews = record(old, "news");
  await broadcast("zombie: event before", b, room, "news", "before");
  await waitCount("zombie: event before arrives", old, "news", oldNews, 1);
  const evicted = once(old, "disconnect", 10000);
  const oldId = old.id;

  const next = socketTo(urls[1]);
  next._pid = old._pid; // what socket.io-client keeps for its reconnect
  next._lastOffset = old._lastOffset;
  const news = record(next, "news");
  await open("zombie: reconnect to node 1", next);
  check("zombie: recovered", next.recovered === true, "true", next.recovered);
  check("zombie: same id", next.id === oldId, JSON.stringify(oldId), next.id);
  const [reason] = await must("zombie: node 0 closes the old socket", evicted);
  checkEqual("zombie: the old socket was disconnected by the server", reason, "io server disconnect");
  await broadcast("zombie: event after", b, room, "news", "after");
  await waitCount("zombie: the room came along", next, "news", news, 1);
  checkEqual("zombie: only the new event", news.map((args) => args[0]), ["after"]);
  next.disconnect();
  b.disconnect();
}

run(async () => {
  await dropAndMove();
  await zombieOnAnotherNode();
}, { timeoutMs: 60000, checks: 23 });
