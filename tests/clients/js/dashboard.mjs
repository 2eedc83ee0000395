// The durable-topics dashboard (GET /dashboard of `tidings serve`) in Chromium (npm
// `playwright-core`), as an operator uses it. Screenshots go to $SCREENSHOTS for a reviewer.
//
// MODE=token (the server verifies tokens): without a token the page's API calls get 401 and
// the page asks for an admin token; a user's token gets 403 and the page says it is not an
// admin's; the admin token signs in. The topics page shows $TOPIC with its subscription $SUB
// and its figures; the subscription's page shows its dead letter $DEAD_ID; Inspect shows the
// payload; Requeue takes it out of the dead letters — checked through the HTTP API: no dead
// letter, the message pending again. The topic's publish form stores a message — checked
// through the API's history — and the live tail shows it. Desktop and phone (390×844) views.
// env: ADMIN_TOKEN, USER_TOKEN, TOPIC, SUB, DEAD_ID.
//
// MODE=open (no tokens): the page opens without a sign-in, shows the first 50 of $TOPICS
// topics (t.00000 …), pages forward and back, filters by prefix; a phone view.
//
// env (both): TIDINGS_URL, TIDINGS_CHROMIUM, SCREENSHOTS.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { env } from "node:process";
import { chromium } from "playwright-core";
import { URL, check, checkEqual, fail, run } from "./lib.mjs";

const MODE = env.MODE;
const required = { token: ["ADMIN_TOKEN", "USER_TOKEN", "TOPIC", "SUB", "DEAD_ID"], open: ["TOPICS"] }[MODE];
if (!required) fail("setup", `MODE must be token|open, got ${MODE}`);
for (const name of [...required, "TIDINGS_CHROMIUM", "SCREENSHOTS"]) {
  if (!env[name]) fail("setup", `env ${name} is required`);
}
mkdirSync(env.SCREENSHOTS, { recursive: true });

let page; // the browser page, for a screenshot of what failed
const problems = []; // console errors and CSP violations seen in the page

/** Polls `probe()` until truthy (bounded: 100 × 100 ms); fails with a screenshot otherwise. */
async function until(name, probe) {
  let last;
  for (let i = 0; i < 100; i++) {
    last = await probe();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await page?.screenshot({ path: join(env.SCREENSHOTS, "failed.png"), fullPage: true });
  fail(name, `not seen within 10 s (see ${join(env.SCREENSHOTS, "failed.png")}); page text: ${(await page?.innerText("body"))?.slice(0, 600)}`);
}

/** The HTTP API, as a script sees it (outside the browser). */
async function api(method, path, { token, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${URL}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10000) });
  return { status: res.status, body: await res.json() };
}

const shot = (name) => page.screenshot({ path: join(env.SCREENSHOTS, `${name}.png`), fullPage: true });
const text = (locator) => locator.innerText();

