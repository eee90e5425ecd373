// Match: a photo's largest face against a group (/face/identification: persons) or a faceset
// (/face/search: faces), candidates with their thumbnails, confidence and what it means.

import { call, largestFace } from "./api.js";
import { facesOverlay } from "./overlay.js";
import { busy, dropZone, el, fail, faceThumb, pageHeader, percent, prettyJson } from "./ui.js";

// The seed's promise (docs/matching.md, "Calibration"): a confidence threshold of 0.4 ... 0.9
// lets through impostors at a false-accept rate of 1e-1 ... 1e-6; confidence is calibrated
// piecewise linearly between these knots, so the rate is log-linear between them.
const FAR_TABLE = [[0.4, 1e-1], [0.5, 1e-2], [0.6, 1e-3], [0.7, 1e-4], [0.8, 1e-5], [0.9, 1e-6]];
const SAME_PERSON = 0.6;

/** "1 in 3,200": how often a stranger scores at least `confidence`, from the table. */
function falseAcceptRate(confidence) {
  if (confidence >= 1) return "none: the face itself";
  if (confidence > 0.9) return "under 1 in 1,000,000";
  if (confidence < 0.4) return "over 1 in 10";
  const exponent = 1 + (confidence - 0.4) * 10; // 1e-1 at 0.4 ... 1e-6 at 0.9
  const inverse = 10 ** exponent;
  const rounded = Number(inverse.toPrecision(2));
  return `about 1 in ${rounded.toLocaleString("en-US")}`;
}

function farTable() {
  return el("section.panel.far-panel", {},
    el("div.panel-head", {}, el("strong", {}, "What a confidence means")),
    el("p.small.muted", {}, "Confidence is calibrated on impostor pairs: a threshold lets through strangers at the false-accept rate (FAR) below. ",
      `Identification lists persons above ${SAME_PERSON} only (FAR 1e-3).`),
    el("table.table.compact", {},
      el("thead", {}, el("tr", {}, el("th", {}, "confidence ≥"), el("th", {}, "false-accept rate"), el("th", {}, "a stranger passes"))),
      el("tbody", {}, FAR_TABLE.map(([threshold, far]) =>
        el(`tr${threshold === SAME_PERSON ? ".highlight" : ""}`, {},
          el("td", {}, threshold.toFixed(1)), el("td", {}, far.toExponential(0)),
          el("td", {}, `1 in ${(1 / far).toLocaleString("en-US")}`))))));
}

function candidateRow(rank, faceId, title, subtitle, confidence) {
  const strong = confidence > SAME_PERSON;
  return el(`li.candidate${rank === 0 ? ".first" : ""}`, {},
    el("span.rank", {}, `${rank + 1}`),
    faceThumb(faceId, "md"),
    el("div.candidate-text", {},
      el("div.candidate-title", {}, el("strong.candidate-name", {}, title), strong ? el("span.badge.same", {}, "same person") : null),
      el("code.small.muted", {}, subtitle)),
    el("div.confidence", {},
      el("div.meter", {}, el("span", { style: { width: percent(confidence) }, class: strong ? "strong" : "weak" })),
      el("strong.confidence-value", {}, confidence.toFixed(3)),
      el("span.small.muted", {}, `FAR ${falseAcceptRate(confidence)}`)));
}

async function candidates(target, probe) {
  if (target.kind === "group") {
    const body = await call("face/identification", { face_id: probe, group_id: target.id, top: 5 });
    const faces = await Promise.all(body.candidates.map((c) =>
      call("info/person", { person_id: c.person_id }).then((p) => p.face_ids[0], () => undefined)));
    return { body, rows: body.candidates.map((c, i) => candidateRow(i, faces[i], c.name, c.person_id, c.confidence)) };
  }
  const body = await call("face/search", { face_id: probe, faceset_id: target.id, top: 10 });
  return { body, rows: body.candidates.map((c, i) => candidateRow(i, c.face_id, `Face ${c.face_id.slice(0, 8)}`, c.face_id, c.confidence)) };
}

async function targets(select) {
  const [groups, facesets] = await Promise.all([
    call("info/list_groups", { limit: 500 }), call("info/list_facesets", { limit: 500 })]);
  const group = (label, rows, kind, key) => el("optgroup", { label },
    rows.map((row) => el("option", { value: `${kind}:${row[key]}` }, row.name)));
  select.replaceChildren(el("option", { value: "" }, "Choose a group or faceset…"),
    group("Groups (identify persons)", groups.groups, "group", "group_id"),
    group("Facesets (search faces)", facesets.facesets, "faceset", "faceset_id"));
}

export function render(page) {
  const select = el("select", { name: "target", "aria-label": "Group or faceset" });
  const output = el("div.match-output");
  targets(select).catch(fail);
  const run = ([file]) => {
    const [kind, id] = select.value.split(":");
    if (!id) { fail(new Error("Choose a group or faceset first.")); return; }
    const url = URL.createObjectURL(file);
    busy(zone, (async () => {
      const { face, body: detected } = await largestFace(file);
      const { body, rows } = await candidates({ kind, id }, face.face_id);
      const listed = rows.length ? el("ol.candidates", {}, rows)
        : el("p.empty", {}, kind === "group" ? `No one in this group scores above ${SAME_PERSON} (FAR 1e-3).` : "No candidates.");
      output.replaceChildren(el("div.match-grid", {},
        el("section.panel", {}, el("div.panel-head", {}, el("strong", {}, "Probe"), el("span.small.muted", {}, file.name)),
          facesOverlay(url, detected.width, detected.height, [face], { landmarks: null })),
        el("section.panel", {}, el("div.panel-head", {}, el("strong", {}, "Candidates"),
          el("code.small.muted", {}, kind === "group" ? "POST /face/identification" : "POST /face/search")),
        listed, el("details.raw", {}, el("summary", {}, "Raw response"), el("pre.json", {}, prettyJson(body))))));
    })().catch(fail));
  };
  const zone = dropZone("Match a photo", run);
  page.replaceChildren(
    pageHeader("Match", "Who is this? A photo's largest face against a group's persons or a faceset's faces."),
    el("div.match-top", {}, el("div", {}, el("label.field", {}, "Search in", select), zone), farTable()),
    output);
}
