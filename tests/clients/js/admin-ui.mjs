// The real Socket.IO Admin UI (the web app of npm `@socket.io/admin-ui` 0.5, its built `ui/dist`)
// in Chromium (npm `playwright-core`), against `tidings serve --admin-ui` with a username and a
// bcrypt password hash: a wrong password is refused; the right one logs in; the dashboard shows
// the server and its namespaces; the Sockets page lists a connected test client; its details
// show its room; "Join a room" in the UI makes the client join it, as a broadcast to that room
// proves. Screenshots go to $SCREENSHOTS for a reviewer.
//
// env TIDINGS_URL: the server; UI_PORT: where this script serves the web app (the server allows
// that origin with credentials); ADMIN_USER, ADMIN_PASSWORD; TIDINGS_CHROMIUM: the browser;
// SCREENSHOTS: a directory.
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { dirname, extname, join } from "node:path";
import { env } from "node:process";
import { chromium } from "playwright-core";
import { io } from "socket.io-client";
import { URL, check, checkEqual, emitAck, fail, must, once, run, track, uniq } from "./lib.mjs";

for (const name of ["UI_PORT", "ADMIN_USER", "ADMIN_PASSWORD", "TIDINGS_CHROMIUM", "SCREENSHOTS"]) {
  if (!env[name]) fail("setup", `env ${name} is required`);
}
const require = createRequire(import.meta.url);
const uiRoot = join(dirname(require.resolve("@socket.io/admin-ui/package.json")), "ui", "dist");
mkdirSync(env.SCREENSHOTS, { recursive: true });

/** Serves the built web app (a single-page app: unknown paths get index.html). */
async function serveUi(port) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml" };
  const server = createServer(async (req, res) => {
    let path = new globalThis.URL(req.url, "http://ui").pathname;
    if (path === "/" || !extname(path)) path = "/index.html";
    try {
      const body = await readFile(join(uiRoot, path.replace(/\.\./g, "")));
      res.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  return server;
}

let page; // the browser page, for a screenshot of what failed

/** Polls the page until `probe()` is truthy (bounded: 100 × 100 ms). */
async function until(name, probe) {
  for (let i = 0; i < 100; i++) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await page?.screenshot({ path: join(env.SCREENSHOTS, "failed.png"), fullPage: true });
  fail(name, `not seen in the page within 10 s (see ${join(env.SCREENSHOTS, "failed.png")})`);
}

run(
  async () => {
    // A wrong password is refused with the Admin UI's own message.
    const intruder = io(`${URL}/admin`, { transports: ["websocket"], forceNew: true, reconnection: false, auth: { username: env.ADMIN_USER, password: "wrong" } });
    const [refused] = await must("a wrong password", once(intruder, "connect_error", 10000));
    checkEqual("wrong password refused", refused.message, "invalid credentials");
    intruder.close();

    // The test client: in room `lobby`.
    const client = track(io(URL, { transports: ["websocket"], forceNew: true, reconnection: false }));
    await must("client connects", once(client, "connect"));
    checkEqual("client joins lobby", await must("join", emitAck(client, "join", { room: "lobby" })), { ok: true });

    const ui = await serveUi(Number(env.UI_PORT));
    const browser = await chromium.launch({ executablePath: env.TIDINGS_CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    try {
      page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      page.on("console", (m) => m.type() === "error" && !m.text().includes("ERR_NAME_NOT_RESOLVED") && console.log(`browser: ${m.text()}`));
      const shot = (name) => page.screenshot({ path: join(env.SCREENSHOTS, `${name}.png`), fullPage: true });
      await page.goto(`http://127.0.0.1:${env.UI_PORT}/`);
      await page.getByLabel("Server URL").fill(URL);
      await page.getByLabel("Username").fill(env.ADMIN_USER);
      await page.getByLabel("Password").fill(env.ADMIN_PASSWORD);
      await shot("1-login");
      await page.getByRole("button", { name: "Connect" }).click();
      await until("status CONNECTED", async () => (await page.getByText(/^\s*connected\s*$/i).count()) > 0);
      // The dashboard: this server (healthy), and the namespaces with their sockets.
      await until("namespace / in the dashboard", async () => (await page.locator("code", { hasText: /^\/$/ }).count()) > 0);
      await shot("2-dashboard");
      const dashboard = await page.innerText("body");
      check("the dashboard lists /admin", dashboard.includes("/admin"), "/admin", dashboard);
      check("the dashboard shows a healthy server", /healthy\s*1\b/i.test(dashboard), "HEALTHY 1", dashboard);

      // The Sockets page lists the client; its details show its room.
      await page.getByText("Sockets", { exact: true }).first().click();
      await until("the client's socket listed", async () => (await page.getByText(client.id, { exact: true }).count()) > 0);
      await shot("3-sockets");
      await page.getByText(client.id, { exact: true }).click();
      await until("its details", async () => (await page.getByLabel("Join a room").count()) > 0);
      await until("room lobby in its details", async () => (await page.getByText("lobby", { exact: true }).count()) > 0);
      await shot("4-socket-details");

      // "Join a room" from the UI: the client joins `vip` on the server.
      const vip = uniq("vip");
      await page.getByLabel("Join a room").fill(vip);
      // The form's submit button (an icon, "Join" in its tooltip).
      await page.locator("form", { has: page.getByLabel("Join a room") }).locator("button[type=submit]").click();
      await until(`room ${vip} in its details`, async () => (await page.getByText(vip, { exact: true }).count()) > 0);
      await shot("5-joined");
      const news = once(client, "news", 10000);
      const other = track(io(URL, { transports: ["websocket"], forceNew: true, reconnection: false }));
      await must("other connects", once(other, "connect"));
      const ack = await must("broadcast to the room", emitAck(other, "broadcast", { room: vip, event: "news", data: "for vip" }));
      checkEqual("one recipient: the client the UI made join", ack?.recipients, 1);
      checkEqual("the client got it", (await must("news", news))[0], "for vip");
    } finally {
      await browser.close();
      ui.close();
    }
  },
  { timeoutMs: 90000, checks: 6 },
);
