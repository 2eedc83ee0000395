// `tidings serve --tls-cert/--tls-key`: socket.io-client over wss:// and https:// long-polling,
// trusting the test CA (env TIDINGS_CA, a PEM file) through the `ca` option — certificates are
// verified, not skipped. A round trip with the built-in events: join, broadcast, receive.
import { readFileSync } from "node:fs";
import { env } from "node:process";
import { URL, TRANSPORT, client, once, must, check, checkEqual, emitAck, run, uniq } from "./lib.mjs";

const ca = readFileSync(env.TIDINGS_CA);

/** Node's codes for "the certificate chain does not lead to a trusted root". */
const UNTRUSTED_ISSUER = [
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
];

/**
 * The TLS error code under a socket.io-client `connect_error`: over WebSocket the `ws`
 * ErrorEvent in `description` holds the Error; over long-polling the xmlhttprequest-ssl request
 * in `context` keeps it in `statusText`.
 */
function certificateErrorCode(err) {
  return err?.description?.error?.code ?? err?.context?.statusText?.code ?? null;
}

async function connect() {
  const socket = client("/", { ca });
  const connected = new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
  });
  socket.connect();
  await must("connect", connected);
  return socket;
}

run(async () => {
  check("url is https", URL.startsWith("https://"), "an https:// URL", URL);
  const room = uniq("room");
  const [a, b] = [await connect(), await connect()];
  for (const [name, s] of [["a", a], ["b", b]]) {
    checkEqual(`${name} join`, await must(`${name} join`, emitAck(s, "join", { room })), { ok: true });
  }
  const bGot = once(b, "news");
  const payload = { text: "over tls", blob: Buffer.from([0, 1, 254, 255]) };
  checkEqual(
    "broadcast ack",
    await must("broadcast", emitAck(a, "broadcast", { room, event: "news", data: payload })),
    { ok: true, recipients: 1 },
  );
  const [data] = await must("b receives news", bGot);
  checkEqual("news data", { ...data, blob: Buffer.from(data.blob) }, payload);
  if (TRANSPORT === "upgrade") {
    // polling over https first, then the upgrade to wss on the same server.
    const upgraded = a.io.engine.transport.name === "websocket" ? Promise.resolve() : once(a.io.engine, "upgrade");
    await must("upgrade to websocket", upgraded);
    checkEqual("transport after upgrade", a.io.engine.transport.name, "websocket");
    checkEqual("join after upgrade", await must("join after upgrade", emitAck(a, "join", { room })), { ok: true });
  }

  // Without the CA the certificate is refused: the client really verifies it, whatever the
  // transport (any other connect error would prove nothing about verification).
  const untrusted = client("/", {});
  const refused = once(untrusted, "connect_error");
  untrusted.connect();
  const [err] = await must("connect without the CA fails", refused);
  const code = certificateErrorCode(err);
  check(
    "connect without the CA: a certificate verification error",
    UNTRUSTED_ISSUER.includes(code),
    `one of ${UNTRUSTED_ISSUER.join(", ")}`,
    { message: err?.message, code },
  );
}, { checks: TRANSPORT === "upgrade" ? 8 : 6 });
