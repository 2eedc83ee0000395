// Node death under load: a durable subscriber is connected to node 1 of three `tidings serve
// --redis` nodes while a publisher on node 0 publishes. Once deliveries flow, this script
// prints `KILL` on stdout and the Rust test kills node 1 with SIGKILL. The subscriber then
// reconnects to node 2 (as a load balancer would send it elsewhere) with the same clientId and
// must receive every confirmed message: at least once, no gaps.
//
// env TIDINGS_URLS: the nodes' origins (3); the node to kill is the second.
import { env, stdout } from "node:process";
import { io } from "socket.io-client";
import { check, checkEqual, emitAck, fail, must, once, run, track, uniq } from "./lib.mjs";

const urls = (env.TIDINGS_URLS ?? "").split(",").filter(Boolean);
if (urls.length !== 3) fail("setup", `env TIDINGS_URLS needs 3 origins, got ${JSON.stringify(urls)}`);

const PUBLISHES = 300;
const KILL_AFTER = 50;

async function connect(url, auth, expectDisconnect = false) {
  const socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, auth });
  socket.expectDisconnect = expectDisconnect;
  track(socket);
  const connected = once(socket, "connect");
  socket.connect();
  await must(`connect to ${url}`, connected);
  return socket;
}

run(async () => {
  const topic = `failover.${uniq("t")}`;
  const clientId = uniq("sub");
  const received = new Map(); // offset -> times
  let killRequested = false;
  let wake = () => {};
  const onOrder = (...args) => {
    const [, meta] = args;
    received.set(meta.offset, (received.get(meta.offset) ?? 0) + 1);
    args[args.length - 1](); // ack
    if (!killRequested && received.size >= KILL_AFTER) {
      killRequested = true;
      stdout.write("KILL\n");
    }
    wake();
  };

  const doomed = await connect(urls[1], { clientId }, true);
  doomed.on("order", onOrder);
  const subAck = await must("subscribe", emitAck(doomed, "subscribe", { topic }));
  check("subscribe ok", subAck?.ok === true, "ok:true", subAck);
  const lost = once(doomed, "disconnect", 30000);
  // The subscriber moves to node 2 as soon as node 1 is gone.
  const moved = lost.then(async ([reason]) => {
    const sub = await connect(urls[2], { clientId });
    sub.on("order", onOrder);
    return reason;
  });

  const publisher = await connect(urls[0]);
  const confirmed = [];
  const publish = async (i) => {
    const ack = await must(`publish ${i}`, emitAck(publisher, "publish", { topic, event: "order", data: { i } }));
    check(`publish ${i} ok`, ack?.ok === true, "ok:true", ack);
    confirmed.push(ack.offset);
  };
  for (let i = 0; i < PUBLISHES / 2; i++) await publish(i);
  // Half before node 1 dies, half after: deliveries in flight on the dead node included.
  const reason = await must("node 1 dies", moved);
  check("the subscriber lost its node", reason === "transport close" || reason === "transport error", "transport close", reason);
  for (let i = PUBLISHES / 2; i < PUBLISHES; i++) await publish(i);

  // Every confirmed message arrives (redelivered from the dead node's stranded deliveries).
  await must(
    "every confirmed message after the failover",
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const missing = confirmed.filter((o) => !received.has(o));
        reject(new Error(`${missing.length} of ${confirmed.length} confirmed messages never arrived: ${missing.slice(0, 10)}`));
      }, 45000);
      const test = () => {
        if (confirmed.every((o) => received.has(o))) {
          clearTimeout(timer);
          resolve();
        }
      };
      wake = test;
      test();
    }),
  );
  checkEqual("confirmed publishes", confirmed.length, PUBLISHES);
  const duplicates = [...received.values()].filter((n) => n > 1).length;
  stdout.write(`delivered ${received.size} distinct, ${duplicates} redelivered\n`);
}, { timeoutMs: 90000, checks: 303 });
