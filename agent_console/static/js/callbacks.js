// Callbacks in the browser: an agent's promise to call a customer back (the wrap-up
// panel and the customer page) and the supervisors' list of pending callbacks (the
// wallboard), over /api/v1/callbacks.

import { api } from "./api.js";
import { fill, h } from "./dom.js";
import { dateTime } from "./format.js";
import { t, tOr } from "./i18n.js";

// A datetime-local value (the browser's local time) an hour from now, to the minute.
function inAnHour() {
  const at = new Date(Date.now() + 3600 * 1000);
  at.setSeconds(0, 0);
  const pad = (n) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

// The form that promises a callback of `customerId` (for the signed-in agent).
export function promiseForm(customerId, id = "callback-form") {
  const due = h("input", { type: "datetime-local", name: "due", required: true,
    value: inAnHour(), id: `${id}-due` });
  const note = h("input", { name: "note", maxlength: "2000", autocomplete: "off",
    id: `${id}-note` });
  const done = h("p", { class: "ok", hidden: true });
  const error = h("p", { class: "form-error", hidden: true });
  const submit = h("button", { type: "submit", class: "btn", text: t("callback.submit") });
  const form = h("form", { id, class: "callback-form" },
    h("h3", { text: t("callback.promise") }),
    h("label", { class: "field" }, h("span", { text: t("callback.when") }), due),
    h("label", { class: "field" }, h("span", { text: t("callback.note") }), note),
    error, done, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      const made = await api("/api/v1/callbacks", { method: "POST", body: {
        customer_id: customerId, due_at: new Date(due.value).toISOString(),
        note: note.value } });
      done.textContent = t("callback.promised", {
        at: dateTime(new Date(made.due_at * 1000).toISOString()), number: made.number });
      done.hidden = false;
      document.dispatchEvent(new CustomEvent("callbacks-changed"));
    } catch (e) {
      error.textContent = e.message || String(e);
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// The pop's mark of a callback: whom to call, why.
export function callbackMark(callback) {
  if (!callback) return null;
  return h("div", { id: "pop-callback", class: "callback-mark" },
    h("strong", { text: t("callback.mark", { number: callback.number }) }),
    h("span", { class: "muted", text: tOr(`callback.source.${callback.source}`,
      callback.source) }),
    callback.note ? h("span", { text: callback.note }) : null);
}

// The signed-in agent's own pending callbacks (the console's sidebar), soonest first:
// refreshed when the agent promises one, and every minute.
export class MyCallbacks {
  constructor(root) {
    this.root = root;
    this.rows = [];
    this.error = "";
    document.addEventListener("callbacks-changed", () => this.refresh());
  }

  async refresh() {
    try {
      this.rows = (await api("/api/v1/callbacks")).callbacks;
      this.error = "";
    } catch (e) {
      this.error = e.message || String(e);
    }
    this.render();
  }

  render() {
    let body = h("ul", { class: "my-callbacks-list" }, this.rows.map((c) => this.item(c)));
    if (this.error) body = h("p", { class: "form-error", text: this.error });
    else if (!this.rows.length) body = h("p", { class: "muted", text: t("callbacks.mine_none") });
    fill(this.root, h("h3", { text: t("callbacks.mine") }), body);
  }

  item(c) {
    const who = c.customer_id
      ? h("a", { href: `#/customer/${encodeURIComponent(c.customer_id)}`, text: c.number })
      : h("span", { text: c.number });
    return h("li", { dataset: { callbackId: c.callback_id } },
      h("span", { class: "due", text: dateTime(new Date(c.due_at * 1000).toISOString()) }),
      " ", who, " ",
      h("span", { class: "muted", text: tOr(`callbacks.live.${c.live_state}`, c.live_state || "") }),
      c.note ? h("div", { class: "muted", text: c.note }) : null);
  }
}

// The supervisors' panel: pending callbacks, each reassigned or cancelled in place.
export class PendingCallbacks {
  constructor(root) {
    this.root = root;
    this.agents = [];
    this.rows = [];
    this.error = "";
  }

  async refresh() {
    try {
      if (!this.agents.length) {
        this.agents = (await api("/api/v1/directory/agents")).agents;
      }
      this.rows = (await api("/api/v1/callbacks")).callbacks;
      this.error = "";
    } catch (e) {
      this.error = e.message || String(e);
    }
    this.render();
  }

  render() {
    if (this.error) {
      fill(this.root, h("p", { class: "form-error", text: this.error }));
      return;
    }
    if (!this.rows.length) {
      fill(this.root, h("p", { class: "wb-muted", text: t("callbacks.none") }));
      return;
    }
    fill(this.root, h("table", { class: "wb-table", id: "callbacks-table" },
      h("thead", {}, h("tr", {}, [t("callbacks.due"), t("callbacks.number"),
        t("callbacks.customer"), t("callbacks.state"), t("callbacks.agent"), ""]
        .map((x) => h("th", { text: x, class: "text" })))),
      h("tbody", {}, this.rows.map((row) => this.row(row)))));
  }

  row(c) {
    const pick = h("select", { class: "callback-agent" },
      h("option", { value: "", text: t("callbacks.anyone") }),
      this.agents.map((a) => h("option", { value: String(a.id), text: a.name,
        selected: a.id === c.agent_id })));
    const act = (path, body) => async () => {
      try {
        await api(`/api/v1/callbacks/${encodeURIComponent(c.callback_id)}/${path}`,
          { method: "POST", body });
      } catch (e) {
        this.error = e.message || String(e);
      }
      await this.refresh();
    };
    return h("tr", { dataset: { callbackId: c.callback_id } },
      h("td", { class: "text", text: dateTime(new Date(c.due_at * 1000).toISOString()) }),
      h("td", { class: "text", text: c.number }),
      h("td", { class: "text", text: c.customer_id || "—" }),
      h("td", { class: "text", text: tOr(`callbacks.live.${c.live_state}`, c.live_state || "—") }),
      h("td", { class: "text" }, pick),
      h("td", { class: "text" },
        h("button", { type: "button", class: "wb-btn reassign", text: t("callbacks.reassign"),
          onclick: () => act("reassign", { agent_id: pick.value ? Number(pick.value) : null })() }),
        h("button", { type: "button", class: "wb-btn cancel", text: t("callbacks.cancel"),
          onclick: act("cancel") })));
  }
}
