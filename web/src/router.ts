// History-API routing: links with data-link stay in the page; each route renders into the main
// element and gets an AbortSignal that ends its streams when the page is left.

export interface PageContext {
  params: Record<string, string>;
  query: URLSearchParams;
  signal: AbortSignal;
  // called when the page is left (charts, observers, sockets)
  onLeave: (fn: () => void) => void;
}

export type Page = (root: HTMLElement, ctx: PageContext) => void | Promise<void>;

interface Route {
  rx: RegExp;
  names: string[];
  page: Page;
  nav: string;
}

const routes: Route[] = [];
let current: { ctl: AbortController; leave: (() => void)[] } | null = null;
let renderTarget: () => HTMLElement;
let beforeRender: (path: string, nav: string) => boolean = () => true;

export function route(pattern: string, page: Page, nav = pattern): void {
  const names: string[] = [];
  const rx = new RegExp(
    "^" + pattern.replace(/:([a-z]+)/g, (_, n) => (names.push(n), "([^/]+)")) + "/?$",
  );
  routes.push({ rx, names, page, nav });
}

export function navigate(path: string, replace = false): void {
  if (replace) history.replaceState(null, "", path);
  else if (path !== location.pathname + location.search) history.pushState(null, "", path);
  void render();
}

export function leaveCurrent(): void {
  if (!current) return;
  current.ctl.abort();
  for (const fn of current.leave) {
    try {
      fn();
    } catch (e) {
      console.warn(e);
    }
  }
  current = null;
}

export async function render(): Promise<void> {
  leaveCurrent();
  const path = location.pathname;
  for (const r of routes) {
    const m = r.rx.exec(path);
    if (!m) continue;
    if (!beforeRender(path, r.nav)) return;
    const params: Record<string, string> = {};
    r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1])));
    const ctl = new AbortController();
    const me = { ctl, leave: [] as (() => void)[] };
    current = me;
    const root = renderTarget();
    root.replaceChildren();
    try {
      await r.page(root, {
        params,
        query: new URLSearchParams(location.search),
        signal: ctl.signal,
        onLeave: (fn) => me.leave.push(fn),
      });
    } catch (e: any) {
      if (ctl.signal.aborted) return;
      if (e && e.status === 401) return; // the login page has taken over
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = "Error: " + (e?.message || String(e));
      root.appendChild(p);
    }
    return;
  }
  navigate("/", true);
}

export function startRouter(target: () => HTMLElement, guard: (path: string, nav: string) => boolean): void {
  renderTarget = target;
  beforeRender = guard;
  window.addEventListener("popstate", () => void render());
  document.addEventListener("click", (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.("a[data-link]") as HTMLAnchorElement | null;
    if (!a) return;
    e.preventDefault();
    navigate(a.getAttribute("href") || "/");
  });
}
