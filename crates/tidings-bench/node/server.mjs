// The Node socket.io 4.8 peer of the tidings benchmark: the same built-in events as
// `tidings serve` (join / broadcast with `{ok:true}` acks), WebSocket transport only, default
// settings otherwise. Prints `listening on http://ADDR/socket.io/` like tidings does.
import { createServer } from "node:http";
import { Server } from "socket.io";

const portArg = process.argv.indexOf("--port");
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 0;

const httpServer = createServer();
const io = new Server(httpServer, { transports: ["websocket"], serveClient: false });

const badRequest = { ok: false, error: { code: "bad_request", message: "bad payload" } };

io.on("connection", (socket) => {
  socket.on("join", (payload, ack) => {
    if (typeof ack !== "function") return;
    if (!payload || typeof payload.room !== "string") return ack(badRequest);
    socket.join(payload.room);
    ack({ ok: true });
  });
  socket.on("broadcast", (payload, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    if (!payload || typeof payload.event !== "string") return reply(badRequest);
    const target = typeof payload.room === "string" ? socket.to(payload.room) : socket.broadcast;
    target.emit(payload.event, payload.data);
    reply({ ok: true });
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  const { address, port: actual } = httpServer.address();
  console.log(`listening on http://${address}:${actual}/socket.io/`);
});
