// The requests of the unmodified `@socket.io/redis-adapter` that expect answers, from a Node
// Socket.IO 4.8 server beside two `tidings serve --redis --node-cluster` nodes on one Redis, with
// socket.io-client clients on every node: `serverCount()` counts the tidings nodes,
// `fetchSockets()` sees their sockets (ids, rooms, handshake, data), `allRooms()` their rooms,
// a fetched tidings socket joins, leaves and is disconnected through `RemoteSocket`, a
// broadcast with acknowledgements collects the acks of tidings' clients (binary included), and
// a tidings node is counted for an on-demand namespace exactly while it exists there.
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

async function connect(url, query) {
  const socket = track(io(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, query }));
  const connected = once(socket, "connect");
  socket.connect();
  await must(`connect to ${url}`, connected);
  return socket;
}

const byId = (sockets) => Object.fromEntries(sockets.map((s) => [s.id, s]));

run(
  async () => {
    const pub = createClient({ socket: { path: env.REDIS_SOCKET } });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on("error", (e) => fail("redis client", e));
    await Promise.all([pub.connect(), sub.connect()]);
    const httpServer = createServer();
    // A short requests timeout: a tidings node that is counted but does not answer fails the
    // checks below at once instead of after the default 5 s.
    const nodeIo = new Server(httpServer, { adapter: createAdapter(pub, sub, { requestsTimeout: 3000 }) });
    nodeIo.on("connection", (socket) => {
      socket.data = { user: "n1" };
      socket.on("join", (room, ack) => {
        socket.join(room);
        ack({ ok: true });
      });
    });
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
    const nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;

    // 1. serverCount: the Node server and both tidings nodes subscribe to the request channel.
    const adapter = nodeIo.of("/").adapter;
    await poll("serverCount counts both tidings nodes", async () => (await adapter.serverCount()) === 3, { tries: 250 });

    const room = uniq("room");
    const [a, b] = urls;
    const n1 = await connect(nodeUrl);
    const t1 = await connect(a, { app: "t1" });
    const t2 = await connect(b, { app: "t2" });
    checkEqual("n1 joins", await must("n1 join", emitAck(n1, "join", room)), { ok: true });
    checkEqual("t1 joins", await must("t1 join", emitAck(t1, "join", { room })), { ok: true });

    // 2. fetchSockets: every node's sockets, with the adapter's fields.
    const all = byId(await must("fetchSockets", nodeIo.fetchSockets()));
    checkEqual("fetchSockets: the sockets of all three nodes", [n1.id, t1.id, t2.id].map((id) => id in all), [true, true, true]);
    checkEqual("a tidings socket's rooms", [...all[t1.id].rooms].sort(), [room, t1.id].sort());
    checkEqual("a tidings socket's handshake query", [all[t1.id].handshake.query.app, all[t1.id].handshake.query.EIO], ["t1", "4"]);
    check("its handshake address and time", typeof all[t1.id].handshake.address === "string" && !Number.isNaN(Date.parse(all[t1.id].handshake.time)), "an address and a date", all[t1.id].handshake);
    checkEqual("its data (none set: Node's default)", all[t2.id].data, {});
    const inRoom = await must("fetchSockets in a room", nodeIo.in(room).fetchSockets());
    checkEqual("fetchSockets in the room: n1 and t1", inRoom.map((s) => s.id).sort(), [n1.id, t1.id].sort());
    const notInRoom = await must("fetchSockets except the room", nodeIo.except(room).fetchSockets());
    checkEqual("fetchSockets except the room: t2", notInRoom.map((s) => s.id), [t2.id]);

    // 3. allRooms: the rooms of every node.
    const rooms = await must("allRooms", adapter.allRooms());
    checkEqual("allRooms has the tidings socket's rooms", [rooms.has(room), rooms.has(t2.id)], [true, true]);

    // 4. A fetched tidings socket, joined to a room and left out of it by the Node server.
    const got = [n1, t1, t2].map(recordAll);
    async function settle(step) {
      const done = `done-${step}`;
      const arrivals = [n1, t1, t2].map((s) => must(`${done} on ${s.io.uri}`, once(s, done, 10000)));
      nodeIo.emit(done);
      await Promise.all(arrivals);
      return got.map((events) => events.splice(0).filter(([event]) => event !== done));
    }
    const remoteT2 = all[t2.id];
    const vip = uniq("vip");
    remoteT2.join(vip);
    // The request and the broadcast leave on one connection: in this order on every node.
    nodeIo.to(vip).emit("vip", 1);
    let seen = await settle("remote-join");
    checkEqual("RemoteSocket.join: t2 gets the room's broadcast", seen, [[], [], [["vip", 1]]]);
    const joined = await must("fetchSockets in vip", nodeIo.in(vip).fetchSockets());
    checkEqual("and is in the room for fetchSockets", joined.map((s) => s.id), [t2.id]);
    remoteT2.leave(vip);
    nodeIo.to(vip).emit("vip", 2);
    seen = await settle("remote-leave");
    checkEqual("RemoteSocket.leave: nothing more", seen, [[], [], []]);

    // 5. A broadcast with acknowledgements: every client's ack, tidings' included, and within
    // the timeout (so the adapter counted each tidings node's clients).
    for (const [socket, name] of [[n1, "n1"], [t1, "t1"], [t2, "t2"]]) {
      socket.on("question", (n, bytes, ack) => ack({ from: name, n, size: bytes.length, echo: name === "t1" ? Buffer.from([9, n]) : null }));
    }
    const answers = await must("emitWithAck to everyone", nodeIo.timeout(5000).emitWithAck("question", 7, Buffer.from([1, 2, 3])));
    const byName = Object.fromEntries(answers.map((x) => [x.from, x]));
    checkEqual("acks of all three clients", Object.keys(byName).sort(), ["n1", "t1", "t2"]);
    checkEqual("a tidings client's ack", [byName.t2.n, byName.t2.size], [7, 3]);
    check("binary in a tidings client's ack", Buffer.isBuffer(byName.t1.echo) && byName.t1.echo.equals(Buffer.from([9, 7])), "<09 07>", byName.t1.echo);
    const roomAnswers = await must("emitWithAck to the room", nodeIo.to(room).timeout(5000).emitWithAck("question", 1, Buffer.alloc(0)));
    checkEqual("acks of the room's clients only", roomAnswers.map((x) => x.from).sort(), ["n1", "t1"]);

    // 6. An on-demand namespace of `tidings serve`: a tidings node is counted for it while it
    // exists there (a client uses it), and no longer once its last client left.
    const chatAdapter = nodeIo.of("/chat").adapter;
    checkEqual("no tidings node counted for /chat before its use", await chatAdapter.serverCount(), 1);
    const onChat = track(io(`${a}/chat`, { transports: ["websocket"], forceNew: true, reconnection: false }));
    await must("connect to /chat on tidings A", once(onChat, "connect"));
    await poll("tidings A counted for /chat", async () => (await chatAdapter.serverCount()) === 2, { tries: 250 });
    const chatSockets = await must("fetchSockets in /chat", nodeIo.of("/chat").fetchSockets());
    checkEqual("fetchSockets in /chat: the tidings client", chatSockets.map((s) => s.id), [onChat.id]);
    onChat.disconnect();
    await poll("tidings A no longer counted for /chat", async () => (await chatAdapter.serverCount()) === 1, { tries: 250 });

    // 7. RemoteSocket.disconnect of a tidings socket.
    t2.expectDisconnect = true;
    const gone = must("t2 disconnected", once(t2, "disconnect", 10000));
    remoteT2.disconnect();
    const [reason] = await gone;
    checkEqual("RemoteSocket.disconnect", reason, "io server disconnect");
    const left = await must("fetchSockets after the disconnect", nodeIo.fetchSockets());
    checkEqual("t2 is gone from fetchSockets", left.map((s) => s.id).sort(), [n1.id, t1.id].sort());

    // Closing the server would disconnect its client: it leaves first.
    n1.disconnect();
    nodeIo.close();
    await Promise.allSettled([pub.quit(), sub.quit()]);
  },
  { timeoutMs: 60000, checks: 24 },
);
