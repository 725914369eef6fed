// Administration (docs/admin.md): agents, queues, codes, skills and the routing policy
// over /api/v1/admin. Admins change everything; a supervisor sees the agents of its
// team, sets their state and their queues. Every change is applied by the server on
// every node; this page only shows and sends.

import { api, ApiError, signOut, whoAmI } from "./api.js";
import { $, $$, fill, h } from "./dom.js";
import { languageSwitch, onLangChange, t, tOr, translate } from "./i18n.js";
import { policyForm, policyBody } from "./admin_policy.js";

const STAFF = new Set(["supervisor", "admin"]);
const list = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);
let me = null;
let data = { agents: [], queues: [], codes: null, skills: [], policy: null };

function say(text, ok = false) {
  const banner = $("#ad-message");
  banner.hidden = false;
  banner.classList.toggle("ok", ok);
  banner.textContent = text;
}

async function send(path, method, body, done) {
  await apply(() => api(path, { method, body }), done);
}

async function apply(work, done) {
  try {
    await work();
    await load();  // the tables show the change before the banner says so
    say(t(done), true);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) location.replace("/login?next=/admin");
    say(t("admin.failed", { code: e.code || e.status, message: e.message }));
  }
}

const isAdmin = () => me?.role === "admin";

function stateCell(agent) {
  const by = agent.changed_by ? t("state.changed_by", { name: agent.changed_by }) : "";
  const next = agent.pending ? t("state.pending_by", {
    state: t(`state.${agent.pending.state}`), name: agent.pending.changed_by || "—" }) : "";
  const reason = agent.reason ? tOr(`reason.${agent.reason}`, agent.reason) : "";
  return h("td", { class: `text state-${agent.state}` }, t(`state.${agent.state}`),
    reason ? ` (${reason})` : "", h("span", { class: "ad-state-by", text: [by, next]
      .filter(Boolean).join(" · ") }));
}

function input(name, value, props = {}) {
  return h("input", { name, value: value ?? "", disabled: !isAdmin(), ...props });
}

function agentRow(agent) {
  const row = h("tr", { dataset: { agent: agent.username } },
    h("td", { class: "name", text: agent.username }),
    h("td", {}, input("display_name", agent.display_name)),
    h("td", {}, h("select", { name: "role", disabled: !isAdmin() }, ["agent", "supervisor",
      "admin"].map((r) => h("option", { value: r, text: t(`role.${r}`),
      selected: r === agent.role })))),
    h("td", {}, input("extension", agent.extension)),
    h("td", {}, input("skills", agent.skills.join(", "))),
    h("td", {}, input("level", agent.level, { type: "number", min: 1, max: 10 })),
    h("td", {}, input("team", agent.team)),
    h("td", {}, h("input", { name: "queues", value: agent.queues.join(", ") })),
    h("td", {}, h("input", { name: "active", type: "checkbox", checked: agent.active,
      disabled: !isAdmin() })),
    stateCell(agent),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "wb-btn", text: t("admin.save"),
        onclick: () => saveAgent(agent, row) }),
      h("select", { name: "reason" }, (me.not_ready_reasons || []).map((r) =>
        h("option", { value: r, text: tOr(`reason.${r}`, r) }))),
      h("button", { type: "button", class: "wb-btn", text: t("state.set_not_ready"),
        onclick: () => send(`/api/v1/admin/agents/${agent.id}/state`, "POST", {
          state: "not_ready", reason: $("select[name=reason]", row).value }, "admin.done") }),
      h("button", { type: "button", class: "wb-btn", text: t("admin.sign_out"),
        onclick: () => send(`/api/v1/admin/agents/${agent.id}/sign-out`, "POST", {},
          "admin.done") }),
      isAdmin() ? passwordReset(agent) : null));
  return row;
}

// A new password for the agent: its open consoles sign out (its tokens are revoked).
function passwordReset(agent) {
  const field = h("input", { name: "new_password", type: "password", minlength: 8,
    autocomplete: "new-password", placeholder: t("admin.new_password") });
  return h("span", { class: "ad-password" }, field,
    h("button", { type: "button", class: "wb-btn", text: t("admin.set_password"),
      onclick: () => send(`/api/v1/admin/agents/${agent.id}/password`, "POST", {
        password: field.value }, "admin.password_set") }));
}

function saveAgent(agent, row) {
  const value = (name) => $(`[name=${name}]`, row).value.trim();
  const body = { queues: list(value("queues")) };
  if (isAdmin()) {
    Object.assign(body, { display_name: value("display_name"), role: value("role"),
      extension: value("extension") || null, skills: list(value("skills")),
      level: Number(value("level")), team: value("team") || null,
      active: $("[name=active]", row).checked });
  }
  send(`/api/v1/admin/agents/${agent.id}`, "PATCH", body, "admin.saved");
}

function renderAgents() {
  const heads = ["admin.username", "admin.name", "admin.role", "admin.extension", "admin.skills",
    "admin.level", "admin.team", "admin.queues", "admin.active", "admin.state", "admin.actions"];
  fill($("#ad-agents"), h("table", { class: "wb-table ad-table", id: "ad-agent-table" },
    h("thead", {}, h("tr", {}, heads.map((k) => h("th", { text: t(k) })))),
    h("tbody", {}, data.agents.map(agentRow))));
}

