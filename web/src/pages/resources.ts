// Images, networks, volumes and pools: a table each with its actions, a create form, and a
// reload when the event stream says one of them changed.

import { del, enc, get, post, q, streamJSON } from "../api";
import { ask, confirmAction, toast } from "../dialog";
import { fmtBytes, fmtNum, fmtTime, h, shortId, type Child } from "../dom";
import { onEvent } from "../events";
import { navigate, type PageContext } from "../router";

interface Column<T> {
  label: string;
  cell: (x: T) => Child;
  cls?: string;
}

interface RowAction<T> {
  label: string;
  id: string;
  danger?: boolean;
  confirm?: (x: T) => string;
  run: (x: T) => Promise<unknown>;
}

interface ListSpec<T> {
  title: string;
  id: string;
  load: (signal: AbortSignal) => Promise<T[]>;
  key: (x: T) => string;
  columns: Column<T>[];
  actions: RowAction<T>[];
  eventTypes: string[];
  create?: (reload: () => void) => HTMLElement;
  empty: string;
  // after the rows are in the table: fill in what comes later (each pool's live use); `current`
  // says whether these rows are still the table's
  rendered?: (items: T[], tbody: HTMLElement, current: () => boolean) => void;
}

async function listPage<T>(root: HTMLElement, ctx: PageContext, spec: ListSpec<T>): Promise<void> {
  const tbody = h("tbody", { id: spec.id + "-rows" });
  const empty = h("p", { class: "muted", hidden: true }, spec.empty);
  let generation = 0;
  const reload = async () => {
    const gen = ++generation;
    let items: T[];
    try {
      items = await spec.load(ctx.signal);
    } catch (e: any) {
      if (!ctx.signal.aborted) tbody.replaceChildren(h("tr", null, h("td", { class: "error", colspan: spec.columns.length + 1 }, e.message)));
      return;
    }
    empty.hidden = items.length > 0;
    tbody.replaceChildren(...items.map((x) => h("tr", { "data-key": spec.key(x) },
      spec.columns.map((c) => h("td", { class: c.cls }, c.cell(x))),
      h("td", { class: "actions" }, spec.actions.map((a) => {
        const b = h("button", { type: "button", class: "small " + (a.danger ? "danger" : "secondary"), "data-action": a.id }, a.label);
        b.addEventListener("click", async () => {
          if (a.confirm && !(await confirmAction({ title: a.confirm(x), ok: a.label, danger: a.danger }))) return;
          b.disabled = true;
          try {
            await a.run(x);
            void reload();
          } catch (e: any) {
            toast(`${a.label}: ${e.message}`, "error");
          } finally {
            b.disabled = false;
          }
        });
        return b;
      })))));
    spec.rendered?.(items, tbody, () => gen === generation && !ctx.signal.aborted);
  };
  root.append(
    h("h1", null, spec.title),
    spec.create ? spec.create(() => void reload()) : "",
    h("table", { class: "data", id: spec.id + "-table" },
      h("thead", null, h("tr", null, spec.columns.map((c) => h("th", { class: c.cls }, c.label)), h("th", null, ""))), tbody),
    empty,
  );
  await reload();
  let timer: number | undefined;
  ctx.onLeave(onEvent((e) => {
    if (!spec.eventTypes.includes(e.Type)) return;
    clearTimeout(timer);
    timer = window.setTimeout(() => void reload(), 150);
  }));
  ctx.onLeave(() => clearTimeout(timer));
}

