// Pieces of a customer shown both in the screen-pop and on the customer page.

import { clock } from "./api.js";
import { h } from "./dom.js";
import { age, dateTime, duration, number, percent } from "./format.js";
import { t, tOr } from "./i18n.js";

export const CHURN_WARNING = 0.6;

export function tierBadge(tier) {
  const name = tier || "standard";
  return h("span", { class: `tier-badge tier-${name}`, text: tOr(`tier.${name}`, name) });
}

export function churnWarning(customer) {
  if (customer.churn_risk === null || customer.churn_risk < CHURN_WARNING) return null;
  return h("div", { class: "alert warn churn-warning", role: "note" },
    h("strong", { text: t("pop.churn_high", { p: percent(customer.churn_risk) }) }),
    " ", t("pop.churn_hint"));
}

function fact(label, value, extraClass = "") {
  return h("div", { class: `fact ${extraClass}` },
    h("dt", { text: label }), h("dd", { text: value ?? "—" }));
}

export function facts(customer) {
  const churn = customer.churn_risk;
  return h("dl", { class: "facts" },
    fact(t("customer.rfm_segment"),
      customer.rfm_segment ? tOr(`rfm.${customer.rfm_segment}`, customer.rfm_segment) : "—"),
    fact(t("customer.clv"), customer.clv === null ? "—" : number(customer.clv, 0)
      + (customer.clv_class ? ` · ${tOr(`clv.${customer.clv_class}`, customer.clv_class)}` : "")),
    fact(t("customer.lifecycle"), tOr(`lifecycle.${customer.lifecycle_stage}`,
      customer.lifecycle_stage || "—")),
    fact(t("customer.churn_risk"), churn === null ? "—" : percent(churn),
      churn !== null && churn >= CHURN_WARNING ? "bad" : ""),
    fact(t("customer.abc"), customer.abc_class || "—"),
  );
}

function secondsSince(iso) {
  return clock.now() - Date.parse(iso) / 1000;
}

export function complaintItem(complaint) {
  const due = complaint.sla_due_at ? Date.parse(complaint.sla_due_at) / 1000 - clock.now() : null;
  let sla = h("span", { class: "sla", text: t("complaint.no_sla") });
  if (due !== null) {
    sla = due < 0
      ? h("span", { class: "sla overdue", text: t("complaint.overdue", { age: age(-due) }) })
      : h("span", { class: "sla", text: t("complaint.due_in", { age: age(due) }) });
  }
  return h("li", { class: "complaint" },
    h("span", { class: "complaint-cat", text: tOr(`category.${complaint.category}`,
      complaint.category) }),
    h("span", { class: "chip", text: tOr(`complaint_state.${complaint.state}`, complaint.state) }),
    complaint.escalation_level > 0
      ? h("span", { class: "chip bad", text: t("complaint.escalated",
        { n: complaint.escalation_level }) }) : null,
    h("span", { class: "muted", text: complaint.created_at
      ? t("complaint.opened_ago", { age: age(secondsSince(complaint.created_at)) }) : "" }),
    sla);
}

export function complaintsList(complaints) {
  if (!complaints?.length) return h("p", { class: "muted", text: t("complaint.none") });
  return h("ul", { class: "complaints" }, complaints.map(complaintItem));
}

// The latest interactions; `link(row)` gives the URL of a row's details and transcript.
export function interactionsTable(rows, { agentName, link, full = false }) {
  if (!rows?.length) return h("p", { class: "muted", text: t("history.none") });
  const head = [t("history.date"), t("history.agent"), t("history.disposition"),
    t("history.complaint"), full ? t("history.outcome") : null,
    full ? t("history.talk") : null, t("history.transcript")];
  return h("table", { class: "table history" },
    h("thead", {}, h("tr", {}, head.filter(Boolean).map((x) => h("th", { text: x })))),
    h("tbody", {}, rows.map((row) => h("tr", { dataset: { callId: row.call_id } },
      h("td", { text: dateTime(row.offered_at) }),
      h("td", { text: row.agent_id ? agentName(row.agent_id) : "—" }),
      h("td", { text: row.disposition
        ? tOr(`disposition.${row.disposition}`, row.disposition) : "—" }),
      h("td", {}, row.complaint_flag
        ? h("span", { class: "flag", text: t("history.flagged") }) : "—"),
      full ? h("td", { text: row.outcome ? tOr(`outcome.${row.outcome}`, row.outcome) : "—" })
        : null,
      full ? h("td", { text: row.talk_s === null ? "—" : duration(row.talk_s) }) : null,
      h("td", {}, h("a", { href: link(row), text: transcriptLabel(row.transcript_status) })),
    ))));
}

function transcriptLabel(status) {
  return tOr(`transcript.${status || "none"}`, t("transcript.none"));
}

export function routingReason(reason, pop) {
  if (!reason?.rule) return "—";
  const vars = { queue: pop.queue || "default", intent: pop.ivr?.intent || "",
    waited: duration(reason.waited_s || 0) };
  return tOr(`routing.${reason.rule}`, reason.rule).replace(/\{(\w+)\}/g,
    (_, key) => vars[key] ?? "");
}
