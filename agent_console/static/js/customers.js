// Customer search (by name or phone) and the customer page with its full history.

import { api } from "./api.js";
import { promiseForm } from "./callbacks.js";
import { $, fill, h } from "./dom.js";
import { dateTime, duration } from "./format.js";
import { t, tOr } from "./i18n.js";
import { markerText } from "./marks.js";
import { churnWarning, complaintsList, facts, interactionsTable, tierBadge } from "./parts.js";

export class Search {
  constructor(form, results) {
    this.form = form;
    this.results = results;
    this.query = "";
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run(form.q.value.trim());
    });
  }

  async run(query) {
    this.query = query;
    if (!query) {
      fill(this.results);
      return;
    }
    fill(this.results, h("p", { class: "muted", text: t("common.loading") }));
    try {
      const data = await api(`/api/v1/customers?q=${encodeURIComponent(query)}`);
      if (query !== this.query) return; // a newer search has started
      this.show(data.customers);
    } catch (e) {
      fill(this.results, h("p", { class: "form-error", text: e.message }));
    }
  }

  show(customers) {
    if (!customers.length) {
      fill(this.results, h("p", { class: "muted", text: t("search.none") }));
      return;
    }
    fill(this.results, h("ul", { class: "result-list" }, customers.map((c) => h("li", {},
      h("a", { class: "result", href: `#/customer/${encodeURIComponent(c.id)}` },
        h("span", { class: "result-name", text: c.name }), tierBadge(c.tier),
        h("span", { class: "muted result-phone", text: (c.phones || []).join(", ") }))))));
  }

  refresh() {
    if (this.query) this.run(this.query);
  }
}

export class CustomerPage {
  constructor(root, { agentName }) {
    this.root = root;
    this.agentName = agentName;
    this.current = null;
  }

  async show(customerId, focusCallId) {
    this.current = { customerId, focusCallId };
    fill(this.root, h("p", { class: "muted", text: t("common.loading") }));
    let customer;
    try {
      customer = await api(`/api/v1/customers/${encodeURIComponent(customerId)}`);
    } catch (e) {
      fill(this.root, this.back(), h("p", { class: "form-error",
        text: e.status === 404 ? t("customer.not_found") : e.message }));
      return;
    }
    if (this.current?.customerId !== customerId) return;
    this.render(customer, focusCallId);
  }

  refresh() {
    if (this.current) this.show(this.current.customerId, this.current.focusCallId);
  }

  back() {
    return h("a", { class: "back", href: "#/", text: t("customer.back") });
  }

  render(c, focusCallId) {
    const link = (row) => `#/customer/${encodeURIComponent(c.id)}/call/${encodeURIComponent(row.call_id)}`;
    fill(this.root,
      this.back(),
      h("article", { class: "customer-page" },
        h("header", { class: "pop-head" },
          h("div", {},
            h("h2", { class: "pop-name", id: "customer-name", text: c.name }),
            h("div", { class: "pop-sub" },
              (c.phones || []).map((p) => h("span", { class: "phone", text: p })),
              c.email ? h("span", { class: "muted", text: c.email }) : null,
              c.company ? h("span", { class: "muted", text: c.company }) : null,
              h("span", { class: "muted", text: t("customer.id", { id: c.id }) }))),
          h("div", { class: "pop-badges" }, tierBadge(c.tier))),
        churnWarning(c),
        facts(c),
        h("section", { class: "card" }, h("h3", { text: t("pop.open_complaints") }),
          complaintsList(c.open_complaints)),
        h("section", { class: "card" }, promiseForm(c.id, "customer-callback-form")),
        h("section", { class: "card" },
          h("h3", { text: t("customer.history", { n: c.interactions.length }) }),
          interactionsTable(c.interactions, { agentName: this.agentName, link, full: true })),
        h("div", { id: "interaction-detail" })));
    const focus = c.interactions.find((row) => row.call_id === focusCallId);
    if (focus) this.detail(focus);
  }

  detail(row) {
    const box = $("#interaction-detail", this.root);
    const line = (label, value) => h("div", { class: "fact" }, h("dt", { text: label }),
      h("dd", { text: value ?? "—" }));
    fill(box, h("section", { class: "card detail", id: `call-${row.call_id}` },
      h("h3", { text: t("detail.title", { date: dateTime(row.offered_at) }) }),
      h("dl", { class: "facts compact" },
        line(t("history.agent"), row.agent_id ? this.agentName(row.agent_id) : "—"),
        line(t("ivr.queue"), row.queue),
        line(t("history.outcome"), row.outcome ? tOr(`outcome.${row.outcome}`, row.outcome) : "—"),
        line(t("detail.wait"), row.wait_s === null ? "—" : duration(row.wait_s)),
        line(t("history.talk"), row.talk_s === null ? "—" : duration(row.talk_s)),
        line(t("history.disposition"), row.disposition
          ? tOr(`disposition.${row.disposition}`, row.disposition) : "—"),
        line(t("detail.survey"), row.survey_score ?? "—")),
      h("h4", { text: t("notes.title") }),
      h("p", { class: "notes-text", text: row.notes || "—" }),
      h("h4", { text: t("history.transcript") }),
      transcript(row)));
    $(`tr[data-call-id="${CSS.escape(row.call_id)}"]`, this.root)?.classList.add("focused");
    box.scrollIntoView({ block: "nearest" });
  }
}

function transcript(row) {
  if (!Array.isArray(row.transcript) || !row.transcript.length) {
    return h("p", { class: "muted", text: tOr(`transcript.${row.transcript_status}`,
      t("transcript.none")) });
  }
  return h("ol", { class: "transcript" }, row.transcript.map((part) => {
    if (typeof part === "string") return h("li", { text: part });
    const who = part.speaker ? tOr(`speaker.${part.speaker}`, part.speaker) : "";
    const at = typeof part.start === "number" ? duration(part.start) : "";
    return h("li", { class: part.marker ? "transcript-marker" : undefined },
      h("span", { class: "muted", text: [at, who].filter(Boolean).join(" · ") }),
      " ", h("span", { text: markerText(part) ?? part.text ?? JSON.stringify(part) }));
  }));
}