function inlineForm(id: string, legend: string, fields: HTMLElement[], submitLabel: string, onSubmit: () => Promise<void>): HTMLElement {
  const err = h("span", { class: "error", role: "alert" });
  const btn = h("button", { type: "submit", class: "primary" }, submitLabel);
  const form = h("form", { class: "inline-form", id }, h("strong", null, legend), ...fields, btn, err);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    btn.disabled = true;
    try {
      await onSubmit();
      form.reset();
    } catch (x: any) {
      err.textContent = x.message;
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}

// ---------------------------------------------------------------- images

export function imagesPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const ref = h("input", { name: "ref", placeholder: "name[:tag]", required: true, "aria-label": "image to pull" });
  const progress = h("pre", { class: "logs small", id: "pull-progress", hidden: true });
  return listPage<any>(root, ctx, {
    title: "Images",
    id: "images",
    empty: "No images.",
    load: (signal) => get<any[]>("/api/images/json", { signal }),
    key: (i) => i.Id,
    eventTypes: ["image"],
    columns: [
      { label: "Tags", cell: (i) => (i.RepoTags || []).join(", ") || "<none>", cls: "mono" },
      { label: "ID", cell: (i) => shortId(String(i.Id).replace(/^sha256:/, "")), cls: "mono" },
      { label: "Size", cell: (i) => fmtBytes(i.Size), cls: "num" },
      { label: "Created", cell: (i) => fmtTime(i.Created) },
      { label: "Containers", cell: (i) => (i.Containers >= 0 ? String(i.Containers) : ""), cls: "num" },
    ],
    actions: [
      { id: "run", label: "Run", run: async (i) => navigate("/new/container?image=" + enc((i.RepoTags || [])[0] || i.Id)) },
      { id: "remove", label: "Remove", danger: true, confirm: (i) => `Remove image ${(i.RepoTags || [])[0] || shortId(i.Id)}?`, run: (i) => del("/api/images/" + enc((i.RepoTags || [])[0] || i.Id)) },
    ],
    create: () => {
      const f = inlineForm("pull-form", "Pull", [ref], "Pull", async () => {
        const [name, tag] = splitRef(ref.value.trim());
        progress.hidden = false;
        progress.textContent = "";
        let last = "";
        await streamJSON("/api/images/create" + q({ fromImage: name, tag: tag || "latest" }), (o) => {
          if (o.error) last = o.error;
          const line = [o.id, o.status, o.progress].filter(Boolean).join(" ");
          if (line) progress.textContent = (progress.textContent + line + "\n").slice(-20000);
        }, ctx.signal).catch((e) => (last = e.message));
        if (last) throw new Error(last);
      });
      return h("div", null, f, progress);
    },
  });
}

// "registry:5000/name:tag" → ["registry:5000/name", "tag"]
function splitRef(r: string): [string, string] {
  const slash = r.lastIndexOf("/");
  const colon = r.lastIndexOf(":");
  return colon > slash ? [r.slice(0, colon), r.slice(colon + 1)] : [r, ""];
}

// ---------------------------------------------------------------- networks

export function networksPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const name = h("input", { name: "name", placeholder: "name", required: true, "aria-label": "network name" });
  const subnet = h("input", { name: "subnet", placeholder: "subnet (optional, 10.20.0.0/24)", "aria-label": "subnet" });
  const internal = h("input", { type: "checkbox", name: "internal" });
  const BUILTIN = new Set(["bridge", "host", "none"]);
  return listPage<any>(root, ctx, {
    title: "Networks",
    id: "networks",
    empty: "No networks.",
    load: (signal) => get<any[]>("/api/networks", { signal }),
    key: (n) => n.Id,
    eventTypes: ["network"],
    columns: [
      { label: "Name", cell: (n) => n.Name },
      { label: "Driver", cell: (n) => n.Driver },
      { label: "Subnet", cell: (n) => (n.IPAM?.Config || []).map((c: any) => c.Subnet).filter(Boolean).join(", "), cls: "mono" },
      { label: "Gateway", cell: (n) => (n.IPAM?.Config || []).map((c: any) => c.Gateway).filter(Boolean).join(", "), cls: "mono" },
      { label: "Internal", cell: (n) => (n.Internal ? "yes" : "") },
      { label: "Created", cell: (n) => fmtTime(n.Created) },
    ],
    actions: [
      { id: "remove", label: "Remove", danger: true, confirm: (n) => `Remove network ${n.Name}?`, run: (n) => (BUILTIN.has(n.Name) ? Promise.reject(new Error(`${n.Name} is built in`)) : del("/api/networks/" + enc(n.Id))) },
    ],
    create: (reload) => inlineForm("network-form", "New network", [name, subnet, h("label", { class: "check" }, internal, " internal")], "Create", async () => {
      const body: any = { Name: name.value.trim(), Driver: "bridge", CheckDuplicate: true, Internal: internal.checked };
      if (subnet.value.trim()) body.IPAM = { Driver: "default", Config: [{ Subnet: subnet.value.trim() }] };
      await post("/api/networks/create", body);
      reload();
    }),
  });
}

