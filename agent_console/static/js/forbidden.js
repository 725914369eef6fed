// The 403 page: which account is signed in, and the ways out.

import { session, signOut } from "./api.js";
import { $ } from "./dom.js";
import { languageSwitch, onLangChange, t, translate } from "./i18n.js";

function render() {
  const who = session.get();
  $("#forbidden-who").textContent = who
    ? t("forbidden.signed_in_as", { name: who.name || "", role: t(`role.${who.role}`) })
    : "";
  $("#forbidden-home").href = who?.role === "agent" ? "/console" : "/login";
}

translate(document);
languageSwitch();
render();
onLangChange(render);
$("#forbidden-switch").addEventListener("click", signOut);
