// Durable topics of a tidings server (docs/PROTOCOL.md) over an unmodified socket.io-client
// socket. Types: index.d.mts. Not published from this repository: import it by path.
//
//   const tidings = new Tidings(io(url, { auth: { clientId: "driver-1" } }));
//   await tidings.subscribe("pickup", async (order, meta) => { … }, { group: "drivers" });
//   const { id, offset } = await tidings.publish("vendor.store-a", "delivered", notice, { key });
//
// A handler's promise decides the delivery: resolved → acknowledged (settled); rejected (or a
// throw) → requeued, redelivered later with backoff and `meta.attempt` + 1. Deliveries of one
// subscription are handled one at a time, in offset order.

/** Every `code` a tidings server answers with, plus `timeout` when it does not answer. */
export const ErrorCodes = Object.freeze([
  "bad_request",
  "unauthorized",
  "token_expired",
  "forbidden",
  "limit_exceeded",
  "queue_full",
  "not_found",
  "request_timeout",
  "payload_too_large",
  "rate_limited",
  "identity_required",
  "store_unavailable",
  "timeout",
  "internal",
  "too_many_connections",
  "store_full",
]);

/** A refusal from the server (`{ok:false, error:{code, message}}`), or no answer in time. */
export class TidingsError extends Error {
  constructor(code, message, request) {
    super(`${request}: ${code}: ${message}`);
    this.name = "TidingsError";
    /** The server's code, e.g. `forbidden` or `queue_full` (see ErrorCodes). */
    this.code = code;
    /** The server's message, for humans. */
    this.detail = message;
    /** The request that failed: `publish`, `subscribe` or `unsubscribe`. */
    this.request = request;
  }
}

const key = (topic, group) => `${group ?? ""}\u0000${topic}`;

class Subscription {
  #tidings;
  #queue = Promise.resolve();

  constructor(tidings, topic, group, handler, options) {
    this.#tidings = tidings;
    this.topic = topic;
    this.group = group ?? null;
    this.pending = 0;
    this.handler = handler;
    this.options = options;
  }

  /** Handles one delivery after the ones before it: ack on success, requeue on failure. */
  deliver(event, data, meta, ack) {
    this.#queue = this.#queue.then(async () => {
      try {
        await this.handler(data, meta, event);
      } catch (error) {
        ack({ requeue: true });
        this.options.onError?.(error, meta);
        return;
      }
      ack();
    });
  }

  /** Removes the subscription (or leaves the group) on the server. */
  async unsubscribe() {
    await this.#tidings.unsubscribe(this.topic, this.group);
  }
}

export class Tidings {
  #socket;
  #timeoutMs;
  #subscriptions = new Map();
  #connectedOnce = false;

  /**
   * @param socket a socket.io-client `Socket` (connected or not) whose auth names the
   *   identity: `{clientId}` on a development server, `{token}` on one that verifies tokens.
   * @param options.timeoutMs how long a request may wait for the server's answer (10 s).
   */
  constructor(socket, { timeoutMs = 10_000 } = {}) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    // Deliveries arrive under the message's event name: any event with (data, meta, ack).
    socket.onAny((event, ...args) => this.#onEvent(event, args));
    socket.on("connect", () => this.#onConnect());
  }

  /** Publishes `data` as `event` to `topic`; resolves once the server stored it. */
  async publish(topic, event, data, { key: idempotencyKey } = {}) {
    const payload = { topic, event, data };
    if (idempotencyKey !== undefined) payload.key = idempotencyKey;
    const ack = await this.#request("publish", payload);
    return { id: ack.id, offset: ack.offset, duplicate: ack.duplicate };
  }

  /**
   * Subscribes this identity to `topic` (or makes it a member of `group` on it) and hands
   * every delivery to `handler(data, meta, event)`. The subscription is registered at once:
   * call this before the socket connects, and the backlog that arrives on connecting is
   * handled too (a delivery for a topic without a subscription here is left unacknowledged,
   * and comes back after the ack timeout).
   */
  async subscribe(topic, handler, options = {}) {
    const { group, from } = options;
    const id = key(topic, group);
    if (this.#subscriptions.has(id)) {
      throw new TidingsError("bad_request", `already subscribed to ${topic}`, "subscribe");
    }
    const subscription = new Subscription(this, topic, group, handler, options);
    // Registered first: the backlog may arrive before the answer.
    this.#subscriptions.set(id, subscription);
    try {
      const ack = await this.#request("subscribe", this.#subscribePayload(topic, group, from));
      subscription.pending = ack.pending;
    } catch (error) {
      this.#subscriptions.delete(id);
      throw error;
    }
    return subscription;
  }

  /** Removes the subscription to `topic` (or leaves `group`). */
  async unsubscribe(topic, group) {
    const payload = { topic };
    if (group != null) payload.group = group;
    await this.#request("unsubscribe", payload);
    this.#subscriptions.delete(key(topic, group));
  }

  #subscribePayload(topic, group, from) {
    const payload = { topic };
    if (group != null) payload.group = group;
    if (from !== undefined) payload.from = from;
    return payload;
  }

  async #request(name, payload) {
    let ack;
    try {
      ack = await this.#socket.timeout(this.#timeoutMs).emitWithAck(name, payload);
    } catch {
      throw new TidingsError("timeout", `no answer within ${this.#timeoutMs} ms`, name);
    }
    if (ack?.ok !== true) {
      throw new TidingsError(ack?.error?.code ?? "internal", ack?.error?.message ?? "malformed answer", name);
    }
    return ack;
  }

  #onEvent(event, args) {
    if (event === "tidings:gap") {
      const [gap] = args;
      this.#subscriptions.get(key(gap?.topic, gap?.group))?.options.onGap?.(gap);
      return;
    }
    const ack = args[args.length - 1];
    const [data, meta] = args;
    if (args.length < 3 || typeof ack !== "function" || typeof meta?.topic !== "string") return;
    this.#subscriptions.get(key(meta.topic, meta.group))?.deliver(event, data, meta, ack);
  }

  // Subscriptions are durable and deliveries resume by themselves on a new connection; saying
  // `subscribe` again (harmless on the server) restores one the server lost.
  #onConnect() {
    if (!this.#connectedOnce) {
      this.#connectedOnce = true;
      return;
    }
    for (const subscription of this.#subscriptions.values()) {
      this.#request("subscribe", this.#subscribePayload(subscription.topic, subscription.group))
        .then((ack) => {
          subscription.pending = ack.pending;
        })
        .catch((error) => subscription.options.onError?.(error, null));
    }
  }
}
