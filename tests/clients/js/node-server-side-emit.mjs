// `serverSideEmit` of the unmodified `@socket.io/redis-emitter`, for the tidings library test
// crates/tidings-cluster-redis/tests/nodes.rs: sends `hello` with two arguments to `/` and
// `ping` to `/admin`, then exits. The test checks that its servers' handlers got them.
//
// env REDIS_URL: `redis://host:port` or `unix:///path/to/redis.sock`; NODE_KEY: the adapter key
// (default `socket.io`).
import { env, exit, stderr } from "node:process";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

const url = env.REDIS_URL ?? "";
const redis = url.startsWith("unix://") ? createClient({ socket: { path: url.slice("unix://".length) } }) : createClient({ url });
redis.on("error", (e) => {
  stderr.write(`redis: ${e}\n`);
  exit(1);
});
await redis.connect();
const emitter = new Emitter(redis, { key: env.NODE_KEY || "socket.io" });
emitter.serverSideEmit("hello", { n: 1 }, "two");
emitter.of("/admin").serverSideEmit("ping");
// The emitter publishes without waiting; a round trip on the same connection comes after both.
await redis.ping();
await redis.quit();
console.log("ok: sent");
