// A photo with its faces drawn over it: boxes, landmarks and a label per face, in an SVG whose
// viewBox is the image's pixel grid, so it scales with the picture.

import { el } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

/** What the label over a face says: its number, age, gender and strongest emotion. */
export function faceLabel(face, index) {
  const parts = [`#${index + 1}`];
  const attributes = face.attributes || {};
  if (attributes.age !== undefined) parts.push(`${attributes.age} y`);
  if (attributes.gender !== undefined) parts.push(attributes.gender >= 50 ? "male" : "female");
  const emotions = Object.entries(face.emotions || {});
  if (emotions.length) parts.push(emotions.reduce((a, b) => (b[1] > a[1] ? b : a))[0]);
  return parts.join(" · ");
}

/**
 * The photo (`url`, `width` x `height` as the API measured it, upright) with `faces` drawn on.
 * `landmarks` is "landmarks21", "landmarks106" or null; `selected` highlights one face.
 */
export function facesOverlay(url, width, height, faces, { landmarks = "landmarks21", selected = null, onSelect } = {}) {
  const layer = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "overlay", role: "img",
    "aria-label": `${faces.length} face${faces.length === 1 ? "" : "s"}` });
  const unit = Math.max(width, height) / 400; // strokes and text keep their size on screen
  faces.forEach((face, index) => {
    const { left, top, right, bottom } = face.rect;
    const group = svg("g", { class: `face${index === selected ? " selected" : ""}`, "data-face": index });
    group.append(svg("rect", { x: left, y: top, width: right - left, height: bottom - top,
      rx: 2 * unit, class: "face-box", "stroke-width": 2 * unit }));
    for (const [x, y] of (landmarks && face[landmarks]) || []) {
      group.append(svg("circle", { cx: Number(x), cy: Number(y), r: (landmarks === "landmarks106" ? 0.9 : 1.4) * unit,
        class: "landmark" }));
    }
    // Crowds get numbers only (the cards below say the rest); a selected face its whole label.
    const text = faces.length <= 4 || index === selected ? faceLabel(face, index) : `#${index + 1}`;
    const size = 9 * unit;
    const labelY = top > size * 1.8 ? top - size * 1.6 : bottom + size * 0.3;
    group.append(svg("rect", { x: left, y: labelY, width: text.length * size * 0.58 + size, height: size * 1.4,
      rx: 2 * unit, class: "face-tag" }));
    const label = svg("text", { x: left + size * 0.5, y: labelY + size * 1.05, "font-size": size, class: "face-tag-text" });
    label.textContent = text;
    group.append(label);
    if (onSelect) group.addEventListener("click", () => onSelect(index));
    layer.append(group);
  });
  const chosen = layer.querySelector(".face.selected");
  if (chosen) layer.append(chosen); // drawn last: its label on top of its neighbours'
  return el("div.stage", {}, el("img", { src: url, alt: "analysed photo" }), layer);
}
