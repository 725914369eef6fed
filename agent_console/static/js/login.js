// The sign-in page.

import { api, session } from "./api.js";
import { $ } from "./dom.js";
import { languageSwitch, t, translate } from "./i18n.js";

function nextPage(role) {
  const next = new URLSearchParams(location.search).get("next") || "";
  // Only our own paths: never send a signed-in user to another site.
  if (next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login")) return next;
  return role === "agent" ? "/console" : "/wallboard";
}

function showError(message) {
  const box = $("#login-error");
  box.textContent = message;
  box.hidden = !message;
}

async function submit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showError(t("login.missing"));
    return;
  }
  const button = $("button[type=submit]", form);
  button.disabled = true;
  showError("");
  try {
    const data = await api("/api/v1/login", { method: "POST", body: { username, password } });
    session.save(data);
    location.replace(nextPage(data.role));
  } catch (e) {
    // Never say which of the two was wrong.
    if (e.status === 401) showError(t("login.wrong"));
    else if (e.status === 429) showError(t("login.locked"));
    else showError(t("login.unavailable"));
    form.password.value = "";
    form.password.focus();
  } finally {
    button.disabled = false;
  }
}

translate(document);
languageSwitch();
$("#login-form").addEventListener("submit", submit);
$("#login-form").username.focus();
