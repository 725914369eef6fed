// A recorded call beside its transcript: the audio plays through a short-lived ticket
// (the <audio> element cannot send the token, and asks again at every seek with a
// Range header); a transcript line jumps the audio to its time. And the scorecard's
// questions, answered yes / no / not applicable or on a scale.

import { api } from "./api.js";
import { h, fill } from "./dom.js";
import { locale, t } from "./i18n.js";
import { markerText } from "./marks.js";

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// Give the audio element a ticketed URL; once the ticket lapses (an error while
// playing), ask for a new one and carry on from the same moment, once per minute.
async function attach(audio, interactionId) {
  const ticket = await api(`/api/v1/quality/calls/${interactionId}/recording-ticket`,
    { method: "POST" });
  audio.src = ticket.url;
  let renewedAt = 0;
  audio.addEventListener("error", async () => {
    if (Date.now() - renewedAt < 60000) return;
    renewedAt = Date.now();
    const at = audio.currentTime;
    const fresh = await api(`/api/v1/quality/calls/${interactionId}/recording-ticket`,
      { method: "POST" });
    audio.src = fresh.url;
    audio.currentTime = at;
  });
}

function transcript(audio, lines) {
  if (!lines.length) return h("p", { class: "wb-muted", text: t("quality.no_transcript") });
  const buttons = lines.map((line) => h("button", {
    type: "button", class: "q-line", dataset: { start: line.start ?? 0 },
    onclick: () => {
      audio.currentTime = Number(line.start) || 0;
      audio.play().catch(() => {});
    } },
  h("span", { class: "q-time", text: clock(line.start) }),
  h("span", { class: "q-speaker", text: line.speaker || "" }),
  h("span", { class: "q-text", text: markerText(line) ?? (line.text || "") })));
  audio.addEventListener("timeupdate", () => {
    for (const button of buttons) {
      const start = Number(button.dataset.start);
      const next = buttons[buttons.indexOf(button) + 1];
      const end = next ? Number(next.dataset.start) : Infinity;
      button.classList.toggle("playing", audio.currentTime >= start && audio.currentTime < end);
    }
  });
  return h("div", { class: "q-transcript", id: "q-transcript" }, buttons);
}

// Show the call in `root`; resolves with the call as the API gave it.
export async function showCall(root, interactionId) {
  const call = await api(`/api/v1/quality/calls/${interactionId}`);
  const audio = h("audio", { id: "q-audio", controls: true, preload: "metadata" });
  fill(root,
    h("dl", { class: "q-meta" },
      h("dt", { text: t("quality.agent") }), h("dd", { text: call.agent_name || "—" }),
      h("dt", { text: t("quality.queue") }), h("dd", { text: call.queue }),
      h("dt", { text: t("quality.call_id") }), h("dd", { text: call.call_id }),
      h("dt", { text: t("quality.when") }),
      h("dd", { text: new Date(call.offered_at).toLocaleString(locale()) })),
    call.has_recording ? audio : h("p", { class: "wb-muted", text: t("quality.no_recording") }),
    h("h3", { text: t("quality.transcript") }),
    transcript(audio, call.transcript));
  if (call.has_recording) await attach(audio, interactionId);
  return call;
}

function choices(question, name, value, disabled) {
  const options = question.kind === "scale"
    ? [...Array(question.scale_max + 1).keys(), "na"] : ["yes", "no", "na"];
  return h("div", { class: "q-choices" }, options.map((option) => h("label", {},
    h("input", { type: "radio", name, value: String(option), disabled,
      checked: value !== undefined && String(value) === String(option) }),
    typeof option === "number" ? String(option) : t(`quality.answer_${option}`))));
}

// The questions of a form (as stored), with the given answers ticked.
export function renderQuestions(root, form, answers = {}, disabled = false) {
  fill(root, form.sections.map((section) => h("div", { class: "q-section" },
    h("h3", { text: section.title }),
    section.questions.map((question) => h("div", { class: "q-question",
      dataset: { key: question.key } },
    h("div", {},
      h("span", { text: question.text }),
      question.critical ? h("span", { class: "q-critical", text: t("quality.critical") }) : null,
      h("div", { class: "q-weight", text: t("quality.weight", { w: question.weight }) })),
    choices(question, `q-${question.key}`, answers[question.key], disabled))))));
}

// The answers ticked in `root`, or null naming the first question left out.
export function readAnswers(root, form) {
  const answers = {};
  for (const question of form.sections.flatMap((s) => s.questions)) {
    const picked = root.querySelector(`input[name="q-${CSS.escape(question.key)}"]:checked`);
    if (!picked) return { missing: question.text };
    answers[question.key] = /^\d+$/.test(picked.value) ? Number(picked.value) : picked.value;
  }
  return { answers };
}

export function scoreText(evaluation) {
  return t(evaluation.critical_failed ? "quality.score_failed" : "quality.score_line", {
    score: evaluation.score, earned: evaluation.earned, applicable: evaluation.applicable });
}
