// The host at a glance: CPUs and memory, a live load graph (host stats stream), the pools with
// capacity and overcommit, and the guests counted by state (kept current by the event stream).

import { get, streamJSON } from "../api";
import { LiveChart } from "../chart";
import { fmtBytes, fmtNum, h } from "../dom";
import { onEvent } from "../events";
import { allGuests, loadGuests, onGuests } from "../guests";
import type { PageContext } from "../router";

function card(title: string, ...body: (Node | string)[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", null, title), ...body);
}

function bar(used: number, total: number, label: string): HTMLElement {
  const pct = total > 0 ? Math.min(100, (used / total) * 100) : 0;
  return h(
    "div",
    { class: "bar-wrap" },
    h("div", { class: "bar", role: "meter", "aria-valuenow": pct.toFixed(0), "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": label },
      h("div", { class: "bar-fill" + (pct > 90 ? " hot" : ""), style: `width:${pct.toFixed(1)}%` })),
    h("span", { class: "bar-text" }, label),
  );
}

export async function overviewPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const hostBox = h("dl", { class: "facts", id: "host-facts" });
  const countsBox = h("div", { id: "guest-counts", class: "counts" });
  const poolsBox = h("div", { id: "pools-box" });
  const chart = new LiveChart("Host load", [
    { label: "CPU %", color: "#3b82f6" },
    { label: "memory %", color: "#10b981" },
  ], { max: 100, format: (v) => v.toFixed(0) + "%" });
  const load = new LiveChart("Load average (1 min)", [{ label: "load1", color: "#f59e0b" }], { format: (v) => v.toFixed(2) });
  ctx.onLeave(() => {
    chart.dispose();
    load.dispose();
  });
  root.append(
    h("h1", null, "Overview"),
    h("div", { class: "grid" },
      card("Host", hostBox),
      card("Guests", countsBox),
      h("section", { class: "card wide" }, chart.el, load.el),
      h("section", { class: "card wide" }, h("h2", null, "Pools"), poolsBox),
    ),
  );

  const info = await get<any>("/api/info", { signal: ctx.signal });
  const facts: [string, string][] = [
    ["Name", String(info.Name ?? "")],
    ["CPUs", String(info.NCPU ?? "—")],
    ["Memory", fmtBytes(info.MemTotal)],
    ["Kernel", String(info.KernelVersion ?? "")],
    ["System", String(info.OperatingSystem ?? "")],
    ["Daemon", String(info.ServerVersion ?? "")],
  ];
  const used = h("dd", { id: "host-mem-used" }, "—");
  const cpu = h("dd", { id: "host-cpu" }, "—");
  hostBox.replaceChildren(
    ...facts.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)]),
    h("dt", null, "Memory used"), used,
    h("dt", null, "CPU busy"), cpu,
  );

  // counts by state, from the guest list
  const drawCounts = () => {
    const by: Record<string, Record<string, number>> = { vm: {}, container: {} };
    for (const g of allGuests()) by[g.kind][g.state] = (by[g.kind][g.state] || 0) + 1;
    const rows = (["vm", "container"] as const).map((k) => {
      const states = Object.entries(by[k]).sort();
      const total = states.reduce((a, [, n]) => a + n, 0);
      return h("div", { class: "count-row", "data-kind": k },
        h("a", { href: "/guests?kind=" + k, "data-link": true, class: "count-total" }, `${total} ${k === "vm" ? "VMs" : "containers"}`),
        states.map(([s, n]) => h("span", { class: "pill state-" + s }, `${n} ${s}`)));
    });
    countsBox.replaceChildren(...rows);
  };
  await loadGuests().catch(() => {});
  drawCounts();
  const offGuests = onGuests(() => drawCounts());
  ctx.onLeave(offGuests);

  // pools, again when a pool or a guest changes
  const drawPools = async () => {
    const pools = await get<any[]>("/api/vessel/v1/pools", { signal: ctx.signal });
    if (!pools || !pools.length) {
      poolsBox.replaceChildren(h("p", { class: "muted" }, "No pools. ", h("a", { href: "/pools", "data-link": true }, "Create one")));
      return;
    }
    poolsBox.replaceChildren(
      h("table", { class: "data" },
        h("thead", null, h("tr", null, ["Pool", "CPUs (requested / capacity × overcommit)", "Memory", "Guests"].map((t) => h("th", null, t)))),
        h("tbody", null, pools.map((p) => {
          const cpuCap = p.Cpus * p.CpuOvercommit;
          const memCap = p.Memory * p.MemoryOvercommit;
          return h("tr", { "data-pool": p.Name },
            h("td", null, p.Name),
            h("td", null, bar(p.Usage.Cpus, cpuCap, `${fmtNum(p.Usage.Cpus)} / ${p.Cpus} × ${fmtNum(p.CpuOvercommit, 2)}`)),
            h("td", null, bar(p.Usage.Memory, memCap, `${fmtBytes(p.Usage.Memory)} / ${fmtBytes(p.Memory)} × ${fmtNum(p.MemoryOvercommit, 2)}`)),
            h("td", null, String(p.Usage.Guests.length)));
        }))));
  };
  await drawPools().catch((e) => poolsBox.replaceChildren(h("p", { class: "error" }, e.message)));
  let poolTimer: number | undefined;
  ctx.onLeave(onEvent((e) => {
    if (!["vm", "container", "pool"].includes(e.Type)) return;
    if (!["create", "destroy", "remove", "update"].includes(e.Action)) return;
    clearTimeout(poolTimer);
    poolTimer = window.setTimeout(() => void drawPools().catch(() => {}), 200);
  }));
  ctx.onLeave(() => clearTimeout(poolTimer));

  // the host's load, once a second, while this page is open
  void streamJSON("/api/vessel/v1/host/stats?stream=1", (s) => {
    const memPct = s.MemTotal ? (s.MemUsed / s.MemTotal) * 100 : NaN;
    chart.push(s.CPUPercent, memPct);
    load.push(s.Load1);
    used.textContent = `${fmtBytes(s.MemUsed)} of ${fmtBytes(s.MemTotal)}`;
    cpu.textContent = `${fmtNum(s.CPUPercent)} % of ${s.NCPU} CPUs`;
  }, ctx.signal).catch((e) => {
    cpu.textContent = "host stats unavailable: " + (e?.message || e);
  });
}
