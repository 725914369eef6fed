// The routing policy's form on the administration page: waits and head starts per tier.

import { fill, h } from "./dom.js";
import { t } from "./i18n.js";

const TIERS = ["vip", "gold", "standard", "low"];
const SINGLE = ["complaint_wait_s", "complaint_boost_s", "intent_wait_s"];
const PER_TIER = ["tier_boost_s", "sticky_wait_s"];

function field(name, value) {
  return h("label", {}, h("span", { text: t(`policy.${name}`) }),
    h("input", { name, type: "number", step: "any", value: String(value) }));
}

export function policyForm(form, policy) {
  fill(form,
    SINGLE.map((name) => field(name, policy[name])),
    PER_TIER.map((name) => TIERS.map((tier) => h("label", {},
      h("span", { text: `${t(`policy.${name}`)} · ${t(`tier.${tier}`)}` }),
      h("input", { name: `${name}.${tier}`, type: "number", step: "any",
        value: String(policy[name][tier] ?? 0) })))),
    h("button", { type: "submit", class: "wb-btn rp-primary", text: t("admin.save") }));
}

export function policyBody(form) {
  const data = new FormData(form);
  const body = {};
  for (const name of SINGLE) body[name] = Number(data.get(name));
  for (const name of PER_TIER) {
    body[name] = Object.fromEntries(TIERS.map((tier) => [tier,
      Number(data.get(`${name}.${tier}`))]));
  }
  return body;
}
