// The sign-in page.

import { api, session } from "./api.js";
import { $ } from "./dom.js";
import { languageSwitch, t, translate } from "./i18n.js";

function nextPage(role) {
  const fallback = role === "agent" ? "/console" : "/wallboard";
  const next = new URLSearchParams(location.search).get("next") || "";
  // Only a path on this site. Browsers read `//host`, `/\host` and `/<tab>/host` (tabs and
  // newlines are dropped from URLs) as another site, so the path must start with one `/`
  // followed by neither slash, and hold no backslash or control character; the parsed
  // URL must then still be ours.
  if (!/^\/(?![/\\])/.test(next) || /[\\\u0000-\u001f\u007f]/.test(next)) return fallback;
  const url = new URL(next, location.origin);
  if (url.origin !== location.origin || url.pathname.startsWith("/login")) return fallback;
  return url.pathname + url.search + url.hash;
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
