// The agent console: state bar, screen-pop and call handling, customer search.

import { api, clock, goToLogin, session, signOut, whoAmI } from "./api.js";
import { MyCallbacks } from "./callbacks.js";
import { CONSULT_PHASES, CallControls } from "./callcontrols.js";
import { CallPanel } from "./callpanel.js";
import { CustomerPage, Search } from "./customers.js";
import { $ } from "./dom.js";
import { languageSwitch, onLangChange, t, tOr, translate } from "./i18n.js";
import { installShortcuts, showHelp } from "./shortcuts.js";
import { LiveSocket } from "./socket.js";
import { pickTransfer } from "./transfer.js";
import { StateBar } from "./statebar.js";

const HOLDING = new Set(["ringing", "on_call", "wrap_up"]);

const app = {
  me: null,
  agents: new Map(),
  state: { state: "logged_out", reason: null, since: 0, call_id: null },
  // { call_id, pop, phase, wrapUntil, notes, disposition, finishing, heldAt, pending,
  //   consult: {agent_id, state} while this agent consults a colleague,
  //   consultFrom: {from_agent_id, notes} while a colleague consults this agent,
  //   recordingPaused }
  call: null,
  synced: false,
};

let socket;
let panel;
let controls;
let stateBar;
let customerPage;
let search;
let myCallbacks;

// Messages from the server ------------------------------------------------

function onMessage(message) {
  const handler = {
    "agent.state": onAgentState,
    screen_pop: onScreenPop,
    "call.connected": onConnected,
    "call.held": onHeld,
    "call.resumed": onResumed,
    "recording.paused": (m) => onRecording(m, true),
    "recording.resumed": (m) => onRecording(m, false),
    "call.ended": onEnded,
    "call.consult": onConsult,
    "monitor.notice": onMonitorNotice,
    error: (m) => toast(errorText(m), "error"),
  }[message.type];
  if (handler) handler(message);
}

function onAgentState(message) {
  app.state = message;
  const fresh = !app.synced; // the first frame of a (re)connection's snapshot
  if (!app.synced) {
    app.synced = true;
    banner(null);
  }
  const call = app.call;
  if (call && !(HOLDING.has(message.state) && message.call_id === call.call_id)) {
    // The server no longer gives us this call: the wrap-up ran out, or it ended
    // while we were away. Say so rather than leave it on screen.
    dropCall(call.finishing ? "wrap_done" : (call.phase === "wrap_up" ? "wrap_timeout" : "gone"));
  } else if (call) {
    call.phase = phaseOf(message.state, call.phase, fresh);
  }
  stateBar.render(app.state, socket.isOpen && app.synced);
  renderCall();
}

// The call's phase from the agent's state. A held call's agent stays on_call, so a hold
// is kept, except from a fresh snapshot: that one sends call.held again if still held.
// A consult's phases are kept the same way (the snapshot sends call.consult again).
const ON_CALL_PHASES = new Set(["on_hold", "consulted", ...CONSULT_PHASES]);
function phaseOf(state, fallback, fresh = false) {
  if (state === "on_call" && ON_CALL_PHASES.has(fallback) && !fresh) return fallback;
  return { ringing: "ringing", on_call: "connected", wrap_up: "wrap_up" }[state] || fallback;
}

function onScreenPop(pop) {
  if (app.call?.call_id === pop.call_id) {
    app.call.pop = pop;
  } else {
    app.call = { call_id: pop.call_id, pop, phase: phaseOf(app.state.state, "ringing"),
      startedAt: Date.now() / 1000, notes: sessionStorage.getItem(notesKey(pop.call_id)) || "" };
  }
  app.call.consultFrom = pop.consult || null;
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  panel.show(app.call);
  showView("call");
}

function onConnected(message) {
  if (app.call?.call_id !== message.call_id) return;
  app.call.phase = "connected";
  app.call.recordingPaused = false; // a snapshot sends recording.paused next if it is
  renderCall();
}

// The PBX paused or resumed the call's recording (PCI): only its events change this.
function onRecording(message, paused) {
  if (app.call?.call_id !== message.call_id) return;
  app.call.recordingPaused = paused;
  renderCall();
}

