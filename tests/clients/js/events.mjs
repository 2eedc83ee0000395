// Events and acknowledgements in both directions: exact JSON round trips, server-to-client acks
// (answered, late and never), and the client-side ack timeout.

import {
  TRANSPORT,
  check,
  checkEqual,
  checkJson,
  checkUpgraded,
  emitAck,
  emitAckArgs,
  must,
  mustConnect,
  once,
  roundTrip,
  run,
  uniq,
} from "./lib.mjs";

// One of each JSON shape; the object's key order is deliberately not sorted.
const ARGS = [
  "hello",
  1,
  1.5,
  -7,
  9007199254740991,
  { z: 1, a: 2, nested: { y: [1, { b: null, a: true }], x: "x" } },
  null,
  [1, "two", [3, [4]], {}],
  "é✓ 🚀 \"quoted\" \\ \n newline",
  "",
  true,
  false,
  {},
  [],
];

run(async () => {
  const { socket } = await mustConnect("connect", "/");

  // echo → echo-back with the very same arguments.
  const back = once(socket, "echo-back");
  socket.emit("echo", ...ARGS);
  const echoed = await must("echo-back received", back);
  checkEqual("echo-back args", echoed, ARGS);
  checkJson("echo-back JSON text (key order, number format)", echoed, ARGS);

  const none = once(socket, "echo-back");
  socket.emit("echo");
  checkEqual("echo with no args → echo-back with no args", await must("echo-back (no args)", none), []);

  // echo-ack → the ack carries the very same arguments.
  const acked = await must("echo-ack", emitAckArgs(socket, "echo-ack", ARGS));
  checkEqual("echo-ack args", acked, ARGS);
  checkJson("echo-ack JSON text", acked, ARGS);

  // Concurrent acks are matched to their own requests by ack id.
  const many = await must(
    "20 concurrent echo-acks",
    Promise.all(Array.from({ length: 20 }, (_, i) => emitAckArgs(socket, "echo-ack", [{ i }, `n${i}`]))),
  );
  checkEqual(
    "concurrent echo-acks each get their own reply",
    many,
    Array.from({ length: 20 }, (_, i) => [{ i }, `n${i}`]),
  );

  // Server → client event with ack, answered with two arguments.
  const pingEvent = uniq("ping-me");
  const seen = [];
  socket.on(pingEvent, (data, ack) => {
    seen.push(data);
    ack("pong", { x: 1 });
  });
  const data = { q: "are you there?", n: [1, 2] };
  const answered = await must("request-ack (answered)", emitAck(socket, "request-ack", { event: pingEvent, data, timeoutMs: 2000 }));
  checkEqual("request-ack: the client got the data once", seen, [data]);
  checkEqual("request-ack: reply is what the client acked", answered, { ok: true, reply: ["pong", { x: 1 }] });

  // Server → client event with ack that the client never answers in time.
  const silentEvent = uniq("silent");
  let lateAck;
  const silentSeen = once(socket, silentEvent);
  socket.on(silentEvent, (_data, ack) => {
    lateAck = ack;
  });
  const t0 = Date.now();
  const timedOut = await must(
    "request-ack (unanswered)",
    emitAck(socket, "request-ack", { event: silentEvent, data: "hello?", timeoutMs: 300 }),
  );
  const elapsed = Date.now() - t0;
  const [silentData] = await must("request-ack (unanswered): event delivered", silentSeen);
  checkEqual("request-ack (unanswered): event data", silentData, "hello?");
  check("request-ack timeout: ok is false", timedOut?.ok === false, "ok:false", timedOut);
  check("request-ack timeout: error.code", timedOut?.error?.code === "timeout", '"timeout"', timedOut?.error);
  check(
    "request-ack timeout: error.message is a non-empty string",
    typeof timedOut?.error?.message === "string" && timedOut.error.message.length > 0,
    "a non-empty string",
    timedOut?.error?.message,
  );
  check("request-ack timeout: no reply field", !("reply" in (timedOut ?? {})), "no reply", timedOut);
  check("request-ack timeout: waited about timeoutMs", elapsed >= 250 && elapsed < 4000, "250..4000 ms", elapsed);
  check("the unanswered event carried an ack callback", typeof lateAck === "function", "a function", typeof lateAck);
  // A late ack for an expired request must be ignored, and the connection must stay usable.
  lateAck("too late");
  await roundTrip("round trip after a late ack", socket);
  check("still connected after a late ack", socket.connected === true, "true", socket.connected);

  // Client-side ack timeout: the server never acks an unknown event.
  let rejection;
  try {
    const unexpected = await emitAck(socket, uniq("no-such-event"), { x: 1 }, 300);
    rejection = { resolved: unexpected };
  } catch (err) {
    rejection = err;
  }
  check("unacked event: emitWithAck rejects", rejection instanceof Error, "an Error", rejection);
  check(
    "unacked event: timeout error message",
    rejection?.message === "operation has timed out",
    '"operation has timed out"',
    rejection?.message,
  );
  await roundTrip("round trip after a client-side timeout", socket);

  await checkUpgraded("events", socket);
}, { checks: TRANSPORT === "upgrade" ? 21 : 20 });
