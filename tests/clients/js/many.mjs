// No-drop proof under fan-out: MANY_CLIENTS (default 200) WebSocket clients join one room; a
// sender broadcasts MANY_EVENTS (default 200) events to it, pipelined (a bounded window of
// acks in flight). Every client must receive every event exactly once and in order, and no
// client may be disconnected. Always WebSocket, whatever TRANSPORT says.

import { check, checkEqual, emitAck, fail, must, mustConnect, roundTrip, run, uniq } from "./lib.mjs";

const CLIENTS = Number(process.env.MANY_CLIENTS) || 200;
const EVENTS = Number(process.env.MANY_EVENTS) || 200;
const CONNECT_BATCH = 25;
const ACK_WINDOW = 32;
const DELIVERY_MS = 30000;

/** Runs `task(i)` for i in 0..count with at most `width` in flight; resolves with the results. */
async function pool(count, width, task) {
  const results = new Array(count);
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      results[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, lane));
  return results;
}

run(
  async () => {
    const room = uniq("crowd");
    const event = uniq("news");
    const opts = { transport: "websocket" };

    let complete = 0;
    let allDone;
    const everyone = new Promise((resolve) => {
      allDone = resolve;
    });
    const disconnects = [];

    const clients = await pool(CLIENTS, CONNECT_BATCH, async (k) => {
      const { socket } = await mustConnect(`connect client ${k}`, "/", opts);
      const got = [];
      socket.on(event, (data) => {
        got.push(data?.seq);
        if (got.length === EVENTS && ++complete === CLIENTS) allDone();
      });
      socket.on("disconnect", (reason) => disconnects.push({ k, reason }));
      const ack = await must(`client ${k} joins`, emitAck(socket, "join", { room }));
      check(`client ${k} joins: ok`, ack?.ok === true, "ok:true", ack);
      return { socket, got };
    });
    if (CLIENTS === 0 || EVENTS === 0) allDone();

    const { socket: sender } = await mustConnect("connect sender", "/", opts);
    const t0 = Date.now();
    const acks = await pool(EVENTS, ACK_WINDOW, (seq) =>
      must(`broadcast ${seq}`, emitAck(sender, "broadcast", { room, event, data: { seq } }, 15000)),
    );
    const wrong = acks.findIndex((a) => a?.ok !== true || a?.recipients !== CLIENTS);
    check("every broadcast acked with recipients = clients", wrong === -1, `{ok:true, recipients:${CLIENTS}}`, acks[wrong]);

    let timer;
    await Promise.race([
      everyone,
      new Promise((resolve) => {
        timer = setTimeout(resolve, DELIVERY_MS);
      }),
    ]).finally(() => clearTimeout(timer));
    const ms = Date.now() - t0;

    // Anything duplicated or late would arrive before these round trips complete.
    await pool(CLIENTS, CONNECT_BATCH, (k) => roundTrip(`round trip with client ${k}`, clients[k].socket));

    const delivered = clients.reduce((sum, c) => sum + c.got.length, 0);
    const expectedTotal = CLIENTS * EVENTS;
    console.log(`delivered ${delivered}/${expectedTotal} (${CLIENTS} clients x ${EVENTS} events) in ${ms} ms`);
    checkEqual("no client disconnected", disconnects, []);
    const inOrder = Array.from({ length: EVENTS }, (_, i) => i);
    for (let k = 0; k < CLIENTS; k++) {
      const got = clients[k].got;
      if (got.length !== EVENTS || got.some((seq, i) => seq !== i)) {
        const firstBad = got.findIndex((seq, i) => seq !== i);
        fail(
          `client ${k} received every event once, in order`,
          `expected ${EVENTS} events 0..${EVENTS - 1}, actual ${got.length} events, first mismatch at ${firstBad} (${got[firstBad]})`,
        );
      }
      checkEqual(`client ${k} sequence`, got, inOrder);
    }
    check("delivered = expected", delivered === expectedTotal, expectedTotal, delivered);
  },
  { timeoutMs: 60000, checks: 3 * CLIENTS + 3 },
);
