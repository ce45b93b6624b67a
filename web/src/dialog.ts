// Modal confirmations and small prompts on <dialog>: the text goes in as text.

import { h } from "./dom";

export interface ConfirmOptions {
  title: string;
  message?: string;
  ok?: string;
  danger?: boolean;
  input?: { label: string; value?: string; pattern?: string; placeholder?: string };
  // a choice instead of a text: [value, label] pairs
  select?: { label: string; options: [string, string][] };
}

// Resolves to the input's value (or "" without one) when confirmed, null when cancelled.
export function ask(o: ConfirmOptions): Promise<string | null> {
  return new Promise((resolve) => {
    let input: HTMLInputElement | null = null;
    if (o.input) {
      input = h("input", {
        type: "text",
        name: "value",
        value: o.input.value ?? "",
        placeholder: o.input.placeholder,
        pattern: o.input.pattern,
        required: true,
        autocomplete: "off",
      });
    }
    let select: HTMLSelectElement | null = null;
    if (o.select) {
      select = h("select", { name: "value", required: true },
        o.select.options.map(([v, label]) => h("option", { value: v }, label)));
    }
    const okBtn = h("button", { type: "submit", class: o.danger ? "danger" : "primary", value: "ok" }, o.ok ?? "OK");
    const cancel = h("button", { type: "button", class: "secondary", value: "cancel" }, "Cancel");
    const form = h(
      "form",
      { method: "dialog" },
      h("h2", null, o.title),
      o.message ? h("p", null, o.message) : null,
      input ? h("label", null, o.input!.label, input) : null,
      select ? h("label", null, o.select!.label, select) : null,
      h("div", { class: "dialog-buttons" }, cancel, okBtn),
    );
    const dlg = h("dialog", { class: "confirm" }, form);
    let done = false;
    const finish = (v: string | null) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input && !input.reportValidity()) return;
      finish(input ? input.value.trim() : select ? select.value : "");
    });
    cancel.addEventListener("click", () => finish(null));
    dlg.addEventListener("cancel", () => finish(null));
    document.body.appendChild(dlg);
    dlg.showModal();
    (input ?? select ?? okBtn).focus();
  });
}

export async function confirmAction(o: ConfirmOptions): Promise<boolean> {
  return (await ask(o)) !== null;
}

// A short message at the bottom of the page (errors of actions, results).
export function toast(text: string, kind: "error" | "info" = "info"): void {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", "aria-live": "polite" });
    document.body.appendChild(box);
  }
  const t = h("div", { class: "toast " + kind, role: kind === "error" ? "alert" : "status" }, text);
  box.appendChild(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}
