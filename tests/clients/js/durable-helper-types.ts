// Compiled (not run) by crates/tidings/tests/serve.rs with `tsc -p tsconfig.types.json`:
// clients/js/index.d.ts describes the helper as a TypeScript user sees it, and misuse is a
// type error (each `@ts-expect-error` fails the compile if the line below it type-checks).
import { io } from "socket.io-client";
import { Tidings, TidingsError, type DeliveryMeta, type Published, type Subscription } from "../../../clients/js/index.mjs";

interface Order {
  order: string;
  store: string;
}

async function example(): Promise<void> {
  const tidings = new Tidings(io("http://127.0.0.1:3000", { auth: { clientId: "driver-1" } }), { timeoutMs: 5000 });
  const sub: Subscription = await tidings.subscribe<Order>(
    "pickup",
    async (order, meta: DeliveryMeta, event) => {
      const store: string = order.store;
      const attempt: number = meta.attempt;
      const name: string = event;
      void [store, attempt, name];
    },
    { group: "drivers", from: "earliest", onGap: (gap) => void gap.to },
  );
  const published: Published = await tidings.publish("vendor.store-a", "delivered", { order: "A1" }, { key: "A1:delivered" });
  const offset: number = published.offset;
  void offset;
  await sub.unsubscribe();
  try {
    await tidings.publish("pickup", "pickup", {});
  } catch (e) {
    if (e instanceof TidingsError && e.code === "queue_full") {
      const why: string = e.detail;
      void why;
    }
  }
  // @ts-expect-error: `from` is "new", "earliest" or an offset
  await tidings.subscribe("pickup", () => {}, { from: "sometime" });
  // @ts-expect-error: not an error code
  const code: TidingsError["code"] = "no_such_code";
  void code;
  // @ts-expect-error: the handler's data has the declared type
  await tidings.subscribe<Order>("pickup", (order) => void order.weight);
}

void example;
