// A Node service with the unmodified `@socket.io/redis-emitter` (and `redis`) drives every
// emitter operation against two `tidings serve --redis` nodes; socket.io-client clients on both
// nodes check what arrives: emit to the namespace, to rooms, `except`, to another namespace,
// binary, socketsJoin, socketsLeave, disconnectSockets (with and without close). Garbage on the
// emitter's channels changes nothing for the clients.
//
// env TIDINGS_URLS: the two nodes' origins, comma-separated; REDIS_SOCKET: the unix socket of
// their redis-server.
import { env } from "node:process";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { io } from "socket.io-client";
import { check, checkEqual, emitAck, fail, must, once, parserOption, recordAll, run, track, uniq } from "./lib.mjs";

// PARSER=msgpack (lib.mjs): the clients speak socket.io-msgpack-parser, as the nodes do.
const parser = parserOption ? { parser: parserOption } : {};

const urls = (env.TIDINGS_URLS ?? "").split(",").filter(Boolean);
if (urls.length !== 2) fail("setup", `env TIDINGS_URLS needs 2 origins, got ${JSON.stringify(urls)}`);
if (!env.REDIS_SOCKET) fail("setup", "env REDIS_SOCKET is required");

/** A socket on `url` + `nsp` (WebSocket: no sticky sessions needed), connected. */
async function connect(url, nsp = "/", manager) {
  const socket = track(
    manager ? manager.socket(nsp) : io(url + nsp, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, ...parser }),
  );
  const connected = once(socket, "connect");
  socket.connect();
  await must(`connect to ${url}${nsp}`, connected);
  return socket;
}

async function join(socket, room) {
  checkEqual(`join ${room}`, await must(`join ${room}`, emitAck(socket, "join", { room })), { ok: true });
}

/** Resolves once `socket` got event `marker`: every broadcast sent before it has arrived too. */
function marker(socket, name) {
  return must(`${name} arrives`, once(socket, name, 10000));
}

