// Access control of `tidings serve` with JSON Web Tokens (docs/SECURITY.md), spoken by the
// unmodified socket.io-client and Node's fetch. The Rust test (crates/tidings/tests/access.rs)
// starts the server and mints the tokens; env:
// - SCENARIO: `hs` (HS256 server: identities, permissions, cross-identity access, HTTP API,
//   refused tokens), `keys` (RS256 server: algorithm pinning), `expiry` (a token that expires
//   while connected; needs JWT_SECRET to mint it here, with the server's leeway at 0).
// - TOKENS: a JSON object of named tokens.
import { createHmac } from "node:crypto";
import { env } from "node:process";
import {
  URL, WAIT_MS, check, checkEqual, checkError, client, connectRefused, emitAck, fail, must, once, run, uniq,
} from "./lib.mjs";
import { Deliveries } from "./queue-lib.mjs";

const T = JSON.parse(env.TOKENS ?? "{}");
const SCENARIO = env.SCENARIO ?? "hs";

/** Connects a socket with `auth`; `setup` attaches listeners first. Fails on connect_error. */
function connectWith(name, auth, setup = () => {}) {
  const socket = client("/", { auth });
  setup(socket);
  return must(
    name,
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no connect within ${WAIT_MS} ms`)), WAIT_MS);
      socket.once("connect", () => {
        clearTimeout(timer);
        resolve(socket);
      });
      socket.once("connect_error", (e) => {
        clearTimeout(timer);
        reject(new Error(`connect_error: ${e.message} ${JSON.stringify(e.data)}`));
      });
      socket.connect();
    }),
  );
}

/** One HTTP request to the /v1 API: `{status, body, headers}`. */
async function api(method, path, token, body) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await must(
    `${method} ${path}`,
    fetch(URL + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(WAIT_MS),
    }),
  );
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, body: json, headers: res.headers };
}

function checkStatus(name, answer, status, code) {
  check(`${name}: status`, answer.status === status, status, answer);
  if (code !== undefined) check(`${name}: error.code`, answer.body?.error?.code === code, code, answer.body);
}

/** The subscription names of `topic` as `token` sees them through the API. */
async function subscriptionNames(name, topic, token) {
  const info = await api("GET", `/v1/topics/${topic}`, token);
  checkStatus(name, info, 200);
  return info.body.subscriptions.map((s) => s.name).sort();
}

/** Polls (bounded: 100 × 50 ms) the admin view of a subscription until `pred` holds. */
async function untilSubscription(name, topic, sub, pred) {
  let last;
  for (let i = 0; i < 100; i++) {
    const info = await api("GET", `/v1/topics/${topic}`, T.admin);
    last = info.body?.subscriptions?.find((s) => s.name === sub);
    if (last && pred(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(name, `expected the condition on ${sub} within 5 s, actual ${JSON.stringify(last)}`);
}

/** A connect refused with connect_error: checks its message and `data.code`. */
async function refused(name, auth, messagePart, code) {
  const err = await connectRefused(name, "/", { auth });
  check(`${name}: message`, typeof err.message === "string" && err.message.includes(messagePart), `a message with ${JSON.stringify(messagePart)}`, err.message);
  check(`${name}: data.code`, err.data?.code === code, code, err.data);
  check(`${name}: data.message`, typeof err.data?.message === "string" && err.data.message.length > 0, "a message", err.data);
}

/** HS256 token minted here (for the expiry scenario, so that node start-up time does not count). */
function mint(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", env.JWT_SECRET).update(head).digest("base64url")}`;
}

async function hs() {
  const topic = uniq("orders.t");
  const secret = uniq("secret.t");

  // A valid token: the identity is its `sub`; the clientId in the payload is ignored.
  const aliceD = new Deliveries("order", (item) => (item.meta.offset === 1 ? "hold" : "ack"));
  const bobD = new Deliveries("order", "ack");
  const alice = await connectWith("alice connects", { token: T.alice, clientId: "bob" }, (s) => aliceD.attach(s, "alice"));
  const sub = await must("alice subscribe", emitAck(alice, "subscribe", { topic }));
  checkEqual("alice subscribe ack", sub, { ok: true, topic, group: null, pending: 0 });
  checkEqual("identity from sub, clientId ignored", await subscriptionNames("admin sees", topic, T.admin), ["id:alice"]);
  const bob = await connectWith("bob connects", { token: T.bob }, (s) => bobD.attach(s, "bob"));
  checkEqual("bob subscribe", await must("bob subscribe", emitAck(bob, "subscribe", { topic })), { ok: true, topic, group: null, pending: 0 });

  // What the token does not allow is forbidden on the ack, and nothing happens.
  checkError("publish outside the claim", await must("publish secret", emitAck(alice, "publish", { topic: secret, event: "x", data: 1 })), "forbidden");
  checkError("subscribe outside the claim", await must("subscribe secret", emitAck(alice, "subscribe", { topic: secret })), "forbidden");
  checkError("history outside the claim", await must("history secret", emitAck(alice, "history", { topic: secret })), "forbidden");
  checkError("join outside the claim", await must("join room.b", emitAck(alice, "join", { room: "room.b" })), "forbidden");
  checkError("broadcast to a room outside the claim", await must("broadcast room.b", emitAck(alice, "broadcast", { room: "room.b", event: "x", data: 1 })), "forbidden");
  checkError("namespace-wide broadcast without admin", await must("broadcast all", emitAck(alice, "broadcast", { event: "x", data: 1 })), "forbidden");
  checkStatus("the refused publish stored nothing", await api("GET", `/v1/topics/${secret}`, T.admin), 404, "not_found");
  checkEqual("join inside the claim", await must("join room.a", emitAck(alice, "join", { room: "room.a" })), { ok: true });
  // Malformed payloads still get bad_request, not forbidden.
  checkError("bad publish payload", await must("publish without topic", emitAck(alice, "publish", { event: "x" })), "bad_request");

  // Allowed publish: each identity's own queue gets it.
  const published = await must("alice publish", emitAck(alice, "publish", { topic, event: "order", data: { n: 1 } }));
  checkEqual("publish ack", { ok: published.ok, offset: published.offset }, { ok: true, offset: 1 });
  const held = (await aliceD.next("alice delivery")).ack;
  await bobD.next("bob delivery");
  await untilSubscription("bob settled his own", topic, "id:bob", (s) => s.pending === 0);

  // A delivery can only be acked by the socket it went to: bob answers every ack id that the
  // namespace may have issued (raw Socket.IO ACK packets on his engine); alice's stays in flight.
  for (let id = 0; id < 200; id++) bob.io.engine.write(`3${id}[]`);
  checkEqual("bob still served after forged acks", await must("bob leave", emitAck(bob, "leave", { room: "none" })), { ok: true });
  const aliceSub = await untilSubscription("alice's delivery in flight", topic, "id:alice", (s) => s.inFlight >= 1);
  checkEqual("forged acks settle nothing", { pending: aliceSub.pending, inFlight: aliceSub.inFlight }, { pending: 1, inFlight: 1 });
  held();
  await untilSubscription("alice's own ack settles", topic, "id:alice", (s) => s.pending === 0);

  // The HTTP API: 401 without a valid token, 403 for other identities' queues.
  const none = await api("GET", "/v1/topics");
  checkStatus("no token", none, 401, "unauthorized");
  check("no token: WWW-Authenticate", none.headers.get("www-authenticate") === "Bearer", "Bearer", none.headers.get("www-authenticate"));
  const garbage = await api("GET", "/v1/topics", "not-a-token");
  checkStatus("garbage token", garbage, 401, "unauthorized");
  check("garbage token: invalid_token", (garbage.headers.get("www-authenticate") ?? "").includes("invalid_token"), "invalid_token", garbage.headers.get("www-authenticate"));
  checkStatus("expired token", await api("GET", "/v1/topics", T.expired), 401, "token_expired");
  checkStatus("forged token", await api("GET", "/v1/topics", T.forged), 401, "unauthorized");
  checkStatus("alg none token", await api("GET", "/v1/topics", T.none), 401, "unauthorized");
  checkStatus("openapi needs no token", await api("GET", "/v1/openapi.json"), 200);
  checkEqual("bob sees only his own queue", await subscriptionNames("bob topic info", topic, T.bob), ["id:bob"]);
  const listing = await api("GET", "/v1/topics", T.bob);
  checkStatus("bob lists topics", listing, 200);
  const listed = listing.body.topics.flatMap((t) => t.subscriptions.map((s) => s.name));
  check("bob's listing hides alice", !listed.includes("id:alice") && listed.includes("id:bob"), "id:bob only", listed);
  check("bob's listing hides topics outside his claim", listing.body.topics.every((t) => t.topic.startsWith("orders.")), "orders.* only", listing.body.topics.map((t) => t.topic));
  checkStatus("bob deletes alice's queue", await api("DELETE", `/v1/topics/${topic}/subscriptions/id:alice`, T.bob), 403, "forbidden");
  checkStatus("bob reads a topic outside his claim", await api("GET", `/v1/topics/${secret}/messages`, T.bob), 403, "forbidden");
  checkStatus("bob publishes outside his claim", await api("POST", `/v1/topics/${secret}/messages`, T.bob, { event: "x", data: 1 }), 403, "forbidden");
  checkStatus("bob publishes inside his claim", await api("POST", `/v1/topics/${topic}/messages`, T.bob, { event: "order", data: { n: 2 } }), 201);
  const history = await api("GET", `/v1/topics/${topic}/messages`, T.bob);
  checkStatus("bob reads history inside his claim", history, 200);
  checkEqual("history", history.body.messages.map((m) => m.offset), [1, 2]);
  checkEqual("admin sees every queue", await subscriptionNames("admin topic info", topic, T.admin), ["id:alice", "id:bob"]);
  checkStatus("admin deletes bob's queue", await api("DELETE", `/v1/topics/${topic}/subscriptions/id:bob`, T.admin), 200);
  checkEqual("bob's queue is gone", await subscriptionNames("admin after delete", topic, T.admin), ["id:alice"]);

  // Tokens refused at connect, each with a clear message and code.
  await refused("no auth payload", undefined, "a token is required", "unauthorized");
  await refused("clientId without a token", { clientId: "alice" }, "a token is required", "unauthorized");
  await refused("token not a string", { token: 42 }, "must be a string", "unauthorized");
  await refused("expired token", { token: T.expired }, "token expired", "token_expired");
  await refused("token not valid yet (nbf)", { token: T.nbf }, "not valid yet", "unauthorized");
  await refused("forged signature", { token: T.forged }, "signature does not match", "unauthorized");
  await refused("alg none", { token: T.none }, "algorithm", "unauthorized");
  await refused("token without sub", { token: T.nosub }, "sub", "unauthorized");
  await refused("garbage token", { token: "abc.def" }, "invalid token", "unauthorized");

  // The well-behaved clients were served throughout.
  checkEqual("alice still served", await must("alice join", emitAck(alice, "join", { room: "room.a" })), { ok: true });
  check("both still connected", alice.connected && bob.connected, "connected", [alice.connected, bob.connected]);
}

async function keys() {
  const topic = uniq("orders.k");
  const rs = await connectWith("RS256 token connects", { token: T.rs });
  checkEqual("RS256 subscribe", await must("rs subscribe", emitAck(rs, "subscribe", { topic })), { ok: true, topic, group: null, pending: 0 });
  await refused("HS256 signed with the public key", { token: T.confusion }, "not accepted (this server accepts RS256 only)", "unauthorized");
  await refused("HS256 with some secret", { token: T.hs }, "not accepted (this server accepts RS256 only)", "unauthorized");
  await refused("ES256 on an RS256 server", { token: T.es }, "not accepted (this server accepts RS256 only)", "unauthorized");
  await refused("alg none", { token: T.none }, "algorithm", "unauthorized");
  checkStatus("API refuses the confused token", await api("GET", "/v1/topics", T.confusion), 401, "unauthorized");
  checkStatus("API takes the RS256 token", await api("GET", `/v1/topics/${topic}`, T.rs), 200);
  checkEqual("RS256 client still served", await must("rs join", emitAck(rs, "join", { room: "room.a" })), { ok: true });
}

async function expiry() {
  // Permissions from the config file's [[access.rules]] (carol's token has no `tidings` claim).
  const now = Math.floor(Date.now() / 1000);
  const carol = await connectWith("carol connects", { token: mint({ sub: "carol", exp: now + 3600 }) });
  const shared = uniq("shared.x");
  checkEqual("rule grants subscribe", await must("carol subscribe", emitAck(carol, "subscribe", { topic: shared })), { ok: true, topic: shared, group: null, pending: 0 });
  checkError("rule does not grant publish", await must("carol publish", emitAck(carol, "publish", { topic: shared, event: "e", data: 1 })), "forbidden");

  // A token that expires while connected: the notice, then a server disconnect.
  const dave = client("/", { auth: { token: mint({ sub: "dave", exp: now + 3 }) } });
  dave.expectDisconnect = true;
  const notice = once(dave, "tidings:disconnecting", 10000);
  const gone = once(dave, "disconnect", 10000);
  notice.catch(() => {});
  gone.catch(() => {});
  const up = once(dave, "connect");
  dave.connect();
  await must("dave connects", up);
  const [body] = await must("expiry notice", notice);
  check("notice code", body?.code === "token_expired", "token_expired", body);
  check("notice message", typeof body?.message === "string" && body.message.length > 0, "a message", body);
  const [reason] = await must("disconnect at expiry", gone);
  checkEqual("disconnect reason", reason, "io server disconnect");
  checkEqual("carol still served", await must("carol join", emitAck(carol, "leave", { room: "x" })), { ok: true });
}

const scenarios = { hs, keys, expiry };
if (!scenarios[SCENARIO]) fail("setup", `unknown SCENARIO ${SCENARIO}`);
/** The checks each scenario runs (at least). */
const CHECKS = { hs: 92, keys: 17, expiry: 8 };
run(scenarios[SCENARIO], { timeoutMs: 40000, checks: CHECKS[SCENARIO] });
