// Evaluation forms built in the browser: sections of questions with weights, yes/no or
// a scale, critical or not. Saved through the API, which checks the weights.

import { api } from "./api.js";
import { $, $$, fill, h } from "./dom.js";
import { t } from "./i18n.js";

let editing = null; // the form being edited, or null for a new one

function questionRow(question = {}) {
  const row = h("div", { class: "qb-question", dataset: { key: question.key || "" } },
    h("input", { class: "qb-text", value: question.text || "", maxlength: 500,
      placeholder: t("quality.question_text"), "aria-label": t("quality.question_text") }),
    h("input", { class: "qb-weight", type: "number", min: "0", step: "any",
      value: question.weight ?? 10, "aria-label": t("quality.weight_label"),
      oninput: total }),
    h("select", { class: "qb-kind", "aria-label": t("quality.kind") },
      h("option", { value: "yes_no", text: t("quality.kind_yes_no"),
        selected: question.kind !== "scale" }),
      h("option", { value: "scale", text: t("quality.kind_scale"),
        selected: question.kind === "scale" })),
    h("label", {}, h("input", { class: "qb-critical", type: "checkbox",
      checked: Boolean(question.critical) }), t("quality.critical")),
    h("button", { type: "button", class: "wb-btn", text: "×", "aria-label": t("quality.remove"),
      onclick: () => { row.remove(); total(); } }));
  return row;
}

function sectionBox(section = { title: "", questions: [{}] }) {
  const questions = h("div", { class: "qb-questions" }, section.questions.map(questionRow));
  return h("div", { class: "qb-section" },
    h("input", { class: "qb-title", value: section.title, maxlength: 200,
      placeholder: t("quality.section_title"), "aria-label": t("quality.section_title") }),
    questions,
    h("button", { type: "button", class: "wb-btn qb-add-question",
      text: t("quality.add_question"),
      onclick: () => { questions.append(questionRow()); total(); } }));
}

function total() {
  const sum = $$(".qb-weight").reduce((acc, input) => acc + (Number(input.value) || 0), 0);
  $("#qb-total").textContent = t("quality.total_weight", { w: Math.round(sum * 100) / 100 });
}

function collect() {
  return {
    name: $("#qb-name").value.trim(),
    sections: $$(".qb-section").map((box) => ({
      title: $(".qb-title", box).value.trim(),
      questions: $$(".qb-question", box).map((row) => ({
        ...(row.dataset.key ? { key: row.dataset.key } : {}),
        text: $(".qb-text", row).value.trim(),
        weight: Number($(".qb-weight", row).value),
        kind: $(".qb-kind", row).value,
        critical: $(".qb-critical", row).checked,
      })),
    })),
  };
}

export function edit(form = null) {
  editing = form;
  $("#qb-title").textContent = form ? t("quality.edit_form", { name: form.name })
    : t("quality.new_form");
  $("#qb-name").value = form?.name || "";
  fill($("#qb-sections"), (form?.sections || [{ title: "", questions: [{}] }]).map(sectionBox));
  total();
}

export async function listForms(onPick) {
  const { forms } = await api("/api/v1/quality/forms");
  fill($("#q-form-list"), forms.length ? forms.map((form) => h("div", { class: "q-form-item" },
    h("span", { text: `${form.name} · v${form.version}${form.active ? "" : ` · ${t("quality.archived")}`}` }),
    h("button", { type: "button", class: "wb-btn", text: t("quality.edit"),
      onclick: () => edit(form) })))
    : h("p", { class: "wb-muted", text: t("quality.no_forms") }));
  onPick?.(forms);
  return forms;
}

export async function save(report) {
  const body = collect();
  const path = editing ? `/api/v1/quality/forms/${editing.id}` : "/api/v1/quality/forms";
  const form = await api(path, { method: editing ? "PUT" : "POST", body });
  report(t("quality.form_saved", { name: form.name, version: form.version }));
  edit(form);
  return form;
}

export function setup(report, fail, after) {
  $("#qb-new").addEventListener("click", () => edit(null));
  $("#qb-add-section").addEventListener("click", () => {
    $("#qb-sections").append(sectionBox());
    total();
  });
  $("#qb-save").addEventListener("click", async () => {
    try {
      await save(report);
      await after();
    } catch (e) {
      fail(e);
    }
  });
  edit(null);
}
