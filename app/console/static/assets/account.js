// Account: what /info/api answers (usage against quotas, the rate limit, expiry) and the
// rate-limit headers of that answer.

import { call, credentials, rate } from "./api.js";
import { el, fail, pageHeader, prettyJson } from "./ui.js";

const USAGE = [["persons", "Persons"], ["groups", "Groups"], ["facesets", "Facesets"]];
const PER_ENTITY = [
  ["faces_per_person", "Faces per person"],
  ["persons_per_group", "Persons per group"],
  ["faces_per_faceset", "Faces per faceset"],
];

function meter(label, used, quota) {
  const share = quota ? Math.min(used / quota, 1) : 0;
  const level = share >= 0.9 ? "full" : share >= 0.7 ? "high" : "ok";
  return el("div.usage", { dataset: { usage: label.toLowerCase() } },
    el("div.usage-head", {}, el("strong", {}, label), el("span", {}, `${used} of ${quota}`)),
    el("div.meter.large", {}, el("span", { class: level, style: { width: `${share * 100}%` } })),
    el("span.small.muted", {}, `${Math.max(quota - used, 0)} left`));
}

/** "50q/10s" -> "50 calls per 10 s". */
function rateText(limit) {
  const match = /^(\d+)q\/(\d+)s$/.exec(limit);
  return match ? `${match[1]} calls per ${match[2]} s` : limit;
}

export async function render(page) {
  page.replaceChildren(pageHeader("Account", "Usage against quotas and the rate limit, as /info/api answers."),
    el("p.muted", {}, "Loading…"));
  let info;
  try {
    info = await call("info/api");
  } catch (error) {
    page.lastChild.replaceWith(el("p.error", {}, `Could not read the account: ${error.status}`));
    fail(error);
    return;
  }
  const expiry = info.expiration_date ? new Date(info.expiration_date).toLocaleString() : "never";
  page.lastChild.replaceWith(
    el("div.account-grid", {},
      el("section.panel", {}, el("div.panel-head", {}, el("strong", {}, "Usage")),
        USAGE.map(([key, label]) => meter(label, info.usage[key], info.quota[key]))),
      el("section.panel", {}, el("div.panel-head", {}, el("strong", {}, "Limits")),
        el("dl.facts", {},
          el("dt", {}, "API ID"), el("dd", {}, el("code", {}, credentials().api_id)),
          el("dt", {}, "Rate limit"), el("dd", { id: "rate-limit" }, rateText(info.rate_limit)),
          el("dt", {}, "Calls left now"), el("dd", {}, rate.remaining === null ? "–"
            : `${rate.remaining} of ${rate.limit}, window resets in ${rate.reset} s`),
          el("dt", {}, "Expires"), el("dd", {}, expiry),
          PER_ENTITY.map(([key, label]) => [el("dt", {}, label), el("dd", {}, `at most ${info.quota[key]}`)]))),
      el("section.panel.json-panel", {}, el("div.panel-head", {}, el("strong", {}, "Response"),
        el("code.small.muted", {}, "POST /info/api")), el("pre.json", {}, prettyJson(info)))));
}