// ---------------------------------------------------------------- volumes

export function volumesPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const name = h("input", { name: "name", placeholder: "name (optional)", "aria-label": "volume name" });
  return listPage<any>(root, ctx, {
    title: "Volumes",
    id: "volumes",
    empty: "No volumes.",
    load: async (signal) => (await get<any>("/api/volumes", { signal }))?.Volumes || [],
    key: (v) => v.Name,
    eventTypes: ["volume"],
    columns: [
      { label: "Name", cell: (v) => v.Name, cls: "mono" },
      { label: "Driver", cell: (v) => v.Driver },
      { label: "Mount point", cell: (v) => v.Mountpoint, cls: "mono" },
      { label: "Created", cell: (v) => fmtTime(v.CreatedAt) },
    ],
    actions: [
      { id: "remove", label: "Remove", danger: true, confirm: (v) => `Remove volume ${v.Name}? Its data is deleted.`, run: (v) => del("/api/volumes/" + enc(v.Name)) },
    ],
    create: (reload) => inlineForm("volume-form", "New volume", [name], "Create", async () => {
      await post("/api/volumes/create", name.value.trim() ? { Name: name.value.trim() } : {});
      reload();
    }),
  });
}

// ---------------------------------------------------------------- pools

// How often the pools page samples its pools' live use again (each sample takes the daemon a
// second: GET /vessel/v1/pools/{name}/stats, what `vessel pool stats` shows).
const POOL_USE_REFRESH_MS = 5000;

// A pool's live use, filled in when its sample comes: data-value holds the number shown.
function useCell(kind: "cpu" | "memory"): HTMLElement {
  return h("span", { class: "pool-use", "data-use": kind }, "…");
}

function showUse(row: Element, st: any): void {
  const cpu = row.querySelector<HTMLElement>('[data-use="cpu"]');
  const mem = row.querySelector<HTMLElement>('[data-use="memory"]');
  if (!cpu || !mem) return;
  if (!st) {
    cpu.textContent = mem.textContent = "—";
    return;
  }
  cpu.dataset.value = String(st.Cpu.Percent);
  cpu.textContent = `${st.Cpu.Percent.toFixed(1)} % (${st.Cpu.PoolPercent.toFixed(1)} % of the pool)`;
  mem.dataset.value = String(st.Memory.Usage);
  mem.textContent = `${fmtBytes(st.Memory.Usage)} (${st.Memory.PoolPercent.toFixed(1)} % of the pool)`;
}

// One pool at a time (a sample holds a daemon worker for its second), then again a while
// later, for as long as these rows are the table's.
async function fillPoolUse(tbody: HTMLElement, pools: any[], current: () => boolean): Promise<void> {
  while (current()) {
    for (const p of pools) {
      if (!current()) return;
      let st: any = null;
      // a pool of the cluster has no one cgroup to sample: its guests are on many nodes
      if (!p.Cluster) {
        try {
          st = await get<any>("/api/vessel/v1/pools/" + enc(p.Name) + "/stats");
        } catch {
          st = null; // removed meanwhile
        }
      }
      const row = tbody.querySelector(`tr[data-key="${CSS.escape(p.Name)}"]`);
      if (row && current()) showUse(row, st);
    }
    await new Promise((r) => setTimeout(r, POOL_USE_REFRESH_MS));
  }
}

