// Rooms: join/leave, membership queries, room and namespace broadcasts (sender excluded),
// emit-except, room-wide acks, payload validation and namespace isolation.
//
// Proof of absence without sleeping: a client's later ack round trip cannot overtake an event
// the server emitted to it earlier on the same connection, so once every recipient has the
// event and every non-recipient has completed a round trip, anything misdelivered has arrived.
//
// Room names are unique per run and the namespace-wide checks run in a fresh dynamic namespace,
// so other scenarios sharing the server cannot disturb the recipient counts.

import {
  TRANSPORT,
  check,
  checkEqual,
  checkError,
  checkUpgraded,
  emitAck,
  must,
  mustConnect,
  once,
  record,
  roundTrip,
  run,
  uniq,
} from "./lib.mjs";

async function ok(name, socket, event, payload) {
  const ack = await must(name, emitAck(socket, event, payload));
  check(`${name}: ok`, ack?.ok === true, "ok:true", ack);
  return ack;
}

const sorted = (xs) => [...xs].sort();

async function noneReceived(name, entries) {
  for (const [label, socket] of entries) await roundTrip(`${name}: round trip with ${label}`, socket);
  for (const [label, , got] of entries) checkEqual(`${name}: ${label} received nothing`, got, []);
}

run(async () => {
  const { socket: A } = await mustConnect("connect A", "/");
  const { socket: B } = await mustConnect("connect B", "/");
  const { socket: C } = await mustConnect("connect C", "/");
  const { socket: D } = await mustConnect("connect D on /custom", "/custom");
  const r1 = uniq("r1");
  const r2 = uniq("r2");

  await ok("A joins r1", A, "join", { room: r1 });
  await ok("B joins r1", B, "join", { room: r1 });
  await ok("B joins r1 again (idempotent)", B, "join", { room: r1 });
  await ok("C joins r2", C, "join", { room: r2 });
  await ok("D on /custom joins r1", D, "join", { room: r1 });

  checkEqual("my-rooms (A)", await ok("my-rooms A", A, "my-rooms"), { ok: true, rooms: sorted([A.id, r1]) });
  checkEqual("my-rooms (C)", await ok("my-rooms C", C, "my-rooms"), { ok: true, rooms: sorted([C.id, r2]) });
  checkEqual("room-sockets r1", await ok("room-sockets r1", C, "room-sockets", { room: r1 }), { ok: true, sids: sorted([A.id, B.id]) });
  checkEqual("room-sockets r1 on /custom", (await ok("room-sockets r1 /custom", D, "room-sockets", { room: r1 })).sids, [D.id]);
  checkEqual("room-sockets of an unknown room", (await ok("room-sockets unknown", A, "room-sockets", { room: uniq("void") })).sids, []);
  checkEqual("room-sockets of a sid room", (await ok("room-sockets sid", A, "room-sockets", { room: B.id })).sids, [B.id]);

  // Room broadcast: members except the sender.
  const hiA = record(A, "hi");
  const hiC = record(C, "hi");
  const hiD = record(D, "hi");
  const hiB = once(B, "hi");
  checkEqual("broadcast to r1: ack", await ok("broadcast r1", A, "broadcast", { room: r1, event: "hi", data: { x: 1 } }), { ok: true, recipients: 1 });
  checkEqual("broadcast to r1: B receives data", await must("B receives hi", hiB), [{ x: 1 }]);
  await noneReceived("broadcast to r1", [["A (sender)", A, hiA], ["C (other room)", C, hiC], ["D (/custom)", D, hiD]]);

  // The same room name on /custom is another room.
  const customHi = [record(A, "custom-hi"), record(B, "custom-hi")];
  checkEqual("broadcast to r1 on /custom: ack", await ok("broadcast r1 /custom", D, "broadcast", { room: r1, event: "custom-hi", data: 1 }), { ok: true, recipients: 0 });
  await noneReceived("broadcast on /custom", [["A", A, customHi[0]], ["B", B, customHi[1]]]);

  // emit-except: rooms r1 ∪ r2 minus r2 → A (sender included) and B.
  const ex = uniq("ex");
  const exA = once(A, ex);
  const exB = once(B, ex);
  const exC = record(C, ex);
  const exD = record(D, ex);
  checkEqual("emit-except r1,r2 except r2: ack", await ok("emit-except", A, "emit-except", { rooms: [r1, r2], except: [r2], event: ex, data: "x" }), { ok: true });
  checkEqual("emit-except: A (sender) receives", await must("A receives", exA), ["x"]);
  checkEqual("emit-except: B receives", await must("B receives", exB), ["x"]);
  await noneReceived("emit-except", [["C (excepted)", C, exC], ["D (/custom)", D, exD]]);

  // emit-except with a socket's own sid room in `except`.
  const ex2 = uniq("ex2");
  const ex2A = once(A, ex2);
  const ex2B = record(B, ex2);
  const ex2C = once(C, ex2);
  await ok("emit-except except B's sid", B, "emit-except", { rooms: [r1, r2], except: [B.id], event: ex2, data: { n: 2 } });
  checkEqual("emit-except except sid: A receives", await must("A receives ex2", ex2A), [{ n: 2 }]);
  checkEqual("emit-except except sid: C receives", await must("C receives ex2", ex2C), [{ n: 2 }]);
  await noneReceived("emit-except except sid", [["B (excepted by sid)", B, ex2B]]);

  // room-ack: every member of r1 answers (the sender A is a member).
  const ra = uniq("ra");
  for (const s of [A, B, C]) s.on(ra, (data, ack) => ack({ me: s.id, data }));
  const raAck = await ok("room-ack r1", C, "room-ack", { room: r1, event: ra, data: 7, timeoutMs: 2000 });
  checkEqual("room-ack r1: replies", sorted((raAck.replies ?? []).map((r) => JSON.stringify(r))), sorted([A, B].map((s) => JSON.stringify({ me: s.id, data: 7 }))));

  // room-ack where B never answers: timeout with the replies that did arrive.
  const rb = uniq("rb");
  A.on(rb, (data, ack) => ack({ me: A.id }));
  const bGot = once(B, rb);
  B.on(rb, () => {});
  const rbAck = await must("room-ack with a silent member", emitAck(A, "room-ack", { room: r1, event: rb, data: null, timeoutMs: 300 }));
  await must("room-ack: B got the event", bGot);
  check("room-ack timeout: ok is false", rbAck?.ok === false, "ok:false", rbAck);
  check("room-ack timeout: error.code", rbAck?.error?.code === "timeout", '"timeout"', rbAck?.error);
  checkEqual("room-ack timeout: replies from those that answered", rbAck?.replies, [{ me: A.id }]);

  // Leave.
  await ok("B leaves r1", B, "leave", { room: r1 });
  await ok("B leaves r1 again (idempotent)", B, "leave", { room: r1 });
  checkEqual("room-sockets r1 after leave", (await ok("room-sockets after leave", C, "room-sockets", { room: r1 })).sids, [A.id]);
  checkEqual("my-rooms (B) after leave", (await ok("my-rooms B", B, "my-rooms")).rooms, [B.id]);
  const afterLeave = record(B, "after-leave");
  checkEqual("broadcast after leave: ack", await ok("broadcast after leave", A, "broadcast", { room: r1, event: "after-leave", data: 0 }), { ok: true, recipients: 0 });
  await noneReceived("broadcast after leave", [["B (left)", B, afterLeave]]);

  // Malformed payloads of the built-ins.
  for (const [label, event, payload] of [
    ["join {}", "join", {}],
    ["join {room: 5}", "join", { room: 5 }],
    ["join a string", "join", r1],
    ["join null", "join", null],
    ["leave {}", "leave", {}],
    ["leave {room: [..]}", "leave", { room: ["x"] }],
    ["broadcast without event", "broadcast", { room: r1, data: 1 }],
    ["broadcast {event: 5}", "broadcast", { event: 5, data: 1 }],
    ["broadcast {room: 7}", "broadcast", { room: 7, event: "x", data: 1 }],
    ["broadcast a string", "broadcast", "hello"],
  ]) {
    const ack = await must(label, emitAck(A, event, payload));
    checkError(label, ack, "bad_request");
  }
  checkEqual("my-rooms (A) unchanged by bad requests", (await ok("my-rooms A again", A, "my-rooms")).rooms, sorted([A.id, r1]));

  // Namespace-wide operations, in a namespace of our own.
  const nsp = `/dyn-${uniq("ns").replace(/-/g, "")}`; // letters and digits only
  const { socket: E } = await mustConnect("connect E", nsp);
  const { socket: F } = await mustConnect("connect F", nsp);
  const { socket: G } = await mustConnect("connect G", nsp);
  const all = uniq("all");
  const allE = record(E, all);
  const allA = record(A, all);
  const allF = once(F, all);
  const allG = once(G, all);
  checkEqual("namespace broadcast: ack", await ok("namespace broadcast", E, "broadcast", { event: all, data: "everyone" }), { ok: true, recipients: 2 });
  checkEqual("namespace broadcast: F receives", await must("F receives", allF), ["everyone"]);
  checkEqual("namespace broadcast: G receives", await must("G receives", allG), ["everyone"]);
  await noneReceived("namespace broadcast", [["E (sender)", E, allE], ["A (other namespace)", A, allA]]);

  const rx = uniq("rx");
  await ok("G joins rx", G, "join", { room: rx });
  const nx = uniq("nx");
  const nxE = once(E, nx);
  const nxF = once(F, nx);
  const nxG = record(G, nx);
  await ok("emit-except whole namespace except rx", E, "emit-except", { rooms: [], except: [rx], event: nx, data: 1 });
  checkEqual("emit-except namespace: E (sender) receives", await must("E receives nx", nxE), [1]);
  checkEqual("emit-except namespace: F receives", await must("F receives nx", nxF), [1]);
  await noneReceived("emit-except namespace", [["G (excepted)", G, nxG]]);

  for (const [label, s] of [["A", A], ["B", B], ["C", C], ["D", D], ["E", E]]) {
    await checkUpgraded(`rooms ${label}`, s);
  }
}, { checks: TRANSPORT === "upgrade" ? 111 : 106 });
