// The call-control bar of the call in hand: answer, hold / resume with a hold timer, pause /
// resume the recording (PCI: while a card number is read out), hang up, transfer (blind or
// consult), and the consult panel: both parties with complete / cancel / conference.
//
// Which buttons work follows the call's phase, and only the server's frames change the
// phase (call.connected, call.held, call.resumed, call.ended; recording.paused and
// recording.resumed set call.recordingPaused): an ack says the PBX agreed,
// not that the call moved. So a console that reconnects gets the same buttons back from
// the server's snapshot.

import { clock } from "./api.js";
import { $, h } from "./dom.js";
import { duration } from "./format.js";
import { t, tOr } from "./i18n.js";

// The phases in which each action is legal (docs/protocol.md, "Call control").
export const LEGAL = {
  answer: new Set(["ringing"]),
  hold: new Set(["connected"]),
  resume: new Set(["on_hold"]),
  // The consulted agent (B) hangs up its own consult leg: it leaves the consult.
  hangup: new Set(["connected", "on_hold", "consult_ringing", "consulting", "conference",
    "consulted"]),
  transfer: new Set(["connected", "on_hold"]),
  "consult.complete": new Set(["consulting", "conference"]),
  "consult.cancel": new Set(["consult_ringing", "consulting", "conference"]),
  conference: new Set(["consulting"]),
  "recording.pause": new Set(["connected", "on_hold", "consult_ringing", "consulting", "conference"]),
  "recording.resume": new Set(["connected", "on_hold", "consult_ringing", "consulting", "conference"]),
};
// The phases of a consult, as the consulting agent (A) sees them; the consulted agent (B)
// is "consulted" while it talks.
export const CONSULT_PHASES = new Set(["consult_ringing", "consulting", "conference"]);
const CONSULT_ACTIONS = [["btn-consult-complete", "consult.complete", "go"],
  ["btn-consult-cancel", "consult.cancel", "bad"], ["btn-conference", "conference", ""]];

export class CallControls {
  // send(call, action, fields) -> a promise of the ack, rejected with an Error that has
  // .code (and .reason when the PBX refused); isLive() -> whether the console is
  // connected; pickTransfer() -> a promise of the transfer's target fields, or null.
  // agentName(id) -> a colleague's name.
  constructor({ send, isLive, pickTransfer, agentName }) {
    this.send = send;
    this.isLive = isLive;
    this.pickTransfer = pickTransfer;
    this.agentName = agentName;
    this.call = null;
  }

  element(call) {
    this.call = call;
    const button = (id, action, kind) => h("button", { id, type: "button",
      class: `btn ${kind}`, onclick: () => this.act(pick(call, action)) });
    this.root = h("div", { id: "call-controls", class: "call-controls", role: "toolbar",
      "aria-label": t("control.toolbar") },
      button("btn-answer", "answer", "go"),
      button("btn-hold", "hold", ""),
      h("span", { id: "hold-timer", class: "hold-timer", hidden: true }),
      h("button", { id: "btn-transfer", type: "button", class: "btn",
        onclick: () => this.transfer() }),
      button("btn-recording", "recording", ""),
      h("span", { id: "recording-paused", class: "recording-paused", hidden: true }),
      button("btn-hangup", "hangup", "bad"),
      h("span", { id: "control-message", class: "control-message", role: "status" }),
      this.consultPanel());
    this.update(call);
    return this.root;
  }

  consultPanel() {
    const party = (id) => h("li", { id, class: "party" },
      h("span", { class: "party-name" }), h("span", { class: "party-state muted" }));
    return h("section", { id: "consult-panel", class: "consult-panel", hidden: true,
      "aria-live": "polite" },
      h("h3", { id: "consult-title" }),
      h("ul", { class: "parties" }, party("consult-caller"), party("consult-agent")),
      h("p", { id: "consult-notes", class: "consult-notes muted" }),
      h("div", { class: "actions" }, CONSULT_ACTIONS.map(([id, action, kind]) =>
        h("button", { id, type: "button", class: `btn ${kind}`,
          onclick: () => this.act(action) }))));
  }

  update(call) {
    if (!this.root || call !== this.call) return;
    const live = this.isLive();
    const enabled = (action) => live && !call.pending && LEGAL[action].has(call.phase);
    const answer = $("#btn-answer", this.root);
    answer.hidden = call.phase !== "ringing";
    answer.disabled = !enabled("answer");
    answer.textContent = label(call, "answer");
    const hold = $("#btn-hold", this.root);
    const holdAction = holdOrResume(call);
    hold.hidden = call.phase === "ringing";
    hold.disabled = !enabled(holdAction);
    hold.textContent = label(call, holdAction);
    hold.setAttribute("aria-pressed", String(call.phase === "on_hold"));
    const transfer = $("#btn-transfer", this.root);
    transfer.hidden = call.phase === "ringing";
    transfer.disabled = !enabled("transfer");
    transfer.textContent = label(call, "transfer");
    const recording = $("#btn-recording", this.root);
    const recordingAction = pauseOrResume(call);
    recording.hidden = call.phase === "ringing";
    recording.disabled = !enabled(recordingAction);
    recording.textContent = label(call, recordingAction);
    recording.setAttribute("aria-pressed", String(!!call.recordingPaused));
    const paused = $("#recording-paused", this.root);
    paused.hidden = !call.recordingPaused;
    paused.textContent = t("control.recording_paused");
    const hangup = $("#btn-hangup", this.root);
    hangup.disabled = !enabled("hangup");
    hangup.textContent = label(call, "hangup");
    for (const [id, action] of CONSULT_ACTIONS) {
      const b = $(`#${id}`, this.root);
      b.disabled = !enabled(action);
      b.textContent = label(call, action);
    }
    this.updateConsult(call);
    this.root.hidden = call.phase === "wrap_up";
    this.tick(call);
  }

