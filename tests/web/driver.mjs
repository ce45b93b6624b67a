// Browser scenarios for vessel's web console, in Debian's headless chromium driven by
// playwright-core (from web/node_modules). One browser for the whole run; each scenario gets a
// fresh context (no cookies) and page, fails on any console error or page error it did not
// expect, and may write screenshots.
//
//   node tests/web/driver.mjs --base https://127.0.0.1:8443 --password PW --shots DIR
//
// Protocol: one JSON request a line on stdin, {"scenario": NAME, "args": {...}}; one answer a line
// on stdout, "RESULT " + {"ok": true, "info": {...}} or {"ok": false, "error": "..."}. Logs go to
// stderr. tests/integration/test_web_ui.py is the client: one pytest test per scenario.

import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { mkdirSync } from "node:fs";
import readline from "node:readline";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "..", "web", "package.json"));
const { chromium } = require("playwright-core");

function arg(name, dflt) {
  const i = process.argv.indexOf("--" + name);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const BASE = arg("base");
const PASSWORD = arg("password");
const SHOTS = arg("shots");
const CHROMIUM = arg("chromium", "/usr/bin/chromium");
const STEP = 30000; // ms a single wait may take on a loaded 2-core machine
if (!BASE || !PASSWORD) throw new Error("--base and --password are needed");
if (SHOTS) mkdirSync(SHOTS, { recursive: true });

const log = (...a) => console.error("[driver]", ...a);
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // root in a container: no setuid sandbox; no GPU on this machine
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
});

// A fresh context and page that records console errors and page errors.
async function open(allowed = []) {
  const context = await browser.newContext({
    ignoreHTTPSErrors: true, // the daemon's self-signed certificate
    viewport: { width: 1280, height: 860 },
  });
  context.setDefaultTimeout(STEP);
  const page = await context.newPage();
  const errors = [];
  page.netChanges = 0;
  page.on("requestfailed", (r) => {
    if (/ERR_NETWORK_CHANGED/.test(r.failure()?.errorText || "")) page.netChanges++;
  });
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const text = m.text();
    const url = m.location()?.url || "";
    if (/ERR_NETWORK_CHANGED/.test(text)) return log(`dropped by a network change: ${url}`);
    if (allowed.some((a) => a.text.test(text) && (!a.url || a.url.test(url)))) return;
    errors.push(`console: ${text} (${url})`);
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("crash", () => errors.push("the page crashed"));
  return { context, page, errors };
}

// Chromium drops the requests in flight when the host's network changes (a link or address
// comes or goes: net::ERR_NETWORK_CHANGED). In a test's namespace the daemon adds bridges, taps
// and VXLAN links while a page loads, and a dropped script leaves the page blank, so such a load
// is done again, as a user would reload (a CI run lost the console's script so).
async function gotoApp(page, url) {
  for (let tries = 1; ; tries++) {
    const before = page.netChanges;
    try {
      await page.goto(url);
    } catch (e) {
      if (!/ERR_NETWORK_CHANGED/.test(String(e)) || tries === 3) throw e;
      page.netChanges++;
    }
    if (page.netChanges === before || tries === 3) return;
    log(`the network changed while ${url} loaded: loading it again`);
  }
}

async function shot(page, name) {
  if (!SHOTS) return;
  await page.waitForTimeout(150); // let charts draw once
  await page.screenshot({ path: join(SHOTS, name + ".png"), fullPage: true });
}

async function submitLogin(page, password = PASSWORD) {
  await page.waitForSelector("#login-form");
  await page.fill("#password", password);
  await page.click("#login-form button[type=submit]");
}

async function login(page, password = PASSWORD) {
  await gotoApp(page, BASE + "/");
  await submitLogin(page, password);
}

async function loggedIn(page) {
  await login(page);
  await page.waitForSelector("nav.side");
  await page.waitForSelector("#host-facts dd");
}

const rowOf = (page, name) => page.locator(`#guest-rows tr[data-name="${name}"]`);

async function stateOf(page) {
  return page.getAttribute("#guest-state", "data-state");
}

