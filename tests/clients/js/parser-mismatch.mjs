// A client built with the other parser than the server's (`SERVER_PARSER`: `default` or
// `msgpack`, what the server was started with) gets a `connect_error` naming both parsers —
// not a silent close and a reconnect loop — and a client with the server's parser on the same
// server works. The CONNECT_ERROR comes in the client's own encoding, so the client can read it.

import { createRequire } from "node:module";
import { env } from "node:process";
import { check, client, fail, must, mustConnect, once, roundTrip, run } from "./lib.mjs";

const msgpack = createRequire(import.meta.url)("socket.io-msgpack-parser");
const serverParser = env.SERVER_PARSER;
if (!["default", "msgpack"].includes(serverParser)) fail("setup", `SERVER_PARSER must be default|msgpack, got ${serverParser}`);
// `parser: undefined` would not override; the default parser is the client's own.
const right = serverParser === "msgpack" ? { parser: msgpack } : {};
const wrong = serverParser === "msgpack" ? {} : { parser: msgpack };

run(async () => {
  for (const nsp of ["/", "/custom"]) {
    const socket = client(nsp, wrong);
    socket.expectDisconnect = true;
    socket.once("connect", () => fail(`wrong parser on ${nsp}`, "expected connect_error, actual: connected"));
    const outcome = once(socket, "connect_error").then(([err]) => err);
    socket.connect();
    const err = await must(`wrong parser on ${nsp}: connect_error`, outcome);
    socket.disconnect();
    check(`wrong parser on ${nsp}: the message names the server's parser`,
      err?.message?.includes(serverParser === "msgpack" ? "socket.io-msgpack-parser" : "socket.io-parser"),
      "a message naming the server's parser", err?.message);
    check(`wrong parser on ${nsp}: the message says parser mismatch`,
      err?.message?.startsWith("parser mismatch"), "parser mismatch: …", err?.message);
  }
  const { socket } = await mustConnect("right parser: connects", "/", right);
  await roundTrip("right parser: round trip", socket);
}, { checks: 5 });
