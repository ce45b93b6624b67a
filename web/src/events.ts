// One stream of the daemon's events (/api/events) for the whole app while logged in: pages
// subscribe to it instead of asking the daemon again and again. When the stream breaks it is
// opened again after a pause that grows (1 s to 30 s), with `since` so that nothing is missed.

import { streamJSON } from "./api";

export interface DaemonEvent {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes?: Record<string, string> };
  time: number;
  timeNano?: number;
  id?: string;
  status?: string;
  from?: string;
}

type Listener = (e: DaemonEvent) => void;

const listeners = new Set<Listener>();
const recent: DaemonEvent[] = [];
const RECENT_MAX = 1000;
let ctl: AbortController | null = null;
let lastTime = 0;
let connected = false;
const stateListeners = new Set<(up: boolean) => void>();

export function onEvent(fn: Listener): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function onStreamState(fn: (up: boolean) => void): () => void {
  stateListeners.add(fn);
  fn(connected);
  return () => stateListeners.delete(fn);
}

export function recentEvents(): readonly DaemonEvent[] {
  return recent;
}

function setConnected(up: boolean): void {
  if (up === connected) return;
  connected = up;
  for (const fn of stateListeners) fn(up);
}

// Keys of the events of the last second delivered: a stream opened again with `since` (whole
// seconds) repeats them.
let seenSecond = 0;
const seenKeys = new Set<string>();

function deliver(o: any): void {
  if (!o || typeof o !== "object" || typeof o.Type !== "string") return;
  const e = o as DaemonEvent;
  if (!e.Actor) e.Actor = { ID: e.id || "" };
  const key = `${e.timeNano ?? e.time}|${e.Type}|${e.Action}|${e.Actor.ID}`;
  if (e.time !== seenSecond) {
    if (e.time < seenSecond && lastTime && e.time < lastTime) return; // older than what was seen
    seenSecond = e.time;
    seenKeys.clear();
  }
  if (seenKeys.has(key)) return;
  seenKeys.add(key);
  if (typeof e.time === "number") lastTime = Math.max(lastTime, e.time);
  recent.push(e);
  if (recent.length > RECENT_MAX) recent.splice(0, recent.length - RECENT_MAX);
  for (const fn of listeners) {
    try {
      fn(e);
    } catch (err) {
      console.warn("event listener failed", err);
    }
  }
}

export function startEvents(): void {
  if (ctl) return;
  const my = new AbortController();
  ctl = my;
  let pause = 1000;
  const run = async () => {
    while (!my.signal.aborted) {
      const since = lastTime ? `?since=${lastTime}` : "";
      setConnected(true);
      try {
        await streamJSON(`/api/events${since}`, (o) => {
          pause = 1000;
          deliver(o);
        }, my.signal);
      } catch (e: any) {
        if (e && e.status === 401) break; // the session is over: the login page takes over
      }
      setConnected(false);
      if (my.signal.aborted) break;
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 30000);
    }
    setConnected(false);
  };
  void run();
}

export function stopEvents(): void {
  ctl?.abort();
  ctl = null;
}
