// The supervisors' reports: figures by period from GET /api/v1/reports/{scope},
// a chart, a table, and the same report as CSV; the customer report's own parts are in
// reports_customers.js. Definitions: docs/reports.md.

import { api, ApiError, session, signOut, whoAmI } from "./api.js";
import { drawChart } from "./chart.js";
import { $, fill, h } from "./dom.js";
import { duration, number, percent } from "./format.js";
import { languageSwitch, onLangChange, t, translate } from "./i18n.js";
import { renderCustomers } from "./reports_customers.js";

const VIEWERS = new Set(["supervisor", "admin"]);
const SL_TARGET = 0.8;
const count = (v) => number(v);
const secs = (v) => (v === null || v === undefined ? "—" : duration(v));
const share = (v) => percent(v, 1);

// The columns of each scope: [figure, formatter]; the first is the row's group.
const QUEUE_COLUMNS = [["offered", count], ["answered", count], ["answered_within", count],
  ["abandoned", count], ["abandoned_short", count], ["service_level", share],
  ["asa_s", secs], ["longest_wait_s", secs], ["avg_talk_s", secs], ["transfers", count],
  ["csat_average", (v) => (v === null ? "—" : number(v, 2))]];
const byReason = (v) => Object.entries(v || {}).map(([r, s]) => `${r} ${secs(s)}`).join(", ")
  || "—";
const AGENT_COLUMNS = [["handled", count], ["transfers_made", count], ["avg_talk_s", secs],
  ["aht_s", secs], ["csat_average", (v) => (v === null ? "—" : number(v, 2))],
  ["signed_in_s", secs], ["available_s", secs], ["on_call_s", secs], ["wrap_up_s", secs],
  ["not_ready_s", secs], ["not_ready_by_reason", byReason], ["occupancy", share]];
const GROUP = { center: null, queues: "queue", tiers: "tier", agents: "name" };

let last = null;

function query(form) {
  const data = new FormData(form);
  const params = new URLSearchParams();
  for (const name of ["from", "to", "interval"]) params.set(name, data.get(name));
  return { scope: data.get("scope"), params };
}

async function show(event) {
  event?.preventDefault();
  const { scope, params } = query($("#rp-form"));
  try {
    last = await api(`/api/v1/reports/${scope}?${params}`);
    $("#rp-error").hidden = true;
    render(last);
  } catch (e) {
    failed(e);
  }
}

function failed(e) {
  if (e instanceof ApiError && e.status === 403) location.replace("/forbidden");
  $("#rp-error").hidden = false;
  $("#rp-error").textContent = t("reports.failed", { message: e.message });
}

function render(report) {
  $("#rp-zone").textContent = t("reports.zone", { tz: report.timezone });
  const customers = report.scope === "customers";
  $("#rp-customers").hidden = !customers;
  $("#rp-table-title").textContent = t(customers ? "reports.trend" : "reports.table");
  if (customers) renderCustomers(report);
  else {
    renderKpis(report);
    renderChart(report);
    renderTable(report);
  }
  document.body.classList.remove("booting");
}

function kpi(id, label, value) {
  return h("div", { class: "kpi", id: `kpi-${id}` },
    h("div", { class: "kpi-label", text: label }), h("div", { class: "kpi-value", text: value }));
}

function renderKpis(report) {
  const totals = report.totals || [];
  if (report.scope === "agents" || totals.length === 0) {
    fill($("#kpis"));
    return;
  }
  const sum = (name) => totals.reduce((acc, row) => acc + row[name], 0);
  const center = totals.length === 1 ? totals[0] : null;
  fill($("#kpis"),
    kpi("offered", t("col.offered"), count(sum("offered"))),
    kpi("answered", t("col.answered"), count(sum("answered"))),
    kpi("abandoned", t("col.abandoned"), count(sum("abandoned"))),
    kpi("short", t("col.abandoned_short"), count(sum("abandoned_short"))),
    kpi("sl", t("col.service_level"), center ? share(center.service_level) : "—"),
    kpi("asa", t("col.asa_s"), center ? secs(center.asa_s) : "—"));
}

// Center: by period. Queues and tiers: one bar group per queue or tier over the range.
function renderChart(report) {
  const panel = $("#chart").closest(".panel");
  panel.hidden = report.scope === "agents";
  if (panel.hidden) return;
  const rows = report.scope === "center" ? report.rows : report.totals;
  const label = (row) => (report.scope === "center" ? row.period : row[GROUP[report.scope]]);
  drawChart($("#chart"), rows.map((row) => ({ start: label(row), offered: row.offered,
    answered: row.answered, sl: row.service_level })), SL_TARGET);
  $("#rp-chart-title").textContent = t(report.scope === "center" ? "reports.chart"
    : "reports.chart_groups");
}

function renderTable(report) {
  const columns = report.scope === "agents" ? AGENT_COLUMNS : QUEUE_COLUMNS;
  const group = GROUP[report.scope];
  const headers = [t("reports.period"), group ? t(`reports.group_${report.scope}`) : null,
    ...columns.map(([name]) => t(`col.${name}`))].filter((x) => x !== null);
  if (report.rows.length === 0) {
    fill($("#rp-table"), h("p", { class: "wb-muted", text: t("reports.empty") }));
    return;
  }
  fill($("#rp-table"), h("table", { class: "wb-table" },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { text: x })))),
    h("tbody", {}, report.rows.map((row) => h("tr", {},
      h("td", { class: "text", text: row.period }),
      group ? h("td", { class: "name", text: row[group] }) : null,
      columns.map(([name, format]) => h("td", { text: format(row[name]) })))))));
}

async function downloadCsv() {
  const { scope, params } = query($("#rp-form"));
  const response = await fetch(`/api/v1/reports/${scope}?${params}`, {
    headers: { Accept: "text/csv", Authorization: `Bearer ${session.get()?.token}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    failed(new ApiError(response.status, body.error?.code, body.error?.message));
    return;
  }
  const link = h("a", { href: URL.createObjectURL(await response.blob()),
    download: `report-${scope}-${params.get("from")}-${params.get("to")}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
}

function isoDay(date) {
  return `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${
    String(date.getDate()).padStart(2, "0")}`;
}

async function main() {
  translate(document);
  languageSwitch();
  const me = await whoAmI();
  if (!me) return;
  if (!VIEWERS.has(me.role)) {
    location.replace("/forbidden");
    return;
  }
  const today = new Date();
  const hash = new URLSearchParams(location.hash.slice(1));
  $("#rp-to").value = hash.get("to") || isoDay(today);
  $("#rp-from").value = hash.get("from") || isoDay(new Date(today.getTime() - 6 * 86400000));
  if (hash.get("scope")) $("#rp-scope").value = hash.get("scope");
  if (hash.get("interval")) $("#rp-interval").value = hash.get("interval");
  $("#rp-sign-out").addEventListener("click", signOut);
  $("#rp-form").addEventListener("submit", show);
  $("#rp-csv").addEventListener("click", downloadCsv);
  onLangChange(() => { if (last) render(last); });
  await show();
}

main();
