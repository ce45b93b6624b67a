// One guest's page: details, live CPU/memory/network graphs, logs, actions with confirmations,
// and its terminal (a VM's serial console, a container's TTY) in the page.

import { enc, get, post, del, q, request, streamBytes, streamJSON } from "../api";
import { LiveChart } from "../chart";
import { ask, confirmAction, toast } from "../dialog";
import { fmtBytes, fmtNum, fmtTime, h, plainText } from "../dom";
import { onEvent } from "../events";
import { updateGuest } from "../guests";
import { navigate, type PageContext } from "../router";
import type { TermHandle } from "../term";

const NAME_RX = "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}";
const LOG_MAX = 256 * 1024; // characters of log kept in the page

interface Action {
  id: string;
  label: string;
  when: (state: string) => boolean;
  run: () => Promise<unknown>;
  confirm?: { title: string; message: string; danger?: boolean };
  // why the action cannot be taken here (the button shows, disabled, with this as its tooltip)
  unavailable?: () => string | null;
}

// Whether this daemon is a node of a cluster (/info's VesselCluster), asked once per login.
let clusterInfo: Promise<{ enabled: boolean; node: string }> | null = null;
function cluster(): Promise<{ enabled: boolean; node: string }> {
  if (!clusterInfo) {
    clusterInfo = get<any>("/api/info").then(
      (i) => ({ enabled: !!i?.VesselCluster?.Enabled, node: String(i?.VesselCluster?.NodeName || "") }),
      () => {
        clusterInfo = null;
        return { enabled: false, node: "" };
      },
    );
  }
  return clusterInfo;
}

