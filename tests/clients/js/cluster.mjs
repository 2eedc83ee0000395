// Several `tidings serve --redis` nodes sharing one Redis, driven by the unmodified
// socket.io-client: a room broadcast made on one node reaches the room's members on every
// node, in order; a durable publish on the first node reaches a subscriber on the last one;
// a subscriber that moves to another node (same clientId) gets what was published meanwhile.
//
// env TIDINGS_URLS: the nodes' origins, comma-separated (at least 3). TIDINGS_URL (lib.mjs)
// is set to the first one by the Rust test too.
import { env } from "node:process";
import { io } from "socket.io-client";
import { check, checkEqual, emitAck, fail, must, once, run, track, uniq } from "./lib.mjs";

const urls = (env.TIDINGS_URLS ?? "").split(",").filter(Boolean);
if (urls.length < 3) fail("setup", `env TIDINGS_URLS needs 3 or more origins, got ${JSON.stringify(urls)}`);

/** Connects to the node at `url` (WebSocket only: no sticky sessions needed). */
async function connect(url, auth) {
  const socket = track(
    io(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, auth }),
  );
  const connected = once(socket, "connect");
  socket.connect();
  await must(`connect to ${url}`, connected);
  return socket;
}

/** Collects every `event` on `socket`; `until(n)` resolves once n arrived. */
function collect(socket, event) {
  const got = [];
  let wake = () => {};
  socket.on(event, (...args) => {
    got.push(args);
    wake();
  });
  got.until = (n, ms = 10000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${n} ${event} after ${ms} ms`)), ms);
      const test = () => {
        if (got.length >= n) {
          clearTimeout(timer);
          resolve(got);
        }
      };
      wake = test;
      test();
    });
  return got;
}

run(async () => {
  // 1. A room with a member on every node; node 0's member broadcasts.
  const room = uniq("room");
  const members = [];
  for (const url of urls) {
    const s = await connect(url);
    members.push({ s, news: collect(s, "news") });
    checkEqual(`join on ${url}`, await must("join", emitAck(s, "join", { room })), { ok: true });
  }
  const outsider = await connect(urls[urls.length - 1]);
  const outsiderNews = collect(outsider, "news");
  const N = 100;
  for (let i = 0; i < N; i++) {
    const ack = await must("broadcast", emitAck(members[0].s, "broadcast", { room, event: "news", data: { i } }));
    check("broadcast ok", ack?.ok === true, "ok:true", ack);
    if (i === 0) {
      // `recipients` counts the sending node's sockets (none but the sender here); the other
      // nodes' members are not counted, which `cluster: true` says.
      checkEqual("broadcast ack in a cluster", ack, { ok: true, recipients: 0, cluster: true });
    }
  }
  for (const [k, m] of members.entries()) {
    if (k === 0) continue;
    const got = await must(`node ${k} receives every broadcast`, m.news.until(N));
    checkEqual(`node ${k} in order`, got.map(([d]) => d.i), [...Array(N).keys()]);
  }
  // Markers sent after the room's broadcasts, through Redis like them, arrive after anything
  // the room's broadcasts could have brought: the first news the sender and the outsider get
  // is their marker (a sender hearing its own broadcasts back, locally before their acks or
  // from the Redis channel, would get those first).
  const lounge = uniq("lounge");
  checkEqual("outsider joins another room", await must("outsider join", emitAck(outsider, "join", { room: lounge })), { ok: true });
  for (const [label, to, from] of [["the sender", room, members[1].s], ["the outsider", lounge, members[0].s]]) {
    const ack = await must(`marker for ${label}`, emitAck(from, "broadcast", { room: to, event: "news", data: { marker: to } }));
    check(`marker for ${label}: ok`, ack?.ok === true, "ok:true", ack);
  }
  const [[first]] = await must("the sender's marker", members[0].news.until(1));
  checkEqual("sender got nothing of its own", first, { marker: room });
  const [[outsiderFirst]] = await must("the outsider's marker", outsiderNews.until(1));
  checkEqual("outsider got nothing of the room", outsiderFirst, { marker: lounge });

  // 2. Durable: subscriber on the last node, publisher on the first.
  const topic = `cluster.${uniq("t")}`;
  const clientId = uniq("sub");
  const last = urls[urls.length - 1];
  let sub = await connect(last, { clientId });
  let deliveries = collect(sub, "order");
  const subAck = await must("subscribe", emitAck(sub, "subscribe", { topic }));
  check("subscribe ok", subAck?.ok === true, "ok:true", subAck);
  // The subscription is known to every node once the publisher can see it counted.
  const publisher = await connect(urls[0]);
  const offsets = [];
  for (let i = 0; i < 20; i++) {
    const ack = await must("publish", emitAck(publisher, "publish", { topic, event: "order", data: { i } }));
    check("publish ok", ack?.ok === true, "ok:true", ack);
    offsets.push(ack.offset);
  }
  let got = await must("subscriber on another node receives every publish", deliveries.until(20));
  for (const args of got) args[args.length - 1]();
  checkEqual("in offset order", got.map(([, meta]) => meta.offset), offsets);

  // 3. The subscriber moves to the middle node; what is published meanwhile arrives there.
  sub.disconnect();
  for (let i = 20; i < 30; i++) {
    const ack = await must("publish while away", emitAck(publisher, "publish", { topic, event: "order", data: { i } }));
    offsets.push(ack.offset);
  }
  sub = await connect(urls[1], { clientId });
  deliveries = collect(sub, "order");
  got = await must("backlog on the new node", deliveries.until(10));
  for (const args of got) args[args.length - 1]();
  checkEqual("backlog in order", got.map(([d]) => d.i), [...Array(10).keys()].map((k) => k + 20));
}, { timeoutMs: 60000, checks: 134 });
