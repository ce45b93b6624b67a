// Measures the web console in headless chromium (see bench/web/run): first-load bytes, the guest
// table's render of N rows, and input-to-next-frame times of filter and sort.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "..", "web", "package.json"));
const { chromium } = require("playwright-core");
const arg = (k, d) => {
  const i = process.argv.indexOf("--" + k);
  return i > 0 ? process.argv[i + 1] : d;
};
const BASE = arg("base");
const N = Number(arg("guests", "500"));
const ROUNDS = Number(arg("rounds", "20"));
const info = JSON.parse(readFileSync(arg("build-info"), "utf8"));

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const fmt = (a) => `median ${median(a).toFixed(1)} ms, worst ${Math.max(...a).toFixed(1)} ms (${a.length} runs)`;

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
const page = await ctx.newPage();
const errors = [];
page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
page.on("pageerror", (e) => errors.push(e.message));

// bytes on the wire, compressed (what the server sent, bodies), per load
const bytes = () => page.evaluate(() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource").filter((r) => !r.name.includes("/api/") && !r.name.includes("/web/"));
  return { body: (nav?.encodedBodySize || 0) + res.reduce((a, r) => a + r.encodedBodySize, 0), transfer: (nav?.transferSize || 0) + res.reduce((a, r) => a + r.transferSize, 0), files: 1 + res.length };
});
await page.goto(BASE + "/");
await page.waitForSelector("#login-form");
const first = await bytes();
await page.fill("#password", arg("password"));
await page.click("#login-form button[type=submit]");
await page.waitForSelector("#host-facts dd");
const afterLogin = await bytes();

// the Guests link to N rows on screen
const loads = [];
for (let i = 0; i < 5; i++) {
  await page.click('nav a[href="/"]');
  await page.waitForSelector("#host-facts");
  const t = await page.evaluate(async (n) => {
    const t0 = performance.now();
    document.querySelector('nav a[href="/guests"]').click();
    for (;;) {
      await new Promise((r) => requestAnimationFrame(r));
      if (document.querySelector("#guest-count")?.textContent === `${n} of ${n}`) break;
    }
    await new Promise((r) => setTimeout(r, 0));
    return performance.now() - t0;
  }, N);
  loads.push(t);
}

// input → the next frame painted (rAF, then a task after it: the frame is done)
async function interact(fn) {
  return page.evaluate(async (src) => {
    const f = new Function(src);
    const t0 = performance.now();
    f();
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t0;
  }, fn);
}
const filterTimes = [];
const sortTimes = [];
const words = ["guest-1", "db", "guest-04", "cache", "guest-2", ""];
for (let i = 0; i < ROUNDS; i++) {
  const w = words[i % words.length];
  filterTimes.push(await interact(`const f = document.querySelector("#guest-filter"); f.value = ${JSON.stringify(w)}; f.dispatchEvent(new Event("input"));`));
}
await interact(`const f = document.querySelector("#guest-filter"); f.value = ""; f.dispatchEvent(new Event("input"));`);
const cols = ["name", "state", "memory", "image", "name"];
for (let i = 0; i < ROUNDS; i++) {
  sortTimes.push(await interact(`document.querySelector('th[data-sort="${cols[i % cols.length]}"]').click();`));
}
const rows = await page.evaluate(() => document.querySelector("#guest-count")?.textContent);
const inDom = await page.evaluate(() => document.querySelectorAll("#guest-rows tr:not(.spacer)").length);
await browser.close();

console.log(`chromium ${browser.version?.() || ""}`.trim());
console.log(`first load (login page): ${first.body} bytes compressed bodies (${first.transfer} with headers, ${first.files} files)`);
console.log(`after login (overview): ${afterLogin.body} bytes compressed bodies (${afterLogin.files} files)`);
console.log(`build: first load ${info.firstLoadGzipBytes} bytes gzip; everything (terminal chunk included) ${info.allGzipBytes} bytes gzip`);
console.log(`guest table, ${rows} guests (${inDom} rows in the document at a time): Guests link to ${N} rows painted ${fmt(loads)}`);
console.log(`filter keystroke to next frame: ${fmt(filterTimes)}`);
console.log(`sort click to next frame: ${fmt(sortTimes)}`);
if (errors.length) {
  console.log("browser errors:\n" + errors.join("\n"));
  process.exit(1);
}