function detailList(pairs: [string, string | Node][]): HTMLElement {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

function actionBar(actions: Action[], name: string, state: () => string, after: () => void): { el: HTMLElement; update: () => void } {
  const buttons = actions.map((a) => {
    const b = h("button", { type: "button", class: a.confirm?.danger ? "danger" : "secondary", "data-action": a.id }, a.label);
    b.addEventListener("click", async () => {
      if (a.confirm && !(await confirmAction({ title: a.confirm.title, message: a.confirm.message, ok: a.label, danger: a.confirm.danger }))) return;
      b.disabled = true;
      b.classList.add("busy");
      try {
        await a.run();
        after();
      } catch (e: any) {
        toast(`${a.label} ${name}: ${e?.message || e}`, "error");
      } finally {
        b.classList.remove("busy");
        update();
      }
    });
    return { a, b };
  });
  const update = () => {
    const s = state();
    for (const { a, b } of buttons) {
      b.hidden = !a.when(s);
      const why = a.unavailable?.() ?? null;
      b.disabled = why !== null;
      if (why !== null) b.title = why;
      else b.removeAttribute("title");
    }
  };
  update();
  return { el: h("div", { class: "actions-bar", id: "guest-actions" }, buttons.map((x) => x.b)), update };
}

function logBox(): { el: HTMLElement; pre: HTMLPreElement; append: (s: string) => void; set: (s: string) => void } {
  const pre = h("pre", { class: "logs", id: "guest-logs", tabindex: 0 });
  const el = h("section", { class: "card wide" }, h("h2", null, "Logs"), pre);
  const stick = () => pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  const append = (s: string) => {
    const atEnd = stick();
    let t = (pre.textContent || "") + plainText(s);
    if (t.length > LOG_MAX) t = t.slice(t.length - LOG_MAX);
    pre.textContent = t;
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  const set = (s: string) => {
    const t = plainText(s.length > LOG_MAX ? s.slice(s.length - LOG_MAX) : s);
    pre.textContent = t;
    pre.scrollTop = pre.scrollHeight;
  };
  return { el, pre, append, set };
}

function terminalBox(ctx: PageContext, title: string, path: string, available: () => string | null): { el: HTMLElement; refresh: () => void } {
  const status = h("span", { class: "muted", id: "term-status" });
  const openBtn = h("button", { type: "button", class: "secondary", id: "term-open" }, "Open " + title.toLowerCase());
  const closeBtn = h("button", { type: "button", class: "secondary", id: "term-close", hidden: true }, "Close");
  const host = h("div", { class: "term", id: "terminal", hidden: true });
  let t: TermHandle | null = null;
  const close = () => {
    t?.close();
    t = null;
    host.hidden = true;
    closeBtn.hidden = true;
    refresh();
  };
  const refresh = () => {
    const why = available();
    openBtn.hidden = t !== null;
    openBtn.disabled = why !== null;
    if (!t) status.textContent = why ?? "";
  };
  openBtn.addEventListener("click", async () => {
    openBtn.disabled = true;
    status.textContent = "connecting…";
    const { openTerminal } = await import("../term");
    host.hidden = false;
    closeBtn.hidden = false;
    openBtn.hidden = true;
    t = openTerminal(host, path, (text) => (status.textContent = text));
  });
  closeBtn.addEventListener("click", close);
  ctx.onLeave(() => t?.close());
  refresh();
  return {
    el: h("section", { class: "card wide" }, h("div", { class: "card-head" }, h("h2", null, title), status, openBtn, closeBtn), host),
    refresh,
  };
}

// ---------------------------------------------------------------- VMs

export async function vmPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const id = ctx.params.id;
  const base = "/api/vessel/v1/vms/" + enc(id);
  let vm = await get<any>(base, { signal: ctx.signal });
  const cl = await cluster();
  const title = h("span", { class: "guest-name", id: "guest-name" }, vm.Name);
  const pill = h("span", { class: "pill", id: "guest-state" });
  const details = h("div", { id: "guest-details" });
  const snaps = h("div", { id: "guest-snapshots" });
  const state = () => String(vm.State?.Status || "");

  const cpu = new LiveChart("CPU (host time of the VMM)", [{ label: "CPU %", color: "#3b82f6" }], { format: (v) => v.toFixed(0) + "%" });
  const mem = new LiveChart("Memory", [{ label: "host RSS", color: "#10b981" }], { format: fmtBytes });
  const net = new LiveChart("Network (frames/s)", [
    { label: "rx", color: "#8b5cf6" },
    { label: "tx", color: "#f43f5e" },
  ], { format: (v) => v.toFixed(0) });
  ctx.onLeave(() => [cpu, mem, net].forEach((c) => c.dispose()));

  const refresh = async () => {
    vm = await get<any>(base, { signal: ctx.signal });
    draw();
  };
  const after = () => {
    updateGuest("vm:" + vm.Id, "vm");
    void refresh().catch(() => {});
  };
  const bar = actionBar([
    { id: "start", label: "Start", when: (s) => s === "created" || s === "stopped", run: () => post(base + "/start") },
    { id: "stop", label: "Stop", when: (s) => s === "running" || s === "paused", run: () => post(base + "/stop?t=30"),
      confirm: { title: `Stop ${vm.Name}?`, message: "The guest gets the power button; after 30 s it is killed." } },
    { id: "restart", label: "Restart", when: (s) => s === "running", run: () => post(base + "/restart?t=30"),
      confirm: { title: `Restart ${vm.Name}?`, message: "The guest is powered off and booted again." } },
    { id: "pause", label: "Pause", when: (s) => s === "running", run: () => post(base + "/pause"),
      confirm: { title: `Pause ${vm.Name}?`, message: "Its vCPUs stop until it is resumed." } },
    { id: "resume", label: "Resume", when: (s) => s === "paused", run: () => post(base + "/resume") },
    { id: "snapshot", label: "Snapshot", when: (s) => s === "running" || s === "paused", run: async () => {
      const name = await ask({ title: `Snapshot ${vm.Name}`, message: "Save the VM's state now; it goes on running.", ok: "Take snapshot", input: { label: "Snapshot name", pattern: NAME_RX, value: "snap-" + new Date().toISOString().slice(0, 19).replace(/[:T]/g, "") } });
      if (name === null) return;
      await post(base + "/snapshot" + q({ name }));
      toast(`snapshot ${name} taken`);
    } },
    { id: "clone", label: "Clone", when: (s) => s === "running" || s === "paused" || vm.Snapshots?.length > 0, run: async () => {
      const name = await ask({ title: `Clone ${vm.Name}`, message: vm.Snapshots?.length ? `From a snapshot taken now (or give one of: ${vm.Snapshots.join(", ")} after a colon, as name:snapshot).` : "From a snapshot taken now.", ok: "Clone", input: { label: "New VM's name", pattern: NAME_RX + "(:" + NAME_RX + ")?", value: vm.Name + "-clone" } });
      if (name === null) return;
      const [n, snap] = name.split(":");
      const r = await post(base + "/clone" + q({ name: n, snapshot: snap }));
      toast(`clone ${n} created`);
      if (r?.Id) updateGuest("vm:" + r.Id, "vm");
    } },
    { id: "migrate", label: "Migrate", when: () => true,
      unavailable: () => (cl.enabled ? null : "this vesseld is not in a cluster: VMs migrate between the nodes of one"),
      run: async () => {
        const nodes = await get<any[]>("/api/vessel/v1/nodes");
        const options: [string, string][] = (Array.isArray(nodes) ? nodes : [])
          .filter((n) => n && n.Name !== cl.node && n.Status === "ready" && !n.Unschedulable)
          .map((n) => [String(n.Name), String(n.Name)]);
        if (!options.length) throw new Error("no other node is ready to take it");
        const node = await ask({ title: `Migrate ${vm.Name}`, message: `${vm.Name} moves to the node chosen: a running VM goes on running there (its memory is copied while it runs), a stopped one starts there next time.`, ok: "Migrate", select: { label: "To node", options } });
        if (node === null) return;
        await post(base + "/migrate", { Node: node });
        toast(`${vm.Name} migrated to ${node}`);
      } },
    { id: "kill", label: "Kill", when: (s) => s === "running" || s === "paused", run: () => post(base + "/kill"),
      confirm: { title: `Kill ${vm.Name}?`, message: "The VMM is killed at once, as pulling the plug.", danger: true } },
    { id: "remove", label: "Remove", when: () => true, run: async () => {
      await del(base + "?force=1");
      navigate("/guests");
    }, confirm: { title: `Remove ${vm.Name}?`, message: "The VM, its disk, snapshots and console log are deleted. This cannot be undone.", danger: true } },
  ], vm.Name, state, after);

  const term = terminalBox(ctx, "Console", `/api/ws/vms/${enc(vm.Id)}/console`, () => (state() === "running" || state() === "paused" ? null : "the VM is not running"));
  const logs = logBox();

  const draw = () => {
    title.textContent = vm.Name;
    pill.textContent = state();
    pill.className = "pill state-" + state();
    pill.dataset.state = state();
    const c = vm.Config || {};
    const n = vm.NetworkSettings;
    details.replaceChildren(detailList([
      ["ID", h("span", { class: "mono" }, vm.Id)],
      ["vCPUs", String(c.Cpus ?? "")],
      ["Memory", fmtBytes(c.Memory)],
      ["Pool", c.Pool || "—"],
      ["QoS", c.Qos || "—"],
      ["Network", n ? `${n.Network} ${n.IPAddress || ""} ${n.MacAddress || ""}` : "—"],
      ["Disk", vm.Disk ? `${fmtBytes(vm.Disk.Size)} on ${vm.Disk.Base || "an empty disk"}` : "—"],
      ["Kernel", h("span", { class: "mono" }, c.Kernel || "")],
      ["Command line", h("span", { class: "mono" }, c.Append || "")],
      ["Created", fmtTime(vm.Created)],
      ["Started", fmtTime(vm.State?.StartedAt)],
      ["Finished", fmtTime(vm.State?.FinishedAt)],
      ["Exit code", vm.State?.ExitCode === -1 ? "—" : String(vm.State?.ExitCode ?? "")],
      ["Error", vm.State?.Error || "—"],
    ]));
    snaps.replaceChildren(vm.Snapshots?.length
      ? h("ul", { class: "snapshots" }, vm.Snapshots.map((s: string) => h("li", null, h("span", null, s), " ",
        h("button", { type: "button", class: "small secondary", "data-snapshot": s, on: { click: async () => {
          if (!(await confirmAction({ title: `Restore ${vm.Name} to ${s}?`, message: "The running guest is replaced by the snapshot's state.", ok: "Restore", danger: true }))) return;
          try {
            await post(base + "/restore" + q({ name: s }));
            after();
          } catch (e: any) {
            toast(`restore: ${e.message}`, "error");
          }
        } } }, "Restore"))))
      : h("p", { class: "muted" }, "No snapshots."));
    bar.update();
    term.refresh();
    startStats();
  };

  root.append(
    h("div", { class: "page-head" }, h("h1", null, h("span", { class: "muted" }, "VM "), title, " ", pill)),
    bar.el,
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Details"), details),
      h("section", { class: "card" }, h("h2", null, "Snapshots"), snaps),
      h("section", { class: "card wide charts", id: "guest-charts" }, cpu.el, mem.el, net.el),
      term.el,
      logs.el),
  );

  // live stats: GET .../stats?stream=1, one sample a second while the page is open and the VM
  // runs (the stream ends when it stops; an event about the VM opens it again)
  let statsCtl: AbortController | null = null;
  let prev: any = null;
  const sample = (s: any) => {
    const t = Date.parse(s.Read) || Date.now();
    if (prev) {
      const dt = (t - prev.t) / 1000 || 1;
      cpu.push(((s.Cpu.HostNs - prev.s.Cpu.HostNs) / 1e9 / dt) * 100);
      const rx = (x: any) => (x.Net?.Nics || []).reduce((a: number, n: any) => a + n.RxFrames, 0);
      const tx = (x: any) => (x.Net?.Nics || []).reduce((a: number, n: any) => a + n.TxFrames, 0);
      net.push((rx(s) - rx(prev.s)) / dt, (tx(s) - tx(prev.s)) / dt);
    }
    mem.push(s.Memory?.HostRss ?? null);
    prev = { s, t };
  };
  function startStats() {
    const running = state() === "running" || state() === "paused";
    if (!running) {
      statsCtl?.abort();
      statsCtl = null;
      prev = null;
      return;
    }
    if (statsCtl) return;
    const my = new AbortController();
    statsCtl = my;
    ctx.signal.addEventListener("abort", () => my.abort());
    void streamJSON(base + "/stats?stream=1", sample, my.signal).catch(() => {}).finally(() => {
      if (statsCtl === my) statsCtl = null;
    });
  }

  draw();
  // the console's history
  const loadLogs = async () => {
    try {
      const r = await request("GET", base + "/logs", undefined, { signal: ctx.signal });
      logs.set(await r.text());
    } catch (e: any) {
      if (!ctx.signal.aborted) logs.set("(no logs: " + e.message + ")");
    }
  };
  void loadLogs();
  const reload = h("button", { type: "button", class: "small secondary", id: "logs-reload", on: { click: () => void loadLogs() } }, "Reload");
  logs.el.querySelector("h2")!.after(reload);

  ctx.onLeave(onEvent((e) => {
    if (e.Type !== "vm" || e.Actor?.ID !== vm.Id) return;
    if (e.Action === "destroy") {
      toast(`${vm.Name} was removed`);
      navigate("/guests");
      return;
    }
    void refresh().catch(() => {});
  }));
}

