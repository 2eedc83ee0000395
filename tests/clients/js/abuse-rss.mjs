// Measures a tidings server's RSS around issue 19's two abuses (not a test: a measurement for
// BENCHMARKS.md, run by scripts/bench-abuse-rss). One connection opens NAMESPACES namespaces,
// then closes; one socket joins ROOMS rooms, then closes. Prints one JSON line with the
// server's VmRSS (KiB) before, at the peak and SETTLE_MS after each close.
// env: TIDINGS_URL, SERVER_PID, NAMESPACES (default 20000), ROOMS (default 200000), SETTLE_MS
// (default 3000).
import { readFileSync } from "node:fs";
import { env, exit, stdout } from "node:process";
import { Manager, io } from "socket.io-client";

const URL = env.TIDINGS_URL.replace(/\/+$/, "");
const PID = env.SERVER_PID;
const NAMESPACES = Number(env.NAMESPACES ?? 20000);
const ROOMS = Number(env.ROOMS ?? 200000);
const SETTLE_MS = Number(env.SETTLE_MS ?? 3000);
const BATCH = 500;

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${PID}/status`, "utf8"))[1]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stats = async () => (await fetch(`${URL}/v1/stats`)).json();

/** Resolves true once connected, false when refused. */
function connected(socket) {
  return new Promise((resolve) => {
    socket.once("connect", () => resolve(true));
    socket.once("connect_error", () => resolve(false));
    socket.connect();
  });
}

const out = { namespaces: NAMESPACES, rooms: ROOMS };
out.before = rss();

// Abuse 1: one connection, NAMESPACES namespaces.
const manager = new Manager(URL, { transports: ["websocket"], reconnection: false, autoConnect: false });
const sockets = [];
for (let i = 0; i < NAMESPACES; i += BATCH) {
  const batch = [];
  for (let j = i; j < Math.min(i + BATCH, NAMESPACES); j++) {
    const s = manager.socket(`/abuse-${j}`);
    sockets.push(s);
    batch.push(connected(s));
  }
  for (const ok of await Promise.all(batch)) if (!ok) out.namespacesRefused = (out.namespacesRefused ?? 0) + 1;
}
out.namespacesOpen = (await stats()).namespaces;
out.namespacesPeak = rss();
for (const s of sockets) s.disconnect();
for (let i = 0; i < 500 && (await stats()).namespaces > 1; i++) await sleep(20);
out.namespacesAfterClose = (await stats()).namespaces;
await sleep(SETTLE_MS);
out.namespacesSettled = rss();

// Abuse 2: one socket, ROOMS rooms.
const socket = io(URL, { transports: ["websocket"], reconnection: false, forceNew: true, autoConnect: false });
if (!(await connected(socket))) throw new Error("could not connect to /");
let refused = 0;
for (let i = 0; i < ROOMS; i += BATCH) {
  const acks = [];
  for (let j = i; j < Math.min(i + BATCH, ROOMS); j++) acks.push(socket.timeout(10000).emitWithAck("join", { room: `room-${j}` }));
  for (const a of await Promise.all(acks)) if (!a?.ok) refused += 1;
}
out.roomsRefused = refused;
out.roomsPeak = rss();
socket.disconnect();
await sleep(SETTLE_MS);
out.roomsSettled = rss();

stdout.write(`${JSON.stringify(out)}\n`);
exit(0);