function queueRow(queue) {
  const row = h("tr", { dataset: { queue: queue.name } },
    h("td", { class: "name", text: queue.name }),
    h("td", {}, input("skills", queue.skills.join(", "))),
    h("td", {}, input("sl_threshold_s", queue.sl_threshold_s, { type: "number", min: 1 })),
    h("td", {}, input("sl_target", queue.sl_target, { type: "number", min: 0, max: 1,
      step: 0.01 })),
    h("td", {}, input("wrap_up_s", queue.wrap_up_s, { type: "number", min: 0 })),
    h("td", {}, input("tier_boost_s", boostsText(queue.tier_boost_s), {
      placeholder: t("admin.boost_lines") })),
    h("td", { text: String(queue.waiting ?? 0) }),
    h("td", { class: "actions" }, isAdmin() ? [
      h("button", { type: "button", class: "wb-btn", text: t("admin.save"),
        onclick: () => saveQueue(queue, row) }),
      h("button", { type: "button", class: "wb-btn", text: t("admin.remove"),
        onclick: () => send(`/api/v1/admin/queues/${encodeURIComponent(queue.name)}`,
          "DELETE", undefined, "admin.removed") })] : null));
  return row;
}

// A queue's head starts per tier, "vip=300, gold=60"; empty: the routing policy's.
const boostsText = (boosts) => Object.entries(boosts || {}).map(([k, v]) => `${k}=${v}`)
  .join(", ");

function boostsOf(text) {
  const pairs = list(text).map((item) => item.split("=").map((x) => x.trim()));
  return pairs.length ? Object.fromEntries(pairs.map(([k, v]) => [k, Number(v)])) : null;
}

function saveQueue(queue, row) {
  const value = (name) => $(`[name=${name}]`, row).value.trim();
  const wrap = value("wrap_up_s");
  send(`/api/v1/admin/queues/${encodeURIComponent(queue.name)}`, "PATCH", {
    skills: list(value("skills")), sl_threshold_s: Number(value("sl_threshold_s")),
    sl_target: Number(value("sl_target")), wrap_up_s: wrap === "" ? null : Number(wrap),
    tier_boost_s: boostsOf(value("tier_boost_s")),
  }, "admin.saved");
}

function renderQueues() {
  const heads = ["admin.queue_name", "admin.skills", "admin.sl_threshold", "admin.sl_target",
    "admin.wrap_up", "admin.tier_boost", "admin.waiting", "admin.actions"];
  fill($("#ad-queues"), h("table", { class: "wb-table ad-table", id: "ad-queue-table" },
    h("thead", {}, h("tr", {}, heads.map((k) => h("th", { text: t(k) })))),
    h("tbody", {}, data.queues.map(queueRow))));
}

function renderCenter() {
  if (!isAdmin()) return;
  const lines = (codes) => codes.map((c) => (c.label ? `${c.code} = ${c.label}` : c.code))
    .join("\n");
  $("#ad-codes [name=not_ready]").value = lines(data.codes.not_ready);
  $("#ad-codes [name=disposition]").value = lines(data.codes.disposition);
  $("#ad-skills [name=skills]").value = data.skills.join(", ");
  policyForm($("#ad-policy"), data.policy);
}

function render() {
  renderAgents();
  renderQueues();
  renderCenter();
  document.body.classList.remove("booting");
}

async function load() {
  const [agents, queues] = await Promise.all([api("/api/v1/admin/agents"),
    api("/api/v1/admin/queues")]);
  data.agents = agents.agents;
  data.queues = queues.queues;
  if (isAdmin()) {
    const [codes, skills, policy] = await Promise.all([api("/api/v1/admin/codes"),
      api("/api/v1/admin/skills"), api("/api/v1/admin/routing-policy")]);
    Object.assign(data, { codes, skills: skills.skills, policy });
  }
  render();
}

function codesOf(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [code, ...label] = line.split("=");
    return { code: code.trim(), label: label.join("=").trim() };
  });
}

function wireForms() {
  $("#ad-new-agent").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    send("/api/v1/admin/agents", "POST", { username: form.get("username").trim(),
      password: form.get("password"), display_name: form.get("display_name").trim(),
      role: form.get("role"), extension: form.get("extension").trim() || null,
      skills: list(form.get("skills")), level: Number(form.get("level") || 1),
      team: form.get("team").trim() || null, queues: list(form.get("queues")) },
    "admin.created").then(() => event.target.reset());
  });
  $("#ad-new-queue").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    send("/api/v1/admin/queues", "POST", { name: form.get("name").trim(),
      skills: list(form.get("skills")) }, "admin.created");
  });
  $("#ad-codes").addEventListener("submit", (event) => {
    event.preventDefault();
    apply(async () => {
      for (const kind of ["not_ready", "disposition"]) {
        await api(`/api/v1/admin/codes/${kind}`, { method: "PUT", body: {
          codes: codesOf($(`#ad-codes [name=${kind}]`).value) } });
      }
    }, "admin.saved");
  });
  $("#ad-skills").addEventListener("submit", (event) => {
    event.preventDefault();
    send("/api/v1/admin/skills", "PUT", { skills: list($("#ad-skills [name=skills]").value) },
      "admin.saved");
  });
  $("#ad-policy").addEventListener("submit", (event) => {
    event.preventDefault();
    send("/api/v1/admin/routing-policy", "PUT", policyBody(event.target), "admin.saved");
  });
}

async function main() {
  translate(document);
  languageSwitch();
  me = await whoAmI();
  if (!me) return;
  if (!STAFF.has(me.role)) {
    location.replace("/forbidden");
    return;
  }
  $("#ad-who").textContent = `${me.name} (${t(`role.${me.role}`)})`;
  for (const node of $$(".ad-only")) node.hidden = !isAdmin();
  $("#ad-sign-out").addEventListener("click", signOut);
  wireForms();
  onLangChange(render);
  await load();
}

main();
