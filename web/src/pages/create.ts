// Create forms: a container from an image (name, command, TTY, network, pool, limits) and a VM
// (name, vCPUs, memory, disk, network, pool, QoS).

import { enc, get, post, q } from "../api";
import { toast } from "../dialog";
import { h, splitCommand } from "../dom";
import { updateGuest } from "../guests";
import { navigate, type PageContext } from "../router";

const NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}";

function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", null, label), input, hint ? h("small", { class: "muted" }, hint) : null);
}

async function options(path: string, pick: (x: any) => string[], signal: AbortSignal): Promise<string[]> {
  try {
    const list = await get<any>(path, { signal });
    const arr: any[] = Array.isArray(list) ? list : list?.Volumes || [];
    return [...new Set(arr.flatMap(pick).filter(Boolean))].sort();
  } catch {
    return [];
  }
}

function select(id: string, values: string[], first: string): HTMLSelectElement {
  return h("select", { id, name: id }, h("option", { value: "" }, first), values.map((v) => h("option", { value: v }, v)));
}

export async function newContainerPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const [images, networks, pools] = await Promise.all([
    options("/api/images/json", (i) => (i.RepoTags || []).filter((t: string) => t !== "<none>:<none>"), ctx.signal),
    options("/api/networks", (n) => [n.Name], ctx.signal),
    options("/api/vessel/v1/pools", (p) => [p.Name], ctx.signal),
  ]);
  const image = h("input", { id: "ctr-image", name: "image", required: true, list: "image-list", placeholder: "busybox:latest", value: ctx.query.get("image") || images[0] || "", autocomplete: "off" });
  const name = h("input", { id: "ctr-name", name: "name", pattern: NAME_PATTERN, placeholder: "(generated)", autocomplete: "off" });
  const cmd = h("input", { id: "ctr-cmd", name: "cmd", placeholder: "(the image's command)", autocomplete: "off" });
  const tty = h("input", { id: "ctr-tty", name: "tty", type: "checkbox" });
  const start = h("input", { id: "ctr-start", name: "start", type: "checkbox", checked: true });
  const network = select("ctr-network", networks, "(default)");
  const pool = select("ctr-pool", pools, "(none)");
  const cpus = h("input", { id: "ctr-cpus", name: "cpus", type: "number", min: "0", step: "0.1", placeholder: "no limit" });
  const memory = h("input", { id: "ctr-memory", name: "memory", placeholder: "no limit (e.g. 256M)", pattern: "[0-9]+[KMGkmg]?" });
  const err = h("p", { class: "error", role: "alert", id: "ctr-error" });
  const submit = h("button", { type: "submit", class: "primary", id: "ctr-submit" }, "Create");
  const form = h("form", { class: "form", id: "new-container" },
    h("datalist", { id: "image-list" }, images.map((i) => h("option", { value: i }))),
    field("Image", image),
    field("Name", name),
    field("Command", cmd, "words and quotes as in a shell; empty: the image's"),
    h("label", { class: "check" }, tty, " Allocate a TTY (interactive terminal in the page)"),
    field("Network", network),
    field("Pool", pool),
    field("CPUs", cpus),
    field("Memory", memory),
    h("label", { class: "check" }, start, " Start it now"),
    h("div", { class: "form-buttons" }, submit), err);
  root.append(h("h1", null, "New container"), form);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    let argv: string[] = [];
    try {
      argv = splitCommand(cmd.value);
    } catch (x: any) {
      err.textContent = x.message;
      return;
    }
    const hc: any = {};
    if (network.value) hc.NetworkMode = network.value;
    if (cpus.value && Number(cpus.value) > 0) hc.NanoCpus = Math.round(Number(cpus.value) * 1e9);
    if (memory.value) hc.Memory = parseSize(memory.value);
    const body: any = {
      Image: image.value.trim(),
      Tty: tty.checked,
      OpenStdin: tty.checked,
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: hc,
    };
    if (argv.length) body.Cmd = argv;
    if (pool.value) body.Labels = { "vessel.pool": pool.value };
    submit.disabled = true;
    try {
      const r = await post("/api/containers/create" + q({ name: name.value.trim() }), body);
      updateGuest("container:" + r.Id, "container");
      if (start.checked) {
        try {
          await post("/api/containers/" + enc(r.Id) + "/start");
        } catch (x: any) {
          toast("created, but start failed: " + x.message, "error");
        }
      }
      navigate("/container/" + enc(r.Id));
    } catch (x: any) {
      err.textContent = x.message;
    } finally {
      submit.disabled = false;
    }
  });
}

