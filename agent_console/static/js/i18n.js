// The interface language: every string comes from i18n/<lang>.js, one file per language.

import en from "./i18n/en.js";
import zh from "./i18n/zh.js";

const LANGS = { en, zh };
const KEY = "cc.lang";
const listeners = new Set();

let current = pick();

function pick() {
  const saved = localStorage.getItem(KEY);
  if (saved && LANGS[saved]) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

export function lang() {
  return current;
}

export function locale() {
  return current === "zh" ? "zh-CN" : "en-GB";
}

// t("call.timer", { s: "0:12" }) -> the string for the current language, {s} filled in.
export function t(key, vars = {}) {
  let text = LANGS[current][key] ?? en[key];
  if (text === undefined) {
    console.warn("missing string", key);
    return key;
  }
  for (const [name, value] of Object.entries(vars)) {
    text = text.replaceAll(`{${name}}`, String(value));
  }
  return text;
}

// A string that may not exist, e.g. a label for a code the server sent.
export function tOr(key, fallback) {
  return LANGS[current][key] ?? en[key] ?? fallback;
}

export function setLang(next) {
  if (!LANGS[next] || next === current) return;
  current = next;
  localStorage.setItem(KEY, next);
  translate(document);
  for (const listener of listeners) listener(next);
}

export function onLangChange(listener) {
  listeners.add(listener);
}

// Fill in the static parts of a page: data-i18n (text), -placeholder, -title, -aria-label.
export function translate(root) {
  document.documentElement.lang = locale();
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of root.querySelectorAll("[data-i18n-title]")) {
    node.title = t(node.dataset.i18nTitle);
  }
  for (const node of root.querySelectorAll("[data-i18n-aria-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  }
  const title = document.querySelector("title[data-i18n-page]");
  if (title) document.title = t(title.dataset.i18nPage);
}

// Wire the EN / 中文 buttons found in the page.
export function languageSwitch(root = document) {
  for (const button of root.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => setLang(button.dataset.lang));
  }
  const mark = () => {
    for (const button of root.querySelectorAll("[data-lang]")) {
      button.setAttribute("aria-pressed", String(button.dataset.lang === current));
    }
  };
  onLangChange(mark);
  mark();
}
