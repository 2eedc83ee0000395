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
import { Tidings } from "../../clients/js/index.mjs";

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
const tidings = new Tidings(socket);

// Subscribed before the socket connects, so that the orders waiting for this driver are handled
// as they arrive. One order at a time (the helper's rule, and a van carries one parcel here).
// The handler's promise decides: resolved → the order is acknowledged (it leaves the group's
// queue); rejected → requeued, for this driver or another.
tidings
  .subscribe(
    "pickup",
    async (order, meta) => {
      say(`took order ${order.order} from ${order.store} (${order.parcel}; offset ${meta.offset}, attempt ${meta.attempt})`);
      const topic = `vendor.${order.store}`;
      for (const event of ["in-transit", "delivered"]) {
        await sleep(driveMs);
        const notice = { order: order.order, driver: name };
        const sent = await tidings.publish(topic, event, notice, { key: `${order.order}:${event}` });
        say(`${order.order} ${event.padEnd(10)} -> ${topic} (offset ${sent.offset}${sent.duplicate ? ", duplicate" : ""})`);
      }
    },
    { group: "drivers", onError: (e) => say(`could not finish: ${e.message} (the order will be redelivered)`) },
  )
  .then((sub) => say(`on shift: member of group "drivers" on topic "pickup" (${sub.pending} orders waiting)`))
  .catch((e) => {
    say(`subscribe refused: ${e.message}`);
    process.exit(1);
  });

socket.on("connect_error", (e) => say(`cannot connect: ${e.message} (retrying)`));
socket.on("disconnect", (reason) => say(`disconnected: ${reason}`));
process.on("SIGINT", () => {
  socket.disconnect();
  process.exit(0);
});
