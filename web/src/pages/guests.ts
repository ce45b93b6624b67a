// VMs and containers in one table: filter and sort in the page (no request), rows kept per guest
// and updated in place from the event stream. Only the rows in view (and a margin) are in the
// document, between two spacer rows of the height of the rest: a sort or a filter of 500 or 5000
// guests lays out some forty rows (all 500 in a table took 400 ms a click here).

import { enc, post } from "../api";
import { toast } from "../dialog";
import { fmtBytes, fmtNum, h } from "../dom";
import { allGuests, Guest, loadGuests, onGuests, updateGuest } from "../guests";
import { navigate, type PageContext } from "../router";

type Col = { key: keyof Guest | "kind"; label: string; num?: boolean };
const COLS: Col[] = [
  { key: "name", label: "Name" },
  { key: "kind", label: "Kind" },
  { key: "state", label: "State" },
  { key: "pool", label: "Pool" },
  { key: "address", label: "Address" },
  { key: "cpus", label: "CPUs", num: true },
  { key: "memory", label: "Memory", num: true },
  { key: "image", label: "Image" },
];

export function guestHref(g: Guest): string {
  return (g.kind === "vm" ? "/vm/" : "/container/") + enc(g.id);
}

const STARTABLE = new Set(["created", "exited", "stopped", "dead"]);

async function quickAction(g: Guest, action: "start" | "stop", btn: HTMLButtonElement): Promise<void> {
  btn.disabled = true;
  try {
    const base = g.kind === "vm" ? "/api/vessel/v1/vms/" : "/api/containers/";
    await post(base + enc(g.id) + "/" + action);
    updateGuest(g.key, g.kind);
  } catch (e: any) {
    toast(`${action} ${g.name}: ${e.message}`, "error");
  } finally {
    btn.disabled = false;
  }
}

function cells(g: Guest): HTMLElement[] {
  const canStart = STARTABLE.has(g.state);
  const btn = h("button", { type: "button", class: "small secondary", "data-action": canStart ? "start" : "stop" }, canStart ? "Start" : "Stop");
  btn.disabled = !canStart && g.state !== "running";
  btn.addEventListener("click", () => void quickAction(g, canStart ? "start" : "stop", btn));
  return [
    h("td", { class: "name" }, h("a", { href: guestHref(g), "data-link": true }, g.name || g.id.slice(0, 12))),
    h("td", null, g.kind === "vm" ? "VM" : "container"),
    h("td", null, h("span", { class: "pill state-" + g.state, "data-state": g.state }, g.state)),
    h("td", null, g.pool),
    h("td", { class: "mono" }, g.address),
    h("td", { class: "num" }, g.cpus === null ? "" : fmtNum(g.cpus, 2)),
    h("td", { class: "num" }, g.memory === null ? "" : fmtBytes(g.memory)),
    h("td", { class: "mono" }, g.image),
    h("td", { class: "actions" }, btn),
  ];
}

