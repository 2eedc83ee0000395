// One cluster of a Node Socket.IO 4.8 server on the unmodified `@socket.io/redis-adapter` and
// two `tidings serve --redis --node-cluster` nodes on one Redis, with socket.io-client clients on
// every node: broadcasts both ways (rooms, except, binary), and the Node server's socketsJoin,
// socketsLeave and disconnectSockets reach tidings' clients.
//
// env TIDINGS_URLS: the two tidings nodes' origins, comma-separated; REDIS_SOCKET: the unix
// socket of their redis-server.
import { createServer } from "node:http";
import { env } from "node:process";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import { check, checkEqual, emitAck, fail, must, once, poll, recordAll, run, track, uniq } from "./lib.mjs";

const urls = (env.TIDINGS_URLS ?? "").split(",").filter(Boolean);
if (urls.length !== 2) fail("setup", `env TIDINGS_URLS needs 2 origins, got ${JSON.stringify(urls)}`);
if (!env.REDIS_SOCKET) fail("setup", "env REDIS_SOCKET is required");

async function connect(url) {
  const socket = track(io(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false }));
  const connected = once(socket, "connect");
  socket.connect();
  await must(`connect to ${url}`, connected);
  return socket;
}

run(
  async () => {
    // The Node server, as a Node cluster member runs it.
    const pub = createClient({ socket: { path: env.REDIS_SOCKET } });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on("error", (e) => fail("redis client", e));
    await Promise.all([pub.connect(), sub.connect()]);
    const httpServer = createServer();
    const nodeIo = new Server(httpServer, { adapter: createAdapter(pub, sub) });
    nodeIo.on("connection", (socket) => {
      socket.on("join", (room, ack) => {
        socket.join(room);
        ack({ ok: true });
      });
    });
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
    const nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;

    const room = uniq("room");
    const [a, b] = urls;
    const n1 = await connect(nodeUrl); // on the Node server, in `room`
    const t1 = await connect(a); // on tidings A, in `room`
    const t2 = await connect(b); // on tidings B, no room
    checkEqual("n1 joins", await must("n1 join", emitAck(n1, "join", room)), { ok: true });
    checkEqual("t1 joins", await must("t1 join", emitAck(t1, "join", { room })), { ok: true });
    const got = [n1, t1, t2].map(recordAll);

    /** A marker broadcast from the Node server to everyone; returns what each got before it. */
    async function settle(step) {
      const done = `done-${step}`;
      const arrivals = [n1, t1, t2].map((s) => must(`${done} on ${s.io.uri}`, once(s, done, 10000)));
      nodeIo.emit(done);
      await Promise.all(arrivals);
      return got.map((events) => events.splice(0).filter(([event]) => event !== done));
    }

    // 1. Node → tidings: a room (with binary), and except.
    nodeIo.to(room).emit("from-node", 1, Buffer.from([7, 8]));
    nodeIo.except(room).emit("not-in-room", "x");
    let seen = await settle("node-to-tidings");
    for (const [name, i] of [["n1", 0], ["t1", 1]]) {
      const [event, one, bytes] = seen[i][0] ?? [];
      checkEqual(`${name}: from the Node server`, [event, one], ["from-node", 1]);
      check(`${name}: with its Buffer`, Buffer.isBuffer(bytes) && bytes.equals(Buffer.from([7, 8])), "<07 08>", bytes);
      checkEqual(`${name}: not what excepts its room`, seen[i].length, 1);
    }
    checkEqual("t2: only what excepts the room", seen[2], [["not-in-room", "x"]]);

    // 2. tidings → Node: a tidings client broadcasts to the room through node B. Its ack can
    // come before node B's publish reaches Redis, so a marker from the Node server could
    // overtake it: wait for its arrival, then let the marker show nothing else came.
    const arrivals = [n1, t1].map((s) => must(`from-tidings on ${s.io.uri}`, once(s, "from-tidings", 10000)));
    const ack = await must("broadcast", emitAck(t2, "broadcast", { room, event: "from-tidings", data: { n: 2 } }));
    checkEqual("broadcast ack", ack?.ok, true);
    await Promise.all(arrivals);
    seen = await settle("tidings-to-node");
    checkEqual("n1: from tidings", seen[0], [["from-tidings", { n: 2 }]]);
    checkEqual("t1: from tidings", seen[1], [["from-tidings", { n: 2 }]]);
    checkEqual("t2: not in the room", seen[2], []);

    // 3. The Node server's room operations reach tidings' clients. The adapter applies them on
    // its own server when its request comes back from Redis: wait for that before emitting
    // (tidings nodes get the request before the emit, on the same connection).
    const vip = uniq("vip");
    const inVip = async () => (await nodeIo.local.in(vip).fetchSockets()).length;
    nodeIo.in(room).socketsJoin(vip);
    await poll("n1 joined vip on the Node server", async () => (await inVip()) === 1);
    nodeIo.to(vip).emit("vip");
    seen = await settle("socketsJoin");
    checkEqual("n1: joined vip", seen[0], [["vip"]]);
    checkEqual("t1: joined vip by the Node server", seen[1], [["vip"]]);
    checkEqual("t2: not", seen[2], []);
    nodeIo.in(vip).socketsLeave(vip);
    await poll("n1 left vip on the Node server", async () => (await inVip()) === 0);
    nodeIo.to(vip).emit("vip-again");
    seen = await settle("socketsLeave");
    for (const i of [0, 1, 2]) checkEqual(`client ${i}: nothing after socketsLeave`, seen[i], []);

    // 4. The Node server disconnects the room's sockets, tidings' included.
    n1.expectDisconnect = t1.expectDisconnect = true;
    const gone = [n1, t1].map((s) => must(`disconnect of ${s.io.uri}`, once(s, "disconnect", 10000)));
    nodeIo.in(room).disconnectSockets();
    const reasons = (await Promise.all(gone)).map(([reason]) => reason);
    checkEqual("n1 and t1 disconnected by the Node server", reasons, ["io server disconnect", "io server disconnect"]);
    check("t2 still connected", t2.connected, true, t2.connected);

    nodeIo.close();
    await Promise.allSettled([pub.quit(), sub.quit()]);
  },
  { timeoutMs: 60000, checks: 23 },
);
