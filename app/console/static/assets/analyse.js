// Analyse: /face/detection with 106 landmarks, attributes and emotions, drawn over the photo,
// with the raw answer beside it.

import { call } from "./api.js";
import { facesOverlay, faceLabel } from "./overlay.js";
import { busy, dropZone, el, fail, pageHeader, prettyJson } from "./ui.js";

const ATTRIBUTE_NAMES = {
  age: "Age", gender: "Male", attractive: "Attractive", eyeglass: "Eyeglasses",
  sunglass: "Sunglasses", smile: "Smile", eye_open: "Eyes open", mouth_open: "Mouth open",
};

const TOP_EMOTIONS = 5; // of eleven; the raw JSON has them all

let last = null; // {url, body, name}: the analysis stays when the user visits another page
let landmarks = "landmarks21";
let selected = null;

function chips(values, names, unit) {
  return el("div.chips", {}, Object.entries(values || {}).map(([key, value]) =>
    el("span.chip", { title: key }, el("span.muted", {}, names[key] || key), ` ${value}${unit(key)}`)));
}

function faceCard(face, index, onSelect) {
  const emotions = Object.entries(face.emotions || {}).sort((a, b) => b[1] - a[1]).slice(0, TOP_EMOTIONS);
  return el(`article.face-card${index === selected ? ".selected" : ""}`, { onclick: () => onSelect(index) },
    el("strong", {}, faceLabel(face, index)),
    el("code.small.muted.face-id", { title: "face_id" }, face.face_id),
    el("div.small.muted", {}, `box ${face.rect.right - face.rect.left}×${face.rect.bottom - face.rect.top} px · eye distance ${face.eye_dist} px`),
    el("h4", {}, "Attributes"),
    chips(face.attributes, ATTRIBUTE_NAMES, (key) => (key === "age" ? "" : "%")),
    el("h4", {}, "Strongest emotions"),
    el("div.bars", {}, emotions.map(([name, value]) =>
      el("div.bar", {}, el("span", {}, name), el("span.bar-track", {}, el("span.bar-fill", { style: { width: `${value}%` } })),
        el("span.small", {}, `${value}`)))));
}

function result(root) {
  const { url, body, name } = last;
  const redraw = () => result(root);
  const select = (index) => { selected = index === selected ? null : index; redraw(); };
  const toggle = el("div.segmented", { role: "group", "aria-label": "Landmarks" },
    [["landmarks21", "21 points"], ["landmarks106", "106 points"], [null, "Boxes only"]].map(([value, text]) =>
      el(`button.small${landmarks === value ? ".on" : ""}`, { onclick: () => { landmarks = value; redraw(); } }, text)));
  const faces = body.faces;
  root.replaceChildren(
    el("div.analysis", {},
      el("section.panel", {},
        el("div.panel-head", {},
          el("div", {}, el("strong", {}, name), el("span.muted.small", {}, ` ${body.width}×${body.height} px · `),
            el("span.badge", { id: "face-count" }, `${faces.length} face${faces.length === 1 ? "" : "s"}`)),
          toggle),
        facesOverlay(url, body.width, body.height, faces, { landmarks, selected, onSelect: select }),
        faces.length ? el("div.face-cards", {}, faces.map((face, index) => faceCard(face, index, select)))
          : el("p.empty", {}, "No face found in this photo.")),
      el("section.panel.json-panel", {},
        el("div.panel-head", {}, el("strong", {}, "Response"), el("code.small.muted", {}, "POST /face/detection")),
        el("pre.json", {}, prettyJson(body)))));
}

async function analyse(file, root, zone) {
  const url = URL.createObjectURL(file);
  try {
    const body = await busy(zone, call("face/detection", { file, landmarks106: 1, attributes: 1, emotions: 1 }));
    if (last) URL.revokeObjectURL(last.url);
    last = { url, body, name: file.name };
    selected = null;
    zone.classList.add("compact");
    result(root);
  } catch (error) {
    URL.revokeObjectURL(url);
    fail(error);
  }
}

export function render(page) {
  const root = el("div");
  const zone = dropZone("Analyse a photo", ([file]) => analyse(file, root, zone));
  page.replaceChildren(
    pageHeader("Analyse", "Every face in a photo: box, 21 or 106 landmarks, attributes and emotions."),
    zone, root);
  if (last) result(root);
  zone.classList.toggle("compact", Boolean(last));
}
