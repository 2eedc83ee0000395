// A vendor of the parcels demo: places `pickup` orders and follows their notices.
//
//   node vendor.mjs a [--orders 3] [--go-offline] [--url http://127.0.0.1:3000]
//
// Vendor `a` is the identity `vendor-a`; its notices arrive on the topic `vendor.store-a`.
// Its subscription is durable: when the vendor is offline, notices wait on the server, and the
// next `node vendor.mjs a` receives every one of them.
import { io } from "socket.io-client";
import { parseArgs } from "node:util";
import { randomBytes } from "node:crypto";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: "http://127.0.0.1:3000" },
    orders: { type: "string", default: "0" },
    "go-offline": { type: "boolean", default: false },
  },
});
const letter = (positionals[0] ?? "a").toLowerCase();
const name = `vendor-${letter}`;
const store = `store-${letter}`;
const topic = `vendor.${store}`;
const orders = Number(values.orders);
const say = (line) => console.log(`${new Date().toISOString().slice(11, 23)} ${name}  ${line}`);
const parcels = ["books", "tea", "shoes", "plants"];

const socket = io(values.url, { auth: { clientId: name } });

// Registered before connecting, so that the notices that waited are handled on arrival.
for (const event of ["in-transit", "delivered"]) {
  socket.on(event, (notice, meta, ack) => {
    say(`notice: ${notice.order} ${event} by ${notice.driver} (offset ${meta.offset}${meta.attempt > 1 ? `, attempt ${meta.attempt}` : ""})`);
    ack(); // settled: removed from this vendor's queue
  });
}

async function request(event, payload) {
  const ack = await socket.timeout(10_000).emitWithAck(event, payload);
  if (!ack.ok) throw new Error(`${event}: ${ack.error.code}: ${ack.error.message}`);
  return ack;
}

let placed = false;
socket.on("connect", async () => {
  // Deliveries of the backlog start as soon as the socket connects; subscribing again is
  // harmless (the subscription is durable and keeps its place).
  say("online");
  try {
    const sub = await request("subscribe", { topic });
    say(`subscribed to ${topic} (${sub.pending} notices not yet acknowledged)`);
    if (placed || orders <= 0) return;
    placed = true;
    // Order ids carry a run tag so that running the demo again makes new orders (a repeated
    // idempotency key would be stored only once).
    const run = randomBytes(2).toString("hex");
    for (let k = 1; k <= orders; k++) {
      const order = { order: `${letter.toUpperCase()}${k}-${run}`, store, parcel: `parcel of ${parcels[k % 4]}` };
      const sent = await request("publish", { topic: "pickup", event: "pickup", data: order, key: order.order });
      say(`published order ${order.order} to pickup (offset ${sent.offset})`);
    }
    if (values["go-offline"]) {
      say("goes OFFLINE; run `node vendor.mjs " + letter + "` later to catch up");
      socket.disconnect();
      process.exit(0);
    }
  } catch (e) {
    say(e.message);
    process.exit(1);
  }
});
socket.on("connect_error", (e) => say(`cannot connect: ${e.message} (retrying)`));
process.on("SIGINT", () => {
  socket.disconnect();
  process.exit(0);
});
