// The daemon's API through the web listener: /web/* for the session, /api/* for everything
// else (the unix socket's routes under a prefix). The CSRF token comes from /web/login or
// /web/session and goes with every request that is not a GET or HEAD.

export class ApiError extends Error {
  status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

let csrf = "";
let onUnauthorized: (message: string) => void = () => {};

export function setUnauthorizedHandler(fn: (message: string) => void): void {
  onUnauthorized = fn;
}

export function csrfToken(): string {
  return csrf;
}

async function errorOf(r: Response): Promise<ApiError> {
  let msg = `${r.status} ${r.statusText}`;
  try {
    const text = await r.text();
    try {
      const j = JSON.parse(text);
      if (j && typeof j.message === "string") msg = j.message;
    } catch {
      if (text.trim()) msg = text.trim().slice(0, 300);
    }
  } catch {
    /* the body is gone: keep the status */
  }
  return new ApiError(r.status, msg);
}

export interface RequestOptions {
  signal?: AbortSignal;
  // when false, a 401 is only thrown, without sending the user to the login page
  redirect?: boolean;
  headers?: Record<string, string>;
}

export async function request(
  method: string,
  path: string,
  body?: unknown,
  opt: RequestOptions = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...(opt.headers || {}) };
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  let data: BodyInit | undefined;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    data = JSON.stringify(body);
  }
  const r = await fetch(path, {
    method,
    headers,
    body: data,
    signal: opt.signal,
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!r.ok && r.status !== 304) {
    const e = await errorOf(r);
    if (r.status === 401 && opt.redirect !== false && path.startsWith("/api/")) {
      forgetSession();
      onUnauthorized(e.message);
    }
    throw e;
  }
  return r;
}

// A JSON answer (or null for an empty body: 204, 304).
export async function call<T = any>(
  method: string,
  path: string,
  body?: unknown,
  opt?: RequestOptions,
): Promise<T> {
  const r = await request(method, path, body, opt);
  const text = await r.text();
  if (!text) return null as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as unknown as T;
  }
}

export function get<T = any>(path: string, opt?: RequestOptions): Promise<T> {
  return call<T>("GET", path, undefined, opt);
}

export function post<T = any>(path: string, body?: unknown): Promise<T> {
  return call<T>("POST", path, body);
}

export function del<T = any>(path: string): Promise<T> {
  return call<T>("DELETE", path);
}

export function q(params: Record<string, string | number | boolean | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === "") continue;
    parts.push(encodeURIComponent(k) + "=" + encodeURIComponent(String(v)));
  }
  return parts.length ? "?" + parts.join("&") : "";
}

export function enc(s: string): string {
  return encodeURIComponent(s);
}

// Read a streaming answer: calls onChunk with each piece of bytes as it arrives; resolves when
// the server ends the stream, rejects on error (an abort resolves quietly).
export async function streamBytes(
  path: string,
  onChunk: (b: Uint8Array) => void,
  signal: AbortSignal,
): Promise<void> {
  let r: Response;
  try {
    r = await request("GET", path, undefined, { signal });
  } catch (e) {
    if (signal.aborted) return;
    throw e;
  }
  if (!r.body) return;
  const reader = r.body.getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      if (value) onChunk(value);
    }
  } catch (e) {
    if (signal.aborted) return;
    throw e;
  } finally {
    reader.releaseLock();
  }
}

// A stream of JSON documents, one a line (events, stats?stream=1, host stats).
export async function streamJSON(
  path: string,
  onObject: (o: any) => void,
  signal: AbortSignal,
): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  await streamBytes(
    path,
    (b) => {
      buf += dec.decode(b, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let o: unknown;
        try {
          o = JSON.parse(line);
        } catch {
          continue; // not JSON: skip the line, keep the stream
        }
        onObject(o);
      }
    },
    signal,
  );
  const rest = buf.trim();
  if (rest) {
    try {
      onObject(JSON.parse(rest));
    } catch {
      /* a partial last line */
    }
  }
}

// ---- the session

// Whether this browser logged in before (no secret: the cookie is HttpOnly). Without it the app
// shows the login form at once instead of asking /web/session, whose refusal Chromium would log
// as a console error on every first visit.
const HINT = "vessel.loggedIn";

function setHint(on: boolean): void {
  try {
    if (on) localStorage.setItem(HINT, "1");
    else localStorage.removeItem(HINT);
  } catch {
    /* storage disabled: ask the daemon every time */
  }
}

function hint(): boolean {
  try {
    return localStorage.getItem(HINT) === "1";
  } catch {
    return true;
  }
}

export async function login(password: string): Promise<void> {
  const r = await fetch("/web/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ password }),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!r.ok) throw await errorOf(r);
  const j = await r.json();
  csrf = String(j.csrf || "");
  setHint(true);
}

// Is the cookie a live session? Sets the CSRF token when it is.
export async function resumeSession(): Promise<{ live: boolean; message: string }> {
  if (!hint()) return { live: false, message: "" };
  const r = await fetch("/web/session", { credentials: "same-origin", cache: "no-store" });
  const j = await r.json().catch(() => ({}));
  csrf = r.ok ? String(j.csrf || "") : "";
  setHint(csrf !== "");
  return { live: csrf !== "", message: csrf ? "" : String(j.message || "") };
}

export function forgetSession(): void {
  csrf = "";
  setHint(false);
}

export async function logout(): Promise<void> {
  try {
    await request("POST", "/web/logout", undefined, { redirect: false });
  } finally {
    forgetSession();
  }
}

export function wsURL(path: string): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const sep = path.includes("?") ? "&" : "?";
  return `${proto}//${location.host}${path}${sep}csrf=${encodeURIComponent(csrf)}`;
}
