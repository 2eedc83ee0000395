// A Node Socket.IO 4.8 server on the unmodified `@socket.io/redis-adapter`, for the tidings library
// test crates/tidings-cluster-redis/tests/nodes.rs (requests that expect answers, both ways).
// Its client connects (socket.data = {user: "n1"}, in `lobby`); its server side answers the
// server-side event `ping` with `{from: "node", n}`, its client the event `question` with
// `{from: "node-client", n, size, echo: <Buffer n>}`. Once `serverCount()` counts the tidings
// node it prints READY; the tidings node then fetches sockets, sends `ping` with an ack,
// broadcasts `question` with acks, makes the fetched socket join `picked`, and finally sends
// the server-side event `done`. Then this server sends `ask` with an ack to the
// tidings node (`serverSideEmitWithAck`), checks that the tidings node's handler answered
// `{from: "tidings", args: [5]}`, and prints `ok: …`.
//
// env REDIS_URL: `redis://host:port` or `unix:///path/to/redis.sock`; NODE_KEY: the adapter key.
import { createServer } from "node:http";
import { env } from "node:process";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import { checkEqual, fail, must, once, poll, run, track } from "./lib.mjs";

run(
  async () => {
    const url = env.REDIS_URL ?? "";
    const pub = url.startsWith("unix://") ? createClient({ socket: { path: url.slice("unix://".length) } }) : createClient({ url });
    const sub = pub.duplicate();
    for (const c of [pub, sub]) c.on("error", (e) => fail("redis client", e));
    await Promise.all([pub.connect(), sub.connect()]);
    const httpServer = createServer();
    const nodeIo = new Server(httpServer, {
      adapter: createAdapter(pub, sub, { key: env.NODE_KEY || "socket.io", requestsTimeout: 3000 }),
    });
    nodeIo.on("ping", (n, ack) => ack({ from: "node", n }));
    const done = once(nodeIo, "done", 20000);
    nodeIo.on("connection", (socket) => {
      socket.data = { user: "n1" };
      socket.join("lobby");
    });
    await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));

    const client = track(io(`http://127.0.0.1:${httpServer.address().port}`, { transports: ["websocket"], forceNew: true, reconnection: false }));
    client.on("question", (n, bytes, ack) => ack({ from: "node-client", n, size: bytes.length, echo: Buffer.from([n]) }));
    await must("connect", once(client, "connect"));
    await poll("serverCount counts the tidings node", async () => (await nodeIo.of("/").adapter.serverCount()) === 2, { tries: 250 });
    console.log(`READY ${client.id}`);

    await must("the tidings node's `done`", done);
    // Its join of the fetched socket came before `done`, on the same connection.
    const picked = await nodeIo.local.in("picked").fetchSockets();
    checkEqual("the tidings node made the fetched socket join `picked`", picked.map((s) => s.id), [client.id]);
    const replies = await must("serverSideEmitWithAck to the tidings node", nodeIo.serverSideEmitWithAck("ask", 5));
    checkEqual("the tidings node's answer", replies, [{ from: "tidings", args: [5] }]);

    // Closing the server would disconnect the client: it leaves first.
    client.disconnect();
    nodeIo.close();
    await Promise.allSettled([pub.quit(), sub.quit()]);
  },
  { timeoutMs: 30000, checks: 3 },
);