function parseSize(s: string): number {
  const m = /^(\d+)([kmg]?)$/i.exec(s.trim());
  if (!m) return 0;
  const mult: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };
  return Number(m[1]) * mult[m[2].toLowerCase()];
}

export async function newVmPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  const [networks, pools] = await Promise.all([
    options("/api/networks", (n) => (n.Driver === "bridge" ? [n.Name] : []), ctx.signal),
    options("/api/vessel/v1/pools", (p) => [p.Name], ctx.signal),
  ]);
  const name = h("input", { id: "vm-name", name: "name", required: true, pattern: NAME_PATTERN, autocomplete: "off" });
  const cpus = h("input", { id: "vm-cpus", name: "cpus", type: "number", min: "1", max: "8", value: "1" });
  const memory = h("input", { id: "vm-memory", name: "memory", value: "256M", pattern: "[0-9]+[KMGTkmgt]?", required: true });
  const disk = h("input", { id: "vm-disk", name: "disk", placeholder: "absolute path of a base image (empty: none)" });
  const diskSize = h("input", { id: "vm-disk-size", name: "disksize", placeholder: "e.g. 1G", pattern: "[0-9]+[KMGTkmgt]?" });
  const append = h("input", { id: "vm-append", name: "append", placeholder: "console=ttyS0" });
  const network = select("vm-network", networks, "(none)");
  const pool = select("vm-pool", pools, "(none)");
  const qos = h("select", { id: "vm-qos", name: "qos" }, ["", "guaranteed", "burstable", "best-effort"].map((v) => h("option", { value: v }, v || "(default)")));
  const start = h("input", { id: "vm-start", type: "checkbox", checked: true });
  const err = h("p", { class: "error", role: "alert", id: "vm-error" });
  const submit = h("button", { type: "submit", class: "primary", id: "vm-submit" }, "Create");
  const form = h("form", { class: "form", id: "new-vm" },
    field("Name", name),
    field("vCPUs", cpus),
    field("Memory", memory),
    field("Disk base image", disk),
    field("Disk size", diskSize),
    field("Kernel command line", append, "empty: the default guest's"),
    field("Network", network),
    field("Pool", pool),
    field("QoS", qos),
    h("label", { class: "check" }, start, " Start it now"),
    h("div", { class: "form-buttons" }, submit), err);
  root.append(h("h1", null, "New VM"), h("p", { class: "muted" }, "Boots the default Debian guest (its kernel and initramfs) unless told otherwise."), form);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.textContent = "";
    const body: any = { Name: name.value.trim(), Cpus: Number(cpus.value) || 1, Memory: memory.value.trim() };
    if (disk.value.trim()) body.Disk = disk.value.trim();
    if (diskSize.value.trim()) body.DiskSize = diskSize.value.trim();
    if (append.value.trim()) body.Append = append.value.trim();
    if (network.value) body.Network = network.value;
    if (pool.value) body.Pool = pool.value;
    if (qos.value) body.Qos = qos.value;
    submit.disabled = true;
    try {
      const r = await post("/api/vessel/v1/vms", body);
      updateGuest("vm:" + r.Id, "vm");
      if (start.checked) {
        try {
          await post("/api/vessel/v1/vms/" + enc(r.Id) + "/start");
        } catch (x: any) {
          toast("created, but start failed: " + x.message, "error");
        }
      }
      navigate("/vm/" + enc(r.Id));
    } catch (x: any) {
      err.textContent = x.message;
    } finally {
      submit.disabled = false;
    }
  });
}
