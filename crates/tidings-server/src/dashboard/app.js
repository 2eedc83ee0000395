// The tidings durable-topics dashboard (served at /dashboard, embedded in the binary).
//
// Everything it shows and does goes through the /v1 HTTP API of the server that served it
// (same origin; the Content-Security-Policy allows nothing else). Data is always inserted as
// text (textContent), never as markup. Polling, each bounded and stopped when its view
// closes: /v1/stats every 2 s (server counters and their sparklines), the current topics page
// every 5 s, a topic or subscription every 3 s, and a topic's live tail every 1 s (history
// from the last offset seen, at most 100 messages a request).
"use strict";

(() => {
  const TOKEN_KEY = "tidings.dashboard.token";
  const PAGE_SIZE = 50;
  const STATS_MS = 2000;
  const TOPICS_MS = 5000;
  const TOPIC_MS = 3000;
  const TAIL_MS = 1000;
  const TAIL_BATCH = 100;
  const TAIL_ROWS = 200;
  const SAMPLES = 60; // 2 minutes of /v1/stats
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  /** An element: attributes (`class`, `text`, `on<event>` handlers, others as attributes), children. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // ---- the API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
    /** Whether signing in (again) is the remedy: no token, a bad one, or not an admin's. */
    get isAuth() {
      return this.status === 401 || (this.status === 403 && this.code === "forbidden");
    }
    toString() {
      return this.status ? `${this.status} ${this.code}: ${this.message}` : this.message;
    }
  }

  async function api(method, path, body) {
    const headers = { accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "network", `the server did not answer (${e.message})`);
    }
    let json = null;
    try {
      json = await res.json();
    } catch {
      json = null;
    }
    if (!res.ok) {
      const err = (json && json.error) || {};
      throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || res.statusText);
    }
    return json;
  }

  const seg = (s) => encodeURIComponent(s);

  // ---- formatting ------------------------------------------------------------------------

  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  function duration(ms) {
    if (ms === null || ms === undefined) return "n/a";
    if (ms < 1000) return `${ms} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${(s / 60).toFixed(1)} min`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} d`;
  }
  const time = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  const bytes = (n) => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  };
  function short(value, max) {
    const text = JSON.stringify(value);
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  // ---- status line, sign-in ----------------------------------------------------------------

  function status(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", !!isError);
  }

  /** Shows an API failure: sign-in for 401/403, else the status line. */
  function failed(err) {
    if (err instanceof ApiError && err.isAuth) {
      signIn(err);
      return;
    }
    status(String(err), true);
  }

  function signIn(err) {
    stopAll();
    $("server").hidden = true;
    $("view").replaceChildren();
    $("login").hidden = false;
    $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
    let reason = "This server verifies tokens: sign in with an admin token.";
    if (err && err.status === 401) {
      reason = sessionStorage.getItem(TOKEN_KEY)
        ? `The server refused the token (${err}). Sign in with a valid admin token.`
        : `The API answered ${err}. This server verifies tokens: sign in with an admin token.`;
    } else if (err && err.status === 403) {
      reason = `The API answered ${err}. The dashboard needs an admin token.`;
    }
    $("login-reason").textContent = reason;
    status(err ? `${err.status} ${err.code}` : "", true);
    $("token").focus();
  }

  // ---- timers ----------------------------------------------------------------------------

  /** Runs `tick` now and then every `ms` while its owner lives; never two at a time. */
  function every(ms, tick) {
    let stopped = false;
    let timer = null;
    const run = async () => {
      if (stopped) return;
      try {
        await tick();
      } catch (e) {
        failed(e);
      }
      if (!stopped) timer = setTimeout(run, ms);
    };
    run();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  let viewTimers = [];
  let statsTimer = null;
  function stopView() {
    viewTimers.forEach((stop) => stop());
    viewTimers = [];
  }
  function stopAll() {
    stopView();
    if (statsTimer) statsTimer();
    statsTimer = null;
  }

  // ---- server counters with sparklines ---------------------------------------------------

  // [field of /v1/stats, label, kind]: gauge (the value), rate (per second between samples),
  // total (the counter; the sparkline shows its increase per sample).
  const SERIES = [
    ["connections", "Connections", "gauge"],
    ["sessions", "Sessions", "gauge"],
    ["published", "Published /s", "rate"],
    ["delivered", "Delivered /s", "rate"],
    ["acked", "Acked /s", "rate"],
    ["requeued", "Requeued /s", "rate"],
    ["deadLettered", "Dead-lettered", "total"],
    ["storeErrors", "Store errors", "total"],
    ["packetsIn", "Packets in /s", "rate"],
    ["packetsOut", "Packets out /s", "rate"],
    ["bytesIn", "Bytes in /s", "rate"],
    ["bytesOut", "Bytes out /s", "rate"],
    ["slowClientDisconnects", "Slow-client disconnects", "total"],
    ["rateLimitedEvents", "Rate-limited events", "total"],
  ];
  const history = new Map(); // field -> [points]
  let lastStats = null;

  function sparkline(points) {
    const w = 120;
    const h = 28;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark");
    svg.setAttribute("aria-hidden", "true");
    // The baseline spans the 2 minutes; the line grows from the right as samples come.
    const base = document.createElementNS(SVG, "line");
    for (const [k, v] of [["x1", 0], ["y1", h - 0.5], ["x2", w], ["y2", h - 0.5]]) base.setAttribute(k, String(v));
    svg.append(base);
    if (points.length >= 2) {
      const max = Math.max(...points, 1e-9);
      const step = w / (SAMPLES - 1);
      const x0 = w - step * (points.length - 1);
      const coords = points.map((p, i) => `${(x0 + i * step).toFixed(1)},${(h - 1 - (p / max) * (h - 2)).toFixed(1)}`);
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", coords.join(" "));
      svg.append(line);
    }
    return svg;
  }

  function showStats(stats) {
    const now = performance.now();
    const cards = [];
    for (const [field, label, kind] of SERIES) {
      if (!(field in stats)) continue;
      const value = Number(stats[field]);
      const points = history.get(field) || [];
      let shown = value;
      if (kind === "gauge") {
        points.push(value);
      } else if (lastStats && field in lastStats.values) {
        const delta = Math.max(0, value - lastStats.values[field]);
        const secs = Math.max(0.001, (now - lastStats.at) / 1000);
        points.push(kind === "rate" ? delta / secs : delta);
        if (kind === "rate") shown = delta / secs;
      } else if (kind === "rate") {
        shown = null;
      }
      while (points.length > SAMPLES) points.shift();
      history.set(field, points);
      const text = shown === null ? "…" : field.startsWith("bytes") ? `${bytes(Math.round(shown))}` : num(Math.round(shown * 10) / 10);
      cards.push(
        el("div", { class: "spark-card", "data-testid": `stat-${field}` },
          el("span", { class: "label", text: label }),
          el("span", { class: "value", text }),
          sparkline(points)),
      );
    }
    lastStats = { at: now, values: Object.fromEntries(SERIES.map(([f]) => [f, Number(stats[f])])) };
    $("sparks").replaceChildren(...cards);
  }

  function startStats() {
    if (statsTimer) return;
    statsTimer = every(STATS_MS, async () => {
      showStats(await api("GET", "/v1/stats"));
    });
  }

  // ---- shared pieces ---------------------------------------------------------------------

  function figures(pairs) {
    return el("dl", { class: "figures" },
      pairs.map(([label, value, id, title]) =>
        el("div", { class: "figure", "data-testid": id ? `figure-${id}` : null, title },
          el("dt", { text: label }), el("dd", { text: value }))));
  }

  const SUB_COLUMNS = [
    ["pending", "Pending", "not settled yet: in flight, waiting for a retry, or never delivered"],
    ["inFlight", "In flight", "handed to a consumer, not acknowledged yet"],
    ["dead", "Dead", "dead-lettered and not requeued"],
    ["gaps", "Gaps", "unsettled messages that retention removed"],
    ["lagMs", "Lag", "age of the oldest unsettled message"],
  ];
  function subCells(sub) {
    return SUB_COLUMNS.map(([field]) =>
      el("td", { class: `n ${field === "dead" && sub[field] > 0 ? "bad" : ""}`, "data-field": field },
        field === "lagMs" ? duration(sub[field]) : num(sub[field])));
  }
  function subHeaders() {
    return SUB_COLUMNS.map(([, label, title]) => el("th", { class: "n", title, text: label }));
  }
  const topicLink = (topic) => el("a", { href: `#/topic/${seg(topic)}`, text: topic });
  const subLink = (topic, sub) => el("a", { href: `#/topic/${seg(topic)}/sub/${seg(sub)}`, text: sub });

  function table(head, rows, testid) {
    return el("div", { class: "scroll" },
      el("table", { "data-testid": testid }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows)));
  }

  // ---- view: topics (paged) --------------------------------------------------------------

  const topicsState = { prefix: "", cursors: [""] };

  function topicsView() {
    const view = $("view");
    const filter = el("input", { id: "prefix", type: "search", placeholder: "topic name starts with…", value: topicsState.prefix, "aria-label": "Filter topics by prefix" });
    const body = el("div", {});
    const counter = el("span", { class: "hint", "data-testid": "topics-range" });
    const prev = el("button", { type: "button", class: "quiet", text: "← Previous" });
    const next = el("button", { type: "button", class: "quiet", text: "Next →" });
    view.replaceChildren(
      el("h1", { text: "Topics" }),
      el("form", { class: "row", onsubmit: (e) => { e.preventDefault(); topicsState.prefix = filter.value.trim(); topicsState.cursors = [""]; load(); } },
        filter, el("button", { type: "submit", text: "Filter" })),
      body,
      el("div", { class: "row pager" }, prev, counter, next),
    );
    let page = null;
    prev.addEventListener("click", () => { if (topicsState.cursors.length > 1) { topicsState.cursors.pop(); load(); } });
    next.addEventListener("click", () => { if (page && page.next) { topicsState.cursors.push(page.next); load(); } });

    async function load() {
      const after = topicsState.cursors[topicsState.cursors.length - 1];
      const q = `limit=${PAGE_SIZE}&after=${seg(after)}&prefix=${seg(topicsState.prefix)}`;
      page = await api("GET", `/v1/topics?${q}`);
      const start = (topicsState.cursors.length - 1) * PAGE_SIZE;
      counter.textContent = page.total === 0 ? "no topics" : `${num(start + 1)}–${num(start + page.topics.length)} of ${num(page.total)}`;
      prev.disabled = topicsState.cursors.length <= 1;
      next.disabled = !page.next;
      const rows = [];
      for (const t of page.topics) {
        const subs = t.subscriptions.length ? t.subscriptions : [null];
        subs.forEach((sub, i) => {
          const cells = [];
          if (i === 0) {
            const span = subs.length;
            cells.push(el("th", { scope: "row", rowspan: span }, topicLink(t.topic)));
            cells.push(el("td", { class: "n", rowspan: span, "data-field": "head" }, num(t.head)));
            cells.push(el("td", { class: "n", rowspan: span, "data-field": "retained" }, num(t.retained)));
          }
          if (sub) {
            cells.push(el("td", { "data-field": "subscription" }, subLink(t.topic, sub.name)), ...subCells(sub));
          } else {
            cells.push(el("td", { class: "hint", colspan: 1 + SUB_COLUMNS.length, text: "no subscriptions" }));
          }
          rows.push(el("tr", { "data-topic": t.topic, "data-sub": sub ? sub.name : null, class: i === 0 ? "first" : null }, cells));
        });
      }
      body.replaceChildren(
        page.topics.length
          ? table([el("th", { text: "Topic" }), el("th", { class: "n", text: "Head" }), el("th", { class: "n", text: "Retained" }), el("th", { text: "Subscription" }), ...subHeaders()], rows, "topics")
          : el("p", { class: "hint", text: topicsState.prefix ? `No topic starts with “${topicsState.prefix}”.` : "No topics yet: publish to create one." }),
      );
      status(`updated ${new Date().toLocaleTimeString()}`);
    }
    viewTimers.push(every(TOPICS_MS, load));
  }

  // ---- dead letters (a topic's, or one subscription's) -----------------------------------

  function deadLetters(topic, onlySub, refresh) {
    const box = el("div", {});
    async function load() {
      const { deadLetters: all } = await api("GET", `/v1/topics/${seg(topic)}/dead-letters`);
      const letters = onlySub ? all.filter((d) => d.subscription === onlySub) : all;
      if (!letters.length) {
        box.replaceChildren(el("p", { class: "hint", "data-testid": "no-dead-letters", text: "No dead letters." }));
        return;
      }
      const rows = [];
      for (const d of letters) {
        const detail = el("tr", { class: "detail", hidden: true },
          el("td", { colspan: 7 }, el("pre", { "data-testid": `dead-detail-${d.id}`, text: JSON.stringify(d, null, 2) })));
        const result = el("span", { class: "hint" });
        const inspect = el("button", { type: "button", class: "quiet", text: "Inspect", onclick: () => { detail.hidden = !detail.hidden; } });
        const requeue = el("button", {
          type: "button",
          text: "Requeue",
          title: "Put it back into its subscription's queue as a fresh delivery",
          onclick: async () => {
            requeue.disabled = true;
            try {
              await api("POST", `/v1/topics/${seg(topic)}/dead-letters/${seg(d.id)}/requeue`, {});
              result.textContent = "requeued";
              status(`requeued ${d.id}`);
              await refresh();
            } catch (e) {
              requeue.disabled = false;
              result.textContent = String(e);
              failed(e);
            }
          },
        });
        rows.push(el("tr", { "data-dead": d.id },
          el("td", { class: "n", text: num(d.offset) }),
          el("td", { class: "id", text: d.id }),
          el("td", { text: d.event }),
          el("td", {}, subLink(topic, d.subscription)),
          el("td", { class: "n", text: num(d.attempts) }),
          el("td", { text: time(d.deadAt) }),
          el("td", { class: "actions" }, el("div", { class: "buttons" }, inspect, requeue, result))));
        rows.push(detail);
      }
      box.replaceChildren(table(
        ["Offset", "Id", "Event", "Subscription", "Attempts", "Dead since", ""].map((h, i) => el("th", { class: i === 0 || i === 4 ? "n" : null, text: h })),
        rows, "dead-letters"));
    }
    return { box, load };
  }

  // ---- view: one topic -------------------------------------------------------------------

  function topicView(topic) {
    const view = $("view");
    const top = el("div", {});
    const subs = el("div", {});
    const dead = deadLetters(topic, null, () => refresh());
    const tail = liveTail(topic);
    const publish = publishForm(topic, () => refresh());
    view.replaceChildren(
      el("p", { class: "crumbs" }, el("a", { href: "#/", text: "Topics" }), " / "),
      el("h1", { "data-testid": "topic-name", text: topic }),
      top,
      el("h2", { text: "Subscriptions" }), subs,
      el("h2", { text: "Dead letters" }), dead.box,
      el("div", { class: "split" },
        el("section", {}, el("h2", { text: "Publish" }), publish),
        el("section", {}, el("h2", {}, "Live tail ", el("span", { class: "hint", text: `(history from the last offset, every ${TAIL_MS / 1000} s)` })), tail.box)),
    );
    async function refresh() {
      let info;
      try {
        info = await api("GET", `/v1/topics/${seg(topic)}`);
      } catch (e) {
        if (e.status === 404) {
          tail.seed({ first: 1, head: 0 });
          top.replaceChildren(el("p", { class: "hint", text: "No such topic yet: publishing to it creates it." }));
          subs.replaceChildren();
          return;
        }
        throw e;
      }
      top.replaceChildren(figures([
        ["Head", num(info.head), "head", "offset of the newest message"],
        ["First retained", num(info.first), "first", "offset of the oldest retained message"],
        ["Retained", num(info.retained), "retained", "messages kept by retention"],
        ["Retained bytes", bytes(info.retainedBytes), "retained-bytes", "payload bytes kept"],
      ]));
      tail.seed(info);
      subs.replaceChildren(info.subscriptions.length
        ? table([el("th", { text: "Subscription" }), ...subHeaders(), el("th", { class: "n", text: "Cursor", title: "next offset never handed out" })],
          info.subscriptions.map((s) => el("tr", { "data-sub": s.name },
            el("td", {}, subLink(topic, s.name)), ...subCells(s), el("td", { class: "n", text: num(s.cursor) }))),
          "subscriptions")
        : el("p", { class: "hint", text: "No subscriptions." }));
      await dead.load();
      status(`updated ${new Date().toLocaleTimeString()}`);
    }
    viewTimers.push(every(TOPIC_MS, refresh));
    viewTimers.push(every(TAIL_MS, tail.poll));
  }

  function publishForm(topic, onStored) {
    const event = el("input", { id: "pub-event", name: "event", required: true, value: "message", autocomplete: "off" });
    const data = el("textarea", { id: "pub-data", name: "data", rows: 4, spellcheck: "false" });
    data.value = "{}";
    const key = el("input", { id: "pub-key", name: "key", autocomplete: "off", placeholder: "optional" });
    const result = el("p", { class: "hint", "data-testid": "publish-result", role: "status" });
    const form = el("form", { class: "stack", "data-testid": "publish-form" },
      el("label", { for: "pub-event", text: "Event" }), event,
      el("label", { for: "pub-data", text: "Data (JSON)" }), data,
      el("label", { for: "pub-key", text: "Idempotency key" }), key,
      el("button", { type: "submit", text: "Publish" }), result);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = { event: event.value.trim() };
      if (data.value.trim()) {
        try {
          body.data = JSON.parse(data.value);
        } catch (err) {
          result.textContent = `Data is not JSON: ${err.message}`;
          result.classList.add("bad");
          return;
        }
      }
      if (key.value.trim()) body.key = key.value.trim();
      try {
        const stored = await api("POST", `/v1/topics/${seg(topic)}/messages`, body);
        result.classList.remove("bad");
        result.textContent = stored.duplicate
          ? `Duplicate of offset ${stored.offset} (id ${stored.id}): nothing stored`
          : `Stored at offset ${stored.offset} (id ${stored.id})`;
        await onStored();
      } catch (err) {
        result.textContent = String(err);
        result.classList.add("bad");
        if (err instanceof ApiError && err.status === 401) failed(err);
      }
    });
    return form;
  }

  function liveTail(topic) {
    const rows = el("tbody", {});
    const paused = el("input", { type: "checkbox", id: "tail-pause" });
    const box = el("div", {},
      el("label", { class: "inline" }, paused, " pause"),
      el("div", { class: "scroll tail" },
        el("table", { "data-testid": "tail" },
          el("thead", {}, el("tr", {}, ["Offset", "Published", "Event", "Data"].map((h, i) => el("th", { class: i === 0 ? "n" : null, text: h })))),
          rows)));
    let next = null; // the next offset to ask for
    return {
      box,
      /** Starts the tail at the newest 20 retained messages (once). */
      seed(info) {
        if (next === null) next = Math.max(info.first, info.head - 19, 1);
      },
      async poll() {
        if (next === null || paused.checked) return;
        const { messages } = await api("GET", `/v1/topics/${seg(topic)}/messages?from=${next}&limit=${TAIL_BATCH}`);
        for (const m of messages) {
          rows.prepend(el("tr", { "data-offset": m.offset },
            el("td", { class: "n", text: num(m.offset) }),
            el("td", { text: time(m.publishedAt) }),
            el("td", { text: m.event }),
            el("td", { class: "data", title: JSON.stringify(m.data), text: short(m.data, 120) })));
          next = m.offset + 1;
        }
        while (rows.children.length > TAIL_ROWS) rows.lastElementChild.remove();
      },
    };
  }

  // ---- view: one subscription ------------------------------------------------------------

  function subscriptionView(topic, name) {
    const view = $("view");
    const top = el("div", {});
    const dead = deadLetters(topic, name, () => refresh());
    view.replaceChildren(
      el("p", { class: "crumbs" }, el("a", { href: "#/", text: "Topics" }), " / ", topicLink(topic), " / "),
      el("h1", { "data-testid": "subscription-name", text: name }),
      top,
      el("h2", { text: "Dead letters" }), dead.box,
    );
    async function refresh() {
      const info = await api("GET", `/v1/topics/${seg(topic)}`);
      const s = info.subscriptions.find((x) => x.name === name);
      if (!s) {
        top.replaceChildren(el("p", { class: "hint", text: `No subscription ${name} on ${topic} (or not yours to see).` }));
        return;
      }
      top.replaceChildren(figures([
        ...SUB_COLUMNS.map(([field, label, title]) => [label, field === "lagMs" ? duration(s[field]) : num(s[field]), field, title]),
        ["Cursor", num(s.cursor), "cursor", "next offset never handed out"],
        ["Topic head", num(info.head), "head", "offset of the newest message"],
        ["Behind head", num(Math.max(0, info.head + 1 - s.cursor)), "behind", "messages published and not handed out yet"],
      ]));
      await dead.load();
      status(`updated ${new Date().toLocaleTimeString()}`);
    }
    viewTimers.push(every(TOPIC_MS, refresh));
  }

  // ---- routing, start ----------------------------------------------------------------------

  function route() {
    stopView();
    let parts;
    try {
      parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    } catch {
      parts = [];
    }
    if (parts[0] === "topic" && parts[1] && parts[2] === "sub" && parts[3]) subscriptionView(parts[1], parts[3]);
    else if (parts[0] === "topic" && parts[1]) topicView(parts[1]);
    else topicsView();
  }

  async function start() {
    try {
      // Admin only when tokens are verified: the gate of the whole page.
      await api("GET", "/v1/stats");
    } catch (e) {
      failed(e);
      return;
    }
    $("login").hidden = true;
    $("server").hidden = false;
    $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
    startStats();
    route();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      start();
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      signIn(null);
    });
    window.addEventListener("hashchange", () => {
      if ($("login").hidden) route();
    });
    start();
  });
})();
