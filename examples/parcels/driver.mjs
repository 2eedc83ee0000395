// A driver of the parcels demo: a member of the group `drivers` on topic `pickup`.
//
//   node driver.mjs 1 [--drive-ms 2000] [--url http://127.0.0.1:3000]
//
// The server hands each `pickup` order to exactly one member of the group. The driver
// publishes `in-transit`, then `delivered`, to the vendor's topic `vendor.<store>`, and only
// then acknowledges the order: if it stops half-way, the order goes to another driver, and the
// idempotency keys make the repeated notices harmless.
import { io } from "socket.io-client";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: "http://127.0.0.1:3000" },
    "drive-ms": { type: "string", default: "2000" },
  },
});
const number = positionals[0] ?? "1";
const name = `driver-${number}`;
const driveMs = Number(values["drive-ms"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const say = (line) => console.log(`${new Date().toISOString().slice(11, 23)} ${name}  ${line}`);

// The identity (`clientId`) owns the group membership, not the socket: a restarted driver
// gets back what it had not acknowledged.
const socket = io(values.url, { auth: { clientId: name } });

async function publish(topic, event, data, key) {
  const ack = await socket.timeout(10_000).emitWithAck("publish", { topic, event, data, key });
  if (!ack.ok) throw new Error(`${ack.error.code}: ${ack.error.message}`);
  return ack;
}

// One order at a time: a van carries one parcel in this demo.
let work = Promise.resolve();

// Registered before connecting: the backlog is delivered as soon as the socket connects.
socket.on("pickup", (order, meta, ack) => {
  work = work.then(async () => {
    say(`took order ${order.order} from ${order.store} (${order.parcel}; offset ${meta.offset}, attempt ${meta.attempt})`);
    const topic = `vendor.${order.store}`;
    for (const event of ["in-transit", "delivered"]) {
      await sleep(driveMs);
      const notice = { order: order.order, driver: name };
      const sent = await publish(topic, event, notice, `${order.order}:${event}`);
      say(`${order.order} ${event.padEnd(10)} -> ${topic} (offset ${sent.offset}${sent.duplicate ? ", duplicate" : ""})`);
    }
    ack(); // settled: the order leaves the group's queue
  }).catch((e) => say(`could not finish: ${e.message} (the order will be redelivered)`));
});

socket.on("connect", async () => {
  const ack = await socket.timeout(10_000).emitWithAck("subscribe", { topic: "pickup", group: "drivers" });
  if (!ack.ok) {
    say(`subscribe refused: ${ack.error.code}: ${ack.error.message}`);
    process.exit(1);
  }
  say(`on shift: member of group "drivers" on topic "pickup" (${ack.pending} orders waiting)`);
});
socket.on("connect_error", (e) => say(`cannot connect: ${e.message} (retrying)`));
socket.on("disconnect", (reason) => say(`disconnected: ${reason}`));
process.on("SIGINT", () => {
  socket.disconnect();
  process.exit(0);
});
