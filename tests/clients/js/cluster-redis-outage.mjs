// Redis stopped and restarted under load, with two `tidings serve --redis` nodes: a publisher
// on node 0 publishes without pause; a durable subscriber on node 1 receives and acks. After
// some confirmed publishes this script prints `STOP` and the Rust test kills redis-server;
// publishes must then be refused with `store_unavailable` (never confirmed) — at the first
// refusal the script prints `START` and the test starts Redis again on the same port and
// files. Refused publishes are retried; every confirmed one must reach the subscriber.
//
// env TIDINGS_URLS: the two nodes' origins.
import { env, stdout } from "node:process";
import { io } from "socket.io-client";
import { asOneCheck, check, checkEqual, emitAck, fail, must, once, run, track, uniq } from "./lib.mjs";

const urls = (env.TIDINGS_URLS ?? "").split(",").filter(Boolean);
if (urls.length !== 2) fail("setup", `env TIDINGS_URLS needs 2 origins, got ${JSON.stringify(urls)}`);

const PUBLISHES = 300;
const STOP_AFTER = 100;
const MAX_ATTEMPTS = 2000; // bounded: refusals while Redis is down, at most ~20 s of them

async function connect(url, auth) {
  const socket = track(io(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, auth }));
  const connected = once(socket, "connect");
  socket.connect();
  await must(`connect to ${url}`, connected);
  return socket;
}

run(async () => {
  const topic = `outage.${uniq("t")}`;
  const sub = await connect(urls[1], { clientId: uniq("sub") });
  const received = new Set();
  let wake = () => {};
  sub.on("order", (...args) => {
    received.add(args[1].offset);
    args[args.length - 1]();
    wake();
  });
  const subAck = await must("subscribe", emitAck(sub, "subscribe", { topic }));
  check("subscribe ok", subAck?.ok === true, "ok:true", subAck);

  const publisher = await connect(urls[0]);
  const confirmed = [];
  let refused = 0;
  let attempts = 0;
  // How many publishes Redis' absence refuses varies: one check for the loop.
  await asOneCheck("publishes through the outage", async () => {
    for (let i = 0; i < PUBLISHES; ) {
      if (++attempts > MAX_ATTEMPTS) fail("bounded", `${attempts} attempts for ${PUBLISHES} publishes`);
      // A refused publish may have been stored after all (its answer was lost): the idempotency
      // key makes the retry safe.
      const ack = await must(`publish ${i}`, emitAck(publisher, "publish", { topic, event: "order", data: { i }, key: `k${i}` }, 15000));
      if (ack?.ok === true) {
        confirmed.push(ack.offset);
        i++;
        if (confirmed.length === STOP_AFTER) stdout.write("STOP\n");
      } else {
        check("a refused publish says store_unavailable", ack?.error?.code === "store_unavailable", "store_unavailable", ack);
        if (refused++ === 0) stdout.write("START\n");
        await new Promise((r) => setTimeout(r, 10)); // pacing of the retries, not a synchronisation
      }
    }
  });
  check("Redis was really stopped", refused > 0, "some refused publishes", refused);

  await must(
    "every confirmed message reaches the subscriber",
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
  checkEqual("confirmed publishes", new Set(confirmed).size, PUBLISHES);
}, { timeoutMs: 110000, checks: 4 });
