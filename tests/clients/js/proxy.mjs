// Through a load balancer in front of several tidings nodes on one Redis (docs/DEPLOY.md's
// nginx and HAProxy configs, run by crates/tidings/tests/docs.rs): clients connect over
// TRANSPORT, join one room, and every client's broadcasts reach every other client, whichever
// node each landed on. A long-polling session makes many requests: a balancer that does not
// keep them on the session's node fails it ("Session ID unknown" → disconnect).
import { client, once, must, check, checkEqual, emitAck, run, uniq, TRANSPORT } from "./lib.mjs";

const CLIENTS = 6;
const ROUNDS = 10;

async function connect() {
  // Node's socket.io-client keeps the balancer's cookie (HAProxy's stickiness) only with
  // withCredentials; a browser on the same origin always does.
  const socket = client("/", { withCredentials: true });
  const connected = once(socket, "connect");
  socket.connect();
  await must("connect through the balancer", connected);
  return socket;
}

/** Resolves once `socket` has received `target` `news` events. */
function receives(socket, target) {
  let got = 0;
  let resolve;
  const done = new Promise((r) => (resolve = r));
  socket.on("news", () => {
    got += 1;
    if (got === target) resolve();
  });
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`${got} of ${target} news after 20 s`)), 20000).unref(),
  );
  return Promise.race([done, timeout]);
}

run(async () => {
  const room = uniq("room");
  const sockets = [];
  for (let i = 0; i < CLIENTS; i++) sockets.push(await connect());
  const all = sockets.map((s) => receives(s, (CLIENTS - 1) * ROUNDS));
  for (const [i, s] of sockets.entries()) {
    checkEqual(`client ${i} joins`, await must("join", emitAck(s, "join", { room })), { ok: true });
  }
  let acked = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, s] of sockets.entries()) {
      const ack = await must("broadcast", emitAck(s, "broadcast", { room, event: "news", data: { from: i, r } }));
      if (ack?.ok === true) acked += 1;
    }
  }
  checkEqual("every broadcast acked", acked, CLIENTS * ROUNDS);
  for (const [i, done] of all.entries()) {
    await must(`client ${i} receives every other client's news`, done);
  }
  if (TRANSPORT === "upgrade") {
    for (const [i, s] of sockets.entries()) {
      const engine = s.io.engine;
      const upgraded = engine.transport.name === "websocket" ? Promise.resolve() : once(engine, "upgrade", 10000);
      await must(`client ${i} upgrades to websocket`, upgraded);
      checkEqual(`client ${i} transport`, engine.transport.name, "websocket");
    }
    // After the upgrade, the sessions still work through the balancer.
    const ack = await must("broadcast after upgrade", emitAck(sockets[0], "broadcast", { room, event: "late", data: 1 }));
    check("broadcast after upgrade", ack?.ok === true, "ok:true", ack);
  }
}, { timeoutMs: 60000, checks: CLIENTS + 1 + (TRANSPORT === "upgrade" ? CLIENTS + 1 : 0) });
