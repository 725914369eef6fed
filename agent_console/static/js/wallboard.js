// The supervisors' wallboard: today's figures, live from /ws/wallboard.

import { goToLogin, signOut, whoAmI } from "./api.js";
import { PendingCallbacks } from "./callbacks.js";
import { drawChart } from "./chart.js";
import { $, fill, h } from "./dom.js";
import { clockTime, duration, number, percent } from "./format.js";
import { languageSwitch, onLangChange, t, tOr, translate } from "./i18n.js";
import { loadTeam, monitorCell, setViewer } from "./monitor.js";
import { LiveSocket } from "./socket.js";

const VIEWERS = new Set(["supervisor", "admin"]);

// Every threshold in one place: each gives "ok", "amber", "red" or "" (no colour).
const level = {
  sl: (v, target) => (v === null ? "" : v >= target ? "ok" : v >= target - 0.1 ? "amber" : "red"),
  wait: (s, threshold) => (!s ? "" : s <= threshold ? "ok" : s <= 2 * threshold ? "amber" : "red"),
  asa: (s, threshold) => (s === null ? "" : s <= threshold ? "ok" : s <= 2 * threshold ? "amber"
    : "red"),
  abandon: (r) => (r === null ? "" : r <= 0.05 ? "ok" : r <= 0.1 ? "amber" : "red"),
  csat: (r) => (r === null ? "" : r >= 0.8 ? "ok" : r >= 0.6 ? "amber" : "red"),
  overdue: (n) => (n > 0 ? "red" : "ok"),
  escalated: (n) => (n > 0 ? "amber" : "ok"),
  inState: (state, s) => {
    const limits = { not_ready: [900, 1800], wrap_up: [120, 300], on_call: [600, 1200],
      ringing: [10, 20] }[state];
    if (!limits) return "";
    return s > limits[1] ? "red" : s > limits[0] ? "amber" : "";
  },
};

let last = null;
let pending = null;  // the supervisors' list of pending callbacks
let pendingKey = "";

function tile(id, label, value, { sub = "", tone = "" } = {}) {
  return h("div", { class: `kpi ${tone}`, id: `kpi-${id}` },
    h("div", { class: "kpi-label", text: label }),
    h("div", { class: "kpi-value", text: value }),
    h("div", { class: "kpi-sub", text: sub }));
}

function renderKpis(s) {
  const tot = s.totals;
  const { threshold_s: threshold, sl: target } = s.targets;
  fill($("#kpis"),
    tile("waiting", t("kpi.waiting"), number(tot.waiting), {
      tone: level.wait(tot.longest_wait_s, threshold) }),
    tile("longest", t("kpi.longest_wait"), duration(tot.longest_wait_s), {
      tone: level.wait(tot.longest_wait_s, threshold) }),
    tile("sl", t("kpi.sl"), percent(tot.sl), { tone: level.sl(tot.sl, target),
      sub: t("kpi.sl_sub", { p: percent(target), s: threshold, n: tot.answered_sl,
        of: tot.answered + tot.abandoned + tot.abandoned_short }) }),
    tile("offered", t("kpi.calls_today"), number(tot.offered), {
      sub: t("kpi.calls_sub", { answered: tot.answered,
        abandoned: tot.abandoned + tot.abandoned_short }) }),
    tile("asa", t("kpi.asa"), tot.asa_s === null ? "—" : duration(tot.asa_s), {
      tone: level.asa(tot.asa_s, threshold) }),
    tile("aht", t("kpi.aht"), tot.aht_s === null ? "—" : duration(tot.aht_s), {
      sub: t("kpi.aht_sub", { n: tot.handled }) }),
    tile("abandon", t("kpi.abandon"), percent(tot.abandon_rate, 1), {
      tone: level.abandon(tot.abandon_rate), sub: t("kpi.abandon_sub", { n: tot.abandoned + tot.abandoned_short }) }),
    tile("callbacks", t("kpi.callbacks"), number(s.callbacks.waiting), {
      sub: s.callbacks.waiting ? t("kpi.callbacks_sub", {
        oldest: duration(s.callbacks.oldest_age_s), n: s.callbacks.callbacks_connected })
        : t("kpi.callbacks_none", { n: s.callbacks.callbacks_connected }) }),
    tile("csat", t("kpi.csat"), percent(tot.csat.satisfied), { tone: level.csat(tot.csat.satisfied),
      sub: tot.csat.responses ? t("kpi.csat_sub", { avg: number(tot.csat.average, 1),
        n: tot.csat.responses }) : t("kpi.csat_none") }));
}

function table(headers, rows) {
  return h("table", { class: "wb-table" },
    h("thead", {}, h("tr", {}, headers.map((x) => (Array.isArray(x)
      ? h("th", { text: x[0], class: x[1] }) : h("th", { text: x }))))),
    h("tbody", {}, rows));
}

function cell(text, tone = "") {
  return h("td", { class: tone, text });
}

