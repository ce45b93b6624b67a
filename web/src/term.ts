// A terminal in the page: xterm.js on a websocket to vesseld (a VM's serial console or a
// container's TTY). Bytes go both ways as binary frames; a resize is a JSON text frame.

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { wsURL } from "./api";

export interface TermHandle {
  close(): void;
  term: Terminal;
}

export function openTerminal(
  host: HTMLElement,
  path: string,
  onStatus: (text: string, open: boolean) => void,
): TermHandle {
  const term = new Terminal({
    convertEol: false,
    cursorBlink: true,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
    fontSize: 14,
    scrollback: 5000,
    theme: { background: "#0b1020" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(host);
  const enc = new TextEncoder();
  const ws = new WebSocket(wsURL(path));
  ws.binaryType = "arraybuffer";
  let closed = false;

  const sendSize = () => {
    if (ws.readyState === WebSocket.OPEN)
      ws.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
  };
  const refit = () => {
    if (closed || !host.isConnected || !host.clientWidth || !host.clientHeight) return;
    try {
      fit.fit();
    } catch {
      /* not laid out yet */
    }
  };
  term.onResize(sendSize);
  const ro = new ResizeObserver(() => refit());
  ro.observe(host);
  window.addEventListener("resize", refit);
  refit();

  ws.onopen = () => {
    onStatus("connected", true);
    sendSize();
    term.focus();
  };
  ws.onmessage = (m) => {
    if (m.data instanceof ArrayBuffer) term.write(new Uint8Array(m.data));
    else if (typeof m.data === "string") term.write(m.data);
  };
  ws.onclose = (e) => {
    onStatus(e.code === 1000 ? "the guest's stream ended" : `disconnected (${e.code}${e.reason ? " " + e.reason : ""})`, false);
  };
  ws.onerror = () => {
    /* onclose follows with the code */
  };
  term.onData((d) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });
  term.onBinary((d) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const b = new Uint8Array(d.length);
    for (let i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
    ws.send(b);
  });

  return {
    term,
    close() {
      if (closed) return;
      closed = true;
      ro.disconnect();
      window.removeEventListener("resize", refit);
      ws.onmessage = null;
      ws.onclose = null;
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      else if (ws.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close(1000);
      term.dispose();
    },
  };
}
