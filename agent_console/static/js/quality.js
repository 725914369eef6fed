// The quality page (/quality): supervisors pick calls to evaluate (the weekly sample),
// score them beside the recording and transcript, build forms, resolve disputes and read
// scores over time; agents read their own evaluations and acknowledge or dispute them.
// Rules and API: docs/quality.md.

import { api, ApiError, signOut, whoAmI } from "./api.js";
import { $, $$, fill, h } from "./dom.js";
import { languageSwitch, locale, onLangChange, t, translate } from "./i18n.js";
import * as builder from "./quality_builder.js";
import { readAnswers, renderQuestions, scoreText, showCall } from "./quality_call.js";

const MANAGERS = new Set(["supervisor", "admin"]);
let me = null;
let forms = [];
let current = null; // the call being evaluated: its interaction id
let shown = null; // the evaluation open under Evaluations: its id

const manager = () => MANAGERS.has(me.role);
const when = (iso) => (iso ? new Date(iso).toLocaleString(locale()) : "—");

function fail(e) {
  if (e instanceof ApiError && e.status === 403) location.replace("/forbidden");
  $("#q-error").hidden = false;
  $("#q-error").textContent = t("quality.failed", { message: e.message });
}

function clearError() {
  $("#q-error").hidden = true;
}

async function guarded(work) {
  try {
    clearError();
    await work();
  } catch (e) {
    fail(e);
  }
}

function showTab(name) {
  for (const button of $$("#q-tabs [data-tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const tab of $$(".q-tab")) tab.hidden = tab.id !== `tab-${name}`;
  history.replaceState(null, "", `#tab=${name}`);
}

function table(headers, rows) {
  if (!rows.length) return h("p", { class: "wb-muted", text: t("quality.empty") });
  return h("table", { class: "wb-table" },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { class: "text", text: x })))),
    h("tbody", {}, rows));
}

// Calls to evaluate --------------------------------------------------------------

async function propose(event) {
  event?.preventDefault();
  const params = new URLSearchParams({ week: $("#q-week").value,
    per_agent: $("#q-per-agent").value, seed: $("#q-seed").value });
  const proposal = await api(`/api/v1/quality/sample?${params}`);
  fill($("#q-sample-table"), table(
    [t("quality.when"), t("quality.agent"), t("quality.queue"), t("quality.reason"), ""],
    proposal.calls.map((call) => h("tr", {},
      h("td", { class: "text", text: when(call.offered_at) }),
      h("td", { class: "name", text: call.agent_name || call.agent_id }),
      h("td", { class: "text", text: call.queue }),
      h("td", { class: "text", text: t(`quality.reason_${call.reason}`) }),
      h("td", { class: "text" }, call.evaluated ? t("quality.evaluated")
        : h("button", { type: "button", class: "wb-btn q-open", text: t("quality.evaluate"),
          onclick: () => guarded(() => openCall(call.interaction_id)) }))))));
}

// Evaluating a call --------------------------------------------------------------

function chosenForm() {
  return forms.find((form) => String(form.id) === $("#q-form-select").value);
}

function fillForms() {
  const active = forms.filter((form) => form.active);
  fill($("#q-form-select"), active.map((form) => h("option", { value: form.id,
    text: `${form.name} · v${form.version}` })));
  const form = chosenForm();
  if (form) renderQuestions($("#q-questions"), form);
  else fill($("#q-questions"), h("p", { class: "wb-muted", text: t("quality.no_forms") }));
  $("#q-submit").disabled = !form || current === null;
}

async function openCall(interactionId) {
  showTab("evaluate");
  current = interactionId;
  fill($("#q-result"));
  await showCall($("#q-call"), interactionId);
  fillForms();
}

