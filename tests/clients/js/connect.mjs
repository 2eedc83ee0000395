// Connecting: auth payloads, namespaces (static, dynamic, multiplexed), refusals with their
// messages and data, and both directions of disconnect.

import { Manager } from "socket.io-client";
import {
  TRANSPORT,
  URL,
  check,
  checkEqual,
  checkJson,
  checkUpgraded,
  clientOptions,
  connectRefused,
  emitAck,
  fail,
  must,
  mustConnect,
  once,
  open,
  poll,
  roundTrip,
  run,
  uniq,
} from "./lib.mjs";

async function roomSockets(name, socket, room) {
  const ack = await must(name, emitAck(socket, "room-sockets", { room }));
  check(`${name}: ok`, ack?.ok === true, "ok:true", ack);
  return ack.sids;
}

run(async () => {
  // Auth payload comes back verbatim, key order included.
  const auth = { token: "abc", n: 1 };
  const { socket: a, welcome: wa } = await mustConnect("connect / with auth", "/", { auth });
  check("welcome.sid is the client's socket.id", wa?.sid === a.id, JSON.stringify(a.id), wa?.sid);
  check("welcome.nsp on /", wa?.nsp === "/", '"/"', wa?.nsp);
  checkEqual("welcome.auth equals the auth sent", wa?.auth, auth);
  checkJson("welcome.auth keeps key order", wa?.auth, auth);
  checkJson("welcome keys are sid, nsp, auth", Object.keys(wa ?? {}), ["sid", "nsp", "auth"]);
  await checkUpgraded("connect / with auth", a);

  const { socket: b, welcome: wb } = await mustConnect("connect / without auth", "/");
  checkEqual("welcome.auth is {} without auth", wb?.auth, {});
  check("two clients get distinct sids", a.id !== b.id, "distinct sids", [a.id, b.id]);

  // Static and dynamic namespaces.
  const { socket: c, welcome: wc } = await mustConnect("connect /custom", "/custom");
  check("welcome.nsp on /custom", wc?.nsp === "/custom", '"/custom"', wc?.nsp);
  check("welcome.sid on /custom is socket.id", wc?.sid === c.id, JSON.stringify(c.id), wc?.sid);
  await roundTrip("ack round trip on /custom", c);

  const { socket: d, welcome: wd } = await mustConnect("connect /dyn-abc", "/dyn-abc");
  check("welcome.nsp on /dyn-abc", wd?.nsp === "/dyn-abc", '"/dyn-abc"', wd?.nsp);
  check("welcome.sid on /dyn-abc is socket.id", wd?.sid === d.id, JSON.stringify(d.id), wd?.sid);
  await roundTrip("ack round trip on /dyn-abc", d);

  // Two namespaces multiplexed over one Engine.IO connection: each gets its own sid.
  const manager = new Manager(URL, { ...clientOptions(), reconnection: false, autoConnect: false });
  const { socket: m1, welcome: wm1 } = await must("multiplexed /", open(manager.socket("/")));
  const { socket: m2, welcome: wm2 } = await must("multiplexed /custom", open(manager.socket("/custom", { auth: { k: "v" } })));
  check("multiplexed sockets share one engine", m1.io.engine === m2.io.engine, "one engine", "two");
  check("multiplexed: welcome.nsp on /", wm1?.nsp === "/", '"/"', wm1?.nsp);
  check("multiplexed: welcome.nsp on /custom", wm2?.nsp === "/custom", '"/custom"', wm2?.nsp);
  checkEqual("multiplexed: per-namespace auth", wm2?.auth, { k: "v" });
  check("multiplexed: sids differ per namespace", m1.id !== m2.id, "distinct sids", [m1.id, m2.id]);
  await roundTrip("multiplexed: round trip on /", m1);
  await roundTrip("multiplexed: round trip on /custom", m2);

  // Refusals.
  const nope = await connectRefused("connect /nope", "/nope");
  check("/nope: connect_error message", nope?.message === "Invalid namespace", '"Invalid namespace"', nope?.message);

  for (const [label, opts] of [
    ["without auth", {}],
    ["with a wrong token", { auth: { token: "wrong" } }],
  ]) {
    const err = await connectRefused(`connect /secure ${label}`, "/secure", opts);
    check(`/secure ${label}: message`, err?.message === "unauthorized", '"unauthorized"', err?.message);
    checkEqual(`/secure ${label}: data`, err?.data, { reason: "bad token" });
  }

  const { socket: s, welcome: ws } = await mustConnect("connect /secure with the token", "/secure", {
    auth: { token: "let-me-in" },
  });
  check("/secure: connected", s.connected === true, "connected", s.connected);
  check("/secure: welcome.nsp", ws?.nsp === "/secure", '"/secure"', ws?.nsp);
  checkEqual("/secure: welcome.auth", ws?.auth, { token: "let-me-in" });

  // Server-side disconnect.
  d.expectDisconnect = true;
  const gone = once(d, "disconnect");
  d.emit("disconnect-me");
  const [reason] = await must("disconnect-me: disconnect event", gone);
  check("disconnect-me: reason", reason === "io server disconnect", '"io server disconnect"', reason);
  check("disconnect-me: socket no longer connected", d.connected === false, "false", d.connected);

  // Client-side disconnect of one multiplexed namespace: the DISCONNECT packet and a later
  // packet on the same connection are handled in order, so after m2's round trip the server
  // has removed m1.
  const room = uniq("leavers");
  for (const [label, sock] of [["b", b], ["m1", m1], ["a", a]]) {
    const ack = await must(`join ${room} (${label})`, emitAck(sock, "join", { room }));
    check(`join ${room} (${label}): ok`, ack?.ok === true, "ok:true", ack);
  }
  checkEqual("room-sockets lists all three", await roomSockets("room-sockets before", b, room), [a.id, b.id, m1.id].sort());
  m1.disconnect();
  check("m1.disconnect(): m1 disconnected", m1.connected === false, "false", m1.connected);
  check("m1.disconnect(): engine kept open for /custom", m2.connected === true, "true", m2.connected);
  await roundTrip("round trip on /custom after leaving /", m2);
  checkEqual("room-sockets after m1.disconnect()", await roomSockets("room-sockets after m1", b, room), [a.id, b.id].sort());

  // Client-side disconnect closing the whole connection. B cannot await anything that tells
  // it the server has seen A's close, so it polls room-sockets, bounded in count.
  const aid = a.id;
  a.disconnect();
  const sids = await poll("the server forgets a", async () => {
    const now = await roomSockets("room-sockets after a.disconnect()", b, room);
    return now.includes(aid) ? false : now;
  }, { tries: 100 });
  checkEqual("room-sockets after a.disconnect()", sids, [b.id]);
  if (!b.connected) fail("b still connected", "expected connected, actual disconnected");
}, { checks: TRANSPORT === "upgrade" ? 43 : 42 });
