// Keyboard shortcuts of the console, and the "?" sheet that lists them.
//
// Alt+letter by the key's position (event.code), so a layout or an input method that
// changes the character Alt produces still works; "?" only outside text fields.

import { $, h } from "./dom.js";
import { t } from "./i18n.js";

// [code, label of the keys, string key of what it does, action]
export const SHORTCUTS = [
  ["KeyA", "Alt+A", "shortcut.answer", "answer"],
  ["KeyH", "Alt+H", "shortcut.hold", "hold"],
  ["KeyT", "Alt+T", "shortcut.transfer", "transfer"],
  ["KeyX", "Alt+X", "shortcut.hangup", "hangup"],
];

export function installShortcuts(run) {
  document.addEventListener("keydown", (event) => {
    if (event.altKey && !event.ctrlKey && !event.metaKey) {
      const found = SHORTCUTS.find(([code]) => code === event.code);
      if (found) {
        event.preventDefault();
        run(found[3]);
      }
      return;
    }
    if (event.key === "?" && !typing(event.target)) {
      event.preventDefault();
      showHelp();
    }
  });
}

function typing(node) {
  return node instanceof HTMLElement
    && (node.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(node.tagName));
}

export function showHelp() {
  $("#shortcut-help")?.remove();
  const rows = [...SHORTCUTS.map(([, keys, what]) => [keys, t(what)]),
    ["?", t("shortcut.help")]];
  const dialog = h("dialog", { id: "shortcut-help", class: "shortcut-help" },
    h("h2", { text: t("shortcut.title") }),
    h("dl", {}, rows.map(([keys, what]) => [h("dt", {}, h("kbd", { text: keys })),
      h("dd", { text: what })])),
    h("form", { method: "dialog" },
      h("button", { class: "btn", text: t("shortcut.close") })));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}
