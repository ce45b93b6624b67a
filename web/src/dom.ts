// DOM helpers. Every piece of text goes in as a text node (or textContent): nothing here parses
// HTML, so a guest name like "<img onerror=...>" is shown as the characters it is.

export type Child = Node | string | number | null | undefined | false | Child[];

export interface Props {
  class?: string;
  on?: { [event: string]: (e: any) => void };
  style?: string;
  [attr: string]: unknown;
}

function append(el: Node, c: Child): void {
  if (c === null || c === undefined || c === false) return;
  if (Array.isArray(c)) {
    for (const x of c) append(el, x);
  } else if (c instanceof Node) {
    el.appendChild(c);
  } else {
    el.appendChild(document.createTextNode(String(c)));
  }
}

// Properties set as properties (not attributes), so a form keeps what the code gave it.
const PROPS = new Set(["value", "checked", "disabled", "selected", "hidden"]);

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Props | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "on") {
        for (const [ev, fn] of Object.entries(v as Record<string, (e: any) => void>)) el.addEventListener(ev, fn);
      } else if (k === "class") {
        el.className = String(v);
      } else if (PROPS.has(k)) {
        (el as any)[k] = v;
      } else {
        el.setAttribute(k, v === true ? "" : String(v));
      }
    }
  }
  append(el, children);
  return el;
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replace(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

export function fmtBytes(n: number | undefined | null): string {
  if (n === undefined || n === null || !isFinite(n)) return "—";
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1)) + " " + u[i];
}

export function fmtNum(n: number | undefined | null, digits = 1): string {
  if (n === undefined || n === null || !isFinite(n)) return "—";
  return Number.isInteger(n) ? String(n) : n.toFixed(digits);
}

export function fmtTime(t: string | number | undefined): string {
  if (t === undefined || t === "" || t === 0) return "—";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  if (isNaN(d.getTime()) || d.getTime() <= 0) return "—";
  return d.toLocaleString();
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

// Split a command line as a shell would for words and quotes (no expansion).
export function splitCommand(s: string): string[] {
  const out: string[] = [];
  let cur = "";
  let have = false;
  let q: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) {
      if (c === q) q = null;
      else if (c === "\\" && q === '"' && i + 1 < s.length) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c;
      have = true;
    } else if (c === "\\" && i + 1 < s.length) {
      cur += s[++i];
      have = true;
    } else if (/\s/.test(c)) {
      if (have) out.push(cur);
      cur = "";
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (q) throw new Error("unterminated quote in the command");
  if (have) out.push(cur);
  return out;
}

// Terminal output made readable as plain text: escape sequences (colours, cursor moves, queries)
// and carriage returns before a newline go; other control characters too, but tabs and newlines.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b(?:\[[0-?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])|\r(?=\n)|[\x00-\x08\x0b-\x1f\x7f]/g;

export function plainText(s: string): string {
  return s.replace(ANSI, "");
}