// Where a consult stands: this agent consults a colleague (A), or is consulted (B).
function onConsult(message) {
  const call = app.call;
  if (call?.call_id !== message.call_id) return;
  if (message.from_agent_id === app.me.agent_id) {
    const phase = { ringing: "consult_ringing", talking: "consulting",
      conference: "conference" }[message.state];
    call.consult = phase ? { agent_id: message.agent_id, state: message.state } : null;
    call.phase = phase || "connected";
    if (message.state === "ended") toast(t(`consult.ended.${message.cause || "cancelled"}`), "warn");
  } else if (message.state === "completed") {
    call.consultFrom = null; // the caller is ours now: call.connected follows
  } else {
    call.consultFrom = { ...(call.consultFrom || {}), from_agent_id: message.from_agent_id };
    call.phase = "consulted";
  }
  renderCall();
}

function onHeld(message) {
  if (app.call?.call_id !== message.call_id) return;
  app.call.phase = "on_hold";
  app.call.heldAt = app.call.heldAt || clock.now();
  renderCall();
}

function onResumed(message) {
  if (app.call?.call_id !== message.call_id) return;
  app.call.phase = "connected";
  app.call.heldAt = null;
  renderCall();
}

// A supervisor whispers to the agent or joined the call (docs/protocol.md, monitor.notice);
// a supervisor only listening is not shown.
function onMonitorNotice(message) {
  const talking = app.call?.call_id === message.call_id
    && app.call.phase !== "ringing" && app.call.phase !== "wrap_up";
  // A notice that arrives after its call moved on (ended, transferred) is stale.
  const shown = talking && (message.mode === "whisper" || message.mode === "barge");
  app.monitor = shown ? message : null;
  renderMonitor();
}

function renderMonitor() {
  const box = $("#monitor-notice");
  const m = app.monitor;
  box.hidden = !m;
  box.textContent = m ? t(`monitor.notice.${m.mode}`, { name: m.supervisor }) : "";
  box.className = m ? `monitor-notice ${m.mode}` : "monitor-notice";
}

function onEnded(message) {
  const call = app.call;
  if (app.monitor?.call_id === message.call_id) onMonitorNotice({ mode: "none" });
  if (call?.call_id !== message.call_id) return;
  if (message.wrap_up_until) {
    call.phase = "wrap_up";
    call.wrapUntil = message.wrap_up_until;
    renderCall();
    return;
  }
  dropCall(message.reason || "gone");
}

function dropCall(why) {
  if (!app.call) return;
  if (app.monitor?.call_id === app.call.call_id) onMonitorNotice({ mode: "none" });
  sessionStorage.removeItem(notesKey(app.call.call_id));
  app.call = null;
  if (why) toast(t(`call.dropped.${why}`), why === "wrap_done" ? "ok" : "warn");
  renderCall(true);
}

function renderCall(rebuild = false) {
  if (!app.call) {
    panel.idle(app.state);
  } else if (rebuild || panel.callId !== app.call.call_id) {
    panel.show(app.call);
  } else {
    panel.update(app.call, app.state);
  }
}

// What the agent does -----------------------------------------------------

async function setState(state, reason = "") {
  try {
    await socket.request({ type: "agent.state.set", state, reason });
  } catch (e) {
    toast(errorText(e), "error");
  }
}

// A call-control command; resolves once the PBX agreed (the server waits for it, up to
// CALLCENTER_CONTROL_TIMEOUT_S), so this waits longer than an ordinary request.
function control(call, action, fields = {}) {
  const notes = fields.mode === "consult" && call.notes ? { notes: call.notes.slice(0, 4000) } : {};
  return socket.request({ type: "call.control", call_id: call.call_id, action, ...fields,
    ...notes }, 30000);
}

// The queues and colleagues a call can be transferred to, live while the dialog is open
// (available colleagues first).
async function transferTarget() {
  let targets;
  try {
    targets = await api("/api/v1/transfer-targets");
  } catch (e) {
    toast(errorText(e), "bad");
    return null;
  }
  return pickTransfer(targets, () => api("/api/v1/transfer-targets"));
}

async function wrapup(call, { disposition, notes }) {
  call.finishing = true;
  try {
    await socket.request({ type: "wrapup.done", call_id: call.call_id, disposition, notes });
  } catch (e) {
    call.finishing = false;
    throw new Error(errorText(e));
  }
  if (app.call?.call_id === call.call_id) dropCall("wrap_done");
}

async function createCustomer(call, data) {
  const body = { name: data.name, phone: data.phone, call_id: call.call_id };
  if (data.email) body.email = data.email;
  const customer = await apiOrText("/api/v1/customers", { method: "POST", body });
  call.pop = { ...call.pop, customer, new_caller: false };
  if (app.call?.call_id === call.call_id) panel.show(call);
  toast(t("newcaller.created", { name: customer.name }), "ok");
}

