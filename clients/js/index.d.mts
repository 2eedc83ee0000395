// Types of index.mjs: durable topics of a tidings server over a socket.io-client socket.
import type { Socket } from "socket.io-client";

/** Every `code` a tidings server answers with (docs/SECURITY.md#error-codes), and `timeout`. */
export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "token_expired"
  | "forbidden"
  | "limit_exceeded"
  | "queue_full"
  | "not_found"
  | "request_timeout"
  | "payload_too_large"
  | "rate_limited"
  | "identity_required"
  | "store_unavailable"
  | "timeout"
  | "internal"
  | "too_many_connections"
  | "store_full";

export declare const ErrorCodes: readonly ErrorCode[];

/** A refusal from the server, or no answer within the request timeout (`code: "timeout"`). */
export declare class TidingsError extends Error {
  readonly name: "TidingsError";
  readonly code: ErrorCode;
  /** The server's message, for humans. */
  readonly detail: string;
  /** The request that failed. */
  readonly request: "publish" | "subscribe" | "unsubscribe";
}

/** What comes with each delivery. */
export interface DeliveryMeta {
  topic: string;
  /** The message id: the same on every redelivery (make handlers idempotent with it). */
  id: string;
  /** The message's position in its topic: 1, 2, 3, … */
  offset: number;
  /** The competing-consumer group the delivery was made to, if any. */
  group?: string | null;
  /** 1 on the first delivery, then 2, 3, … */
  attempt: number;
  /** Milliseconds since the Unix epoch. */
  publishedAt: number;
}

/** Messages lost before being settled (retention, or a full queue with `drop-oldest`). */
export interface Gap {
  topic: string;
  group?: string;
  from: number;
  to: number;
}

/**
 * Resolve (or return) to acknowledge the delivery; reject (or throw) to requeue it. `event` is
 * the name the message was published with.
 */
export type Handler<T = unknown> = (data: T, meta: DeliveryMeta, event: string) => void | Promise<void>;

export interface SubscribeOptions {
  /** Join this competing-consumer group: each message goes to one of its members. */
  group?: string;
  /** Where a new subscription starts: `"new"` (default), `"earliest"`, or an offset. */
  from?: "new" | "earliest" | number;
  /** A handler failed (the delivery was requeued), or a re-subscribe after a reconnect failed (`meta` null). */
  onError?: (error: unknown, meta: DeliveryMeta | null) => void;
  /** The server announced a gap (`tidings:gap`) in this subscription. */
  onGap?: (gap: Gap) => void;
}

export interface Subscription {
  readonly topic: string;
  readonly group: string | null;
  /** Messages waiting for the subscription when it was (re)confirmed. */
  readonly pending: number;
  /** Removes the subscription (or leaves the group) on the server. */
  unsubscribe(): Promise<void>;
}

export interface Published {
  id: string;
  offset: number;
  /** True when the idempotency key was seen within the dedup window: nothing new was stored. */
  duplicate: boolean;
}

export declare class Tidings {
  /**
   * @param socket a socket.io-client socket whose `auth` names the identity (`{clientId}`, or
   *   `{token}` on a server that verifies tokens).
   */
  constructor(socket: Socket, options?: { timeoutMs?: number });
  /**
   * Resolves once the server stored the message. `data` may hold binary (Buffer, ArrayBuffer,
   * typed arrays) anywhere: subscribers receive it as binary, also after restarts.
   */
  publish<T = unknown>(topic: string, event: string, data: T, options?: { key?: string }): Promise<Published>;
  subscribe<T = unknown>(topic: string, handler: Handler<T>, options?: SubscribeOptions): Promise<Subscription>;
  unsubscribe(topic: string, group?: string | null): Promise<void>;
}
