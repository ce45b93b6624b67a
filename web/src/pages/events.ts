// The daemon's event stream, newest first: the last hour's history, then live.

import { enc, get } from "../api";
import { h } from "../dom";
import { DaemonEvent, onEvent, recentEvents } from "../events";
import type { PageContext } from "../router";

const MAX_ROWS = 500;

function row(e: DaemonEvent): HTMLTableRowElement {
  const t = e.timeNano ? new Date(e.timeNano / 1e6) : new Date(e.time * 1000);
  const attrs = e.Actor?.Attributes || {};
  const name = attrs.name || "";
  const id = e.Actor?.ID || "";
  const target = e.Type === "vm" ? "/vm/" + enc(id) : e.Type === "container" ? "/container/" + enc(id) : "";
  const extra = Object.entries(attrs).filter(([k]) => k !== "name").map(([k, v]) => `${k}=${v}`).join(" ");
  return h("tr", { "data-type": e.Type, "data-action": e.Action },
    h("td", { class: "mono" }, t.toLocaleTimeString()),
    h("td", null, e.Type),
    h("td", null, e.Action),
    h("td", null, target && e.Action !== "destroy" ? h("a", { href: target, "data-link": true }, name || id.slice(0, 12)) : name || id.slice(0, 12)),
    h("td", { class: "mono small" }, extra));
}

export async function eventsPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const tbody = h("tbody", { id: "event-rows" });
  const typeSel = h("select", { id: "event-type", "aria-label": "type" }, ["", "container", "vm", "image", "network", "volume", "pool"].map((t) => h("option", { value: t }, t || "all types")));
  root.append(
    h("h1", null, "Events"),
    h("div", { class: "toolbar" }, typeSel),
    h("table", { class: "data", id: "events-table" },
      h("thead", null, h("tr", null, ["Time", "Type", "Action", "Object", "Attributes"].map((x) => h("th", null, x)))),
      tbody),
  );
  const seen = new Set<string>();
  const keyOf = (e: DaemonEvent) => `${e.timeNano || e.time}|${e.Type}|${e.Action}|${e.Actor?.ID}`;
  const all: DaemonEvent[] = [];
  const add = (e: DaemonEvent) => {
    const k = keyOf(e);
    if (seen.has(k)) return false;
    seen.add(k);
    all.push(e);
    return true;
  };
  const shown = (e: DaemonEvent) => !typeSel.value || e.Type === typeSel.value;
  const draw = () => {
    const list = all.filter(shown).slice(-MAX_ROWS).reverse();
    tbody.replaceChildren(...list.map(row));
  };
  typeSel.addEventListener("change", draw);

  // the last hour from the daemon's history, then what this page's stream has seen
  const now = Math.floor(Date.now() / 1000);
  try {
    const text = await get<any>(`/api/events?since=${now - 3600}&until=${now}`, { signal: ctx.signal });
    const lines = typeof text === "string" ? text.split("\n") : [JSON.stringify(text)];
    for (const l of lines) {
      if (!l.trim()) continue;
      try {
        add(JSON.parse(l));
      } catch {
        /* skip */
      }
    }
  } catch {
    /* the history is a bonus */
  }
  for (const e of recentEvents()) add(e);
  all.sort((a, b) => (a.timeNano || a.time * 1e9) - (b.timeNano || b.time * 1e9));
  draw();
  ctx.onLeave(onEvent((e) => {
    if (!add(e) || !shown(e)) return;
    tbody.prepend(row(e));
    while (tbody.children.length > MAX_ROWS) tbody.lastElementChild!.remove();
  }));
}
