// A Node Socket.IO 4.8 server on the unmodified `@socket.io/redis-adapter`, for the tidings library
// test crates/tidings-cluster-redis/tests/nodes.rs: its client joins `lobby`, then the script
// prints READY and checks what the tidings node (with `node_cluster`) does to it:
//   the tidings node makes `lobby` join `vip`, broadcasts `news` to `vip` and sends the
//   server-side event `hello`; then makes `lobby` leave `vip`, broadcasts `late` to `vip` and
//   `marker` to everyone; then disconnects `lobby`.
// Prints `ok: …` when all of it arrived as expected.
//
// env REDIS_URL: `redis://host:port` or `unix:///path/to/redis.sock`; NODE_KEY: the adapter key.
import { createServer } from "node:http";
import { env } from "node:process";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import { checkEqual, fail, must, once, run, track } from "./lib.mjs";

run(
  async () => {
    const url = env.REDIS_URL ?? "";
    const pub = url.startsWith("unix://") ? createClient({ socket: { path: url.slice("unix://".length) } }) : createClient({ url });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on("error", (e) => fail("redis client", e));
    await Promise.all([pub.connect(), sub.connect()]);
    const httpServer = createServer();
    const nodeIo = new Server(httpServer, { adapter: createAdapter(pub, sub, { key: env.NODE_KEY || "socket.io" }) });
    const serverSide = [];
    nodeIo.on("hello", (...args) => serverSide.push(args));
    nodeIo.on("connection", (socket) => socket.join("lobby"));
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));

    const client = track(io(`http://127.0.0.1:${httpServer.address().port}`, { transports: ["websocket"], forceNew: true, reconnection: false }));
    await must("connect", once(client, "connect"));
    // The server-side join ran before `connect` reached the client.
    const got = [];
    client.onAny((event, ...args) => {
      if (event !== "marker") got.push([event, ...args]);
    });
    client.expectDisconnect = true;
    const gone = once(client, "disconnect", 15000);
    const marker = once(client, "marker", 15000);
    console.log("READY");

    await must("marker from the tidings node", marker);
    checkEqual("what the tidings node sent, in order", got, [["news", { n: 1 }]]);
    checkEqual("its server-side event", serverSide, [[1, "two"]]);
    const [reason] = await must("disconnected by the tidings node", gone);
    checkEqual("disconnect reason", reason, "io server disconnect");

    nodeIo.close();
    await Promise.allSettled([pub.quit(), sub.quit()]);
  },
  { timeoutMs: 30000, checks: 3 },
);
