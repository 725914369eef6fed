// Today's calls (bars) and service level (line) by 15-minute interval, as inline SVG.
// Other figures of the same shape (two counts, a share) pass their own legend labels
// (`options.labels`) and no target line (`target` null).

import { svg } from "./dom.js";
import { t } from "./i18n.js";

const W = 900;
const H = 300;
const PAD = { left: 44, right: 52, top: 16, bottom: 46 };

const CALL_LABELS = { offered: "chart.offered", answered: "chart.answered", sl: "chart.sl" };

export function drawChart(container, intervals, target, options = {}) {
  const labels = { ...CALL_LABELS, ...(options.labels || {}) };
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
    svg("title", {}, `${row.start} · ${t(labels.offered)} ${row.offered}`)),
    svg("rect", { class: "bar answered", x: x(i) - barW / 2, y: yCalls(row.answered),
      width: barW, height: PAD.top + plotH - yCalls(row.answered) }),
  ]);
  const labelEvery = Math.max(1, Math.ceil(n / 12));
  const ticks = intervals.map((row, i) => (i % labelEvery === 0
    ? svg("text", { class: "axis", x: x(i), y: H - PAD.bottom + 18, "text-anchor": "middle" },
      row.start)
    : null));
  const points = intervals.map((row, i) => (row.sl === null ? null : [x(i), ySl(row.sl)]));
  const targetLine = target === null ? null : svg("line", { class: "target", x1: PAD.left,
    x2: W - PAD.right, y1: ySl(target), y2: ySl(target) });
  const [offered, answered, sl] = [t(labels.offered), t(labels.answered), t(labels.sl)];
  const x2 = after(0, offered, 150);
  const x3 = after(x2, answered, 300);
  const x4 = after(x3, sl, 450);
  const legend = svg("g", { class: "legend", transform: `translate(${PAD.left}, ${H - 10})` },
    swatch(0, "bar offered", offered),
    swatch(x2, "bar answered", answered),
    svg("line", { class: "sl-line", x1: x3, x2: x3 + 22, y1: -4, y2: -4 }),
    svg("text", { class: "axis", x: x3 + 28, y: 0 }, sl),
    target === null ? null : [
      svg("line", { class: "target", x1: x4, x2: x4 + 22, y1: -4, y2: -4 }),
      svg("text", { class: "axis", x: x4 + 28, y: 0 }, t("chart.target", {
        p: Math.round(target * 100) }))]);
  container.replaceChildren(svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": t("wallboard.chart"),
    preserveAspectRatio: "xMidYMid meet" },
  grid, bars, targetLine, slPath(points), ticks, legend));
}

// Where the legend's next entry starts: after this one's label (about 9 units a Latin
// letter, twice that a CJK character), and no sooner than `least`.
function after(x, label, least) {
  const units = [...label].reduce((n, c) => n + (c.codePointAt(0) > 0x2e80 ? 2 : 1), 0);
  return Math.max(least, x + 44 + units * 9);
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
