// The "interop app" implemented with the reference Node server (npm `socket.io`).
//
// The client scenarios in this directory and in ../py are written against the contract below;
// running them against this app proves they encode the reference behaviour, and the Rust interop
// app must behave the same way. Usage:
//
//   node reference-app.mjs [port]       # port 0 (default) picks a free one
//
// It prints `listening http://127.0.0.1:PORT` on stdout once it accepts connections.
//
// Contract (all acks are one object argument):
// - namespaces `/`, `/custom`, `/dyn-<word>` (dynamic), `/secure` (auth {token:"let-me-in"});
//   anything else is refused with "Invalid namespace" (socket.io's own message)
// - on connect: emit `welcome` {sid, nsp, auth}
// - `echo` → `echo-back` with the same args; `echo-ack` → ack with the same args
// - `request-ack`, `room-ack`, `emit-except`, `burst`, `disconnect-me`, `my-rooms`, `room-sockets`
// - built-ins shared with `tidings serve`: `join`, `leave`, `broadcast`, answering
//   {ok:false, error:{code:"bad_request", message}} to a malformed payload

import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);

const httpServer = createServer();
const io = new Server(httpServer, { path: "/socket.io/", serveClient: false });

const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
const isName = (v) => typeof v === "string" && v.length > 0;

function badRequest(message) {
  return { ok: false, error: { code: "bad_request", message } };
}

function timeoutError(err) {
  return { code: "timeout", message: err.message };
}

/** Wraps a handler so that a missing ack function never throws. */
function withAck(handler) {
  return (...args) => {
    const last = args[args.length - 1];
    const ack = typeof last === "function" ? args.pop() : () => {};
    handler(ack, ...args);
  };
}

function attach(socket) {
  const nsp = socket.nsp;

  socket.emit("welcome", { sid: socket.id, nsp: nsp.name, auth: socket.handshake.auth ?? {} });

  socket.on("echo", (...args) => {
    if (typeof args[args.length - 1] === "function") args.pop();
    socket.emit("echo-back", ...args);
  });

  socket.on("echo-ack", withAck((ack, ...args) => ack(...args)));

  socket.on(
    "request-ack",
    withAck((ack, payload) => {
      const { event, data, timeoutMs } = payload ?? {};
      socket.timeout(timeoutMs).emit(event, data, (err, ...reply) => {
        ack(err ? { ok: false, error: timeoutError(err) } : { ok: true, reply });
      });
    }),
  );

  socket.on(
    "room-ack",
    withAck((ack, payload) => {
      const { room, event, data, timeoutMs } = payload ?? {};
      nsp
        .to(room)
        .timeout(timeoutMs)
        .emit(event, data, (err, replies) => {
          ack(err ? { ok: false, error: timeoutError(err), replies } : { ok: true, replies });
        });
    }),
  );

  socket.on(
    "emit-except",
    withAck((ack, payload) => {
      const { rooms = [], except = [], event, data } = payload ?? {};
      const target = rooms.length > 0 ? nsp.to(rooms) : nsp;
      target.except(except).emit(event, data);
      ack({ ok: true });
    }),
  );

  socket.on(
    "burst",
    withAck((ack, payload) => {
      const { n, event } = payload ?? {};
      for (let i = 0; i < Math.min(n, 10000); i++) socket.emit(event, { i });
      ack({ ok: true });
    }),
  );

  socket.on("disconnect-me", () => socket.disconnect());

  socket.on(
    "my-rooms",
    withAck((ack) => ack({ ok: true, rooms: [...socket.rooms].sort() })),
  );

  socket.on(
    "room-sockets",
    withAck((ack, payload) => {
      const members = nsp.adapter.rooms.get(payload?.room) ?? new Set();
      ack({ ok: true, sids: [...members].sort() });
    }),
  );

  // Built-ins (the same semantics as `tidings serve`).
  socket.on(
    "join",
    withAck((ack, payload) => {
      if (!isObject(payload) || !isName(payload.room)) {
        return ack(badRequest("join expects {room: non-empty string}"));
      }
      socket.join(payload.room);
      ack({ ok: true });
    }),
  );

  socket.on(
    "leave",
    withAck((ack, payload) => {
      if (!isObject(payload) || !isName(payload.room)) {
        return ack(badRequest("leave expects {room: non-empty string}"));
      }
      socket.leave(payload.room);
      ack({ ok: true });
    }),
  );

  socket.on(
    "broadcast",
    withAck((ack, payload) => {
      if (!isObject(payload) || !isName(payload.event)) {
        return ack(badRequest("broadcast expects {event: non-empty string, room?, data}"));
      }
      const { room, event, data } = payload;
      if (room !== undefined && !isName(room)) {
        return ack(badRequest("broadcast room must be a non-empty string"));
      }
      const members = room === undefined ? new Set(nsp.sockets.keys()) : new Set(nsp.adapter.rooms.get(room) ?? []);
      members.delete(socket.id);
      (room === undefined ? socket.broadcast : socket.to(room)).emit(event, data);
      ack({ ok: true, recipients: members.size });
    }),
  );
}

io.of("/").on("connection", attach);
io.of("/custom").on("connection", attach);
io.of(/^\/dyn-\w+$/).on("connection", attach);

const secure = io.of("/secure");
secure.use((socket, next) => {
  if (socket.handshake.auth?.token === "let-me-in") return next();
  const err = new Error("unauthorized");
  err.data = { reason: "bad token" };
  next(err);
});
secure.on("connection", attach);

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${httpServer.address().port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