async function submit() {
  const form = chosenForm();
  const { answers, missing } = readAnswers($("#q-questions"), form);
  if (!answers) {
    $("#q-result").textContent = t("quality.answer_all", { question: missing });
    return;
  }
  const evaluation = await api("/api/v1/quality/evaluations", { method: "POST", body: {
    form_id: form.id, interaction_id: current, answers, comment: $("#q-comment").value } });
  $("#q-result").textContent = scoreText(evaluation);
  $("#q-submit").disabled = true;
}

// Evaluations: the list, and one with its call ------------------------------------

async function listEvaluations() {
  const { evaluations } = await api("/api/v1/quality/evaluations");
  fill($("#q-eval-table"), table(
    [t("quality.when"), t("quality.agent"), t("quality.score"), t("quality.status"),
      t("quality.evaluator"), ""],
    evaluations.map((ev) => h("tr", { dataset: { id: ev.id } },
      h("td", { class: "text", text: when(ev.call_at) }),
      h("td", { class: "name", text: ev.agent_name }),
      h("td", { class: ev.critical_failed ? "red" : "", text: ev.score }),
      h("td", { class: "text q-status", text: t(`quality.status_${ev.status}`) }),
      h("td", { class: "text", text: ev.evaluator }),
      h("td", { class: "text" }, h("button", { type: "button", class: "wb-btn q-view",
        text: t("quality.open"), onclick: () => guarded(() => openEvaluation(ev.id)) }))))));
}

function actions(ev) {
  const text = h("textarea", { id: "q-action-text", rows: 2, maxlength: 4000,
    placeholder: t(manager() ? "quality.note" : "quality.agent_comment") });
  const act = (path, body) => guarded(async () => {
    await api(`/api/v1/quality/evaluations/${ev.id}/${path}`, { method: "POST", body });
    await listEvaluations();
    await openEvaluation(ev.id);
  });
  if (!manager() && ev.status === "submitted") {
    return h("div", { class: "q-actions" }, text,
      h("button", { type: "button", id: "q-ack", class: "wb-btn rp-primary",
        text: t("quality.acknowledge"), onclick: () => act("acknowledge", { comment: text.value }) }),
      h("button", { type: "button", id: "q-dispute", class: "wb-btn",
        text: t("quality.dispute"), onclick: () => act("dispute", { reason: text.value }) }));
  }
  if (manager() && ev.status === "disputed") {
    return h("div", { class: "q-actions" }, text,
      h("button", { type: "button", id: "q-uphold", class: "wb-btn",
        text: t("quality.uphold"), onclick: () => act("resolve", { outcome: "upheld",
          note: text.value }) }),
      h("button", { type: "button", id: "q-revise", class: "wb-btn rp-primary",
        text: t("quality.revise"), onclick: () => {
          const { answers } = readAnswers($("#q-eval-answers"), ev.form);
          if (answers) act("resolve", { outcome: "revised", note: text.value, answers });
        } }));
  }
  return null;
}

