// The transfer dialog: blind (the caller goes at once) or consult (talk to the colleague
// first, the caller on hold), to a queue, to a colleague, or (blind only) to a number.
// Resolves with the fields of `call.control` (mode, to_queue | to_agent_id | to_number),
// or null when the agent cancels. The service checks the target (unknown_queue, ...).

import { $, h } from "./dom.js";
import { t } from "./i18n.js";

const NUMBER = "^\\+?[0-9]{3,20}$";

// How often the open dialog reads its lists again, so colleagues' states stay live.
const REFRESH_MS = 3000;

// targets: {queues: [{name, display_name, waiting, available}], agents: [{agent_id, name,
// state}]} from GET /api/v1/transfer-targets: live, colleagues available first.
// reload(): a promise of fresh targets, read every REFRESH_MS while the dialog is open.
export function pickTransfer({ queues, agents }, reload = null) {
  const kind = (value, checked) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "kind", value, checked }), t(`transfer.to_${value}`));
  const mode = (value, checked) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "mode", value, checked }), t(`transfer.mode_${value}`));
  const form = h("form", { method: "dialog", class: "transfer-form" },
    h("h2", { text: t("transfer.title") }),
    h("fieldset", { class: "modes" }, mode("blind", true), mode("consult", false)),
    h("fieldset", { class: "kinds" }, kind("queue", true), kind("agent", false),
      kind("number", false)),
    h("label", { class: "field", dataset: { kind: "queue" } }, h("span", { text: t("transfer.queue") }),
      h("select", { id: "transfer-queue", name: "queue" }, queueOptions(queues))),
    h("label", { class: "field", dataset: { kind: "agent" } }, h("span", { text: t("transfer.agent") }),
      h("select", { id: "transfer-agent", name: "agent" }, agentOptions(agents))),
    h("label", { class: "field", dataset: { kind: "number" } }, h("span", { text: t("transfer.number") }),
      h("input", { id: "transfer-number", name: "number", type: "tel", pattern: NUMBER,
        placeholder: "+8610…" })),
    h("div", { class: "actions" },
      h("button", { id: "btn-transfer-go", class: "btn primary", value: "go",
        text: t("transfer.submit") }),
      h("button", { class: "btn ghost", value: "cancel", formnovalidate: true,
        text: t("common.cancel") })));
  const dialog = h("dialog", { id: "transfer-dialog", class: "transfer-dialog" }, form);
  const show = () => {
    const consult = form.elements.mode.value === "consult";
    const byNumber = form.querySelector("input[name=kind][value=number]");
    byNumber.disabled = consult; // a consult goes to a colleague or a queue
    if (consult && byNumber.checked) form.querySelector("input[name=kind][value=queue]").checked = true;
    $("#btn-transfer-go", form).textContent = t(consult ? "transfer.consult" : "transfer.submit");
    const chosen = form.elements.kind.value;
    for (const field of form.querySelectorAll("[data-kind]")) {
      const on = field.dataset.kind === chosen;
      field.hidden = !on;
      field.querySelector("input, select").required = on;
    }
  };
  form.addEventListener("change", show);
  show();
  document.body.append(dialog);
  dialog.showModal();
  const stop = reload ? keepLive(form, reload) : () => {};
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      stop();
      dialog.remove();
      resolve(dialog.returnValue === "go" ? target(form) : null);
    });
  });
}

function queueOptions(queues) {
  return queues.map((q) => h("option", { value: q.name, text: t("transfer.queue_option",
    { name: q.display_name, n: q.waiting, a: q.available ?? 0 }) }));
}

function agentOptions(agents) {
  return agents.map((a) => h("option", { value: String(a.agent_id), dataset: { state: a.state },
    text: t("transfer.agent_option", { name: a.name, state: t(`state.${a.state}`) }) }));
}

// Reads the targets again every REFRESH_MS (one read at a time) until the returned stop()
// is called; a failed read keeps the lists as they are and tries again.
function keepLive(form, reload) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    try {
      const { queues, agents } = await reload();
      if (stopped) return;
      replaceOptions(form.elements.queue, queueOptions(queues));
      replaceOptions(form.elements.agent, agentOptions(agents));
    } catch {
      // a refresh that failed is tried again at the next tick
    }
    if (!stopped) timer = setTimeout(tick, REFRESH_MS);
  };
  timer = setTimeout(tick, REFRESH_MS);
  return () => { stopped = true; clearTimeout(timer); };
}

// New options for a list, keeping the agent's choice when it is still offered.
function replaceOptions(select, options) {
  const chosen = select.value;
  select.replaceChildren(...options);
  if (options.some((o) => o.value === chosen)) select.value = chosen;
}

function target(form) {
  const data = Object.fromEntries(new FormData(form));
  const mode = data.mode === "consult" ? "consult" : "blind";
  if (data.kind === "agent") return { mode, to_agent_id: Number(data.agent) };
  if (data.kind === "number") return { mode, to_number: data.number.trim() };
  return { mode, to_queue: data.queue.trim() };
}
