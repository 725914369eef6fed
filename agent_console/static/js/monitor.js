// Live monitoring from the wallboard's agent table: Listen, Whisper, Barge and Stop for
// an agent's call in progress (POST /api/v1/calls/{id}/monitor; docs/admin.md).

import { api } from "./api.js";
import { $, h } from "./dom.js";
import { t, tOr } from "./i18n.js";

const MODES = ["listen", "whisper", "barge", "stop"];

let me = null;
let busy = false;

export function setViewer(viewer) {
  me = viewer;
}

// The cell of an agent's row: who monitors its call, and the buttons.
export function monitorCell(agent) {
  if (!agent.call_id) return h("td", { class: "text monitor" });
  const m = agent.monitor;
  const mine = m && m.supervisor_id === me?.agent_id;
  const who = m ? h("span", { class: `monitor-who ${m.mode}`, text: t("monitor.by", {
    name: mine ? t("monitor.you") : m.supervisor, mode: t(`monitor.mode.${m.mode}`) }) })
    : null;
  const buttons = MODES.map((mode) => h("button", {
    type: "button", class: `wb-btn mon-btn mon-${mode}${mine && m.mode === mode ? " on" : ""}`,
    text: t(`monitor.${mode}`), disabled: busy || (mode === "stop" && !m),
    dataset: { mode, callId: agent.call_id },
    "aria-pressed": mode !== "stop" ? String(Boolean(mine && m.mode === mode)) : undefined,
    onclick: () => ask(agent, mode),
  }));
  return h("td", { class: "text monitor" }, who, h("span", { class: "mon-buttons" }, buttons));
}

async function ask(agent, mode) {
  busy = true;
  say(t("monitor.asking", { agent: agent.name }), "info");
  try {
    await api(`/api/v1/calls/${encodeURIComponent(agent.call_id)}/monitor`, {
      method: "POST", body: { mode } });
    say(t(`monitor.done.${mode}`, { agent: agent.name }), "ok");
  } catch (e) {
    say(failure(e), "error");
  } finally {
    busy = false;
  }
}

function failure(e) {
  const key = `monitor.error.${e.code}`;
  const message = e.message || e.code || "";
  return tOr(key, null) === null ? t("monitor.error.other", { message }) : t(key, { message });
}

function say(text, kind) {
  const box = $("#monitor-status");
  box.hidden = !text;
  box.textContent = text;
  box.className = `monitor-status ${kind}`;
}
