// The customer report on the Reports page (GET /api/v1/reports/customers): churn,
// tier movements, complaints by category against their SLA, and the satisfaction trend.
// Definitions: docs/reports.md, "Figures of customers".

import { drawChart } from "./chart.js";
import { $, fill, h } from "./dom.js";
import { number, percent } from "./format.js";
import { t } from "./i18n.js";

const dash = (v) => (v === null || v === undefined ? "—" : null);
const count = (v) => dash(v) ?? number(v);
const share = (v) => dash(v) ?? percent(v, 1);
const hours = (v) => dash(v) ?? t("reports.hours", { h: number(v, 1) });
const average = (v) => dash(v) ?? number(v, 2);

const TREND = [["csat_responses", count], ["csat_average", average],
  ["csat_satisfied", share], ["complaints_opened", count],
  ["complaints_resolved_within_sla", count]];
const CATEGORIES = [["opened", count], ["resolved", count], ["resolved_within_sla", count],
  ["resolved_late", count], ["within_sla_rate", share], ["rejected", count], ["open", count],
  ["open_overdue", count], ["avg_hours_to_resolve", hours], ["max_hours_to_resolve", hours]];

function kpi(id, label, value) {
  return h("div", { class: "kpi", id: `kpi-${id}` },
    h("div", { class: "kpi-label", text: label }), h("div", { class: "kpi-value", text: value }));
}

function table(headers, rows) {
  return h("table", { class: "wb-table" },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells))));
}

function renderKpis(report) {
  const { churn } = report;
  const opened = report.complaints_by_category.reduce((n, c) => n + c.opened, 0);
  const resolved = report.complaints_by_category.reduce((n, c) => n + c.resolved, 0);
  const within = report.complaints_by_category.reduce((n, c) => n + c.resolved_within_sla, 0);
  fill($("#kpis"),
    kpi("churn-absolute", t("reports.churn_absolute"), share(churn.absolute)),
    kpi("churn-relative", t("reports.churn_relative"), share(churn.relative)),
    kpi("customers-at-start", t("reports.customers_at_start"), count(churn.customers_at_start)),
    kpi("customers-lost", t("reports.customers_lost"), count(churn.customers_lost)),
    kpi("complaints-opened", t("col.complaints_opened"), count(opened)),
    kpi("within-sla", t("col.within_sla_rate"), share(resolved ? within / resolved : null)));
}

// Complaints opened and resolved within SLA (bars), the share of satisfied answers (line;
// none where nobody answered a survey).
function renderChart(report) {
  $("#chart").closest(".panel").hidden = false;
  $("#rp-chart-title").textContent = t("reports.chart_customers");
  drawChart($("#chart"), report.rows.map((row) => ({ start: row.period,
    offered: row.complaints_opened, answered: row.complaints_resolved_within_sla,
    sl: row.csat_satisfied })), null,
  { labels: { offered: "col.complaints_opened", answered: "col.complaints_resolved_within_sla",
    sl: "col.csat_satisfied" } });
}

function renderTrend(report) {
  if (report.rows.length === 0) {
    fill($("#rp-table"), h("p", { class: "wb-muted", text: t("reports.empty_customers") }));
    return;
  }
  fill($("#rp-table"), table([t("reports.period"), ...TREND.map(([name]) => t(`col.${name}`))],
    report.rows.map((row) => [h("td", { class: "text", text: row.period }),
      TREND.map(([name, format]) => h("td", { text: format(row[name]) }))])));
}

function renderTierMoves(report) {
  const none = h("p", { class: "wb-muted", text: t("reports.no_tier_moves") });
  fill($("#rp-tier-moves"), report.tier_moves.length === 0 ? none : table(
    [t("reports.from_tier"), t("reports.to_tier"), t("reports.customers")],
    report.tier_moves.map((m) => [h("td", { class: "name", text: m.from_tier }),
      h("td", { class: "name", text: m.to_tier }), h("td", { text: count(m.customers) })])));
}

function renderCategories(report) {
  const none = h("p", { class: "wb-muted", text: t("reports.no_complaints") });
  fill($("#rp-categories"), report.complaints_by_category.length === 0 ? none : table(
    [t("reports.category"), ...CATEGORIES.map(([name]) => t(`col.${name}`))],
    report.complaints_by_category.map((c) => [h("td", { class: "name", text: c.category }),
      CATEGORIES.map(([name, format]) => h("td", { text: format(c[name]) }))])));
}

export function renderCustomers(report) {
  renderKpis(report);
  renderChart(report);
  renderTrend(report);
  renderTierMoves(report);
  renderCategories(report);
  $("#rp-churn-period").textContent = t("reports.churn_period", {
    from: report.churn.period_start, to: report.churn.period_end });
}