export async function guestsPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  let sortKey: Col["key"] = (ctx.query.get("sort") as Col["key"]) || "name";
  let sortDir = 1;
  const filter = h("input", { type: "search", id: "guest-filter", placeholder: "Filter by name, state, pool, address, image…", value: ctx.query.get("q") || "", "aria-label": "filter" });
  const kindSel = h("select", { id: "guest-kind", "aria-label": "kind" },
    h("option", { value: "" }, "VMs and containers"), h("option", { value: "vm" }, "VMs"), h("option", { value: "container" }, "Containers"));
  kindSel.value = ctx.query.get("kind") || "";
  const count = h("span", { class: "muted", id: "guest-count" });
  const heads = COLS.map((c) => {
    const th = h("th", { "data-sort": c.key, class: c.num ? "num sortable" : "sortable", tabindex: 0, "aria-sort": "none" }, c.label);
    const act = () => {
      if (sortKey === c.key) sortDir = -sortDir;
      else {
        sortKey = c.key;
        sortDir = 1;
      }
      draw();
    };
    th.addEventListener("click", act);
    th.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), act()));
    return th;
  });
  const tbody = h("tbody", { id: "guest-rows" });
  const table = h("table", { class: "data guests", id: "guest-table" }, h("thead", null, h("tr", null, heads, h("th", null, ""))), tbody);
  const empty = h("p", { class: "muted", hidden: true }, "No guests match.");
  root.append(
    h("div", { class: "page-head" }, h("h1", null, "Guests"),
      h("div", { class: "head-actions" },
        h("a", { href: "/new/container", "data-link": true, class: "button" }, "New container"),
        h("a", { href: "/new/vm", "data-link": true, class: "button" }, "New VM"))),
    h("div", { class: "toolbar" }, filter, kindSel, count),
    table, empty,
  );

  // a row's element is made when it first comes into view, its search text when first filtered
  const rows = new Map<string, { tr: HTMLTableRowElement; g: Guest }>();
  const texts = new WeakMap<Guest, string>();
  const rowFor = (g: Guest) => {
    let r = rows.get(g.key);
    if (!r || r.g !== g) {
      const tr = r?.tr ?? h("tr", { "data-key": g.key });
      tr.dataset.name = g.name;
      tr.replaceChildren(...cells(g));
      r = { tr, g };
      rows.set(g.key, r);
    }
    return r;
  };
  const textOf = (g: Guest) => {
    let t = texts.get(g);
    if (t === undefined) {
      t = [g.name, g.id.slice(0, 12), g.kind, g.state, g.pool, g.address, g.image].join("\n").toLowerCase();
      texts.set(g, t);
    }
    return t;
  };

  const ROW_H = 34; // px, fixed by the stylesheet (table.guests tbody tr)
  const OVERSCAN = 10;
  let list: Guest[] = [];
  let shown = "";
  const spacer = (hgt: number) => h("tr", { class: "spacer", "aria-hidden": "true" }, h("td", { colspan: COLS.length + 1, style: `height:${hgt}px` }));
  const paint = (force = false) => {
    const top = tbody.getBoundingClientRect().top; // of the first row, relative to the viewport
    const first = Math.max(0, Math.floor(-top / ROW_H) - OVERSCAN);
    const last = Math.min(list.length, first + Math.ceil(window.innerHeight / ROW_H) + 2 * OVERSCAN);
    const key = `${first}:${last}`;
    if (!force && key === shown) return;
    shown = key;
    const nodes: Node[] = [];
    if (first > 0) nodes.push(spacer(first * ROW_H));
    for (let i = first; i < last; i++) nodes.push(rowFor(list[i]).tr);
    if (last < list.length) nodes.push(spacer((list.length - last) * ROW_H));
    tbody.replaceChildren(...nodes);
  };
  let scrollFrame = 0;
  const onScroll = () => {
    if (!scrollFrame) scrollFrame = requestAnimationFrame(() => {
      scrollFrame = 0;
      paint();
    });
  };
  window.addEventListener("scroll", onScroll, { passive: true });
  window.addEventListener("resize", onScroll);
  ctx.onLeave(() => {
    window.removeEventListener("scroll", onScroll);
    window.removeEventListener("resize", onScroll);
    if (scrollFrame) cancelAnimationFrame(scrollFrame);
  });

  const draw = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const kind = kindSel.value;
    list = allGuests().filter((g) => {
      if (kind && g.kind !== kind) return false;
      if (!words.length) return true;
      const t = textOf(g);
      return words.every((w) => t.includes(w));
    });
    const k = sortKey;
    const num = COLS.find((c) => c.key === k)?.num;
    list.sort((a, b) => {
      const x = (a as any)[k];
      const y = (b as any)[k];
      let d: number;
      if (num) d = (x ?? -1) - (y ?? -1);
      else d = String(x ?? "").localeCompare(String(y ?? ""));
      return d * sortDir || a.name.localeCompare(b.name) || a.key.localeCompare(b.key);
    });
    paint(true);
    for (const th of heads) {
      const on = th.dataset.sort === sortKey;
      th.setAttribute("aria-sort", on ? (sortDir > 0 ? "ascending" : "descending") : "none");
    }
    count.textContent = `${list.length} of ${allGuests().length}`;
    empty.hidden = list.length > 0;
    const qs = new URLSearchParams();
    if (filter.value) qs.set("q", filter.value);
    if (kind) qs.set("kind", kind);
    const url = location.pathname + (qs.toString() ? "?" + qs : "");
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
  };

  filter.addEventListener("input", draw);
  kindSel.addEventListener("change", draw);
  filter.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    const first = tbody.querySelector<HTMLAnchorElement>("td.name a");
    if (first) navigate(first.getAttribute("href")!);
  });

  await loadGuests();
  draw();
  let frame = 0;
  ctx.onLeave(onGuests((_changed, removed) => {
    for (const k of removed) rows.delete(k);
    if (!frame) frame = requestAnimationFrame(() => {
      frame = 0;
      draw();
    });
  }));
  ctx.onLeave(() => frame && cancelAnimationFrame(frame));
}
