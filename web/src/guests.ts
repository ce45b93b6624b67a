// The guests (VMs and containers) as one list for the table and the overview: loaded once, then
// kept up to date from the event stream (one small request per guest that changed, coalesced).

import { enc, get } from "./api";
import { DaemonEvent, onEvent } from "./events";

export type Kind = "vm" | "container";

export interface Guest {
  key: string; // kind + ":" + id
  kind: Kind;
  id: string;
  name: string;
  state: string;
  pool: string;
  address: string;
  cpus: number | null;
  memory: number | null;
  image: string;
  labels: Record<string, string>;
  created: number; // unix seconds
}

const guests = new Map<string, Guest>();
const listeners = new Set<(changed: Guest[], removed: string[]) => void>();
let loaded: Promise<void> | null = null;
let unsubscribe: (() => void) | null = null;

export function onGuests(fn: (changed: Guest[], removed: string[]) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function allGuests(): Guest[] {
  return [...guests.values()];
}

export function guest(key: string): Guest | undefined {
  return guests.get(key);
}

function ctrAddress(c: any): string {
  const nets = c?.NetworkSettings?.Networks;
  if (!nets || typeof nets !== "object") return "";
  const out: string[] = [];
  for (const n of Object.values<any>(nets)) if (n && n.IPAddress) out.push(String(n.IPAddress));
  return out.join(", ");
}

export function fromContainer(c: any): Guest {
  const name = Array.isArray(c.Names) && c.Names.length ? String(c.Names[0]).replace(/^\//, "") : "";
  const hc = c.HostConfig || {};
  const labels = (c.Labels && typeof c.Labels === "object" ? c.Labels : {}) as Record<string, string>;
  const created = typeof c.Created === "number" ? c.Created : Date.parse(c.Created) / 1000 || 0;
  return {
    key: "container:" + c.Id,
    kind: "container",
    id: String(c.Id),
    name,
    state: String(c.State || ""),
    pool: String(labels["vessel.pool"] || ""),
    address: ctrAddress(c),
    cpus: typeof hc.NanoCpus === "number" && hc.NanoCpus > 0 ? hc.NanoCpus / 1e9 : null,
    memory: typeof hc.Memory === "number" && hc.Memory > 0 ? hc.Memory : null,
    image: String(c.Image || ""),
    labels,
    created,
  };
}

// A VM from its summary (GET /vessel/v1/vms) or from inspect (GET /vessel/v1/vms/{id}).
export function fromVm(v: any): Guest {
  const cfg = v.Config || {};
  const st = v.State || {};
  const ns = v.NetworkSettings || {};
  return {
    key: "vm:" + v.Id,
    kind: "vm",
    id: String(v.Id),
    name: String(v.Name || ""),
    state: String(v.Status || st.Status || ""),
    pool: String(v.Pool ?? cfg.Pool ?? ""),
    address: String(v.IPAddress ?? ns.IPAddress ?? ""),
    cpus: typeof (v.Cpus ?? cfg.Cpus) === "number" ? (v.Cpus ?? cfg.Cpus) : null,
    memory: typeof (v.Memory ?? cfg.Memory) === "number" ? (v.Memory ?? cfg.Memory) : null,
    image: "",
    labels: {},
    created: Date.parse(v.Created) / 1000 || 0,
  };
}

function emit(changed: Guest[], removed: string[]): void {
  if (!changed.length && !removed.length) return;
  for (const fn of listeners) fn(changed, removed);
}

async function loadAll(): Promise<void> {
  const [ctrs, vms] = await Promise.all([
    get<any[]>("/api/containers/json?all=1"),
    get<any[]>("/api/vessel/v1/vms"),
  ]);
  const seen = new Set<string>();
  const changed: Guest[] = [];
  for (const c of ctrs || []) {
    const g = fromContainer(c);
    seen.add(g.key);
    guests.set(g.key, g);
    changed.push(g);
  }
  for (const v of vms || []) {
    const g = fromVm(v);
    seen.add(g.key);
    guests.set(g.key, g);
    changed.push(g);
  }
  const removed = [...guests.keys()].filter((k) => !seen.has(k));
  for (const k of removed) guests.delete(k);
  emit(changed, removed);
}

// Guests to look at again, gathered for a moment so that a burst of events costs one request each.
const pending = new Map<string, Kind>();
let flushTimer: number | undefined;

async function refresh(key: string, kind: Kind): Promise<void> {
  const id = key.slice(key.indexOf(":") + 1);
  try {
    if (kind === "container") {
      const list = await get<any[]>(
        "/api/containers/json?all=1&filters=" + enc(JSON.stringify({ id: [id] })),
      );
      const c = (list || []).find((x) => x.Id === id);
      if (c) {
        const g = fromContainer(c);
        guests.set(g.key, g);
        emit([g], []);
      } else if (guests.delete(key)) {
        emit([], [key]);
      }
    } else {
      const v = await get<any>("/api/vessel/v1/vms/" + enc(id));
      const g = fromVm(v);
      guests.set(g.key, g);
      emit([g], []);
    }
  } catch (e: any) {
    if (e && e.status === 404 && guests.delete(key)) emit([], [key]);
  }
}

function flush(): void {
  flushTimer = undefined;
  const items = [...pending.entries()];
  pending.clear();
  for (const [key, kind] of items) void refresh(key, kind);
}

const IGNORED = /^(exec_|attach|resize|top|export|copy|archive|health_status)/;

function onDaemonEvent(e: DaemonEvent): void {
  let kind: Kind;
  if (e.Type === "container") kind = "container";
  else if (e.Type === "vm") kind = "vm";
  else return;
  const id = e.Actor?.ID || e.id || "";
  if (!id || IGNORED.test(e.Action)) return;
  const key = kind + ":" + id;
  if (e.Action === "destroy" || e.Action === "remove") {
    pending.delete(key);
    if (guests.delete(key)) emit([], [key]);
    return;
  }
  pending.set(key, kind);
  if (flushTimer === undefined) flushTimer = window.setTimeout(flush, 50);
}

// Load the guests (once per login) and follow the events.
export function loadGuests(): Promise<void> {
  if (!unsubscribe) unsubscribe = onEvent(onDaemonEvent);
  if (!loaded) {
    loaded = loadAll().catch((e) => {
      loaded = null;
      throw e;
    });
  }
  return loaded;
}

// After a reconnect of the event stream something may have been missed: load everything again.
export function reloadGuests(): Promise<void> {
  loaded = null;
  return loadGuests();
}

export function forgetGuests(): void {
  unsubscribe?.();
  unsubscribe = null;
  loaded = null;
  guests.clear();
}

// Put one guest in at once (after an action of this page), before its event arrives.
export function updateGuest(key: string, kind: Kind): void {
  pending.set(key, kind);
  if (flushTimer === undefined) flushTimer = window.setTimeout(flush, 0);
}