async function waitState(page, want) {
  await page.waitForFunction((w) => document.querySelector("#guest-state")?.dataset.state === w, want);
}

// Text the terminal shows (xterm's DOM renderer: one element per row).
async function terminalText(page) {
  return page.evaluate(() => {
    const rows = document.querySelector("#terminal .xterm-rows");
    return rows ? [...rows.children].map((r) => r.textContent).join("\n") : "";
  });
}

async function waitTerminal(page, text, timeout = STEP) {
  const t0 = Date.now();
  for (;;) {
    const s = await terminalText(page);
    if (typeof text === "string" ? s.includes(text) : text.test(s)) return s;
    if (Date.now() - t0 > timeout) throw new Error(`the terminal never showed ${JSON.stringify(text)}; it shows:\n${s}`);
    await page.waitForTimeout(100);
  }
}

// An API call from inside the page (the session's cookie goes along), with or without the token.
async function pageFetch(page, method, path, body, token) {
  return page.evaluate(
    async ({ method, path, body, token }) => {
      const headers = body ? { "Content-Type": "application/json" } : {};
      if (token !== undefined) headers["X-CSRF-Token"] = token;
      const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, text: await r.text() };
    },
    { method, path, body, token },
  );
}

const SCENARIOS = {
  // log in; the overview shows the host, the guests' counts and the pools
  async login({ page, allow }) {
    await gotoApp(page, BASE + "/guests");
    await page.waitForSelector("#login-form");
    await shot(page, "login");
    await submitLogin(page);
    // back where the user wanted to go
    await page.waitForSelector("#guest-table");
    assert(new URL(page.url()).pathname === "/guests", "not sent back to /guests after login: " + page.url());
    await page.click('nav a[href="/"]');
    await page.waitForSelector("#host-facts dd");
    await page.waitForSelector("#guest-counts .count-row");
    const facts = await page.textContent("#host-facts");
    assert(/CPUs/.test(facts), "no CPUs on the overview: " + facts);
    // the live graph gets samples from the host stats stream
    await page.waitForFunction(() => /%/.test(document.querySelector("#host-cpu")?.textContent || ""));
    await shot(page, "overview");
    // logging out ends the session: the form is back and the API refuses the old cookie
    allow(/status of 401/, /\/api\//);
    await page.click("#logout");
    await page.waitForSelector("#login-form");
    const r = await pageFetch(page, "GET", "/api/containers/json");
    assert(r.status === 401, "the API still answers after logout: " + r.status);
    return { facts };
  },

  // a VM and a container created through the API are in the table, with their states
  async guests({ page }, { vm, container }) {
    await loggedIn(page);
    await page.click('nav a[href="/guests"]');
    await rowOf(page, vm).waitFor();
    await rowOf(page, container).waitFor();
    const vmState = await rowOf(page, vm).locator("[data-state]").getAttribute("data-state");
    const ctrState = await rowOf(page, container).locator("[data-state]").getAttribute("data-state");
    // filter and sort in the page
    await page.fill("#guest-filter", container);
    await page.waitForFunction((n) => document.querySelectorAll("#guest-rows tr").length >= 1 &&
      [...document.querySelectorAll("#guest-rows tr")].every((r) => r.textContent.includes(n)), container);
    await page.fill("#guest-filter", "");
    await page.click('th[data-sort="state"]');
    assert((await page.getAttribute('th[data-sort="state"]', "aria-sort")) === "ascending", "no sort by state");
    await shot(page, "guests");
    return { vmState, ctrState };
  },

  // start a stopped container from its row and see the state change without a reload
  async start_container({ page }, { container }) {
    await loggedIn(page);
    await page.click('nav a[href="/guests"]');
    const row = rowOf(page, container);
    await row.waitFor();
    const before = await row.locator("[data-state]").getAttribute("data-state");
    assert(before !== "running", `${container} is already running`);
    await page.evaluate(() => (window.__noReload = 1));
    await row.locator('button[data-action="start"]').click();
    await page.waitForFunction((n) => document.querySelector(`#guest-rows tr[data-name="${n}"] [data-state]`)?.dataset.state === "running", container);
    assert(await page.evaluate(() => window.__noReload === 1), "the page was reloaded");
    // its page follows it too
    await row.locator("td.name a").click();
    await waitState(page, "running");
    await shot(page, "container");
    return { before };
  },

  // the VM's serial console in the page: type a command and read its output
  async vm_console({ page }, { vmId }) {
    await loggedIn(page);
    await gotoApp(page, BASE + "/vm/" + vmId);
    await waitState(page, "running");
    await page.click("#term-open");
    await page.waitForSelector("#terminal .xterm-rows");
    await page.waitForFunction(() => document.querySelector("#term-status")?.textContent === "connected");
    await page.click("#terminal");
    await page.keyboard.type("echo web-$((6*7))-console\n");
    const text = await waitTerminal(page, "web-42-console");
    // the terminal follows the element's size
    const cols0 = await page.evaluate(() => document.querySelector("#terminal .xterm-rows")?.children.length);
    await page.setViewportSize({ width: 900, height: 700 });
    await page.waitForTimeout(300);
    await page.keyboard.type("echo again-$((7*6))\n");
    await waitTerminal(page, "again-42");
    await shot(page, "vm-console");
    return { rows: cols0, tail: text.split("\n").filter((l) => l.trim()).slice(-3) };
  },

  // pause and resume the VM from its page (confirmation for the pause)
  async pause_resume({ page }, { vmId }) {
    await loggedIn(page);
    await gotoApp(page, BASE + "/vm/" + vmId);
    await waitState(page, "running");
    await page.click('#guest-actions button[data-action="pause"]');
    await page.waitForSelector("dialog.confirm[open]");
    await shot(page, "vm-pause-confirm");
    await page.click("dialog.confirm button[type=submit]");
    await waitState(page, "paused");
    await page.waitForSelector('#guest-actions button[data-action="resume"]:not([hidden])');
    await shot(page, "vm-paused");
    await page.click('#guest-actions button[data-action="resume"]');
    await waitState(page, "running");
    await shot(page, "vm");
    return {};
  },

  // create a container from the form; it runs and its page shows it
  async create_container({ page }, { image, name }) {
    await loggedIn(page);
    await page.click('a[href="/new/container"]');
    await page.waitForSelector("#new-container");
    await page.fill("#ctr-image", image);
    await page.fill("#ctr-name", name);
    await page.fill("#ctr-cmd", "sh -c 'echo made-by-the-form; exec sh'");
    await page.check("#ctr-tty");
    await shot(page, "new-container");
    await page.click("#ctr-submit");
    await page.waitForURL(/\/container\/[0-9a-f]{64}$/);
    await waitState(page, "running");
    await page.waitForFunction(() => /made-by-the-form/.test(document.querySelector("#guest-logs")?.textContent || ""));
    // its TTY in the page
    await page.click("#term-open");
    await page.waitForFunction(() => document.querySelector("#term-status")?.textContent === "connected");
    await page.click("#terminal");
    // the TTY's size is the terminal's, and follows the window
    const size = async (tag) => {
      await page.keyboard.type(`echo ${tag} $(stty size) ${tag}\n`);
      // (xterm's rows may hold no-break spaces: \s matches them)
      const rx = new RegExp(`${tag}\\s+(\\d+)\\s+(\\d+)\\s+${tag}`);
      const m = (await waitTerminal(page, rx)).match(rx);
      return [Number(m[1]), Number(m[2])];
    };
    const s0 = await size("sz1");
    await page.setViewportSize({ width: 860, height: 760 });
    await page.waitForTimeout(400);
    const s1 = await size("sz2");
    await shot(page, "container-terminal");
    return { url: page.url(), sizes: [s0, s1] };
  },

  // a wrong password is refused, and the API stays closed
  async wrong_password({ page, allow }) {
    allow(/status of 401/, /\/web\/login$/);
    await login(page, PASSWORD + "-wrong");
    await page.waitForFunction(() => (document.querySelector("#login-error")?.textContent || "").length > 0);
    const msg = await page.textContent("#login-error");
    assert(/wrong password/.test(msg), "no 'wrong password': " + msg);
    assert(await page.isVisible("#login-form"), "the login form went away");
    const r = await page.request.get(BASE + "/api/containers/json");
    assert(r.status() === 401, "the API answered without a session: " + r.status());
    return { message: msg };
  },

  // an action without the CSRF token (or with a wrong one) is refused; the websocket too
  async csrf({ page, allow }, { container }) {
    allow(/status of 403/);
    allow(/WebSocket connection to .* failed/);
    await loggedIn(page);
    const body = { Image: "busybox:latest", Cmd: ["true"] };
    const none = await pageFetch(page, "POST", "/api/containers/create?name=csrf-none", body);
    const wrong = await pageFetch(page, "POST", "/api/containers/create?name=csrf-wrong", body, "0".repeat(64));
    const stop = await pageFetch(page, "POST", `/api/containers/${container}/stop`, undefined);
    for (const [what, r] of [["none", none], ["wrong", wrong], ["stop", stop]])
      assert(r.status === 403 && /CSRF/.test(r.text), `${what}: ${r.status} ${r.text}`);
    const ws = await page.evaluate((c) => new Promise((res) => {
      const s = new WebSocket(`wss://${location.host}/api/ws/containers/${c}/attach`);
      s.onopen = () => res("open");
      s.onclose = (e) => res("closed " + e.code);
    }), container);
    assert(ws !== "open", "a websocket opened without the token");
    // with the token the same request goes through
    const list = await pageFetch(page, "GET", "/api/containers/json?all=1");
    assert(list.status === 200, `the list after the refusals: ${list.status} ${list.text}`);
    assert(!list.text.includes("csrf-none") && !list.text.includes("csrf-wrong"), "a refused create made a container");
    return { none: none.status, wrong: wrong.status, ws };
  },

  // an expired session is refused: the page goes back to the login form and says why
  async session_expired({ page, allow }, { ttl }) {
    allow(/status of 401/);
    await loggedIn(page);
    await page.click('nav a[href="/guests"]');
    await page.waitForSelector("#guest-table");
    await page.waitForTimeout((ttl + 1.5) * 1000);
    await page.click('nav a[href="/images"]');
    await page.waitForSelector("#login-form");
    const msg = await page.textContent("#login-error");
    assert(/expired/.test(msg), "the login page does not say the session expired: " + msg);
    await shot(page, "session-expired");
    const r = await pageFetch(page, "GET", "/api/containers/json");
    assert(r.status === 401, "the expired session still works: " + r.status);
    return { message: msg };
  },

  // HTML and script in a guest's labels, command and output are shown as text
  async xss({ page }, { container, payloads }) {
    await loggedIn(page);
    await page.click('nav a[href="/guests"]');
    await rowOf(page, container).waitFor();
    await rowOf(page, container).locator("td.name a").click();
    await page.waitForSelector("#guest-labels table");
    await page.waitForFunction((p) => (document.querySelector("#guest-logs")?.textContent || "").includes(p), payloads[0]);
    const labels = await page.textContent("#guest-labels");
    for (const p of payloads) assert(labels.includes(p) || (await page.textContent("#guest-details")).includes(p), "not shown as text: " + p);
    assert((await page.locator("#guest-labels img, #guest-labels script, #guest-details img, #guest-logs img, #guest-logs b").count()) === 0, "markup from the guest became elements");
    await page.click('nav a[href="/events"]');
    await page.waitForSelector("#event-rows tr");
    await shot(page, "events");
    await page.click('nav a[href="/guests"]');
    await page.fill("#guest-filter", "<img");
    await page.waitForTimeout(200);
    const fired = await page.evaluate(() => window.__xss);
    assert(fired === undefined, "a payload ran: " + fired);
    return { labels };
  },

  // every page renders without errors; screenshots of each
  // the table shows what the daemon knows of each guest: a VM's pool and the address its DHCP
  // leases it, a container's CPU and memory limits
  async guest_columns({ page }, { vm, pool, address, container, cpus, memory }) {
    await loggedIn(page);
    await page.click('nav a[href="/guests"]');
    const cells = async (name) => {
      await rowOf(page, name).waitFor();
      return rowOf(page, name).locator("td").allTextContents();
    };
    // columns: name, kind, state, pool, address, CPUs, memory, image
    const v = await cells(vm);
    assert(v[3] === pool, `the VM's pool shows ${JSON.stringify(v[3])}, not ${pool}`);
    assert(v[4] === address, `the VM's address shows ${JSON.stringify(v[4])}, not ${address}`);
    const c = await cells(container);
    assert(c[5] === cpus && c[6] === memory, `the container's limits show ${c[5]} / ${c[6]}, not ${cpus} / ${memory}`);
    // sorting by address works on the new values
    await page.click('th[data-sort="address"]');
    await shot(page, "guests-columns");
    return { vm: v, container: c };
  },

  // a VM's graphs come from one stats stream (no request a second); migration is offered only
  // in a cluster: here the button shows, disabled, and says why
  async vm_stats_migrate({ page }, { vmId }) {
    const statsRequests = [];
    page.on("request", (r) => {
      if (/\/vessel\/v1\/vms\/[^/]+\/stats/.test(r.url())) statsRequests.push(new URL(r.url()).search);
    });
    await loggedIn(page);
    await gotoApp(page, BASE + "/vm/" + vmId);
    await page.waitForSelector("#guest-details dl");
    // samples reach the graphs: the memory legend shows a size
    await page.waitForFunction(() => /\d (KiB|MiB|GiB)/.test(document.querySelector("#guest-charts")?.textContent || ""));
    await page.waitForTimeout(3500);
    assert(statsRequests.length === 1 && statsRequests[0] === "?stream=1",
      "stats were not read as one stream: " + JSON.stringify(statsRequests));
    const cpuLegend = await page.textContent("#guest-charts");
    const btn = page.locator('#guest-actions button[data-action="migrate"]');
    await btn.waitFor();
    assert(await btn.isDisabled(), "Migrate is enabled outside a cluster");
    const title = await btn.getAttribute("title");
    assert(/not in a cluster/.test(title || ""), "Migrate's tooltip does not say why: " + title);
    await shot(page, "vm-stats");
    return { requests: statsRequests, legend: cpuLegend, title };
  },

  // a reload after the session expired shows the login form saying so, without an error in the
  // console (asking whether a session lives is not refused with a 401)
  async reload_after_expiry({ page }, { ttl }) {
    await loggedIn(page);
    await page.waitForTimeout((ttl + 1.5) * 1000);
    await page.reload();
    await page.waitForSelector("#login-form");
    const msg = await page.textContent("#login-error");
    assert(/expired/.test(msg), "the login form does not say the session expired: " + msg);
    await submitLogin(page);
    await page.waitForSelector("#host-facts dd");
    return { message: msg };
  },

  // in a cluster: Migrate offers the other ready nodes, confirms in its chooser, posts
  // {"Node": ...} and shows the daemon's answer (its refusal is a provoked error)
  async migrate_in_cluster({ page, allow }, { vmId, target }) {
    allow(/status of (400|404|409|500|503)/, /\/migrate/);
    let body = null;
    page.on("request", (r) => {
      if (r.method() === "POST" && /\/migrate$/.test(new URL(r.url()).pathname)) body = r.postData();
    });
    await loggedIn(page);
    await gotoApp(page, BASE + "/vm/" + vmId);
    const btn = page.locator('#guest-actions button[data-action="migrate"]');
    await btn.waitFor();
    assert(!(await btn.isDisabled()), "Migrate is disabled in a cluster: " + (await btn.getAttribute("title")));
    await btn.click();
    const sel = page.locator("dialog.confirm select");
    await sel.waitFor();
    const options = await sel.locator("option").allTextContents();
    await sel.selectOption(target);
    await shot(page, "vm-migrate");
    await page.click("dialog.confirm button[type=submit]");
    const toast = page.locator("#toasts .toast").first();
    await toast.waitFor();
    return { options, body: body && JSON.parse(body), outcome: await toast.textContent() };
  },

  // the pools page shows each pool's live use beside its limit and requests: what the page
  // shows must be what the API answered it (every answer of the pool's stats is kept)
  async pool_use({ page }, { pool }) {
    const answers = [];
    page.on("response", async (r) => {
      if (!r.url().endsWith("/vessel/v1/pools/" + pool + "/stats") || !r.ok()) return;
      const st = await r.json();
      answers.push({ cpu: st.Cpu.Percent, cpuPool: st.Cpu.PoolPercent, memory: st.Memory.Usage, memoryPool: st.Memory.PoolPercent });
    });
    await loggedIn(page);
    await gotoApp(page, BASE + "/pools");
    const row = page.locator(`#pools-rows tr[data-key="${pool}"]`);
    const mem = row.locator('[data-use="memory"][data-value]');
    const cpu = row.locator('[data-use="cpu"][data-value]');
    await mem.waitFor();
    await cpu.waitFor();
    // the values and texts of one sample (a refresh comes five seconds later at the earliest)
    const shown = await row.evaluate((tr) => {
      const m = tr.querySelector('[data-use="memory"]'), c = tr.querySelector('[data-use="cpu"]');
      return { memory: Number(m.dataset.value), memoryText: m.textContent, cpu: Number(c.dataset.value), cpuText: c.textContent, cells: [...tr.querySelectorAll("td")].map((td) => td.textContent) };
    });
    for (let i = 0; i < STEP / 100 && !answers.length; i++) await page.waitForTimeout(100); // its body read
    await shot(page, "pools-use");
    return { shown, answers };
  },

  async pages({ page }, { vmId }) {
    await loggedIn(page);
    const visits = [
      ["/images", "#images-table", "images"],
      ["/networks", "#networks-table", "networks"],
      ["/volumes", "#volumes-table", "volumes"],
      ["/pools", "#pools-table", "pools"],
      ["/events", "#events-table", "events-page"],
      ["/new/vm", "#new-vm", "new-vm"],
      ["/vm/" + vmId, "#guest-details dl", "vm-details"],
    ];
    for (const [path, sel, name] of visits) {
      await gotoApp(page, BASE + path);
      await page.waitForSelector(sel);
      await shot(page, name);
    }
    await gotoApp(page, BASE + "/pools");
    await page.fill('#pool-form input[name="name"]', "web-pool");
    await page.fill('#pool-form input[name="cpus"]', "2");
    await page.fill('#pool-form input[name="memory"]', "1G");
    await page.click("#pool-form button[type=submit]");
    await page.waitForSelector('#pools-rows tr[data-key="web-pool"]');
    await gotoApp(page, BASE + "/");
    await page.waitForSelector('#pools-box tr[data-pool="web-pool"]');
    await shot(page, "overview-pools");
    return { pages: visits.length };
  },
};

async function run(req) {
  const fn = SCENARIOS[req.scenario];
  if (!fn) return { ok: false, error: "no scenario " + req.scenario };
  const allowed = [];
  const { context, page, errors } = await open(allowed);
  const allow = (text, url) => allowed.push({ text, url });
  const t0 = Date.now();
  try {
    const info = await fn({ page, context, allow }, req.args || {});
    await page.waitForTimeout(100); // errors of the last step
    if (errors.length) return { ok: false, error: "browser errors:\n" + errors.join("\n"), info };
    return { ok: true, info, ms: Date.now() - t0 };
  } catch (e) {
    const name = "failed-" + req.scenario;
    await shot(page, name).catch(() => {});
    return { ok: false, error: String(e && e.stack || e) + (errors.length ? "\nbrowser errors:\n" + errors.join("\n") : ""), screenshot: name };
  } finally {
    await context.close().catch(() => {});
  }
}

const rl = readline.createInterface({ input: process.stdin });
process.stdout.write("READY\n");
for await (const line of rl) {
  if (!line.trim()) continue;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    process.stdout.write("RESULT " + JSON.stringify({ ok: false, error: "bad request: " + e.message }) + "\n");
    continue;
  }
  log("scenario", req.scenario);
  const res = await run(req);
  process.stdout.write("RESULT " + JSON.stringify(res) + "\n");
}
await browser.close();
