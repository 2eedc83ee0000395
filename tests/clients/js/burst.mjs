// Bursts: the server emits n events back to back; all must arrive, exactly once, in order, on
// every transport (long-polling packs many packets per response, so sizes around the packet
// caps matter: 1, 16, 17, 500, and two bursts interleaved).

import { TRANSPORT, check, checkEqual, checkUpgraded, emitAck, fail, must, mustConnect, roundTrip, run, uniq } from "./lib.mjs";

const N = Number(process.env.BURST_N) || 500;

/** Collects `event` payloads; `whenCount(n)` resolves when n have arrived (bounded by `ms`). */
function collector(socket, event) {
  const got = [];
  let waiter = null;
  socket.on(event, (...args) => {
    got.push(args);
    if (waiter && got.length >= waiter.n) waiter.resolve();
  });
  const whenCount = (n, ms = 10000) =>
    new Promise((resolve, reject) => {
      if (got.length >= n) return resolve();
      const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${n} ${event} events after ${ms} ms`)), ms);
      waiter = {
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
  return { got, whenCount };
}

const expected = (n) => Array.from({ length: n }, (_, i) => [{ i }]);

function checkInOrder(name, got, n) {
  check(`${name}: count`, got.length === n, n, got.length);
  const bad = got.findIndex((args, i) => args.length !== 1 || args[0]?.i !== i);
  if (bad !== -1) fail(`${name}: order`, `expected [{i:${bad}}] at position ${bad}, actual ${JSON.stringify(got[bad])}`);
  checkEqual(`${name}: payloads`, got, expected(n));
}

run(async () => {
  const { socket } = await mustConnect("connect", "/");

  for (const n of [1, 16, 17, N]) {
    const event = uniq(`tick${n}`);
    const c = collector(socket, event);
    const all = c.whenCount(n);
    const ack = await must(`burst ${n}: ack`, emitAck(socket, "burst", { n, event }, 10000));
    checkEqual(`burst ${n}: ack`, ack, { ok: true });
    await must(`burst ${n}: all events`, all);
    await roundTrip(`burst ${n}: round trip`, socket);
    checkInOrder(`burst ${n}`, c.got, n);
  }

  // Two bursts in flight at once on one connection: each stays in order.
  const e1 = uniq("left");
  const e2 = uniq("right");
  const c1 = collector(socket, e1);
  const c2 = collector(socket, e2);
  const both = Promise.all([c1.whenCount(N), c2.whenCount(N)]);
  const acks = await must(
    "two bursts: acks",
    Promise.all([emitAck(socket, "burst", { n: N, event: e1 }, 10000), emitAck(socket, "burst", { n: N, event: e2 }, 10000)]),
  );
  checkEqual("two bursts: acks", acks, [{ ok: true }, { ok: true }]);
  await must("two bursts: all events", both);
  await roundTrip("two bursts: round trip", socket);
  checkInOrder("two bursts (first)", c1.got, N);
  checkInOrder("two bursts (second)", c2.got, N);

  await checkUpgraded("burst", socket);
}, { checks: TRANSPORT === "upgrade" ? 23 : 22 });