async function tokenMode(browser) {
  const { ADMIN_TOKEN: admin, USER_TOKEN: user, TOPIC: topic, SUB: sub, DEAD_ID: deadId } = env;
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  watch(page);
  await page.goto(`${URL}/dashboard`);

  // No token: the page's first API call gets 401 and the page asks for an admin token.
  const reason = page.getByTestId("login-reason");
  await until("the sign-in form", async () => (await page.locator("#login").isVisible()) && (await text(reason)).includes("401"));
  check("without a token the page says 401 and asks for an admin token", /401 unauthorized.*admin token/s.test(await text(reason)), "401 … admin token", await text(reason));
  const fromPage = await page.evaluate(async () => (await fetch("/v1/topics")).status);
  checkEqual("the page's API call without a token", fromPage, 401);
  await shot("1-no-token");

  // A user's token: 403, said on the page.
  await page.getByLabel("Admin token").fill(user);
  await page.getByRole("button", { name: "Sign in" }).click();
  await until("the 403 reason", async () => (await text(reason)).includes("403"));
  check("a user's token: the page says 403 and that an admin token is needed", /403 forbidden.*needs an admin token/s.test(await text(reason)), "403 … admin token", await text(reason));
  await shot("2-not-admin");

  // The admin's: the topics page with the topic's figures.
  await page.getByLabel("Admin token").fill(admin);
  await page.getByRole("button", { name: "Sign in" }).click();
  const row = page.locator(`tr[data-topic="${topic}"][data-sub="${sub}"]`);
  await until(`${topic} / ${sub} listed`, async () => (await row.count()) === 1);
  const cell = (field) => text(row.locator(`[data-field="${field}"]`));
  checkEqual("the topic's head and retained count", [await cell("head"), await cell("retained")], ["1", "1"]);
  checkEqual("the subscription's pending / in flight / dead / gaps", [await cell("pending"), await cell("inFlight"), await cell("dead"), await cell("gaps")], ["0", "0", "1", "0"]);
  check("its lag is shown", /\d/.test(await cell("lagMs")), "a duration", await cell("lagMs"));
  checkEqual("the token is kept in the tab's sessionStorage", await page.evaluate(() => sessionStorage.getItem("tidings.dashboard.token")), admin);
  // The counters' sparklines after a few 2 s samples.
  await until("sparklines drawn", async () => (await page.locator("[data-testid=stat-sessions] polyline").count()) === 1);
  await shot("3-topics");

  // The subscription's detail with its dead letter; Inspect shows the payload.
  await row.locator('[data-field="subscription"] a').click();
  await until("the subscription page", async () => (await page.getByTestId("subscription-name").count()) === 1);
  checkEqual("its name", await text(page.getByTestId("subscription-name")), sub);
  await until("its figures", async () => (await page.getByTestId("figure-dead").count()) === 1);
  checkEqual("its dead count", await text(page.getByTestId("figure-dead").locator("dd")), "1");
  const dead = page.locator(`tr[data-dead="${deadId}"]`);
  await until("its dead letter", async () => (await dead.count()) === 1);
  await shot("4-subscription");
  await dead.getByRole("button", { name: "Inspect" }).click();
  const detail = page.getByTestId(`dead-detail-${deadId}`);
  await until("the dead letter's detail", async () => detail.isVisible());
  const inspected = JSON.parse(await text(detail));
  checkEqual("Inspect shows the message", { id: inspected.id, data: inspected.data, subscription: inspected.subscription, attempts: inspected.attempts }, { id: deadId, data: { parcel: "P-1" }, subscription: sub, attempts: 1 });
  await shot("5-dead-letter");

  // Requeue: the server has no dead letter left, and the message is pending again.
  await dead.getByRole("button", { name: "Requeue" }).click();
  await until("no dead letters on the page", async () => (await page.getByTestId("no-dead-letters").count()) === 1);
  const letters = await api("GET", `/v1/topics/${topic}/dead-letters`, { token: admin });
  checkEqual("the API lists no dead letter", letters, { status: 200, body: { deadLetters: [] } });
  const info = await api("GET", `/v1/topics/${topic}`, { token: admin });
  const after = info.body.subscriptions.find((s) => s.name === sub);
  checkEqual("the message is pending again", { pending: after.pending, dead: after.dead }, { pending: 1, dead: 0 });
  await until("the page's figures follow", async () => (await text(page.getByTestId("figure-pending").locator("dd"))) === "1");
  await shot("6-requeued");

  // The topic's page: publish from the form; the API's history has it; the live tail shows it.
  await page.getByRole("link", { name: topic, exact: true }).first().click();
  await until("the topic page", async () => (await page.getByTestId("topic-name").count()) === 1);
  await until("the live tail's first message", async () => (await page.locator('[data-testid=tail] tr[data-offset="1"]').count()) === 1);
  await page.getByLabel("Event").fill("note");
  await page.getByLabel("Data (JSON)").fill('{"from": "the dashboard", "n": 7}');
  await page.getByRole("button", { name: "Publish" }).click();
  const result = page.getByTestId("publish-result");
  await until("the publish result", async () => (await text(result)).startsWith("Stored"));
  check("the page says where it was stored", (await text(result)).startsWith("Stored at offset 2"), "Stored at offset 2", await text(result));
  const history = await api("GET", `/v1/topics/${topic}/messages?from=2`, { token: admin });
  checkEqual("the API's history has the message", history.body.messages.map((m) => ({ offset: m.offset, event: m.event, data: m.data })), [{ offset: 2, event: "note", data: { from: "the dashboard", n: 7 } }]);
  const tailed = page.locator('[data-testid=tail] tr[data-offset="2"]');
  await until("the message in the live tail", async () => (await tailed.count()) === 1);
  check("the tail shows its event and data", /note[\s\S]*"n":7/.test(await text(tailed)), "note … n:7", await text(tailed));
  await until("the topic's head follows", async () => (await text(page.getByTestId("figure-head").locator("dd"))) === "2");
  await shot("7-published");

  // A phone.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${URL}/dashboard#/`);
  await until(`${topic} listed on a phone`, async () => (await row.count()) === 1);
  await until("sparklines on a phone", async () => (await page.locator("[data-testid=stat-sessions] polyline").count()) === 1);
  await noHorizontalOverflow("the phone's topics page");
  await shot("8-phone-topics");
  await page.goto(`${URL}/dashboard#/topic/${topic}`);
  await until("the topic on a phone", async () => (await page.locator('[data-testid=tail] tr[data-offset="2"]').count()) === 1);
  await noHorizontalOverflow("the phone's topic page");
  await shot("9-phone-topic");
}

