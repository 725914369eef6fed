// The call in hand: the screen-pop, the call timer and notes, then the wrap-up.
//
// The panel is built once per call (and again when its pop changes); phase
// changes only show and hide parts, so the notes being typed survive them.

import { clock } from "./api.js";
import { $, fill, h } from "./dom.js";
import { duration } from "./format.js";
import { callbackMark, promiseForm } from "./callbacks.js";
import { t, tOr } from "./i18n.js";
import {
  churnWarning, complaintsList, facts, interactionsTable, routingReason, tierBadge,
} from "./parts.js";

const CATEGORIES = ["product_quality", "service_attitude", "delivery", "billing_refund", "other"];

export class CallPanel {
  // ctx: { dispositions, agentName(id), onWrapup(call, form), onCreateCustomer(call, data),
  //        onComplaint(call, data), controls (a CallControls) }
  // The pop goes in `root`; notes, wrap-up and complaint in `side`, always in view.
  constructor(root, side, ctx) {
    this.root = root;
    this.side = side;
    this.ctx = ctx;
  }

  idle(agentState) {
    this.callId = null;
    this.ctx.controls.call = null;
    fill(this.side);
    const state = agentState.state;
    const reason = agentState.reason ? tOr(`reason.${agentState.reason}`, agentState.reason) : "";
    fill(this.root, h("div", { class: `idle idle-${state}` },
      h("div", { class: "idle-icon", "aria-hidden": "true" }),
      h("h2", { text: t(`idle.${state}.title`, { reason }) }),
      h("p", { class: "muted", text: t(`idle.${state}.body`) })));
  }

  show(call) {
    this.callId = call.call_id;
    const pop = call.pop;
    fill(this.root,
      h("div", { class: "call-head" },
        h("span", { id: "call-status", class: "call-status" }),
        h("span", { id: "call-timer", class: "call-timer" }),
        h("span", { class: "muted call-id", text: t("call.id", { id: call.call_id }) })),
      this.ctx.controls.element(call),
      h("article", { class: "pop", id: "screen-pop" },
        pop.customer ? this.known(pop) : this.unknown(call)));
    fill(this.side, this.work(call));
    this.update(call);
  }

  update(call, agentState) {
    this.root.dataset.phase = call.phase;
    this.side.dataset.phase = call.phase;
    $("#call-status", this.root).textContent = t(`call.phase.${call.phase}`);
    $("#wrapup-form", this.side).hidden = call.phase !== "wrap_up";
    const complaint = $("#complaint-box", this.side);
    if (complaint) complaint.hidden = call.phase === "ringing";
    const promise = $("#callback-form", this.side);
    if (promise) promise.hidden = call.phase === "ringing";
    this.ctx.controls.update(call);
    this.tick(call, agentState);
  }

  tick(call, agentState) {
    const timer = $("#call-timer", this.root);
    if (!timer) return;
    this.ctx.controls.tick(call);
    if (call.phase === "wrap_up") {
      const left = (call.wrapUntil || 0) - clock.now();
      timer.textContent = t("call.wrap_left", { t: duration(left) });
      timer.classList.toggle("urgent", left < 10);
      const countdown = $("#wrapup-countdown", this.side);
      if (countdown) countdown.textContent = t("wrapup.countdown", { t: duration(left) });
    } else {
      const since = agentState?.since || call.startedAt;
      timer.textContent = duration(clock.now() - since);
      timer.classList.remove("urgent");
    }
  }

  known(pop) {
    const c = pop.customer;
    const phones = (c.phones || []).map((p) => h("span", {
      class: p === pop.ani ? "phone current" : "phone", text: p }));
    return [
      h("header", { class: "pop-head" },
        h("div", {},
          h("h2", { id: "pop-name", class: "pop-name", text: c.name }),
          h("div", { class: "pop-sub" }, phones, h("span", { class: "muted",
            text: t("customer.id", { id: c.id }) }))),
        h("div", { class: "pop-badges" }, tierBadge(c.tier),
          h("a", { class: "btn ghost small", href: `#/customer/${encodeURIComponent(c.id)}`,
            text: t("pop.open_customer") }))),
      callbackMark(pop.callback),
      churnWarning(c),
      facts(c),
      h("div", { class: "pop-grid" },
        this.ivrCard(pop),
        h("section", { class: "card" }, h("h3", { text: t("pop.open_complaints") }),
          complaintsList(c.open_complaints))),
      h("section", { class: "card" }, h("h3", { text: t("pop.last_interactions") }),
        interactionsTable(c.recent_interactions, {
          agentName: this.ctx.agentName,
          link: (row) => `#/customer/${encodeURIComponent(c.id)}/call/${encodeURIComponent(row.call_id)}`,
        })),
    ];
  }

