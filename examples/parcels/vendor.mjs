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
import { Tidings } from "../../clients/js/index.mjs";

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
const tidings = new Tidings(socket);
socket.on("connect", () => say("online"));
socket.on("connect_error", (e) => say(`cannot connect: ${e.message} (retrying)`));

async function main() {
  // Subscribed before the socket connects, so that the notices that waited are handled on
  // arrival; returning from the handler acknowledges the notice (removed from the queue).
  const sub = await tidings.subscribe(topic, (notice, meta, event) => {
    say(`notice: ${notice.order} ${event} by ${notice.driver} (offset ${meta.offset}${meta.attempt > 1 ? `, attempt ${meta.attempt}` : ""})`);
  });
  say(`subscribed to ${topic} (${sub.pending} notices not yet acknowledged)`);
  // Order ids carry a run tag so that running the demo again makes new orders (a repeated
  // idempotency key would be stored only once).
  const run = randomBytes(2).toString("hex");
  for (let k = 1; k <= orders; k++) {
    const order = { order: `${letter.toUpperCase()}${k}-${run}`, store, parcel: `parcel of ${parcels[k % 4]}` };
    const sent = await tidings.publish("pickup", "pickup", order, { key: order.order });
    say(`published order ${order.order} to pickup (offset ${sent.offset})`);
  }
  if (values["go-offline"]) {
    say("goes OFFLINE; run `node vendor.mjs " + letter + "` later to catch up");
    socket.disconnect();
    process.exit(0);
  }
}

main().catch((e) => {
  say(e.message);
  process.exit(1);
});
process.on("SIGINT", () => {
  socket.disconnect();
  process.exit(0);
});