run(
  async () => {
    const redis = createClient({ socket: { path: env.REDIS_SOCKET } });
    redis.on("error", (e) => fail("redis client", e));
    await redis.connect();
    const emitter = new Emitter(redis);

    const [a, b] = urls;
    const room = uniq("room");
    const muted = uniq("muted");
    // c1 on node A in `room`; c2 on node B in `room` and `muted`; c3 on node B, no room;
    // c4 on node A in /other.
    const c1 = await connect(a);
    const c2 = await connect(b);
    const c3 = await connect(b);
    const c4 = await connect(a, "/other");
    await join(c1, room);
    await join(c2, room);
    await join(c2, muted);
    const got = [c1, c2, c3, c4].map(recordAll);

    /** Emits `done` to both namespaces and waits for it everywhere, then returns and clears
     * what each client got before it. */
    async function settle(step) {
      const done = `done-${step}`;
      const arrivals = [c1, c2, c3].map((s) => marker(s, done));
      arrivals.push(marker(c4, done));
      emitter.emit(done);
      emitter.of("/other").emit(done);
      await Promise.all(arrivals);
      return got.map((events) => events.splice(0).filter(([event]) => event !== done));
    }

    // 1. The whole namespace, on both nodes; /other is another namespace.
    emitter.emit("all", 1, { x: "y" });
    let seen = await settle("all");
    for (const i of [0, 1, 2]) checkEqual(`c${i + 1}: to the namespace`, seen[i], [["all", 1, { x: "y" }]]);
    checkEqual("c4 (/other): nothing of /", seen[3], []);

    // 2. One room (its own channel), several rooms, and except.
    emitter.to(room).emit("one-room", "hi");
    emitter.to([room, uniq("nobody")]).emit("two-rooms");
    emitter.to(room).except(muted).emit("except", 2);
    seen = await settle("rooms");
    checkEqual("c1: rooms", seen[0], [["one-room", "hi"], ["two-rooms"], ["except", 2]]);
    checkEqual("c2: rooms but not except", seen[1], [["one-room", "hi"], ["two-rooms"]]);
    checkEqual("c3: nothing for rooms it is not in", seen[2], []);

    // 3. Another namespace.
    emitter.of("/other").emit("other", true);
    seen = await settle("of");
    checkEqual("c4: of(/other)", seen[3], [["other", true]]);
    for (const i of [0, 1, 2]) checkEqual(`c${i + 1}: nothing of /other`, seen[i], []);

    // 4. Binary arguments, top level and nested.
    emitter.emit("bin", Buffer.from([1, 2, 3]), { nested: Buffer.from([255]) });
    seen = await settle("binary");
    for (const i of [0, 1, 2]) {
      const [event, top, obj] = seen[i][0] ?? [];
      checkEqual(`c${i + 1}: binary event`, event, "bin");
      check(`c${i + 1}: top-level Buffer`, Buffer.isBuffer(top) && top.equals(Buffer.from([1, 2, 3])), "<01 02 03>", top);
      check(`c${i + 1}: nested Buffer`, Buffer.isBuffer(obj?.nested) && obj.nested.equals(Buffer.from([255])), "<ff>", obj);
    }

    // 5. socketsJoin: the members of `room` join `joined`; a broadcast to it reaches them only.
    const joined = uniq("joined");
    emitter.in(room).socketsJoin(joined);
    emitter.to(joined).emit("joined");
    seen = await settle("socketsJoin");
    checkEqual("c1: joined by the emitter", seen[0], [["joined"]]);
    checkEqual("c2: joined by the emitter", seen[1], [["joined"]]);
    checkEqual("c3: not joined", seen[2], []);

    // 6. socketsLeave: all of them leave it again.
    emitter.in(joined).socketsLeave(joined);
    emitter.to(joined).emit("left");
    seen = await settle("socketsLeave");
    for (const i of [0, 1, 2]) checkEqual(`c${i + 1}: nothing after socketsLeave`, seen[i], []);

    // 7. Garbage on the emitter's channels: counted and logged by the nodes, nothing else.
    await redis.publish("socket.io#/#", Buffer.from([0xc1, 0xff, 0x00]));
    await redis.publish(`socket.io#/#${room}#`, Buffer.from("not msgpack"));
    await redis.publish("socket.io-request#/#", "{not json");
    await redis.publish("socket.io-request#/#", JSON.stringify({ type: 2, opts: { rooms: [1, {}] }, rooms: ["x"] }));
    emitter.emit("after-garbage");
    seen = await settle("garbage");
    for (const i of [0, 1, 2]) checkEqual(`c${i + 1}: served after garbage`, seen[i], [["after-garbage"]]);

    // 8. disconnectSockets(): the members of `muted` leave the namespace (io server disconnect).
    c2.expectDisconnect = true;
    const c2gone = once(c2, "disconnect", 10000);
    emitter.in(muted).disconnectSockets();
    checkEqual("c2: disconnected by the emitter", (await must("c2 disconnect", c2gone))[0], "io server disconnect");
    check("c1 still connected", c1.connected, true, c1.connected);

    // 9. disconnectSockets(true): the whole connection closes, every namespace of it.
    const closing = uniq("closing");
    const manager = io(b, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, ...parser }).io;
    const c5 = await connect(b, "/", manager);
    const c5other = await connect(b, "/other", manager);
    await join(c5, closing);
    c5.expectDisconnect = c5other.expectDisconnect = true;
    const c5gone = once(c5, "disconnect", 10000);
    const c5otherGone = once(c5other, "disconnect", 10000);
    emitter.in(closing).disconnectSockets(true);
    checkEqual("c5 (/): disconnected", (await must("c5 disconnect", c5gone))[0], "io server disconnect");
    const [otherReason] = await must("c5 (/other) disconnect", c5otherGone);
    check("c5 (/other): its connection closed too", otherReason === "transport close", "transport close", otherReason);
    check("c1 still connected", c1.connected, true, c1.connected);

    await redis.quit();
  },
  { timeoutMs: 60000, checks: 38 },
);
