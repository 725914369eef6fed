// Webhooks (docs/webhooks.md), for admins: subscriptions (URL, event types, secret,
// active or paused), each one's delivery log (status, attempts, last error) and its dead
// letters with replay, over /api/v1/webhooks. The server checks everything (a URL that is
// not http(s), points at the service or resolves to a link-local address; an unknown
// event type); this page only shows and sends, and says what the server answered.

import { api, ApiError, signOut, whoAmI } from "./api.js";
import { $, $$, fill, h } from "./dom.js";
import { dateTime } from "./format.js";
import { languageSwitch, onLangChange, t, tOr, translate } from "./i18n.js";

let kinds = [];        // event types and patterns a subscription may name
let subscriptions = [];
let shown = null;      // the subscription whose delivery log is open
let deliveries = [];

function say(text, ok = false) {
  const banner = $("#wh-message");
  banner.hidden = false;
  banner.classList.toggle("ok", ok);
  banner.textContent = text;
}

// Send a change; on success reload (the tables show it before the banner says so).
async function send(path, method, body, done) {
  try {
    const answer = await api(path, { method, body });
    await load();
    say(t(done), true);
    return answer;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) location.replace("/login?next=/webhooks");
    say(t("admin.failed", { code: e.code || e.status, message: e.message }));
    return null;
  }
}

const eventList = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);

function subscriptionRow(sub) {
  const row = h("tr", { dataset: { webhook: String(sub.id) } },
    h("td", { class: "name", text: String(sub.id) }),
    h("td", {}, h("input", { name: "url", value: sub.url, type: "url" })),
    h("td", {}, h("input", { name: "events", value: sub.events.join(", "), list: "wh-kinds" })),
    h("td", {}, h("input", { name: "description", value: sub.description || "" })),
    h("td", { class: sub.active ? "wh-active" : "wh-paused" },
      h("label", {}, h("input", { name: "active", type: "checkbox", checked: sub.active }),
        " ", t(sub.active ? "webhooks.active" : "webhooks.paused"))),
    h("td", { class: "actions" },
      h("button", { type: "button", class: "wb-btn", text: t("admin.save"),
        onclick: () => save(sub, row) }),
      h("button", { type: "button", class: "wb-btn", text: t("webhooks.log"),
        onclick: () => openLog(sub) }),
      h("button", { type: "button", class: "wb-btn", text: t("admin.remove"),
        onclick: () => remove(sub) })));
  return row;
}

function save(sub, row) {
  const value = (name) => $(`[name=${name}]`, row).value.trim();
  send(`/api/v1/webhooks/${sub.id}`, "PATCH", { url: value("url"),
    events: eventList(value("events")), description: value("description"),
    active: $("[name=active]", row).checked }, "admin.saved");
}

async function remove(sub) {
  if (!confirm(t("webhooks.confirm_remove", { url: sub.url }))) return;
  if (shown?.id === sub.id) shown = null;
  await send(`/api/v1/webhooks/${sub.id}`, "DELETE", undefined, "admin.removed");
}

function renderSubscriptions() {
  const heads = ["webhooks.id", "webhooks.url", "webhooks.events", "webhooks.description",
    "webhooks.state", "admin.actions"];
  fill($("#wh-subscriptions"),
    h("datalist", { id: "wh-kinds" }, kinds.map((k) => h("option", { value: k }))),
    subscriptions.length ? h("table", { class: "wb-table ad-table", id: "wh-table" },
      h("thead", {}, h("tr", {}, heads.map((k) => h("th", { text: t(k) })))),
      h("tbody", {}, subscriptions.map(subscriptionRow)))
      : h("p", { class: "wb-muted", id: "wh-none", text: t("webhooks.none") }));
}

function renderKinds() {
  const box = $("#wh-new-events");
  const checked = new Set($$("input:checked", box).map((i) => i.value));
  fill(box, h("legend", { text: t("webhooks.events") }), kinds.map((kind) =>
    h("label", { class: "wh-kind" }, h("input", { type: "checkbox", name: "event",
      value: kind, checked: checked.has(kind) }), " ", kind)));
}

// The delivery log ---------------------------------------------------------

async function openLog(sub) {
  shown = sub;
  $("#wh-log").hidden = false;
  await loadLog();
  $("#wh-log").scrollIntoView({ block: "start" });
}