function renderQueues(s) {
  fill($("#queues"), table(
    [t("col.queue"), t("col.waiting"), t("col.longest"), t("col.offered"), t("col.answered"),
      t("col.abandoned"), t("col.sl"), t("col.asa"), t("col.aht")],
    s.queues.map((q) => h("tr", { dataset: { queue: q.queue } },
      h("td", { class: "name", text: q.display_name }),
      cell(number(q.waiting), level.wait(q.longest_wait_s, q.threshold_s)),
      cell(duration(q.longest_wait_s), level.wait(q.longest_wait_s, q.threshold_s)),
      cell(number(q.offered)), cell(number(q.answered)), cell(number(q.abandoned + q.abandoned_short)),
      cell(percent(q.sl), level.sl(q.sl, q.target)),
      cell(q.asa_s === null ? "—" : duration(q.asa_s), level.asa(q.asa_s, q.threshold_s)),
      cell(q.aht_s === null ? "—" : duration(q.aht_s))))));
}

function renderTiers(s) {
  const { threshold_s: threshold, sl: target } = s.targets;
  fill($("#tiers"), table(
    [t("col.tier"), t("col.waiting"), t("col.longest"), t("col.offered"), t("col.sl"),
      t("col.abandon")],
    s.tiers.map((row) => h("tr", { dataset: { tier: row.tier } },
      h("td", { class: "name" }, h("span", { class: `tier-badge tier-${row.tier}`,
        text: tOr(`tier.${row.tier}`, row.tier) })),
      cell(number(row.waiting), level.wait(row.longest_wait_s, threshold)),
      cell(duration(row.longest_wait_s), level.wait(row.longest_wait_s, threshold)),
      cell(number(row.offered)),
      cell(percent(row.sl), level.sl(row.sl, target)),
      cell(percent(row.abandon_rate, 1), level.abandon(row.abandon_rate))))));
}

function renderComplaints(s) {
  const c = s.complaints;
  fill($("#complaints"),
    tile("complaints-open", t("complaints.open"), number(c.open ?? 0)),
    tile("complaints-overdue", t("complaints.overdue"), number(c.overdue ?? 0), {
      tone: level.overdue(c.overdue ?? 0) }),
    tile("complaints-escalated", t("complaints.escalated"), number(c.escalated ?? 0), {
      tone: level.escalated(c.escalated ?? 0) }));
  // on_hold counts agents whose caller is on hold: a part of on_call, not besides it.
  const order = ["available", "ringing", "on_call", "on_hold", "wrap_up", "not_ready",
    "logged_out"];
  fill($("#agent-states"), order.map((state) => h("div", { class: `state-count st-${state}` },
    h("span", { class: "n", text: number(s.agent_states[state] || 0) }),
    h("span", { class: "label", text: t(`state.${state}`) }))));
}

function renderAgents(s) {
  if (!s.agents.length) {
    fill($("#agents"), h("p", { class: "wb-muted", text: t("wallboard.no_agents") }));
    return;
  }
  fill($("#agents"), table(
    [t("col.agent"), [t("col.state"), "text"], [t("col.reason"), "text"], t("col.in_state"),
      t("col.handled"),
      t("col.aht"), [t("col.monitor"), "text"]],
    s.agents.map((a) => h("tr", { dataset: { agentId: a.agent_id } },
      h("td", { class: "name", text: a.name }),
      h("td", { class: "text" }, h("span", { class: `state-pill st-${a.state}`,
        text: t(`state.${a.on_hold ? "on_hold" : a.state}`) })),
      cell(a.reason ? tOr(`reason.${a.reason}`, a.reason) : "", "text"),
      cell(duration(a.in_state_s), level.inState(a.state, a.in_state_s)),
      cell(number(a.handled)),
      cell(a.aht_s === null ? "—" : duration(a.aht_s)),
      monitorCell(a)))));
}

function render(snapshot) {
  last = snapshot;
  $("#wb-day").textContent = snapshot.day;
  renderKpis(snapshot);
  renderQueues(snapshot);
  renderTiers(snapshot);
  drawChart($("#chart"), snapshot.intervals, snapshot.targets.sl);
  renderComplaints(snapshot);
  renderAgents(snapshot);
  renderPending(snapshot);
}

// The list is read over REST, again whenever the callbacks changed (not on every
// snapshot: a supervisor may be choosing an agent in it).
function renderPending(s) {
  const c = s.callbacks;
  const key = [c.waiting, c.callbacks_requested, c.callbacks_connected, c.callbacks_failed]
    .join("|");
  if (key === pendingKey) return;
  pendingKey = key;
  pending.refresh();
}

function onStatus(status, error) {
  if (status === "denied") {
    if (error?.status === 401) goToLogin();
    else location.replace("/forbidden");
    return;
  }
  const live = status === "open";
  document.body.classList.toggle("stale", !live);
  $("#wb-link").textContent = t(live ? "link.live" : `link.${status}`);
  $("#wb-link").className = `wb-link ${live ? "live" : "down"}`;
  const box = $("#banner");
  box.hidden = live;
  box.textContent = live ? "" : t("wallboard.stale", {
    at: last ? clockTime(last.at) : "—" });
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
  await setViewer(me);
  setInterval(loadTeam, 30000);
  $("#wb-sign-out").addEventListener("click", signOut);
  pending = new PendingCallbacks($("#callbacks"));
  setInterval(() => pending.refresh(), 15000);  // a reassignment elsewhere
  onLangChange(() => { if (last) render(last); pending.render(); });
  const socket = new LiveSocket("/ws/wallboard", {
    onMessage: (m) => { if (m.type === "wallboard.snapshot") render(m); },
    onStatus, silentMs: 5000 });
  document.body.classList.remove("booting");
  socket.start();
  setInterval(() => { $("#wb-clock").textContent = clockTime(Date.now() / 1000); }, 1000);
}

main();
