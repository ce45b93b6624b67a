// A small live line chart on a canvas: a fixed number of samples per series, drawn again on each
// push (cheap: a few hundred points), scaled to the element's size and the device's pixel ratio.

import { h } from "./dom";

export interface Series {
  label: string;
  color: string;
}

export class LiveChart {
  el: HTMLElement;
  private canvas: HTMLCanvasElement;
  private legend: HTMLElement;
  private values: number[][];
  private series: Series[];
  private capacity: number;
  private fixedMax: number | null;
  private format: (v: number) => string;
  private ro: ResizeObserver;

  constructor(
    title: string,
    series: Series[],
    opt: { capacity?: number; max?: number; format?: (v: number) => string } = {},
  ) {
    this.series = series;
    this.capacity = opt.capacity ?? 120;
    this.fixedMax = opt.max ?? null;
    this.format = opt.format ?? ((v) => v.toFixed(1));
    this.values = series.map(() => []);
    this.canvas = h("canvas", { class: "chart-canvas", role: "img", "aria-label": title });
    this.legend = h("div", { class: "chart-legend" });
    this.el = h("figure", { class: "chart" }, h("figcaption", null, title), this.legend, this.canvas);
    this.ro = new ResizeObserver(() => this.draw());
    this.ro.observe(this.canvas);
    this.drawLegend();
  }

  push(...vals: (number | null)[]): void {
    vals.forEach((v, i) => {
      const arr = this.values[i];
      if (!arr) return;
      arr.push(v === null || !isFinite(v) ? NaN : v);
      if (arr.length > this.capacity) arr.shift();
    });
    this.drawLegend();
    this.draw();
  }

  dispose(): void {
    this.ro.disconnect();
  }

  private drawLegend(): void {
    const parts = this.series.map((s, i) => {
      const arr = this.values[i];
      const last = arr.length ? arr[arr.length - 1] : NaN;
      return h(
        "span",
        { class: "chart-key" },
        h("i", { style: `background:${s.color}` }),
        `${s.label} ${isNaN(last) ? "—" : this.format(last)}`,
      );
    });
    this.legend.replaceChildren(...parts);
  }

  private draw(): void {
    const c = this.canvas;
    const w = c.clientWidth;
    const hgt = c.clientHeight;
    if (!w || !hgt) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const g = c.getContext("2d");
    if (!g) return;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    let max = this.fixedMax ?? 0;
    if (this.fixedMax === null) {
      for (const arr of this.values) for (const v of arr) if (!isNaN(v) && v > max) max = v;
      max = max > 0 ? niceCeil(max) : 1;
    }
    // grid: quarters, with the top value written
    g.strokeStyle = "rgba(128,128,128,0.25)";
    g.lineWidth = 1;
    g.beginPath();
    for (let i = 0; i <= 4; i++) {
      const y = Math.round((hgt - 1) * (i / 4)) + 0.5;
      g.moveTo(0, y);
      g.lineTo(w, y);
    }
    g.stroke();
    g.fillStyle = "rgba(128,128,128,0.9)";
    g.font = "11px system-ui, sans-serif";
    g.fillText(this.format(max), 4, 12);
    const step = w / Math.max(1, this.capacity - 1);
    this.values.forEach((arr, si) => {
      g.strokeStyle = this.series[si].color;
      g.lineWidth = 1.5;
      g.beginPath();
      let pen = false;
      const off = this.capacity - arr.length;
      arr.forEach((v, i) => {
        if (isNaN(v)) {
          pen = false;
          return;
        }
        const x = (off + i) * step;
        const y = hgt - 1 - (Math.min(v, max) / max) * (hgt - 2);
        if (pen) g.lineTo(x, y);
        else g.moveTo(x, y);
        pen = true;
      });
      g.stroke();
    });
  }
}

function niceCeil(v: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