/** Wide tables scroll inside their box; the page itself is no wider than the screen. */
async function noHorizontalOverflow(name) {
  const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  check(`${name} fits the screen's width`, scroll <= client, `scrollWidth <= ${client}`, scroll);
}

async function openMode(browser) {
  const total = Number(env.TOPICS);
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  watch(page);
  const started = Date.now();
  await page.goto(`${URL}/dashboard`);
  const range = page.getByTestId("topics-range");
  const firstTopic = () => page.locator("tbody tr[data-topic]").first().getAttribute("data-topic");
  await until("the first page of topics", async () => (await page.locator("tbody tr[data-topic]").count()) === 50);
  const took = Date.now() - started;
  console.log(`the first page of ${total} topics shown in ${took} ms`);
  check("the first page shows within 5 s", took < 5000, "< 5000 ms", took);
  check("no sign-in without tokens", !(await page.locator("#login").isVisible()), "login hidden", "login visible");
  checkEqual("the range", await text(range), `1–50 of ${total.toLocaleString("en-US")}`);
  checkEqual("the first topic", await firstTopic(), "t.00000");
  await shot("1-topics");

  await page.getByRole("button", { name: "Next →" }).click();
  await until("the second page", async () => (await firstTopic()) === "t.00050");
  checkEqual("the second page's range", await text(range), `51–100 of ${total.toLocaleString("en-US")}`);
  await shot("2-page-2");
  await page.getByRole("button", { name: "← Previous" }).click();
  await until("back to the first page", async () => (await firstTopic()) === "t.00000");

  await page.getByLabel("Filter topics by prefix").fill("t.0999");
  await page.getByRole("button", { name: "Filter" }).click();
  await until("the filtered topics", async () => (await page.locator("tbody tr[data-topic]").count()) === 10);
  checkEqual("the filtered range", await text(range), "1–10 of 10");
  check("no next page", await page.getByRole("button", { name: "Next →" }).isDisabled(), "disabled", "enabled");
  await shot("3-filtered");

  // Data is shown as text: markup in a payload stays inert.
  const markup = '<img src=x onerror="window.pwned=1">';
  const stored = await api("POST", "/v1/topics/t.09999/messages", { body: { event: "markup", data: markup } });
  checkEqual("a payload with markup is stored", stored.status, 201);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${URL}/dashboard#/topic/t.09999`);
  const row = page.locator('[data-testid=tail] tr[data-offset="2"]');
  await until("a topic on a phone", async () => (await row.count()) === 1);
  check("the markup shows as text (JSON)", (await text(row)).includes(JSON.stringify(markup)), JSON.stringify(markup), await text(row));
  checkEqual("and did not run", await page.evaluate(() => window.pwned), undefined);
  await noHorizontalOverflow("the phone's topic page");
  await shot("4-phone");
}

/** Records the page's console errors and CSP violations (none are expected). */
function watch(p) {
  p.on("console", (m) => {
    if (m.type() === "error" && !/status of 40[13]/.test(m.text())) problems.push(m.text());
  });
  p.on("pageerror", (e) => problems.push(String(e)));
}

run(
  async () => {
    const browser = await chromium.launch({ executablePath: env.TIDINGS_CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    try {
      if (MODE === "token") await tokenMode(browser);
      else await openMode(browser);
      checkEqual("no console errors or policy violations in the page", problems, []);
    } finally {
      await browser.close();
    }
  },
  { timeoutMs: 110000, checks: MODE === "token" ? 18 : 12 },
);
