// Live monitoring from the wallboard's agent table: Listen, Whisper, Barge and Stop for
// an agent's call in progress (POST /api/v1/calls/{id}/monitor; docs/admin.md).

import { api } from "./api.js";
import { $, h } from "./dom.js";
import { t, tOr } from "./i18n.js";

const MODES = ["listen", "whisper", "barge", "stop"];

let me = null;
let busy = false;
// The agents a supervisor may monitor (its team's: the agents GET /api/v1/admin/agents
// shows it); null for an admin, who may monitor every call.
let team = new Set();

export async function setViewer(viewer) {
  me = viewer;
  team = viewer.role === "admin" ? null : team;
  if (team) await loadTeam();
}

// Read again now and then: an admin may move an agent into or out of the team.
export async function loadTeam() {
  if (!team) return;
  try {
    const { agents } = await api("/api/v1/admin/agents");
    team = new Set(agents.map((a) => a.id));
  } catch {
    // keep the last known team; the server refuses what it must anyway
  }
}

const mayMonitor = (agent) => !team || team.has(agent.agent_id);

// The cell of an agent's row: who monitors its call, and the buttons (only where the
// viewer may monitor).
export function monitorCell(agent) {
  if (!agent.call_id) return h("td", { class: "text monitor" });
  const m = agent.monitor;
  const mine = m && m.supervisor_id === me?.agent_id;
  const who = m ? h("span", { class: `monitor-who ${m.mode}`, text: t("monitor.by", {
    name: mine ? t("monitor.you") : m.supervisor, mode: t(`monitor.mode.${m.mode}`) }) })
    : null;
  if (!mayMonitor(agent)) return h("td", { class: "text monitor" }, who);
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