  // Both parties of a consult: the caller, and the colleague consulted (for A), or the
  // colleague who consults (for B, who has no buttons here).
  updateConsult(call) {
    const panel = $("#consult-panel", this.root);
    const mine = CONSULT_PHASES.has(call.phase) && call.consult;
    const theirs = call.phase === "consulted" && call.consultFrom;
    panel.hidden = !(mine || theirs);
    if (panel.hidden) return;
    const set = (id, name, state) => {
      $(`#${id} .party-name`, panel).textContent = name;
      $(`#${id} .party-state`, panel).textContent = state;
    };
    const caller = call.pop.customer?.name || call.pop.ani || "";
    const inConference = call.phase === "conference" || call.consult?.state === "conference";
    set("consult-caller", t("consult.caller", { name: caller }),
      t(inConference ? "consult.state.conference" : "consult.state.on_hold"));
    const other = mine ? call.consult.agent_id : call.consultFrom.from_agent_id;
    set("consult-agent", this.agentName(other),
      t(`consult.state.${mine ? call.consult.state : "talking"}`));
    $("#consult-title", panel).textContent = mine ? t("consult.title")
      : t("consult.from", { name: this.agentName(other) });
    $("#consult-notes", panel).textContent = theirs && call.consultFrom.notes
      ? t("consult.notes", { notes: call.consultFrom.notes }) : "";
    panel.querySelector(".actions").hidden = !mine;
  }

  tick(call) {
    const timer = this.root && $("#hold-timer", this.root);
    if (!timer || call !== this.call) return;
    timer.hidden = call.phase !== "on_hold";
    if (call.phase === "on_hold") {
      timer.textContent = t("control.on_hold_for", { t: duration(clock.now() - (call.heldAt || clock.now())) });
    }
  }

  // The keyboard's way in: "hold" means hold or resume, whichever is legal now.
  trigger(action) {
    const call = this.call;
    if (!call) return;
    const wanted = action === "hold" ? holdOrResume(call) : action;
    if (!LEGAL[wanted].has(call.phase)) return;
    if (wanted === "transfer") this.transfer();
    else this.act(wanted);
  }

  async transfer() {
    // The dialog opens once the live list of targets arrived: one request at a time.
    if (this.picking || document.getElementById("transfer-dialog") || this.call?.pending) return;
    this.picking = true;
    let target;
    try {
      target = await this.pickTransfer();
    } finally {
      this.picking = false;
    }
    if (target) await this.act("transfer", { mode: "blind", ...target });
  }

  async act(action, fields = {}) {
    const call = this.call;
    if (!call || call.pending || !LEGAL[action].has(call.phase) || !this.isLive()) return;
    call.pending = action;
    const leaving = call.phase === "consulted" && action === "hangup";
    this.say("");
    this.update(call);
    try {
      await this.send(call, action, fields);
      const done = action === "transfer" && fields.mode === "consult" ? "consult"
        : leaving ? "leave_consult" : action;
      this.say(t(`control.done.${done}`), "ok");
    } catch (e) {
      this.say(failure(e), "bad");
    } finally {
      call.pending = null;
      this.update(call);
    }
  }

  say(text, kind = "") {
    const box = this.root && $("#control-message", this.root);
    if (!box) return;
    box.textContent = text;
    box.className = `control-message ${kind}`;
  }
}

const holdOrResume = (call) => (call.phase === "on_hold" ? "resume" : "hold");
const pauseOrResume = (call) => (call.recordingPaused ? "recording.resume" : "recording.pause");
const pick = (call, action) => ({ hold: holdOrResume, recording: pauseOrResume }[action]?.(call) || action);

function label(call, action) {
  const key = call.phase === "consulted" && action === "hangup" ? "leave_consult" : action;
  return call.pending === action ? t(`control.pending.${key}`) : t(`control.${key}`);
}

// What to tell the agent when a command failed: the code in words, with the PBX's reason.
export function failure(e) {
  if (e.message === "disconnected" || e.message === "timeout") return t("error.offline");
  const text = tOr(`control.error.${e.code}`, e.message || String(e));
  return text.replaceAll("{reason}", e.reason || "—");
}