// ---------------------------------------------------------------- containers

// Docker's log stream: without a TTY, frames of [stream, 0, 0, 0, size(4, big-endian)] + data.
function demux(onText: (s: string) => void): (b: Uint8Array) => void {
  const dec = new TextDecoder();
  let buf = new Uint8Array(0);
  return (b) => {
    const all = new Uint8Array(buf.length + b.length);
    all.set(buf);
    all.set(b, buf.length);
    let off = 0;
    while (all.length - off >= 8) {
      const size = ((all[off + 4] << 24) >>> 0) + (all[off + 5] << 16) + (all[off + 6] << 8) + all[off + 7];
      if (all.length - off - 8 < size) break;
      onText(dec.decode(all.subarray(off + 8, off + 8 + size), { stream: true }));
      off += 8 + size;
    }
    buf = all.slice(off);
  };
}

export async function containerPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const id = ctx.params.id;
  const base = "/api/containers/" + enc(id);
  let c = await get<any>(base + "/json", { signal: ctx.signal });
  const name = () => String(c.Name || "").replace(/^\//, "");
  const title = h("span", { class: "guest-name", id: "guest-name" }, name());
  const pill = h("span", { class: "pill", id: "guest-state" });
  const details = h("div", { id: "guest-details" });
  const labels = h("div", { id: "guest-labels" });
  const state = () => String(c.State?.Status || "");

  const cpu = new LiveChart("CPU", [{ label: "CPU %", color: "#3b82f6" }], { format: (v) => v.toFixed(1) + "%" });
  const mem = new LiveChart("Memory", [{ label: "usage", color: "#10b981" }], { format: fmtBytes });
  const net = new LiveChart("Network (bytes/s)", [
    { label: "rx", color: "#8b5cf6" },
    { label: "tx", color: "#f43f5e" },
  ], { format: fmtBytes });
  ctx.onLeave(() => [cpu, mem, net].forEach((x) => x.dispose()));

  const refresh = async () => {
    c = await get<any>(base + "/json", { signal: ctx.signal });
    draw();
  };
  const after = () => {
    updateGuest("container:" + c.Id, "container");
    void refresh().catch(() => {});
  };
  const bar = actionBar([
    { id: "start", label: "Start", when: (s) => ["created", "exited", "dead"].includes(s), run: () => post(base + "/start") },
    { id: "stop", label: "Stop", when: (s) => s === "running" || s === "restarting", run: () => post(base + "/stop?t=10"),
      confirm: { title: `Stop ${name()}?`, message: "It gets its stop signal; after 10 s it is killed." } },
    { id: "restart", label: "Restart", when: (s) => s === "running", run: () => post(base + "/restart?t=10"),
      confirm: { title: `Restart ${name()}?`, message: "It is stopped and started again." } },
    { id: "pause", label: "Pause", when: (s) => s === "running", run: () => post(base + "/pause"),
      confirm: { title: `Pause ${name()}?`, message: "Its processes are frozen until it is resumed." } },
    { id: "resume", label: "Resume", when: (s) => s === "paused", run: () => post(base + "/unpause") },
    { id: "snapshot", label: "Commit", when: (s) => s !== "dead", run: async () => {
      const repo = await ask({ title: `Commit ${name()} to an image`, message: "Its filesystem changes become a new image.", ok: "Commit", input: { label: "Image name", value: name().toLowerCase() + "-snapshot:latest", pattern: "[a-z0-9][a-z0-9._/\\-]*(:[A-Za-z0-9_.\\-]+)?" } });
      if (repo === null) return;
      const [r, tag] = repo.split(":");
      await post("/api/commit" + q({ container: c.Id, repo: r, tag: tag || "latest" }));
      toast(`image ${repo} made`);
    } },
    { id: "clone", label: "Clone", when: () => true, run: async () => {
      const n = await ask({ title: `Clone ${name()}`, message: "A new container with the same image and configuration (not its filesystem changes).", ok: "Create", input: { label: "New container's name", pattern: NAME_RX, value: name() + "-clone" } });
      if (n === null) return;
      const body = { ...c.Config, HostConfig: c.HostConfig };
      delete body.Hostname;
      const r = await post("/api/containers/create" + q({ name: n }), body);
      if (r?.Id) {
        updateGuest("container:" + r.Id, "container");
        navigate("/container/" + enc(r.Id));
      }
    } },
    { id: "kill", label: "Kill", when: (s) => s === "running" || s === "paused", run: () => post(base + "/kill"),
      confirm: { title: `Kill ${name()}?`, message: "Its processes get SIGKILL at once.", danger: true } },
    { id: "remove", label: "Remove", when: () => true, run: async () => {
      await del(base + "?force=1&v=1");
      navigate("/guests");
    }, confirm: { title: `Remove ${name()}?`, message: "The container and its anonymous volumes are deleted (a running one is killed first).", danger: true } },
  ], name(), state, after);

  // without a TTY the terminal shows the output (and sends input when stdin is open), as docker attach
  const term = terminalBox(ctx, "Terminal", `/api/ws/containers/${enc(c.Id)}/attach`, () =>
    state() === "running" ? null : "the container is not running");
  const logs = logBox();

  const draw = () => {
    title.textContent = name();
    pill.textContent = state();
    pill.className = "pill state-" + state();
    pill.dataset.state = state();
    const cfg = c.Config || {};
    const hc = c.HostConfig || {};
    const nets = c.NetworkSettings?.Networks || {};
    details.replaceChildren(detailList([
      ["ID", h("span", { class: "mono" }, c.Id)],
      ["Image", h("span", { class: "mono" }, cfg.Image || "")],
      ["Command", h("span", { class: "mono" }, [c.Path, ...(c.Args || [])].filter(Boolean).join(" "))],
      ["TTY", cfg.Tty ? "yes" : "no"],
      ["Pool", cfg.Labels?.["vessel.pool"] || "—"],
      ["CPUs", hc.NanoCpus ? fmtNum(hc.NanoCpus / 1e9, 2) : "—"],
      ["Memory limit", hc.Memory ? fmtBytes(hc.Memory) : "—"],
      ["Networks", Object.entries<any>(nets).map(([k, v]) => `${k} ${v?.IPAddress || ""}`).join(", ") || String(hc.NetworkMode || "—")],
      ["Created", fmtTime(c.Created)],
      ["Started", fmtTime(c.State?.StartedAt)],
      ["Finished", fmtTime(c.State?.FinishedAt)],
      ["Exit code", String(c.State?.ExitCode ?? "")],
      ["Restart policy", hc.RestartPolicy?.Name || "no"],
    ]));
    const ls = Object.entries<string>(cfg.Labels || {});
    labels.replaceChildren(ls.length
      ? h("table", { class: "data kv" }, h("tbody", null, ls.map(([k, v]) => h("tr", null, h("td", { class: "mono" }, k), h("td", { class: "mono" }, String(v))))))
      : h("p", { class: "muted" }, "No labels."));
    bar.update();
    term.refresh();
    startStats();
    startLogs();
  };

  root.append(
    h("div", { class: "page-head" }, h("h1", null, h("span", { class: "muted" }, "Container "), title, " ", pill)),
    bar.el,
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", null, "Details"), details),
      h("section", { class: "card" }, h("h2", null, "Labels"), labels),
      h("section", { class: "card wide charts", id: "guest-charts" }, cpu.el, mem.el, net.el),
      term.el,
      logs.el),
  );

  let statsCtl: AbortController | null = null;
  let prevNet: { rx: number; tx: number; t: number } | null = null;
  function startStats() {
    if (state() !== "running") {
      statsCtl?.abort();
      statsCtl = null;
      return;
    }
    if (statsCtl) return;
    const my = new AbortController();
    statsCtl = my;
    ctx.signal.addEventListener("abort", () => my.abort());
    void streamJSON(base + "/stats?stream=1", (s) => {
      const cu = s.cpu_stats?.cpu_usage?.total_usage;
      const pcu = s.precpu_stats?.cpu_usage?.total_usage;
      const sys = s.cpu_stats?.system_cpu_usage;
      const psys = s.precpu_stats?.system_cpu_usage;
      const ncpu = s.cpu_stats?.online_cpus || 1;
      cpu.push(pcu !== undefined && psys && sys > psys ? ((cu - pcu) / (sys - psys)) * ncpu * 100 : null);
      mem.push(s.memory_stats?.usage ?? null);
      let rx = 0;
      let tx = 0;
      for (const n of Object.values<any>(s.networks || {})) {
        rx += n.rx_bytes || 0;
        tx += n.tx_bytes || 0;
      }
      const t = Date.parse(s.read) || Date.now();
      if (prevNet) {
        const dt = (t - prevNet.t) / 1000 || 1;
        net.push((rx - prevNet.rx) / dt, (tx - prevNet.tx) / dt);
      }
      prevNet = { rx, tx, t };
    }, my.signal).catch(() => {}).finally(() => {
      if (statsCtl === my) statsCtl = null;
    });
  }

  let logsCtl: AbortController | null = null;
  let logsFollowing = false;
  function startLogs() {
    const running = state() === "running" || state() === "paused";
    if (logsCtl && (logsFollowing || !running)) return;
    logsCtl?.abort();
    const my = new AbortController();
    logsCtl = my;
    logsFollowing = running;
    ctx.signal.addEventListener("abort", () => my.abort());
    logs.set("");
    const onText = (s: string) => logs.append(s);
    const onBytes = c.Config?.Tty ? ((d: TextDecoder) => (b: Uint8Array) => onText(d.decode(b, { stream: true })))(new TextDecoder()) : demux(onText);
    void streamBytes(base + "/logs" + q({ stdout: 1, stderr: 1, tail: 500, follow: running ? 1 : undefined }), onBytes, my.signal)
      .catch((e) => onText(`\n(logs: ${e.message})\n`))
      .finally(() => {
        if (logsCtl === my && logsFollowing) logsCtl = null;
      });
  }

  draw();
  ctx.onLeave(onEvent((e) => {
    if (e.Type !== "container" || e.Actor?.ID !== c.Id) return;
    if (/^(exec_|attach|resize|top)/.test(e.Action)) return;
    if (e.Action === "destroy") {
      toast(`${name()} was removed`);
      navigate("/guests");
      return;
    }
    void refresh().catch(() => {});
  }));
}