async function loadLog() {
  if (!shown) return;
  const status = $("#wh-status").value;
  const query = status ? `?status=${status}` : "";
  try {
    deliveries = (await api(`/api/v1/webhooks/${shown.id}/deliveries${query}`)).deliveries;
  } catch (e) {
    say(t("admin.failed", { code: e.code || e.status, message: e.message }));
    deliveries = [];
  }
  renderLog();
}

function deliveryRow(d) {
  const when = d.delivered_at || d.next_attempt_at;
  return h("tr", { dataset: { delivery: String(d.id) }, class: `wh-${d.status}` },
    h("td", { text: String(d.id) }),
    h("td", { class: "name", text: d.event_type }),
    h("td", { class: "wh-status", text: tOr(`webhooks.status.${d.status}`, d.status) }),
    h("td", { class: "num", text: String(d.attempts) }),
    h("td", { class: "num", text: d.last_status ?? "—" }),
    h("td", { class: "wh-error", text: d.last_error || "—" }),
    h("td", { text: dateTime(d.created_at) }),
    h("td", { text: when ? dateTime(when) : "—" }),
    h("td", { class: "actions" }, d.status === "dead" ? h("button", { type: "button",
      class: "wb-btn", text: t("webhooks.replay"), onclick: () => replay(d.id) }) : null));
}

function renderLog() {
  if (!shown) {
    $("#wh-log").hidden = true;
    return;
  }
  $("#wh-log-title").textContent = t("webhooks.log_of", { id: shown.id, url: shown.url });
  const heads = ["webhooks.id", "webhooks.event", "webhooks.status", "webhooks.attempts",
    "webhooks.last_status", "webhooks.last_error", "webhooks.created", "webhooks.next"];
  fill($("#wh-deliveries"), deliveries.length
    ? h("table", { class: "wb-table ad-table", id: "wh-delivery-table" },
      h("thead", {}, h("tr", {}, heads.map((k) => h("th", { text: t(k) })), h("th"))),
      h("tbody", {}, deliveries.map(deliveryRow)))
    : h("p", { class: "wb-muted", text: t("webhooks.no_deliveries") }));
}

async function replay(deliveryId) {
  try {
    const answer = await api(`/api/v1/webhooks/${shown.id}/replay`, { method: "POST",
      body: deliveryId === undefined ? {} : { delivery_id: deliveryId } });
    await loadLog();
    say(t("webhooks.replayed", { n: answer.replayed }), true);
  } catch (e) {
    say(t("admin.failed", { code: e.code || e.status, message: e.message }));
  }
}

// Loading and wiring ----------------------------------------------------------

async function load() {
  subscriptions = (await api("/api/v1/webhooks")).webhooks;
  if (shown) shown = subscriptions.find((s) => s.id === shown.id) || null;
  render();
  if (shown) await loadLog();
}

function render() {
  renderKinds();
  renderSubscriptions();
  renderLog();
  document.body.classList.remove("booting");
}

function wire() {
  $("#wh-new").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const data = new FormData(form);
    const body = { url: data.get("url").trim(), events: data.getAll("event"),
      description: data.get("description").trim(), active: form.active.checked };
    if (data.get("secret").trim()) body.secret = data.get("secret").trim();
    const created = await send("/api/v1/webhooks", "POST", body, "admin.created");
    if (!created) return;
    form.reset();
    renderKinds();
    const secret = $("#wh-secret");
    secret.hidden = false;
    // Shown once: the server never shows a secret again.
    fill(secret, t("webhooks.secret_once"), " ", h("code", { id: "wh-secret-value",
      text: created.secret }));
  });
  $("#wh-status").addEventListener("change", loadLog);
  $("#wh-refresh").addEventListener("click", loadLog);
  $("#wh-replay-all").addEventListener("click", () => replay(undefined));
  $("#wh-sign-out").addEventListener("click", signOut);
}

async function main() {
  translate(document);
  languageSwitch();
  const me = await whoAmI();
  if (!me) return;
  if (me.role !== "admin") {
    location.replace("/forbidden");
    return;
  }
  $("#wh-who").textContent = `${me.name} (${t(`role.${me.role}`)})`;
  const known = await api("/api/v1/webhook-events");
  kinds = [...known.patterns, ...known.event_types];
  wire();
  onLangChange(render);
  await load();
}

main();