async function openEvaluation(id) {
  const ev = await api(`/api/v1/quality/evaluations/${id}`);
  shown = id;
  const call = h("section", { class: "panel" }, h("h2", { text: t("quality.call") }),
    h("div", { id: "q-eval-call" }));
  const answers = h("div", { id: "q-eval-answers" });
  const lines = [[t("quality.comment"), ev.comment], [t("quality.agent_comment"), ev.agent_comment],
    [t("quality.note"), ev.resolution_note]].filter(([, value]) => value);
  fill($("#q-eval-detail"), call, h("section", { class: "panel", id: "q-eval-card" },
    h("h2", { text: `${ev.form.name} · ${t(`quality.status_${ev.status}`)}` }),
    h("div", { class: `q-score${ev.critical_failed ? " failed" : ""}`, id: "q-eval-score",
      text: ev.score }),
    h("p", { text: scoreText(ev) }),
    ev.original_score !== null ? h("p", { class: "wb-muted",
      text: t("quality.revised_from", { score: ev.original_score }) }) : null,
    answers,
    h("dl", { class: "q-meta" }, lines.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    actions(ev)));
  renderQuestions(answers, ev.form, ev.answers, !(manager() && ev.status === "disputed"));
  $("#q-eval-detail").hidden = false;
  if (ev.interaction_id) await showCall($("#q-eval-call"), ev.interaction_id);
}

// Scores over time -----------------------------------------------------------------

async function showStats(event) {
  event?.preventDefault();
  const params = new URLSearchParams({ from: $("#qs-from").value, to: $("#qs-to").value,
    by: $("#qs-by").value, interval: $("#qs-interval").value });
  const result = await api(`/api/v1/quality/stats?${params}`);
  const byQuestion = result.by === "question";
  const group = byQuestion ? t("quality.by_question")
    : t(result.by === "agent" ? "quality.by_agent" : "quality.by_queue");
  fill($("#q-stats-table"), table(
    [t("reports.period"), group, t(byQuestion ? "quality.answers" : "quality.evaluations"),
      t("quality.average"), byQuestion ? null : t("quality.critical_failed")]
      .filter((x) => x !== null),
    result.rows.map((row) => h("tr", {},
      h("td", { class: "text", text: row.period }),
      h("td", { class: "name", text: byQuestion ? row.text : (row.agent_name || row.queue) }),
      h("td", { text: byQuestion ? row.answers : row.evaluations }),
      h("td", { text: row.average }),
      byQuestion ? null : h("td", { text: row.critical_failed })))));
}

// Start ------------------------------------------------------------------------------

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function isoWeek(date) {
  const day = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
  day.setUTCDate(day.getUTCDate() + 4 - (day.getUTCDay() || 7));
  const first = new Date(Date.UTC(day.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((day - first) / 86400000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

async function loadForms() {
  forms = await builder.listForms();
  fillForms();
}

function wire() {
  $("#q-sign-out").addEventListener("click", signOut);
  for (const button of $$("#q-tabs [data-tab]")) {
    button.addEventListener("click", () => {
      showTab(button.dataset.tab);
      if (button.dataset.tab === "evaluations") guarded(listEvaluations);
    });
  }
  $("#q-sample-form").addEventListener("submit", (e) => guarded(() => propose(e)));
  $("#q-stats-form").addEventListener("submit", (e) => guarded(() => showStats(e)));
  $("#q-form-select").addEventListener("change", fillForms);
  $("#q-submit").addEventListener("click", () => guarded(submit));
}

async function main() {
  translate(document);
  languageSwitch();
  me = await whoAmI();
  if (!me) return;
  if (!MANAGERS.has(me.role) && me.role !== "agent") {
    location.replace("/forbidden");
    return;
  }
  const who = () => { $("#q-who").textContent = `${me.name} · ${t(`role.${me.role}`)}`; };
  who();
  onLangChange(who);
  for (const node of $$(".q-manager")) node.hidden = !manager();
  const today = new Date();
  const hash = new URLSearchParams(location.hash.slice(1));
  $("#q-week").value = hash.get("week") || isoWeek(today);
  $("#qs-to").value = hash.get("to") || isoDay(today);
  $("#qs-from").value = hash.get("from") || isoDay(new Date(today.getTime() - 27 * 86400000));
  wire();
  onLangChange(() => guarded(async () => {
    await listEvaluations();
    if (shown !== null) await openEvaluation(shown);
    if (manager()) fillForms();
  }));
  const wanted = hash.get("tab");
  const allowed = $$("#q-tabs [data-tab]").filter((b) => !b.hidden).map((b) => b.dataset.tab);
  showTab(allowed.includes(wanted) ? wanted : allowed[0]);
  await guarded(async () => {
    if (manager()) {
      builder.setup((message) => { $("#q-result").textContent = message; }, fail, loadForms);
      await loadForms();
      await propose();
    }
    await listEvaluations();
  });
  document.body.classList.remove("booting");
}

main();
