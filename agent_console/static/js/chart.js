// Today's calls (bars) and service level (line) by 15-minute interval, as inline SVG.

import { svg } from "./dom.js";
import { t } from "./i18n.js";

const W = 900;
const H = 300;
const PAD = { left: 44, right: 52, top: 16, bottom: 46 };

export function drawChart(container, intervals, target) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const n = Math.max(1, intervals.length);
  const step = plotW / n;
  const barW = Math.max(2, Math.min(28, step * 0.7));
  const maxCalls = niceMax(Math.max(1, ...intervals.map((i) => i.offered)));
  const x = (index) => PAD.left + step * index + step / 2;
  const yCalls = (v) => PAD.top + plotH - (v / maxCalls) * plotH;
  const ySl = (v) => PAD.top + plotH - v * plotH;

  const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => [
    svg("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: ySl(f), y2: ySl(f) }),
    svg("text", { class: "axis", x: PAD.left - 8, y: ySl(f) + 4, "text-anchor": "end" },
      String(Math.round(maxCalls * f))),
    svg("text", { class: "axis", x: W - PAD.right + 8, y: ySl(f) + 4 }, `${Math.round(f * 100)}%`),
  ]);
  const bars = intervals.map((row, i) => [
    svg("rect", { class: "bar offered", x: x(i) - barW / 2, y: yCalls(row.offered),
      width: barW, height: PAD.top + plotH - yCalls(row.offered) },
    svg("title", {}, `${row.start} · ${t("chart.offered")} ${row.offered}`)),
    svg("rect", { class: "bar answered", x: x(i) - barW / 2, y: yCalls(row.answered),
      width: barW, height: PAD.top + plotH - yCalls(row.answered) }),
  ]);
  const labelEvery = Math.max(1, Math.ceil(n / 12));
  const labels = intervals.map((row, i) => (i % labelEvery === 0
    ? svg("text", { class: "axis", x: x(i), y: H - PAD.bottom + 18, "text-anchor": "middle" },
      row.start)
    : null));
  const points = intervals.map((row, i) => (row.sl === null ? null : [x(i), ySl(row.sl)]));
  const targetLine = svg("line", { class: "target", x1: PAD.left, x2: W - PAD.right,
    y1: ySl(target), y2: ySl(target) });
  const legend = svg("g", { class: "legend", transform: `translate(${PAD.left}, ${H - 10})` },
    swatch(0, "bar offered", t("chart.offered")),
    swatch(150, "bar answered", t("chart.answered")),
    svg("line", { class: "sl-line", x1: 300, x2: 322, y1: -4, y2: -4 }),
    svg("text", { class: "axis", x: 328, y: 0 }, t("chart.sl")),
    svg("line", { class: "target", x1: 450, x2: 472, y1: -4, y2: -4 }),
    svg("text", { class: "axis", x: 478, y: 0 }, t("chart.target", {
      p: Math.round(target * 100) })));
  container.replaceChildren(svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": t("wallboard.chart"),
    preserveAspectRatio: "xMidYMid meet" },
  grid, bars, targetLine, slPath(points), labels, legend));
}

function swatch(offset, cls, label) {
  return [svg("rect", { class: cls, x: offset, y: -12, width: 14, height: 14 }),
    svg("text", { class: "axis", x: offset + 20, y: 0 }, label)];
}

// The SL line, broken where an interval had no finished calls.
function slPath(points) {
  let d = "";
  let pen = false;
  const dots = [];
  for (const p of points) {
    if (!p) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${p[0].toFixed(1)},${p[1].toFixed(1)}`;
    pen = true;
    dots.push(svg("circle", { class: "sl-dot", cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 3.5 }));
  }
  return [svg("path", { class: "sl-line", d }), dots];
}

function niceMax(value) {
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 4, 5, 10]) if (value <= m * magnitude) return Math.max(4, m * magnitude);
  return value;
}