async function openComplaint(call, data) {
  return apiOrText("/api/v1/complaints", { method: "POST", body: {
    customer_id: call.pop.customer.id, call_id: call.call_id,
    category: data.category, summary: data.summary } });
}

async function apiOrText(path, options) {
  try {
    return await api(path, options);
  } catch (e) {
    throw new Error(e.status === 409 ? t("error.conflict", { detail: e.message })
      : e.status === 0 ? t("error.network") : e.message);
  }
}

function saveNotes(call, text) {
  call.notes = text;
  sessionStorage.setItem(notesKey(call.call_id), text);
}

const notesKey = (callId) => `cc.notes.${callId}`;

function errorText(e) {
  if (e.message === "disconnected" || e.message === "timeout") return t("error.offline");
  return tOr(`error.${e.code}`, e.message || String(e));
}

// The connection ----------------------------------------------------------

function onStatus(status) {
  document.body.classList.toggle("offline", status !== "open");
  if (status === "denied") {
    session.clear();
    goToLogin();
    return;
  }
  if (status === "open") {
    banner(t("link.syncing"), "info");
  } else {
    app.synced = false;
    banner(t(status === "connecting" ? "link.connecting" : "link.reconnecting"), "warn");
  }
  stateBar.render(app.state, status === "open" && app.synced);
  if (app.call) renderCall();
}

function banner(text, kind = "warn") {
  const box = $("#banner");
  box.hidden = !text;
  box.textContent = text || "";
  box.className = `banner ${kind}`;
}

let toastTimer;
function toast(text, kind = "info") {
  const box = $("#toast");
  box.textContent = text;
  box.className = `toast ${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

// Views -------------------------------------------------------------------

function showView(name) {
  $("#view-call").hidden = name !== "call";
  $("#view-customer").hidden = name !== "customer";
}

function route() {
  const match = location.hash.match(/^#\/customer\/([^/]+)(?:\/call\/(.+))?$/);
  if (match) {
    showView("customer");
    customerPage.show(decodeURIComponent(match[1]), match[2] && decodeURIComponent(match[2]));
  } else {
    showView("call");
  }
}

function agentName(id) {
  if (id === app.me?.agent_id) return t("history.you");
  return app.agents.get(id) || t("history.agent_n", { id });
}

async function loadAgents() {
  try {
    const data = await api("/api/v1/directory/agents");
    app.agents = new Map(data.agents.map((a) => [a.id, a.name]));
    $("#user-name").textContent = app.agents.get(app.me.agent_id) || app.me.name;
  } catch {
    // Names are a nicety: history shows agent numbers without them.
  }
}

async function main() {
  translate(document);
  languageSwitch();
  app.me = await whoAmI();
  if (!app.me) return;
  $("#user-name").textContent = app.me.name;
  $("#link-wallboard").hidden = app.me.role === "agent";
  stateBar = new StateBar($("#statebar"), app.me.not_ready_reasons, setState);
  controls = new CallControls({ send: control, isLive: () => socket?.isOpen && app.synced,
    pickTransfer: transferTarget, agentName });
  panel = new CallPanel($("#view-call"), $("#call-work"), {
    controls,
    dispositions: app.me.dispositions, agentName, onWrapup: wrapup, onNotes: saveNotes,
    onCreateCustomer: createCustomer, onComplaint: openComplaint,
  });
  customerPage = new CustomerPage($("#view-customer"), { agentName });
  search = new Search($("#search-form"), $("#search-results"));
  myCallbacks = new MyCallbacks($("#my-callbacks"));
  $("#btn-sign-out").addEventListener("click", async () => {
    if (socket.isOpen) await setState("logged_out");
    socket.stop();
    await signOut();
  });
  onLangChange(() => {
    stateBar.render(app.state, socket.isOpen && app.synced);
    renderCall(true);
    customerPage.refresh();
    search.refresh();
    myCallbacks.render();
    renderMonitor();
  });
  window.addEventListener("hashchange", route);
  installShortcuts((action) => controls.trigger(action));
  $("#btn-shortcuts").addEventListener("click", showHelp);
  socket = new LiveSocket("/ws/agent", { onMessage, onStatus, pingMs: 10000, silentMs: 25000 });
  renderCall();
  route();
  document.body.classList.remove("booting");
  socket.start();
  loadAgents();
  myCallbacks.refresh();
  setInterval(() => myCallbacks.refresh(), 60000);
  setInterval(() => {
    stateBar.tick(app.state);
    if (app.call) panel.tick(app.call, app.state);
  }, 250);
}

main();
