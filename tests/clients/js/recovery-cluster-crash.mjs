// Connection State Recovery when a node dies: three `tidings serve --redis … --recovery` nodes
// share the recovery log in Redis. A client on node 0 is quiet when node 0 is killed with
// SIGKILL (it never closes the session); its reconnect lands on node 2 (as a load balancer
// may send it: here by pointing the client's Manager there) while events were broadcast to
// its room on node 1 → `recovered`, the same id, every missed event in order. Then node 0 is
// restarted: it does not take the session back (the client stays connected to node 2, gets
// each event once, and node 0 counts no recovery), and its clients reach the recovered
// socket's room through the cluster.
//
// env TIDINGS_URLS: the three nodes' origins. Prints `KILL` (the test kills node 0) and
// `RESTART` (the test starts node 0 again on the same port).
import { env, stdout } from "node:process";
import { io } from "socket.io-client";
import { check, checkEqual, fail, must, once, record, run, track, uniq } from "./lib.mjs";
import { broadcast, join, offsetOf, reconnect, waitCount } from "./recovery-lib.mjs";

const urls = (env.TIDINGS_URLS ?? "").split(",").filter(Boolean);
if (urls.length !== 3) fail("setup", `env TIDINGS_URLS needs 3 origins, got ${JSON.stringify(urls)}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function socketTo(url, extra = {}) {
  return track(io(url, { transports: ["websocket"], forceNew: true, reconnection: false, autoConnect: false, ...extra }));
}

async function open(name, socket, ms) {
  const up = once(socket, "connect", ms);
  socket.connect();
  await must(name, up);
  return socket;
}

async function stats(url) {
  const res = await fetch(`${url}/v1/stats`);
  if (res.status !== 200) fail("stats", `GET ${url}/v1/stats: ${res.status}`);
  return res.json();
}

run(async () => {
  const room = uniq("node-death");
  const a = await open("connect a to node 0", socketTo(urls[0]));
  a.expectDisconnect = true;
  const b = await open("connect b to node 1", socketTo(urls[1]));
  await join("a joins on node 0", a, room);
  const news = record(a, "news");
  await broadcast("live event from node 1", b, room, "news", "live");
  await waitCount("live event arrives", a, "news", news, 1);
  const id = a.id;
  // Quiet: nothing written because of a for a while (its session was written at connect and
  // at the join).
  await sleep(1500);

  const gone = once(a, "disconnect", 20000);
  stdout.write("KILL\n");
  await must("node 0 dies: a loses its connection", gone);
  const missed = ["m1", { n: 2 }, "m3"];
  for (const [i, data] of missed.entries()) await broadcast(`missed ${i}`, b, room, "news", data);

  a.io.uri = urls[2]; // the reconnect lands on a node that never had the socket
  await reconnect("a reconnects to node 2", a);
  check("recovered on another node after kill -9", a.recovered === true, "true", a.recovered);
  check("same id on node 2", a.id === id, JSON.stringify(id), a.id);
  await waitCount("missed events arrive", a, "news", news, 1 + missed.length);
  checkEqual("missed events in order", news.map((args) => args[0]), ["live", ...missed]);
  const offsets = news.map(offsetOf);
  check("offsets increase", offsets.every((o, i) => i === 0 || o > offsets[i - 1]), "increasing", offsets);

  let disconnects = 0;
  a.on("disconnect", () => disconnects++);
  stdout.write("RESTART\n");
  // c reaches node 0 once it is back (it retries every 100 ms meanwhile).
  const c = socketTo(urls[0], { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200, randomizationFactor: 0 });
  await open("node 0 is back", c, 30000);
  await broadcast("from the restarted node 0 to the room", c, room, "news", "after-restart");
  await broadcast("from node 1 to a's own room", b, id, "news", "own-room");
  await waitCount("both arrive", a, "news", news, 3 + missed.length);
  // Once b's second broadcast arrived, a duplicate of c's (sent before it) would have too.
  checkEqual("each once, in order", news.map((args) => args[0]).slice(-2), ["after-restart", "own-room"]);
  check("a stays connected to node 2", a.connected && disconnects === 0, "connected, no disconnect", { connected: a.connected, disconnects });
  const [s0, s2] = [await stats(urls[0]), await stats(urls[2])];
  check("the restarted node 0 recovered nothing", s0.recoveryRecovered === 0, 0, s0.recoveryRecovered);
  check("node 2 counted the recovery", s2.recoveryRecovered >= 1, ">= 1", s2.recoveryRecovered);
  a.disconnect();
  b.disconnect();
  c.disconnect();
}, { timeoutMs: 90000, checks: 12 });