  unknown(call) {
    const pop = call.pop;
    const form = h("form", { id: "new-customer-form", class: "card new-customer" },
      h("h3", { text: t("newcaller.create") }),
      h("label", { class: "field" }, h("span", { text: t("customer.name") }),
        h("input", { name: "name", required: true, maxlength: "200", autocomplete: "off" })),
      h("label", { class: "field" }, h("span", { text: t("customer.phone") }),
        h("input", { name: "phone", required: true, value: pop.ani || "" })),
      h("label", { class: "field" }, h("span", { text: t("customer.email") }),
        h("input", { name: "email", type: "email", autocomplete: "off" })),
      h("p", { class: "form-error", hidden: true }),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "btn primary", text: t("newcaller.submit") })));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      await this.guard(form, () => this.ctx.onCreateCustomer(call, data));
    });
    return [
      h("header", { class: "pop-head" },
        h("div", {},
          h("h2", { id: "pop-name", class: "pop-name", text: t("newcaller.title") }),
          h("div", { class: "pop-sub" }, h("span", { class: "phone current", text: pop.ani }))),
        h("div", { class: "pop-badges" }, tierBadge(pop.tier))),
      callbackMark(pop.callback),
      h("div", { class: "pop-grid" }, this.ivrCard(pop), form),
    ];
  }

  ivrCard(pop) {
    const ivr = pop.ivr || {};
    const row = (label, value) => h("div", { class: "fact" },
      h("dt", { text: label }), h("dd", { text: value || "—" }));
    return h("section", { class: "card" },
      h("h3", { text: t("pop.ivr") }),
      h("dl", { class: "facts compact" },
        row(t("ivr.language"), ivr.language ? tOr(`language.${ivr.language}`, ivr.language) : ""),
        row(t("ivr.intent"), ivr.intent ? tOr(`intent.${ivr.intent}`, ivr.intent) : ""),
        row(t("ivr.digits"), ivr.digits),
        row(t("ivr.queue"), pop.queue)),
      h("h3", { text: t("pop.why_you") }),
      h("p", { id: "routing-reason", class: "routing-reason",
        text: routingReason(pop.routing_reason, pop) }));
  }

  work(call) {
    const notes = h("textarea", { id: "call-notes", rows: "4", maxlength: "4000",
      placeholder: t("notes.placeholder") });
    notes.value = call.notes || "";
    notes.addEventListener("input", () => this.ctx.onNotes(call, notes.value));
    const disposition = h("select", { id: "wrapup-disposition", name: "disposition", required: true },
      h("option", { value: "", text: t("wrapup.choose") }),
      this.ctx.dispositions.map((d) => h("option", { value: d,
        text: tOr(`disposition.${d}`, d) })));
    if (call.disposition) disposition.value = call.disposition;
    disposition.addEventListener("change", () => { call.disposition = disposition.value; });
    const wrapup = h("form", { id: "wrapup-form", class: "wrapup", hidden: true },
      h("div", { class: "wrapup-head" }, h("h3", { text: t("wrapup.title") }),
        h("span", { id: "wrapup-countdown", class: "countdown" })),
      h("label", { class: "field" }, h("span", { text: t("wrapup.disposition") }), disposition),
      h("p", { class: "form-error", hidden: true }),
      h("div", { class: "actions" },
        h("button", { id: "btn-wrapup-done", type: "submit", class: "btn primary",
          text: t("wrapup.done") })));
    wrapup.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!disposition.value) {
        showError(wrapup, t("wrapup.need_disposition"));
        return;
      }
      await this.guard(wrapup, () => this.ctx.onWrapup(call, {
        disposition: disposition.value, notes: notes.value }));
    });
    return h("section", { class: "work card" },
      wrapup,
      h("label", { class: "field notes" }, h("span", { text: t("notes.title") }), notes),
      call.pop.customer ? this.complaintBox(call) : null,
      call.pop.customer ? promiseForm(call.pop.customer.id) : null);
  }

  complaintBox(call) {
    const done = h("p", { class: "ok", hidden: true });
    const form = h("form", { id: "complaint-form", class: "complaint-form", hidden: true },
      h("label", { class: "field" }, h("span", { text: t("complaint.category") }),
        h("select", { name: "category" }, CATEGORIES.map((c) => h("option", { value: c,
          text: tOr(`category.${c}`, c) })))),
      h("label", { class: "field" }, h("span", { text: t("complaint.summary") }),
        h("textarea", { name: "summary", rows: "2", maxlength: "4000" })),
      h("p", { class: "form-error", hidden: true }),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "btn warn", text: t("complaint.submit") }),
        h("button", { type: "button", class: "btn ghost", text: t("common.cancel"),
          onclick: () => { form.hidden = true; open.hidden = false; } })));
    const open = h("button", { id: "btn-open-complaint", type: "button", class: "btn warn",
      text: t("complaint.open"), onclick: () => { form.hidden = false; open.hidden = true; } });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      const ok = await this.guard(form, () => this.ctx.onComplaint(call, data));
      if (ok) {
        form.hidden = true;
        done.hidden = false;
        done.textContent = t("complaint.created", { id: ok.id });
      }
    });
    return h("div", { id: "complaint-box", class: "complaint-box" }, open, form, done);
  }

  // Run an action for a form: disable it meanwhile, show the error in it.
  async guard(form, action) {
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    showError(form, "");
    try {
      return (await action()) || true;
    } catch (e) {
      showError(form, e.message || String(e));
      return null;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
}

function showError(form, message) {
  const box = form.querySelector(".form-error");
  box.textContent = message;
  box.hidden = !message;
}