export function poolsPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const name = h("input", { name: "name", placeholder: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}", "aria-label": "pool name" });
  const cpus = h("input", { name: "cpus", type: "number", min: "1", placeholder: "CPUs", required: true, "aria-label": "CPUs" });
  const mem = h("input", { name: "memory", placeholder: "memory (1G)", required: true, pattern: "[0-9]+[KMGTkmgt]?", "aria-label": "memory" });
  const cpuOver = h("input", { name: "cpuover", type: "number", min: "1", max: "100", step: "0.1", value: "1", "aria-label": "CPU overcommit" });
  const memOver = h("input", { name: "memover", type: "number", min: "1", max: "100", step: "0.1", value: "1", "aria-label": "memory overcommit" });
  return listPage<any>(root, ctx, {
    title: "Pools",
    id: "pools",
    empty: "No pools.",
    load: (signal) => get<any[]>("/api/vessel/v1/pools", { signal }),
    key: (p) => p.Name,
    rendered: (pools, tbody, current) => void fillPoolUse(tbody, pools, current),
    eventTypes: ["pool", "vm", "container"],
    columns: [
      { label: "Name", cell: (p) => p.Name },
      { label: "CPUs", cell: (p) => `${fmtNum(p.Usage.Cpus)} of ${p.Cpus} × ${fmtNum(p.CpuOvercommit, 2)} (${fmtNum(p.Available.Cpus)} left)` },
      { label: "CPU use", cell: () => useCell("cpu") },
      { label: "Memory", cell: (p) => `${fmtBytes(p.Usage.Memory)} of ${fmtBytes(p.Memory)} × ${fmtNum(p.MemoryOvercommit, 2)} (${fmtBytes(p.Available.Memory)} left)` },
      { label: "Memory use", cell: () => useCell("memory") },
      { label: "Guests", cell: (p) => p.Usage.Guests.map((g: any) => `${g.Name} (${g.Kind}, ${g.Qos})`).join(", ") },
      { label: "Created", cell: (p) => fmtTime(p.Created) },
    ],
    actions: [
      { id: "edit", label: "Resize", run: async (p) => {
        const v = await ask({ title: `Resize pool ${p.Name}`, message: "CPUs, memory, CPU overcommit, memory overcommit", ok: "Update", input: { label: "cpus memory cpu-ratio mem-ratio", value: `${p.Cpus} ${p.Memory} ${p.CpuOvercommit} ${p.MemoryOvercommit}` } });
        if (v === null) return;
        const [c, m, co, mo] = v.split(/\s+/);
        const body: any = {};
        if (c) body.Cpus = Number(c);
        if (m) body.Memory = /^\d+$/.test(m) ? Number(m) : m;
        if (co) body.CpuOvercommit = Number(co);
        if (mo) body.MemoryOvercommit = Number(mo);
        await post("/api/vessel/v1/pools/" + enc(p.Name) + "/update", body);
      } },
      { id: "remove", label: "Remove", danger: true, confirm: (p) => `Remove pool ${p.Name}?`, run: (p) => del("/api/vessel/v1/pools/" + enc(p.Name)) },
    ],
    create: (reload) => inlineForm("pool-form", "New pool", [name, cpus, mem, h("label", null, "CPU ×", cpuOver), h("label", null, "memory ×", memOver)], "Create", async () => {
      await post("/api/vessel/v1/pools", {
        Name: name.value.trim(),
        Cpus: Number(cpus.value),
        Memory: mem.value.trim(),
        CpuOvercommit: Number(cpuOver.value) || 1,
        MemoryOvercommit: Number(memOver.value) || 1,
      });
      reload();
    }),
  });
}
