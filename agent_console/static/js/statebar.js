// The agent's state, its reason and the time in it; and the buttons to change it.

import { clock } from "./api.js";
import { $, fill, h } from "./dom.js";
import { duration } from "./format.js";
import { t, tOr } from "./i18n.js";

// Reasons the system sets by itself; an agent does not pick them.
const SYSTEM_REASONS = new Set(["missed", "disconnected"]);
const BUSY = new Set(["ringing", "on_call"]);

export class StateBar {
  constructor(root, reasons, setState) {
    this.root = root;
    this.reasons = reasons.filter((r) => !SYSTEM_REASONS.has(r));
    this.select = $("#nr-reason", root);
    $("#btn-available", root).addEventListener("click", () => setState("available"));
    $("#btn-not-ready", root).addEventListener("click",
      () => setState("not_ready", this.select.value));
    $("#btn-logged-out", root).addEventListener("click", () => setState("logged_out"));
  }

  render(state, live) {
    const reasonSelected = this.select.value;
    fill(this.select, this.reasons.map((r) => h("option", { value: r,
      text: tOr(`reason.${r}`, r) })));
    if (reasonSelected) this.select.value = reasonSelected;
    const pill = $("#state-pill", this.root);
    pill.className = `state-pill state-${state.state}`;
    $("#state-label", this.root).textContent = t(`state.${state.state}`);
    const reason = state.reason ? tOr(`reason.${state.reason}`, state.reason) : "";
    // A supervisor's change says who made it; one kept for after the call says so too.
    const by = state.changed_by ? t("state.changed_by", { name: state.changed_by }) : "";
    const next = state.pending?.changed_by ? t("state.pending_by", {
      state: t(`state.${state.pending.state}`), name: state.pending.changed_by }) : "";
    $("#state-reason", this.root).textContent = [reason, by, next].filter(Boolean).join(" · ");
    const busy = BUSY.has(state.state);
    $("#btn-available", this.root).disabled = !live || busy || state.state === "available";
    $("#btn-not-ready", this.root).disabled = !live || busy;
    this.select.disabled = !live || busy;
    $("#btn-logged-out", this.root).disabled = !live || busy || state.state === "logged_out";
    this.root.classList.toggle("stale", !live);
    this.tick(state);
  }

  tick(state) {
    const timer = $("#state-timer", this.root);
    timer.textContent = state.since ? duration(clock.now() - state.since) : "—";
  }
}
